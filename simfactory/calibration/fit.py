"""Fit the step-time model to measured steps, and the power curve to NVML samples.

Two candidate models, both fitted by robust least squares on relative errors (a 5 ms decode step and a
500 ms prefill count alike, and a few disturbed repetitions do not drag the fit: soft-L1 loss):
- linear: overhead + a*prefill_tokens + b*decode_seqs + c*kv_tokens_read + d*prefill_attn_pairs
- roofline: overhead + max(compute, memory) with fitted efficiencies (needs the model's shape and the SKU)
The rows are split once (seeded) into training and held-out rows; the held-out MAPE and worst error are the
numbers a user should believe, and `check_threshold` refuses a profile whose held-out error is too large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from simfactory.config.profile import LinearStepTime, ModelArch, RooflineStepTime, Spec
from simfactory.hardware.step_time import LinearModel, RooflineModel, StepLoad, StepTimeModel

FEATURES = ("prefill_tokens", "decode_seqs", "kv_tokens_read", "prefill_attn_pairs")
LINEAR_FIELDS = ("overhead_s", "s_per_prefill_token", "s_per_decode_seq", "s_per_kv_token", "s_per_attn_pair")
DEFAULT_MAX_HELDOUT_MAPE = 0.10
MIN_ROWS = 8


class FitRefused(Exception):
    """The fit is too poor to publish (held-out error over the threshold) or the data cannot support one."""


@dataclass(frozen=True)
class FitResult:
    kind: str  # linear | roofline
    step_time: LinearStepTime | RooflineStepTime
    train_mape: float  # fractions (0.05 = 5 %)
    heldout_mape: float
    heldout_max_error: float
    n_train: int
    n_heldout: int
    predictions: pd.DataFrame  # the rows with predicted_s, error (signed, relative) and split

    def summary(self) -> dict[str, float | int | str]:
        return {"kind": self.kind, "train_mape": self.train_mape, "heldout_mape": self.heldout_mape,
                "heldout_max_error": self.heldout_max_error, "n_train": self.n_train, "n_heldout": self.n_heldout}


def split(n: int, heldout_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows: a seeded random share, at least one row and leaving five to train."""
    if n < MIN_ROWS:
        raise FitRefused(f"{n} measured steps; a fit with a held-out check needs at least {MIN_ROWS}")
    k = min(max(int(round(n * heldout_fraction)), 1), n - 5)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:k]] = True
    return mask


def _loads(steps: pd.DataFrame) -> list[StepLoad]:
    return [StepLoad(int(a), int(b), float(c), float(d)) for a, b, c, d in steps[list(FEATURES)].itertuples(index=False)]


def fit_linear(steps: pd.DataFrame, train: np.ndarray) -> LinearStepTime:
    """Non-negative coefficients minimising soft-L1 relative error; started from NNLS on the same weighting."""
    x = np.column_stack([np.ones(len(steps))] + [steps[f].to_numpy(dtype=float) for f in FEATURES])
    y = steps["step_s"].to_numpy(dtype=float)
    scale = np.maximum(np.abs(x[train]).max(axis=0), 1e-12)  # columns of very different magnitude
    a = x[train] / scale / y[train, None]  # relative residuals: (x.beta - y) / y
    beta0, _ = nnls(a, np.ones(int(train.sum())))
    fit = least_squares(lambda b: a @ b - 1.0, beta0 + 1e-9, bounds=(0.0, np.inf), loss="soft_l1", f_scale=0.05)
    coef = fit.x / scale
    return LinearStepTime(**{name: float(max(c, 0.0)) for name, c in zip(LINEAR_FIELDS, coef)})


def fit_roofline(steps: pd.DataFrame, train: np.ndarray, arch: ModelArch, spec: Spec, dtype: str, kv_dtype: str,
                 tp: int) -> RooflineStepTime:
    """Compute and memory efficiencies in (0, 1] and a per-step overhead, for the shipped roofline's shape."""
    loads = [ld for ld, keep in zip(_loads(steps), train) if keep]
    y = steps["step_s"].to_numpy(dtype=float)[train]

    def model(p: np.ndarray) -> RooflineModel:
        factors = RooflineStepTime(compute_efficiency=float(p[0]), memory_efficiency=float(p[1]), step_overhead_s=float(p[2]))
        return RooflineModel(arch, spec, factors, dtype, kv_dtype, tp)

    def residuals(p: np.ndarray) -> np.ndarray:
        m = model(p)
        return np.array([m.step_s(ld) for ld in loads]) / y - 1.0

    best = None
    for start in ((0.5, 0.7, 0.002), (0.8, 0.9, 0.005), (0.3, 0.5, 0.0005)):  # max() makes it non-convex
        r = least_squares(residuals, np.array(start), bounds=([1e-3, 1e-3, 0.0], [1.0, 1.0, 1.0]), loss="soft_l1",
                          f_scale=0.05, x_scale=[0.1, 0.1, 1e-3])
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    return model(best.x).factors


