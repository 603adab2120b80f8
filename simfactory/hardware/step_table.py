"""What one engine step of a deployment costs at a few typical loads, and of what (`simfactory validate --steps`).

A forecast that looks off starts here: the step-time model a deployment resolved to (measured kernel tables plus
the engine's overhead, a roofline, a calibrated fit) priced at decode batches and prefill chunks sized from the
deployment's own limits and its traffic's lengths, with each part of the step where the model has parts (which
term dominates, where an eager prefill's launch floor binds, how a decode step grows with the batch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simfactory.hardware.step_time import StepLoad, StepTimeModel, idle_step_s

DECODE_BATCHES = (1, 8, 32, 128, 512)  # decode batches priced, besides the deployment's own largest
PROMPT_TOKENS = (512, 2048)  # single prompts priced, besides the traffic's mean prompt and the whole step budget


def _prompts(n: int, length: int) -> StepLoad:
    """n whole prompts of `length` tokens in one step (no earlier context)."""
    return StepLoad(n * length, 0, 0.0, n * length * (length + 1) / 2.0)


def typical_loads(max_num_seqs: int, max_num_batched_tokens: int, kv_capacity_tokens: int, context_tokens: int,
                  prompt_tokens: int, decode: bool = True, prefill: bool = True,
                  max_chunk_tokens: int | None = None) -> list[tuple[str, StepLoad]]:
    """Labelled loads one step of the deployment can hold. With `decode`: batches (each sequence reading
    `context_tokens` of KV, no more than the KV cache holds) up to the sequence limit and what the KV cache holds.
    With `prefill`: single prompts (short, the traffic's mean `prompt_tokens`, the whole step budget), the budget
    filled with prompts of the mean length (no more prompts than the sequence limit). With both: a mixed step, half
    the largest batch decoding beside a prompt chunk that fills the rest of the budget. No row needs more sequences
    than max_num_seqs, more tokens than max_num_batched_tokens or more KV than kv_capacity_tokens, and no prompt is
    longer than max_chunk_tokens (the most one request's chunk holds: rank_chunk_tokens; prompts longer than that are
    left out: an engine chunks them)."""
    seqs = max(int(max_num_seqs), 1)
    budget = max(min(int(max_num_batched_tokens), int(kv_capacity_tokens)), 1)
    one = min(budget, int(max_chunk_tokens)) if max_chunk_tokens is not None else budget
    context = max(min(int(context_tokens), int(kv_capacity_tokens)), 1)
    most = max(1, min(seqs, int(kv_capacity_tokens) // context))
    loads = []
    if decode:
        loads += [(f"decode {b:,} x {context:,}", StepLoad(0, b, float(b * context), 0.0))
                  for b in sorted({b for b in DECODE_BATCHES if b < most} | {most})]
    if prefill:
        mean = max(int(prompt_tokens), 1)
        loads += [(f"prefill 1 x {n:,}", _prompts(1, n)) for n in sorted({*PROMPT_TOKENS, mean, one}) if n <= one]
        n = min(budget // mean, seqs)
        if n >= 2 and mean <= one:
            loads.append((f"prefill {n:,} x {mean:,}", _prompts(n, mean)))
    half = most // 2  # with the prompt beside them, half + 1 <= most <= max_num_seqs sequences
    chunk = min(budget - half, int(kv_capacity_tokens) - half * context, one)
    if decode and prefill and half >= 1 and chunk >= 1:
        mixed = StepLoad(chunk, half, float(half * context), chunk * (chunk + 1) / 2.0)
        loads.append((f"mixed {half:,} x {context:,}+{chunk:,}", mixed))
    return loads


def cached_prefill(max_num_batched_tokens: int, kv_capacity_tokens: int, context_tokens: int,
                   prompt_tokens: int, max_chunk_tokens: int | None = None) -> tuple[str, StepLoad] | None:
    """A prompt of the traffic's mean length (no longer than the step budget) after `context_tokens` already computed
    (a cached prefix, an agent's retained context, earlier chunks: what prefix caching leaves a step to do, the load's
    computed_tokens), as (label, load); None where the KV cache cannot hold both."""
    new = min(int(prompt_tokens), int(max_num_batched_tokens), int(max_chunk_tokens or max_num_batched_tokens))
    cached = min(int(context_tokens), int(kv_capacity_tokens) - new)
    if new < 1 or cached < 1:
        return None
    return f"prefill {new:,} after {cached:,}", StepLoad(new, 0, 0.0, new * (cached + (new + 1) / 2.0), cached)


def step_rows(model: StepTimeModel, loads: list[tuple[str, StepLoad]]) -> list[dict[str, Any]]:
    """Each load's step time, tokens computed per second (prompt tokens + decoded tokens over the step) and, where
    the model has them, its parts in milliseconds (they add up to the step; `parts_ms` None where it has none),
    with what a latent-attention engine adds around the tables for a load's computed tokens (StepTimeModel.mla_extend)."""
    breakdown: Callable[[StepLoad], dict[str, float]] | None = getattr(model, "breakdown_s", None)
    rows = []
    floor_s = model.prefill_launch_s()
    for label, load in loads:
        step_s, extra_s, kind = idle_step_s(model, load)
        parts = None
        if breakdown is not None:
            parts_s = breakdown(load)
            if extra_s:
                parts_s[kind] = extra_s
                parts_s["launch_wait"] = 0.0
                parts_s["launch_wait"] = max(0.0, floor_s - sum(parts_s.values()))
            parts = {name: s * 1e3 for name, s in parts_s.items() if s}
        rows.append({"load": label, "prefill_tokens": load.prefill_tokens, "decode_seqs": load.decode_seqs,
                     "kv_tokens_read": load.kv_tokens_read, "step_ms": step_s * 1e3,
                     "tokens_per_s": (load.prefill_tokens + load.decode_seqs) / step_s if step_s > 0 else 0.0,
                     "parts_ms": parts})
    return rows
