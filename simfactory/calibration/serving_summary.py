"""The summary a serving benchmark prints (the figures `vllm bench serve` reports): request and token throughput
over the run, and mean / median / p99 of TTFT, TPOT, ITL and E2E over the successful requests.

ITL is the gap between consecutive streamed chunks of a request (the client's raw records): a server that sends
several tokens per chunk shows fewer, longer gaps, as in vllm bench serve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

METRICS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")


def _stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": float("nan"), "median": float("nan"), "p99": float("nan")}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p99": float(np.percentile(values, 99))}


def serving_summary(table: pd.DataFrame, raw: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput and latency figures of one measurement (the request table and the client's raw records)."""
    ok = table[table["ok"].astype(bool)]
    n = len(ok)
    if n:
        start = float(table["send_s"].min())
        end = float((ok["send_s"] + ok["e2e_s"]).max())
        duration = max(end - start, 1e-9)
    else:
        duration = float("nan")
    gaps = [np.diff(r["chunk_s"]) for r in raw if not r.get("error") and len(r.get("chunk_s", ())) > 1]
    itl = np.concatenate(gaps) if gaps else np.array([])
    out: dict[str, Any] = {
        "successful_requests": n,
        "failed_requests": int(len(table) - n),
        "duration_s": duration,
        "request_throughput_per_s": n / duration if n else 0.0,
        "output_token_throughput_per_s": float(ok["output_tokens"].sum()) / duration if n else 0.0,
        "total_token_throughput_per_s": float(ok["input_tokens"].sum() + ok["output_tokens"].sum()) / duration
        if n else 0.0,
    }
    for m in ("ttft_s", "tpot_s", "e2e_s"):
        vals = ok[m].to_numpy(dtype=float)
        out[m] = _stats(vals[np.isfinite(vals)])
    out["itl_s"] = _stats(itl)
    return out


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows in vllm bench serve's order, milliseconds for latencies."""
    rows = [("Successful requests", f"{summary['successful_requests']:,}"),
            ("Failed requests", f"{summary['failed_requests']:,}"),
            ("Benchmark duration (s)", f"{summary['duration_s']:.2f}"),
            ("Request throughput (req/s)", f"{summary['request_throughput_per_s']:.2f}"),
            ("Output token throughput (tok/s)", f"{summary['output_token_throughput_per_s']:.2f}"),
            ("Total token throughput (tok/s)", f"{summary['total_token_throughput_per_s']:.2f}")]
    names = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL", "e2e_s": "E2E"}
    for m in METRICS:
        for stat in ("mean", "median", "p99"):
            rows.append((f"{stat.capitalize()} {names[m]} (ms)", f"{summary[m][stat] * 1e3:.2f}"))
    return rows
