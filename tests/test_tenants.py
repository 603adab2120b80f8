"""Tenants (issue #31): per-tenant max_concurrency and gpu_share quotas at the tenant gate, the fair-share admission
policy, and the summary's `tenants` section. Each property is checked against the request records, not against the
gate's own counters: concurrency from the admitted/completed intervals, shares from the tokens completed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.metrics.summary import compute_metrics
from simfactory.metrics.tenants import jain_index, max_min_fair
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import FleetModel, simulate

STEP = {"overhead_s": 0.01}  # every step 10 ms: a request of 1 + 19 tokens holds a slot for 20 steps (0.2 s)
SLOTS = 8  # 2 replicas x max_num_seqs 4: 40 requests/s of capacity


def two_tenants(policy: str = "fair_share", rate: float = 100.0, horizon_s: float = 60.0, tenants: list | None = None,
                shares: tuple[float, float] = (1.0, 1.0), drain: bool = False, **dep: Any) -> dict[str, Any]:
    """Two classes of identical requests, one per tenant ('a', 'b'), sharing 2 replicas of 4 slots; `shares` are
    the classes' shares of `rate` (100/s offers 2.5x the capacity); a share of 0 leaves b's class out."""
    doc = scenario_doc(replicas=2, rate=rate, horizon_s=horizon_s, warmup_s=10.0, max_num_seqs=4,
                       output_tokens={"kind": "fixed", "value": 20}, **dep)
    c = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = [{**c, "name": "ca", "tenant": "a", "weight": shares[0]},
                                 {**c, "name": "cb", "tenant": "b", "weight": shares[1]}][: 2 if shares[1] else 1]
    doc["tenants"] = tenants if tenants is not None else [{"name": "a"}, {"name": "b"}]
    doc["admission"] = {"policy": policy}
    doc["sim"]["drain"] = drain
    return doc


def max_in_flight(table: Any, tenant: int) -> int:
    """The most requests of a tenant held by replicas at once: a sweep over [admitted_s, ended) intervals (an end
    at the same instant as an admission is counted first: the gate admits on a departure)."""
    mine = (np.asarray(table.tenant) == tenant) & ~np.isnan(np.asarray(table.admitted_s))
    start = np.asarray(table.admitted_s)[mine]
    end = np.nan_to_num(np.asarray(table.completion_s)[mine], nan=np.inf)
    events = sorted([(s, 1) for s in start] + [(e, -1) for e in end])  # -1 sorts before +1 at equal times
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def tokens_by_tenant(summary: dict[str, Any]) -> dict[str, float]:
    return {name: b["tokens_per_s"] for name, b in summary["tenants"]["by_tenant"].items()}


# ---- quotas ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["fifo", "fair_share"])
def test_max_concurrency_is_never_exceeded_and_is_reached(case, policy):
    doc = two_tenants(policy, tenants=[{"name": "a", "max_concurrency": 3}, {"name": "b", "max_concurrency": 2}],
                      horizon_s=40.0)
    result = simulate(case(doc, STEP))
    t = result.table
    assert max_in_flight(t, 0) == 3 and max_in_flight(t, 1) == 2
    assert (t.outcome != Outcome.PENDING).all()
    waited = t.admitted_s - t.arrival_s
    assert np.nanmax(waited) > 1.0  # the caps held requests back
    # 5 of the 8 slots are used at most: the caps, not the fleet, bound throughput (5 requests per 0.2 s)
    m = compute_metrics(result)
    assert m.summary["throughput"]["requests_per_s"] == pytest.approx(25.0, rel=0.03)


def test_max_concurrency_spans_deployments(case):
    """A tenant's cap counts its requests on every deployment together."""
    doc = two_tenants("fifo", tenants=[{"name": "a", "max_concurrency": 3}, {"name": "b"}], horizon_s=30.0)
    dep = doc["deployments"][0]
    doc["pools"][0]["count"] = 4
    doc["deployments"] = [dep, {**dep, "name": "dep2"}]
    doc["routing"]["routes"] = [{"name": "split", "policy": "weighted", "weights": {"dep": 1, "dep2": 1}}]
    doc["traffic"]["classes"][0]["target"] = "split"
    t = simulate(case(doc, STEP)).table
    assert max_in_flight(t, 0) == 3
    assert set(np.unique(t.deployment_id[t.tenant == 0])) == {0, 1}


