"""Fleet scale (simfactory/fleet): shards thin Poisson arrivals exactly, merge into the single-run summary,
sampled shards scale and carry t intervals, parallel executors give the same answer, and what cannot be sharded
is refused in one line (exit 2)."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.api import simulate_metrics
from simfactory.cli import app
from simfactory.errors import InputError
from simfactory.fleet.merge import merge_shards
from simfactory.fleet.run import part_seed, run_sharded
from simfactory.resolve.shards import shard_scenario
from simfactory.metrics.frames import requests_frame
from simfactory.metrics.summary import compute_metrics
from simfactory.paths import SCENARIOS_DIR
from simfactory.resolve import load_and_resolve, load_scenario, resolve
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import simulate

runner = CliRunner()


def fleet_doc(shards: int = 4, replicas: int = 8, rate: float = 40.0, horizon_s: float = 20.0,
              balancer: str = "random", **sharding: Any) -> dict[str, Any]:
    doc = scenario_doc(replicas=replicas, rate=rate, horizon_s=horizon_s, warmup_s=2.0, balancer=balancer, seed=3,
                       max_num_seqs=8)
    doc["sharding"] = {"shards": shards, **sharding}
    return doc


def resolved(tmp_path: Path, doc: dict[str, Any]) -> Any:
    return load_and_resolve(write_case(tmp_path, copy.deepcopy(doc)))


def test_thinning_gives_each_shard_rate_over_k_and_the_merge_a_poisson_count(tmp_path):
    rs = resolved(tmp_path, fleet_doc(shards=4, rate=40.0, horizon_s=20.0))
    shard = shard_scenario(rs.scenario, rs.file, 4)
    assert shard.traffic.arrival.rate_per_s == pytest.approx(10.0)
    assert shard.deployments[0].replicas == 2 and shard.pools[0].count == 2
    m, merged = run_sharded(rs)
    n = len(merged.table)
    mean = 40.0 * 20.0  # arrivals of a Poisson process of rate 40/s over 20 s: mean = variance = 800
    assert abs(n - mean) < 4 * math.sqrt(mean), n
    gaps = np.diff(np.sort(merged.table.arrival_s))  # superposed shards: exponential gaps of mean 1/40 s
    assert gaps.mean() == pytest.approx(1 / 40.0, rel=4 / math.sqrt(n))
    assert sum(m.summary["outcomes"].values()) == m.summary["window"]["total_requests"] == n
    assert m.summary["sharding"]["shards"] == 4 and not m.summary["sharding"]["sampled"]
    assert len(m.summary["replicas"]) == 8  # every replica of the fleet, renumbered across shards
    assert sorted(r["replica"] for r in m.summary["replicas"]) == list(range(8))


def test_merging_k_copies_of_one_shard_is_their_concatenation(tmp_path):
    rs = resolved(tmp_path, fleet_doc(shards=4))
    shard_rs = resolve(shard_scenario(rs.scenario, rs.file, 4), rs.file)
    one = simulate(shard_rs, seed=11, keep_logs=0)
    fleet_rs = dataclasses.replace(rs, scenario=rs.scenario.model_copy(update={"sharding": None}))
    merged = merge_shards(fleet_rs, [one] * 3, seed=11)
    single, joined = requests_frame(one), requests_frame(merged)
    assert len(joined) == 3 * len(single)
    per = len(one.replicas)
    for k in range(3):
        part = joined.iloc[k * len(single):(k + 1) * len(single)]
        np.testing.assert_array_equal(part["ttft_s"].to_numpy(), single["ttft_s"].to_numpy())
        np.testing.assert_array_equal(part["replica"].to_numpy(), single["replica"].to_numpy() + k * per)
    s1, s3 = compute_metrics(one).summary, compute_metrics(merged).summary
    for outcome, count in s1["outcomes"].items():
        assert s3["outcomes"][outcome] == 3 * count
    assert s3["throughput"]["requests_per_s"] == pytest.approx(3 * s1["throughput"]["requests_per_s"])
    for metric in ("ttft", "e2e"):
        assert s3["latency_s"][metric]["mean"] == pytest.approx(s1["latency_s"][metric]["mean"])
        assert s3["latency_s"][metric]["max"] == s1["latency_s"][metric]["max"]
    assert s3["little_law"]["mean_in_system"] == pytest.approx(3 * s1["little_law"]["mean_in_system"])


def test_sampled_shards_scale_to_the_fleet_and_carry_intervals(tmp_path):
    rs = resolved(tmp_path, fleet_doc(shards=4, sample_shards=2))
    m, merged = run_sharded(rs)
    s = m.summary
    info = s["sharding"]
    assert info["sampled"] and info["simulated_shards"] == 2 and info["scale"] == 2.0
    assert "2 simulated shards stand for 4" == info["stands_for"]
    # a cloud pool bills every accelerator: 8 at the test profile's 2 USD/h, whichever shards were simulated
    assert s["cost"]["usd_per_hour"] == pytest.approx(8 * 2.0)
    assert s["cost"]["pools"][0]["accelerators"] == pytest.approx(8)
    assert s["outcomes"]["completed"] == 2 * int((merged.table.outcome == Outcome.COMPLETED).sum())
    for path in ("latency_s.ttft.p99", "latency_s.e2e.p50", "throughput.requests_per_s", "cost.usd_per_hour"):
        ci = info["ci95"][path]
        assert ci["ci95"] >= 0 and math.isfinite(ci["ci95"]) and len(ci["shard_values"]) == 2
    thr = info["ci95"]["throughput.requests_per_s"]
    assert thr["estimate"] == pytest.approx(4 * thr["shard_mean"])  # k x the mean shard


def test_jobs_2_equals_jobs_1(tmp_path):
    rs = resolved(tmp_path, fleet_doc(shards=2, horizon_s=10.0))
    one, _ = run_sharded(rs, jobs=1)
    two, _ = run_sharded(rs, jobs=2)
    assert one.summary == two.summary


def test_ray_gives_the_merged_summary_of_local_jobs(tmp_path, local_ray):
    for i, doc in enumerate((fleet_doc(shards=2, horizon_s=10.0), window_sample_doc())):  # shards; sampled windows
        rs = resolved(tmp_path / str(i), doc)
        local, _ = run_sharded(rs, jobs=2)
        remote, _ = run_sharded(rs, executor="ray")  # on the fixture's cluster (ray is in the dev extra: runs in CI)
        remote.summary["sharding"]["executor"] = "local"
        assert remote.summary == local.summary


def test_time_windows_keep_every_arrival_once_on_the_original_clock(tmp_path):
    rs = resolved(tmp_path, fleet_doc(shards=1, rate=20.0, horizon_s=30.0, windows=3, window_overlap_s=3.0))
    m, merged = run_sharded(rs)
    t = merged.table.arrival_s
    assert t.min() >= 0 and t.max() < 30.0 and np.all(np.diff(t) >= 0)  # windows in order, no overlap kept
    mean = 20.0 * 30.0
    assert abs(len(t) - mean) < 4 * math.sqrt(mean)
    assert sum(m.summary["outcomes"].values()) == m.summary["window"]["total_requests"]
    assert m.summary["sharding"]["windows"] == 3
    busy = [r["busy_frac"] for r in m.summary["replicas"]]
    assert all(0.0 <= b <= 1.0 + 1e-9 for b in busy)


def test_the_fleet_scenario_runs_sampled_on_a_short_horizon():
    """scenarios/fleet-10k-day.yaml's cheap path (its full day is too long for the suite: test_baselines skips it)."""
    path = SCENARIOS_DIR / "fleet-10k-day.yaml"
    sc = load_scenario(path)
    short = sc.model_copy(update={"sim": sc.sim.model_copy(update={"horizon_s": 60.0, "warmup_s": 10.0})})
    m, _ = simulate_metrics(resolve(short, path))
    s = m.summary
    assert s["sharding"]["sampled"] and s["sharding"]["shards"] == 1000
    pools = {p["pool"]: p["accelerators"] for p in s["cost"]["pools"]}
    assert pools["eu-h200"] == pytest.approx(4000)  # a static cloud pool bills all of its GPUs
    assert 5000 <= pools["us-h100"] <= 6000  # autoscaled: 1,000-2,000 8B replicas provisioned beside 4,000 70B GPUs
    assert s["sharding"]["ci95"]["latency_s.ttft.p99"]["ci95"] >= 0


