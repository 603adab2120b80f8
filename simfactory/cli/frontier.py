"""`simfactory frontier`: throughput per GPU vs interactivity, one curve per setup, from concurrency sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simfactory.cli.common import input_errors, out
from simfactory.errors import InputError


def frontier_cmd(
    curves: Annotated[list[str], typer.Argument(
        metavar="SCENARIO=SWEEP_DIR...",
        help="A scenario file and the `simfactory sweep --out` folder of its concurrency sweep, per setup.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder: frontier-curve.png and frontier-curve.csv.")],
) -> None:
    """Plot output tokens/s per GPU against tokens/s per user (1 / mean TPOT), one curve per setup.

    Example: simfactory frontier scenarios/frontier-r1-fp8-8xh200.yaml=sweeps/fp8-8xh200 --out sweeps/curve
    """
    from simfactory.outputs import check_output_dir, output_folder
    from simfactory.report.frontier import frontier_curve, read_sweep, scenario_gpus, write_frontier

    with input_errors():
        check_output_dir(out_dir, "--out", "frontier")
        points: dict[str, list[dict[str, float]]] = {}
        for spec in curves:
            scenario, sep, sweep_dir = spec.partition("=")
            if not sep or not scenario or not sweep_dir:
                raise InputError(spec, "SCENARIO=SWEEP_DIR", "expected a scenario file, '=', and a sweep folder")
            points[Path(scenario).stem] = frontier_curve(read_sweep(Path(sweep_dir)), scenario_gpus(Path(scenario)))
        with output_folder(out_dir, "frontier") as folder:
            folder.replace(lambda tmp: write_frontier(points, tmp))
    out.print(f"wrote {out_dir}/ (frontier-curve.png, frontier-curve.csv)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("frontier")(frontier_cmd)
