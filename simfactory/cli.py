"""The `simfactory` command: a thin Typer layer over simfactory.api. Bad input -> one line per error, exit 2."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from simfactory import __version__
from simfactory.config.limits import MAX_SEED
from simfactory.errors import InputError, InputErrors

app = typer.Typer(
    name="simfactory",
    help="Simulate and plan AI factories: LLM serving fleets, their latency, utilization and cost.",
    no_args_is_help=False,
    add_completion=True,
    pretty_exceptions_enable=False,
)
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

EXIT_INPUT_ERROR = 2
MAX_COMPARE_SCENARIOS = 50  # each is simulated in turn and kept in one table: more is a sweep
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C (128 + SIGINT)


@contextmanager
def input_errors() -> Iterator[None]:
    """Turn InputError(s) into `error: file: field: reason` lines on stderr and exit code 2."""
    try:
        yield
    except InputErrors as e:
        for one in e.errors:
            err.print(f"[red]error:[/red] {escape(str(one))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INPUT_ERROR) from None
    except InputError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INPUT_ERROR) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"simfactory {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """simfactory: what-if simulation and TCO for LLM and agent serving fleets."""


ScenarioArg = Annotated[
    Optional[Path],
    typer.Argument(help="Scenario YAML file; omit it to use the shipped default (scenarios/default.yaml)."),
]


@app.command()
def validate(scenario: ScenarioArg = None) -> None:
    """Check a scenario file (schema, references, profiles, workloads, memory fit) without running it.

    Example: simfactory validate scenarios/default.yaml
    """
    from simfactory.api import prepare

    with input_errors():
        rs = prepare(scenario)
    out.print(f"[green]ok[/green] {rs.file}: scenario {rs.scenario.name!r} is valid")
    for d in rs.deployments:
        out.print(
            f"  {d.config.name}: {d.config.replicas} x {d.config.model} on {d.config.tp} x {d.profile.sku}, "
            f"KV {d.kv_capacity_tokens:,} tokens/replica, step time: {d.step_time_source}",
            highlight=False,
        )
    _print_warnings(rs.warnings)


@app.command()
def run(
    scenario: ScenarioArg = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output directory (default: runs/<scenario name>).")
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Override the scenario's seed.")
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
    trace: Annotated[
        Optional[Path], typer.Option("--trace", help="Write a Chrome/Perfetto trace of sampled tasks to this JSON file.")
    ] = None,
    trace_tasks: Annotated[int, typer.Option("--trace-tasks", min=1, max=10000, help="Tasks sampled into the trace.")] = 50,
    trace_file: Annotated[
        Optional[Path], typer.Option("--trace-file", help="Replay this trace as the first class's traffic.")
    ] = None,
    trace_format: Annotated[str, typer.Option("--trace-format", help="Format of --trace-file.")] = "azure",
    trace_speedup: Annotated[float, typer.Option("--trace-speedup", min=1e-6, help="Replay k times faster.")] = 1.0,
    output_format: Annotated[
        str, typer.Option("--format", help="text (tables) or json (summary.json on stdout, nothing else)")
    ] = "text",
    exact: Annotated[
        bool, typer.Option("--exact", help="Step every engine iteration (no fast-forward; same answers, slower).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print how the scenario resolved, every warning, and timings.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --trace file that simfactory did not write.")
    ] = False,
) -> None:
    """Simulate a scenario and write summary.md, summary.json, requests.csv (tasks.csv) and plots.

    Example: simfactory run scenarios/support-agent.yaml --out runs/support --trace runs/support/trace.json
    """
    from simfactory.api import prepare
    from simfactory.metrics.summary import compute_metrics
    from simfactory.outputs import check_output_file, output_folder
    from simfactory.report.writer import build_run, write_trace
    from simfactory.sim.run import simulate

    with input_errors():
        rs = prepare(scenario) if trace_file is None else _with_trace(scenario, trace_file, trace_format, trace_speedup)
    if exact:
        import dataclasses

        sim = rs.scenario.sim.model_copy(update={"exact": True})
        rs = dataclasses.replace(rs, scenario=rs.scenario.model_copy(update={"sim": sim}))
    if output_format not in ("text", "json"):
        err.print(f"[red]error:[/red] --format: expected text or json, got {escape(output_format)!r}")
        raise typer.Exit(EXIT_INPUT_ERROR)
    as_json = output_format == "json"
    quiet = quiet or as_json
    if verbose and not as_json:
        _print_resolved(rs)
    _print_warnings(rs.warnings, shown=len(rs.warnings) if verbose else 20)
    target = out_dir or Path("runs") / rs.scenario.name
    started = time.perf_counter()
    # checked and locked before simulating (a refused output path should not cost a run), held until written
    with input_errors(), output_folder(target, "run") as folder:
        if trace is not None and _abspath(trace).parent != _abspath(target):
            check_output_file(trace, "--trace", force)
        try:
            with _progress(quiet, f"simulating {rs.scenario.name}") as progress:
                result = simulate(rs, seed=seed, progress=progress, keep_logs=trace_tasks)
            wall_s = time.perf_counter() - started
            metrics = compute_metrics(result, trace_tasks=trace_tasks)
            metrics_s = time.perf_counter() - started - wall_s
            inside = trace is not None and _abspath(trace).parent == _abspath(target)  # part of the run folder

            def build(tmp: Path) -> None:
                build_run(metrics, tmp, plots)
                if inside:
                    write_trace(metrics, tmp / trace.name, force=True)

            folder.replace(build)  # atomic: a temporary folder renamed into place
            if verbose and not as_json:
                err.print(f"timings: simulate {wall_s:.2f} s ({result.events:,} SimPy events), metrics {metrics_s:.2f} "
                          f"s, write {time.perf_counter() - started - wall_s - metrics_s:.2f} s", highlight=False)
            if trace is not None and not inside:
                write_trace(metrics, trace, force)
        except KeyboardInterrupt:
            err.print(f"interrupted: nothing written to {escape(str(target))} (an earlier report there is unchanged)")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        import json

        print(json.dumps(metrics.summary, indent=1))
        return
    if not quiet:
        _print_summary(metrics.summary, wall_s)
    extra = (", tasks.csv" if len(metrics.tasks) else "") + (", plots" if plots else "")
    out.print(f"wrote {target}/ (summary.md, summary.json, requests.csv{extra})", highlight=False)
    if trace is not None:
        out.print(f"wrote {trace} (open it in ui.perfetto.dev)", highlight=False)


@app.command()
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
                with _progress(False, f"simulating {rs.scenario.name}") as progress:
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


trace_app = typer.Typer(
    help="Inspect public LLM traces and fit workloads to them.\n\nExample: simfactory trace stats azure.csv --format azure",
    no_args_is_help=True,
)
app.add_typer(trace_app, name="trace")
TraceFormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="azure | burstgpt | mooncake | sharegpt | vllm-bench")
]


def _trace_format(fmt: str) -> str:
    formats = ("azure", "burstgpt", "mooncake", "sharegpt", "vllm-bench")
    if fmt not in formats:
        err.print(f"[red]error:[/red] --format: unknown trace format {fmt!r} (formats: {', '.join(formats)})")
        raise typer.Exit(EXIT_INPUT_ERROR)
    return fmt


@trace_app.command("stats")
def trace_stats_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file.")],
    fmt: TraceFormatOpt,
    out_json: Annotated[Optional[Path], typer.Option("--json", help="Also write the statistics as JSON.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a --json file simfactory did not write.")] = False,
) -> None:
    """Count, duration, rate over time, token percentiles, inter-arrival CV and prefix reuse of a trace.

    Example: simfactory trace stats AzureLLMInferenceTrace_conv.csv --format azure
    """
    import json

    from simfactory.outputs import check_output_file, json_with_generator, write_text_output
    from simfactory.traces.parse import parse_trace
    from simfactory.traces.stats import trace_stats

    with input_errors():
        if out_json is not None:
            check_output_file(out_json, "--json", force)
        trace = parse_trace(file, _trace_format(fmt))  # type: ignore[arg-type]
        st = trace_stats(trace)
    table = Table(title=f"{file} ({fmt}): {st['requests']:,} requests, {st['bad_rows']} bad rows")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("duration_s", "mean_rate_per_s", "interarrival_cv", "prefix_reuse_ratio"):
        if st.get(key) is not None:
            table.add_row(key, f"{st[key]:,.4g}")
    for name in ("input_tokens", "output_tokens"):
        for k, v in st[name].items():
            table.add_row(f"{name} {k}", f"{v:,.1f}")
    out.print(table)
    for line in trace.bad_rows[:20]:
        err.print(f"warning: {file}: {line}", highlight=False, soft_wrap=True)
    if out_json is not None:
        with input_errors():
            write_text_output(out_json, json.dumps(json_with_generator(st), indent=1) + "\n", "--json", force)


@trace_app.command("fit")
def trace_fit_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file.")],
    fmt: TraceFormatOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Workload YAML to write (workloads/NAME.yaml).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an --output file simfactory did not write.")] = False,
) -> None:
    """Fit a synthetic workload (lognormal lengths; gamma arrivals with the trace's rate and burstiness).

    Example: simfactory trace fit BurstGPT_1.csv --format burstgpt -o workloads/burstgpt-fit.yaml
    """
    import yaml

    from simfactory.outputs import GENERATOR, check_output_file, write_text_output
    from simfactory.traces.parse import parse_trace
    from simfactory.traces.stats import fit_workload

    with input_errors():
        check_output_file(output, "--output", force)
        trace = parse_trace(file, _trace_format(fmt))  # type: ignore[arg-type]
        workload, arrival = fit_workload(trace, output.stem)
    text = f"# generator: {GENERATOR} (trace fit {file.name})\n" + yaml.safe_dump(workload, sort_keys=False)
    if arrival is not None:
        text = f"# arrivals fitted to the same trace (use in a scenario's traffic.arrival): {arrival}\n" + text
    with input_errors():
        write_text_output(output, text, "--output", force)
    out.print(f"wrote {output}" + (f"; arrival process {arrival}" if arrival else ""), highlight=False)
    if arrival is None and trace.arrival_s is not None:
        err.print(f"note: {file}: too few distinct timestamps to fit an arrival process; the workload only",
                  highlight=False)


@app.command()
def fidelity(
    suites: Annotated[
        Optional[list[Path]], typer.Argument(help="Suite YAML files (default: calibrate/fidelity/*.yaml).")
    ] = None,
    requests: Annotated[int, typer.Option("--requests", min=10, max=1_000_000, help="Requests per offline point.")] = 800,
    out_json: Annotated[Optional[Path], typer.Option("--json", help="Write every point and the summary as JSON.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a --json file simfactory did not write.")] = False,
) -> None:
    """Simulate published measurements and print predicted vs measured, with MAPE per suite and profile source.

    Example: simfactory fidelity calibrate/fidelity/trtllm-perf-overview.yaml
    """
    import dataclasses
    import json

    from simfactory.fidelity import breakdowns, load_suite, run_suite, shipped_suites, summarize, summarize_by_source
    from simfactory.outputs import check_output_file, json_with_generator, write_text_output

    with input_errors():
        if out_json is not None:
            check_output_file(out_json, "--json", force)
        loaded = [load_suite(p) for p in (suites or shipped_suites())]
        results = [r for s in loaded for r in run_suite(s, requests)]
    table = Table(title="predicted vs measured")
    for col in ("point", "metric", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col in ("point", "metric") else "right")
    for r in results:
        fmt = "{:,.0f}" if r.metric == "output_tokens_per_s" else "{:.4f}"
        table.add_row(r.id, r.metric, fmt.format(r.measured), fmt.format(r.predicted), f"{r.error:+.1%}")
    out.print(table)
    summary = summarize(results)
    for key, s in summary.items():
        out.print(f"{key}: MAPE {s['mape']:.1%}, bias {s['optimism']:+.1%} ({_lean(s['optimism'])}) over {s['points']} "
                  f"points; worst {s['worst']} ({s['worst_error']:.1%})", highlight=False, markup=False, soft_wrap=True)
    parts = breakdowns(results)
    bd = Table(title="where the error lives (bias: mean error signed so that + is optimistic, i.e. latency too low or "
                     "throughput too high)")
    for col in ("group", "points", "MAPE", "bias", "leans"):
        bd.add_column(col, justify="left" if col in ("group", "leans") else "right")
    for key, s in parts.items():
        bd.add_row(key, str(s["points"]), f"{s['mape']:.1%}", f"{s['optimism']:+.1%}", _lean(s["optimism"]))
    out.print(bd)
    by_source = summarize_by_source(results)
    for src, s in by_source.items():
        out.print(f"all suites [{src}]: MAPE {s['mape']:.1%}, bias {s['optimism']:+.1%} ({_lean(s['optimism'])}) over "
                  f"{s['points']} points", highlight=False, markup=False)
    if out_json is not None:
        doc = json_with_generator({"summary": summary, "breakdowns": parts, "by_profile_source": by_source, "points": [
            {**dataclasses.asdict(r), "error": r.error, "optimism": r.optimism, "regime": r.regime} for r in results]})
        with input_errors():
            write_text_output(out_json, json.dumps(doc, indent=1) + "\n", "--json", force)


def _abspath(p: Path) -> Path:
    """An absolute path without resolving links (resolve() raises on a loop of links; the readers refuse it)."""
    return Path(os.path.abspath(p))


def _lean(optimism: float) -> str:
    return "optimistic" if optimism > 0.005 else "pessimistic" if optimism < -0.005 else "unbiased"


@app.command("schema")
def schema_cmd(
    kind: Annotated[str, typer.Argument(help="scenario | workload | profile | models | engines | price-book")],
) -> None:
    """Print the JSON Schema of an input file kind (generated from the pydantic models).

    Example: simfactory schema scenario > scenario.schema.json
    """
    import json

    from simfactory.schemas import KINDS, schema

    if kind not in KINDS:
        err.print(f"[red]error:[/red] KIND: unknown kind {escape(kind)!r} (kinds: {', '.join(KINDS)})")
        raise typer.Exit(EXIT_INPUT_ERROR)
    print(json.dumps(schema(kind), indent=1))


INIT_TEMPLATE = """# yaml-language-server: $schema={schema}
# Written by `simfactory init` ({generator}). Every field is documented in schemas/scenario.json and the README.
name: {name}
description: {model} on {replicas} x {sku} ({location}), {rate:g} requests/s of chat traffic.
seed: 1
pools:                                   # the accelerators you pay for
  - {{name: pool, sku: {sku}, count: {count}, location: {location}}}
deployments:                             # a model served by replicas (vLLM's knobs and names)
  - name: main
    model: {model}
    pool: pool
    replicas: {replicas}
    tp: {tp}
    dtype: {dtype}
traffic:
  arrival: {{process: poisson, rate_per_s: {rate:g}}}
  classes:
    - name: chat
      workload: chat-sharegpt            # or input_tokens / output_tokens distributions, or a trace
      target: main
      service_class: interactive
service_classes:
  - {{name: interactive, slo: {{ttft_s: {ttft:g}, e2e_s: {e2e:g}}}}}
sim:
  horizon_s: 300                         # arrivals stop here; in-flight requests drain
  warmup_s: 30                           # not measured
"""


@app.command()
def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="Scenario file to write.")] = Path("scenario.yaml"),
    name: Annotated[Optional[str], typer.Option(help="Scenario name.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model id (hardware_profiles/models.yaml).")] = None,
    sku: Annotated[Optional[str], typer.Option(help="Accelerator profile (hardware_profiles/<sku>.yaml).")] = None,
    replicas: Annotated[Optional[int], typer.Option(min=1, help="Model replicas.")] = None,
    tp: Annotated[Optional[int], typer.Option(min=1, help="Tensor parallel degree.")] = None,
    rate: Annotated[Optional[float], typer.Option(min=0.001, help="Requests per second.")] = None,
    ttft_slo: Annotated[Optional[float], typer.Option("--ttft-slo", min=0.001, help="TTFT target, s.")] = None,
    location: Annotated[str, typer.Option(help="cloud or on_prem.")] = "cloud",
    dtype: Annotated[str, typer.Option(help="bf16, fp8, int8, int4.")] = "bf16",
    non_interactive: Annotated[bool, typer.Option("--non-interactive", help="Use flags and defaults; ask nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented, valid scenario from a few answers (or flags), then validate it.

    Example: simfactory init --non-interactive --model llama-3.1-8b --sku h100-sxm --rate 20 -o my.yaml
    """
    from simfactory.api import prepare

    ask = not non_interactive and sys.stdin.isatty()

    def pick(value, prompt, default):  # type: ignore[no-untyped-def]
        if value is not None:
            return value
        return typer.prompt(prompt, default=default) if ask else default

    from simfactory.outputs import GENERATOR, check_output_file

    with input_errors():
        check_output_file(output, "--output", force=True)  # a folder, link or special file: never
    if output.exists() and not force:
        err.print(f"[red]error:[/red] {escape(str(output))}: exists (use --force to overwrite)")
        raise typer.Exit(EXIT_INPUT_ERROR)
    values = {
        "name": pick(name, "scenario name", output.stem),
        "model": pick(model, "model", "llama-3.1-8b"),
        "sku": pick(sku, "accelerator", "h100-sxm"),
        "replicas": int(pick(replicas, "replicas", 2)),
        "tp": int(pick(tp, "tensor parallel degree", 1)),
        "rate": float(pick(rate, "requests per second", 10.0)),
        "ttft": float(pick(ttft_slo, "TTFT SLO (s)", 1.0)),
        "location": location,
        "dtype": dtype,
    }
    values["count"] = values["replicas"] * values["tp"]
    values["e2e"] = max(30.0, values["ttft"] * 30)
    values["generator"] = f"generator: {GENERATOR}"
    values["schema"] = (Path(__file__).resolve().parents[1] / "schemas" / "scenario.json").as_uri()
    output.parent.mkdir(parents=True, exist_ok=True)
    draft = output.with_name(f".{output.name}.draft.yaml")
    draft.write_text(INIT_TEMPLATE.format(**values))
    try:
        with input_errors():
            def named(e: InputError) -> InputError:  # the draft is an implementation detail: name the file asked for
                return InputError(str(output), e.field, e.reason) if e.file == str(draft) else e

            try:
                prepare(draft)
            except InputError as e:
                raise named(e) from None
            except InputErrors as es:
                raise InputErrors([named(e) for e in es.errors]) from None
    except typer.Exit:
        draft.unlink(missing_ok=True)  # nothing half-written
        raise
    draft.replace(output)
    out.print(f"wrote {output} (valid); run it with: simfactory run {output}", highlight=False)


@app.command()
def examples() -> None:
    """List the shipped scenarios with their one-line descriptions.

    Example: simfactory examples
    """
    from simfactory.config.loader import read_yaml
    from simfactory.paths import SCENARIOS_DIR

    table = Table(title=f"shipped scenarios ({SCENARIOS_DIR})")
    table.add_column("scenario")
    table.add_column("description")
    for p in sorted(SCENARIOS_DIR.glob("*.yaml")):
        table.add_row(p.name, str(read_yaml(p).get("description", "")))
    out.print(table)


EXIT_REGRESSION = 1
baseline_app = typer.Typer(
    help="Manage regression baselines.\n\nExample: simfactory baseline update scenarios/*.yaml --baseline-dir reports/baselines",
    no_args_is_help=True,
)
app.add_typer(baseline_app, name="baseline")

SourcesArg = Annotated[list[Path], typer.Argument(help="Scenario YAML files, or run directories holding summary.json.")]
BaselineDirOpt = Annotated[Path, typer.Option("--baseline-dir", help="Directory of baseline JSON files.")]
ReplicationsOpt = Annotated[
    int, typer.Option("--replications", "-r", min=1, max=1000, help="Runs per scenario (seeds seed..seed+R-1).")
]


@app.command()
def regress(
    sources: SourcesArg,
    baseline_dir: BaselineDirOpt,
    tolerances: Annotated[Optional[Path], typer.Option("--tolerances", help="Tolerance rules (YAML).")] = None,
    replications: ReplicationsOpt = 1,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Base seed (default: the scenario's).")] = None,
    report_dir: Annotated[
        Optional[Path], typer.Option("--report-dir", help="Write regress.md, regress.junit.xml, regress.json here.")
    ] = None,
) -> None:
    """Compare scenario outputs with stored baselines. Exit 0: no regression; 1: regression; 2: error.

    Example: simfactory regress scenarios/*.yaml --baseline-dir reports/baselines --tolerances reports/tolerances.yaml
    """
    from simfactory.regress.baseline import baseline_path, by_metric, read_baseline
    from simfactory.regress.diff import diff_metrics, has_regression
    from simfactory.regress.outputs import markdown, write_reports
    from simfactory.outputs import check_output_dir, output_folder
    from simfactory.regress.tolerances import load_tolerances

    with input_errors():
        if report_dir is not None:  # before the runs: a refused folder should not cost them
            check_output_dir(report_dir, "--report-dir")
        tol = load_tolerances(tolerances)
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
    out.print(markdown(diffs), markup=False, highlight=False, soft_wrap=True)
    if has_regression(diffs):
        raise typer.Exit(EXIT_REGRESSION)


@baseline_app.command("update")
def baseline_update(
    sources: SourcesArg,
    baseline_dir: BaselineDirOpt,
    replications: ReplicationsOpt = 1,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=MAX_SEED, help="Base seed (default: the scenario's).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files in --baseline-dir that cannot be read as baselines.")
    ] = False,
) -> None:
    """Write baselines deliberately (one JSON per scenario) and print what changed against the old ones.

    Example: simfactory baseline update scenarios/*.yaml --baseline-dir reports/baselines
    """
    from simfactory.outputs import check_output_file
    from simfactory.regress.baseline import baseline_path, make_baseline, read_baseline, write_baseline
    from simfactory.regress.diff import diff_metrics
    from simfactory.regress.tolerances import load_tolerances

    with input_errors():
        try:
            is_file = os.path.lexists(baseline_dir) and not os.path.isdir(baseline_dir)
        except (OSError, ValueError) as exc:
            raise InputError(str(baseline_dir)[:160], "--baseline-dir", str(exc)) from None
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
                    moved = [d for d in diff_metrics(name, old["metrics"], new["metrics"], load_tolerances(None))
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


def _print_resolved(rs) -> None:  # type: ignore[no-untyped-def]
    """--verbose: what the scenario resolved to (profiles, step-time sources, memory, KV capacity)."""
    for d in rs.deployments:
        c = d.config
        err.print(
            f"deployment {c.name}: {c.model} on {d.profile.sku} x{c.tp * c.pp} per replica (tp {c.tp}, pp {c.pp}), "
            f"{c.replicas} replicas, {c.dtype}/{c.kv_dtype or c.dtype} KV, engine {c.engine}; step time: "
            f"{d.step_time_source}; weights {d.memory.weight_bytes_per_device / 1e9:.1f} GB/device; KV capacity "
            f"{d.kv_capacity_tokens:,} tokens ({d.kv_blocks:,} blocks of {c.block_size}); max_num_seqs "
            f"{c.max_num_seqs}, max_num_batched_tokens {c.max_num_batched_tokens}", highlight=False)
    for c in rs.classes:
        kind = f"agent workload {c.agent.name}" if c.agent is not None else "requests"
        err.print(f"class {c.config.name}: {kind}, weight {c.config.weight:g}", highlight=False)


def _print_warnings(warnings: list[str], shown: int = 20) -> None:
    for w in warnings[:shown]:
        err.print(f"warning: {w}", highlight=False, soft_wrap=True)
    if len(warnings) > shown:
        err.print(f"warning: ... and {len(warnings) - shown} more (all listed in summary.json input_warnings)")


def _with_trace(scenario: Optional[Path], trace_file: Path, fmt: str, speedup: float):  # type: ignore[no-untyped-def]
    """The scenario with its first class replaying the trace (other classes dropped)."""
    from simfactory.config.loader import read_yaml, validate
    from simfactory.config.scenario import Scenario
    from simfactory.paths import DEFAULT_SCENARIO
    from simfactory.resolve import resolve

    src = scenario or DEFAULT_SCENARIO
    doc = read_yaml(src)
    classes = doc.get("traffic", {}).get("classes") if isinstance(doc.get("traffic"), dict) else None
    if not classes or not isinstance(classes[0], dict):
        raise InputError(str(src), "traffic.classes", "needs a class to carry the trace")
    first = {k: v for k, v in classes[0].items() if k not in ("workload", "input_tokens", "output_tokens", "weight")}
    first["trace"] = {"file": str(_abspath(trace_file)), "format": _trace_format(fmt), "speedup": speedup}
    doc["traffic"]["classes"] = [first]
    return resolve(validate(Scenario, doc, str(src)), src)


@contextmanager
def _progress(quiet: bool, label: str) -> Iterator[Callable[[float, float], None] | None]:
    if quiet or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} simulated s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=1.0)

        def update(done_s: float, total_s: float) -> None:
            bar.update(task, completed=done_s, total=total_s)

        yield update


