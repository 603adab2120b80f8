"""Autoscaling: replicas follow the load after the provisioning delay, stay within bounds, scale to zero
and back, and cloud cost is the provisioned accelerator-hours."""

from __future__ import annotations


import numpy as np
import pytest
from conftest import scenario_doc

from simfactory.metrics.summary import compute_metrics
from simfactory.sim.run import simulate

COLD_S = 20.0


def _doc(**auto):
    doc = scenario_doc(replicas=1, rate=2.0, output_tokens={"kind": "fixed", "value": 50}, horizon_s=400.0,
                       max_num_seqs=4)
    doc["pools"][0]["count"] = 4
    doc["deployments"][0]["autoscaling"] = {"min_replicas": 1, "max_replicas": 4, "signal": "in_flight", "target": 2,
                                            "interval_s": 5, "cold_start_s": COLD_S, "weights_load_gb_s": 1e6,
                                            "scale_down_cooldown_s": 30, **auto}
    return doc


def test_step_in_load_scales_up_after_the_delay_within_bounds(case):
    doc = _doc()
    doc["traffic"]["arrival"] = {"process": "diurnal", "mean_rate_per_s": 2.0, "period_s": 400.0,
                                 "hourly_multipliers": [0.5] * 6 + [6.0] * 18}  # a step at t = 100 s
    rs = case(doc)
    result = simulate(rs)
    log = result.autoscale["dep"]
    delay = log.delay_s
    assert delay == pytest.approx(COLD_S, abs=0.01)  # weights load is ~instant at this bandwidth
    boots = {(t, i) for t, k, i in log.events if k == "boot"}
    actives = [(t, i) for t, k, i in log.events if k == "active"]
    assert actives, "the step must trigger a scale-up"
    for t, i in actives:  # every replica serves exactly one delay after its boot started
        assert any(abs(t - (b + delay)) < 1e-9 and j == i for b, j in boots)
        assert t >= 100.0 + delay - 1e-9  # not before the load rose and the delay passed
    times = sorted({a for a, _ in log.intervals} | {b for _, b in log.intervals if b == b})
    assert max(log.provisioned_at(t) for t in times) <= 4
    s = compute_metrics(result).summary
    assert s["autoscaling"]["dep"]["replicas_max"] > 1
    assert sum(s["outcomes"].values()) == s["window"]["total_requests"]


def test_cloud_cost_is_the_provisioned_accelerator_hours(case):
    doc = _doc()
    doc["traffic"]["arrival"] = {"process": "diurnal", "mean_rate_per_s": 2.0, "period_s": 400.0,
                                 "peak_to_trough": 8, "peak_hour": 12}
    result = simulate(case(doc))
    s = compute_metrics(result).summary
    window_s = 400.0
    replica_s = result.autoscale["dep"].provisioned_replica_s(0.0, window_s)
    price = 2.0  # the test profile's cloud price per accelerator-hour
    assert s["cost"]["usd_per_hour"] * window_s / 3600 == pytest.approx(price * replica_s / 3600)
    assert s["autoscaling"]["dep"]["provisioned_accelerator_hours"] == pytest.approx(replica_s / 3600)
    # the sampled timeline integrates to the same replica-hours, up to one sample per change
    from simfactory.metrics.frames import system_timeline_frame

    tl = system_timeline_frame(result)
    tl = tl[tl["time_s"] < window_s]
    changes = len(result.autoscale["dep"].events)
    assert abs(tl["replicas.dep"].sum() * 1.0 - replica_s) <= changes * 1.0 + 1.0


def test_scale_to_zero_and_back(case):
    doc = _doc(min_replicas=0, scale_down_cooldown_s=10)
    doc["traffic"]["arrival"] = {"process": "diurnal", "mean_rate_per_s": 1.0, "period_s": 400.0,
                                 "hourly_multipliers": [0.0] * 12 + [1.0] * 12}  # nothing before t = 200 s
    result = simulate(case(doc))
    log = result.autoscale["dep"]
    assert any(k == "released" for _, k, _ in log.events)
    zero_at = [t for t in np.arange(0, 200, 1.0) if log.provisioned_at(float(t)) == 0]
    assert zero_at, "no load: the deployment must scale to zero"
    t = result.table
    first = int(np.argmin(t.arrival_s))
    assert t.arrival_s[first] >= 200.0
    # the first request waits for a replica to boot: at most one interval to notice plus the delay
    wait = t.first_scheduled_s[first] - t.arrival_s[first]
    assert COLD_S - 1e-9 <= wait <= COLD_S + 5.0 + 1e-6
    s = compute_metrics(result).summary
    assert s["outcomes"]["completed"] == s["window"]["total_requests"]


def test_pool_must_hold_max_replicas(case):
    from simfactory.errors import InputErrors

    doc = _doc(max_replicas=6)
    with pytest.raises(InputErrors) as e:
        case(doc)
    assert "pool 'pool' has 4 accelerators but its deployments need 6" in str(e.value)


def _provisioned_at_end(result) -> int:
    log = result.autoscale["dep"]
    return log.provisioned_at(result.end_s - 1e-9)


def test_rps_signal_settles_on_the_rate_over_its_target(case):
    """Constant arrivals at 6 req/s with a target of 2 req/s per replica: the HPA rule ceil(active x rps / active /
    target) asks for exactly 3 replicas, whatever the replicas' latency."""
    doc = _doc(signal="rps", target=2.0, max_replicas=6)
    doc["pools"][0]["count"] = 6
    doc["traffic"]["arrival"] = {"process": "constant", "rate_per_s": 6.0}
    result = simulate(case(doc))
    assert _provisioned_at_end(result) == 3
    doc["traffic"]["arrival"] = {"process": "constant", "rate_per_s": 9.5}
    assert _provisioned_at_end(simulate(case(doc))) == 5  # ceil(9.5 / 2)


def test_ttft_signal_scales_up_on_a_slow_tail_and_back_down_when_it_is_met(case):
    busy = _doc(signal="ttft", target=0.05, ttft_quantile=0.95, max_replicas=4)
    busy["traffic"]["arrival"] = {"process": "poisson", "rate_per_s": 6.0}
    result = simulate(case(busy))
    assert result.autoscale["dep"].peak_provisioned(0.0, result.end_s) > 1  # one replica's queue blew the p95
    idle = _doc(signal="ttft", target=5.0, max_replicas=4, min_replicas=1)
    idle["deployments"][0]["replicas"] = 3
    idle["traffic"]["arrival"] = {"process": "poisson", "rate_per_s": 0.5}
    assert _provisioned_at_end(simulate(case(idle))) == 1  # a tail far under target: scaled down to the floor


def test_composite_tail_term_adds_replicas_the_load_terms_alone_would_not(case):
    base = _doc(signal="composite", target=100.0, queue_target=100.0, kv_target=1.0, max_replicas=4)
    base["traffic"]["arrival"] = {"process": "poisson", "rate_per_s": 6.0}
    without = simulate(case(base)).autoscale["dep"]
    base["deployments"][0]["autoscaling"]["ttft_target_s"] = 0.05
    with_tail = simulate(case(base)).autoscale["dep"]
    assert with_tail.peak_provisioned(0.0, 400.0) > without.peak_provisioned(0.0, 400.0)


def test_a_tail_target_on_another_signal_is_refused(tmp_path):
    from typer.testing import CliRunner

    from conftest import write_case
    from simfactory.cli import app

    doc = _doc(signal="in_flight", ttft_target_s=0.5)
    path = write_case(tmp_path, doc)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "ttft_target_s" in res.output and "Traceback" not in res.output, res.output
