"""Routing, service classes and admission control against closed forms and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import scenario_doc
from hypothesis import given, settings
from hypothesis import strategies as st

from simfactory.api import run
from simfactory.errors import InputErrors
from simfactory.sim.router import TokenBucket

DT, M = 0.05, 20  # constant step time and mean output tokens: E[S] = 1 s
GEO = {"kind": "geometric", "mean": M}
ES2 = DT**2 * (2 - 1 / M) * M**2  # second moment of the geometric service time


def two_priority_doc(lam_hi: float, lam_lo: float, preemptive: bool, horizon_s: float) -> dict:
    doc = scenario_doc(rate=lam_hi + lam_lo, output_tokens=GEO, horizon_s=horizon_s, warmup_s=500,
                       preemptive_priority=preemptive)
    c = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = [
        {**c, "name": "hi", "weight": lam_hi, "service_class": "urgent"},
        {**c, "name": "lo", "weight": lam_lo, "service_class": "bulk"},
    ]
    doc["service_classes"] = [{"name": "urgent", "priority": 0}, {"name": "bulk", "priority": 1}]
    return doc


def batch_mean(x: np.ndarray, batches: int = 25) -> tuple[float, float]:
    x = x[: len(x) - len(x) % batches].reshape(batches, -1).mean(axis=1)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(batches))


def by_class(m, col: str) -> dict[str, np.ndarray]:
    r = m.requests[m.requests["measured"]].sort_values("arrival_s")
    return {c: g[col].to_numpy() for c, g in r.groupby("class")}


def test_non_preemptive_priority_waits_match_cobham(case):
    lam1, lam2 = 0.3, 0.4
    m = run(case(two_priority_doc(lam1, lam2, False, 15000), {"overhead_s": DT}))
    w = by_class(m, "queue_s")
    w0 = (lam1 + lam2) * ES2 / 2
    s1, s2 = lam1 * 1.0, (lam1 + lam2) * 1.0
    expected = {"hi": w0 / (1 - s1), "lo": w0 / ((1 - s1) * (1 - s2))}
    for cls, target in expected.items():
        mean, se = batch_mean(w[cls])
        assert abs(mean - target) < 3.5 * se, (cls, mean, se, target)


def test_preemptive_resume_priority_matches_its_formula(case):
    lam1, lam2 = 0.3, 0.4
    m = run(case(two_priority_doc(lam1, lam2, True, 15000), {"overhead_s": DT}))
    t = by_class(m, "e2e_s")
    r1, r2 = lam1, lam1 + lam2
    expected = {
        "hi": 1.0 + lam1 * ES2 / (2 * (1 - r1)),
        "lo": 1.0 / (1 - r1) + (lam1 + lam2) * ES2 / (2 * (1 - r1) * (1 - r2)),
    }
    for cls, target in expected.items():
        mean, se = batch_mean(t[cls])
        # preemption happens at the next step boundary (<= 50 ms late): allow that small bias
        assert abs(mean - target) < 3.5 * se + 0.02 * target, (cls, mean, se, target)
    assert m.requests["preemptions"].sum() > 0


LINEAR_STEP = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4}


def urgent_and_bulk_doc(hi: dict, lo: dict, **deployment) -> dict:
    """One deployment under preemptive priority serving an urgent class ('hi') and a bulk class ('lo'), each a
    64-token-prompt class updated with its dict."""
    doc = scenario_doc(max_num_seqs=64, block_size=16, preemptive_priority=True, **deployment)
    c = {**doc["traffic"]["classes"][0], "input_tokens": {"kind": "fixed", "value": 64}}
    doc["traffic"]["classes"] = [{**c, "name": "hi", "service_class": "urgent", **hi},
                                 {**c, "name": "lo", "service_class": "bulk", **lo}]
    doc["service_classes"] = [{"name": "urgent", "priority": 0}, {"name": "bulk", "priority": 1}]
    return doc


def _assert_urgent_heads_are_admitted(monkeypatch, swapped: bool,
                                      budget_may_run_out: bool = False) -> list[tuple[int, bool, bool]]:
    """Every step formed while an urgent request heads the queue and bulk work runs admits it (preemption made the
    room admission needs); budget_may_run_out: or, where the step's token budget ran out, left it the blocks. Returns
    each such head's (cached prompt tokens, whether it came back swapped, whether it was admitted)."""
    from simfactory.sim.engine import ReplicaEngine

    schedule, checked = ReplicaEngine._schedule, []

    def admits_the_urgent_head(self):  # type: ignore[no-untyped-def]
        head = self._admissible_head()
        t = self.table
        urgent = head is not None and t.priority[head[0]] == 0 and (swapped or not t.kv_ready[head[0]])
        ready = bool(head is not None and t.kv_ready[head[0]])
        out = schedule(self)
        if urgent and any(t.priority[r] > 0 for r in self.running):
            admitted = head[0] in self.running
            checked.append((int(t.cached_tokens[head[0]]), ready, admitted))
            if budget_may_run_out and not admitted:
                budget_left = self.max_num_batched_tokens - out[1] - sum(chunk for _, chunk, _ in out[0])
                assert budget_left <= 0 or self._first_chunk(head[0])[0] <= self.free_blocks, "waits for blocks"
            else:
                assert admitted, "an urgent request waits while bulk work runs"
        return out

    monkeypatch.setattr(ReplicaEngine, "_schedule", admits_the_urgent_head)
    return checked


