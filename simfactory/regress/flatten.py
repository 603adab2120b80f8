"""A summary.json -> {dotted.metric.path: number}: the metrics regression compares."""

from __future__ import annotations

import math
from typing import Any

# Not outputs of the model: identity, inputs and bookkeeping.
EXCLUDED_PREFIXES = ("schema_version", "simfactory_version", "provenance", "input_warnings", "scenario", "description", "seed",
                     "window.warmup_s", "window.horizon_s", "sim.", "cost.pools.")
# Keys anywhere in the tree that are not outputs either: a deployment's forecast evidence (and its disaggregated
# prefill side's) is the fidelity record's (calibrate/fidelity/recorded.json, guarded by tests/test_fidelity.py),
# not this run's
EXCLUDED_KEYS = ("forecast_accuracy", "prefill_forecast_accuracy")


def flatten(summary: dict[str, Any], within: tuple[str, ...] | None = None) -> dict[str, float]:
    """within: only the paths that start with one of these, in the same order; the subtrees that cannot hold one
    are not walked (a sweep point's headline reads a few of a summary's thousand numbers)."""
    if within is None:
        found = numbers(summary)
    else:
        found = {}
        _walk_within(summary, "", found, within)
    return {k: v for k, v in found.items() if not any(k == p or k.startswith(p) for p in EXCLUDED_PREFIXES)
            and not any(key in k.split(".") for key in EXCLUDED_KEYS)}


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


def _walk_within(node: Any, prefix: str, out: dict[str, float], within: tuple[str, ...]) -> None:
    """_walk below the children whose paths start with one of `within`, and into those that lead to one."""
    if isinstance(node, dict):
        children: Any = ((f"{prefix}.{k}" if prefix else str(k), v) for k, v in node.items())
    elif isinstance(node, list):
        children = ((f"{prefix}.{i}", v) for i, v in enumerate(node))
    else:
        return  # a number on no path of `within`
    for path, v in children:
        if path.startswith(within):
            _walk(v, path, out)
        elif any(p.startswith(f"{path}.") for p in within):
            _walk_within(v, path, out, within)
