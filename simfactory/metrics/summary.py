"""Summary statistics of a run over its measurement window, with costs: the numbers reports print.

The measurement window is [warmup_s, horizon_s): latency statistics cover requests that *arrived*
in it; throughput counts requests *completed* in it; utilization is the busy fraction within it. A closed loop with
a request count that runs out before the horizon ends the run, and the window, at its last completion.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from simfactory.version import __version__
from simfactory.gc_pause import gc_paused
from simfactory.provenance import provenance
from simfactory.config.scenario import describe_arrivals
from simfactory.cost.fleet import PoolCost, fleet_costs
from simfactory.fidelity_record import evidence, record_problem
from simfactory.resolve.step_time import redefined
from simfactory.metrics.agent_controls import add_task_controls, caches_section
from simfactory.metrics.autoscaling import autoscaling_summary, billed_accelerators
from simfactory.metrics.cost_stack import cost_stack_section
from simfactory.metrics.resilience import resilience_summary
from simfactory.metrics.finance import (
    demand_by_pool,
    finance_summary,
    idle_seat_usd,
    pool_loads,
    pool_utilization,
    serving_idle_fraction,
    units_of,
    with_gated_demand,
    with_serving_fractions,
)
from simfactory.metrics.frames import replica_timelines_frame, requests_frame, system_timeline_frame
from simfactory.metrics.kv_retention import kv_retention_summary
from simfactory.metrics.slo import logical_requests, meets_slo, service_summary
from simfactory.metrics.quality import quality_summary
from simfactory.metrics.tasks import task_summary, tasks_frame
from simfactory.metrics.tenants import tenant_summary
from simfactory.metrics.trace import trace_events
from simfactory.resolve import ResolvedScenario
from simfactory.resolve.resolved import ResolvedDeployment
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


def compute_metrics(result: SimResult, trace_tasks: int = DEFAULT_TRACE_TASKS) -> RunMetrics:
    """Frames, summary and finance of a run (the cycle collector paused: see simfactory/gc_pause.py)."""
    with gc_paused():
        return _compute_metrics(result, trace_tasks)


def _rows(df: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    """df[mask] without copying the frame when every row is selected (the usual case: a 1M-row copy costs ~0.1 s)."""
    return df if bool(mask.all()) else df[mask]


def _compute_metrics(result: SimResult, trace_tasks: int) -> RunMetrics:
    """The summary, one section function per key; the order of the calls is the order the frames need."""
    rs = result.resolved
    start_s, end_s = rs.scenario.sim.warmup_s, rs.scenario.sim.horizon_s
    if start_s < result.end_s < end_s:  # a closed loop's request count ran out before the horizon: the run ended
        end_s = math.nextafter(result.end_s, math.inf)  # with its last completion inside the window
    window_s = end_s - start_s
    req = requests_frame(result)
    rtl = replica_timelines_frame(result)
    stl = system_timeline_frame(result)
    measured = _rows(req, req["measured"])  # taken before attribute_request_usd adds the `usd` column
    # what the latency blocks read: their per-class and per-deployment subsets stay small (subsets of every column
    # held 1.2 GB in a 2M-request run); one frame for all, so LatencyBlocks sees a subset that is all of it as it
    timings = measured[["outcome", "class", "deployment", *LATENCY_COLUMNS.values()]]
    latency_of = LatencyBlocks()
    completed = completed_between(req, start_s, end_s)
    replicas = replica_section(result, req, rtl, start_s, end_s)
    fleet = fleet_costs_of(result, replicas, completed, rtl, start_s, end_s)
    usd_per_replica_s = attribute_request_usd(req, result, fleet)
    lreq = logical_frame(req, rs)
    answered = answered_between(lreq, start_s, end_s)
    tasks = tasks_frame(result, usd_per_replica_s)
    w_stl = stl[(stl["time_s"] > start_s) & (stl["time_s"] <= end_s)]
    deployments = deployment_section(rs, req, timings, w_stl, latency_of)
    summary: dict[str, Any] = {
        **header_section(result),
        "window": window_section(start_s, rs.scenario.sim.horizon_s, result.end_s, len(measured), len(req)),
        "outcomes": outcome_counts(req),
        "latency_s": latency_of(timings),
        "throughput": throughput_section(completed, answered, len(measured), window_s),
        "classes": class_section(rs, timings, latency_of),
        "deployments": deployments,
        "replicas": replicas,
        "little_law": little_law_section(w_stl, measured, window_s, result.end_s),
        "cost": cost_section(fleet.costs, window_s, answered),
        "finance": finance_section(result, req, tasks, fleet, answered, start_s, end_s, lreq),
        "autoscaling": autoscaling_summary(result, req, start_s, end_s),
        "resilience": resilience_summary(result, req, lreq),
        "network": network_block(measured, req, start_s, end_s),
        "front_end": front_end_block(measured, result),
        "tasks": task_summary(tasks, fully_loaded_usd(rs, measured, tasks, fleet, window_s), stats),
        "service": service_summary(lreq, rs, window_s, stats),
        "tenants": tenant_summary(rs, measured, completed, window_s, stats),
        "sim": {"events": result.events, "end_s": result.end_s},
    }
    quality = quality_summary(result, tasks, usd_per_replica_s, summary["tasks"])
    if quality is not None:  # only scenarios with quality: blocks; every other summary stays as it was
        summary["quality"] = quality
    for name, block in kv_retention_summary(result, tasks).items():
        if name in summary["tasks"]:  # only runs whose classes retain KV get the block: others' outputs are as before
            summary["tasks"][name]["kv_retention"] = block
    add_task_controls(summary["tasks"], result, tasks)
    if result.caches:
        summary["caches"] = caches_section(result.caches)
    return RunMetrics(req, tasks, rtl, stl, fleet.costs, summary, trace_events(result, trace_tasks), lreq)


class LatencyBlocks:
    """latency_block, once per frame: with one class or one deployment their rows are `measured` itself,
    and a 1M-row percentile pass is worth not repeating. Each call returns its own copy."""

    def __init__(self) -> None:
        self._blocks: dict[int, tuple[pd.DataFrame, dict[str, Any]]] = {}  # the frame is kept so its id is not reused

    def __call__(self, df: pd.DataFrame) -> dict[str, Any]:
        if id(df) not in self._blocks:
            self._blocks[id(df)] = (df, latency_block(df))
        return copy.deepcopy(self._blocks[id(df)][1])


@dataclass(frozen=True)
class FleetCosts:
    """What the fleet costs and how many accelerators were billed: the cost, per-request USD and finance
    sections all price from the same figures."""

    costs: list[PoolCost]
    serving_idle: dict[str, float]  # pool -> idle share of its serving accelerators
    billed: dict[str, float]  # pool -> mean accelerators billed over the window (autoscaled cloud pools)
    demand: dict[str, np.ndarray]  # pool -> accelerators the load needs per timeline sample (demand_by_pool)


def header_section(result: SimResult) -> dict[str, Any]:
    """What was run, by which version, from which inputs: the keys that open summary.json."""
    rs = result.resolved
    sc = rs.scenario
    return {
        "schema_version": SCHEMA_VERSION,
        "simfactory_version": __version__,
        "provenance": provenance(rs, result.seed),
        "input_warnings": rs.warnings,
        "scenario": sc.name,
        "description": sc.description,
        "scenario_file": rs.file,
        "seed": result.seed,
        "arrival_process": "; ".join(
            ([describe_arrivals(sc.traffic.arrival)] if any(c.follows_arrival_process for c in rs.classes) or
             not any(c.arrival is not None for c in rs.classes) else [])
            + [f"class {c.config.name}: {describe_arrivals(c.arrival)}"
               + (f" x{c.config.rate_scale:g}" if c.config.rate_scale != 1 else "")
               for c in rs.classes if c.arrival is not None]),
    }


def window_section(start_s: float, end_s: float, sim_end_s: float, measured_requests: int,
                   total_requests: int) -> dict[str, Any]:
    """The measurement window and how many requests it measured, so readers can judge the sample."""
    return {
        "warmup_s": start_s,
        "horizon_s": end_s,
        "end_s": sim_end_s,
        "measured_requests": int(measured_requests),
        "total_requests": int(total_requests),
    }


def outcome_counts(req: pd.DataFrame) -> dict[str, int]:
    """Requests per final outcome over all requests (warm-up and drain included); every outcome is listed,
    zero or not, so reports have a fixed set of rows. Pending requests are not an outcome."""
    counted = req["outcome"].value_counts()
    return {o.label: int(counted.get(o.label, 0)) for o in Outcome if o != Outcome.PENDING}


def completed_between(req: pd.DataFrame, start_s: float, end_s: float) -> pd.DataFrame:
    """Attempts that ended in [start_s, end_s): what throughput counts (an escalated request counts per tier)."""
    return req[(req["completion_s"] >= start_s) & (req["completion_s"] < end_s)]


def answered_between(lreq: pd.DataFrame, start_s: float, end_s: float) -> pd.DataFrame:
    """Token counts of the logical requests answered in [start_s, end_s): unit costs count what callers got
    (an escalated request once, with its final answer's tokens)."""
    done_in_window = ((lreq["completion_s"] >= start_s) & (lreq["completion_s"] < end_s)).to_numpy()
    return lreq.loc[done_in_window, ["input_tokens", "output_tokens"]]  # two columns, not a frame copy


def throughput_section(completed: pd.DataFrame, answered: pd.DataFrame, offered_requests: int,
                       window_s: float) -> dict[str, float]:
    """Rates over the window: attempts completed (`completed`), tokens they carried, arrivals measured
    (`offered_requests`) and logical requests answered (`answered`)."""
    return {
        "requests_per_s": len(completed) / window_s,  # attempts: an escalated request counts per tier
        "output_tokens_per_s": int(completed["output_tokens"].sum()) / window_s,
        "input_tokens_per_s": int(completed["input_tokens"].sum()) / window_s,
        "offered_requests_per_s": offered_requests / window_s,
        "answered_requests_per_s": len(answered) / window_s,
    }


def replica_section(result: SimResult, req: pd.DataFrame, rtl: pd.DataFrame, start_s: float,
                    end_s: float) -> list[dict[str, Any]]:
    """Per replica: busy fraction and KV occupancy within the window, preemptions and steps over the run."""
    busy = (np.asarray(result.busy_at_horizon_s) - np.asarray(result.busy_at_warmup_s)) / (end_s - start_s)
    n = len(result.replicas)
    # per replica with numpy, not groupby (a sweep summarises many small runs): the window's KV samples (NaN left
    # out, as a groupby mean and max do), the run's preemptions
    t, rep, kv = (rtl[c].to_numpy() for c in ("time_s", "replica", "kv_used_frac"))
    kept = (t > start_s) & (t <= end_s) & ~np.isnan(kv.astype(float))
    rep, kv = rep[kept].astype(np.int64), kv[kept].astype(float)
    counts = np.bincount(rep, minlength=n)
    kv_sum = np.bincount(rep, weights=kv, minlength=n)
    kv_max = np.full(n, -np.inf)
    np.maximum.at(kv_max, rep, kv)
    who = req["replica"].to_numpy()
    routed = who >= 0
    preempt = np.bincount(who[routed].astype(np.int64), weights=req["preemptions"].to_numpy()[routed], minlength=n)
    return [
        {
            "replica": r.replica_id,
            "deployment": r.deployment,
            "pool": r.pool,
            "role": r.role,
            "busy_frac": _f(busy[r.replica_id]) if r.replica_id < len(busy) else None,
            "kv_used_frac_mean": float(kv_sum[r.replica_id] / counts[r.replica_id]) if counts[r.replica_id] else None,
            "kv_used_frac_max": float(kv_max[r.replica_id]) if counts[r.replica_id] else None,
            "preemptions": int(preempt[r.replica_id]),
            "steps": int(result.replica_steps[r.replica_id]),
        }
        for r in result.replicas
    ]


def fleet_costs_of(result: SimResult, replicas: list[dict[str, Any]], completed: pd.DataFrame, rtl: pd.DataFrame,
                   start_s: float, end_s: float) -> FleetCosts:
    """Pool costs at the load the run reached (demand / capacity, metrics/finance.py pool_loads: what energy is
    billed on), with each pool's busy fraction beside it (busy accelerator-time over provisioned accelerator-time,
    from the replica rows: the share of time a replica had work)."""
    rs = result.resolved
    sc = rs.scenario
    pool_busy: dict[str, float] = {p.name: 0.0 for p in sc.pools}
    for r, row in zip(result.replicas, replicas):
        pool_busy[r.pool] += (row["busy_frac"] or 0.0) * r.accelerators
    serving_idle = serving_idle_fraction(result, pool_busy)
    billed = billed_accelerators(result, start_s, end_s)
    utilization = pool_utilization(sc, pool_busy, serving_idle, billed)
    demand = demand_by_pool(rs, rtl, [r.pool for r in result.replicas], [r.accelerators for r in result.replicas],
                            start_s, end_s)
    serving = [r for r in result.replicas if r.role != "prefill"]
    dep_accels = [next((r.accelerators for r in serving if r.deployment == d.config.name), d.config.tp)
                  for d in rs.deployments]
    demand = with_gated_demand(demand, rs, result.timelines.time_s, result.timelines.gated, dep_accels, start_s, end_s)
    loads = pool_loads(sc, demand, {p.name: billed.get(p.name, p.count) for p in sc.pools}, serving_idle)
    done = completed[completed["outcome"] == Outcome.COMPLETED.label]
    in_service_s = (done["completion_s"] - done["first_scheduled_s"]).mean() if len(done) else 0.0
    lost_work_s = float(in_service_s) if in_service_s == in_service_s else 0.0  # NaN: no completion timed
    costs = with_serving_fractions(sc, fleet_costs(rs, utilization, lost_work_s=lost_work_s, billed_accelerators=billed,
                                                   load_by_pool=loads))
    return FleetCosts(costs, serving_idle, billed, demand)


def attribute_request_usd(req: pd.DataFrame, result: SimResult, fleet: FleetCosts) -> list[float]:
    """Add each request's `usd` (its replica-seconds at its pool's price per replica-second) to `req`, in
    place; returns the per-deployment USD per replica-second, which task costs reuse."""
    rs = result.resolved
    pool_usd_per_hour = {c.pool: c.per_hour.total_usd for c in fleet.costs}
    pools = {p.name: p for p in rs.scenario.pools}
    usd_per_replica_s = [
        pool_usd_per_hour[d.config.pool] / fleet.billed.get(d.config.pool, pools[d.config.pool].count)
        * d.config.tp / 3600.0
        for d in rs.deployments
    ]
    rates = np.asarray([*usd_per_replica_s, 0.0])  # deployment -1 (never routed): no replica time
    req["usd"] = req["replica_s"] * rates[result.table.deployment_id] if len(req) else 0.0
    return usd_per_replica_s


def logical_frame(req: pd.DataFrame, rs: ResolvedScenario) -> pd.DataFrame:
    """Requests as callers see them (escalations folded in), each marked with whether it met its SLO."""
    lreq = logical_requests(req)
    lreq["slo_met"] = meets_slo(lreq, rs)
    return lreq


def serving_window_usd(costs: list[PoolCost], window_s: float) -> float:
    """The window's cost of the accelerators serving inference (dedicated training's share left out)."""
    return sum(c.serving_usd_per_hour for c in costs) * (window_s / 3600.0)


def fully_loaded_usd(rs: ResolvedScenario, measured: pd.DataFrame, tasks: pd.DataFrame, fleet: FleetCosts,
                     window_s: float) -> dict[str, float]:
    """Per class, the window's cost beyond what its tasks carry per use: its share of the serving fleet, plus its
    workload's provisioned reviewer seats beyond their handled time (metrics/finance.py idle_seat_usd)."""
    out = class_window_usd(measured, serving_window_usd(fleet.costs, window_s))
    for cls, usd in idle_seat_usd(rs, tasks, window_s).items():
        out[cls] = out.get(cls, 0.0) + usd
    return out


def class_window_usd(measured: pd.DataFrame, window_usd: float) -> dict[str, float]:
    """`window_usd` spread over traffic classes by their share of replica time (fully loaded task costs)."""
    share = measured.groupby("class")["replica_s"].sum()
    total_share = float(share.sum())
    return {str(k): window_usd * float(v) / total_share for k, v in share.items()} if total_share else {}


def prefix_cache_section(req: pd.DataFrame, deployment: str, capacity_tokens: int) -> dict[str, Any] | None:
    """How much prompt prefill a deployment's prefix cache saved, over the requests it admitted (all of
    the run's, warm-up included: the cache warms up then). None without a prefix cache."""
    if not capacity_tokens:
        return None
    admitted = req[(req["deployment"] == deployment) & req["first_scheduled_s"].notna()]
    # the share of admitted requests that found any of their prompt cached (not the share of tokens); also under
    # its old name, hit_ratio
    request_hits = float((admitted["cached_tokens"] > 0).mean()) if len(admitted) else None
    return {
        "capacity_tokens": capacity_tokens,
        "request_hit_ratio": request_hits,
        "hit_ratio": request_hits,
        "prefill_tokens_saved": int(admitted["cached_tokens"].sum()),
        # the share of prompt tokens served from the cache at first admission (block-level reuse)
        "saved_fraction_of_prompt_tokens": (
            float(admitted["cached_tokens"].sum() / admitted["input_tokens"].sum()) if len(admitted) else None
        ),
    }


def forecast_accuracy(d: ResolvedDeployment) -> dict[str, Any] | None:
    """How far this kind of forecast (step-time source, engine preset, on which hardware; the kind at its TP beside
    it) has been from published measurements (fidelity_record.evidence), or None where the suites never checked it."""
    preset = d.engine_preset.name if d.engine_preset is not None else None
    model = None if redefined(d.arch) else d.config.model  # a catalogue's own model under a shipped id: not that one
    found = evidence(d.step_time_source, preset, d.config.tp, d.profile.sku, model=model)
    return found.as_dict() if found is not None else None


def forecast_fields(d: ResolvedDeployment) -> dict[str, Any]:
    """A deployment's forecast evidence for summary.json: forecast_accuracy (None: never checked), its
    disaggregated prefill side's (prefill_forecast_accuracy, on that side's own hardware and step time), and why
    there is none when the record itself is missing (forecast_accuracy_unavailable)."""
    problem = record_problem()
    if problem is not None:
        return {"forecast_accuracy": None, "forecast_accuracy_unavailable": problem}
    out = {"forecast_accuracy": forecast_accuracy(d)}
    if d.prefill is not None:
        out["prefill_forecast_accuracy"] = forecast_accuracy(d.prefill)
    return out


def deployment_section(rs: ResolvedScenario, req: pd.DataFrame, measured: pd.DataFrame, w_stl: pd.DataFrame,
                       latency_of: Callable[[pd.DataFrame], dict[str, Any]]) -> list[dict[str, Any]]:
    """Per deployment: its configuration, queue depth over the window (`w_stl`), latency of `measured` (outcome,
    deployment and the latency columns suffice) and prefix cache (from `req`)."""
    deployments = []
    for d in rs.deployments:
        q = w_stl[f"queue_depth.{d.config.name}"]
        dep_req = _rows(measured, measured["deployment"] == d.config.name)
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
                **forecast_fields(d),
                "kv_capacity_tokens": d.kv_capacity_tokens,
                "queue_depth_mean": _f(q.mean()) if len(q) else None,
                "queue_depth_max": int(q.max()) if len(q) else None,
                "latency_s": latency_of(dep_req),
                "prefix_cache": prefix_cache_section(req, d.config.name, d.config.prefix_cache_tokens),
            }
        )
    return deployments


