"""Routing, service classes and admission control: the scenario's `routing`, `service_classes`, `tenants` and
`admission` sections (the schema is the documentation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_TENANT_REQUESTS, MAX_TENANT_WEIGHT, MIN_TENANT_WEIGHT
from simfactory.config.quality import StepQuality

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(StrictModel):
    pass


class Slo(_Strict):
    """Per-request targets; a request meets its SLO when it completes within every target given."""

    ttft_s: PositiveFloat | None = Field(
        default=None, description="time to first token target, seconds, as the caller sees it (network included)")
    tpot_s: PositiveFloat | None = Field(
        default=None, description="time per output token target after the first, seconds")
    e2e_s: PositiveFloat | None = Field(
        default=None, description="end-to-end target, arrival to the whole answer received, seconds")


class ServiceClass(_Strict):
    name: Name = Field(description="class name that traffic classes' service_class refers to")
    priority: Annotated[int, Field(ge=0, le=100)] = Field(default=0, description="lower is served first")
    slo: Slo = Field(default_factory=Slo, description="latency targets its requests are judged against")
    max_queue_s: PositiveFloat | None = Field(
        default=None, description="shed a request still waiting to be scheduled after this long (client timeout)"
    )


class RateLimit(_Strict):
    """Token bucket: `burst` requests at once, refilled at `rate_per_s`; excess requests are rejected (429)."""

    rate_per_s: PositiveFloat = Field(description="bucket refill rate: requests per second admitted in the long run")
    burst: PositiveInt = Field(default=1, description="bucket size: requests admitted at once after a quiet spell")


class Tenant(_Strict):
    """A caller of the fleet: its rate limit, its quotas and its weight in fair share (see Admission)."""

    name: Name = Field(description="tenant name that traffic classes' tenant refers to")
    rate_limit: RateLimit | None = Field(
        default=None, description="token bucket on the tenant's requests; unset: unlimited")
    weight: Annotated[float, Field(ge=MIN_TENANT_WEIGHT, le=MAX_TENANT_WEIGHT)] = Field(
        default=1.0, description="admission.policy fair_share: the tenant's relative share of contended capacity "
        "(tokens admitted per unit of weight are equalised among backlogged tenants: 2 gets twice the tokens of 1)")
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_TENANT_REQUESTS)] | None = Field(
        default=None, description="requests of this tenant handed to replicas (any deployment) at once; the excess "
        "waits in the tenant's queue (FIFO within a priority), bounded by max_waiting and the service class's "
        "max_queue_s. Unset: no cap")
    gpu_share: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="fraction (0-1] of each deployment's batch slots (max_num_seqs x replicas taking "
        "requests) the tenant may hold while another tenant waits below its own share: a soft share, enforced at "
        "admission (nothing is preempted) and lifted when nobody else waits. Unset: no share")
    max_waiting: Annotated[int, Field(ge=1, le=MAX_TENANT_REQUESTS)] | None = Field(
        default=None, description="requests of this tenant waiting in its admission queue (held back by "
        "max_concurrency, gpu_share or fair share); an arrival beyond it is rejected (rejected_queue_full). Unset: "
        "unbounded")


class Admission(_Strict):
    """Who is admitted next when requests wait at the front door of a deployment (see README, "Tenants and fair
    share"). Requests wait there only under tenant quotas (max_concurrency, gpu_share) or fair share."""

    policy: Literal["fifo", "fair_share"] = Field(
        default="fifo", description="fifo: requests reach the replicas in arrival order (within a priority), held "
        "back only by their tenant's max_concurrency and gpu_share; fair_share: each deployment admits at most "
        "max_num_seqs x replicas at once, and when a slot frees the backlogged tenant with the fewest tokens "
        "admitted per unit of weight goes next (start-time fair queueing by prompt + output tokens)")


class Tier(_Strict):
    """One model tier: the deployment, what it can handle, and how often a validator rejects its answer."""

    deployment: str = Field(description="the deployment (deployments[].name) serving this tier")
    capability: Probability = Field(default=1.0, description="hardest request difficulty (0-1) this tier handles")
    fail_p: Probability = Field(default=0.0, description="validator rejects an answer to a request within capability")
    fail_p_incapable: Probability = Field(
        default=1.0, description="validator rejects an answer to a request harder than the capability"
    )
    quality: StepQuality | None = Field(
        default=None, description="fail_p is the rejection rate of quality.reference: map it to this tier's model and "
        "dtype by their benchmark scores (quality/scores.yaml), as an LLM step's quality block does; a cheaper "
        "quantized tier then escalates more, a better model less")


class Fallback(_Strict):
    """Send to another deployment or route (e.g. a cloud burst pool) when the chosen one is overloaded:
    it already has `max_waiting` requests waiting, or it has not started a request within `timeout_s`."""

    deployment: str = Field(description="the deployment or route (routing.routes[].name) to send to")
    max_waiting: PositiveInt | None = Field(
        default=None, description="waiting requests at the chosen deployment that trigger the fallback"
    )
    timeout_s: PositiveFloat | None = Field(
        default=None, description="a request not yet scheduled after this long moves to the fallback"
    )

    @model_validator(mode="after")
    def _trigger(self) -> "Fallback":
        if self.max_waiting is None and self.timeout_s is None:
            raise ValueError("give max_waiting and/or timeout_s (when to fall back)")
        return self


class Route(_Strict):
    """How a request class (or an agent's model role) picks its deployment.

    - cheapest_capable: the smallest tier whose capability covers the request's difficulty; escalate to the
      next tier when the validator rejects the answer (the escalated call is paid again, in time and cost)
    - cascade: always start at the smallest tier (confidence-threshold routing); escalate on rejection
    - weighted: split by weights (A/B); `sticky` keeps a session on one deployment
    - nearest: the candidate deployment closest (network latency) to the caller's region; when its queue
      reaches `max_waiting`, the next closest (locality-aware routing)
    """

    name: Name = Field(
        description="route name that classes' target(s) and fallbacks refer to; distinct from every deployment name")
    policy: Literal["cheapest_capable", "cascade", "weighted", "nearest"] = Field(
        description="cheapest_capable (the smallest tier covering the request's difficulty), cascade (the smallest "
        "tier first), weighted (split by weights) or nearest (the closest candidate by network latency)")
    tiers: list[Tier] = Field(
        default_factory=list, description="cheapest_capable and cascade: the tiers, from least to most capable")
    weights: dict[str, NonNegativeFloat] = Field(
        default_factory=dict, description="weighted: deployment name -> relative share of requests")
    candidates: list[str] = Field(default_factory=list, description="deployments for policy nearest")
    max_waiting: PositiveInt | None = Field(default=None, description="nearest: spill to the next candidate at this queue")
    sticky: bool = Field(
        default=False, description="weighted: keep each session on one deployment (its session id hashed onto the "
        "weights)")
    fallback: Fallback | None = Field(
        default=None, description="where requests go when the chosen deployment is overloaded; unset: nowhere")

    @model_validator(mode="after")
    def _shape(self) -> "Route":
        if self.policy in ("cheapest_capable", "cascade"):
            if not self.tiers:
                raise ValueError(f"policy {self.policy} needs tiers")
            if self.weights:
                raise ValueError("weights are only used by policy weighted")
            caps = [t.capability for t in self.tiers]
            if caps != sorted(caps):
                raise ValueError("tiers must be listed from least to most capable")
        elif self.policy == "nearest":
            if not self.candidates:
                raise ValueError("policy nearest needs candidates")
            if self.tiers or self.weights:
                raise ValueError("policy nearest uses candidates, not tiers or weights")
        else:
            if not self.weights:
                raise ValueError("policy weighted needs weights")
            if sum(self.weights.values()) <= 0:
                raise ValueError("weights must sum to a positive value")
            if self.tiers:
                raise ValueError("tiers are only used by cheapest_capable and cascade")
        return self


# SGLang router (`sglang_router`, cache_aware policy) defaults; its first README (2025-01) gave 32 / 1.0001 / 0.5:
# https://github.com/sgl-project/sglang/blob/083d601378d0baaef6191e7f2d40fb70d06518af/sgl-router/py_src/sglang_router/router_args.py
# (as_of 2025-10; the same values in https://docs.sglang.io/advanced_features/router.html)
SGLANG_BALANCE_ABS_THRESHOLD = 64
SGLANG_BALANCE_REL_THRESHOLD = 1.5
SGLANG_CACHE_THRESHOLD = 0.3
MAX_PREFIX_BLOCKS = 1024


class CacheAware(_Strict):
    """Knobs of the cache-aware balancers (prefix_affinity, kv_aware), named after SGLang's router. A replica is
    *overloaded* when it holds more than `balance_abs_threshold` requests above the least-loaded eligible replica
    AND more than `balance_rel_threshold` times its count; overloaded replicas are passed over for cache affinity."""

    balance_abs_threshold: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        default=SGLANG_BALANCE_ABS_THRESHOLD,
        description=(
            "requests (running + waiting) a replica may hold above the least-loaded eligible replica and still be "
            "chosen for its cache; more (and past balance_rel_threshold) falls back to least_outstanding. Lower "
            "balances load at the expense of cache hits. Default 64: SGLang router --balance-abs-threshold (2025-10; "
            "32 in its first release)"
        ),
    )
    balance_rel_threshold: Annotated[float, Field(ge=1.0, le=1000.0, allow_inf_nan=False)] = Field(
        default=SGLANG_BALANCE_REL_THRESHOLD,
        description=(
            "ratio (>= 1) of a replica's requests to the least-loaded eligible replica's above which, together with "
            "balance_abs_threshold, it is overloaded. Default 1.5: SGLang router --balance-rel-threshold (2025-10; "
            "1.0001 in its first release)"
        ),
    )
    cache_threshold: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = Field(
        default=SGLANG_CACHE_THRESHOLD,
        description=(
            "kv_aware: fraction (0-1) of the prompt the best replica must hold cached to be chosen for it; below it "
            "(or with nothing cached anywhere) the request goes to the least-loaded replica. Higher spreads load, "
            "lower keeps more hits. Default 0.3: SGLang router --cache-threshold (2025-10; 0.5 in its first release)"
        ),
    )
    prefix_blocks: Annotated[int, Field(ge=1, le=MAX_PREFIX_BLOCKS)] = Field(
        default=2,
        description=(
            "prefix_affinity: leading hash blocks of a replayed trace prompt (Mooncake hash_ids, 512 tokens each) "
            "whose hash picks its home replica. Fewer keep more prompts together, but prompts sharing only a common "
            "system prompt then share one home (Mooncake's conversation trace starts every prompt with the same "
            "block: with 1, every request homes on one replica until the balance thresholds spill it); more make a "
            "conversation's short first prompts (fewer blocks) home elsewhere than its later ones. Default 2 "
            "(simfactory's choice, from replaying that trace; the Gateway API Inference Extension prefix scorer that "
            "llm-d uses matches up to 256 blocks)"
        ),
    )


class Routing(_Strict):
    load_balancer: Literal[
        "round_robin", "random", "least_outstanding", "least_kv", "power_of_two", "session_affinity", "pull",
        "prefix_affinity", "kv_aware",
    ] = Field(
        default="least_outstanding",
        description=(
            "how a deployment's replicas share requests: round_robin, random, least_outstanding (fewest "
            "running+waiting), least_kv (lowest KV-cache use), power_of_two (the less loaded of two random "
            "replicas), session_affinity (a session or agent task always goes to the same replica, so its KV "
            "prefix can be reused), pull (one shared queue; a replica takes work when it has a free slot), "
            "prefix_affinity (a home replica per leading prefix by rendezvous hashing, least_outstanding when the "
            "home is overloaded: see cache_aware), or kv_aware (the replica whose prefix cache holds the longest "
            "prefix of the prompt, among those not overloaded; least_outstanding below cache_aware.cache_threshold)"
        ),
    )
    cache_aware: CacheAware = Field(
        default_factory=CacheAware,
        description="thresholds of prefix_affinity and kv_aware (SGLang router's names); other balancers ignore them",
    )
    routes: list[Route] = Field(
        default_factory=list, description="named routes that classes may target instead of a deployment")
