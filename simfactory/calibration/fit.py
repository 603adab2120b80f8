"""Fit the step-time model to measured steps, and the power curve to NVML samples.

Two candidate models, both fitted by robust least squares on relative errors (a 5 ms decode step and a
500 ms prefill count alike, and a few disturbed repetitions do not drag the fit: soft-L1 loss):
- linear: overhead + a*prefill_tokens + b*decode_seqs + c*kv_tokens_read + d*prefill_attn_pairs
- roofline: overhead + max(compute, memory) with fitted efficiencies (needs the model's shape and the SKU) and,
  when prefills train, a prefill floor: the shortest a prefill step takes (an eager forward's host launch time)
- kernels: the SKU's measured kernel tables (hardware/kernels.py) kept as they are, with what kernels miss fitted:
  engine overhead per step and per sequence, a cost per step that prefills, a multiplier on prompt (quadratic)
  attention and one on the token-linear kernels (GEMMs + all-reduce); linear in those five, so a bounded robust
  least squares on relative error, pulled gently towards the tables (multipliers 1) where the rows say little
The rows are split once into training and held-out rows: a seeded random share (`random`), or by step shape
(`batch`: decode batch sizes / sequences per step; `prompt`: prompt length for prefills, context length for
decodes), where each phase's distinct values are ranked and every second one (not the largest) is held out, so
the held-out rows are shapes the fit never saw, between shapes it did. `max_train` caps the training rows (an even
spread over each phase's step times; the rest are held out too). The held-out MAPE and worst error, overall and per phase (steps with
prefill / decode-only steps, each with its signed bias, + = predicts slower than measured), are the numbers a user
should believe, and `check_threshold` refuses a profile whose held-out error is too large.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from simfactory.config.profile import (
    KernelsStepTime, LinearStepTime, ModelArch, RooflineDefault, RooflineStepTime, Spec,
)
from simfactory.hardware.collectives import Links
from simfactory.hardware.kernels import KernelStepTime, kernel_step_time
from simfactory.hardware.step_time import LinearModel, RooflineModel, StepLoad, StepTimeModel, UntunedGemms, idle_step_s

FEATURES = ("prefill_tokens", "decode_seqs", "kv_tokens_read", "prefill_attn_pairs")
LINEAR_FIELDS = ("overhead_s", "s_per_prefill_token", "s_per_decode_seq", "s_per_kv_token", "s_per_attn_pair")
KERNEL_FIELDS = ("overhead_s", "overhead_per_seq_s", "prefill_overhead_s", "linear_scale", "prefill_attn_scale")
SOFT_L1_SCALE = 0.05  # relative error past which a row's pull on a fit grows like its absolute error
DEFAULT_MAX_HELDOUT_MAPE = 0.10
MIN_ROWS = 8
MIN_TRAIN = 4
HELDOUT_BY = ("random", "batch", "prompt")
PHASES = ("prefill", "decode")
StepTimeFit = LinearStepTime | RooflineStepTime | KernelsStepTime


class FitRefused(Exception):
    """The fit is too poor to publish (held-out error over the threshold) or the data cannot support one."""


@dataclass(frozen=True)
class PhaseError:
    """Held-out error of one phase: MAPE and signed bias (mean of predicted / measured - 1; + = predicts slower)."""

    n: int
    mape: float | None
    bias: float | None
    max_error: float | None

    def text(self) -> str:
        if not self.n or self.mape is None or self.bias is None:
            return "no held-out rows"
        return f"MAPE {self.mape:.2%}, bias {self.bias:+.2%} ({self.n} rows)"


@dataclass(frozen=True)
class FitResult:
    kind: str  # linear | roofline | kernels (serving: the serving fit's)
    step_time: Any  # LinearStepTime | RooflineStepTime | KernelsStepTime
    train_mape: float  # fractions (0.05 = 5 %)
    heldout_mape: float
    heldout_max_error: float
    n_train: int
    n_heldout: int
    predictions: pd.DataFrame  # the rows with predicted_s, error (signed, relative), split and phase
    heldout_by: str = "random"
    phases: dict[str, PhaseError] = field(default_factory=dict)  # held-out error per phase (prefill, decode)

    def summary(self) -> dict[str, float | int | str | None]:
        out: dict[str, float | int | str | None] = {
            "kind": self.kind, "train_mape": self.train_mape, "heldout_mape": self.heldout_mape,
            "heldout_max_error": self.heldout_max_error, "n_train": self.n_train, "n_heldout": self.n_heldout,
            "heldout_by": self.heldout_by}
        for name, pe in self.phases.items():
            out.update({f"heldout_{name}_mape": pe.mape, f"heldout_{name}_bias": pe.bias,
                        f"n_heldout_{name}": pe.n})
        return out


def split(n: int, heldout_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows: a seeded random share, at least one row and leaving five to train."""
    if n < MIN_ROWS:
        raise FitRefused(f"{n} measured steps; a fit with a held-out check needs at least {MIN_ROWS}")
    k = min(max(int(round(n * heldout_fraction)), 1), n - 5)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:k]] = True
    return mask


