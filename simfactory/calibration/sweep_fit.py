"""Fit a deployment's step time to a concurrency sweep: the summary a serving benchmark prints per concurrency
level (AIPerf or genai-perf in concurrency mode, `vllm bench serve --max-concurrency`, NVIDIA's NIM tables). One
row per (concurrency, input_tokens, output_tokens) with any of mean TTFT, mean ITL, their medians over requests
and output tokens per second.

Each row is simulated as the fidelity suites simulate a concurrency point (fidelity.closed_loop_metrics: C clients
in a closed loop with the row's lengths, fixed or spread around them (--length-sigma), measured after a ramp; a row that gives the benchmark's `requests` is run as the
benchmark ran it, that many requests from a cold start, every one measured). What is fitted is what the prior misses: on the
measured kernel tables, the engine overhead per step and per sequence and a multiplier on the GEMMs (the terms
`calibrate fit --fit kernels` fits to steps); on a SKU without tables, the roofline's efficiencies and overhead;
where asked (--front-end-s auto), the server's front end per request with them (TTFT at low concurrency is mostly
the host's work per request, which no engine prior knows: it differs by host, release and chat template).
Nelder-Mead on the training rows' errors (a log loss, robust_loss), every evaluation a simulation of them. Held out: every second concurrency
level of each shape, so the fit is checked on load levels it never saw, with its error and signed bias per metric.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from simfactory.calibration.fit import FitResult, PhaseError
from simfactory.calibration.validate import FITTED_FRONT_END_MAX_S
from simfactory.config.distributions import lognormal_with_mean
from simfactory.config.profile import FrontEndWork, KernelsStepTime, RooflineStepTime
from simfactory.config.scenario import kv_dtype_for
from simfactory.errors import InputError, InputErrors
from simfactory.fidelity import (CLOSED_LOOP_REQUESTS_PER_CLIENT, FidelityPoint, closed_loop_metrics,
                                 closed_loop_scenario)
from simfactory.hardware.collectives import measured_allreduce_gb_s
from simfactory.hardware.kernels import KernelStepTime
from simfactory.hardware.step_time import RooflineModel, StepTimeModel
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import default_factors, load_models, resolve, search_dirs
from simfactory.resolve.step_time import eager_prefill_floor_s, kernel_model, roofline_model

SHAPE = ("concurrency", "input_tokens", "output_tokens")
# column -> phase name: means, the medians over requests where the benchmark prints them (robust to a cold start's
# first burst, fidelity.Metric), throughput
METRICS = {"ttft_s": "ttft", "itl_s": "itl", "ttft_median_s": "ttft_median", "itl_median_s": "itl_median",
           "output_tokens_per_s": "throughput"}
MEDIANS = ("ttft_median_s", "itl_median_s")  # reported as phases only when the sweep gives them
MAX_CONCURRENCY = 4096  # a closed loop simulates 8 requests per client: larger sweeps are refused, not slow
MAX_ROWS = 64
LIMIT_FLAGS = "--max-num-seqs / --max-num-batched-tokens"
BUDGETS = (512, 1024, 2048, 4096, 8192, 16384)  # token budgets per step tried when the server's is not known
KV_FRACTIONS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)  # KV-cache memory fractions tried likewise
# an API server's CPU per streamed token tried (--front-end-us-per-token auto), seconds: from none to a slow
# single-process Python server (public figures: 2-20 us for multi-process servers, ~100 us for NIM 1.3's)
FRONT_END_PER_TOKEN_S = (0.0, 2e-5, 4e-5, 6e-5, 8e-5, 1e-4, 1.5e-4)
# the server's fixed front end per request (--front-end-s auto), fitted with the step-time terms, milliseconds: its
# bounds (a fit at the upper one is refused: no front end explains that sweep) and its first simplex step
FRONT_END_BOUNDS_MS = (0.0, FITTED_FRONT_END_MAX_S * 1e3)
FRONT_END_STEP_MS = 10.0
# The fit's loss per row, ROW_ERROR_SCALE ln(1 + |error| / ROW_ERROR_SCALE): nearly |error| below ~10%, half its slope
# at ROW_ERROR_SCALE, logarithmic past it (a row 10x off weighs as much as five rows 25% off, not forty). A row missed
# by far more is what a step time cannot explain (clients queueing for KV room in a pool the server does not publish,
# a front end); counted whole it steers the step-time terms away from the rows they do explain (NIM's 70B sweep at the
# suites' fixed budget of 2,048: TTFT rows 2-10x off at 100-200 clients pulled the GEMM multiplier to x0.76 and
# held-out throughput to 5.5%; 1.9% with this loss). Unlike a hard cap, the loss still falls as a far-off row comes
# closer, so a fit that starts far from the truth finds its way. The reported errors are the plain ones, and so is the
# training MAPE that ranks the candidate budgets and KV fractions (fit_sweep_server).
ROW_ERROR_SCALE = 0.25


def robust_loss(abs_errors: np.ndarray) -> np.ndarray:
    return ROW_ERROR_SCALE * np.log1p(abs_errors / ROW_ERROR_SCALE)


MAX_SIMULATED_TOKENS = 200_000_000  # output tokens one evaluation's closed loops generate (~5 s; a fit runs ~60)


def is_sweep_table(frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in SHAPE) and any(m in frame.columns for m in METRICS)


def check_sweep(frame: pd.DataFrame, file: str = "<sweep>", requests_per_client: int | None = None) -> pd.DataFrame:
    """The sweep's rows, checked: whole positive shapes (output >= 2, so ITL exists), metrics positive where given
    (empty = not measured), at least one metric per row, each (concurrency, input, output) once. `requests`, the
    requests the benchmark sent at that level (optional column; else requests_per_client x concurrency, else none:
    a steady state), must be whole and positive where given; the requests the rows' simulations run must be within
    what one evaluation may hold."""
    if not len(frame):
        raise InputError(file, "", "the sweep has no rows")
    if len(frame) > MAX_ROWS:
        raise InputError(file, "", f"{len(frame)} rows; a sweep fit simulates every row per evaluation: at most {MAX_ROWS}")
    out = pd.DataFrame(index=frame.index)
    for col, low, high in (("concurrency", 1, MAX_CONCURRENCY), ("input_tokens", 1, 10**7), ("output_tokens", 2, 10**6)):
        v = pd.to_numeric(frame[col], errors="coerce")
        _refuse(~_whole(v, low, high), frame, col, file, f"must be a whole number from {low} to {high}")
        out[col] = v.astype(int)
    v, given = _cells(frame, "requests")
    _refuse(given & ~_whole(v, 1, 10**7), frame, "requests", file,
            f"must be a whole number from 1 to {10**7} (or empty: not known)")
    out["requests"] = v.where(given)
    if requests_per_client is not None:
        out["requests"] = out["requests"].fillna(out["concurrency"] * requests_per_client)
    for col in METRICS:
        v, given = _cells(frame, col)
        _refuse(given & ~(v.notna() & np.isfinite(v) & (v > 0)), frame, col, file,
                "must be a positive number (or empty: not measured)")
        out[col] = v.where(given)
    none = out[list(METRICS)].isna().all(axis=1)
    if none.any():
        raise InputError(file, f"row {int(np.flatnonzero(none.to_numpy())[0]) + 2}",
                         f"measures nothing: give one of {', '.join(METRICS)}")
    sent = out["requests"].fillna(out["concurrency"] * CLOSED_LOOP_REQUESTS_PER_CLIENT)
    work = int((sent * out["output_tokens"]).sum())
    if work > MAX_SIMULATED_TOKENS:
        raise InputError(file, "", f"simulating these rows' closed loops generates {work:,} output tokens per "
                                   f"evaluation (at most {MAX_SIMULATED_TOKENS:,}): fit fewer or shorter rows")
    dup = out.duplicated(list(SHAPE))
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(file, f"row {i + 2}", "repeats an earlier row's concurrency, input_tokens and output_tokens")
    out = out.reset_index(drop=True)
    split_sweep(out, file)
    return out


def _cells(frame: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series]:
    """An optional column's numbers and which of its cells are given (no column, or an empty cell: not given)."""
    if col not in frame.columns:
        nan = pd.Series(np.nan, index=frame.index)
        return nan, nan.notna()
    return pd.to_numeric(frame[col], errors="coerce"), frame[col].notna() & (frame[col].astype(str).str.strip() != "")


