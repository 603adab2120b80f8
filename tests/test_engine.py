"""Continuous-batching engine: exact step timings, chunked prefill, KV blocks, preemption, conservation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scenario_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfactory.api import run
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import FleetModel

C0, A, B, C = 0.004, 1e-5, 3e-4, 2e-7  # overhead, per prefill token, per decode seq, per KV token read
LINEAR = {"overhead_s": C0, "s_per_prefill_token": A, "s_per_decode_seq": B, "s_per_kv_token": C}


def one_request(case, prompt: int, out: int, **dep):
    """A single request at t=0 on an idle replica (constant arrivals at a rate slower than the horizon)."""
    doc = scenario_doc(rate=0.01, process="constant", input_tokens={"kind": "fixed", "value": prompt},
                       output_tokens={"kind": "fixed", "value": out}, horizon_s=50, **dep)
    return run(case(doc, LINEAR)).requests.iloc[0]


def test_single_request_timing_is_the_exact_sum_of_step_times(case):
    prompt, out = 1000, 40
    r = one_request(case, prompt, out, max_num_batched_tokens=256)
    chunks = -(-prompt // 256)  # chunked prefill: 4 steps of <= 256 tokens
    ttft = chunks * C0 + A * prompt
    # decode step j (j = 1..out-1) reads the prompt and the j tokens generated so far
    decode = sum(C0 + B + C * (prompt + j) for j in range(1, out))
    assert r["ttft_s"] == pytest.approx(ttft, rel=1e-12)
    assert r["e2e_s"] == pytest.approx(ttft + decode, rel=1e-12)
    assert r["tpot_s"] == pytest.approx(decode / (out - 1), rel=1e-12)
    assert r["outcome"] == "completed" and r["generated_tokens"] == out


def test_without_chunked_prefill_the_prompt_goes_in_one_step(case):
    r = one_request(case, 1000, 5, max_num_batched_tokens=2048, enable_chunked_prefill=False)
    assert r["ttft_s"] == pytest.approx(C0 + A * 1000, rel=1e-12)


def test_too_long_requests_are_rejected_and_recorded(case):
    doc = scenario_doc(rate=0.01, process="constant", input_tokens={"kind": "fixed", "value": 3000},
                       output_tokens={"kind": "fixed", "value": 10}, horizon_s=50,
                       max_num_batched_tokens=2048, enable_chunked_prefill=False)
    m = run(case(doc, LINEAR))
    assert (m.requests["outcome"] == "rejected_too_long").all()
    assert m.summary["outcomes"]["rejected_too_long"] == len(m.requests) > 0
    doc = scenario_doc(rate=0.01, process="constant", input_tokens={"kind": "fixed", "value": 900},
                       output_tokens={"kind": "fixed", "value": 200}, horizon_s=50, max_model_len=1024)
    assert (run(case(doc, LINEAR)).requests["outcome"] == "rejected_too_long").all()


def test_batching_shares_steps(case):
    """Two requests arriving together decode in the same steps: both finish together, faster than in series."""
    doc = scenario_doc(rate=1000, process="constant", input_tokens={"kind": "fixed", "value": 10},
                       output_tokens={"kind": "fixed", "value": 50}, horizon_s=0.0015, max_num_seqs=8)
    req = run(case(doc, LINEAR)).requests
    assert len(req) == 2
    # the second arrives 1 ms later, during the first's prefill step; it joins at the next step
    assert req["completion_s"].iloc[1] - req["completion_s"].iloc[0] == pytest.approx(C0 + A * 10 + B + C * 59, rel=0.2)
    serial = 2 * 50 * C0
    assert req["completion_s"].max() < serial


def fleet(case, doc, step=LINEAR):
    model = FleetModel(case(doc, step), seed=doc["seed"])
    return model, model.run()


def test_kv_cache_full_preempts_and_still_finishes_every_request(case):
    doc = scenario_doc(rate=40, input_tokens={"kind": "uniform", "low": 100, "high": 400},
                       output_tokens={"kind": "uniform", "low": 50, "high": 300}, horizon_s=20,
                       max_num_seqs=64, max_num_batched_tokens=1024, kv_cache_tokens=4096, block_size=16)
    model, res = fleet(case, doc)
    t = res.table
    assert (t.outcome == Outcome.COMPLETED).all()
    assert t.preemptions.sum() > 0
    assert (t.generated == t.output_tokens).all()
    eng = model.engines[0]
    assert eng.free_blocks == eng.kv_blocks  # every block returned
    assert max(max(row) for row in res.timelines.kv_used_frac) <= 1.0
    # a preempted request keeps its first-token time and still produces exactly its tokens
    pre = t.preemptions > 0
    assert np.all(t.first_token_s[pre] <= t.completion_s[pre])


def test_no_preemption_with_ample_kv(case):
    doc = scenario_doc(rate=40, input_tokens={"kind": "uniform", "low": 100, "high": 400},
                       output_tokens={"kind": "uniform", "low": 50, "high": 300}, horizon_s=20,
                       max_num_seqs=64, max_num_batched_tokens=1024, kv_cache_tokens=10_000_000)
    _, res = fleet(case, doc)
    assert res.table.preemptions.sum() == 0


def test_max_num_seqs_bounds_the_running_batch(case):
    doc = scenario_doc(rate=200, output_tokens={"kind": "fixed", "value": 100}, horizon_s=5, max_num_seqs=7)
    doc["sim"]["timeline_resolution_s"] = 0.01
    _, res = fleet(case, doc)
    assert max(max(r) for r in res.timelines.running) == 7


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    replicas=st.integers(1, 3),
    rate=st.floats(1.0, 60.0),
    max_num_seqs=st.integers(1, 48),
    budget_extra=st.integers(0, 2000),
    kv_tokens=st.integers(2048, 40_000),
    block_size=st.sampled_from([1, 8, 16, 32]),
    chunked=st.booleans(),
    balancer=st.sampled_from(["round_robin", "random", "least_outstanding", "pull", "power_of_two", "least_kv"]),
    drain=st.booleans(),
    schedule=st.sampled_from(["decode_first", "prefill_first"]),
    preemption=st.sampled_from(["recompute", "swap"]),
)
def test_every_request_is_accounted_for(case, seed, replicas, rate, max_num_seqs, budget_extra, kv_tokens,
                                        block_size, chunked, balancer, drain, schedule, preemption):
    """Random small fleets: every request ends with one outcome; completed ones produced exactly their tokens;
    KV blocks are conserved; no timing goes backwards."""
    doc = scenario_doc(
        seed=seed, replicas=replicas, rate=rate, balancer=balancer, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_seqs + budget_extra + 64, kv_cache_tokens=kv_tokens,
        block_size=block_size, enable_chunked_prefill=chunked, schedule=schedule, preemption_mode=preemption,
        input_tokens={"kind": "lognormal", "median": 300, "sigma": 1.0, "max": 6000},
        output_tokens={"kind": "geometric", "mean": 80}, horizon_s=8,
    )
    doc["sim"]["drain"] = drain
    model, res = fleet(case, doc)
    t = res.table
    assert not (t.outcome == Outcome.PENDING).any()
    done = t.outcome == Outcome.COMPLETED
    assert (t.generated[done] == t.output_tokens[done]).all()
    assert (t.generated <= t.output_tokens).all()
    assert np.all(t.arrival_s[done] <= t.first_scheduled_s[done])
    assert np.all(t.first_scheduled_s[done] < t.first_token_s[done])
    assert np.all(t.first_token_s[done] <= t.completion_s[done])
    if drain:
        assert (t.outcome != Outcome.UNFINISHED).all()
        for eng in model.engines:
            assert eng.free_blocks == eng.kv_blocks
    for eng in model.engines:
        held = eng.kv_blocks - eng.free_blocks
        assert 0 <= held <= eng.kv_blocks
    counts = np.bincount(t.outcome, minlength=4)
    assert counts.sum() == len(t)


def test_window_busy_fraction_is_exact_off_the_sampling_grid(case):
    """Busy fraction uses snapshots at the window edges, not the sampling grid (horizon 1.5 s, 1 s grid)."""
    doc = scenario_doc(rate=1.0, process="constant", horizon_s=1.5, output_tokens={"kind": "fixed", "value": 30})
    m = run(case(doc, {"overhead_s": 0.01}))
    # requests at t=0 and t=1 each keep the replica busy 0.3 s: 0.6 s busy in a 1.5 s window
    assert m.summary["replicas"][0]["busy_frac"] == pytest.approx(0.4)
    assert m.summary["cost"]["pools"][0]["utilization"] == pytest.approx(0.4)


def test_unfinished_requests_report_the_tokens_they_got(case):
    doc = scenario_doc(rate=0.5, process="constant", horizon_s=1.005, output_tokens={"kind": "fixed", "value": 1000})
    doc["sim"]["drain"] = False
    model, res = fleet(case, doc, {"overhead_s": 0.01})
    t = res.table
    assert t.outcome[0] == Outcome.UNFINISHED
    assert t.generated[0] == 100  # 100 steps of 10 ms by t = 1.005 s: the prefill step's token + 99 decodes
    assert t.replica_s[0] == pytest.approx(1.0)


def test_abort_during_a_zero_length_step_is_safe(case):
    doc = scenario_doc(rate=1.0, process="constant", horizon_s=1.0, input_tokens={"kind": "fixed", "value": 40},
                       output_tokens={"kind": "fixed", "value": 5}, max_num_batched_tokens=16, kv_cache_tokens=1600)
    model = FleetModel(case(doc, {"overhead_s": 0.0, "s_per_decode_seq": 0.01}), seed=1)

    def aborter():
        for _ in range(3):
            yield model.env.timeout(0)
        model.abort(0)

    model.env.process(aborter())
    res = model.run()
    assert res.table.outcome[0] == Outcome.ABORTED
    assert model.engines[0].free_blocks == model.engines[0].kv_blocks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefill_first_with_a_prefix_cache_never_forms_an_empty_step(case, seed):
    """Prefill-first pauses the decodes only for a prompt admission will take: its cached prefix needs blocks too, as
    admission counts them (a tight KV cache, a large prefix cache, shared 6,000-token prefixes: it used to leave an
    empty step, a crash). Every request ends with an outcome."""
    step = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4, "s_per_kv_token": 2e-7}
    doc = scenario_doc(seed=seed, rate=20, max_num_seqs=16, max_num_batched_tokens=8192, kv_cache_tokens=30_000,
                       schedule="prefill_first", prefix_cache_tokens=200_000, horizon_s=10,
                       input_tokens={"kind": "lognormal", "median": 2000, "sigma": 1.0, "max": 20000},
                       output_tokens={"kind": "geometric", "mean": 100})
    doc["traffic"]["classes"][0].update(shared_prefix_tokens=6000, prefix_variants=3)
    req = run(case(doc, step)).requests
    assert len(req) > 100 and req["outcome"].notna().all()
    assert (req["cached_tokens"] > 0).any()  # the cache was used


def test_prefill_first_pauses_decodes_for_every_chunk_of_a_chunked_prompt(case):
    """SGLang continues a chunked prompt in a prefill batch of its own while the decodes wait (get_new_batch_prefill
    returns it whenever a chunked request is in progress): a 100-token prompt in 40-token chunks that arrives during
    the first request's prefill pauses its decodes for three steps, not one."""
    doc = scenario_doc(rate=200, process="constant", horizon_s=0.006, max_num_seqs=8, max_num_batched_tokens=40,
                       schedule="prefill_first", output_tokens={"kind": "fixed", "value": 30})
    doc["traffic"]["classes"][0]["input_tokens"] = {"kind": "fixed", "value": 10}
    doc["traffic"]["classes"].append({**doc["traffic"]["classes"][0], "name": "long", "weight": 1,
                                      "input_tokens": {"kind": "fixed", "value": 100}})
    req = run(case(doc, {"overhead_s": 0.01})).requests.sort_values("arrival_s")
    assert list(req["input_tokens"]) == [10, 100]
    assert req["e2e_s"].iloc[0] == pytest.approx(33 * 0.01)  # 30 steps of its own + 3 paused
    assert req["ttft_s"].iloc[1] == pytest.approx(0.04 - 0.005)  # its three chunks from 10 ms