def test_gpu_share_caps_a_tenant_while_another_waits_and_lifts_when_alone(case):
    doc = two_tenants("fifo", tenants=[{"name": "a", "gpu_share": 0.25}, {"name": "b"}])
    s = run(case(doc, STEP)).summary
    share = s["tenants"]["by_tenant"]["a"]["token_share"]
    assert share == pytest.approx(0.25, abs=0.02)  # both flood; a holds 2 of the 8 slots while b waits
    light = two_tenants("fifo", tenants=[{"name": "a", "gpu_share": 0.25}, {"name": "b"}], shares=(3.0, 1.0))
    s = run(case(light, STEP)).summary  # b asks for 25/s of 40: a gets what b leaves (15/s), above its share
    assert s["tenants"]["by_tenant"]["a"]["token_share"] == pytest.approx(15 / 40, abs=0.03)
    alone = run(case(two_tenants("fifo", tenants=[{"name": "a", "gpu_share": 0.25}, {"name": "b"}],
                                 shares=(1.0, 0.0)), STEP)).summary
    lone = run(case(two_tenants("fifo", tenants=[{"name": "a"}, {"name": "b"}], shares=(1.0, 0.0)), STEP)).summary
    # soft: with nobody else waiting, a takes every slot (the same throughput as without a share)
    assert alone["throughput"]["requests_per_s"] == pytest.approx(lone["throughput"]["requests_per_s"], rel=0.01)
    assert alone["throughput"]["requests_per_s"] == pytest.approx(SLOTS / 0.2, rel=0.03)


# ---- fair share --------------------------------------------------------------------------------------------------
def test_equal_weights_split_a_saturated_fleet_equally(case):
    s = run(case(two_tenants("fair_share"), STEP)).summary
    tok = tokens_by_tenant(s)
    assert tok["a"] == pytest.approx(tok["b"], rel=0.02)
    assert s["tenants"]["jain_index_weighted"] == pytest.approx(1.0, abs=1e-3)
    assert s["tenants"]["jain_index_max_min"] == pytest.approx(1.0, abs=1e-3)
    assert s["throughput"]["requests_per_s"] == pytest.approx(SLOTS / 0.2, rel=0.03)


def test_weights_two_to_one_split_served_tokens_two_to_one(case):
    doc = two_tenants("fair_share", tenants=[{"name": "a", "weight": 2}, {"name": "b", "weight": 1}])
    s = run(case(doc, STEP)).summary
    tok = tokens_by_tenant(s)
    assert tok["a"] / tok["b"] == pytest.approx(2.0, rel=0.05)
    assert s["tenants"]["jain_index_weighted"] == pytest.approx(1.0, abs=0.01)
    fifo = run(case({**doc, "admission": {"policy": "fifo"}}, STEP)).summary  # FIFO ignores weights: 1:1
    tok = tokens_by_tenant(fifo)
    assert tok["a"] / tok["b"] == pytest.approx(1.0, rel=0.05)
    assert fifo["tenants"]["jain_index_max_min"] < 0.95


def test_fair_share_weighs_tokens_not_requests(case):
    """Tenant b's requests are 4x longer: at equal weights it gets a quarter of a's requests, the same tokens."""
    doc = two_tenants("fair_share")
    doc["traffic"]["classes"][1]["output_tokens"] = {"kind": "fixed", "value": 80}
    doc["traffic"]["classes"][0]["output_tokens"] = {"kind": "fixed", "value": 20}
    s = run(case(doc, STEP)).summary
    tok = tokens_by_tenant(s)
    by = s["tenants"]["by_tenant"]
    assert tok["a"] == pytest.approx(tok["b"], rel=0.05)
    assert by["a"]["completed_per_s"] / by["b"]["completed_per_s"] == pytest.approx(81 / 21, rel=0.06)


