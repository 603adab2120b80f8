"""Analytic bounds that prune a plan's search before simulating: a replica cannot serve more than its
full-batch throughput, nor more than its API server's cores can read and stream, and (one sequence at a time) an
M/M/c fleet needs Erlang C's servers."""

from __future__ import annotations

import math

from simfactory.hardware.step_time import StepLoad, StepTimeModel


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lambda / mu (Erlang C), computed stably."""
    if a >= c:
        return 1.0
    inv_b = 1.0  # Erlang B by recursion, then C from B
    for k in range(1, c + 1):
        inv_b = 1.0 + inv_b * k / a
    b = 1.0 / inv_b
    rho = a / c
    return b / (1.0 - rho + rho * b)


def erlang_c_mean_wait_s(c: int, lam: float, mu: float) -> float:
    return math.inf if lam >= c * mu else erlang_c(c, lam / mu) / (c * mu - lam)


def erlang_c_min_servers(lam: float, mu: float, max_wait_s: float, limit: int = 100_000) -> int:
    """Smallest c with M/M/c mean wait <= max_wait_s."""
    c = max(1, math.floor(lam / mu) + 1)
    while erlang_c_mean_wait_s(c, lam, mu) > max_wait_s and c < limit:
        c += 1
    return c


def replica_max_rate_per_s(model: StepTimeModel, max_seqs: int, kv_capacity_tokens: int, input_tokens: float,
                           output_tokens: float) -> float:
    """An upper bound on requests/s one replica can complete: decode at the largest batch memory and
    max_num_seqs allow, plus each prompt's marginal prefill time in such a batch (without an eager-prefill
    floor: a batch of prompts shares one, so charging each prompt a whole floor would not bound the rate)."""
    model = model.without_prefill_floor()
    ctx = input_tokens + output_tokens / 2
    batch = max(1, min(max_seqs, int(kv_capacity_tokens // max(1.0, input_tokens + output_tokens))))
    decode = StepLoad(decode_seqs=batch, kv_tokens_read=batch * ctx)
    t_decode = model.step_s(decode)
    n_in = int(round(input_tokens))
    mixed = StepLoad(prefill_tokens=n_in, decode_seqs=batch, kv_tokens_read=batch * ctx,
                     prefill_attn_pairs=n_in * (n_in + 1) / 2)
    prefill = max(0.0, model.step_s(mixed) - t_decode)
    per_request_s = max(output_tokens - 1, 0) * t_decode / batch + prefill
    return math.inf if per_request_s <= 0 else 1.0 / per_request_s


def front_end_max_rate_per_s(cores: float, work_s: float) -> float:
    """An upper bound on requests/s one replica's API server can read and stream: its cores over the CPU work of a
    request (FrontEndWork.request_s); inf when it does none."""
    return math.inf if work_s <= 0 else cores / work_s


def single_sequence_service_s(model: StepTimeModel, input_tokens: float, output_tokens: float) -> float:
    """Service time with max_num_seqs = 1: a prefill step, then one decode step per further token."""
    n_in = int(round(input_tokens))
    prefill = model.step_s(StepLoad(prefill_tokens=n_in, prefill_attn_pairs=n_in * (n_in + 1) / 2))
    decode = model.step_s(StepLoad(decode_seqs=1, kv_tokens_read=input_tokens + output_tokens / 2))
    return prefill + max(output_tokens - 1, 0) * decode
