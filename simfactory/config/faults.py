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

    pool: str
    mtbf_s: PositiveFloat = Field(allow_inf_nan=False, description="mean up time of one replica (or one device)")
    mttr_s: PositiveFloat = Field(allow_inf_nan=False, description="mean time to repair")
    per: Literal["replica", "device"] = Field(
        default="replica", description="device: mtbf_s is per accelerator; a replica of tp x pp devices fails when any does"
    )
    health_check_delay_s: NonNegativeFloat = 5.0


class Outage(_Strict):
    """Every replica of a pool (a region, a cluster) is down from `start_s` for `duration_s`: requests it held are
    lost; routes with a fallback or `nearest` candidates fail over (with their network cost)."""

    pool: str
    start_s: NonNegativeFloat = Field(allow_inf_nan=False)
    duration_s: PositiveFloat = Field(allow_inf_nan=False)


class SpotReclamation(_Strict):
    """Each replica of a spot pool is reclaimed at Poisson times (`per_replica_hour`). At the notice the router
    stops sending to it; at the end of the notice what it still holds is lost; a replacement serves after
    `replacement_s` (new instance, weights load, warm-up)."""

    pool: str
    per_replica_hour: PositiveFloat = Field(allow_inf_nan=False)
    notice_s: NonNegativeFloat = Field(default=120.0, description="AWS gives 2 minutes; GCP about 30 s")
    replacement_s: NonNegativeFloat = 180.0


class ToolBrownout(_Strict):
    """An agent tool service (a workload's `tools[].name`) degrades for a window: each call fails with
    `error_rate` more and takes `latency_multiplier` x longer (the agent's retries and timeouts then apply)."""

    service: str
    start_s: NonNegativeFloat = Field(allow_inf_nan=False)
    duration_s: PositiveFloat = Field(allow_inf_nan=False)
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    latency_multiplier: Annotated[float, Field(ge=1, le=1000)] = 1.0


class RetrievalBrownout(_Strict):
    """Retrieval (a vector store, a search API) degrades for a window: every lookup that misses the agent-side
    cache fails with `error_rate` and takes `latency_multiplier` x longer; a failed lookup fails its step (the
    workload's retries and timeouts then apply). `workload` limits it to one agent workload (default: all)."""

    start_s: NonNegativeFloat = Field(allow_inf_nan=False)
    duration_s: PositiveFloat = Field(allow_inf_nan=False)
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    latency_multiplier: Annotated[float, Field(ge=1, le=1000)] = 1.0
    workload: str | None = None


class RollingRestart(_Strict):
    """A planned restart or model swap of a pool's replicas, one at a time from `start_s`: each stops taking
    requests, drains for up to `drain_s` (what it still holds then is lost), loads weights for `load_s`, and
    serves again before the next one starts."""

    pool: str
    start_s: NonNegativeFloat = Field(allow_inf_nan=False)
    drain_s: NonNegativeFloat = 60.0
    load_s: NonNegativeFloat = 120.0


class RetryPolicy(_Strict):
    """What a client does with a request a failure lost: retry after backoff_s x multiplier^(attempt - 1), up to
    `max_retries` times, while retries stay within `budget_ratio` x original requests (a retry budget, as in
    Envoy/gRPC); otherwise the request ends `failed`."""

    max_retries: NonNegativeInt = Field(default=0, le=MAX_RETRY_ATTEMPTS)
    backoff_s: NonNegativeFloat = 1.0
    backoff_multiplier: Annotated[float, Field(ge=1.0, le=MAX_BACKOFF_FACTOR)] = 2.0
    budget_ratio: NonNegativeFloat | None = Field(default=None, description="None: no budget")


class Faults(_Strict):
    replica_failures: list[ReplicaFailures] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    spot_reclamations: list[SpotReclamation] = Field(default_factory=list)
    tool_brownouts: list[ToolBrownout] = Field(default_factory=list)
    retrieval_brownouts: list[RetrievalBrownout] = Field(default_factory=list)
    rolling_restarts: list[RollingRestart] = Field(default_factory=list)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