def test_prefill_first_pauses_decodes_decode_first_does_not(case):
    """Two requests 5 ms apart: with prefill_first the second's prefill runs alone (the first's decode waits
    a step); with decode_first it rides along with the first's decode."""
    def first_e2e(schedule):
        doc = scenario_doc(rate=200, process="constant", horizon_s=0.006, input_tokens={"kind": "fixed", "value": 10},
                           output_tokens={"kind": "fixed", "value": 30}, max_num_seqs=8, schedule=schedule)
        return run(case(doc, {"overhead_s": 0.01})).requests.sort_values("arrival_s")["e2e_s"].iloc[0]

    assert first_e2e("decode_first") == pytest.approx(30 * 0.01)
    assert first_e2e("prefill_first") == pytest.approx(31 * 0.01)


def test_disaggregation_conserves_requests_and_moves_each_kv_cache_once(case):
    doc = scenario_doc(replicas=2, rate=30, horizon_s=20, max_num_seqs=32,
                       input_tokens={"kind": "uniform", "low": 50, "high": 2000},
                       output_tokens={"kind": "uniform", "low": 1, "high": 200},
                       disaggregated={"prefill_replicas": 1, "kv_link_gb_s": 10, "kv_link_latency_s": 0.001})
    doc["pools"][0]["count"] = 3
    model, res = fleet(case, doc, {"overhead_s": 0.005, "s_per_prefill_token": 2e-5, "s_per_decode_seq": 1e-4})
    t = res.table
    assert (t.outcome == Outcome.COMPLETED).all() and (t.generated == t.output_tokens).all()
    roles = {r.replica_id: r.role for r in res.replicas}
    assert sorted(roles.values()) == ["decode", "decode", "prefill"]
    moved = t.output_tokens > 1
    kv_per_token = 131072  # llama-3.1-8b, bf16
    expected = t.input_tokens * kv_per_token / 10e9 + 0.001
    assert np.allclose(t.kv_transfer_s[moved], expected[moved])  # exactly one transfer each
    assert (t.kv_transfer_s[~moved] == 0).all()
    assert all(roles[p] == "prefill" for p in t.prefill_replica[moved])
    assert all(roles[r] == "decode" for r in t.replica[moved])
    assert all(e.free_blocks == e.kv_blocks for e in model.engines)


