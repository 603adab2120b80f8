"""Set scenario fields by dotted path (`deployments.0.replicas`, `deployments.llama8b.replicas`,
`traffic.arrival.rate_per_s`), refusing unknown paths with the nearest valid names."""

from __future__ import annotations

import copy
import difflib
from typing import Any

from simfactory.config.scenario import LEFT_OUT_MATTERS
from simfactory.errors import InputError

LEFT_OUT_NAMES = frozenset(name for names in LEFT_OUT_MATTERS.values() for name in names)
MAX_INDEX_DIGITS = 18  # a list index that fits int64; longer digit strings name no entry


def _step(node: Any, key: str, where: str, file: str, path: str) -> tuple[Any, Any]:
    """The child container and the key/index to address `key` in `node`."""
    if isinstance(node, list):
        # ASCII digits only: str.isdigit() also accepts "²" (int() refuses it), and 5,000 digits overflow
        # int()'s text guard; both would be a traceback instead of "no entry"
        if key.isascii() and key.isdigit() and len(key) <= MAX_INDEX_DIGITS and int(key) < len(node):
            return node, int(key)
        names = [x.get("name") for x in node if isinstance(x, dict)]
        if key in names:
            return node, names.index(key)
        choices = [str(i) for i in range(len(node))] + [str(n) for n in names if n]
        raise InputError(file, path, f"no entry {key!r} in {where or 'the scenario'} (valid: {', '.join(choices)})")
    if isinstance(node, dict):
        if key in node or key in LEFT_OUT_NAMES:  # a field scenario_document leaves out when unset (validation
            return node, key                       # refuses it where the section has no such field)
        near = difflib.get_close_matches(key, [str(k) for k in node], n=3, cutoff=0.5)
        valid = sorted(str(k) for k in node)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise InputError(file, path, f"unknown field {key!r} in {where or 'the scenario'} ({hint}valid: {', '.join(valid)})")
    raise InputError(file, path, f"{where} is a value, not a section")


def apply_overrides(doc: dict[str, Any], overrides: dict[str, Any], file: str) -> dict[str, Any]:
    """A copy of the scenario document (config/scenario.py scenario_document: every field but those whose absence
    means something) with the overrides set."""
    out = copy.deepcopy(doc)
    for path, value in overrides.items():
        parts = path.split(".")
        node: Any = out
        for i, key in enumerate(parts):
            where = ".".join(parts[:i])
            container, k = _step(node, key, where, file, path)
            if i == len(parts) - 1:
                container[k] = value
            else:
                node = container[k]
    return out


def check_paths(doc: dict[str, Any], paths: list[str], file: str) -> None:
    """Fail early, before any run, on a path that names no field."""
    for p in paths:
        apply_overrides(doc, {p: None}, file)
