"""The finance block of summary.json: unit economics, TCO over the horizon, cloud vs on-prem break-even,
hybrid sizing on the simulated demand curve, sensitivity, training jobs, and every assumption used."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from simfactory.cost.finance import Units, hybrid_sizing, owned_cost_curve, sensitivity, tco_block, unit_economics
from simfactory.cost.decision import rent_usd_per_accel_hour
from simfactory.cost.fleet import PoolCost, alternative_cost, discount_rate
from simfactory.cost.stack import plain_dict
from simfactory.cost.training import training_cost
from simfactory.resolve import ResolvedScenario
from simfactory.sim.agents import SUCCESS
from simfactory.sim.training import (
    chosen_interval_h, daly_interval_h, job_mtbf_h, progress_fraction, simulate_job, young_interval_h,
)

EXTERNAL_COLUMNS = ["usd_tools", "usd_retrieval", "usd_human", "usd_network"]


def idle_seat_usd(rs: ResolvedScenario, tasks: pd.DataFrame, window_s: float) -> dict[str, float]:
    """Per agent class, what its workload's provisioned reviewer seats cost beyond the handled time the tasks
    carry (`usd_human`, per use): a provisioned pool is paid count x hours of the window x usd_per_hour, as
    accelerators are paid per provisioned hour (or the handled time, if the window's tasks took more). Shared
    between the classes running one workload by their handled cost (by task count when none was handled, evenly
    when no task was measured)."""
    by_workload: dict[str, list[str]] = {}
    for c in rs.classes:
        if c.agent is not None and c.agent.humans and c.agent.humans[0].pricing == "provisioned":
            by_workload.setdefault(c.agent.name, []).append(c.config.name)
    if not by_workload:
        return {}  # no provisioned seats: nothing to share (and no copy of the task frame)
    t = tasks[tasks["measured"]] if len(tasks) else tasks
    workloads = {c.agent.name: c.agent for c in rs.classes if c.agent is not None}
    out: dict[str, float] = {}
    for name, classes in by_workload.items():
        seats_usd = sum(h.count * h.usd_per_hour for h in workloads[name].humans) * window_s / 3600.0
        mine = t[t["class"].isin(classes)] if len(t) else t
        used = mine.groupby("class")["usd_human"].sum() if len(mine) else pd.Series(dtype=float)
        counts = mine.groupby("class").size() if len(mine) else pd.Series(dtype=float)
        weights = used if float(used.sum()) > 0 else counts
        extra = max(0.0, seats_usd - float(used.sum()))
        total = float(weights.sum())
        for cls in classes:
            out[cls] = extra * float(weights.get(cls, 0.0)) / total if total else extra / len(classes)
    return out


def units_of(rs: ResolvedScenario, req: pd.DataFrame, tasks: pd.DataFrame, window_s: float,
             completed_in_window: pd.DataFrame) -> Units:
    """`completed_in_window`: requests as callers see them (an escalated request counts once, with the tokens
    of the answer it got), completed in the window. External costs: tools, retrieval and egress per use;
    reviewers as their pools are priced (idle_seat_usd: provisioned seats, unless a pool says per_use)."""
    m = req["measured"].to_numpy(dtype=bool)  # column by column: no copy of the request frame (1M rows at scale)
    agent_classes = {c.config.name for c in rs.classes if c.agent is not None}
    code, names = pd.factorize(req["class"].to_numpy(dtype=object)[m])
    share = np.bincount(code, weights=req["replica_s"].to_numpy(dtype=float)[m], minlength=len(names))
    total = float(share.sum())
    agent_share = float(share[[i for i, c in enumerate(names) if c in agent_classes]].sum()) / total if total else 0.0
    tm = tasks["measured"].to_numpy(dtype=bool) if len(tasks) else np.zeros(0, dtype=bool)
    return Units(
        window_h=window_s / 3600.0,
        requests=len(completed_in_window),
        input_tokens=int(completed_in_window["input_tokens"].sum()),
        output_tokens=int(completed_in_window["output_tokens"].sum()),
        tasks=int(tm.sum()),
        successful_tasks=int(np.isin(tasks["outcome"].to_numpy(dtype=object)[tm], list(SUCCESS)).sum()) if tm.any()
        else 0,
        agent_share=agent_share,
        external_usd=(sum(float(tasks[c].to_numpy(dtype=float)[tm].sum()) for c in EXTERNAL_COLUMNS) if tm.any()
                      else 0.0) + sum(idle_seat_usd(rs, tasks, window_s).values()),
    )


def demand_by_pool(rs: ResolvedScenario, rtl: pd.DataFrame, replica_pools: list[str], replica_accels: list[int],
                   start_s: float, end_s: float) -> dict[str, np.ndarray]:
    """Accelerators the load needs per pool at each timeline sample in the window: each replica's requests
    (running + waiting) over a target concurrency (finance.target_concurrency_fraction x max_num_seqs), times
    its accelerators. Busy time would not do: continuous batching keeps a replica stepping at any load."""
    w = rtl[(rtl["time_s"] > start_s) & (rtl["time_s"] <= end_s)]
    if not len(w):
        return {}
    frac = rs.scenario.finance.target_concurrency_fraction
    target = {d.config.name: max(1.0, frac * d.config.max_num_seqs) for d in rs.deployments}
    replica = w["replica"].to_numpy()
    dep_code, dep_names = pd.factorize(w["deployment"].to_numpy())
    load = (w["running"].to_numpy() + w["waiting"].to_numpy()) / np.asarray([target[d] for d in dep_names])[dep_code]
    need = load * np.asarray(replica_accels)[replica]
    pool_code, pool_names = pd.factorize(np.asarray(replica_pools)[replica], sort=True)
    t = w["time_s"].to_numpy()
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(pool_names):  # per pool, summed per sample time in time order (a groupby, in numpy)
        mine = pool_code == k
        _, at = np.unique(t[mine], return_inverse=True)
        out[str(name)] = np.bincount(at, weights=need[mine])
    return out


def with_gated_demand(demand: dict[str, np.ndarray], rs: ResolvedScenario, time_s: list[float],
                      gated: list[list[int]], replica_accels: list[int], start_s: float,
                      end_s: float) -> dict[str, np.ndarray]:
    """demand_by_pool plus the requests waiting at the tenant gate (sim/tenancy.py), which need accelerators as
    if they waited in their deployment's queues: gated / target concurrency x a replica's accelerators per sample
    (`gated`: per sample, per deployment; `replica_accels`: per deployment). Without a gate, `demand` as it is."""
    if not gated:
        return demand
    t = np.asarray(time_s)
    g = np.asarray(gated, dtype=float)[(t > start_s) & (t <= end_s)]
    frac = rs.scenario.finance.target_concurrency_fraction
    out = dict(demand)
    for k, d in enumerate(rs.deployments):
        pool = d.config.pool
        need = g[:, k] / max(1.0, frac * d.config.max_num_seqs) * replica_accels[k]
        if pool in out and len(out[pool]) == len(need):
            out[pool] = out[pool] + need
    return out


def pool_loads(sc: Any, demand: dict[str, np.ndarray], provisioned: dict[str, float],
               serving_idle: dict[str, float]) -> dict[str, float]:
    """LOAD of each pool, the one definition every figure uses (energy, tokens per joule, TCO, break-even, hybrid,
    sensitivity, the terminal): accelerators the demand needs (demand_by_pool, mean over the window) plus those
    training takes (a dedicated job holds its accelerators; an idle-priority job fills the serving accelerators'
    idle share, and with serving_share its share of their busy time too: sim.training.progress_fraction), over
    the accelerators provisioned (`provisioned`: billed, for autoscaled cloud pools). Not the
    busy fraction: continuous batching keeps a replica stepping at almost any load, so busy fractions sit near
    1. Pools without a demand curve (no timeline sample in the window) are left out: their busy fraction stands
    in. Above 1 when requests queue beyond the target concurrency; power and the decision model clip it to 1."""
    training: dict[str, float] = {}
    for job in sc.training:
        share = progress_fraction(job, serving_idle.get(job.pool, 0.0))
        training[job.pool] = training.get(job.pool, 0.0) + job.accelerators * share
    return {p.name: (float(demand[p.name].mean()) + training.get(p.name, 0.0)) / provisioned[p.name]
            for p in sc.pools if provisioned.get(p.name) and len(demand.get(p.name, ()))}


def serving_idle_fraction(result: Any, pool_busy: dict[str, float]) -> dict[str, float]:
    """Per pool, the idle share of the accelerators that serve inference (what idle-priority training gets)."""
    serving: dict[str, float] = {}
    for r in result.replicas:
        serving[r.pool] = serving.get(r.pool, 0.0) + r.accelerators
    return {p: 1.0 - pool_busy.get(p, 0.0) / n for p, n in serving.items() if n}


def pool_utilization(sc: Any, pool_busy: dict[str, float], serving_idle: dict[str, float],
                     billed: dict[str, float] | None = None) -> dict[str, float]:
    """Busy accelerator-time over provisioned accelerator-time, counting training: dedicated jobs keep their
    accelerators busy; idle-priority jobs fill the serving accelerators' idle time (and, with serving_share, their
    share beside serving; capped at 1). Autoscaled cloud pools:
    over the accelerators actually provisioned (`billed`)."""
    billed = billed or {}
    busy = dict(pool_busy)
    for job in sc.training:
        if job.priority == "dedicated":
            busy[job.pool] = busy.get(job.pool, 0.0) + job.accelerators
        else:
            busy[job.pool] = busy.get(job.pool, 0.0) + job.accelerators * progress_fraction(
                job, serving_idle.get(job.pool, 0.0))
    return {p.name: min(1.0, busy.get(p.name, 0.0) / billed.get(p.name, p.count)) if billed.get(p.name, p.count) else 0.0
            for p in sc.pools}


def with_serving_fractions(sc: Any, costs: list[PoolCost]) -> list[PoolCost]:
    """Each pool's share serving inference: accelerators held by dedicated training jobs are not (their cost is
    the training table's); idle-priority jobs only fill serving accelerators' idle time, so take no share."""
    held: dict[str, float] = {}
    for job in sc.training:
        if job.priority == "dedicated":
            held[job.pool] = held.get(job.pool, 0.0) + job.accelerators
    out = []
    for c in costs:
        if not c.accelerators or not held.get(c.pool):
            out.append(c)
            continue
        fraction = min(1.0, max(0.0, 1.0 - held[c.pool] / c.accelerators))
        serving = c.accelerators * fraction
        # the pool's busy fraction and load count the training accelerators as always busy: take them out again
        busy = (c.utilization * c.accelerators - (c.accelerators - serving)) / serving if serving else 0.0
        load = (c.power_load * c.accelerators - (c.accelerators - serving)) / serving if serving else 0.0
        out.append(dataclasses.replace(c, serving_fraction=fraction, serving_utilization=min(1.0, max(0.0, busy)),
                                       serving_load=max(0.0, load)))
    return out


def training_block(rs: ResolvedScenario, costs: list[PoolCost], seed: int,
                   serving_idle: dict[str, float]) -> list[dict[str, Any]]:
    by_pool = {c.pool: c for c in costs}
    out = []
    for job in rs.training_jobs or rs.scenario.training:
        pc = by_pool[job.pool]
        idle = serving_idle.get(job.pool, 0.0)
        speed = progress_fraction(job, idle)
        runs = simulate_job(job, seed, idle_fraction=idle)
        mtbf = job_mtbf_h(job)
        ckpt_h = job.checkpoint_cost_s / 3600.0
        young = young_interval_h(ckpt_h, mtbf)
        chosen = chosen_interval_h(job)
        scan = []
        for mult in (0.25, 0.5, 1.0, 2.0, 4.0):
            tau = young * mult if young > 0 else chosen * mult
            r = simulate_job(job, seed, idle_fraction=idle, interval_h=tau)
            scan.append({"interval_h": tau, "time_to_train_h": float(np.mean([x.wall_h for x in r])) if r else None})
        cost = training_cost(runs, job.accelerators, speed, pc.usd_per_accel_hour, job.validation_pass_rate)
        out.append({
            "job": job.name,
            "pool": job.pool,
            "priority": job.priority,
            "accelerators": job.accelerators,
            "compute_h": job.compute_hours,
            "job_mtbf_h": mtbf,
            "checkpoint_interval_h": chosen,
            "young_interval_h": young,
            "daly_interval_h": daly_interval_h(ckpt_h, mtbf),
            "progress_fraction": speed,
            **cost,
            **(hardware_figures(rs, job, cost) if job.name in rs.training_estimates else {}),
            "interval_scan": scan,
        })
    return out


def hardware_figures(rs: ResolvedScenario, job: Any, cost: dict[str, Any]) -> dict[str, Any]:
    """A hardware-derived job's step breakdown and memory (resolve/training.py) and its cost per billion tokens:
    with an interval in hours a checkpoint's cost does not follow the speed (checkpoint_every_steps makes it), cost
    per token always does."""
    per_b = cost["cost_usd"] / job.total_tokens * 1e9 if cost.get("cost_usd") is not None else None
    return {**rs.training_estimates[job.name].report(), "usd_per_billion_tokens": per_b}


def scorecard_inputs(rs: ResolvedScenario) -> dict[str, Any]:
    """The qualitative ratings of this fleet (scenario's own, else the price book's defaults) and the weights."""
    fin = rs.scenario.finance
    book = rs.price_book.scorecard
    locations = {p.location for p in rs.scenario.pools}
    mix = "hybrid" if len(locations) > 1 else next(iter(locations))
    kind = "asic" if any(p.kind == "asic" for p in rs.pool_profiles.values()) else "gpu"
    ratings = {
        "operational_simplicity": book.operational_simplicity[mix],
        "lock_in_freedom": book.lock_in_freedom[kind],
        **fin.scorecard_ratings,
    }
    total = sum(fin.scorecard_weights.values()) or 1.0
    return {
        "fleet": mix,
        "accelerator_kind": kind,
        "ratings": ratings,
        "ratings_source": "scenario" if fin.scorecard_ratings else book.source,
        "weights": {k: v / total for k, v in fin.scorecard_weights.items()},
    }


def cheapest_reserved(rs: ResolvedScenario, sku: str) -> Any:
    """The lowest reserved (1- or 3-year) cloud price in the price book for this SKU, if any."""
    hits = [c for c in rs.price_book.cloud if c.sku == sku and c.pricing in ("reserved_1y", "reserved_3y")]
    return min(hits, key=lambda c: c.usd_per_accel_hour) if hits else None


def finance_summary(rs: ResolvedScenario, costs: list[PoolCost], units: Units, demand: dict[str, np.ndarray],
                    seed: int, serving_idle: dict[str, float],
                    peak_accelerators: dict[str, float] | None = None) -> dict[str, Any]:
    """`peak_accelerators`: autoscaled cloud pools' peak provisioned accelerators (what owning them would take)."""
    fin = rs.scenario.finance
    peaks = peak_accelerators or {}
    alternatives = [alternative_cost(rs, c, peaks.get(c.pool)) for c in costs]
    rate, rate_assumption = discount_rate(rs)
    hybrid = {}
    for c, alt in zip(costs, alternatives):
        if alt is None:
            continue
        owned, rented = (c, alt) if c.on_prem is not None else (alt, c)
        assert rented.cloud is not None
        d = demand.get(c.pool, np.zeros(0))
        p = rent_usd_per_accel_hour(rented.cloud)  # with a spot pool's rework, as the decision model rents
        hybrid[c.pool] = {"owned": hybrid_sizing(d, *owned_cost_curve(owned, fin.horizon_years, rate), p)}
        reserved = cheapest_reserved(rs, c.sku)
        if reserved is not None:
            hybrid[c.pool]["reserved"] = {**hybrid_sizing(d, reserved.usd_per_accel_hour, 0.0, p),
                                          "reserved_price": f"{reserved.provider} {reserved.pricing} "
                                                            f"{reserved.usd_per_accel_hour} USD/accel-h"}
    assumptions = [plain_dict(a) for c in costs for a in c.assumptions]
    seen = {x["name"] for x in assumptions}
    assumptions += [plain_dict(a) for c in alternatives if c is not None for a in c.assumptions if a.name not in seen]
    assumptions.append(plain_dict(rate_assumption))
    loads = {c.pool: c.load for c in costs if c.load is not None}  # pool_loads: demand / capacity, not busy time
    ue = unit_economics(costs, units)
    counted = sum(c.accelerators for c in costs if c.pool in loads)
    ue["fleet_load_fraction"] = (sum(loads[c.pool] * c.accelerators for c in costs if c.pool in loads) / counted
                                 if counted else None)
    return {
        "currency": rs.price_book.currency,
        "unit_economics": ue,
        "tco": tco_block(costs, alternatives, fin.horizon_years, loads, rate),
        "hybrid": hybrid,
        "sensitivity": sensitivity(costs, units, fin.sensitivity_fraction),
        "training": training_block(rs, costs, seed, serving_idle),
        "scorecard": scorecard_inputs(rs),
        "assumptions": assumptions,
    }
