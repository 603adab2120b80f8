"""Fit a synthetic workload to a trace, keeping what drives latency: the rate's swings over time, the bunching of
arrivals inside a window, the length distributions as measured and the pairing of input with output lengths.

Arrivals: a piecewise-constant rate (per window of the trace) with renewal gaps inside each window (gamma or
Weibull, chosen by likelihood on the rate-normalised gaps). The window width is chosen among candidates by a
goodness of fit on what queues feel: the index of dispersion of counts (variance / mean of arrivals per
interval) at several interval sizes, and the distribution of gaps, each of a synthetic realisation against the
trace. A single window (one renewal process for the whole trace) is always a candidate.

Lengths: each marginal as its measured quantile function (no parametric shape, so its median and tail are the
trace's, and no pile-up at a clip), paired through a Gaussian copula with the trace's Spearman rank correlation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from simfactory.config.distributions import Quantiles, sample_joint_tokens
from simfactory.config.limits import MAX_ARRIVAL_CV, MIN_ARRIVAL_CV
from simfactory.config.scenario import ScheduleArrivals
from simfactory.sim.traffic import arrival_times
from simfactory.traces.parse import Trace
from simfactory.traces.stats import batch_tick_s, spread_batches

WINDOW_CANDIDATES_S = (5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
MIN_MEAN_PER_WINDOW = 5.0  # fewer arrivals per window on average and the per-window rate is mostly noise
IDC_SCALES_S = (1.0, 10.0, 60.0, 300.0)
MIN_IDC_INTERVALS = 10  # an index of dispersion over fewer intervals than this says little
QUANTILE_POINTS = 201  # quantiles at probabilities 0, 0.5%, ..., 100%
MIN_FIT_ARRIVALS = 20
FIT_SEED = 20240917  # the synthetic realisations that score candidates: fixed, so a fit is reproducible


@dataclass
class ArrivalCandidate:
    window_s: float  # the whole trace for the single-window (stationary renewal) candidate
    family: str
    cv: float
    score: float
    idc: dict[float, tuple[float, float]]  # interval size -> (trace, fitted) index of dispersion
    gap_ks: float
    process: dict[str, Any]


@dataclass
class ArrivalFit:
    chosen: ArrivalCandidate
    candidates: list[ArrivalCandidate] = field(default_factory=list)


def index_of_dispersion(t: np.ndarray, span_s: float, interval_s: float) -> float | None:
    """Var / mean of the arrivals per interval over [0, span_s) (1 for Poisson; more for bursty traffic)."""
    n = int(span_s // interval_s)
    if n < MIN_IDC_INTERVALS:
        return None
    counts = np.bincount((t[t < n * interval_s] // interval_s).astype(np.int64), minlength=n)
    mean = counts.mean()
    return float(counts.var() / mean) if mean > 0 else None


def _normalised_gaps(t: np.ndarray, window_s: float, rates: np.ndarray, floor_s: float) -> np.ndarray:
    """Gaps between consecutive arrivals of one window, times the window's rate (unit mean if the model holds)."""
    w = np.minimum(t // window_s, len(rates) - 1).astype(np.int64)  # the last arrival closes the last window
    same = w[1:] == w[:-1]
    gaps = np.maximum(np.diff(t)[same], floor_s)
    return gaps * rates[w[1:][same]]


def _family_fit(x: np.ndarray) -> tuple[str, float]:
    """The gap family (gamma or weibull) with the higher likelihood on unit-mean gaps x, and its cv.

    Gaps (nearly) all equal, as a constant-rate benchmark's are, have no spread for a likelihood to fit (scipy's
    gamma solver fails on them): they are the most regular gaps a schedule plays, gamma at the smallest cv; a
    family whose fit fails is left out, and with neither the moments' cv is kept."""
    x = x / x.mean()
    moments_cv = float(x.std())
    if not moments_cv >= MIN_ARRIVAL_CV:
        return "gamma", MIN_ARRIVAL_CV
    fits: dict[str, tuple[float, float]] = {}  # family -> (log-likelihood, cv)
    with np.errstate(all="ignore"):
        try:
            a, _, scale_g = sps.gamma.fit(x, floc=0)
            fits["gamma"] = (float(sps.gamma.logpdf(x, a, scale=scale_g).sum()), 1.0 / math.sqrt(a))
        except (ValueError, RuntimeError, FloatingPointError, ZeroDivisionError):
            pass
        try:
            k, _, scale_w = sps.weibull_min.fit(x, floc=0)
            cv = math.sqrt(math.exp(math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)) - 1)
            fits["weibull"] = (float(sps.weibull_min.logpdf(x, k, scale=scale_w).sum()), cv)
        except (ValueError, RuntimeError, FloatingPointError, ZeroDivisionError, OverflowError):
            pass
    usable = {f: v for f, v in fits.items() if math.isfinite(v[0]) and math.isfinite(v[1])}
    if not usable:
        return "gamma", moments_cv
    if "weibull" in usable and ("gamma" not in usable or usable["weibull"][0] > usable["gamma"][0]):
        return "weibull", usable["weibull"][1]
    return "gamma", usable["gamma"][1]


