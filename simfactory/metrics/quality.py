"""Answer quality in the summary (only for scenarios whose LLM steps have quality: blocks): how often each step's
answers were accepted, per deployment that answered, against the probability the quality mapping gave; and cost per
successful task taken apart into what successful tasks cost and what failed tasks and rejected answers added.

cost per successful task = cost per task / task success rate: a cheaper model that fails more pays for its failures
in the denominator; `decomposition` shows by how much."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pandas as pd
from scipy.stats import binomtest, norm

from simfactory.config.agent import AgentWorkload, LlmStep
from simfactory.config.quality import StepQuality
from simfactory.provenance import short_path
from simfactory.resolve.workloads import agent_steps
from simfactory.sim.agents import SUCCESS
from simfactory.sim.run import SimResult

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion at the two-sided level of normal quantile z (Wilson, JASA
    1927; stays inside [0, 1] at 0 or n), as scipy computes it; (0, 1) when nothing was judged."""
    if n <= 0:
        return (0.0, 1.0)
    ci = binomtest(successes, n).proportion_ci(confidence_level=2.0 * norm.cdf(z) - 1.0, method="wilson")
    return (float(ci.low), float(ci.high))


def _call_usd(result: SimResult, rids: list[int], usd_per_replica_s: list[float]) -> float:
    t = result.table
    return sum(float(t.replica_s[r]) * usd_per_replica_s[int(t.deployment_id[r])] for r in rids
               if t.deployment_id[r] >= 0)


def quality_summary(result: SimResult, tasks: pd.DataFrame, usd_per_replica_s: list[float],
                    task_blocks: dict[str, Any]) -> dict[str, Any] | None:
    """Step acceptance per (class, step, deployment) and the per-class cost decomposition, over measured tasks;
    None when no LLM step has a quality: block (the summary then has no quality key)."""
    rs = result.resolved
    q = rs.quality
    if q is None:
        return None
    measured = tasks[tasks["measured"]]
    steps_of = {c.config.name: _llm_steps(c.agent) for c in rs.classes if c.agent is not None}
    counts: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0])  # answers, accepted, sum p
    rejected_usd: dict[str, float] = defaultdict(float)
    t = result.table
    for tid, cls in zip(measured["task_id"].to_numpy(), measured["class"].to_numpy()):
        rec = result.tasks[int(tid)]
        for step, call, p, ok in rec.judged:
            rids = rec.rids[call]
            row = counts[(str(cls), step, int(t.deployment_id[rids[-1]]))]
            row[0] += 1
            row[1] += int(ok)
            row[2] += p
            if not ok:
                rejected_usd[str(cls)] += _call_usd(result, rids, usd_per_replica_s)
    steps = []
    for (cls, step, dep), (n, ok, sum_p) in sorted(counts.items()):
        d = rs.deployments[dep] if dep >= 0 else None
        sq = steps_of.get(cls, {}).get(step)
        bench = sq.benchmark if sq is not None else None
        lo, hi = wilson_interval(int(ok), int(n))
        steps.append({
            "class": cls, "step": step, "deployment": d.config.name if d else None,
            "model": d.config.model if d else None, "dtype": d.config.dtype if d else None,
            "benchmark": bench, "score": q.deployment_scores[dep].get(bench) if d and bench else None,
            "answers": int(n), "accepted": int(ok), "success_rate": ok / n,
            "success_rate_ci95": [lo, hi], "mapped_success_p": 1.0 - sum_p / n,
        })
    return {"table": short_path(q.table_file), "steps": steps, "deployments": _by_deployment(steps),
            "decomposition": _decomposition(measured, task_blocks, rejected_usd)}


def _llm_steps(agent: AgentWorkload) -> dict[str, StepQuality]:
    """LLM step name -> its quality block (a name used twice keeps the first block found)."""
    out: dict[str, StepQuality] = {}
    for _, st in agent_steps(agent):
        if isinstance(st, LlmStep) and st.quality is not None:
            out.setdefault(st.name, st.quality)
    return out


def _by_deployment(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    agg: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for s in steps:
        agg[(s["deployment"], s["model"], s["dtype"])][0] += s["answers"]
        agg[(s["deployment"], s["model"], s["dtype"])][1] += s["accepted"]
    return [{"deployment": dep, "model": m, "dtype": dt, "answers": n, "accepted": ok,
             "success_rate": ok / n if n else None}
            for (dep, m, dt), (n, ok) in sorted(agg.items(), key=lambda kv: str(kv[0]))]


def _decomposition(measured: pd.DataFrame, task_blocks: dict[str, Any], rejected_usd: dict[str, float]) -> dict[str, Any]:
    """Per class: fully loaded cost per successful task = cost per task / success rate, split by the attributed cost
    of successful tasks, of failed tasks, and (inside both) of answers the validator rejected."""
    out: dict[str, Any] = {}
    for cls, g in measured.groupby("class", sort=True):
        n = len(g)
        ok = g["outcome"].isin(SUCCESS).to_numpy()
        s = int(ok.sum())
        attributed = float(g["usd_total"].sum())
        per_success = (task_blocks.get(str(cls)) or {}).get("cost_usd", {}).get("per_successful_task_fully_loaded")
        total = per_success * s if per_success is not None else None
        failed_share = float(g.loc[~ok, "usd_total"].sum()) / attributed if attributed > 0 else 0.0
        rejected_share = rejected_usd.get(str(cls), 0.0) / attributed if attributed > 0 else 0.0
        out[str(cls)] = {
            "tasks": n,
            "successful_tasks": s,
            "task_success_rate": s / n if n else None,
            "llm_calls_per_task": float(g["llm_calls"].mean()) if n else None,
            "usd_fully_loaded": total,
            "usd_per_task_fully_loaded": total / n if total is not None and n else None,
            "usd_per_successful_task_fully_loaded": per_success,
            "on_successful_tasks_usd_per_success": per_success * (1 - failed_share) if per_success is not None else None,
            "on_failed_tasks_usd_per_success": per_success * failed_share if per_success is not None else None,
            "rejected_answers_usd_per_success": per_success * rejected_share if per_success is not None else None,
            "failed_tasks_share_of_cost": failed_share,
            "rejected_answers_share_of_cost": rejected_share,
            "usd_per_successful_task_attributed": attributed / s if s else None,
        }
    return out

