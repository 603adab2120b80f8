"""Tenant admission at the front door of each deployment: per-tenant concurrency caps, soft GPU shares, and the
order in which waiting tenants are admitted (FIFO or weighted fair share).

Why a gate in front of the replicas rather than a smarter engine queue: a tenant's quota spans every replica and
every deployment, and vLLM's scheduler (which the engines follow) knows nothing of tenants; serving stacks put
this in the gateway instead (llm-d's flow control, Envoy AI Gateway's per-tenant limits). A request that passed
its deployment's own checks is *offered* to the gate, waits in its tenant's queue (FIFO within a priority) while
held back, and is *released* to the deployment's load balancer when admitted. It stays "in flight" for the gate
until it ends (any outcome) or leaves the deployment (a route's fallback).

Held back by:
- the tenant's `max_concurrency`: requests it has in flight, over all deployments;
- fair share (and whenever a tenant sets `gpu_share`): the deployment's batch slots, max_num_seqs x the replicas
  taking requests; what waits beyond them waits here, where the policy can reorder it, not in the engines' FIFO;
- the tenant's `gpu_share`: a tenant holding that fraction of the slots yields the next slot to any waiting tenant
  still below its own share (soft: nothing is preempted, and the share lifts when nobody else waits).

Among the tenants that may be admitted, `fifo` takes the oldest head (priority first); `fair_share` takes the
tenant with the smallest start tag, start-time fair queueing (Goyal, Vin & Cheng, "Start-time fair queueing",
IEEE/ACM ToN 5(5), 1997) per deployment: a tenant's tag advances by (prompt + output tokens) / weight per request
admitted, and a tenant that was idle restarts at the deployment's virtual time (the last admitted start tag), so
idleness earns no credit. Over a backlogged stretch each tenant's admitted tokens are proportional to its weight.
The gate draws no random numbers: it is deterministic given the arrivals.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from simfactory.sim.requests import RequestTable
from simfactory.sim.router import ReplicaBalancer

QUEUED, IN_FLIGHT = 0, 1


@dataclass(frozen=True)
class TenantQuota:
    """One tenant's limits as the gate reads them (math.inf: no limit)."""

    weight: float = 1.0
    max_concurrency: float = math.inf
    gpu_share: float = math.inf
    max_waiting: float = math.inf


