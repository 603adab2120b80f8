"""Per-tenant accounting and fairness: summary.json's `tenants` section.

Per tenant, over the measurement window: requests that arrived in it and their outcomes, queue wait (time at the
tenant gate and in the engines' queues, arrival at the deployment to first scheduled step) and the part of it spent
at the gate, TTFT and E2E percentiles, preemptions per request, the spread of completion times (standard deviation
and coefficient of variation of E2E), and the tokens and GPU time of the requests completed in the window with the
tenant's share of each.

Fairness across tenants, both Jain's index J(x) = (sum x)^2 / (n sum x^2) (Jain, Chiu & Hawe, "A quantitative
measure of fairness and discrimination for resource allocation in shared computer systems", DEC-TR-301, 1984):
1 when every x_i is equal, 1/n when one tenant gets everything.
- `jain_index_weighted`: x_i = tokens served / weight. The fair-share target when every tenant is backlogged; a
  tenant that asks for less than its share lowers it without being treated unfairly.
- `jain_index_max_min`: x_i = tokens served / the tenant's weighted max-min fair share of what was served, given
  what it asked for (offered tokens: water-filling, Bertsekas & Gallager, "Data Networks", 2nd ed., 6.5.2). 1 when
  each tenant got min(its demand, its weighted share of the capacity left by lighter tenants).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from simfactory.resolve import ResolvedScenario

ANSWERED = ("completed", "cache_hit")
REJECTED = ("rejected_too_long", "rejected_rate_limit", "rejected_queue_full")


def jain_index(x: list[float] | np.ndarray) -> float | None:
    """Jain's fairness index of non-negative allocations; None when there is nothing to compare."""
    v = np.asarray(x, dtype=float)
    squares = float((v * v).sum())
    return float(v.sum() ** 2 / (len(v) * squares)) if len(v) and squares > 0 else None


def max_min_fair(demand: list[float], weight: list[float], capacity: float) -> list[float]:
    """Weighted max-min fair allocation of `capacity` (water-filling): raise every unsatisfied tenant's
    allocation in proportion to its weight until it reaches its demand or the capacity runs out."""
    alloc = [0.0] * len(demand)
    active = [i for i, d in enumerate(demand) if d > 0]
    left = float(capacity)
    while active and left > 0:
        level = left / sum(weight[i] for i in active)  # capacity per unit of weight this round
        done = [i for i in active if demand[i] - alloc[i] <= level * weight[i]]
        if not done:
            for i in active:
                alloc[i] += level * weight[i]
            break
        for i in done:
            left -= demand[i] - alloc[i]
            alloc[i] = demand[i]
        active = [i for i in active if i not in done]
    return alloc


def _tokens(df: pd.DataFrame) -> float:
    return float(df["input_tokens"].sum() + df["output_tokens"].sum())


def _tenant_block(mine: pd.DataFrame, done_in_window: pd.DataFrame, window_s: float,
                  stats_fn: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """One tenant's requests (arrived in the window) and what it got done in the window."""
    n = len(mine)
    counts = mine["outcome"].value_counts()
    answered = mine[mine["outcome"].isin(ANSWERED)]
    e2e = answered["e2e_s"].to_numpy(dtype=float)
    e2e = e2e[~np.isnan(e2e)]
    e2e_mean = float(e2e.mean()) if len(e2e) else None
    e2e_std = float(e2e.std()) if len(e2e) else None
    return {
        "requests": n,
        "completed": int(counts.get("completed", 0)),
        "rejected": int(sum(counts.get(o, 0) for o in REJECTED)),
        "shed": int(counts.get("shed", 0)),
        "aborted": int(counts.get("aborted", 0)),
        "failed": int(counts.get("failed", 0)),
        "unfinished": int(counts.get("unfinished", 0)),
        "queue_s": stats_fn(answered["queue_s"]),
        "admission_wait_s": stats_fn(answered["admission_wait_s"]),
        "ttft_s": stats_fn(answered["ttft_s"]),
        "e2e_s": stats_fn(answered["e2e_s"]),
        "e2e_std_s": e2e_std,
        "e2e_cv": e2e_std / e2e_mean if e2e_mean else None,
        "preemptions_per_request": float(mine["preemptions"].sum()) / n if n else None,
        "offered_tokens_per_s": _tokens(mine) / window_s,
        "completed_per_s": len(done_in_window) / window_s,
        "tokens_per_s": _tokens(done_in_window) / window_s,
        "gpu_s": float(done_in_window["replica_s"].sum()),
    }


def tenant_summary(rs: ResolvedScenario, measured: pd.DataFrame, completed: pd.DataFrame, window_s: float,
                   stats_fn: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The `tenants` section ({} without tenants): the policy, fairness indices and a block per tenant.
    `measured`: requests that arrived in the window; `completed`: attempts that ended in it."""
    sc = rs.scenario
    if not sc.tenants:
        return {}
    served = completed[completed["outcome"] == "completed"]
    blocks: dict[str, Any] = {}
    for i, t in enumerate(sc.tenants):
        block = _tenant_block(measured[measured["tenant_id"] == i], served[served["tenant_id"] == i], window_s,
                              stats_fn)
        blocks[t.name] = {"weight": t.weight, "max_concurrency": t.max_concurrency, "gpu_share": t.gpu_share, **block}
    tokens = [b["tokens_per_s"] for b in blocks.values()]
    gpu = [b["gpu_s"] for b in blocks.values()]
    for b in blocks.values():
        b["token_share"] = b["tokens_per_s"] / sum(tokens) if sum(tokens) else None
        b["gpu_time_share"] = b.pop("gpu_s") / sum(gpu) if sum(gpu) else None
    weights = [t.weight for t in sc.tenants]
    fair = max_min_fair([b["offered_tokens_per_s"] for b in blocks.values()], weights, sum(tokens))
    return {
        "policy": sc.admission.policy,
        "jain_index_weighted": jain_index([x / w for x, w in zip(tokens, weights)]),
        "jain_index_max_min": jain_index([x / f for x, f in zip(tokens, fair) if f > 0]),
        "untenanted_requests": int((measured["tenant_id"] < 0).sum()),
        "by_tenant": blocks,
    }

