"""The scenario schema: pools, deployments, traffic, routing, simulation settings, cost assumptions.

The schema is the documentation: every field has a type, bounds and a description, and unknown
fields are rejected (extra="forbid").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from simfactory.config.agent import AgentWorkload, KvRetention
from simfactory.config.autoscale import Autoscaling
from simfactory.config.base import StrictModel
from simfactory.config.cache import KeyedCache, Label
from simfactory.config.cost_stack import CostStack
from simfactory.config.faults import Faults
from simfactory.config.distributions import Distribution, Fixed, TokenCounts
from simfactory.config.limits import (  # MAX_REPLICAS and MAX_ACCELERATORS are also imported from here
    MAX_ACCELERATORS, MAX_ARRIVAL_CV, MAX_BLOCK_SIZE, MAX_CLOSED_LOOP_CLIENTS, MAX_FRONT_END_S, MAX_KV_OVERCOMMIT, MAX_PREFIX_VARIANTS, MAX_RATE_MULTIPLIER,
    MAX_REPLICAS, MAX_SESSIONS, MAX_SIMULATED_S, MAX_TIMELINE_SAMPLES, MAX_TOKENS, MIN_ARRIVAL_CV, MIN_BANDWIDTH,
    MAX_SCHEDULE_WINDOWS, MAX_WEIBULL_SHAPE, MIN_PERIOD_S, MIN_WEIBULL_SHAPE,
)
from simfactory.config.prices import OnPremOverrides, Pricing
from simfactory.config.profile import AsOf, DType, FrontEndWork, ModelArch
from simfactory.config.training import TrainingJob
from simfactory.config.routing import Admission, Routing, ServiceClass, Tenant
from simfactory.config.sharding import Sharding

LengthCorrelation = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)]


class _Strict(StrictModel):
    pass


class Pool(_Strict):
    name: Name = Field(
        description="pool name that deployments, faults and training jobs refer to (letters, digits, . _ -)")
    sku: str = Field(description="hardware profile name (file hardware_profiles/<sku>.yaml)")
    count: PositiveInt = Field(le=MAX_ACCELERATORS, description="number of accelerators in the pool")
    location: Literal["cloud", "on_prem"] = Field(
        description="cloud: rented per accelerator-hour; on_prem: owned (depreciation, energy, hosting, staff)")
    region: Name = Field(default="default", description="where the pool is: picks the provider's price-book row for "
                         "this region; network latency and egress only as `network` configures them")
    provider: str | None = Field(
        default=None,
        description="cloud provider in the price book (hardware_profiles/prices.yaml); unset: the profile's on-demand price",
    )
    pricing: Pricing = Field(default="on_demand", description="cloud contract: on_demand, reserved_1y, reserved_3y or spot")
    cloud_usd_per_accel_hour: NonNegativeFloat | None = Field(
        default=None, description="override the price book's / profile's cloud price"
    )
    spot_interruptions_per_hour: NonNegativeFloat | None = Field(
        default=None, description="override the price book's spot reclamation rate (per replica-hour)"
    )
    spot_restart_s: NonNegativeFloat = Field(
        default=180.0,
        description="replica time lost per spot reclamation besides in-flight work: new instance, weights load, warm-up",
    )
    server_usd_per_accel: NonNegativeFloat | None = Field(
        default=None,
        description="override on-prem capex per accelerator, all-in (accelerator + its share of host, network, storage)",
    )
    software_usd_per_accel_year: NonNegativeFloat | None = Field(
        default=None,
        description="software licences per accelerator-year on every accelerator of this pool, cloud or owned, "
                    "replacing the licences of the engines it runs (engines.yaml `licence`)",
    )
    on_prem: OnPremOverrides = Field(
        default_factory=OnPremOverrides, description="this pool's own on-prem assumptions, each replacing the price "
        "book's figure")
    scale_out_gb_s: Annotated[float, Field(ge=MIN_BANDWIDTH, le=100_000)] | None = Field(
        default=None, description="this pool's scale-out network per accelerator, GB/s per direction (its NIC: "
        "400 Gb/s NDR = 50), replacing the SKU profile's spec.scale_out_gb_s for everything on the pool")

    @model_validator(mode="after")
    def _pricing_needs_provider(self) -> "Pool":
        if self.software_usd_per_accel_year is not None and self.on_prem.software_usd_per_accel_year is not None:
            raise ValueError("software_usd_per_accel_year: set it once, on the pool (on_prem.software_usd_per_accel_year "
                             "is the older spelling)")
        if self.location == "cloud" and self.pricing != "on_demand" and self.provider is None and self.cloud_usd_per_accel_hour is None:
            raise ValueError(f"pricing {self.pricing!r} needs a provider from the price book (or cloud_usd_per_accel_hour)")
        if self.location == "on_prem" and (self.provider is not None or self.pricing != "on_demand"):
            raise ValueError("provider and pricing apply to cloud pools only")
        return self


class SpeculativeDecoding(_Strict):
    """k speculative tokens per step, verified by the target model. Acceptance: `acceptance`, the probability each
    draft token is accepted, or `acceptance_by_position`, the probability draft token i is accepted once tokens
    1..i-1 were (what multi-token-prediction heads show: a head reused for later drafts guesses worse). The draft is
    another model (`draft_model`, served beside the target on the same devices), a cheap proposer costing
    `draft_step_fraction` of a target decode step (n-gram: ~0, EAGLE-style heads: a few percent), or the model's own
    multi-token-prediction module (`mtp: true`, DeepSeek-V3/R1), priced as one more decoder layer plus the LM head."""

    k: Annotated[int, Field(ge=1, le=16)] = Field(
        description="draft tokens proposed per step (1-16), verified in one target pass")
    acceptance: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None, description="probability (0-1) that each draft token is accepted, the same at every position")
    acceptance_by_position: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        default=None, description="conditional acceptance of draft token 1..k (k values); TensorRT-LLM measured "
                                  "~0.92, 0.72, 0.36 for DeepSeek-R1's MTP with 3 drafts (1.92 / 2.58 / 2.82 tokens "
                                  "per step at 1 / 2 / 3 drafts)")
    draft_model: str | None = Field(
        default=None, description="draft model id (models.yaml), served beside the target on the same devices")
    draft_step_fraction: NonNegativeFloat = Field(
        default=0.0, description="one draft step's cost as a fraction of a target decode step (n-gram ~0, EAGLE-style "
        "heads a few percent)")
    mtp: bool = Field(
        default=False, description="draft with the model's own multi-token-prediction module (models.yaml mtp_modules "
        "> 0)")

    @model_validator(mode="after")
    def _one_draft(self) -> "SpeculativeDecoding":
        if sum((self.draft_model is not None, bool(self.draft_step_fraction), self.mtp)) > 1:
            raise ValueError("give one of draft_model, draft_step_fraction or mtp")
        if (self.acceptance is None) == (self.acceptance_by_position is None):
            raise ValueError("acceptance: give acceptance or acceptance_by_position (one of them)")
        if self.acceptance_by_position is not None and len(self.acceptance_by_position) != self.k:
            raise ValueError(f"acceptance_by_position: {len(self.acceptance_by_position)} values for k = {self.k} "
                             "draft tokens")
        return self

    def acceptances(self) -> tuple[float, ...]:
        """The conditional acceptance of each of the k draft positions."""
        if self.acceptance_by_position is not None:
            return tuple(self.acceptance_by_position)
        assert self.acceptance is not None
        return (self.acceptance,) * self.k


class PrefillShape(_Strict):
    """How the prefill replicas of a disaggregated deployment are built when they differ from its decode replicas
    (the Dynamo / llm-d / SGLang PD pattern): their pool (another SKU or another rack) and parallel degrees. What is
    left out is the deployment's own."""

    pool: str | None = Field(
        default=None, description="the pool (pools[].name) of the prefill replicas; unset: the deployment's")
    tp: PositiveInt | None = Field(
        default=None, le=MAX_ACCELERATORS, description="tensor-parallel degree of a prefill replica; unset: the "
        "deployment's")
    dp_attention: PositiveInt | None = Field(
        default=None, le=MAX_ACCELERATORS, description="attention data-parallel groups of a prefill replica; unset: "
        "the deployment's")
    ep: PositiveInt | None = Field(
        default=None, le=MAX_ACCELERATORS, description="expert-parallel degree of a prefill replica; unset: the "
        "deployment's")
    expert_imbalance: Annotated[float, Field(ge=1.0, le=16.0)] | None = Field(
        default=None, description="MoE load skew of the prefill replicas (as the deployment's expert_imbalance); "
        "unset: the deployment's")
    eplb: bool | None = Field(
        default=None, description="an expert load balancer on the prefill replicas; unset: the deployment's")
    max_num_batched_tokens: PositiveInt | None = Field(
        default=None, le=MAX_TOKENS, description="token budget of one prefill replica's step; unset: the deployment's")


