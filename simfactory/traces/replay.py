"""Turn a parsed trace into the rows a class replays: window, speed-up and length clipping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simfactory.config.scenario import TraceSpec
from simfactory.traces.parse import Trace


@dataclass(frozen=True)
class ReplayRows:
    arrival_s: np.ndarray | None  # seconds from the window start, already divided by the speed-up
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    sample: float
    hash_ids: list[tuple[int, ...]] | None = None  # per row: the prompt's block hashes (Mooncake)
    hash_block_tokens: int = 0


def replay_rows(trace: Trace, spec: TraceSpec) -> ReplayRows:
    inp = trace.input_tokens.copy()
    out = trace.output_tokens.copy()
    times = trace.arrival_s
    hashes = [tuple(h) for h in trace.hash_ids] if trace.hash_ids is not None else None
    if times is not None:
        keep = times >= spec.start_s
        if spec.end_s is not None:
            keep &= times < spec.end_s
        times = (times[keep] - spec.start_s) / spec.speedup
        inp, out = inp[keep], out[keep]
        if hashes is not None:
            hashes = [hashes[i] for i in np.flatnonzero(keep)]
    if spec.max_input_tokens is not None:
        inp = np.minimum(inp, spec.max_input_tokens)
    if spec.max_output_tokens is not None:
        out = np.minimum(out, spec.max_output_tokens)
    return ReplayRows(times, np.maximum(inp, 1), np.maximum(out, 1), spec.sample, hashes, trace.hash_block_tokens)