class TenantGate:
    """Per-deployment tenant queues in front of the load balancers (see the module docstring).

    `quotas` has one entry per tenant and a last one for requests without a tenant (weight 1, no limits).
    `dispatch(rid, deployment)` hands a released request to the deployment's balancer."""

    def __init__(self, table: RequestTable, quotas: list[TenantQuota], fair_share: bool, limit_slots: bool,
                 balancers: list[ReplicaBalancer], slots_per_replica: list[int],
                 dispatch: Callable[[int, int], None]) -> None:
        self.table = table
        self.quotas = quotas
        self.fair_share = fair_share
        self.limit_slots = limit_slots
        self.balancers = balancers
        self.slots_per_replica = slots_per_replica
        self.dispatch = dispatch
        n, nd = len(quotas), len(balancers)
        self.in_flight = [0] * n  # per tenant, over every deployment
        self.waiting = [0] * n
        self.queues: list[list[list[tuple[int, int, int]]]] = [[[] for _ in range(n)] for _ in range(nd)]
        self.queued = [[0] * n for _ in range(nd)]  # per deployment and tenant: live entries of the queue
        self.held = [[0] * n for _ in range(nd)]  # per deployment and tenant: in flight there
        self.dep_in_flight = [0] * nd
        self.finish_tag = [[0.0] * n for _ in range(nd)]
        self.virtual_time = [0.0] * nd
        self.slots = [self._slots(d) for d in range(nd)]
        self.state: dict[int, tuple[int, int, int, int]] = {}  # rid -> (deployment, tenant, QUEUED|IN_FLIGHT, seq)
        self._seq = count()

    # ---- what the fleet calls ----
    def offer(self, rid: int, deployment: int) -> bool:
        """A request reached its deployment: queue it and admit what may go. False when it would have to wait
        while its tenant's queue is full (the caller rejects it); it is then no longer held."""
        t = self.table
        tenant = int(t.tenant[rid])
        tn = tenant if tenant >= 0 else len(self.quotas) - 1
        seq = next(self._seq)
        heapq.heappush(self.queues[deployment][tn], (int(t.priority[rid]), seq, rid))
        self.state[rid] = (deployment, tn, QUEUED, seq)
        self._count_queued(deployment, tn, 1)
        self.pump(deployment)
        if self.waiting[tn] > self.quotas[tn].max_waiting and self.holds(rid):
            self.leave(rid)
            return False
        return True

    def holds(self, rid: int) -> bool:
        """The request waits in a tenant queue (not yet handed to replicas)."""
        st = self.state.get(rid)
        return st is not None and st[2] == QUEUED

    def leave(self, rid: int) -> None:
        """The request ended (any outcome) or left its deployment: free its place and admit what may go."""
        st = self.state.pop(rid, None)
        if st is None:
            return
        d, tn, where, _ = st
        if where == QUEUED:
            self._count_queued(d, tn, -1)  # its heap entry goes stale (see _head)
            return
        self.in_flight[tn] -= 1
        self.held[d][tn] -= 1
        self.dep_in_flight[d] -= 1
        if self.quotas[tn].max_concurrency < math.inf and self.waiting[tn]:
            for e in range(len(self.balancers)):  # its cap freed a place its requests elsewhere may take
                if e != d:
                    self.pump(e)
        self.pump(d)

    def capacity_changed(self, deployment: int) -> None:
        """Replicas started, stopped, failed or recovered: recount the slots and admit what now fits."""
        self.slots[deployment] = self._slots(deployment)
        self.pump(deployment)

    def pump(self, d: int) -> None:
        """Admit waiting requests to deployment d while it has room and some tenant may go."""
        while self.balancers[d].gated and (not self.limit_slots or self.dep_in_flight[d] < self.slots[d]):
            tn = self._pick(d)
            if tn is None:
                return
            self._release(d, tn)

    # ---- inside ----
    def _slots(self, d: int) -> int:
        """Batch slots of deployment d: max_num_seqs x its (decode) engines taking requests, a pipeline-parallel
        replica counting one engine per micro-batch; one engine's worth at zero, so a request can still reach a
        deployment scaled to zero (and be counted by its autoscaler)."""
        b = self.balancers[d]
        up = sum(1 for i in range(len(b.engines)) if (b.active is None or b.active[i]) and b.healthy[i])
        return self.slots_per_replica[d] * max(up, 1)

    def _count_queued(self, d: int, tn: int, k: int) -> None:
        self.queued[d][tn] += k
        self.waiting[tn] += k
        self.balancers[d].gated += k

    def _head(self, d: int, tn: int) -> tuple[int, int, int]:
        """The live head of a tenant's queue (stale entries of requests that left are dropped here)."""
        heap = self.queues[d][tn]
        state = self.state
        while True:
            entry = heap[0]
            st = state.get(entry[2])
            if st is not None and st[3] == entry[1] and st[2] == QUEUED:
                return entry
            heapq.heappop(heap)

    def _pick(self, d: int) -> int | None:
        """The tenant whose head goes next: among those under their concurrency cap, those under their GPU share
        first (the others yield to them), then by the policy's order."""
        slots = self.slots[d]
        queued, held, quotas = self.queued[d], self.held[d], self.quotas
        allowed = [tn for tn in range(len(quotas)) if queued[tn] and self.in_flight[tn] < quotas[tn].max_concurrency]
        if not allowed:
            return None
        under = [tn for tn in allowed if held[tn] < quotas[tn].gpu_share * slots]
        pool = under or allowed
        if len(pool) == 1:
            return pool[0]
        if self.fair_share:
            vt, tags = self.virtual_time[d], self.finish_tag[d]
            return min(pool, key=lambda tn: (max(vt, tags[tn]), self._head(d, tn)))
        return min(pool, key=lambda tn: self._head(d, tn))

    def _release(self, d: int, tn: int) -> None:
        _, seq, rid = self._head(d, tn)
        heapq.heappop(self.queues[d][tn])
        self._count_queued(d, tn, -1)
        self.state[rid] = (d, tn, IN_FLIGHT, seq)
        self.in_flight[tn] += 1
        self.held[d][tn] += 1
        self.dep_in_flight[d] += 1
        if self.fair_share:
            t = self.table
            start = max(self.virtual_time[d], self.finish_tag[d][tn])
            tokens = int(t.input_tokens[rid]) + int(t.output_tokens[rid])
            self.finish_tag[d][tn] = start + tokens / self.quotas[tn].weight
            self.virtual_time[d] = start
        self.dispatch(rid, d)
