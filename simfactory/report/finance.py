"""Finance tables from summary.json (cost per pool, unit economics, TCO and break-even, hybrid sizing,
sensitivity, training, assumptions), written as CSV, one xlsx workbook, Markdown and two charts.

Reads only the summary dict, so `simfactory report RUN_DIR` can rebuild them from a finished run."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simfactory.report.backend import use_headless_backend

use_headless_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from simfactory.report.money import finish_sheet, format_cell, format_usd, money_flags, usd_axis  # noqa: E402


@dataclass(frozen=True)
class FinanceTable:
    key: str  # file / sheet name
    title: str
    frame: pd.DataFrame
    note: str = ""


UNIT_ROWS = [
    ("fleet_usd_per_hour", "fleet cost (serving and dedicated training)", "USD/hour"),
    ("serving_usd_per_hour", "serving cost (the unit costs below divide this)", "USD/hour"),
    ("serving_window_usd", "serving cost of the measurement window", "USD"),
    ("usd_per_1m_tokens", "cost per 1M tokens (input + output)", "USD"),
    ("usd_per_1m_input_tokens_all_in", "cost per 1M input tokens (all serving cost on input)", "USD"),
    ("usd_per_1m_output_tokens_all_in", "cost per 1M output tokens (all serving cost on output)", "USD"),
    ("usd_per_request", "cost per completed request (as callers see them: an escalation counts once)", "USD"),
    ("usd_per_1000_inferences", "cost per 1,000 inferences", "USD"),
    ("usd_per_task", "cost per agent task (fully loaded)", "USD"),
    ("usd_per_successful_task", "cost per successful agent task (fully loaded)", "USD"),
    ("tokens_per_usd", "tokens per dollar", "tokens/USD"),
    ("tokens_per_joule", "tokens per joule (accelerator energy)", "tokens/J"),
    ("accelerator_energy_kwh", "accelerator energy in the window", "kWh"),
    ("fleet_utilization", "fleet busy fraction (share of provisioned accelerator-hours with work; not billed)", "fraction"),
    ("fleet_load_fraction", "fleet load (accelerators the demand needs / provisioned)", "fraction"),
    ("usd_per_busy_accel_hour", "utilization-adjusted cost (per busy accelerator-hour)", "USD"),
    ("usd_per_provisioned_accel_hour", "cost per provisioned accelerator-hour", "USD"),
]


def tco_row(p: dict[str, Any], cur: str, months: int) -> dict[str, Any]:
    """One pool's line of the TCO table: its TCO as configured, own vs rent from the decision model, the
    break-even load and month, and the verdict sentence, all from summary.json's finance.tco."""
    month = p.get("break_even_month")
    be_load = p.get("break_even_load")
    compared = p.get("own_npv_usd") is not None
    return {
        "pool": p["pool"], "location": p["location"], "accelerators": p["accelerators"],
        "owned accelerators (decision)": p.get("owned_accelerators"),
        "load (demand / provisioned)": p.get("load_fraction"), "busy fraction": p["utilization"],
        f"upfront capex {cur}": p["upfront_capex_usd"], f"running {cur}/month": p["running_usd_per_month"],
        f"TCO as configured {cur}": p["tco_usd"],
        f"own {cur}": p.get("own_npv_usd"),
        f"rent what the load needs {cur}": p.get("rent_npv_usd"),
        f"reference: rent the same fleet every hour {cur}": p.get("rent_all_hours_npv_usd"),
        "break-even load": be_load if be_load is not None or not compared else "none: owning never cheaper",
        "break-even month": month if month is not None or not compared else f"not within {months} months",
        "verdict": p.get("verdict"),
    }