def class_section(rs: ResolvedScenario, measured: pd.DataFrame,
                  latency_of: Callable[[pd.DataFrame], dict[str, Any]]) -> dict[str, Any]:
    """Per traffic class: measured requests and their latency."""
    return {
        c.config.name: {
            "requests": int((measured["class"] == c.config.name).sum()),
            "latency_s": latency_of(_rows(measured, measured["class"] == c.config.name)),
        }
        for c in rs.classes
    }


def little_law_section(w_stl: pd.DataFrame, measured: pd.DataFrame, window_s: float,
                       sim_end_s: float) -> dict[str, float | None]:
    """L, lambda and W over the window, to check L = lambda W: a consistency check on the run, not a result.
    A request still in the system at the end counts until `sim_end_s`."""
    return {
        "mean_in_system": _f(w_stl["in_system"].mean()) if len(w_stl) else None,
        "arrival_rate_per_s": len(measured) / window_s,
        "mean_time_in_system_s": _f((measured["departure_s"].fillna(sim_end_s) - measured["arrival_s"]).mean())
        if len(measured)
        else None,
    }


def cost_section(costs: list[PoolCost], window_s: float, answered: pd.DataFrame) -> dict[str, Any]:
    """Fleet cost per hour and over the window, unit costs of what was answered, and each pool's price."""
    usd_per_hour = sum(c.per_hour.total_usd for c in costs)
    serving_usd = serving_window_usd(costs, window_s)
    answered_out_tok = int(answered["output_tokens"].sum())
    answered_in_tok = int(answered["input_tokens"].sum())
    return {
        "usd_per_hour": usd_per_hour,
        "window_usd": usd_per_hour * (window_s / 3600.0),
        "serving_usd_per_hour": sum(c.serving_usd_per_hour for c in costs),
        "usd_per_1m_output_tokens": _per(serving_usd * 1e6, answered_out_tok),
        "usd_per_1m_tokens": _per(serving_usd * 1e6, answered_out_tok + answered_in_tok),
        "usd_per_request": _per(serving_usd, len(answered)),
        "pools": [
            {
                "pool": c.pool,
                "sku": c.sku,
                "location": c.location,
                "accelerators": c.accelerators,
                "utilization": c.utilization,  # the busy fraction: share of time the replicas had work
                "load_fraction": c.load,  # demand / capacity (pool_loads): what energy is billed on
                "usd_per_hour": c.per_hour.total_usd,
                "pricing": c.cloud.pricing if c.cloud else "owned",
                "breakdown_usd_per_hour": c.per_hour.as_dict(),
            }
            for c in costs
        ],
    }


