"""sglang.bench_serving random runs reproduced request by request (simfactory/bench_serving.py) and replayed in
fidelity points: the published totals, shared prefixes, warm radix caches."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simfactory.bench_serving import RandomRun, warm_prompts
from simfactory.sim.prefix_cache import PrefixCache


@pytest.mark.parametrize("input_len, output_len, n, total_in, total_out", [
    (1000, 1000, 10, 6101, 4210),  # the SGLang cookbook pages' printed totals (DeepSeek-R1 B200, Qwen3 B200)
    (1000, 1000, 80, 39668, 40725),
    (1000, 1000, 500, 249831, 252162),
    (1000, 8000, 320, 158939, 1300705),
    (8000, 1000, 80, 300020, 41669 - 80),  # the Llama-3.1 A100 page: one token a request more than drawn
    (8000, 1000, 320, 1273893, 170000 - 320),
])
def test_the_seeded_draws_give_the_published_totals(input_len, output_len, n, total_in, total_out):
    inp, out = RandomRun(input_len, output_len, n).lengths()
    assert (int(inp.sum()), int(out.sum())) == (total_in, total_out)
    assert inp.min() >= 1 and inp.max() <= input_len and out.min() >= 0 and out.max() <= output_len


def test_a_longer_run_starts_with_a_shorter_ones_requests():
    """--num-prompts only cuts the same stream of prompt lengths, which is why one run warms the next."""
    short, long = RandomRun(8000, 1000, 10).lengths()[0], RandomRun(8000, 1000, 80).lengths()[0]
    assert (long[:10] == short).all()


def test_runs_share_each_prompts_prefix_in_a_prefix_cache():
    """Prompt i of two runs with one seed is cut from one conversation: a cache holding one run's prompts gives the
    other's prompt i exactly min(length, length') tokens; another seed shares nothing."""
    a, b = RandomRun(1000, 1000, 10), RandomRun(8000, 1000, 10)
    la, lb = a.lengths()[0], b.lengths()[0]
    cache = PrefixCache(10**7)
    for i, n in enumerate(la):
        cache.insert_blocks(a.prompt_blocks(i, int(n)))
    hits = [cache.lookup((), b.prompt_blocks(i, int(n)))[0] for i, n in enumerate(lb)]
    assert hits == [min(int(x), int(y)) for x, y in zip(la, lb)]
    other = RandomRun(8000, 1000, 10, seed=2)
    assert cache.lookup((), other.prompt_blocks(0, int(other.lengths()[0][0])))[0] == 0


def test_a_run_starts_with_its_warm_up_prompt_after_the_earlier_runs():
    run, before = RandomRun(1000, 1000, 80), RandomRun(1000, 1000, 10)
    own = warm_prompts(run, [])
    assert own == [run.prompt_blocks(0, int(run.lengths()[0][0]))]
    warm = warm_prompts(run, [before])
    assert len(warm) == 1 + 10 + 1 and warm[-1] == own[0]  # earlier run: its warm-up and its 10 prompts, then ours


def _point(**extra):
    from simfactory.fidelity import FidelityPoint

    base = dict(id="b", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=496, output_tokens=509,
                concurrency=16, requests=80, metric="ttft_s", measured=0.1,
                bench_serving={"input_len": 1000, "output_len": 1000, "num_prompts": 80})
    return FidelityPoint(**{**base, **extra})


@pytest.mark.parametrize("extra, reason", [
    ({"input_tokens": 500}, "input lengths of mean 495.85; input_tokens"),
    ({"output_tokens": 510}, "output lengths of mean 509.06; output_tokens"),
    ({"requests": 10}, "requests = its num_prompts"),
    ({"input_distribution": {"kind": "uniform", "low": 1, "high": 991}}, "leave out input_distribution"),
])
def test_a_replayed_point_must_state_what_the_draws_give(extra, reason):
    with pytest.raises(ValidationError, match=reason):
        _point(**extra)


def test_a_warm_radix_cache_shortens_the_first_burst_and_every_request_ends():
    """With the earlier run's prompts cached (the same 32 prompts: a longer --num-prompts starts with a shorter
    one's), the long prompts are prefilled from the cache: TTFT falls, and so does the time per output token, which
    the prefills the cache saves no longer interrupt (SGLang 0.5 prefills eagerly)."""
    from simfactory.fidelity import closed_loop_metrics

    run = {"input_len": 8000, "output_len": 100, "num_prompts": 32}
    cold = _point(input_tokens=4129, output_tokens=44, requests=32, bench_serving=run)
    warm = _point(input_tokens=4129, output_tokens=44, requests=32, bench_serving={**run, "after": [run]})
    (c, _), (w, _) = (closed_loop_metrics(p, "sglang-0.5", 256, 8192, requests=32) for p in (cold, warm))
    assert w["ttft_s"] < 0.5 * c["ttft_s"], (w, c)
    assert w["itl_median_s"] < c["itl_median_s"] and w["output_tokens_per_s"] > c["output_tokens_per_s"], (w, c)


def test_the_replay_sends_the_drawn_requests_in_order():
    import numpy as np

    from simfactory.fidelity import closed_loop_scenario, with_rows
    from simfactory.resolve import resolve
    from simfactory.sim.outcomes import Outcome
    from simfactory.sim.run import simulate

    p = _point()
    run = RandomRun(1000, 1000, 80)
    rs = with_rows(resolve(closed_loop_scenario(p, "sglang-0.5", 256, 2048, 3600.0, 80)), run.replay_rows(1))
    t = simulate(rs, keep_logs=0).table
    inp, out = run.lengths()
    assert (t.outcome == Outcome.COMPLETED).all() and len(t.arrival_s) == 80
    # request ids are given at the send: the clients send the rows in bench_serving's order (its semaphore's FIFO)
    assert (t.input_tokens == inp).all() and (t.output_tokens == np.maximum(out + 1, 1)).all()


def test_hash_ids_stay_apart_across_seeds_and_prompts_and_below_the_caches_other_keys():
    from simfactory.bench_serving import MAX_PROMPT_TOKENS, MAX_PROMPTS, MAX_SEED

    top = RandomRun(10, 10, 1, seed=MAX_SEED).hash_ids(MAX_PROMPTS - 1, MAX_PROMPT_TOKENS)
    assert max(top) < 1 << 60  # where the prefix cache's workload and task keys begin
    a, b = RandomRun(10, 10, 1, seed=1), RandomRun(10, 10, 1, seed=2)
    ids = [set(r.hash_ids(i, 5000)) for r in (a, b) for i in (0, 1)]
    assert all(x.isdisjoint(y) for k, x in enumerate(ids) for y in ids[k + 1:])
    with pytest.raises(ValueError, match="past what the hash ids can name"):
        a.hash_ids(MAX_PROMPTS, 10)


def test_warm_prompts_need_a_prefix_cache_and_leave_a_run_without_one_unchanged():
    """simulate(warm_prompts=) fills each replica's prefix cache; a deployment without one runs exactly as before."""
    from simfactory.fidelity import closed_loop_scenario, with_rows
    from simfactory.resolve import resolve
    from simfactory.sim.run import simulate

    run = RandomRun(8000, 100, 32)
    p = _point(input_tokens=4129, output_tokens=44, requests=32,
               bench_serving={"input_len": 8000, "output_len": 100, "num_prompts": 32})
    rs = with_rows(resolve(closed_loop_scenario(p, "sglang-0.5", 256, 8192, 3600.0, 32)), run.replay_rows())
    warm = run.cached_prompts()
    plain, told = simulate(rs, keep_logs=0).table, simulate(rs, keep_logs=0, warm_prompts=warm).table
    assert (plain.first_token_s == told.first_token_s).all() and (plain.completion_s == told.completion_s).all()


