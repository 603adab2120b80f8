"""Small statistics shared by every command that replicates: the t confidence interval of a mean."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


def mean_ci(values: list[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval: 0 for a single value or identical values
    (no spread, not float noise); NaN mean for none."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return math.nan, 0.0
    if len(v) < 2 or np.ptp(v) <= 1e-9 * max(1.0, abs(float(v.mean()))):
        return float(v.mean()), 0.0
    half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), half
