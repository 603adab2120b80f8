"""The summary a serving benchmark prints (the figures `vllm bench serve` reports): request and token throughput
over the run, and mean / median / p99 of TTFT, TPOT, ITL and E2E over the successful requests.

ITL is the gap between consecutive streamed chunks of a request (the client's raw records): a server that sends
several tokens per chunk shows fewer, longer gaps, as in vllm bench serve. Goodput is vllm bench serve's
(`--goodput ttft:MS tpot:MS e2el:MS`): successful requests per second that met every stated limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simfactory.errors import InputError

METRICS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")
GOODPUT_KEYS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2el": "e2e_s"}  # vllm bench serve's names -> the table's


def parse_goodput(items: list[str]) -> dict[str, float]:
    """`ttft:300 tpot:50` (milliseconds, as vllm bench serve takes them; several per item or one per item) ->
    {table column: limit in seconds}; anything else is an InputError naming --goodput."""
    limits: dict[str, float] = {}
    for word in " ".join(items).replace(",", " ").split():
        name, sep, value = word.partition(":")
        try:
            ms = float(value)
        except ValueError:
            ms = float("nan")
        if not sep or name not in GOODPUT_KEYS or not np.isfinite(ms) or ms <= 0:
            raise InputError("--goodput", "goodput", f"expected NAME:MILLISECONDS with NAME one of "
                                                     f"{', '.join(GOODPUT_KEYS)} and a positive number, got {word!r}")
        limits[GOODPUT_KEYS[name]] = ms / 1e3
    return limits


def _stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": float("nan"), "median": float("nan"), "p90": float("nan"), "p99": float("nan")}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99))}


def serving_summary(table: pd.DataFrame, raw: list[dict[str, Any]],
                    goodput: dict[str, float] | None = None) -> dict[str, Any]:
    """Throughput and latency figures of one measurement (the request table and the client's raw records), and the
    goodput when limits are given (seconds per table column). Repeats of a block run one after another, so the
    duration is the sum of each block-repeat's own span."""
    ok = table[table["ok"].astype(bool)]
    n = len(ok)
    duration = _duration_s(table) if n else float("nan")
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
    if goodput:
        met = np.ones(n, dtype=bool)
        for col, limit in goodput.items():
            met &= ok[col].to_numpy(dtype=float) <= limit
        out["goodput"] = {"limits_ms": {k: v * 1e3 for k, v in goodput.items()}, "requests_met": int(met.sum()),
                          "request_goodput_per_s": float(met.sum()) / duration if n else 0.0}
    return out


def _duration_s(table: pd.DataFrame) -> float:
    """Seconds the measurement ran: per block (and repeat), first send to last token, summed (send times restart
    at 0 in each block)."""
    keys = [c for c in ("block", "repeat") if c in table]
    groups = table.groupby(keys, sort=False) if keys else [(None, table)]
    total = 0.0
    for _, g in groups:
        ok = g[g["ok"].astype(bool)]
        if len(ok):
            total += float((ok["send_s"] + ok["e2e_s"]).max() - g["send_s"].min())
    return max(total, 1e-9)


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
    if "goodput" in summary:
        rows.insert(4, ("Request goodput (req/s)", f"{summary['goodput']['request_goodput_per_s']:.2f}"))
    return rows
