"""An agent task's KV cache kept on its replica between LLM steps (kv_retention: retain), and what that costs.

Agent platforms choose between freeing the accelerator while a task waits on a tool and keeping the task's
sequence resident so the next step prefills only what is new (Continuum pins it with a TTL per tool call: Li et
al., "Continuum: Efficient and Robust Multi-Turn LLM Agent Scheduling with KV Cache Time-to-Live",
https://arxiv.org/abs/2511.02230, 2025-11). Here a finished LLM step of a retaining task leaves
a *pin* on its replica: the KV blocks it held (prompt + answer, less the answer's last token, whose KV is never
computed) stay allocated. The task's next LLM step is sent to that replica and, when admitted, takes the pinned
blocks over as its cached prefix (as much of them as its prompt's carried context covers). The engine
(sim/engine.py) owns the pins and decides when memory pressure evicts them; this module holds the fleet-wide
index (task -> replica) and the ledger: per task, the pins by how they ended and the KV block-, token-,
accelerator- and slot-seconds they held while the task was away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from simfactory.config.agent import KvRetention
from simfactory.sim.requests import RequestTable

# how a pin ends: the task's next step took it over and reused it; its ttl passed; memory pressure evicted it; the
# task ended; superseded: a newer step of the task (a parallel branch) pinned its own, or its next step took it over
# without reusing it (a prompt without the task's context), or the task compressed its context; its replica
# failed; the run stopped
RELEASE_REASONS = ("hit", "expired", "pressure", "task_end", "superseded", "fault", "run_end")


@dataclass(slots=True)
class Pin:
    """One task's KV cache held by a replica between LLM steps."""

    task_id: int
    tokens: int  # what the blocks hold: the step's prompt and answer (less the answer's last token)
    blocks: int
    since_s: float
    hold_slot: bool
    # how much of it the task's next prompt starts with: the context the step was sent with, or the whole sequence
    # when the task's transcript goes on verbatim (sim/run.py context_extended)
    prefix_tokens: int = 0
    released: bool = False


@dataclass(slots=True)
class TaskRetention:
    """One task's pins: how they ended, what they held (resource x seconds) and the prefill they spared."""

    ended: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RELEASE_REASONS, 0))
    kv_block_s: float = 0.0
    kv_token_s: float = 0.0
    accelerator_s: float = 0.0  # the pinned share of the replica's KV memory x its accelerators x seconds
    slot_s: float = 0.0  # hold_slot: batch slots x seconds
    prefill_tokens_saved: int = 0


class PinHolder(Protocol):
    """What the ledger asks of an engine: give back a task's pin."""

    def unpin(self, task_id: int, reason: str, hit_tokens: int = 0) -> None: ...


class RetentionLedger:
    """Fleet-wide: which replica holds each task's pin, each class's policy, and every task's TaskRetention."""

    def __init__(self, table: RequestTable, policies: list[KvRetention | None]) -> None:
        self.table = table
        self.policies = policies  # per traffic class; None: evict
        self.engines: list[PinHolder] = []
        self.replica_accelerators: list[float] = []  # per engine: its devices' share (ReplicaInfo.accelerators)
        self.replica_blocks: list[int] = []
        self.where: dict[int, int] = {}  # task id -> replica holding its pin
        self.tasks: dict[int, TaskRetention] = {}
        self.done: set[int] = set()  # tasks that ended: a step completing after that pins nothing

    @classmethod
    def for_classes(cls, table: RequestTable, policies: list[KvRetention | None]) -> "RetentionLedger | None":
        """The ledger of a run whose classes have these policies; None when no class retains (nothing changes)."""
        return cls(table, policies) if any(p is not None for p in policies) else None

    def add_engine(self, engine: PinHolder, accelerators: float, kv_blocks: int) -> None:
        self.engines.append(engine)
        self.replica_accelerators.append(accelerators)
        self.replica_blocks.append(kv_blocks)

    def policy(self, rid: int) -> KvRetention | None:
        """The retain policy of the request's task (None: a plain request, an evicting task, or one that ended)."""
        task = int(self.table.task_id[rid])
        if task < 0 or task in self.done:
            return None
        return self.policies[int(self.table.class_id[rid])]

    def pinned(self, task_id: int, replica: int) -> None:
        """A replica pinned the task's KV; a pin the task held elsewhere (a parallel branch's) is given back."""
        other = self.where.get(task_id)
        if other is not None and other != replica:
            self.engines[other].unpin(task_id, "superseded")
        self.where[task_id] = replica

    def released(self, pin: Pin, replica: int, reason: str, now_s: float, hit_tokens: int = 0) -> None:
        """Book a pin that ended: its held resource x seconds, how it ended, the prefill it spared."""
        if self.where.get(pin.task_id) == replica:
            del self.where[pin.task_id]
        rec = self.tasks.get(pin.task_id)
        if rec is None:
            rec = self.tasks[pin.task_id] = TaskRetention()
        held_s = now_s - pin.since_s
        rec.ended[reason] += 1
        rec.kv_block_s += pin.blocks * held_s
        rec.kv_token_s += pin.tokens * held_s
        rec.accelerator_s += pin.blocks / self.replica_blocks[replica] * self.replica_accelerators[replica] * held_s
        if pin.hold_slot:
            rec.slot_s += held_s
        rec.prefill_tokens_saved += hit_tokens

    def replica_of(self, task_id: int) -> int:
        """The replica holding the task's pin; -1 when none does."""
        return self.where.get(task_id, -1)

    def task_ended(self, task_id: int) -> None:
        self.done.add(task_id)
        replica = self.where.get(task_id)
        if replica is not None:
            self.engines[replica].unpin(task_id, "task_end")

    def context_rewritten(self, task_id: int) -> None:
        """The task's context was compressed: its pin (whose KV is of the old context) is given back, superseded."""
        replica = self.where.get(task_id)
        if replica is not None:
            self.engines[replica].unpin(task_id, "superseded")

    def close(self) -> None:
        """The run stops: every pin still held ends now (so its held time is counted)."""
        for task_id, replica in list(self.where.items()):
            self.engines[replica].unpin(task_id, "run_end")

    def results(self) -> dict[int, Any]:
        return self.tasks