def _whole(v: pd.Series, low: int, high: int) -> pd.Series:
    return v.notna() & (v == v.round()) & (v >= low) & (v <= high)


def _refuse(bad: pd.Series, frame: pd.DataFrame, col: str, file: str, reason: str) -> None:
    """One error naming the first bad cell of `col` by its line in the file (the header is line 1)."""
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(file, f"row {i + 2}.{col}", f"{reason}, got {frame[col].iloc[i]}")


def split_sweep(sweep: pd.DataFrame, file: str = "<sweep>") -> np.ndarray:
    """Held-out rows: every second concurrency level (the 2nd, 4th, ...) of each (input, output) shape."""
    heldout = np.zeros(len(sweep), dtype=bool)
    for _, g in sweep.groupby(["input_tokens", "output_tokens"]):
        levels = sorted(g["concurrency"].unique())
        held = set(levels[1::2])
        heldout[g.index[g["concurrency"].isin(held)]] = True
    if not heldout.any():
        raise InputError(file, "concurrency", "a sweep fit holds out every second concurrency level of a shape: give "
                                              "at least two levels of one (input_tokens, output_tokens)")
    return heldout


def _first_error(exc: InputError | InputErrors) -> InputError:
    """The one error to report of what resolving or simulating a generated scenario raised."""
    return exc.errors[0] if isinstance(exc, InputErrors) else exc