class Disaggregation(_Strict):
    """Split prefill and decode (Splitwise / DistServe / Dynamo): `prefill_replicas` replicas only prefill (shaped
    as the deployment's replicas unless `prefill` says otherwise); the deployment's `replicas` only decode. Each
    request's KV cache moves once, prefill -> decode, input tokens x the model's KV bytes per token, over a link of
    `kv_link_gb_s` (per direction) plus `kv_link_latency_s`. Left out, the link follows the placement: the scale-up
    link (NVLink) when the deployment's prefill and decode devices share one pool and fit one scale-up domain, else
    the scale-out network (NICs); either way per device, times the devices of the smaller replica (each device sends
    its own shard)."""

    prefill_replicas: PositiveInt = Field(le=MAX_REPLICAS, description="replicas that only prefill")
    prefill: PrefillShape | None = Field(
        default=None, description="the prefill replicas' pool and parallel degrees where they differ from the "
        "deployment's")
    kv_link_gb_s: Annotated[float, Field(ge=MIN_BANDWIDTH)] | None = Field(
        default=None, description="KV transfer bandwidth between a prefill and a decode replica; default from the "
                                  "placement (see above)")
    kv_link_latency_s: NonNegativeFloat | None = Field(
        default=None, description="latency of one KV transfer, seconds; unset: the placement's link latency (0 with "
        "kv_link_gb_s)")


class Reservation(_Strict):
    """A capacity slice: these replicas serve only the named service class (the rest serve everyone)."""

    service_class: str = Field(description="the service class (service_classes[].name) these replicas serve")
    replicas: PositiveInt = Field(le=MAX_REPLICAS, description="how many of the deployment's replicas are kept for it")


def kv_dtype_for(dtype: str, kv_dtype: str | None = None, arch: ModelArch | None = None) -> str:
    """The KV-cache dtype of a deployment: as set, else the weights' dtype (int4 weights keep a bf16 cache, fp4
    weights an fp8 one, as NVFP4 checkpoints ship; a weight-only FP4 checkpoint, gpt-oss's, names no KV quantization:
    its 16-bit activations' bf16)."""
    if kv_dtype:
        return kv_dtype
    if arch is not None and arch.weight_only_fp4(dtype):
        return "bf16"
    return {"int4": "bf16", "fp4": "fp8"}.get(dtype, dtype)