def _ms(x: Any) -> str:
    return "n/a" if x is None else f"{x * 1000:,.1f}"


def _print_summary(s: dict[str, Any], wall_s: float) -> None:
    w = s["window"]
    done = s["latency_s"]["e2e"].get("count") or 0
    t = Table(title=f"{s['scenario']}: latency of {done:,} completed of {w['measured_requests']:,} measured requests (ms)")
    for col in ("metric", "mean", "p50", "p90", "p95", "p99"):
        t.add_column(col, justify="right" if col != "metric" else "left")
    for name, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"), ("queue", "queueing")):
        st = s["latency_s"][name]
        t.add_row(label, *(_ms(st[k]) for k in ("mean", "p50", "p90", "p95", "p99")))
    out.print(t)
    if s["tasks"]:
        _print_tasks(s["tasks"])
    tp = s["throughput"]
    c = s["cost"]
    oc = ", ".join(f"{k} {v:,}" for k, v in s["outcomes"].items())
    out.print(
        f"throughput {tp['requests_per_s']:.2f} req/s, {tp['output_tokens_per_s']:,.0f} output tok/s | outcomes: {oc}",
        highlight=False,
    )
    offered = tp.get("offered_requests_per_s") or 0.0
    if offered and tp["requests_per_s"] < 0.9 * offered:
        err.print(f"warning: the fleet completed {tp['requests_per_s'] / offered:.0%} of the offered load in the window "
                  f"({tp['requests_per_s']:.2f} of {offered:.2f} req/s): overloaded or shedding; queues grow, so latency "
                  "depends on the horizon", highlight=False)
    busy = [r["busy_frac"] for r in s["replicas"] if r["busy_frac"] is not None]
    if busy:
        out.print(f"replica busy fraction: mean {sum(busy) / len(busy):.2f}, max {max(busy):.2f}", highlight=False)
    per_m = c["usd_per_1m_output_tokens"]
    serving = c.get("serving_usd_per_hour", c["usd_per_hour"])
    out.print(
        f"cost: ${c['usd_per_hour']:,.2f}/hour, "
        + (f"${serving:,.2f}/hour of it serving (the rest dedicated training), "
           if serving < c["usd_per_hour"] - 1e-9 else "")
        + (f"${per_m:,.4f} per 1M output tokens, " if per_m is not None else "")
        + (f"${c['usd_per_request']:.6f} per request" if c["usd_per_request"] is not None else "no completed requests"),
        highlight=False,
    )
    out.print(f"simulated {w['end_s']:.0f} s in {wall_s:.1f} s wall ({s['sim']['events']:,} events)", highlight=False)


