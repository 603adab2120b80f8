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
from simfactory.config.limits import MAX_SEED

MAX_COMPARE_SCENARIOS = 50  # each is simulated in turn and kept in one table: more is a sweep


def compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Two or more scenario YAML files.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/compare"),
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Override every scenario's seed.")] = None,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no tables; the files only.")] = False,
) -> None:
    """Run several scenarios and show their headline metrics side by side (compare.md, compare.csv), a weighted
    scorecard and a recommendation.

    The scorecard rates each run 0-10 on performance, cost (the cheapest per successful task, else per 1M tokens,
    scores 10), utilization, data movement, operational simplicity and lock-in freedom; cost weighs 0.3 and the
    first scenario's finance.scorecard_weights share the rest. Capacity is a gate: a run that misses its SLOs or
    whose load (demand / provisioned) exceeds 1 scores 0 there and is not recommended. The recommendation is the
    top-ranked run that passes.

    Example: simfactory compare scenarios/tco-cloud.yaml scenarios/tco-onprem.yaml scenarios/tco-hybrid.yaml
    """
    from simfactory.api import prepare
    from simfactory.metrics.summary import compute_metrics
    from simfactory.outputs import build_subfolder, output_folder
    from simfactory.report.compare import verdict_lines, write_comparison
    from simfactory.sim.run import simulate

    if len(scenarios) < 2:
        err.print("[red]error:[/red] compare needs at least two scenario files", markup=True)
        raise typer.Exit(EXIT_INPUT_ERROR)
    if len(scenarios) > MAX_COMPARE_SCENARIOS:
        err.print(f"[red]error:[/red] SCENARIOS: {len(scenarios)} files; compare takes at most {MAX_COMPARE_SCENARIOS} "
                  "(use `simfactory sweep` for more)", markup=True)
        raise typer.Exit(EXIT_INPUT_ERROR)
    json_target(out_json)
    with input_errors():
        resolved = [prepare(p) for p in scenarios]
    with input_errors(), output_folder(out_dir, "compare") as folder:  # checked before anything is simulated
        summaries = []
        run_dirs = [f"{i + 1}-{rs.scenario.name}" for i, rs in enumerate(resolved)]

        def build(tmp: Path) -> None:
            for i, rs in enumerate(resolved):
                with progress_bar(quiet, f"simulating {rs.scenario.name}") as progress:
                    result = simulate(rs, seed=seed, progress=progress)
                m = compute_metrics(result)
                build_subfolder(tmp, run_dirs[i], lambda sub: _run_folder(m, sub), "run")
                summaries.append(m.summary)
            tables.append(write_comparison(summaries, tmp, run_dirs))

        tables: list = []
        folder.replace(build)
    df, card, line = tables[0]
    emit_json(out_json, {"recommendation": line, "runs": [str(c) for c in df.columns],
                         "comparison": df.to_dict(orient="index"), "scorecard": card.to_dict(orient="index")})
    if quiet or out_json == "-":
        return
    _print_tables(df, card)
    out.print(line, highlight=False, markup=False)
    verdicts = verdict_lines(summaries, [str(c) for c in df.columns])
    if verdicts:
        out.print("own vs rent (decision model, per pool):", highlight=False)
        for v in verdicts:
            out.print(f"  {v}", highlight=False, markup=False)
    out.print(f"wrote {out_dir}/ (compare.html, compare.md, compare.csv, scorecard.csv, compare.xlsx, compare.png, one "
              "run directory per scenario with its report.html)", highlight=False)


def _run_folder(m: Any, sub: Path) -> None:
    """A compared run's folder: its files as `run` writes them (no PNG plots) and its report.html."""
    from simfactory.report.run_report import write_report_html
    from simfactory.report.writer import build_run

    build_run(m, sub, plots=False)
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