def phase_of(steps: pd.DataFrame) -> np.ndarray:
    """'prefill' for steps with prefill tokens (mixed steps too), 'decode' for decode-only steps."""
    return np.where(steps["prefill_tokens"].to_numpy(dtype=float) > 0, "prefill", "decode")


def shape_key(steps: pd.DataFrame, by: str) -> np.ndarray:
    """The step shape a split by `batch` or `prompt` holds out: sequences per step (decode_seqs, plus prefill_seqs
    when the table has it), or tokens per sequence (prefill: prefill_tokens / prefill_seqs, or prefill_tokens when
    there is no prefill_seqs column; decode: kv_tokens_read / decode_seqs, the context length)."""
    prefill = steps["prefill_tokens"].to_numpy(dtype=float)
    decode = steps["decode_seqs"].to_numpy(dtype=float)
    pseqs = (steps["prefill_seqs"].to_numpy(dtype=float) if "prefill_seqs" in steps
             else (prefill > 0).astype(float))
    if by == "batch":
        return decode + pseqs
    if by == "prompt":
        context = steps["kv_tokens_read"].to_numpy(dtype=float) / np.maximum(decode, 1.0)
        return np.where(prefill > 0, prefill / np.maximum(pseqs, 1.0), np.round(context, 3))
    raise ValueError(f"unknown held-out design {by!r} (choose from {', '.join(HELDOUT_BY)})")


def split_steps(steps: pd.DataFrame, by: str = "random", heldout_fraction: float = 0.25, seed: int = 0,
                max_train: int | None = None) -> np.ndarray:
    """Boolean mask of held-out rows (module docstring): random, or by batch size / prompt length per phase, then
    at most `max_train` training rows (an even spread over each phase's step times, so the shortest and the longest
    steps of each phase train; the others held out)."""
    n = len(steps)
    if by == "random":
        heldout = split(n, heldout_fraction, seed)
    else:
        if n < MIN_ROWS:
            raise FitRefused(f"{n} measured steps; a fit with a held-out check needs at least {MIN_ROWS}")
        key = shape_key(steps, by)
        phase = phase_of(steps)
        heldout = np.zeros(n, dtype=bool)
        for ph in PHASES:
            in_phase = phase == ph
            values = np.unique(key[in_phase])
            held = {v for i, v in enumerate(values) if i % 2 == 1 and (i < len(values) - 1 or len(values) == 2)}
            heldout |= in_phase & np.isin(key, list(held))
    keys = (steps["step_s"].to_numpy(dtype=float), phase_of(steps))
    return cap_training(heldout, keys, max_train, by, "steps")


