"""Failure what-ifs: replicas that fail and are repaired, and how clients retry what a failure lost."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_BACKOFF_FACTOR, MAX_RETRY_ATTEMPTS


class _Strict(StrictModel):
    pass


class ReplicaFailures(_Strict):
    """Each replica of the pool's deployments fails after an exponential up time (mean `mtbf_s`) and is back
    after an exponential repair (mean `mttr_s`). A failure loses the replica's requests (running and queued)
    and its KV and prefix cache; the router keeps sending to it for `health_check_delay_s` (those requests are
    lost too), then avoids it until it is repaired."""

    pool: str = Field(description="the pool (pools[].name) whose deployments' replicas fail")
    mtbf_s: PositiveFloat = Field(allow_inf_nan=False, description="mean up time of one replica (or one device)")
    mttr_s: PositiveFloat = Field(allow_inf_nan=False, description="mean time to repair")
    per: Literal["replica", "device"] = Field(
        default="replica", description="device: mtbf_s is per accelerator; a replica of tp x pp devices fails when any does"
    )
    health_check_delay_s: NonNegativeFloat = Field(
        default=5.0, description="seconds after a failure before the router stops sending to the replica (what it "
        "sends meanwhile is lost)")


class Outage(_Strict):
    """Every replica of a pool (a region, a cluster) is down from `start_s` for `duration_s`: requests it held are
    lost; routes with a fallback or `nearest` candidates fail over (with their network cost)."""

    pool: str = Field(description="the pool (pools[].name) that goes down")
    start_s: NonNegativeFloat = Field(allow_inf_nan=False, description="simulated time the outage begins, seconds")
    duration_s: PositiveFloat = Field(allow_inf_nan=False, description="how long the pool stays down, seconds")


class SpotReclamation(_Strict):
    """Each replica of a spot pool is reclaimed at Poisson times (`per_replica_hour`). At the notice the router
    stops sending to it; at the end of the notice what it still holds is lost; a replacement serves after
    `replacement_s` (new instance, weights load, warm-up)."""

    pool: str = Field(description="the spot pool (pools[].name) whose replicas are reclaimed")
    per_replica_hour: PositiveFloat = Field(
        allow_inf_nan=False, description="reclamations per replica-hour (a Poisson rate per replica)")
    notice_s: NonNegativeFloat = Field(default=120.0, description="AWS gives 2 minutes; GCP about 30 s")
    replacement_s: NonNegativeFloat = Field(
        default=180.0, description="seconds until a replacement serves: new instance, weights load, warm-up")


class ToolBrownout(_Strict):
    """An agent tool service (a workload's `tools[].name`) degrades for a window: each call fails with
    `error_rate` more and takes `latency_multiplier` x longer (the agent's retries and timeouts then apply)."""

    service: str = Field(description="the degraded tool: a name under an agent workload's tools:")
    start_s: NonNegativeFloat = Field(allow_inf_nan=False, description="simulated time the brownout begins, seconds")
    duration_s: PositiveFloat = Field(allow_inf_nan=False, description="how long it lasts, seconds")
    error_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="probability (0-1) that a call started in the window fails, besides the step's own "
        "fail_p")
    latency_multiplier: Annotated[float, Field(ge=1, le=1000)] = Field(
        default=1.0, description="factor (1-1000) on the latency of calls started in the window")


class RetrievalBrownout(_Strict):
    """Retrieval (a vector store, a search API) degrades for a window: every lookup that misses the agent-side
    cache fails with `error_rate` and takes `latency_multiplier` x longer; a failed lookup fails its step (the
    workload's retries and timeouts then apply). `workload` limits it to one agent workload (default: all)."""

    start_s: NonNegativeFloat = Field(allow_inf_nan=False, description="simulated time the brownout begins, seconds")
    duration_s: PositiveFloat = Field(allow_inf_nan=False, description="how long it lasts, seconds")
    error_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="probability (0-1) that a lookup in the window missing the agent-side cache fails")
    latency_multiplier: Annotated[float, Field(ge=1, le=1000)] = Field(
        default=1.0, description="factor (1-1000) on the latency of lookups in the window that miss the agent-side "
        "cache")
    workload: str | None = Field(
        default=None, description="the agent workload (its name:) whose retrieval degrades; unset: every agent "
        "workload")


class RollingRestart(_Strict):
    """A planned restart or model swap of a pool's replicas, one at a time from `start_s`: each stops taking
    requests, drains for up to `drain_s` (what it still holds then is lost), loads weights for `load_s`, and
    serves again before the next one starts."""

    pool: str = Field(description="the pool (pools[].name) whose replicas restart, one at a time")
    start_s: NonNegativeFloat = Field(
        allow_inf_nan=False, description="simulated time the first replica stops taking requests, seconds")
    drain_s: NonNegativeFloat = Field(
        default=60.0, description="seconds a replica may drain before what it still holds is lost")
    load_s: NonNegativeFloat = Field(
        default=120.0, description="seconds of weights load (the restart or the new model) before the replica serves "
        "again")


class RetryPolicy(_Strict):
    """What a client does with a request a failure lost: retry after backoff_s x multiplier^(attempt - 1), up to
    `max_retries` times, while retries stay within `budget_ratio` x original requests (a retry budget, as in
    Envoy/gRPC); otherwise the request ends `failed`."""

    max_retries: NonNegativeInt = Field(
        default=0, le=MAX_RETRY_ATTEMPTS, description="retries of a lost request after its first attempt; 0: a lost "
        "request ends failed")
    backoff_s: NonNegativeFloat = Field(default=1.0, description="wait before the first retry, seconds")
    backoff_multiplier: Annotated[float, Field(ge=1.0, le=MAX_BACKOFF_FACTOR)] = Field(
        default=2.0, description="factor (1-10) on the wait for each further retry")
    budget_ratio: NonNegativeFloat | None = Field(default=None, description="None: no budget")


class Faults(_Strict):
    replica_failures: list[ReplicaFailures] = Field(
        default_factory=list, description="random failures and repairs of a pool's replicas (or devices)")
    outages: list[Outage] = Field(default_factory=list, description="whole-pool outages in a time window")
    spot_reclamations: list[SpotReclamation] = Field(
        default_factory=list, description="reclamations of a spot pool's replicas, with notice and replacement")
    tool_brownouts: list[ToolBrownout] = Field(
        default_factory=list, description="windows in which an agent tool fails more often and answers more slowly")
    retrieval_brownouts: list[RetrievalBrownout] = Field(
        default_factory=list, description="windows in which agent retrieval fails more often and answers more slowly")
    rolling_restarts: list[RollingRestart] = Field(
        default_factory=list, description="planned one-at-a-time restarts (or model swaps) of a pool's replicas")
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="what clients do with requests a failure lost: retries, backoff, "
        "retry budget")
