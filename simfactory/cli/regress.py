"""`simfactory regress` (compare outputs with stored baselines) and `simfactory baseline update` (write them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from simfactory.cli.common import JSON_HELP, emit_json, err, input_errors, json_target, out
from simfactory.config.limits import MAX_SEED
from simfactory.errors import InputError

EXIT_REGRESSION = 1

SourcesArg = Annotated[list[Path], typer.Argument(help="Scenario YAML files, or run directories holding summary.json.")]
BaselineDirOpt = Annotated[Path, typer.Option("--baseline-dir", help="Directory of baseline JSON files.")]
ReplicationsOpt = Annotated[
    int, typer.Option("--replications", "-r", min=1, max=1000, help="Runs per scenario (seeds seed..seed+R-1).")
]


def regress(
    sources: SourcesArg,
    baseline_dir: BaselineDirOpt,
    tolerances: Annotated[Optional[Path], typer.Option(
        "--tolerances", help="Tolerance rules (YAML). Default: 3% on each metric, flagged only in its worse direction; latencies within "
        "2 ms pass.")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="Without --tolerances: flag any change beyond floating-point "
                                        "noise (the project's own baselines use this).")] = False,
    replications: ReplicationsOpt = 1,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Base seed (default: the scenario's).")] = None,
    report_dir: Annotated[
        Optional[Path], typer.Option("--report-dir", help="Write regress.md, regress.junit.xml, regress.json here.")
    ] = None,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (regress.json's content)")] = None,
) -> None:
    """Compare scenario outputs with stored baselines. Exit 0: no regression; 1: regression; 2: error.

    Example: simfactory regress scenarios/*.yaml --baseline-dir reports/baselines --tolerances reports/tolerances.yaml
    """
    from simfactory.regress.baseline import baseline_path, by_metric, read_baseline
    from simfactory.regress.diff import diff_metrics, has_regression
    from simfactory.regress.outputs import markdown, write_reports
    from simfactory.outputs import check_output_dir, distinct_outputs, output_folder
    from simfactory.regress.tolerances import load_tolerances

    json_target(out_json, inputs=[*sources, tolerances])
    with input_errors():  # nor a file a folder holds that this command reads (a baseline) or writes (the report)
        distinct_outputs({"--json": out_json}, {"--baseline-dir": baseline_dir, "--report-dir": report_dir})
        if report_dir is not None:  # before the runs: a refused folder should not cost them
            check_output_dir(report_dir, "--report-dir", "regress")
        if exact and tolerances is not None:
            raise InputError("--exact", "value", "--exact replaces the default tolerance; a --tolerances file sets its own")
        tol = load_tolerances(tolerances, exact)
        diffs = []
        for name, metrics, _ in _collect_all(sources, replications, seed):
            base = read_baseline(baseline_path(baseline_dir, name))
            diffs += diff_metrics(name, base["metrics"], by_metric(metrics), tol)
    import fnmatch

    names = {d.metric for d in diffs}
    for pattern in tol.rules:  # a rule that matches nothing is most likely a typo that silently disables it
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            err.print(f"warning: {tolerances}: rules.{pattern}: matches no metric of these sources", highlight=False,
                      soft_wrap=True)
    if report_dir is not None:
        with input_errors(), output_folder(report_dir, "regress", "--report-dir") as folder:
            folder.replace(lambda tmp: write_reports(diffs, tmp))
    if out_json is not None:
        import json

        from simfactory.regress.outputs import json_diff

        emit_json(out_json, json.loads(json_diff(diffs)))
    out.print(markdown(diffs), markup=False, highlight=False, soft_wrap=True)
    if tolerances is None:
        out.print("tolerance: " + ("exact (floating-point noise only)" if exact else "3% per metric in its worse "
                  "direction, latencies within 2 ms pass (--tolerances FILE for your own rules, --exact for none)"), highlight=False)
    if has_regression(diffs):
        raise typer.Exit(EXIT_REGRESSION)


def baseline_update(
    sources: SourcesArg,
    baseline_dir: BaselineDirOpt,
    replications: ReplicationsOpt = 1,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Base seed (default: the scenario's).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also replace baselines simfactory cannot prove it wrote as they are now (edited by hand, or written "
                                 "before baselines were stamped) and files in --baseline-dir that cannot be read as "
                                 "baselines.")
    ] = False,
) -> None:
    """Write baselines deliberately (one JSON per scenario) and print what changed against the old ones.

    Example: simfactory baseline update scenarios/*.yaml --baseline-dir reports/baselines
    """
    from simfactory.outputs import check_output_file, written_by_simfactory
    from simfactory.regress.baseline import baseline_path, make_baseline, read_baseline, write_baseline
    from simfactory.regress.diff import diff_metrics
    from simfactory.regress.tolerances import load_tolerances

    with input_errors():
        try:
            is_file = os.path.lexists(baseline_dir) and not os.path.isdir(baseline_dir)
        except (OSError, ValueError) as exc:
            raise InputError(str(baseline_dir)[:160], "--baseline-dir", str(exc)) from None
        if os.path.islink(baseline_dir) and not os.path.exists(baseline_dir):
            raise InputError(str(baseline_dir), "--baseline-dir", f"is a symbolic link to {os.readlink(baseline_dir)}, "
                                                                  "which does not exist; name a directory for the baselines")
        if is_file:
            raise InputError(str(baseline_dir), "--baseline-dir", "is a file; name a directory for the baselines")
        collected = _collect_all(sources, replications, seed)  # every source checked before any baseline is written
        plans = []
        for name, metrics, prov in collected:
            path = baseline_path(baseline_dir, name)
            new = make_baseline(name, metrics, prov)
            check_output_file(path, "--baseline-dir", force=True)  # never a folder, a link or a special file
            what = "new baseline"
            if path.exists():
                try:
                    old = read_baseline(path)
                except InputError as e:
                    if not force:
                        raise InputError(str(path), "--baseline-dir", f"exists and cannot be read as a baseline "
                                                                      f"({e.reason}); pass --force to replace it") from None
                    what = "replaced a file that was not a readable baseline (--force)"
                else:
                    if not force and not written_by_simfactory(path):
                        raise InputError(str(path), "--baseline-dir", "is a baseline simfactory cannot prove it wrote as "
                                                                      "it is now (edited by hand, or written before "
                                                                      "baselines were stamped): pass --force to replace "
                                                                      "it")
                    moved = [d for d in diff_metrics(name, old["metrics"], new["metrics"], load_tolerances(None, exact=True))
                             if d.status != "ok"]
                    what = f"{len(moved)} metrics changed" + (
                        ": " + ", ".join(d.metric for d in moved[:5]) + (" ..." if len(moved) > 5 else "") if moved else ""
                    )
            plans.append((path, new, what))
        for path, new, what in plans:  # every file checked before any is written
            write_baseline(path, new)
            out.print(f"{path}: {what}", highlight=False, soft_wrap=True)


def _collect_all(sources: list[Path], replications: int, seed: int | None) -> list[tuple[str, Any, Any]]:
    """(name, metrics, provenance) per source; baselines are stored by scenario name, so two sources with one
    name are refused rather than one silently replacing the other."""
    from simfactory.regress.runner import collect

    seen: dict[str, Path] = {}
    collected = []
    for src in sources:
        name, metrics, prov = collect(src, replications, seed)
        if name in seen:
            raise InputError(str(src), "name", f"{name!r} is also the name of {seen[name]}: baselines are stored by "
                                               "scenario name, so each source needs its own")
        seen[name] = src
        collected.append((name, metrics, prov))
    return collected


def register(app: typer.Typer) -> None:
    """Add `regress` and the `baseline` group (update) to the top-level app."""
    baseline_app = typer.Typer(
        help="Manage regression baselines.\n\nExample: simfactory baseline update scenarios/*.yaml --baseline-dir reports/baselines",
        no_args_is_help=True,
    )
    baseline_app.command("update")(baseline_update)
    app.add_typer(baseline_app, name="baseline")
    app.command()(regress)
