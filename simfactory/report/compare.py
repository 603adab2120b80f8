"""Side-by-side comparison of several runs' summaries (reads summary dicts only)."""

from __future__ import annotations

from typing import Any

import pandas as pd


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
    add("completed req/s", [_get(s, "throughput", "requests_per_s") for s in S])
    add("output tokens/s", [_get(s, "throughput", "output_tokens_per_s") for s in S])
    add("SLO attainment", [_get(s, "service", "slo_attainment") for s in S])
    add("goodput (req/s meeting SLO)", [_get(s, "service", "goodput_per_s") for s in S])
    add("escalation rate", [_first(_get(s, "service", "routes"), "escalation_rate") for s in S])
    add("prefix cache hit ratio", [_first_dep(s, "hit_ratio") for s in S])
    add("prefill tokens saved", [_first_dep(s, "prefill_tokens_saved") for s in S])
    add("network share of E2E", [_get(s, "network", "share_of_e2e") for s in S])
    add("egress USD (window)", [_get(s, "network", "egress_usd") for s in S])
    add("mean replica busy fraction", [_mean([r["busy_frac"] for r in s.get("replicas", [])]) for s in S])
    add("USD per hour", [_get(s, "cost", "usd_per_hour") for s in S])
    add("USD per 1M output tokens", [_get(s, "cost", "usd_per_1m_output_tokens") for s in S])
    add("USD per request", [_get(s, "cost", "usd_per_request") for s in S])
    add("tasks completed", [_first(s.get("tasks"), "outcome_rates", "completed") for s in S])
    add("task latency p50 (s)", [_first(s.get("tasks"), "latency_s", "p50") for s in S])
    add("task latency p99 (s)", [_first(s.get("tasks"), "latency_s", "p99") for s in S])
    add("USD per successful task", [_first(s.get("tasks"), "cost_usd", "per_successful_task_attributed") for s in S])
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
        per_task = _first(s.get("tasks"), "cost_usd", "per_successful_task_attributed")
        if per_task is not None:
            return per_task, "successful task"
        return _get(s, "cost", "usd_per_request"), "request"

    ok = [(n, s) for n, s in zip(names, summaries) if (_get(s, "service", "slo_attainment") or 0.0) >= SLO_TARGET]
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