@pytest.mark.parametrize("bench, reason", [
    ({"input_len": 2_000_000, "output_len": 1, "num_prompts": 1_000_000}, "a replay holds at most 100,000,000"),
    ({"input_len": 1000, "output_len": 1, "num_prompts": 80,
      "after": [{"input_len": 2_000_000, "output_len": 1, "num_prompts": 50}]}, "a replay holds at most"),
    ({"input_len": 0, "output_len": 1, "num_prompts": 80}, "greater than 0"),
    ({"input_len": 10**300, "output_len": 1, "num_prompts": 80}, "less than or equal to 2000000"),
    ({"input_len": 1000, "output_len": 1, "num_prompts": 2**63}, "less than or equal to 1000000"),
    ({"input_len": 1000, "output_len": 1, "num_prompts": 80, "seed": 2**63}, "less than or equal to 33554431"),
    ({"input_len": 1000, "output_len": 1, "num_prompts": 80, "range_ratio": float("nan")}, "finite number"),
    ({"input_len": 1000, "output_len": 1, "num_prompts": 80, "range_ratio": 1e300}, "less than or equal to 1"),
    ({"input_len": 1000, "output_len": 1, "num_prompts": 80, "extra_output_tokens": 2}, "less than or equal to 1"),
])
def test_hostile_replay_arguments_are_refused_before_anything_is_drawn(bench, reason):
    """A run past the replay's bounds is one validation error, not a hash-id list of billions being built."""
    with pytest.raises(ValidationError, match=reason):
        _point(bench_serving=bench)
