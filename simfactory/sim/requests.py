"""Per-request state and results as columns indexed by request id (no per-request objects).

Plain traffic is added in one vectorised call before the run; agent tasks add their LLM calls one by
one while the simulation runs, so the columns grow by doubling. `trim()` cuts them to length at the end.

The columns the simulation reads and writes one request at a time (LIVE_COLUMNS) are Python lists while it
runs: a numpy scalar read, write or `+=` costs 4-5x the list's, and there are dozens per request. `trim()`
turns them into numpy arrays of their dtype, so everything after the run sees arrays only.
"""

from __future__ import annotations

import numpy as np

from simfactory.sim.outcomes import Outcome

# column -> (dtype, initial value)
COLUMNS: dict[str, tuple[type, float | int]] = {
    "arrival_s": (np.float64, np.nan),
    "class_id": (np.int32, -1),
    "deployment_id": (np.int32, -1),
    "input_tokens": (np.int64, 0),
    "output_tokens": (np.int64, 0),
    "task_id": (np.int64, -1),  # -1: a plain request, not part of an agent task
    "step_id": (np.int32, -1),  # index into the model's step-name list
    "priority": (np.int8, 0),  # service-class priority: lower is served first
    "service_class": (np.int16, -1),
    "tenant": (np.int16, -1),
    "session": (np.int64, -1),  # plain requests of a class with sessions; -1 none
    "difficulty": (np.float32, 0.0),  # for tiered routes, in [0, 1]
    "prefix_key": (np.int64, -1),  # shared prompt prefix (system prompt); -1 none
    "prefix_tokens": (np.int64, 0),
    "context_key": (np.int64, -1),  # private prefix (an agent task's context so far); -1 none
    "context_tokens": (np.int64, 0),
    "cached_tokens": (np.int64, 0),  # prompt tokens served from the prefix cache (not prefilled)
    "net_in_s": (np.float64, 0.0),  # network delay caller -> deployment (one way)
    "net_out_s": (np.float64, 0.0),  # network delay deployment -> caller (one way)
    "front_end_s": (np.float64, 0.0),  # the deployment's serving front end, before the engine sees the request
    "egress_usd": (np.float64, 0.0),  # cross-region transfer of prompt and answer
    "dispatched": (np.int8, 0),
    "fallbacks": (np.int8, 0),
    "route_id": (np.int16, -1),
    "kv_ready": (np.int8, 0),  # its KV cache is available (transferred, or swapped out to host): no prefill
    "swapped": (np.int8, 0),  # its KV cache waits in host memory (preemption by swap)  # disaggregation: the KV cache arrived from a prefill replica; decode directly
    "prefill_replica": (np.int32, -1),  # disaggregation: the replica that prefilled it
    "kv_transfer_s": (np.float64, 0.0),  # disaggregation: time moving the KV cache prefill -> decode  # the route (routing.routes index) that chose the deployment; -1 none  # times moved to a route's fallback after its timeout  # handed to a deployment's balancer (so an abort can find it there)
    "origin": (np.int64, -1),  # escalations: the request id of the first attempt; -1 for a first attempt
    "attempt": (np.int8, 0),
    "replica": (np.int32, -1),
    "admitted_s": (np.float64, np.nan),  # handed to its deployment's replicas (after any wait at the tenant gate)
    "first_scheduled_s": (np.float64, np.nan),
    "first_token_s": (np.float64, np.nan),
    "completion_s": (np.float64, np.nan),  # completion (or rejection / abort) time
    "preemptions": (np.int32, 0),
    "generated": (np.int64, 0),
    "replica_s": (np.float64, 0.0),  # share of replica step time: step time split over its batch by tokens
    "outcome": (np.int8, int(Outcome.PENDING)),
}

# read and written per request during the run: lists until trim() (small values, so little extra memory)
LIVE_COLUMNS = frozenset({
    "class_id", "deployment_id", "input_tokens", "output_tokens", "priority", "service_class", "tenant",
    "dispatched", "kv_ready", "replica", "admitted_s", "first_scheduled_s", "first_token_s", "completion_s",
    "generated", "replica_s", "outcome", "net_out_s",
})


