"""Keyed caches (a semantic cache in front of the router, an agent's retrieval cache): which entry a request
asks for, how long entries live, when their content changes, and which callers may share them.

The plain `hit_ratio` / `cache_hit_ratio` knobs draw a hit with a fixed probability. A keyed cache instead
draws each lookup's key from a Zipf popularity over a finite key space and keeps real entries (fill time,
expiry, LRU order), so the hit ratio *follows* from the request rate per key, the TTL and the capacity (the TTL
cache of Jung, Berger & Balakrishnan 2003; Che, Tung & Wang 2002 for LRU), and so do its failure modes: an
entry served after its content changed is stale, and splitting the cache into sensitivity partitions lowers the
hits because each partition sees fewer requests per key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_CACHE_KEYS, MAX_INVALIDATION_TIMES, MAX_SIMULATED_S, MAX_ZIPF_EXPONENT

Label = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)]
Seconds = Annotated[float, Field(gt=0.0, le=MAX_SIMULATED_S, allow_inf_nan=False)]
Instant = Annotated[float, Field(ge=0.0, le=MAX_SIMULATED_S, allow_inf_nan=False)]
Entries = Annotated[int, Field(ge=1, le=MAX_CACHE_KEYS)]


class Invalidation(StrictModel):
    """When an entry's underlying content changes (a document edited, a price updated). The cache does not see the
    change: it keeps answering from the old entry (stale) until the entry expires, unless `on_change: purge`
    (an invalidation bus that deletes the entry, so the next lookup misses)."""

    rate_per_s: NonNegativeFloat = Field(
        default=0.0, description="content changes per second *per key*, a Poisson process each (0: none)")
    times_s: Annotated[list[Instant], Field(max_length=MAX_INVALIDATION_TIMES)] = Field(
        default_factory=list, description="seconds at which every key changes at once (a re-index, a deploy)")
    on_change: Literal["serve_stale", "purge"] = Field(
        default="serve_stale", description="serve_stale: the old entry keeps answering until it expires (stale "
        "answers are counted); purge: the change deletes the entry (no stale answers, fewer hits)")


class CachePartition(StrictModel):
    """Settings of one sensitivity class's partition (its own entries, capacity and TTL)."""

    sensitivity: Label = Field(description="the traffic classes' sensitivity label this partition serves")
    capacity_entries: Entries | None = Field(
        default=None, description="entries this partition holds (LRU eviction beyond); unset: the cache's")
    ttl_s: Seconds | None = Field(default=None, description="entry lifetime in this partition; unset: the cache's")


class KeyedCache(StrictModel):
    """A cache of `keys` distinct entries with Zipf popularity, TTL expiry, LRU capacity, content changes and
    sensitivity partitions. An entry is written when a lookup misses (the time to compute its answer is ignored)."""

    keys: Entries = Field(description=f"distinct keys (questions, queries) lookups ask for, at most {MAX_CACHE_KEYS:,}")
    zipf_s: Annotated[float, Field(ge=0.0, le=MAX_ZIPF_EXPONENT, allow_inf_nan=False)] = Field(
        default=1.0, description="Zipf exponent of key popularity: key k is asked with probability proportional to "
        "k^-zipf_s (0: uniform; query logs fit 0.6-1.2)")
    ttl_s: Seconds | None = Field(default=None, description="seconds an entry lives; unset: until evicted")
    refresh_on_hit: bool = Field(
        default=False, description="false: an entry expires ttl_s after it was written; true: ttl_s after its last "
        "hit (a sliding TTL)")
    capacity_entries: Entries | None = Field(
        default=None, description="entries held at once (least recently used evicted first); unset: unbounded")
    invalidation: Invalidation | None = Field(
        default=None, description="content changes: Poisson per key and/or scheduled; unset: content never changes")
    partition_by_sensitivity: bool = Field(
        default=False, description="entries are shared only among classes of the same sensitivity label (each "
        "partition has its own entries); false: one shared store")
    partitions: list[CachePartition] = Field(
        default_factory=list, description="per-sensitivity capacity / TTL overrides (with partition_by_sensitivity)")

    @model_validator(mode="after")
    def _partitions(self) -> "KeyedCache":
        if self.partitions and not self.partition_by_sensitivity:
            raise ValueError("partitions needs partition_by_sensitivity: true")
        labels = [p.sensitivity for p in self.partitions]
        if len(set(labels)) != len(labels):
            raise ValueError("partitions: duplicate sensitivity labels")
        return self

    def partition(self, sensitivity: str | None) -> str:
        """The partition a caller of this sensitivity uses."""
        if not self.partition_by_sensitivity:
            return "shared"
        return sensitivity or "unlabelled"

    def settings(self, partition: str) -> tuple[float | None, int | None]:
        """(ttl_s, capacity_entries) of a partition."""
        for p in self.partitions:
            if p.sensitivity == partition:
                return (p.ttl_s if p.ttl_s is not None else self.ttl_s,
                        p.capacity_entries if p.capacity_entries is not None else self.capacity_entries)
        return self.ttl_s, self.capacity_entries