def cap_training(heldout: np.ndarray, keys: Sequence[np.ndarray], max_train: int | None, by: str,
                 rows: str) -> np.ndarray:
    """At most `max_train` training rows, an even spread over the rows ordered by `keys` (np.lexsort's order: the
    last key first); the others join the held-out rows. Refused when too few rows are left to train or to check."""
    heldout = heldout.copy()
    if max_train is not None:
        if max_train < MIN_TRAIN:
            raise FitRefused(f"--max-train-rows {max_train}: a fit needs at least {MIN_TRAIN} training rows")
        train_idx = np.flatnonzero(~heldout)
        if len(train_idx) > max_train:
            ranked = train_idx[np.lexsort(tuple(k[train_idx] for k in keys))]
            keep = ranked[np.unique(np.round(np.linspace(0, len(ranked) - 1, max_train)).astype(int))]
            heldout[train_idx] = True
            heldout[keep] = False
    if (~heldout).sum() < MIN_TRAIN or not heldout.any():
        raise FitRefused(f"the {by} split leaves {int((~heldout).sum())} training and {int(heldout.sum())} held-out "
                         f"{rows}; a fit needs at least {MIN_TRAIN} to train and one to check")
    return heldout


def _loads(steps: pd.DataFrame) -> list[StepLoad]:
    """Each row's load, with its prompts' computed tokens where the table has them (optional column)."""
    computed = (steps["computed_tokens"].to_numpy(dtype=float) if "computed_tokens" in steps.columns
                else np.zeros(len(steps)))
    return [StepLoad(int(a), int(b), float(c), float(d), int(round(e)))
            for (a, b, c, d), e in zip(steps[list(FEATURES)].itertuples(index=False), computed)]


def fit_linear(steps: pd.DataFrame, train: np.ndarray) -> LinearStepTime:
    """The linear step time of a step table: one row per step, the overhead counted once per step."""
    x = np.column_stack([np.ones(len(steps))] + [steps[f].to_numpy(dtype=float) for f in FEATURES])
    return linear_from_matrix(x, steps["step_s"].to_numpy(dtype=float), train)


