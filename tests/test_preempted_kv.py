"""A preempted request's KV blocks survive in the free queue until allocations reach them (vLLM V1).

The counter-based bookkeeping (sim/preempted_kv.py) is checked against an explicit first-in-first-out free queue of
labelled blocks under random allocations, frees, preemptions and re-admissions; the engine's use of it against runs
with the feature off.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from conftest import scenario_doc
from hypothesis import given, settings
from hypothesis import strategies as st

from simfactory.sim.outcomes import Outcome
from simfactory.sim.preempted_kv import PreemptedKV
from simfactory.sim.run import FleetModel

OPS = st.lists(st.tuples(st.sampled_from(["alloc", "free", "preempt", "revive"]), st.integers(0, 40),
                         st.integers(0, 3)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(initial=st.integers(0, 60), ops=OPS)
def test_survivors_match_an_explicit_fifo_free_queue(initial, ops):
    queue: deque[tuple[int, int]] = deque((-1, 0) for _ in range(initial))  # (owner, its block index); -1: nobody's
    kept = PreemptedKV()
    freed = initial
    next_rid = 0
    for op, n, extra in ops:
        if op == "alloc":
            for _ in range(min(n, len(queue))):
                queue.popleft()
        elif op == "free":
            queue.extend((-1, 0) for _ in range(n))
            freed += n
        elif op == "preempt":  # a partial last block (not cached) and n full blocks, freed tail first
            queue.extend((-1, 0) for _ in range(extra % 2))
            queue.extend((next_rid, i) for i in reversed(range(n)))
            freed += n + extra % 2
            kept.keep(next_rid, n, len(queue), freed)
            next_rid += 1
        elif op == "revive" and kept.kept:
            rid = sorted(kept.kept)[n % len(kept.kept)]
            alive = kept.surviving(rid, len(queue), freed)
            use = min(alive, extra * 7)  # a re-admission may use fewer blocks than survive (its prompt is shorter)
            owned = [b for r, b in queue if r == rid]
            assert sorted(owned) == list(range(alive))  # the survivors are its leading blocks
            for block in range(use):
                queue.remove((rid, block))
            kept.revive(rid, use)
        for rid in kept.kept:
            assert kept.surviving(rid, len(queue), freed) == sum(r == rid for r, _ in queue)


def tight_kv(case, reuse: str):
    """Long prompts on a KV cache that holds about three of them: prefills get preempted."""
    doc = scenario_doc(rate=3, input_tokens={"kind": "uniform", "low": 2000, "high": 3000},
                       output_tokens={"kind": "uniform", "low": 50, "high": 150}, horizon_s=20,
                       max_num_seqs=64, max_num_batched_tokens=1024, kv_cache_tokens=9000, block_size=16,
                       reuse_preempted_kv=reuse)
    model = FleetModel(case(doc, {"overhead_s": 0.004, "s_per_prefill_token": 1e-4, "s_per_decode_seq": 1e-4}),
                       seed=doc["seed"])
    return model, model.run()


def test_a_preempted_request_recomputes_only_what_was_overwritten(case):
    plain_model, plain = tight_kv(case, reuse="none")
    model, res = tight_kv(case, reuse="computed")
    for m, r in ((plain_model, plain), (model, res)):
        t = r.table
        assert (t.outcome == Outcome.COMPLETED).all() and (t.generated == t.output_tokens).all()
        assert m.engines[0].free_blocks == m.engines[0].kv_blocks  # every block returned
        assert t.preemptions.sum() > 0
    assert len(res.table.arrival_s) == len(plain.table.arrival_s)
    # same requests, less recomputation: less busy time, and no request waits longer for its last token on average
    assert res.replica_busy_s.sum() < plain.replica_busy_s.sum()
    e2e = res.table.completion_s - res.table.arrival_s
    e2e_plain = plain.table.completion_s - plain.table.arrival_s
    assert np.mean(e2e) < np.mean(e2e_plain)


def test_sglang_keeps_only_the_prompt_of_a_retracted_request(case, monkeypatch):
    """reuse_preempted_kv: prompt (SGLang's radix cache: the answer's tokens are freed on a retraction) keeps at most
    the prompt's full blocks; computed (vLLM V1) keeps the answer's too."""
    kept: dict[str, list[tuple[int, int]]] = {"prompt": [], "computed": []}
    mode = {"now": ""}
    original = PreemptedKV.keep

    def spy(self, rid, blocks, free_blocks, freed_blocks):
        kept[mode["now"]].append((rid, blocks))
        original(self, rid, blocks, free_blocks, freed_blocks)

    monkeypatch.setattr(PreemptedKV, "keep", spy)
    tables = {}
    for m in ("prompt", "computed"):
        mode["now"] = m
        model, res = tight_kv(case, reuse=m)
        assert (res.table.outcome == Outcome.COMPLETED).all()
        assert model.engines[0].free_blocks == model.engines[0].kv_blocks
        tables[m] = res.table
    prompt_blocks = lambda t, rid: int(t.input_tokens[rid]) // 16  # noqa: E731
    assert kept["prompt"] and all(b <= prompt_blocks(tables["prompt"], r) for r, b in kept["prompt"])
    assert any(b > prompt_blocks(tables["computed"], r) for r, b in kept["computed"])  # decoding victims' answers
