"""JSON Schemas of the input files, generated from the pydantic models (never hand-maintained), so that
editors (VS Code's YAML extension, ...) complete and check fields as the user types."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from simfactory.config.growth import GrowthPlanFile
from simfactory.config.profile import EngineCatalog, HardwareProfile, ModelCatalog, StepTimeEntry
from simfactory.config.scenario import Scenario, Workload
from simfactory.config.prices import PriceBook
from simfactory.config.quality import QualityTable
from simfactory.paths import SCHEMAS_DIR

KINDS: dict[str, Any] = {
    "scenario": Scenario,
    "workload": TypeAdapter(Workload),
    "profile": HardwareProfile,
    "models": ModelCatalog,
    "engines": EngineCatalog,
    "price-book": PriceBook,
    "measured-profile": StepTimeEntry,
    "growth": GrowthPlanFile,
    "quality": QualityTable,
}
SCHEMA_DIR = SCHEMAS_DIR


def schema(kind: str) -> dict[str, Any]:
    model = KINDS[kind]
    out = model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out.setdefault("title", f"simfactory {kind}")
    return out


def write_all() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for kind in KINDS:
        (SCHEMA_DIR / f"{kind}.json").write_text(json.dumps(schema(kind), indent=1) + "\n")
