"""Run (or read) scenarios for regression: R replications -> flattened metrics per replication."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from simfactory.api import prepare, simulate_metrics
from simfactory.errors import InputError
from simfactory.inputs import MAX_SUMMARY_BYTES, check_input_file, first_non_finite, is_input_file
from simfactory.regress.flatten import flatten
from simfactory.report.run_report import read_summary

SCENARIO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # the scenario schema's name (config/scenario.py)


def collect(source: Path, replications: int, seed: int | None) -> tuple[str, list[dict[str, float]], dict[str, Any]]:
    """A scenario file (run it R times, seeds seed, seed+1, ...) or a run directory (its summary.json).
    Returns (scenario name, metrics per replication, provenance of the first)."""
    if _is_dir(source):
        summary = _run_summary(source)
        try:
            metrics = flatten(summary)
        except RecursionError:
            raise InputError(str(source / "summary.json"), "", "nested too deeply to be a run's summary") from None
        return _scenario_name(summary, source / "summary.json"), [metrics], summary.get("provenance", {})
    rs = prepare(source)
    base = rs.scenario.seed if seed is None else seed
    metrics, prov = [], {}
    for i in range(replications):
        summary = simulate_metrics(rs, seed=base + i, keep_logs=0, trace_tasks=0)[0].summary
        metrics.append(flatten(summary))
        prov = prov or summary["provenance"]
    return rs.scenario.name, metrics, prov


def _scenario_name(summary: dict[str, Any], path: Path) -> str:
    """The run's scenario name, which names its baseline file: a scenario's name as the scenario schema allows it
    (letters, digits, . _ -; no path separator, so a baseline is never written outside --baseline-dir)."""
    name = summary["scenario"]
    if not (isinstance(name, str) and SCENARIO_NAME.fullmatch(name)):
        raise InputError(str(path), "scenario", f"expected a scenario name (letters, digits, . _ -, at most 80, "
                                                f"as `simfactory run` writes), got {str(name)[:80]!r}")
    return name


def _is_dir(path: Path) -> bool:
    """Path.is_dir, except that a name the OS refuses (too long, a NUL byte) is "not a folder": the scenario
    loader then names the problem in one line."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _run_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's summary.json: a regular file of bounded size (a FIFO there would block the read), JSON
    simfactory could have written (no NaN or Infinity: its runs write finite numbers, and a baseline holding
    them compares as nothing or as an infinite change), with a scenario name."""
    path = run_dir / "summary.json"
    if is_input_file(path):
        check_input_file(path, "", MAX_SUMMARY_BYTES, "run summary")
    try:
        summary = read_summary(run_dir, required=("scenario",))
    except RecursionError:
        raise InputError(str(path), "", "JSON nested too deeply to read") from None
    if not isinstance(summary, dict):
        raise InputError(str(path), "", "expected a JSON object (the summary `simfactory run` writes)")
    where = first_non_finite(summary)
    if where is not None:
        raise InputError(str(path), where, "NaN or Infinity is not a number a run writes (and not valid JSON); "
                                           "run the scenario again")
    return summary
