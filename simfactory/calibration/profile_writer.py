"""Publish a fit as a measured hardware profile: hardware_profiles/<sku>/<model>-<engine>-<dtype>-tp<N>.yaml
(a `StepTimeEntry` with `source: measured`, its held-out error and provenance), with the raw measurements
next to it as CSV. Files are written to temporaries and renamed, so an interrupted run leaves nothing
half-written; the YAML is validated by loading it back before it replaces anything. The YAML is stamped (stamp_text)
and names the sha256 of each CSV beside it (`# companion NAME sha256:HEX`), so a later fit replaces a CSV only when
it is still the one that profile wrote.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from simfactory.calibration.fit import FitResult, PowerFit
from simfactory.config.loader import load_model_file
from simfactory.config.profile import StepTimeEntry
from simfactory.errors import InputError
from simfactory.outputs import check_output_file, draft_folder, stamp_text, written_by_simfactory
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_COMPANION = re.compile(r"^# companion ([^\s/]+) sha256:([0-9a-f]{64})$", re.MULTILINE)


def _companions(target: Path) -> dict[str, set[str]]:
    """The CSVs (name -> sha256s) the profile `target` names beside it, when simfactory can prove it wrote that
    profile as it is; none otherwise. While a fit replaces them a name may carry its old and its new sha256."""
    if not written_by_simfactory(target):
        return {}
    named: dict[str, set[str]] = {}
    try:
        for m in _COMPANION.finditer(target.read_text(encoding="utf-8")):
            named.setdefault(m.group(1), set()).add(m.group(2))
    except (OSError, UnicodeDecodeError):
        return {}
    return named


def _companion_proven(target: Path, companion: Path, named: dict[str, set[str]] | None = None) -> bool:
    """Whether `companion` is, byte for byte, a CSV the profile `target` (proven ours) names beside it."""
    digests = (_companions(target) if named is None else named).get(companion.name, set())
    try:
        return bool(digests) and companion.is_file() and not companion.is_symlink() and _sha256(companion) in digests
    except OSError:
        return False


def check_profile_target(target: Path, companions: list[Path], force: bool) -> None:
    """A profile simfactory cannot prove it wrote (no stamp, or edited since), or a CSV beside it that is not the
    one that profile names (by its sha256), is replaced only with --force."""
    check_output_file(target, "--profiles-dir", force)
    for p in companions:
        check_output_file(p, "--profiles-dir", force=True)  # never a folder, a link or a special file
        if p.exists() and not force and not _companion_proven(target, p):
            raise InputError(str(p), "--profiles-dir", "exists and is not the file the profile beside it names (a "
                                                       "profile simfactory wrote lists its CSVs' sha256): name another "
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
    earlier = _companions(target)  # CSVs the profile replaced names: those this fit does not write go with it
    with draft_folder(target, "--profiles-dir") as drafts:
        tables = {table: fit.predictions}
        if samples is not None and len(samples):
            tables[f"{name}.power.csv"] = samples
        for file, frame in tables.items():
            frame.to_csv(drafts / file, index=False)
        new = [(file, _sha256(drafts / file)) for file in tables]
        header = (f"{SCHEMA_LINE}# Measured by `simfactory calibrate` on {entry.provenance.get('gpu', sku)} "
                  f"({entry.provenance.get('date', '')}); {'predicted vs measured per row' if serving else 'raw steps'}: "
                  f"{table}\n")
        # first a profile naming the old CSVs and the new ones, so a kill at any point below leaves every CSV beside
        # it named (a later fit then replaces them); once they are in place, one naming the new ones alone
        both = new + sorted((f, h) for f, hs in earlier.items() for h in hs if (f, h) not in new)

        def put_profile(named: list[tuple[str, str]]) -> None:
            companions = "".join(f"# companion {file} sha256:{digest}\n" for file, digest in named)
            (drafts / target.name).write_text(stamp_text(header + companions + yaml.safe_dump(doc, sort_keys=False),
                                                         at_line=1), encoding="utf-8")
            load_model_file(StepTimeEntry, drafts / target.name)  # loads back exactly as the simulator will read it
            os.replace(drafts / target.name, target)

        put_profile(both)
        for file in tables:
            os.replace(drafts / file, folder / file)
        for f in earlier:  # no profile will name them any more (they would refuse the next fit)
            if f not in tables and _companion_proven(target, folder / f, earlier):
                (folder / f).unlink(missing_ok=True)
        if both != new:
            put_profile(new)
    return target
