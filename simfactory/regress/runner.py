"""Run (or read) scenarios for regression: R replications -> flattened metrics per replication."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simfactory.api import prepare
from simfactory.errors import InputError
from simfactory.metrics.summary import compute_metrics
from simfactory.regress.flatten import flatten
from simfactory.sim.run import simulate


def collect(source: Path, replications: int, seed: int | None) -> tuple[str, list[dict[str, float]], dict[str, Any]]:
    """A scenario file (run it R times, seeds seed, seed+1, ...) or a run directory (its summary.json).
    Returns (scenario name, metrics per replication, provenance of the first)."""
    if source.is_dir():
        path = source / "summary.json"
        try:
            summary = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(str(path), "", "not found: a run directory must hold summary.json") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(str(path), "", f"unreadable summary: {exc}") from None
        return summary["scenario"], [flatten(summary)], summary.get("provenance", {})
    rs = prepare(source)
    base = rs.scenario.seed if seed is None else seed
    metrics, prov = [], {}
    for i in range(replications):
        summary = compute_metrics(simulate(rs, seed=base + i, keep_logs=0), trace_tasks=0).summary
        metrics.append(flatten(summary))
        prov = prov or summary["provenance"]
    return rs.scenario.name, metrics, prov
