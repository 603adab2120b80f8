"""A summary.json -> {dotted.metric.path: number}: the metrics regression compares."""

from __future__ import annotations

import math
from typing import Any

# Not outputs of the model: identity, inputs and bookkeeping.
EXCLUDED_PREFIXES = ("schema_version", "simfactory_version", "provenance", "input_warnings", "scenario", "description", "seed",
                     "window.warmup_s", "window.horizon_s", "sim.", "cost.pools.")


def flatten(summary: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in numbers(summary).items() if not any(k == p or k.startswith(p) for p in EXCLUDED_PREFIXES)}


def numbers(summary: dict[str, Any]) -> dict[str, float]:
    """Every number in a summary by its dotted path (list items by index; booleans as 0/1; NaN left out)."""
    out: dict[str, float] = {}
    _walk(summary, "", out)
    return out


def _walk(node: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, f"{prefix}.{i}", out)
    elif isinstance(node, bool):
        out[prefix] = float(node)
    elif isinstance(node, (int, float)):
        if not (isinstance(node, float) and math.isnan(node)):
            out[prefix] = float(node)
