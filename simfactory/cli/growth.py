"""`simfactory plan-growth`: a month-by-month capacity and commitment plan for a growing, uncertain demand. Thin:
parse flags, call the library (simfactory/plan/growth.py, report/growth.py), print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from simfactory.cli.common import JSON_HELP, emit_json, err, input_errors, json_target, out, print_table


def plan_growth_cmd(
    growth: Annotated[Path, typer.Argument(help="Growth plan YAML (e.g. scenarios/growth/assistant-24m.yaml).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("runs/growth"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines; the result only.")] = False,
    out_json: Annotated[Optional[str], typer.Option("--json", help=JSON_HELP + " (growth-plan.json's content)")] = None,
) -> None:
    """Plan capacity and commitments month by month for a demand that grows with uncertainty.

    From a growth file (base scenario, demand forecast with its uncertainty, allowed options) and the price book
    (prices, lead times, availability): what to buy, what to reserve for 1 or 3 years, what to rent on demand or
    on spot, minimizing the expected cost over the demand futures while serving every month's demand at the SLOs;
    with the P10 / P90 cost and the capacity stranded in each. Writes growth-plan.csv / .md / .xlsx / .json and
    growth-fan.png.

    Example: simfactory plan-growth scenarios/growth/assistant-24m.yaml -o runs/growth
    """
    from simfactory.outputs import check_output_dir, output_folder
    from simfactory.paths import shipped_fallback
    from simfactory.plan.growth import load_growth, plan_growth
    from simfactory.report.growth import FILES, growth_doc, summary_table, write_growth

    path = Path(shipped_fallback(growth))
    with input_errors():
        spec = load_growth(path)
        check_output_dir(out_dir, "--out", "plan-growth")
    json_target(out_json, inputs=[growth], out_dir=out_dir)
    say = (lambda text: None) if quiet or out_json == "-" else (lambda text: err.print(text, highlight=False))
    with input_errors(), output_folder(out_dir, "plan-growth") as folder:
        gp = plan_growth(spec, str(path), say)
        say("writing the report and the fan chart")
        folder.replace(lambda tmp: write_growth(gp, tmp))
    doc = growth_doc(gp)
    for w in gp.warnings:
        err.print(f"warning: {w}", highlight=False, soft_wrap=True)
    print_table(_table(f"{gp.spec.name}: {gp.sku} accelerators and cost by month ({gp.provider} for cloud)",
                       *summary_table(gp, doc)))
    for line in doc["advice"]:
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"wrote {out_dir}/ ({', '.join(FILES)})", highlight=False)
    emit_json(out_json, doc)


def _table(title: str, heads: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title)
    for i, h in enumerate(heads):
        t.add_column(h, justify="left" if i == 1 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def register(app: typer.Typer) -> None:
    """Add `plan-growth` to the top-level app."""
    app.command("plan-growth")(plan_growth_cmd)