class Deployment(_Strict):
    """A model served by N replicas, each on `tp` accelerators of one pool (vLLM's knobs and names)."""

    name: Name = Field(description="deployment name that classes, routes and reports refer to (letters, digits, . _ -)")
    model: str = Field(description="model id from hardware_profiles/models.yaml")
    pool: str = Field(description="the pool (pools[].name) whose accelerators the replicas run on")
    replicas: PositiveInt = Field(le=MAX_REPLICAS, description="model replicas (each its own engine in the simulation)")
    tp: PositiveInt = Field(default=1, le=MAX_ACCELERATORS, description="tensor parallel degree")
    pp: PositiveInt = Field(
        default=1, le=MAX_ACCELERATORS, description="pipeline stages: a replica uses tp x pp devices and keeps pp micro-batches in flight"
    )
    expert_parallel: bool = Field(default=False, description="MoE: experts spread over the TP group (all-to-all); "
                                                             "the same as ep: tp")
    ep: PositiveInt | None = Field(
        default=None, le=MAX_ACCELERATORS,
        description="MoE: expert-parallel degree, dividing tp (SGLang/TensorRT-LLM ep_size): each MoE layer's experts "
                    "spread over ep devices, tokens dispatched to them and combined back by all-to-all; default tp "
                    "with expert_parallel, else 1 (experts tensor-parallel)")
    dp_attention: PositiveInt = Field(
        default=1, le=MAX_ACCELERATORS,
        description="attention data-parallel groups, dividing tp (SGLang --dp with --enable-dp-attention, "
                    "TensorRT-LLM enable_attention_dp): each group runs attention for its own sequences with "
                    "tp / dp_attention-way tensor parallelism, so attention weights are held dp_attention times and "
                    "an MLA latent lives on one group instead of on every device")
    expert_imbalance: Annotated[float, Field(ge=1.0, le=16.0)] | None = Field(
        default=None,
        description="MoE with ep > 1: the busiest expert-parallel rank's token load over the mean; it sets the MoE "
                    "layers' compute and all-to-all time. Default: the published figure for the ep (hardware/moe.py: "
                    "2.56 at EP32 without a balancer, 1.11 with EPLB)")
    eplb: bool = Field(default=False, description="MoE: an expert load balancer places redundant experts (DeepSeek "
                                                  "EPLB; SGLang --enable-eplb; TensorRT-LLM online EPLB), which "
                                                  "lowers the default expert_imbalance")
    dtype: DType = Field(
        default="bf16", description="weights and compute dtype: bytes per parameter (bf16/fp16 2, fp8/int8 1, "
        "int4/fp4 0.5) and which peak TFLOPS the roofline uses")
    kv_dtype: DType | None = Field(default=None,
                                   description="KV-cache dtype; defaults to dtype (int4 -> bf16, fp4 -> fp8)")
    engine: str = Field(default="vllm", description="an engine preset from hardware_profiles/engines.yaml")
    step_time_source: Literal["auto", "kernels", "roofline"] = Field(
        default="auto",
        description="auto: a calibrated step-time entry for this (model, engine, dtype, TP, parallel layout) if the profile has one, "
        "else measured kernel tables (hardware_profiles/kernels) plus the engine's overhead where they cover the "
        "SKU, model, dtype and TP, else the roofline; kernels: the tables or an error saying what they lack; "
        "roofline: the SKU's roofline even where tables exist (a what-if)",
    )
    max_num_seqs: PositiveInt = Field(
        default=256, le=MAX_TOKENS, description="most sequences running at once per replica (vLLM's max_num_seqs; "
        "with dp_attention, all ranks together); left out: the engine preset's default (times dp_attention where "
        "the preset's is each rank's: engines.yaml defaults.per_attention_rank)")
    max_num_batched_tokens: PositiveInt = Field(
        default=8192, le=MAX_TOKENS, description="tokens one engine step may compute per replica, decodes and prefill "
        "chunks together, at least max_num_seqs (prefill chunks only where the engine preset's decodes_in_budget is "
        "false, as SGLang's chunked_prefill_size; with dp_attention, all attention ranks together: each rank chunks a "
        "prompt within its 1/dp_attention share, as SGLang divides chunked_prefill_size by dp_size; for "
        "TensorRT-LLM's or vLLM's per-rank budget give it times the ranks); left out: the engine preset's default "
        "(times dp_attention where the preset's is each rank's)")
    enable_chunked_prefill: bool = Field(
        default=True, description="split long prompts over several steps; false: a prompt prefills in one step, and a "
        "request whose prompt + output exceed max_num_batched_tokens is rejected; left out: the engine preset's "
        "default")
    kv_admission: Literal["first_chunk", "full_sequence"] = Field(
        default="first_chunk",
        description="first_chunk: admit when the first chunk's KV blocks are free, preempt later if memory runs "
        "out (vLLM); full_sequence: admit only when the whole prompt + output fits beside what running requests "
        "will need, so nothing is preempted for memory (TensorRT-LLM's GUARANTEED_NO_EVICT; preemptive_priority still "
        "preempts less urgent work, reservations included, for an urgent request)",
    )
    max_num_partial_prefills: PositiveInt = Field(
        default=1, description="prompts being prefilled in chunks at once (vLLM's max_num_partial_prefills)"
    )
    schedule: Literal["decode_first", "prefill_first"] = Field(
        default="decode_first",
        description="decode_first: running decodes get their token each step, then prefills (vLLM v1); "
        "prefill_first: a step that can admit waiting prompts, or continue a chunked one, runs only prefills, pausing "
        "decodes (vLLM v0; SGLang without mixed chunks)",
    )
    overlap_schedule: bool = Field(
        default=False,
        description="the engine forms step n + 1 while step n runs (SGLang's overlap scheduler, TensorRT-LLM's "
        "overlap scheduler, vLLM's async scheduling), so a request that arrives during a step waits one more step "
        "before its prefill; left out: the engine preset's default",
    )
    delayed_first_token: bool = Field(
        default=False,
        description="a prompt's first token reaches the client at the end of the step after the one that computed it "
        "when that step only decodes (SGLang's overlap scheduler launches the next batch before it processes a "
        "prefill's result), once the next step is launched when that one prefills too (an eager prefill's launch "
        "time, the prefill floor; at once where prefills replay graphs); replicas that only prefill "
        "(disaggregated) hand it over at once; only with overlap_schedule, its cause; left out: the engine preset's "
        "default",
    )
    block_size: PositiveInt = Field(
        default=16, le=MAX_BLOCK_SIZE, description="tokens per KV block (page); left out: the engine preset's for the "
        "model and GPU (vLLM 16, 64 or 128 for latent attention on Hopper or Blackwell; SGLang 1, 64 on Blackwell; "
        "TensorRT-LLM 32), else 16")
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.9, description="fraction (0-1] of device memory the engine may use (vLLM's knob), read only when "
        "set: left out, the engine preset's memory rule sizes the KV cache")
    kv_cache_tokens: PositiveInt | None = Field(
        default=None, description="override the KV capacity derived from device memory (per replica; a warning "
        f"when it exceeds what the devices hold, an error past {MAX_KV_OVERCOMMIT:g}x their memory)"
    )
    max_model_len: PositiveInt | None = Field(
        default=None, le=MAX_TOKENS, description="longest prompt+output accepted; defaults to the model's context"
    )
    speculative: SpeculativeDecoding | None = Field(default=None, description="speculative decoding; unset: none")
    disaggregated: Disaggregation | None = Field(
        default=None, description="separate prefill and decode replicas; unset: every replica does both")
    preemption_mode: Literal["recompute", "swap"] = Field(
        default="recompute",
        description="recompute: free a preempted request's KV and prefill it again; swap: copy its KV to host "
        "memory and back over the host link (no recompute)",
    )
    reuse_preempted_kv: Literal["none", "computed", "prompt"] = Field(
        default="none",
        description="what of a request preempted by recompute is still cached when it is admitted again, all but "
        "what allocations have overwritten since: computed: every full KV block it had computed, prompt and answer "
        "(vLLM V1's prefix caching, on by default, keeps freed blocks until they are reused, the freed request's "
        "tail first); prompt: its prompt's blocks (SGLang's radix cache holds a prompt once prefilled and frees the "
        "answer's tokens on a retraction); none: it recomputes everything; left out: the engine preset's default",
    )
    host_link_gb_s: float = Field(
        default=50.0, ge=MIN_BANDWIDTH,
        description="device <-> host bandwidth per direction for swapping and the host KV tier; PCIe 5.0 x16 is "
        "~63 GB/s per direction (PCI-SIG), 50 effective is an assumption",
    )
    prefix_cache_host_tokens: NonNegativeInt = Field(
        default=0, description="a second, host-memory tier of the prefix cache (tokens); hits load over the host link"
    )
    prefix_cache_ssd_tokens: NonNegativeInt = Field(
        default=0, description="a third, SSD tier of the prefix cache (tokens), below the host tier"
    )
    ssd_gb_s: float = Field(
        default=6.0, ge=MIN_BANDWIDTH,
        description="SSD read bandwidth for the SSD tier; a PCIe 4.0 x4 NVMe drive reads ~7 GB/s sequentially "
        "(~7.9 GB/s link), 6 effective is an assumption",
    )
    prefix_cache_tokens: NonNegativeInt = Field(
        default=0, description="prefix (KV) cache per replica, in tokens, LRU; 0 disables it"
    )
    front_end_s: float = Field(
        default=0.0, ge=0, le=MAX_FRONT_END_S, allow_inf_nan=False,
        description="time the serving front end adds to every request before the engine sees it (HTTP, tokenization, "
        "an inference server's pre- and post-processing such as Triton's ensemble), seconds: in TTFT and E2E, not in "
        "queue time; 0: not modelled (the engine's own API server is taken as free); left out: the engine preset's "
        "default (the sglang presets have one), else 0")
    front_end_work: FrontEndWork | None = Field(
        default=None, description="the API server's CPU work per request and token, shared by a replica's requests: "
        "caps streamed tokens per second and queues requests before the engine once saturated (absent: the engine "
        "preset's, if it has one; else not modelled)")
    max_waiting: PositiveInt | None = Field(
        default=None, description="queue cap: a request arriving when this many wait is rejected (HTTP 429)"
    )
    preemptive_priority: bool = Field(
        default=False,
        description="a waiting request of a more urgent service class preempts the least urgent running one",
    )
    reserved: list["Reservation"] = Field(default_factory=list, description="replicas kept for service classes")
    autoscaling: Autoscaling | None = Field(
        default=None, description="scale replicas with load; `replicas` is then the count at t = 0"
    )

    def prefill_devices(self) -> tuple[str, int]:
        """Disaggregated: the pool of the prefill replicas and the devices each holds (the deployment's own unless
        disaggregated.prefill says otherwise); (pool, 0) when not disaggregated."""
        g = self.disaggregated
        if g is None:
            return self.pool, 0
        shape = g.prefill or PrefillShape()
        return shape.pool or self.pool, (shape.tp or self.tp) * self.pp  # a prefill replica keeps the deployment's pp

    @property
    def ep_degree(self) -> int:
        """The expert-parallel degree: ep, else tp with expert_parallel, else 1."""
        return self.ep if self.ep is not None else (self.tp if self.expert_parallel else 1)

    @model_validator(mode="after")
    def _parallel_degrees(self) -> "Deployment":
        if self.ep is not None and self.tp % self.ep:
            raise ValueError(f"ep: {self.ep} does not divide tp ({self.tp}); the expert-parallel group is part of a "
                             "replica's tp devices")
        if self.ep is not None and self.expert_parallel and self.ep != self.tp:
            raise ValueError(f"ep: expert_parallel means ep = tp ({self.tp}); give ep: {self.ep} alone")
        if self.tp % self.dp_attention:
            raise ValueError(f"dp_attention: {self.dp_attention} does not divide tp ({self.tp}); each attention group "
                             "gets tp / dp_attention devices")
        if self.dp_attention > 1 and self.pp > 1:
            raise ValueError("dp_attention: attention data parallelism is modelled with pp 1")
        return self

    @model_validator(mode="after")
    def _budget_covers_batch(self) -> "Deployment":
        # max_num_batched_tokens >= max_num_seqs is the engine preset's rule (decodes_in_budget): checked at resolve
        if self.max_num_batched_tokens < self.dp_attention:
            raise ValueError(f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= dp_attention "
                             f"({self.dp_attention}): each attention rank schedules its share of the step's tokens")
        return self