def evaluate(kind: str, step_time: LinearStepTime | RooflineStepTime, model: StepTimeModel, steps: pd.DataFrame,
             heldout: np.ndarray) -> FitResult:
    predicted = np.array([model.step_s(ld) for ld in _loads(steps)])
    measured = steps["step_s"].to_numpy(dtype=float)
    error = predicted / measured - 1.0
    frame = steps.copy()
    frame["predicted_s"] = predicted
    frame["error"] = error
    frame["split"] = np.where(heldout, "heldout", "train")
    return FitResult(
        kind=kind,
        step_time=step_time,
        train_mape=float(np.mean(np.abs(error[~heldout]))),
        heldout_mape=float(np.mean(np.abs(error[heldout]))),
        heldout_max_error=float(np.max(np.abs(error[heldout]))),
        n_train=int((~heldout).sum()),
        n_heldout=int(heldout.sum()),
        predictions=frame,
    )


RooflineContext = tuple[ModelArch, Spec, str, str, int]  # arch, spec, dtype, kv_dtype, tp


def fit_step_time(steps: pd.DataFrame, kind: str = "best", roofline: RooflineContext | None = None,
                  heldout_fraction: float = 0.25, seed: int = 0) -> FitResult:
    """Fit `linear`, `roofline` or both (`best`: the lower held-out MAPE) and report the errors."""
    heldout = split(len(steps), heldout_fraction, seed)
    train = ~heldout
    candidates: list[tuple[str, Callable[[], tuple[LinearStepTime | RooflineStepTime, StepTimeModel]]]] = []
    if kind in ("linear", "best"):
        def linear() -> tuple[LinearStepTime | RooflineStepTime, StepTimeModel]:
            spec = fit_linear(steps, train)
            return spec, LinearModel(spec)
        candidates.append(("linear", linear))
    if kind in ("roofline", "best") and roofline is not None:
        arch, spec_, dtype, kv_dtype, tp = roofline

        def roof() -> tuple[LinearStepTime | RooflineStepTime, StepTimeModel]:
            factors = fit_roofline(steps, train, arch, spec_, dtype, kv_dtype, tp)
            return factors, RooflineModel(arch, spec_, factors, dtype, kv_dtype, tp)
        candidates.append(("roofline", roof))
    if not candidates:
        raise FitRefused("a roofline fit needs the model's shape and the SKU's spec")
    results = []
    for name, make in candidates:
        step_time, model = make()
        results.append(evaluate(name, step_time, model, steps, heldout))
    return min(results, key=lambda r: r.heldout_mape)


def check_threshold(result: FitResult, max_heldout_mape: float = DEFAULT_MAX_HELDOUT_MAPE, force: bool = False) -> None:
    """Refuse to publish a fit whose held-out MAPE is over the threshold (unless forced)."""
    if result.heldout_mape > max_heldout_mape and not force:
        raise FitRefused(
            f"held-out MAPE {result.heldout_mape:.1%} exceeds {max_heldout_mape:.1%} "
            f"(worst step {result.heldout_max_error:.1%}); the {result.kind} step-time model does not describe these "
            "measurements well. Re-measure (more repetitions, a quieter GPU) or pass --force to write it anyway"
        )


@dataclass(frozen=True)
class PowerFit:
    """Board power as idle + (max - idle) x utilization, the shape the TCO energy model uses."""

    idle_w: float
    max_w: float
    mape: float
    samples: int


def fit_power(utilization: np.ndarray, power_w: np.ndarray) -> PowerFit:
    """Robust straight line of power against SM utilization (0-1), evaluated at 0 and 1."""
    u = np.asarray(utilization, dtype=float)
    p = np.asarray(power_w, dtype=float)
    ok = np.isfinite(u) & np.isfinite(p)
    u, p = u[ok], p[ok]
    if len(u) < 3 or np.ptp(u) < 0.2:
        raise FitRefused("a power curve needs samples spanning at least 20 points of utilization")
    slope0, intercept0 = np.polyfit(u, p, 1)
    r = least_squares(lambda c: (c[0] + c[1] * u) / p - 1.0, [intercept0, slope0], loss="soft_l1", f_scale=0.05)
    idle, slope = float(r.x[0]), float(r.x[1])
    predicted = idle + slope * u
    return PowerFit(idle_w=max(idle, 0.0), max_w=idle + slope, mape=float(np.mean(np.abs(predicted / p - 1.0))),
                    samples=int(len(u)))
