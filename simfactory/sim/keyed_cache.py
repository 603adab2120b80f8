"""Keyed caches as state, not as a coin flip: Zipf key draws, entries with fill time and expiry, LRU capacity,
content changes per key, and sensitivity partitions (config: simfactory.config.cache.KeyedCache).

A lookup draws its key, then hits when its partition holds a live entry for it. A hit is *stale* when the key's
content changed after the entry was written (Poisson changes per key, drawn lazily: at a lookup past the next
change time, the last change before now is found by running the Poisson process backwards from now, so each
lookup costs O(1) whatever the change rate). Content changes belong to the key, not to a partition.

The closed forms below (`ttl_hit_ratio`, `zipf_ttl_hit_ratio`, `ttl_stale_fraction`) hold for Poisson lookups to
an unbounded cache; the tests check the simulation against them.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
import numpy as np

from simfactory.config.cache import KeyedCache
from simfactory.sim.streams import RandomStreams


# ---- closed forms ------------------------------------------------------------------------------------------
def ttl_hit_ratio(rate_per_s: float, ttl_s: float, refresh_on_hit: bool) -> float:
    """Hit ratio of one key with Poisson lookups at rate_per_s in a TTL cache. Sliding TTL (reset at each hit):
    a lookup hits when the previous one came less than ttl_s before, 1 - e^(-lambda T) (the TTL-cache form of
    Che's approximation; Fofack, Nain, Neglia & Towsley 2012). TTL from the write: each miss starts a cycle of
    lambda T hits on average, so lambda T / (1 + lambda T)."""
    x = rate_per_s * ttl_s
    return -math.expm1(-x) if refresh_on_hit else x / (1.0 + x)


def zipf_probabilities(keys: int, s: float) -> np.ndarray:
    """p_k proportional to k^-s, k = 1..keys."""
    w = np.arange(1, keys + 1, dtype=float) ** -s
    return w / w.sum()


def zipf_ttl_hit_ratio(total_rate_per_s: float, keys: int, s: float, ttl_s: float, refresh_on_hit: bool) -> float:
    """Hit ratio over all lookups: sum over keys of p_k x ttl_hit_ratio(p_k lambda, T)."""
    p = zipf_probabilities(keys, s)
    x = p * total_rate_per_s * ttl_s
    per_key = -np.expm1(-x) if refresh_on_hit else x / (1.0 + x)
    return float((p * per_key).sum())


def ttl_stale_fraction(rate_per_s: float, change_rate_per_s: float, ttl_s: float, refresh_on_hit: bool) -> float:
    """Share of hits answered from an entry whose content changed since it was written (Poisson lookups at lambda,
    Poisson changes at mu, entries kept after a change). TTL from the write: hit ages are uniform on [0, T), so
    fresh = (1 - e^(-mu T)) / (mu T). Sliding TTL: the j-th hit after a miss is fresh with probability g^j,
    g = E[e^(-mu X); X < T] = lambda / (lambda + mu) (1 - e^(-(lambda + mu) T)), and a hit with p^j, p = 1 - e^(-lambda T),
    so fresh = [g / (1 - g)] / [p / (1 - p)]."""
    lam, mu, t = rate_per_s, change_rate_per_s, ttl_s
    if mu == 0:
        return 0.0
    if not refresh_on_hit:
        return 1.0 + math.expm1(-mu * t) / (mu * t)
    g = lam / (lam + mu) * -math.expm1(-(lam + mu) * t)
    p = -math.expm1(-lam * t)
    return 1.0 - (g / (1.0 - g)) / (p / (1.0 - p))


# ---- the simulated cache -------------------------------------------------------------------------------------
@dataclass
class PartitionStats:
    """Measured lookups of one partition (lookups inside the measurement window)."""

    lookups: int = 0
    hits: int = 0
    stale_hits: int = 0
    evictions: int = 0


@dataclass
class _Partition:
    ttl_s: float | None
    capacity: int | None
    entries: OrderedDict[int, list[float]] = field(default_factory=OrderedDict)  # key -> [written_s, expires_s]
    stats: PartitionStats = field(default_factory=PartitionStats)


class KeyedCacheModel:
    """One keyed cache: `lookup(now, sensitivity)` -> (hit, stale)."""

    def __init__(self, spec: KeyedCache, rng: np.random.Generator, measure_from_s: float, measure_to_s: float) -> None:
        self.spec = spec
        self.rng = rng
        self.cdf = np.cumsum(zipf_probabilities(spec.keys, spec.zipf_s)) if spec.keys > 1 else None
        inv = spec.invalidation
        self.change_rate = inv.rate_per_s if inv is not None else 0.0
        self.change_times = sorted(inv.times_s) if inv is not None else []
        self.purge = inv is not None and inv.on_change == "purge"
        self.next_change: dict[int, float] = {}  # key -> time of its next Poisson change
        self.last_change: dict[int, float] = {}  # key -> time of its last Poisson change so far
        self.partitions: dict[str, _Partition] = {}
        self.window = (measure_from_s, measure_to_s)

    def draw_key(self) -> int:
        if self.cdf is None:
            return 0
        return min(int(np.searchsorted(self.cdf, self.rng.random(), side="right")), len(self.cdf) - 1)

    def _changed_at(self, key: int, now: float) -> float:
        """Time of the key's last content change at or before now (-inf: never)."""
        last = -math.inf
        if self.change_times:
            i = bisect.bisect_right(self.change_times, now)
            if i:
                last = self.change_times[i - 1]
        if self.change_rate > 0:
            nxt = self.next_change.get(key)
            if nxt is None:
                nxt = self.next_change[key] = float(self.rng.exponential(1.0 / self.change_rate))
            if nxt <= now:  # changes happened in [nxt, now]: the last one, read backwards from now
                back = float(self.rng.exponential(1.0 / self.change_rate))
                self.last_change[key] = nxt if back > now - nxt else now - back
                self.next_change[key] = now + float(self.rng.exponential(1.0 / self.change_rate))
            last = max(last, self.last_change.get(key, -math.inf))
        return last

    def _partition(self, sensitivity: str | None) -> _Partition:
        name = self.spec.partition(sensitivity)
        part = self.partitions.get(name)
        if part is None:
            ttl, cap = self.spec.settings(name)
            part = self.partitions[name] = _Partition(ttl, cap)
        return part

    def lookup(self, now: float, sensitivity: str | None) -> tuple[bool, bool]:
        """Look a fresh key up at time now: (hit, stale). A miss writes the entry."""
        key = self.draw_key()
        part = self._partition(sensitivity)
        entry = part.entries.get(key)
        hit = stale = False
        if entry is not None and entry[1] > now:
            changed = self._changed_at(key, now) > entry[0]
            if changed and self.purge:
                hit = False
            else:
                hit, stale = True, changed
                if self.spec.refresh_on_hit and part.ttl_s is not None:
                    entry[1] = now + part.ttl_s
                part.entries.move_to_end(key)
        if not hit:
            part.entries[key] = [now, now + part.ttl_s if part.ttl_s is not None else math.inf]
            part.entries.move_to_end(key)
            if part.capacity is not None and len(part.entries) > part.capacity:
                part.entries.popitem(last=False)
                part.stats.evictions += 1
        if self.window[0] <= now < self.window[1]:
            st = part.stats
            st.lookups += 1
            st.hits += hit
            st.stale_hits += stale
        return hit, stale

    def stats(self) -> dict[str, PartitionStats]:
        return {name: p.stats for name, p in sorted(self.partitions.items())}


@dataclass(frozen=True)
class CacheStats:
    """What a run hands to the metrics about one keyed cache: its kind and per-partition counts."""

    kind: str  # semantic | retrieval
    name: str
    partitions: dict[str, PartitionStats]


class CacheRegistry:
    """The run's keyed caches, made on first use, each with its own random stream (named by kind and name) so a
    cache's draws never shift another stream."""

    def __init__(self, streams: RandomStreams, measure_from_s: float, measure_to_s: float) -> None:
        self.streams = streams
        self.window = (measure_from_s, measure_to_s)
        self.caches: dict[tuple[str, str], KeyedCacheModel] = {}

    def get(self, kind: str, name: str, spec: KeyedCache) -> KeyedCacheModel:
        cache = self.caches.get((kind, name))
        if cache is None:
            cache = self.caches[(kind, name)] = KeyedCacheModel(
                spec, self.streams.get(f"cache/{kind}/{name}"), *self.window)
        return cache

    def results(self) -> list[CacheStats]:
        return [CacheStats(kind, name, c.stats()) for (kind, name), c in sorted(self.caches.items())]

