"""Typed distribution specs for token counts and times, and their vectorised samplers.

Every distribution is a pydantic model tagged by `kind`; `sample(rng, n)` returns floats.
Token counts are rounded with `sample_tokens`, which keeps every value in [1, MAX_TOKENS]. A field holding token
counts is typed `TokenCounts` (or `OptionalTokenCounts`, where 0 tokens is meaningful), and a fan-out `FanOut`:
their values must be whole, positive and bounded (see `check_counts`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, PositiveFloat, model_validator
from scipy.special import ndtr, ndtri

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_FAN_OUT, MAX_LOGNORMAL_SIGMA, MAX_TOKENS


class _Dist(StrictModel):
    def smallest(self) -> float:  # pragma: no cover - abstract
        """The smallest value a draw can take."""
        raise NotImplementedError

    def largest(self) -> float:  # pragma: no cover - abstract
        """The largest value a draw can take (inf when unbounded)."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def draw(self, rng: np.random.Generator) -> float:
        """One value: the same draw as sample(rng, 1)[0] (agents draw one at a time, per step)."""
        return float(self.sample(rng, 1)[0])

    def mean(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def ppf(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """The quantile function at probabilities u in [0, 1]: what a Gaussian copula reads its marginals through."""
        raise NotImplementedError


class Fixed(_Dist):
    kind: Literal["fixed"] = Field(default="fixed", description="selects a fixed value")
    value: float = Field(
        ge=0, allow_inf_nan=False, description="the value of every draw, in the unit of the field it fills (seconds, "
        "tokens, ...)")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=float)

    def draw(self, rng: np.random.Generator) -> float:
        return float(self.value)  # no draw from the stream, like sample()

    def mean(self) -> float:
        return self.value

    def smallest(self) -> float:
        return self.value

    def largest(self) -> float:
        return self.value

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.full(len(u), self.value, dtype=float)


class Uniform(_Dist):
    kind: Literal["uniform"] = Field(default="uniform", description="selects a uniform distribution")
    low: float = Field(ge=0, allow_inf_nan=False, description="smallest value, in the unit of the field it fills")
    high: float = Field(ge=0, allow_inf_nan=False, description="largest value, in the unit of the field it fills")

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n)

    def mean(self) -> float:
        return (self.low + self.high) / 2

    def smallest(self) -> float:
        return self.low

    def largest(self) -> float:
        return self.high

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * np.asarray(u, dtype=float)


