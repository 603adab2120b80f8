"""Confidence intervals over replications, in one place: the Student-t interval of a mean (plan's SLO judgement,
training cost, `run -R`, `compare -R`) and the paired interval of a mean difference (`compare -R`).

Replications are independent runs, so their means are independent draws; with few of them (R = 3 to 10) the
normal quantile understates the spread, so the half-width uses Student's t with R - 1 degrees of freedom
(Law, Simulation Modeling and Analysis, 5th ed., section 9.4.1). Runs compared on common random numbers (the
same seed per replication) are compared through their paired differences (Law, section 10.2.1, the paired-t
interval): the arrivals they share cancel, which narrows the interval far below that of two independent means.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats as sps

CI_LEVEL = 0.95  # two-sided: every `ci95` in simfactory's outputs is the half-width at this level
SPREAD_NOISE = 1e-9  # relative spread below which identical runs differ by float rounding only


def mean_ci(values: list[float], level: float = CI_LEVEL) -> tuple[float, float]:
    """Mean and the half-width of its t confidence interval (0 for a single value or identical values, NaN mean
    for none): a run repeated on the same seed has no spread, not float noise."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or np.ptp(v) <= SPREAD_NOISE * max(1.0, abs(float(v.mean()))):
        return float(v.mean()) if len(v) else math.nan, 0.0
    half = float(t_quantile(level, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), half


@lru_cache(maxsize=256)
def t_quantile(level: float, dof: int) -> float:
    """The two-sided Student t quantile (cached: scipy's ppf costs more than the rest of an interval)."""
    return float(sps.t.ppf(0.5 + level / 2, dof))


def describe(values: list[float], level: float = CI_LEVEL) -> dict[str, Any]:
    """mean, std (sample, ddof 1), ci95 (the t half-width) and n of one metric's replications."""
    mean, half = mean_ci(values, level)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "ci95": half, "n": len(values)}


def paired_difference(base: list[float], other: list[float], level: float = CI_LEVEL) -> dict[str, Any]:
    """The mean of other - base over paired replications (replication r of each on the same seed), its t
    half-width, the difference relative to base's mean (with its half-width on the same scale), and whether
    the interval excludes 0 (`significant`). A constant nonzero difference is significant; none is not."""
    if len(base) != len(other):
        raise ValueError(f"paired replications differ in number: {len(base)} and {len(other)}")
    diff, half = mean_ci([b - a for a, b in zip(base, other)], level)
    base_mean = float(np.mean(base)) if base else math.nan
    scale = abs(base_mean) if base_mean and math.isfinite(base_mean) else math.nan
    return {"mean_diff": diff, "ci95": half, "relative": diff / scale, "relative_ci95": half / scale,
            "n": len(base), "significant": bool(len(base) > 1 and abs(diff) > half)}