# a deployment's fields for a load measured in-process (an offline benchmark, a batch table): no API server in
# front, neither its fixed front_end_s nor its CPU work, whatever the engine preset's
NO_API_SERVER: dict[str, Any] = {"front_end_s": 0.0, "front_end_work": {"per_request_s": 0.0, "per_output_token_s": 0.0}}


class PoissonArrivals(_Strict):
    process: Literal["poisson"] = Field(default="poisson", description="selects Poisson arrivals (exponential gaps)")
    rate_per_s: PositiveFloat = Field(allow_inf_nan=False, description="mean arrivals per second")


class ConstantArrivals(_Strict):
    """Evenly spaced arrivals (D in Kendall notation)."""

    process: Literal["constant"] = Field(default="constant", description="selects evenly spaced arrivals")
    rate_per_s: PositiveFloat = Field(allow_inf_nan=False, description="arrivals per second (gaps of 1 / rate)")


class GammaArrivals(_Strict):
    """Renewal process with gamma inter-arrivals: cv > 1 is burstier than Poisson, cv < 1 smoother."""

    process: Literal["gamma"] = Field(default="gamma", description="selects gamma-distributed gaps")
    rate_per_s: PositiveFloat = Field(allow_inf_nan=False, description="mean arrivals per second")
    cv: float = Field(
        ge=MIN_ARRIVAL_CV, le=MAX_ARRIVAL_CV,
        description="coefficient of variation of the gaps (1: Poisson); a cv of c bunches ~c^2 arrivals together",
    )


class WeibullArrivals(_Strict):
    """Renewal process with Weibull inter-arrivals: shape < 1 is burstier than Poisson (many short gaps, a few
    long ones), 1 is Poisson, > 1 smoother. Production LLM inter-arrivals are better fitted by Gamma and Weibull
    than by Poisson (ServeGen, Alibaba Cloud, https://arxiv.org/abs/2505.09999, 2025; BurstGPT models Azure
    OpenAI traffic with Gamma, https://arxiv.org/abs/2401.17644)."""

    process: Literal["weibull"] = Field(default="weibull", description="selects Weibull-distributed gaps")
    rate_per_s: PositiveFloat = Field(allow_inf_nan=False, description="mean arrivals per second")
    shape: float = Field(ge=MIN_WEIBULL_SHAPE, le=MAX_WEIBULL_SHAPE,
                         description="Weibull shape k of the gaps (1: Poisson; 0.5: cv 2.24; 0.3: cv 5.4)")


class ScheduleArrivals(_Strict):
    """A rate that changes over time: `rates_per_s[i]` holds during window i (each `window_s` long), and within a
    window the gaps follow a renewal process with the window's cv (gamma or Weibull gaps), so both the swings of
    the rate and the bunching inside a window are kept. The process runs in operational time (arrivals of a
    unit-rate renewal process, stretched by each window's rate), so a burst straddling a window edge is not cut.
    `trace fit` writes one of these from a trace's per-window counts."""

    process: Literal["schedule"] = Field(default="schedule", description="selects a rate schedule in fixed windows")
    window_s: PositiveFloat = Field(allow_inf_nan=False, description="length of each window, seconds")
    rates_per_s: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        min_length=1, max_length=MAX_SCHEDULE_WINDOWS, description="arrivals per second in each window, in order")
    gaps: Literal["gamma", "weibull"] = Field(
        default="gamma", description="the family of the gaps inside a window (both have cv 1 = Poisson)")
    cv: float | list[Annotated[float, Field(ge=MIN_ARRIVAL_CV, le=MAX_ARRIVAL_CV)]] = Field(
        default=1.0, description="coefficient of variation of the gaps inside a window: one value, or one per window")
    repeat: bool = Field(default=True, description="after the last window start again at the first (a day that "
                         "repeats); false: nothing arrives after the last window")

    @model_validator(mode="after")
    def _shape(self) -> "ScheduleArrivals":
        if not any(r > 0 for r in self.rates_per_s):
            raise ValueError("rates_per_s: every rate is 0, so nothing would ever arrive")
        if isinstance(self.cv, list):
            if len(self.cv) != len(self.rates_per_s):
                raise ValueError(f"cv has {len(self.cv)} entries but rates_per_s has {len(self.rates_per_s)}")
        elif not MIN_ARRIVAL_CV <= self.cv <= MAX_ARRIVAL_CV:
            raise ValueError(f"cv must be from {MIN_ARRIVAL_CV} to {MAX_ARRIVAL_CV:g} (got {self.cv:g})")
        return self

    def cvs(self) -> list[float]:
        return list(self.cv) if isinstance(self.cv, list) else [float(self.cv)] * len(self.rates_per_s)

    def mean_rate_per_s(self) -> float:
        return sum(self.rates_per_s) / len(self.rates_per_s)


