"""Mixture-of-experts serving constants: how unevenly routed tokens load expert-parallel ranks.

With expert parallelism a MoE layer finishes when its busiest rank does, so what matters is the busiest rank's
token load over the mean (max/mean, >= 1). It grows with the number of ranks (fewer experts per rank average out
less) and is what expert load balancers (DeepSeek's EPLB, SGLang's, TensorRT-LLM's) reduce. The defaults below
are published measurements of DeepSeek-V3/R1 serving; a scenario sets `expert_imbalance` to override them.

They shape the roofline only. The measured kernel tables (calibrate/kernels/derive_moe.py) already carry a skew:
aiconfigurator-core prices MoE with a power-law token distribution (alpha 1.01, its SDK default: sdk/config.py
`workload_distribution = "power_law"`, sdk/models/deepseek.py alpha 1.01) and its collector times the busiest
expert-parallel rank; at EP8 that rank holds 1.33-1.44x the mean load at 256-4,096 tokens, the NO_BALANCER figure
below. Applying these defaults to the kernel path would count the skew twice. (Checked 2026-12-04: doing so would
bring the DeepSeek-R1 suite's DP8 + EP8 points, then 11-25% optimistic, within 8% of their measurements, but only by
that double count. Part of that optimism was the attention ranks' prompt imbalance, now priced in
hardware/kernels.py AttentionRanks: 4-21% optimistic.)
"""

from __future__ import annotations

import bisect

# (ep, max/mean load) on the busiest rank, interpolated linearly in ep between points and held past the ends.
# Measured: DeepSeek-R1 decode on 32 x GB200, EP32, 256 sequences per rank: the hottest rank receives 2.564x the mean
# routed tokens without a balancer and 1.109x with EPLB's 288 redundant slots (TensorRT-LLM tech blog 4, Table 1).
# EP8 and EP72 are derived from that measurement: expert popularity drawn lognormal (sigma 1.05, which reproduces the
# EP32 per-expert and per-rank ratios) gives 1.38 at EP8 and ~4.2 at EP72 without a balancer, 1.03-1.05 with perfect
# balancing, plus the 0.07 by which measured EPLB exceeds that at EP32.
IMBALANCE_SOURCE = ("https://nvidia.github.io/TensorRT-LLM/blogs/tech_blog/"
                    "blog4_Scaling_Expert_Parallelism_in_TensorRT-LLM.html (Table 1: EP32 measured; EP8/EP72 derived)")
IMBALANCE_AS_OF = "2025-06"
NO_BALANCER: tuple[tuple[int, float], ...] = ((1, 1.0), (8, 1.4), (32, 2.564), (72, 4.0))
EPLB: tuple[tuple[int, float], ...] = ((1, 1.0), (8, 1.05), (32, 1.109), (72, 1.15))


def default_expert_imbalance(ep: int, eplb: bool = False) -> float:
    """The published max/mean expert-rank load for this expert-parallel degree, with or without an expert load
    balancer (1.0 without expert parallelism)."""
    if ep <= 1:
        return 1.0
    points = EPLB if eplb else NO_BALANCER
    xs = [p[0] for p in points]
    i = bisect.bisect_right(xs, ep)
    if i >= len(xs):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (ep - x0) / (x1 - x0)
