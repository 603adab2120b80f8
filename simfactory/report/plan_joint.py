"""Write a joint plan (several deployments sized together): the fleet that won, one count per deployment; each
deployment's offered load and analytic start; every simulated fleet; the cost vs tail-latency Pareto front over
them; how many points the search simulated and how long it took. Same files as a one-deployment plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from simfactory.plan.joint import JointCandidatePlan, JointEvaluation, JointPlanResult
from simfactory.plan.search import closest_miss
from simfactory.report.finance import frame_markdown
from simfactory.report.money import format_usd
from simfactory.report.plan import (
    evaluation_row, forecast_notes, latency_front, max_rate_clause, miss_and_load_fields, misses_text, slo_text,
    write_plan_files,
)


def fleet_text(fleet: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in fleet.items())


def _fleet_of(e: Any) -> dict[str, int]:
    return e.fleet if isinstance(e, JointEvaluation) else {}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _effort(result: JointPlanResult) -> str:
    return (f"{_n(result.simulated_points, 'point')} simulated ({_n(result.sizing_points, 'fleet')} sized, "
            f"{_n(result.replications, 'run')} each) in {result.wall_s:.0f} s")


def joint_summary_line(result: JointPlanResult) -> str:
    slo = slo_text(result.targets)
    c = result.chosen
    if not isinstance(c, JointCandidatePlan) or c.best is None or c.fleet is None:
        head = f"No joint fleet of {', '.join(result.deployments)} met {slo} at {result.target_rate_per_s:g}/s"
        e = closest_miss(result)
        if e is None:
            return f"{head}: nothing was simulated ({_effort(result)})."
        return (f"{head}: closest {e.candidate} with {fleet_text(_fleet_of(e))} replicas "
                f"({format_usd(e.usd_per_hour)}/hour) missed {misses_text(result.targets, e)} ({_effort(result)}).")
    line = (f"Cheapest joint fleet meeting {slo} (95% CI) at {result.target_rate_per_s:g}/s: {c.candidate} with "
            f"{fleet_text(c.fleet)} replicas, {format_usd(c.best.usd_per_hour)}/hour")
    if result.max_rate_per_s is not None:
        line += max_rate_clause(result)
    return f"{line}; {_effort(result)}."


def joint_notes(result: JointPlanResult) -> list[str]:
    """What bounded the search: a budget or max_replicas reached, load the routing alone could not place (the
    analytic starts are then low), a fleet below the analytic lower bounds that met the SLOs."""
    notes = []
    for cp in result.candidates:
        if not isinstance(cp, JointCandidatePlan):
            continue
        if cp.stopped:
            notes.append(f"{cp.candidate}: the search {cp.stopped} (raise max_points or max_replicas in the space "
                         f"file to search on)")
        for why in dict.fromkeys(cp.unattributed):
            notes.append(f"{cp.candidate}: the analytic starts leave out load the routing alone does not place: "
                         f"{why}; the simulation counts it")
        lows = {s.deployment: s.lower_bound for s in cp.starts}
        below = [e for e in cp.evaluations if e.met and isinstance(e, JointEvaluation)
                 and any(e.fleet.get(d, 0) < b for d, b in lows.items())]
        if below:
            notes.append(f"{cp.candidate}: {fleet_text(below[0].fleet)} met the SLOs below an analytic lower bound "
                         f"({fleet_text(lows)}); the bound was too high and the search went beneath it")
    return notes + forecast_notes(result)


def joint_points_frame(result: JointPlanResult) -> pd.DataFrame:
    return pd.DataFrame([evaluation_row(e, _fleet_of(e)) for e in result.evaluations])


def joint_ranked_frame(result: JointPlanResult) -> pd.DataFrame:
    rows = []
    for c in result.candidates:
        if not isinstance(c, JointCandidatePlan):
            continue
        b = c.best
        row: dict[str, Any] = {"candidate": c.candidate}
        for s in c.starts:
            row[f"{s.deployment}: offered /s"] = round(s.rate_per_s, 4)
            row[f"{s.deployment}: lower bound"] = s.lower_bound
            row[f"{s.deployment}: start"] = s.start
            row[f"{s.deployment}: replicas"] = c.fleet.get(s.deployment) if c.fleet else None
        row.update({"USD/hour": b.usd_per_hour if b else None, "USD per 1M tokens": b.usd_per_1m_tokens if b else None,
                    "simulated fleets": len(c.evaluations)})
        if b:
            row.update({f"{k} (mean ± ci95)": f"{v['mean']:.4g} ± {v['ci95']:.2g}" for k, v in b.slo.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values("USD/hour", na_position="last", kind="stable").reset_index(drop=True)


def joint_plan_doc(result: JointPlanResult, front: list[Any]) -> dict[str, Any]:
    """plan.json's content for a joint plan (before non-finite numbers become null)."""
    c = result.chosen if isinstance(result.chosen, JointCandidatePlan) else None
    return {
        "joint": True,
        "deployments": result.deployments,
        "target_rate_per_s": result.target_rate_per_s,
        "slos": [dataclasses.asdict(t) for t in result.targets],
        "met": c is not None,
        "chosen": c.candidate if c else None,
        "chosen_fleet": c.fleet if c else None,
        "chosen_replicas": c.min_replicas if c else None,
        "usd_per_hour": c.best.usd_per_hour if c and c.best else None,
        "replications": result.replications,
        "simulated_points": result.simulated_points,
        "sizing_points": result.sizing_points,
        "wall_s": result.wall_s,
        "max_points": result.max_points,
        **miss_and_load_fields(result, c is not None, front),
        "candidates": [{"candidate": cp.candidate, "overrides": cp.overrides, "fleet": cp.fleet, "stopped": cp.stopped,
                        "starts": [dataclasses.asdict(s) for s in cp.starts],
                        "simulated_fleets": [_fleet_of(e) for e in cp.evaluations]}
                       for cp in result.candidates if isinstance(cp, JointCandidatePlan)],
        "notes": joint_notes(result),
        "forecast_accuracy": result.forecast,
    }


def write_joint_plan(result: JointPlanResult, out_dir: Path) -> list[Path]:
    ranked, points = joint_ranked_frame(result), joint_points_frame(result)
    key, front = latency_front(result)
    doc = joint_plan_doc(result, front)
    paths = write_plan_files(result, out_dir, ranked, points, doc)
    front_rows = [f"- {fleet_text(_fleet_of(e))}: {format_usd(e.usd_per_hour)}/hour, {key} "
                  f"{e.slo[key]['mean']:.4g} s{' (meets every SLO)' if e.met else ''}" for e in front]
    md = ["# simfactory plan (joint)", "", joint_summary_line(result), "", *(f"- Note: {n}" for n in doc["notes"]),
          "", "## Candidates (cheapest first)", "", *frame_markdown(ranked), ""]
    if front_rows:
        md += [f"## Pareto front (cost vs {key} mean)", "", *front_rows, ""]
    md += ["## Every simulated fleet", "", *frame_markdown(points), ""]
    if len(points):
        md += ["![Pareto](pareto.png)", ""]
    if result.load_curve:
        md += ["![SLO vs load](slo_vs_load.png)", ""]
    (out_dir / "plan.md").write_text("\n".join(md))
    return paths + [out_dir / "plan.md"]
