"""The numbers a finance reader asks of a growth plan: per month, the demand band, what is owned and reserved, what
is rented (expected), the cost band and the capacity standing idle if demand disappoints; in total, the expected
cost with its P10-P90 band against renting everything on demand, and what the P10 and P90 demand paths cost and
strand. Quantiles are over the demand futures, weighted by their probabilities (a month's P10 is the demand 10% of
futures stay under that month; the "P10 path" is that month-by-month curve)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simfactory.cost.commitment import (
    activity,
    capacity,
    accrued_usd,
    cash_usd,
    commitment_cash_usd,
    credit_usd,
    future_costs_usd,
    recourse,
    weighted_quantile,
)
from simfactory.config.growth import LognormalGrowth
from simfactory.plan.growth import GrowthPlan

QUANTILES = {"p10": 0.10, "p50": 0.50, "p90": 0.90}


def _q(gp: GrowthPlan, x: np.ndarray, q: float) -> np.ndarray:
    return weighted_quantile(x, gp.problem.weights, q, axis=0)


def demand_paths(gp: GrowthPlan) -> dict[str, np.ndarray]:
    """{"p10", "p50", "p90"}: (H,) accelerators needed per month at that quantile of the futures."""
    return {k: _q(gp, gp.problem.demand, q) for k, q in QUANTILES.items()}


def levelized_usd_per_month(gp: GrowthPlan) -> np.ndarray:
    """(C, H): what one committed accelerator-month costs per contract and month, levelized over each cohort's
    life (its present value over the present value of its months of service), averaged over the cohorts serving."""
    p, starts = gp.problem, gp.plan.starts
    act = activity(p)
    v = p.discount[1:p.months + 1]
    pv = p.start_pv_usd()
    out = np.zeros((len(p.contracts), p.months))
    for i in range(len(p.contracts)):
        months_pv = act[i].T @ v  # (tau,): present value of a cohort's months of service within the horizon
        cohort = np.divide(pv[i], months_pv, out=np.zeros(p.months), where=months_pv > 0)
        weight = act[i] * starts[i][None, :]
        total = weight.sum(axis=1)
        out[i] = np.divide(weight @ cohort, total, out=np.zeros(p.months), where=total > 0)
    return out


@dataclass(frozen=True)
class PathOutcome:
    """The plan in one demand path: what it costs, and the committed capacity it leaves idle."""

    usd: float  # present value
    stranded_accelerator_months: float
    stranded_usd: float  # idle committed accelerator-months at their levelized cost, present value
    peak_stranded_accelerators: float
    peak_stranded_month: int | None
    peak_on_demand_accelerators: float
    peak_on_demand_month: int | None


def path_outcome(gp: GrowthPlan, demand: np.ndarray) -> PathOutcome:
    p, starts = gp.problem, gp.plan.starts
    d = np.asarray(demand, dtype=float)[None, :]
    rec = recourse(p, starts, d)
    idle = capacity(p, starts) - rec.use_by_contract[:, 0, :]  # (C, H)
    v = p.discount[1:p.months + 1]
    stranded = rec.stranded[0]
    od = rec.on_demand[0] + rec.spot[0]
    return PathOutcome(
        usd=float(future_costs_usd(p, starts, d)[0]),
        stranded_accelerator_months=float(stranded.sum()),
        stranded_usd=float(((idle * levelized_usd_per_month(gp)) @ v).sum()),
        peak_stranded_accelerators=float(stranded.max(initial=0.0)),
        peak_stranded_month=int(np.argmax(stranded)) + 1 if stranded.max(initial=0.0) > 0 else None,
        peak_on_demand_accelerators=float(od.max(initial=0.0)),
        peak_on_demand_month=int(np.argmax(od)) + 1 if od.max(initial=0.0) > 0 else None,
    )


def named_futures(gp: GrowthPlan) -> list[dict[str, Any]]:
    """Named futures (`distribution: scenarios`): each one's probability, cost and stranded capacity under the
    plan; none for drawn futures (a lognormal's are summarized by their quantiles)."""
    if isinstance(gp.spec.demand.growth, LognormalGrowth):
        return []
    return [{"future": name, "probability": float(w), **path_outcome(gp, d).__dict__}
            for name, w, d in zip(gp.names, gp.problem.weights, gp.problem.demand)]


def month_rows(gp: GrowthPlan) -> list[dict[str, Any]]:
    """One row per month: demand band, committed capacity by contract (and what starts), rented capacity
    (expected; on-demand also at P90), stranded capacity in the P10 path, the month's cost band (owned hardware
    at its loss of market value that month: the months add up to the total less nothing, resale included) and
    the hardware bought that month (cash, nominal)."""
    p, starts = gp.problem, gp.plan.starts
    w = p.weights
    paths = demand_paths(gp)
    cap = capacity(p, starts)
    rec = recourse(p, starts)
    low = recourse(p, starts, paths["p10"][None, :])
    cost = accrued_usd(p, starts)[:, 1:p.months + 1]  # owned hardware at its monthly loss of market value
    base = cash_usd(p, np.zeros_like(starts))[:, 1:p.months + 1]
    bought = _purchases_usd(gp)
    rate_p50 = _q(gp, gp.rates, 0.5)
    band = {k: _q(gp, cost, q) for k, q in QUANTILES.items()}
    rows = []
    for t in range(p.months):
        row: dict[str, Any] = {"month": t + 1, "rate_p50_per_s": float(rate_p50[t])}
        row.update({f"demand_{k}_accelerators": float(v[t]) for k, v in paths.items()})
        for i, c in enumerate(p.contracts):
            row[f"{c.name}_accelerators"] = float(cap[i, t])
            row[f"{c.name}_new_accelerators"] = float(starts[i, t])
        row["committed_accelerators"] = float(cap[:, t].sum())
        row["on_demand_expected_accelerators"] = float(w @ rec.on_demand[:, t])
        row["on_demand_p90_accelerators"] = float(_q(gp, rec.on_demand[:, [t]], 0.9)[0])
        if p.spot_allowed():
            row["spot_expected_accelerators"] = float(w @ rec.spot[:, t])
        row["stranded_p10_path_accelerators"] = float(low.stranded[0, t])
        row.update({f"cost_{k}_usd": float(v[t]) for k, v in band.items()})
        row["cost_expected_usd"] = float(w @ cost[:, t])
        row["hardware_purchases_usd"] = float(bought[t])
        row["all_on_demand_expected_usd"] = float(w @ base[:, t])
        rows.append(row)
    return rows


def _purchases_usd(gp: GrowthPlan) -> np.ndarray:
    """(H,): what owned hardware coming into service costs to buy, by month (paid on delivery, nominal)."""
    own = gp.channels.own
    i = next((i for i, c in enumerate(gp.problem.contracts) if c.name == "own"), None)
    if own is None or i is None:
        return np.zeros(gp.problem.months)
    return gp.plan.starts[i] * own.capex_usd


def totals(gp: GrowthPlan) -> dict[str, Any]:
    """Present values over the horizon: the expected cost and its band over the futures, renting everything on
    demand for comparison, the commitments' share, what they pay after the horizon, and the P10 / P50 / P90 paths."""
    p, starts = gp.problem, gp.plan.starts
    pv = future_costs_usd(p, starts)
    base = future_costs_usd(p, np.zeros_like(starts))
    expected, baseline = float(p.weights @ pv), float(p.weights @ base)
    committed_cash = commitment_cash_usd(p, starts)
    nominal = accrued_usd(p, starts).sum(axis=1)
    out: dict[str, Any] = {
        "expected_usd": expected,
        "expected_nominal_usd": float(p.weights @ nominal),
        **{f"{k}_usd": float(weighted_quantile(pv, p.weights, q)) for k, q in QUANTILES.items()},
        "all_on_demand_expected_usd": baseline,
        "saving_fraction": 1.0 - expected / baseline if baseline > 0 else 0.0,
        "commitments_usd": float(committed_cash @ p.discount),
        "resale_credit_usd": credit_usd(p, starts),
        "paid_after_horizon_usd": float(committed_cash[p.months + 1:].sum()),
        "accelerator_months_expected": float(p.weights @ p.demand.sum(axis=1)),
        "solver_status": gp.plan.status,
        "solver_mip_gap": gp.plan.mip_gap,
    }
    for k, d in demand_paths(gp).items():
        out[f"{k}_path"] = path_outcome(gp, d).__dict__
    out["named_futures"] = named_futures(gp)
    return out


def commitments(gp: GrowthPlan) -> list[dict[str, Any]]:
    """Every commitment: contract, the month it starts serving, accelerators, the month to order or sign it."""
    out = []
    for c, row in zip(gp.problem.contracts, gp.plan.starts):
        lead = c.earliest_month - 1
        for t in np.nonzero(row > 0)[0]:
            month = int(t) + 1
            out.append({"contract": c.name, "start_month": month, "accelerators": float(row[t]),
                        "decide_month": month - lead, "lead_time_months": lead,
                        "serves_through_month": min(gp.problem.months, month + c.active_months - 1),
                        "term_ends_month": month + c.active_months - 1 if c.name != "own" else None})
    return sorted(out, key=lambda r: (r["start_month"], r["contract"]))
