"""`simfactory compare`: several scenarios simulated in turn, their headline metrics side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from simfactory.cli.common import (
    EXIT_INPUT_ERROR, JSON_HELP, emit_json, err, input_errors, json_target, out, print_table, progress_bar,
)
from simfactory.config.limits import MAX_REPLICATIONS, MAX_SEED

MAX_COMPARE_SCENARIOS = 50  # each is simulated in turn and kept in one table: more is a sweep


def compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Two or more scenario YAML files.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/compare"),
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Override every scenario's seed.")] = None,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no tables; the files only.")] = False,
    replications: Annotated[int, typer.Option(
        "--replications", "-R", min=1, max=MAX_REPLICATIONS,
        help="Run every scenario N times on common random numbers (replication r on seed base + r in all of them; "
             "base: --seed, else the first scenario's seed): mean and 95% t interval per metric, and each run "
             "against the first by paired differences, significant or not.")] = 1,
) -> None:
    """Run several scenarios and show their headline metrics side by side (compare.md, compare.csv), a weighted
    scorecard and a recommendation.

    The scorecard rates each run 0-10 on performance, cost (the cheapest per successful task, else per 1M tokens,
    scores 10), utilization, data movement, operational simplicity and lock-in freedom; cost weighs 0.3 and the
    first scenario's finance.scorecard_weights share the rest. Capacity is a gate: a run that misses its SLOs or
    whose load (demand / provisioned) exceeds 1 scores 0 there and is not recommended. The recommendation is the
    top-ranked run that passes. With -R N the tables are replication 0's; ci.csv, significance.csv and a verdict
    line say which differences are more than noise.

    Example: simfactory compare scenarios/tco-cloud.yaml scenarios/tco-onprem.yaml scenarios/tco-hybrid.yaml
    """
    from simfactory.api import prepare
    from simfactory.outputs import output_folder
    from simfactory.report.compare import forecast_gap_line, verdict_lines

    if len(scenarios) < 2:
        err.print("[red]error:[/red] compare needs at least two scenario files", markup=True)
        raise typer.Exit(EXIT_INPUT_ERROR)
    if len(scenarios) > MAX_COMPARE_SCENARIOS:
        err.print(f"[red]error:[/red] SCENARIOS: {len(scenarios)} files; compare takes at most {MAX_COMPARE_SCENARIOS} "
                  "(use `simfactory sweep` for more)", markup=True)
        raise typer.Exit(EXIT_INPUT_ERROR)
    json_target(out_json, inputs=list(scenarios), out_dir=out_dir)
    with input_errors():
        resolved = [prepare(p) for p in scenarios]
    if replications > 1 and seed is None:
        seed = resolved[0].scenario.seed  # one base for all: replication r shares its seed across scenarios
    done: dict[str, Any] = {}
    with input_errors(), output_folder(out_dir, "compare") as folder:  # checked before anything is simulated
        run_dirs = [f"{i + 1}-{rs.scenario.name}" for i, rs in enumerate(resolved)]
        folder.replace(lambda tmp: done.update(_simulate_all(resolved, run_dirs, seed, replications, quiet, tmp)))
    df, card, line = done["tables"]
    emit_json(out_json, {"recommendation": line, "runs": done["names"],
                         "comparison": df.to_dict(orient="index"), "scorecard": card.to_dict(orient="index"),
                         **({"replications": _replications_json(done)} if replications > 1 else {})})
    if quiet or out_json == "-":
        return
    _print_tables(df, card)
    out.print(line, highlight=False, markup=False)
    gap = forecast_gap_line(done["summaries"], done["names"])
    if gap:
        out.print(f"note: {gap}", highlight=False, markup=False, soft_wrap=True)
    verdicts = verdict_lines(done["summaries"], done["names"])
    if verdicts:
        out.print("own vs rent (decision model, per pool):", highlight=False)
        for v in verdicts:
            out.print(f"  {v}", highlight=False, markup=False)
    _print_replications(done)
    out.print(f"wrote {out_dir}/ (compare.html, compare.md, compare.csv, scorecard.csv, compare.xlsx, compare.png, "
              + ("replications.csv, ci.csv, significance.csv, " if replications > 1 else "")
              + "one run directory per scenario with its report.html)", highlight=False)


def _simulate_all(resolved: list[Any], run_dirs: list[str], seed: int | None, replications: int, quiet: bool,
                  tmp: Path) -> dict[str, Any]:
    """Each scenario simulated, replication 0 written as its run folder (the others kept as headline metrics),
    then the comparison and, with -R > 1, the replicate tables, into the folder being built."""
    from simfactory.metrics.summary import compute_metrics
    from simfactory.outputs import build_subfolder
    from simfactory.plan.replicate import paired_comparisons, replicate, replication_progress
    from simfactory.report.compare import write_comparison
    from simfactory.report.replications import recommendation_verdict, write_compare_replications
    from simfactory.sim.run import simulate

    summaries, runs = [], []
    for rs, run_dir in zip(resolved, run_dirs):
        label = f"simulating {rs.scenario.name}" + (f" ({replications} runs)" if replications > 1 else "")
        with progress_bar(quiet, label) as progress:
            m = compute_metrics(simulate(rs, seed=seed, progress=replication_progress(progress, 0, replications)))
            rep = replicate(rs, replications, seed, m.summary, progress) if replications > 1 else None
        build_subfolder(tmp, run_dir, lambda sub: _run_folder(m, sub, rep), "run")
        summaries.append(m.summary)
        runs.append(rep)
    df, card, line = write_comparison(summaries, tmp, run_dirs)
    names = [str(c) for c in df.columns]
    done: dict[str, Any] = {"summaries": summaries, "tables": (df, card, line), "names": names, "runs": []}
    if replications > 1:
        rows = paired_comparisons(runs, names)
        write_compare_replications(runs, names, rows, tmp)
        done.update(runs=runs, rows=rows, verdict=recommendation_verdict(summaries, names, card, runs))
    return done


def _replications_json(done: dict[str, Any]) -> dict[str, Any]:
    """compare --json's replications block: each run's intervals, the paired differences and the verdict."""
    from simfactory.report.replications import replications_json

    return {"runs": {n: replications_json(r) for n, r in zip(done["names"], done["runs"])},
            "significance": done["rows"], "verdict": done["verdict"]}


def _print_replications(done: dict[str, Any]) -> None:
    """-R N: every run's mean ± 95% interval per metric, each run against the first, and the verdict line."""
    from simfactory.report.replications import ci_rows, significance_rows

    runs, names = done["runs"], done["names"]
    if not runs:
        return
    seeds = runs[0].seeds
    for rows, title, columns in (
        (ci_rows(runs), f"{len(seeds)} replications (seeds {seeds[0]}..{seeds[-1]}): mean ± 95% t interval", names),
        (significance_rows(done["rows"], names), f"against {names[0]}: paired difference ± 95% t interval "
         "(relative to its mean)", [f"{n} vs {names[0]}" for n in names[1:]]),
    ):
        table = Table(title=escape(title))
        table.add_column("metric")
        for col in columns:
            table.add_column(escape(col), justify="right")
        for label, cells in rows:
            table.add_row(escape(label), *(escape(c) for c in cells))
        print_table(table)
    if done["verdict"]:
        out.print(done["verdict"], highlight=False, markup=False)


def _run_folder(m: Any, sub: Path, rep: Any = None) -> None:
    """A compared run's folder: its files as `run` writes them (no PNG plots, replications.csv and ci.csv with
    -R > 1) and its report.html."""
    from simfactory.report.replications import write_replications
    from simfactory.report.run_report import write_report_html
    from simfactory.report.writer import build_run

    build_run(m, sub, plots=False)
    if rep is not None:
        write_replications(rep, sub)
    write_report_html(sub)


def _print_tables(df: Any, card: Any) -> None:
    """The side-by-side table and the scorecard, money as $1,234 (simfactory.report.money)."""
    from simfactory.report.compare import formatted_rows

    for frame, title in ((df, "side by side"), (card, "scorecard (0-10, higher is better; capacity is a gate)")):
        table = Table(title=title)
        table.add_column("metric")
        for col in frame.columns:
            table.add_column(escape(str(col)), justify="right")
        for label, cells in formatted_rows(frame):
            table.add_row(escape(label), *(escape(c) for c in cells))
        print_table(table)


def register(app: typer.Typer) -> None:
    """Add `compare` to the top-level app."""
    app.command()(compare)
