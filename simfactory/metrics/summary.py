"""Summary statistics of a run over its measurement window, with costs: the numbers reports print.

The measurement window is [warmup_s, horizon_s): latency statistics cover requests that *arrived*
in it; throughput counts requests *completed* in it; utilization is the busy fraction within it.
"""

from __future__ import annotations

import copy

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simfactory import __version__
from simfactory.gc_pause import gc_paused
from simfactory.provenance import provenance
from simfactory.config.scenario import describe_arrivals
from simfactory.cost.fleet import PoolCost, fleet_costs
from simfactory.metrics.autoscaling import autoscaling_summary, billed_accelerators
from simfactory.metrics.resilience import resilience_summary
from simfactory.metrics.finance import (
    demand_by_pool,
    finance_summary,
    pool_utilization,
    serving_idle_fraction,
    units_of,
    with_serving_fractions,
)
from simfactory.metrics.frames import replica_timelines_frame, requests_frame, system_timeline_frame
from simfactory.metrics.slo import logical_requests, meets_slo, service_summary
from simfactory.metrics.tasks import task_summary, tasks_frame
from simfactory.metrics.trace import trace_events
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import SimResult

SCHEMA_VERSION = 1
DEFAULT_TRACE_TASKS = 50
PERCENTILES = (50, 90, 95, 99)
LATENCY_COLUMNS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s", "queue": "queue_s"}


@dataclass
class RunMetrics:
    """Everything a report needs, without SimPy: DataFrames, the summary dict and trace events."""

    requests: pd.DataFrame
    tasks: pd.DataFrame
    replica_timelines: pd.DataFrame
    system_timeline: pd.DataFrame
    pool_costs: list[PoolCost]
    summary: dict[str, Any]
    trace_events: list[dict[str, Any]]
    logical: pd.DataFrame  # requests as callers see them (escalations folded in), with slo_met


def stats(values: pd.Series | np.ndarray) -> dict[str, float | int | None]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"count": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    pct = np.percentile(v, PERCENTILES)
    return {
        "count": int(len(v)),
        "mean": float(v.mean()),
        **{f"p{p}": float(x) for p, x in zip(PERCENTILES, pct)},
        "max": float(v.max()),
    }


def latency_block(df: pd.DataFrame) -> dict[str, Any]:
    done = df[df["outcome"].isin((Outcome.COMPLETED.label, Outcome.CACHE_HIT.label))]
    return {name: stats(done[col]) for name, col in LATENCY_COLUMNS.items()}


def window_mean(tl: pd.DataFrame, column: str, start_s: float, end_s: float) -> pd.Series:
    """Mean of a sampled column over samples in (start, end], per replica."""
    w = tl[(tl["time_s"] > start_s) & (tl["time_s"] <= end_s)]
    return w.groupby("replica")[column].mean()


def compute_metrics(result: SimResult, trace_tasks: int = DEFAULT_TRACE_TASKS) -> RunMetrics:
    """Frames, summary and finance of a run (the cycle collector paused: see simfactory/gc_pause.py)."""
    with gc_paused():
        return _compute_metrics(result, trace_tasks)


