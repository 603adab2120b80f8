"""`simfactory sweep`: one scenario over a grid or Latin hypercube of field values. Thin: parse flags, call the
library, print."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from simfactory.cli.common import (
    EXIT_INPUT_ERROR,
    JSON_HELP,
    emit_json,
    err,
    input_errors,
    interrupted,
    json_target,
    out,
    print_table,
)


def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML the sweep starts from.")],
    grid: Annotated[Path, typer.Option("--grid", "-g", help="Sweep spec YAML: mode, parameters, replications.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/sweep"),
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=1024, help="Local worker processes.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local | ray")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Join this Ray cluster (default: start a local one).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip points already in OUT (after an interruption).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table; the files only.")] = False,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (every row, and the points' means)")] = None,
) -> None:
    """Run a scenario over a grid or Latin hypercube of field values; write results.parquet and results.csv.

    Example: simfactory sweep scenarios/default.yaml --grid scenarios/grids/replicas-x-rate.yaml --jobs 4
    (a grid: {mode: grid, replications: 2, parameters: {deployments.0.replicas: [2, 4], traffic.arrival.rate_per_s: [20, 40]}})
    """
    from simfactory.config.loader import load_model_file
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep
    from simfactory.resolve import load_scenario

    if executor not in ("local", "ray"):
        err.print(f"[red]error:[/red] --executor: unknown executor {executor!r} (local, ray)")
        raise typer.Exit(EXIT_INPUT_ERROR)
    json_target(out_json, inputs=[scenario, grid], out_dir=out_dir)
    quiet = quiet or out_json == "-"
    with input_errors(), _interruption_told(out_dir, resume):
        sc = load_scenario(scenario)
        spec = load_model_file(SweepSpec, grid)
        if quiet or not err.is_terminal:
            table = run_sweep(sc, str(scenario), spec, str(grid), out_dir, jobs=jobs, executor=executor,
                              ray_address=ray_address, resume=resume)
        else:
            with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task("sweep", total=None)
                table = run_sweep(sc, str(scenario), spec, str(grid), out_dir, jobs=jobs, executor=executor,
                                  ray_address=ray_address, resume=resume,
                                  on_row=lambda n, total: bar.update(task, completed=n, total=total))
    if out_json is not None:
        from simfactory.plan.sweep import point_summary

        emit_json(out_json, {"points": point_summary(table).to_dict(orient="records"),
                             "rows": table.to_dict(orient="records")})
    if not quiet:
        print_table(_points_table(table, spec.replications))
    out.print(f"{len(table)} rows ({table['point'].nunique()} points x {spec.replications} replications); "
              f"wrote {out_dir}/results.parquet, results.csv", highlight=False)


@contextmanager
def _interruption_told(out_dir: Path, resume: bool) -> Iterator[None]:
    """Ctrl-C: say what is kept. A sweep run over an earlier one (no --resume) leaves it as it was; a sweep that
    streams into its folder keeps the rows it finished, and --resume goes on from them."""
    from simfactory.outputs import read_marker
    from simfactory.plan.sweep import ROWS_FILE, replaces_earlier
    from simfactory.processes import this_process

    rows = Path(out_dir) / ROWS_FILE
    earlier = replaces_earlier(Path(out_dir), resume)  # the sweep's own decision, taken the same way before it starts
    try:
        yield
    except KeyboardInterrupt:
        doc = read_marker(Path(out_dir)) or {}
        if earlier and [doc.get("pid"), doc.get("pid_start_ticks")] == list(this_process()):  # this process's swap was done
            raise interrupted(f"the new sweep was written to {out_dir}, whole (it replaced the earlier one)") from None
        if earlier:
            raise interrupted(f"the earlier sweep in {out_dir} is as it was (run it again to replace it)") from None
        try:
            done = len(rows.read_bytes().splitlines())
        except OSError:
            raise interrupted(f"nothing written to {out_dir}") from None
        raise interrupted(f"{done} finished row{'' if done == 1 else 's'} kept in {rows}: the same command with "
                          "--resume runs the rest") from None


MAX_SHOWN_POINTS = 40


def _points_table(table, replications: int):  # type: ignore[no-untyped-def]
    """The points with their headline metrics (mean over replications); the first MAX_SHOWN_POINTS."""
    from rich.table import Table

    from simfactory.plan.sweep import point_summary
    from simfactory.report.money import format_cell, money_flags

    frame = point_summary(table)
    t = Table(title=f"sweep: mean of {replications} replication(s) per point", caption=(
        f"first {MAX_SHOWN_POINTS} of {len(frame)} points; all in results.csv" if len(frame) > MAX_SHOWN_POINTS else None))
    for col in frame.columns:
        t.add_column(str(col), justify="right", overflow="fold")
    money = money_flags(list(frame.columns))
    for _, row in frame.head(MAX_SHOWN_POINTS).iterrows():
        t.add_row(*[format_cell(v, m) for v, m in zip(row.tolist(), money)])
    return t


def register(app: typer.Typer) -> None:
    """Add `sweep` to the top-level app."""
    app.command()(sweep)