@pytest.mark.parametrize("rate", [20.0, 100.0])  # half the capacity, and 2.5x it
def test_a_lone_tenant_gets_the_whole_fleet_under_fair_share(case, rate):
    """Work-conserving: one tenant alone runs as fast under fair share as under FIFO (which holds nothing back)."""
    fair = run(case(two_tenants("fair_share", rate=rate, shares=(1.0, 0.0)), STEP)).summary
    fifo = run(case(two_tenants("fifo", rate=rate, shares=(1.0, 0.0)), STEP)).summary
    assert fair["throughput"]["requests_per_s"] == pytest.approx(fifo["throughput"]["requests_per_s"], rel=0.01)
    # the backlog waits at the gate instead of in the engines' queues, and the fleet's load counts it all the same
    load = [s["cost"]["pools"][0]["load_fraction"] for s in (fair, fifo)]
    assert load[0] == pytest.approx(load[1], rel=0.02)
    if rate < SLOTS / 0.2:  # below capacity nobody waits at the gate, so latency is the same too
        a_fair, a_fifo = fair["tenants"]["by_tenant"]["a"], fifo["tenants"]["by_tenant"]["a"]
        assert a_fair["e2e_s"]["mean"] == pytest.approx(a_fifo["e2e_s"]["mean"], rel=0.02)


def test_fair_share_protects_a_light_tenant_from_a_flood(case):
    """The shipped pair in miniature: b floods, a sends a little; fair share cuts a's TTFT, keeps throughput."""
    out = {}
    for policy in ("fifo", "fair_share"):
        out[policy] = run(case(two_tenants(policy, shares=(0.05, 1.0)), STEP)).summary
    ttft = {p: s["tenants"]["by_tenant"]["a"]["ttft_s"]["p99"] for p, s in out.items()}
    assert ttft["fifo"] > 5.0 and ttft["fair_share"] < 0.5
    rps = {p: s["throughput"]["requests_per_s"] for p, s in out.items()}
    assert rps["fair_share"] == pytest.approx(rps["fifo"], rel=0.02)


# ---- bookkeeping -------------------------------------------------------------------------------------------------
def test_every_request_of_every_tenant_has_an_outcome(case):
    """Quotas, a full tenant queue, a queue timeout and a rate limit together: each request ends exactly once."""
    tenants = [{"name": "a", "max_concurrency": 2, "max_waiting": 5, "weight": 3},
               {"name": "b", "gpu_share": 0.5, "rate_limit": {"rate_per_s": 30, "burst": 5}}]
    doc = two_tenants("fair_share", tenants=tenants, horizon_s=30.0, drain=True)
    doc["service_classes"] = [{"name": "patient", "max_queue_s": 2.0}]
    doc["traffic"]["classes"][1]["service_class"] = "patient"
    doc["traffic"]["classes"].append({**doc["traffic"]["classes"][0], "name": "free", "weight": 0.2})
    del doc["traffic"]["classes"][2]["tenant"]
    m = run(case(doc, STEP))
    req = m.requests
    counts = req["outcome"].value_counts()
    for o in ("completed", "rejected_queue_full", "shed", "rejected_rate_limit"):
        assert counts.get(o, 0) > 0, (o, counts)
    assert "pending" not in counts and "unfinished" not in counts and counts.sum() == len(req)
    t = m.summary["tenants"]
    measured = req[req["measured"]]
    assert sum(b["requests"] for b in t["by_tenant"].values()) + t["untenanted_requests"] == len(measured)
    for b in t["by_tenant"].values():
        ended = ("completed", "rejected", "shed", "aborted", "failed", "unfinished")
        assert b["requests"] == sum(b[k] for k in ended)
    assert set(req.loc[req["outcome"] == "rejected_queue_full", "tenant_id"]) == {0}  # a's max_waiting only
    shed = req[req["outcome"] == "shed"]
    assert np.allclose(shed["departure_s"] - shed["arrival_s"], 2.0)  # shed at the gate after max_queue_s


