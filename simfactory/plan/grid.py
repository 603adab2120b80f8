"""The sweep specification (grid.yaml): which fields vary, over what values, and how points are drawn."""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Discriminator, Field, Tag, model_validator
from scipy.stats import qmc

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_SWEEP_RUNS


class _Strict(StrictModel):
    pass


class Range(_Strict):
    """A continuous range for Latin-hypercube sampling; `integer: true` rounds the draws."""

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    integer: bool = False
    log: bool = Field(default=False, description="sample uniformly in log space")

    @model_validator(mode="after")
    def _order(self) -> "Range":
        if self.high < self.low:
            raise ValueError("high must be >= low")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        if self.integer and math.ceil(self.low) > math.floor(self.high):
            raise ValueError(f"no integer lies in [{self.low:g}, {self.high:g}]")
        return self


Values = Annotated[list[Any], Field(min_length=1)]


def _value_kind(v: Any) -> str | None:
    """A parameter is a list of values (grid, or categories in lhs) or a {low, high} range (lhs)."""
    if isinstance(v, (list, tuple)):
        return "values"
    if isinstance(v, (dict, Range)):
        return "range"
    return None


Parameter = Annotated[
    Union[Annotated[Values, Tag("values")], Annotated[Range, Tag("range")]],
    Discriminator(_value_kind, custom_error_type="parameter_kind",
                  custom_error_message="expected a list of values (grid) or a {low, high} range (lhs)"),
]


class SweepSpec(_Strict):
    """`mode: grid` takes the Cartesian product of value lists; `mode: lhs` draws `samples` points of a Latin
    hypercube over ranges (value lists are sampled as categories)."""

    mode: Literal["grid", "lhs"] = "grid"
    samples: Annotated[int, Field(ge=1, le=MAX_SWEEP_RUNS)] = 10
    replications: Annotated[int, Field(ge=1, le=1000)] = 1
    seed: int | None = Field(default=None, ge=0, description="base seed (default: the scenario's)")
    parameters: dict[str, Parameter] = Field(min_length=1, description="dotted scenario path -> values or range")

    @model_validator(mode="after")
    def _ranges_need_lhs(self) -> "SweepSpec":
        if self.mode == "grid":
            bad = [k for k, v in self.parameters.items() if isinstance(v, Range)]
            if bad:
                raise ValueError(f"parameters.{bad[0]}: a range needs mode lhs (grid takes value lists)")
        runs = self.points_count() * self.replications
        if runs > MAX_SWEEP_RUNS:
            what = ("the grid's " + " x ".join(str(len(v)) for v in self.parameters.values()) + " points"  # type: ignore[arg-type]
                    if self.mode == "grid" else f"{self.samples:,} samples")
            raise ValueError(f"parameters: {what} x {self.replications} replications = {runs:,} runs, more than "
                             f"the {MAX_SWEEP_RUNS:,} one sweep may ask for (each is a full simulation)")
        return self

    def points_count(self) -> int:
        """How many points `points` yields: the Cartesian product's size (grid) or `samples` (lhs)."""
        if self.mode == "lhs":
            return self.samples
        return math.prod(len(v) for v in self.parameters.values())  # type: ignore[arg-type]


def points(spec: SweepSpec, seed: int) -> list[dict[str, Any]]:
    """The sweep's points in a fixed order (so point indices, and seeds, are stable across runs)."""
    names = list(spec.parameters)
    if spec.mode == "grid":
        lists = [spec.parameters[n] for n in names]
        return [dict(zip(names, combo)) for combo in itertools.product(*lists)]  # type: ignore[arg-type]
    u = qmc.LatinHypercube(d=len(names), seed=np.random.default_rng(seed)).random(spec.samples)
    out = []
    for row in u:
        p: dict[str, Any] = {}
        for n, x in zip(names, row):
            v = spec.parameters[n]
            if isinstance(v, Range):
                if v.integer and not v.log:  # equal strata per integer in range, ends included
                    lo, hi = math.ceil(v.low), math.floor(v.high)
                    p[n] = int(min(math.floor(lo + x * (hi - lo + 1)), hi))
                    continue
                val = np.exp(np.log(v.low) + x * (np.log(v.high) - np.log(v.low))) if v.log else v.low + x * (v.high - v.low)
                p[n] = int(round(val)) if v.integer else float(val)
            else:
                p[n] = v[min(int(x * len(v)), len(v) - 1)]
        out.append(p)
    return out
