"""Repeated measurements (`calibrate serve --repeats R`): each block measured R times gives R values of each
figure (TTFT, TPOT, E2E p50 and p90, output tokens/s); their mean and 95% confidence interval say how much of a
fit's error is the measurement's own noise. A block whose interval is wider than +-10% of its mean is unstable,
the tolerance perf_analyzer's stability check uses by default (`--stability-percentage 10`): more requests per
block, more repeats or a quieter server are needed before its figures mean much.
"""

from __future__ import annotations

import pandas as pd

from simfactory.calibration.measurements import output_tokens_per_s
from simfactory.metrics.ci import mean_ci

FIGURES: tuple[tuple[str, float], ...] = (("ttft_s", 0.5), ("ttft_s", 0.9), ("tpot_s", 0.5), ("tpot_s", 0.9),
                                          ("e2e_s", 0.5), ("e2e_s", 0.9))
THROUGHPUT = "output_tokens_per_s"
STABLE_HALF_WIDTH = 0.10  # +-10% of the mean (perf_analyzer's default stability percentage)


def _figures(rows: pd.DataFrame) -> dict[str, float]:
    ok = rows[rows["ok"].astype(bool)]
    out = {f"{m[:-2]}_p{int(q * 100)}_s": float(ok[m].quantile(q)) if len(ok) else float("nan") for m, q in FIGURES}
    out[THROUGHPUT] = output_tokens_per_s(rows)
    return out


def repeat_figures(measured: pd.DataFrame) -> pd.DataFrame:
    """One row per (block, repeat, figure): the figure's value over that repeat's requests."""
    blocks = measured["block"].astype(str) if "block" in measured else pd.Series("all", index=measured.index)
    repeats = measured["repeat"].astype(int) if "repeat" in measured else pd.Series(0, index=measured.index)
    rows = []
    for (block, repeat), g in measured.groupby([blocks, repeats], sort=False):
        rows += [{"block": block, "repeat": int(repeat), "figure": k, "value": v} for k, v in _figures(g).items()]
    return pd.DataFrame(rows, columns=["block", "repeat", "figure", "value"])


def repeat_stats(measured: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per (block, figure): repeats, mean, ci95 (half-width), relative half-width, and whether it is stable
    (relative half-width <= 10%; a single repeat has no interval and is not judged)."""
    rows = []
    for (block, figure), g in repeat_figures(measured).groupby(["block", "figure"], sort=False):
        values = g["value"].dropna().to_numpy(dtype=float)
        mean, half = mean_ci(values, level)
        rel = half / abs(mean) if len(values) >= 2 and mean else float("nan")
        rows.append({"block": block, "figure": figure, "repeats": len(values), "mean": mean, "ci95": half,
                     "relative_ci95": rel, "stable": bool(rel <= STABLE_HALF_WIDTH) if rel == rel else None})
    return pd.DataFrame(rows, columns=["block", "figure", "repeats", "mean", "ci95", "relative_ci95", "stable"])


def unstable_blocks(stats: pd.DataFrame) -> dict[str, list[str]]:
    """Blocks with a figure whose interval is wider than +-10%, and those figures."""
    bad = stats[stats["stable"].eq(False)]
    return {str(b): list(g["figure"]) for b, g in bad.groupby("block", sort=False)}
