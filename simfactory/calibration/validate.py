"""Predicted vs. measured: simulate exactly the load a request table records (send times and lengths, per
rate block) on a described deployment, and compare latency percentiles and throughput block by block.

The error table is the serving-level check of a profile: a calibrated step-time model should bring the
simulated TTFT/TPOT/E2E within a few percent of what the live endpoint showed at the same load.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from simfactory.calibration.measurements import check_requests, output_tokens_per_s
from simfactory.config.limits import MAX_FRONT_END_S
from simfactory.config.loader import validate
from simfactory.config.scenario import NO_API_SERVER, Scenario, kv_dtype_for
from simfactory.errors import InputError, InputErrors
from simfactory.config.profile import DType, LinearStepTime, RooflineStepTime
from simfactory.hardware.step_time import LinearModel, StepTimeModel
from simfactory.resolve import ResolvedScenario, resolve
from simfactory.resolve.step_time import roofline_model
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import simulate

METRICS = ("ttft_s", "tpot_s", "e2e_s")
FLAG_OF = {  # the generated scenario's fields -> the command-line flags that set them
    "pools[0].sku": "--sku", "pools[0]": "--sku", "deployments[0].model": "--model", "deployments[0].dtype": "--dtype",
    "deployments[0].tp": "--tp", "deployments[0].engine": "--engine", "deployments[0].replicas": "--replicas",
    "deployments[0].max_num_seqs": "--max-num-seqs", "deployments[0]": "--model",
}


def _as_flags(exc: InputError | InputErrors) -> InputErrors:
    """Errors in the scenario built from flags, reported against the flags (the user never saw that file)."""
    errors = exc.errors if isinstance(exc, InputErrors) else [exc]
    out = []
    for e in errors:
        flag = next((f for k, f in FLAG_OF.items() if e.field.startswith(k)), None)
        out.append(InputError(flag, "", e.reason) if flag else e)
    return InputErrors(out)
QUANTILES = (0.5, 0.9)


@dataclass(frozen=True)
class Deployment:
    """What served the measured load (the simulator's side of the comparison)."""

    sku: str
    model: str
    engine: str = "vllm"
    dtype: str = "bf16"
    tp: int = 1
    replicas: int = 1
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    profiles_dir: Path | None = None  # measured profiles (<dir>/<sku>/*.yaml) looked up first, as `calibrate fit` writes
    # the measured server's front end per request (Deployment.front_end_s), not fitted; None: the engine preset's
    front_end_s: float | None = None
    # False: measured in-process (vllm bench latency, a batch table): no API server, neither the preset's
    # front_end_s nor its front-end CPU work
    served: bool = True

    def __post_init__(self) -> None:
        check_deployment_flags(self.dtype, self.tp, self.replicas)
        if self.front_end_s is not None:
            check_front_end(self.front_end_s)
        if self.profiles_dir is not None and not Path(self.profiles_dir).is_dir():
            raise InputError("--profiles-dir", "", f"{self.profiles_dir} is not a folder")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise InputError("--max-num-seqs", "", f"must be >= 1, got {self.max_num_seqs}")


# where `--front-end-s auto` looks for a server's front end per request (a fit at the upper bound is refused)
FITTED_FRONT_END_MAX_S = 0.2


def check_front_end(front_end_s: float) -> None:
    """--front-end-s: seconds per request, within the bounds a deployment's front_end_s takes."""
    if not (isinstance(front_end_s, (int, float)) and 0.0 <= front_end_s <= MAX_FRONT_END_S):  # also NaN
        raise InputError("--front-end-s", "", f"must be seconds from 0 to {MAX_FRONT_END_S:g} (e.g. 0.0034), "
                                              f"got {front_end_s}")


def check_deployment_flags(dtype: str, tp: int, replicas: int = 1) -> None:
    """The flags that describe a deployment, checked as one line each (a typo is not a KeyError later)."""
    dtypes = get_args(DType)
    if dtype not in dtypes:
        raise InputError("--dtype", "", f"unknown dtype {dtype!r} (choose from {', '.join(dtypes)})")
    if tp < 1:
        raise InputError("--tp", "", f"must be >= 1, got {tp}")
    if replicas < 1:
        raise InputError("--replicas", "", f"must be >= 1, got {replicas}")


def block_scenario(block: pd.DataFrame, dep: Deployment, trace_file: Path, seed: int) -> Scenario:
    """One rate block as a scenario replaying its sends (BurstGPT-format trace: seconds and token counts)."""
    last = float(block["send_s"].max())
    d: dict[str, Any] = {"name": "d", "model": dep.model, "pool": "p", "replicas": dep.replicas, "tp": dep.tp,
                         "dtype": dep.dtype, "engine": dep.engine}
    if dep.max_num_seqs is not None:
        d["max_num_seqs"] = dep.max_num_seqs
    if dep.max_num_batched_tokens is not None:
        d["max_num_batched_tokens"] = dep.max_num_batched_tokens
    if dep.front_end_s is not None:
        d["front_end_s"] = dep.front_end_s
    if not dep.served:
        d.update(NO_API_SERVER)
    return validate(Scenario, {
        "name": "calibration-validate",
        "seed": seed,
        "pools": [{"name": "p", "sku": dep.sku, "count": dep.replicas * dep.tp, "location": "cloud"}],
        "deployments": [d],
        "traffic": {"arrival": {"process": "poisson", "rate_per_s": 1.0},
                    "classes": [{"name": "measured", "target": "d",
                                 "trace": {"file": str(trace_file), "format": "burstgpt"}}]},
        "sim": {"horizon_s": last + 1e-6, "drain": True, "max_drain_s": 86400.0,
                "timeline_resolution_s": max(last / 100, 1.0)},
    }, "<calibrate deployment flags>")


def _write_trace(block: pd.DataFrame, path: Path) -> None:
    frame = pd.DataFrame({"Timestamp": block["send_s"].to_numpy(dtype=float),
                          "Request tokens": block["input_tokens"].astype(int),
                          "Response tokens": block["output_tokens"].astype(int)})
    frame.to_csv(path, index=False, float_format="%.9f")


def with_front_end(rs: ResolvedScenario, front_end_s: float) -> ResolvedScenario:
    """The same scenario with its deployment's fixed front end per request set (what `--front-end-s auto` varies)."""
    d = rs.deployments[0]
    config = d.config.model_copy(update={"front_end_s": front_end_s})
    return dataclasses.replace(rs, deployments=[dataclasses.replace(d, config=config)])


def with_factors(rs: ResolvedScenario, factors: RooflineStepTime | LinearStepTime) -> ResolvedScenario:
    """The same scenario with its deployment on a roofline of these factors, or on this linear step time (what
    fitting varies)."""
    d = rs.deployments[0]
    c = d.config
    model: StepTimeModel
    if isinstance(factors, LinearStepTime):
        model = LinearModel(factors)
    else:  # the deployment's own roofline (parallel degrees, expert imbalance) with other factors
        model = roofline_model(c, d.profile, d.arch, kv_dtype_for(c.dtype, c.kv_dtype, d.arch), factors, d.engine_preset)
    return dataclasses.replace(rs, deployments=[dataclasses.replace(d, step_time=model)])


@contextmanager
def profiles_beside(dep: Deployment) -> Iterator[tuple[Deployment, Path]]:
    """dep.profiles_dir copied as a hardware_profiles folder into a temporary base folder, where a scenario's
    profile lookup finds it; yields the deployment without profiles_dir and that base (copied once for all the
    blocks resolved inside)."""
    assert dep.profiles_dir is not None
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(dep.profiles_dir, Path(tmp) / "hardware_profiles",
                        ignore=shutil.ignore_patterns("*.csv", "*.parquet"))
        yield dataclasses.replace(dep, profiles_dir=None), Path(tmp)


def resolve_block(block: pd.DataFrame, dep: Deployment, seed: int = 0, base_dir: Path | None = None) -> ResolvedScenario:
    """The scenario replaying a block's sends and lengths. Profiles are looked up as for a scenario in `base_dir`
    (default: the working directory), so calibrated profiles in ./hardware_profiles/<sku>/ are used. The trace
    file only lives while resolving (resolve reads it into the scenario)."""
    if dep.profiles_dir is not None:
        with profiles_beside(dep) as (own, tmp_base):
            return resolve_block(block, own, seed, tmp_base)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "load.csv"
        _write_trace(block, trace)
        nominal = (base_dir or Path.cwd()) / "calibrate-validate.yaml"  # never written: only locates profiles
        try:
            return resolve(block_scenario(block, dep, trace, seed), nominal)
        except (InputError, InputErrors) as e:
            raise _as_flags(e) from None


def simulate_resolved(rs: ResolvedScenario, factors: RooflineStepTime | LinearStepTime | None = None) -> pd.DataFrame:
    """The simulator's request table of a resolved block (on a roofline of `factors` when given)."""
    t = simulate(rs if factors is None else with_factors(rs, factors), keep_logs=0).table
    done = t.outcome == Outcome.COMPLETED
    out = t.output_tokens.astype(float)
    ttft = t.first_token_s - t.arrival_s
    e2e = t.completion_s - t.arrival_s
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (e2e - ttft) / (out - 1), np.nan)
    return pd.DataFrame({"send_s": t.arrival_s, "output_tokens": out, "ttft_s": np.where(done, ttft, np.nan),
                         "tpot_s": np.where(done, tpot, np.nan), "e2e_s": np.where(done, e2e, np.nan), "ok": done})