def finance_section(result: SimResult, req: pd.DataFrame, tasks: pd.DataFrame, fleet: FleetCosts,
                    answered: pd.DataFrame, start_s: float, end_s: float, lreq: pd.DataFrame) -> dict[str, Any]:
    """Unit economics and TCO (simfactory/metrics/finance.py) from the run's units and demand curve; the whole cost
    stack and its unit economics by application, tenant, tier and workflow path (metrics/cost_stack.py)."""
    rs = result.resolved
    units = units_of(rs, req, tasks, end_s - start_s, answered)
    peak_billed = billed_accelerators(result, start_s, end_s, peak=True)
    # a sampled run (m of k shards) sizes the hybrid split on the fleet's demand, not its shards': sizing is not linear
    demand = {pool: d / rs.fleet_share for pool, d in fleet.demand.items()} if rs.fleet_share < 1 else fleet.demand
    out = finance_summary(rs, fleet.costs, units, demand, result.seed, fleet.serving_idle, peak_billed)
    stack, by_group, notes = cost_stack_section(rs, req, lreq, tasks, fleet.costs, end_s - start_s,
                                                idle_seat_usd(rs, tasks, end_s - start_s))
    out["cost_stack"] = stack
    out["unit_economics"].update(by_group)
    out["assumptions"] += notes
    return out