class FlashEvent(_Strict):
    """A burst: the rate is multiplied by `multiplier` during [start_s, start_s + duration_s)."""

    start_s: NonNegativeFloat = Field(allow_inf_nan=False, description="simulated time the burst begins, seconds")
    duration_s: PositiveFloat = Field(allow_inf_nan=False, description="how long it lasts, seconds")
    multiplier: Annotated[float, Field(gt=0, le=MAX_RATE_MULTIPLIER)] = Field(
        description="factor on the rate during the burst (overlapping bursts multiply)")


class DiurnalArrivals(_Strict):
    """Non-homogeneous Poisson arrivals whose rate follows the day: rate(t) = mean_rate_per_s x m(t).

    m(t) is an hourly table (24 multipliers, piecewise constant) or a sinusoid (1 + a cos(2 pi (h - peak_hour)
    / 24), a = (r - 1) / (r + 1) for a peak-to-trough ratio r), times an optional weekday multiplier, times
    any flash events. `period_s` is the length of a simulated day: 86400 for real time, less to compress a
    day into a short run (what-ifs over a day in a minute of simulated time)."""

    process: Literal["diurnal"] = Field(
        default="diurnal", description="selects a rate that follows the day (non-homogeneous Poisson)")
    mean_rate_per_s: PositiveFloat = Field(allow_inf_nan=False, description="rate when every multiplier is 1")
    period_s: float = Field(default=86400.0, ge=MIN_PERIOD_S, description="length of one simulated day")
    hourly_multipliers: Annotated[
        list[Annotated[float, Field(ge=0, le=MAX_RATE_MULTIPLIER)]], Field(min_length=24, max_length=24)
    ] | None = Field(
        default=None, description="24 multipliers, one per hour of the simulated day (piecewise constant); or "
        "peak_to_trough")
    peak_to_trough: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None = Field(
        default=None, description="ratio (>= 1) of the sinusoid's peak to its trough; or hourly_multipliers")
    peak_hour: Annotated[float, Field(ge=0, lt=24)] = Field(
        default=14.0, description="hour of the day (0-24) of the sinusoid's peak (with peak_to_trough)")
    weekday_multipliers: Annotated[
        list[Annotated[float, Field(ge=0, le=MAX_RATE_MULTIPLIER)]], Field(min_length=7, max_length=7)
    ] | None = Field(
        default=None, description="7 multipliers, one per simulated day counted from t = 0 and repeating weekly; "
        "unset: all 1")
    start_hour: Annotated[float, Field(ge=0, lt=24)] = Field(default=0.0, description="hour of day at t = 0")
    events: list[FlashEvent] = Field(
        default_factory=list, description="flash bursts multiplying the rate in time windows")

    @model_validator(mode="after")
    def _one_shape(self) -> "DiurnalArrivals":
        if (self.hourly_multipliers is None) == (self.peak_to_trough is None):
            raise ValueError("give hourly_multipliers or peak_to_trough (one shape of the day)")
        for name in ("hourly_multipliers", "weekday_multipliers"):
            m = getattr(self, name)
            if m is not None and not any(m):
                raise ValueError(f"{name}: all zero, so nothing would ever arrive; give at least one positive multiplier")
        return self

    def peak_multiplier(self) -> float:
        """The largest m(t) can be: the day's peak x the busiest weekday x every flash event (overlaps multiply)."""
        shape = max(self.hourly_multipliers) if self.hourly_multipliers is not None else (
            1.0 + (self.peak_to_trough - 1.0) / (self.peak_to_trough + 1.0))  # type: ignore[operator]
        week = max(self.weekday_multipliers) if self.weekday_multipliers is not None else 1.0
        events = 1.0
        for e in self.events:
            events *= max(1.0, e.multiplier)
        return shape * week * events


class MmppState(_Strict):
    rate_per_s: NonNegativeFloat = Field(allow_inf_nan=False, description="Poisson arrivals per second in this state")
    mean_sojourn_s: PositiveFloat = Field(
        allow_inf_nan=False, description="mean time per visit to this state (exponential), seconds")


class MmppArrivals(_Strict):
    """Markov-modulated Poisson: Poisson at the current state's rate; each state lasts an exponential time
    with its mean, then the process jumps to one of the other states uniformly. Long-run rate:
    sum(rate_i x sojourn_i) / sum(sojourn_i)."""

    process: Literal["mmpp"] = Field(default="mmpp", description="selects a Markov-modulated Poisson process")
    states: list[MmppState] = Field(min_length=2, description="the states (at least two)")

    @model_validator(mode="after")
    def _some_traffic(self) -> "MmppArrivals":
        if not any(st.rate_per_s > 0 for st in self.states):
            raise ValueError("states: every rate_per_s is 0, so nothing would ever arrive")
        return self

    def switches_per_s(self) -> float:
        """Expected state switches per second: the embedded chain is uniform, so a switch every mean sojourn."""
        return len(self.states) / sum(st.mean_sojourn_s for st in self.states)


class ClosedArrivals(_Strict):
    """Closed loop: `concurrency` clients, as benchmark clients (vllm bench serve --max-concurrency, genai-perf
    concurrency mode) and interactive users behave. Each client sends a request at time 0 (client k at k x
    ramp_up_s / concurrency with a ramp), waits until it ends
    (any outcome: completed, rejected, shed, timed out...; an agent task: until the whole task ends), thinks for
    a drawn time, then sends the next; no client sends at or after sim.horizon_s (what is in flight then drains).
    Each request's class is drawn by weight among the classes that do not replay a timestamped trace (those
    arrive at their trace's times, open loop, beside the clients). A client's sends are at least
    MIN_CLOSED_LOOP_CYCLE_S (10 ms) apart, so requests that end at once cannot loop in zero time. With `requests`,
    the clients stop once that many have been sent in all."""

    process: Literal["closed"] = Field(default="closed", description="selects a closed loop of clients")
    concurrency: int = Field(
        ge=1, le=MAX_CLOSED_LOOP_CLIENTS,
        description="number of clients, each with at most one request (or agent task) in flight",
    )
    think_time: Distribution = Field(
        default_factory=lambda: Fixed(value=0.0),
        description="seconds a client waits after its request ends before sending the next (default: fixed 0)",
    )
    requests: int | None = Field(
        default=None, ge=1,
        description="requests (or agent tasks) all clients send in total, then they stop, as a benchmark's request "
                    "count does (AIPerf --request-count, vllm bench serve --num-prompts); the last ones run with "
                    "fewer clients in flight (default: no limit, clients send until sim.horizon_s)",
    )
    ramp_up_s: float = Field(
        default=0.0, ge=0.0, le=MAX_SIMULATED_S,
        description="seconds over which the clients join: client k (from 0) sends its first request at "
                    "k x ramp_up_s / concurrency, as users arrive at a service and load tools ramp (k6's ramping "
                    "virtual users, Locust's spawn rate); 0 (default): all at time 0, as benchmark clients start",
    )


