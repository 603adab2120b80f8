"""Hardware profiles (one YAML per SKU) and model architectures, as typed objects.

A profile holds the SKU's spec sheet, its price, and step-time models: explicit entries for a
(model, engine, dtype, TP) combination (measured by calibration, or roofline with fitted factors),
and a SKU-wide roofline default used for any other combination.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    WithJsonSchema,
)

DType = Literal["bf16", "fp16", "fp8", "int8", "int4"]

# A date or period as written in YAML (2026-11, 2024-H2, 2024): kept as text.
AsOf = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, (int, date)) else v),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "date or period, e.g. 2026-11"}),
]

BYTES_PER_PARAM: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Strict):
    """Every shipped number carries where it came from and when."""

    source: str = Field(min_length=1)
    as_of: AsOf = Field(description="date or period the figure was collected, e.g. 2026-11")


class Spec(Sourced):
    hbm_gb: PositiveFloat
    hbm_tb_s: PositiveFloat
    bf16_tflops: PositiveFloat
    fp8_tflops: PositiveFloat | None = None
    int8_tops: PositiveFloat | None = None
    tdp_w: PositiveFloat
    idle_w: NonNegativeFloat | None = None
    interconnect_gb_s: PositiveFloat | None = Field(
        default=None, description="scale-up bandwidth per direction per device (NVLink etc.)"
    )
    interconnect_latency_s: NonNegativeFloat = 5e-6

    def tflops(self, dtype: str) -> float:
        """Dense peak TFLOPS used for a given compute dtype (fp8 falls back to bf16 if the chip lacks it)."""
        if dtype == "fp8" and self.fp8_tflops:
            return self.fp8_tflops
        if dtype == "int8" and self.int8_tops:
            return self.int8_tops
        return self.bf16_tflops


class Price(Sourced):
    cloud_usd_per_accel_hour: NonNegativeFloat | None = None
    server_usd_per_accel: NonNegativeFloat | None = Field(
        default=None, description="on-prem capex per accelerator, all-in (accelerator + its share of host and network)"
    )


class RooflineStepTime(_Strict):
    """step_s = overhead + max(FLOPs / (peak * compute_eff), bytes / (bandwidth * memory_eff)) + TP comm."""

    kind: Literal["roofline"] = "roofline"
    compute_efficiency: float = Field(gt=0, le=1)
    memory_efficiency: float = Field(gt=0, le=1)
    step_overhead_s: NonNegativeFloat


class LinearStepTime(_Strict):
    """step_s = overhead + a*prefill_tokens + b*decode_seqs + c*kv_tokens_read + d*prefill_attn_pairs (fitted)."""

    kind: Literal["linear"] = "linear"
    overhead_s: NonNegativeFloat
    s_per_prefill_token: NonNegativeFloat = 0.0
    s_per_decode_seq: NonNegativeFloat = 0.0
    s_per_kv_token: NonNegativeFloat = 0.0
    s_per_attn_pair: NonNegativeFloat = 0.0


StepTimeSpec = Annotated[Union[RooflineStepTime, LinearStepTime], Field(discriminator="kind")]


class StepTimeEntry(_Strict):
    """A step-time model for one (model, engine, dtype, TP) on this SKU."""

    model: str
    engine: str = "vllm"
    dtype: DType = "bf16"
    tp: PositiveInt = 1
    source: Literal["roofline", "measured", "published-fit"]
    step_time: StepTimeSpec
    fit_mape: NonNegativeFloat | None = Field(default=None, description="held-out mean absolute percentage error")
    provenance: dict[str, str] = Field(default_factory=dict)
    notes: str | None = None
    idle_w: NonNegativeFloat | None = Field(default=None, description="measured power per device at 0% utilization")
    max_w: PositiveFloat | None = Field(default=None, description="measured power per device at 100% utilization")


class RooflineDefault(Sourced):
    """SKU-wide roofline factors used for any combination without an explicit entry."""

    compute_efficiency: float = Field(gt=0, le=1)
    memory_efficiency: float = Field(gt=0, le=1)
    step_overhead_s: NonNegativeFloat


class HardwareProfile(_Strict):
    sku: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    vendor: str
    kind: Literal["gpu", "asic"]
    spec: Spec
    price: Price
    roofline: RooflineDefault
    supported_models: list[str] | None = Field(
        default=None, description="models this device can run (ASICs); None means any"
    )
    step_time_models: list[StepTimeEntry] = Field(default_factory=list)


class ModelArch(Sourced):
    """Transformer shape needed for memory and FLOP accounting."""

    id: str
    params_b: PositiveFloat
    active_params_b: PositiveFloat
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    max_context_tokens: PositiveInt = 131072
    num_experts: PositiveInt | None = Field(default=None, description="MoE: routed experts per MoE layer")
    experts_per_token: PositiveInt | None = Field(default=None, description="MoE: experts each token uses")

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts and self.experts_per_token and self.num_experts > self.experts_per_token)

    def expert_params_b(self) -> float:
        """Parameters in routed experts: total - active = (E - k) x one expert's share, so all E experts hold
        (total - active) x E / (E - k)."""
        if not self.is_moe:
            return 0.0
        e, k = self.num_experts or 0, self.experts_per_token or 0
        return (self.params_b - self.active_params_b) * e / (e - k)

    def weight_fraction_read(self, tokens: int) -> float:
        """Share of the weights a step touches: dense weights always; each expert when at least one of the
        step's tokens routes to it (uniform routing: 1 - (1 - k/E)^tokens of the experts)."""
        if not self.is_moe or tokens <= 0:
            return 1.0
        e, k = self.num_experts or 0, self.experts_per_token or 0
        experts = self.expert_params_b()
        coverage = 1.0 - (1.0 - k / e) ** tokens
        return (self.params_b - experts + experts * coverage) / self.params_b

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """K and V, every layer, every KV head: 2 * layers * kv_heads * head_dim * bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_PARAM[kv_dtype]

    def weight_bytes(self, dtype: str) -> float:
        return self.params_b * 1e9 * BYTES_PER_PARAM[dtype]


class ModelCatalog(_Strict):
    models: list[ModelArch]


class EngineDefaults(_Strict):
    max_num_seqs: PositiveInt | None = None
    max_num_batched_tokens: PositiveInt | None = None
    enable_chunked_prefill: bool | None = None
    schedule: Literal["decode_first", "prefill_first"] | None = None
    kv_admission: Literal["first_chunk", "full_sequence"] | None = None


class EnginePreset(Sourced):
    """A serving engine's scheduler defaults and per-step overhead (data, not code branches)."""

    name: str
    description: str = ""
    step_overhead_multiplier: PositiveFloat = 1.0
    max_num_seqs_built: PositiveInt | None = Field(
        default=None, description="AOT engines: the batch size the engine was built for (an upper bound)"
    )
    defaults: EngineDefaults = Field(default_factory=EngineDefaults)


class EngineCatalog(_Strict):
    engines: list[EnginePreset]
