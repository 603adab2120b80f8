"""Latency and egress between regions, from the scenario's `network` section.

Only what the scenario configures costs anything: a `network.links` entry for a pair of regions, else
`network.default_latency_s` / `default_usd_per_gb` when set. A pair neither covers crosses in no time and for free,
so giving a pool a region (to match a price-book row, say) never adds latency or egress by itself."""

from __future__ import annotations

import numpy as np

from simfactory.config.scenario import Network

# `nearest` routing ranks candidates by base_latency_s: between two regions the network does not model it returns
# this nominal figure, so the caller's own region still ranks first. No request is ever delayed by it.
UNMODELLED_RANK_S = 1e-9


class NetworkModel:
    def __init__(self, cfg: Network, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self._links = {}
        for link in cfg.links:
            self._links[(link.a, link.b)] = link
            self._links[(link.b, link.a)] = link

    def base_latency_s(self, a: str, b: str) -> float:
        """One-way latency without jitter, for ranking `nearest` candidates: the link's, else the configured default,
        else (a pair the network does not model) UNMODELLED_RANK_S."""
        if a == b:
            return 0.0
        link = self._links.get((a, b))
        if link is not None:
            return link.latency_s
        return self.cfg.default_latency_s if self.cfg.default_latency_s is not None else UNMODELLED_RANK_S

    def one_way_s(self, a: str, b: str) -> float:
        """A one-way delay: the link's latency plus exponential jitter with mean jitter_s; the configured default
        between regions no link lists; 0 where neither is configured."""
        if a == b:
            return 0.0
        link = self._links.get((a, b))
        if link is None:
            return self.cfg.default_latency_s or 0.0
        return link.latency_s + (self.rng.exponential(link.jitter_s) if link.jitter_s > 0 else 0.0)

    def egress_usd(self, a: str, b: str, tokens: float) -> float:
        if a == b or tokens <= 0:
            return 0.0
        link = self._links.get((a, b))
        per_gb = link.usd_per_gb if link is not None else (self.cfg.default_usd_per_gb or 0.0)
        return tokens * self.cfg.bytes_per_token / 1e9 * per_gb
