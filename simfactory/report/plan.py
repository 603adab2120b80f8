"""Write a plan's results: ranked candidates, every evaluated point, the Pareto front and its plot, and the
lines that say what decided the answer (no candidate met, the confidence interval decided the size, the max
rate did or did not hold on a longer run)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from simfactory.report.backend import use_headless_backend

use_headless_backend()
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from simfactory.plan.search import (  # noqa: E402
    Evaluation,
    PlanResult,
    ci_decided,
    closest_miss,
    pareto_front,
    shortfall,
)
from simfactory.plan.slo import SloTarget  # noqa: E402
from simfactory.report.finance import frame_markdown, save_chart  # noqa: E402
from simfactory.report.markdown import forecast_check_lines  # noqa: E402
from simfactory.report.money import format_usd  # noqa: E402
from simfactory.outputs import json_finite  # noqa: E402


def evaluation_row(e: Any, fleet: dict[str, int] | None = None) -> dict[str, Any]:
    """One simulated point of plan_points.csv: candidate, (a joint plan's replicas per deployment,) replicas, rate,
    whether it met the SLOs, its unit costs and each target's mean and 95% half-width."""
    row: dict[str, Any] = {"candidate": e.candidate}
    row.update({f"replicas {d}": n for d, n in (fleet or {}).items()})
    row.update({"replicas": e.replicas, "rate_per_s": e.rate_per_s, "meets_slos": e.met,
                "usd_per_hour": e.usd_per_hour, "usd_per_1m_tokens": e.usd_per_1m_tokens,
                "usd_per_successful_task": e.usd_per_successful_task})
    for k, v in e.slo.items():
        row[f"{k} mean"] = v["mean"]
        row[f"{k} ci95"] = v["ci95"]
    return row


def evaluations_frame(result: PlanResult) -> pd.DataFrame:
    return pd.DataFrame([evaluation_row(e) for e in result.evaluations])


def ranked_frame(result: PlanResult) -> pd.DataFrame:
    rows = []
    for c in result.candidates:
        b = c.best
        rows.append({"candidate": c.candidate, "lower bound (replicas)": c.lower_bound,
                     "min replicas meeting SLOs": c.min_replicas, "USD/hour": b.usd_per_hour if b else None,
                     "USD per 1M tokens": b.usd_per_1m_tokens if b else None,
                     "simulated points": len(c.evaluations),
                     "replica counts simulated": ", ".join(str(e.replicas) for e in c.evaluations),
                     **({f"{k} (mean ± ci95)": f"{v['mean']:.4g} ± {v['ci95']:.2g}" for k, v in b.slo.items()} if b else {})})
    df = pd.DataFrame(rows)
    return df.sort_values("USD/hour", na_position="last", kind="stable").reset_index(drop=True)


def _unit(t: SloTarget) -> str:
    return "" if t.metric == "slo_attainment" else " s"


def misses_text(targets: list[SloTarget], e: Evaluation, bound: bool = True) -> str:
    """The targets a point missed, each with its value (its 95% bound when `bound`) against the target."""
    parts = []
    for t in targets:
        d = e.slo.get(t.label) or {}
        if d.get("met"):
            continue
        mean, half = d.get("mean"), d.get("ci95") or 0.0
        if mean is None:
            parts.append(f"{t.label} has no value")
        elif not math.isfinite(shortfall(t, d)):
            parts.append(f"{t.label} is unbounded (more requests lost than {t.stat or 'it'} leaves out)")
        else:
            v = (mean + half if t.op == "<" else mean - half) if bound else mean
            miss = abs(v - t.value)
            what = f"95% bound {v:.3g}{_unit(t)}" if bound and half else f"{v:.3g}{_unit(t)}"
            parts.append(f"{t.label} by {miss:.3g}{_unit(t)} ({what} {'>' if t.op == '<' else '<'} "
                         f"{t.value:g}{_unit(t)})")
    return "; ".join(parts) or "no target"


def no_candidate_line(result: PlanResult, slo: str) -> str:
    head = f"No candidate met {slo} at {result.target_rate_per_s:g}/s"
    if result.max_replicas is not None:
        head += f" with up to {result.max_replicas:,} replicas"
    e = closest_miss(result)
    if e is None:
        return (f"{head}: every candidate's analytic lower bound (at least "
                f"{min(c.lower_bound for c in result.candidates):,} replicas) is above max_replicas; raise it.")
    return (f"{head}: closest {e.candidate} with {e.replicas} replicas ({format_usd(e.usd_per_hour)}/hour) missed "
            f"{misses_text(result.targets, e)}.")


def max_rate_clause(result: PlanResult) -> str:
    bound = "at least" if result.max_rate_is_lower_bound else "up to"
    claim = f"{bound} {result.max_rate_per_s:.3g}/s (headroom {result.headroom:.0%})"
    v, h = result.validation, result.validation_horizon_s
    if v is None:
        return f"; on the plan's runs it sustains {claim}, not validated: a longer run would pass the input limits"
    if v.met:
        return f"; it sustains {claim}, validated on a {h:,.0f} s run at that rate"
    return (f"; its max sustainable rate is not validated on a {h:,.0f} s run: at {result.max_rate_per_s:.3g}/s, "
            f"which the plan's runs sustained, it missed {misses_text(result.targets, v, bound=False)}; do not count "
            f"on that rate (a longer sim.horizon_s plans on longer runs)")


def slo_text(targets: list[SloTarget]) -> str:
    return ", ".join(f"{t.label}{t.op}{t.value:g}{'' if t.metric == 'slo_attainment' else 's'}" for t in targets)


def summary_line(result: PlanResult) -> str:
    slo = slo_text(result.targets)
    c = result.chosen
    if c is None or c.best is None:
        return no_candidate_line(result, slo)
    line = (f"Cheapest fleet meeting {slo} (95% CI) at {result.target_rate_per_s:g}/s: {c.candidate} with "
            f"{c.min_replicas} replicas, {format_usd(c.best.usd_per_hour)}/hour")
    if result.max_rate_per_s is not None:
        line += max_rate_clause(result)
    return line + "."


def _and(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


# the fidelity suites' metrics that are evidence for an SLO on a plan metric (fidelity_record.METRIC_LABELS)
SLO_EVIDENCE = {"ttft": ("ttft_s", "ttft_median_s"), "tpot": ("itl_s", "itl_median_s")}


def slo_evidence(a: dict[str, Any], targets: list[Any]) -> dict[str, Any] | None:
    """The most optimistic of the kind's per-metric figures (forecast_accuracy.by_metric) on the metrics the plan's
    SLOs bound (TTFT, TPOT), where it leaned optimistic; else None."""
    rows = [r for t in targets for m in SLO_EVIDENCE.get(t.metric, ()) if (r := (a.get("by_metric") or {}).get(m))]
    worst = max(rows, key=lambda r: r["optimism"], default=None)
    return worst if worst is not None and worst["leaning"] == "optimistic" else None


def own_model_row(a: dict[str, Any]) -> dict[str, Any] | None:
    """The deployment's model's own points on its own engine preset (forecast_accuracy.of_model, where that row is
    the preset's: a suite ran the model on it), else None: the most specific evidence the record has for it."""
    m = a.get("of_model")
    return m if m and m.get("own_preset") else None


def forecast_notes(result: PlanResult) -> list[str]:
    """What the winner's size rests on: how far forecasts of its deployments' kind (step-time source, engine
    preset; the model's own points on that preset where a suite ran it there) have been from published measurements,
    overall and on the metrics its SLOs bound; an optimistic figure
    says what it means for the plan: within the headroom, a margin to keep; past it (or with no headroom figure), a
    fleet that may be too small."""
    def advice(a: dict[str, Any]) -> str:
        slo = slo_evidence(a, result.targets)
        own = own_model_row(a)  # the model's own points on its preset outrank the preset's other models'
        base = own or a
        overall = base["optimism"] if base["leaning"] == "optimistic" else None
        if overall is None and slo is None:
            return ""
        if slo is not None and (overall is None or slo["optimism"] > overall):
            x = slo["optimism"]
            fast = (f"{slo['label']} forecasts of this kind (every preset) have run {x:.0%} faster than measured on "
                    f"average ({slo['points']:,} points), and the SLOs bound it")
        elif own is not None:
            x = own["optimism"]
            fast = (f"this model's forecasts on this kind and preset have run {x:.0%} faster than measured on average "
                    f"({own['points']:,} points)")
        else:
            x = a["optimism"]
            fast = f"forecasts of this kind have run {x:.0%} faster than measured on average"
        h = result.headroom
        if h is None:
            return (f"{fast}, and this plan has no headroom figure (--no-max-rate or no winner's load search): the "
                    f"fleet may be too small at the target rate; plan for a rate about {x:.0%} higher")
        if h < x:
            return (f"{fast}, more than the winner's headroom ({h:.0%}): the fleet may miss its SLOs at the target "
                    f"rate; plan for a rate about {x:.0%} higher")
        return f"{fast}: keep that much of the headroom ({h:.0%}) for it"

    return forecast_check_lines([(a["deployment"], a) for a in result.forecast], advice)


def plan_notes(result: PlanResult) -> list[str]:
    """What decided the answer besides the SLOs themselves: the confidence interval (the winner's size), an
    analytic lower bound that simulation refuted."""
    notes = []
    c = result.chosen
    decided = ci_decided(c, result.targets) if c is not None else None
    if decided is not None:
        e, labels = decided
        runs = f"{result.replications} runs" if result.replications != 1 else "1 run"
        notes.append(f"the confidence interval decided the size: {e.replicas} replicas meet {_and(labels)} on the "
                     f"mean of {runs} but not at 95% confidence; more replications (-R) may confirm the smaller size")
    for cp in result.candidates:
        b = cp.below_bound
        if b is not None and b.met:
            notes.append(f"{cp.candidate}: {b.replicas} replicas met the SLOs below the analytic lower bound of "
                         f"{cp.lower_bound}; the bound was too high and the search went beneath it")
    return notes + forecast_notes(result)


def pareto_panels(result: PlanResult) -> list[dict[str, Any]]:
    """What pareto.png draws, one panel per target: every simulated point's cost and mean for that target, with
    `met` true only when the point met EVERY target (a point failing another target is drawn as failing), and
    the cost vs that target's Pareto front (latency targets)."""
    panels = []
    for t in result.targets:
        pts = [{"candidate": e.candidate, "replicas": e.replicas, "usd_per_hour": e.usd_per_hour,
                "mean": e.slo[t.label]["mean"], "met": e.met} for e in result.evaluations
               if (e.slo.get(t.label) or {}).get("mean") is not None and math.isfinite(e.slo[t.label]["mean"])]
        front = pareto_front(result.evaluations, t.label) if t.op == "<" else []
        panels.append({"target": t, "points": pts,
                       "front": [(e.usd_per_hour, e.slo[t.label]["mean"]) for e in front
                                 if math.isfinite(e.slo[t.label]["mean"])]})
    return panels


def pareto_plot(result: PlanResult, path: Path) -> Path:
    panels = pareto_panels(result)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.6 * len(panels) + 0.8), squeeze=False)
    names = sorted({e.candidate for e in result.evaluations})
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    for ax, panel in zip(axes[:, 0], panels):
        t = panel["target"]
        for n in names:
            for met, marker, label in ((True, "o", f"{n} (meets every SLO)"), (False, "x", f"{n} (fails an SLO)")):
                pts = [p for p in panel["points"] if p["candidate"] == n and p["met"] is met]
                if pts:
                    ax.scatter([p["usd_per_hour"] for p in pts], [p["mean"] for p in pts], color=colors[n],
                               marker=marker, alpha=0.7, label=label)
        if panel["front"]:
            ax.plot(*zip(*panel["front"]), "k--", lw=1, label="Pareto front")
        ax.axhline(t.value, color="red", lw=1, label=f"target {t.label} {t.op} {t.value:g}")
        ax.set_xlabel("fleet cost (USD/hour)")
        ax.set_ylabel(f"{t.label}{' (s)' if t.metric != 'slo_attainment' else ''}, mean")
        if t.metric != "slo_attainment" and any(p["mean"] > 0 for p in panel["points"]):
            ax.set_yscale("log")
        ax.set_title(f"Cost vs {t.label} at {result.target_rate_per_s:g}/s (x: fails any SLO)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return save_chart(fig, axes[0, 0], path)


def slo_vs_load_plot(result: PlanResult, path: Path) -> Path:
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
    return save_chart(fig, ax, path)


def miss_and_load_fields(result: Any, met: bool, front: list[Any]) -> dict[str, Any]:
    """plan.json's fields a single and a joint plan share: the closest miss (when nothing met the SLOs), the
    sustainable load with its check, and the latency front."""
    closest = closest_miss(result) if not met else None
    v = result.validation
    return {
        "closest": dataclasses.asdict(closest) if closest is not None else None,
        "max_rate_per_s": result.max_rate_per_s,
        "max_rate_is_lower_bound": result.max_rate_is_lower_bound,
        "headroom": result.headroom,
        "max_rate_validation": {"horizon_s": result.validation_horizon_s, "met": v.met, "slo": v.slo} if v else None,
        "pareto": [dataclasses.asdict(e) for e in front],
    }


def plan_doc(result: PlanResult, front: list[Evaluation]) -> dict[str, Any]:
    """plan.json's content (before non-finite numbers become null)."""
    decided = ci_decided(result.chosen, result.targets) if result.chosen is not None else None
    return {
        "target_rate_per_s": result.target_rate_per_s,
        "slos": [dataclasses.asdict(t) for t in result.targets],
        "met": result.chosen is not None,
        "chosen": result.chosen.candidate if result.chosen else None,
        "chosen_replicas": result.chosen.min_replicas if result.chosen else None,
        "replications": result.replications,
        "ci_decided": {"replicas": decided[0].replicas, "targets": decided[1]} if decided else None,
        **miss_and_load_fields(result, result.chosen is not None, front),
        "candidates": [{"candidate": c.candidate, "overrides": c.overrides, "lower_bound": c.lower_bound,
                        "min_replicas": c.min_replicas, "simulated_replicas": [e.replicas for e in c.evaluations],
                        "below_bound_met": c.below_bound.met if c.below_bound else None}
                       for c in result.candidates],
        "notes": plan_notes(result),
        "forecast_accuracy": result.forecast,
    }


def latency_front(result: Any) -> tuple[str | None, list[Any]]:
    """The first latency target's label and the cost vs that latency Pareto front of every evaluated point."""
    key = next((t.label for t in result.targets if t.op == "<"), None)
    return key, (pareto_front(result.evaluations, key) if key else [])


def write_plan_files(result: Any, out_dir: Path, ranked: Any, points: Any, doc: dict[str, Any]) -> list[Path]:
    """plan.csv, plan_points.csv, plan.json and the Pareto and SLO-vs-load plots (single or joint plans)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ranked.to_csv(out_dir / "plan.csv", index=False)
    points.to_csv(out_dir / "plan_points.csv", index=False)
    (out_dir / "plan.json").write_text(json.dumps(json_finite(doc), indent=2, allow_nan=False) + "\n")
    paths = [out_dir / "plan.csv", out_dir / "plan_points.csv", out_dir / "plan.json"]
    if result.targets and len(points):
        paths.append(pareto_plot(result, out_dir / "pareto.png"))
    if result.load_curve:
        paths.append(slo_vs_load_plot(result, out_dir / "slo_vs_load.png"))
    return paths


def write_plan(result: PlanResult, out_dir: Path) -> list[Path]:
    ranked, evals = ranked_frame(result), evaluations_frame(result)
    key, front = latency_front(result)
    doc = plan_doc(result, front)
    paths = write_plan_files(result, out_dir, ranked, evals, doc)
    md = ["# simfactory plan", "", summary_line(result), "", *(f"- Note: {n}" for n in doc["notes"]),
          "", "## Candidates (cheapest first)", "",
          *frame_markdown(ranked), "", "## Every simulated point", "", *frame_markdown(evals), ""]
    if len(evals):
        md += ["![Pareto](pareto.png)", ""]
    if result.load_curve:
        md += ["![SLO vs load](slo_vs_load.png)", ""]
    (out_dir / "plan.md").write_text("\n".join(md))
    return paths + [out_dir / "plan.md"]
