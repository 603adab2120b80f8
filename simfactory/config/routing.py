"""Routing, service classes and admission control: the scenario's `routing`, `service_classes` and
`tenants` sections (the schema is the documentation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(StrictModel):
    pass


class Slo(_Strict):
    """Per-request targets; a request meets its SLO when it completes within every target given."""

    ttft_s: PositiveFloat | None = None
    tpot_s: PositiveFloat | None = None
    e2e_s: PositiveFloat | None = None


class ServiceClass(_Strict):
    name: Name
    priority: Annotated[int, Field(ge=0, le=100)] = Field(default=0, description="lower is served first")
    slo: Slo = Field(default_factory=Slo)
    max_queue_s: PositiveFloat | None = Field(
        default=None, description="shed a request still waiting to be scheduled after this long (client timeout)"
    )


class RateLimit(_Strict):
    """Token bucket: `burst` requests at once, refilled at `rate_per_s`; excess requests are rejected (429)."""

    rate_per_s: PositiveFloat
    burst: PositiveInt = 1


class Tenant(_Strict):
    name: Name
    rate_limit: RateLimit | None = None


class Tier(_Strict):
    """One model tier: the deployment, what it can handle, and how often a validator rejects its answer."""

    deployment: str
    capability: Probability = Field(default=1.0, description="hardest request difficulty (0-1) this tier handles")
    fail_p: Probability = Field(default=0.0, description="validator rejects an answer to a request within capability")
    fail_p_incapable: Probability = Field(
        default=1.0, description="validator rejects an answer to a request harder than the capability"
    )


class Fallback(_Strict):
    """Send to another deployment or route (e.g. a cloud burst pool) when the chosen one is overloaded:
    it already has `max_waiting` requests waiting, or it has not started a request within `timeout_s`."""

    deployment: str
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

    name: Name
    policy: Literal["cheapest_capable", "cascade", "weighted", "nearest"]
    tiers: list[Tier] = Field(default_factory=list)
    weights: dict[str, NonNegativeFloat] = Field(default_factory=dict)
    candidates: list[str] = Field(default_factory=list, description="deployments for policy nearest")
    max_waiting: PositiveInt | None = Field(default=None, description="nearest: spill to the next candidate at this queue")
    sticky: bool = False
    fallback: Fallback | None = None

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


class Routing(_Strict):
    load_balancer: Literal[
        "round_robin", "random", "least_outstanding", "least_kv", "power_of_two", "session_affinity", "pull"
    ] = Field(
        default="least_outstanding",
        description=(
            "how a deployment's replicas share requests: round_robin, random, least_outstanding (fewest "
            "running+waiting), least_kv (lowest KV-cache use), power_of_two (the less loaded of two random "
            "replicas), session_affinity (a session or agent task always goes to the same replica, so its KV "
            "prefix can be reused), or pull (one shared queue; a replica takes work when it has a free slot)"
        ),
    )
    routes: list[Route] = Field(default_factory=list)
