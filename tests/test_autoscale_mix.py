"""Requests per second are not work: when the request mix shifts at an unchanged request rate, an RPS autoscaler
keeps its replica count while the composite signal (queue, in flight, KV and the TTFT tail) follows the work.
So an RPS target sized for the light mix misses the SLO in the heavy one, and one sized for the heavy mix pays
for heavy-mix capacity all day (scenarios/autoscale-rps*.yaml vs autoscale-composite.yaml, full size). Here the
heavy requests are long answers, so the composite's in-flight term sees the work by Little's law (in flight =
rate x time in system); in the shipped day they are long prompts and its KV and TTFT terms see it."""

from __future__ import annotations

import copy

import pytest
from conftest import scenario_doc, write_case

from simfactory.metrics.summary import compute_metrics
from simfactory.resolve import load_and_resolve
from simfactory.sim.run import simulate

RATE_PER_S = 8.0  # the same in both halves: only the mix shifts
HALF_S = 150.0  # light requests in [0, HALF_S), heavy in [HALF_S, 2 x HALF_S)
STEP_S = 0.01  # every decode step; a request of k output tokens holds its slot ~k steps
MAX_NUM_SEQS = 12
LIGHT_OUTPUT_TOKENS = 5  # ~0.05 s each: 8 req/s keep 0.4 slots busy (Little's law)
HEAVY_OUTPUT_TOKENS = 200  # ~2 s each: 8 req/s keep 16 slots busy, more than one replica's 12
TTFT_SLO_S = 1.0
HEAVY_REPLICAS = 3  # 16 slots busy over 3 replicas: 5.3 of 12 each, well inside the SLO


def _only_in(window: int) -> dict:
    """A near-constant rate (gap cv 0.01) of RATE_PER_S in one half of the run and nothing in the other."""
    rates = [0.0, 0.0]
    rates[window] = RATE_PER_S
    return {"process": "schedule", "window_s": HALF_S, "rates_per_s": rates, "cv": 0.01, "repeat": False}


def _doc(**auto) -> dict:
    doc = scenario_doc(replicas=1, horizon_s=2 * HALF_S, max_num_seqs=MAX_NUM_SEQS)
    doc["pools"][0]["count"] = 4
    doc["deployments"][0]["autoscaling"] = {"min_replicas": 1, "max_replicas": 4, "interval_s": 5, "cold_start_s": 10,
                                            "weights_load_gb_s": 1e6, "scale_down_cooldown_s": 30, **auto}
    doc["service_classes"] = [{"name": "interactive", "slo": {"ttft_s": TTFT_SLO_S}}]
    fixed = {"kind": "fixed"}
    doc["traffic"] = {"classes": [
        {"name": name, "target": "dep", "service_class": "interactive", "arrival": _only_in(half),
         "input_tokens": {**fixed, "value": 20}, "output_tokens": {**fixed, "value": tokens}}
        for half, (name, tokens) in enumerate([("light", LIGHT_OUTPUT_TOKENS), ("heavy", HEAVY_OUTPUT_TOKENS)])]}
    return doc


SIGNALS = {
    # sized for the light mix: one replica takes the whole rate
    "rps_light": {"signal": "rps", "target": RATE_PER_S},
    # sized for the heavy mix: the rate over the replicas the heavy half needs
    "rps_heavy": {"signal": "rps", "target": RATE_PER_S / HEAVY_REPLICAS},
    # in flight 6 per replica: the heavy half's 16 busy slots ask for ceil(16 / 6) = 3 replicas, the light half's 1
    "composite": {"signal": "composite", "target": 6, "queue_target": 4, "kv_target": 0.8,
                  "ttft_target_s": TTFT_SLO_S / 2, "ttft_quantile": 0.95},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each signal on the same seeded day: its autoscale log and its summary."""
    out = {}
    step = {"overhead_s": STEP_S}
    for name, auto in SIGNALS.items():
        path = write_case(tmp_path_factory.mktemp(name), copy.deepcopy(_doc(**auto)), step)
        result = simulate(load_and_resolve(path))
        out[name] = (result.autoscale["dep"], compute_metrics(result).summary)
    return out


def test_the_traffic_shifts_its_mix_at_an_unchanged_request_rate(runs):
    _, s = runs["rps_light"]
    light, heavy = s["classes"]["light"]["requests"], s["classes"]["heavy"]["requests"]
    # the same rate in both halves (near-constant gaps): the counts differ by at most a request or two
    assert abs(light - heavy) <= 2 and light == pytest.approx(RATE_PER_S * HALF_S, abs=2)


def test_rps_holds_its_count_through_the_shift_while_composite_follows_the_work(runs):
    settle_s = 40.0  # past the first decisions (the RPS signal reads 0 before the first interval)
    for name in ("rps_light", "rps_heavy"):
        log, _ = runs[name]
        before = log.provisioned_at(HALF_S - 1e-6)
        assert before == max(1, round(RATE_PER_S / SIGNALS[name]["target"]))  # ceil(rate / target)
        after = {log.provisioned_at(t) for t in (HALF_S + settle_s, 2 * HALF_S - 1e-6)}
        assert after == {before}, f"{name}: {before} replicas before the shift, {after} after"
        assert not [t for t, kind, _ in log.events if kind == "boot" and t > settle_s]
    log, _ = runs["composite"]
    light = log.peak_provisioned(settle_s, HALF_S)
    heavy = log.peak_provisioned(HALF_S, 2 * HALF_S)
    assert light == 1 and heavy >= 2, (light, heavy)  # the same request rate, twice the replicas or more


def test_composite_meets_the_slo_of_the_heavy_sized_rps_at_less_cost(runs):
    attainment = {n: s["service"]["slo_attainment"] for n, (_, s) in runs.items()}
    replica_s = {n: log.provisioned_replica_s(0.0, 2 * HALF_S) for n, (log, _) in runs.items()}
    usd_per_hour = {n: s["cost"]["usd_per_hour"] for n, (_, s) in runs.items()}
    # sized for the light mix: one replica in the heavy half, whose 12 slots serve 6 of the 8 req/s: the queue grows
    assert attainment["rps_light"] < 0.75, attainment
    # composite misses only the heavy requests that queue while its first replicas boot (~5% here)
    assert attainment["composite"] > 0.9 and attainment["composite"] > attainment["rps_light"] + 0.15, attainment
    # sized for the heavy mix: HEAVY_REPLICAS all day, though the light half needs one
    assert replica_s["composite"] < replica_s["rps_heavy"], replica_s
    assert usd_per_hour["composite"] < usd_per_hour["rps_heavy"], usd_per_hour
    # and cost follows the provisioned replica-seconds (cloud bills what is provisioned)
    for n in runs:
        assert usd_per_hour[n] / usd_per_hour["rps_heavy"] == pytest.approx(replica_s[n] / replica_s["rps_heavy"])