def _rows(df: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    """df[mask] without copying the frame when every row is selected (the usual case: a 1M-row copy costs ~0.1 s)."""
    return df if bool(mask.all()) else df[mask]


def _compute_metrics(result: SimResult, trace_tasks: int) -> RunMetrics:
    rs = result.resolved
    sc = rs.scenario
    sim = sc.sim
    req = requests_frame(result)
    rtl = replica_timelines_frame(result)
    stl = system_timeline_frame(result)
    start, end = sim.warmup_s, sim.horizon_s
    window_s = end - start

    measured = _rows(req, req["measured"])
    blocks: dict[int, tuple[pd.DataFrame, dict[str, Any]]] = {}  # the frame is kept so its id is not reused

    def latency_of(df: pd.DataFrame) -> dict[str, Any]:
        """latency_block, once per frame: with one class or one deployment their rows are `measured` itself."""
        if id(df) not in blocks:
            blocks[id(df)] = (df, latency_block(df))
        return copy.deepcopy(blocks[id(df)][1])

    counted = req["outcome"].value_counts()
    outcome_counts = {o.label: int(counted.get(o.label, 0)) for o in Outcome if o != Outcome.PENDING}
    completed_in_window = req[(req["completion_s"] >= start) & (req["completion_s"] < end)]
    out_tok = int(completed_in_window["output_tokens"].sum())
    in_tok = int(completed_in_window["input_tokens"].sum())
    throughput = {
        "requests_per_s": len(completed_in_window) / window_s,  # attempts: an escalated request counts per tier
        "output_tokens_per_s": out_tok / window_s,
        "input_tokens_per_s": in_tok / window_s,
        "offered_requests_per_s": len(measured) / window_s,
    }

    busy = pd.Series((result.busy_at_horizon_s - result.busy_at_warmup_s) / window_s)
    kv_mean = window_mean(rtl, "kv_used_frac", start, end)
    kv_max = rtl[(rtl["time_s"] > start) & (rtl["time_s"] <= end)].groupby("replica")["kv_used_frac"].max()
    preempt = req.groupby("replica")["preemptions"].sum()
    replicas = []
    for r in result.replicas:
        replicas.append(
            {
                "replica": r.replica_id,
                "deployment": r.deployment,
                "pool": r.pool,
                "role": r.role,
                "busy_frac": _f(busy.get(r.replica_id)),
                "kv_used_frac_mean": _f(kv_mean.get(r.replica_id)),
                "kv_used_frac_max": _f(kv_max.get(r.replica_id)),
                "preemptions": int(preempt.get(r.replica_id, 0)),
                "steps": int(result.replica_steps[r.replica_id]),
            }
        )

    # Pool utilization: busy accelerator-time over provisioned accelerator-time (idle accelerators count).
    pool_busy: dict[str, float] = {p.name: 0.0 for p in sc.pools}
    for r, row in zip(result.replicas, replicas):
        pool_busy[r.pool] += (row["busy_frac"] or 0.0) * r.accelerators
    serving_idle = serving_idle_fraction(result, pool_busy)
    billed = billed_accelerators(result, start, end)
    utilization = pool_utilization(sc, pool_busy, serving_idle, billed)
    done = completed_in_window[completed_in_window["outcome"] == Outcome.COMPLETED.label]
    in_service_s = (done["completion_s"] - done["first_scheduled_s"]).mean() if len(done) else 0.0
    costs = with_serving_fractions(sc, fleet_costs(
        rs, utilization, lost_work_s=float(in_service_s) if in_service_s == in_service_s else 0.0,
        billed_accelerators=billed))
    usd_per_hour = sum(c.per_hour.total_usd for c in costs)
    serving_usd_per_hour = sum(c.serving_usd_per_hour for c in costs)
    window_h = window_s / 3600.0
    window_usd = usd_per_hour * window_h
    serving_window_usd = serving_usd_per_hour * window_h

    pool_usd_per_hour = {c.pool: c.per_hour.total_usd for c in costs}
    pools = {p.name: p for p in sc.pools}
    usd_per_replica_s = [
        pool_usd_per_hour[d.config.pool] / billed.get(d.config.pool, pools[d.config.pool].count) * d.config.tp / 3600.0
        for d in rs.deployments
    ]
    rates = np.asarray([*usd_per_replica_s, 0.0])  # deployment -1 (never routed): no replica time
    req["usd"] = req["replica_s"] * rates[result.table.deployment_id] if len(req) else 0.0
    lreq = logical_requests(req)
    lreq["slo_met"] = meets_slo(lreq, rs)
    # unit costs count what callers got: an escalated request once, with its final answer's tokens
    done_in_window = ((lreq["completion_s"] >= start) & (lreq["completion_s"] < end)).to_numpy()
    answered_in_window = lreq.loc[done_in_window, ["input_tokens", "output_tokens"]]  # two columns, not a frame copy
    answered_out_tok = int(answered_in_window["output_tokens"].sum())
    answered_in_tok = int(answered_in_window["input_tokens"].sum())
    throughput["answered_requests_per_s"] = len(answered_in_window) / window_s
    tasks = tasks_frame(result, usd_per_replica_s)
    share = measured.groupby("class")["replica_s"].sum()
    total_share = float(share.sum())
    window_usd_by_class = ({str(k): serving_window_usd * float(v) / total_share for k, v in share.items()}
                           if total_share else {})

    w_stl = stl[(stl["time_s"] > start) & (stl["time_s"] <= end)]
    deployments = []
    for d in rs.deployments:
        q = w_stl[f"queue_depth.{d.config.name}"]
        dep_req = _rows(measured, measured["deployment"] == d.config.name)
        prefix_cache = None
        if d.config.prefix_cache_tokens:
            admitted = req[(req["deployment"] == d.config.name) & req["first_scheduled_s"].notna()]
            prefix_cache = {
                "capacity_tokens": d.config.prefix_cache_tokens,
                "hit_ratio": float((admitted["cached_tokens"] > 0).mean()) if len(admitted) else None,
                "prefill_tokens_saved": int(admitted["cached_tokens"].sum()),
                "saved_fraction_of_prompt_tokens": (
                    float(admitted["cached_tokens"].sum() / admitted["input_tokens"].sum()) if len(admitted) else None
                ),
            }
        deployments.append(
            {
                "name": d.config.name,
                "model": d.config.model,
                "pool": d.config.pool,
                "sku": d.profile.sku,
                "replicas": d.config.replicas,
                "tp": d.config.tp,
                "dtype": d.config.dtype,
                "step_time_source": d.step_time_source,
                "kv_capacity_tokens": d.kv_capacity_tokens,
                "queue_depth_mean": _f(q.mean()) if len(q) else None,
                "queue_depth_max": int(q.max()) if len(q) else None,
                "latency_s": latency_of(dep_req),
                "prefix_cache": prefix_cache,
            }
        )

    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "simfactory_version": __version__,
        "provenance": provenance(rs, result.seed),
        "input_warnings": rs.warnings,
        "scenario": sc.name,
        "description": sc.description,
        "scenario_file": rs.file,
        "seed": result.seed,
        "arrival_process": describe_arrivals(sc.traffic.arrival),
        "window": {
            "warmup_s": start,
            "horizon_s": end,
            "end_s": result.end_s,
            "measured_requests": int(len(measured)),
            "total_requests": int(len(req)),
        },
        "outcomes": outcome_counts,
        "latency_s": latency_of(measured),
        "throughput": throughput,
        "classes": {
            c.config.name: {
                "requests": int((measured["class"] == c.config.name).sum()),
                "latency_s": latency_of(_rows(measured, measured["class"] == c.config.name)),
            }
            for c in rs.classes
        },
        "deployments": deployments,
        "replicas": replicas,
        "little_law": {
            "mean_in_system": _f(w_stl["in_system"].mean()) if len(w_stl) else None,
            "arrival_rate_per_s": len(measured) / window_s,
            "mean_time_in_system_s": _f(
                (measured["departure_s"].fillna(result.end_s) - measured["arrival_s"]).mean()
            )
            if len(measured)
            else None,
        },
        "cost": {
            "usd_per_hour": usd_per_hour,
            "window_usd": window_usd,
            "serving_usd_per_hour": serving_usd_per_hour,
            "usd_per_1m_output_tokens": _per(serving_window_usd * 1e6, answered_out_tok),
            "usd_per_1m_tokens": _per(serving_window_usd * 1e6, answered_out_tok + answered_in_tok),
            "usd_per_request": _per(serving_window_usd, len(answered_in_window)),
            "pools": [
                {
                    "pool": c.pool,
                    "sku": c.sku,
                    "location": c.location,
                    "accelerators": c.accelerators,
                    "utilization": c.utilization,
                    "usd_per_hour": c.per_hour.total_usd,
                    "pricing": c.cloud.pricing if c.cloud else "owned",
                    "breakdown_usd_per_hour": c.per_hour.as_dict(),
                }
                for c in costs
            ],
        },
        "finance": finance_summary(
            rs, costs, units_of(rs, req, tasks, window_s, answered_in_window),
            demand_by_pool(rs, rtl, [r.pool for r in result.replicas], [r.accelerators for r in result.replicas], start, end),
            result.seed, serving_idle, billed_accelerators(result, start, end, peak=True),
        ),
        "autoscaling": autoscaling_summary(result, req, start, end),
        "resilience": resilience_summary(result, req, lreq),
        "network": network_block(measured, req, start, end),
        "tasks": task_summary(tasks, window_usd_by_class, stats),
        "service": service_summary(lreq, rs, window_s, stats),
        "sim": {"events": result.events, "end_s": result.end_s},
    }
    return RunMetrics(req, tasks, rtl, stl, costs, summary, trace_events(result, trace_tasks), lreq)


def network_block(measured: pd.DataFrame, req: pd.DataFrame, start: float, end: float) -> dict[str, Any]:
    """Time on the wire between callers and deployments, and what crossing regions cost."""
    answered = measured[measured["e2e_s"].notna()]
    in_window = req[(req["arrival_s"] >= start) & (req["arrival_s"] < end)]
    e2e = float(answered["e2e_s"].sum())
    return {
        "mean_network_s": float(answered["network_s"].mean()) if len(answered) else None,
        "share_of_e2e": float(answered["network_s"].sum()) / e2e if e2e > 0 else None,
        "egress_usd": float(in_window["egress_usd"].sum()),
    }


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _per(amount: float, units: int) -> float | None:
    return amount / units if units else None
