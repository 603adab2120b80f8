"""`simfactory compare`: several scenarios simulated in turn, their headline metrics side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from simfactory.cli.common import EXIT_INPUT_ERROR, err, input_errors, out, progress_bar
from simfactory.config.limits import MAX_SEED

MAX_COMPARE_SCENARIOS = 50  # each is simulated in turn and kept in one table: more is a sweep


def compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Two or more scenario YAML files.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/compare"),
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Override every scenario's seed.")] = None,
) -> None:
    """Run several scenarios and show their headline metrics side by side (compare.md, compare.csv).

    Example: simfactory compare scenarios/single-large.yaml scenarios/tiered-routing.yaml
    """
    from simfactory.api import prepare
    from simfactory.metrics.summary import compute_metrics
    from simfactory.outputs import build_subfolder, output_folder
    from simfactory.report.compare import write_comparison
    from simfactory.report.writer import build_run
    from simfactory.sim.run import simulate

    if len(scenarios) < 2:
        err.print("[red]error:[/red] compare needs at least two scenario files", markup=True)
        raise typer.Exit(EXIT_INPUT_ERROR)
    if len(scenarios) > MAX_COMPARE_SCENARIOS:
        err.print(f"[red]error:[/red] SCENARIOS: {len(scenarios)} files; compare takes at most {MAX_COMPARE_SCENARIOS} "
                  "(use `simfactory sweep` for more)", markup=True)
        raise typer.Exit(EXIT_INPUT_ERROR)
    with input_errors():
        resolved = [prepare(p) for p in scenarios]
    with input_errors(), output_folder(out_dir, "compare") as folder:  # checked before anything is simulated
        summaries = []

        def build(tmp: Path) -> None:
            for i, rs in enumerate(resolved):
                with progress_bar(False, f"simulating {rs.scenario.name}") as progress:
                    result = simulate(rs, seed=seed, progress=progress)
                m = compute_metrics(result)
                build_subfolder(tmp, f"{i + 1}-{rs.scenario.name}", lambda sub: build_run(m, sub, plots=False), "run")
                summaries.append(m.summary)
            tables.append(write_comparison(summaries, tmp))

        tables: list = []
        folder.replace(build)
    df, card, line = tables[0]
    table = Table(title="side by side")
    table.add_column("metric")
    for col in df.columns:
        table.add_column(str(col), justify="right")
    for label, row in df.iterrows():
        table.add_row(str(label), *("n/a" if v is None or v != v else f"{v:,.4g}" if isinstance(v, float) else str(v)
                                    for v in row))
    out.print(table)
    out.print(line, highlight=False, markup=False)
    out.print(f"wrote {out_dir}/ (compare.html, compare.md, compare.csv, scorecard.csv, compare.xlsx, compare.png, one "
              "run directory per scenario)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `compare` to the top-level app."""
    app.command()(compare)
