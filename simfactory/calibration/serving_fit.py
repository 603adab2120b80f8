"""Fit a profile to serving measurements (a request table from `calibrate serve` or an import) when no
microbenchmark is possible: the roofline's compute efficiency, memory efficiency and per-step overhead are
chosen so that the simulator, replaying exactly the measured load, reproduces the measured TTFT/TPOT/E2E
percentiles and throughput (Nelder-Mead on the validation MAPE; every evaluation is a simulation).

With three or more rate blocks the middle rate is held out: the reported error is on load the fit never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from simfactory.calibration.fit import FitRefused, FitResult
from simfactory.calibration.measurements import check_requests
from simfactory.calibration.validate import Deployment, blocks_of, compare, compare_blocks, mape
from simfactory.config.profile import RooflineStepTime
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import default_factors, load_engines, load_profile, search_dirs

BOUNDS = ((0.02, 1.0), (0.02, 1.0), (0.0, 0.05))  # compute eff, memory eff, step overhead s


@dataclass(frozen=True)
class ServingFit:
    factors: RooflineStepTime
    start: RooflineStepTime  # the SKU's shipped factors the search started from
    train: pd.DataFrame  # validation tables (rate, metric, measured, predicted, error)
    heldout: pd.DataFrame | None
    start_mape: float  # the shipped factors' error on the training load
    evaluations: int

    @property
    def train_mape(self) -> float:
        return mape(self.train)

    @property
    def heldout_mape(self) -> float | None:
        return None if self.heldout is None else mape(self.heldout)

    def as_fit_result(self) -> FitResult:
        """For the profile writer: the reported error is the held-out one when there is a held-out block."""
        table = pd.concat([self.train.assign(split="train")] +
                          ([self.heldout.assign(split="heldout")] if self.heldout is not None else []))
        check = self.heldout if self.heldout is not None else self.train
        return FitResult(
            kind="roofline (fitted to serving measurements)", step_time=self.factors, train_mape=self.train_mape,
            heldout_mape=mape(check), heldout_max_error=float(np.nanmax(np.abs(check["error"]))),
            n_train=len(self.train), n_heldout=len(self.heldout) if self.heldout is not None else 0,
            predictions=table.reset_index(drop=True),
        )


def _clip(x: np.ndarray) -> RooflineStepTime:
    c, m, o = (float(np.clip(v, lo, hi)) for v, (lo, hi) in zip(x, BOUNDS))
    return RooflineStepTime(compute_efficiency=c, memory_efficiency=m, step_overhead_s=o)


def split_blocks(measured: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Hold out the middle rate when there are three or more rate blocks."""
    rates = sorted(measured["rate_rps"].dropna().unique()) if "rate_rps" in measured else []
    if len(rates) < 3:
        return measured, None
    held = rates[len(rates) // 2]
    keep = measured["rate_rps"] != held
    return measured[keep], measured[~keep]


def fit_serving(measured: pd.DataFrame, dep: Deployment, seed: int = 0, base_dir: Path | None = None,
                max_evaluations: int = 60) -> ServingFit:
    measured = check_requests(measured)
    if int(measured["ok"].sum()) < 10:
        raise FitRefused("fitting to serving measurements needs at least 10 successful requests")
    dirs = search_dirs(None if base_dir is None else base_dir / "x.yaml", "hardware_profiles", PROFILES_DIR)
    start = default_factors(load_profile(dirs, dep.sku, "--sku", "sku"), load_engines(dirs).get(dep.engine))
    train, heldout = split_blocks(measured)
    train_blocks = blocks_of(train, dep, seed, base_dir)  # resolved once; each evaluation only re-simulates
    cache: dict[tuple[float, ...], float] = {}

    def objective(x: np.ndarray) -> float:
        f = _clip(x)
        key = (round(f.compute_efficiency, 6), round(f.memory_efficiency, 6), round(f.step_overhead_s, 8))
        if key not in cache:
            cache[key] = mape(compare_blocks(train_blocks, f))
        return cache[key]

    x0 = np.array([start.compute_efficiency, start.memory_efficiency, start.step_overhead_s])
    start_mape = objective(x0)
    simplex = np.array([x0, x0 * [0.6, 1, 1], x0 * [1, 0.6, 1], x0 + [0, 0, 0.004]])
    res = minimize(objective, x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "maxfev": max_evaluations, "xatol": 1e-3, "fatol": 1e-4})
    factors = _clip(res.x)
    return ServingFit(
        factors=factors, start=start, train=compare_blocks(train_blocks, factors),
        heldout=None if heldout is None else compare(heldout, dep, seed, base_dir, factors),
        start_mape=start_mape, evaluations=len(cache),
    )
