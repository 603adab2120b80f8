"""A growth plan for a finance reader: the month-by-month table (growth-plan.csv, .md, .xlsx), the commitment
advice in sentences, the totals with the P10-P90 band and the stranded capacity of each demand path, the
assumptions with their sources, and a fan chart (growth-fan.png) of cumulative cost and of capacity vs demand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simfactory.report.backend import use_headless_backend

use_headless_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from simfactory.cost.commitment import accrued_usd, capacity, weighted_quantile  # noqa: E402
from simfactory.outputs import json_finite  # noqa: E402
from simfactory.plan.growth import GrowthPlan  # noqa: E402
from simfactory.plan.growth_summary import commitments, demand_paths, month_rows, totals  # noqa: E402
from simfactory.report.finance import frame_markdown, save_chart  # noqa: E402
from simfactory.report.money import finish_sheet, format_number, format_usd, usd_axis  # noqa: E402

CONTRACT_LABELS = {"own": "owned", "reserved_1y": "reserved 1y", "reserved_3y": "reserved 3y"}
FILES = ("growth-plan.csv", "growth-plan.md", "growth-plan.xlsx", "growth-plan.json", "growth-fan.png")


def months_frame(gp: GrowthPlan, rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """The month-by-month table with headers that name their units."""
    rows = month_rows(gp) if rows is None else rows
    out = []
    for r in rows:
        row: dict[str, Any] = {"month": r["month"], "rate P50 (requests/s)": r["rate_p50_per_s"]}
        for k in ("p10", "p50", "p90"):
            row[f"demand {k.upper()} (accelerators)"] = r[f"demand_{k}_accelerators"]
        for c in gp.problem.contracts:
            label = CONTRACT_LABELS.get(c.name, c.name)
            row[f"{label} (accelerators)"] = r[f"{c.name}_accelerators"]
            row[f"new {label} (accelerators)"] = r[f"{c.name}_new_accelerators"]
        row["on demand, expected (accelerators)"] = r["on_demand_expected_accelerators"]
        row["on demand, P90 (accelerators)"] = r["on_demand_p90_accelerators"]
        if "spot_expected_accelerators" in r:
            row["spot, expected (accelerators)"] = r["spot_expected_accelerators"]
        row["stranded in P10 path (accelerators)"] = r["stranded_p10_path_accelerators"]
        for k in ("p10", "p50", "p90"):
            row[f"cost {k.upper()} USD"] = r[f"cost_{k}_usd"]
        row["cost expected USD"] = r["cost_expected_usd"]
        row["hardware purchases USD"] = r["hardware_purchases_usd"]
        row["all on demand, expected USD"] = r["all_on_demand_expected_usd"]
        out.append(row)
    return pd.DataFrame(out)


def summary_table(gp: GrowthPlan, doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the month table as the terminal shows it: demand band, committed capacity by contract
    used, rented (expected), stranded in the P10 path, cost band; cells formatted."""
    used = [c for c in gp.problem.contracts if any(r[f"{c.name}_accelerators"] for r in doc["months"])]
    heads = ["month", "demand P10/P50/P90", *(CONTRACT_LABELS.get(c.name, c.name) for c in used),
             "on demand (exp.)", "stranded (P10 path)", "cost P50", "cost P10-P90"]
    rows = []
    for r in doc["months"]:
        demand = "/".join(format_number(r[f"demand_{k}_accelerators"]) for k in ("p10", "p50", "p90"))
        rows.append([str(r["month"]), demand, *(format_number(r[f"{c.name}_accelerators"]) for c in used),
                     format_number(round(r["on_demand_expected_accelerators"], 1)),
                     format_number(r["stranded_p10_path_accelerators"]), format_usd(r["cost_p50_usd"]),
                     f"{format_usd(r['cost_p10_usd'])}-{format_usd(r['cost_p90_usd'])}"])
    return heads, rows