def _candidate(t: np.ndarray, span_s: float, window_s: float, floor_s: float) -> ArrivalCandidate:
    # whole windows only: the tail past the last whole window joins it (a sliver of a window holding the trace's
    # last arrival would otherwise get a huge rate, which the schedule then plays for a whole window)
    n_windows = max(1, int(span_s // window_s))
    counts = np.bincount(np.minimum(t // window_s, n_windows - 1).astype(np.int64), minlength=n_windows)
    lengths = np.full(n_windows, window_s)
    lengths[-1] = max(span_s - (n_windows - 1) * window_s, floor_s)
    rates = counts / lengths
    gaps = _normalised_gaps(t, window_s, rates, floor_s)
    family, cv = _family_fit(gaps) if len(gaps) >= MIN_FIT_ARRIVALS else ("gamma", 1.0)
    cv = float(min(max(cv, MIN_ARRIVAL_CV), MAX_ARRIVAL_CV))
    process = {"process": "schedule", "window_s": float(window_s), "rates_per_s": [float(f"{r:.5g}") for r in rates],
               "gaps": family, "cv": float(f"{cv:.4g}"), "repeat": True}
    synthetic = arrival_times(ScheduleArrivals(**process), span_s, np.random.default_rng(FIT_SEED))
    idc: dict[float, tuple[float, float]] = {}
    for scale in IDC_SCALES_S:
        a, b = index_of_dispersion(t, span_s, scale), index_of_dispersion(synthetic, span_s, scale)
        if a is not None and b is not None and a > 0 and b > 0:
            idc[scale] = (a, b)
    gap_ks = float(sps.ks_2samp(np.diff(t), np.diff(synthetic)).statistic) if len(synthetic) > 1 else 1.0
    idc_err = float(np.mean([abs(math.log(b / a)) for a, b in idc.values()])) if idc else 0.0
    return ArrivalCandidate(window_s, family, cv, idc_err + gap_ks, idc, gap_ks, process)


def fit_arrivals(arrival_s: np.ndarray) -> ArrivalFit | None:
    """The best-scoring schedule for these arrival times (None: too few distinct times to fit one)."""
    t = np.sort(np.asarray(arrival_s, dtype=float))
    t = t - t[0]
    span = float(t[-1])
    if len(t) < MIN_FIT_ARRIVALS or span <= 0:
        return None
    positive = np.diff(t)[np.diff(t) > 0]
    floor_s = float(positive.min()) / 2 if len(positive) else 1e-6  # zero gaps (ties) count as half the finest gap
    mean_rate = len(t) / span
    widths = [w for w in WINDOW_CANDIDATES_S if w < span / 2 and mean_rate * w >= MIN_MEAN_PER_WINDOW]
    candidates = [_candidate(t, span, w, floor_s) for w in widths] + [_candidate(t, span, span, floor_s)]
    best = min(candidates, key=lambda c: c.score)
    return ArrivalFit(best, candidates)


def fit_lengths(trace: Trace) -> dict[str, Any]:
    """Quantile marginals of input and output tokens and their Spearman rank correlation."""
    probs = np.linspace(0.0, 1.0, QUANTILE_POINTS)

    def quantiles(v: np.ndarray) -> dict[str, Any]:
        q = np.quantile(np.maximum(v, 1).astype(float), probs)
        return {"kind": "quantiles", "values": [float(f"{x:.6g}") for x in np.maximum.accumulate(q)]}

    rho = float(sps.spearmanr(trace.input_tokens, trace.output_tokens).statistic) if len(trace) > 2 else 0.0
    rho = 0.0 if not math.isfinite(rho) else rho
    return {"input_tokens": quantiles(trace.input_tokens), "output_tokens": quantiles(trace.output_tokens),
            "length_correlation": round(rho, 4)}


def length_fit_quality(trace: Trace, lengths: dict[str, Any], n: int = 20_000) -> dict[str, float]:
    """KS distances of each marginal and the Spearman correlation of a synthetic sample, beside the trace's."""
    inp, out = Quantiles(**lengths["input_tokens"]), Quantiles(**lengths["output_tokens"])
    rng = np.random.default_rng(FIT_SEED)
    a, b = sample_joint_tokens(inp, out, lengths["length_correlation"], rng, np.random.default_rng(FIT_SEED + 1), n)
    return {
        "input_ks": float(sps.ks_2samp(trace.input_tokens, a).statistic),
        "output_ks": float(sps.ks_2samp(trace.output_tokens, b).statistic),
        "spearman_trace": lengths["length_correlation"],
        "spearman_fitted": float(sps.spearmanr(a, b).statistic),
        "input_p50_trace": float(np.median(trace.input_tokens)), "input_p50_fitted": float(np.median(a)),
        "input_p99_trace": float(np.percentile(trace.input_tokens, 99)), "input_p99_fitted": float(np.percentile(a, 99)),
    }


def fit_workload(trace: Trace, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `kind: requests` workload (lengths, their correlation and, for timestamped traces, the arrival process)
    and a report of the fit's quality (what `trace fit` prints)."""
    lengths = fit_lengths(trace)
    workload: dict[str, Any] = {
        "kind": "requests",
        "name": name,
        "description": f"Fitted to {trace.file} ({trace.format}, {len(trace)} requests) by simfactory trace fit.",
        **lengths,
    }
    report: dict[str, Any] = {"lengths": length_fit_quality(trace, lengths)}
    fit = None
    if trace.arrival_s is not None:  # batched timestamps (a coarse recording tick) fitted as the instants they hold
        tick = batch_tick_s(trace.arrival_s)
        fit = fit_arrivals(spread_batches(trace.arrival_s, np.random.default_rng(FIT_SEED), tick))
        if tick > 0:
            report["batched_timestamps_tick_s"] = tick
    if fit is not None:
        workload["arrival"] = fit.chosen.process
        report["arrivals"] = {
            "chosen": _describe(fit.chosen),
            "candidates": [_describe(c) for c in fit.candidates],
        }
    workload["source"] = f"fitted to {trace.file}"
    workload["as_of"] = "fitted"
    return workload, report


def _describe(c: ArrivalCandidate) -> dict[str, Any]:
    return {"window_s": c.window_s, "gaps": c.family, "cv": round(c.cv, 4), "score": round(c.score, 4),
            "gap_ks": round(c.gap_ks, 4),
            "index_of_dispersion": {f"{k:g}s": [round(a, 3), round(b, 3)] for k, (a, b) in c.idc.items()}}
