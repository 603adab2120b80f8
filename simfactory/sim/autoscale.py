"""The autoscaler: one SimPy process per autoscaled deployment, reading the load every interval and
adding or retiring replicas (see config/autoscale.py for the rule). Every replica's provisioned intervals
are logged: they are what a cloud pool bills."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generator

import simpy

from simfactory.config.autoscale import Autoscaling
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.router import ReplicaBalancer

TOLERANCE = 0.1  # like Kubernetes' HPA: no change while the signal is within 10% of its target
OFF, BOOTING, ACTIVE, DRAINING = "off", "booting", "active", "draining"


@dataclass
class AutoscaleLog:
    deployment: str
    tp: int
    delay_s: float
    intervals: list[list[float]] = field(default_factory=list)  # [start_s, end_s] per provisioning; end nan = open
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (time, kind, replica index)

    def provisioned_replica_s(self, start_s: float, end_s: float) -> float:
        """Replica-seconds provisioned within [start_s, end_s] (open intervals run to end_s)."""
        total = 0.0
        for a, b in self.intervals:
            b = end_s if b != b else b
            total += max(0.0, min(b, end_s) - max(a, start_s))
        return total

    def provisioned_at(self, t: float) -> int:
        return sum(1 for a, b in self.intervals if a <= t and (b != b or t < b))

    def peak_provisioned(self, start_s: float, end_s: float) -> int:
        """The most replicas provisioned at once within [start_s, end_s): the count only rises when one starts."""
        times = [start_s] + [a for a, _ in self.intervals if start_s < a < end_s]
        return max(self.provisioned_at(t) for t in times)


class Autoscaler:
    def __init__(self, env: simpy.Environment, cfg: Autoscaling, name: str, tp: int, weights_bytes: float,
                 engines: list[ReplicaEngine], balancer: ReplicaBalancer, initial: int) -> None:
        self.env = env
        self.cfg = cfg
        self.engines = engines
        self.balancer = balancer
        self.delay_s = cfg.cold_start_s + weights_bytes / (cfg.weights_load_gb_s * 1e9)
        self.state = [ACTIVE if i < initial else OFF for i in range(len(engines))]
        self.open: dict[int, int] = {}  # replica -> index of its open interval in log.intervals
        self.log = AutoscaleLog(name, tp, self.delay_s)
        self.last_scale_down_s = -math.inf
        self.last_dispatched = balancer.dispatched
        self.ttfts: list[float] | None = None
        if cfg.signal == "ttft" or cfg.ttft_target_s is not None:
            self.ttfts = []
            for e in engines:
                e.ttft_sink = self.ttfts  # one shared list: the interval's first tokens across the replicas
        for i in range(initial):
            self._provision(i)
        balancer.set_active([s == ACTIVE for s in self.state])

    def _provision(self, i: int) -> None:
        self.open[i] = len(self.log.intervals)
        self.log.intervals.append([self.env.now, math.nan])

    def _release(self, i: int) -> None:
        self.log.intervals[self.open.pop(i)][1] = self.env.now
        self.state[i] = OFF
        self.log.events.append((self.env.now, "released", i))

    def _sync(self) -> None:
        self.balancer.set_active([s == ACTIVE for s in self.state])

    def _boot(self, i: int) -> Generator[simpy.Event, None, None]:
        yield self.env.timeout(self.delay_s)
        if self.state[i] == BOOTING:
            self.state[i] = ACTIVE
            self.log.events.append((self.env.now, "active", i))
            self._sync()

    def ratio(self) -> float:
        """The signal over its target, per active replica (1.0 = on target)."""
        active = [e for e, s in zip(self.engines, self.state) if s == ACTIVE]
        n = max(len(active), 1)
        serving = [e for e, s in zip(self.engines, self.state) if s in (ACTIVE, DRAINING)]
        waiting = sum(len(e.queue) + len(e.requeued) for e in serving) + self.balancer.pending_count()
        in_flight = waiting + sum(len(e.running) for e in serving)
        kv = sum(e.kv_used_blocks() / e.kv_blocks for e in active) / n if active else 0.0
        c = self.cfg
        if c.signal == "queue":
            return waiting / n / c.target
        if c.signal == "in_flight":
            return in_flight / n / c.target
        if c.signal == "kv":
            return kv / c.target
        if c.signal == "rps":
            return self._rps() / n / c.target
        if c.signal == "ttft":
            return self._ttft_s(waiting) / c.target
        terms = [waiting / n / c.queue_target, in_flight / n / c.target, kv / c.kv_target]
        if c.ttft_target_s is not None:
            terms.append(self._ttft_s(waiting) / c.ttft_target_s)
        return max(terms)

    def _rps(self) -> float:
        """Requests dispatched to the deployment per second since the last decision."""
        count = self.balancer.dispatched - self.last_dispatched
        self.last_dispatched = self.balancer.dispatched
        return count / self.cfg.interval_s

    def _ttft_s(self, waiting: int) -> float:
        """The interval's TTFT percentile; with no first token in it, the target itself while requests wait (hold)
        and 0 when nothing waits (the load is gone)."""
        assert self.ttfts is not None
        values, self.ttfts[:] = list(self.ttfts), []
        if not values:
            target = self.cfg.target if self.cfg.signal == "ttft" else (self.cfg.ttft_target_s or 0.0)
            return target if waiting else 0.0
        values.sort()
        k = min(len(values) - 1, max(0, math.ceil(self.cfg.ttft_quantile * len(values)) - 1))
        return values[k]

    def desired(self) -> int:
        active = self.state.count(ACTIVE)
        r = self.ratio()
        if active == 0:
            want = 1 if r > 0 else 0
        elif abs(r - 1.0) <= TOLERANCE:
            want = active
        else:
            want = math.ceil(active * r - 1e-9)
        return max(self.cfg.min_replicas, min(self.cfg.max_replicas, want))

    def step(self) -> None:
        now = self.env.now
        for i, s in enumerate(self.state):
            if s == DRAINING and self.engines[i].outstanding() == 0:
                self._release(i)
        want = self.desired()
        active, booting = self.state.count(ACTIVE), self.state.count(BOOTING)
        if want > active + booting:
            need = want - active - booting
            for i in [i for i, s in enumerate(self.state) if s == DRAINING][:need]:
                self.state[i] = ACTIVE  # still provisioned and warm: serves again at once
                self.log.events.append((now, "reactivated", i))
                need -= 1
            for i in [i for i, s in enumerate(self.state) if s == OFF][:need]:
                self.state[i] = BOOTING
                self._provision(i)
                self.log.events.append((now, "boot", i))
                self.env.process(self._boot(i))
            self._sync()
        elif want < active and now - self.last_scale_down_s >= self.cfg.scale_down_cooldown_s:
            for i in [i for i, s in enumerate(self.state) if s == ACTIVE][::-1][: active - want]:
                self.state[i] = DRAINING
                self.log.events.append((now, "drain", i))
                if self.engines[i].outstanding() == 0:
                    self._release(i)
            self.last_scale_down_s = now
            self._sync()

    def run(self) -> Generator[simpy.Event, None, None]:
        while True:
            yield self.env.timeout(self.cfg.interval_s)
            self.step()
