"""Keyed-cache figures for the README: simulated hit, staleness and effective hit ratios of a semantic cache
(Zipf keys, TTL, Poisson content changes) beside their closed forms, shared vs partitioned by sensitivity.

    PYTHONPATH=. python benchmarks/cache_freshness.py
"""

from __future__ import annotations

import math

import numpy as np

from simfactory.config.cache import KeyedCache
from simfactory.sim.keyed_cache import KeyedCacheModel, zipf_probabilities, zipf_ttl_hit_ratio

KEYS, ZIPF_S, RATE_PER_S, CHANGE_PER_S = 50_000, 0.8, 10.0, 0.0005  # scenarios/agent-controls.yaml's chat caches
SHARES = {"public": 0.6, "pii": 0.4}
LOOKUPS = 400_000


def zipf_stale_fraction(rate_per_s: float, ttl_s: float, mu: float) -> float:
    """TTL from the write: per key, hits h_k = x/(1+x) with x = lambda_k T, stale share 1 - (1 - e^(-mu T))/(mu T)."""
    p = zipf_probabilities(KEYS, ZIPF_S)
    x = p * rate_per_s * ttl_s
    hits = p * x / (1 + x)
    stale_share = 1 + math.expm1(-mu * ttl_s) / (mu * ttl_s)
    return float((hits * stale_share).sum() / hits.sum())


def simulate(ttl_s: float, partitioned: bool, seed: int = 1) -> tuple[float, float, float]:
    spec = KeyedCache(keys=KEYS, zipf_s=ZIPF_S, ttl_s=ttl_s, invalidation={"rate_per_s": CHANGE_PER_S},
                      partition_by_sensitivity=partitioned)
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / RATE_PER_S, LOOKUPS))
    labels = rng.choice(list(SHARES), p=list(SHARES.values()), size=LOOKUPS)
    cache = KeyedCacheModel(spec, np.random.default_rng(seed + 1), times[LOOKUPS // 4], math.inf)
    for t, label in zip(times.tolist(), labels.tolist()):
        cache.lookup(t, label)
    st = cache.stats().values()
    n, h, s = (sum(getattr(p, f) for p in st) for f in ("lookups", "hits", "stale_hits"))
    return h / n, s / h, (h - s) / n


def main() -> None:
    print(f"{KEYS:,} keys, Zipf {ZIPF_S}, {RATE_PER_S:g} lookups/s, content changes {CHANGE_PER_S:g}/s per key")
    print("| TTL s | cache | hit ratio (closed form) | hit ratio (sim) | staleness (closed form) | staleness (sim) "
          "| effective hit ratio (sim) |")
    print("|---|---|---|---|---|---|---|")
    for ttl in (60.0, 600.0, 3600.0):
        for partitioned in (False, True):
            if partitioned:
                closed = sum(share * zipf_ttl_hit_ratio(RATE_PER_S * share, KEYS, ZIPF_S, ttl, False)
                             for share in SHARES.values())
            else:
                closed = zipf_ttl_hit_ratio(RATE_PER_S, KEYS, ZIPF_S, ttl, False)
            hit, stale, eff = simulate(ttl, partitioned)
            print(f"| {ttl:g} | {'partitioned' if partitioned else 'shared'} | {closed:.3f} | {hit:.3f} | "
                  f"{zipf_stale_fraction(RATE_PER_S, ttl, CHANGE_PER_S):.3f} | {stale:.3f} | {eff:.3f} |")


if __name__ == "__main__":
    main()
