"""Fast-forward (many decode steps per SimPy event) gives the answers of stepping every iteration (sim.exact)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_fast_forward_matches, scenario_doc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simfactory.config.scenario import Scenario
from simfactory.resolve import ResolvedScenario, resolve
from simfactory.sim.run import FleetModel, SimResult

ROOT = Path(__file__).resolve().parents[1]
LINEAR = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4, "s_per_kv_token": 2e-7}


def both_modes(make, doc: dict) -> tuple[SimResult, SimResult]:
    results = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        model = FleetModel(make(d), seed=d["seed"])
        results.append(model.run())
    return results[0], results[1]


def on_h100(doc: dict) -> ResolvedScenario:
    """The shipped H100 roofline profile (max(compute, memory): piecewise in the KV tokens read)."""
    doc["pools"][0]["sku"] = "h100-sxm"
    return resolve(Scenario.model_validate(doc), ROOT / "scenarios" / "case.yaml")


def assert_same(exact: SimResult, fast: SimResult) -> None:
    a, b = exact.table, fast.table
    for col in ("outcome", "generated", "preemptions", "replica"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)
    for col in ("first_scheduled_s", "first_token_s", "completion_s", "replica_s"):
        np.testing.assert_allclose(getattr(a, col), getattr(b, col), rtol=1e-9, atol=1e-12, err_msg=col)
    np.testing.assert_array_equal(exact.replica_steps, fast.replica_steps)
    np.testing.assert_allclose(exact.replica_busy_s, fast.replica_busy_s, rtol=1e-9)
    ta, tb = exact.timelines, fast.timelines
    assert ta.time_s == tb.time_s
    assert ta.running == tb.running and ta.waiting == tb.waiting
    # a sample that falls on a step's end to within floating error (stepping adds up each step's length, fast-forward
    # sums them in closed form: 4.25 against 4.249999999999999) sees that step ended in one mode and not yet in the
    # other, so the next step's blocks, at most one a running sequence, differ there; more, or more often, diverges
    blocks = np.array([r.kv_blocks for r in exact.replicas])  # each timeline column's replica
    gap = np.abs(np.array(ta.kv_used_frac) - np.array(tb.kv_used_frac)) * blocks
    on_a_step_end = gap > 1e-6
    assert np.all(gap[on_a_step_end] <= np.array(ta.running)[on_a_step_end] + 1e-6), (ta.kv_used_frac, tb.kv_used_frac)
    assert on_a_step_end.sum() <= 1, (ta.kv_used_frac, tb.kv_used_frac)
    np.testing.assert_allclose(np.array(ta.busy_frac), np.array(tb.busy_frac), rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# a sample on a step's end: 4.25 stepped, 4.249999999999999 in closed form (assert_same)
@example(seed=3152, replicas=1, rate=1.0, max_num_seqs=1, kv_tokens=1414, block_size=1, chunked=False,
         priorities=False, preemptive=False, roofline=False, drain=False, overlap=False, closed=True)
@given(
    seed=st.integers(0, 10_000),
    replicas=st.integers(1, 2),
    rate=st.floats(0.5, 30),
    max_num_seqs=st.integers(1, 24),
    kv_tokens=st.integers(1024, 20_000),
    block_size=st.sampled_from([1, 16, 32]),
    chunked=st.booleans(),
    priorities=st.booleans(),
    preemptive=st.booleans(),
    roofline=st.booleans(),
    drain=st.booleans(),
    overlap=st.booleans(),
    closed=st.booleans(),
)
def test_fast_forward_matches_stepping_every_iteration(case, seed, replicas, rate, max_num_seqs, kv_tokens, block_size,
                                                      chunked, priorities, preemptive, roofline, drain, overlap, closed):
    doc = scenario_doc(
        seed=seed, replicas=replicas, rate=rate, max_num_seqs=max_num_seqs, max_num_batched_tokens=2048,
        kv_cache_tokens=kv_tokens, block_size=block_size, enable_chunked_prefill=chunked,
        preemptive_priority=preemptive and priorities,
        input_tokens={"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 1500},
        output_tokens={"kind": "geometric", "mean": 60}, horizon_s=6, overlap_schedule=overlap,
    )
    if closed:  # clients that resend the instant an answer ends: puts at step boundaries
        doc["traffic"]["arrival"] = {"process": "closed", "concurrency": max(1, int(rate))}
    doc["sim"]["drain"] = drain
    doc["sim"]["timeline_resolution_s"] = 0.25
    if priorities:
        c = doc["traffic"]["classes"][0]
        doc["traffic"]["classes"] = [{**c, "name": "hi", "weight": 1, "service_class": "urgent"},
                                     {**c, "name": "lo", "weight": 2, "service_class": "bulk"}]
        doc["service_classes"] = [{"name": "urgent", "priority": 0}, {"name": "bulk", "priority": 1}]
    exact, fast = both_modes(on_h100 if roofline else (lambda d: case(d, LINEAR)), doc)
    assert_same(exact, fast)


def test_fast_forward_needs_far_fewer_events(case):
    doc = scenario_doc(rate=4, max_num_seqs=16, input_tokens={"kind": "fixed", "value": 100},
                       output_tokens={"kind": "fixed", "value": 400}, horizon_s=20)
    exact, fast = both_modes(lambda d: case(d, LINEAR), doc)
    assert_same(exact, fast)
    assert fast.events * 3 < exact.events


def test_run_exact_flag_gives_the_same_summary(tmp_path):
    from typer.testing import CliRunner

    from simfactory.cli import app

    def summary(*flags: str) -> dict:
        out = tmp_path / str(len(flags))
        res = CliRunner().invoke(app, ["run", "--format", "json", "--no-plots", "--out", str(out), *flags])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    exact, fast = summary("--exact"), summary()
    assert exact["outcomes"] == fast["outcomes"]
    for name in ("ttft", "tpot", "e2e"):
        for q, v in exact["latency_s"][name].items():
            assert fast["latency_s"][name][q] == pytest.approx(v, rel=1e-9), (name, q)


@pytest.mark.parametrize(
    "name", ["gpu-failure-peak", "stack-disaggregated", "service-classes", "stack-small-kv", "support-agent"]
)
def test_balancer_held_counts_equal_what_each_replica_holds(name, monkeypatch):
    """least_outstanding reads counters kept on dispatch and departure; before every dispatch they must equal
    running + preempted + queued on every replica (faults, hand-offs, preemption, aborts included)."""
    from simfactory.api import prepare
    from simfactory.sim.router import ReplicaBalancer

    checked = [0]
    dispatch = ReplicaBalancer.dispatch

    def checking(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.shared_queue is None:
            assert self.held == [e.outstanding() for e in self.engines]
            checked[0] += 1
        return dispatch(self, *args, **kwargs)

    monkeypatch.setattr(ReplicaBalancer, "dispatch", checking)
    rs = prepare(ROOT / "scenarios" / f"{name}.yaml")
    FleetModel(rs, seed=rs.scenario.seed).run()
    assert checked[0] > 100


@pytest.mark.parametrize(
    "name",
    ["gpu-failure-peak", "support-agent", "stack-small-kv-swap", "stack-disaggregated", "service-classes",
     "spot-reclamation-only", "stack-speculative", "autoscale-diurnal"],
)
def test_shipped_scenarios_give_the_same_answers_fast_and_stepping(name):
    """Beyond the engine alone: failures and repairs, aborts from agent deadlines, swap, disaggregated hand-offs,
    priorities, spot reclamation, speculative decoding (the bisection fallback) and autoscaling all cut or wait
    out stretches; every request's outcome and times must match stepping every iteration."""
    import dataclasses

    from simfactory.api import prepare

    rs = prepare(ROOT / "scenarios" / f"{name}.yaml")
    runs = []
    for exact in (True, False):
        sim = rs.scenario.sim.model_copy(update={"exact": exact})
        resolved = dataclasses.replace(rs, scenario=rs.scenario.model_copy(update={"sim": sim}))
        runs.append(FleetModel(resolved, seed=rs.scenario.seed).run())
    exact, fast = runs
    assert_fast_forward_matches(exact, fast)
    assert [t.outcome for t in exact.tasks] == [t.outcome for t in fast.tasks]
