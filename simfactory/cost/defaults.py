"""Shipped on-prem cost assumptions (hardware_profiles/cost_defaults.yaml), each with source and date."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from simfactory.config.loader import load_model_file
from simfactory.config.profile import AsOf
from simfactory.errors import InputError


class SourcedNumber(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float = Field(ge=0, allow_inf_nan=False)
    unit: str
    source: str = Field(min_length=1)
    as_of: AsOf
    confidence: str = "medium"


class CostDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    amortization_years: SourcedNumber
    usd_per_kwh: SourcedNumber
    pue: SourcedNumber
    hosting_usd_per_kw_month: SourcedNumber


def load_cost_defaults(dirs: list[Path]) -> CostDefaults:
    for d in dirs:
        p = d / "cost_defaults.yaml"
        if p.is_file():
            return load_model_file(CostDefaults, p)
    raise InputError("hardware_profiles/cost_defaults.yaml", "", "file not found in " + ", ".join(map(str, dirs)))