def test_requests_held_at_the_gate_follow_a_route_fallback(case):
    doc = two_tenants("fair_share", rate=80.0, horizon_s=20.0, drain=True)
    dep = doc["deployments"][0]
    doc["pools"][0]["count"] = 4
    doc["deployments"] = [dep, {**dep, "name": "spare"}]
    doc["routing"]["routes"] = [{"name": "main", "policy": "weighted", "weights": {"dep": 1},
                                 "fallback": {"deployment": "spare", "timeout_s": 0.5}}]
    for c in doc["traffic"]["classes"]:
        c["target"] = "main"
    req = run(case(doc, STEP)).requests
    moved = req[req["fallbacks"] > 0]
    assert len(moved) > 100 and (moved["deployment"] == "spare").all()
    assert (req["outcome"] == "completed").all()


def test_failures_and_autoscaling_keep_the_gate_in_step(case):
    """Replicas failing (slots vanish, requests lost and retried) and autoscaling (slots appear): all end."""
    doc = two_tenants("fair_share", rate=30.0, horizon_s=120.0, drain=True)
    doc["faults"] = {"replica_failures": [{"pool": "pool", "mtbf_s": 20.0, "mttr_s": 5.0}], "retry": {"max_retries": 3}}
    s = run(case(doc, STEP)).summary
    assert s["outcomes"]["completed"] > 0 and s["outcomes"]["failed"] > 0
    assert sum(s["outcomes"].values()) == s["window"]["total_requests"]
    auto = two_tenants("fair_share", rate=30.0, horizon_s=200.0, drain=True)
    auto["pools"][0]["count"] = 4
    auto["deployments"][0]["autoscaling"] = {"min_replicas": 1, "max_replicas": 4, "signal": "queue", "target": 2,
                                             "interval_s": 5, "cold_start_s": 10, "weights_load_gb_s": 1e6}
    s = run(case(auto, STEP)).summary
    assert s["autoscaling"]["dep"]["replicas_max"] > 1  # the requests waiting at the gate count as waiting
    assert s["outcomes"]["completed"] == s["window"]["total_requests"]


def test_runs_are_deterministic(case):
    doc = two_tenants("fair_share", tenants=[{"name": "a", "weight": 2, "max_concurrency": 5}, {"name": "b"}])
    rs = case(doc, STEP)
    one, two = simulate(rs), simulate(rs)
    for col in ("outcome", "admitted_s", "first_token_s", "completion_s"):
        np.testing.assert_array_equal(getattr(one.table, col), getattr(two.table, col))
    assert compute_metrics(one).summary["tenants"] == compute_metrics(two).summary["tenants"]


def test_without_quotas_or_fair_share_there_is_no_gate(case):
    """Today's behaviour stays the default: tenants with only rate limits and weights add nothing in front of the
    replicas, and the run matches one without tenants."""
    plain = two_tenants("fifo", tenants=[{"name": "a", "weight": 5}, {"name": "b"}])
    rs = case(plain, STEP)
    assert FleetModel(rs, 1).gate is None
    untenanted = copy.deepcopy(plain)
    del untenanted["tenants"], untenanted["admission"]
    for c in untenanted["traffic"]["classes"]:
        del c["tenant"]
    a, b = simulate(rs), simulate(case(untenanted, STEP))
    np.testing.assert_array_equal(a.table.completion_s, b.table.completion_s)


