"""Write a plan's results: ranked candidates, every evaluated point, the Pareto front and its plot."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from simfactory.plan.search import PlanResult, pareto_front  # noqa: E402
from simfactory.report.finance import frame_markdown, save_chart  # noqa: E402


def evaluations_frame(result: PlanResult) -> pd.DataFrame:
    rows = []
    for e in result.evaluations:
        row: dict[str, Any] = {"candidate": e.candidate, "replicas": e.replicas, "rate_per_s": e.rate_per_s,
                               "meets_slos": e.met, "usd_per_hour": e.usd_per_hour,
                               "usd_per_1m_tokens": e.usd_per_1m_tokens, "usd_per_successful_task": e.usd_per_successful_task}
        for k, v in e.slo.items():
            row[f"{k} mean"] = v["mean"]
            row[f"{k} ci95"] = v["ci95"]
        rows.append(row)
    return pd.DataFrame(rows)


def ranked_frame(result: PlanResult) -> pd.DataFrame:
    rows = []
    for c in result.candidates:
        b = c.best
        rows.append({"candidate": c.candidate, "lower bound (replicas)": c.lower_bound,
                     "min replicas meeting SLOs": c.min_replicas, "USD/hour": b.usd_per_hour if b else None,
                     "USD per 1M tokens": b.usd_per_1m_tokens if b else None,
                     "simulated points": len(c.evaluations),
                     **({f"{k} (mean ± ci95)": f"{v['mean']:.4g} ± {v['ci95']:.2g}" for k, v in b.slo.items()} if b else {})})
    df = pd.DataFrame(rows)
    return df.sort_values("USD/hour", na_position="last", kind="stable").reset_index(drop=True)


def summary_line(result: PlanResult) -> str:
    slo = ", ".join(f"{t.label}{t.op}{t.value:g}{'' if t.metric == 'slo_attainment' else 's'}" for t in result.targets)
    c = result.chosen
    if c is None or c.best is None:
        return f"No candidate meets {slo} at {result.target_rate_per_s:g}/s within the replica limit."
    line = (f"Cheapest fleet meeting {slo} (95% CI) at {result.target_rate_per_s:g}/s: {c.candidate} with "
            f"{c.min_replicas} replicas, USD {c.best.usd_per_hour:,.2f}/hour")
    if result.max_rate_per_s is not None:
        bound = "at least" if result.max_rate_is_lower_bound else "up to"
        line += f"; it sustains {bound} {result.max_rate_per_s:.3g}/s (headroom {result.headroom:.0%})"
    return line + "."


def _finite(x: Any) -> Any:
    """JSON has no inf or NaN: a statistic that has none (a percentile with requests lost, one replication's
    interval) is written as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_plan(result: PlanResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    ranked, evals = ranked_frame(result), evaluations_frame(result)
    ranked.to_csv(out_dir / "plan.csv", index=False)
    evals.to_csv(out_dir / "plan_points.csv", index=False)
    key = next((t.label for t in result.targets if t.op == "<"), None)
    front = pareto_front(result.evaluations, key) if key else []
    doc = {
        "target_rate_per_s": result.target_rate_per_s,
        "slos": [dataclasses.asdict(t) for t in result.targets],
        "chosen": result.chosen.candidate if result.chosen else None,
        "chosen_replicas": result.chosen.min_replicas if result.chosen else None,
        "max_rate_per_s": result.max_rate_per_s,
        "max_rate_is_lower_bound": result.max_rate_is_lower_bound,
        "headroom": result.headroom,
        "pareto": [dataclasses.asdict(e) for e in front],
        "candidates": [{"candidate": c.candidate, "overrides": c.overrides, "lower_bound": c.lower_bound,
                        "min_replicas": c.min_replicas} for c in result.candidates],
    }
    (out_dir / "plan.json").write_text(json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n")
    paths = [out_dir / "plan.csv", out_dir / "plan_points.csv", out_dir / "plan.json"]
    if key and len(evals):
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, g in evals.groupby("candidate"):
            ax.scatter(g["usd_per_hour"], g[f"{key} mean"], label=str(name), alpha=0.7)
        if front:
            ax.plot([e.usd_per_hour for e in front], [e.slo[key]["mean"] for e in front], "k--", lw=1, label="Pareto front")
        target = next(t for t in result.targets if t.label == key)
        ax.axhline(target.value, color="red", lw=1, label=f"target {key} < {target.value:g}")
        ax.set_xlabel("fleet cost (USD/hour)")
        ax.set_ylabel(f"{key} (s, mean over replications)")
        ax.set_yscale("log")
        ax.set_title(f"Cost vs {key} at {result.target_rate_per_s:g}/s")
        paths.append(save_chart(fig, ax, out_dir / "pareto.png"))
    if result.load_curve:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        rates = [e.rate_per_s for e in result.load_curve]
        for t in result.targets:
            means = [e.slo[t.label]["mean"] for e in result.load_curve]
            cis = [e.slo[t.label]["ci95"] for e in result.load_curve]
            line = ax.errorbar(rates, means, yerr=cis, marker="o", capsize=3, label=f"{t.label} (mean, 95% CI)")
            ax.axhline(t.value, color=line[0].get_color(), ls="--", lw=1, label=f"target {t.label} {t.op} {t.value:g}")
        ax.axvline(result.target_rate_per_s, color="grey", lw=1, label="target load")
        if result.max_rate_per_s:
            ax.axvline(result.max_rate_per_s, color="black", lw=1, ls=":", label="max sustainable load")
        ax.set_xlabel("offered load (per s)")
        ax.set_ylabel("SLO metric")
        ax.set_yscale("log")
        ax.set_title(f"{result.chosen.candidate if result.chosen else ''}: SLO metrics vs load")
        paths.append(save_chart(fig, ax, out_dir / "slo_vs_load.png"))
    md = ["# simfactory plan", "", summary_line(result), "", "## Candidates (cheapest first)", "",
          *frame_markdown(ranked), "", "## Every simulated point", "", *frame_markdown(evals), ""]
    if key:
        md += ["![Pareto](pareto.png)", ""]
    if result.load_curve:
        md += ["![SLO vs load](slo_vs_load.png)", ""]
    (out_dir / "plan.md").write_text("\n".join(md))
    return paths + [out_dir / "plan.md"]
