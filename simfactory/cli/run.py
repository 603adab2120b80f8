"""`simfactory validate` and `simfactory run`: check a scenario, or simulate it and write its report folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from simfactory.cli.common import (
    JSON_HELP,
    emit_json,
    json_target,
    print_table,
    step_table,
    EXIT_INPUT_ERROR,
    abspath,
    check_trace_format,
    err,
    input_errors,
    interrupted,
    out,
    print_warnings,
    progress_bar,
)
from simfactory.config.limits import MAX_REPLICATIONS, MAX_SEED
from simfactory.errors import InputError
from simfactory.fidelity_record import forecast_sides
from simfactory.report.markdown import forecast_check_lines
from simfactory.report.money import format_usd

ScenarioArg = Annotated[
    Optional[Path],
    typer.Argument(help="Scenario YAML file; omit it to use the shipped default (scenarios/default.yaml)."),
]
# a scenario with a sharding: block (simfactory/fleet): where its shards and time windows run
JobsOption = Annotated[int, typer.Option("--jobs", "-j", min=1, max=1024, help="A scenario with a sharding: block: "
                                         "simulate this many shards (time windows) at once in local processes.")]
ExecutorOption = Annotated[str, typer.Option("--executor", help="A sharded scenario's shards run on: local "
                                             "(processes, --jobs) or ray (pip install 'simfactory[ray]').")]
RayAddressOption = Annotated[Optional[str], typer.Option(
    "--ray-address", help="--executor ray: join this Ray cluster (default: start a local one).")]


def validate(
    scenario: ScenarioArg = None,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (what the scenario resolved to)")] = None,
    steps: Annotated[bool, typer.Option("--steps", help="Also print what one engine step of each deployment costs at "
                                        "typical loads (decode batches, prefill chunks, a mixed step), and of what "
                                        "(overhead, GEMMs, all-reduce, attention, an eager prefill's launch wait).")]
    = False,
) -> None:
    """Check a scenario file (schema, references, profiles, workloads, memory fit) without running it.

    Example: simfactory validate scenarios/default.yaml --steps
    """
    from simfactory.api import prepare, step_tables

    json_target(out_json, inputs=[scenario])
    with input_errors():
        rs = prepare(scenario)
    tables = step_tables(rs) if steps else {}
    emit_json(out_json, {"file": rs.file, "scenario": rs.scenario.name, "valid": True, "warnings": rs.warnings,
                         "deployments": [{"name": d.config.name, "model": d.config.model, "sku": d.profile.sku,
                                          "replicas": d.config.replicas, "tp": d.config.tp,
                                          "kv_capacity_tokens": d.kv_capacity_tokens,
                                          "step_time_source": d.step_time_source} for d in rs.deployments],
                         **({"steps": tables} if steps else {})})
    out.print(f"[green]ok[/green] {rs.file}: scenario {rs.scenario.name!r} is valid")
    for d in rs.deployments:
        out.print(
            f"  {d.config.name}: {d.config.replicas} x {d.config.model} on {d.config.tp} x {d.profile.sku}, "
            f"KV {d.kv_capacity_tokens:,} tokens/replica, step time: {d.step_time_source}",
            highlight=False,
        )
    for name, table in tables.items():
        print_table(step_table(name, table))
    print_warnings(rs.warnings)


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
    trace_tasks: Annotated[int, typer.Option("--trace-tasks", min=1, max=10000, help="Tasks sampled into the trace "
                                             "(and into otlp.json).")] = 50,
    otlp: Annotated[bool, typer.Option("--otlp", help="Also write otlp.json in the run folder: the sampled tasks (or "
                                       "requests) as OpenTelemetry traces (OTLP/JSON, GenAI semantic conventions) for "
                                       "Jaeger, Tempo or Phoenix.")] = False,
    trace_file: Annotated[
        Optional[Path], typer.Option("--trace-file", help="Replay this trace as the first class's traffic.")
    ] = None,
    trace_format: Annotated[str, typer.Option("--trace-format", help="Format of --trace-file.")] = "azure",
    trace_speedup: Annotated[float, typer.Option("--trace-speedup", min=1e-6, help="Replay k times faster.")] = 1.0,
    output_format: Annotated[
        str, typer.Option("--format", help="text (tables) or json (summary.json on stdout, nothing else; = --json -)")
    ] = "text",
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (summary.json's content)")] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Step every engine iteration (no fast-forward; same answers, slower).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print how the scenario resolved, every warning, and timings.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --trace or --json file that simfactory cannot prove it "
                                           "wrote (no stamp of its own, or changed since).")
    ] = False,
    replications: Annotated[int, typer.Option(
        "--replications", "-R", min=1, max=MAX_REPLICATIONS,
        help="Run N times on seeds seed, seed+1, ...: the report is replication 0's; replications.csv and ci.csv add "
             "every headline metric's mean and 95% t interval.")] = 1,
    jobs: JobsOption = 1,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Simulate a scenario and write summary.md, summary.json, requests.csv (tasks.csv) and plots.

    Example: simfactory run scenarios/support-agent.yaml --out runs/support --trace runs/support/trace.json
    """
    from simfactory.api import prepare

    with input_errors():
        rs = prepare(scenario) if trace_file is None else _with_trace(scenario, trace_file, trace_format, trace_speedup)
    if exact:
        rs = _stepping_every_iteration(rs)
    _check_parallel(rs, executor, replications, jobs)
    if output_format not in ("text", "json"):
        err.print(f"[red]error:[/red] --format: expected text or json, got {escape(output_format)!r}")
        raise typer.Exit(EXIT_INPUT_ERROR)
    if output_format == "json":
        out_json = out_json or "-"
    as_json = out_json == "-"
    json_target(out_json, force, inputs=[scenario, trace_file])
    quiet = quiet or as_json
    if verbose and not as_json:
        _print_resolved(rs)
    print_warnings(rs.warnings, shown=len(rs.warnings) if verbose else 20)
    target = out_dir or Path("runs") / rs.scenario.name
    _check_file_outputs(out_json, trace, target, [scenario, trace_file])
    metrics, wall_s, reps = _simulate_and_write(rs, target, seed, plots, quiet, trace, trace_tasks, force,
                                                show_timings=verbose and not as_json, replications=replications,
                                                otlp=otlp, parallel=(jobs, executor, ray_address))
    doc = metrics.summary if reps is None else {**metrics.summary, "replications": _replications_json(reps)}
    emit_json(out_json, doc, force, generator=False)  # summary.json's document (and the replications, -R > 1)
    if as_json:
        return
    if not quiet:
        _print_summary(metrics.summary, wall_s)
        _print_replications(reps)
    _print_written(target, metrics, plots, trace, reps is not None, otlp)


