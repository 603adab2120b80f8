"""Failure processes: replicas that fail and are repaired (one SimPy process per replica under a
`faults.replica_failures` entry), with the log the resilience metrics read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import simpy

from simfactory.config.faults import Outage, ReplicaFailures, RollingRestart, SpotReclamation
from simfactory.sim.fleet_view import FaultFleet


@dataclass
class FaultLog:
    failures: list[tuple[int, float, float]] = field(default_factory=list)  # (replica, failed at, repaired at; nan open)
    lost: list[tuple[float, int, int]] = field(default_factory=list)  # (time, replica, request)
    retries: int = 0
    failed: int = 0  # lost and not retried

    def down_s(self, replica: int, start_s: float, end_s: float) -> float:
        total = 0.0
        for r, a, b in self.failures:
            if r == replica:
                b = end_s if b != b else b
                total += max(0.0, min(b, end_s) - max(a, start_s))
        return total


def replica_failures(fleet: FaultFleet, spec: ReplicaFailures, replica: int, rng: np.random.Generator,
                     log: FaultLog) -> Generator[simpy.Event, None, None]:
    """Up (exponential, mean MTBF) -> fail -> health check notices -> repaired (exponential, mean MTTR) -> up."""
    env = fleet.env
    engine = fleet.engines[replica]  # repaired here; failed through the fleet (it records what is lost)
    info = fleet.replicas[replica]
    devices = info.accelerators if spec.per == "device" else 1
    mtbf_s = spec.mtbf_s / devices  # the first of `devices` exponential failures
    while True:
        yield env.timeout(rng.exponential(mtbf_s))
        failed_at = env.now
        repair_s = rng.exponential(spec.mttr_s)
        log.failures.append((replica, failed_at, float("nan")))
        k = len(log.failures) - 1
        fleet.fail_replica(replica)
        check = min(spec.health_check_delay_s, repair_s)
        if check > 0:
            yield env.timeout(check)
        fleet.set_replica_up(replica, False)
        fleet.drop_waiting(replica)  # what the router sent before the health check noticed
        yield env.timeout(repair_s - check)
        engine.repair()
        fleet.set_replica_up(replica, True)
        log.failures[k] = (replica, failed_at, env.now)


def outage(fleet: FaultFleet, spec: Outage, replicas: list[int], log: FaultLog) -> Generator[simpy.Event, None, None]:
    """A whole pool down for a window."""
    env = fleet.env
    yield env.timeout(spec.start_s)
    ks = []
    for r in replicas:
        log.failures.append((r, env.now, float("nan")))
        ks.append(len(log.failures) - 1)
        fleet.fail_replica(r)
        fleet.set_replica_up(r, False)
    yield env.timeout(spec.duration_s)
    for r, k in zip(replicas, ks):
        fleet.engines[r].repair()
        fleet.set_replica_up(r, True)
        log.failures[k] = (r, log.failures[k][1], env.now)


def spot_reclamation(fleet: FaultFleet, spec: SpotReclamation, replica: int, rng: np.random.Generator,
                     log: FaultLog) -> Generator[simpy.Event, None, None]:
    """Poisson reclamations with notice; the replacement starts serving after `replacement_s`."""
    env = fleet.env
    while True:
        yield env.timeout(rng.exponential(3600.0 / spec.per_replica_hour))
        fleet.set_replica_up(replica, False)  # notice: no new requests
        log.failures.append((replica, env.now, float("nan")))
        k = len(log.failures) - 1
        yield env.timeout(spec.notice_s)
        fleet.fail_replica(replica)  # reclaimed: what it still holds is lost
        yield env.timeout(spec.replacement_s)
        fleet.engines[replica].repair()
        fleet.set_replica_up(replica, True)
        log.failures[k] = (replica, log.failures[k][1], env.now)


def rolling_restart(fleet: FaultFleet, spec: RollingRestart, replicas: list[int],
                    log: FaultLog) -> Generator[simpy.Event, None, None]:
    """One replica at a time: stop routing, drain (bounded), lose what is left, load weights, serve again."""
    env = fleet.env
    yield env.timeout(spec.start_s)
    for r in replicas:
        fleet.set_replica_up(r, False)
        log.failures.append((r, env.now, float("nan")))
        k = len(log.failures) - 1
        waited = 0.0
        while fleet.engines[r].outstanding() > 0 and waited < spec.drain_s:
            step = min(1.0, spec.drain_s - waited)
            yield env.timeout(step)
            waited += step
        fleet.fail_replica(r)
        yield env.timeout(spec.load_s)
        fleet.engines[r].repair()
        fleet.set_replica_up(r, True)
        log.failures[k] = (r, log.failures[k][1], env.now)
