"""Agent tasks -> a DataFrame (one row per task) and per-class task summaries.

Cost per task is *attributed*: each LLM request's share of replica time (step time split over the
tokens of its batch) x what a replica-second of its pool costs, plus tool, retrieval and reviewer
costs. Idle fleet time is not attributed to tasks; the fully loaded figure spreads the whole fleet
cost of the window over tasks by their share of replica time.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np
import pandas as pd

from simfactory.sim.agents import CATEGORIES, SUCCESS, TASK_OUTCOMES
from simfactory.sim.run import SimResult

COUNT_COLUMNS = ("steps", "llm_calls", "tokens_in", "tokens_out", "tool_calls", "tool_failures", "retrieval_calls",
                 "cache_hits", "retries", "loop_iterations")


SCALAR_FIELDS = ("task_id", "class_id", "outcome", "escalated", "start_s", "end_s", *COUNT_COLUMNS, "usd_tools",
                 "usd_retrieval", "usd_human", "usd_network")


COLUMN_ORDER = ["task_id", "class", "outcome", "escalated", "start_s", "end_s", "e2e_s", *CATEGORIES, *COUNT_COLUMNS,
                "usd_llm", "usd_tools", "usd_retrieval", "usd_human", "usd_network", "replica_s", "usd_total", "measured"]


_EMPTY: list[pd.DataFrame] = []  # the frame of a run without agent tasks, built once per process


def tasks_frame(result: SimResult, usd_per_replica_s: list[float]) -> pd.DataFrame:
    """One row per agent task. A run without tasks gets a copy of the empty frame built the first time (building
    it column by column costs ~10 ms, half the summary of a small sweep point)."""
    if not result.tasks:
        if not _EMPTY:
            _EMPTY.append(_tasks_frame(result, usd_per_replica_s))
        return _EMPTY[0].copy()
    return _tasks_frame(result, usd_per_replica_s)


def _tasks_frame(result: SimResult, usd_per_replica_s: list[float]) -> pd.DataFrame:
    rs = result.resolved
    sim = rs.scenario.sim
    t = result.table
    tasks = result.tasks
    n = len(tasks)
    # one pass over the task records (each pass over 100k scattered objects costs more than the work done)
    columns = list(zip(*map(operator.attrgetter(*SCALAR_FIELDS), tasks))) or [()] * len(SCALAR_FIELDS)
    df = pd.DataFrame({name: np.asarray(col, dtype=object if name == "outcome" else None)
                       for name, col in zip(SCALAR_FIELDS, columns)}, copy=False)  # fresh arrays: no second copy
    if not n:
        df = df.astype({"start_s": float, "end_s": float})
    names = np.asarray([c.config.name for c in rs.classes], dtype=object)
    df["class"] = names[df.pop("class_id").to_numpy(dtype=np.int64)] if n else []
    df["e2e_s"] = df["end_s"] - df["start_s"]
    get = operator.itemgetter(*CATEGORIES)
    zeros = (0.0,) * len(CATEGORIES)
    parts = list(zip(*((get(b) if len(b) >= len(CATEGORIES) else tuple(b.get(c, 0.0) for c in CATEGORIES)) if b
                       else zeros for b in (r.breakdown for r in tasks)))) or [()] * len(CATEGORIES)
    for cat, col in zip(CATEGORIES, parts):
        df[cat] = np.asarray(col, dtype=float)
    # each task's requests (all attempts) summed at once: task index per request id, then bincount
    counts = [sum(map(len, r.rids)) for r in tasks]
    task_of = np.repeat(np.arange(n, dtype=np.int64), counts)
    rid = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(r.rids) for r in tasks),
                      dtype=np.int64, count=len(task_of))
    rep_s = t.replica_s[rid]
    rates = np.asarray([*usd_per_replica_s, 0.0])[t.deployment_id[rid]]
    df["usd_llm"] = np.bincount(task_of, weights=rep_s * rates, minlength=n)
    df["usd_network"] = df["usd_network"].astype(float) + np.bincount(task_of, weights=t.egress_usd[rid], minlength=n)
    df["replica_s"] = np.bincount(task_of, weights=rep_s, minlength=n)
    df["usd_total"] = df["usd_llm"] + df["usd_tools"] + df["usd_retrieval"] + df["usd_human"] + df["usd_network"]
    df["measured"] = (df["start_s"] >= sim.warmup_s) & (df["start_s"] < sim.horizon_s)
    return df[COLUMN_ORDER]


def task_summary(tasks: pd.DataFrame, window_usd_by_class: dict[str, float], stats_fn: Any) -> dict[str, Any]:
    """Per agent class: outcome rates, compound latency, critical-path breakdown, counts, cost."""
    out: dict[str, Any] = {}
    for cls, g in tasks[tasks["measured"]].groupby("class", sort=True):
        n = len(g)
        ok = g[g["outcome"].isin(SUCCESS)]
        done = g[g["outcome"] == "completed"]
        successes = len(ok)
        calls = int(g["tool_calls"].sum())
        retrievals = int(g["retrieval_calls"].sum())
        attributed = float(g["usd_total"].sum())
        out[str(cls)] = {
            "tasks": n,
            "outcomes": {o: int((g["outcome"] == o).sum()) for o in TASK_OUTCOMES},
            "outcome_rates": {o: float((g["outcome"] == o).mean()) for o in TASK_OUTCOMES},
            "escalation_rate": float(g["escalated"].mean()),
            "latency_s": stats_fn(done["e2e_s"]),
            "breakdown_mean_s": {c: float(done[c].mean()) if len(done) else None for c in CATEGORIES},
            "per_task_mean": {c: float(g[c].mean()) for c in COUNT_COLUMNS},
            "tool_success_rate": (1 - g["tool_failures"].sum() / calls) if calls else None,
            "cache_hit_ratio": (g["cache_hits"].sum() / retrievals) if retrievals else None,
            "cost_usd": {
                "per_task_attributed": attributed / n if n else None,
                "per_successful_task_attributed": attributed / successes if successes else None,
                "per_successful_task_fully_loaded": (
                    (window_usd_by_class.get(str(cls), 0.0)
                     + float(g[["usd_tools", "usd_retrieval", "usd_human", "usd_network"]].sum().sum()))
                    / successes
                    if successes
                    else None
                ),
                "llm": float(g["usd_llm"].sum()),
                "tools": float(g["usd_tools"].sum()),
                "retrieval": float(g["usd_retrieval"].sum()),
                "human": float(g["usd_human"].sum()),
                "network": float(g["usd_network"].sum()),
            },
        }
    return out