def _check_file_outputs(out_json: str | None, trace: Path | None, target: Path, inputs: list[Any]) -> None:
    """Before simulating: --json and --trace are two files, neither an input; --json lies outside the run folder
    (written whole); --trace lies outside it or directly in it (it then joins the folder's files), never deeper."""
    from simfactory.outputs import distinct_outputs, not_an_input

    with input_errors():
        distinct_outputs({"--json": out_json, "--trace": trace})
        distinct_outputs({"--json": out_json}, {"--out": target})
        not_an_input(trace, "--trace", [i for i in inputs if i is not None])
        if trace is not None and abspath(trace).parent != abspath(target):
            distinct_outputs({"--trace": trace}, {"--out": target})


def _check_parallel(rs: Any, executor: str, replications: int, jobs: int = 1) -> None:
    """--executor names a known executor; -R is refused for a sharded scenario (its shards give the intervals);
    --jobs or --executor ray on a scenario without shards or windows is said, not silently ignored."""
    if executor not in ("local", "ray"):
        err.print(f"[red]error:[/red] --executor: unknown executor {escape(executor)!r} (local, ray)")
        raise typer.Exit(EXIT_INPUT_ERROR)
    sharding = rs.scenario.sharding
    if (jobs > 1 or executor != "local") and (sharding is None or (sharding.shards == 1 and sharding.windows == 1)):
        flag = "--jobs" if jobs > 1 else "--executor"
        err.print(f"warning: {flag}: {escape(str(rs.file))} has no shards or time windows (sharding:), so it runs as "
                  "one simulation in this process", highlight=False, soft_wrap=True)
    if replications > 1 and sharding is not None and (sharding.shards > 1 or sharding.windows > 1):
        err.print(f"[red]error:[/red] --replications: {escape(str(rs.file))}: a sharded scenario (sharding:) already "
                  "gives intervals from its shards (sharding.sample_shards); run it with -R 1")
        raise typer.Exit(EXIT_INPUT_ERROR)


def _stepping_every_iteration(rs: Any) -> Any:
    """--exact: the resolved scenario with fast-forward off (same answers, every engine iteration simulated)."""
    import dataclasses

    sim = rs.scenario.sim.model_copy(update={"exact": True})
    return dataclasses.replace(rs, scenario=rs.scenario.model_copy(update={"sim": sim}))