def test_swap_preemption_trades_recompute_for_host_transfers(case):
    def busy(mode: str, link_gb_s: float) -> tuple[float, int]:
        doc = scenario_doc(rate=20, input_tokens={"kind": "uniform", "low": 400, "high": 800},
                           output_tokens={"kind": "uniform", "low": 100, "high": 300}, horizon_s=20,
                           max_num_seqs=64, max_num_batched_tokens=1024, kv_cache_tokens=6000,
                           preemption_mode=mode, host_link_gb_s=link_gb_s)
        model, res = fleet(case, doc, {"overhead_s": 0.004, "s_per_prefill_token": 2e-5, "s_per_decode_seq": 1e-4})
        t = res.table
        assert (t.outcome == Outcome.COMPLETED).all() and (t.generated == t.output_tokens).all()
        assert model.engines[0].free_blocks == model.engines[0].kv_blocks
        return float(res.replica_busy_s.sum()), int(t.preemptions.sum())

    recompute, n1 = busy("recompute", 50)
    fast_swap, n2 = busy("swap", 1000)
    slow_swap, _ = busy("swap", 0.5)
    assert n1 > 0 and n2 > 0
    assert fast_swap < recompute < slow_swap


def test_host_tier_of_the_prefix_cache_serves_evicted_prefixes(case):
    doc = scenario_doc(rate=2.0, process="constant", horizon_s=40, input_tokens={"kind": "fixed", "value": 100},
                       output_tokens={"kind": "fixed", "value": 5}, prefix_cache_tokens=1500,
                       prefix_cache_host_tokens=100_000, host_link_gb_s=1.0)
    doc["traffic"]["classes"][0].update(shared_prefix_tokens=1000, prefix_variants=3)
    req = run(case(doc, {"overhead_s": 0.004, "s_per_prefill_token": 1e-5})).requests
    hits = req[req["cached_tokens"] == 1000]
    assert len(hits) > 0.8 * len(req)  # the device tier holds one prefix; the host tier the others
    load = 1000 * 131072 / 1e9  # KV bytes of the prefix over a 1 GB/s host link
    host_hits = hits[hits["ttft_s"] > 0.1]
    assert len(host_hits) > 0
    assert np.allclose(host_hits["ttft_s"], 0.004 + 1e-5 * 100 + load)


