"""Training and fine-tune jobs sharing the pools with inference: the work, the failures, the checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingJob(_Strict):
    """A job needing `work_hours` of failure-free compute on `accelerators` (or total_tokens / tokens_per_s).

    Nodes fail independently (exponential, `node_mtbf_h` each); a failure loses the work since the last
    checkpoint and costs `restart_s`. Writing a checkpoint stops work for `checkpoint_cost_s`.
    `checkpoint_interval_h: optimal` uses Young's interval sqrt(2 x checkpoint cost x job MTBF).
    `priority: dedicated` takes accelerators of the pool the deployments leave free; `idle` runs on the
    inference replicas' idle time, at lower priority, progressing at the pool's measured idle fraction."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)]
    pool: str
    accelerators: PositiveInt
    accelerators_per_node: PositiveInt = 8
    work_hours: PositiveFloat | None = Field(default=None, description="failure-free compute time")
    total_tokens: PositiveFloat | None = None
    tokens_per_s: PositiveFloat | None = Field(default=None, description="job throughput on all its accelerators")
    node_mtbf_h: PositiveFloat = Field(description="mean time between failures of one node")
    checkpoint_interval_h: PositiveFloat | Literal["optimal"] = "optimal"
    checkpoint_cost_s: NonNegativeFloat = Field(description="time to write one checkpoint (work stops)")
    restart_s: NonNegativeFloat = Field(description="time to detect a failure, restart and load the last checkpoint")
    validation_pass_rate: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0, description="fraction of checkpoints that pass validation"
    )
    priority: Literal["dedicated", "idle"] = "dedicated"
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