Arrivals = Annotated[
    Union[PoissonArrivals, ConstantArrivals, GammaArrivals, WeibullArrivals, ScheduleArrivals, DiurnalArrivals,
          MmppArrivals, ClosedArrivals],
    Field(discriminator="process"),
]
OpenArrivals = Annotated[
    Union[PoissonArrivals, ConstantArrivals, GammaArrivals, WeibullArrivals, ScheduleArrivals, DiurnalArrivals,
          MmppArrivals],
    Field(discriminator="process"),
]
OpenProcess = (PoissonArrivals | ConstantArrivals | GammaArrivals | WeibullArrivals | ScheduleArrivals | DiurnalArrivals
               | MmppArrivals)


def describe_arrivals(arrival: "OpenProcess | ClosedArrivals | None") -> str:
    """One line naming the arrival process and its parameters (for summaries and reports)."""
    if arrival is None:
        return "timestamped trace replay"
    if isinstance(arrival, ClosedArrivals):
        t = arrival.think_time
        think = "no think time" if isinstance(t, Fixed) and t.value == 0 else f"{t.kind} think time, mean {t.mean():g} s"
        count = "" if arrival.requests is None else f", {arrival.requests:,} requests in all"
        ramp = f", joining over {arrival.ramp_up_s:g} s" if arrival.ramp_up_s else ""
        return f"closed loop: {arrival.concurrency} clients, {think}{count}{ramp}"
    if isinstance(arrival, DiurnalArrivals):
        return f"diurnal, mean {arrival.mean_rate_per_s:g}/s over a {arrival.period_s:g} s day"
    if isinstance(arrival, MmppArrivals):
        return f"mmpp, {len(arrival.states)} states, peak {peak_rate_per_s(arrival):g}/s"
    if isinstance(arrival, GammaArrivals):
        return f"gamma, {arrival.rate_per_s:g}/s, cv {arrival.cv:g}"
    if isinstance(arrival, WeibullArrivals):
        return f"weibull, {arrival.rate_per_s:g}/s, shape {arrival.shape:g}"
    if isinstance(arrival, ScheduleArrivals):
        cvs = arrival.cvs()
        cv = f"cv {cvs[0]:g}" if len(set(cvs)) == 1 else f"cv {min(cvs):g}-{max(cvs):g}"
        return (f"schedule, {len(arrival.rates_per_s)} windows of {arrival.window_s:g} s, mean "
                f"{arrival.mean_rate_per_s():.4g}/s, peak {max(arrival.rates_per_s):.4g}/s, {arrival.gaps} gaps {cv}")
    return f"{arrival.process}, {arrival.rate_per_s:g}/s"


def peak_rate_per_s(arrival: OpenProcess) -> float:
    """The rate the arrival generator draws at: the rate; a diurnal process's peak (its thinning draws candidates
    at it); an MMPP's busiest state; a schedule's busiest window."""
    if isinstance(arrival, DiurnalArrivals):
        return arrival.mean_rate_per_s * arrival.peak_multiplier()
    if isinstance(arrival, MmppArrivals):
        return max(st.rate_per_s for st in arrival.states)
    if isinstance(arrival, ScheduleArrivals):
        return max(arrival.rates_per_s)
    return arrival.rate_per_s


class TraceSpec(_Strict):
    """Replay a public trace: arrival times (if the format has them) and token lengths per request."""

    file: str = Field(description="path, relative to the scenario file")
    format: Literal["azure", "burstgpt", "mooncake", "sharegpt", "vllm-bench"] = Field(
        description="the trace's format, which picks its parser")
    start_s: NonNegativeFloat = Field(default=0.0, description="window start, seconds after the first request")
    end_s: PositiveFloat | None = Field(default=None, description="window end (default: the whole trace)")
    speedup: PositiveFloat = Field(default=1.0, description="replay k times faster (arrival times / k)")
    sample: Annotated[float, Field(gt=0.0, le=1.0)] = Field(default=1.0, description="keep this share of rows")
    max_input_tokens: PositiveInt | None = Field(default=None, description="clip longer prompts")
    max_output_tokens: PositiveInt | None = Field(default=None, description="clip longer answers")
    spread_batches: bool = Field(
        default=False, description="when most timestamps repeat (a trace recorded on a coarse tick: Mooncake's "
        "conversation trace has 90% zero gaps, the rest ~3 s), spread each request uniformly over its tick (the median "
        "non-zero gap) instead of sending each batch at one instant; no change to a trace whose gaps are mostly non-zero")

    @model_validator(mode="after")
    def _window(self) -> "TraceSpec":
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be > start_s ({self.start_s})")
        return self


class SemanticCache(_Strict):
    """Answers a share of requests from a response cache (embedding lookup) before routing: a fixed hit_ratio, or a
    keyed cache whose hits follow from key popularity, TTL, capacity, content changes and partitions."""

    hit_ratio: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None, description="fraction (0-1) of the class's requests the cache answers (or give keyed)")
    latency_s: Distribution = Field(description="seconds a cache hit takes (its answer arrives then)")
    keyed: KeyedCache | None = Field(
        default=None, description="a keyed cache (Zipf keys, TTL, content changes, sensitivity partitions) instead "
        "of hit_ratio")
    shared_as: Label | None = Field(
        default=None, description="keyed: classes naming the same cache share its entries (their keyed settings "
        "must be equal); unset: the class's own cache")

    @model_validator(mode="after")
    def _one_model(self) -> "SemanticCache":
        if (self.hit_ratio is None) == (self.keyed is None):
            raise ValueError("give hit_ratio (a fixed share) or keyed (a keyed cache), one of them")
        if self.shared_as is not None and self.keyed is None:
            raise ValueError("shared_as names a keyed cache: give keyed")
        return self


class NetworkLink(_Strict):
    """Between two regions (both directions): one-way latency, its jitter, and egress price."""

    a: Name = Field(description="one region of the pair (pools' and classes' region)")
    b: Name = Field(description="the other region")
    latency_s: NonNegativeFloat = Field(description="one-way latency between them, seconds")
    jitter_s: NonNegativeFloat = Field(
        default=0.0, description="mean of an exponential delay added to each crossing, seconds")
    usd_per_gb: NonNegativeFloat = Field(
        default=0.0, description="egress price, USD per GB (1e9 bytes) sent either way; bytes = tokens x "
        "network.bytes_per_token")


class Network(_Strict):
    """Latency and egress between regions, only as configured here: a `links` entry for a pair of regions, else the
    defaults when set. A pair neither covers (and the same region) costs no time and no egress, so a pool's
    `region` alone (e.g. to match a price-book row) never changes latency or cost."""

    links: list[NetworkLink] = Field(
        default_factory=list, description="region pairs with their latency, jitter and egress price")
    default_latency_s: NonNegativeFloat | None = Field(
        default=None, description="one way, between regions no link lists; unset: no latency between them")
    default_usd_per_gb: NonNegativeFloat | None = Field(
        default=None, description="egress between regions no link lists; unset: free")
    bytes_per_token: PositiveFloat = Field(default=4.0, description="text bytes per token sent over the network")


