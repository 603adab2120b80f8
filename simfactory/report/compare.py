"""Side-by-side comparison of several runs' summaries (reads summary dicts only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from simfactory.report.finance import finance_tables
from simfactory.report.html import HtmlReport


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def comparison_frame(summaries: list[dict[str, Any]]) -> pd.DataFrame:
    """One column per run, one row per headline metric."""
    rows: dict[str, list[Any]] = {}

    def add(label: str, values: list[Any]) -> None:
        if any(v is not None for v in values):
            rows[label] = values

    S = summaries
    add("LLM requests measured (with escalations)", [_get(s, "window", "measured_requests") for s in S])
    add("TTFT p50 (s)", [_get(s, "latency_s", "ttft", "p50") for s in S])
    add("TTFT p99 (s)", [_get(s, "latency_s", "ttft", "p99") for s in S])
    add("TPOT p50 (s)", [_get(s, "latency_s", "tpot", "p50") for s in S])
    add("E2E p99 (s)", [_get(s, "latency_s", "e2e", "p99") for s in S])
    add("completed req/s (attempts)", [_get(s, "throughput", "requests_per_s") for s in S])
    add("answered req/s (as callers see them)", [_get(s, "throughput", "answered_requests_per_s") for s in S])
    add("output tokens/s", [_get(s, "throughput", "output_tokens_per_s") for s in S])
    add("SLO attainment", [_get(s, "service", "slo_attainment") for s in S])
    add("goodput (req/s meeting SLO)", [_get(s, "service", "goodput_per_s") for s in S])
    add("escalation rate", [_first(_get(s, "service", "routes"), "escalation_rate") for s in S])
    add("prefix cache hit ratio", [_first_dep(s, "hit_ratio") for s in S])
    add("prefill tokens saved", [_first_dep(s, "prefill_tokens_saved") for s in S])
    add("network share of E2E", [_get(s, "network", "share_of_e2e") for s in S])
    add("egress USD (window)", [_get(s, "network", "egress_usd") for s in S])
    add("mean replica busy fraction", [_mean([r["busy_frac"] for r in s.get("replicas", [])]) for s in S])
    add("fleet busy fraction", [_get(s, "finance", "unit_economics", "fleet_utilization") for s in S])
    add("fleet load (demand / provisioned)", [_get(s, "finance", "unit_economics", "fleet_load_fraction") for s in S])
    add("availability (replicas with failures)", [_get(s, "resilience", "availability_mean") for s in S])
    add("requests lost to failures", [_get(s, "resilience", "requests_lost") for s in S])
    add("autoscaled replica-hours", [sum(a["provisioned_replica_hours"] for a in (s.get("autoscaling") or {}).values())
                                     if s.get("autoscaling") else None for s in S])
    add("USD per hour", [_get(s, "cost", "usd_per_hour") for s in S])
    add("USD per 1M tokens (in+out)", [_get(s, "finance", "unit_economics", "usd_per_1m_tokens") for s in S])
    add("USD per 1M output tokens", [_get(s, "cost", "usd_per_1m_output_tokens") for s in S])
    add("USD per request", [_get(s, "cost", "usd_per_request") for s in S])
    add("USD per successful task (fully loaded)",
        [_get(s, "finance", "unit_economics", "usd_per_successful_task") for s in S])
    add("tokens per joule", [_get(s, "finance", "unit_economics", "tokens_per_joule") for s in S])
    add("upfront capex USD", [_get(s, "finance", "tco", "upfront_capex_usd") for s in S])
    add("TCO over horizon USD", [_get(s, "finance", "tco", "tco_usd") for s in S])
    add("TCO horizon (years)", [_get(s, "finance", "tco", "horizon_years") for s in S])
    add("tasks completed", [_first(s.get("tasks"), "outcome_rates", "completed") for s in S])
    add("task latency p50 (s)", [_first(s.get("tasks"), "latency_s", "p50") for s in S])
    add("task latency p99 (s)", [_first(s.get("tasks"), "latency_s", "p99") for s in S])
    names = [s["scenario"] for s in S]
    if len(set(names)) != len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return pd.DataFrame(rows, index=names).T


def _first(blocks: Any, *path: str) -> Any:
    if not blocks:
        return None
    return _get(next(iter(blocks.values())), *path)


def _first_dep(s: dict[str, Any], key: str) -> Any:
    for d in s.get("deployments", []):
        if d.get("prefix_cache"):
            return d["prefix_cache"][key]
    return None


def _mean(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def to_markdown(df: pd.DataFrame) -> str:
    def fmt(x: Any) -> str:
        if x is None or (isinstance(x, float) and pd.isna(x)):
            return "n/a"
        if isinstance(x, float):
            return f"{x:,.4g}"
        return f"{x:,}" if isinstance(x, int) else str(x)

    header = "| metric | " + " | ".join(df.columns) + " |"
    lines = [header, "|---|" + "---|" * len(df.columns)]
    for label, row in df.iterrows():
        lines.append(f"| {label} | " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


SLO_TARGET = 0.99  # a run "meets its SLOs" when at least this share of its logical requests met them


def recommendation(summaries: list[dict[str, Any]], names: list[str]) -> str:
    """One line: the cheapest run (per successful task, else per request) among those meeting their SLOs."""
    def unit_cost(s: dict[str, Any]) -> tuple[float | None, str]:
        per_task = _get(s, "finance", "unit_economics", "usd_per_successful_task")
        if per_task is not None:
            return per_task, "successful task"
        return _get(s, "cost", "usd_per_request"), "request"

    ok = [(n, s) for n, s in zip(names, summaries) if (_get(s, "service", "slo_attainment") or 0.0) >= SLO_TARGET]
    if ok and not any(_get(s, "service", "slo_targets_defined") for _, s in ok):
        return _recommend(ok, unit_cost) + (" None of these runs sets latency targets (service_classes[].slo): "
                                             "meeting the SLO means only being answered.")
    return _recommend(ok, unit_cost)


def _recommend(ok: list[tuple[str, dict[str, Any]]], unit_cost: Any) -> str:
    if not ok:
        return f"No run meets its SLOs (at least {SLO_TARGET:.0%} of requests within target)."
    costs = [(unit_cost(s), n) for n, s in ok]
    priced = [(c, unit, n) for (c, unit), n in costs if c is not None]
    if not priced:
        return "Runs meeting their SLOs: " + ", ".join(n for n, _ in ok) + " (no cost to compare)."
    best_cost, unit, best = min(priced)
    others = [(c, n) for c, u, n in priced if n != best and u == unit]
    if not others:
        return f"{best} meets its SLOs at USD {best_cost:.6g} per {unit}; no other run meets them."
    next_cost, next_name = min(others)
    saving = 1 - best_cost / next_cost if next_cost else 0.0
    return (f"{best} meets the SLOs at {saving:.0%} lower cost per {unit} than {next_name} "
            f"(USD {best_cost:.6g} vs {next_cost:.6g}).")


CRITERIA = ("performance", "utilization", "data_movement", "operational_simplicity", "lock_in_freedom")


def scorecard(summaries: list[dict[str, Any]], names: list[str], weights: dict[str, float] | None = None) -> pd.DataFrame:
    """0-10 per criterion per run, and the weighted total (weights: the first run's finance.scorecard_weights).

    performance = 10 x SLO attainment (10 x best p99 E2E / own without SLOs); utilization = 10 x fleet load
    (accelerators the demand needs / provisioned, capped at 1); data movement = 10 x (1 - egress / largest egress); operational simplicity and lock-in
    freedom are the ratings in the run's summary (price-book defaults or the scenario's own)."""
    w = weights or _get(summaries[0], "finance", "scorecard", "weights") or {c: 1 / len(CRITERIA) for c in CRITERIA}
    p99 = [_get(s, "latency_s", "e2e", "p99") for s in summaries]
    best_p99 = min((x for x in p99 if x), default=None)
    egress = [_get(s, "network", "egress_usd") or 0.0 for s in summaries]
    max_egress = max(egress) or 0.0
    rows = {}
    for name, s, lat, eg in zip(names, summaries, p99, egress):
        att = _get(s, "service", "slo_attainment")
        perf = 10 * att if att is not None else (10 * best_p99 / lat if lat and best_p99 else 0.0)
        ue = _get(s, "finance", "unit_economics") or {}
        load = ue.get("fleet_load_fraction")  # busy fractions sit near 1 under continuous batching at any load
        util = 10 * min(1.0, load if load is not None else ue.get("fleet_utilization") or 0.0)
        data = 10 * (1 - eg / max_egress) if max_egress else 10.0
        ratings = _get(s, "finance", "scorecard", "ratings") or {}
        scores = {"performance": perf, "utilization": util, "data_movement": data,
                  "operational_simplicity": ratings.get("operational_simplicity", 5.0),
                  "lock_in_freedom": ratings.get("lock_in_freedom", 5.0)}
        scores["weighted total"] = sum(w.get(c, 0.0) * scores[c] for c in CRITERIA)
        rows[name] = scores
    df = pd.DataFrame(rows)
    df.insert(0, "weight", [w.get(c, 0.0) for c in CRITERIA] + [sum(w.values())])
    return df


def compare_plot(summaries: list[dict[str, Any]], names: list[str], path: Any) -> Any:
    """Bars: cost per unit, TCO over the horizon, and tail latency, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("USD per successful task" if any(_get(s, "finance", "unit_economics", "usd_per_successful_task") for s in summaries)
         else "USD per 1M tokens",
         [(_get(s, "finance", "unit_economics", "usd_per_successful_task")
           or _get(s, "finance", "unit_economics", "usd_per_1m_tokens") or 0.0) for s in summaries]),
        ("TCO over horizon (USD)", [_get(s, "finance", "tco", "tco_usd") or 0.0 for s in summaries]),
        ("E2E p99 (s)", [_get(s, "latency_s", "e2e", "p99") or 0.0 for s in summaries]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, values) in zip(axes, panels):
        ax.bar(range(len(values)), values, color=[f"C{i}" for i in range(len(values))])
        ax.set_xticks(range(len(values)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_comparison(summaries: list[dict[str, Any]], out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """compare.md, compare.html (self-contained: comparison, scorecard, chart, every run's finance tables),
    compare.csv, scorecard.csv, compare.xlsx (the same tables, a sheet each) and compare.png."""
    df = comparison_frame(summaries)
    names = [str(c) for c in df.columns]
    card = scorecard(summaries, names)
    line = recommendation(summaries, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    compare_plot(summaries, names, out_dir / "compare.png")
    (out_dir / "compare.md").write_text(
        "# simfactory compare\n\n" + line + "\n\n" + to_markdown(df)
        + "\n## Scorecard (0-10, higher is better)\n\n" + to_markdown(card)
        + "\nPerformance = 10 x SLO attainment; utilization = 10 x fleet utilization; data movement = 10 x (1 - "
        "egress / largest egress); operational simplicity and lock-in freedom are ratings (price book defaults or "
        "the scenario's finance.scorecard_ratings). Weights: finance.scorecard_weights of the first scenario.\n\n"
        "![compare](compare.png)\n"
    )
    df.to_csv(out_dir / "compare.csv")
    card.to_csv(out_dir / "scorecard.csv")
    per_run = [(i + 1, name, finance_tables(s)) for i, (name, s) in enumerate(zip(names, summaries)) if "finance" in s]
    with pd.ExcelWriter(out_dir / "compare.xlsx", engine="openpyxl") as w:
        df.to_excel(w, sheet_name="comparison")
        card.to_excel(w, sheet_name="scorecard")
        for i, _, tables in per_run:
            for t in tables:
                t.frame.to_excel(w, sheet_name=f"{i}-{t.key}"[:31], index=False)
    page = HtmlReport("simfactory compare: " + " vs ".join(names))
    page.paragraph(line, "lead")
    page.heading("Side by side")
    page.table(df, index=True)
    page.heading("Scorecard (0-10, higher is better)")
    page.table(card, index=True, note="Performance = 10 x SLO attainment; utilization = 10 x fleet utilization; data "
               "movement = 10 x (1 - egress / largest egress); simplicity and lock-in are ratings (price book or scenario).")
    page.image(out_dir / "compare.png", "cost per unit, TCO and tail latency per run")
    for i, name, tables in per_run:
        page.heading(f"{i}. {name}: finance")
        for t in tables:
            page.table(t.frame, t.title, t.note)
    page.write(out_dir / "compare.html")
    return df, card, line
