"""Unit economics, TCO over a horizon, cloud vs on-prem break-even, hybrid sizing and sensitivity.

Pure functions over priced pools and counted units (requests, tokens, tasks): the numbers a finance
reader asks for. Knows nothing of SimPy; formulas cite their reasoning in the docstrings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from simfactory.cost.decision import (
    Decision,
    decide,
    horizon_months,
    levelized_own_cost,
    own_vs_rent,
    rent_all_hours_npv_usd,
    rent_usd_per_accel_hour,
    verdict,
)
from simfactory.cost.fleet import PoolCost
from simfactory.cost.pool_cost import (
    HOURS_PER_MONTH,
    average_power_w,
    cloud_cost_per_hour,
    on_prem_cost_per_hour,
)


@dataclass(frozen=True)
class Units:
    """What the fleet produced in the measurement window, and what it cost beyond the accelerators."""

    window_h: float
    requests: int
    input_tokens: int
    output_tokens: int
    tasks: int = 0
    successful_tasks: int = 0
    agent_share: float = 0.0  # fraction of accelerator cost attributable to agent classes
    external_usd: float = 0.0  # tools, retrieval, humans, network egress


def _per(total: float, n: float, scale: float = 1.0) -> float | None:
    return total * scale / n if n else None


def owned_cost_curve(pc: PoolCost, years: float, discount_rate_annual: float) -> tuple[float, float]:
    """(c0, slope): owning one accelerator over the horizon costs c0 + slope x load per accelerator-hour, levelized
    by the decision model (purchase less discounted resale, running costs, present value over present-value
    hours), so the hybrid table and the break-even answer price owning alike."""
    assert pc.on_prem is not None
    return levelized_own_cost(own_vs_rent(pc.on_prem, None, years, discount_rate_annual))


def break_even(owned: PoolCost, rented: PoolCost, years: float, discount_rate_annual: float,
               load: float) -> dict[str, Any]:
    """Own vs rent for the same service from the decision model (simfactory/cost/decision.py): TCO of each at
    `load` (demand over the OWNED accelerators), the break-even load at the horizon, the break-even month at this
    load, and the verdict, all from one D(t, u) = own - rent."""
    assert owned.on_prem is not None and rented.cloud is not None
    dec = decide(own_vs_rent(owned.on_prem, rented.cloud, years, discount_rate_annual), load)
    return {**decision_row(dec), "owned_accelerators": owned.accelerators,
            "cloud_usd_per_accel_hour": rented.cloud.usd_per_accel_hour,
            "rent_usd_per_accel_hour": rent_usd_per_accel_hour(rented.cloud), "verdict": verdict(dec)}


def decision_row(dec: Decision) -> dict[str, Any]:
    return {
        "decision_load": dec.load,
        "own_npv_usd": dec.own_npv_usd,
        "rent_npv_usd": dec.rent_npv_usd,
        "rent_all_hours_npv_usd": dec.rent_all_hours_npv_usd,
        "own_cheaper": dec.own_cheaper,
        "break_even_load": dec.break_even_load,
        "break_even_month": dec.break_even_month,
        "own_npv_usd_at_load_0": dec.own_npv_usd_at_load_0,
        "own_npv_usd_per_load": dec.own_npv_usd_per_load,
        "rent_npv_usd_per_load": dec.rent_npv_usd_per_load,
    }


MAX_HYBRID_ROWS = 201  # rows of the hybrid sizing table (a fleet of thousands of accelerators is sampled)


def hybrid_sizing(demand_accels: np.ndarray, c0: float, slope: float, cloud_usd_per_accel_hour: float) -> dict[str, Any]:
    """Hold a baseline of B accelerators (owned: c0 + slope x u per hour; reserved: c0, slope 0) and rent the
    rest elastically when demand exceeds it.

    demand_accels: busy accelerators sampled at equal steps over the run. Cost per hour for baseline B:
    B x (c0 + slope u_B) + p x mean(max(0, demand - B)), where u_B = mean(min(demand, B)) / B. Scans B from 0
    to the peak and returns the cheapest, with all-baseline and all-rented for reference."""
    d = np.asarray(demand_accels, dtype=float)
    if len(d) == 0:
        return {"rows": [], "best_baseline_accels": None}
    peak = int(math.ceil(d.max() - 1e-9))
    # mean(min(d, B)) for every B at once: sorted demand and its prefix sums (samples below B count as
    # themselves, the rest as B); the burst is the remainder, mean(d) - mean(min(d, B))
    ds = np.sort(d)
    prefix = np.concatenate([[0.0], np.cumsum(ds)])
    bs = np.arange(peak + 1, dtype=float)
    below = np.searchsorted(ds, bs, side="left")
    served = (prefix[below] + bs * (len(ds) - below)) / len(ds)
    burst = np.maximum(prefix[-1] / len(ds) - served, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where(bs > 0, served / np.where(bs > 0, bs, 1.0), 0.0)
    owned = bs * (c0 + slope * util)
    total = owned + cloud_usd_per_accel_hour * burst
    best_b = int(np.argmin(total))
    # every baseline is evaluated; the table keeps at most MAX_HYBRID_ROWS of them (evenly spaced, plus the best)
    keep = np.arange(peak + 1) if peak < MAX_HYBRID_ROWS else np.unique(np.concatenate(
        [np.linspace(0, peak, MAX_HYBRID_ROWS - 1).round().astype(int), [best_b]]))
    rows = [{"baseline_accels": int(b), "owned_utilization": float(util[b]), "owned_usd_per_hour": float(owned[b]),
             "burst_usd_per_hour": float(cloud_usd_per_accel_hour * burst[b]), "total_usd_per_hour": float(total[b])}
            for b in keep]
    best = rows[int(np.searchsorted(keep, best_b))]
    return {
        "demand_mean_accels": float(d.mean()),
        "demand_peak_accels": float(d.max()),
        "rows": rows,
        "best_baseline_accels": best["baseline_accels"],
        "best_usd_per_hour": best["total_usd_per_hour"],
        "all_rented_elastic_usd_per_hour": rows[0]["total_usd_per_hour"],
        "all_baseline_at_peak_usd_per_hour": rows[-1]["total_usd_per_hour"],
    }


def unit_economics(costs: list[PoolCost], units: Units) -> dict[str, float | None]:
    """Cost per unit over the measurement window, on the serving share of the fleet (accelerators held by
    dedicated training jobs are costed in the training table, not here). All-in per-token figures divide the
    serving cost by that token type alone (they do not add up); `usd_per_1m_tokens` counts both."""
    fleet_usd_h = sum(c.per_hour.total_usd for c in costs)
    usd_h = sum(c.serving_usd_per_hour for c in costs)
    fleet_usd = usd_h * units.window_h
    accels = sum(c.accelerators * c.serving_fraction for c in costs)
    busy_accel_h = sum(c.accelerators * c.serving_fraction * c.serving_busy for c in costs) * units.window_h
    # the power model in load (idle + (TDP - idle) x load), not in busy time: a replica stepping a small batch
    # all the time draws little more than idle
    energy_kwh = sum(c.accelerators * c.serving_fraction * average_power_w(c.tdp_w, c.idle_w, c.serving_power_load)
                     / 1e3 for c in costs) * units.window_h
    tokens = units.input_tokens + units.output_tokens
    agent_usd = fleet_usd * units.agent_share + units.external_usd
    return {
        "fleet_usd_per_hour": fleet_usd_h,
        "serving_usd_per_hour": usd_h,
        "serving_window_usd": fleet_usd,
        "usd_per_1m_tokens": _per(fleet_usd, tokens, 1e6),
        "usd_per_1m_input_tokens_all_in": _per(fleet_usd, units.input_tokens, 1e6),
        "usd_per_1m_output_tokens_all_in": _per(fleet_usd, units.output_tokens, 1e6),
        "usd_per_request": _per(fleet_usd, units.requests),
        "usd_per_1000_inferences": _per(fleet_usd, units.requests, 1e3),
        "usd_per_task": _per(agent_usd, units.tasks),
        "usd_per_successful_task": _per(agent_usd, units.successful_tasks),
        "tokens_per_usd": _per(tokens, fleet_usd),
        "accelerator_energy_kwh": energy_kwh,
        "tokens_per_joule": _per(tokens, energy_kwh * 3.6e6),
        "fleet_utilization": busy_accel_h / (accels * units.window_h) if accels and units.window_h else None,
        "usd_per_busy_accel_hour": _per(fleet_usd, busy_accel_h),
        "usd_per_provisioned_accel_hour": _per(usd_h, accels),
    }


SENSITIVITY_INPUTS = ("price", "load", "power price", "PUE", "depreciation years")


def _tweak(c: PoolCost, name: str, factor: float) -> PoolCost:
    """The pool with one input scaled by `factor` (load capped at 1, or where it already is above 1; PUE floored
    at 1). Load is demand / capacity (metrics/finance.py pool_loads), not the busy fraction."""
    if name == "load":
        return c.at_load(min(c.power_load * factor, max(1.0, c.power_load)))
    if c.on_prem is not None:
        x = c.on_prem
        if name == "price":
            x = replace(x, accelerator_usd=x.accelerator_usd * factor, node_usd=x.node_usd * factor)
        elif name == "power price":
            x = replace(x, usd_per_kwh=x.usd_per_kwh * factor)
        elif name == "PUE":
            x = replace(x, pue=max(1.0, x.pue * factor))
        elif name == "depreciation years":
            x = replace(x, depreciation_years=x.depreciation_years * factor)
        return replace(c, on_prem=x, per_hour=on_prem_cost_per_hour(x))
    assert c.cloud is not None
    if name == "price":
        y = replace(c.cloud, usd_per_accel_hour=c.cloud.usd_per_accel_hour * factor)
        return replace(c, cloud=y, per_hour=cloud_cost_per_hour(y))
    return c  # power, PUE and depreciation are in the cloud provider's price


def unit_cost_fn(costs: list[PoolCost], units: Units) -> tuple[str, Callable[[list[PoolCost]], float]]:
    """The headline unit cost as a function of the priced pools. Output scales with load (more demand on the
    same fleet), so the unit count is rescaled by the loaded accelerator-hours."""
    base_load = sum(c.accelerators * c.power_load for c in costs) or 1.0
    if units.successful_tasks:
        name = "usd_per_successful_task"
        per_unit_external = units.external_usd / units.successful_tasks
        n0, share = units.successful_tasks, units.agent_share
    else:
        name = "usd_per_1m_tokens"
        per_unit_external = 0.0
        n0, share = (units.input_tokens + units.output_tokens) / 1e6, 1.0

    def f(cs: list[PoolCost]) -> float:
        loaded = sum(c.accelerators * c.power_load for c in cs)
        n = n0 * loaded / base_load
        usd = sum(c.serving_usd_per_hour for c in cs) * units.window_h * share
        return usd / n + per_unit_external if n else math.inf

    return name, f


def sensitivity(costs: list[PoolCost], units: Units, fraction: float) -> dict[str, Any]:
    """Tornado: each input moved down and up by `fraction`, the others held; sorted by swing."""
    name, f = unit_cost_fn(costs, units)
    base = f(costs)
    rows = []
    for inp in SENSITIVITY_INPUTS:
        lo = f([_tweak(c, inp, 1 - fraction) for c in costs])
        hi = f([_tweak(c, inp, 1 + fraction) for c in costs])
        swing = abs(hi - lo) if math.isfinite(hi) and math.isfinite(lo) else None
        rows.append({"input": inp, "low_factor": 1 - fraction, "high_factor": 1 + fraction,
                     "metric_at_low": _finite(lo), "metric_at_high": _finite(hi), "swing": swing})
    rows.sort(key=lambda r: -(r["swing"] or 0.0))
    return {"metric": name, "base": _finite(base), "fraction": fraction, "rows": rows}


def _finite(x: float) -> float | None:
    """None where nothing was served to divide by: JSON has no infinity, and a report shows "n/a"."""
    return x if math.isfinite(x) else None


NO_BREAK_EVEN: dict[str, Any] = {
    **dict.fromkeys(("decision_load", "own_npv_usd", "rent_npv_usd", "rent_all_hours_npv_usd", "own_cheaper",
                     "break_even_load", "break_even_month", "own_npv_usd_at_load_0", "own_npv_usd_per_load",
                     "rent_npv_usd_per_load", "owned_accelerators", "cloud_usd_per_accel_hour",
                     "rent_usd_per_accel_hour")),
    "verdict": "no price for the other way (owned <-> rented): no own-vs-rent comparison",
}


def pool_tco(pc: PoolCost, years: float, discount_rate_annual: float, load: float) -> dict[str, float]:
    """This pool as configured over the horizon, present value: owned, from the decision model at `load`
    (purchase, running costs, resale at the horizon); cloud, every provisioned accelerator-hour billed."""
    if pc.on_prem is not None:
        m = own_vs_rent(pc.on_prem, None, years, discount_rate_annual)
        dec = decide(m, load)
        return {"upfront_capex_usd": m.capex_usd, "running_usd_per_month": dec.running_usd_per_month,
                "tco_usd": dec.own_npv_usd}
    assert pc.cloud is not None
    return {"upfront_capex_usd": 0.0,
            "running_usd_per_month": cloud_cost_per_hour(pc.cloud).total_usd * HOURS_PER_MONTH,
            "tco_usd": rent_all_hours_npv_usd(pc.cloud, years, discount_rate_annual)}


def tco_block(costs: list[PoolCost], alternatives: list[PoolCost | None], years: float,
              loads: dict[str, float] | None = None, discount_rate_annual: float = 0.0) -> dict[str, Any]:
    """Per pool: its TCO as configured, and the own-vs-rent decision against the same service priced the other
    way (TCO of each, break-even load and month, verdict: one model). `loads`: demand over provisioned
    accelerators (the busy fraction stands in where a pool has no demand curve)."""
    loads = loads or {}
    pools = []
    for c, alt in zip(costs, alternatives):
        load = loads.get(c.pool)
        u = c.utilization if load is None else load
        row: dict[str, Any] = {"pool": c.pool, "location": c.location, "accelerators": c.accelerators,
                               "utilization": c.utilization, "load_fraction": load,
                               **pool_tco(c, years, discount_rate_annual, u),
                               "alternative_location": alt.location if alt else None}
        if alt is None:
            row.update(NO_BREAK_EVEN, alternative_tco_usd=None)
        else:
            owned, rented = (c, alt) if c.on_prem is not None else (alt, c)
            owned_load = u * c.accelerators / owned.accelerators if owned.accelerators else 0.0
            row.update(break_even(owned, rented, years, discount_rate_annual, owned_load))
            # the alternative, from the same model: renting what the load needs (owned pools), owning (cloud pools)
            row["alternative_tco_usd"] = row["rent_npv_usd"] if c.on_prem is not None else row["own_npv_usd"]
        pools.append(row)
    alt_total = [p["alternative_tco_usd"] for p in pools]
    return {
        "horizon_years": years,
        "horizon_months": horizon_months(years),
        "discount_rate_annual": discount_rate_annual,
        "tco_usd": sum(p["tco_usd"] for p in pools),
        "alternative_tco_usd": sum(alt_total) if None not in alt_total else None,
        "upfront_capex_usd": sum(p["upfront_capex_usd"] for p in pools),
        "pools": pools,
    }