class RequestClass(_Strict):
    """A kind of traffic: its share of arrivals, what each arrival is (a request with these lengths, or an
    agent task from a workload file) and which deployment serves it."""

    name: Name = Field(description="class name, reported per class (letters, digits, . _ -)")
    weight: PositiveFloat = Field(
        default=1.0, description="relative share of traffic.arrival's requests (open or closed) among the classes "
        "that share it; weight_by_hour replaces it hour by hour")
    weight_by_hour: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=24, max_length=24)] | None = Field(
        default=None,
        description="with diurnal arrivals: this class's weight in each hour of the simulated day (mixes that shift)",
    )
    target: str | None = Field(
        default=None, description="deployment or route (routing.routes) that serves this class (every model role)"
    )
    targets: dict[str, str] | None = Field(
        default=None, description="agent workloads: model role -> deployment or route (overrides target for that role)"
    )
    service_class: str | None = Field(default=None, description="a name from service_classes (priority, SLO)")
    tenant: str | None = Field(
        default=None, description="a name from tenants (rate limit, quotas, fair-share weight); reported per tenant")
    difficulty: Distribution | None = Field(
        default=None, description="request difficulty in [0, 1] for tiered routes (default 0: every tier capable)"
    )
    shared_prefix_tokens: NonNegativeInt = Field(
        default=0, le=MAX_TOKENS, description="a system prompt of this many tokens starts every prompt (added to input_tokens)"
    )
    prefix_variants: PositiveInt = Field(
        default=1, le=MAX_PREFIX_VARIANTS, description="number of distinct shared prefixes (system prompts)")
    region: Name = Field(default="default", description="where the callers (users, agent runtime) are")
    sensitivity: Label | None = Field(
        default=None, description="data-sensitivity label of this traffic (e.g. public, internal, pii): keyed caches "
        "with partition_by_sensitivity share entries only within a label")
    semantic_cache: "SemanticCache | None" = Field(
        default=None, description="a response cache in front of the router: hits never reach a model"
    )
    sessions: PositiveInt | None = Field(
        default=None, le=MAX_SESSIONS, description="requests belong to this many sessions (sticky routing, session affinity)"
    )
    workload: str | None = Field(default=None, description="name of a workload file in workloads/")
    kv_retention: KvRetention | None = Field(
        default=None, description="agent workloads: keep each task's KV cache between its LLM steps (retain) or free "
        "it (evict); overrides the workload's kv_retention (unset: the workload's, else evict)")
    trace: TraceSpec | None = Field(default=None, description="replay a trace (its arrivals and lengths)")
    input_tokens: TokenCounts | None = Field(
        default=None, description="prompt tokens per request (whole counts >= 1), given inline instead of a workload "
        "or trace")
    output_tokens: TokenCounts | None = Field(
        default=None, description="answer tokens per request (whole counts >= 1), given inline with input_tokens")
    length_correlation: LengthCorrelation | None = Field(
        default=None, description="with inline input_tokens/output_tokens: Spearman rank correlation between a "
        "request's input and output tokens (drawn through a Gaussian copula; unset: independent)")
    arrival: OpenArrivals | Literal["workload"] | None = Field(
        default=None, description="this class's own open arrival process, instead of a share of traffic.arrival "
        "(each class may have its own); 'workload': the one written in its workload file (trace fit writes one)")
    rate_scale: PositiveFloat = Field(
        default=1.0, le=MAX_RATE_MULTIPLIER, description="runs the class's own arrival process k times faster "
        "(arrival times / k, like a trace's speedup): the same pattern of swings and bursts at k times the rate")

    @model_validator(mode="after")
    def _own_arrivals(self) -> "RequestClass":
        if self.rate_scale != 1.0 and self.arrival is None:
            raise ValueError("rate_scale scales the class's own arrival process: give arrival (or scale "
                             "traffic.arrival's rate)")
        if self.length_correlation is not None and self.input_tokens is None:
            raise ValueError("length_correlation pairs inline input_tokens and output_tokens (a workload file "
                             "states its own)")
        return self

    @model_validator(mode="after")
    def _lengths_given_once(self) -> "RequestClass":
        inline = self.input_tokens is not None or self.output_tokens is not None
        sources = sum([self.workload is not None, inline, self.trace is not None])
        if sources > 1:
            raise ValueError("give one of workload, trace, or input_tokens/output_tokens")
        if self.trace is None and self.workload is None and (self.input_tokens is None or self.output_tokens is None):
            raise ValueError("needs a workload name, a trace, or both input_tokens and output_tokens")
        if self.target is None and not self.targets:
            raise ValueError("needs target (a deployment), or targets (model role -> deployment)")
        return self


class Traffic(_Strict):
    arrival: Arrivals | None = Field(
        default=None, description="arrival process of the classes that do not replay a timestamped trace: open "
        "(poisson, constant, gamma, diurnal, mmpp: a rate) or closed (a number of clients, each sending its next "
        "request when the last ends and it has thought; see ClosedArrivals)"
    )
    classes: list[RequestClass] = Field(
        min_length=1, description="the request classes: kinds of traffic, their lengths and targets")

    @model_validator(mode="after")
    def _shared_caches_agree(self) -> "Traffic":
        seen: dict[str, KeyedCache] = {}
        for i, c in enumerate(self.classes):
            cache = c.semantic_cache
            if cache is None or cache.keyed is None or cache.shared_as is None:
                continue
            first = seen.setdefault(cache.shared_as, cache.keyed)
            if first != cache.keyed:
                raise ValueError(f"classes[{i}].semantic_cache.keyed: differs from an earlier class's sharing cache "
                                 f"{cache.shared_as!r}; classes sharing a cache must give the same keyed settings")
        return self

    @model_validator(mode="after")
    def _some_class_each_hour(self) -> "Traffic":
        hourly = [c.weight_by_hour for c in self.classes]
        if all(h is not None for h in hourly):
            dead = [h for h in range(24) if not any(w[h] for w in hourly)]  # type: ignore[index]
            if dead:
                raise ValueError(f"classes: every class's weight_by_hour is 0 at hour {dead[0]}; give some class a "
                                 "positive weight in every hour")
        return self


class SimSettings(_Strict):
    horizon_s: Annotated[float, Field(gt=0, le=MAX_SIMULATED_S)] = Field(description="arrivals stop at this time")
    warmup_s: NonNegativeFloat = Field(default=0.0, description="requests arriving earlier are not measured")
    drain: bool = Field(default=True, description="after the horizon, let in-flight requests finish")
    max_drain_s: Annotated[float, Field(gt=0, le=MAX_SIMULATED_S)] = Field(
        default=3600.0, description="stop draining after this long; unfinished requests are recorded as such"
    )
    timeline_resolution_s: PositiveFloat = Field(
        default=1.0, description=f"sampling step of timelines: at most {MAX_TIMELINE_SAMPLES:,} samples over the "
        "horizon and the longest drain")
    exact: bool = Field(
        default=False, description="step every engine iteration instead of fast-forwarding decode-only stretches"
    )

    @model_validator(mode="after")
    def _window_and_samples(self) -> "SimSettings":
        if self.warmup_s >= self.horizon_s:
            raise ValueError(f"warmup_s ({self.warmup_s}) must be < horizon_s ({self.horizon_s})")
        samples = self.span_s / self.timeline_resolution_s
        if samples > MAX_TIMELINE_SAMPLES:
            raise ValueError(
                f"timeline_resolution_s: {self.timeline_resolution_s:g} s means ~{samples:.3g} timeline samples over "
                f"{self.span_s:g} s (horizon_s{' + max_drain_s' if self.drain else ''}), more than the "
                f"{MAX_TIMELINE_SAMPLES:,} one run keeps; use a coarser resolution")
        return self

    @property
    def span_s(self) -> float:
        """The longest a run can last in simulated time: the horizon, and the drain when there is one."""
        return self.horizon_s + (self.max_drain_s if self.drain else 0.0)


