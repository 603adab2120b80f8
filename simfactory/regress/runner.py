"""Run (or read) scenarios for regression: R replications -> flattened metrics per replication."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simfactory.api import prepare
from simfactory.metrics.summary import compute_metrics
from simfactory.regress.flatten import flatten
from simfactory.report.run_report import read_summary
from simfactory.sim.run import simulate


def collect(source: Path, replications: int, seed: int | None) -> tuple[str, list[dict[str, float]], dict[str, Any]]:
    """A scenario file (run it R times, seeds seed, seed+1, ...) or a run directory (its summary.json).
    Returns (scenario name, metrics per replication, provenance of the first)."""
    if source.is_dir():
        summary = read_summary(source, required=("scenario",))
        return summary["scenario"], [flatten(summary)], summary.get("provenance", {})
    rs = prepare(source)
    base = rs.scenario.seed if seed is None else seed
    metrics, prov = [], {}
    for i in range(replications):
        summary = compute_metrics(simulate(rs, seed=base + i, keep_logs=0), trace_tasks=0).summary
        metrics.append(flatten(summary))
        prov = prov or summary["provenance"]
    return rs.scenario.name, metrics, prov
