"""Training and fine-tune jobs sharing the pools with inference: the work, the failures, the checkpoints."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_ACCELERATORS, MAX_TOKENS

LAYOUT_FIELDS = ("seq_len_tokens", "global_batch_tokens", "global_batch_sequences", "precision", "tp", "pp", "dp",
                 "virtual_stages", "zero_stage", "activation_checkpointing", "microbatches", "tp_overlap_fraction",
                 "dp_overlap_fraction", "mfu_prior", "checkpoint_every_steps")


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
    model: str | None = Field(
        default=None, description="derive the speed from hardware: a model of models.yaml trained with the layout "
        "below on the pool's SKU (hardware/training.py); needs total_tokens, seq_len_tokens and a global batch, and "
        "takes neither work_hours nor tokens_per_s")
    seq_len_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = Field(
        default=None, description="model: sequence length of the training samples")
    global_batch_tokens: Annotated[float, Field(gt=0, le=1e12)] | None = Field(
        default=None, description="model: tokens per optimizer step (or global_batch_sequences)")
    global_batch_sequences: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = Field(
        default=None, description="model: sequences per optimizer step (x seq_len_tokens tokens)")
    precision: Literal["bf16", "fp8"] | None = Field(
        default=None, description="model: GEMM precision, at the SKU's dense peak for it (default bf16)")
    tp: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None, description="model: tensor-parallel degree (default 1), on the scale-up link")
    pp: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None, description="model: pipeline-parallel stages (default 1), at most the model's layers")
    dp: Annotated[int, Field(ge=1, le=MAX_ACCELERATORS)] | None = Field(
        default=None, description="model: data-parallel degree; default accelerators / (tp x pp), and tp x pp x dp "
        "must equal accelerators")
    virtual_stages: Annotated[int, Field(ge=1, le=128)] | None = Field(
        default=None, description="model: interleaved pipeline chunks per stage (default 1); the bubble is "
        "(pp - 1) / (microbatches x this)")
    zero_stage: Annotated[int, Field(ge=0, le=3)] | None = Field(
        default=None, description="model: ZeRO stage (default 0): 1 shards optimizer states over dp, 2 also "
        "gradients, 3 also weights (and gathers them again in the backward)")
    activation_checkpointing: bool | None = Field(
        default=None, description="model: full activation recomputation (default false): less activation memory, "
        "the forward computed twice")
    microbatches: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="model: microbatches per data-parallel replica and step (default: one sequence "
        "each)")
    tp_overlap_fraction: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="model: share of the tensor-parallel all-reduces hidden behind compute "
        "(default 0: on the critical path)")
    dp_overlap_fraction: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="model: share of the data-parallel gradient traffic hidden behind the backward "
        "(default 0.5, an assumption)")
    mfu_prior: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="model: GEMM efficiency (share of the dense peak) replacing the SKU profile's "
        "training prior")
    checkpoint_every_steps: Annotated[int, Field(ge=1, le=100_000_000)] | None = Field(
        default=None, description="model: write a checkpoint every this many optimizer steps (Megatron-LM's "
        "--save-interval) instead of every checkpoint_interval_h hours: a slower SKU or fabric then makes each "
        "checkpoint take longer and cost more")
    input_pipeline_tokens_per_s: PositiveFloat | None = Field(
        default=None, description="tokens/s the data loader delivers at most: the job trains at the lower of this "
        "and its compute speed (with total_tokens)")
    serving_share: Annotated[float, Field(ge=0.01, le=1)] | None = Field(
        default=None, description="priority idle only: run beside the serving replicas on the same accelerators "
        "instead of in their idle time; while both run, serving gets this share of each accelerator and training "
        "the rest (weighted bandwidth sharing): serving steps take 1 / share as long, training progresses at idle "
        "+ busy x (1 - share). Default 1: idle time only; at least 0.01 (serving 100x slower)")
    priority: Literal["dedicated", "idle"] = Field(
        default="dedicated", description="dedicated: its own accelerators of the pool; idle: the inference replicas' "
        "idle time, progressing at the pool's measured idle fraction")
    replications: Annotated[int, Field(ge=1, le=1000)] = Field(default=20, description="Monte Carlo runs of the job")

    @model_validator(mode="after")
    def _work(self) -> "TrainingJob":
        if self.serving_share is not None and self.priority != "idle":
            raise ValueError("serving_share: only a priority idle job shares the serving replicas' accelerators")
        if self.input_pipeline_tokens_per_s is not None and self.total_tokens is None:
            raise ValueError("input_pipeline_tokens_per_s: caps tokens/s, so needs total_tokens (not work_hours)")
        if self.model is not None:
            return self._hardware()
        given = [f for f in LAYOUT_FIELDS if getattr(self, f) is not None]
        if given:
            raise ValueError(f"{given[0]}: describes the layout of a job that derives its speed from hardware; "
                             "set model too (or drop it)")
        by_tokens = self.total_tokens is not None or self.tokens_per_s is not None
        if self.work_hours is None and not (self.total_tokens and self.tokens_per_s):
            raise ValueError("give work_hours, or total_tokens and tokens_per_s")
        if self.work_hours is not None and by_tokens:
            raise ValueError("give work_hours or total_tokens with tokens_per_s, not both")
        return self

    def _hardware(self) -> "TrainingJob":
        if self.work_hours is not None or self.tokens_per_s is not None:
            raise ValueError("model: a job that derives its speed from hardware takes total_tokens, not work_hours "
                             "or tokens_per_s")
        if self.total_tokens is None or self.seq_len_tokens is None:
            raise ValueError("model: give total_tokens and seq_len_tokens too")
        if (self.global_batch_tokens is None) == (self.global_batch_sequences is None):
            raise ValueError("model: give global_batch_tokens or global_batch_sequences (one of them)")
        if self.checkpoint_every_steps is not None and self.checkpoint_interval_h != "optimal":
            raise ValueError("checkpoint_every_steps: give it or checkpoint_interval_h, not both")
        tp, pp = self.tp or 1, self.pp or 1
        dp = self.dp if self.dp is not None else self.accelerators // (tp * pp)
        if dp < 1 or tp * pp * dp != self.accelerators:
            raise ValueError(f"dp: tp x pp x dp = {tp} x {pp} x {self.dp if self.dp is not None else '?'} must equal "
                             f"accelerators ({self.accelerators})")
        seqs = self.batch_tokens / self.seq_len_tokens
        if self.microbatches is not None and self.microbatches * dp > seqs + 1e-9:
            raise ValueError(f"microbatches: {self.microbatches} per replica x dp {dp} exceeds the "
                             f"{seqs:.6g} sequences of a global batch")
        if seqs < dp:
            raise ValueError(f"global_batch_tokens: {seqs:.6g} sequences per step cannot feed {dp} data-parallel "
                             "replicas (at least one sequence each)")
        return self

    @property
    def batch_tokens(self) -> float:
        """Tokens per optimizer step (hardware-derived jobs)."""
        if self.global_batch_tokens is not None:
            return self.global_batch_tokens
        assert self.global_batch_sequences is not None and self.seq_len_tokens is not None
        return float(self.global_batch_sequences * self.seq_len_tokens)

    @property
    def compute_hours(self) -> float:
        if self.work_hours is not None:
            return self.work_hours
        if self.tokens_per_s is None:
            raise ValueError(f"training job {self.name!r}: its tokens/s is derived from hardware at resolve "
                             "(use the resolved job)")
        assert self.total_tokens
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
