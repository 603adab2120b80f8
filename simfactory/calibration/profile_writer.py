"""Publish a fit as a measured hardware profile: hardware_profiles/<sku>/<model>-<engine>-<dtype>-tp<N>.yaml
(a `StepTimeEntry` with `source: measured`, its held-out error and provenance), with the raw measurements
next to it as CSV. Files are written to temporaries and renamed, so an interrupted run leaves nothing
half-written; the YAML is validated by loading it back before it replaces anything.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from simfactory.calibration.fit import FitResult, PowerFit
from simfactory.config.loader import load_model_file
from simfactory.config.profile import StepTimeEntry
from simfactory.errors import InputError
from simfactory.outputs import GENERATOR, check_output_file
from simfactory.provenance import git_sha
from simfactory.version import __version__

SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/measured-profile.json\n"


def profile_name(model: str, engine: str, dtype: str, tp: int) -> str:
    return f"{model}-{engine}-{dtype}-tp{tp}"


def build_entry(fit: FitResult, *, model: str, engine: str, dtype: str, tp: int, provenance: dict[str, Any],
                power: PowerFit | None = None, notes: str | None = None) -> StepTimeEntry:
    prov = {k: str(v) for k, v in provenance.items()}
    prov.setdefault("date", datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    sha = git_sha()  # None outside a git checkout (an installed wheel): the version says what ran then
    prov.setdefault("git_sha", sha if sha is not None else f"unknown (simfactory {__version__}, not a git checkout)")
    prov["fit"] = (f"{fit.kind}; held-out MAPE {fit.heldout_mape:.2%}, worst {fit.heldout_max_error:.2%} "
                   f"({fit.n_heldout} held-out of {fit.n_train + fit.n_heldout} rows, split {fit.heldout_by}); "
                   f"train MAPE {fit.train_mape:.2%}")
    for phase, pe in fit.phases.items():  # held-out error per phase: steps with prefill, decode-only steps
        prov[f"fit_heldout_{phase}"] = pe.text()
    if power is not None:
        prov["power_fit"] = (f"idle {power.idle_w:.0f} W, max {power.max_w:.0f} W, MAPE {power.mape:.1%} "
                             f"over {power.samples} NVML samples")
    return StepTimeEntry(
        model=model, engine=engine, dtype=dtype, tp=tp, source="measured", step_time=fit.step_time,  # type: ignore[arg-type]
        fit_mape=round(fit.heldout_mape, 6), provenance=prov, notes=notes,
        idle_w=None if power is None else round(power.idle_w / tp, 1),  # per device: the sampler sums the TP group
        max_w=None if power is None else round(power.max_w / tp, 1),
    )


def _write_temporary(path: Path, write: Any) -> Path:
    """Write beside `path` under a hidden temporary name (renamed into place once every file is written)."""
    tmp = path.with_name(f".{path.name}.simfactory-file-{os.getpid()}-0-{secrets.token_hex(4)}")
    write(tmp)
    return tmp


def check_profile_target(target: Path, companions: list[Path], force: bool) -> None:
    """A profile simfactory did not write (no generator tag), or a raw-steps CSV beside no profile of ours, is
    replaced only with --force."""
    check_output_file(target, "--profiles-dir", force)
    ours = target.exists()
    for p in companions:
        check_output_file(p, "--profiles-dir", force=True)  # never a folder, a link or a special file
        if p.exists() and not ours and not force:
            raise InputError(str(p), "--profiles-dir", "exists beside no profile simfactory wrote; name another "
                                                       "--profiles-dir, or pass --force to replace it")


def write_profile(entry: StepTimeEntry, fit: FitResult, profiles_dir: Path, sku: str,
                  samples: pd.DataFrame | None = None, force: bool = False) -> Path:
    """Write <profiles_dir>/<sku>/<name>.yaml, <name>.steps.csv (and <name>.power.csv); returns the YAML path.
    Replaces earlier files only when simfactory wrote them (or with `force`)."""
    folder = profiles_dir / sku
    name = profile_name(entry.model, entry.engine, entry.dtype, entry.tp)
    # a serving fit's table is predicted vs measured per block and metric, not engine steps: named for it
    kinds = {"serving": "serving-fit", "batch": "batch-fit", "sweep": "sweep-fit"}
    kind = next((v for k, v in kinds.items() if k in fit.kind), "steps")
    serving = kind != "steps"
    table = f"{name}.{kind}.csv"
    target = folder / f"{name}.yaml"
    check_profile_target(target, [folder / table, folder / f"{name}.power.csv"], force)
    folder.mkdir(parents=True, exist_ok=True)
    doc = entry.model_dump(mode="json", exclude_none=True)
    header = (f"{SCHEMA_LINE}# generator: {GENERATOR}\n"
              f"# Measured by `simfactory calibrate` on {entry.provenance.get('gpu', sku)} "
              f"({entry.provenance.get('date', '')}); {'predicted vs measured per row' if serving else 'raw steps'}: {table}\n")
    tmps = [_write_temporary(target, lambda p: p.write_text(header + yaml.safe_dump(doc, sort_keys=False)))]
    load_model_file(StepTimeEntry, tmps[0])  # must load back exactly as the simulator will read it
    tmps.append(_write_temporary(folder / table, lambda p: fit.predictions.to_csv(p, index=False)))
    finals = [target, folder / table]
    if samples is not None and len(samples):
        tmps.append(_write_temporary(folder / f"{name}.power.csv", lambda p: samples.to_csv(p, index=False)))
        finals.append(folder / f"{name}.power.csv")
    for tmp, final in zip(tmps, finals):
        os.replace(tmp, final)
    return target
