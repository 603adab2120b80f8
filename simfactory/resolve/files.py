"""Finding and reading the files a scenario refers to: the scenario itself, hardware profiles, the model and
engine catalogues. A user's own folder beside the scenario wins over the shipped one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simfactory.config.loader import load_model_file, read_yaml, validate
from simfactory.config.profile import EngineCatalog, EnginePreset, HardwareProfile, ModelArch, ModelCatalog, StepTimeEntry
from simfactory.config.scenario import Scenario
from simfactory.errors import InputError
from simfactory.inputs import is_input_file, is_lookup_dir
from simfactory.paths import PROFILES_DIR, WORKLOADS_DIR

NON_PROFILE_FILES = ("models", "prices", "engines")


@dataclass(frozen=True)
class Lookup:
    """Where one scenario's references are looked up, and the catalogues read from there: every stage needs them."""

    path: Path | None  # the scenario file; None for a scenario built in memory
    fname: str  # how error messages and warnings name the scenario
    profile_dirs: list[Path]
    workload_dirs: list[Path]
    models: dict[str, ModelArch]
    engines: dict[str, EnginePreset]


def lookup(scenario: Scenario, file: str | Path | None) -> Lookup:
    """The search folders and catalogues for `scenario` read from `file` (None: built in memory)."""
    path = Path(file) if file is not None else None
    fname = str(file) if file is not None else f"<scenario {scenario.name}>"
    profile_dirs = search_dirs(path, "hardware_profiles", PROFILES_DIR)
    workload_dirs = search_dirs(path, "workloads", WORKLOADS_DIR)
    models = load_models(profile_dirs)
    engines = load_engines(profile_dirs)
    return Lookup(path, fname, profile_dirs, workload_dirs, models, engines)


def search_dirs(scenario_file: Path | None, name: str, builtin: Path) -> list[Path]:
    """A user's own folder beside (or above) the scenario wins over the shipped one."""
    dirs: list[Path] = []
    if scenario_file is not None:
        here = scenario_file.resolve().parent
        dirs += [here / name, here.parent / name]
    dirs.append(builtin)
    unique: list[Path] = []
    for d in dirs:
        # something there that is not a folder (a file, a FIFO, a symlink loop) is refused, never skipped
        if is_lookup_dir(d, name) and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_file(dirs: list[Path], stem: str) -> Path | None:
    """The first `stem`.yaml / .yml in `dirs`. Anything found under that name (a folder, a FIFO, a symlink loop)
    is returned, for the loader to refuse in one line: a user's broken file never silently loses to a shipped
    one. None when nothing is there."""
    for d in dirs:
        for ext in (".yaml", ".yml"):
            p = d / f"{stem}{ext}"
            if is_input_file(p):
                return p
    return None


def available(dirs: list[Path], exclude: tuple[str, ...] = ()) -> list[str]:
    names = {p.stem for d in dirs for p in d.glob("*.y*ml") if p.stem not in exclude}
    return sorted(names)


def load_profile(dirs: list[Path], sku: str, file: str, field: str) -> HardwareProfile:
    path = find_file(dirs, sku)
    if path is None:
        choices = ", ".join(available(dirs, exclude=NON_PROFILE_FILES))
        raise InputError(file, field, f"no hardware profile {sku!r} (available: {choices})")
    profile = load_model_file(HardwareProfile, path)
    if profile.sku != sku:
        raise InputError(str(path), "sku", f"is {profile.sku!r} but the file is named {path.stem!r}")
    return profile


def load_engines(dirs: list[Path]) -> dict[str, EnginePreset]:
    engines: dict[str, EnginePreset] = {}
    for d in reversed(dirs):  # a user's presets override shipped ones with the same name
        path = d / "engines.yaml"
        if is_input_file(path):  # a broken one is refused by the loader, not skipped
            for e in load_model_file(EngineCatalog, path).engines:
                engines[e.name] = e
    return engines


def load_models(dirs: list[Path]) -> dict[str, ModelArch]:
    models: dict[str, ModelArch] = {}
    for d in reversed(dirs):  # user's catalogue overrides shipped entries with the same id
        path = d / "models.yaml"
        if is_input_file(path):  # a broken one is refused by the loader, not skipped
            for m in load_model_file(ModelCatalog, path).models:
                models[m.id] = m
    return models


def calibrated_entries(dirs: list[Path], sku: str) -> list[tuple[StepTimeEntry, str]]:
    """Per-combination profiles written by calibration: hardware_profiles/<sku>/*.yaml."""
    out = []
    for d in dirs:
        sub = d / sku
        if sub.is_dir():
            for p in sorted(sub.glob("*.yaml")):
                out.append((load_model_file(StepTimeEntry, p), str(p)))
    return out


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (references are checked by `resolve`).

    Example:
        >>> sc = simfactory.load_scenario("scenarios/default.yaml")
        >>> simfactory.run(sc.model_copy(update={"seed": 3}))
    """
    p = Path(path)
    return validate(Scenario, read_yaml(p), str(p))