def test_summary_section_and_report_table(case, tmp_path):
    doc = two_tenants("fair_share")
    s = run(case(doc, STEP)).summary
    t = s["tenants"]
    assert t["policy"] == "fair_share" and set(t["by_tenant"]) == {"a", "b"}
    b = t["by_tenant"]["a"]
    for key in ("queue_s", "admission_wait_s", "ttft_s", "e2e_s"):
        assert {"mean", "p50", "p99"} <= set(b[key])
    assert sum(x["token_share"] for x in t["by_tenant"].values()) == pytest.approx(1.0)
    assert sum(x["gpu_time_share"] for x in t["by_tenant"].values()) == pytest.approx(1.0)
    assert b["e2e_cv"] == pytest.approx(b["e2e_std_s"] / b["e2e_s"]["mean"])
    assert run(case(scenario_doc(), STEP)).summary["tenants"] == {}
    path = write_case(tmp_path / "cli", doc, STEP)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "## Tenants (admission policy `fair_share`)" in md and "| a | 1 |" in md and "Jain" in md


def test_fairness_formulas():
    assert jain_index([1, 1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert jain_index([0, 0]) is None
    # water-filling: 10 units over demands 2, 8, 8 at weights 1, 1, 2 -> 2, then 8 left split 1:2
    assert max_min_fair([2, 8, 8], [1, 1, 2], 10) == pytest.approx([2, 8 / 3, 16 / 3])
    assert max_min_fair([2, 3], [1, 1], 10) == pytest.approx([2, 3])  # enough for everyone: demands


# ---- hostile values ----------------------------------------------------------------------------------------------
def refused(root: Path, doc: dict[str, Any], field: str, contains: str = "") -> None:
    """validate and run both refuse the file in one line naming the field, exit 2, nothing written."""
    path = write_case(root, copy.deepcopy(doc), STEP)
    out = root / "out"
    for cmd in ("validate", "run"):
        args = [cmd, str(path)] + (["--out", str(out), "--no-plots", "--quiet"] if cmd == "run" else [])
        res = CliRunner().invoke(app, args)
        assert "Traceback" not in res.output and res.exit_code == 2, (cmd, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}: "), lines
        assert contains in lines[0], lines[0]
        assert not out.exists()


@pytest.mark.parametrize("field, value, contains", [
    ("weight", 0, "greater than or equal to 0.000001"),
    ("weight", -1, "greater than or equal to 0.000001"),
    ("weight", float("inf"), "finite"),
    ("weight", 1e9, "less than or equal to 1000000"),
    ("weight", "heavy", ""),
    ("gpu_share", 1.5, "less than or equal to 1"),
    ("gpu_share", 0, "greater than 0"),
    ("gpu_share", float("nan"), "finite"),
    ("max_concurrency", 0, "greater than or equal to 1"),
    ("max_concurrency", 2.5, ""),
    ("max_concurrency", 10**12, "less than or equal to"),
    ("max_waiting", 0, "greater than or equal to 1"),
])
def test_hostile_tenant_values_are_refused_naming_the_field(tmp_path, field, value, contains):
    doc = two_tenants("fair_share")
    doc["tenants"][1][field] = value
    refused(tmp_path, doc, f"tenants[1].{field}", contains)


def test_unknown_or_duplicate_tenants_and_policies_are_refused(tmp_path):
    doc = two_tenants("fair_share")
    doc["traffic"]["classes"][1]["tenant"] = "nobody"
    refused(tmp_path / "unknown", doc, "traffic.classes[1].tenant", "unknown tenant 'nobody' (tenants: ['a', 'b'])")
    doc = two_tenants("fair_share")
    doc["tenants"][1]["name"] = "a"
    doc["traffic"]["classes"][1]["tenant"] = "a"
    refused(tmp_path / "twice", doc, "tenants[1].name", "duplicate name 'a'")
    doc = two_tenants("lottery")
    refused(tmp_path / "policy", doc, "admission.policy", "'fifo' or 'fair_share'")
    doc = two_tenants("fifo", tenants=[{"name": "a", "max_waiting": 10}, {"name": "b"}])
    refused(tmp_path / "nothing-waits", doc, "tenants[0].max_waiting", "never wait")