def _simulate_and_write(rs: Any, target: Path, seed: int | None, plots: bool, quiet: bool, trace: Path | None,
                        trace_tasks: int, force: bool, show_timings: bool,
                        replications: int = 1, otlp: bool = False,
                        parallel: tuple[int, str, str | None] = (1, "local", None)) -> tuple[Any, float, Any]:
    """Simulate and write the run folder (and --trace); returns (metrics, simulation wall seconds, the
    replications of -R > 1 or None). Replication 0 is this run: its report is the folder's.

    The folder is checked and locked before simulating (a refused output path should not cost a run) and held until
    written; Ctrl-C leaves an earlier report there unchanged.
    """
    from simfactory.fleet import is_sharded, run_sharded
    from simfactory.metrics.otel import otlp_traces
    from simfactory.metrics.summary import compute_metrics
    from simfactory.outputs import check_output_file, output_folder
    from simfactory.report.replications import write_replications
    from simfactory.report.writer import build_run, write_trace
    from simfactory.sim.run import simulate

    started = time.perf_counter()
    with input_errors(), output_folder(target, "run") as folder:
        if trace is not None and abspath(trace).parent != abspath(target):
            check_output_file(trace, "--trace", force)
        try:
            with progress_bar(quiet, f"simulating {rs.scenario.name}") as progress:
                if is_sharded(rs):  # shards and windows simulated apart, merged, then measured (simfactory/fleet)
                    metrics, result = run_sharded(rs, seed, *parallel, progress=progress, trace_tasks=trace_tasks)
                else:
                    result = simulate(rs, seed=seed, progress=progress, keep_logs=trace_tasks)
                    metrics = None
            wall_s = time.perf_counter() - started
            metrics = metrics or compute_metrics(result, trace_tasks=trace_tasks)
            metrics_s = time.perf_counter() - started - wall_s
            reps = _replicate(rs, metrics.summary, seed, replications, quiet)
            inside = trace is not None and abspath(trace).parent == abspath(target)  # part of the run folder

            def build(tmp: Path) -> None:
                build_run(metrics, tmp, plots)
                if reps is not None:
                    write_replications(reps, tmp)
                if inside:
                    write_trace(metrics, tmp / trace.name, force=True)
                if otlp:
                    (tmp / "otlp.json").write_text(json.dumps(otlp_traces(result, trace_tasks)) + "\n")

            folder.replace(build)  # atomic: a temporary folder renamed into place
            if show_timings:
                err.print(f"timings: simulate {wall_s:.2f} s ({result.events:,} SimPy events), metrics {metrics_s:.2f} "
                          f"s, write {time.perf_counter() - started - wall_s - metrics_s:.2f} s", highlight=False)
            if trace is not None and not inside:
                write_trace(metrics, trace, force)
        except KeyboardInterrupt:
            if folder.swapped:
                rest = (f"; the trace {trace} was not (an earlier file there is unchanged)"
                        if trace is not None and not inside else ", whole")
                raise interrupted(f"the run was written to {target}{rest}") from None
            raise interrupted(f"nothing written to {target}" + (" (an earlier run there is unchanged)"
                                                                if folder.path.exists() else "")) from None
    return metrics, wall_s, reps


def _replicate(rs: Any, first_summary: dict[str, Any], seed: int | None, replications: int, quiet: bool) -> Any:
    """-R N: replications 1 .. N-1 on seeds seed+1, ... beside the run just simulated (replication 0); None for
    -R 1."""
    from simfactory.plan.replicate import replicate

    if replications < 2:
        return None
    with progress_bar(quiet, f"replicating {rs.scenario.name} ({replications} runs)") as progress:
        return replicate(rs, replications, seed, first_summary=first_summary, progress=progress)


def _replications_json(reps: Any) -> dict[str, Any]:
    from simfactory.report.replications import replications_json

    return replications_json(reps)


