"""`simfactory trace stats` and `trace fit`: inspect a public LLM trace, or fit a synthetic workload to it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from simfactory.cli.common import (
    JSON_HELP, check_trace_format, emit_json, err, input_errors, json_target, out, print_table,
)
from simfactory.errors import InputError

TraceFormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="azure | burstgpt | mooncake | sharegpt | vllm-bench")
]


def trace_stats_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file.")],
    fmt: TraceFormatOpt,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a --json file simfactory did not write.")] = False,
) -> None:
    """Count, duration, rate over time, token percentiles, inter-arrival CV and prefix reuse of a trace.

    Example: simfactory trace stats AzureLLMInferenceTrace_conv.csv --format azure
    """
    from simfactory.traces.parse import parse_trace
    from simfactory.traces.stats import trace_stats

    with input_errors():
        json_target(out_json, force)
        trace = parse_trace(file, check_trace_format(fmt))  # type: ignore[arg-type]
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
    print_table(table)
    for line in trace.bad_rows[:20]:
        err.print(f"warning: {file}: {line}", highlight=False, soft_wrap=True)
    for line in st.get("warnings", []):
        err.print(f"warning: {file}: {line}", highlight=False, soft_wrap=True)
    emit_json(out_json, st, force)


def trace_fit_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file.")],
    fmt: TraceFormatOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Workload YAML to write (workloads/NAME.yaml).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an --output file simfactory did not write.")] = False,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (the fit's quality report)")] = None,
) -> None:
    """Fit a synthetic workload: measured length quantiles paired with the trace's rank correlation, and (for
    timestamped traces) a rate schedule with gamma or Weibull bursts inside each window, written into the
    workload file (a class uses it with `arrival: workload`). Prints how well each part fits.

    Example: simfactory trace fit AzureLLMInferenceTrace_code.csv --format azure -o workloads/azure-code.yaml
    """
    import yaml

    from simfactory.outputs import check_output_file, distinct_outputs, not_an_input, stamp_text, write_text_output
    from simfactory.traces.fit import fit_workload
    from simfactory.traces.parse import parse_trace

    with input_errors():
        distinct_outputs({"--output": output, "--json": out_json})
        not_an_input(output, "--output", [file])
        not_an_input(out_json, "--json", [file])
        check_output_file(output, "--output", force)
        json_target(out_json, force)
        trace = parse_trace(file, check_trace_format(fmt))  # type: ignore[arg-type]
        workload, report = fit_workload(trace, output.stem)
    text = stamp_text(f"# written by simfactory trace fit {file.name}\n"
                      "# a scenario class uses these lengths with `workload: NAME`, and the arrivals with `arrival: "
                      "workload`\n" + yaml.safe_dump(workload, sort_keys=False, default_flow_style=None, width=120))
    with input_errors():
        write_text_output(output, text, "--output", force)
    emit_json(out_json, report, force)
    print_table(_fit_table(report))
    out.print(f"wrote {output}", highlight=False)
    if "arrivals" not in report and trace.arrival_s is not None:
        err.print(f"note: {file}: too few distinct timestamps to fit an arrival process; the workload has lengths only",
                  highlight=False)


def trace_fit_agent_cmd(
    file: Annotated[Path, typer.Argument(help="OpenTelemetry traces (OTLP/JSON: `run --otlp`'s otlp.json, or an "
                                              "export from Jaeger, Tempo or Phoenix), one trace per agent task.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Agent workload YAML to write (workloads/NAME.yaml).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an --output file simfactory did not write.")] = False,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (the fit's report)")] = None,
) -> None:
    """Fit an agent workload to traced tasks: per step (a span key) how often and how many times it runs, its
    fan-out, its token or duration quantiles; LLM steps name their model as the role a scenario maps to a
    deployment (traffic.classes[].targets). Prints the steps and the task arrivals fitted.

    Example: simfactory trace fit-agent runs/support/otlp.json -o workloads/support-traced.yaml
    """
    import yaml

    from simfactory.outputs import check_output_file, distinct_outputs, not_an_input, stamp_text, write_text_output
    from simfactory.traces.otel_fit import fit_agent

    with input_errors():
        distinct_outputs({"--output": output, "--json": out_json})
        not_an_input(output, "--output", [file])
        not_an_input(out_json, "--json", [file])
        check_output_file(output, "--output", force)
        json_target(out_json, force)
        workload, report = fit_agent(file, output.stem)
    roles = ", ".join(f"{r}: DEPLOYMENT" for r in report["roles"])
    text = stamp_text(f"# written by simfactory trace fit-agent {file.name}\n"
                      f"# a scenario class uses it with `workload: {output.stem}` and `targets: {{{roles}}}`\n"
                      + yaml.safe_dump(workload, sort_keys=False, default_flow_style=None, width=120))
    with input_errors():
        write_text_output(output, text, "--output", force)
    emit_json(out_json, report, force)
    table = Table(title=f"{report['traces']} traced tasks: steps in order")
    for col in ("step", "kind", "in traces", "mean count"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for st in report["steps"]:
        table.add_row(escape(st["key"]), st["kind"], f"{st['in_traces']:,}", f"{st['mean_count']:.2f}")
    print_table(table)
    if "arrival" in report:
        out.print(f"task arrivals: {report['arrival']}", highlight=False, soft_wrap=True)
    out.print(f"wrote {output}", highlight=False)


def _fit_table(report: dict) -> Table:
    """The fit's quality: lengths (KS distance, median, p99, rank correlation) and, per arrival candidate, the
    index of dispersion of counts (trace / fitted) and the gap KS distance; the chosen one first."""
    table = Table(title="fit quality (trace / fitted)")
    table.add_column("part")
    table.add_column("measure")
    table.add_column("value", justify="right")
    ln = report["lengths"]
    table.add_row("input tokens", "KS distance", f"{ln['input_ks']:.3f}")
    table.add_row("", "median", f"{ln['input_p50_trace']:,.0f} / {ln['input_p50_fitted']:,.0f}")
    table.add_row("", "p99", f"{ln['input_p99_trace']:,.0f} / {ln['input_p99_fitted']:,.0f}")
    table.add_row("output tokens", "KS distance", f"{ln['output_ks']:.3f}")
    table.add_row("input vs output", "Spearman", f"{ln['spearman_trace']:.3f} / {ln['spearman_fitted']:.3f}")
    if "arrivals" in report:
        chosen = report["arrivals"]["chosen"]
        for c in [chosen] + [c for c in report["arrivals"]["candidates"] if c != chosen]:
            mark = "chosen: " if c is chosen else ""
            name = f"{mark}{c['window_s']:g} s windows, {c['gaps']} cv {c['cv']:g}"
            idc = ", ".join(f"{k} {a:g}/{b:g}" for k, (a, b) in c["index_of_dispersion"].items())
            table.add_row(name, "dispersion", idc or "-")
            table.add_row("", "gap KS / score", f"{c['gap_ks']:.3f} / {c['score']:.3f}")
    return table


def trace_compare_cmd(
    file: Annotated[Path, typer.Argument(help="Trace file (with timestamps).")],
    fmt: TraceFormatOpt,
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="The fleet: its first class's target serves both.")],
    speedups: Annotated[list[float], typer.Option("--speedup", help="A load: the trace replayed k times faster (and the "
                                                  "fitted arrivals run k times faster). Repeat for several loads.")],
    seeds: Annotated[int, typer.Option("--seeds", min=1, max=20, help="Runs of the fitted workload per load (mean).")] = 3,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="Exit 1 when a percentile is further off "
                                             "than this fraction.")] = 0.20,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a --json file simfactory did not write.")] = False,
) -> None:
    """Does the fitted workload stand in for the trace? Simulates the trace's replay and `trace fit`'s workload on
    the same fleet at each load and prints TTFT and end-to-end p50 / p99 (ms) of both, and the error. Exit 1 when
    an error passes --tolerance.

    Example: simfactory trace compare AzureLLMInferenceTrace_conv.csv -f azure -s scenarios/default.yaml --speedup 1 --speedup 10
    """
    import dataclasses

    from simfactory.traces.compare import compare_fit

    with input_errors():
        json_target(out_json, force)
        if not speedups or any(k <= 0 for k in speedups):
            raise InputError("--speedup", "value", "give one or more positive speedups (1 replays the trace as recorded)")
        rows = compare_fit(scenario, file, check_trace_format(fmt), sorted(speedups), seeds)
    table = Table(title=f"{file.name} on {scenario.name}: replay vs fitted workload",
                  caption=f"queue: the replay's mean waiting requests (load); fitted: mean of {seeds} seeds; spread: "
                  "their (max - min) / mean")
    for col in ("speedup", "queue", "metric", "replay ms", "fitted ms", "error", "spread"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    worst = 0.0
    for r in rows:
        first = True
        for key, value in r.replay.items():
            err_frac = r.errors.get(key)
            worst = max(worst, abs(err_frac or 0.0))
            table.add_row(f"{r.speedup:g}x" if first else "", f"{r.queue_mean:.2f}" if first else "",
                          key.removesuffix("_s").replace("_", " "), f"{value * 1000:,.1f}",
                          f"{r.fitted[key] * 1000:,.1f}", "n/a" if err_frac is None else f"{err_frac:+.1%}",
                          f"{r.fitted_spread[key]:.1%}")
            first = False
    print_table(table)
    emit_json(out_json, {"trace": str(file), "format": fmt, "scenario": str(scenario), "seeds": seeds,
                         "loads": [dataclasses.asdict(r) for r in rows]}, force)
    verdict = "within" if worst <= tolerance else "outside"
    out.print(f"largest error {worst:.1%}: {verdict} the {tolerance:.0%} tolerance", highlight=False)
    if worst > tolerance:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `trace` group (stats, fit) to the top-level app."""
    trace_app = typer.Typer(
        help="Inspect public LLM traces and fit workloads to them.\n\nExample: simfactory trace stats azure.csv --format azure",
        no_args_is_help=True,
    )
    trace_app.command("stats")(trace_stats_cmd)
    trace_app.command("fit")(trace_fit_cmd)
    trace_app.command("fit-agent")(trace_fit_agent_cmd)
    trace_app.command("compare")(trace_compare_cmd)
    app.add_typer(trace_app, name="trace")