class Exponential(_Dist):
    kind: Literal["exponential"] = Field(default="exponential", description="selects an exponential distribution")
    mean_value: PositiveFloat = Field(
        alias="mean", allow_inf_nan=False, description="mean, in the unit of the field it fills (draws are unbounded "
        "above)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_value, n)

    def mean(self) -> float:
        return self.mean_value

    def smallest(self) -> float:
        return 0.0

    def largest(self) -> float:
        return math.inf

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return -self.mean_value * np.log1p(-np.minimum(np.asarray(u, dtype=float), 1.0 - 1e-16))


class Geometric(_Dist):
    """Integer count on {1, 2, ...} with the given mean: the discrete exponential (memoryless per token)."""

    kind: Literal["geometric"] = Field(default="geometric", description="selects a geometric distribution")
    mean_value: float = Field(
        alias="mean", ge=1, allow_inf_nan=False, description="mean count (>= 1); draws are whole numbers 1, 2, ... "
        "(unbounded above)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.geometric(1.0 / self.mean_value, n).astype(float)

    def mean(self) -> float:
        return self.mean_value

    def smallest(self) -> float:
        return 1.0

    def largest(self) -> float:
        return math.inf

    def ppf(self, u: np.ndarray) -> np.ndarray:
        p = 1.0 / self.mean_value
        if p >= 1.0:
            return np.ones(len(u))
        q = np.minimum(np.asarray(u, dtype=float), 1.0 - 1e-16)
        return np.maximum(1.0, np.ceil(np.log1p(-q) / math.log1p(-p)))


class LogNormal(_Dist):
    """Lognormal given its median and shape sigma (of the underlying normal); optional clipping."""

    kind: Literal["lognormal"] = Field(default="lognormal", description="selects a lognormal distribution")
    median: PositiveFloat = Field(
        allow_inf_nan=False, description="median, in the unit of the field it fills (exp of the underlying normal's "
        "mean)")
    sigma: float = Field(ge=0, le=MAX_LOGNORMAL_SIGMA, allow_inf_nan=False,
                         description="shape; fits of token counts and latencies have 0.3-2")
    min: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                              description="smallest value; a draw below it is raised to it (or redrawn: truncate)")
    max: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                              description="largest value; a draw above it is lowered to it (or redrawn: truncate)")
    truncate: bool = Field(
        default=False, description="false: draws outside [min, max] are clamped to the bound (a pile of draws at "
        "the bound, the tail's mass); true: the distribution is truncated there (draws outside are never made, no "
        "pile-up). Fitted lengths should truncate: a real trace has no spike at its longest prompt")

    @model_validator(mode="after")
    def _ordered(self) -> "LogNormal":
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max:g}) must be >= min ({self.min:g})")
        if self.truncate and self.min is None and self.max is None:
            raise ValueError("truncate: give min and/or max (the bounds to truncate at)")
        return self

    def _cdf_bounds(self) -> tuple[float, float]:
        """The untruncated CDF at min and at max: a truncated draw is uniform between them, then mapped back."""
        mu = math.log(self.median)
        lo = 0.0 if not self.min else float(ndtr((math.log(self.min) - mu) / self.sigma)) if self.sigma > 0 else 0.0
        hi = 1.0 if self.max is None or self.sigma == 0 else float(ndtr((math.log(self.max) - mu) / self.sigma))
        return lo, hi

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantiles of the distribution as drawn: truncated, or clamped to [min, max]."""
        u = np.asarray(u, dtype=float)
        if self.truncate:
            lo, hi = self._cdf_bounds()
            u = lo + (hi - lo) * u
        with np.errstate(over="ignore"):
            x = self.median * np.exp(self.sigma * ndtri(np.clip(u, 1e-16, 1.0 - 1e-16)))
        if self.min is not None or self.max is not None:
            x = np.clip(x, self.min, self.max)
        return x

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.truncate:
            return self.ppf(rng.random(n))
        x = rng.lognormal(math.log(self.median), self.sigma, n)
        if self.min is not None or self.max is not None:
            x = np.clip(x, self.min, self.max)
        return x

    def draw(self, rng: np.random.Generator) -> float:
        if self.truncate:
            return float(self.sample(rng, 1)[0])
        x = float(rng.lognormal(math.log(self.median), self.sigma))  # the scalar draw: same stream, no arrays
        if self.min is not None:
            x = max(x, self.min)
        if self.max is not None:
            x = min(x, self.max)
        return x

    def mean(self) -> float:
        """The mean of the draws as made: truncated (the mass inside [min, max] renormalised) or clamped (the tails'
        mass piled on the bounds, which a cap such as an answer's max_tokens makes large)."""
        lo, hi = self._cdf_bounds()
        if self.sigma == 0 or (self.truncate and not hi - lo > 1e-12):  # every draw is the same value
            return float(self.ppf(np.array([0.5]))[0])
        mu = math.log(self.median)
        a = -math.inf if not self.min else (math.log(self.min) - mu) / self.sigma
        b = math.inf if self.max is None else (math.log(self.max) - mu) / self.sigma
        inside = self.median * math.exp(self.sigma**2 / 2) * float(ndtr(b - self.sigma) - ndtr(a - self.sigma))
        if self.truncate:
            return inside / (hi - lo)
        return (self.min or 0.0) * lo + inside + (self.max * (1.0 - hi) if self.max is not None else 0.0)

    def smallest(self) -> float:
        return self.min if self.min is not None else 0.0

    def largest(self) -> float:
        return self.max if self.max is not None else math.inf


@lru_cache(maxsize=256)
def lognormal_with_mean(mean: float, sigma: float, low: float, high: float) -> LogNormal:
    """A lognormal of shape `sigma` truncated to [low, high] whose mean is `mean` (its median found by bisection):
    lengths spread around a benchmark's stated mean, e.g. a dataset's prompts where only their mean is known. The
    median may lie below `low` (a mean near the lower bound: 2 tokens in [1, 16]); a mean closer to `low` than a
    median of low x e^(-4 sigma) reaches is refused, not missed silently. Cached: a sweep fit asks for the same
    rows' spreads at every evaluation."""
    if not (sigma > 0 and 0 < low < mean < high):
        raise ValueError(f"lognormal_with_mean needs sigma > 0 and low < mean < high, got {sigma}, {low}, {mean}, {high}")
    lo, hi = low * math.exp(-4.0 * sigma), high
    for _ in range(200):
        median = math.sqrt(lo * hi)  # the mean grows with the median: bisect it geometrically
        d = LogNormal(median=median, sigma=sigma, min=low, max=high, truncate=True)
        m = d.mean()
        if abs(m - mean) <= 1e-9 * mean:
            return d
        lo, hi = (median, hi) if m < mean else (lo, median)
    raise ValueError(f"lognormal_with_mean: no median gives a mean of {mean} in [{low}, {high}] at sigma {sigma} "
                     f"(the closest: {m:.6g})")


class Empirical(_Dist):
    """Draw from listed values with optional weights (e.g. a histogram taken from a trace)."""

    kind: Literal["empirical"] = Field(default="empirical", description="selects draws from listed values")
    values: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        min_length=1, description="the values draws take, in the unit of the field it fills")
    weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        default=None, description="relative weight of each value, one per value (only ratios matter); unset: equal "
        "weights")

    @model_validator(mode="after")
    def _weights_match(self) -> "Empirical":
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            total = sum(self.weights)
            if not total > 0:
                raise ValueError("weights must sum to a positive value")
            if not math.isfinite(total):
                raise ValueError(f"weights sum to {total:g}; scale them down (only their ratios matter)")
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

    def smallest(self) -> float:
        return min(v for v, p in zip(self.values, self.weights or [1.0] * len(self.values)) if p > 0)

    def largest(self) -> float:
        return max(v for v, p in zip(self.values, self.weights or [1.0] * len(self.values)) if p > 0)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """The listed value whose cumulative weight (values sorted) first reaches u: a step quantile function."""
        v = np.asarray(self.values, dtype=float)
        p = self._p()
        p = np.full(len(v), 1.0 / len(v)) if p is None else p
        order = np.argsort(v, kind="stable")
        cum = np.cumsum(p[order])
        k = np.minimum(np.searchsorted(cum, np.asarray(u, dtype=float), side="left"), len(v) - 1)
        return v[order][k]


