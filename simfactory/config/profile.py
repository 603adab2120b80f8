"""Hardware profiles (one YAML per SKU) and model architectures, as typed objects.

A profile holds the SKU's spec sheet, its price, and step-time models: explicit entries for a
(model, engine, dtype, TP) combination (measured by calibration, or roofline with fitted factors),
and a SKU-wide roofline default used for any other combination.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    WithJsonSchema,
    model_validator,
)

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_BLOCK_SIZE, MAX_FRONT_END_S, MAX_TOKENS, MAX_YEAR, MIN_BANDWIDTH, MIN_YEAR

# fp4: 4-bit floating-point weights and activations (NVFP4 on Blackwell, MXFP4 on CDNA 4), run on FP4 tensor cores;
#   a weight-only FP4 checkpoint's (ModelArch.fp4_weight_only: gpt-oss's MXFP4 experts) multiply 16-bit activations;
# int4: 4-bit integer weights with 16-bit activations (W4A16, AWQ/GPTQ), run at the bf16 rate.
DType = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]

_DATE_LIKE = re.compile(r"(?<![\w-])(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?(?![\w-])")
_NUMBER = re.compile(r"\s*[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_HALF_OR_QUARTER = re.compile(r"(?<![\w-])(\d{4})-([HQ])(\d)(?![\w-])")


def check_as_of(text: str) -> str:
    """A date or period as text (2026-11, 2026-11-05, 2024-H2, 2025-Q3, 2025-2026, "2024-07 or later", "fitted"):
    every date written in it must exist (9999-99 or 2026-13 is refused), with years in [MIN_YEAR, MAX_YEAR]."""
    if not text.strip():
        raise ValueError("must not be empty: the date or period the figure was collected, e.g. 2026-11")
    if _NUMBER.fullmatch(text) and not re.fullmatch(r"\s*\d{4}\s*", text):  # a bare number must be a year
        raise ValueError(f"{text.strip()!r} is not a year, date or period (e.g. 2026, 2026-11, 2024-H2)")
    for m in _HALF_OR_QUARTER.finditer(text):
        year, kind, n = int(m.group(1)), m.group(2), int(m.group(3))
        if not (MIN_YEAR <= year <= MAX_YEAR and 1 <= n <= (2 if kind == "H" else 4)):
            raise ValueError(f"{m.group(0)!r} is not a half-year (H1, H2) or quarter (Q1-Q4) of a year "
                             f"{MIN_YEAR}-{MAX_YEAR}")
    for m in _DATE_LIKE.finditer(text):
        year = int(m.group(1))
        month = int(m.group(2)) if m.group(2) else 1
        day = int(m.group(3)) if m.group(3) else 1
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise ValueError(f"{m.group(0)!r}: the year must lie in {MIN_YEAR}-{MAX_YEAR}")
        try:
            date(year, month, day)
        except ValueError:
            raise ValueError(f"{m.group(0)!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD)") from None
    return text


# A date or period as written in YAML (2026-11, 2024-H2, 2024): kept as text, each date in it checked.
AsOf = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, (int, date)) and not isinstance(v, bool) else v),
    AfterValidator(check_as_of),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "date or period, e.g. 2026-11"}),
]

BYTES_PER_PARAM: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}
# MXFP4: 4-bit (E2M1) elements with one shared 8-bit (E8M0) scale per block of 32, 4.25 bits a parameter (OCP
# Microscaling Formats (MX) v1.0, https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf):
# a weight-only FP4 checkpoint's experts (gpt-oss)
MXFP4_BYTES_PER_PARAM = 0.5 + 1 / 32


class _Strict(StrictModel):
    pass


class Sourced(_Strict):
    """Every shipped number carries where it came from and when."""

    source: str = Field(
        min_length=1, description="where this section's figures come from: a URL or document (and when it was read), "
        "a measurement, or 'assumption: ...'")
    as_of: AsOf = Field(description="date or period the figure was collected, e.g. 2026-11")


class DeviceMemory(Sourced):
    """Device memory as the device itself reports it (nvidia-smi / rocminfo / hl-smi total), in bytes: an "80 GB"
    H100 reports 81,559 MiB. Memory accounting (hardware/memory.py) uses this, not the marketing hbm_gb."""

    total_bytes: PositiveInt = Field(description="total device memory as nvidia-smi / rocminfo / hl-smi reports it")
    context_reserve_bytes: NonNegativeInt = Field(
        description="what the driver and runtime context keep out of reach: an engine sees total - this as the device's "
                    "total (torch.cuda.mem_get_info)")

    @model_validator(mode="after")
    def _reserve(self) -> "DeviceMemory":
        if self.context_reserve_bytes >= self.total_bytes:
            raise ValueError(f"context_reserve_bytes: {self.context_reserve_bytes} is not below total_bytes "
                             f"({self.total_bytes})")
        return self

    @property
    def engine_total_bytes(self) -> int:
        """The total an engine sees (vLLM's requested memory is gpu_memory_utilization x this)."""
        return self.total_bytes - self.context_reserve_bytes


class Spec(Sourced):
    hbm_gb: PositiveFloat = Field(description="marketing capacity (spec sheet); memory accounting uses memory.total_bytes")
    memory: DeviceMemory | None = Field(
        default=None, description="device memory in bytes as the device reports it; absent: hbm_gb x 1e9 (a lower "
                                  "bound for every shipped part) and no context reserve")
    hbm_tb_s: float = Field(
        ge=MIN_BANDWIDTH, description="memory bandwidth per device, TB/s (1e12 bytes/s): the roofline's memory term; "
        "spec.source / as_of cite it")
    bf16_tflops: float = Field(
        ge=MIN_BANDWIDTH, description="dense BF16 tensor TFLOPS per device: the roofline's compute peak for bf16, "
        "fp16, int4 and a weight-only FP4 checkpoint's fp4; spec.source / as_of cite it")
    fp8_tflops: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="dense FP8 tensor TFLOPS per device; absent: fp8 runs at the bf16 rate; spec.source "
        "/ as_of cite it")
    fp4_tflops: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="dense FP4 tensor TFLOPS (NVFP4 / MXFP4); absent: the SKU has no FP4 tensor cores "
                                  "and a deployment in fp4 is refused")
    int8_tops: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="dense INT8 tensor TOPS per device; absent: int8 runs at the bf16 rate; spec.source "
        "/ as_of cite it")
    tdp_w: PositiveFloat = Field(
        description="board power per device at full load, W: the power model's top, and the provisioned kW colocation "
        "bills; spec.source / as_of cite it")
    idle_w: NonNegativeFloat | None = Field(
        default=None, description="power per idle device, W; absent: the price book's idle_power for the SKU, else 0; "
        "spec.source / as_of cite it")
    interconnect_gb_s: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="scale-up bandwidth per direction per device (NVLink etc.)"
    )
    interconnect_latency_s: NonNegativeFloat = Field(
        default=5e-6, description="latency of one scale-up (NVLink etc.) message in a collective, seconds; "
        "spec.source / as_of cite it")
    allreduce_bus_gb_s: dict[Annotated[int, Field(ge=2, le=1024)], Annotated[float, Field(ge=MIN_BANDWIDTH)]] | None = (
        Field(default=None, description="measured all-reduce bus bandwidth (nccl-tests busbw, GB/s, messages of a few "
              "MB and up) by group size within one scale-up domain, on the servers this SKU is sold in: for those group "
              "sizes it replaces interconnect_gb_s and the kernel tables' all-reduce (whose collector's server may "
              "differ: peer-to-peer off, other topology); spec.source / as_of cite it"))
    scale_up_domain_devices: PositiveInt = Field(
        default=8, le=1024, description="devices joined by the scale-up link (interconnect_gb_s): an HGX/OAM node 8, "
                                        "a GB200/GB300 NVL72 rack 72; wider groups cross the scale-out network")
    scale_out_gb_s: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="scale-out network bandwidth per direction per device (its NIC: 400 Gb/s = 50 "
                                  "GB/s); absent: a group wider than one scale-up domain is refused")
    scale_out_latency_s: NonNegativeFloat = Field(
        default=1e-5, description="one scale-out (RDMA) message's latency in a collective")

    @model_validator(mode="after")
    def _power(self) -> "Spec":
        if self.idle_w is not None and self.idle_w > self.tdp_w:
            raise ValueError(f"idle_w: {self.idle_w:g} W exceeds tdp_w ({self.tdp_w:g} W)")
        return self

    @model_validator(mode="after")
    def _measured_allreduce(self) -> "Spec":
        sizes = sorted(self.allreduce_bus_gb_s or {})
        if sizes and self.interconnect_gb_s is None:
            raise ValueError("allreduce_bus_gb_s: a measured all-reduce needs the scale-up link it runs on "
                             "(interconnect_gb_s)")
        if sizes and sizes[-1] > self.scale_up_domain_devices:
            raise ValueError(f"allreduce_bus_gb_s: group size {sizes[-1]} is wider than the scale-up domain "
                             f"(scale_up_domain_devices {self.scale_up_domain_devices}); give sizes within one domain")
        return self

    @property
    def device_bytes(self) -> float:
        """Device memory as the device reports it (memory.total_bytes), else the marketing hbm_gb x 1e9."""
        return float(self.memory.total_bytes) if self.memory is not None else self.hbm_gb * 1e9

    def tflops(self, dtype: str) -> float:
        """Dense peak TFLOPS used for a given compute dtype (fp8 falls back to bf16 if the chip lacks it; fp4 to fp8,
        then bf16: resolve refuses fp4 on a SKU without fp4_tflops, so the fallback only serves direct API use)."""
        if dtype == "fp4" and self.fp4_tflops:
            return self.fp4_tflops
        if dtype in ("fp8", "fp4") and self.fp8_tflops:
            return self.fp8_tflops
        if dtype == "int8" and self.int8_tops:
            return self.int8_tops
        return self.bf16_tflops


