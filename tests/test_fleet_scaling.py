"""How a sampled summary is scaled (fleet/sampling.py), checked against what it stands for: k merged copies of one
shard are a fleet whose every figure the scaled shard must give, and W copies of one window laid end to end are a
horizon whose every figure the scaled window must give. Every numeric figure of rich shipped scenarios is compared,
so a summary figure added without its kind (total, level, span or intensive) fails here."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import pytest

from simfactory.fleet.merge import merge_shards
from simfactory.fleet.run import back_to_back
from simfactory.fleet.sampling import FLEET, TIME, _kept, kind_of, scale_summary
from simfactory.fleet.windows import Window, join_windows
from simfactory.metrics.summary import compute_metrics
from simfactory.paths import SCENARIOS_DIR
from simfactory.regress.flatten import numbers
from simfactory.resolve import load_scenario, resolve
from simfactory.resolve.shards import shard_scenario
from simfactory.sim.run import simulate

# sections with a figure per fault window or per simulated event: listed as simulated, not scaled
NOT_COMPARED = ("provenance", "sim.", "sharding", "resilience.by_window", "resilience.windows",
                "resilience.availability_by_replica", "window.end_s")
# tail percentiles of k copies interpolate between other ranks than one copy's (intensive by name: checked below)
PERCENTILES = ("p90", "p95", "p99", "ttft_p99_s", "ttft_p99_during_ramps_s")
# hybrid sizing rounds accelerators
LOOSE = ("best_baseline_accels", "best_usd_per_hour", "baseline_accels", "owned_usd_per_hour", "burst_usd_per_hour",
         "total_usd_per_hour", "owned_utilization")
RICH = ("tco-hybrid", "tenants-fair-share", "gpu-failure-peak", "autoscale-rps", "routing-tiered")


def leaves(node: dict[str, Any]) -> Iterator[tuple[str, float]]:
    yield from numbers(node).items()


def mismatches(whole: dict[str, Any], scaled: dict[str, Any], skip: tuple[str, ...]) -> list[str]:
    got = dict(leaves(scaled))
    out = []
    for path, want in leaves(whole):
        if path.startswith(NOT_COMPARED + skip):
            continue
        leaf = path.rsplit(".", 1)[-1]
        if leaf in PERCENTILES:
            continue
        rel = 0.05 if leaf in LOOSE or path.startswith("finance.hybrid") else 1e-6
        have = got.get(path)
        if have is None or not math.isclose(want, have, rel_tol=rel, abs_tol=1e-9):
            out.append(f"{path}: whole {want:g}, scaled {have}")
    return out


def short(name: str, horizon_s: float, warmup_s: float) -> Any:
    sc = load_scenario(SCENARIOS_DIR / f"{name}.yaml")
    sim = sc.sim.model_copy(update={"horizon_s": horizon_s, "warmup_s": warmup_s})
    return sc.model_copy(update={"sim": sim, "sharding": None})


@pytest.mark.parametrize("name", RICH)
def test_a_shard_scaled_by_k_is_k_merged_copies_of_it(name):
    k = 2
    sc = short(name, 60.0, 10.0)
    if name == "autoscale-rps":  # counts that split in two: 4 replicas at t = 0, at least 2
        d = sc.deployments[0]
        d = d.model_copy(update={"replicas": 4, "autoscaling": d.autoscaling.model_copy(update={"min_replicas": 2})})
        sc = sc.model_copy(update={"deployments": [d]})
    file = str(SCENARIOS_DIR / f"{name}.yaml")
    fleet_rs = resolve(sc, file)
    shard_rs = resolve(shard_scenario(sc, file, k), file)
    one = simulate(shard_rs, seed=5, keep_logs=0)
    as_sample = dataclasses.replace(one, resolved=dataclasses.replace(shard_rs, fleet_share=1 / k))
    scaled = scale_summary(compute_metrics(as_sample, trace_tasks=0).summary, k)
    whole = compute_metrics(merge_shards(fleet_rs, [one] * k, seed=5), trace_tasks=0).summary
    assert whole["outcomes"]["completed"] > 0
    assert mismatches(whole, scaled, ("replicas.",)) == []


@pytest.mark.parametrize("name", RICH)
def test_a_window_scaled_by_w_is_w_copies_of_it_end_to_end(name):
    """Copies laid end to end are not one continuous run at their seams (each starts empty; what one leaves
    unfinished stays so), so figures are compared by how they grow: a figure scaled by W that should not be, or not
    scaled that should, is off by W = 4; seams move the figures of these short runs by far less than 2x."""
    w, length = 4, 40.0
    sc = short(name, length, 0.0)
    sc = sc.model_copy(update={"sim": sc.sim.model_copy(update={"drain": False})})  # a copy ends where it ends
    file = str(SCENARIOS_DIR / f"{name}.yaml")
    rs_one = resolve(sc, file)
    one = simulate(rs_one, seed=5, keep_logs=0)
    rs_all = resolve(sc.model_copy(update={"sim": sc.sim.model_copy(update={"horizon_s": w * length})}), file)
    copies = [Window(0, 0.0, length, 0.0, i == w - 1) for i in range(w)]
    tiled = join_windows(rs_all, [dataclasses.replace(one, resolved=rs_all)] * w, back_to_back(copies), 5)
    scaled = dict(leaves(scale_summary(compute_metrics(one, trace_tasks=0).summary, w, dimension=TIME)))
    whole = compute_metrics(tiled, trace_tasks=0).summary
    assert whole["outcomes"]["completed"] > 0
    # the window's own settings, and the time a request left unfinished by its copy spends in the system
    skip = NOT_COMPARED + ("window.horizon_s", "little_law.mean_time_in_system_s",
                           # a failure its copy left unrepaired is cut at the seam: repair times are the copies'
                           "resilience.mean_time_to_repair_s", "resilience.slo_attainment_after_windows")
    # figures under a nanosecond are rounding (a queue time measured past a front end's delay) and compared as 0
    off = [f"{path}: whole {want:g}, scaled {scaled.get(path)}" for path, want in leaves(whole)
           if abs(want) > 1e-9 and not path.startswith(skip) and not 0.5 < (scaled.get(path) or 0.0) / want < 2.0]
    assert off == []
    assert whole["outcomes"] == {k: w * v for k, v in compute_metrics(one, trace_tasks=0).summary["outcomes"].items()}


def test_kinds_of_the_figures_a_fleet_summary_names():
    assert kind_of("output_tokens_per_s") == "level" and kind_of("tokens_per_usd") == "intensive"
    assert kind_of("window_usd") == "total" and kind_of("own_npv_usd") == "level"
    assert kind_of("usd_per_1m_output_tokens") == "intensive" and kind_of("window_h") == "span"
    assert {kind_of(p) for p in PERCENTILES} == {"intensive"}
    assert _kept("replicas.0.steps", FLEET) and not _kept("replicas.0.steps", TIME)
