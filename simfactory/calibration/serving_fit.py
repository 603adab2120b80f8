"""Fit a profile to serving measurements (a request table from `calibrate serve` or an import) when no
microbenchmark is possible: the roofline's compute efficiency, memory efficiency and per-step overhead are
chosen so that the simulator, replaying exactly the measured load, reproduces the measured TTFT/TPOT/E2E
percentiles (Nelder-Mead on their MAPE; every evaluation is a simulation).

Held-out error: leave one block out across the whole design. A block is one run at one rate and one prompt
length (the table's `block` column, which `calibrate serve` writes; else one block per rate); each block in turn is
predicted by a fit to all the others, and the worst block is reported and gates the profile. Throughput rows are right whenever the
server keeps up with the offered load, so they are reported apart and left out of the headline error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from simfactory.calibration.fit import FitRefused, FitResult
from simfactory.calibration.measurements import check_requests
from simfactory.calibration.validate import (FITTED_FRONT_END_MAX_S, Block, Deployment, blocks_of, by_label,
                                             compare_blocks, mape, with_front_end)
from simfactory.config.profile import LinearStepTime, RooflineStepTime
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import default_factors, load_engines, load_models, load_profile, search_dirs
from simfactory.resolve.step_time import eager_prefill_floor_s

PARAMETERS = ("compute_efficiency", "memory_efficiency", "step_overhead_s")
DEFAULT_BOUNDS = ((0.02, 1.0), (0.02, 1.0), (0.0, 0.05))  # compute eff, memory eff, step overhead s
ON_BOUND = 0.01  # a fitted value within 1% of a bound (relatively) sits on it
THROUGHPUT = "output_tokens_per_s"


@dataclass(frozen=True)
class SearchSpace:
    """Where the fit may look and how long: bounds per parameter, Nelder-Mead evaluations per fit."""

    bounds: tuple[tuple[float, float], ...] = DEFAULT_BOUNDS
    max_evaluations: int = 60
    # the start whose other terms every candidate keeps (not searched): the engine's eager-prefill floor, the SKU's
    # small-GEMM terms
    kept: RooflineStepTime = RooflineStepTime(compute_efficiency=1.0, memory_efficiency=1.0, step_overhead_s=0.0)
    # the deployment's front end per request fitted too, among FRONT_END_GRID_S (--front-end-s auto)
    fit_front_end: bool = False

    def clip(self, x: np.ndarray) -> RooflineStepTime:
        c, m, o = (float(np.clip(v, lo, hi)) for v, (lo, hi) in zip(x, self.bounds))
        return self.kept.model_copy(update={"compute_efficiency": c, "memory_efficiency": m, "step_overhead_s": o})

    def on_bounds(self, f: RooflineStepTime) -> list[str]:
        """The fitted parameters that sit on a bound (within ON_BOUND of it, relatively; a zero bound within a
        millionth of the range), each as 'name = value (lower/upper bound of lo-hi)'."""
        out = []
        for name, (lo, hi) in zip(PARAMETERS, self.bounds):
            v = getattr(f, name)
            near = {side: math.isclose(v, b, rel_tol=ON_BOUND, abs_tol=1e-6 * (hi - lo))
                    for side, b in (("lower", lo), ("upper", hi))}
            for side, hit in near.items():
                if hit:
                    out.append(f"{name} = {v:.4g} ({side} bound of {lo:g}-{hi:g})")
                    break
        return out


def latency_mape(table: pd.DataFrame) -> float:
    """The headline error: latency percentiles only (throughput rows aside)."""
    return mape(table[table["metric"] != THROUGHPUT])


@dataclass(frozen=True)
class ServingFit:
    factors: RooflineStepTime | LinearStepTime
    start: RooflineStepTime  # the SKU's shipped factors (what the error before fitting is measured with)
    train: pd.DataFrame  # validation tables (rate, metric, measured, predicted, error), every block, final fit
    heldout: pd.DataFrame | None  # each block predicted by the fit to the other blocks (None: one block only)
    start_mape: float  # the shipped factors' latency error on the whole load
    evaluations: int
    on_bounds: list[str] = field(default_factory=list)  # fitted parameters sitting on a bound
    budget_exhausted: bool = False  # the final fit stopped at max_evaluations
    kind: str = "roofline"  # the step-time model fitted: roofline | linear
    max_evaluations: int = SearchSpace().max_evaluations  # the budget each search had
    front_end_s: float | None = None  # the front end per request fitted with the step time (None: not fitted)
    front_end_tried: dict[float, float] = field(default_factory=dict)  # each candidate's training MAPE

    @property
    def train_mape(self) -> float:
        return latency_mape(self.train)

    @property
    def heldout_mape(self) -> float | None:
        return None if self.heldout is None else latency_mape(self.heldout)

    def block_errors(self) -> dict[str, float]:
        """Held-out latency MAPE per block (empty with one block)."""
        if self.heldout is None:
            return {}
        lat = self.heldout[self.heldout["metric"] != THROUGHPUT]
        return {str(k): mape(g) for k, g in lat.groupby("rate_rps", sort=False)}

    def worst_block(self) -> tuple[str, float] | None:
        errors = {k: v for k, v in self.block_errors().items() if v == v}
        return max(errors.items(), key=lambda kv: kv[1]) if errors else None

    def throughput_mape(self) -> float:
        """The throughput rows' error (reported apart: right whenever the server keeps up)."""
        table = self.heldout if self.heldout is not None else self.train
        return mape(table[table["metric"] == THROUGHPUT])

    def as_fit_result(self) -> FitResult:
        """For the profile writer: the reported error is the leave-one-block-out one when there are blocks to
        leave out; its worst error is the worst block's."""
        table = pd.concat([self.train.assign(split="train")] +
                          ([self.heldout.assign(split="heldout")] if self.heldout is not None else []))
        check = self.heldout if self.heldout is not None else self.train
        lat = check[check["metric"] != THROUGHPUT]
        worst = self.worst_block()
        return FitResult(
            kind=f"{self.kind} (fitted to serving measurements)", step_time=self.factors, train_mape=self.train_mape,
            heldout_mape=latency_mape(check),
            heldout_max_error=worst[1] if worst is not None else float(np.nanmax(np.abs(lat["error"]))),
            n_train=len(self.train), n_heldout=len(self.heldout) if self.heldout is not None else 0,
            predictions=table.reset_index(drop=True), heldout_by="block (leave one block out)",
        )