def simulate_block(block: pd.DataFrame, dep: Deployment, seed: int = 0, base_dir: Path | None = None,
                   factors: RooflineStepTime | LinearStepTime | None = None) -> pd.DataFrame:
    """The simulator's request table for the block's successful requests (same lengths, same send times)."""
    return simulate_resolved(resolve_block(block, dep, seed, base_dir), factors)


@dataclass(frozen=True)
class Block:
    """One rate block of a request table (one repeat of it), ready to replay: its successful requests (sends from
    0) and scenario. The repeats of a block share its label: they are compared, and held out, together."""

    label: str
    sent: pd.DataFrame
    scenario: ResolvedScenario
    repeat: int = 0


def _groups(measured: pd.DataFrame) -> list[tuple[str, int, pd.DataFrame]]:
    """(label, repeat, rows): by the `block` column (and `repeat`) when the table has one, else by rate."""
    repeats = measured["repeat"] if "repeat" in measured else pd.Series(0, index=measured.index)
    if "block" in measured:
        groups = measured.groupby([measured["block"].astype(str), repeats.astype(int)], sort=False)
        return [(str(label), int(rep), rows) for (label, rep), rows in groups]
    rates = measured["rate_rps"] if "rate_rps" in measured else pd.Series(np.nan, index=measured.index)
    return [("trace" if key < 0 else f"{key:g}", 0, block)
            for key, block in measured.groupby(rates.fillna(-1.0), sort=True)]


