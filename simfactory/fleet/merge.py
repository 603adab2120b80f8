"""Merge the raw results of shards into one SimResult, so the summary is computed by the same code as a single
run's (simfactory/metrics/summary.py) and keeps its layout: percentiles come from the merged per-request records,
counts and sums add, per-replica timelines sit side by side and fleet-level timelines add sample by sample.

Shards are independent simulations numbered from 0 each; merging renumbers what names a row of another table
(replica, prefill replica, origin request, session, task) by the rows the earlier shards hold, so ids stay unique
and every escalation still points at its own first attempt."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from simfactory.resolve import ResolvedScenario
from simfactory.sim.autoscale import AutoscaleLog
from simfactory.sim.faults import FaultLog
from simfactory.sim.requests import COLUMNS, RequestTable
from simfactory.sim.run import SimResult, Timelines

REQUEST_ID_COLUMNS = ("origin",)  # columns holding a request id (-1: none)
REPLICA_COLUMNS = ("replica", "prefill_replica")  # columns holding a replica id (-1: none)
KEY_COLUMNS = ("session", "task_id")  # ids each shard numbers from 0 (-1: none)


def _offset(values: np.ndarray, by: int) -> np.ndarray:
    """values + by where a value names something (>= 0); -1 (none) stays -1."""
    return np.where(values >= 0, values + by, values) if by else values


def merge_tables(tables: Sequence[RequestTable]) -> RequestTable:
    """One table holding every shard's rows in shard order, ids renumbered (replica offsets applied separately)."""
    out = RequestTable(capacity=1)
    n = sum(len(t) for t in tables)
    row_off = np.cumsum([0, *(len(t) for t in tables)])
    key_off = {c: np.cumsum([0, *((int(getattr(t, c).max()) + 1 if len(t) else 0) for t in tables)])
               for c in KEY_COLUMNS}
    for name, (dtype, _fill) in COLUMNS.items():
        parts = []
        for i, t in enumerate(tables):
            col = np.asarray(getattr(t, name), dtype=dtype)[: len(t)]
            if name in REQUEST_ID_COLUMNS:
                col = _offset(col, int(row_off[i]))
            elif name in KEY_COLUMNS:
                col = _offset(col, int(key_off[name][i]))
            parts.append(col)
        setattr(out, name, np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype))
    for i, t in enumerate(tables):
        out.block_hashes.update({rid + int(row_off[i]): v for rid, v in t.block_hashes.items()})
    out.n = n
    out._capacity = max(n, 1)
    return out


def _pad(rows: list[list[float]], length: int, width: int, fill: list[float] | float) -> np.ndarray:
    a = np.asarray(rows, dtype=float).reshape(len(rows), width)
    if len(a) >= length:
        return a[:length]
    tail = np.broadcast_to(np.asarray(fill, dtype=float), (length - len(a), width))
    return np.vstack([a, tail])


def merge_timelines(parts: Sequence[SimResult], n_dep: int) -> Timelines:
    """Per-replica columns side by side, fleet totals added. Shards sample the same grid (k x resolution from 0);
    one that ended earlier (drained sooner) is padded: empty from then on, its KV use as last sampled."""
    longest = max(parts, key=lambda p: len(p.timelines.time_s))
    n = len(longest.timelines.time_s)
    tl = Timelines(time_s=list(longest.timelines.time_s))

    def total(attr: str, width: int) -> list[list[int]]:
        acc = np.zeros((n, width))
        for p in parts:
            rows = getattr(p.timelines, attr)
            if rows:
                acc += _pad(rows, n, width, 0.0)
        return acc.astype(np.int64).tolist()

    tl.in_system = _sum_series(parts, "in_system", n)
    tl.tasks_in_system = _sum_series(parts, "tasks_in_system", n)
    tl.deployment_queue = total("deployment_queue", n_dep)
    tl.gated = total("gated", n_dep) if any(p.timelines.gated for p in parts) else []
    for attr, as_int in (("waiting", True), ("running", True), ("kv_used_frac", False), ("busy_frac", False)):
        blocks = []
        for p in parts:
            width = len(p.replicas)
            rows = getattr(p.timelines, attr)
            last = rows[-1] if rows and attr == "kv_used_frac" else 0.0
            blocks.append(_pad(rows, n, width, last) if rows else np.zeros((n, width)))
        merged = np.hstack(blocks) if blocks else np.zeros((n, 0))
        setattr(tl, attr, (merged.astype(np.int64) if as_int else merged).tolist())
    return tl


