"""What every command shares: the consoles, exit codes, the InputError -> exit 2 translation and small helpers.

Command modules import this (and the library), never each other, so the CLI has no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from simfactory.errors import InputError, InputErrors

out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

def fit_table(table: Table, console: Console | None = None) -> Table:
    """The table as it fits the terminal (80 columns included), never cut with "...": as it is when it fits;
    transposed (a row per former column) when it does not and has few rows; else with cells wrapping."""
    console = console or out

    def natural_width(t: Table) -> int:  # unwrapped, as wide as it wants to be
        return Measurement.get(console, console.options.update_width(10_000), t).maximum

    if natural_width(table) <= console.width:
        return table
    if len(table.rows) <= 12:
        flipped = Table(title=table.title, caption=table.caption)
        first = table.columns[0]
        flipped.add_column(str(first.header))
        for cell in first._cells:
            flipped.add_column(str(cell), justify="right")
        for col in table.columns[1:]:
            flipped.add_row(str(col.header), *(str(c) for c in col._cells))
        if natural_width(flipped) <= console.width:
            return flipped
        table = flipped
    for col in table.columns:
        col.overflow = "fold"
    return table


def print_table(table: Table) -> None:
    """Print a table to stdout, fitted to the terminal (fit_table)."""
    out.print(fit_table(table))


JSON_HELP = "Also write the result as JSON to this file; '-' writes it to stdout (and nothing else goes there)."


def json_target(path: str | None, force: bool | None = None, inputs: list | None = None,  # type: ignore[type-arg]
                out_dir: Path | None = None) -> None:
    """Before any work: a --json FILE is checked (never one of the command's `inputs`, nor inside its --out folder
    `out_dir`; never replacing a file simfactory cannot prove it wrote unless --force; force None: the command has no
    --force to offer); '-' silences everything else on stdout, so the JSON can be piped."""
    from simfactory.outputs import check_output_file, distinct_outputs, not_an_input

    if path == "-":
        out.quiet = True
    elif path is not None:
        with input_errors():
            not_an_input(path, "--json", [i for i in inputs or [] if i is not None])
            distinct_outputs({"--json": path}, {"--out": out_dir})
            check_output_file(Path(path), "--json", bool(force), force is not None)


def emit_json(path: str | None, doc: dict, force: bool | None = None, generator: bool = True) -> None:  # type: ignore[type-arg]
    """The --json document (generator first, strict JSON: no NaN or infinity) to the file or to stdout ('-'). A
    file is stamped (generator, content_sha256: stamp_json) so a later run can prove it wrote it. generator=False
    on stdout for a document that names its writer itself (summary.json: simfactory_version, provenance)."""
    import json
    import sys

    from simfactory.outputs import json_finite, json_with_generator, stamp_json, write_text_output

    if path is None:
        return
    def plain(o: object) -> object:  # numpy scalars and arrays as JSON values (a non-finite number as null)
        return json_finite(o.tolist()) if hasattr(o, "tolist") else str(o)

    if path == "-":
        text = json.dumps(json_finite(json_with_generator(doc) if generator else doc), indent=1, allow_nan=False,
                          default=plain) + "\n"
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with input_errors():
        text = stamp_json(json_finite(json.loads(json.dumps(doc, default=plain))))
        write_text_output(Path(path), text, "--json", bool(force), force is not None)


EXIT_INPUT_ERROR = 2
EXIT_OS_ERROR = 1  # the system refused a read or write no check foresaw (a full disk, a vanished mount)
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # and for SIGTERM (128 + 15)
_told_interrupt: list[str] = []  # what a command said of its interruption (console() says something otherwise)


def interrupted(what: str) -> typer.Exit:
    """Say on stderr what an interruption (Ctrl-C) left, once; raise the result (exit 130). Typer turns an
    interruption into a silent exit 130; console() speaks for the commands that do not say more."""
    err.print(f"interrupted: {escape(what)}", highlight=False, soft_wrap=True)
    _told_interrupt.append(what)
    return typer.Exit(EXIT_INTERRUPTED)


def interrupt_told() -> bool:
    return bool(_told_interrupt)
TRACE_FORMATS = ("azure", "burstgpt", "mooncake", "sharegpt", "vllm-bench")


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


def abspath(p: Path) -> Path:
    """An absolute path without resolving links (resolve() raises on a loop of links; the readers refuse it)."""
    return Path(os.path.abspath(p))


def print_warnings(warnings: list[str], shown: int = 20) -> None:
    """The first `shown` warnings on stderr, then how many more there are (a long list buries the output)."""
    for w in warnings[:shown]:
        err.print(f"warning: {w}", highlight=False, soft_wrap=True)
    if len(warnings) > shown:
        err.print(f"warning: ... and {len(warnings) - shown} more (all listed in summary.json input_warnings)")


def check_trace_format(fmt: str) -> str:
    """`fmt` when it names a trace parser, else one error line and exit 2 (`run --trace-format`, `trace --format`)."""
    if fmt not in TRACE_FORMATS:
        err.print(f"[red]error:[/red] --format: unknown trace format {fmt!r} (formats: {', '.join(TRACE_FORMATS)})")
        raise typer.Exit(EXIT_INPUT_ERROR)
    return fmt


@contextmanager
def progress_bar(quiet: bool, label: str) -> Iterator[Callable[[float, float], None] | None]:
    """A simulated-seconds progress bar on a terminal's stderr; None (no bar) when quiet or piped."""
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