@dataclasses.dataclass(frozen=True)
class SweepSetup:
    """The measured server: what the flags of `calibrate fit` say about it (a NIM or vLLM server's own limits)."""

    sku: str
    model: str
    engine: str
    dtype: str
    tp: int
    max_num_seqs: int
    max_num_batched_tokens: int
    file: str = "<sweep>"  # the sweep table, named in errors about its rows
    gpu_memory_utilization: float | None = None  # the engine's KV memory fraction; None: the engine preset's
    # the server's front end per request (Deployment.front_end_s): in TTFT and E2E; None: the engine preset's
    front_end_s: float | None = None
    # its API server's CPU per streamed token (Deployment.front_end_work); None: the engine preset's front end, if any
    front_end_per_token_s: float | None = None
    front_end_base: FrontEndWork | None = None  # the other terms of that work (the engine preset's; else none)
    # the engine holds max_num_seqs to the token budget (EnginePreset.holds_seqs_to_budget; SGLang's bounds prefill only)
    seqs_within_budget: bool = True
    # front_end_s is fitted with the step-time terms (starting from front_end_s, else the engine preset's): TTFT at
    # low concurrency is mostly the server's host work, which differs by host and release (--front-end-s auto)
    fit_front_end_s: bool = False
    # the rows' lengths spread as lognormals of this shape around each row's means (--length-sigma; 0: every request
    # has the row's lengths): a benchmark on a dataset (ShareGPT) whose clients a fixed length would keep in step
    length_sigma: float = 0.0

    def front_end_work(self) -> FrontEndWork | None:
        """The deployment's front_end_work this setup stands for (None: the engine preset's applies)."""
        if self.front_end_per_token_s is None:
            return None
        base = self.front_end_base or FrontEndWork(per_request_s=0.0, per_output_token_s=0.0)
        return FrontEndWork(**{**base.model_dump(include=set(FrontEndWork.model_fields)),
                               "per_output_token_s": self.front_end_per_token_s})

    def point(self, row: Any) -> FidelityPoint:
        work = self.front_end_work()
        spread = {}
        if self.length_sigma > 0:  # truncated at 8x the mean; a 1-token row stays fixed
            spread = {f"{k}_distribution": lognormal_with_mean(n, self.length_sigma, 1.0, 8.0 * n).model_dump()
                      for k, n in (("input", int(row.input_tokens)), ("output", int(row.output_tokens))) if n > 1}
        return FidelityPoint(id=f"c{row.concurrency}-{row.input_tokens}-{row.output_tokens}", sku=self.sku,
                             model=self.model, dtype=self.dtype, tp=self.tp, input_tokens=int(row.input_tokens),
                             output_tokens=int(row.output_tokens), concurrency=int(row.concurrency),
                             metric="ttft_s", measured=1.0, **spread,
                             deployment={**({} if self.gpu_memory_utilization is None else
                                            {"gpu_memory_utilization": self.gpu_memory_utilization}),
                                         **({"front_end_s": self.front_end_s} if self.front_end_s is not None else {}),
                                         **({"front_end_work": work.model_dump()} if work is not None else {})})

    def check(self, sweep: pd.DataFrame) -> None:
        """The server these flags describe is one a scenario can hold (e.g. a token budget of at least
        max_num_seqs), as one line naming the flags; resolving it checks the model, SKU and dtype."""
        try:
            scenario = closed_loop_scenario(self.point(next(sweep.itertuples(index=False))), self.engine,
                                            self.max_num_seqs, self.max_num_batched_tokens, 1.0)
        except InputError as e:  # the generated scenario cannot hold these limits: they are the flags' values
            raise InputError(LIMIT_FLAGS, "", e.reason) from None
        try:
            resolve(scenario)
        except (InputError, InputErrors) as exc:
            e = _first_error(exc)
            if "max_num" in e.field:
                raise InputError(LIMIT_FLAGS, "", e.reason) from None
            if self.gpu_memory_utilization is not None and ("kv_cache" in e.field or "does not fit" in e.reason):
                why = e.reason if "does not fit" in e.reason else (
                    f"the KV cache it leaves ({e.field.rsplit('.', 1)[-1]}) is {e.reason}")
                raise InputError("--gpu-memory-utilization", "", why) from None
            raise

    def simulate(self, sweep: pd.DataFrame, step_time: StepTimeModel) -> pd.DataFrame:
        """Simulated TTFT, ITL (means and medians) and throughput of each row with this step time."""
        rows = []
        for i, row in zip(sweep.index, sweep.itertuples(index=False)):
            try:
                sent = getattr(row, "requests", math.nan)
                m, _ = closed_loop_metrics(self.point(row), self.engine, self.max_num_seqs, self.max_num_batched_tokens,
                                           step_time, None if math.isnan(sent) else int(sent))
            except (InputError, InputErrors) as exc:  # a simulation limit: name the row, not the internal scenario
                raise InputError(self.file, f"row {i + 2}", f"cannot be simulated: {_first_error(exc).reason}") from None
            rows.append({c: m[c] for c in METRICS})
        return pd.DataFrame(rows, index=sweep.index)


