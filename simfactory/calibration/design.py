"""Which engine steps a microbenchmark times: a design of prefill-only, decode-only and mixed points.

A point fixes the batch a step computes (prompt tokens, decode batch size, context length), from which the
step-time model's load follows exactly (`StepLoad`). The design spans the ranges a serving replica sees so a
fit is interpolation, not extrapolation; a held-out share of it measures how well the fit generalises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from simfactory.hardware.step_time import StepLoad

StepKind = Literal["prefill", "decode", "mixed"]


@dataclass(frozen=True)
class DesignPoint:
    """One step shape: `prefill_seqs` prompts of `prefill_tokens` each (fresh, no cached context) and
    `decode_seqs` sequences each holding `context_tokens` of KV cache."""

    kind: StepKind
    prefill_seqs: int = 0
    prefill_tokens: int = 0  # per prompt
    decode_seqs: int = 0
    context_tokens: int = 0  # per decode sequence

    def load(self) -> StepLoad:
        """The step-time model's view of this step (same accounting as the engine: a fresh prompt chunk c
        contributes c * (c + 1) / 2 query-key pairs; a decode sequence reads its context + 1 tokens)."""
        chunk = self.prefill_tokens
        pairs = self.prefill_seqs * chunk * (chunk + 1) / 2
        return StepLoad(
            prefill_tokens=self.prefill_seqs * chunk,
            decode_seqs=self.decode_seqs,
            kv_tokens_read=float(self.decode_seqs * (self.context_tokens + 1)),
            prefill_attn_pairs=float(pairs),
        )


@dataclass(frozen=True)
class DesignSpace:
    """Ranges of the design (defaults: what an 8B-70B replica sees in chat and agent serving)."""

    prompt_tokens: tuple[int, ...] = (128, 512, 1024, 2048, 4096)
    batch_sizes: tuple[int, ...] = (1, 4, 16, 32, 64, 128, 256)
    context_tokens: tuple[int, ...] = (256, 1024, 4096, 8192)
    max_batched_tokens: int = 8192
    max_context_tokens: int = 32768


QUICK = DesignSpace(prompt_tokens=(128, 1024), batch_sizes=(1, 16, 64), context_tokens=(512, 4096))


def design(space: DesignSpace = DesignSpace(), mixed_points: int = 12, seed: int = 0) -> list[DesignPoint]:
    """Full factorial of prefill-only (prompts x batch within the token budget) and decode-only (batch x
    context within the KV budget) steps, plus seeded random mixed steps (a prompt chunk alongside decodes)."""
    points: list[DesignPoint] = []
    for p in space.prompt_tokens:
        for b in space.batch_sizes:
            if p * b <= space.max_batched_tokens:
                points.append(DesignPoint("prefill", prefill_seqs=b, prefill_tokens=p))
    for b in space.batch_sizes:
        for c in space.context_tokens:
            if b * c <= space.max_context_tokens * max(space.batch_sizes) // 4:
                points.append(DesignPoint("decode", decode_seqs=b, context_tokens=c))
    rng = np.random.default_rng(seed)
    for _ in range(mixed_points):
        b = int(rng.choice(space.batch_sizes))
        c = int(rng.choice(space.context_tokens))
        room = max(space.max_batched_tokens - b, 1)
        p = int(min(rng.choice(space.prompt_tokens), room))
        points.append(DesignPoint("mixed", prefill_seqs=1, prefill_tokens=p, decode_seqs=b, context_tokens=c))
    return points