def _sum_series(parts: Sequence[SimResult], attr: str, n: int) -> list[int]:
    acc = np.zeros(n, dtype=np.int64)
    for p in parts:
        v = np.asarray(getattr(p.timelines, attr), dtype=np.int64)[:n]
        acc[: len(v)] += v
    return acc.tolist()


def _engines_of(parts: Sequence[SimResult], deployment: str) -> list[int]:
    return [r.replica_id for p in parts for r in p.replicas if r.deployment == deployment and r.role != "prefill"]


def merge_faults(parts: Sequence[SimResult], replica_off: Sequence[int], row_off: Sequence[int]) -> FaultLog | None:
    logs = [(p.faults, ro, qo) for p, ro, qo in zip(parts, replica_off, row_off) if p.faults is not None]
    if not logs:
        return None
    out = FaultLog()
    for log, ro, qo in logs:
        out.failures += [(r + ro, a, b) for r, a, b in log.failures]
        out.lost += [(t, r + ro, q + qo) for t, r, q in log.lost]
        out.retries += log.retries
        out.failed += log.failed
    return out


def merge_shards(rs: ResolvedScenario, parts: Sequence[SimResult], seed: int) -> SimResult:
    """The shards' results as one run of `rs` (the fleet they make up together) on `seed`."""
    if not parts:
        raise ValueError("no shard results to merge")
    replica_off = np.cumsum([0, *(len(p.replicas) for p in parts)])[:-1].tolist()
    row_off = np.cumsum([0, *(len(p.table) for p in parts)])[:-1].tolist()
    table = merge_tables([p.table for p in parts])
    for name in REPLICA_COLUMNS:
        col = getattr(table, name)
        shift = np.repeat(np.asarray(replica_off, dtype=np.int64), [len(p.table) for p in parts])
        setattr(table, name, np.where(col >= 0, col + shift, col).astype(col.dtype))
    replicas = []
    index_off: dict[str, int] = {}
    for p, off in zip(parts, replica_off):
        seen: dict[str, int] = {}
        for r in p.replicas:
            base = index_off.get(r.deployment, 0)
            replicas.append(dataclasses.replace(r, replica_id=r.replica_id + off,
                                                index_in_deployment=r.index_in_deployment + base))
            seen[r.deployment] = max(seen.get(r.deployment, 0), r.index_in_deployment + 1)
        for d, count in seen.items():
            index_off[d] = index_off.get(d, 0) + count
    autoscale: dict[str, AutoscaleLog] = {}
    engines_before: dict[str, int] = {}
    for p in parts:
        for name, log in p.autoscale.items():
            merged = autoscale.setdefault(name, AutoscaleLog(log.deployment, log.tp, log.delay_s))
            base = engines_before.get(name, 0)
            merged.intervals += [list(iv) for iv in log.intervals]
            merged.events += [(t, kind, idx + base) for t, kind, idx in log.events]
        for name in p.autoscale:
            engines_before[name] = engines_before.get(name, 0) + len(_engines_of([p], name))
    cat = lambda attr: np.concatenate([np.asarray(getattr(p, attr), dtype=float) for p in parts])  # noqa: E731
    return SimResult(
        resolved=rs,
        seed=seed,
        table=table,
        tasks=[],  # agent workloads are not sharded (fleet/shards.py refuses them)
        step_names=list(parts[0].step_names),
        replicas=replicas,
        replica_busy_s=cat("replica_busy_s"),
        busy_at_warmup_s=cat("busy_at_warmup_s"),
        busy_at_horizon_s=cat("busy_at_horizon_s"),
        replica_steps=np.concatenate([np.asarray(p.replica_steps) for p in parts]),
        timelines=merge_timelines(parts, len(rs.deployments)),
        end_s=max(p.end_s for p in parts),
        events=sum(p.events for p in parts),
        autoscale=autoscale,
        faults=merge_faults(parts, replica_off, row_off),
    )
