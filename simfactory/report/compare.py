"""Side-by-side comparison of several runs' summaries (reads summary dicts only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simfactory.fidelity_record import most_optimistic
from simfactory.report.finance import finance_tables
from simfactory.report.html import HtmlReport
from simfactory.report.money import finish_sheet, format_cell, format_usd, money_flags, usd_axis


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
    ms = lambda x: None if x is None else x * 1000.0  # noqa: E731 - request latencies in ms, as `run` prints them
    add("TTFT p50 (ms)", [ms(_get(s, "latency_s", "ttft", "p50")) for s in S])
    add("TTFT p99 (ms)", [ms(_get(s, "latency_s", "ttft", "p99")) for s in S])
    add("TPOT p50 (ms)", [ms(_get(s, "latency_s", "tpot", "p50")) for s in S])
    add("E2E p99 (ms)", [ms(_get(s, "latency_s", "e2e", "p99")) for s in S])
    add("completed req/s (attempts)", [_get(s, "throughput", "requests_per_s") for s in S])
    add("answered req/s (as callers see them)", [_get(s, "throughput", "answered_requests_per_s") for s in S])
    add("output tokens/s", [_get(s, "throughput", "output_tokens_per_s") for s in S])
    add("SLO attainment", [_get(s, "service", "slo_attainment") for s in S])
    add("goodput (req/s meeting SLO)", [_get(s, "service", "goodput_per_s") for s in S])
    add("escalation rate", [_first(_get(s, "service", "routes"), "escalation_rate") for s in S])
    add("prefix cache: requests with a hit", [_first_dep(s, "request_hit_ratio") for s in S])
    add("prefill tokens saved", [_first_dep(s, "prefill_tokens_saved") for s in S])
    add("network share of E2E", [_get(s, "network", "share_of_e2e") for s in S])
    add("serving front end share of E2E", [_get(s, "front_end", "share_of_e2e") for s in S])
    add("front end busy fraction (max over deployments)",
        [max((v for v in (_get(s, "front_end", "busy_frac") or {}).values() if v is not None), default=None)
         for s in S])
    add("egress USD (window)", [_get(s, "network", "egress_usd") for s in S])
    add("mean replica busy fraction", [_mean([r["busy_frac"] for r in s.get("replicas", [])]) for s in S])
    add("fleet busy fraction", [_get(s, "finance", "unit_economics", "fleet_utilization") for s in S])
    add("fleet load (demand / provisioned)", [_get(s, "finance", "unit_economics", "fleet_load_fraction") for s in S])
    pool_loads = [[p["load_fraction"] for p in _get(s, "finance", "tco", "pools") or []
                   if p.get("load_fraction") is not None] for s in S]
    if any(len(x) > 1 for x in pool_loads):
        add("busiest pool load", [max(x, default=None) for x in pool_loads])
    add("availability (replicas with failures)", [_get(s, "resilience", "availability_mean") for s in S])
    add("requests lost to failures", [_get(s, "resilience", "requests_lost") for s in S])
    add("autoscaled replica-hours", [sum(a["provisioned_replica_hours"] for a in (s.get("autoscaling") or {}).values())
                                     if s.get("autoscaling") else None for s in S])
    add("USD per hour", [_get(s, "cost", "usd_per_hour") for s in S])
    add(COST_ROWS["1M tokens"], [_get(s, "finance", "unit_economics", "usd_per_1m_tokens") for s in S])
    add("USD per 1M output tokens", [_get(s, "cost", "usd_per_1m_output_tokens") for s in S])
    add(COST_ROWS["request"], [_get(s, "cost", "usd_per_request") for s in S])
    add(COST_ROWS["successful task"], [_get(s, "finance", "unit_economics", "usd_per_successful_task") for s in S])
    add("tokens per joule", [_get(s, "finance", "unit_economics", "tokens_per_joule") for s in S])
    add("upfront capex USD", [_get(s, "finance", "tco", "upfront_capex_usd") for s in S])
    add("TCO over horizon USD", [_get(s, "finance", "tco", "tco_usd") for s in S])
    add("TCO horizon (years)", [_get(s, "finance", "tco", "horizon_years") for s in S])
    add("own vs rent (decision model)", [_own_vs_rent(s) for s in S])
    add("forecast bias of its kind (most optimistic deployment)", [_forecast_text(s) for s in S])
    add("tasks completed", [_first(s.get("tasks"), "outcome_rates", "completed") for s in S])
    # answer quality (scenarios with quality: blocks only; the rows are absent otherwise)
    add("LLM answers accepted (quality)", [_accepted(s.get("quality")) for s in S])
    add("task success rate (quality)", [_first(_get(s, "quality", "decomposition"), "task_success_rate") for s in S])
    add("USD per task (fully loaded, quality)",
        [_first(_get(s, "quality", "decomposition"), "usd_per_task_fully_loaded") for s in S])
    add("USD per successful task: on failed tasks",
        [_first(_get(s, "quality", "decomposition"), "on_failed_tasks_usd_per_success") for s in S])
    add("task latency p50 (s)", [_first(s.get("tasks"), "latency_s", "p50") for s in S])
    add("task latency p99 (s)", [_first(s.get("tasks"), "latency_s", "p99") for s in S])
    add("retained KV: hits per pin", [_first(s.get("tasks"), "kv_retention", "hit_ratio") for s in S])
    add("retained KV: prefill tokens saved/task",
        [_first(s.get("tasks"), "kv_retention", "prefill_tokens_saved_per_task") for s in S])
    add("retained KV: accelerator-s held/task", [_first(s.get("tasks"), "kv_retention", "accelerator_s_per_task")
                                                  for s in S])
    names = [s["scenario"] for s in S]
    if len(set(names)) != len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return pd.DataFrame(rows, index=names).T


def headline_values(summary: dict[str, Any]) -> dict[str, float]:
    """One run's numeric rows of `comparison_frame`: the metrics `run -R` and `compare -R` give confidence
    intervals (the table users already read; text rows such as own vs rent, and missing values, left out)."""
    column = comparison_frame([summary]).iloc[:, 0]
    return {str(label): float(v) for label, v in column.items() if _finite_number(v)}


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _first(blocks: Any, *path: str) -> Any:
    if not blocks:
        return None
    return _get(next(iter(blocks.values())), *path)


def _accepted(q: dict[str, Any] | None) -> float | None:
    """Share of all judged LLM answers the validators accepted (every deployment together)."""
    if not q or not q.get("deployments"):
        return None
    n = sum(d["answers"] for d in q["deployments"])
    return sum(d["accepted"] for d in q["deployments"]) / n if n else None


def _first_dep(s: dict[str, Any], key: str) -> Any:
    for d in s.get("deployments", []):
        if d.get("prefix_cache"):
            return d["prefix_cache"][key]
    return None


def _mean(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def formatted_rows(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Each row's label and its cells as shown (terminal, Markdown): money rows ("USD per hour", "TCO over
    horizon USD") as $1,234, other numbers without scientific notation, text as it is; missing: n/a."""
    rows = []
    for label, row in df.iterrows():
        flags = money_flags([str(c) for c in df.columns], label=label)
        rows.append((str(label), ["n/a" if _missing(v) else format_cell(v, m) for v, m in zip(row, flags)]))
    return rows


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def to_markdown(df: pd.DataFrame) -> str:
    header = "| metric | " + " | ".join(str(c) for c in df.columns) + " |"
    lines = [header, "|---|" + "---|" * len(df.columns)]
    for label, cells in formatted_rows(df):
        lines.append(f"| {label} | " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def verdict_lines(summaries: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Each run's own-vs-rent verdict per pool (finance.tco.pools[].verdict, simfactory/cost/decision.py), where
    the run has one (a price for the other way)."""
    out = []
    for name, s in zip(names, summaries):
        for p in _get(s, "finance", "tco", "pools") or []:
            if p.get("own_cheaper") is not None and p.get("verdict"):
                out.append(f"{name}, pool {p['pool']}: {p['verdict']}")
    return out


FORECAST_GAP = 0.05  # runs whose forecasts have leaned this much apart get a note: a difference in the table
# smaller than the gap between their forecasts' biases is within what the forecasts themselves have missed by


def _forecast_text(s: dict[str, Any]) -> str | None:
    a = most_optimistic(s)
    return None if a is None else f"{a['optimism']:+.1%}, MAPE {a['mape']:.1%} ({a['basis']}, {a['points']:,} pts)"


def forecast_gap_line(summaries: list[dict[str, Any]], names: list[str]) -> str | None:
    """When the runs rest on forecasts that have leaned differently (their most optimistic kinds' biases more than
    FORECAST_GAP apart: a roofline SKU against measured kernels), say so: the comparison favours the run whose
    forecasts run more optimistic by about that much."""
    found = [(n, a) for n, s in zip(names, summaries) if (a := most_optimistic(s)) is not None]
    if len(found) < 2:
        return None
    hi_name, hi = max(found, key=lambda x: x[1]["optimism"])
    lo_name, lo = min(found, key=lambda x: x[1]["optimism"])
    gap = hi["optimism"] - lo["optimism"]
    if gap <= FORECAST_GAP:
        return None
    return (f"forecasts differ in accuracy: {hi_name}'s ({hi['basis']}) have run {hi['optimism']:+.1%} against "
            f"published measurements, {lo_name}'s ({lo['basis']}) {lo['optimism']:+.1%}: {hi_name}'s latency and "
            f"throughput forecasts have run about {gap * 100:.0f} points more optimistic, so differences in those "
            "metrics smaller than that are within forecast error (see each run's Forecast accuracy)")


def _own_vs_rent(s: dict[str, Any]) -> str | None:
    """Short form of the verdicts for the side-by-side table: "h100-dc: renting cheaper"."""
    pools = [p for p in _get(s, "finance", "tco", "pools") or [] if p.get("own_cheaper") is not None]
    if not pools:
        return None
    return "; ".join(f"{p['pool']}: {'owning' if p['own_cheaper'] else 'renting'} cheaper" for p in pools)


SLO_TARGET = 0.99  # a run "meets its SLOs" when at least this share of its logical requests met them
LOAD_LIMIT = 1.0  # and its capacity when its fleet load (accelerators the demand needs / provisioned) is at most this
# The cost criterion's weight when finance.scorecard_weights names no cost: the scenario's weights share the rest
# in their own proportions (defaults 0.3/0.2/0.15/0.2/0.15 become 0.21/0.14/0.105/0.14/0.105).
COST_WEIGHT = 0.3
CRITERIA = ("performance", "cost", "utilization", "data_movement", "operational_simplicity", "lock_in_freedom")
GATE = "capacity"
MEETS = "meets SLOs and capacity"
# cost bases, best first: the first every run has is used (else the one most runs have)
COST_BASES = (("usd_per_successful_task", "successful task"), ("usd_per_1m_tokens", "1M tokens"),
              ("usd_per_request", "request"))
COST_ROWS = {"successful task": "USD per successful task (fully loaded)", "1M tokens": "USD per 1M tokens (in+out)",
             "request": "USD per request"}  # each cost basis's row in the side-by-side table


def card_weights(summaries: list[dict[str, Any]], weights: dict[str, float] | None = None) -> dict[str, float]:
    """Criterion weights summing to 1: the first run's finance.scorecard.weights (or `weights`) in their own
    proportions; cost takes COST_WEIGHT unless they name it."""
    given = weights or _get(summaries[0], "finance", "scorecard", "weights") or {}
    w = {c: max(0.0, float(given.get(c, 0.0))) for c in CRITERIA} if given else \
        {c: 1.0 for c in CRITERIA if c != "cost"} | {"cost": 0.0}
    if "cost" not in given:
        rest = sum(w.values())
        w = {c: (v / rest * (1 - COST_WEIGHT) if rest else 0.0) for c, v in w.items()}
        w["cost"] = COST_WEIGHT if rest else 1.0
    total = sum(w.values()) or 1.0
    return {c: w[c] / total for c in CRITERIA}


def _unit_cost(s: dict[str, Any], key: str) -> float | None:
    v = _get(s, "finance", "unit_economics", key)
    if v is None:
        v = _get(s, "cost", key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def cost_basis(summaries: list[dict[str, Any]]) -> tuple[str | None, list[float | None]]:
    """(unit, each run's cost per unit): per successful task where every run has one, else per 1M tokens,
    else per request (else the basis most runs have); (None, all None) where no run has a cost."""
    best: tuple[str | None, list[float | None]] = (None, [None] * len(summaries))
    for key, unit in COST_BASES:
        values = [_unit_cost(s, key) for s in summaries]
        if all(v is not None for v in values):
            return unit, values
        if sum(v is not None for v in values) > sum(v is not None for v in best[1]):
            best = (unit, values)
    return best


def cost_scores(values: list[float | None]) -> list[float]:
    """10 for the cheapest run, 10 x cheapest / own for the others; 0 without a cost."""
    priced = [v for v in values if v is not None and v >= 0]
    if not priced:
        return [0.0] * len(values)
    low = min(priced)
    return [0.0 if v is None or v < 0 else 10.0 if v <= low else 10.0 * low / v for v in values]


def _load_text(x: float) -> str:
    text = f"{x:.2f}"
    return f"{x:.4f}" if text in ("1.00", "0.99", "1.01") else text


def fleet_load(s: dict[str, Any]) -> float | None:
    """Demand over provisioned accelerators for the whole fleet (the busiest pool where there is no fleet figure)."""
    load = _get(s, "finance", "unit_economics", "fleet_load_fraction")
    if load is None:
        loads = [p["load_fraction"] for p in _get(s, "finance", "tco", "pools") or [] if p.get("load_fraction") is not None]
        load = max(loads, default=None)
    return load


def gate(s: dict[str, Any]) -> tuple[bool, str]:
    """(meets SLOs and capacity, why): SLO attainment at least SLO_TARGET, fleet load at most LOAD_LIMIT."""
    why = []
    att = _get(s, "service", "slo_attainment")
    if att is None:
        why.append("no SLO attainment (nothing measured)")
    elif att < SLO_TARGET:
        why.append(f"SLO attainment {att:.1%} < {SLO_TARGET:.0%}")
    load = fleet_load(s)
    if load is not None and load > LOAD_LIMIT:
        why.append(f"load {_load_text(load)} > {LOAD_LIMIT:g}")
    if why:
        return False, "; ".join(why)
    hot = [p for p in _get(s, "finance", "tco", "pools") or [] if (p.get("load_fraction") or 0.0) > LOAD_LIMIT]
    if hot and load is not None:  # the fleet has room: the busy pool's overflow is served by the others
        return True, ", ".join(f"pool {p['pool']} at load {_load_text(p['load_fraction'])}" for p in hot) + \
            f", fleet at {_load_text(load)}"
    return True, ""


def scorecard(summaries: list[dict[str, Any]], names: list[str], weights: dict[str, float] | None = None) -> pd.DataFrame:
    """0-10 per criterion per run, the weighted total, the rank, and whether the run meets its SLOs and capacity.

    performance = 10 x SLO attainment (10 x best p99 E2E / own without SLOs); cost = 10 x the lowest cost per unit
    (COST_BASES) / the run's own; utilization = 10 x fleet load (accelerators the demand needs / provisioned,
    capped at 1); data movement = 10 x (1 - egress / largest egress); operational simplicity and lock-in freedom
    are the ratings in the run's summary (price-book defaults or the scenario's own). Capacity is a gate, not a
    weight: 10 when the run meets its SLOs and its fleet load is at most 1, else 0; runs that pass rank first."""
    w = card_weights(summaries, weights)
    p99 = [_get(s, "latency_s", "e2e", "p99") for s in summaries]
    best_p99 = min((x for x in p99 if x), default=None)
    egress = [_get(s, "network", "egress_usd") or 0.0 for s in summaries]
    max_egress = max(egress) or 0.0
    costs = cost_scores(cost_basis(summaries)[1])
    cols: dict[str, dict[str, Any]] = {}
    for name, s, lat, eg, cost in zip(names, summaries, p99, egress, costs):
        att = _get(s, "service", "slo_attainment")
        ue = _get(s, "finance", "unit_economics") or {}
        load = ue.get("fleet_load_fraction")  # busy fractions sit near 1 under continuous batching at any load
        ratings = _get(s, "finance", "scorecard", "ratings") or {}
        scores: dict[str, Any] = {
            "performance": 10 * att if att is not None else (10 * best_p99 / lat if lat and best_p99 else 0.0),
            "cost": cost,
            "utilization": 10 * min(1.0, load if load is not None else ue.get("fleet_utilization") or 0.0),
            "data_movement": 10 * (1 - eg / max_egress) if max_egress else 10.0,
            "operational_simplicity": ratings.get("operational_simplicity", 5.0),
            "lock_in_freedom": ratings.get("lock_in_freedom", 5.0)}
        ok, why = gate(s)
        scores[GATE] = 10.0 if ok else 0.0
        scores["weighted total"] = sum(w[c] * scores[c] for c in CRITERIA)
        scores[MEETS] = ("yes" + (f" ({why})" if why else "")) if ok else f"no: {why}"
        cols[name] = scores
    order = sorted(names, key=lambda n: (cols[n][GATE] == 0.0, -cols[n]["weighted total"], names.index(n)))
    for rank, name in enumerate(order, start=1):
        cols[name]["rank"] = rank
    rows = [*CRITERIA, GATE, "weighted total", "rank", MEETS]
    df = pd.DataFrame({n: [cols[n][r] for r in rows] for n in names}, index=rows, dtype=object)
    df.insert(0, "weight", [w[c] for c in CRITERIA] + ["gate", sum(w.values()), "", ""])
    return df


def scorecard_note(summaries: list[dict[str, Any]]) -> str:
    unit = cost_basis(summaries)[0] or "request"
    return (f"Performance = 10 x SLO attainment; cost = 10 x the lowest USD per {unit} / the run's own (the "
            "cheapest run scores 10); utilization = 10 x fleet load (demand / provisioned, capped at 1); data "
            "movement = 10 x (1 - egress / largest egress); operational simplicity and lock-in freedom are ratings "
            "(price book defaults or the scenario's finance.scorecard_ratings). Capacity is a gate, not a weight: 10 "
            f"when the run meets its SLOs (at least {SLO_TARGET:.0%} of requests within target) and its fleet load "
            f"is at most {LOAD_LIMIT:g}, else 0; a run that fails it ranks after every run that passes and is not "
            f"recommended. Weights: cost {COST_WEIGHT:g}; the other {1 - COST_WEIGHT:g} shared in the proportions of "
            "the first scenario's finance.scorecard_weights. The recommendation is the top-ranked run.")


def _scores_text(*values: float) -> list[str]:
    """Scores with one decimal, or as many (up to 3) as it takes to tell them apart."""
    for d in (1, 2, 3):
        texts = [f"{v:.{d}f}" for v in values]
        if len(set(texts)) == len(texts):
            break
    return texts


def recommendation(summaries: list[dict[str, Any]], names: list[str], card: pd.DataFrame | None = None) -> str:
    """One line: the scorecard's top-ranked run among those meeting their SLOs and capacity, and why the others
    are not recommended (excluded by the gate, or lower scores, with the cheapest named)."""
    card = scorecard(summaries, names) if card is None else card
    total = {n: float(card.loc["weighted total", n]) for n in names}
    ok = passing_runs(card, names)
    why = {n: str(card.loc[MEETS, n]).removeprefix("no: ") for n in names if n not in ok}
    excluded = [f"{n} excluded: {w}" for n, w in why.items()]
    if not ok:
        line = (f"No run meets its SLOs (at least {SLO_TARGET:.0%} of requests within target) and capacity (fleet "
                f"load at most {LOAD_LIMIT:g}): " + "; ".join(f"{n}: {w}" for n, w in why.items()) + ".")
    else:
        best = ok[0]
        if len(ok) > 1:
            a, b = _scores_text(total[best], total[ok[1]])
            line = f"recommended: {best} — highest score {a} among runs meeting SLOs and capacity (next: {ok[1]} {b})"
        else:
            line = f"recommended: {best} — score {_scores_text(total[best])[0]}, the only run meeting SLOs and capacity"
        line += _cost_clause(summaries, names, ok, total) + "".join(f"; {e}" for e in excluded) + "."
    if not any(_get(s, "service", "slo_targets_defined") for s in summaries):
        line += (" None of these runs sets latency targets (service_classes[].slo): meeting the SLO means only "
                 "being answered.")
    return line


def passing_runs(card: pd.DataFrame, names: list[str]) -> list[str]:
    """The runs that pass the capacity gate, best-ranked first: the first is the recommendation."""
    return sorted((n for n in names if card.loc[GATE, n]), key=lambda n: card.loc["rank", n])


def _cost_clause(summaries: list[dict[str, Any]], names: list[str], ok: list[str], total: dict[str, float]) -> str:
    """"; it costs $0.09667 per 1M tokens, the least of them" or "...; tco-onprem is cheaper at $0.09485 but
    scores 7.7"."""
    unit, values = cost_basis(summaries)
    cost = dict(zip(names, values))
    best = ok[0]
    if unit is None or cost[best] is None:
        return "; no cost to compare"
    priced = [n for n in ok if cost[n] is not None]
    cheapest = min(priced, key=lambda n: cost[n])
    text = f"; it costs {format_usd(cost[best])} per {unit}"
    if cheapest == best or cost[cheapest] >= cost[best]:
        return text + (", the least of them" if len(priced) > 1 else "")
    _, b = _scores_text(total[best], total[cheapest])
    return text + f"; {cheapest} is cheaper at {format_usd(cost[cheapest])} but scores {b}"


def compare_panels(summaries: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    """(title with unit, one value per run): cost per unit, TCO over the horizon, tail latency (both charts)."""
    return [
        ("USD per successful task" if any(_get(s, "finance", "unit_economics", "usd_per_successful_task") for s in summaries)
         else "USD per 1M tokens",
         [(_get(s, "finance", "unit_economics", "usd_per_successful_task")
           or _get(s, "finance", "unit_economics", "usd_per_1m_tokens") or 0.0) for s in summaries]),
        ("TCO over horizon (USD)", [_get(s, "finance", "tco", "tco_usd") or 0.0 for s in summaries]),
        ("TTFT p99 (ms)", [(_get(s, "latency_s", "ttft", "p99") or 0.0) * 1000 for s in summaries]),
        ("E2E p99 (ms)", [(_get(s, "latency_s", "e2e", "p99") or 0.0) * 1000 for s in summaries]),
    ]


def compare_figure(summaries: list[dict[str, Any]], names: list[str]) -> Any:
    """The same panels as compare.png, interactive (hover shows each run's value; zoom, pan) for compare.html."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = compare_panels(summaries)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels])
    for col, (title, values) in enumerate(panels, start=1):
        money = "USD" in title
        fig.add_trace(go.Bar(x=names, y=values, name=title, marker_color=[f"hsl({(i * 67) % 360},55%,50%)"
                                                                          for i in range(len(names))],
                             hovertemplate="%{x}: " + ("$%{y:,.4g}" if money else "%{y:,.4g}") + "<extra>" + title
                             + "</extra>", showlegend=False), row=1, col=col)
        if money:
            fig.update_yaxes(tickprefix="$", row=1, col=col)
    fig.update_layout(height=420, title="Cost and tail latency per run")
    return fig


def compare_plot(summaries: list[dict[str, Any]], names: list[str], path: Any) -> Any:
    """Bars: cost per unit, TCO over the horizon, and tail latency, one bar per run."""
    from simfactory.report.backend import use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    panels = compare_panels(summaries)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, values) in zip(axes, panels):
        ax.bar(range(len(values)), values, color=[f"C{i}" for i in range(len(values))])
        ax.set_xticks(range(len(values)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        if "USD" in title:
            usd_axis(ax.yaxis)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_comparison(summaries: list[dict[str, Any]], out_dir: Path,
                     run_dirs: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """compare.md, compare.html (self-contained: comparison, scorecard, own vs rent, an interactive chart, links
    to each run's report (`run_dirs`: their folders, relative to out_dir), every run's finance tables),
    compare.csv, scorecard.csv, compare.xlsx (the same tables, a sheet each; money cells are numbers with a
    currency format) and compare.png."""
    df = comparison_frame(summaries)
    names = [str(c) for c in df.columns]
    card = scorecard(summaries, names)
    line = recommendation(summaries, names, card)
    verdicts = verdict_lines(summaries, names)
    note = scorecard_note(summaries)
    out_dir.mkdir(parents=True, exist_ok=True)
    compare_plot(summaries, names, out_dir / "compare.png")
    gap = forecast_gap_line(summaries, names)
    md = ["# simfactory compare", "", line, "", *([f"Note: {gap}", ""] if gap else []), to_markdown(df),
          "## Scorecard (0-10, higher is better)", "", to_markdown(card), note, ""]
    if verdicts:
        md += ["## Own vs rent (decision model, per pool)", "", *(f"- {v}" for v in verdicts), ""]
    links = [f"- [{n}]({d}/report.html)" for n, d in zip(names, run_dirs or [])]
    (out_dir / "compare.md").write_text("\n".join(md + ["![compare](compare.png)", ""] + (
        ["## Runs", "", *links, ""] if links else [])))
    df.to_csv(out_dir / "compare.csv")
    card.to_csv(out_dir / "scorecard.csv")
    per_run = [(i + 1, name, finance_tables(s)) for i, (name, s) in enumerate(zip(names, summaries)) if "finance" in s]
    _write_xlsx(out_dir / "compare.xlsx", df, card, per_run)
    page = HtmlReport("simfactory compare: " + " vs ".join(names))
    page.paragraph(line, "lead")
    if gap:
        page.paragraph(f"Note: {gap}")
    if run_dirs:
        page.heading("Runs")
        page.links([(f"{name}: report", f"{d}/report.html") for name, d in zip(names, run_dirs)])
    page.heading("Side by side")
    page.table(df, index=True)
    page.heading("Scorecard (0-10, higher is better)")
    page.table(card, index=True, note=note)
    if verdicts:
        page.heading("Own vs rent (decision model, per pool)")
        for v in verdicts:
            page.paragraph(v)
    page.figure(compare_figure(summaries, names))
    for i, name, tables in per_run:
        page.heading(f"{i}. {name}: finance")
        for t in tables:
            page.table(t.frame, t.title, t.note)
    page.write(out_dir / "compare.html")
    return df, card, line


def _write_xlsx(path: Path, df: pd.DataFrame, card: pd.DataFrame, per_run: list[tuple[int, str, list[Any]]]) -> None:
    """The comparison, the scorecard and each run's finance tables, a sheet each; money cells keep their number
    and get a currency format (simfactory.report.money)."""
    with pd.ExcelWriter(path, engine="openpyxl") as w:
        df.to_excel(w, sheet_name="comparison")
        finish_sheet(w.sheets["comparison"], df, index=True)
        card.to_excel(w, sheet_name="scorecard")
        finish_sheet(w.sheets["scorecard"], card, index=True)
        for i, _, tables in per_run:
            for t in tables:
                sheet = f"{i}-{t.key}"[:31]
                t.frame.to_excel(w, sheet_name=sheet, index=False)
                finish_sheet(w.sheets[sheet], t.frame)