def _column(dtype: type, fill: float | int, size: int, live: bool) -> np.ndarray | list:
    return [fill] * size if live else np.full(size, fill, dtype=dtype)


class RequestTable:
    arrival_s: np.ndarray
    class_id: np.ndarray
    deployment_id: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    task_id: np.ndarray
    step_id: np.ndarray
    priority: np.ndarray
    service_class: np.ndarray
    tenant: np.ndarray
    session: np.ndarray
    difficulty: np.ndarray
    prefix_key: np.ndarray
    prefix_tokens: np.ndarray
    context_key: np.ndarray
    context_tokens: np.ndarray
    cached_tokens: np.ndarray
    net_in_s: np.ndarray
    net_out_s: np.ndarray
    front_end_s: np.ndarray
    egress_usd: np.ndarray
    dispatched: np.ndarray
    fallbacks: np.ndarray
    route_id: np.ndarray
    kv_ready: np.ndarray
    swapped: np.ndarray
    prefill_replica: np.ndarray
    kv_transfer_s: np.ndarray
    origin: np.ndarray
    attempt: np.ndarray
    replica: np.ndarray
    admitted_s: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    completion_s: np.ndarray
    preemptions: np.ndarray
    generated: np.ndarray
    replica_s: np.ndarray
    outcome: np.ndarray

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self._capacity = max(capacity, 1)
        # replayed trace requests whose prompt is named as hash blocks: rid -> (tokens per block, hash ids)
        self.block_hashes: dict[int, tuple[int, tuple[int, ...]]] = {}
        for name, (dtype, fill) in COLUMNS.items():
            setattr(self, name, _column(dtype, fill, self._capacity, name in LIVE_COLUMNS))

    def __len__(self) -> int:
        return self.n

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= self._capacity:
            return
        cap = max(need, 2 * self._capacity)
        for name, (dtype, fill) in COLUMNS.items():
            old = getattr(self, name)
            if isinstance(old, list):
                old.extend([fill] * (cap - len(old)))
                continue
            new = np.full(cap, fill, dtype=dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)
        self._capacity = cap

    def add_many(
        self,
        arrival_s: np.ndarray,
        class_id: np.ndarray,
        deployment_id: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        **columns: np.ndarray,
    ) -> None:
        k = len(arrival_s)
        self._reserve(k)
        sl = slice(self.n, self.n + k)
        columns.update(arrival_s=arrival_s, class_id=class_id, deployment_id=deployment_id, input_tokens=input_tokens,
                       output_tokens=output_tokens)
        for name, values in columns.items():
            column = getattr(self, name)
            if isinstance(column, list):  # the values as the column's dtype would hold them, as Python scalars
                values = np.asarray(values).astype(COLUMNS[name][0], copy=False).tolist()
            column[sl] = values
        self.n += k

    def add(
        self,
        arrival_s: float,
        class_id: int,
        deployment_id: int,
        input_tokens: int,
        output_tokens: int,
        task_id: int = -1,
        step_id: int = -1,
        like: int = -1,
    ) -> int:
        """Append one request; `like` copies service class, tenant, priority, session and difficulty."""
        rid = self.n
        if rid >= self._capacity:  # _reserve's own test, before the call (per request)
            self._reserve(1)
        self.arrival_s[rid] = arrival_s
        self.class_id[rid] = class_id
        self.deployment_id[rid] = deployment_id
        self.input_tokens[rid] = input_tokens
        self.output_tokens[rid] = output_tokens
        self.task_id[rid] = task_id
        self.step_id[rid] = step_id
        if like >= 0:
            for name in ("priority", "service_class", "tenant", "session", "difficulty", "prefix_key", "prefix_tokens",
                         "context_key", "context_tokens"):
                getattr(self, name)[rid] = getattr(self, name)[like]
            if like in self.block_hashes:
                self.block_hashes[rid] = self.block_hashes[like]
        self.n += 1
        return rid

    def trim(self) -> None:
        """Cut every column to the number of requests, as numpy arrays (call once the run is over)."""
        for name, (dtype, _) in COLUMNS.items():
            column = getattr(self, name)
            setattr(self, name, np.array(column[: self.n], dtype=dtype))
        self._capacity = max(self.n, 1)
