"""A concurrency sweep table (sweep_fit.py's input) from a benchmark's own result files, one file per
concurrency level: each file is imported into the request table (importers.py) and summarised the way AIPerf and
`vllm bench serve` summarise a run. TTFT is the mean over successful requests, ITL the mean time per output token
after the first (vLLM's TPOT, AIPerf's inter-token latency), both also as medians over requests, throughput the
output tokens over the run's span from the first send to the last completion, lengths the means (the sweep fit simulates fixed lengths: a run whose lengths
vary is summarised with a note saying by how much), requests the run's request count where the format's runs measure
from a cold start (the sweep fit then simulates the level as the benchmark ran it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from simfactory.calibration.importers import FORMATS, import_results, load_results_json
from simfactory.errors import InputError

LENGTH_CV_NOTE = 0.1  # lengths varying more than this (coefficient of variation) are worth a note
# formats whose measured requests start with the clients' first burst: `vllm bench serve` sends its prompts from the
# start with at most max_concurrency in flight; AIPerf's profiling phase starts with C at once after any warm-up has
# drained. genai-perf (perf_analyzer's measurement windows over a running load) and GuideLLM are not known to.
COLD_START_FORMATS = ("vllm-bench", "aiperf")


def _whole(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 1 and value == int(value))


def _run_facts(path: Path, fmt: str) -> dict[str, object]:
    """What a results file says about its run as a whole (read once): one run per file (GuideLLM and genai-perf
    files can hold several, which one sweep row would merge); vllm-bench's max_concurrency, output_throughput and
    whether it recorded send times (without them the importer spreads the sends evenly, so a span is made up)."""
    if fmt not in ("vllm-bench", "genai-perf", "guidellm"):
        return {}
    doc = load_results_json(path)
    if not isinstance(doc, dict):
        return {}  # the importer names the shape it expects
    runs = {"genai-perf": "experiments", "guidellm": "benchmarks"}.get(fmt)
    if runs is not None and isinstance(doc.get(runs), list) and len(doc[runs]) > 1:
        raise InputError(str(path), runs, f"holds {len(doc[runs])} runs; a sweep takes one run per file, one level "
                                          "each: split it, or export each level on its own")
    if fmt != "vllm-bench":
        return {}
    c, tput = doc.get("max_concurrency"), doc.get("output_throughput")
    if c is not None and not _whole(c):
        raise InputError(str(path), "max_concurrency", f"must be a whole number >= 1, got {c}")
    ok_tput = isinstance(tput, (int, float)) and not isinstance(tput, bool) and math.isfinite(tput) and tput > 0
    return {"concurrency": None if c is None else int(c), "throughput": float(tput) if ok_tput else None,
            "send_times": isinstance(doc.get("start_times"), list)}


def sweep_row(requests: pd.DataFrame, concurrency: int, file: str) -> tuple[dict[str, float | int], list[str]]:
    """One sweep row from one run's request table, and notes (failures, varying lengths, missing TTFTs)."""
    ok = requests[requests["ok"].astype(bool)]
    if not len(ok):
        raise InputError(file, "", "no successful request to summarise")
    notes = []
    if len(ok) < len(requests):
        notes.append(f"{file}: {len(requests) - len(ok)} of {len(requests)} requests failed and are left out")
    lengths = {}
    for col in ("input_tokens", "output_tokens"):
        v = ok[col].to_numpy(dtype=float)
        lengths[col] = int(round(float(v.mean())))
        cv = float(v.std() / v.mean()) if v.mean() > 0 else 0.0
        if cv > LENGTH_CV_NOTE:
            notes.append(f"{file}: {col} vary (mean {v.mean():.0f}, coefficient of variation {cv:.2f}); the sweep fit "
                         "simulates every request at the mean")
    if lengths["output_tokens"] < 2 or lengths["input_tokens"] < 1:
        raise InputError(file, "output_tokens" if lengths["output_tokens"] < 2 else "input_tokens",
                         f"the run's mean is {lengths['output_tokens'] if lengths['output_tokens'] < 2 else 0} "
                         "tokens; a sweep level needs prompts and at least 2 output tokens (ITL)")
    if ok["ttft_s"].isna().any():
        notes.append(f"{file}: {int(ok['ttft_s'].isna().sum())} requests have no TTFT (not streamed) and are left "
                     "out of its mean and median")
    tpot = ok.loc[ok["output_tokens"] > 1, "tpot_s"]  # none: mean and median are NaN
    span = float((ok["send_s"] + ok["e2e_s"]).max() - ok["send_s"].min())
    row: dict[str, float | int] = {"concurrency": int(concurrency), **lengths,
                                   "ttft_s": float(ok["ttft_s"].mean()), "itl_s": float(tpot.mean()),
                                   "ttft_median_s": float(ok["ttft_s"].median()), "itl_median_s": float(tpot.median()),
                                   "output_tokens_per_s": float(ok["output_tokens"].sum()) / span if span > 0 else math.nan}
    return row, notes


def sweep_from_results(paths: Sequence[Path], fmt: str,
                       concurrencies: Sequence[int] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The sweep table of result files (one per level) and its notes. Concurrency per file from `concurrencies`
    (in file order), else a vllm-bench file's own max_concurrency."""
    if fmt not in FORMATS:
        raise InputError("--format", "", f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if concurrencies is not None and len(concurrencies) != len(paths):
        raise InputError("--concurrency", "", f"gives {len(concurrencies)} levels for {len(paths)} files: one per file, "
                                              "in the same order")
    rows, notes = [], []
    for i, path in enumerate(paths):
        facts = _run_facts(Path(path), fmt)
        c = concurrencies[i] if concurrencies is not None else facts.get("concurrency")
        if c is None:
            raise InputError(str(path), "max_concurrency" if fmt == "vllm-bench" else "--concurrency",
                             "the run's concurrency is not in the file: give --concurrency, one level per file")
        sent = import_results(path, fmt)  # type: ignore[call-overload]
        row, n = sweep_row(sent, int(c), str(path))
        if facts.get("throughput") is not None:  # vllm's own: output tokens over the benchmark's duration
            row["output_tokens_per_s"] = facts["throughput"]  # type: ignore[assignment]
        elif fmt == "vllm-bench" and not facts.get("send_times"):
            row["output_tokens_per_s"] = math.nan
            n.append(f"{path}: no start_times and no output_throughput, so no throughput (left empty)")
        row["requests"] = len(sent) if fmt in COLD_START_FORMATS else math.nan  # the benchmark's request count
        rows.append(row)
        notes += n
    if fmt not in COLD_START_FORMATS:
        notes.append(f"{fmt} runs are not known to measure from a cold start: the requests column is left empty (a "
                     "steady state); fill it with each level's request count if the measured requests began with "
                     "the clients' first burst")
    table = pd.DataFrame(rows)
    dup = table.duplicated(["concurrency", "input_tokens", "output_tokens"])
    if dup.any():
        raise InputError(str(paths[int(np.flatnonzero(dup.to_numpy())[0])]), "", "repeats an earlier file's "
                         "concurrency and lengths: one file per level")
    return table.sort_values(["input_tokens", "output_tokens", "concurrency"]).reset_index(drop=True), notes
