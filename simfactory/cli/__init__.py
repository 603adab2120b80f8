"""The `simfactory` command: a thin Typer layer over simfactory.api. Bad input -> one line per error, exit 2.

`simfactory.cli:console` is the CLI with a net for input errors (the console script, simfactory._console, guards it
for Ctrl-C during start-up). Modules inside this package import simfactory.cli.common (and main.py the command
modules), never this package, so importing it has no cycle.
"""

from __future__ import annotations

from simfactory.cli.common import EXIT_INPUT_ERROR, err, input_errors, out
from simfactory.cli.main import app, console

__all__ = ["EXIT_INPUT_ERROR", "app", "console", "err", "input_errors", "out"]