def _refused(tmp_path: Path, doc: dict[str, Any], field: str, contains: str) -> None:
    path = write_case(tmp_path, doc)
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"])
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}: "), res.output
    assert contains in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_rolling_restarts_couple_the_pool_and_are_refused_with_why(tmp_path):
    doc = fleet_doc()
    doc["faults"] = {"rolling_restarts": [{"pool": "pool", "start_s": 1.0}]}
    _refused(tmp_path, doc, "sharding.shards", "one replica of the whole pool at a time")


def test_a_queue_threshold_that_does_not_split_is_refused(tmp_path):
    doc = fleet_doc(shards=4)
    doc["deployments"].append({**doc["deployments"][0], "name": "dep2"})
    doc["pools"][0]["count"] = 16
    doc["routing"]["routes"] = [{"name": "r", "policy": "nearest", "candidates": ["dep", "dep2"], "max_waiting": 6}]
    doc["traffic"]["classes"][0]["target"] = "r"
    _refused(tmp_path, doc, "routing.routes[0].max_waiting", "do not split into 4 equal shards")


def test_a_closed_loops_request_count_is_split_over_the_shards_with_its_clients(tmp_path):
    doc = fleet_doc(shards=4)
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 8, "requests": 40}
    rs = resolved(tmp_path, doc)
    shard = shard_scenario(rs.scenario, rs.file, 4)
    assert (shard.traffic.arrival.concurrency, shard.traffic.arrival.requests) == (2, 10)
    doc["traffic"]["arrival"]["requests"] = 42
    _refused(tmp_path, doc, "traffic.arrival.requests", "do not split into 4 equal shards")