@dataclasses.dataclass(frozen=True)
class Family:
    """What the fit varies: a parameter vector, the spec (written to the profile) and model it stands for."""

    kind: str  # kernels | roofline
    x0: np.ndarray
    simplex: np.ndarray
    to_spec: Callable[[np.ndarray], KernelsStepTime | RooflineStepTime]
    to_model: Callable[[Any], StepTimeModel]
    on_bounds: Callable[[Any], list[str]]
    front_end_s: float = 0.0  # the deployment's front end as resolved (the setup's, else the engine preset's)


def _family(setup: SweepSetup, sweep: pd.DataFrame, kind: str = "best") -> Family:
    """Kernels where the SKU's tables cover the deployment (the prior's overhead as the start), else roofline
    (kind best); kind kernels or roofline insists on one."""
    row = next(sweep.itertuples(index=False))
    probe = resolve(closed_loop_scenario(setup.point(row), setup.engine, setup.max_num_seqs,
                                         setup.max_num_batched_tokens, 1.0))
    d = probe.deployments[0]
    dirs = search_dirs(None, "hardware_profiles", PROFILES_DIR)
    kv = kv_dtype_for(d.config.dtype, d.config.kv_dtype, d.arch)
    models = load_models(dirs)  # a model of a tabled shape fits on that model's tables, as it runs on them
    prior, why_not = kernel_model(d.config, d.profile, d.arch, dirs, kv, d.engine_preset, models=models)
    if kind == "kernels" and not isinstance(prior, KernelStepTime):
        raise InputError("--fit", "", f"kernels: no measured kernels to fit on here: "
                                      f"{why_not or 'the tables do not cover this deployment'} (--fit roofline or best)")
    if kind != "roofline" and isinstance(prior, KernelStepTime):
        def kernels(spec: Any) -> StepTimeModel:
            model = kernel_model(d.config, d.profile, d.arch, dirs, kv, d.engine_preset, spec, models=models)[0]
            assert model is not None
            return model
        # the prior's all-reduce (the profile's measured bandwidth, if any), kept by every candidate
        family = _kernels_family(prior, kernels, measured_allreduce_gb_s(d.profile.spec, d.config.tp))
    else:
        floor_s = eager_prefill_floor_s(d.config, d.arch, d.engine_preset)
        start = (d.step_time.factors if isinstance(d.step_time, RooflineModel)
                 else default_factors(d.profile, d.engine_preset, floor_s))
        family = _roofline_family(start, lambda spec: roofline_model(d.config, d.profile, d.arch, kv, spec,
                                                                         d.engine_preset))
    return dataclasses.replace(family, front_end_s=d.config.front_end_s)


