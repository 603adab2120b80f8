"""The `simfactory` Typer app: the --version callback and every command group, registered in help order.

The only module that knows all the others: command modules import simfactory.cli.common, never each other.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Optional

import typer
import typer.core

from simfactory.cli.calibrate import register as register_calibrate
from simfactory.cli.calibrate_run import register as register_calibrate_run
from simfactory.cli.common import err, out
from simfactory.cli.compare import register as register_compare
from simfactory.cli.fidelity import register as register_fidelity
from simfactory.cli.frontier import register as register_frontier
from simfactory.cli.growth import register as register_growth
from simfactory.cli.init import register as register_init
from simfactory.cli.plan import register as register_plan
from simfactory.cli.regress import register as register_regress
from simfactory.cli.report import register as register_report
from simfactory.cli.run import register as register_run
from simfactory.cli.schema import register as register_schema
from simfactory.cli.sweep import register as register_sweep
from simfactory.cli.trace import register as register_trace
from simfactory.version import __version__

def _hide_flag_types() -> None:
    """Typer 0.29's help prints a type beside every parameter, `<bool>` beside an on/off flag (which takes no
    value, so the type only misleads): show types for options that take a value, none for flags."""
    shown = typer.core.TyperOption.display_type_rich

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()

app = typer.Typer(
    name="simfactory",
    help="Simulate and plan AI factories: LLM serving fleets, their latency, utilization and cost.",
    no_args_is_help=False,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"simfactory {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colors (bold stays; also NO_COLOR=1).")] = False,
) -> None:
    """simfactory: what-if simulation and TCO for LLM and agent serving fleets.

    Every command writes its result to files; --json FILE (or - for stdout) gives it as JSON; --quiet prints nothing
    but errors; request latencies are in ms in tables, task latencies in s, each header says which."""
    # per invocation (tests run many in one process): --json - silences stdout only for its own command
    out.quiet = False
    out.no_color = err.no_color = no_color or bool(os.environ.get("NO_COLOR"))


# the order commands are listed in `simfactory --help`
register_run(app)  # validate, run
register_compare(app)
register_trace(app)  # the trace group: stats, fit
register_fidelity(app)
register_schema(app)
register_init(app)  # init, examples
register_regress(app)  # regress and the baseline group
register_sweep(app)
register_frontier(app)  # after sweep: it plots sweeps
register_plan(app)
register_growth(app)  # plan-growth: after plan, whose capacity it reuses
register_report(app)
register_calibrate_run(register_calibrate(app))  # the calibrate group: serve, import, validate, then run, fit

def console() -> None:
    """The console entry (`simfactory`, `python -m simfactory`): every command turns bad input into one line and
    exit 2 itself; this is the net under them, so an input error one of them lets through is still a message,
    never a traceback."""
    from rich.markup import escape

    from simfactory.cli.common import (
        EXIT_INTERRUPTED,
        EXIT_OS_ERROR,
        EXIT_TERMINATED,
        err,
        input_errors,
        interrupt_told,
    )

    terminated: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:  # `kill`, `timeout`, a service stop: as Ctrl-C, so every
        terminated.append(signum)                        # writer cleans up and says what it left (it died silently)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with input_errors():
            app()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:  # the system refused a write or a read no check could foresee (a full disk): one line
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"[red]error:[/red] {escape(where)}{escape(e.strerror or str(e))}", highlight=False,
                  soft_wrap=True)
        sys.exit(EXIT_OS_ERROR)
    except SystemExit as e:  # Typer ends an interrupted command with a silent exit 130
        if e.code == EXIT_INTERRUPTED and not interrupt_told():
            err.print("interrupted: every output this command was writing is as it was before it, or complete; "
                      "never half-written (a partly built one is removed by the next write there)", highlight=False,
                      soft_wrap=True)
        if e.code == EXIT_INTERRUPTED and terminated:
            sys.exit(EXIT_TERMINATED)
        raise


if __name__ == "__main__":  # pragma: no cover
    console()
