"""`simfactory report`: the HTML, Markdown, finance CSV and .xlsx report of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from simfactory.cli.common import input_errors, out as console


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `simfactory run`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file (default RUN_DIR/report.html).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an --out file simfactory did not write.")] = False,
) -> None:
    """Write a self-contained HTML report (plots embedded, sortable tables), the same as Markdown, finance CSVs and
    an .xlsx workbook, from a finished run.

    Example: simfactory run scenarios/tco-onprem.yaml --out runs/onprem && simfactory report runs/onprem
    """
    from simfactory.report.run_report import build_report

    with input_errors():
        paths = build_report(run_dir, out, force)
    if len(paths) > 1:
        console.print(f"wrote {paths[0]} (and report.md, finance_*.csv, finance.xlsx in {run_dir})", highlight=False)
    else:
        console.print(f"wrote {paths[0]} ({run_dir} was not written by simfactory, so nothing was added to it)",
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Add `report` to the top-level app."""
    app.command("report")(report_cmd)