KERNEL_BOUNDS = {"overhead_ms": (0.0, 50.0), "per_seq_us": (0.0, 500.0), "log2_linear_scale": (-2.0, 2.0)}


def _kernels_family(prior: KernelStepTime, to_model: Callable[[Any], StepTimeModel],
                    allreduce_bus_gb_s: float | None = None) -> Family:
    x0 = np.array([prior.overhead_s * 1e3, prior.overhead_per_seq_s * 1e6, 0.0])
    lo, hi = (np.array([b[i] for b in KERNEL_BOUNDS.values()]) for i in (0, 1))

    def to_spec(x: np.ndarray) -> KernelsStepTime:
        o, s, k = np.clip(x, lo, hi)
        return KernelsStepTime(overhead_s=float(o) / 1e3, overhead_per_seq_s=float(s) / 1e6,
                               linear_scale=float(2.0 ** k),
                               prefill_floor_s=prior.prefill_floor_s,  # the engine's eager-prefill prior, not fitted
                               kernel_scale=prior.kernel_scale,  # the engine release's factor, kept likewise
                               allreduce_latency_s=prior.allreduce_latency_s,  # the engine's all-reduce, likewise
                               allreduce_bus_gb_s=allreduce_bus_gb_s)

    def on_bounds(spec: KernelsStepTime) -> list[str]:
        out = []
        if spec.overhead_s * 1e3 >= hi[0] * 0.99:
            out.append(f"overhead_s = {spec.overhead_s:.4g} (upper bound {hi[0] / 1e3:g})")
        if spec.overhead_per_seq_s * 1e6 >= hi[1] * 0.99:
            out.append(f"overhead_per_seq_s = {spec.overhead_per_seq_s:.4g} (upper bound {hi[1] / 1e6:g})")
        if abs(math.log2(spec.linear_scale)) >= 1.99:
            out.append(f"linear_scale = {spec.linear_scale:.4g} (bounds 0.25-4)")
        return out

    simplex = np.array([x0, x0 + [1.0, 0, 0], x0 + [0, 20.0, 0], x0 + [0, 0, -0.2]])
    return Family("kernels", x0, simplex, to_spec, to_model, on_bounds)


def _roofline_family(start: RooflineStepTime, to_model: Callable[[Any], StepTimeModel]) -> Family:
    lo, hi = np.array([0.02, 0.02, 0.0]), np.array([1.0, 1.0, 50.0])
    x0 = np.clip([start.compute_efficiency, start.memory_efficiency, start.step_overhead_s * 1e3], lo, hi)

    def to_spec(x: np.ndarray) -> RooflineStepTime:
        c, m, o = np.clip(x, lo, hi)
        # the start's other terms (the engine's eager-prefill prior, the SKU's small-GEMM terms) are kept, not fitted
        return start.model_copy(update={"compute_efficiency": float(c), "memory_efficiency": float(m),
                                        "step_overhead_s": float(o) / 1e3})

    def on_bounds(spec: RooflineStepTime) -> list[str]:
        v = np.array([spec.compute_efficiency, spec.memory_efficiency, spec.step_overhead_s * 1e3])
        names = ("compute_efficiency", "memory_efficiency", "step_overhead_ms")
        return [f"{n} = {x:.4g} (bound {lo[i]:g}-{hi[i]:g})" for i, (n, x) in enumerate(zip(names, v))
                if (i < 2 and x <= lo[i] * 1.01) or x >= hi[i] * 0.99]

    simplex = np.array([x0, x0 * [0.7, 1, 1], x0 * [1, 0.7, 1], x0 + [0, 0, 2.0]])
    return Family("roofline", x0, simplex, to_spec, to_model, on_bounds)