class Price(Sourced):
    cloud_usd_per_accel_hour: NonNegativeFloat | None = Field(
        default=None, description="on-demand USD per accelerator-hour for a cloud pool that names no provider (or "
        "price); price.source / as_of cite it")
    server_usd_per_accel: NonNegativeFloat | None = Field(
        default=None, description="on-prem capex per accelerator, all-in (accelerator + its share of host and network)"
    )


# the roofline's small-GEMM terms, on a SKU's default factors and on an explicit step-time entry alike
GEMM_LATENCY_FIELD = Field(
    default=0.0, le=0.001, description="fixed time of each weight GEMM launch on a device, seconds (4 a dense "
    "layer: QKV, output, gate-up, down; 10 a DeepSeek-V3 MoE layer: 5 MLA, router, 2 expert, 2 shared-expert, 8 where "
    "SGLang fuses the shared expert): what small decode GEMMs take beyond their bytes (0: none)")
GEMM_RAMP_FIELD = Field(
    default=0.0, le=100_000, description="GEMM FLOPs are priced as for this many more tokens than the step has: "
    "efficiency compute_efficiency x M / (M + ramp) at M tokens, as small GEMMs fill few compute units (0: none)")


class RooflineStepTime(_Strict):
    """step_s = overhead + max(FLOPs / (peak * compute_eff), bytes / (bandwidth * memory_eff)) + TP comm."""

    kind: Literal["roofline"] = Field(default="roofline", description="selects the roofline step-time model")
    compute_efficiency: float = Field(
        gt=0, le=1, description="fraction (0-1] of the peak TFLOPS the GEMMs and attention reach")
    memory_efficiency: float = Field(
        gt=0, le=1, description="fraction (0-1] of the memory bandwidth weight and KV reads reach")
    step_overhead_s: NonNegativeFloat = Field(description="fixed time per engine step (scheduling, launches), seconds")
    prefill_floor_s: NonNegativeFloat = Field(
        default=0.0, description="the shortest a step with prompt tokens takes, seconds (0: none). Engines that "
        "capture CUDA graphs for decode batches only launch a prefill forward kernel by kernel from the host, whose "
        "launch time the GPU work hides only once it is long enough; `calibrate fit` fits it from measured steps")
    gemm_latency_s: NonNegativeFloat = GEMM_LATENCY_FIELD
    gemm_ramp_tokens: NonNegativeFloat = GEMM_RAMP_FIELD


class LinearStepTime(_Strict):
    """step_s = overhead + a*prefill_tokens + b*decode_seqs + c*kv_tokens_read + d*prefill_attn_pairs (fitted)."""

    kind: Literal["linear"] = Field(default="linear", description="selects the fitted linear step-time model")
    overhead_s: NonNegativeFloat = Field(description="fixed time per engine step, seconds")
    s_per_prefill_token: NonNegativeFloat = Field(
        default=0.0, description="seconds per prompt token computed in the step")
    s_per_decode_seq: NonNegativeFloat = Field(
        default=0.0, description="seconds per sequence decoding one token in the step")
    s_per_kv_token: NonNegativeFloat = Field(
        default=0.0, description="seconds per context token the step's decode attention reads")
    s_per_attn_pair: NonNegativeFloat = Field(
        default=0.0, description="seconds per query-key pair of the step's prefill attention")


class KernelsStepTime(_Strict):
    """The SKU's measured kernel tables (hardware/kernels.py) with what kernels miss fitted to your steps
    (`simfactory calibrate fit --fit kernels`): step_s = overhead_s + overhead_per_seq_s x sequences
    + linear_scale x (GEMMs + all-reduce)(tokens) + logits + decode attention
    + [a step with prefill] (prefill_overhead_s + prefill_attn_scale x prompt attention), and a step with prefill
    at least prefill_floor_s; every kernel time (not the overheads) times kernel_scale."""

    kind: Literal["kernels"] = Field(
        default="kernels", description="selects measured kernel tables with fitted corrections")
    overhead_s: NonNegativeFloat = Field(description="engine overhead per step")
    overhead_per_seq_s: NonNegativeFloat = Field(default=0.0, description="per sequence in the step (a prefill "
                                                                         "counts one)")
    prefill_overhead_s: NonNegativeFloat = Field(default=0.0, description="extra per step that prefills")
    # a fit keeps the multipliers within 0.25-4 and 0.1-10; 100x measured kernel time is a unit slip
    linear_scale: float = Field(default=1.0, gt=0, le=100, description="multiplier on the token-linear kernels "
                                                                        "(GEMMs, all-reduce)")
    prefill_attn_scale: float = Field(default=1.0, ge=0, le=100, description="multiplier on prompt (quadratic) "
                                                                              "attention")
    prefill_floor_s: NonNegativeFloat = Field(
        default=0.0, description="the least a step with prompt tokens takes (an engine that launches prefill forwards "
        "without CUDA graphs: the host's launch time); `calibrate fit` fits it when short prefills are measured flat")
    allreduce_bus_gb_s: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="the measured all-reduce bus bandwidth the fit priced its steps' all-reduces with "
        "(the profile's spec.allreduce_bus_gb_s for this TP when it was fitted), which the entry keeps whatever the "
        "profile says later; absent: the kernel tables' all-reduce")
    kernel_scale: float = Field(
        default=1.0, ge=0.5, le=2.0, description="a factor on every kernel time the fit started from and kept (the "
        "engine preset's release_factor when a concurrency sweep was fitted on it); 1: the tables as measured")
    allreduce_latency_s: float = Field(
        default=0.0, ge=0, le=1e-3, description="the engine's one-token all-reduce, kept from the engine preset a "
        "concurrency sweep was fitted on (its allreduce_latency, where it adds to the tables'); 0: the tables' "
        "all-reduce (a step fit records 0: its fitted overhead holds the engine's all-reduce shortfall)")


StepTimeSpec = Annotated[Union[RooflineStepTime, LinearStepTime, KernelsStepTime], Field(discriminator="kind")]


