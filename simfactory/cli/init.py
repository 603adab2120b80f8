"""`simfactory init` (write a first scenario from a few answers) and `simfactory examples` (the shipped ones)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from simfactory.cli.common import EXIT_INPUT_ERROR, err, input_errors, out, print_table
from simfactory.errors import InputError, InputErrors

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
    from simfactory.paths import SCHEMAS_DIR

    values["schema"] = (SCHEMAS_DIR / "scenario.json").resolve().as_uri()
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
    print_table(table)


def register(app: typer.Typer) -> None:
    """Add `init` and `examples` to the top-level app."""
    app.command()(init)
    app.command()(examples)
