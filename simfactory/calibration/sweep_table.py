"""A concurrency sweep table (sweep_fit.py's input) from a benchmark's own result files, one file per
concurrency level: each file is imported into the request table (importers.py) and summarised the way AIPerf and
`vllm bench serve` summarise a run. TTFT is the mean over successful requests, ITL the mean time per output token
after the first (vLLM's TPOT, AIPerf's inter-token latency), throughput the output tokens over the run's span from
the first send to the last completion, lengths the means (the sweep fit simulates fixed lengths: a run whose lengths
vary is summarised with a note saying by how much)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from simfactory.calibration.importers import import_results, load_results_json
from simfactory.errors import InputError

LENGTH_CV_NOTE = 0.1  # lengths varying more than this (coefficient of variation) are worth a note


def vllm_max_concurrency(path: Path) -> int | None:
    """`max_concurrency` of a `vllm bench serve --save-result` file (null when the run set none)."""
    doc = load_results_json(path)
    value = doc.get("max_concurrency") if isinstance(doc, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or value != int(value):
        raise InputError(str(path), "max_concurrency", f"must be a whole number >= 1, got {value!r}")
    return int(value)


def _vllm_throughput(path: Path, fallback: float) -> float:
    """`output_throughput` of a vllm bench serve result (total output tokens / benchmark duration), if a number."""
    doc = load_results_json(path)
    value = doc.get("output_throughput") if isinstance(doc, dict) else None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else fallback


def sweep_row(requests: pd.DataFrame, concurrency: int, file: str) -> tuple[dict[str, float | int], list[str]]:
    """One sweep row from one run's request table, and notes (failures, varying lengths)."""
    ok = requests[requests["ok"].astype(bool)]
    if not len(ok):
        raise InputError(file, "", "no successful request to summarise")
    notes = []
    if len(ok) < len(requests):
        notes.append(f"{file}: {len(requests) - len(ok)} of {len(requests)} requests failed and are left out")
    lengths = {}
    for col in ("input_tokens", "output_tokens"):
        v = ok[col].to_numpy(dtype=float)
        lengths[col] = max(int(round(float(v.mean()))), 1 if col == "input_tokens" else 2)
        cv = float(v.std() / v.mean()) if v.mean() > 0 else 0.0
        if cv > LENGTH_CV_NOTE:
            notes.append(f"{file}: {col} vary (mean {v.mean():.0f}, coefficient of variation {cv:.2f}); the sweep fit "
                         "simulates every request at the mean")
    multi = ok[ok["output_tokens"] > 1]
    end = (ok["send_s"] + ok["e2e_s"]).max()
    span = float(end - ok["send_s"].min())
    row: dict[str, float | int] = {"concurrency": int(concurrency), **lengths,
                                   "ttft_s": float(ok["ttft_s"].mean()),
                                   "itl_s": float(multi["tpot_s"].mean()) if len(multi) else math.nan,
                                   "output_tokens_per_s": float(ok["output_tokens"].sum()) / span if span > 0 else math.nan}
    return row, notes


def sweep_from_results(paths: Sequence[Path], fmt: str,
                       concurrencies: Sequence[int] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The sweep table of result files (one per level) and its notes. Concurrency per file from `concurrencies`
    (in file order), else a vllm-bench file's own max_concurrency."""
    if concurrencies is not None and len(concurrencies) != len(paths):
        raise InputError("--concurrency", "", f"gives {len(concurrencies)} levels for {len(paths)} files: one per file, "
                                              "in the same order")
    rows, notes = [], []
    for i, path in enumerate(paths):
        c = concurrencies[i] if concurrencies is not None else (
            vllm_max_concurrency(Path(path)) if fmt == "vllm-bench" else None)
        if c is None:
            raise InputError(str(path), "max_concurrency" if fmt == "vllm-bench" else "--concurrency",
                             "the run's concurrency is not in the file: give --concurrency, one level per file")
        row, n = sweep_row(import_results(path, fmt), c, str(path))
        if fmt == "vllm-bench":  # its own throughput: output tokens over the benchmark's duration (send times may
            row["output_tokens_per_s"] = _vllm_throughput(Path(path), row["output_tokens_per_s"])  # be unrecorded)
        rows.append(row)
        notes += n
    table = pd.DataFrame(rows)
    dup = table.duplicated(["concurrency", "input_tokens", "output_tokens"])
    if dup.any():
        raise InputError(str(paths[int(np.flatnonzero(dup.to_numpy())[0])]), "", "repeats an earlier file's "
                         "concurrency and lengths: one file per level")
    return table.sort_values(["input_tokens", "output_tokens", "concurrency"]).reset_index(drop=True), notes
