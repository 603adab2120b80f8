"""`simfactory init` (write a first scenario from a few answers) and `simfactory examples` (the shipped ones)."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from simfactory.cli.common import EXIT_INPUT_ERROR, JSON_HELP, emit_json, err, input_errors, json_target, out, print_table
from simfactory.errors import InputError, InputErrors

INIT_TEMPLATE = """# yaml-language-server: $schema={schema}
# Written by `simfactory init`. Every field is documented in schemas/scenario.json and the README.
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
    location: Annotated[Optional[str], typer.Option(help="cloud or on_prem.")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="bf16, fp16, fp8, int8, int4 or fp4 (the SKU must support it).")] = None,
    non_interactive: Annotated[bool, typer.Option("--non-interactive", help="Use flags and defaults; ask nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented, valid scenario from a few answers (or flags), then validate it.

    Example: simfactory init --non-interactive --model llama-3.1-8b --sku h100-sxm --rate 20 -o my.yaml
    """
    from simfactory.outputs import check_output_file, draft_folder, stamp_text

    with input_errors():
        check_output_file(output, "--output", force=True)  # a folder, link or special file: never
    if output.exists() and not force:
        err.print(f"[red]error:[/red] {escape(str(output))}: exists (use --force to overwrite)")
        raise typer.Exit(EXIT_INPUT_ERROR)
    ask = not non_interactive and _interactive()
    checks = _answer_checks()
    checks["name"] = (checks["name"][0], output.stem, *checks["name"][2:])
    given = {"name": name, "model": model, "sku": sku, "replicas": replicas, "tp": tp, "rate": rate,
             "ttft": ttft_slo, "location": location, "dtype": dtype}
    with input_errors():  # a bad flag is refused before any question, naming the flag
        for key, value in given.items():
            if value is not None and key in checks:
                problem = checks[key][2](str(value))
                if problem:
                    raise InputError(f"--{FLAGS[key]}", "", problem)
    values: dict = {}
    with input_errors():  # a default that cannot be used (a name from an odd file name) is named, never a traceback
        for key, (prompt, default, check, convert) in checks.items():
            values[key] = convert(given[key]) if given[key] is not None else _ask(key, prompt, default, check, convert,
                                                                                 ask)
    values["count"] = values["replicas"] * values["tp"]
    values["e2e"] = max(30.0, values["ttft"] * 30)
    from simfactory.paths import SCHEMAS_DIR

    values["schema"] = (SCHEMAS_DIR / "scenario.json").resolve().as_uri()
    output.parent.mkdir(parents=True, exist_ok=True)
    with input_errors(), draft_folder(output, "--output") as folder:  # a hidden folder of ours, removed at the end
        draft = folder / output.name
        draft.write_text(stamp_text(INIT_TEMPLATE.format(**values), at_line=1), encoding="utf-8")
        _validate_draft(draft, output, values)
        check_output_file(output, "--output", force=True)  # again: never a folder, link or special file made meanwhile
        draft.replace(output)
    out.print(f"wrote {output} (valid); run it with: simfactory run {output}", highlight=False)


def _validate_draft(draft: Path, output: Path, values: dict) -> None:  # type: ignore[type-arg]
    """Load the draft as `run` will; a problem names the file asked for (the draft is an implementation detail)
    and prints the answers given, to change what it names and run again."""
    from simfactory.api import prepare

    try:
        with input_errors():
            def named(e: InputError) -> InputError:
                return InputError(str(output), e.field, e.reason) if e.file == str(draft) else e

            try:
                prepare(draft)
            except InputError as e:
                raise named(e) from None
            except InputErrors as es:
                raise InputErrors([named(e) for e in es.errors]) from None
    except typer.Exit:
        flags = " ".join(f"--{FLAGS[k]} {shlex.quote(str(values[k]))}" for k in FLAGS)
        err.print(f"your answers, to change what the error names and run again: simfactory init --non-interactive "
                  f"{flags} -o {shlex.quote(str(output))}", highlight=False, markup=False, soft_wrap=True)
        raise


def _interactive() -> bool:
    """Questions only on a terminal: piped or scripted runs take flags and defaults."""
    return sys.stdin.isatty()


FLAGS = {"name": "name", "model": "model", "sku": "sku", "replicas": "replicas", "tp": "tp", "rate": "rate",
         "ttft": "ttft-slo", "location": "location", "dtype": "dtype"}


def _ask(key: str, prompt: str, default: str, check, convert, ask: bool):  # type: ignore[no-untyped-def]
    """One answer, checked as it is given: a bad one is explained and asked again (nothing asked before is lost)."""
    if not ask:
        problem = check(default)
        if problem is not None:
            raise InputError(f"--{FLAGS[key]}", "", f"the default: {problem}; give --{FLAGS[key]}")
        return convert(default)
    while True:
        answer = typer.prompt(prompt, default=default).strip()
        problem = check(answer)
        if problem is None:
            return convert(answer)
        err.print(f"  {problem}; try again", highlight=False, markup=False)


def _answer_checks() -> dict:  # type: ignore[type-arg]
    """Per answer: (question, default, check -> problem or None, convert), in the order asked."""
    import re

    from simfactory.config.profile import DType
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve.files import NON_PROFILE_FILES, available, load_models, search_dirs

    dirs = search_dirs(None, "hardware_profiles", PROFILES_DIR)
    models, skus = sorted(load_models(dirs)), available(dirs, exclude=NON_PROFILE_FILES)
    dtypes = list(DType.__args__)  # type: ignore[attr-defined]

    def one_of(options: list[str], what: str):  # type: ignore[no-untyped-def]
        return lambda a: None if a in options else f"unknown {what} {a!r} (choose from: {', '.join(options)})"

    def number(kind, low: float, what: str):  # type: ignore[no-untyped-def]
        def check(a: str) -> str | None:
            try:
                value = kind(a)
                if not math.isfinite(value):
                    return f"{what} must be a finite number, got {a}"
                return None if value >= low else f"{what} must be at least {low:g}, got {a}"
            except ValueError:
                return f"{what} must be a {'whole ' if kind is int else ''}number, got {a!r}"
        return check

    name_ok = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
    return {
        "name": ("scenario name", "scenario", lambda a: None if name_ok.match(a) else
                 f"a name is letters, digits, '.', '_' or '-' (up to 80), starting with a letter or digit; got {a!r}", str),
        "model": ("model", "llama-3.1-8b", one_of(models, "model"), str),
        "sku": ("accelerator", "h100-sxm", one_of(skus, "accelerator"), str),
        "dtype": ("weights dtype", "bf16", one_of(dtypes, "dtype"), str),
        "replicas": ("replicas", "2", number(int, 1, "replicas"), int),
        "tp": ("tensor parallel degree", "1", number(int, 1, "tp"), int),
        "rate": ("requests per second", "10", number(float, 0.001, "rate"), float),
        "ttft": ("TTFT SLO (s)", "1", number(float, 0.001, "the TTFT SLO"), float),
        "location": ("location (cloud or on_prem)", "cloud", one_of(["cloud", "on_prem"], "location"), str),
    }


def examples(
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """List the shipped scenarios with their one-line descriptions.

    Example: simfactory examples
    """
    from simfactory.config.loader import read_yaml
    from simfactory.paths import SCENARIOS_DIR

    json_target(out_json)
    emit_json(out_json, {"folder": str(SCENARIOS_DIR), "scenarios": [
        {"file": p.name, "description": str(read_yaml(p).get("description", ""))}
        for p in sorted(SCENARIOS_DIR.glob("*.yaml"))]})

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