def _errors(sweep: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """One row per measured (row, metric): measured, predicted and the relative error signed so that + means
    predicts slower (a latency too high, a throughput too low), as for steps; no prediction: error 1."""
    rows = []
    for i, r in sweep.iterrows():
        for col, phase in METRICS.items():
            if pd.notna(r[col]):
                p = float(predicted.at[i, col])
                ratio = p / float(r[col])
                err = (ratio - 1.0 if col != "output_tokens_per_s" else 1.0 - ratio) if math.isfinite(p) else 1.0
                rows.append({**{c: int(r[c]) for c in SHAPE}, "metric": col, "phase": phase, "row": i,
                             "measured": float(r[col]), "predicted": p, "error": err})
    return pd.DataFrame(rows)


def _search(setup: SweepSetup, sweep: pd.DataFrame, family: Family,
            max_evaluations: int) -> tuple[Any, SweepSetup, int]:
    """Nelder-Mead over the family's terms (and the front end per request where the setup fits it): the spec, the
    setup with the fitted front end, and the simulations it took."""
    n = len(family.x0)
    x0, simplex = family.x0, family.simplex
    if setup.fit_front_end_s:  # one more dimension, milliseconds; a vertex that moves it alone
        start_ms = min(max(family.front_end_s * 1e3, FRONT_END_BOUNDS_MS[0]), FRONT_END_BOUNDS_MS[1])
        x0 = np.append(x0, start_ms)
        simplex = np.vstack([np.hstack([simplex, np.full((len(simplex), 1), start_ms)]),
                             np.append(family.x0, start_ms + FRONT_END_STEP_MS)])

    def server(x: np.ndarray) -> SweepSetup:
        if not setup.fit_front_end_s:
            return setup
        return dataclasses.replace(setup, front_end_s=float(np.clip(x[n], *FRONT_END_BOUNDS_MS)) / 1e3)

    cache: dict[tuple[float, ...], float] = {}

    def objective(x: np.ndarray) -> float:
        spec, s = family.to_spec(x[:n]), server(x)
        key = tuple(round(float(v), 12) for v in spec.model_dump(exclude={"kind"}).values() if v is not None)
        key += (round(s.front_end_s, 12),) if s.front_end_s is not None else ()
        if key not in cache:
            errors = _errors(sweep, s.simulate(sweep, family.to_model(spec)))["error"].abs()
            cache[key] = float(robust_loss(errors.to_numpy()).mean())
        return cache[key]

    res = minimize(objective, x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "maxfev": max_evaluations, "xatol": 1e-3, "fatol": 1e-4})
    return family.to_spec(res.x[:n]), server(res.x), len(cache)


def _front_end_start_s(prior: pd.DataFrame, front_end_s: float) -> float:
    """Where the search starts the front end per request: the prior's, plus what the prior's TTFT (mean and median)
    lacks at each shape's lowest concurrency level (a training level), where a front end adds to TTFT whole."""
    ttft = prior[prior["metric"].isin(("ttft_s", "ttft_median_s"))]
    lowest = ttft.groupby(["input_tokens", "output_tokens"])["concurrency"].transform("min")
    gap = (ttft["measured"] - ttft["predicted"])[ttft["concurrency"] == lowest]
    start = front_end_s + (float(gap.median()) if len(gap) else 0.0)
    return min(max(start, FRONT_END_BOUNDS_MS[0] / 1e3), FRONT_END_BOUNDS_MS[1] / 1e3)


def _front_end_on_bounds(setup: SweepSetup) -> list[str]:
    if setup.fit_front_end_s and setup.front_end_s is not None and setup.front_end_s * 1e3 >= FRONT_END_BOUNDS_MS[1] * 0.99:
        return [f"front_end_s = {setup.front_end_s:.4g} (upper bound {FRONT_END_BOUNDS_MS[1] / 1e3:g})"]
    return []


def _phase(table: pd.DataFrame) -> PhaseError:
    if not len(table):
        return PhaseError(0, None, None, None)
    e = table["error"].to_numpy(dtype=float)
    return PhaseError(len(e), float(np.mean(np.abs(e))), float(np.mean(e)), float(np.max(np.abs(e))))


