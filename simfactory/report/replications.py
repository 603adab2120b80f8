"""The replicate tables of `run -R N` and `compare -R N` (reads simfactory.plan.replicate's results only):
replications.csv (a row per replication: its seed and every headline metric), ci.csv (per metric: mean, sample
std, the 95% t half-width `ci95`, n), compare's significance.csv (each run against the first, paired by seed),
their terminal cells ("0.5535 ± 0.0312", "-12.3% ± 3.1%, significant") and the sentence that says whether the
recommendation's cost advantage is more than noise."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from simfactory.metrics.ci import CI_LEVEL
from simfactory.plan.replicate import Replications, paired
from simfactory.report.compare import COST_ROWS, cost_basis, passing_runs
from simfactory.report.money import format_cell, is_money

LEVEL_TEXT = f"{CI_LEVEL:.0%}"


def replications_frame(rep: Replications) -> pd.DataFrame:
    """One row per replication: replication, seed, then every headline metric."""
    return pd.DataFrame([{"replication": r, "seed": s, **v} for r, (s, v) in enumerate(zip(rep.seeds, rep.values))])


def ci_frame(rep: Replications) -> pd.DataFrame:
    """One row per headline metric: metric, mean, std, ci95, n."""
    rows = [{"metric": m, **d} for m, d in rep.ci().items()]
    return pd.DataFrame(rows, columns=["metric", "mean", "std", "ci95", "n"])


def write_replications(rep: Replications, folder: Path) -> None:
    """`run -R`'s replications.csv and ci.csv, into a folder being built (simfactory.outputs)."""
    replications_frame(rep).to_csv(folder / "replications.csv", index=False)
    ci_frame(rep).to_csv(folder / "ci.csv", index=False)


def write_compare_replications(runs: list[Replications], names: list[str], rows: list[dict[str, Any]],
                               folder: Path) -> None:
    """`compare -R`'s replications.csv and ci.csv (a `run` column first) and significance.csv (a row per run
    after the first and metric), into a folder being built."""
    pd.concat([replications_frame(r).assign(run=n) for n, r in zip(names, runs)]).pipe(_run_first).to_csv(
        folder / "replications.csv", index=False)
    pd.concat([ci_frame(r).assign(run=n) for n, r in zip(names, runs)]).pipe(_run_first).to_csv(
        folder / "ci.csv", index=False)
    pd.DataFrame(rows).to_csv(folder / "significance.csv", index=False)


def _run_first(df: pd.DataFrame) -> pd.DataFrame:
    return df[["run", *(c for c in df.columns if c != "run")]]


def mean_ci_text(metric: str, mean: float, ci95: float) -> str:
    """"0.5535 ± 0.0312" ("$0.0967 ± $0.0012" on a money row)."""
    money = is_money(metric)
    return f"{format_cell(mean, money)} ± {format_cell(ci95, money)}"


def ci_table_rows(rep: Replications) -> list[tuple[str, str, str]]:
    """`run -R`'s table: metric, mean, "± ci95" (money rows as $)."""
    rows = []
    for m, d in rep.ci().items():
        money = is_money(m)
        rows.append((m, format_cell(d["mean"], money), f"± {format_cell(d['ci95'], money)}"))
    return rows


def ci_rows(runs: list[Replications]) -> list[tuple[str, list[str]]]:
    """Each metric with one "mean ± ci95" cell per run (n/a where a run has no value)."""
    cis = [r.ci() for r in runs]
    metrics = list(dict.fromkeys(m for r in runs for m in r.metrics))
    return [(m, [mean_ci_text(m, c[m]["mean"], c[m]["ci95"]) if m in c else "n/a" for c in cis]) for m in metrics]


def difference_text(row: dict[str, Any]) -> str:
    """"-12.3% ± 3.1%, significant": the paired difference relative to the baseline's mean (absolute where
    that mean is 0)."""
    verdict = "significant" if row["significant"] else "not significant"
    if math.isfinite(row["relative"]):
        return f"{row['relative']:+.1%} ± {row['relative_ci95']:.1%}, {verdict}"
    money = is_money(row["metric"])
    sign = "+" if row["mean_diff"] >= 0 else "-"
    return f"{sign}{format_cell(abs(row['mean_diff']), money)} ± {format_cell(row['ci95'], money)}, {verdict}"


def significance_rows(rows: list[dict[str, Any]], names: list[str]) -> list[tuple[str, list[str]]]:
    """Each metric with one difference cell per run after the first (n/a where not compared)."""
    cells: dict[str, dict[str, str]] = {}
    for row in rows:
        cells.setdefault(row["metric"], {})[row["run"]] = difference_text(row)
    return [(m, [c.get(n, "n/a") for n in names[1:]]) for m, c in cells.items()]


def replications_json(rep: Replications) -> dict[str, Any]:
    """The --json block: seeds, each replication's metrics and the interval per metric."""
    return {"n": len(rep.seeds), "level": CI_LEVEL, "seeds": rep.seeds, "values": rep.values, "ci": rep.ci()}


def recommendation_verdict(summaries: list[dict[str, Any]], names: list[str], card: pd.DataFrame,
                           runs: list[Replications]) -> str | None:
    """Whether the recommended run's cost per unit (the scorecard's basis) differs from the first scenario's (the
    runner-up's when the first is recommended) by more than noise: the paired interval over the replications.
    None without a recommendation, a cost, or two replications."""
    ok = passing_runs(card, names)
    unit = cost_basis(summaries)[0]
    if not ok or unit is None:
        return None
    best = ok[0]
    other = names[0] if best != names[0] else (ok[1:] or sorted(names[1:], key=lambda n: card.loc["rank", n]))[0]
    index = {n: i for i, n in enumerate(names)}
    d = paired(runs[index[other]], runs[index[best]], COST_ROWS[unit])
    if d is None:
        return None
    head = f"cost per {unit}: {best} (recommended)"
    if d["mean_diff"] == 0 and d["ci95"] == 0:
        return f"{head} costs the same as {other} in all {d['n']} paired replications"
    way = "cheaper" if d["mean_diff"] < 0 else "more expensive"
    if math.isfinite(d["relative"]):
        amount = f"{abs(d['relative']):.1%} (± {d['relative_ci95']:.1%})"
    else:
        amount = f"{format_cell(abs(d['mean_diff']), True)} (± {format_cell(d['ci95'], True)})"
    verdict = (f"significant at {LEVEL_TEXT}" if d["significant"]
               else f"not significant at {LEVEL_TEXT} (the interval includes no difference)")
    return f"{head} is {amount} {way} than {other} over {d['n']} paired replications, {verdict}"
