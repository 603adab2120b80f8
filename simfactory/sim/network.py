"""Latency and egress between regions, from the scenario's `network` section."""

from __future__ import annotations

import numpy as np

from simfactory.config.scenario import Network


class NetworkModel:
    def __init__(self, cfg: Network, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self._links = {}
        for link in cfg.links:
            self._links[(link.a, link.b)] = link
            self._links[(link.b, link.a)] = link

    def base_latency_s(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        link = self._links.get((a, b))
        return link.latency_s if link is not None else self.cfg.default_latency_s

    def one_way_s(self, a: str, b: str) -> float:
        """A one-way delay: the link's latency plus exponential jitter with mean jitter_s."""
        if a == b:
            return 0.0
        link = self._links.get((a, b))
        if link is None:
            return self.cfg.default_latency_s
        return link.latency_s + (self.rng.exponential(link.jitter_s) if link.jitter_s > 0 else 0.0)

    def egress_usd(self, a: str, b: str, tokens: float) -> float:
        if a == b or tokens <= 0:
            return 0.0
        link = self._links.get((a, b))
        per_gb = link.usd_per_gb if link is not None else self.cfg.default_usd_per_gb
        return tokens * self.cfg.bytes_per_token / 1e9 * per_gb
