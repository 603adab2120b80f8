"""CLI commands over many runs (`sweep`, `plan`) and over finished runs (`report`). Thin: parse flags, call the
library, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML the sweep starts from.")],
    grid: Annotated[Path, typer.Option("--grid", "-g", help="Sweep spec YAML: mode, parameters, replications.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/sweep"),
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=1024, help="Local worker processes.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local | ray")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Join this Ray cluster (default: start a local one).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip points already in OUT (after an interruption).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run a scenario over a grid or Latin hypercube of field values; write results.parquet and results.csv.

    Example: simfactory sweep scenarios/default.yaml --grid grid.yaml --jobs 4
    (grid.yaml: {mode: grid, replications: 2, parameters: {deployments.0.replicas: [2, 4], traffic.arrival.rate_per_s: [20, 40]}})
    """
    from simfactory.cli import EXIT_INPUT_ERROR, err, input_errors, out
    from simfactory.config.loader import load_model_file
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep
    from simfactory.resolve import load_scenario

    if executor not in ("local", "ray"):
        err.print(f"[red]error:[/red] --executor: unknown executor {executor!r} (local, ray)")
        raise typer.Exit(EXIT_INPUT_ERROR)
    with input_errors():
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
    out.print(f"{len(table)} rows ({table['point'].nunique()} points x {spec.replications} replications); "
              f"wrote {out_dir}/results.parquet, results.csv", highlight=False)




def plan_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML to size.")],
    target_rate: Annotated[float, typer.Option("--target-rate", "-r", min=0.0, help="Requests (or tasks) per second to serve.")],
    slo: Annotated[str, typer.Option("--slo", help='Targets, e.g. "ttft_p99<2s,e2e_p95<30s,slo_attainment>0.99".')],
    space: Annotated[Optional[Path], typer.Option("--space", help="Search space YAML (candidates / grid of overrides).")] = None,
    replications: Annotated[int, typer.Option("--replications", "-R", min=1, max=100, help="Runs per point (CI needs >= 2).")] = 3,
    objective: Annotated[str, typer.Option("--objective", help="cost (cheapest fleet meeting the SLOs)")] = "cost",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/plan"),
    no_max_rate: Annotated[bool, typer.Option("--no-max-rate", help="Skip the max sustainable load search.")] = False,
) -> None:
    """Find the cheapest fleet meeting every SLO at a load, with confidence intervals and a Pareto plot.

    Example: simfactory plan scenarios/default.yaml --target-rate 80 --slo "ttft_p99<0.5s,e2e_p99<20s" --space space.yaml
    (space.yaml: {candidates: [{name: h100, overrides: {pools.0.sku: h100-sxm}}, {name: h200, overrides: {pools.0.sku: h200}}]})
    """
    from simfactory.cli import EXIT_INPUT_ERROR, err, input_errors, out
    from simfactory.config.loader import load_model_file
    from simfactory.errors import InputError
    from simfactory.outputs import check_output_dir, output_folder
    from simfactory.plan.search import PlanSpace, plan
    from simfactory.plan.slo import parse_slo, samples_wanted, thin_samples
    from simfactory.report.plan import summary_line, write_plan
    from simfactory.resolve import load_scenario

    if objective != "cost":
        err.print(f"[red]error:[/red] --objective: unknown objective {objective!r} (cost)")
        raise typer.Exit(EXIT_INPUT_ERROR)
    with input_errors():
        if not target_rate > 0:
            raise InputError("--target-rate", "", f"must be a rate > 0 per second, got {target_rate:g}")
        targets = parse_slo(slo)
        sc = load_scenario(scenario)
        sp = load_model_file(PlanSpace, space) if space else None
        check_output_dir(out_dir)

        def show(e) -> None:  # type: ignore[no-untyped-def]
            err.print(f"  {e.candidate}: {e.replicas} replicas at {e.rate_per_s:g}/s -> "
                      f"{'meets' if e.met else 'misses'} the SLOs (USD {e.usd_per_hour:,.2f}/h)", highlight=False)

    with input_errors(), output_folder(out_dir, "plan") as folder:  # locked while planning, replaced at the end
        result = plan(sc, str(scenario), target_rate, targets, sp, replications, str(space or "space"),
                      max_rate=not no_max_rate, on_eval=show)
        folder.replace(lambda tmp: write_plan(result, tmp))
    out.print(summary_line(result), highlight=False)
    if replications < 2:
        err.print("warning: -R 1: one replication gives no confidence interval; targets were judged on a point "
                  "estimate (use -R 3 or more)", highlight=False)
    best = result.chosen.best if result.chosen is not None else None
    for t in targets:
        n = (best.slo.get(t.label) or {}).get("samples") if best is not None else None
        if thin_samples(t, n):
            err.print(f"warning: {t.label} was judged on {n} values per replication, too few for that percentile "
                      f"(want {samples_wanted(t):,}+): lengthen sim.horizon_s", highlight=False)
    out.print(f"wrote {out_dir}/ (plan.md, plan.csv, plan_points.csv, plan.json, pareto.png, slo_vs_load.png)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(sweep)
    app.command("plan")(plan_cmd)
    app.command("report")(report_cmd)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `simfactory run`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file (default RUN_DIR/report.html).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an --out file simfactory did not write.")] = False,
) -> None:
    """Write a self-contained HTML report (plots embedded, sortable tables), the same as Markdown, finance CSVs and
    an .xlsx workbook, from a finished run.

    Example: simfactory run scenarios/tco-onprem.yaml --out runs/onprem && simfactory report runs/onprem
    """
    from simfactory.cli import input_errors, out as console
    from simfactory.report.run_report import build_report

    with input_errors():
        paths = build_report(run_dir, out, force)
    if len(paths) > 1:
        console.print(f"wrote {paths[0]} (and report.md, finance_*.csv, finance.xlsx in {run_dir})", highlight=False)
    else:
        console.print(f"wrote {paths[0]} ({run_dir} was not written by simfactory, so nothing was added to it)",
                      highlight=False)
