"""`simfactory plan`: the cheapest fleet meeting every SLO at a load. Thin: parse flags, call the library, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from simfactory.cli.common import EXIT_INPUT_ERROR, err, input_errors, out
from simfactory.report.money import format_usd

EXIT_NO_CANDIDATE = 1  # the plan ran, but no candidate met the SLOs (CI can tell "nothing works" from success)


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

    Exit codes: 0 a fleet meets every SLO; 1 no candidate meets them (the report is still written and names
    the closest miss); 2 bad input.

    Example: simfactory plan scenarios/default.yaml --target-rate 80 --slo "ttft_p99<0.5s,e2e_p99<20s" --space space.yaml
    (space.yaml: {candidates: [{name: h100, overrides: {pools.0.sku: h100-sxm}}, {name: h200, overrides: {pools.0.sku: h200}}]})
    """
    from simfactory.config.loader import load_model_file
    from simfactory.errors import InputError
    from simfactory.outputs import check_output_dir, output_folder
    from simfactory.plan.search import PlanSpace, plan
    from simfactory.plan.slo import parse_slo, samples_wanted, thin_samples
    from simfactory.report.plan import plan_notes, summary_line, write_plan
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
                      f"{'meets' if e.met else 'misses'} the SLOs ({format_usd(e.usd_per_hour)}/hour)", highlight=False)

    with input_errors(), output_folder(out_dir, "plan") as folder:  # locked while planning, replaced at the end
        result = plan(sc, str(scenario), target_rate, targets, sp, replications, str(space or "space"),
                      max_rate=not no_max_rate, on_eval=show)
        folder.replace(lambda tmp: write_plan(result, tmp))
    out.print(summary_line(result), highlight=False, soft_wrap=True)  # one line each: grep-able in CI logs
    for note in plan_notes(result):
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    if replications < 2:
        err.print("warning: -R 1: one replication gives no confidence interval; targets were judged on a point "
                  "estimate (use -R 3 or more)", highlight=False)
    best = result.chosen.best if result.chosen is not None else None
    for t in targets:
        n = (best.slo.get(t.label) or {}).get("samples") if best is not None else None
        if thin_samples(t, n):
            err.print(f"warning: {t.label} was judged on {n} values per replication, too few for that percentile "
                      f"(want {samples_wanted(t):,}+): lengthen sim.horizon_s", highlight=False)
    charts = (", pareto.png" if result.evaluations else "") + (", slo_vs_load.png" if result.load_curve else "")
    out.print(f"wrote {out_dir}/ (plan.md, plan.csv, plan_points.csv, plan.json{charts})", highlight=False)
    if result.chosen is None:
        raise typer.Exit(EXIT_NO_CANDIDATE)


def register(app: typer.Typer) -> None:
    """Add `plan` to the top-level app."""
    app.command("plan")(plan_cmd)