def _contract_text(gp: GrowthPlan, c: dict[str, Any]) -> str:
    n = c["accelerators"]
    unit = gp.problem.unit
    units = f" ({n / unit:g} x {unit})" if unit > 1 else ""
    if c["contract"] == "own":
        when = "now" if c["decide_month"] <= 1 else f"in month {c['decide_month']}"
        return (f"Month {c['start_month']}: {n:,.0f} owned {gp.sku} accelerators{units} go into service; order them "
                f"{when} ({c['lead_time_months']}-month lead time), keep them to month {gp.problem.months} (resale "
                "credited then).")
    term = "1 year" if c["contract"] == "reserved_1y" else "3 years"
    when = "now" if c["decide_month"] <= 1 else f"in month {c['decide_month']}"
    return (f"Month {c['start_month']}: reserve {n:,.0f} {gp.sku} accelerators{units} for {term} at {gp.provider} "
            f"(months {c['start_month']}-{c['term_ends_month']}); sign {when}.")


def advice(gp: GrowthPlan, tot: dict[str, Any] | None = None) -> list[str]:
    """The plan in sentences: each commitment, what is left to rent, the expected cost and its band against
    renting everything on demand, and the downside (P10 path) and upside (P90 path)."""
    tot = totals(gp) if tot is None else tot
    made = commitments(gp)
    lines = [_contract_text(gp, c) for c in made] or [
        "Commit nothing: renting on demand is the cheapest way to serve these futures in expectation."]
    rows = month_rows(gp)
    od = sum(r["on_demand_expected_accelerators"] for r in rows)
    hi = tot["p90_path"]
    rent = f"Rent the rest on demand at {gp.provider}: {od:,.0f} accelerator-months expected"
    if hi["peak_on_demand_month"] is not None:
        rent += (f"; in the P90 demand path rented capacity peaks at {hi['peak_on_demand_accelerators']:,.0f} "
                 f"accelerators (month {hi['peak_on_demand_month']})")
    if gp.problem.spot_allowed():
        spot = sum(r.get("spot_expected_accelerators", 0.0) for r in rows)
        rent += (f"; spot serves up to {gp.problem.rental.spot_max_share:.0%} of each month ({spot:,.0f} "
                 "accelerator-months expected)")
    lines.append(rent + ".")
    h = gp.problem.months
    lines.append(f"Expected cost {format_usd(tot['expected_usd'])} over {h} months (present value at "
                 f"{gp.discount_rate_annual:.1%}/year; P10 {format_usd(tot['p10_usd'])}, P90 "
                 f"{format_usd(tot['p90_usd'])}) against {format_usd(tot['all_on_demand_expected_usd'])} renting "
                 f"everything on demand: {tot['saving_fraction']:.0%} less.")
    lo = tot["p10_path"]
    if lo["stranded_accelerator_months"] > 0:
        lines.append(f"Downside: if demand follows its P10 path, {lo['stranded_accelerator_months']:,.0f} committed "
                     f"accelerator-months stand idle (at most {lo['peak_stranded_accelerators']:,.0f} accelerators, "
                     f"month {lo['peak_stranded_month']}), {format_usd(lo['stranded_usd'])} of commitments unused; "
                     f"that path costs {format_usd(lo['usd'])}.")
    else:
        lines.append(f"Downside: even in the P10 demand path no committed accelerator stands idle; that path costs "
                     f"{format_usd(lo['usd'])}.")
    lines.append(f"Upside: the P90 demand path costs {format_usd(hi['usd'])}, "
                 f"{hi['stranded_accelerator_months']:,.0f} committed accelerator-months idle.")
    lines += [f"Future {f['future']!r} (probability {f['probability']:.0%}): costs {format_usd(f['usd'])}, "
              f"{f['stranded_accelerator_months']:,.0f} committed accelerator-months idle."
              for f in tot["named_futures"]]
    lines.append(_rolling(made))
    if tot["paid_after_horizon_usd"] > 0:
        lines.append(f"Reservations running past month {h} still pay {format_usd(tot['paid_after_horizon_usd'])} "
                     "after it (included above).")
    if gp.plan.status != "optimal":
        lines.append(f"Note: the optimizer {gp.plan.status}; the plan is within a gap of {gp.plan.mip_gap or 0:.2%} "
                     "of the optimum (raise solver_time_limit_s).")
    return lines