def network_block(measured: pd.DataFrame, req: pd.DataFrame, start: float, end: float) -> dict[str, Any]:
    """Time on the wire between callers and deployments, and what crossing regions cost."""
    in_window = (req["arrival_s"] >= start) & (req["arrival_s"] < end)
    mean_s, share = _mean_and_share_of_e2e(measured, "network_s")
    return {"mean_network_s": mean_s, "share_of_e2e": share, "egress_usd": float(req["egress_usd"][in_window].sum())}


def front_end_block(measured: pd.DataFrame, result: SimResult) -> dict[str, Any]:
    """Time the deployments' serving front ends (front_end_s) add to answered requests, and its share of E2E; where
    a deployment's front end is a shared CPU (front_end_work), the busy fraction of its cores within the window, the
    cores counted as replicas came and went (near 1: the front end, not the GPUs, sets the throughput)."""
    mean_s, share = _mean_and_share_of_e2e(measured, "front_end_s")
    block: dict[str, Any] = {"mean_front_end_s": mean_s, "share_of_e2e": share}
    if result.front_end_busy_at_horizon_s:
        block["busy_frac"] = {}
        for name, (busy, cores_s) in result.front_end_busy_at_horizon_s.items():
            busy0, cores0_s = result.front_end_busy_at_warmup_s.get(name, (0.0, 0.0))
            block["busy_frac"][name] = _f((busy - busy0) / (cores_s - cores0_s)) if cores_s > cores0_s else None
    return block


def _mean_and_share_of_e2e(measured: pd.DataFrame, column: str) -> tuple[float | None, float | None]:
    """A per-request time over the answered requests: its mean, and its sum over theirs of E2E."""
    answered = measured["e2e_s"].notna()  # masks on single columns: rows of every column cost a copy of the frame
    part = measured[column][answered]
    e2e = float(measured["e2e_s"][answered].sum())
    return (float(part.mean()) if len(part) else None), (float(part.sum()) / e2e if e2e > 0 else None)


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _per(amount: float, units: int) -> float | None:
    return amount / units if units else None