@pytest.mark.parametrize("arrival, why", [
    ({"process": "closed", "concurrency": 8, "requests": 40}, "request count is one benchmark from a cold start"),
    ({"process": "closed", "concurrency": 8, "ramp_up_s": 5.0}, "ramp in over ramp_up_s"),
])
def test_what_time_windows_would_repeat_in_every_window_is_refused(tmp_path, arrival, why):
    doc = fleet_doc(shards=1, windows=2, window_overlap_s=2.0)
    doc["traffic"]["arrival"] = arrival
    _refused(tmp_path, doc, "sharding.windows", why)
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 8, "ramp_up_s": 1.0}  # inside the overlap: fine
    res = runner.invoke(app, ["validate", str(write_case(tmp_path / "ok", doc))])
    assert res.exit_code == 0, res.output


def test_replicas_that_do_not_split_are_refused(tmp_path):
    _refused(tmp_path, fleet_doc(shards=3), "pools[0].count", "do not split into 3 equal shards")


@pytest.mark.parametrize("field,value,named", [
    ("shards", 0, "sharding.shards"), ("shards", -1, "sharding.shards"), ("shards", 1e300, "sharding.shards"),
    ("shards", "four", "sharding.shards"), ("shards", float("nan"), "sharding.shards"),
    ("shards", True, "sharding.shards"), ("shards", 10**9, "sharding.shards"),
    ("sample_shards", 1, "sharding.sample_shards"), ("sample_shards", 8, "sharding"),
    ("windows", 0, "sharding.windows"), ("windows", float("inf"), "sharding.windows"),
    *(("window_overlap_s", v, "sharding.window_overlap_s") for v in (-1.0, float("nan"), float("inf"), "long")),
    ("colour", 1, "sharding.colour"),
])
def test_hostile_sharding_values_are_refused_in_one_line(tmp_path, field, value, named):
    doc = fleet_doc(shards=4)
    doc["sharding"][field] = value
    path = write_case(tmp_path, doc)
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {named}: "), res.output


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--jobs", "-3"], ["--jobs", "1e9"], ["--executor", "spark"]])
def test_hostile_executor_flags_are_refused(tmp_path, args):
    path = write_case(tmp_path, fleet_doc(shards=2, horizon_s=5.0))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet", *args])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_sharding_defaults_leave_a_scenario_unsharded(tmp_path):
    doc = fleet_doc(shards=1)
    rs = resolved(tmp_path, doc)
    m, result = simulate_metrics(rs, keep_logs=0, trace_tasks=0)
    assert "sharding" not in m.summary
    plain = compute_metrics(simulate(rs, keep_logs=0), trace_tasks=0).summary
    assert m.summary == plain