def test_preemption_makes_room_for_the_urgent_prompt_and_its_cached_prefix(case, monkeypatch):
    """An urgent prompt whose 2,048-token system prompt is cached needs blocks for the hit and its chunk, and the
    step's decodes take theirs first: preemption of bulk work must not stop at room for the chunk alone (it did, and
    the urgent request waited on bulk decodes)."""
    doc = urgent_and_bulk_doc(
        {"weight": 1, "shared_prefix_tokens": 2048, "output_tokens": {"kind": "fixed", "value": 4}},
        {"weight": 2, "output_tokens": {"kind": "fixed", "value": 400}},
        rate=6.0, max_num_batched_tokens=256, kv_cache_tokens=6000, enable_chunked_prefill=True,
        prefix_cache_tokens=100_000, horizon_s=100, seed=2)
    checked = _assert_urgent_heads_are_admitted(monkeypatch, swapped=False)
    m = run(case(doc, LINEAR_STEP))
    assert sum(1 for hit, _, _ in checked if hit == 2048) > 20  # cached-prefix admissions that needed preemption
    assert m.requests["preemptions"].sum() > 0


def test_preemption_makes_room_for_a_swapped_urgent_request_and_its_watermark(case, monkeypatch):
    """An urgent request swapped out under memory pressure comes back with all its KV plus the free-block watermark
    swap-in keeps (vLLM's 1% and a block per decode): preemption must free that much, not its KV alone."""
    answers = {"output_tokens": {"kind": "uniform", "low": 50, "high": 400}}
    doc = urgent_and_bulk_doc(
        {"weight": 1, "input_tokens": {"kind": "fixed", "value": 100}, **answers}, {"weight": 2, **answers},
        rate=10.0, max_num_batched_tokens=512, kv_cache_tokens=4000, enable_chunked_prefill=True,
        preemption_mode="swap", horizon_s=60, seed=3)
    checked = _assert_urgent_heads_are_admitted(monkeypatch, swapped=True)
    run(case(doc, LINEAR_STEP))
    assert sum(1 for _, ready, _ in checked if ready) > 20  # swapped urgent requests that needed preemption


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 2.0, allow_nan=False), min_size=1, max_size=60),
    rate=st.floats(0.1, 20.0),
    burst=st.integers(1, 10),
)
def test_token_bucket_never_admits_more_than_rate_times_t_plus_burst(gaps, rate, burst):
    bucket = TokenBucket(rate, burst)
    times = np.cumsum(gaps)
    admitted = [t for t in times if bucket.try_take(float(t))]
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= rate * (admitted[j] - admitted[i]) + burst + 1e-9