def finance_tables(summary: dict[str, Any]) -> list[FinanceTable]:
    f = summary["finance"]
    cur = f["currency"]
    years = f["tco"]["horizon_years"]
    pools = pd.DataFrame(
        [
            {"pool": p["pool"], "SKU": p["sku"], "location": p["location"], "pricing": p["pricing"],
             "accelerators": p["accelerators"], "load": p.get("load_fraction"), "busy fraction": p["utilization"],
             f"{cur}/hour": p["usd_per_hour"],
             **{f"{k} {cur}/hour": v for k, v in p["breakdown_usd_per_hour"].items()}}
            for p in summary["cost"]["pools"]
        ]
    )
    ue = f["unit_economics"]
    units = pd.DataFrame([{"metric": label, "value": ue.get(k), "unit": u.replace("USD", cur)} for k, label, u in UNIT_ROWS])
    tb = f["tco"]
    months = tb.get("horizon_months", round(years * 12))
    rate = tb.get("discount_rate_annual", 0.0)
    tco = pd.DataFrame([tco_row(p, cur, months) for p in tb["pools"]])
    hybrid = pd.DataFrame(
        [
            {"pool": name, "baseline": kind + (f" ({h['reserved_price']})" if "reserved_price" in h else ""),
             "demand mean (accelerators)": h.get("demand_mean_accels"),
             "demand peak (accelerators)": h.get("demand_peak_accels"),
             "best baseline (accelerators)": h.get("best_baseline_accels"),
             f"hybrid {cur}/hour": h.get("best_usd_per_hour"),
             f"all rented (elastic) {cur}/hour": h.get("all_rented_elastic_usd_per_hour"),
             f"all baseline at peak {cur}/hour": h.get("all_baseline_at_peak_usd_per_hour")}
            for name, kinds in f["hybrid"].items() for kind, h in kinds.items()
        ]
    )
    sens = f["sensitivity"]
    tornado = pd.DataFrame(
        [
            {"input": r["input"], "low factor": r["low_factor"], "high factor": r["high_factor"],
             f"{sens['metric']} at low": r["metric_at_low"], f"{sens['metric']} at high": r["metric_at_high"],
             "swing": r["swing"]}
            for r in sens["rows"]
        ]
    )
    training = pd.DataFrame(
        [{k: v for k, v in t.items() if k != "interval_scan"} for t in f["training"]]
    )
    assumptions = pd.DataFrame(f["assumptions"], columns=["name", "value", "unit", "source", "as_of"])
    tables = [
        FinanceTable("cost_per_pool", "Cost per pool", pools,
                     "Cloud pays every provisioned accelerator-hour; on-prem amortizes purchase to residual value and pays "
                     "energy, colocation, staff and licences."),
        FinanceTable("unit_economics", "Unit economics (measurement window)", units,
                     "Per-token all-in figures put the whole fleet cost on one token type; they do not add up."),
        FinanceTable("tco", f"TCO over {years:g} years ({months} months, present value at {rate:.1%}/year): own or "
                            "rent, and break-even", tco,
                     "One model gives every figure in this table (simfactory/cost/decision.py): monthly cash flows "
                     f"discounted at {rate:.1%}/year; owning = purchase + running costs at the load (energy on the "
                     "idle-to-TDP curve, colocation, staff, licences, maintenance, insurance) - resale when it stops; "
                     "renting = only the accelerator-hours the load needs, on demand (owned <-> rented: the same "
                     "service priced the other way; an autoscaled cloud pool is owned at its peak). Owning is cheaper "
                     "at the horizon exactly when the load is at or above the break-even load, and exactly when the "
                     "break-even month falls within the horizon. Renting the same fleet every hour is a reference "
                     "only: it costs the same at any load, so no break-even is set against it. The load is demand / "
                     "provisioned, not the busy fraction: continuous batching keeps replicas stepping at any load."),
        FinanceTable("hybrid", "Hybrid sizing: owned or reserved baseline + elastic cloud burst on the simulated demand",
                     hybrid, "Demand = accelerators needed per timeline sample (requests in flight / (target_concurrency_fraction x "
                     "max_num_seqs) per replica); burst is rented on demand per needed hour "
                     "(an elastic bound); an owned baseline costs what the TCO table's model charges per "
                     "accelerator-hour over the horizon (purchase less resale, running costs, discounted); a reserved "
                     "baseline is paid every hour at the cheapest reserved price."),
        FinanceTable("sensitivity", f"Sensitivity of {sens['metric']} (base {_num(sens['base'])})", tornado,
                     f"Each input moved by -/+{sens['fraction']:.0%}, others held; sorted by swing."),
    ]
    tables += cost_stack_tables(f, cur)
    if len(training):
        tables.append(FinanceTable("training", "Training jobs: time to train and cost per validated checkpoint", training,
                                   "Checkpoint intervals: Young sqrt(2 x checkpoint cost x MTBF), Daly sqrt(2 delta M) - delta."))
    tables.append(FinanceTable("assumptions", "Assumptions (prices with source and date)", assumptions))
    return tables


