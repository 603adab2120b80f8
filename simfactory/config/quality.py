"""Answer quality: the quality table (quality/scores.yaml: each (model, dtype)'s scores on named public
benchmarks, every figure with its source) and an LLM step's `quality:` block, which ties the step's failure odds to
the score of the (model, dtype) that answers it (the schema is the documentation).

Quantized entries are usually published as a *recovery* (quantized score / bf16 score, as Neural Magic's model cards
and arXiv 2411.02355 report them); an entry may give that instead of absolute scores, and its scores are then the
bf16 entry's times the recovery."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.profile import AsOf, DType

BenchmarkName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=40)]
Score = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
# a recovery above 1 is published (quantization noise); 2 is far beyond any (a typo such as 97.9 for 0.979)
Recovery = Annotated[float, Field(gt=0.0, le=2.0, allow_inf_nan=False)]
MAX_LOGIT_PER_POINT = 10.0  # logits per benchmark point: 10 takes p from 0.5 to 0.99995 in one point; beyond: a typo


class Benchmark(StrictModel):
    name: BenchmarkName = Field(description="benchmark id that scores and LLM steps' quality.benchmark refer to")
    description: str = Field(min_length=1, description="what it measures and how it is scored (shots, metric)")
    source: str = Field(min_length=1, description="where the benchmark is defined (a public URL)")


class QualityEntry(StrictModel):
    """One (model, dtype): absolute `scores`, or a `recovery` of the same model's bf16 entry (one factor for every
    benchmark, `recovery_by_benchmark` overriding it per benchmark)."""

    model: str = Field(min_length=1, max_length=120, description="model id from hardware_profiles/models.yaml")
    dtype: DType = Field(description="weights dtype of the deployments the scores apply to (deployments[].dtype)")
    method: str = Field(default="", max_length=200,
                        description="how the weights were made (e.g. 'GPTQ W4A16', 'FP8 dynamic', 'distilled from "
                        "405B'): for readers")
    scores: dict[BenchmarkName, Score] = Field(
        default_factory=dict, description="benchmark -> score in percent (0-100)")
    recovery: Recovery | None = Field(
        default=None, description="score as a fraction of the same model's bf16 score, on every benchmark the bf16 "
        "entry has (0-2; Neural Magic publishes e.g. 0.997 for FP8)")
    recovery_by_benchmark: dict[BenchmarkName, Recovery] = Field(
        default_factory=dict, description="benchmark -> recovery, where the source gives one per benchmark")
    source: str = Field(min_length=1, description="where the figures come from: public URLs (model card, paper)")
    as_of: AsOf = Field(description="date or period of the source, e.g. 2024-07")

    @model_validator(mode="after")
    def _one_kind(self) -> "QualityEntry":
        relative = self.recovery is not None or bool(self.recovery_by_benchmark)
        if bool(self.scores) == relative:
            raise ValueError("give either scores, or recovery (and/or recovery_by_benchmark) of the bf16 entry")
        if relative and self.dtype == "bf16":
            raise ValueError("a bf16 entry gives scores: recovery is relative to the bf16 entry")
        return self


class QualityTable(StrictModel):
    """quality/scores.yaml: benchmark definitions and per (model, dtype) scores."""

    benchmarks: list[Benchmark] = Field(min_length=1, description="the benchmarks scores may name")
    entries: list[QualityEntry] = Field(min_length=1, description="one per (model, dtype)")

    @model_validator(mode="after")
    def _references(self) -> "QualityTable":
        names = {b.name for b in self.benchmarks}
        seen: set[tuple[str, str]] = set()
        for i, e in enumerate(self.entries):
            key = (e.model, e.dtype)
            if key in seen:
                raise ValueError(f"entries[{i}]: a second entry for {e.model} {e.dtype}")
            seen.add(key)
            for b in [*e.scores, *e.recovery_by_benchmark]:
                if b not in names:
                    raise ValueError(f"entries[{i}]: unknown benchmark {b!r} (benchmarks: {', '.join(sorted(names))})")
            if e.recovery is not None or e.recovery_by_benchmark:
                if (e.model, "bf16") not in {(x.model, x.dtype) for x in self.entries}:
                    raise ValueError(f"entries[{i}]: recovery of {e.model} needs a bf16 entry for {e.model}")
        return self

    def scores(self) -> dict[tuple[str, str], dict[str, float]]:
        """(model, dtype) -> benchmark -> score, recoveries applied to the bf16 scores (capped at 100)."""
        base = {e.model: e.scores for e in self.entries if e.dtype == "bf16"}
        out: dict[tuple[str, str], dict[str, float]] = {}
        for e in self.entries:
            if e.scores:
                out[(e.model, e.dtype)] = dict(e.scores)
                continue
            out[(e.model, e.dtype)] = {
                b: min(100.0, s * e.recovery_by_benchmark.get(b, e.recovery if e.recovery is not None else 0.0))
                for b, s in base[e.model].items()
                if b in e.recovery_by_benchmark or e.recovery is not None
            }
        return out


class QualityReference(StrictModel):
    model: str = Field(min_length=1, max_length=120, description="model id (scores.yaml) the step's fail_p was measured on")
    dtype: DType = Field(default="bf16", description="its dtype")


class StepQuality(StrictModel):
    """Ties an LLM step's fail_p to the answering model's benchmark score. `fail_p` is the step's failure
    probability on `reference`; on the deployment that answers (after any escalation), with score s against the
    reference's s_ref (both on `benchmark`):

    - error_ratio (default): fail = min(1, fail_p x (100 - s) / (100 - s_ref)): the step fails in proportion to the
      benchmark's error rate (no free parameter)
    - logistic: logit(1 - fail) = logit(1 - fail_p) + logit_per_point x (s - s_ref): a one-parameter item-response
      curve (Rasch), for tasks whose success moves faster or slower than the benchmark's
    """

    benchmark: BenchmarkName = Field(description="benchmark (scores.yaml benchmarks[].name) closest to the step's task")
    reference: QualityReference = Field(description="the (model, dtype) on which the step's fail_p holds")
    mapping: Literal["error_ratio", "logistic"] = Field(
        default="error_ratio", description="error_ratio: fail_p scaled by the ratio of benchmark error rates; logistic: "
        "shifted in log-odds by logit_per_point per benchmark point")
    logit_per_point: Annotated[float, Field(gt=0.0, le=MAX_LOGIT_PER_POINT, allow_inf_nan=False)] | None = Field(
        default=None, description=f"logistic: log-odds of success gained per benchmark point (0-{MAX_LOGIT_PER_POINT:g}]; "
        "e.g. 0.1: ten points multiply the odds by e")

    @model_validator(mode="after")
    def _slope(self) -> "StepQuality":
        if self.mapping == "logistic" and self.logit_per_point is None:
            raise ValueError("mapping logistic needs logit_per_point")
        if self.mapping == "error_ratio" and self.logit_per_point is not None:
            raise ValueError("logit_per_point is only used by mapping logistic")
        return self