def blocks_of(measured: pd.DataFrame, dep: Deployment, seed: int = 0, base_dir: Path | None = None) -> list[Block]:
    """Group by the `block` column (and `repeat`) when the table has one (`calibrate serve`: one block per rate and
    prompt length, each repeat apart: its sends start from 0 again), else by rate (rows without one form one 'trace'
    block); resolve each block once."""
    measured = check_requests(measured)
    if dep.profiles_dir is not None:
        with profiles_beside(dep) as (own, tmp_base):
            return blocks_of(measured, own, seed, tmp_base)
    out = []
    for label, repeat, block in _groups(measured):
        ok = block[block["ok"].astype(bool)]
        if ok.empty:
            continue
        sent = ok.assign(send_s=ok["send_s"] - ok["send_s"].min())
        out.append(Block(label, sent, resolve_block(sent, dep, seed, base_dir), repeat))
    return out


def by_label(blocks: list[Block]) -> dict[str, list[Block]]:
    """The blocks of each label (its repeats), labels in the order of the design."""
    out: dict[str, list[Block]] = {}
    for b in blocks:
        out.setdefault(b.label, []).append(b)
    return out


def compare_blocks(blocks: list[Block], factors: RooflineStepTime | LinearStepTime | None = None) -> pd.DataFrame:
    """One row per (rate block, metric): measured, predicted and signed error (predicted / measured - 1). A block's
    repeats are pooled: percentiles over all their requests, throughput the mean over the repeats."""
    rows: list[dict[str, Any]] = []
    for label, group in by_label(blocks).items():
        sent = pd.concat([b.sent for b in group], ignore_index=True)
        sims = [simulate_resolved(b.scenario, factors) for b in group]
        sim = pd.concat(sims, ignore_index=True)
        for metric in METRICS:
            for q in QUANTILES:
                m = float(np.nanquantile(sent[metric].to_numpy(dtype=float), q))
                p = float(np.nanquantile(sim[metric].to_numpy(dtype=float), q))
                rows.append({"rate_rps": label, "metric": f"{metric[:-2]}_p{int(q * 100)}_s", "measured": m,
                             "predicted": p, "error": p / m - 1.0 if m > 0 else float("nan"), "requests": len(sent)})
        m_tp = float(np.mean([output_tokens_per_s(b.sent) for b in group]))
        p_tp = float(np.mean([output_tokens_per_s(s) for s in sims]))
        rows.append({"rate_rps": label, "metric": "output_tokens_per_s", "measured": m_tp, "predicted": p_tp,
                     "error": p_tp / m_tp - 1.0 if m_tp > 0 else float("nan"), "requests": len(sent)})
    if not rows:
        raise ValueError("no successful requests to compare")
    return pd.DataFrame(rows)


def compare(measured: pd.DataFrame, dep: Deployment, seed: int = 0, base_dir: Path | None = None,
            factors: RooflineStepTime | LinearStepTime | None = None) -> pd.DataFrame:
    """Predicted vs measured for a request table (see compare_blocks)."""
    return compare_blocks(blocks_of(measured, dep, seed, base_dir), factors)


def mape(table: pd.DataFrame) -> float:
    """Mean absolute error over every comparison row (the headline figure)."""
    errors = np.abs(table["error"].to_numpy(dtype=float))
    errors = errors[np.isfinite(errors)]
    return float(errors.mean()) if len(errors) else float("nan")  # NaN: nothing was comparable