def linear_from_matrix(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> LinearStepTime:
    """Non-negative coefficients of LINEAR_FIELDS minimising soft-L1 relative error of x @ coef against y (columns:
    steps, prefill tokens, decode sequences, KV tokens read, prefill attention pairs, each summed over what a row
    measured); started from NNLS on the same weighting."""
    scale = np.maximum(np.abs(x[train]).max(axis=0), 1e-12)  # columns of very different magnitude
    a = x[train] / scale / y[train, None]  # relative residuals: (x.beta - y) / y
    beta0, _ = nnls(a, np.ones(int(train.sum())))
    fit = least_squares(lambda b: a @ b - 1.0, beta0 + 1e-9, bounds=(0.0, np.inf), loss="soft_l1", f_scale=0.05)
    coef = fit.x / scale
    return LinearStepTime(**{name: float(max(c, 0.0)) for name, c in zip(LINEAR_FIELDS, coef)})


def fit_roofline(steps: pd.DataFrame, train: np.ndarray, arch: ModelArch, spec: Spec, dtype: str, kv_dtype: str,
                 tp: int, sku_default: RooflineDefault | None = None, fused_shared_experts: bool = False,
                 untuned_gemms: UntunedGemms | None = None) -> RooflineStepTime:
    """Compute and memory efficiencies in (0, 1], a per-step overhead and, when the training rows hold prefills, a
    prefill floor (RooflineStepTime.prefill_floor_s), for the shipped roofline's shape; the SKU's small-GEMM terms
    (sku_default) are kept as they are, as the concurrency-sweep fit keeps them, and so is what the engine's kernels
    change (fused_shared_experts, untuned_gemms: resolve adds them to the fitted factors)."""
    loads = [ld for ld, keep in zip(_loads(steps), train) if keep]
    y = steps["step_s"].to_numpy(dtype=float)[train]
    with_floor = any(ld.prefill_tokens for ld in loads)
    gemm = ({"gemm_latency_s": sku_default.gemm_latency_s, "gemm_ramp_tokens": sku_default.gemm_ramp_tokens}
            if sku_default is not None else {})

    def model(p: np.ndarray) -> RooflineModel:
        factors = RooflineStepTime(compute_efficiency=float(p[0]), memory_efficiency=float(p[1]),
                                   step_overhead_s=float(p[2]), prefill_floor_s=float(p[3]) if with_floor else 0.0,
                                   **gemm)
        return RooflineModel(arch, spec, factors, dtype, kv_dtype, tp, fused_shared_experts=fused_shared_experts,
                             untuned_gemms=untuned_gemms)

    def residuals(p: np.ndarray) -> np.ndarray:
        m = model(p)
        return np.array([m.step_s(ld) for ld in loads]) / y - 1.0

    best = None
    # max() makes it non-convex: several starts, the floor from none and from the shortest prefill measured
    shortest = min(float(min((t for ld, t in zip(loads, y) if ld.prefill_tokens), default=0.0)), 1.0)  # its bound
    starts = dict.fromkeys([(0.5, 0.7, 0.002, 0.0), (0.3, 0.5, 0.0005, 0.0), (0.8, 0.9, 0.005, shortest),
                            (0.5, 0.7, 0.002, shortest)])  # without prefills the floor starts coincide: fit once
    for start in starts:  # floor-free starts first: a floor is kept only where it fits the steps better, since a
        # floor at the shortest measured prefill costs nothing on the training rows and misprices shorter ones
        r = least_squares(residuals, np.array(start), bounds=([1e-3, 1e-3, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]),
                          loss="soft_l1", f_scale=0.05, x_scale=[0.1, 0.1, 1e-3, 1e-3])
        if best is None or r.cost < best.cost * (1.0 - 1e-6) - 1e-12:
            best = r
    assert best is not None
    return model(best.x).factors


def phase_errors(error: np.ndarray, heldout: np.ndarray, phase: np.ndarray) -> dict[str, PhaseError]:
    """Held-out MAPE, signed bias and worst error of each phase, on that phase's held-out rows only."""
    out = {}
    for ph in PHASES:
        e = error[heldout & (phase == ph)]
        out[ph] = (PhaseError(int(len(e)), float(np.mean(np.abs(e))), float(np.mean(e)), float(np.max(np.abs(e))))
                   if len(e) else PhaseError(0, None, None, None))
    return out


def evaluate(kind: str, step_time: StepTimeFit, model: StepTimeModel, steps: pd.DataFrame,
             heldout: np.ndarray, heldout_by: str = "random") -> FitResult:
    predicted = np.array([idle_step_s(model, ld)[0] for ld in _loads(steps)])
    measured = steps["step_s"].to_numpy(dtype=float)
    error = predicted / measured - 1.0
    phase = phase_of(steps)
    frame = steps.copy()
    frame["predicted_s"] = predicted
    frame["error"] = error
    frame["split"] = np.where(heldout, "heldout", "train")
    frame["phase"] = phase
    return FitResult(
        kind=kind,
        step_time=step_time,
        train_mape=float(np.mean(np.abs(error[~heldout]))),
        heldout_mape=float(np.mean(np.abs(error[heldout]))),
        heldout_max_error=float(np.max(np.abs(error[heldout]))),
        n_train=int((~heldout).sum()),
        n_heldout=int(heldout.sum()),
        predictions=frame,
        heldout_by=heldout_by,
        phases=phase_errors(error, heldout, phase),
    )


class RooflineContext(NamedTuple):
    """What a roofline fit prices steps with; the SKU's roofline default's small-GEMM terms are kept, not fitted."""

    arch: ModelArch
    spec: Spec
    dtype: str
    kv_dtype: str
    tp: int
    sku_default: RooflineDefault | None = None
    # the engine's kernels where they change the GEMMs (resolve's fuses_shared_experts and untuned_gemms): kept, not
    # fitted, so the fitted factors are what resolve adds these to
    fused_shared_experts: bool = False
    untuned_gemms: UntunedGemms | None = None


@dataclass(frozen=True)
class KernelsContext:
    """What picks the kernel tables of a deployment (hardware/kernels.py kernel_step_time)."""

    arch: ModelArch
    model: str
    sku: str
    engine: str  # the kernel framework (vllm, sglang, trtllm): microbench.kernel_framework maps a preset to it
    dtype: str
    kv_dtype: str
    tp: int
    profile_dirs: Sequence[Path] | None = None
    links: Links | None = None  # the SKU's links: a measured all-reduce bandwidth replaces the tables', as in resolve
    kernel_scale: float = 1.0  # the engine preset's release factor: the fit's multipliers are relative to it
    same_shape: tuple[str, ...] = ()  # tabled models of this model's shape, tried after it (resolve's same_shape_models)
    # the engine's decode attention in a step that also prefills over a decode-only step's (resolve's
    # unpacked_gqa_scale): a property of the engine's kernel on this SKU, not fitted
    mixed_decode_attn_scale: float = 1.0
    triton_moe: bool = False  # the engine's BF16 MoE on Triton fused_moe (resolve's triton_moe): not fitted either
    # what latent attention adds around the tables for computed prompt tokens, as resolve prices it (its
    # absorbed_extend_terms and ModelArch.mla_kv_up_share): the tables' own, so a step table's computed_tokens column
    # is priced as the engine will price it rather than folded into the fitted terms
    absorbed: tuple[float, float, float] = (1.0, 0.0, 0.0)
    mla_kv_up_share: float = 0.0
    older_moe: str | None = None  # the older release's MoE kernels the engine ran here (resolve's older_moe)

    def recorded(self, spec: KernelsStepTime) -> KernelsStepTime:
        """The fitted terms with the measured all-reduce and the release factor they were fitted against."""
        bus = self.links.measured_allreduce_bytes_per_s(self.tp) if self.links is not None else None
        return spec.model_copy(update={"allreduce_bus_gb_s": bus / 1e9 if bus is not None else None,
                                       "kernel_scale": self.kernel_scale})

    def model_for(self, spec: KernelsStepTime | None = None) -> KernelStepTime | None:
        """The kernel-table model with these fitted terms (the tables at the release factor, no overhead, without a
        spec)."""
        terms = (spec.model_dump(exclude={"kind", "allreduce_bus_gb_s"}) if spec is not None
                 else {"overhead_s": 0.0, "kernel_scale": self.kernel_scale})
        overhead_s = terms.pop("overhead_s")
        terms["mixed_decode_attn_scale"] = self.mixed_decode_attn_scale
        terms["triton_moe"] = self.triton_moe
        terms["absorbed"], terms["mla_kv_up_share"] = self.absorbed, self.mla_kv_up_share
        terms["older_moe"] = self.older_moe
        for model_id in (self.model, *self.same_shape):  # the first whose tables cover the layout
            model = kernel_step_time(self.arch, model_id, self.sku, self.engine, None, self.dtype, self.kv_dtype,
                                     self.tp, overhead_s, profile_dirs=self.profile_dirs, links=self.links, **terms)
            if model is not None:
                return model
        return None


PRIOR_WEIGHT = 0.003  # pull of the multipliers towards 1 (the tables) per unit of relative step error


def fit_kernels(steps: pd.DataFrame, train: np.ndarray, base: KernelStepTime) -> KernelsStepTime:
    """The five terms kernels miss (module docstring), non-negative, by soft-L1 least squares on relative error,
    and a prefill floor (KernelsStepTime.prefill_floor_s) when one explains the training prefills better.
    The step is linear in the five: overhead x 1 + per_seq x sequences + prefill_overhead x [prefill]
    + linear_scale x (GEMMs + all-reduce) + prefill_attn_scale x (prompt attention + what latent attention adds for
    the rows' computed prompt tokens, StepTimeModel.mla_extend) + (logits + decode attention).
    Without training rows that prefill, the prefill terms stay at the tables' values (0 and 1)."""
    rows = [(ld, base.breakdown_s(ld)) for ld, keep in zip(_loads(steps), train) if keep]
    y = steps["step_s"].to_numpy(dtype=float)[train]
    fixed = np.array([b["logits"] + b["decode_attention"] for _, b in rows])
    pf = np.array([1.0 if ld.prefill_tokens else 0.0 for ld, _ in rows])
    x = np.column_stack([np.ones(len(rows)), np.array([ld.decode_seqs + pf_ for (ld, _), pf_ in zip(rows, pf)]), pf,
                         np.array([b["linear"] + b["allreduce"] for _, b in rows]),
                         # what latent attention adds for computed prompt tokens scales with prompt attention in the
                         # fitted model (both are the tables' context attention, KernelStepTime)
                         np.array([b["prefill_attention"] + base.mla_extend(ld)[0] for ld, b in rows])])
    p = _kernel_terms(x, fixed, y, np.ones(len(y), dtype=bool))
    floor_s = 0.0
    if pf.any():
        floor_s, p = _prefill_floor(x, fixed, y, pf.astype(bool), p)
    return KernelsStepTime(**{name: float(max(v, 0.0)) for name, v in zip(KERNEL_FIELDS, p)},
                           prefill_floor_s=floor_s)


def _kernel_terms(x: np.ndarray, fixed: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The five terms fitted on the chosen rows (fit_kernels)."""
    x, fixed, y = x[rows], fixed[rows], y[rows]
    free = np.array([True, True, bool(x[:, 2].any()), True, bool((x[:, 4] > 0).any())])
    start = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    lower = np.array([0.0, 0.0, 0.0, 0.25, 0.1])
    upper = np.array([np.inf, np.inf, np.inf, 4.0, 10.0])
    offset = fixed + x[:, ~free] @ start[~free]  # held terms at the tables' values
    a = x[:, free] / y[:, None]
    target = 1.0 - offset / y
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)  # columns of very different magnitude
    is_mult = np.array([False, False, False, True, True])[free]

    def residuals(q: np.ndarray) -> np.ndarray:
        p = q / scale
        return np.concatenate([a @ p - target, PRIOR_WEIGHT * (p[is_mult] - 1.0)])

    q0 = np.clip(start[free], lower[free], upper[free]) * scale
    bounds = (lower[free] * scale, upper[free] * scale)
    r = least_squares(residuals, q0, bounds=bounds, loss="soft_l1", f_scale=SOFT_L1_SCALE)
    p = start.copy()
    p[free] = r.x / scale
    return p


def _soft_l1(rel: np.ndarray) -> float:
    z = (rel / SOFT_L1_SCALE) ** 2
    return float(np.sum(2.0 * (np.sqrt(1.0 + z) - 1.0)))


def _prefill_floor(x: np.ndarray, fixed: np.ndarray, y: np.ndarray, pf: np.ndarray,
                   p: np.ndarray) -> tuple[float, np.ndarray]:
    """A floor under the prefill steps, max(floor, step), where it lowers the fit's soft-L1 cost: each measured
    prefill time is a candidate; with one chosen the terms are refitted without the prefills it holds up (their
    time is the host's, not the kernels'), twice. Short prompts measured flat in their length are the signature of
    an engine that launches prefill forwards without CUDA graphs."""
    def cost(floor_s: float, terms: np.ndarray) -> float:
        step = fixed + x @ terms
        return _soft_l1(np.where(pf, np.maximum(step, floor_s), step) / y - 1.0)

    best_floor, best_terms, best_cost = 0.0, p, cost(0.0, p)
    terms = p
    for _ in range(2):
        floor_s = min(np.unique(y[pf]), key=lambda f: cost(float(f), terms))
        # the prefills the floor holds up: priced below it, or measured at it (terms fitted with them in could
        # price them above)
        bound = pf & ((fixed + x @ terms < floor_s) | (y <= floor_s * (1.0 + SOFT_L1_SCALE)))
        if bound.all() or (~bound).sum() < MIN_TRAIN:
            break
        terms = _kernel_terms(x, fixed, y, ~bound)
        c = cost(float(floor_s), terms)
        if c < 0.9 * best_cost - 1e-9:  # a floor only where it explains the prefills clearly better
            best_floor, best_terms, best_cost = float(floor_s), terms, c
    return best_floor, best_terms


def fit_step_time(steps: pd.DataFrame, kind: str = "best", roofline: RooflineContext | None = None,
                  heldout_fraction: float = 0.25, seed: int = 0, kernels: KernelsContext | None = None,
                  heldout_by: str = "random", max_train: int | None = None) -> FitResult:
    """Fit `linear`, `roofline`, `kernels` or each that applies (`best`: the lower held-out MAPE; kernels when the
    tables cover the deployment) and report the errors, overall and per phase."""
    heldout = split_steps(steps, heldout_by, heldout_fraction, seed, max_train)
    train = ~heldout
    candidates: list[tuple[str, Callable[[], tuple[StepTimeFit, StepTimeModel]]]] = []
    if kind in ("linear", "best"):
        def linear() -> tuple[StepTimeFit, StepTimeModel]:
            spec = fit_linear(steps, train)
            return spec, LinearModel(spec)
        candidates.append(("linear", linear))
    if kind in ("roofline", "best") and roofline is not None:
        rc = RooflineContext(*roofline)

        def roof() -> tuple[StepTimeFit, StepTimeModel]:
            factors = fit_roofline(steps, train, rc.arch, rc.spec, rc.dtype, rc.kv_dtype, rc.tp, rc.sku_default,
                                   rc.fused_shared_experts, rc.untuned_gemms)
            return factors, RooflineModel(rc.arch, rc.spec, factors, rc.dtype, rc.kv_dtype, rc.tp,
                                          fused_shared_experts=rc.fused_shared_experts, untuned_gemms=rc.untuned_gemms)
        candidates.append(("roofline", roof))
    if kind in ("kernels", "best") and kernels is not None:
        base = kernels.model_for()
        if base is not None:
            ctx = kernels

            def kern() -> tuple[StepTimeFit, StepTimeModel]:
                assert base is not None
                spec = ctx.recorded(fit_kernels(steps, train, base))
                model = ctx.model_for(spec)
                assert model is not None
                return spec, model
            candidates.append(("kernels", kern))
        elif kind == "kernels":
            raise FitRefused(f"no kernel tables cover {kernels.model} {kernels.engine} TP{kernels.tp} "
                             f"{kernels.dtype}/{kernels.kv_dtype} on {kernels.sku} (hardware_profiles/kernels/); "
                             "fit linear or roofline instead")
    if not candidates:
        raise FitRefused(f"a {kind} fit needs the model's shape and the SKU's spec"
                         + (" and kernel tables" if kind == "kernels" else ""))
    results = []
    for name, make in candidates:
        step_time, model = make()
        results.append(evaluate(name, step_time, model, steps, heldout, heldout_by))
    return min(results, key=lambda r: r.heldout_mape)


RE_MEASURE = "Re-measure (more repetitions, a quieter GPU) or"


def check_threshold(result: FitResult, max_heldout_mape: float = DEFAULT_MAX_HELDOUT_MAPE, force: bool = False,
                    advice: str = RE_MEASURE, unit: str = "step") -> None:
    """Refuse to publish a fit whose held-out MAPE is over the threshold (unless forced), naming the worst held-out
    `unit` and the error per phase; `advice` says what to do before "pass --force"."""
    if result.heldout_mape > max_heldout_mape and not force:
        phases = "; ".join(f"{name} {pe.text()}" for name, pe in result.phases.items() if pe.n)
        raise FitRefused(
            f"held-out MAPE {result.heldout_mape:.1%} exceeds {max_heldout_mape:.1%} "
            f"(worst {unit} {result.heldout_max_error:.1%}{f'; held out per phase: {phases}' if phases else ''}); "
            f"the {result.kind} step-time model does not describe these measurements well. {advice} pass --force "
            "to write it anyway"
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
    if not (math.isfinite(idle) and math.isfinite(slope) and idle + slope > 0):
        raise FitRefused("the power line does not rise to a positive power at full utilization")
    predicted = idle + slope * u
    return PowerFit(idle_w=max(idle, 0.0), max_w=idle + slope, mape=float(np.mean(np.abs(predicted / p - 1.0))),
                    samples=int(len(u)))
