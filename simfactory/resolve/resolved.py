"""What resolution hands the simulator: one resolved record per deployment, route and traffic class, and the
scenario that holds them. Kept apart from the stages that build them so the simulator imports only these."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from simfactory.config.agent import AgentWorkload, KvRetention, LlmStep
from simfactory.config.distributions import Distribution
from simfactory.config.prices import PriceBook
from simfactory.config.profile import EnginePreset, FrontEndWork, HardwareProfile, ModelArch
from simfactory.config.routing import Route, Tier
from simfactory.config.scenario import Deployment, OpenProcess, Pool, RequestClass, Scenario
from simfactory.config.training import TrainingJob
from simfactory.hardware.memory import MemoryPlan
from simfactory.hardware.step_time import StepTimeModel
from simfactory.traces.replay import ReplayRows


@dataclass(frozen=True)
class ResolvedDeployment:
    index: int
    config: Deployment
    pool: Pool
    profile: HardwareProfile
    arch: ModelArch
    step_time: StepTimeModel
    step_time_source: str
    memory: MemoryPlan
    kv_capacity_tokens: int
    kv_blocks: int
    max_model_len: int
    engine_preset: EnginePreset | None = None  # the preset the deployment was resolved with (licence, defaults)
    # disaggregated: the prefill replicas (their own pool, shape, step time and memory) and the KV link to decode
    prefill: "ResolvedDeployment | None" = None
    kv_link_bytes_per_s: float = 0.0
    kv_link_latency_s: float = 0.0

    def front_end_work(self) -> FrontEndWork | None:
        """The API server's CPU work: the deployment's own, else its engine preset's; None when there is none to
        do (not modelled)."""
        work = self.config.front_end_work
        if work is None and self.engine_preset is not None:
            work = self.engine_preset.front_end
        if work is None or work.per_request_s + work.per_input_token_s + work.per_output_token_s == 0:
            return None
        return work

    def eager_launch_overlap(self) -> tuple[bool, bool]:
        """(whether an eager prefill's host launch overlaps the step before it, whether a prefill with cached or
        already computed prompt tokens syncs the device first): with overlap scheduling, on the SKUs the engine
        preset's eager_prefill names (EagerPrefill.launch_overlap_skus, mla_prefix_sync_skus)."""
        eager = self.engine_preset.eager_prefill if self.engine_preset is not None else None
        if eager is None or not self.config.overlap_schedule or self.profile.sku not in eager.launch_overlap_skus:
            return False, False
        d = self.config  # the launch paths read were plain tensor-parallel ones: DP attention, expert parallelism,
        if d.dp_attention > 1 or (self.arch.is_moe and (d.ep_degree > 1 or d.eplb)) or d.speculative is not None:
            return False, False  # EPLB and speculative decoding add syncs of their own (the whole floor there)
        return True, self.arch.is_mla and self.profile.sku in eager.mla_prefix_sync_skus

    def front_end_ingress(self) -> str:
        """How its front end reads requests sent together (FrontEndWork.ingress): the work's own, else the engine
        preset's front end's, else the engine's way (vLLM's event loop: shared; the others: in_order)."""
        work, preset = self.front_end_work(), self.engine_preset
        own = work.ingress if work is not None else None
        if own is None and preset is not None and preset.front_end is not None:
            own = preset.front_end.ingress
        if own is None:
            vllm = preset is not None and preset.kernels is not None and preset.kernels.framework == "vllm"
            own = "shared" if vllm else "in_order"
        return own


@dataclass(frozen=True)
class Target:
    """Where a request goes: straight to a deployment, or through a route (tiers, weights, fallback)."""

    kind: str  # "deployment" | "route"
    index: int


@dataclass(frozen=True)
class ResolvedRoute:
    index: int
    config: Route
    tiers: list[tuple[int, Tier]]  # (deployment index, tier)
    weights: list[tuple[int, float]]  # (deployment index, weight)
    fallback: Target | None
    fallback_max_waiting: int
    candidates: list[int] = field(default_factory=list)  # deployment indexes (policy nearest)


@dataclass(frozen=True)
class ResolvedClass:
    """A traffic class: plain requests (lengths, one target) or agent tasks (workload, role -> target)."""

    index: int
    config: RequestClass
    target: Target | None  # plain requests; agent tasks use roles
    input_tokens: Distribution | None = None
    output_tokens: Distribution | None = None
    agent: AgentWorkload | None = None
    roles: dict[str, Target] = field(default_factory=dict)
    priority: int = 0
    service_class: int = -1  # index into scenario.service_classes, -1 none
    tenant: int = -1  # index into scenario.tenants, -1 none
    trace: ReplayRows | None = None  # replayed trace rows (arrival times when the format has them)
    arrival: OpenProcess | None = None  # the class's own arrival process (None: a share of traffic.arrival)
    length_correlation: float | None = None  # Spearman rank correlation of input and output tokens (None: independent)
    kv_retention: KvRetention | None = None  # agent tasks that pin their KV between LLM steps (None: evict)

    @property
    def deployment_index(self) -> int:
        """The deployment of a plain class aimed straight at one (not through a route); -1 otherwise."""
        return self.target.index if self.target is not None and self.target.kind == "deployment" else -1

    @property
    def follows_arrival_process(self) -> bool:
        """traffic.arrival drives it: every class but one replaying a timestamped trace (those keep their times) or
        with its own arrival process."""
        return self.arrival is None and (self.trace is None or self.trace.arrival_s is None)


@dataclass(frozen=True)
class ResolvedQuality:
    """Benchmark scores the simulation maps step failure odds with."""

    table_file: str
    scores: dict[tuple[str, str], dict[str, float]]  # (model, dtype) -> benchmark -> score
    deployment_scores: list[dict[str, float]]  # per deployment index ({} for one without an entry)

    def reference_score(self, step: LlmStep) -> float:
        q = step.quality
        assert q is not None
        return self.scores[(q.reference.model, q.reference.dtype)][q.benchmark]


@dataclass(frozen=True)
class ResolvedScenario:
    scenario: Scenario
    file: str
    deployments: list[ResolvedDeployment]
    classes: list[ResolvedClass]
    pool_profiles: dict[str, HardwareProfile]
    price_book: PriceBook
    routes: list[ResolvedRoute] = field(default_factory=list)
    input_hashes: dict[str, str] = field(default_factory=dict)  # file read -> sha256 (provenance)
    warnings: list[str] = field(default_factory=list)  # e.g. trace rows skipped, with their line numbers
    # training jobs as simulated (tokens_per_s derived from hardware or capped by the input pipeline; otherwise the
    # configured job) and, per hardware-derived job name, its estimate (resolve/training.py TrainingEstimate)
    training_jobs: list[TrainingJob] = field(default_factory=list)
    training_estimates: dict[str, Any] = field(default_factory=dict)
    quality: ResolvedQuality | None = None  # benchmark scores, when some LLM step has a quality: block
    # the fraction of the fleet this resolution stands for: m / k when a sampled run (simfactory/fleet) prices its m
    # simulated shards of k. What the fleet holds once whatever its size (one copy of each model's weights) is
    # charged this share, so that scaling the shards' costs by k / m charges it once
    fleet_share: float = 1.0

    @property
    def scenario_hash(self) -> str:
        """sha256 of the validated scenario's canonical JSON (independent of formatting and comments)."""
        return hashlib.sha256(self.scenario.model_dump_json().encode("utf-8")).hexdigest()