class StepTimeEntry(_Strict):
    """A step-time model for one (model, engine, dtype, TP, attention-DP, EP) layout on this SKU."""

    model: str = Field(description="model id (models.yaml) the entry applies to")
    engine: str = Field(default="vllm", description="engine preset (engines.yaml) the entry applies to")
    dtype: DType = Field(default="bf16", description="deployment dtype the entry applies to")
    tp: PositiveInt = Field(default=1, description="tensor-parallel degree the entry applies to")
    dp_attention: PositiveInt = Field(
        default=1, description="attention data-parallel groups of the layout the entry applies to (a deployment's "
        "dp_attention): a step measured with attention split over groups does not describe one without, nor the "
        "reverse")
    ep: PositiveInt = Field(
        default=1, description="expert-parallel degree of the layout the entry applies to (a MoE deployment's ep, or "
        "its tp with expert_parallel; 1: experts tensor-parallel or a dense model)")
    source: Literal["roofline", "measured", "published-fit"] = Field(
        description="how the entry was obtained; among entries matching a deployment, measured wins over "
        "published-fit, which wins over roofline")
    step_time: StepTimeSpec = Field(
        description="the step-time model: roofline factors, linear coefficients or kernel-table corrections")
    fit_mape: NonNegativeFloat | None = Field(default=None, description="held-out mean absolute percentage error")
    provenance: dict[str, str] = Field(
        default_factory=dict, description="how it was measured, as key -> text (GPU, date, git sha, fit errors); the "
        "simulation does not read it")
    notes: str | None = Field(default=None, description="free text for readers")
    idle_w: NonNegativeFloat | None = Field(default=None, description="measured power per device at 0% utilization")
    max_w: PositiveFloat | None = Field(default=None, description="measured power per device at 100% utilization")

    @model_validator(mode="after")
    def _layout(self) -> "StepTimeEntry":
        for name, n in (("dp_attention", self.dp_attention), ("ep", self.ep)):
            if self.tp % n:
                raise ValueError(f"{name}: {n} does not divide tp ({self.tp})")
        return self

    @model_validator(mode="after")
    def _power(self) -> "StepTimeEntry":
        if self.idle_w is not None and self.max_w is not None and self.idle_w > self.max_w:
            raise ValueError(f"max_w: {self.max_w:g} W is below idle_w ({self.idle_w:g} W)")
        return self


class RooflineDefault(Sourced):
    """SKU-wide roofline factors used for any combination without an explicit entry."""

    compute_efficiency: float = Field(
        gt=0, le=1, description="fraction (0-1] of the peak TFLOPS the GEMMs and attention reach (fitted; source "
        "cites the fit)")
    memory_efficiency: float = Field(
        gt=0, le=1, description="fraction (0-1] of the memory bandwidth weight and KV reads reach (fitted; source "
        "cites the fit)")
    step_overhead_s: NonNegativeFloat = Field(
        description="fixed time per engine step, seconds, times the engine preset's step_overhead_multiplier")
    gemm_latency_s: NonNegativeFloat = GEMM_LATENCY_FIELD
    gemm_ramp_tokens: NonNegativeFloat = GEMM_RAMP_FIELD


class TrainingPrior(Sourced):
    """The SKU's MFU prior for training from hardware (hardware/training.py): the share of the dense peak its GEMMs
    reach while computing, per precision, fitted to a published training measurement (source / as_of cite it)."""

    bf16_gemm_efficiency: Annotated[float, Field(gt=0, le=1)] = Field(
        description="fraction (0-1] of the dense BF16 peak the training GEMMs reach (compute time = hardware FLOPs / "
                    "(devices x peak x this))")
    fp8_gemm_efficiency: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="the same at the FP8 peak; absent: a job in fp8 on this SKU is refused")
    calibrated: bool = Field(
        description="true: fitted to a measurement on this SKU; false: assumed (e.g. from a sibling SKU with the "
                    "same tensor cores), and reports say so")

    def gemm_efficiency(self, precision: str) -> float | None:
        return self.fp8_gemm_efficiency if precision == "fp8" else self.bf16_gemm_efficiency


class HardwareProfile(_Strict):
    sku: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]*$", description="SKU id: the file's name (hardware_profiles/<sku>.yaml) and "
        "what pools' sku names")
    name: str = Field(description="full product name, for readers")
    vendor: str = Field(description="maker, for readers")
    kind: Literal["gpu", "asic", "cpu"] = Field(
        description="gpu, asic or cpu (a server CPU socket serving on its own, e.g. with AMX): an ASIC pool rates the "
                    "run asic on the compare scorecard's lock-in freedom; gpu and cpu pools rate gpu")
    spec: Spec = Field(description="spec-sheet figures per device")
    price: Price = Field(description="default cloud price and purchase price")
    roofline: RooflineDefault = Field(
        description="SKU-wide roofline factors for combinations without an explicit step-time entry")
    supported_models: list[str] | None = Field(
        default=None, description="models this device can run (ASICs); None means any"
    )
    step_time_models: list[StepTimeEntry] = Field(
        default_factory=list, description="explicit step-time models per (model, engine, dtype, TP, attention-DP, EP); calibrated files "
        "add more")
    training: TrainingPrior | None = Field(
        default=None, description="MFU prior for training jobs that derive their speed from hardware (model:); "
                                  "absent: such a job must set mfu_prior itself")


# what ModelArch.runs_like compares: the dimensions this catalogue records that an engine step's kernels depend on
# (not the id, the context window or the MTP modules)
STEP_SHAPE_FIELDS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "num_experts",
                     "experts_per_token", "shared_experts", "dense_layers", "kv_lora_rank", "qk_rope_head_dim",
                     "qk_nope_head_dim", "v_head_dim", "q_lora_rank", "sliding_window_tokens",
                     "sliding_window_layers")


