"""Build the SimPy model of a resolved scenario, run it, and return the raw results.

Arrivals -> (admission check) -> replica balancer -> replica engines -> completion. A monitor process
samples timelines (queue depth, running sequences, KV use, busy fraction, requests in system) at the
scenario's resolution. Every request ends with an outcome; none is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import simpy

from simfactory.resolve import ResolvedDeployment, ResolvedScenario
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.outcomes import Outcome
from simfactory.sim.queue import WaitingQueue
from simfactory.sim.requests import RequestTable
from simfactory.sim.router import ReplicaBalancer
from simfactory.sim.streams import RandomStreams
from simfactory.sim.traffic import generate_traffic

ProgressFn = Callable[[float, float], None]  # (simulated seconds done, seconds expected)


@dataclass(frozen=True)
class ReplicaInfo:
    replica_id: int
    deployment: str
    pool: str
    index_in_deployment: int
    accelerators: int
    kv_blocks: int
    block_size: int


@dataclass
class Timelines:
    """Sampled every `resolution_s`: arrays of shape (samples,) or (samples, replicas)."""

    time_s: list[float] = field(default_factory=list)
    in_system: list[int] = field(default_factory=list)
    deployment_queue: list[list[int]] = field(default_factory=list)
    waiting: list[list[int]] = field(default_factory=list)
    running: list[list[int]] = field(default_factory=list)
    kv_used_frac: list[list[float]] = field(default_factory=list)
    busy_frac: list[list[float]] = field(default_factory=list)


@dataclass
class SimResult:
    resolved: ResolvedScenario
    seed: int
    table: RequestTable
    replicas: list[ReplicaInfo]
    replica_busy_s: np.ndarray
    replica_steps: np.ndarray
    timelines: Timelines
    end_s: float
    events: int


class FleetModel:
    """The whole fleet as SimPy processes; `run()` advances it to the end of the scenario."""

    def __init__(self, rs: ResolvedScenario, seed: int) -> None:
        self.rs = rs
        self.seed = seed
        self.env = simpy.Environment()
        self.streams = RandomStreams(seed)
        self.table = generate_traffic(rs, self.streams)
        self.n_finished = 0
        self.n_arrived = 0
        self.all_finished = self.env.event()
        self.engines: list[ReplicaEngine] = []
        self.replicas: list[ReplicaInfo] = []
        self.balancers: list[ReplicaBalancer] = []
        self.dep_engines: list[list[ReplicaEngine]] = []
        self.max_tokens: list[int] = []
        for d in rs.deployments:
            self._build_deployment(d)
        self.env.process(self._arrivals())
        self.timelines = Timelines()
        self.env.process(self._monitor(rs.scenario.sim.timeline_resolution_s))
        if len(self.table) == 0:
            self.all_finished.succeed()

    def _build_deployment(self, d: ResolvedDeployment) -> None:
        cfg = d.config
        policy = self.rs.scenario.routing.load_balancer
        shared = WaitingQueue(self.env) if policy == "pull" else None
        engines = []
        for k in range(cfg.replicas):
            rid = len(self.engines)
            eng = ReplicaEngine(
                self.env,
                rid,
                shared if shared is not None else WaitingQueue(self.env),
                self.table,
                d.step_time,
                max_num_seqs=cfg.max_num_seqs,
                max_num_batched_tokens=cfg.max_num_batched_tokens,
                block_size=cfg.block_size,
                kv_blocks=d.kv_blocks,
                enable_chunked_prefill=cfg.enable_chunked_prefill,
                on_complete=self._on_complete,
            )
            self.engines.append(eng)
            engines.append(eng)
            self.replicas.append(
                ReplicaInfo(rid, cfg.name, cfg.pool, k, cfg.tp, d.kv_blocks, cfg.block_size)
            )
        self.dep_engines.append(engines)
        self.balancers.append(ReplicaBalancer(policy, engines, self.streams.get(f"balancer/{cfg.name}")))
        # The longest request a replica can ever hold: it must fit the context window and the KV cache
        # (and, without chunked prefill, one step's token budget, as vLLM requires).
        limit = min(d.max_model_len, d.kv_blocks * cfg.block_size + 1)
        if not cfg.enable_chunked_prefill:
            limit = min(limit, cfg.max_num_batched_tokens)
        self.max_tokens.append(limit)

    def _on_complete(self, rid: int) -> None:
        self.table.outcome[rid] = Outcome.COMPLETED
        self._finished()

    def _finished(self) -> None:
        self.n_finished += 1
        if self.n_finished == len(self.table):
            self.all_finished.succeed()

    def _arrivals(self) -> Generator[simpy.Event, None, None]:
        t = self.table
        env = self.env
        arrival = t.arrival_s
        dep = t.deployment_id
        total = t.input_tokens + t.output_tokens
        for rid in range(len(t)):
            wait = arrival[rid] - env.now
            if wait > 0:
                yield env.timeout(wait)
            self.n_arrived += 1
            d = int(dep[rid])
            if total[rid] > self.max_tokens[d]:
                t.outcome[rid] = Outcome.REJECTED_TOO_LONG
                t.completion_s[rid] = env.now
                self._finished()
                continue
            self.balancers[d].dispatch(rid)

    def _monitor(self, resolution_s: float) -> Generator[simpy.Event, None, None]:
        env = self.env
        tl = self.timelines
        prev_busy = [0.0] * len(self.engines)
        while True:
            busy = [e.busy_until_now_s() for e in self.engines]
            tl.time_s.append(env.now)
            tl.in_system.append(self.n_arrived - self.n_finished)
            waiting = [len(e.requeued) + (0 if b.shared_queue else len(e.queue)) for b, es in
                       zip(self.balancers, self.dep_engines) for e in es]
            tl.waiting.append(waiting)
            tl.deployment_queue.append(
                [
                    sum(len(e.requeued) + len(e.queue) for e in es) if b.shared_queue is None
                    else len(b.shared_queue) + sum(len(e.requeued) for e in es)
                    for b, es in zip(self.balancers, self.dep_engines)
                ]
            )
            tl.running.append([len(e.running) for e in self.engines])
            tl.kv_used_frac.append([e.kv_used_blocks() / e.kv_blocks for e in self.engines])
            if env.now > 0:
                tl.busy_frac.append([(b - p) / resolution_s for b, p in zip(busy, prev_busy)])
            else:
                tl.busy_frac.append([0.0] * len(self.engines))
            prev_busy = busy
            yield env.timeout(resolution_s)

    def run(self, progress: ProgressFn | None = None) -> SimResult:
        sim = self.rs.scenario.sim
        env = self.env
        horizon = sim.horizon_s
        steps = 100
        for k in range(1, steps + 1):
            env.run(until=horizon * k / steps)
            if progress:
                progress(env.now, horizon)
        if sim.drain and not self.all_finished.triggered:
            limit = env.timeout(sim.max_drain_s)
            env.run(until=simpy.AnyOf(env, [self.all_finished, limit]))
        end = env.now
        t = self.table
        pending = t.outcome == Outcome.PENDING
        t.outcome[pending] = Outcome.UNFINISHED
        return SimResult(
            resolved=self.rs,
            seed=self.seed,
            table=t,
            replicas=self.replicas,
            replica_busy_s=np.array([e.busy_until_now_s() for e in self.engines]),
            replica_steps=np.array([e.steps_run for e in self.engines]),
            timelines=self.timelines,
            end_s=end,
            events=next(env._eid),  # SimPy numbers every scheduled event; the next id is the count
        )


def simulate(rs: ResolvedScenario, seed: int | None = None, progress: ProgressFn | None = None) -> SimResult:
    """Run a resolved scenario once; the seed defaults to the scenario's."""
    model = FleetModel(rs, rs.scenario.seed if seed is None else seed)
    return model.run(progress)