class Quantiles(_Dist):
    """A measured distribution as its quantile function: `values[i]` is the quantile at probability i / (n - 1)
    (first: the smallest value, last: the largest), linear in between. Keeps a trace's median and tail as they
    are, with no parametric shape and no pile-up at the ends (what `trace fit` writes)."""

    kind: Literal["quantiles"] = Field(
        default="quantiles", description="selects a measured quantile function (what trace fit writes)")
    values: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        min_length=2, description="quantiles at evenly spaced probabilities 0, 1/(n-1), ..., 1; non-decreasing")

    @model_validator(mode="after")
    def _sorted(self) -> "Quantiles":
        bad = next((i for i in range(1, len(self.values)) if self.values[i] < self.values[i - 1]), None)
        if bad is not None:
            raise ValueError(f"values must not decrease (values[{bad}] = {self.values[bad]:g} < values[{bad - 1}] = "
                             f"{self.values[bad - 1]:g})")
        return self

    def ppf(self, u: np.ndarray) -> np.ndarray:
        v = np.asarray(self.values, dtype=float)
        return np.interp(np.asarray(u, dtype=float), np.linspace(0.0, 1.0, len(v)), v)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.ppf(rng.random(n))

    def mean(self) -> float:
        v = np.asarray(self.values, dtype=float)
        return float(((v[1:] + v[:-1]) / 2).mean())

    def smallest(self) -> float:
        return self.values[0]

    def largest(self) -> float:
        return self.values[-1]


Distribution = Annotated[
    Union[Fixed, Uniform, Exponential, Geometric, LogNormal, Empirical, Quantiles],
    Field(discriminator="kind"),
]


# the field that states a distribution's smallest / largest value, where one does
_LOW_FIELD = {"Fixed": "value", "Empirical": "values", "Uniform": "low", "LogNormal": "min", "Quantiles": "values"}
_HIGH_FIELD = {"Fixed": "value", "Empirical": "values", "Uniform": "high", "LogNormal": "max", "Quantiles": "values"}
_MEAN_FIELD = {"Exponential": "mean", "Geometric": "mean", "LogNormal": "median"}