class ModelArch(Sourced):
    """Transformer shape needed for memory and FLOP accounting."""

    id: str = Field(description="model id that deployments (model:) and step-time entries name")
    params_b: PositiveFloat = Field(
        description="total parameters, billions: weights take params_b x 1e9 x bytes per parameter; source / as_of "
        "cite the published config (as for every shape figure here)")
    active_params_b: PositiveFloat = Field(
        description="parameters each token uses, billions (params_b for a dense model): FLOPs per token")
    layers: PositiveInt = Field(description="decoder layers")
    hidden: PositiveInt = Field(description="hidden size (model width)")
    heads: PositiveInt = Field(description="attention (query) heads")
    kv_heads: PositiveInt = Field(
        description="key/value heads (grouped-query attention; heads for multi-head attention): sizes the KV cache")
    head_dim: PositiveInt = Field(description="width of one attention head")
    max_context_tokens: PositiveInt = Field(
        default=131072, le=MAX_TOKENS, description="context window, tokens: deployments' default max_model_len")
    num_experts: PositiveInt | None = Field(default=None, description="MoE: routed experts per MoE layer")
    experts_per_token: PositiveInt | None = Field(default=None, description="MoE: experts each token uses")
    intermediate: PositiveInt | None = Field(
        default=None, description="MLP intermediate size (per expert for MoE); sizes the activation peak")
    vocab: PositiveInt | None = Field(default=None, description="vocabulary size; sizes the sampler's logits")
    shared_experts: NonNegativeInt = Field(
        default=0, description="MoE: shared experts every token uses besides its routed ones (counted in "
                               "active_params_b, read every step)")
    dense_layers: NonNegativeInt = Field(
        default=0, description="MoE: how many layers use a dense MLP instead of experts (DeepSeek's first 3, "
                               "first_k_dense_replace; Llama 4 Maverick's every other layer, 24 of 48)")
    kv_lora_rank: PositiveInt | None = Field(
        default=None, description="multi-head latent attention (MLA): width of the compressed KV latent cached "
                                  "per token and layer, shared by all heads")
    qk_rope_head_dim: PositiveInt | None = Field(
        default=None, description="MLA: width of the decoupled RoPE key cached beside the latent")
    qk_nope_head_dim: PositiveInt | None = Field(
        default=None, description="MLA: per-head query/key width without RoPE (FLOPs of the non-absorbed form)")
    v_head_dim: PositiveInt | None = Field(
        default=None, description="MLA: per-head value width (FLOPs of the non-absorbed form)")
    q_lora_rank: PositiveInt | None = Field(default=None, description="MLA: width of the compressed query")
    sliding_window_tokens: PositiveInt | None = Field(
        default=None, description="sliding-window attention: keys each query sees in the windowed layers")
    sliding_window_layers: NonNegativeInt = Field(
        default=0, description="how many layers use the sliding window (the rest attend to the whole context)")
    mtp_modules: NonNegativeInt = Field(
        default=0, description="multi-token-prediction modules shipped with the model (DeepSeek-V3's "
                               "num_nextn_predict_layers: 1), usable as a speculative draft (speculative.mtp: true)")
    fp4_weight_only: bool = Field(
        default=False, description="its FP4 checkpoint quantizes weights only, activations stay 16-bit (gpt-oss: MXFP4 "
        "experts, the rest BF16): with dtype fp4 its GEMMs multiply at the BF16 rate on every GPU (W4A16; no FP4 "
        "tensor-core rate, so it runs on GPUs without FP4 tensor cores too), launch no activation quantization, its "
        "weights take 4.25 bits a routed-expert parameter and 16 bits every other, and its KV cache defaults to bf16")

    @model_validator(mode="after")
    def _shape(self) -> "ModelArch":
        if (self.kv_lora_rank is None) != (self.qk_rope_head_dim is None):
            raise ValueError("kv_lora_rank: give kv_lora_rank and qk_rope_head_dim together (multi-head latent "
                             "attention) or neither")
        if self.kv_lora_rank is None and any(
                v is not None for v in (self.qk_nope_head_dim, self.v_head_dim, self.q_lora_rank)):
            raise ValueError("kv_lora_rank: qk_nope_head_dim, v_head_dim and q_lora_rank describe multi-head latent "
                             "attention; give kv_lora_rank and qk_rope_head_dim too")
        if (self.sliding_window_tokens is None) != (self.sliding_window_layers == 0):
            raise ValueError("sliding_window_tokens: give sliding_window_tokens and a positive sliding_window_layers "
                             "together (or neither)")
        if self.sliding_window_layers > self.layers:
            raise ValueError(f"sliding_window_layers: {self.sliding_window_layers} exceeds layers ({self.layers})")
        if (self.shared_experts or self.dense_layers) and self.num_experts is None:
            raise ValueError("shared_experts: shared_experts and dense_layers describe a mixture of experts; give "
                             "num_experts and experts_per_token too")
        if self.dense_layers >= self.layers:
            raise ValueError(f"dense_layers: {self.dense_layers} leaves no MoE layer of {self.layers}")
        if self.kv_heads > self.heads:
            raise ValueError(f"kv_heads: {self.kv_heads} exceeds heads ({self.heads}): grouped-query attention "
                             "shares each KV head among query heads")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.active_params_b > self.params_b:
            raise ValueError(f"active_params_b: {self.active_params_b:g} exceeds params_b ({self.params_b:g})")
        if (self.num_experts is None) != (self.experts_per_token is None):
            raise ValueError("num_experts: give num_experts and experts_per_token together (or neither)")
        if self.num_experts is not None and self.experts_per_token is not None:
            if self.experts_per_token > self.num_experts:
                raise ValueError(f"experts_per_token: {self.experts_per_token} exceeds num_experts ({self.num_experts})")
            if self.experts_per_token < self.num_experts and self.active_params_b >= self.params_b:
                raise ValueError(f"active_params_b: a mixture of experts using {self.experts_per_token} of "
                                 f"{self.num_experts} experts activates fewer than its params_b ({self.params_b:g})")
        return self

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts and self.experts_per_token and self.num_experts > self.experts_per_token)

    def runs_like(self, other: ModelArch, *, known_whole: bool = True, params: bool = True) -> bool:
        """Whether `other` runs the same kernels a step (a release and its fine-tunes, Llama-3.1-70B and 3.3-70B):
        the same STEP_SHAPE_FIELDS and (params) parameter counts within 0.5%, which catch what the dimensions miss
        (an MoE model's dense-layer and shared-expert widths, tied embeddings). known_whole: this model's shape known
        whole (its MLP width and vocabulary given)."""
        if known_whole and (self.intermediate is None or self.vocab is None):
            return False
        if any(getattr(self, name) != getattr(other, name) for name in STEP_SHAPE_FIELDS):
            return False
        return not params or (math.isclose(self.params_b, other.params_b, rel_tol=0.005)
                              and math.isclose(self.active_params_b, other.active_params_b, rel_tol=0.005))

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
        experts = self.expert_params_b()
        return (self.params_b - experts + experts * self.expert_coverage(tokens)) / self.params_b

    def expert_coverage(self, tokens: int) -> float:
        """Share of the routed experts a step of this many tokens touches under uniform routing: 1 - (1 - k/E)^tokens
        (1 for an empty step, which the engine never runs, and for a dense model)."""
        if not self.is_moe or tokens <= 0:
            return 1.0
        e, k = self.num_experts or 0, self.experts_per_token or 0
        return 1.0 - (1.0 - k / e) ** tokens

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2/V3, Kimi K2): one compressed latent per token and layer."""
        return self.kv_lora_rank is not None and self.qk_rope_head_dim is not None

    @property
    def moe_layers(self) -> int:
        """Layers with experts (all of them for a mixture of experts but the first dense_layers; 0 if dense)."""
        return self.layers - self.dense_layers if self.num_experts is not None else 0

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """KV-cache bytes per token of context, all layers together.

        Grouped-query attention: K and V, every layer, every KV head: 2 * layers * kv_heads * head_dim * bytes.
        MLA: one latent of kv_lora_rank plus the RoPE key of qk_rope_head_dim per layer, shared by all heads
        (vLLM and SGLang cache exactly this): layers * (kv_lora_rank + qk_rope_head_dim) * bytes.
        Sliding-window layers are counted as if they held the whole context (pessimistic): an engine keeps at most
        sliding_window_tokens of them per request, which the per-token KV model here cannot express."""
        if self.kv_lora_rank is not None and self.qk_rope_head_dim is not None:
            return self.layers * (self.kv_lora_rank + self.qk_rope_head_dim) * BYTES_PER_PARAM[kv_dtype]
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_PARAM[kv_dtype]

    def kv_tp_shards(self, tp: int) -> int:
        """Over how many of a TP group's devices the KV cache is split: tp while every device has a KV head of its
        own, kv_heads once the group is wider (the engines give each device at least one KV head and replicate them:
        max(1, kv_heads // tp) heads a device in vLLM's ModelConfig.get_num_kv_heads, SGLang's likewise), so
        Qwen3-235B's 4 KV heads on TP8 sit twice over; 1 for MLA, whose single latent every device holds whole."""
        return 1 if self.is_mla else min(tp, self.kv_heads)

    def attn_flops_per_pair(self, absorbed: bool = True) -> float:
        """Attention FLOPs per query-key pair, all layers (the roofline's per-pair term, RooflineModel in
        hardware/step_time.py).

        Standard attention: QK^T and PV, 2 FLOPs per multiply-add each, over every query head:
        4 * layers * heads * head_dim.
        MLA with absorbed projections (how engines decode; the roofline uses it for prefill too, pessimistic there):
        scores over the latent and the RoPE key, 2 * heads * (kv_lora_rank + qk_rope_head_dim), plus values over the
        latent, 2 * heads * kv_lora_rank, per layer. absorbed=False gives the expanded form prefill kernels run:
        2 * heads * (qk_nope_head_dim + qk_rope_head_dim) + 2 * heads * v_head_dim per layer."""
        if self.kv_lora_rank is not None and self.qk_rope_head_dim is not None:
            if absorbed:
                scores = 2 * self.heads * (self.kv_lora_rank + self.qk_rope_head_dim)
                per_layer = scores + 2 * self.heads * self.kv_lora_rank
            else:
                nope = self.qk_nope_head_dim or self.head_dim
                v = self.v_head_dim or self.head_dim
                per_layer = 2 * self.heads * (nope + self.qk_rope_head_dim) + 2 * self.heads * v
            return float(self.layers * per_layer)
        return 4.0 * self.layers * (self.heads * self.head_dim)

    def attention_params_b(self) -> float:
        """Parameters of the attention blocks, all layers (billions): what data-parallel attention replicates.
        GQA: Q and O projections hidden x heads x head_dim each, K and V hidden x kv_heads x head_dim each.
        MLA (DeepSeek-V3 modeling code): query down/up projection (or one hidden x heads x (nope + rope) when
        q_lora_rank is absent), KV down projection hidden x (kv_lora_rank + rope), KV up projection kv_lora_rank x
        heads x (nope + v), output heads x v x hidden."""
        h, n = self.hidden, self.heads
        if self.kv_lora_rank is not None and self.qk_rope_head_dim is not None:
            nope = self.qk_nope_head_dim or self.head_dim
            v = self.v_head_dim or self.head_dim
            qk = nope + self.qk_rope_head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * n * qk if self.q_lora_rank else h * n * qk
            per_layer = q + h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank * n * (nope + v) + n * v * h
        else:
            per_layer = h * (n + 2 * self.kv_heads) * self.head_dim + n * self.head_dim * h
        return self.layers * per_layer / 1e9

    def mla_kv_up_share(self, tp: int) -> float:
        """Of the work a multi-head latent attention block does per token on one of tp devices (its projections:
        query down/up or query, the replicated KV down projection, the KV up projection and the output, each split
        over the heads but the down projections), the KV up projection's share: what re-expanding one cached latent
        token costs, as a share of a prompt token's block (0: not latent attention)."""
        if self.kv_lora_rank is None or self.qk_rope_head_dim is None:
            return 0.0
        h, n = self.hidden, max(1, self.heads // tp)
        nope, v = self.qk_nope_head_dim or self.head_dim, self.v_head_dim or self.head_dim
        qk = nope + self.qk_rope_head_dim
        q = h * self.q_lora_rank + self.q_lora_rank * n * qk if self.q_lora_rank else h * n * qk
        up = self.kv_lora_rank * n * (nope + v)
        return up / (q + h * (self.kv_lora_rank + self.qk_rope_head_dim) + up + n * v * h)

    def weight_bytes(self, dtype: str) -> float:
        """All the weights in bytes: params_b at the dtype's bytes, except a weight-only FP4 checkpoint's, whose
        routed experts are MXFP4 and whose other weights (attention, router, embeddings) stay 16-bit."""
        if self.weight_only_fp4(dtype):
            return self.expert_weight_bytes(dtype) + (self.params_b - self.expert_params_b()) * 1e9 * 2.0
        return self.params_b * 1e9 * BYTES_PER_PARAM[dtype]

    def weight_only_fp4(self, dtype: str) -> bool:
        return dtype == "fp4" and self.fp4_weight_only

    def expert_weight_bytes(self, dtype: str) -> float:
        """The routed experts' weights in bytes (MXFP4's block scales included for a weight-only FP4 checkpoint)."""
        per = MXFP4_BYTES_PER_PARAM if self.weight_only_fp4(dtype) else BYTES_PER_PARAM[dtype]
        return self.expert_params_b() * 1e9 * per

    def dense_bytes_per_param(self, dtype: str) -> float:
        """Bytes a parameter outside the routed experts (attention, dense MLPs, router): 16-bit in a weight-only FP4
        checkpoint, else the dtype's."""
        return 2.0 if self.weight_only_fp4(dtype) else BYTES_PER_PARAM[dtype]

    def compute_dtype(self, dtype: str) -> str:
        """The precision this model's GEMMs multiply in with weights of `dtype`: bf16 for a weight-only FP4
        checkpoint on every GPU (W4A16: the weights are dequantized on the fly; the engines' gpt-oss paths run 16-bit
        activations, vLLM's FlashInfer MXFP4 x BF16 on Blackwell too; SGLang's MXFP8 experts there would reach FP8's
        rate: the BF16 one is the pessimistic side), else the weights' own."""
        return "bf16" if self.weight_only_fp4(dtype) else dtype


class ModelCatalog(_Strict):
    models: list[ModelArch] = Field(description="model architectures deployments can serve")


class TokenBudgetTier(_Strict):
    """An engine's per-step token budget (and batch size) on devices with less memory than below_gib (SGLang sizes
    its chunked_prefill_size from the GPU's memory, vLLM V1 its max_num_batched_tokens and max_num_seqs)."""

    below_gib: PositiveFloat | None = Field(
        description="the tier applies to devices whose memory (as they report it, GiB) is under this; null: every "
                    "larger device (the last tier)")
    max_num_batched_tokens: PositiveInt = Field(description="the budget on those devices")
    max_num_seqs: PositiveInt | None = Field(
        default=None, description="the batch size on those devices (null: the defaults' max_num_seqs)")


class BlockSizeRule(_Strict):
    """Tokens per KV block an engine's default attention backend forces on some GPUs (vLLM's latent-attention
    kernels, SGLang's TensorRT-LLM kernels on Blackwell): it replaces the engine's default block size there."""

    skus: list[str] = Field(min_length=1, description="the SKUs the rule holds on")
    latent_attention: bool | None = Field(
        default=None, description="true: only models with multi-head latent attention; false: only the others; "
                                  "absent: every model")
    block_size: PositiveInt = Field(le=MAX_BLOCK_SIZE, description="tokens per KV block there")

    def holds(self, sku: str | None, latent_attention: bool) -> bool:
        return sku in self.skus and self.latent_attention in (None, latent_attention)


class EngineDefaults(_Strict):
    max_num_seqs: PositiveInt | None = Field(
        default=None, description="deployments' max_num_seqs when the scenario leaves it out")
    max_num_batched_tokens: PositiveInt | None = Field(
        default=None, description="deployments' max_num_batched_tokens when the scenario leaves it out")
    max_num_batched_tokens_by_memory: list[TokenBudgetTier] | None = Field(
        default=None, description="the budget by device memory, for engines whose default depends on it: the first "
        "tier whose below_gib exceeds the device's memory (tiers in increasing below_gib, the last one null) gives "
        "deployments' max_num_batched_tokens when the scenario leaves it out, in place of max_num_batched_tokens")
    first_tier_skus: list[str] | None = Field(
        default=None, description="SKUs whose name contains one of these take the first tier whatever their memory "
        "(vLLM keeps A100s on its small defaults by device name: 'a100')")
    per_attention_rank: list[Literal["max_num_seqs", "max_num_batched_tokens"]] = Field(
        default_factory=list, description="the defaults above that are each attention data-parallel rank's (engines "
        "whose DP ranks schedule with limits of their own): a deployment with dp_attention that leaves them out gets "
        "them times its ranks")

    @model_validator(mode="after")
    def _tiers(self) -> "EngineDefaults":
        tiers = self.max_num_batched_tokens_by_memory
        if tiers is not None:
            bounds = [t.below_gib for t in tiers]
            if not tiers or bounds[-1] is not None or None in bounds[:-1] or bounds[:-1] != sorted(bounds[:-1]):
                raise ValueError("max_num_batched_tokens_by_memory: tiers in increasing below_gib, the last one "
                                 "with below_gib null")
        return self

    def tier(self, device_bytes: float | None, sku: str | None = None) -> TokenBudgetTier | None:
        """The tier of a device with this much memory (None: no tiers, or the device is unknown)."""
        tiers = self.max_num_batched_tokens_by_memory
        if tiers is None or device_bytes is None:
            return None
        if sku is not None and any(part in sku for part in self.first_tier_skus or ()):
            return tiers[0]
        gib = device_bytes / 2**30
        return next(t for t in tiers if t.below_gib is None or gib < t.below_gib)

    def token_budget(self, device_bytes: float | None, sku: str | None = None) -> int | None:
        """The budget on a device with this much memory (the tiers' when given and the device is known)."""
        t = self.tier(device_bytes, sku)
        return self.max_num_batched_tokens if t is None else t.max_num_batched_tokens

    def batch_size(self, device_bytes: float | None, sku: str | None = None) -> int | None:
        """max_num_seqs on that device (the tier's where it names one)."""
        t = self.tier(device_bytes, sku)
        return self.max_num_seqs if t is None or t.max_num_seqs is None else t.max_num_seqs
    enable_chunked_prefill: bool | None = Field(
        default=None, description="deployments' enable_chunked_prefill when the scenario leaves it out")
    schedule: Literal["decode_first", "prefill_first"] | None = Field(
        default=None, description="deployments' schedule when the scenario leaves it out")
    kv_admission: Literal["first_chunk", "full_sequence"] | None = Field(
        default=None, description="deployments' kv_admission when the scenario leaves it out")
    overlap_schedule: bool | None = Field(
        default=None, description="deployments' overlap_schedule when the scenario leaves it out")
    delayed_first_token: bool | None = Field(
        default=None, description="deployments' delayed_first_token when the scenario leaves it out")
    reuse_preempted_kv: Literal["none", "computed", "prompt"] | None = Field(
        default=None, description="deployments' reuse_preempted_kv when the scenario leaves it out")
    front_end_s: float | None = Field(
        default=None, ge=0, le=MAX_FRONT_END_S, allow_inf_nan=False,
        description="deployments' front_end_s (the API server's time per request at low load) when the scenario "
                    "leaves it out")
    block_size: PositiveInt | None = Field(
        default=None, le=MAX_BLOCK_SIZE, description="deployments' block_size (tokens per KV block, or page) when "
        "the scenario leaves it out")
    block_size_rules: list[BlockSizeRule] = Field(
        default_factory=list, description="block sizes the engine's default attention backend forces on some GPUs: "
        "the first rule that holds replaces block_size")

    def kv_block_size(self, sku: str | None, latent_attention: bool) -> int | None:
        """Tokens per KV block of this engine on that SKU for that model (None: the engine names none)."""
        rule = next((r for r in self.block_size_rules if r.holds(sku, latent_attention)), None)
        return rule.block_size if rule is not None else self.block_size


class EngineOverhead(Sourced):
    """Time an engine spends per step outside the GPU kernels (scheduling, input preparation, sampling, launch
    gaps, the host side of collectives): what measured kernel tables do not contain. A prior per engine version
    until `simfactory calibrate fit` replaces it with the user's own measurement."""

    base_s: NonNegativeFloat = Field(description="per step")
    per_layer_s: NonNegativeFloat = Field(default=0.0, description="per step and model layer (launch gaps)")
    per_extra_gpu_s: NonNegativeFloat = Field(
        default=0.0, description="per step and tensor-parallel device beyond the first (host sync, collectives' "
                                 "launch and skew), the whole tensor-parallel group with DP attention too")
    per_extra_gpu_up_to: PositiveInt = Field(
        default=8, description="the largest group per_extra_gpu_s was drawn from (one NVLink node): a larger group "
        "pays what this one pays, the prior having no evidence that the term keeps growing (wide expert parallelism "
        "over 16-72 GPUs)")
    per_seq_s: NonNegativeFloat = Field(default=0.0, description="per step and sequence in the batch (input "
                                                                 "preparation, sampling)")

    def step_s(self, layers: int, tp: int) -> float:
        """The fixed part of one step (per-sequence cost aside)."""
        return self.base_s + self.per_layer_s * layers + self.per_extra_gpu_s * (min(tp, self.per_extra_gpu_up_to) - 1)


UNQUANTIZED_DTYPES = ("bf16", "fp16")  # weights served as they are: no activation quantization per GEMM


class EagerPrefill(Sourced):
    """Host time to launch the kernels of a forward that prefills, for engines that capture CUDA graphs for decode
    batches only: such a step takes at least the launch time of all its layers, which the GPU work hides only once
    it is longer (short prompts, MoE layers with many small kernels). A prior per engine version, by layer kind."""

    # published launch times are 0.3-3 ms a layer: 50 ms is a unit slip (milliseconds written as seconds)
    dense_layer_s: float = Field(ge=0, le=0.05, description="per dense (feed-forward) layer, seconds")
    moe_layer_s: float = Field(ge=0, le=0.05, description="per mixture-of-experts layer (router, top-k, expert "
                                                          "kernels, shared experts), seconds")
    moe_layer_unquantized_s: float | None = Field(
        default=None, ge=0, le=0.05, description="per mixture-of-experts layer of a model served unquantized (BF16, "
        "FP16: no activation-quantization kernels before the expert GEMMs), seconds; absent: moe_layer_s")
    only_with: list[Literal["dp_attention", "expert_parallel", "eplb", "speculative", "disaggregated"]] = Field(
        default_factory=list, description="empty: every deployment prefills eagerly; else only deployments using one "
        "of these (where the engine turns its prefill CUDA graphs off)")
    launch_overlap_skus: list[str] = Field(
        default_factory=list, description="SKUs on which the engine's default attention backend plans a prefill "
        "without a device sync, so an overlap scheduler launches it while the step before runs (the GPU waits only "
        "for what is left of the launch); elsewhere the host waits for that step to end first")
    mla_prefix_sync_skus: list[str] = Field(
        default_factory=list, description="of launch_overlap_skus, those where a multi-head latent attention "
        "model's prefill of prompts with cached or already computed tokens syncs the device all the same")

    def floor_s(self, arch: ModelArch, dtype: str | None = None) -> float:
        """The launch time of one prefill forward of this model in this weight dtype (None: quantized): the least a
        step with prompt tokens takes. A weight-only FP4 checkpoint's GEMMs run on 16-bit activations, as unquantized
        ones do (gpt-oss on SGLang's Blackwell path quantizes only the experts' input, once a layer)."""
        moe = arch.moe_layers if arch.is_moe else 0
        per_moe = self.moe_layer_s
        unquantized = dtype is not None and arch.compute_dtype(dtype) in UNQUANTIZED_DTYPES
        if unquantized and self.moe_layer_unquantized_s is not None:
            per_moe = self.moe_layer_unquantized_s
        return self.dense_layer_s * (arch.layers - moe) + per_moe * moe


class ReleaseFactor(Sourced):
    """How much slower (> 1) or faster an engine release's kernels ran than the tables' release, on the same GPUs
    and settings: a factor on every kernel time of the tables (not on the engine overhead)."""

    # releases a year apart differ by 10-20% on the published like-for-like tables: 0.5 or 2 is a slip
    factor: float = Field(ge=0.5, le=2.0, description="the release's kernel time over the tables' release's")


class UnpackedGqaMixedSteps(Sourced):
    """An engine that runs a step's prompts and decodes in one attention launch, on SKUs where that kernel packs a KV
    head's query heads together only for decode-only batches (FlashAttention 2's GQA swap needs max_seqlen_q == 1):
    in a step that also prefills, every query head reads its KV head apart, so decode attention costs about the
    query heads per KV head on a rank times what the tables' decode-only step does."""

    skus: list[str] = Field(min_length=1, description="the SKUs on which the engine runs that kernel")


class AbsorbedMlaExtend(Sourced):
    """An engine that runs a prefill batch in multi-head latent attention's absorbed (MQA-like) form, on these SKUs,
    when its prompts' computed tokens (a cached prefix, earlier chunks) number more than 0 and fewer than
    below_prefix_tokens in all, or when the batch has at most graph_max_tokens tokens (a piecewise CUDA graph's
    prefill, which takes that form whatever they are): each query-key pair then reads the 512-wide latent and the rope dims (K) and the latent (V) where
    the tables' MHA-form prefill reads 192 and 128, so prompt attention costs (2 x kv_lora_rank + qk_rope_head_dim) /
    (qk_nope_head_dim + qk_rope_head_dim + v_head_dim) times the tables' (3.4x for DeepSeek-V3/R1)."""

    skus: list[str] = Field(min_length=1, description="the SKUs whose default attention backend dispatches so")
    below_prefix_tokens: PositiveInt | None = Field(
        default=None, description="the batch's computed prompt tokens at which it returns to the MHA form (absent: "
                                  "computed tokens alone never make a batch run absorbed)")
    graph_max_tokens: PositiveInt | None = Field(
        default=None, description="batches of at most this many tokens run absorbed whatever their computed tokens, "
                                  "where the engine prefills as piecewise CUDA graphs (absent: none)")

    def ratio(self, arch: ModelArch) -> float:
        """The absorbed form's attention work per query-key pair over the MHA form's (1: not a latent-attention
        model)."""
        if not arch.is_mla or arch.qk_nope_head_dim is None or arch.v_head_dim is None:
            return 1.0
        assert arch.kv_lora_rank is not None and arch.qk_rope_head_dim is not None
        absorbed = 2 * arch.kv_lora_rank + arch.qk_rope_head_dim
        return absorbed / (arch.qk_nope_head_dim + arch.qk_rope_head_dim + arch.v_head_dim)


class TritonBf16Moe(Sourced):
    """An engine that runs unquantized (BF16) mixture-of-experts layers with the Triton fused_moe kernel where the
    tables' release runs another (SGLang before 0.5.8 on Blackwell, where 0.5.14's tables time FlashInfer's
    TensorRT-LLM MoE): BF16 MoE records that carry a Triton curve (linear_ms_triton_moe, derived from the SDK's
    measured Triton fused_moe rows) are priced with it; the others as the tables hold them."""


class DpAttentionGraphPadding(Sourced):
    """An engine whose decode steps with data-parallel attention replay CUDA graphs captured only at batch sizes that
    are multiples of an attention rank's tensor-parallel size, every rank padded to the largest rank's batch (idle
    ranks run padded batches too) before the tokens are gathered for the MoE and dense MLP layers: the step's
    per-token work (the tables' linear part and LM head) runs at each rank's batch rounded up to that multiple."""


class UntunedBlockFp8Gemm(Sourced):
    """An engine whose block-scaled FP8 linear layers run a GEMM kernel with one generic configuration on these
    SKUs (SGLang's aiter Triton gemm_a8w8_blockscale on gfx942 before aiter shipped tuned ones): every call runs
    `tile` x `tile` output tiles, one workgroup each, each looping over K in `tile`-wide steps of `k_step_s`, at most
    `compute_units` at a time, so a small-M call takes (K / tile) x k_step_s however few bytes it reads. The roofline
    charges each such GEMM of an MLA model (the fused q_a/kv_a down-projection, q_b, o_proj) what this exceeds its
    own price by."""

    skus: list[str] = Field(min_length=1, description="the SKUs on which the engine runs that kernel untuned")
    tile: PositiveInt = Field(default=128, le=1024, description="BLOCK_SIZE_M = BLOCK_SIZE_N = BLOCK_SIZE_K")
    k_step_s: float = Field(gt=0, le=1e-3, description="one workgroup's time per K step, seconds")
    compute_units: PositiveInt = Field(le=4096, description="workgroups that run at once (one per compute unit)")


class AllReduceLatency(Sourced):
    """What one tensor-parallel all-reduce of a one-token message takes in an engine that runs an all-reduce unlike
    the tables' release (TensorRT-engine builds: TensorRT-LLM's all-reduce plugin, unfused, where the tables hold
    1.x's kernels in CUDA graphs): where it exceeds the tables' one-token all-reduce, every all-reduce of a step costs
    the difference more (a latency: the same at every message size). Measured on one SKU, applied to every SKU with
    tables (the source says which)."""

    # measured small-message all-reduces on NVLink are 3-25 us: a millisecond is a unit slip
    us_by_tp: dict[Annotated[int, Field(ge=2)], Annotated[float, Field(gt=0, le=1000)]] = Field(
        min_length=1, description="microseconds per one-token all-reduce by TP size: the largest key <= tp applies")

    def at_tp_s(self, tp: int) -> float:
        """Seconds for this TP (0 below the smallest key: no all-reduce to price)."""
        keys = [k for k in self.us_by_tp if k <= tp]
        return self.us_by_tp[max(keys)] * 1e-6 if keys else 0.0


class FrontEndWork(_Strict):
    """CPU work a serving front end (the engine's API server: HTTP, chat template, tokenization, detokenization, a
    streamed chunk per token) does per request, in seconds of one core. A replica's front end runs on
    `cores_per_replica` cores shared by all its requests (sim/front_end.py): once saturated it caps the streamed
    tokens per second and requests wait before the engine sees them."""

    # measured per-token costs of Python front ends are tens of microseconds: a millisecond is a unit slip
    per_request_s: float = Field(ge=0, le=0.1, description="per request (parse, validate, template, hand to the "
                                 "engine, finish the response), seconds")
    per_input_token_s: float = Field(default=0.0, ge=0, le=1e-4, description="per prompt token (tokenization), "
                                     "seconds")
    per_output_token_s: float = Field(ge=0, le=1e-3, description="per streamed output token (detokenize, format "
                                      "and send a chunk), seconds")
    cores_per_replica: float = Field(default=1.0, gt=0, le=256, description="cores a replica's front end has (its "
                                     "worker processes)")
    ingress: Literal["in_order", "shared"] | None = Field(
        default=None, description="how requests arriving together are read: in_order, one after another (a handler "
        "runs to its end once started: SGLang's TokenizerManager, so a burst's first request reaches the engine "
        "alone); shared, all at once (an event loop that runs every ready handler's next step each pass, as vLLM's "
        "API server: a burst's requests all reach the engine near the end of its reading); left out: the engine "
        "preset's front end's, else shared on vLLM's presets and in_order on the others")

    def ingress_s(self, input_tokens: float) -> float:
        """Work before the engine sees a request."""
        return self.per_request_s + self.per_input_token_s * input_tokens

    def request_s(self, input_tokens: float, output_tokens: float) -> float:
        """All of a request's work: reading it and streaming its answer."""
        return self.ingress_s(input_tokens) + self.per_output_token_s * output_tokens



class FrontEndPrior(FrontEndWork, Sourced):
    """An engine version's front-end work, with where it comes from (a prior until a sweep fit measures it)."""


class OlderMoe(Sourced):
    """An engine release older than the tables' whose mixture-of-experts kernels the SDK measured too, on some SKUs:
    records derived with that release's MoE rows carry a second curve (linear_ms_older_moe) that replaces theirs."""

    release: str = Field(min_length=1, description="the release whose MoE rows the curve was composed with")
    skus: list[str] = Field(min_length=1, description="the SKUs whose tables carry that curve")


class EngineKernels(_Strict):
    """Which measured kernels an engine runs (hardware_profiles/kernels/<sku>.json.gz, by framework) and what it
    adds per step around them."""

    framework: Literal["vllm", "sglang", "trtllm"] = Field(
        description="whose kernels to read from the SKU's tables (hardware_profiles/kernels/<sku>.json.gz)")
    version: str = Field(min_length=1, description="the engine version the overhead describes")
    overhead: EngineOverhead = Field(
        description="per-step time the engine adds around the kernels (a prior until calibration fits one)")
    release_factor: ReleaseFactor | None = Field(
        default=None, description="an older release whose kernels ran slower than the tables' release: every kernel "
                                  "time times this factor (absent: the tables as measured)")
    allreduce_latency: AllReduceLatency | None = Field(
        default=None, description="an engine whose tensor-parallel all-reduce is slower than the tables' at one token "
                                  "(absent: the tables' all-reduce)")
    stand_in: list[Literal["vllm", "sglang", "trtllm"]] = Field(
        default_factory=list, description="frameworks whose tables stand in, in this order, where the framework's own "
        "lack the model or layout (another engine's measured kernels of the same model, with this engine's overhead, "
        "rather than the roofline); the step time's label says so")
    unpacked_gqa_mixed_steps: UnpackedGqaMixedSteps | None = Field(
        default=None, description="SKUs on which a step that also prefills reads each KV head once per query head "
                                  "(absent: decode attention as in a decode-only step)")
    untuned_block_fp8_gemm: UntunedBlockFp8Gemm | None = Field(
        default=None, description="SKUs on which block-FP8 GEMMs run one generic kernel configuration, priced on the "
                                  "roofline (absent: none)")
    triton_bf16_moe: TritonBf16Moe | None = Field(
        default=None, description="BF16 MoE layers on the Triton fused_moe kernel: the tables' Triton curve where a "
                                  "record has one (absent: the MoE kernel the tables' release runs)")
    absorbed_mla_extend: list[AbsorbedMlaExtend] = Field(
        default_factory=list, description="SKUs on which a latent-attention model's prefill batch with some computed "
        "prompt tokens runs attention in the absorbed form (absent: the tables' MHA form always)")
    older_moe: OlderMoe | None = Field(
        default=None, description="MoE layers priced with an older release's measured kernels on these SKUs, where a "
                                  "record carries that curve (absent: the tables' release)")
    dp_attention_graph_padding: DpAttentionGraphPadding | None = Field(
        default=None, description="with data-parallel attention, each rank's decode batch padded to a multiple of its "
        "attention TP size for the per-token work (absent: the ranks' real batches)")


class EngineMemory(Sourced):
    """How a serving engine sizes its KV cache at start-up (applied by hardware/memory.py).

    fraction_of_total (vLLM): KV = f x total - weights - activation - non_torch - cuda_graph.
    fraction_of_free (TensorRT-LLM): KV = f x (total - weights - activation - non_torch - cuda_graph).
    sglang_reserve (SGLang 0.5): KV = f x (total - non_torch) - weights - activation, f computed from the device as
    SGLang does (SGLang applies f to the memory free once its distributed runtime is up).
    total is what the engine sees (Spec.memory.engine_total_bytes). A deployment's gpu_memory_utilization, when
    the scenario sets it, replaces f."""

    rule: Literal["fraction_of_total", "fraction_of_free", "sglang_reserve"] = Field(
        default="fraction_of_total",
        description="sglang_reserve: KV = f x (total - non_torch) - weights - activation, with SGLang's own default "
                    "fraction f = (total - reserved) / total, reserved from the prefill chunk, CUDA-graph batch, TP size "
                    "and DP attention (hardware/memory.py sglang_mem_fraction); `fraction` only when the device's "
                    "memory is unknown")
    fraction: Annotated[float, Field(gt=0, le=1)] = Field(description="the engine's default fraction")
    fraction_by_tp: dict[PositiveInt, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict, description="default fraction by TP size: the largest key <= tp wins (SGLang)")
    profile_activation: bool = Field(
        default=True, description="subtract the activation peak of a dummy forward at max_num_batched_tokens plus the "
                                  "sampler's logits at max_num_seqs (vLLM's profile run)")
    sampler_bytes_per_logit: NonNegativeFloat = Field(
        default=0.0, description="sampler workspace per (sequence x vocabulary entry) in the profile run (fitted)")
    reserve_gib: NonNegativeFloat = Field(default=0.0, description="a flat activation reserve per device, GiB")
    activation_factor: float = Field(
        default=1.0, gt=0, le=10, description="the engine's activation memory per token over the profile-run forward "
                                              "estimate (hardware/memory.py activation_peak_bytes)")
    non_torch_gib_by_tp: dict[PositiveInt, NonNegativeFloat] = Field(
        default_factory=dict, description="memory outside PyTorch's allocator (NCCL buffers, CUDA context extras) per "
                                          "device, GiB, by TP size: the largest key <= tp wins")
    cuda_graph_gib: NonNegativeFloat = Field(default=0.0, description="CUDA graph pool kept out of the KV cache, GiB")

    @model_validator(mode="after")
    def _factor_needs_a_profile(self) -> "EngineMemory":
        if self.activation_factor != 1.0 and not self.profile_activation:
            raise ValueError("activation_factor scales the profiled activation: it needs profile_activation true")
        return self

    def fraction_for(self, tp: int) -> float:
        keys = [k for k in self.fraction_by_tp if k <= tp]
        return self.fraction_by_tp[max(keys)] if keys else self.fraction

    def non_torch_gib(self, tp: int) -> float:
        keys = [k for k in self.non_torch_gib_by_tp if k <= tp]
        return self.non_torch_gib_by_tp[max(keys)] if keys else 0.0


class EngineLicence(Sourced):
    """A software licence an engine needs in production, paid per accelerator running it (e.g. NVIDIA AI
    Enterprise for NIM). Charged on cloud and owned pools alike: a cloud rental price does not include it unless
    the price book's row says so (`includes_licences`)."""

    name: str = Field(min_length=1, description="the licence, as price rows and the assumptions table name it")
    usd_per_accel_year: NonNegativeFloat = Field(description="per accelerator running the engine, per year")


class EnginePreset(Sourced):
    """A serving engine's scheduler defaults and per-step overhead (data, not code branches)."""

    name: str = Field(description="engine name that deployments' engine refers to")
    description: str = Field(default="", description="free text for readers")
    step_overhead_multiplier: PositiveFloat = Field(
        default=1.0, description="factor on the SKU roofline's step_overhead_s for this engine; source / as_of say "
        "where it comes from")
    max_num_seqs_built: PositiveInt | None = Field(
        default=None, description="AOT engines: the batch size the engine was built for (an upper bound)"
    )
    attention_dp: bool = Field(
        default=True, description="whether the engine runs attention data-parallel over ranks (dp_attention): "
        "false for releases without it, where a deployment that sets dp_attention is warned")
    decodes_in_budget: bool = Field(
        default=True, description="whether a step's decodes count against max_num_batched_tokens, so max_num_seqs "
        "may not exceed it (vLLM checks so at start-up and holds its default to the budget); false where the budget "
        "bounds prefill batches only (SGLang's chunked_prefill_size: its decode batches run beside no prefill)")
    kv_cache_auto: Literal["weights", "activations"] = Field(
        default="weights", description="what the engine keeps the KV cache in when started without a KV dtype: the "
        "activations' (vLLM's --kv-cache-dtype auto; SGLang's, unless the checkpoint names an FP8 cache), or what "
        "quantized checkpoints for it name, taken as the weights' (ModelOpt checkpoints for TensorRT-LLM). A deployment "
        "of quantized weights that leaves kv_dtype out is simulated with the weights' dtype and, on an `activations` "
        "engine, warned about")
    defaults: EngineDefaults = Field(
        default_factory=EngineDefaults, description="scheduler settings deployments get when the scenario leaves them "
        "out")
    kernels: EngineKernels | None = Field(
        default=None, description="measured-kernel step time for the SKUs and models the tables cover (else roofline)")
    memory: EngineMemory | None = Field(
        default=None, description="how the engine sizes its KV cache at start-up; absent: vLLM's rule")
    licence: EngineLicence | None = Field(
        default=None, description="a per-accelerator licence production use needs; absent: none (open source)")
    front_end: FrontEndPrior | None = Field(
        default=None, description="CPU work of the engine's API server per request and token, shared by a replica's "
        "requests (absent: the front end is not a bottleneck)")
    eager_prefill: EagerPrefill | None = Field(
        default=None, description="prefill forwards run without CUDA graphs: their kernel launch time bounds a step "
        "with prompt tokens from below (kernel tables and the roofline until calibration fits the deployment)")

    def holds_seqs_to_budget(self, schedule: str | None = None) -> bool:
        """Whether max_num_seqs may not exceed max_num_batched_tokens: the engine counts a step's decodes in its
        budget, or the deployment schedules decode-first (`schedule`, else the preset's), where the simulator does."""
        return self.decodes_in_budget or (schedule or self.defaults.schedule or "decode_first") == "decode_first"


class EngineCatalog(_Strict):
    engines: list[EnginePreset] = Field(description="engine presets deployments choose from")
