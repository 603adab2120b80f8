"""Autoscaling of a deployment's replicas (the knobs of Kubernetes HPA / KServe / Ray Serve autoscalers)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_AUTOSCALER_TICKS, MAX_REPLICAS, MIN_BANDWIDTH


class Autoscaling(StrictModel):
    """Every `interval_s` the signal is read per active replica and the desired count set to
    ceil(active x signal / target) (the HPA rule), within [min_replicas, max_replicas]. A new replica serves
    after `cold_start_s` + weights bytes / `weights_load_gb_s` (billed from the decision: the instance is
    paid while it boots); scale-downs are at least `scale_down_cooldown_s` apart (one decision may retire several
    replicas); a retired replica stops taking requests and is released (billing stops) once empty. With min_replicas 0 the deployment scales to zero;
    requests then wait until a replica has started."""

    min_replicas: NonNegativeInt = Field(
        default=1, description="fewest replicas the autoscaler keeps; 0 scales the deployment to zero (requests then "
        "wait for a replica to start)")
    max_replicas: PositiveInt = Field(le=MAX_REPLICAS, description="each replica is its own simulated engine")
    signal: Literal["queue", "in_flight", "kv", "rps", "ttft", "composite"] = Field(
        default="in_flight",
        description="queue: waiting requests per replica; in_flight: running + waiting per replica; kv: KV use "
        "fraction; rps: requests dispatched per second over the last interval, per replica; ttft: the TTFT "
        "percentile (ttft_quantile) of the first tokens of the last interval, seconds; composite: the largest of "
        "queue, in_flight and kv (and ttft when ttft_target_s is set), each over its own target",
    )
    target: PositiveFloat = Field(description="the signal's target per replica (kv: a fraction, e.g. 0.7; rps: "
                                              "requests per second; ttft: seconds)")
    ttft_target_s: PositiveFloat | None = Field(
        default=None, description="composite: a tail-TTFT target (seconds) as a fourth term; unset: no latency term")
    ttft_quantile: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.95, description="ttft and composite: the TTFT percentile read over each interval (0.95 = p95)")
    queue_target: PositiveFloat = Field(default=4.0, description="composite: waiting requests per replica")
    kv_target: Annotated[float, Field(gt=0, le=1)] = Field(default=0.8, description="composite: KV use fraction")
    interval_s: PositiveFloat = Field(
        default=10.0, description=f"seconds between decisions; a run may take at most {MAX_AUTOSCALER_TICKS:,} of them")
    cold_start_s: NonNegativeFloat = Field(default=30.0, description="instance boot + engine start, before weights load")
    weights_load_gb_s: float = Field(default=2.0, ge=MIN_BANDWIDTH, description="storage bandwidth loading the weights")
    scale_down_cooldown_s: NonNegativeFloat = Field(
        default=60.0, description="seconds that must pass between two scale-down decisions (each may drain several "
        "replicas)")

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        if self.ttft_target_s is not None and self.signal != "composite":
            raise ValueError("ttft_target_s is the composite signal's latency term: with signal "
                             f"{self.signal!r} set target instead")
        return self
