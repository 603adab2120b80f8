"""Training jobs: Young/Daly checkpoint intervals against the simulation, and costs per checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import scenario_doc

from simfactory.config.training import TrainingJob
from simfactory.metrics.ci import mean_ci
from simfactory.errors import InputError, InputErrors
from simfactory.sim.training import (
    chosen_interval_h,
    daly_expected_wall_h,
    job_mtbf_h,
    simulate_job,
    young_interval_h,
)

JOB = dict(name="pretrain", pool="p", accelerators=64, work_hours=200.0, node_mtbf_h=400.0,
           checkpoint_cost_s=600.0, restart_s=1200.0)


def test_optimal_interval_is_young():
    job = TrainingJob(**JOB)
    m = 400.0 / 8  # 8 nodes of 8
    assert job_mtbf_h(job) == m
    assert chosen_interval_h(job) == pytest.approx(math.sqrt(2 * (600 / 3600) * m))
    assert young_interval_h(600 / 3600, m) == pytest.approx(math.sqrt(2 * 600 / 3600 * 50))


def test_simulated_time_matches_daly_expectation():
    """Exponential failures, failure-free restarts: E[wall] = M e^(R/M) (e^((tau+delta)/M) - 1) W / tau."""
    job = TrainingJob(**{**JOB, "replications": 400})
    runs = simulate_job(job, seed=7)
    mean, half = mean_ci([r.wall_h for r in runs])
    tau = chosen_interval_h(job)
    expected = daly_expected_wall_h(200.0, tau, 600 / 3600, 1200 / 3600, 50.0)
    # Daly's formula counts whole segments of tau; the job's last one is shorter, which only saves time
    assert expected - 2 * half - tau < mean < expected + 2 * half, (mean, half, expected)


def test_simulated_time_is_minimal_near_young_interval():
    job = TrainingJob(**{**JOB, "replications": 300})
    young = chosen_interval_h(job)
    means = {mult: np.mean([r.wall_h for r in simulate_job(job, seed=3, interval_h=young * mult)])
             for mult in (0.125, 0.5, 1.0, 2.0, 8.0)}
    best = min(means.values())
    assert means[1.0] <= best * 1.01
    assert means[0.125] > means[1.0] and means[8.0] > means[1.0]


def test_idle_priority_progresses_at_the_idle_fraction():
    job = TrainingJob(**{**JOB, "priority": "idle", "node_mtbf_h": 1e9, "replications": 2})
    runs = simulate_job(job, seed=1, idle_fraction=0.25)
    tau = chosen_interval_h(job)
    segments = math.ceil(200.0 / tau)
    assert runs[0].wall_h == pytest.approx((200.0 + segments * 600 / 3600) / 0.25)
    assert runs[0].failures == 0 and runs[0].checkpoints == segments


def _mixed(case, **job):
    doc = scenario_doc(replicas=2)
    doc["pools"][0]["count"] = 10
    doc["training"] = [{**JOB, "pool": "pool", "accelerators": 8, "replications": 5, **job}]
    return case(doc)


def test_dedicated_training_must_fit_beside_the_deployments(case):
    with pytest.raises((InputError, InputErrors)) as e:
        _mixed(case, accelerators=16)
    assert "training[0].accelerators: pool 'pool' has 10 accelerators; deployments and dedicated training need 18" in str(e.value)
    _mixed(case)  # 2 + 8 fit


def test_run_reports_cost_per_validated_checkpoint(case):
    from simfactory.metrics.summary import compute_metrics
    from simfactory.sim.run import simulate

    rs = _mixed(case, validation_pass_rate=0.5)
    s = compute_metrics(simulate(rs)).summary
    t = s["finance"]["training"][0]
    pool = s["cost"]["pools"][0]
    per_accel_h = pool["usd_per_hour"] / pool["accelerators"]
    assert t["cost_usd"] == pytest.approx(8 * t["time_to_train_h"] * per_accel_h)
    assert t["usd_per_validated_checkpoint"] == pytest.approx(t["cost_usd"] / (0.5 * t["checkpoints_mean"]))
    assert t["young_interval_h"] == pytest.approx(math.sqrt(2 * 600 / 3600 * 400.0))  # one node
