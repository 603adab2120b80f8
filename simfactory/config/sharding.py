"""The `sharding:` block of a scenario: split a large fleet into shards (and a long horizon into windows) that
simulate independently and merge into one summary (simfactory/fleet).

Kept apart from scenario.py because only the fleet runner reads it: the simulator itself never sees a sharded
scenario, only the per-shard (per-window) scenarios derived from it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_SHARDS, MAX_SIMULATED_S, MAX_WINDOWS


class Sharding(StrictModel):
    """Split every deployment's replicas (and every pool, and the arrival rates) into `shards` equal parts, each
    simulated on its own; with `sample_shards`, simulate only that many and scale (confidence intervals from the
    spread between them); with `windows`, split the horizon into windows simulated apart, each warm-started."""

    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = Field(
        default=1, description="equal shards of the fleet: each holds 1/shards of every deployment's replicas, "
        "pool and arrival rate (thinning); counts must divide evenly. 1: no sharding")
    sample_shards: Annotated[int, Field(ge=2, le=MAX_SHARDS)] | None = Field(
        default=None, description="simulate only this many of the (identical) shards and scale counts and costs by "
        "shards / sample_shards; the summary gives 95% t intervals from the spread between them. At least 2 (one "
        "shard has no spread). Unset: simulate every shard")
    windows: Annotated[int, Field(ge=1, le=MAX_WINDOWS)] = Field(
        default=1, description="split the measurement window into this many equal time windows simulated apart "
        "(in parallel with --jobs), each with window_overlap_s simulated and discarded on both sides. 1: none")
    sample_windows: Annotated[int, Field(ge=2, le=MAX_WINDOWS)] | None = Field(
        default=None, description="simulate only this many of the time windows, every replica in each (the middle "
        "window of each of this many equal stretches of the measured span), and scale totals by windows / "
        "sample_windows; the summary gives 95% t intervals from the spread between them. The shortcut for "
        "load-aware balancers, which shards would make optimistic. Windows then cover the measured span "
        "(sim.warmup_s to sim.horizon_s); needs shards 1 and windows a multiple of it. Unset: every window")
    window_overlap_s: Annotated[float, Field(ge=0, le=MAX_SIMULATED_S, allow_inf_nan=False)] = Field(
        default=300.0, description="seconds simulated before and after each time window and discarded: the "
        "window starts with the queues, caches and autoscaler a continuous run would have (approximately)")

    @model_validator(mode="after")
    def _sample_within(self) -> "Sharding":
        if self.sample_shards is not None and self.sample_shards > self.shards:
            raise ValueError(f"sample_shards ({self.sample_shards}) must be at most shards ({self.shards})")
        if self.sample_windows is not None:
            if self.windows % self.sample_windows:
                raise ValueError(f"sample_windows ({self.sample_windows}) must divide windows ({self.windows}): each "
                                 "sampled window stands for the same number of windows")
            if self.shards > 1:
                raise ValueError("sample_windows keeps every replica in each window; with shards > 1 sample shards "
                                 "(sample_shards) instead, or set shards to 1")
        return self
