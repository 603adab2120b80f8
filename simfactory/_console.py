"""The `simfactory` console script: the CLI behind a guard for Ctrl-C during start-up. Importing the CLI takes a
moment (pandas, SimPy, the commands); an interrupt then, before any command's own handling exists, printed a
KeyboardInterrupt traceback. Nothing has been written by then: one line, exit 130 (128 + SIGINT)."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> None:
    try:
        from simfactory.cli.main import console
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting: nothing was written\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    try:
        console()
    except KeyboardInterrupt:  # a command that has no handling of its own (each writer leaves earlier outputs intact)
        sys.stderr.write("interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