def _print_replications(reps: Any) -> None:
    """-R N: each headline metric's mean and 95% t interval over the replications."""
    from simfactory.report.replications import ci_table_rows

    if reps is None:
        return
    t = Table(title=f"{reps.scenario}: {len(reps.seeds)} replications (seeds {reps.seeds[0]}..{reps.seeds[-1]}), "
                    "mean and 95% t interval")
    for col in ("metric", "mean", "± 95% CI"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for row in ci_table_rows(reps):
        t.add_row(*(escape(c) for c in row))
    print_table(t)


def _print_written(target: Path, metrics: Any, plots: bool, trace: Path | None, replicated: bool = False,
                   otlp: bool = False) -> None:
    """The closing lines: which files the run wrote."""
    extra = (", tasks.csv" if len(metrics.tasks) else "") + (", plots" if plots else "") + \
        (", replications.csv, ci.csv" if replicated else "") + (", otlp.json" if otlp else "")
    out.print(f"wrote {target}/ (summary.md, summary.json, requests.csv{extra})", highlight=False)
    if trace is not None:
        out.print(f"wrote {trace} (open it in ui.perfetto.dev)", highlight=False)


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
    first["trace"] = {"file": str(abspath(trace_file)), "format": check_trace_format(fmt), "speedup": speedup}
    doc["traffic"]["classes"] = [first]
    return resolve(validate(Scenario, doc, str(src)), src)


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
    print_table(t)
    if s["tasks"]:
        _print_tasks(s["tasks"])
    if s.get("quality"):
        _print_quality(s["quality"])
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
    _print_load(s)
    _print_forecast_accuracy(s["deployments"])
    per_m = c["usd_per_1m_output_tokens"]
    serving = c.get("serving_usd_per_hour", c["usd_per_hour"])
    out.print(
        f"cost: {format_usd(c['usd_per_hour'])}/hour, "
        + (f"{format_usd(serving)}/hour of it serving (the rest dedicated training), "
           if serving < c["usd_per_hour"] - 1e-9 else "")
        + (f"{format_usd(per_m)} per 1M output tokens, " if per_m is not None else "")
        + (f"{format_usd(c['usd_per_request'])} per request" if c["usd_per_request"] is not None else "no completed requests"),
        highlight=False,
    )
    _print_own_vs_rent(s)
    _print_cost_stack(s)
    _print_training_from_hardware(s)
    _print_sharding(s)
    out.print(f"simulated {w['end_s']:.0f} s in {wall_s:.1f} s wall ({s['sim']['events']:,} events)", highlight=False)


def _print_training_from_hardware(s: dict[str, Any]) -> None:
    """One line per training job whose speed comes from hardware: tokens/s, MFU, the step's parts, memory, cost."""
    for t in (s.get("finance") or {}).get("training", []):
        if "step_s" not in t:
            continue
        per_b = t.get("usd_per_billion_tokens")
        out.print(f"training {t['job']}: {t['tokens_per_s']:,.0f} tokens/s, MFU {t['mfu']:.1%}; step {t['step_s']:.3g} s "
                  f"= compute {t['step_compute_s']:.3g} + PP bubble {t['step_pp_bubble_s']:.3g} + exposed comm "
                  f"{t['step_exposed_comm_s']:.3g} (TP {t['step_tp_comm_s']:.3g}, DP {t['step_dp_comm_s']:.3g}); "
                  f"{t['memory_per_gpu_bytes'] / 1e9:.1f} of {t['hbm_per_gpu_bytes'] / 1e9:.1f} GB per GPU"
                  + (f"; {format_usd(per_b)} per 1B tokens" if per_b is not None else ""),
                  highlight=False, soft_wrap=True)


def _print_sharding(s: dict[str, Any]) -> None:
    """A sharded run: what was simulated, and the intervals of a sampled one (summary.json's `sharding`)."""
    sh = s.get("sharding")
    if not sh:
        return
    if "simulated_windows" in sh:
        line = (f"sampled in time: {len(sh['simulated_windows']):,} of {sh['windows']:,} windows simulated, every "
                "replica in each")
    else:
        line = f"sharded: {sh['simulated_shards']:,} of {sh['shards']:,} shards simulated"
        if sh["windows"] > 1:
            line += f", {sh['windows']} time windows each"
    ci = sh.get("ci95") or {}
    if ci:
        line += f" ({sh['stands_for']}); 95% CI: " + ", ".join(
            f"{k.removeprefix('latency_s.')} {v['estimate']:.4g} ± {v['ci95']:.2g}" for k, v in ci.items()
            if k in ("latency_s.ttft.p99", "latency_s.e2e.p99", "throughput.requests_per_s", "cost.usd_per_hour"))
    out.print(line, highlight=False)


def _print_cost_stack(s: dict[str, Any]) -> None:
    """The whole cost stack over the window (finance.cost_stack) and which of its lines lack an input."""
    stack = (s.get("finance") or {}).get("cost_stack")
    if not stack:
        return
    missing = len(stack["not_priced"])
    per_m = stack.get("usd_per_1m_tokens")
    out.print(f"cost stack: {format_usd(stack['total_usd'])} in the window ({format_usd(stack['total_usd_per_month'])}"
              "/month" + (f", {format_usd(per_m)} per 1M tokens" if per_m is not None else "") + ")"
              + (f"; {missing} line(s) not priced (no input): see summary.md" if missing else "; every line priced"),
              highlight=False, soft_wrap=True)


def _print_own_vs_rent(s: dict[str, Any]) -> None:
    """Each owned pool's verdict from the one decision model (the same sentence as summary.md, report.html and the
    xlsx TCO sheet); a cloud pool's hypothetical purchase stays in the reports."""
    for p in (s.get("finance") or {}).get("tco", {}).get("pools", []):
        if p.get("location") == "on_prem" and p.get("verdict"):
            out.print(f"own vs rent ({p['pool']}): {p['verdict']}", highlight=False, soft_wrap=True)


def _print_load(s: dict[str, Any]) -> None:
    """Each pool's load (demand / capacity: what energy, tokens per joule and the TCO use), then the replicas' busy
    fraction, labelled for what it is."""
    loads = [f"{p['pool']} {p['load_fraction']:.2f}" for p in s["cost"]["pools"] if p.get("load_fraction") is not None]
    if loads:
        out.print(f"load (demand / capacity): {', '.join(loads)}", highlight=False)
    busy = [r["busy_frac"] for r in s["replicas"] if r["busy_frac"] is not None]
    if busy:
        out.print(f"busy fraction (share of time a replica had work): mean {sum(busy) / len(busy):.2f}, "
                  f"max {max(busy):.2f}", highlight=False)
    fronts = [f"{name} {frac:.2f}" for name, frac in s["front_end"].get("busy_frac", {}).items() if frac is not None]
    if fronts:  # near 1: the API server's CPU, not the GPUs, sets the throughput
        out.print(f"front end busy (share of its cores' time): {', '.join(fronts)}", highlight=False)
        full = [name for name, frac in s["front_end"]["busy_frac"].items() if frac is not None and frac >= 0.9]
        if full:
            out.print(f"note: the API server, not the GPUs, limits {', '.join(full)}: more front_end_work."
                      "cores_per_replica (API worker processes) or replicas raise what it can stream", highlight=False)


def _print_forecast_accuracy(deployments: list[dict[str, Any]]) -> None:
    """How far each kind of forecast the deployments rest on has been from published measurements (summary.md's
    Forecast accuracy table), a line per kind."""
    named = [(name, a) for d in deployments for name, a in forecast_sides(d) if a is not None]
    for line in forecast_check_lines(named):
        out.print(line, highlight=False, soft_wrap=True)
    problem = next((d["forecast_accuracy_unavailable"] for d in deployments if d.get("forecast_accuracy_unavailable")),
                   None)
    if problem:
        out.print(f"forecast check unavailable: {problem}", highlight=False, soft_wrap=True)


def _s(x: Any) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _print_tasks(tasks: dict[str, Any]) -> None:
    lat = Table(title="agent tasks: compound latency of completed tasks (s)")
    for col in ("class", "tasks", "completed", "failed", "timed out", "p50", "p90", "p99", "$/successful task, all-in"):
        lat.add_column(col, justify="left" if col == "class" else "right")
    bd = Table(title="critical-path breakdown (mean s per completed task)")
    cats = tuple(next(iter(tasks.values()))["breakdown_mean_s"])
    for col in ("class", *cats):
        bd.add_column(col, justify="left" if col == "class" else "right")
    for name, b in tasks.items():
        per = b["cost_usd"]["per_successful_task_fully_loaded"]  # idle accelerators and reviewer seats included
        rates = b["outcome_rates"]
        lat.add_row(
            name, f"{b['tasks']:,}", f"{rates['completed']:.1%}", f"{rates['failed']:.1%}", f"{rates['timed_out']:.1%}",
            *(_s(b["latency_s"][k]) for k in ("p50", "p90", "p99")),
            format_usd(per),
        )
        bd.add_row(name, *(_s(b["breakdown_mean_s"][k]) for k in cats))
    print_table(lat)
    print_table(bd)


def _print_quality(q: dict[str, Any]) -> None:
    """One line per answering deployment (answers accepted), one per class (cost per successful task taken apart)."""
    for d in q["deployments"]:
        out.print(f"answer quality: {d['deployment']} ({d['model']} {d['dtype']}) accepted {d['accepted']:,} of "
                  f"{d['answers']:,} answers ({d['success_rate']:.1%})", highlight=False)
    for name, d in q["decomposition"].items():
        if d["usd_per_successful_task_fully_loaded"] is None:
            continue
        out.print(f"cost per successful task ({name}): {format_usd(d['usd_per_task_fully_loaded'])} per task / "
                  f"{d['task_success_rate']:.1%} success = {format_usd(d['usd_per_successful_task_fully_loaded'])}, "
                  f"{format_usd(d['on_failed_tasks_usd_per_success'])} of it on failed tasks", highlight=False,
                  soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `validate` and `run` to the top-level app."""
    app.command()(validate)
    app.command()(run)
