"""Whole-batch latencies -> a linear step time: what `vllm bench latency` and published batch benchmarks measure
(B prompts of the same length sent together, answers of a fixed length, the time until the last token).

A closed batch's schedule (which steps run, with which prefills, decodes and KV reads) does not depend on how long
the steps take: nothing arrives while it runs. So its latency is linear in the linear step time's coefficients:

    latency = overhead x steps + a x prefill tokens + b x decode sequences + c x KV tokens read + d x attention pairs

each summed over the batch's steps. The sums are read off five simulations of the batch on the deployment (its
engine's token budget, chunking, KV capacity and preemption included), one per coefficient; fitting is then the
same robust least squares on relative error as a step table (fit.linear_from_matrix). The rows held out are every
second prompt length (`prompt`, not the longest) or batch size (`batch`), or a seeded quarter (`random`);
`max_train` caps the training rows at an even spread over length and batch size. A batch's latency mixes prefill
and decode, so the held-out error is one figure, not one per phase.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from simfactory.calibration.fit import (
    LINEAR_FIELDS, MIN_ROWS, FitRefused, FitResult, cap_training, linear_from_matrix, split,
)
from simfactory.calibration.validate import Deployment, resolve_block, simulate_resolved
from simfactory.config.profile import LinearStepTime
from simfactory.errors import InputError

BATCH_COLUMNS: dict[str, str] = {
    "batch_size": "prompts sent together",
    "input_tokens": "prompt tokens of each",
    "output_tokens": "answer tokens of each",
    "latency_s": "seconds from the batch's send to its last token",
}
MAX_BATCH_SIZE = 100_000
# one basis step time per coefficient: the overhead alone counts steps, each other adds its own feature (scaled so
# that every feature's contribution is well above float rounding of the overhead's)
BASIS: tuple[dict[str, float], ...] = (
    {"overhead_s": 1e-3}, {"overhead_s": 1e-3, "s_per_prefill_token": 1e-7},
    {"overhead_s": 1e-3, "s_per_decode_seq": 1e-5}, {"overhead_s": 1e-3, "s_per_kv_token": 1e-9},
    {"overhead_s": 1e-3, "s_per_attn_pair": 1e-11})
HELDOUT_KEYS = {"prompt": "input_tokens", "batch": "batch_size"}


def is_batch_table(frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in BATCH_COLUMNS)


def check_batches(frame: pd.DataFrame, file: str = "<batches>") -> pd.DataFrame:
    """Each row's batch size and lengths whole numbers >= 1 and its latency a finite positive number."""
    if frame.empty:
        raise InputError(file, "", "a batch-latency table needs at least one row")
    out = frame.copy()
    for col in BATCH_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        whole = col != "latency_s"
        bad = ~np.isfinite(values) | (values <= 0) | ((values != np.round(values)) if whole else False)
        if whole:
            bad |= values > (MAX_BATCH_SIZE if col == "batch_size" else 10_000_000)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "a whole number >= 1" if whole else "a finite number of seconds > 0"
            raise InputError(file, f"row {i + 2}.{col}", f"must be {what}, got {frame[col].iloc[i]!r}")
        out[col] = values.astype(int) if whole else values
    return out


def batch_features(batches: pd.DataFrame, dep: Deployment) -> np.ndarray:
    """(rows, 5): steps, prefill tokens, decode sequences, KV tokens read and attention pairs, each summed over the
    steps of each row's batch as the deployment's engine would run it (in-process: no API server in front)."""
    dep = dataclasses.replace(dep, served=False)
    rows = []
    for b, n_in, n_out in batches[["batch_size", "input_tokens", "output_tokens"]].itertuples(index=False):
        block = pd.DataFrame({"send_s": np.zeros(int(b)), "input_tokens": int(n_in), "output_tokens": int(n_out)})
        rs = resolve_block(block, dep)
        spans = []
        for kw in BASIS:
            sim = simulate_resolved(rs, LinearStepTime(**kw))
            if len(sim) < b:
                raise FitRefused(f"a batch of {b} x {n_in}+{n_out} tokens does not complete on {dep.sku} "
                                 f"(tp {dep.tp}): does it fit the KV cache?")
            spans.append(float(sim["e2e_s"].max()))
        base = spans[0]
        rows.append([base / BASIS[0]["overhead_s"]] +
                    [(spans[k] - base) / BASIS[k][LINEAR_FIELDS[k]] for k in range(1, len(BASIS))])
    return np.array(rows, dtype=float)


def split_batches(batches: pd.DataFrame, by: str = "prompt", seed: int = 0, max_train: int | None = None) -> np.ndarray:
    """Boolean mask of held-out rows (module docstring)."""
    n = len(batches)
    if n < MIN_ROWS:
        raise FitRefused(f"{n} measured batches; a fit with a held-out check needs at least {MIN_ROWS}")
    if by == "random":
        heldout = split(n, 0.25, seed)
    else:
        key = batches[HELDOUT_KEYS[by]].to_numpy()
        values = np.unique(key)
        held = [v for i, v in enumerate(values) if i % 2 == 1 and (i < len(values) - 1 or len(values) == 2)]
        heldout = np.isin(key, held)
    keys = (batches["batch_size"].to_numpy(), batches["input_tokens"].to_numpy())
    return cap_training(heldout, keys, max_train, by, "batches")


def fit_batches(batches: pd.DataFrame, dep: Deployment, by: str = "prompt", seed: int = 0,
                max_train: int | None = None) -> FitResult:
    """The linear step time that best explains the training batches' latencies, checked on the held-out ones."""
    heldout = split_batches(batches, by, seed, max_train)
    x = batch_features(batches, dep)
    y = batches["latency_s"].to_numpy(dtype=float)
    step_time = linear_from_matrix(x, y, ~heldout)
    coef = np.array([getattr(step_time, f) for f in LINEAR_FIELDS])
    predicted = x @ coef
    error = predicted / y - 1.0
    frame = batches.copy()
    frame["steps"] = x[:, 0]
    frame["predicted_s"] = predicted
    frame["error"] = error
    frame["split"] = np.where(heldout, "heldout", "train")
    return FitResult(kind="linear (fitted to batch latencies)", step_time=step_time,
                     train_mape=float(np.mean(np.abs(error[~heldout]))),
                     heldout_mape=float(np.mean(np.abs(error[heldout]))),
                     heldout_max_error=float(np.max(np.abs(error[heldout]))),
                     n_train=int((~heldout).sum()), n_heldout=int(heldout.sum()), predictions=frame,
                     heldout_by=f"{by} (batches)")


def heldout_bias(fit: FitResult) -> float:
    """Mean signed error of the held-out batches (+ = predicts slower than measured)."""
    p = fit.predictions
    return float(p.loc[p["split"] == "heldout", "error"].mean())

