"""`simfactory trace stats` and `trace fit`: inspect a public LLM trace, or fit a synthetic workload to it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from simfactory.cli.common import check_trace_format, err, input_errors, out

TraceFormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="azure | burstgpt | mooncake | sharegpt | vllm-bench")
]


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
    out.print(table)
    for line in trace.bad_rows[:20]:
        err.print(f"warning: {file}: {line}", highlight=False, soft_wrap=True)
    for line in st.get("warnings", []):
        err.print(f"warning: {file}: {line}", highlight=False, soft_wrap=True)
    if out_json is not None:
        with input_errors():
            write_text_output(out_json, json.dumps(json_with_generator(st), indent=1) + "\n", "--json", force)


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
        trace = parse_trace(file, check_trace_format(fmt))  # type: ignore[arg-type]
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


def register(app: typer.Typer) -> None:
    """Add the `trace` group (stats, fit) to the top-level app."""
    trace_app = typer.Typer(
        help="Inspect public LLM traces and fit workloads to them.\n\nExample: simfactory trace stats azure.csv --format azure",
        no_args_is_help=True,
    )
    trace_app.command("stats")(trace_stats_cmd)
    trace_app.command("fit")(trace_fit_cmd)
    app.add_typer(trace_app, name="trace")
