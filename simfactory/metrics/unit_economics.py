"""Unit economics by application (traffic class), tenant, model tier (deployment) and workflow path (agent tasks):
every priced line of the cost stack allocated to the units that caused it, so each breakdown sums to the stack's
total (conservation: tests/test_cost_stack.py).

How each line is allocated (its `allocated_by`):
  gpu_s         compute: each pool's serving cost over the GPU-seconds spent on it (a request's replica time x
                its deployment's tp x pp), so a request on a dearer pool carries more; a pool no request used is
                spread over all GPU-seconds
  tokens        storage, internet egress, replication: by tokens answered (GPU-seconds where none were)
  compute_usd   orchestration: in proportion to the compute each unit was allocated
  support_base  support: in proportion to each unit's share of the bill it is charged on (cloud compute,
                storage, network, control plane)
  violations    SLA penalties: by SLO violations
  direct        measured per request or task: cross-region egress, agent tools, retrieval and reviewers
What no unit can carry (a reviewer pool of a class with no measured task; a cost with nothing to spread it over)
is reported as the group "(unallocated)"."""

from __future__ import annotations

from typing import Any

import numpy as np

from simfactory.cost import stack as cs
from simfactory.cost.fleet import PoolCost
from simfactory.metrics.cost_units import DIMENSIONS, KEYS, UNALLOCATED, Cells

ALLOCATION = {
    cs.BY_GPU_S: "each pool's serving cost by GPU-seconds on it (replica time x tp x pp)",
    cs.BY_TOKENS: "by tokens answered (GPU-seconds where none were)",
    cs.BY_COMPUTE: "in proportion to the compute allocated",
    cs.BY_SUPPORT_BASE: "in proportion to the cloud bill allocated (cloud compute, storage, network, control plane)",
    cs.BY_VIOLATIONS: "by SLO violations",
    cs.DIRECT: "measured per request or task",
}
COUNT_FIELDS = ("requests", "successful_requests", "tasks", "successful_tasks", "tokens", "gpu_s")


def spread(total: float, bases: list[np.ndarray], unallocated: np.ndarray) -> np.ndarray:
    """`total` over the first base with a positive sum, in proportion to it; with none, on the unallocated cell."""
    for b in bases:
        s = float(b.sum())
        if s > 0:
            return total * b / s
    return total * unallocated


def allocate(units: Cells, lines: list[cs.Line], costs: list[PoolCost]) -> Cells:
    """`units` (metrics/cost_units.cells) with one usd_<line key> column per priced line."""
    u = dict(units)
    un = (u["application"] == UNALLOCATED).astype(float)
    gpu, pool = u["gpu_s"], u["pool"]
    window_h = next((x.quantity for x in lines if x.key == "compute"), 0.0) or 0.0
    cloud = np.zeros(len(un))
    for x in lines:
        if x.usd is None:
            continue
        if x.allocated_by == cs.BY_GPU_S:
            col = np.zeros(len(un))
            for p in costs:
                part = spread(p.serving_usd_per_hour * window_h, [gpu * (pool == p.pool), gpu], un)
                col += part
                cloud += part if p.location == "cloud" else 0.0
        elif x.allocated_by == cs.BY_TOKENS:
            col = spread(x.usd, [u["tokens"], gpu], un)
        elif x.allocated_by == cs.BY_COMPUTE:
            col = spread(x.usd, [u.get("usd_compute", np.zeros(len(un)))], un)
        elif x.allocated_by == cs.BY_SUPPORT_BASE:
            billed = sum((u[f"usd_{y.key}"] for y in lines if y.usd is not None and
                          (y.category in ("storage", "network") or y.key == "orchestration_control_plane")),
                         np.zeros(len(un)))
            col = spread(x.usd, [cloud + billed, gpu], un)
        elif x.allocated_by == cs.BY_VIOLATIONS:
            col = spread(x.usd, [u["violations"], gpu], un)
        else:  # direct: what the units carry, the rest (if any) unallocated
            col = u["agent_usd"] if x.category == "agent" else u["cross_region_usd"]
            col = col + (x.usd - float(col.sum())) * un
        u[f"usd_{x.key}"] = col
    return u


def group_row(g: dict[str, float], lines: list[cs.Line], revenue_usd_per_s: float | None) -> dict[str, Any]:
    """One group's line of the breakdown: its units, cost by category, total and per unit."""
    row: dict[str, Any] = {k: float(g[k]) for k in COUNT_FIELDS}
    for k in COUNT_FIELDS[:4]:
        row[k] = int(round(row[k]))
    priced = [x for x in lines if x.usd is not None]
    for cat in dict.fromkeys(x.category for x in priced):
        row[f"{cat}_usd"] = float(sum(g[f"usd_{x.key}"] for x in priced if x.category == cat))
    total = float(sum(g[f"usd_{x.key}"] for x in priced))
    row["total_usd"] = total
    row["usd_per_1m_tokens"] = total * 1e6 / row["tokens"] if row["tokens"] else None
    row["usd_per_successful_request"] = total / row["successful_requests"] if row["successful_requests"] else None
    row["usd_per_successful_task"] = total / row["successful_tasks"] if row["successful_tasks"] else None
    row["latency_value_saved_net_usd"] = (float(g["saved_s"]) * revenue_usd_per_s if revenue_usd_per_s is not None
                                          else None)
    return row


def breakdown(units: Cells, lines: list[cs.Line], costs: list[PoolCost],
              revenue_usd_per_s: float | None = None) -> dict[str, Any]:
    """finance.unit_economics.by_application / by_tenant / by_tier / by_workflow_path, and how lines were allocated.
    A group with no unit and no cost is left out."""
    u = allocate(units, lines, costs)
    numeric = [k for k in u if k not in KEYS]
    usd_cols = [f"usd_{x.key}" for x in lines if x.usd is not None]
    out: dict[str, Any] = {}
    for dim, key in DIMENSIONS.items():
        names, inv = np.unique(u[dim].astype(str), return_inverse=True)
        sums = {k: np.bincount(inv, weights=u[k], minlength=len(names)) for k in numeric}
        groups = {}
        for i, name in enumerate(names):
            g = {k: float(v[i]) for k, v in sums.items()}
            if any(g[k] for k in COUNT_FIELDS) or any(abs(g[k]) > 0 for k in usd_cols):
                groups[str(name)] = group_row(g, lines, revenue_usd_per_s)
        out[key] = groups
    out["allocation"] = {x.key: ALLOCATION[x.allocated_by] for x in lines if x.usd is not None}
    return out