def test_every_arrival_has_exactly_one_outcome_and_classes_add_up(case):
    doc = scenario_doc(rate=60, output_tokens={"kind": "geometric", "mean": 40},
                       input_tokens={"kind": "uniform", "low": 1, "high": 3000}, horizon_s=30, warmup_s=0,
                       max_num_seqs=4, max_waiting=20, max_model_len=2500)
    c = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = [{**c, "name": "a", "tenant": "t1", "service_class": "fast"},
                                 {**c, "name": "b", "tenant": "t2", "service_class": "slow"}]
    doc["tenants"] = [{"name": "t1", "rate_limit": {"rate_per_s": 10, "burst": 5}}, {"name": "t2"}]
    doc["service_classes"] = [{"name": "fast", "priority": 0, "slo": {"e2e_s": 2}},
                              {"name": "slow", "priority": 1, "max_queue_s": 0.5, "slo": {"ttft_s": 5}}]
    m = run(case(doc, {"overhead_s": 0.01}))
    req = m.requests
    counts = req["outcome"].value_counts()
    for o in ("completed", "rejected_rate_limit", "rejected_queue_full", "shed", "rejected_too_long"):
        assert counts.get(o, 0) > 0, (o, counts)
    assert counts.sum() == len(req) and "pending" not in counts
    svc = m.summary["service"]
    blocks = list(svc["service_classes"].values())
    assert sum(b["requests"] for b in blocks) == svc["logical_requests"] == len(req)
    for b in blocks:
        assert b["requests"] == b["completed"] + b["rejected"] + b["shed"] + b["aborted"] + b["unfinished"]
    assert sum(b["requests"] for b in svc["tenants"].values()) == len(req)
    shed = req[req["outcome"] == "shed"]
    assert np.allclose(shed["departure_s"] - shed["arrival_s"], 0.5) and shed["first_scheduled_s"].isna().all()
    assert (req[req["class"] == "b"]["outcome"] != "rejected_rate_limit").all()
    met = m.logical["slo_met"]
    assert svc["goodput_per_s"] == pytest.approx(met[m.logical["measured"]].sum() / 30)


def two_pool_doc(route: dict, **kw) -> dict:
    doc = scenario_doc(rate=kw.pop("rate", 0.5), process="poisson", output_tokens={"kind": "fixed", "value": 10},
                       horizon_s=kw.pop("horizon_s", 4000), **kw)
    dep = doc["deployments"][0]
    doc["pools"] = [{"name": "cheap", "sku": "test-gpu", "count": 1, "location": "cloud"},
                    {"name": "dear", "sku": "test-gpu", "count": 1, "location": "cloud", "cloud_usd_per_accel_hour": 8.0}]
    doc["deployments"] = [{**dep, "name": "small", "pool": "cheap"}, {**dep, "name": "large", "pool": "dear"}]
    doc["routing"]["routes"] = [route]
    doc["traffic"]["classes"][0]["target"] = route["name"]
    return doc


def test_cascade_escalation_cost_matches_the_hand_computation(case):
    p = 0.3
    route = {"name": "tiered", "policy": "cascade",
             "tiers": [{"deployment": "small", "fail_p": p}, {"deployment": "large"}]}
    m = run(case(two_pool_doc(route), {"overhead_s": 0.01}))
    lr = m.logical[m.logical["measured"]]
    service_s = 10 * 0.01  # 10 tokens x 10 ms on an idle replica (arrivals 2 s apart on average)
    c_small, c_large = service_s * 2.0 / 3600, service_s * 8.0 / 3600
    mean, se = lr["usd_total"].mean(), lr["usd_total"].std(ddof=1) / math.sqrt(len(lr))
    expected = c_small + p * c_large
    assert abs(mean - expected) < 4 * se + 0.02 * expected, (mean, se, expected)
    rate = m.summary["service"]["routes"]["tiered"]["escalation_rate"]
    assert rate == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / len(lr)))
    esc = lr[lr["escalations"] > 0]
    # an escalated request pays both attempts in latency too
    assert (esc["e2e_s"] >= 2 * service_s - 1e-9).all()


def test_cheapest_capable_routes_by_difficulty(case):
    route = {"name": "tiered", "policy": "cheapest_capable",
             "tiers": [{"deployment": "small", "capability": 0.5, "fail_p": 0.1}, {"deployment": "large"}]}
    doc = two_pool_doc(route, horizon_s=2000)
    doc["traffic"]["classes"][0]["difficulty"] = {"kind": "uniform", "low": 0, "high": 1}
    m = run(case(doc, {"overhead_s": 0.01}))
    lr = m.logical[m.logical["measured"]]
    assert (lr[lr["difficulty"] > 0.5]["first_deployment"] == "large").all()
    assert (lr[lr["difficulty"] <= 0.5]["first_deployment"] == "small").all()
    share = m.summary["service"]["routes"]["tiered"]["escalation_rate"]
    assert share == pytest.approx(0.5 * 0.1, abs=0.02)