@dataclass(frozen=True)
class Family:
    """A step-time model the serving fit can vary: its parameter vector x, the model it stands for, where the
    search starts, and which fitted values sit on a bound."""

    kind: str  # roofline | linear
    x0: np.ndarray
    to_step: Callable[[np.ndarray], RooflineStepTime | LinearStepTime]
    simplex: np.ndarray
    on_bounds: Callable[[RooflineStepTime | LinearStepTime], list[str]]


def roofline_family(start: RooflineStepTime, space: SearchSpace) -> Family:
    x0 = np.array([start.compute_efficiency, start.memory_efficiency, start.step_overhead_s])
    x0 = np.array([np.clip(v, lo, hi) for v, (lo, hi) in zip(x0, space.bounds)])
    simplex = np.array([x0, x0 * [0.6, 1, 1], x0 * [1, 0.6, 1], x0 + [0, 0, 0.004]])
    return Family("roofline", x0, space.clip, simplex, space.on_bounds)  # type: ignore[arg-type]


LINEAR = ("overhead_s", "s_per_prefill_token", "s_per_decode_seq", "s_per_kv_token")
LINEAR_DECADES = 3.0  # the linear search looks this many decades either side of its data-derived start


def linear_family(measured: pd.DataFrame) -> Family:
    """overhead + per prompt token + per decode sequence + per KV token read, searched in log10 space around a
    start read off the measurements: the lightest block's median TPOT is mostly overhead, its median TTFT beyond
    one step is prompt tokens."""
    ok = measured[measured["ok"].astype(bool)]
    tpot = float(np.nanmedian(ok["tpot_s"])) if ok["tpot_s"].notna().any() else 0.01
    ttft = float(np.nanmedian(ok["ttft_s"]))
    prompt = max(float(ok["input_tokens"].mean()), 1.0)
    context = max(prompt + float(ok["output_tokens"].mean()) / 2, 1.0)
    start = np.array([0.7 * tpot, max(ttft - tpot, 0.05 * ttft) / prompt, 0.05 * tpot, 0.1 * tpot / context])
    x0 = np.log10(np.maximum(start, 1e-12))
    lo, hi = x0 - LINEAR_DECADES, x0 + LINEAR_DECADES

    def to_step(x: np.ndarray) -> LinearStepTime:
        return LinearStepTime(**dict(zip(LINEAR, (float(10 ** v) for v in np.clip(x, lo, hi)))))

    def on_bounds(f: RooflineStepTime | LinearStepTime) -> list[str]:
        out = []
        for k, name in enumerate(LINEAR):
            v = np.log10(max(getattr(f, name), 1e-300))
            if min(v - lo[k], hi[k] - v) <= 0.01:
                out.append(f"{name} = {10 ** v:.3g} ({LINEAR_DECADES:g} decades from the start the measurements "
                           "suggest)")
        return out

    simplex = np.array([x0] + [x0 + 0.5 * np.eye(len(LINEAR))[k] for k in range(len(LINEAR))])
    return Family("linear", x0, to_step, simplex, on_bounds)


