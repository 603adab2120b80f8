"""What the processes around the fleet (agent tasks, fault injectors, closed-loop clients) see of it.

Each takes a small protocol naming only what it reads and calls, rather than run.FleetModel: run.py builds
those processes, so naming FleetModel in them would make the modules import each other. FleetModel satisfies
every protocol here structurally; this module depends on the pieces of the fleet, never on run.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import simpy

from simfactory.resolve import ResolvedRoute, ResolvedScenario, Target
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.keyed_cache import CacheRegistry
from simfactory.sim.network import NetworkModel
from simfactory.sim.outcomes import TaskRecord
from simfactory.sim.requests import RequestTable
from simfactory.sim.streams import RandomStreams


@dataclass(slots=True)
class Call:
    """One logical LLM call: its attempts (escalations add one each) and, for agent tasks, a done event."""

    origin: int
    rids: list[int]
    target: Target
    done: simpy.Event | None
    route: ResolvedRoute | None = None
    tier: int = -1
    abandoned: bool = False  # its caller gave up (a step timeout, a cancelled branch): no retry is sent after that


@dataclass(frozen=True)
class ReplicaInfo:
    replica_id: int
    deployment: str
    pool: str
    index_in_deployment: int
    accelerators: int  # device-time share: tp (a pp replica's tp x pp devices over its pp engines)
    kv_blocks: int
    block_size: int
    micro_batch: int = 0  # pipeline parallelism: which of the replica's pp in-flight micro-batches
    role: str = "mixed"  # disaggregation: prefill or decode replicas


class FleetCore(Protocol):
    """The shared state every outside process reads: the clock, the scenario, the requests, the random streams."""

    env: FloatEnvironment
    rs: ResolvedScenario
    table: RequestTable
    streams: RandomStreams


class AgentFleet(FleetCore, Protocol):
    """What an agent task needs: send LLM calls, give up on them, price them, and report its end."""

    network: NetworkModel
    caches: CacheRegistry

    def call(
        self, target: Target, input_tokens: int, output_tokens: int, class_id: int, task_id: int, step: str,
        difficulty: float = 0.0, system_tokens: int = 0, context_tokens: int = 0,
    ) -> Call: ...

    def abort(self, rid: int) -> None: ...

    def call_usd_estimate(self, call: Call) -> float: ...

    def finish_task(self, rec: TaskRecord) -> None: ...

    def context_rewritten(self, task_id: int) -> None: ...

    def context_extended(self, rid: int, tokens: int) -> None: ...


class FaultFleet(FleetCore, Protocol):
    """What a fault process needs: the replicas, and the fleet's bookkeeping when one goes down or comes back."""

    engines: list[ReplicaEngine]
    replicas: list[ReplicaInfo]

    def fail_replica(self, replica: int) -> None: ...

    def drop_waiting(self, replica: int) -> None: ...

    def set_replica_up(self, replica: int, up: bool) -> None: ...


class ClientFleet(FleetCore, Protocol):
    """What closed-loop clients need: send a request or start a task, and say when they stop sending."""

    def start_task(self, class_id: int) -> simpy.Process: ...

    def submit(self, rid: int) -> simpy.Event: ...

    def source_done(self) -> None: ...
