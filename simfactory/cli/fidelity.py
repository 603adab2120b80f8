"""`simfactory fidelity`: simulate published measurements and report predicted vs measured, and where the error
lives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from simfactory.cli.common import JSON_HELP, emit_json, err, input_errors, json_target, out, print_table, step_table
from simfactory.errors import InputError
from simfactory.fidelity_bar import BAR_BIAS, BAR_MAPE, against_bar


def fidelity(
    suites: Annotated[
        Optional[list[Path]], typer.Argument(help="Suite YAML files (default: calibrate/fidelity/*.yaml).")
    ] = None,
    requests: Annotated[int, typer.Option("--requests", min=10, max=1_000_000, help="Requests per offline point that does not state its own.")] = 800,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (every point and the summary)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a --json or --record file simfactory did not write (or changed "
                                                  "since), or write a record from fewer suites than are shipped.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    max_mape: Annotated[float, typer.Option("--max-mape", min=0.0, max=10.0,
                                            help="The bar a suite is held to: its MAPE at most this (a fraction).")] = BAR_MAPE,
    max_bias: Annotated[float, typer.Option("--max-bias", min=0.0, max=10.0,
                                            help="... and its bias within +- this (a fraction).")] = BAR_BIAS,
    record: Annotated[Optional[Path], typer.Option(
        "--record", help="Also write the record CI holds the suites to and reports cite as evidence "
        "(calibrate/fidelity/recorded.json) from this run; replaces only a record simfactory wrote, or with --force.")] = None,
    note: Annotated[str, typer.Option("--note", help="With --record: what changed since the last record.")] = "",
    steps: Annotated[Optional[str], typer.Option(
        "--steps", help="Run nothing: print what one engine step of this point's deployment costs at typical loads "
        "(sized from its limits and lengths) and of what, to see where its error comes from.")] = None,
) -> None:
    """Simulate published measurements and print predicted vs measured, with MAPE per suite and profile source.

    Example: simfactory fidelity calibrate/fidelity/trtllm-perf-overview.yaml
    """
    import dataclasses

    from simfactory.fidelity import breakdowns, load_suite, shipped_suites, summarize, summarize_by_source
    from simfactory.fidelity_record import leaning

    if steps is not None:
        return _print_point_steps(suites or shipped_suites(), steps, locals())
    json_target(out_json, force)
    with input_errors():
        paths = suites or shipped_suites()
        _check_record_target(record, note, out_json, paths, force)
    with input_errors():
        loaded = [load_suite(p) for p in paths]
        spreads = _spreads(paths, loaded)
        results = _run_all(loaded, requests, quiet or out_json == "-")
    table = Table(title="predicted vs measured")
    for col in ("point", "metric", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col in ("point", "metric") else "right")
    for r in results:
        fmt = "{:,.0f}" if r.metric == "output_tokens_per_s" else "{:.4f}"
        table.add_row(r.id, r.metric, fmt.format(r.measured), fmt.format(r.predicted), f"{r.error:+.1%}")
    print_table(table)
    summary = summarize(results)
    for key, s in summary.items():
        out.print(f"{key}: MAPE {s['mape']:.1%}, bias {s['optimism']:+.1%} ({leaning(s['optimism'])}) over {s['points']} "
                  f"points; worst {s['worst']} ({s['worst_error']:.1%})", highlight=False, markup=False, soft_wrap=True)
    parts = breakdowns(results)
    bd = Table(title="where the error lives (bias: mean error signed so that + is optimistic, i.e. latency too low or "
                     "throughput too high)")
    for col in ("group", "points", "MAPE", "bias", "leans"):
        bd.add_column(col, justify="left" if col in ("group", "leans") else "right")
    for key, s in parts.items():
        bd.add_row(key, str(s["points"]), f"{s['mape']:.1%}", f"{s['optimism']:+.1%}", leaning(s["optimism"]))
    print_table(bd)
    by_source = summarize_by_source(results)
    for src, s in by_source.items():
        out.print(f"all suites [{src}]: MAPE {s['mape']:.1%}, bias {s['optimism']:+.1%} ({leaning(s['optimism'])}) over "
                  f"{s['points']} points", highlight=False, markup=False)
    for name, sp in spreads.items():
        per = ", ".join(f"{m} {v['mape']:.1%}" for m, v in sp["by_metric"].items())
        out.print(f"measured twice: {sp['points']} points of {name} measured again in {sp['repeat_of']} differ by "
                  f"{sp['mape']:.1%} on average ({per}): a floor under any forecast's MAPE", highlight=False,
                  markup=False, soft_wrap=True)
    inside, outside = against_bar(summary, max_mape, max_bias, {k: v["mape"] for k, v in spreads.items()})
    out.print(f"within {max_mape:.1%} MAPE and +-{max_bias:.1%} bias: {len(inside)} of {len(summary)} suites (per "
              "step-time source)"
              + (f"; outside: {'; '.join(outside)}" if outside else ""), highlight=False, markup=False, soft_wrap=True)
    if record is not None:
        _write_record(record, results, note, paths, force)
    emit_json(out_json, {"summary": summary, "breakdowns": parts, "by_profile_source": by_source, "spread": spreads,
                         "bar": {"max_mape": max_mape, "max_bias": max_bias, "inside": inside, "outside": outside},
                         "points": [{**dataclasses.asdict(r), "error": r.error, "optimism": r.optimism,
                                     "regime": r.regime} for r in results]},
              force)


# the flags that set how suites run or what a run writes: refused beside --steps, which runs none
RUN_FLAGS = {"requests": "--requests", "out_json": "--json", "force": "--force", "max_mape": "--max-mape",
             "max_bias": "--max-bias", "record": "--record", "note": "--note"}


def _print_point_steps(paths: list[Path], point_id: str, args: dict[str, object]) -> None:
    """`--steps ID`: the step costs of the point's deployment (simfactory.fidelity.point_steps), from the first
    suite holding it (every suite file named is read and checked first); a point no suite holds is an input error
    naming a few that exist. It runs no suite, so a run flag set in `args` (the command's arguments) away from its
    default is refused, not ignored."""
    import inspect

    from simfactory.fidelity import load_suite, point_steps

    defaults = inspect.signature(fidelity).parameters
    with input_errors():
        given = [flag for name, flag in RUN_FLAGS.items() if args[name] != defaults[name].default]
        if given:
            raise InputError("--steps", point_id, f"runs no suite: {', '.join(given)} would be ignored; drop "
                                                  f"{'them' if len(given) > 1 else 'it'}, or --steps")
        suites = [load_suite(path) for path in paths]
        for suite in suites:
            found = point_steps(suite, point_id)
            if found is not None:
                label, table = found
                out.print(f"{suite.name} / {point_id}: step time: {label}", highlight=False, markup=False)
                print_table(step_table(point_id, table))
                return
        ids = [p.id for suite in suites for p in suite.points]
        near = [i for i in ids if point_id.lower() in i.lower()][:5] or ids[:5]
        raise InputError("--steps", point_id, f"no point of that id in the {len(paths)} suite file(s); e.g. "
                                              f"{', '.join(near)}")


def _check_record_target(record: Path | None, note: str, out_json: str | None, paths: list[Path], force: bool) -> None:
    """Before any suite runs: --note needs --record; --record and --json are two files; an existing file at --record
    must be a fidelity record simfactory wrote, unchanged (or --force); a run of fewer suites than are shipped does
    not replace a record (CI holds every shipped suite to it) unless --force."""
    import json

    from simfactory.fidelity import shipped_suites
    from simfactory.outputs import check_output_file, distinct_outputs, not_an_input

    if record is None:
        if note:
            raise InputError("--note", "", "says what changed in a record: give --record FILE too")
        return
    distinct_outputs({"--record": record, "--json": out_json})
    not_an_input(record, "--record", list(paths))
    check_output_file(record, "--record", force)
    if record.exists() and not force:
        try:
            doc = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            doc = None
        if not (isinstance(doc, dict) and "breakdowns" in doc and "suites" in doc):
            raise InputError(str(record), "--record", "is a file simfactory wrote, but no fidelity record (it has no "
                                                      "suites and breakdowns): name the record, or pass --force")
    shipped = {p.resolve() for p in shipped_suites()}
    if record.exists() and not force and not shipped <= {Path(p).resolve() for p in paths}:
        raise InputError(str(record), "--record", f"this run holds {len(paths)} suite file(s), not every shipped suite "
                                                  f"({len(shipped)}), and CI holds every shipped suite to the record "
                                                  "(tests/test_fidelity.py): run them all, or pass --force")


def _write_record(record: Path, results: list, note: str, paths: list[Path], force: bool) -> None:  # type: ignore[type-arg]
    """--record: the record CI holds the suites to and reports cite, from this run (checked before it ran:
    _check_record_target)."""
    from simfactory.fidelity import record_doc

    emit_json(str(record), record_doc(results, note), force)
    out.print(f"wrote the fidelity record {record}", highlight=False, markup=False)


def _spreads(paths: list[Path], suites: list) -> dict[str, dict]:  # type: ignore[type-arg]
    """Each suite that names a repeat_of: how far the two measurements of its setups differ (measurement_spread)."""
    from simfactory.fidelity import load_repeat, measurement_spread

    out: dict[str, dict] = {}  # type: ignore[type-arg]
    for path, suite in zip(paths, suites):
        other = load_repeat(path, suite)
        if other is not None:
            out[suite.name] = measurement_spread(suite, other, str(path))
    return out


def _run_all(suites: list, requests: int, quiet: bool) -> list:  # type: ignore[type-arg]
    """Every suite's points, with a progress bar (points done of all, elapsed, time left) on a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from simfactory.fidelity import run_suite

    if quiet or not err.is_terminal:
        return [r for s in suites for r in run_suite(s, requests)]
    total = sum(len(s.points) for s in suites)
    results: list = []
    with Progress(TextColumn("fidelity {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("", total=total)
        for s in suites:
            bar.update(task, description=s.name)
            before = len(results)
            results += run_suite(s, requests, on_point=lambda done, _n: bar.update(task, completed=before + done))
    return results


def register(app: typer.Typer) -> None:
    """Add `fidelity` to the top-level app."""
    app.command()(fidelity)