# the front ends per request `--front-end-s auto` tries, seconds: a fit of the step time at each, the best training
# error kept (searched beside the step-time terms in one simplex, the front end trades against the roofline's
# efficiencies and the search stalls; at a fixed front end the profile of the error has a clear minimum)
FRONT_END_GRID_S = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, FITTED_FRONT_END_MAX_S)


def _replayed(blocks: list[Block], front_end_s: float | None) -> list[Block]:
    """The blocks replayed behind this front end per request (None: their own)."""
    return blocks if front_end_s is None else [dataclasses.replace(b, scenario=with_front_end(b.scenario, front_end_s))
                                               for b in blocks]


def _search(blocks: list[Block], family: Family, max_evaluations: int) -> tuple[Any, int, bool]:
    """Nelder-Mead over the blocks' latency MAPE: (step time, evaluations, budget exhausted)."""
    cache: dict[tuple[float, ...], float] = {}

    def objective(x: np.ndarray) -> float:
        f = family.to_step(x)
        key = tuple(round(float(v), 10) for v in f.model_dump(exclude={"kind"}).values())
        if key not in cache:
            cache[key] = latency_mape(compare_blocks(blocks, f))
        return cache[key]

    res = minimize(objective, family.x0, method="Nelder-Mead",
                   options={"initial_simplex": family.simplex, "maxfev": max_evaluations, "xatol": 1e-3,
                            "fatol": 1e-4})
    return family.to_step(res.x), len(cache), bool(res.nfev >= max_evaluations and not res.success)


def _front_end_search(blocks: list[Block], family: Family,
                      max_evaluations: int) -> tuple[float, dict[float, float], int, tuple[Any, bool]]:
    """The front end per request whose step-time fit has the lowest training error (FRONT_END_GRID_S): the value,
    each candidate's training MAPE, the evaluations spent, and that value's fit (step time, budget exhausted)."""
    tried: dict[float, float] = {}
    fits: dict[float, tuple[Any, bool]] = {}
    evaluations = 0
    for fe in FRONT_END_GRID_S:
        replayed = _replayed(blocks, fe)
        step, n, exhausted = _search(replayed, family, max_evaluations)
        tried[fe], fits[fe] = latency_mape(compare_blocks(replayed, step)), (step, exhausted)
        evaluations += n
    best = min(tried, key=lambda fe: (tried[fe], fe))
    return best, tried, evaluations, fits[best]