def check_counts(dist: _Dist, what: str, minimum: int, maximum: int, bounded: bool = False) -> None:
    """Refuse (ValueError "field: reason") a distribution of counts whose values cannot be counts in
    [minimum, maximum]: listed values (fixed, empirical) must be whole; a stated end (a value, a range's ends, a
    lognormal's min / max) must lie inside; an unbounded distribution's mean must not pass `maximum` (its rare
    larger draws are clipped by sample_tokens). `bounded`: the largest draw must be finite (no exponential,
    geometric or lognormal without max)."""
    kind = type(dist).__name__
    listed = [dist.value] if isinstance(dist, Fixed) else list(dist.values) if isinstance(dist, Empirical) else []
    # quantiles are interpolated, so only their ends must be counts (a draw is rounded like any continuous one)
    bad = next((v for v in listed if not float(v).is_integer()), None)
    if bad is not None:
        raise ValueError(f"{_LOW_FIELD[kind]}: {what} must be whole numbers (got {bad:g})")
    stated_low = kind in _LOW_FIELD and not (isinstance(dist, LogNormal) and dist.min is None)
    if stated_low and dist.smallest() < minimum:
        raise ValueError(f"{_LOW_FIELD[kind]}: {what} must be at least {minimum} (got {dist.smallest():g}); "
                         f"a draw below {minimum} would be read as {max(minimum, 1)} silently")
    highest = dist.largest()
    if math.isfinite(highest):
        if highest > maximum:
            raise ValueError(f"{_HIGH_FIELD[kind]}: {what} must be at most {maximum:,} (got {highest:g})")
        return
    if bounded:
        raise ValueError(f"kind: {what} need a bounded distribution (fixed, uniform, empirical, or lognormal with "
                         f"max), at most {maximum:,}")
    if not dist.mean() <= maximum:
        raise ValueError(f"{_MEAN_FIELD[kind]}: {what} average {dist.mean():.3g}, more than {maximum:,}")


def _tokens(dist: _Dist) -> _Dist:
    check_counts(dist, "token counts", 1, MAX_TOKENS)
    return dist


def _tokens_or_none(dist: _Dist) -> _Dist:
    check_counts(dist, "token counts", 0, MAX_TOKENS)
    return dist


def _fan_out(dist: _Dist) -> _Dist:
    check_counts(dist, "fan-out counts", 1, MAX_FAN_OUT, bounded=True)
    return dist


# Token counts of a prompt or an answer: whole, >= 1, at most MAX_TOKENS (mean and largest value).
TokenCounts = Annotated[Distribution, AfterValidator(_tokens)]
# Tokens a step adds to the context (tool results, retrieved passages): 0 is meaningful.
OptionalTokenCounts = Annotated[Distribution, AfterValidator(_tokens_or_none)]
# Parallel copies of a step: whole, >= 1, at most MAX_FAN_OUT, from a bounded distribution.
FanOut = Annotated[Distribution, AfterValidator(_fan_out)]


def sample_tokens(dist: _Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    """Sample integer token counts in [1, MAX_TOKENS] from a distribution. The upper clip only touches the far
    tail of an unbounded distribution (its mean is at most MAX_TOKENS), past any model's context: such a request
    is rejected as too long either way, and the clip keeps the int64 cast exact."""
    return np.clip(np.rint(dist.sample(rng, n)), 1, MAX_TOKENS).astype(np.int64)


def correlated_uniforms(rho_spearman: float, rng_a: np.random.Generator, rng_b: np.random.Generator,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two uniforms per draw from a Gaussian copula with the given Spearman rank correlation (the normal's
    correlation is 2 sin(pi rho / 6), the exact relation for a bivariate normal). Each stream gives one normal."""
    r = 2.0 * math.sin(math.pi * rho_spearman / 6.0)
    z_a = rng_a.standard_normal(n)
    z_b = r * z_a + math.sqrt(max(0.0, 1.0 - r * r)) * rng_b.standard_normal(n)
    return ndtr(z_a), ndtr(z_b)


def sample_joint_tokens(input_dist: _Dist, output_dist: _Dist, rho_spearman: float, rng_in: np.random.Generator,
                        rng_out: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Input and output token counts drawn together, rank-correlated through a Gaussian copula over the two
    marginals (each keeps its own distribution exactly; only their pairing changes)."""
    u_in, u_out = correlated_uniforms(rho_spearman, rng_in, rng_out, n)
    to_tokens = lambda x: np.clip(np.rint(x), 1, MAX_TOKENS).astype(np.int64)  # noqa: E731
    return to_tokens(input_dist.ppf(u_in)), to_tokens(output_dist.ppf(u_out))
