"""Where shipped data lives: scenarios/, workloads/, hardware_profiles/, schemas/, calibrate/ (fidelity suites,
model configs) and quality/ (benchmark scores per model and dtype). In a checkout, the folders at the repository's
top level; in an installed wheel, the same folders as package data under simfactory/data (the repository's
simfactory/data holds links to the top-level folders, and the wheel carries their files), found through
importlib.resources from any working directory. SIMFACTORY_HOME points at another tree laid out the same way."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = Path(str(files("simfactory"))) / "data"


def _data_root() -> Path:
    if os.environ.get("SIMFACTORY_HOME"):
        return Path(os.environ["SIMFACTORY_HOME"])
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "scenarios").is_dir():
        return _CHECKOUT  # a checkout (editable install): paths read as the repository's
    return PACKAGE_DATA


PROJECT_ROOT = _data_root()
SCENARIOS_DIR = PROJECT_ROOT / "scenarios"
WORKLOADS_DIR = PROJECT_ROOT / "workloads"
PROFILES_DIR = PROJECT_ROOT / "hardware_profiles"
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
CALIBRATE_DIR = PROJECT_ROOT / "calibrate"
QUALITY_DIR = PROJECT_ROOT / "quality"
DEFAULT_SCENARIO = SCENARIOS_DIR / "default.yaml"

SHIPPED_FOLDERS = ("scenarios", "workloads", "hardware_profiles", "schemas", "calibrate", "quality")


def shipped_fallback(path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """A relative path into a shipped folder ("scenarios/cache-on.yaml", "calibrate/fidelity/x.yaml") that does
    not exist here, read from the shipped data instead: the README's commands work from an installed wheel in any
    directory. Any other path, and one that exists, is returned as given."""
    p = Path(path)
    if p.is_absolute() or not p.parts or p.parts[0] not in SHIPPED_FOLDERS or p.exists():
        return path
    shipped = PROJECT_ROOT / p
    return shipped if shipped.is_file() else path