def cost_stack_frame(stack: dict[str, Any], cur: str) -> pd.DataFrame:
    """finance.cost_stack as a table: each line over the window, a month and 1M tokens, with its quantity and basis
    (or the input that would price it); the total of the priced lines; the value of latency beside it."""
    rows = [{"category": x["category"], "item": x["item"], "status": x["status"], f"{cur} (window)": x["usd"],
             f"{cur}/month": x["usd_per_month"], f"{cur} per 1M tokens": x["usd_per_1m_tokens"],
             "quantity": x["quantity"], "quantity unit": x["quantity_unit"],
             "basis or missing input": x["basis"] if x["usd"] is not None else f"set {x['missing']}",
             "allocated by": x["allocated_by"]} for x in stack["lines"]]
    rows.append({"category": "total", "item": "total of the priced lines",
                 "status": f"{len(stack['not_priced'])} line(s) not priced", f"{cur} (window)": stack["total_usd"],
                 f"{cur}/month": stack["total_usd_per_month"], f"{cur} per 1M tokens": stack["usd_per_1m_tokens"]})
    lv = stack["latency_value_saved"]
    rows.append({"category": "value", "item": "value of latency (not in the total)", "status": lv["status"],
                 f"{cur} (window)": lv["net_usd"], f"{cur}/month": lv["net_monthly_usd"],
                 "basis or missing input": lv.get("basis") or f"set {lv.get('missing', '')}"})
    if stack.get("net_cost_usd_less_latency_value") is not None:
        rows.append({"category": "net", "item": "total less the value of latency", "status": "priced",
                     f"{cur} (window)": stack["net_cost_usd_less_latency_value"],
                     f"{cur}/month": stack["net_cost_usd_less_latency_value"] / stack["window_months"]
                     if stack["window_months"] else None})
    return pd.DataFrame(rows)


GROUP_COLUMNS = {"successful_requests": "successful requests", "successful_tasks": "successful tasks",
                 "gpu_s": "GPU-seconds", "total_usd": "total USD", "usd_per_1m_tokens": "USD per 1M tokens",
                 "usd_per_successful_request": "USD per successful request",
                 "usd_per_successful_task": "USD per successful task",
                 "latency_value_saved_net_usd": "value of latency (net) USD"}
GROUP_LABELS = {"by_application": "application", "by_tenant": "tenant", "by_tier": "tier (deployment)",
                "by_workflow_path": "workflow path"}


def unit_economics_groups_frame(ue: dict[str, Any], cur: str) -> pd.DataFrame:
    """finance.unit_economics.by_* as one table: a block of rows per dimension, one row per group."""
    rows = []
    for key, label in GROUP_LABELS.items():
        for name, g in ue.get(key, {}).items():
            row = {"dimension": label, "group": name}
            for k, v in g.items():
                row[GROUP_COLUMNS.get(k) or k.replace("_usd", f" {cur}").replace("_", " ")] = v
            rows.append(row)
    return pd.DataFrame(rows)


def cost_stack_tables(f: dict[str, Any], cur: str) -> list[FinanceTable]:
    """The whole cost stack and its unit economics by group (summaries written before the cost stack: none)."""
    stack = f.get("cost_stack")
    if stack is None:
        return []
    by_rule: dict[str, list[str]] = {}
    for line, rule in f["unit_economics"].get("allocation", {}).items():
        by_rule.setdefault(rule, []).append(line)
    allocation = "; ".join(f"{', '.join(lines)}: {rule}" for rule, lines in by_rule.items())
    return [
        FinanceTable("cost_stack", "The whole cost stack (measurement window; a month and 1M tokens at the same rate)",
                     cost_stack_frame(stack, cur),
                     "Each line is priced from the price book (sourced) or from finance.cost_stack (your inputs); a "
                     "line whose input is absent is not priced and not counted in the total, never taken as 0. Per "
                     "1M tokens: tokens answered in the window. The inputs are in the assumptions table."),
        FinanceTable("unit_econ_groups", "Unit economics by application, tenant, tier and workflow path",
                     unit_economics_groups_frame(f["unit_economics"], cur),
                     "Every priced line allocated to the requests and tasks that caused it; each dimension's groups "
                     f"add up to the cost stack's total. Allocation: {allocation}."),
    ]


def _md_cell(v: Any, money: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, str):
        return v.replace("|", "/")
    return format_cell(v, money).replace("|", "/")


def frame_markdown(df: pd.DataFrame) -> list[str]:
    """A DataFrame as Markdown table lines (no index); money (by column name or the row's unit) as $1,234."""
    if not len(df):
        return ["(none)"]
    cols = [str(c) for c in df.columns]
    unit_at = cols.index("unit") if "unit" in cols else None
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        flags = money_flags(cols, row[unit_at] if unit_at is not None else None)
        out.append("| " + " | ".join(_md_cell(v, m) for v, m in zip(row, flags)) + " |")
    return out