def test_ssd_tier_below_the_host_tier(case):
    doc = scenario_doc(rate=2.0, process="constant", horizon_s=40, input_tokens={"kind": "fixed", "value": 100},
                       output_tokens={"kind": "fixed", "value": 5}, prefix_cache_tokens=1500,
                       prefix_cache_host_tokens=1500, prefix_cache_ssd_tokens=100_000, host_link_gb_s=10.0,
                       ssd_gb_s=1.0)
    doc["traffic"]["classes"][0].update(shared_prefix_tokens=1000, prefix_variants=4)
    req = run(case(doc, {"overhead_s": 0.004, "s_per_prefill_token": 1e-5})).requests
    base = 0.004 + 1e-5 * 100
    kv = 1000 * 131072
    ttft = req[req["cached_tokens"] == 1000]["ttft_s"].round(9)
    seen = set(ttft)
    # device hits (no load), host hits (10 GB/s) and SSD hits (1 GB/s) all occur
    assert {round(base, 9), round(base + kv / 10e9, 9), round(base + kv / 1e9, 9)} <= seen


def test_full_sequence_admission_takes_the_longest_request_the_fleet_lets_in(case):
    """The fleet admits a request of up to the KV cache's tokens + 1 (its last token's KV is never written):
    full-sequence admission must reserve the same, not one token more (a 2,000 + 993-token request in a 3,000-token
    cache of 16-token blocks used to be refused for good: an empty step, a crash)."""
    doc = scenario_doc(rate=1, horizon_s=5, kv_cache_tokens=3000, kv_admission="full_sequence",
                       input_tokens={"kind": "fixed", "value": 2000}, output_tokens={"kind": "fixed", "value": 993})
    req = run(case(doc, {"overhead_s": 0.01})).requests
    assert len(req) >= 1 and (req["outcome"] == "completed").all()