def _rolling(made: list[dict[str, Any]]) -> str:
    """Which decisions are due now; the rest is today's plan, to be re-made as demand is seen (rolling horizon)."""
    now = [c for c in made if c["decide_month"] <= 1]
    due = "; ".join(f"{'order' if c['contract'] == 'own' else 'sign for'} {c['accelerators']:,.0f} "
                    f"{CONTRACT_LABELS.get(c['contract'], c['contract'])} accelerators (in service from month "
                    f"{c['start_month']})" for c in now)
    head = f"Due now: {due}." if now else "Nothing needs deciding now."
    return (f"{head} Later commitments are today's plan, fixed before their months' demand is known: re-run the "
            "plan each month with the demand seen so far and act on the decisions then due (a rolling horizon).")


def totals_frame(tot: dict[str, Any]) -> pd.DataFrame:
    rows = [("expected cost (present value)", tot["expected_usd"], "USD"),
            ("expected cost, nominal (the months of the table added up)", tot["expected_nominal_usd"], "USD"),
            ("P10 cost over the futures", tot["p10_usd"], "USD"),
            ("P50 cost over the futures", tot["p50_usd"], "USD"),
            ("P90 cost over the futures", tot["p90_usd"], "USD"),
            ("all on demand, expected", tot["all_on_demand_expected_usd"], "USD"),
            ("saving against all on demand", tot["saving_fraction"], "fraction"),
            ("commitments (purchases less resale, reservations), present value", tot["commitments_usd"], "USD"),
            ("resale of owned hardware at the horizon (nominal, in the totals above)", tot["resale_credit_usd"], "USD"),
            ("reservation payments after the horizon (nominal)", tot["paid_after_horizon_usd"], "USD"),
            ("accelerator-months needed, expected", tot["accelerator_months_expected"], "accelerator-months")]
    for k in ("p10", "p50", "p90"):
        path = tot[f"{k}_path"]
        rows += [(f"{k.upper()} demand path: cost", path["usd"], "USD"),
                 (f"{k.upper()} demand path: stranded committed capacity", path["stranded_accelerator_months"],
                  "accelerator-months"),
                 (f"{k.upper()} demand path: stranded commitments", path["stranded_usd"], "USD")]
    return pd.DataFrame(rows, columns=["figure", "value", "unit"])


def assumptions_frame(gp: GrowthPlan) -> pd.DataFrame:
    return pd.DataFrame([{"assumption": a.name, "value": a.value, "unit": a.unit, "source": a.source,
                          "as of": a.as_of} for a in gp.assumptions])


def growth_doc(gp: GrowthPlan) -> dict[str, Any]:
    """growth-plan.json's content (and --json's)."""
    tot = totals(gp)
    s = gp.spec
    return {
        "name": s.name, "file": gp.file, "sku": gp.sku, "provider": gp.provider, "region": gp.region,
        "horizon_months": s.horizon_months, "futures": len(gp.names), "discount_rate_annual": gp.discount_rate_annual,
        "capacity": {"requests_per_s_per_replica": gp.rate_per_replica_per_s,
                     "accelerators_per_replica": gp.accelerators_per_replica, "source": gp.capacity_source,
                     "forecast_accuracy": gp.capacity_forecast},
        "prices_usd_per_accelerator_month": _prices(gp),
        "commitments": commitments(gp), "months": month_rows(gp), "totals": tot, "advice": advice(gp, tot),
        "assumptions": assumptions_frame(gp).to_dict(orient="records"), "warnings": gp.warnings,
    }


def _prices(gp: GrowthPlan) -> dict[str, float | None]:
    ch = gp.channels
    out: dict[str, float | None] = {"on_demand": ch.on_demand_usd_per_month, "spot": ch.spot_usd_per_month,
                                    **ch.reserved_usd_per_month}
    if ch.own is not None:
        out["own_running"] = ch.own.fixed_usd_per_month + ch.own.energy_usd_per_month_at_load_0
        out["own_purchase_usd"] = ch.own.capex_usd
    return out


