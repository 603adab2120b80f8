"""Where shipped data lives: scenarios/, workloads/ and hardware_profiles/ beside the package."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("SIMFACTORY_HOME", Path(__file__).resolve().parents[1]))
SCENARIOS_DIR = PROJECT_ROOT / "scenarios"
WORKLOADS_DIR = PROJECT_ROOT / "workloads"
PROFILES_DIR = PROJECT_ROOT / "hardware_profiles"
DEFAULT_SCENARIO = SCENARIOS_DIR / "default.yaml"