Criterion = Literal["performance", "utilization", "data_movement", "operational_simplicity", "lock_in_freedom"]


class Finance(_Strict):
    """How the run is priced and judged: TCO horizon, the price book, sensitivity range, scorecard weights."""

    horizon_years: Annotated[float, Field(gt=0, le=20)] = Field(default=3.0, description="TCO horizon")
    discount_rate_annual: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="annual discount rate for the TCO's present values (0.08 is 8%); None: the price "
                                  "book's finance.discount_rate_annual"
    )
    price_book: str | None = Field(
        default=None, description="a price-book YAML replacing hardware_profiles/prices.yaml (path relative to the scenario)"
    )
    sensitivity_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.2, description="tornado chart: each input moved down and up by this fraction"
    )
    target_concurrency_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.5,
        description="hybrid sizing: a replica is 'needed' per this fraction of max_num_seqs requests in flight",
    )
    scorecard_weights: dict[Criterion, NonNegativeFloat] = Field(
        default_factory=lambda: {
            "performance": 0.3,
            "utilization": 0.2,
            "data_movement": 0.15,
            "operational_simplicity": 0.2,
            "lock_in_freedom": 0.15,
        },
        description="weights of the compare scorecard (normalized to sum 1)",
    )
    scorecard_ratings: dict[Literal["operational_simplicity", "lock_in_freedom"], Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=dict, description="your own 0-10 ratings, replacing the price book's defaults"
    )
    cost_stack: CostStack = Field(
        default_factory=CostStack, description="storage, networking, orchestration, support, replication, SLA "
        "penalties and the value of latency: each line priced from the price book or your inputs, else reported as "
        "not priced")

    @model_validator(mode="after")
    def _some_weight(self) -> "Finance":
        if not sum(self.scorecard_weights.values()) > 0:
            raise ValueError("scorecard_weights: all zero; give at least one criterion a positive weight")
        return self


class Scenario(_Strict):
    name: Name = Field(description="scenario name, shown in summaries and reports (letters, digits, . _ -)")
    description: str = Field(default="", description="free text for readers; the simulation ignores it")
    seed: int = Field(default=0, ge=0, description="base of every random stream (a whole number, not text)")
    pools: list[Pool] = Field(min_length=1, description="groups of accelerators of one SKU, cloud or on-prem")
    deployments: list[Deployment] = Field(
        min_length=1, description="models served on the pools, with their replicas and engine settings")
    traffic: Traffic = Field(description="the arrival process and the request classes")
    routing: Routing = Field(
        default_factory=Routing, description="how requests are spread over replicas, and routes across deployments")
    service_classes: list[ServiceClass] = Field(
        default_factory=list, description="priorities, SLOs and queue timeouts that classes refer to")
    network: Network = Field(
        default_factory=Network, description="latency and egress between regions; left out: regions cost nothing")
    tenants: list[Tenant] = Field(
        default_factory=list, description="callers that classes refer to: rate limits, quotas and fair-share weights")
    admission: Admission = Field(
        default_factory=Admission, description="the order waiting tenants are admitted in: fifo or fair_share")
    finance: Finance = Field(
        default_factory=Finance, description="how the run is priced: TCO horizon, price book, sensitivity, scorecard")
    training: list[TrainingJob] = Field(default_factory=list, description="training / fine-tune jobs on the pools")
    faults: Faults = Field(default_factory=Faults, description="replica failures and client retries")
    sim: SimSettings = Field(description="horizon, warm-up, drain and timeline settings")
    sharding: Sharding | None = Field(
        default=None, description="split a large fleet into shards and a long horizon into time windows, simulated "
        "apart (in parallel with --jobs or --executor ray) and merged into one summary; unset: one simulation")


# Fields whose absence means something (an engine preset's default, the engine's own memory fraction, the price
# book's bytes per token, a link priced by default): resolve/deployments.py and metrics/cost_stack.py read them from
# `model_fields_set`. A full model_dump writes every field, so a document re-validated from it has them "set" to the
# schema defaults; scenario_document leaves them out where the scenario did.
LEFT_OUT_MATTERS: dict[type[BaseModel], tuple[str, ...]] = {
    Deployment: ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill", "schedule", "kv_admission",
                 "gpu_memory_utilization", "overlap_schedule", "delayed_first_token", "front_end_s",
                 "reuse_preempted_kv"),
    Network: ("bytes_per_token",),
    NetworkLink: ("usd_per_gb",),
}


def _prune_left_out(model: BaseModel, doc: dict[str, Any]) -> None:
    for name in LEFT_OUT_MATTERS.get(type(model), ()):
        if name not in model.model_fields_set:
            doc.pop(name, None)
    for name in type(model).model_fields:
        value, sub = getattr(model, name), doc.get(name)
        if isinstance(value, BaseModel) and isinstance(sub, dict):
            _prune_left_out(value, sub)
        elif isinstance(value, list) and isinstance(sub, list):
            for v, d in zip(value, sub):
                if isinstance(v, BaseModel) and isinstance(d, dict):
                    _prune_left_out(v, d)


def scenario_document(sc: Scenario) -> dict[str, Any]:
    """The scenario as a JSON document (every field, so sweeps, plans, shards and windows can edit any of them) that
    re-validates to the same scenario: the fields in LEFT_OUT_MATTERS stay left out where the scenario left them
    out, so a TensorRT-LLM deployment keeps its preset's kv_admission through a sweep, a plan or a shard."""
    doc = sc.model_dump(mode="json")
    _prune_left_out(sc, doc)
    return doc


class RequestWorkload(_Strict):
    """A workload file describing single LLM requests (agent graphs come later as another kind)."""

    kind: Literal["requests"] = Field(default="requests", description="selects a workload of single requests")
    name: Name = Field(description="workload name (letters, digits, . _ -)")
    description: str = Field(default="", description="free text for readers; the simulation ignores it")
    input_tokens: TokenCounts = Field(description="prompt tokens per request")
    output_tokens: TokenCounts = Field(description="answer tokens per request")
    length_correlation: LengthCorrelation | None = Field(
        default=None, description="Spearman rank correlation between a request's input and output tokens (drawn "
        "through a Gaussian copula over the two distributions; unset: independent). Traces show 0.3-0.8 for chat")
    arrival: OpenArrivals | None = Field(
        default=None, description="the arrival process measured with these lengths (trace fit writes it); a class "
        "uses it with `arrival: workload`")
    source: str = Field(
        min_length=1, description="where the lengths (and arrival process) come from: a URL, a trace, or 'assumption: "
        "...'")
    as_of: AsOf = Field(description="date or period of the source, e.g. 2026-11")


Workload = Annotated[Union[RequestWorkload, AgentWorkload], Field(discriminator="kind")]