def test_a_route_across_deployments_is_sharded_with_its_deployments(tmp_path):
    """Each shard holds every deployment, so a route between them works inside each shard (the coupled group is
    sharded together): a 50/50 weighted route still splits the merged traffic evenly."""
    doc = fleet_doc(shards=4, rate=40.0)
    doc["deployments"].append({**doc["deployments"][0], "name": "dep2"})
    doc["pools"][0]["count"] = 16
    doc["routing"]["routes"] = [{"name": "r", "policy": "weighted", "weights": {"dep": 1.0, "dep2": 1.0}}]
    doc["traffic"]["classes"][0]["target"] = "r"
    m, merged = run_sharded(resolved(tmp_path, doc))
    n = len(merged.table)
    to_first = int((merged.table.deployment_id == 0).sum())
    assert abs(to_first - n / 2) < 4 * math.sqrt(n / 4)  # binomial(n, 1/2): sd sqrt(n)/2
    assert {d["name"]: d["replicas"] for d in m.summary["deployments"]} == {"dep": 8, "dep2": 8}


def test_replications_of_a_sharded_scenario_are_refused(tmp_path):
    path = write_case(tmp_path, fleet_doc(shards=2, horizon_s=5.0))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "-R", "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output and "--replications" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_a_sampled_run_writes_its_intervals_into_summary_md(tmp_path):
    path = write_case(tmp_path, fleet_doc(shards=4, sample_shards=2, horizon_s=10.0))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "2 of 4 shards simulated" in res.output and "95% CI" in res.output
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "## Sharding" in md and "2 simulated shards stand for 4" in md and "latency_s.ttft.p99" in md


def test_commands_that_simulate_one_run_whole_refuse_a_sharded_scenario(tmp_path):
    """Its work limits were checked per part: simulated whole it could be far past them (a hang), so the
    single-run simulator refuses it in one line."""
    rs = resolved(tmp_path, fleet_doc(shards=2, horizon_s=5.0))
    with pytest.raises(InputError, match="sharding: a sharded scenario is simulated in parts"):
        simulate(rs)


def test_shards_with_time_windows_keep_every_arrival(tmp_path):
    rs = resolved(tmp_path, fleet_doc(shards=2, rate=20.0, horizon_s=20.0, windows=2, window_overlap_s=2.0))
    m, merged = run_sharded(rs)
    mean = 20.0 * 20.0
    assert abs(len(merged.table) - mean) < 4 * math.sqrt(mean)
    assert sum(m.summary["outcomes"].values()) == m.summary["window"]["total_requests"] == len(merged.table)
    assert m.summary["sharding"]["simulations"] == 4 and len(m.summary["replicas"]) == 8


def test_scaling_a_sampled_summary_multiplies_totals_and_keeps_ratios():
    from simfactory.fleet.sampling import scale_summary

    s = {"outcomes": {"completed": 3, "failed": 1}, "throughput": {"requests_per_s": 2.0},
         "cost": {"usd_per_hour": 5.0, "usd_per_1m_output_tokens": 1.5,
                  "pools": [{"accelerators": 2, "load_fraction": 0.5, "breakdown_usd_per_hour": {"cloud": 5.0}}]},
         "latency_s": {"ttft": {"count": 10, "p99": 0.1}}, "finance": {"unit_economics": {"tokens_per_usd": 7.0},
         "cost_stack": {"lines": [{"quantity": 2.0, "quantity_unit": "hours", "usd": 1.0},
                                  {"quantity": 3.0, "quantity_unit": "GB", "usd": 1.0}]}},
         "replicas": [{"steps": 5}], "window": {"warmup_s": 10.0, "horizon_s": 60.0, "measured_requests": 9}}
    out = scale_summary(s, 4.0)
    assert out["outcomes"] == {"completed": 12, "failed": 4}
    assert out["throughput"]["requests_per_s"] == 8.0 and out["cost"]["usd_per_hour"] == 20.0
    assert out["cost"]["usd_per_1m_output_tokens"] == 1.5  # a unit cost: the same for a shard and the fleet
    assert out["cost"]["pools"][0] == {"accelerators": 8, "load_fraction": 0.5,
                                       "breakdown_usd_per_hour": {"cloud": 20.0}}  # every part, as its total
    assert out["latency_s"]["ttft"] == {"count": 40, "p99": 0.1}
    assert out["finance"]["unit_economics"]["tokens_per_usd"] == 7.0
    assert [line["quantity"] for line in out["finance"]["cost_stack"]["lines"]] == [2.0, 12.0]  # hours stay the window
    assert out["replicas"] == [{"steps": 5}]  # the simulated replicas, listed as they ran
    assert out["window"] == {"warmup_s": 10.0, "horizon_s": 60.0, "measured_requests": 36}