def test_overload_fallback_caps_the_primary_queue(case):
    route = {"name": "w", "policy": "weighted", "weights": {"small": 1.0},
             "fallback": {"deployment": "large", "max_waiting": 3}}
    doc = two_pool_doc(route, rate=30, horizon_s=20)
    doc["sim"]["timeline_resolution_s"] = 0.05
    m = run(case(doc, {"overhead_s": 0.01}))
    req = m.requests
    assert (req["deployment"] == "large").sum() > 0 and (req["deployment"] == "small").sum() > 0
    q = m.system_timeline["queue_depth.small"]
    assert q.max() <= 3


def test_reserved_replicas_serve_only_their_class(case):
    doc = scenario_doc(replicas=2, rate=20, horizon_s=20, output_tokens={"kind": "fixed", "value": 20},
                       max_num_seqs=8, reserved=[{"service_class": "vip", "replicas": 1}])
    c = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = [{**c, "name": "vip", "service_class": "vip", "weight": 1},
                                 {**c, "name": "rest", "weight": 3}]
    doc["service_classes"] = [{"name": "vip"}]
    req = run(case(doc, {"overhead_s": 0.01})).requests
    assert set(req[req["class"] == "rest"]["replica"]) == {1}
    assert 0 in set(req[req["class"] == "vip"]["replica"])


def test_session_affinity_and_sticky_routing_keep_sessions_together(case):
    doc = scenario_doc(replicas=3, rate=20, horizon_s=20, balancer="session_affinity", max_num_seqs=8)
    doc["traffic"]["classes"][0]["sessions"] = 25
    req = run(case(doc, {"overhead_s": 0.01})).requests
    assert (req.groupby("session")["replica"].nunique() == 1).all()
    assert req["replica"].nunique() == 3


def test_power_of_two_choices_queues_less_than_random(case):
    kw = dict(replicas=4, rate=3.4, output_tokens=GEO, horizon_s=3000, warmup_s=200)
    rand = run(case(scenario_doc(balancer="random", **kw), {"overhead_s": DT})).requests["queue_s"].mean()
    p2c = run(case(scenario_doc(balancer="power_of_two", **kw), {"overhead_s": DT})).requests["queue_s"].mean()
    assert p2c < 0.5 * rand


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda r: r["tiers"][1].update(deployment="ghost"), "routing.routes[0].tiers[1].deployment",
         "unknown tier deployment 'ghost'"),
        (lambda r: (r.pop("tiers"), r.update(policy="weighted", weights={"small": 0, "large": 0})),
         "routing.routes[0]", "weights must sum to a positive value"),
        (lambda r: r.update(tiers=list(reversed(r["tiers"]))), "routing.routes[0]", "least to most capable"),
    ],
)
def test_bad_routes_are_rejected(case, mutate, field, reason):
    route = {"name": "tiered", "policy": "cascade",
             "tiers": [{"deployment": "small", "capability": 0.5}, {"deployment": "large", "capability": 1.0}]}
    mutate(route)
    with pytest.raises(InputErrors) as info:
        case(two_pool_doc(route), {"overhead_s": 0.01})
    assert any(f"{field}:" in str(e) and reason in str(e) for e in info.value.errors), [str(e) for e in info.value.errors]


def test_fallback_cycle_is_rejected(case):
    route = {"name": "a", "policy": "weighted", "weights": {"small": 1}, "fallback": {"deployment": "b", "max_waiting": 1}}
    doc = two_pool_doc(route)
    doc["routing"]["routes"].append({"name": "b", "policy": "weighted", "weights": {"large": 1},
                                     "fallback": {"deployment": "a", "max_waiting": 1}})
    with pytest.raises(InputErrors) as info:
        case(doc, {"overhead_s": 0.01})
    assert "fallback cycle: a -> b -> a" in str(info.value)


def prefix_doc(capacity: int, rate: float = 0.5, **kw) -> dict:
    doc = scenario_doc(rate=rate, process="constant", horizon_s=40, input_tokens={"kind": "fixed", "value": 100},
                       output_tokens={"kind": "fixed", "value": 5}, prefix_cache_tokens=capacity, **kw)
    doc["traffic"]["classes"][0]["shared_prefix_tokens"] = 1000
    return doc


LIN = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5}


def test_shared_system_prompt_is_prefilled_once_with_a_prefix_cache(case):
    m = run(case(prefix_doc(capacity=100_000), LIN))
    req = m.requests.sort_values("arrival_s")
    assert req["cached_tokens"].iloc[0] == 0
    assert (req["cached_tokens"].iloc[1:] == 1000).all()
    # the hit skips exactly the prefix's prefill: TTFT = one step over the 100 new tokens
    assert np.allclose(req["ttft_s"].iloc[1:], 0.004 + 1e-5 * 100)
    assert req["ttft_s"].iloc[0] == pytest.approx(0.004 + 1e-5 * 1100)
    pc = m.summary["deployments"][0]["prefix_cache"]
    assert pc["prefill_tokens_saved"] == 1000 * (len(req) - 1)