def markdown_section(tables: list[FinanceTable]) -> list[str]:
    out: list[str] = []
    for t in tables:
        out += [f"### {t.title}", ""]
        out += frame_markdown(t.frame)
        out += ["", t.note, ""] if t.note else [""]
    return out


def write_tables(tables: list[FinanceTable], out_dir: Path) -> list[Path]:
    """finance_<key>.csv per table and finance.xlsx with one sheet per table."""
    paths = []
    for t in tables:
        p = out_dir / f"finance_{t.key}.csv"
        t.frame.to_csv(p, index=False)
        paths.append(p)
    xlsx = out_dir / "finance.xlsx"
    with pd.ExcelWriter(xlsx, engine="openpyxl") as w:
        for t in tables:
            t.frame.to_excel(w, sheet_name=t.key[:31], index=False)
            finish_sheet(w.sheets[t.key[:31]], t.frame)
    paths.append(xlsx)
    return paths


def _num(x: float | None) -> str:
    return "n/a (nothing served)" if x is None else format_usd(x)


def tornado_plot(summary: dict[str, Any], path: Path) -> Path:
    s = summary["finance"]["sensitivity"]
    rows = list(reversed(s["rows"]))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    base = s["base"]
    for i, r in enumerate(rows):
        lo, hi = r["metric_at_low"], r["metric_at_high"]
        if base is None or lo is None or hi is None:  # nothing served: no unit cost to move
            continue
        ax.barh(i, lo - base, left=base, color="tab:blue", label=f"input x{r['low_factor']:.2f}" if i == 0 else None)
        ax.barh(i, hi - base, left=base, color="tab:orange", label=f"input x{r['high_factor']:.2f}" if i == 0 else None)
    if base is not None:
        ax.axvline(base, color="black", lw=1)
    ax.set_yticks(range(len(rows)), [r["input"] for r in rows])
    ax.set_xlabel(f"{s['metric']} ({summary['finance']['currency']})")
    usd_axis(ax.xaxis)
    ax.set_title(f"{summary['scenario']}: sensitivity of {s['metric']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def break_even_plot(summary: dict[str, Any], path: Path) -> Path:
    """Per pool: present value over the horizon of owning vs renting what the load needs, over the load, with
    the break-even load (dotted) and the simulated load (thick); renting the same fleet every hour is flat."""
    tco = summary["finance"]["tco"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    u = np.linspace(0, 1, 101)
    for p in tco["pools"]:
        if p.get("own_npv_usd_at_load_0") is None:
            continue
        owned = p["own_npv_usd_at_load_0"] + p["own_npv_usd_per_load"] * u
        (line,) = ax.plot(u, owned, label=f"{p['pool']}: own")
        ax.plot(u, p["rent_npv_usd_per_load"] * u, ls="--", color=line.get_color(),
                label=f"{p['pool']}: rent only the hours the load needs")
        ax.axhline(p["rent_all_hours_npv_usd"], ls="-.", lw=0.8, color=line.get_color(),
                   label=f"{p['pool']}: reference, rent the same fleet every hour")
        if p["break_even_load"] is not None:
            ax.axvline(p["break_even_load"], color=line.get_color(), lw=0.8, ls=":")
        ax.axvline(p["decision_load"], color=line.get_color(), lw=2, alpha=0.3)
    months = tco.get("horizon_months", round(tco["horizon_years"] * 12))
    ax.set_xlabel("load (share of the owned accelerator-hours the demand needs)")
    ax.set_ylabel(f"{summary['finance']['currency']} over {months} months, "
                  f"present value at {tco.get('discount_rate_annual', 0.0):.1%}/year")
    usd_axis(ax.yaxis)
    ax.set_title(f"{summary['scenario']}: own vs rent (dotted: break-even load; thick: simulated load)")
    return save_chart(fig, ax, path)


def save_chart(fig: Any, ax: Any, path: Path) -> Path:
    """Legend, grid, tight layout, 100 dpi PNG, figure closed: how every finance and plan chart is saved. A chart
    whose legend outgrows its axes cannot be laid out tightly; matplotlib says so on the terminal, where it is
    noise: the PNG is cropped to its content instead."""
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Tt]ight layout not applied.*")
        fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_finance(summary: dict[str, Any], out_dir: Path, plots: bool = True) -> list[Path]:
    tables = finance_tables(summary)
    paths = write_tables(tables, out_dir)
    if plots:
        with warnings.catch_warnings(action="ignore"):  # an empty run plots empty axes: matplotlib's notes are noise
            paths += [tornado_plot(summary, out_dir / "cost_sensitivity.png"),
                      break_even_plot(summary, out_dir / "break_even.png")]
    return paths