def fan_chart(gp: GrowthPlan, path: Path) -> Path:
    """Two panels: cumulative cost as incurred (P10-P90 band over the futures, P50; renting everything on demand
    for comparison), and committed capacity by contract against the demand band."""
    p = gp.problem
    months = np.arange(1, p.months + 1)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    plan = np.cumsum(accrued_usd(p, gp.plan.starts)[:, 1:p.months + 1], axis=1)
    rent = np.cumsum(accrued_usd(p, np.zeros_like(gp.plan.starts))[:, 1:p.months + 1], axis=1)
    lo, mid, hi = (weighted_quantile(plan, p.weights, q) for q in (0.1, 0.5, 0.9))
    ax1.fill_between(months, lo, hi, alpha=0.3, label="the plan: P10-P90 over the futures")
    ax1.plot(months, mid, label="the plan: P50")
    r_lo, r_mid, r_hi = (weighted_quantile(rent, p.weights, q) for q in (0.1, 0.5, 0.9))
    ax1.plot(months, r_mid, "--", color="C1", label="all on demand: P50")
    ax1.plot(months, r_hi, ":", color="C1", label="all on demand: P90")
    ax1.set_ylabel("cumulative cost, USD (nominal)")
    usd_axis(ax1.yaxis)
    owned = " (owned hardware at its loss of market value)" if "own" in [c["contract"] for c in commitments(gp)] else ""
    ax1.set_title(f"{gp.spec.name}: cumulative cost{owned}")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    cap = capacity(p, gp.plan.starts)
    used = [i for i in range(len(p.contracts)) if cap[i].any()]
    if used:
        ax2.stackplot(months, cap[used], step="mid", alpha=0.5,
                      labels=[f"{CONTRACT_LABELS.get(p.contracts[i].name, p.contracts[i].name)} (committed)"
                              for i in used])
    paths = demand_paths(gp)
    ax2.step(months, paths["p90"], where="mid", color="black", ls=":", label="demand P90")
    ax2.step(months, paths["p50"], where="mid", color="black", label="demand P50")
    ax2.step(months, paths["p10"], where="mid", color="black", ls="--", label="demand P10")
    ax2.set_xlabel("month")
    ax2.set_ylabel(f"{gp.sku} accelerators")
    ax2.set_title("committed capacity vs demand (above the committed: rented on demand or spot)")
    return save_chart(fig, ax2, path)


def write_growth(gp: GrowthPlan, out_dir: Path) -> list[Path]:
    """growth-plan.csv / .md / .xlsx / .json and growth-fan.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = growth_doc(gp)
    months = months_frame(gp, doc["months"])
    tot = totals_frame(doc["totals"])
    made = pd.DataFrame(doc["commitments"])
    named = pd.DataFrame(doc["totals"]["named_futures"])
    assumptions = assumptions_frame(gp)
    months.to_csv(out_dir / "growth-plan.csv", index=False)
    (out_dir / "growth-plan.json").write_text(json.dumps(json_finite(doc), indent=1, allow_nan=False) + "\n")
    with pd.ExcelWriter(out_dir / "growth-plan.xlsx", engine="openpyxl") as w:
        sheets = [("months", months), ("totals", tot), ("commitments", made), ("assumptions", assumptions)]
        for name, frame in sheets + ([("futures", named)] if len(named) else []):
            frame.to_excel(w, sheet_name=name, index=False)
            finish_sheet(w.sheets[name], frame)
    fan_chart(gp, out_dir / "growth-fan.png")
    md = [f"# Growth plan: {gp.spec.name}", "", gp.spec.description, "", "## Advice", "",
          *(f"- {line}" for line in doc["advice"]), "", "## Totals", "", *frame_markdown(tot), "",
          *(["## Named futures", "", *frame_markdown(named), ""] if len(named) else []),
          "## Month by month", "", *frame_markdown(months), "", "![fan chart](growth-fan.png)", "",
          "## Assumptions", "", *frame_markdown(assumptions), ""]
    if gp.warnings:
        md += ["## Warnings", "", *(f"- {w}" for w in gp.warnings), ""]
    (out_dir / "growth-plan.md").write_text("\n".join(md))
    return [out_dir / f for f in FILES]
