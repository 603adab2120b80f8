"""Load balancing across a deployment's replicas.

Push policies pick a replica at arrival (round_robin, random, least_outstanding); `pull` keeps one
shared queue from which any replica with a free slot takes the oldest request (M/M/c-like dispatch).
Later routing tiers sit in front of this: they choose the deployment, this chooses the replica.
"""

from __future__ import annotations

import numpy as np

from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.queue import WaitingQueue


class ReplicaBalancer:
    def __init__(self, policy: str, engines: list[ReplicaEngine], rng: np.random.Generator) -> None:
        self.policy = policy
        self.engines = engines
        self.rng = rng
        self._next = 0
        self.shared_queue: WaitingQueue | None = engines[0].queue if policy == "pull" else None

    def dispatch(self, rid: int, priority: int = 0) -> None:
        if self.shared_queue is not None:
            self.shared_queue.put(rid, priority)
            return
        self.engines[self.choose()].queue.put(rid, priority)

    def choose(self) -> int:
        n = len(self.engines)
        if self.policy == "round_robin":
            i = self._next
            self._next = (i + 1) % n
            return i
        if self.policy == "random":
            return int(self.rng.integers(n))
        if self.policy == "least_outstanding":
            # ties go to the replica after the last choice, so an idle fleet is used evenly
            start = self._next
            best = min(range(n), key=lambda k: (self.engines[(start + k) % n].outstanding(), k))
            i = (start + best) % n
            self._next = (i + 1) % n
            return i
        raise ValueError(f"unknown load balancer {self.policy!r}")