def fit_serving(measured: pd.DataFrame, dep: Deployment, seed: int = 0, base_dir: Path | None = None,
                space: SearchSpace | None = None, kind: str = "roofline") -> ServingFit:
    """The step time that makes the simulated replay match the measured latencies: the SKU's roofline factors
    (kind roofline), a linear step time (linear: for a server the roofline does not describe, e.g. on a CPU), or
    whichever holds out better (best)."""
    if kind == "best":
        fits = [fit_serving(measured, dep, seed, base_dir, space, k) for k in ("roofline", "linear")]
        return min(fits, key=lambda f: (f.heldout_mape if f.heldout_mape is not None else f.train_mape))
    space = space or SearchSpace()
    measured = check_requests(measured)
    if int(measured["ok"].sum()) < 10:
        raise FitRefused("fitting to serving measurements needs at least 10 successful requests")
    dirs = search_dirs(None if base_dir is None else base_dir / "x.yaml", "hardware_profiles", PROFILES_DIR)
    preset, arch = load_engines(dirs).get(dep.engine), load_models(dirs).get(dep.model)
    floor_s = eager_prefill_floor_s(None, arch, preset, dtype=dep.dtype) if arch is not None else 0.0
    start = default_factors(load_profile(dirs, dep.sku, "--sku", "sku"), preset, floor_s)
    space = dataclasses.replace(space, kept=start)
    blocks = blocks_of(measured, dep, seed, base_dir)  # resolved once; each evaluation re-simulates
    family = roofline_family(start, space) if kind == "roofline" else linear_family(measured)
    start_mape = latency_mape(compare_blocks(blocks, space.clip(roofline_family(start, space).x0)))
    front_end_s, tried = None, {}
    if space.fit_front_end:  # chosen on every block (its fit kept); each block is then held out behind it
        front_end_s, tried, evaluations, (factors, exhausted) = _front_end_search(blocks, family, space.max_evaluations)
        blocks = _replayed(blocks, front_end_s)
    else:
        factors, evaluations, exhausted = _search(blocks, family, space.max_evaluations)
    heldout = None
    labels = by_label(blocks)
    if len(labels) >= 2:  # leave one block out, with all its repeats
        folds = []
        for label, held in labels.items():
            fold, n, _ = _search([b for b in blocks if b.label != label], family, space.max_evaluations)
            evaluations += n
            folds.append(compare_blocks(held, fold))
        heldout = pd.concat(folds, ignore_index=True)
    on_bounds = family.on_bounds(factors)
    if front_end_s is not None and front_end_s >= FITTED_FRONT_END_MAX_S:
        on_bounds.append(f"front_end_s = {front_end_s:g} (the largest tried, {FITTED_FRONT_END_MAX_S:g})")
    return ServingFit(factors=factors, start=start, train=compare_blocks(blocks, factors), heldout=heldout,
                      start_mape=start_mape, evaluations=evaluations, on_bounds=on_bounds,
                      budget_exhausted=exhausted, kind=kind, max_evaluations=space.max_evaluations,
                      front_end_s=front_end_s, front_end_tried=tried)


def check_serving_fit(sf: ServingFit, max_heldout_mape: float, force: bool) -> list[str]:
    """Refuse (FitRefused, unless forced) a fit with a parameter on a bound or a held-out block past the
    threshold, naming it; returns the warnings that remain (forced refusals, an exhausted budget)."""
    problems = []
    if sf.on_bounds:
        problems.append("fitted parameters sit on their search bounds: " + "; ".join(sf.on_bounds) +
                        ". The measurements are not explained inside the search space: check --sku, --tp, --engine "
                        "and --max-num-seqs; widen --compute-bounds / --memory-bounds / --overhead-bounds (roofline), "
                        "or --fit linear for a server the roofline does not describe")
    worst = sf.worst_block()
    if worst is not None and worst[1] > max_heldout_mape:
        errors = ", ".join(f"{k}: {v:.1%}" for k, v in sf.block_errors().items())
        problems.append(f"held-out block {worst[0]} is predicted {worst[1]:.1%} off by a fit to the other blocks "
                        f"(over {max_heldout_mape:.1%}; per block: {errors})")
    if problems and not force:
        raise FitRefused(" | ".join(problems) + ". Pass --force to write the profile anyway")
    warnings = problems[:]
    if sf.budget_exhausted:
        warnings.append(f"the search stopped at its evaluation budget (--max-evaluations {sf.max_evaluations}): the "
                        "fit may not have converged")
    return warnings
