"""`simfactory plan`: the cheapest fleet meeting every SLO at a load. Thin: parse flags, call the library, print."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from simfactory.cli.common import EXIT_INPUT_ERROR, JSON_HELP, emit_json, err, input_errors, json_target, out
from simfactory.report.money import format_usd

EXIT_NO_CANDIDATE = 1  # the plan ran, but no candidate met the SLOs (CI can tell "nothing works" from success)


def plan_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML to size.")],
    target_rate: Annotated[float, typer.Option("--target-rate", "-r", min=0.0, help="Requests (or tasks) per second to serve.")],
    slo: Annotated[str, typer.Option("--slo", help='Targets, e.g. "ttft_p99<2s,e2e_p95<30s,slo_attainment>0.99".')],
    space: Annotated[Optional[Path], typer.Option("--space", help="Search space YAML (candidates / grid of overrides; deployment or deployments to size; max_replicas; max_points).")] = None,
    deployment: Annotated[Optional[str], typer.Option("--deployment", "-d", help="Size only this deployment; the others keep the scenario's replica counts (default: every deployment that is not autoscaled, jointly when there are several).")] = None,
    replications: Annotated[int, typer.Option("--replications", "-R", min=1, max=100, help="Runs per point (CI needs >= 2).")] = 3,
    objective: Annotated[str, typer.Option("--objective", help="cost (the cheapest fleet meeting the SLOs; the only objective, for one deployment or several)")] = "cost",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/plan"),
    no_max_rate: Annotated[bool, typer.Option("--no-max-rate", help="Skip the max sustainable load search.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no per-run lines; the result only.")] = False,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (plan.json's content)")] = None,
) -> None:
    """Find the cheapest fleet meeting every SLO at a load, with confidence intervals and a Pareto plot.

    Which deployments are sized: a scenario with one deployment, that one; with several (e.g. a small and a
    large model tier behind a router), every deployment that is not autoscaled, JOINTLY: a replica count per
    deployment, each fleet judged on the end-to-end SLOs, starting from each deployment's analytic bound at
    its share of the load (routing weights, tiers and escalations). --deployment NAME (or `deployment:` in
    the space file) sizes one alone and keeps the others as the scenario has them; a `deployments:` list
    in the space file sizes a subset jointly.

    Exit codes: 0 a fleet meets every SLO; 1 no candidate meets them (the report is still written and names
    the closest miss); 2 bad input.

    Example: simfactory plan scenarios/default.yaml --target-rate 80 --slo "ttft_p99<0.5s,e2e_p99<20s" --space space.yaml
    (space.yaml: {candidates: [{name: h100, overrides: {pools.0.sku: h100-sxm}}, {name: h200, overrides: {pools.0.sku: h200}}]})

    Joint: simfactory plan scenarios/plan-two-tier.yaml --target-rate 100 --slo "ttft_p99<1s,tpot_p99<0.05s,slo_attainment>0.99" -R 3
    """
    from simfactory.config.loader import load_model_file
    from simfactory.errors import InputError
    from simfactory.outputs import check_output_dir, output_folder
    from simfactory.plan.joint import JointPlanResult, plan_fleet
    from simfactory.plan.search import PlanSpace
    from simfactory.plan.slo import parse_slo
    from simfactory.report.plan import plan_notes, summary_line, write_plan
    from simfactory.report.plan_joint import joint_notes, joint_summary_line, write_joint_plan
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
        check_output_dir(out_dir, "--out", "plan")

    json_target(out_json, inputs=[scenario, space], out_dir=out_dir)
    progress = PlanProgress(quiet or out_json == "-")
    with input_errors(), output_folder(out_dir, "plan") as folder, progress:  # locked while planning, replaced at the end
        result = plan_fleet(sc, str(scenario), target_rate, targets, sp, replications, str(space or "space"),
                            max_rate=not no_max_rate, on_eval=progress.evaluated, on_phase=progress.phase,
                            deployment=deployment)
        joint = isinstance(result, JointPlanResult)
        progress.phase("write", 1, 1)
        folder.replace(lambda tmp: write_joint_plan(result, tmp) if joint else write_plan(result, tmp))
    if out_json is not None:
        import json

        emit_json(out_json, json.loads((out_dir / "plan.json").read_text()))
    # one line each: grep-able in CI logs
    out.print(joint_summary_line(result) if joint else summary_line(result), highlight=False, soft_wrap=True)
    for note in joint_notes(result) if joint else plan_notes(result):
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    _warn(result, replications)
    charts = (", pareto.png" if result.evaluations else "") + (", slo_vs_load.png" if result.load_curve else "")
    out.print(f"wrote {out_dir}/ (plan.md, plan.csv, plan_points.csv, plan.json{charts})", highlight=False)
    if result.chosen is None:
        raise typer.Exit(EXIT_NO_CANDIDATE)


def _warn(result, replications: int) -> None:  # type: ignore[no-untyped-def]
    """What weakens the answer: no confidence interval (-R 1), a percentile judged on too few values."""
    from simfactory.plan.slo import samples_wanted, thin_samples

    if replications < 2:
        err.print("warning: -R 1: one replication gives no confidence interval; targets were judged on a point "
                  "estimate (use -R 3 or more)", highlight=False)
    best = result.chosen.best if result.chosen is not None else None
    for t in result.targets:
        n = (best.slo.get(t.label) or {}).get("samples") if best is not None else None
        if thin_samples(t, n):
            err.print(f"warning: {t.label} was judged on {n} values per replication, too few for that percentile "
                      f"(want {samples_wanted(t):,}+): lengthen sim.horizon_s", highlight=False)


PHASES = {"size": "sizing candidate {k}/{of}", "max_rate": "searching the largest sustainable load",
          "validate": "validating that load on a 4x longer run", "write": "writing the report and charts"}


class PlanProgress:
    """What `plan` is doing: a status line on a terminal's stderr with the phase, runs done, seconds per run and
    an estimate of the time left; one line per run (candidate, replicas, load, verdict, cost). Silent with
    --quiet; no status line when stderr is not a terminal (CI logs keep the per-run lines)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.status = None if quiet or not err.is_terminal else err.status("planning")
        self.runs = 0
        self.started_s = time.monotonic()
        self.now: tuple[str, int, int] = ("size", 1, 1)
        self.runs_at_phase = 0

    def __enter__(self) -> "PlanProgress":
        if self.status is not None:
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    def phase(self, name: str, k: int, of: int) -> None:
        self.now, self.runs_at_phase = (name, k, of), self.runs
        self._update()

    def evaluated(self, e) -> None:  # type: ignore[no-untyped-def]
        self.runs += 1
        if not self.quiet:
            fleet = getattr(e, "fleet", None)  # a joint plan's point: a count per deployment
            what = ", ".join(f"{d} {n}" for d, n in fleet.items()) if fleet else str(e.replicas)
            err.print(f"  {e.candidate}: {what} replicas at {e.rate_per_s:g}/s -> "
                      f"{'meets' if e.met else 'misses'} the SLOs ({format_usd(e.usd_per_hour)}/hour)", highlight=False)
        self._update()

    def _update(self) -> None:
        if self.status is None:
            return
        name, k, of = self.now
        elapsed = time.monotonic() - self.started_s
        per_run = elapsed / self.runs if self.runs else None
        text = PHASES[name].format(k=k, of=of) + f" · {self.runs} runs · {elapsed:.0f} s"
        if per_run is not None:
            text += f" · {per_run:.1f} s/run"
            left = self._runs_left(name, k, of)
            if left:
                text += f" · about {left * per_run:.0f} s left (estimate)"
        self.status.update(text)

    def _runs_left(self, name: str, k: int, of: int) -> int:
        """Runs still to come, guessed from the runs so far: the candidates left take as many as the mean so far,
        the max-load search about 8, the validating run counts 4 (4x as long)."""
        if name == "size":
            per_candidate = max(1, self.runs_at_phase // max(1, k - 1)) if k > 1 else 4
            return max(0, per_candidate * (of - k + 1) - (self.runs - self.runs_at_phase)) + 8 + 4
        if name == "max_rate":
            return max(0, 8 - (self.runs - self.runs_at_phase)) + 4
        return 4 if name == "validate" else 0


def register(app: typer.Typer) -> None:
    """Add `plan` to the top-level app."""
    app.command("plan")(plan_cmd)
