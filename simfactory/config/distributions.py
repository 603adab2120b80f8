"""Typed distribution specs for token counts and times, and their vectorised samplers.

Every distribution is a pydantic model tagged by `kind`; `sample(rng, n)` returns floats.
Token counts are rounded with `sample_tokens`, which keeps every value >= 1.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def draw(self, rng: np.random.Generator) -> float:
        """One value: the same draw as sample(rng, 1)[0] (agents draw one at a time, per step)."""
        return float(self.sample(rng, 1)[0])

    def mean(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class Fixed(_Dist):
    kind: Literal["fixed"] = "fixed"
    value: float = Field(ge=0, allow_inf_nan=False)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=float)

    def draw(self, rng: np.random.Generator) -> float:
        return float(self.value)  # no draw from the stream, like sample()

    def mean(self) -> float:
        return self.value


class Uniform(_Dist):
    kind: Literal["uniform"] = "uniform"
    low: float = Field(ge=0, allow_inf_nan=False)
    high: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)

    def mean(self) -> float:
        return (self.low + self.high) / 2


class Exponential(_Dist):
    kind: Literal["exponential"] = "exponential"
    mean_value: PositiveFloat = Field(alias="mean", allow_inf_nan=False)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_value, n)

    def mean(self) -> float:
        return self.mean_value


class Geometric(_Dist):
    """Integer count on {1, 2, ...} with the given mean: the discrete exponential (memoryless per token)."""

    kind: Literal["geometric"] = "geometric"
    mean_value: float = Field(alias="mean", ge=1, allow_inf_nan=False)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.geometric(1.0 / self.mean_value, n).astype(float)

    def mean(self) -> float:
        return self.mean_value


class LogNormal(_Dist):
    """Lognormal given its median and shape sigma (of the underlying normal); optional clipping."""

    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat = Field(allow_inf_nan=False)
    sigma: float = Field(ge=0, allow_inf_nan=False)
    min: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> "LogNormal":
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max:g}) must be >= min ({self.min:g})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.lognormal(math.log(self.median), self.sigma, n)
        if self.min is not None or self.max is not None:
            x = np.clip(x, self.min, self.max)
        return x

    def draw(self, rng: np.random.Generator) -> float:
        x = float(rng.lognormal(math.log(self.median), self.sigma))  # the scalar draw: same stream, no arrays
        if self.min is not None:
            x = max(x, self.min)
        if self.max is not None:
            x = min(x, self.max)
        return x

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class Empirical(_Dist):
    """Draw from listed values with optional weights (e.g. a histogram taken from a trace)."""

    kind: Literal["empirical"] = "empirical"
    values: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> "Empirical":
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            if sum(self.weights) <= 0:
                raise ValueError("weights must sum to a positive value")
        return self

    def _p(self) -> np.ndarray | None:
        if self.weights is None:
            return None
        w = np.asarray(self.weights, dtype=float)
        return w / w.sum()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(np.asarray(self.values, dtype=float), size=n, p=self._p())

    def mean(self) -> float:
        p = self._p()
        v = np.asarray(self.values, dtype=float)
        return float(v.mean() if p is None else (v * p).sum())


Distribution = Annotated[
    Union[Fixed, Uniform, Exponential, Geometric, LogNormal, Empirical],
    Field(discriminator="kind"),
]


def sample_tokens(dist: _Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    """Sample integer token counts (>= 1) from a distribution."""
    return np.maximum(np.rint(dist.sample(rng, n)), 1).astype(np.int64)
