"""Trace statistics: counts, rates over time, length percentiles, burstiness and prefix reuse (fit.py fits a
workload to them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from simfactory.traces.parse import Trace

MAX_RATE_BUCKETS = 1_000_000  # a year in 60 s buckets is ~530,000


ROUNDED_ZERO_GAPS = 0.5  # more zero gaps than this, on a coarse grid, is rounding, not simultaneous requests


def timestamp_resolution_s(t: np.ndarray) -> float | None:
    """The grid the timestamps sit on when they all are whole multiples of 1 s, 0.1 s or 0.01 s (None: finer)."""
    rel = t - t[0]
    for step in (1.0, 0.1, 0.01):
        if np.allclose(rel / step, np.round(rel / step), atol=1e-6):
            return step
    return None


def batch_tick_s(t: np.ndarray) -> float:
    """When most gaps are zero, the timestamps record batches on a coarse tick (Mooncake's FAST'25 conversation
    trace: 90% of gaps are 0, the others ~3 s): the tick is the median non-zero gap. 0 when the times are not
    batched (most gaps non-zero)."""
    gaps = np.diff(np.sort(t))
    if len(gaps) == 0 or (gaps == 0).mean() <= ROUNDED_ZERO_GAPS or not (gaps > 0).any():
        return 0.0
    return float(np.median(gaps[gaps > 0]))


def spread_batches(t: np.ndarray, rng: np.random.Generator, tick_s: float | None = None) -> np.ndarray:
    """Each timestamp moved uniformly within its batch tick (`tick_s`, default batch_tick_s(t); unchanged when the
    times are not batched): the arrival instants the batches stand for. Order is not kept: sort the result (with
    its rows) to replay it."""
    tick = batch_tick_s(t) if tick_s is None else tick_s
    return t + rng.uniform(0.0, tick, len(t)) if tick > 0 else t


def trace_stats(trace: Trace, bucket_s: float = 60.0) -> dict[str, Any]:
    """Count, duration, rate over time, token percentiles, inter-arrival CV and prefix reuse."""
    out: dict[str, Any] = {"file": trace.file, "format": trace.format, "requests": len(trace),
                           "bad_rows": len(trace.bad_rows)}
    for name, v in (("input_tokens", trace.input_tokens), ("output_tokens", trace.output_tokens)):
        p = np.percentile(v, [50, 90, 99])
        out[name] = {"mean": float(v.mean()), "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]),
                     "max": int(v.max())}
    if trace.arrival_s is not None and len(trace) > 1:
        t = trace.arrival_s
        gaps = np.diff(t)
        duration = float(t[-1] - t[0])
        out["duration_s"] = duration
        out["mean_rate_per_s"] = (len(t) - 1) / duration if duration > 0 else None
        out["interarrival_cv"] = float(gaps.std() / gaps.mean()) if gaps.mean() > 0 else None
        zero = float((gaps == 0).mean()) if len(gaps) else 0.0
        out["zero_gap_fraction"] = zero
        resolution = timestamp_resolution_s(t)
        if zero > ROUNDED_ZERO_GAPS and resolution is not None:
            out["warnings"] = [f"{zero:.0%} of inter-arrival gaps are 0 and timestamps step by {resolution:g} s: "
                               "the timestamps look rounded, so the inter-arrival CV and any burstiness fitted from "
                               "them describe the rounding, not the traffic"]
        # a coarser bucket when the trace is long: the rate array stays under MAX_RATE_BUCKETS entries (the
        # parser caps the span already; this keeps a Trace built elsewhere from asking for gigabytes)
        bucket_s = max(bucket_s, duration / MAX_RATE_BUCKETS)
        counts = np.bincount(((t - t[0]) // bucket_s).astype(np.int64))
        out["rate_per_s_by_bucket"] = {"bucket_s": bucket_s, "rates": (counts / bucket_s).round(4).tolist()}
    if trace.hash_ids:
        seen: set[int] = set()
        reused = total = 0
        for ids in trace.hash_ids:
            for h in ids:
                total += 1
                if h in seen:
                    reused += 1
                seen.add(h)
        out["prefix_reuse_ratio"] = reused / total if total else None
    return out


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(sps.ks_2samp(a, b).statistic)
