"""Agent controls and keyed caches -> summary sections: per-component calls / failures / timeouts, budget hits,
compressions, gateway time, and each keyed cache's hit, staleness and effective hit ratios per partition.

Reads task records and cache counts a run collected; knows nothing of SimPy. Sections appear only where they
have something to say (a workload using a control, a scenario with a keyed cache), so runs without them keep
their summary as it was, apart from the component table of agent classes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from simfactory.config.agent import AgentWorkload, CompressStep
from simfactory.resolve import agent_steps
from simfactory.sim.keyed_cache import CacheStats
from simfactory.sim.run import SimResult


def uses_controls(w: AgentWorkload) -> bool:
    """Whether a workload switches on any agent control (budget on tool calls, a gateway, compression)."""
    return (
        (w.budget is not None and w.budget.max_tool_calls is not None)
        or w.gateway is not None or w.auto_compress is not None
        or any(t.gateway is not None for t in w.tools)
        or any(isinstance(st, CompressStep) for _, st in agent_steps(w))
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def component_table(records: list[Any]) -> dict[str, dict[str, Any]]:
    """'kind/name' -> calls, failures, timeouts and their rates, summed over the given task records."""
    sums: dict[tuple[str, str], list[int]] = {}
    get = sums.get
    for r in records:
        for (kind, name, what), n in r.components.items():  # what: CALLS, FAILURES or TIMEOUTS (0, 1, 2)
            row = get((kind, name))
            if row is None:  # not setdefault: its default list would be built for every entry
                row = sums[(kind, name)] = [0, 0, 0]
            row[what] += n
    named = sorted((f"{kind}/{name}", row) for (kind, name), row in sums.items())
    return {key: {"calls": c, "failures": f, "timeouts": t, "failure_rate": _rate(f, c), "timeout_rate": _rate(t, c)}
            for key, (c, f, t) in named}


def add_task_controls(task_sections: dict[str, Any], result: SimResult, tasks: pd.DataFrame) -> None:
    """Add `components` to every agent class's task section, and `controls` where the workload uses them."""
    if not task_sections:
        return
    names = {c.index: c.config.name for c in result.resolved.classes}
    workloads = {c.config.name: c.agent for c in result.resolved.classes if c.agent is not None}
    by_class: dict[str, list[Any]] = {}
    for rec, measured in zip(result.tasks, tasks["measured"].to_numpy(dtype=bool)):
        if measured:
            by_class.setdefault(names[rec.class_id], []).append(rec)
    for cls, section in task_sections.items():
        recs = by_class.get(cls, [])
        section["components"] = component_table(recs)
        w = workloads.get(cls)
        if w is None or not uses_controls(w):
            continue
        n = len(recs)
        section["controls"] = {
            "budget_hits": {lim: sum(r.budget_limit == lim for r in recs) for lim in ("tokens", "usd", "tool_calls")},
            "compressions_per_task": sum(r.compressions for r in recs) / n if n else None,
            "compressed_tokens_per_task": sum(r.compressed_tokens for r in recs) / n if n else None,
            "gateway_calls_per_task": sum(r.gateway_calls for r in recs) / n if n else None,
            "gateway_s_per_task": sum(r.gateway_s for r in recs) / n if n else None,
            "gateway_usd": sum(r.usd_gateway for r in recs),
        }


def _cache_block(lookups: int, hits: int, stale: int, evictions: int) -> dict[str, Any]:
    return {
        "lookups": lookups,
        "hits": hits,
        "stale_hits": stale,
        "evictions": evictions,
        "hit_ratio": _rate(hits, lookups),
        "staleness_rate": _rate(stale, hits),  # share of hits answered from a changed entry
        "effective_hit_ratio": _rate(hits - stale, lookups),  # fresh hits per lookup
    }


def caches_section(caches: list[CacheStats]) -> dict[str, Any]:
    """'kind/name' -> totals and per-partition blocks (lookups in the measurement window)."""
    out: dict[str, Any] = {}
    for c in caches:
        parts = c.partitions
        total = [sum(getattr(p, f) for p in parts.values()) for f in ("lookups", "hits", "stale_hits", "evictions")]
        out[f"{c.kind}/{c.name}"] = {
            **_cache_block(*total),
            "partitions": {name: _cache_block(p.lookups, p.hits, p.stale_hits, p.evictions)
                           for name, p in parts.items()},
        }
    return out