def fit_sweep(sweep: pd.DataFrame, setup: SweepSetup, max_evaluations: int = 60,
              kind: str = "best") -> tuple[FitResult, list[str], SweepSetup]:
    """Fit on the training levels, check on the held-out ones; the fit, the parameters sitting on a bound and the
    setup fitted (its front end per request, where it fits it)."""
    heldout = split_sweep(sweep, setup.file)
    family = _family(setup, sweep, kind)
    prior = _errors(sweep, setup.simulate(sweep, family.to_model(family.to_spec(family.x0))))
    lost = prior[~np.isfinite(prior["predicted"].to_numpy(dtype=float))]
    if len(lost):  # every simulated request of the row was refused or never finished: no fit can explain it
        raise InputError(setup.file, f"row {int(lost['row'].iloc[0]) + 2}",
                         f"no simulated request completed ({lost['metric'].iloc[0]}): the prompt plus answer may pass "
                         f"{setup.model}'s context, the prompt the token budget without chunked prefill, or one "
                         "request the KV pool; check the row, --engine, --max-num-batched-tokens and "
                         "--gpu-memory-utilization")
    if setup.fit_front_end_s:
        family = dataclasses.replace(family, front_end_s=_front_end_start_s(prior, family.front_end_s))
    spec, setup, _ = _search(setup, sweep[~heldout], family, max_evaluations)
    table = _errors(sweep, setup.simulate(sweep, family.to_model(spec)))
    table["split"] = np.where(heldout[table["row"].to_numpy()], "heldout", "train")
    table["prior_predicted"] = prior["predicted"].to_numpy()
    held, train = table[table["split"] == "heldout"], table[table["split"] == "train"]
    fit = FitResult(
        kind=f"{family.kind} (fitted to a concurrency sweep)", step_time=spec,
        train_mape=float(train["error"].abs().mean()), heldout_mape=float(held["error"].abs().mean()),
        heldout_max_error=float(held["error"].abs().max()), n_train=len(train), n_heldout=len(held),
        predictions=table.drop(columns=["row"]),
        heldout_by="concurrency (every second level of each shape)",
        phases={phase: _phase(held[held["phase"] == phase]) for col, phase in METRICS.items()
                if col not in MEDIANS or sweep[col].notna().any()})
    return fit, family.on_bounds(spec) + _front_end_on_bounds(setup), setup


def _try_fit(sweep: pd.DataFrame, setup: SweepSetup, max_evaluations: int,
             kind: str) -> tuple[FitResult, list[str], SweepSetup] | str:
    """A fit at one candidate setting, or why that setting cannot be simulated (the model does not fit its memory,
    a row cannot complete): a search skips such a candidate rather than stopping."""
    try:
        return fit_sweep(sweep, setup, max_evaluations, kind)
    except (InputError, InputErrors) as exc:
        return str(_first_error(exc))


