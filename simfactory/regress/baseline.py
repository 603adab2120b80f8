"""Baseline files: small, reviewable JSON with each metric's values (one per replication)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simfactory.errors import InputError
from simfactory.inputs import (
    MAX_SUMMARY_BYTES,
    is_input_file,
    parse_json,
    read_input_text,
)
from simfactory.outputs import stamp_json, write_text_output

BASELINE_SCHEMA_VERSION = 1


def baseline_path(baseline_dir: Path, scenario: str) -> Path:
    return baseline_dir / f"{scenario}.json"


def by_metric(metrics: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-replication metric dicts -> {metric: [value per replication]}, metrics sorted."""
    keys = sorted(set().union(*metrics)) if metrics else []
    return {k: [m[k] for m in metrics if k in m] for k in keys}


def make_baseline(scenario: str, metrics: list[dict[str, float]], provenance: dict[str, Any]) -> dict[str, Any]:
    return {
        "baseline_schema_version": BASELINE_SCHEMA_VERSION,
        "scenario": scenario,
        "replications": len(metrics),
        "provenance": provenance,
        "metrics": by_metric(metrics),
    }


def write_baseline(path: Path, baseline: dict[str, Any]) -> None:
    """Atomically (a temporary renamed over it), stamped (stamp_json) so the next update can prove it wrote it; the
    caller has checked that an existing file is a baseline simfactory wrote, unchanged (or --force)."""
    write_text_output(path, stamp_json(baseline), "--baseline-dir", force=True)


def read_baseline(path: Path) -> dict[str, Any]:
    name = str(path)
    if not is_input_file(path):
        raise InputError(name, "", "baseline not found (create it with `simfactory baseline update`)")
    text = read_input_text(path, "", MAX_SUMMARY_BYTES, "baseline")
    try:
        data = parse_json(text, name)
    except ValueError as exc:
        raise InputError(name, "", f"corrupt baseline: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(name, "", "corrupt baseline: expected a JSON object")
    if data.get("baseline_schema_version") != BASELINE_SCHEMA_VERSION:
        raise InputError(name, "baseline_schema_version",
                         f"expected {BASELINE_SCHEMA_VERSION}, got {data.get('baseline_schema_version')!r}")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v) for v in metrics.values()
    ):
        raise InputError(name, "metrics", "corrupt baseline: expected {metric: [numbers]}")
    return data