def test_an_outage_across_a_window_edge_is_one_failure_per_replica(tmp_path):
    doc = fleet_doc(shards=1, replicas=2, rate=5.0, horizon_s=20.0, windows=2, window_overlap_s=2.0)
    doc["faults"] = {"outages": [{"pool": "pool", "start_s": 8.0, "duration_s": 6.0}]}
    _, merged = run_sharded(resolved(tmp_path, doc))
    spans = sorted((r, a, b) for r, a, b in merged.faults.failures)
    assert spans == [(0, 8.0, 14.0), (1, 8.0, 14.0)]


def test_a_load_aware_balancer_over_small_shards_is_run_but_said(tmp_path):
    """least_outstanding over a shard's replicas is not the fleet's: below 64 replicas a shard its measured TTFT bias
    passes 2%, so the resolve says it (naming the deployment and its replicas a shard); random balancing is exact."""
    said = resolved(tmp_path, fleet_doc(balancer="least_outstanding")).warnings
    assert any("sharding.shards: least_outstanding" in w and "(2)" in w and "TTFT is not the fleet's" in w for w in said)
    assert not any("sharding.shards" in w for w in resolved(tmp_path, fleet_doc()).warnings)
    assert not any("sharding.shards" in w for w in resolved(tmp_path, fleet_doc(shards=1,
                                                                                balancer="least_outstanding")).warnings)


@pytest.mark.parametrize("args, flag", [(["--jobs", "2"], "--jobs"), (["--executor", "ray"], "--executor")])
def test_parallel_flags_on_an_unsharded_scenario_are_said_not_ignored(tmp_path, args, flag):
    path = write_case(tmp_path, fleet_doc(shards=1, horizon_s=5.0))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet", *args])
    assert res.exit_code == 0, res.output
    assert f"warning: {flag}:" in res.output and "runs as one simulation in this process" in res.output


def test_a_sampled_run_charges_what_the_fleet_holds_once_as_the_whole_run_does(tmp_path):
    """Per-fleet costs (one copy of the weights, clusters, IOPS, a support plan tiered on the whole bill) are priced
    at the shards' share before scaling, so 2 of 4 sampled shards give the full run's lines; per-hour breakdowns
    scale like their totals."""
    fin = {"cost_stack": {"storage": {"provisioned_iops": 6000, "usd_per_iops_month": 0.005},
                          "orchestration": {"clusters": 2}, "support": {"cloud_plan": "price_book"},
                          "replication": {"copies": 1, "gb": 100.0}}}
    runs = {}
    for name, sample in (("all", {}), ("sampled", {"sample_shards": 2})):
        doc = fleet_doc(shards=4, **sample)
        doc["finance"] = fin
        runs[name], _ = run_sharded(resolved(tmp_path / name, doc))
    lines = {name: {x["key"]: x for x in m.summary["finance"]["cost_stack"]["lines"]} for name, m in runs.items()}
    for key in ("storage_weights", "storage_iops", "orchestration_control_plane", "replication", "compute"):
        assert lines["sampled"][key]["usd"] == pytest.approx(lines["all"][key]["usd"], rel=1e-9), key
        assert lines["sampled"][key]["quantity"] == pytest.approx(lines["all"][key]["quantity"], rel=1e-9), key
    # the support plan's tiers apply to the fleet's bill (which differs only by the sampled shards' egress)
    assert lines["sampled"]["support"]["usd"] == pytest.approx(lines["all"]["support"]["usd"], rel=1e-6)
    assert "x 2 for the fleet" in lines["sampled"]["compute"]["basis"]
    pools = [m.summary["cost"]["pools"][0] for m in runs.values()]
    assert pools[0]["breakdown_usd_per_hour"] == pools[1]["breakdown_usd_per_hour"]
    assert pools[1]["breakdown_usd_per_hour"]["cloud"] == pytest.approx(pools[1]["usd_per_hour"])


