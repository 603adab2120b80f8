"""Replica failures: availability = MTBF / (MTBF + MTTR); lost work equals failures x what a replica holds;
nothing vanishes without retries; retries add the load they should."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import scenario_doc

from simfactory.metrics.summary import compute_metrics
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import simulate

MTBF, MTTR = 60.0, 15.0


def _doc(retry=None, horizon=6000.0, rate=0.5, health=0.0):
    doc = scenario_doc(replicas=1, rate=rate, output_tokens={"kind": "geometric", "mean": 20}, horizon_s=horizon)
    doc["faults"] = {"replica_failures": [{"pool": "pool", "mtbf_s": MTBF, "mttr_s": MTTR,
                                           "health_check_delay_s": health}]}
    if retry is not None:
        doc["faults"]["retry"] = retry
    return doc


def test_availability_matches_mtbf_over_mtbf_plus_mttr(case):
    result = simulate(case(_doc(horizon=30000.0, rate=0.05)), seed=3)
    log = result.faults
    n = len(log.failures)
    assert n > 300
    up = 1.0 - log.down_s(0, 0.0, result.end_s) / result.end_s
    expected = MTBF / (MTBF + MTTR)
    # alternating renewal process: the up fraction over n cycles has sd ~ sqrt(var(up)+var(down)) ... per cycle
    cycle = MTBF + MTTR
    sd = math.sqrt((MTBF**2 * MTTR**2 + MTTR**2 * MTBF**2) / cycle**2 / n) / cycle
    assert abs(up - expected) < 4 * sd + 0.005, (up, expected, sd)


def test_without_retries_every_lost_request_is_reported_failed(case):
    result = simulate(case(_doc(horizon=3000.0)), seed=1)
    t = result.table
    lost = {rid for _, _, rid in result.faults.lost}
    failed = set(np.flatnonzero(t.outcome == Outcome.FAILED))
    assert lost and failed == lost
    assert (t.outcome != Outcome.PENDING).all()
    s = compute_metrics(result).summary
    assert sum(s["outcomes"].values()) == len(t.outcome)  # nothing vanished
    r = s["resilience"]
    assert r["requests_lost"] == r["failed"] == len(lost) and r["retries"] == 0
    assert r["slo_attainment_in_fault_windows"] is not None


def test_lost_requests_are_failures_times_what_a_replica_holds(case):
    """Failures are Poisson in up time, so a failure sees the time-average load (PASTA): the mean number lost per
    failure equals the time-average number a replica holds (running + queued) while up, within a CI."""
    result = simulate(case(_doc(horizon=40000.0, rate=0.5)), seed=5)
    log = result.faults
    starts = np.array([a for _, a, _ in log.failures])
    per_failure = np.zeros(len(starts))
    for t, _, _ in log.lost:
        per_failure[np.searchsorted(starts, t, side="right") - 1] += 1
    rtl = compute_metrics(result).replica_timelines
    held = (rtl["running"] + rtl["waiting"]).to_numpy(dtype=float)
    times = rtl["time_s"].to_numpy()
    up = np.ones(len(rtl), dtype=bool)
    for _, a, b in log.failures:
        up &= ~((times >= a) & (times < (result.end_s if b != b else b)))
    se = per_failure.std(ddof=1) / math.sqrt(len(per_failure))
    assert abs(per_failure.mean() - held[up].mean()) < 4 * se, (per_failure.mean(), held[up].mean(), se)
    assert per_failure.sum() == len(log.lost)


def test_retries_add_load_and_recover_requests(case):
    result = simulate(case(_doc(retry={"max_retries": 3, "backoff_s": 1.0}, horizon=3000.0)), seed=1)
    s = compute_metrics(result).summary
    r = s["resilience"]
    t = result.table
    first = int((t.attempt == 0).sum())
    assert r["retries"] > 0
    assert r["offered_load_factor"] == pytest.approx((first + r["retries"]) / first)
    assert len(t.outcome) == first + r["retries"]  # every retry is a new attempt row
    assert r["requests_lost"] == r["retries"] + r["failed"]  # each lost request is retried or failed
    assert sum(s["outcomes"].values()) == len(t.outcome)
    # the retry budget caps retries at a share of arrivals
    capped = simulate(case(_doc(retry={"max_retries": 3, "backoff_s": 1.0, "budget_ratio": 0.001},
                                horizon=3000.0)), seed=1)
    assert capped.faults.retries <= 0.001 * len(capped.table.outcome) + 1


def test_outage_loses_what_the_pool_held_and_requests_wait_it_out(case):
    doc = _doc(horizon=400.0, rate=2.0)
    doc["faults"] = {"outages": [{"pool": "pool", "start_s": 100.0, "duration_s": 50.0}]}
    result = simulate(case(doc), seed=2)
    t = result.table
    during = (t.arrival_s >= 100.0) & (t.arrival_s < 150.0)
    assert during.sum() > 50
    # nothing starts during the outage; requests that arrived in it start once it is over
    assert np.all(t.first_scheduled_s[during] >= 150.0 - 1e-9)
    assert (t.outcome != Outcome.PENDING).all()
    m = compute_metrics(result)
    s = m.summary
    assert s["resilience"]["failures"] == 1 and s["resilience"]["mean_time_to_repair_s"] == pytest.approx(50.0)
    # the window on its own: its arrivals, their attainment and goodput (SLO-met requests per second of it)
    w = s["resilience"]["by_window"]
    assert [(row["start_s"], row["end_s"]) for row in w] == [(100.0, 150.0)]
    from simfactory.metrics.slo import logical_requests, meets_slo

    lreq = logical_requests(m.requests)
    lreq["slo_met"] = meets_slo(lreq, result.resolved)
    inside = (lreq["arrival_s"] >= 100.0) & (lreq["arrival_s"] < 150.0)
    assert w[0]["requests"] == int(inside.sum())
    assert w[0]["slo_attainment"] == pytest.approx(lreq.loc[inside, "slo_met"].mean())
    assert w[0]["goodput_rps"] == pytest.approx(lreq.loc[inside, "slo_met"].sum() / 50.0)
    outside_s = result.end_s - 50.0
    assert s["resilience"]["goodput_rps_outside"] == pytest.approx(lreq.loc[~inside, "slo_met"].sum() / outside_s)


def test_unknown_fault_pool_is_rejected(case):
    from simfactory.errors import InputErrors

    doc = _doc()
    doc["faults"]["replica_failures"][0]["pool"] = "nope"
    with pytest.raises(InputErrors) as e:
        case(doc)
    assert "faults.replica_failures[0].pool: unknown pool 'nope'" in str(e.value)


def test_spot_reclamation_with_notice_loses_less_than_without(case):
    def run(notice):
        doc = _doc(horizon=6000.0, rate=1.0)
        doc["faults"] = {"spot_reclamations": [{"pool": "pool", "per_replica_hour": 60.0, "notice_s": notice,
                                                "replacement_s": 10.0}]}
        return simulate(case(doc), seed=4)

    abrupt, noticed = run(0.0), run(30.0)
    assert len(abrupt.faults.failures) > 50
    # with notice the router stops sending first and the replica drains what it holds
    assert len(noticed.faults.lost) < len(abrupt.faults.lost)


def test_tool_brownout_fails_and_slows_calls_only_inside_its_window(case):
    from conftest import agent_doc, agent_scenario

    from simfactory.api import run

    steps = [{"type": "tool", "name": "api", "service": "svc", "latency_s": {"kind": "fixed", "value": 1.0}}]
    doc = agent_scenario(rate=2.0, horizon_s=300.0, process="constant")
    doc["faults"] = {"tool_brownouts": [{"service": "svc", "start_s": 100.0, "duration_s": 100.0, "error_rate": 0.5,
                                         "latency_multiplier": 5.0}]}
    tasks = run(case(doc, None, {"agent": agent_doc(steps, tools=[{"name": "svc"}])})).tasks
    inside = (tasks["start_s"] >= 100.0) & (tasks["start_s"] < 200.0)
    outside = ~inside & (tasks["start_s"] < 295.0)
    assert (tasks.loc[outside, "outcome"] == "completed").all()
    assert np.allclose(tasks.loc[outside, "e2e_s"], 1.0)
    failed = (tasks.loc[inside, "outcome"] == "failed").mean()
    n = int(inside.sum())
    assert abs(failed - 0.5) < 4 * math.sqrt(0.25 / n)
    assert np.allclose(tasks.loc[inside, "e2e_s"], 5.0)  # a failed call still takes its (slowed) time
    with pytest.raises(Exception) as e:
        doc["faults"]["tool_brownouts"][0]["service"] = "nope"
        case(doc, None, {"agent": agent_doc(steps, tools=[{"name": "svc"}])})
    assert "faults.tool_brownouts[0].service: no agent tool 'nope' (tools: svc)" in str(e.value)


def test_retrieval_brownout_fails_and_slows_lookups_only_inside_its_window_and_spares_cache_hits(case):
    from conftest import agent_doc, agent_scenario

    from simfactory.api import run

    steps = [{"type": "retrieval", "name": "kb", "latency_s": {"kind": "fixed", "value": 1.0},
              "hit_tokens": {"kind": "fixed", "value": 10}}]
    doc = agent_scenario(rate=2.0, horizon_s=300.0, process="constant")
    doc["faults"] = {"retrieval_brownouts": [{"start_s": 100.0, "duration_s": 100.0, "error_rate": 0.5,
                                              "latency_multiplier": 4.0}]}
    m = run(case(doc, None, {"agent": agent_doc(steps)}))
    tasks = m.tasks
    inside = (tasks["start_s"] >= 100.0) & (tasks["start_s"] < 200.0)
    outside = ~inside & (tasks["start_s"] < 295.0)
    assert (tasks.loc[outside, "outcome"] == "completed").all() and np.allclose(tasks.loc[outside, "e2e_s"], 1.0)
    failed = (tasks.loc[inside, "outcome"] == "failed").mean()
    n = int(inside.sum())
    assert abs(failed - 0.5) < 4 * math.sqrt(0.25 / n)
    assert np.allclose(tasks.loc[inside, "e2e_s"], 4.0)
    assert m.summary["resilience"]["windows"] == [[-1, 100.0, 200.0]]

    # lookups answered by the agent-side cache never reach the browned-out store
    cached = [{**steps[0], "cache_hit_ratio": 1.0, "cache_latency_s": {"kind": "fixed", "value": 0.01}}]
    tasks = run(case(doc, None, {"agent": agent_doc(cached)})).tasks
    assert (tasks["outcome"] == "completed").all() and np.allclose(tasks["e2e_s"], 0.01)

    doc["faults"]["retrieval_brownouts"][0]["workload"] = "nope"
    with pytest.raises(Exception) as e:
        case(doc, None, {"agent": agent_doc(steps)})
    assert "faults.retrieval_brownouts[0].workload: no agent workload 'nope' (workloads: agent)" in str(e.value)


def test_rolling_restart_takes_one_replica_at_a_time_and_loses_nothing_with_enough_drain(case):
    doc = scenario_doc(replicas=3, rate=3.0, output_tokens={"kind": "fixed", "value": 20}, horizon_s=300.0)
    doc["faults"] = {"rolling_restarts": [{"pool": "pool", "start_s": 50.0, "drain_s": 30.0, "load_s": 20.0}]}
    result = simulate(case(doc), seed=1)
    windows = sorted((a, b) for _, a, b in result.faults.failures)
    assert len(windows) == 3
    for (a1, b1), (a2, _) in zip(windows, windows[1:]):
        assert a2 >= b1  # never two replicas down at once
    assert all(b - a >= 20.0 for a, b in windows)
    assert result.faults.lost == []  # 0.2 s requests drain well within 30 s
    assert (result.table.outcome == Outcome.COMPLETED).all()


def test_retry_amplification_follows_the_geometric_series(case):
    """Each attempt is lost with probability p (independently): with r retries a request makes
    (1 - p^(r+1)) / (1 - p) attempts on average, the load amplification a retry storm shows."""
    r = 3
    result = simulate(case(_doc(retry={"max_retries": r, "backoff_s": 0.5}, horizon=20000.0, rate=2.0)), seed=9)
    t = result.table
    attempts = len(t.outcome)
    first = int((t.attempt == 0).sum())
    p = len(result.faults.lost) / attempts
    expected = (1 - p ** (r + 1)) / (1 - p)
    assert p > 0.01
    assert attempts / first == pytest.approx(expected, rel=0.02)


def test_per_device_mtbf_scales_with_the_tp_group(case):
    """A replica on tp devices fails when any of them does: its failure rate is tp / device MTBF."""
    doc = scenario_doc(replicas=1, rate=0.05, output_tokens={"kind": "fixed", "value": 5}, horizon_s=20000.0, tp=4,
                       kv_cache_tokens=100000)
    doc["pools"][0]["sku"] = "h100-sxm"  # a real profile: NVLink between the TP group
    doc["faults"] = {"replica_failures": [{"pool": "pool", "mtbf_s": 400.0, "mttr_s": 1.0, "per": "device"}]}
    result = simulate(case(doc), seed=3)
    n = len(result.faults.failures)
    expected = result.end_s / (400.0 / 4 + 1.0)
    assert abs(n - expected) < 4 * math.sqrt(expected)