def test_no_prefix_cache_no_hits(case):
    for capacity in (0, 500):  # disabled, or too small to hold the 1000-token prefix
        req = run(case(prefix_doc(capacity=capacity), LIN)).requests
        assert (req["cached_tokens"] == 0).all()


def test_lru_eviction_with_more_prefixes_than_fit(case):
    doc = prefix_doc(capacity=2500, rate=2.0)
    doc["traffic"]["classes"][0]["prefix_variants"] = 3  # three 1000-token system prompts, room for two
    req = run(case(doc, LIN)).requests
    hit = (req["cached_tokens"] > 0).mean()
    assert 0.2 < hit < 0.95


def test_semantic_cache_answers_a_share_without_a_model(case):
    doc = scenario_doc(rate=20, horizon_s=50, output_tokens={"kind": "fixed", "value": 20}, max_num_seqs=16)
    doc["traffic"]["classes"][0]["semantic_cache"] = {"hit_ratio": 0.3, "latency_s": {"kind": "fixed", "value": 0.02}}
    req = run(case(doc, {"overhead_s": 0.01})).requests
    hits = req[req["outcome"] == "cache_hit"]
    assert len(hits) / len(req) == pytest.approx(0.3, abs=0.04)
    assert np.allclose(hits["e2e_s"], 0.02) and np.allclose(hits["ttft_s"], 0.02)
    assert hits["replica"].eq(-1).all() and (hits["replica_s"] == 0).all()
    assert set(req["outcome"]) == {"completed", "cache_hit"}


def region_doc(route: dict | None = None, **kw) -> dict:
    doc = scenario_doc(rate=kw.pop("rate", 0.2), process="constant", horizon_s=kw.pop("horizon_s", 50),
                       output_tokens={"kind": "fixed", "value": 10}, input_tokens={"kind": "fixed", "value": 1000})
    dep = doc["deployments"][0]
    doc["pools"] = [{"name": "us", "sku": "test-gpu", "count": 1, "location": "cloud", "region": "us-east"},
                    {"name": "eu", "sku": "test-gpu", "count": 1, "location": "cloud", "region": "eu-west"}]
    doc["deployments"] = [{**dep, "name": "dep-us", "pool": "us"}, {**dep, "name": "dep-eu", "pool": "eu"}]
    doc["network"] = {"links": [{"a": "us-east", "b": "eu-west", "latency_s": 0.04, "usd_per_gb": 0.02}]}
    c = doc["traffic"]["classes"][0]
    c["region"] = "eu-west"
    c["target"] = "dep-us"
    if route is not None:
        doc["routing"]["routes"] = [route]
        c["target"] = route["name"]
    return doc


def test_cross_region_requests_pay_latency_and_egress(case):
    req = run(case(region_doc(), {"overhead_s": 0.01})).requests
    service = 10 * 0.01  # idle replica: 10 steps
    assert np.allclose(req["e2e_s"], service + 2 * 0.04)
    assert np.allclose(req["ttft_s"], 0.01 + 2 * 0.04)
    assert np.allclose(req["queue_s"], 0.0)
    assert np.allclose(req["egress_usd"], (1000 + 10) * 4 / 1e9 * 0.02)


def test_nearest_routing_keeps_traffic_local(case):
    near = {"name": "r", "policy": "nearest", "candidates": ["dep-us", "dep-eu"]}
    naive = {"name": "r", "policy": "weighted", "weights": {"dep-us": 1, "dep-eu": 1}}
    a = run(case(region_doc(near), {"overhead_s": 0.01}))
    b = run(case(region_doc(naive), {"overhead_s": 0.01}))
    assert (a.requests["deployment"] == "dep-eu").all() and (a.requests["network_s"] == 0).all()
    assert b.summary["network"]["share_of_e2e"] > 0.2 and a.summary["network"]["share_of_e2e"] == 0
    assert b.summary["network"]["egress_usd"] > 0 == a.summary["network"]["egress_usd"]