def window_sample_doc(**extra: Any) -> dict[str, Any]:
    """8 replicas under least_outstanding over 42 s: 2 s warm-up, then 8 windows of 5 s, 4 of them simulated."""
    return fleet_doc(shards=1, rate=40.0, horizon_s=42.0, balancer="least_outstanding",
                     **{"windows": 8, "sample_windows": 4, "window_overlap_s": 2.0, **extra})


def test_sampled_windows_keep_every_replica_and_stand_for_the_measured_span(tmp_path):
    """The middle window of each of 4 stretches of the measured span [2, 42) s, each with all 8 replicas (so a
    load-aware balancer sees the whole pool, as shards would not), scaled by 8 / 4."""
    rs = resolved(tmp_path, window_sample_doc())
    assert not any("sharding" in w for w in rs.warnings)  # no shard approximation to warn of
    m, joined = run_sharded(rs)
    s, info = m.summary, m.summary["sharding"]
    assert info["simulated_windows"] == [1, 3, 5, 7] and info["window_s"] == 5.0 and info["scale"] == 2.0
    assert info["stands_for"] == "4 simulated windows stand for 8" and info["simulations"] == 4
    assert info["window_seeds"] == [part_seed(3, 0, w, 8) for w in (1, 3, 5, 7)]
    assert len(s["replicas"]) == 8 and {int(r) for r in joined.table.replica} == set(range(8))
    measured = int(np.count_nonzero(joined.table.arrival_s >= 0))  # the first window's in-flight rows arrived before
    assert s["window"]["measured_requests"] == 2 * measured
    assert s["window"]["warmup_s"] == 2.0 and s["window"]["horizon_s"] == 42.0
    mean = 40.0 * 40.0  # Poisson arrivals over the 40 s measured: the scaled count has variance 2^2 x 800
    assert abs(s["window"]["measured_requests"] - mean) < 5 * math.sqrt(4 * mean / 2)
    assert s["throughput"]["requests_per_s"] == pytest.approx(40.0, rel=0.15)  # a rate: not scaled
    assert s["cost"]["usd_per_hour"] == pytest.approx(8 * 2.0)  # 8 cloud GPUs at 2 USD/h: a level, not scaled
    assert s["cost"]["window_usd"] == pytest.approx(8 * 2.0 * 40.0 / 3600.0)  # a total over the 40 s measured
    ci = info["ci95"]["cost.window_usd"]
    assert len(ci["window_values"]) == 4 and ci["estimate"] == pytest.approx(8 * ci["window_mean"])


def test_sampled_windows_give_the_same_summary_with_any_job_count(tmp_path):
    rs = resolved(tmp_path, window_sample_doc())
    assert run_sharded(rs, jobs=1)[0].summary == run_sharded(rs, jobs=2)[0].summary


def test_sampled_windows_are_reported_as_such(tmp_path):
    path = write_case(tmp_path, window_sample_doc())
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "4 of 8 windows simulated, every replica in each" in res.output and "95% CI" in res.output
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "4 of 8 time windows of 5 s simulated with every replica" in md and "simulated windows" in md


@pytest.mark.parametrize("change, field, why", [
    ({"sample_windows": 3}, "sharding", "must divide windows"),
    ({"shards": 2}, "sharding", "sample shards (sample_shards) instead"),
    ({"window_overlap_s": 2.0, "windows": 8}, "sim.warmup_s", "not a whole number of timeline samples"),
    ({"outages": True}, "sharding.sample_windows", "faults.outages happen at set times"),
])
def test_what_a_window_sample_cannot_stand_for_is_refused(tmp_path, change, field, why):
    doc = window_sample_doc()
    if change.pop("outages", False):
        doc["faults"] = {"outages": [{"pool": "pool", "start_s": 10.0, "duration_s": 5.0}]}
    if field == "sim.warmup_s":
        doc["sim"]["warmup_s"] = 2.5
    doc["sharding"].update(change)
    path = write_case(tmp_path, doc)
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"{path}: {field}" in res.output and why in res.output, res.output
