"""Throughput per GPU vs interactivity (issue #23): the curve used to compare frontier serving setups.

Each point is one sweep row (a closed-loop concurrency): x = tokens/s per user = 1 / mean TPOT, y = output
tokens/s per GPU = fleet output throughput / GPUs in the scenario's pools. One curve per setup (scenario).

    simfactory sweep scenarios/frontier-r1-fp8-8xh200.yaml --grid GRID.yaml --out sweeps/h200
    simfactory frontier scenarios/frontier-r1-fp8-8xh200.yaml=sweeps/h200 ... --out sweeps/curve
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from simfactory.errors import InputError
from simfactory.inputs import MAX_TABLE_BYTES, read_input_text
from simfactory.outputs import restore_set_aside
from simfactory.report.plots import _finish
from simfactory.resolve.files import load_scenario

CONCURRENCY = "param.traffic.arrival.concurrency"
TPOT = "latency_s.tpot.mean"
THROUGHPUT = "throughput.output_tokens_per_s"
USD_PER_1M = "cost.usd_per_1m_output_tokens"


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def frontier_curve(rows: Iterable[Mapping[str, Any]], gpus: int) -> list[dict[str, float]]:
    """One point per sweep row that ran (no error, a positive mean TPOT), sorted by concurrency.

    Replications of one concurrency are averaged (x and y separately)."""
    if gpus <= 0:
        raise ValueError(f"gpus must be positive, got {gpus}")
    by_c: dict[float, list[tuple[float, float, float | None]]] = {}
    for r in rows:
        tpot, tput, conc = _num(r.get(TPOT)), _num(r.get(THROUGHPUT)), _num(r.get(CONCURRENCY))
        if str(r.get("error") or "").strip() not in ("", "nan", "None") or not tpot or tput is None or conc is None:
            continue
        by_c.setdefault(conc, []).append((1.0 / tpot, tput / gpus, _num(r.get(USD_PER_1M))))
    points = []
    for conc in sorted(by_c):
        pts = by_c[conc]
        usd = [u for _, _, u in pts if u is not None]
        points.append({"concurrency": conc,
                       "tokens_per_s_per_user": sum(p[0] for p in pts) / len(pts),
                       "output_tokens_per_s_per_gpu": sum(p[1] for p in pts) / len(pts),
                       "usd_per_1m_output_tokens": sum(usd) / len(usd) if usd else float("nan")})
    return points


def scenario_gpus(scenario: Path) -> int:
    """Accelerators in the scenario's pools (the denominator of 'per GPU'); the file is read and validated as any
    scenario is (InputErrors naming file and field)."""
    return sum(p.count for p in load_scenario(scenario).pools)


def read_sweep(sweep_dir: Path) -> list[dict[str, str]]:
    """The rows of a `simfactory sweep --out` folder's results.csv."""
    path = Path(sweep_dir) / "results.csv"
    restore_set_aside(Path(sweep_dir))  # a sweep a killed rewrite set aside is read where it was
    # a bounded regular file, read without blocking (a FIFO named results.csv hung the command; /dev/zero never ends)
    text = read_input_text(path, "SWEEP_DIR", MAX_TABLE_BYTES, "sweep's results.csv")
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(str(path), "SWEEP_DIR", f"cannot be read as a sweep's results.csv ({exc})") from None
    missing = [c for c in (CONCURRENCY, TPOT, THROUGHPUT) if rows and c not in rows[0]]
    if not rows or missing:
        raise InputError(str(path), "SWEEP_DIR", "is not a concurrency sweep: "
                         + (f"no column {', '.join(missing)}" if rows else "no rows"))
    return rows


def plot_frontier_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], path: Path | None = None) -> Any:
    """Draw one line per setup: tokens/s per user (x) vs output tokens/s per GPU (y), points labelled by concurrency."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in curves.items():
        xs = [p["tokens_per_s_per_user"] for p in pts]
        ys = [p["output_tokens_per_s_per_gpu"] for p in pts]
        ax.plot(xs, ys, marker="o", label=label)
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(f"{p['concurrency']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("interactivity: output tokens/s per user (1 / mean TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title("Throughput per GPU vs interactivity (point labels: concurrency)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path, dpi=120)


CSV_COLUMNS = ["setup", "concurrency", "tokens_per_s_per_user", "output_tokens_per_s_per_gpu", "usd_per_1m_output_tokens"]


def write_frontier(curves: Mapping[str, Sequence[Mapping[str, float]]], folder: Path) -> None:
    """frontier-curve.png and frontier-curve.csv (the points) into an output folder."""
    plot_frontier_curves(curves, folder / "frontier-curve.png")
    with (folder / "frontier-curve.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for label, pts in curves.items():
            for p in pts:
                w.writerow([label, f"{p['concurrency']:g}", f"{p['tokens_per_s_per_user']:.2f}",
                            f"{p['output_tokens_per_s_per_gpu']:.1f}", f"{p['usd_per_1m_output_tokens']:.3f}"])