def test_agent_tool_in_another_region_adds_round_trips(case):
    from conftest import agent_doc, agent_scenario

    steps = [{"type": "tool", "name": "t", "service": "far", "latency_s": {"kind": "fixed", "value": 0.1},
              "result_tokens": {"kind": "fixed", "value": 500}}]
    doc = agent_scenario(rate=1, horizon_s=20)
    doc["network"] = {"links": [{"a": "default", "b": "remote", "latency_s": 0.03, "usd_per_gb": 0.09}]}
    tasks = run(case(doc, {"overhead_s": 0.01}, {"agent": agent_doc(steps, tools=[{"name": "far", "region": "remote"}])})).tasks
    assert np.allclose(tasks["e2e_s"], 0.1 + 0.06) and np.allclose(tasks["network"], 0.06)
    assert np.allclose(tasks["usd_network"], 500 * 4 / 1e9 * 0.09)


def test_timeout_fallback_moves_waiting_requests(case):
    route = {"name": "w", "policy": "weighted", "weights": {"small": 1.0},
             "fallback": {"deployment": "large", "timeout_s": 0.5}}
    doc = two_pool_doc(route, rate=30, horizon_s=20)
    m = run(case(doc, {"overhead_s": 0.01}))
    req = m.requests
    moved = req[req["fallbacks"] > 0]
    assert len(moved) > 0 and (moved["deployment"] == "large").all()
    assert (moved["first_scheduled_s"] - moved["arrival_s"] >= 0.5 - 1e-9).all()
    stayed = req[(req["fallbacks"] == 0) & (req["deployment"] == "small")]
    assert (stayed["first_scheduled_s"] - stayed["arrival_s"] <= 0.5 + 1e-9).all()


def test_fallback_to_a_local_deployment_drops_the_network_legs(case):
    route = {"name": "r", "policy": "weighted", "weights": {"dep-us": 1},
             "fallback": {"deployment": "dep-eu", "timeout_s": 0.3}}
    doc = region_doc(route, rate=30, horizon_s=10)
    req = run(case(doc, {"overhead_s": 0.01})).requests
    moved = req[(req["fallbacks"] > 0) & (req["outcome"] == "completed")]
    assert len(moved) > 0 and (moved["deployment"] == "dep-eu").all()
    assert (moved["network_s"] == 0).all() and (moved["egress_usd"] == 0).all()


def test_preemption_counts_the_blocks_running_partial_prefills_take_first(case, monkeypatch):
    """Urgent prompts of 16-700 tokens prefill in 256-token chunks: a step continues the running partial prefills
    before it admits, so preemption must free their next chunks' blocks too. Whenever an urgent request waits while
    bulk work runs and the step left token budget, it is not for lack of blocks (before, it was, a step at a time)."""
    doc = urgent_and_bulk_doc(
        {"weight": 6, "input_tokens": {"kind": "uniform", "low": 16, "high": 700},
         "output_tokens": {"kind": "fixed", "value": 4}},
        {"weight": 2, "output_tokens": {"kind": "fixed", "value": 400}},
        rate=12.0, max_num_batched_tokens=256, kv_cache_tokens=4000, enable_chunked_prefill=True, horizon_s=100,
        seed=2)
    checked = _assert_urgent_heads_are_admitted(monkeypatch, swapped=False, budget_may_run_out=True)
    m = run(case(doc, LINEAR_STEP))
    waited = [c for c in checked if not c[2]]  # urgent heads waiting behind bulk work, each checked
    assert len(waited) > 20 and m.requests["preemptions"].sum() > 0


def test_preemption_makes_room_in_full_sequence_admission(case, monkeypatch):
    """With kv_admission full_sequence (TensorRT-LLM's GUARANTEED_NO_EVICT) a request is admitted only when its whole
    sequence fits beside the running ones' reservations: preemptive priority frees reservations too, not only slots
    and free blocks (before, the urgent request waited on bulk work with blocks free but reserved)."""
    doc = urgent_and_bulk_doc(
        {"weight": 1, "output_tokens": {"kind": "fixed", "value": 4}},
        {"weight": 2, "output_tokens": {"kind": "fixed", "value": 400}},
        rate=6.0, max_num_batched_tokens=512, kv_cache_tokens=3000, engine="tensorrt-llm",
        kv_admission="full_sequence", horizon_s=100, seed=2)
    checked = _assert_urgent_heads_are_admitted(monkeypatch, swapped=False)
    m = run(case(doc, LINEAR_STEP))
    assert len(checked) > 20 and m.requests["preemptions"].sum() > 0