def _fit_each(sweep: pd.DataFrame, setups: list[SweepSetup], max_evaluations: int,
              kind: str) -> list[tuple[FitResult, list[str], SweepSetup] | str]:
    """Independent fits, in parallel processes where there are cores (the same results as one after another)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(len(setups), cores)
    if workers <= 1:
        return [_try_fit(sweep, s, max_evaluations, kind) for s in setups]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_try_fit, repeat(sweep), setups, repeat(max_evaluations), repeat(kind)))


@dataclasses.dataclass(frozen=True)
class ServerSearch:
    """What a search over one server setting found: each candidate's training MAPE (or why it cannot be
    simulated), and whether the sweep decides the setting (no other candidate fits as well)."""

    field: str
    tried: dict[Any, float | str]
    chosen: Any
    determined: bool

    def text(self) -> str:
        tried = ", ".join(f"{v:g} {e:.1%}" if isinstance(e, float) else f"{v:g} cannot be simulated"
                          for v, e in self.tried.items())
        how = "fitted" if self.determined else "not decided by this sweep (several fit equally): kept"
        return f"{self.field} {self.chosen} ({how}; training MAPE by value: {tried})"


SERVER_FLAGS = {"max_num_batched_tokens": "--max-num-batched-tokens", "gpu_memory_utilization": "--gpu-memory-utilization",
                "front_end_per_token_s": "--front-end-us-per-token"}
TIE = 1e-6  # training MAPEs this close are the same fit: the setting did not bind


def fit_sweep_server(sweep: pd.DataFrame, setup: SweepSetup, field: str, candidates: Sequence[Any],
                     max_evaluations: int = 60, kind: str = "best",
                     preferred: Any = None) -> tuple[FitResult, list[str], SweepSetup, ServerSearch]:
    """A server setting the sweep's owner does not know (NIM publishes neither its token budget per step nor its
    KV-cache memory fraction): a fit at each candidate value of `field` (a SweepSetup field), keeping the one whose
    training rows fit best; the held-out rows then judge it like any fit. Candidates that cannot be simulated are
    skipped. When several fit equally the sweep does not decide the setting: `preferred` (the engine preset's
    value) is kept if among them, else the largest. Returns the fit, its terms on a bound, the setup with the
    chosen value and the search."""
    setups = [dataclasses.replace(setup, **{field: v}) for v in candidates]
    results = _fit_each(sweep, setups, max_evaluations, kind)
    tried: dict[Any, float | str] = {getattr(s, field): r if isinstance(r, str) else r[0].train_mape
                                     for s, r in zip(setups, results)}
    fits = [(s, r) for s, r in zip(setups, results) if not isinstance(r, str)]
    if not fits:
        reason = next((r for r in results if isinstance(r, str)), "no candidate")
        raise InputError(SERVER_FLAGS.get(field, field), "", f"not given, and no value tried "
                         f"({', '.join(f'{v:g}' for v in candidates) or 'none'}) can be simulated ({reason}): give it")
    low = min(r[0].train_mape for _, r in fits)
    ties = [(s, r) for s, r in fits if r[0].train_mape <= low + TIE]
    pick = next(((s, r) for s, r in ties if getattr(s, field) == preferred), max(ties, key=lambda t: getattr(t[0], field)))
    s, (fit, on_bounds, fitted) = pick  # fitted: s with its front end per request, where the fit finds it
    return fit, on_bounds, fitted, ServerSearch(field, tried, getattr(s, field), len(ties) == 1)


def fit_sweep_budget(sweep: pd.DataFrame, setup: SweepSetup, max_evaluations: int = 60, kind: str = "best",
                     budgets: Sequence[int] = BUDGETS,
                     preferred: int | None = None) -> tuple[FitResult, list[str], SweepSetup, ServerSearch]:
    """The token budget per step (at least max_num_seqs where the engine holds the batch to it) searched: it decides
    how many co-arriving prompts one step prefills, so it shapes TTFT at low and middle concurrency."""
    tried = [b for b in budgets if b >= setup.max_num_seqs or not setup.seqs_within_budget]
    return fit_sweep_server(sweep, setup, "max_num_batched_tokens", tried, max_evaluations, kind, preferred)


def fit_sweep_kv(sweep: pd.DataFrame, setup: SweepSetup, max_evaluations: int = 60, kind: str = "best",
                 fractions: Sequence[float] = KV_FRACTIONS,
                 preferred: float | None = None) -> tuple[FitResult, list[str], SweepSetup, ServerSearch]:
    """The KV-cache memory fraction (the engine's gpu_memory_utilization / free_gpu_memory_fraction) searched: the
    KV pool decides where clients start queueing for room, the knee in TTFT at high concurrency."""
    return fit_sweep_server(sweep, setup, "gpu_memory_utilization", fractions, max_evaluations, kind, preferred)


def fit_sweep_front_end(sweep: pd.DataFrame, setup: SweepSetup, max_evaluations: int = 60, kind: str = "best",
                        per_token_s: Sequence[float] = FRONT_END_PER_TOKEN_S,
                        preferred: float | None = None) -> tuple[FitResult, list[str], SweepSetup, ServerSearch]:
    """The API server's CPU per streamed token searched: a front end that saturates caps streamed tokens per second
    and queues new requests, the plateau in throughput and the climb in ITL and TTFT past some concurrency."""
    return fit_sweep_server(sweep, setup, "front_end_per_token_s", per_token_s, max_evaluations, kind, preferred)
