"""Cache-aware load balancing (prefix_affinity, kv_aware): cache reuse against a one-replica bound, the read-only
cache peek, rendezvous stability, the load-aware fallback and the config's refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import agent_doc, agent_scenario, scenario_doc, write_case
from hypothesis import given, settings
from hypothesis import strategies as st

from simfactory.api import run
from simfactory.errors import InputError, InputErrors
from simfactory.paths import DEFAULT_SCENARIO, SCENARIOS_DIR
from simfactory.resolve import ResolvedScenario, load_and_resolve, load_scenario, resolve
from simfactory.sim.prefix_cache import PrefixCache
from simfactory.sim.router import ReplicaBalancer, rendezvous

MULTITURN = SCENARIOS_DIR / "multiturn-least-outstanding.yaml"


def saved_fraction(m) -> float:  # type: ignore[no-untyped-def]
    """Prompt tokens the prefix caches spared over all admitted requests (as metrics' prefix_cache section)."""
    r = m.requests[m.requests["first_scheduled_s"].notna()]
    return float(r["cached_tokens"].sum() / r["input_tokens"].sum())


def multiturn(balancer: str, replicas: int, rate_scale: float = 1.0) -> ResolvedScenario:
    """The shipped multi-turn chat scenario with another balancer / replica count / arrival rate, shortened."""
    sc = load_scenario(MULTITURN)
    arrival = sc.traffic.arrival.model_copy(update={"rate_per_s": sc.traffic.arrival.rate_per_s * rate_scale})
    short = sc.model_copy(update={
        "routing": sc.routing.model_copy(update={"load_balancer": balancer}),
        "pools": [sc.pools[0].model_copy(update={"count": replicas})],
        "deployments": [sc.deployments[0].model_copy(update={"replicas": replicas})],
        "traffic": sc.traffic.model_copy(update={"arrival": arrival}),
        "sim": sc.sim.model_copy(update={"horizon_s": 150.0, "warmup_s": 10.0}),
    })
    return resolve(short, MULTITURN)


@pytest.fixture(scope="module")
def one_replica_saved() -> float:
    """The bound: every turn of a conversation meets its own earlier turns in the one cache (1/4 of the rate)."""
    return saved_fraction(run(multiturn("least_outstanding", 1, 0.25)))


@pytest.mark.parametrize("balancer, lo, hi", [
    ("kv_aware", 0.8, 1.05),
    ("prefix_affinity", 0.8, 1.05),
    ("least_outstanding", 0.0, 0.7),  # a turn meets its conversation's cache on ~1 replica in 4
])
def test_multiturn_cache_reuse_against_one_replica(one_replica_saved, balancer, lo, hi):
    saved = saved_fraction(run(multiturn(balancer, 4)))
    assert one_replica_saved > 0.5  # conversations do repeat their context
    assert lo * one_replica_saved <= saved <= hi * one_replica_saved, (balancer, saved, one_replica_saved)


def test_the_shipped_pair_differs_only_in_the_balancer():
    a = yaml.safe_load(MULTITURN.read_text())
    b = yaml.safe_load((SCENARIOS_DIR / "multiturn-kv-aware.yaml").read_text())
    assert (a["routing"]["load_balancer"], b["routing"]["load_balancer"]) == ("least_outstanding", "kv_aware")
    for doc in (a, b):
        for k in ("name", "description", "routing"):
            doc.pop(k)
    assert a == b


@pytest.mark.parametrize("carry_input", [True, False])
def test_chat_turns_carry_the_users_message_into_the_next_prompt(case, carry_input):
    """Turn k's prompt = system + (k-1) x (message + answer) + message with carry_input, else without the messages.
    With the messages kept the transcript is verbatim: each turn finds its whole context cached (the last turn's
    sequence, message and answer included, stays on its replica, as vLLM keeps a finished sequence's blocks);
    without them only the previous turn's context is a prefix of the next prompt. kv_aware finds either on
    whichever replica served that turn."""
    system, message, answer = 300, 40, 100
    turn = {"type": "llm", "name": "turn", "model": "m", "carry_input": carry_input,
            "input_tokens": {"kind": "fixed", "value": message}, "output_tokens": {"kind": "fixed", "value": answer}}
    steps = [{"type": "loop", "continue_p": 1.0, "max_iterations": 4,
              "steps": [turn, {"type": "wait", "name": "think", "duration_s": {"kind": "fixed", "value": 2.0}}]}]
    doc = agent_scenario(rate=0.2, horizon_s=20, replicas=2, max_num_seqs=16, prefix_cache_tokens=1_000_000)
    doc["routing"]["load_balancer"] = "kv_aware"
    req = run(case(doc, {"overhead_s": 0.01}, {"agent": agent_doc(steps, system_prompt_tokens=system)})).requests
    carried = message + answer if carry_input else answer
    for _, g in req.sort_values(["task_id", "arrival_s"]).groupby("task_id"):
        assert list(g["input_tokens"]) == [system + k * carried + message for k in range(4)]
        if carry_input:
            assert list(g["cached_tokens"])[1:] == [system + k * carried for k in range(1, 4)]
        else:
            assert list(g["cached_tokens"])[1:] == [system] + [system + (k - 1) * carried for k in range(2, 4)]


# ---- PrefixCache.peek ----

def _state(cache: PrefixCache) -> tuple:
    return (tuple(tuple(lru.entries.items()) for lru in cache.tiers), cache.lookups, cache.hits, cache.hit_tokens)


KEYS = st.integers(0, 12)


@settings(max_examples=150, deadline=None)
@given(
    inserts=st.lists(st.tuples(KEYS, st.integers(1, 600)), min_size=1, max_size=30),
    chains=st.lists(st.lists(KEYS, min_size=1, max_size=5), max_size=4),
    keys=st.lists(st.tuples(KEYS, st.integers(1, 900)), max_size=3),
    block=st.lists(KEYS, max_size=6),
)
def test_peek_answers_like_lookup_and_changes_nothing(inserts, chains, keys, block):
    cache = PrefixCache(1500, host_capacity_tokens=1000)
    for k, n in inserts:
        cache.insert(k, n)
    for chain in chains:
        cache.insert_blocks(tuple((k, 256) for k in chain))
    keys, blocks = tuple(keys), tuple((k, 256) for k in block)
    before = _state(cache)
    peeked = cache.peek(keys, blocks)
    assert _state(cache) == before  # LRU order of every tier, and the counters
    twin = copy.deepcopy(cache)
    assert twin.lookup(keys, blocks) == peeked


def test_lookup_does_reorder_so_the_peek_test_can_fail():
    cache = PrefixCache(10_000)
    for k in (1, 2, 3):
        cache.insert(k, 100)
    cache.peek(((1, 100),))
    assert list(cache.tiers[0].entries) == [1, 2, 3] and cache.lookups == 0
    cache.lookup(((1, 100),))
    assert list(cache.tiers[0].entries) == [2, 3, 1] and (cache.lookups, cache.hits, cache.hit_tokens) == (1, 1, 100)


# ---- rendezvous homes ----

def test_rendezvous_moves_only_the_keys_of_a_removed_replica():
    keys = range(0, 20_000 * 7919, 7919)
    slots = list(range(8))
    home = {k: rendezvous(k, slots) for k in keys}
    counts = np.bincount(list(home.values()), minlength=8)
    assert counts.min() > 0.85 * len(keys) / 8 and counts.max() < 1.15 * len(keys) / 8  # an even spread
    for gone in (0, 3, 7):
        rest = [s for s in slots if s != gone]
        moved = {k: rendezvous(k, rest) for k in keys}
        assert all(moved[k] == home[k] for k in keys if home[k] != gone)
        spread = np.bincount([moved[k] for k in keys if home[k] == gone], minlength=8)
        assert spread[gone] == 0 and (spread[rest] > 0.6 * counts[gone] / 7).all()  # its keys spread over the rest


class _Queue:
    def __init__(self) -> None:
        self.members: list[int] = []

    def put(self, rid: int, priority: int) -> None:
        self.members.append(rid)


def test_a_failed_replica_moves_only_its_keys_through_the_balancer():
    engines = [SimpleNamespace(queue=_Queue(), prefix_cache=None) for _ in range(5)]
    b = ReplicaBalancer("prefix_affinity", engines, np.random.default_rng(0))  # type: ignore[arg-type]
    keys = [k * 104729 + 1 for k in range(2000)]
    before = {k: b.choose(b.eligible(-1), k) for k in keys}  # nothing held: every key goes home
    b.set_healthy(2, False)
    after = {k: b.choose(b.eligible(-1), k) for k in keys}
    assert {after[k] for k in keys} == {0, 1, 3, 4}
    assert all(after[k] == before[k] for k in keys if before[k] != 2)
    assert sum(before[k] == 2 for k in keys) > 300


# ---- load-aware fallback ----

@pytest.mark.parametrize("balancer", ["prefix_affinity", "kv_aware"])
def test_a_hot_prefix_spills_past_the_balance_threshold(case, monkeypatch, balancer):
    """Every request shares one system prompt: its home (or the replica caching it) would take them all; instead no
    replica is chosen while it holds more than balance_abs_threshold above the least loaded (rel threshold 1)."""
    abs_threshold = 6
    seen: list[tuple[list[int], int]] = []
    dispatch = ReplicaBalancer.dispatch

    def spy(self, rid, priority=0, service_class=-1, key=-1):  # type: ignore[no-untyped-def]
        held = list(self.held)
        i = dispatch(self, rid, priority, service_class, key)
        seen.append((held, i))
        return i

    monkeypatch.setattr(ReplicaBalancer, "dispatch", spy)
    doc = scenario_doc(replicas=4, rate=30, horizon_s=60, balancer=balancer, max_num_seqs=2,
                       input_tokens={"kind": "fixed", "value": 50}, output_tokens={"kind": "fixed", "value": 20},
                       prefix_cache_tokens=100_000)
    doc["traffic"]["classes"][0]["shared_prefix_tokens"] = 2000
    doc["routing"]["cache_aware"] = {"balance_abs_threshold": abs_threshold, "balance_rel_threshold": 1.0}
    m = run(case(doc, {"overhead_s": 0.01, "s_per_prefill_token": 1e-6}))
    assert len(seen) == len(m.requests) > 1000
    excess = [held[i] - min(held) for held, i in seen]
    assert max(excess) <= abs_threshold
    assert max(max(held) - min(held) for held, _ in seen) >= abs_threshold  # the flood did pile up on one replica
    assert m.requests["replica"].nunique() == 4  # and spilled to the others


@pytest.mark.parametrize("balancer", ["prefix_affinity", "kv_aware"])
def test_requests_without_a_prefix_are_balanced_as_least_outstanding(case, balancer):
    doc = scenario_doc(replicas=3, rate=25, horizon_s=30, max_num_seqs=2, prefix_cache_tokens=100_000,
                       input_tokens={"kind": "lognormal", "median": 200, "sigma": 0.5},
                       output_tokens={"kind": "geometric", "mean": 10})
    base = run(case(doc)).requests
    doc["routing"]["load_balancer"] = balancer
    other = run(case(doc)).requests
    assert list(other["replica"]) == list(base["replica"])


# ---- trace prompts: homes from leading hash blocks ----

def _conversation_trace(path: Path, conversations: int = 12, turns: int = 5) -> Path:
    """Mooncake rows: each conversation's prompts extend its previous prompt (shared leading blocks)."""
    rows = []
    for c in range(conversations):
        for t in range(turns):
            blocks = [1000 * c + j for j in range(2 + t)]
            rows.append({"timestamp": 2000 * t + 97 * c, "input_length": 512 * len(blocks), "output_length": 8,
                         "hash_ids": blocks})
    rows.sort(key=lambda r: r["timestamp"])
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.mark.parametrize("balancer", ["prefix_affinity", "kv_aware"])
def test_trace_conversations_stay_on_one_replica(tmp_path, balancer):
    trace = _conversation_trace(tmp_path / "conv.jsonl")
    doc = scenario_doc(replicas=4, horizon_s=100, balancer=balancer, max_num_seqs=16, prefix_cache_tokens=1_000_000)
    c = doc["traffic"]["classes"][0]
    for k in ("input_tokens", "output_tokens"):
        c.pop(k)
    c["trace"] = {"file": str(trace), "format": "mooncake"}
    del doc["traffic"]["arrival"]
    req = run(load_and_resolve(write_case(tmp_path / "case", doc, {"overhead_s": 0.01}))).requests
    # conversation c's turn t arrives at 2000 t + 97 c ms
    conv = (np.rint(req["arrival_s"].to_numpy() * 1000).astype(int) % 2000) // 97
    assert (req.assign(conv=conv).groupby("conv")["replica"].nunique() == 1).all()
    later = req[req["input_tokens"] > 1024]  # every turn after a conversation's first meets its previous prompt
    assert (later["cached_tokens"] == later["input_tokens"] - 512).all()
    assert req["replica"].nunique() == 4


# ---- config ----

def _errors(tmp_path: Path, routing: dict) -> list[str]:
    doc = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    doc["routing"] = routing
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises((InputError, InputErrors)) as info:
        load_and_resolve(p)
    e = info.value
    return [str(x) for x in (e.errors if isinstance(e, InputErrors) else [e])]


@pytest.mark.parametrize("field, value, reason", [
    ("balance_abs_threshold", -1, "greater than or equal to 0"),
    ("balance_abs_threshold", 2.5, "valid integer"),
    ("balance_rel_threshold", 0.9, "greater than or equal to 1"),
    ("balance_rel_threshold", float("nan"), "finite number"),
    ("cache_threshold", 1.5, "less than or equal to 1"),
    ("cache_threshold", -0.1, "greater than or equal to 0"),
    ("prefix_blocks", 0, "greater than or equal to 1"),
    ("cache_treshold", 0.5, "unknown field"),
])
def test_bad_cache_aware_values_are_refused_naming_the_field(tmp_path, field, value, reason):
    errors = _errors(tmp_path, {"load_balancer": "kv_aware", "cache_aware": {field: value}})
    assert any(f"routing.cache_aware.{field}:" in e and reason in e for e in errors), errors


def test_an_unknown_balancer_is_refused(tmp_path):
    errors = _errors(tmp_path, {"load_balancer": "kv-aware"})
    assert any("routing.load_balancer:" in e and "(got 'kv-aware')" in e for e in errors), errors