def _s(x: Any) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _print_tasks(tasks: dict[str, Any]) -> None:
    lat = Table(title="agent tasks: compound latency of completed tasks (s)")
    for col in ("class", "tasks", "completed", "failed", "timed out", "p50", "p90", "p99", "$/successful task"):
        lat.add_column(col, justify="left" if col == "class" else "right")
    bd = Table(title="critical-path breakdown (mean s per completed task)")
    cats = tuple(next(iter(tasks.values()))["breakdown_mean_s"])
    for col in ("class", *cats):
        bd.add_column(col, justify="left" if col == "class" else "right")
    for name, b in tasks.items():
        per = b["cost_usd"]["per_successful_task_attributed"]
        rates = b["outcome_rates"]
        lat.add_row(
            name, f"{b['tasks']:,}", f"{rates['completed']:.1%}", f"{rates['failed']:.1%}", f"{rates['timed_out']:.1%}",
            *(_s(b["latency_s"][k]) for k in ("p50", "p90", "p99")),
            "n/a" if per is None else f"{per:.5f}",
        )
        bd.add_row(name, *(_s(b["breakdown_mean_s"][k]) for k in cats))
    out.print(lat)
    out.print(bd)


from simfactory.cli_plan import register as _register_plan  # noqa: E402
from simfactory.cli_calibrate import calibrate_app  # noqa: E402

_register_plan(app)
app.add_typer(calibrate_app, name="calibrate")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
