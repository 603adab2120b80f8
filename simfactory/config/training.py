"""Training and fine-tune jobs sharing the pools with inference: the work, the failures, the checkpoints."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_ACCELERATORS


class _Strict(StrictModel):
    pass


class TrainingJob(_Strict):
    """A job needing `work_hours` of failure-free compute on `accelerators` (or total_tokens / tokens_per_s).

    Nodes fail independently (exponential, `node_mtbf_h` each); a failure loses the work since the last
    checkpoint and costs `restart_s`. Writing a checkpoint stops work for `checkpoint_cost_s`.
    `checkpoint_interval_h: optimal` uses Young's interval sqrt(2 x checkpoint cost x job MTBF).
    `priority: dedicated` takes accelerators of the pool the deployments leave free; `idle` runs on the
    inference replicas' idle time, at lower priority, progressing at the pool's measured idle fraction."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)] = Field(
        description="job name, shown in reports (letters, digits, . _ -)")
    pool: str = Field(description="the pool (pools[].name) the job trains on")
    accelerators: PositiveInt = Field(
        le=MAX_ACCELERATORS, description="accelerators the job trains on; dedicated: taken from the pool beside the "
        "deployments; idle: at most those serving")
    accelerators_per_node: PositiveInt = Field(
        default=8, le=MAX_ACCELERATORS, description="accelerators per node; nodes (accelerators / this, rounded up) "
        "fail independently")
    work_hours: PositiveFloat | None = Field(default=None, description="failure-free compute time")
    total_tokens: PositiveFloat | None = Field(
        default=None, description="tokens to train on; with tokens_per_s instead of work_hours (work = total_tokens / "
        "tokens_per_s)")
    tokens_per_s: PositiveFloat | None = Field(default=None, description="job throughput on all its accelerators")
    node_mtbf_h: PositiveFloat = Field(description="mean time between failures of one node")
    checkpoint_interval_h: PositiveFloat | Literal["optimal"] = Field(
        default="optimal", description="hours of work between checkpoints, or optimal: Young's sqrt(2 x checkpoint "
        "cost x job MTBF)")
    checkpoint_cost_s: NonNegativeFloat = Field(description="time to write one checkpoint (work stops)")
    restart_s: NonNegativeFloat = Field(description="time to detect a failure, restart and load the last checkpoint")
    validation_pass_rate: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0, description="fraction of checkpoints that pass validation"
    )
    priority: Literal["dedicated", "idle"] = Field(
        default="dedicated", description="dedicated: its own accelerators of the pool; idle: the inference replicas' "
        "idle time, progressing at the pool's measured idle fraction")
    replications: Annotated[int, Field(ge=1, le=1000)] = Field(default=20, description="Monte Carlo runs of the job")

    @model_validator(mode="after")
    def _work(self) -> "TrainingJob":
        by_tokens = self.total_tokens is not None or self.tokens_per_s is not None
        if self.work_hours is None and not (self.total_tokens and self.tokens_per_s):
            raise ValueError("give work_hours, or total_tokens and tokens_per_s")
        if self.work_hours is not None and by_tokens:
            raise ValueError("give work_hours or total_tokens with tokens_per_s, not both")
        return self

    @property
    def compute_hours(self) -> float:
        if self.work_hours is not None:
            return self.work_hours
        assert self.total_tokens and self.tokens_per_s
        return self.total_tokens / self.tokens_per_s / 3600.0

    @property
    def nodes(self) -> float:
        return self.accelerators / self.accelerators_per_node

    def expected_events(self, speed: float = 1.0) -> float:
        """Segment attempts the training simulation runs for this job (simfactory.sim.training): over its
        replications, at the chosen interval and the five of the interval scan (0.25-4x Young's). A segment of
        tau hours plus its checkpoint succeeds when no failure comes first, so it takes e^((tau + delta) / (speed x
        M)) attempts on average (M = node MTBF / nodes); there are work / tau segments. Computed in logs: inf when
        the job could never finish."""
        work_h = self.compute_hours
        mtbf_h = self.node_mtbf_h / math.ceil(self.nodes)
        ckpt_h = self.checkpoint_cost_s / 3600.0
        young = math.sqrt(2.0 * ckpt_h * mtbf_h)
        if self.checkpoint_interval_h != "optimal":
            chosen = float(self.checkpoint_interval_h)
        else:
            chosen = young if self.checkpoint_cost_s > 0 else min(work_h, mtbf_h / 100.0)  # as sim.training does
        base = young if young > 0 else chosen
        total = 0.0
        for tau in [chosen] + [base * m for m in (0.25, 0.5, 1.0, 2.0, 4.0)]:
            if not (tau > 0 and math.isfinite(work_h)):
                return math.inf
            exponent = (min(tau, work_h) + ckpt_h) / (speed * mtbf_h)
            if exponent > 700:  # e^700 ~ 1e304: beyond any bound
                return math.inf
            total += (work_h / tau + 1.0) * math.exp(exponent)
        return total * self.replications