def known_deployment(sku: str, model: str, engine: str | None = None,
                     spec_file: Path | None = None) -> tuple[object, object]:
    """(model shape, SKU profile) for the calibrate commands' --sku, --model and --engine, each refused in one line
    naming its flag when the simulator does not know it (here, in ./hardware_profiles, or beside spec_file)."""
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve import load_models, load_profile, search_dirs

    dirs = search_dirs(spec_file, "hardware_profiles", PROFILES_DIR)
    models = load_models(dirs)
    if model not in models:
        raise InputError("--model", "", f"unknown model {model!r} (known: {', '.join(sorted(models))})")
    if engine is not None:
        check_engine(engine, spec_file)
    return models[model], load_profile(dirs, sku, "--sku", "")


def check_engine(engine: str, spec_file: Path | None = None) -> None:
    """--engine names an engine preset (here, in ./hardware_profiles, or beside spec_file), else one line."""
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve import load_engines, search_dirs

    engines = load_engines(search_dirs(spec_file, "hardware_profiles", PROFILES_DIR))
    if engine not in engines:
        raise InputError("--engine", "", f"unknown engine {engine!r}: a scenario could not use the profile "
                                         f"(engines: {', '.join(sorted(engines))})")


# a step's parts (hardware/step_table.py): short headers, so that the table fits 80 columns, and what each is
STEP_PARTS = {"overhead": ("ovh", "engine overhead"), "linear": ("GEMM", "linear layers"),
              "allreduce": ("AR", "all-reduce"), "logits": ("head", "LM head"),
              "decode_attention": ("dec", "decode attention"), "prefill_attention": ("pre", "prompt attention"),
              "attention": ("attn", "attention"), "communication": ("comm", "collectives"),
              "launch_wait": ("wait", "an eager prefill waiting for its kernel launches"),
              "absorbed": ("absb", "prompt attention in latent attention's absorbed form, beyond the tables' form"),
              "kv_up": ("kvup", "re-expanding cached tokens from the latent (KV up projection)"),
              "busiest_rank": ("rank", "what the attention rank holding the most prompt tokens adds"),
              "prefill_tokens": ("prompt", "per prompt token"), "decode_seqs": ("seqs", "per decoding sequence"),
              "kv_read": ("KV", "per KV token read"), "step": ("step", "the model's whole step"),
              "beside_training": ("train", "serving beside the training job")}


def step_table(name: str, table: dict[str, Any]) -> Table:
    """One deployment's step costs (simfactory.api.step_tables): a row per load, its parts where the step-time model
    has parts, all in ms; the lengths the loads were sized from in the title."""
    from rich import box

    rows = table["rows"]
    parts = list(dict.fromkeys(p for r in rows for p in (r["parts_ms"] or {})))
    notes = [table["note"]] if table.get("note") else []
    notes.append("; ".join(f"{STEP_PARTS[p][0]}: {STEP_PARTS[p][1]}" for p in parts if p in STEP_PARTS) if parts else
                 "this step-time model has no parts to show: its totals only")
    t = Table(title=f"{name}: one engine step, ms (decode B x K: B sequences reading K tokens of KV each; prefill N "
                    f"after C: an N-token prompt whose first C tokens are cached; "
                    f"{table['lengths']}: KV {table['context_tokens']:,}, prompt {table['prompt_tokens']:,})",
              caption="\n".join(notes), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("load", "step", "tok/s", *(STEP_PARTS.get(p, (p,))[0] for p in parts)):
        t.add_column(col, justify="left" if col == "load" else "right")
    for r in rows:
        own = r["parts_ms"] or {}
        t.add_row(r["load"], _ms(r["step_ms"]), f"{r['tokens_per_s']:,.0f}",
                  *(_ms(own[p]) if p in own else "" for p in parts))
    return t


def _ms(value: float) -> str:
    """Milliseconds as short as they read: one decimal under 100 ms, none above."""
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
