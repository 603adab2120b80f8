"""Tolerance rules: glob patterns over metric paths, relative and/or absolute, direction-aware.

File format (YAML):

    default: 1e-9%          # used when no pattern matches (here: a relative 1e-11)
    rules:
      "latency_s.*.p99": 5%                 # relative
      "cost.usd_per_hour": 0.01             # absolute
      "throughput.*": {rel: 2%, direction: decrease}
      "cost.*": {rel: 1%, direction: both}  # also flag cost *decreases*

The first matching pattern wins (file order). Direction: `increase` flags only rises, `decrease` only
falls, `both` either; by default it is inferred from the metric's name (latency, cost, rejections: higher
is worse; throughput, goodput, attainment, completions: lower is worse; anything else: both).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from simfactory.config.loader import read_yaml, validate

Direction = Literal["increase", "decrease", "both", "none"]  # none: a move is reported as changed, never a regression

HIGHER_IS_WORSE = ("latency", "ttft", "tpot", "e2e", "queue", "cost", "usd", "rejected", "shed", "aborted",
                   "unfinished", "preemptions", "failed", "timed_out", "budget_stopped", "escalation", "network_s")
LOWER_IS_WORSE = ("throughput", "goodput", "attainment", "completed", "hit_ratio", "saved", "success")


def _percent_or_number(v: Any) -> Any:
    if isinstance(v, str):
        text = v.strip()
        if text.endswith("%"):
            try:
                return {"rel": float(text[:-1]) / 100.0}
            except ValueError:
                raise ValueError(f"not a percentage: {v!r}") from None
        try:
            return {"abs": float(text)}
        except ValueError:
            raise ValueError(f"expected a percentage like '5%' or a number, got {v!r}") from None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return {"abs": float(v)}
    if isinstance(v, dict):
        out = dict(v)
        if isinstance(out.get("rel"), str):
            text = out["rel"].strip()
            if not text.endswith("%"):
                raise ValueError(f"rel must be a percentage like '5%', got {text!r}")
            out["rel"] = float(text[:-1]) / 100.0
        return out
    return v


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rel: float | None = Field(default=None, ge=0)
    abs: float | None = Field(default=None, ge=0)
    direction: Direction | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> "Tolerance":
        if self.rel is None and self.abs is None:
            raise ValueError("give rel (e.g. '5%') and/or abs")
        return self

    def allowed(self, baseline: float) -> float:
        """The largest change that is not a regression: the larger of the absolute and relative bounds."""
        return max(self.abs or 0.0, (self.rel or 0.0) * abs(baseline))


ToleranceSpec = Annotated[Tolerance, BeforeValidator(_percent_or_number)]


class ToleranceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default: ToleranceSpec = Field(default_factory=lambda: Tolerance(rel=1e-9, abs=1e-12))
    rules: dict[str, ToleranceSpec] = Field(default_factory=dict)
    unnamed_direction: Literal["both", "none"] = Field(
        default="both", description="metrics whose name says no worse direction (utilization, steps, load): both "
        "(a move either way past the tolerance is a regression) or none (reported as changed, never failing)")

    def rule_for(self, metric: str) -> tuple[str, Tolerance]:
        for pattern, tol in self.rules.items():
            if fnmatch.fnmatchcase(metric, pattern):
                return pattern, tol
        return "default", self.default


MORE_IS_BETTER_QUANTITIES = ("tokens", "requests", "tasks")  # X in "X_per_usd", "X_per_joule", ...


def default_direction(metric: str) -> Direction:
    """Which way is worse, from the name. A rate `X_per_Y` is judged by its quantity X (usd_per_successful_task:
    a cost, higher is worse; tokens_per_usd: higher is better); a latency block's `count` (requests measured)
    falling is worse; then any of the words above anywhere in the path."""
    name = metric.lower()
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "count":
        return "decrease"
    quantity = None
    if "_per_" in leaf:
        quantity = leaf.split("_per_", 1)[0]
    elif leaf.startswith("per_") and "." in name:  # cost_usd.per_successful_task: the parent names the quantity
        quantity = name.rsplit(".", 2)[-2]
    if quantity is not None:
        if any(w in quantity for w in HIGHER_IS_WORSE):
            return "increase"
        if any(w in quantity for w in LOWER_IS_WORSE + MORE_IS_BETTER_QUANTITIES):
            return "decrease"
    if any(w in name for w in LOWER_IS_WORSE):
        return "decrease"
    if any(w in name for w in HIGHER_IS_WORSE):
        return "increase"
    return "both"


# With no tolerance file: a move of up to 3% in a metric's worse direction passes (its name tells which way is
# worse, see default_direction; a metric whose name tells none, such as utilization, is reported as changed and
# never fails), and a latency within 2 ms of its baseline (queue waits of a few ms move by whole
# percents when a step time changes by 0.1%: the phase of arrivals against steps shifts). Simulated runs are
# deterministic for a seed, so a user's CI gate sees real changes only; these bounds keep last-digit moves and small
# model refinements from failing it. `exact=True` (regress --exact) keeps only floating-point noise, as the
# project's own baselines do.
USER_DEFAULT = ToleranceFile(default=Tolerance(rel=0.03, abs=1e-12),
                             rules={"*latency_s.*": Tolerance(rel=0.03, abs=0.002),
                                    # a price per busy hour rises when the same work needs fewer busy hours
                                    "*per_busy_accel_hour": Tolerance(rel=0.03, direction="none")},
                             unnamed_direction="none")


def load_tolerances(path: Path | None, exact: bool = False) -> ToleranceFile:
    """The rules in `path`; without one, USER_DEFAULT (3%, direction-aware), or exactness when asked for."""
    if path is None:
        return ToleranceFile() if exact else USER_DEFAULT
    return validate(ToleranceFile, read_yaml(path), str(path))
