"""The two measurement tables calibration produces and consumes, as pandas frames with fixed columns.

- Step table: one row per timed engine iteration (microbenchmark): what the step computed and how long it
  took. Fitting reads it; the profile writer stores it as CSV next to the profile.
- Request table: one row per request sent to (or imported from) a live endpoint: lengths, send time and the
  latencies seen by the client. Serving validation compares it with the simulator on the same load.

Keeping these two shapes fixed is the seam between measuring (GPU, HTTP, importers) and using the data
(fit, validation): every producer returns one of them, checked by `check_*`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simfactory.errors import InputError
from simfactory.inputs import MAX_TABLE_BYTES, read_input_bytes
from simfactory.traces.parse import MAX_TRACE_SPAN_S, MAX_TRACE_TOKENS

STEP_KINDS = ("prefill", "decode", "mixed")
STEP_COLUMNS: dict[str, str] = {
    "kind": "prefill | decode | mixed",
    "prefill_tokens": "prompt tokens computed in the step",
    "decode_seqs": "sequences generating one token in the step",
    "kv_tokens_read": "context tokens whose K/V the decode sequences read, summed",
    "prefill_attn_pairs": "query-key pairs of the prefill chunks",
    "step_s": "median wall time of the step over the repetitions",
}
STEP_OPTIONAL: dict[str, str] = {
    "step_s_p90": "90th percentile over the repetitions",
    "repetitions": "timed repetitions kept after outlier removal",
    "power_w": "mean board power during the repetitions",
    "sm_util": "mean SM utilization (0-1) during the repetitions",
    "computed_tokens": "prompt tokens the step's prompts had computed before it (cached prefixes, earlier chunks), "
                       "summed: what a latent-attention engine re-expands or attends in its absorbed form (a table "
                       "without the column counts none)",
}

REQUEST_COLUMNS: dict[str, str] = {
    "request_id": "unique per table",
    "send_s": "seconds from the start of the run when the request was sent",
    "input_tokens": "prompt tokens",
    "output_tokens": "generated tokens (as reported by the server, else counted from the stream)",
    "ttft_s": "time to first token",
    "tpot_s": "mean time per output token after the first: (e2e - ttft) / (output_tokens - 1)",
    "e2e_s": "send to last token",
    "ok": "False when the request failed (error recorded)",
}
REQUEST_OPTIONAL: dict[str, str] = {
    "error": "the failure, empty when ok",
    "rate_rps": "the offered load this request belonged to",
    "block": "the run (one rate at one prompt length) this request belonged to; fits hold out one block at a time",
    "repeat": "which repeat of its block (0, 1, ...: `calibrate serve --repeats`); each repeat's sends start from 0",
}


def _check(frame: pd.DataFrame, required: dict[str, str], file: str, what: str) -> pd.DataFrame:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(file, missing[0], f"{what} needs column '{missing[0]}' ({required[missing[0]]})")
    if frame.empty:
        raise InputError(file, "", f"{what} has no rows")
    return frame


# Upper bounds of a step table's numbers: far past any engine step (a 1M-token prompt's attention is 5e11 pairs;
# a step of a day), yet small enough that the fits' squares and products stay finite (1e300 tokens made scipy's
# least squares raise "Residuals are not finite" as a traceback).
MAX_STEP_COUNT = 1e15
MAX_STEP_S = 86_400.0
MAX_POWER_W = 1e5  # one accelerator board's mean power, W (a rack's is not a step table's row)
STEP_BOUNDS: dict[str, float] = {"prefill_tokens": MAX_STEP_COUNT, "decode_seqs": MAX_STEP_COUNT,
                                 "kv_tokens_read": MAX_STEP_COUNT, "prefill_attn_pairs": MAX_STEP_COUNT,
                                 "step_s": MAX_STEP_S}
OPTIONAL_BOUNDS: dict[str, float] = {"prefill_seqs": MAX_STEP_COUNT, "computed_tokens": MAX_STEP_COUNT,
                                     "step_s_p90": MAX_STEP_S, "repetitions": MAX_STEP_COUNT, "power_w": MAX_POWER_W, "sm_util": 1.0}


def check_steps(frame: pd.DataFrame, file: str = "<steps>") -> pd.DataFrame:
    """Validate a step table: required columns, finite non-negative numbers of plausible size, positive step
    times; the optional columns a fit reads (prefill_seqs, power_w, sm_util, ...) too when present (an empty power
    or utilization cell is a step without samples)."""
    _check(frame, STEP_COLUMNS, file, "a step table")
    kinds = frame["kind"].astype(str).str.strip()
    unknown = np.flatnonzero(~kinds.isin(STEP_KINDS).to_numpy())
    if unknown.size:
        raise InputError(file, f"row {int(unknown[0]) + 1}.kind",
                         f"expected {' | '.join(STEP_KINDS)}, got {frame['kind'].iloc[unknown[0]]!r}")
    columns = [(c, b, False) for c, b in STEP_BOUNDS.items()]
    columns += [(c, b, c in ("power_w", "sm_util")) for c, b in OPTIONAL_BOUNDS.items() if c in frame.columns]
    for col, most, may_be_empty in columns:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        empty = frame[col].isna().to_numpy() if may_be_empty else np.zeros(len(values), dtype=bool)
        bad = np.flatnonzero(~empty & (~np.isfinite(values) | (values < 0) | (values > most)))
        if bad.size:
            unit = " (a fraction: percent / 100)" if col == "sm_util" else ""
            raise InputError(file, f"row {int(bad[0]) + 1}.{col}",
                             f"must be a finite number from 0 to {most:g}{unit}, got {frame[col].iloc[bad[0]]!r}")
    if (frame["step_s"] <= 0).any():
        row = int(np.flatnonzero(frame["step_s"].to_numpy() <= 0)[0]) + 1
        raise InputError(file, f"row {row}.step_s", "a step takes a positive time")
    return frame


TRUE_WORDS = {"true", "1", "yes", "y", "t", "1.0"}
FALSE_WORDS = {"false", "0", "no", "n", "f", "0.0", ""}


def _booleans(column: pd.Series, file: str) -> pd.Series:
    """The `ok` column as booleans: bools, 0/1, or true/false/yes/no words (CSV round trips); anything else is
    rejected naming the row (a string such as "no" is not silently True)."""
    if column.dtype == bool:
        return column
    words = column.astype(str).str.strip().str.lower()
    known = words.isin(TRUE_WORDS | FALSE_WORDS)
    if not known.all():
        row = int(np.flatnonzero(~known.to_numpy())[0])
        raise InputError(file, f"row {row + 1}.ok", f"expected true/false, got {column.iloc[row]!r}")
    return words.isin(TRUE_WORDS)


def check_requests(frame: pd.DataFrame, file: str = "<requests>") -> pd.DataFrame:
    """Validate a request table: required columns; latencies of successful requests finite and ordered."""
    _check(frame, REQUEST_COLUMNS, file, "a request table")
    frame = frame.assign(ok=_booleans(frame["ok"], file))
    ids = frame["request_id"].astype(str)
    if ids.duplicated().any():
        raise InputError(file, f"request {ids[ids.duplicated()].iloc[0]}", "request_id appears more than once")
    ok = frame[frame["ok"]]
    for col in ("input_tokens", "output_tokens", "ttft_s", "e2e_s", "send_s"):
        values = pd.to_numeric(ok[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            raise InputError(file, f"request {ok['request_id'].iloc[bad[0]]}.{col}", "must be a finite number >= 0")
        # of a size the replay can hold: a trace's token counts and span (a 1e12-token prompt was refused naming
        # a temporary load.csv, a send at 1e300 s as the flags' sim.horizon_s)
        if col.endswith("_tokens"):
            least = 1 if col == "input_tokens" else 0  # a prompt has a token; an answer's count the replay warns on
            bad = np.flatnonzero((values < least) | (values > MAX_TRACE_TOKENS) | (values != np.round(values)))
            what = f"a successful request's {col} is a whole number from {least} to {MAX_TRACE_TOKENS:,}"
        else:
            bad = np.flatnonzero(values > MAX_TRACE_SPAN_S)
            what = f"must be at most {MAX_TRACE_SPAN_S:g} s (a year: a unit slip?)"
        if bad.size:
            raise InputError(file, f"request {ok['request_id'].iloc[bad[0]]}.{col}",
                             f"{what}, got {ok[col].iloc[bad[0]]!r}")
    _check_optional(frame, ok, file)
    if "repeat" in frame:
        rep = pd.to_numeric(frame["repeat"], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(rep) | (rep < 0) | (rep != np.round(rep)))
        if bad.size:
            raise InputError(file, f"request {frame['request_id'].iloc[bad[0]]}.repeat", "must be an integer >= 0")
        frame = frame.assign(repeat=rep.astype(int))
    late = np.flatnonzero(ok["e2e_s"].to_numpy(dtype=float) < ok["ttft_s"].to_numpy(dtype=float) - 1e-9)
    if late.size:
        raise InputError(file, f"request {ok['request_id'].iloc[late[0]]}.e2e_s", "end to end is shorter than TTFT")
    return frame


def _check_optional(frame: pd.DataFrame, ok: pd.DataFrame, file: str) -> None:
    """The optional columns validate and fit read: tpot_s of a successful request a number >= 0 or empty (one
    output token has none); rate_rps a rate >= 0 or empty (rows of a replayed trace); block a label in every row
    (text in tpot_s or rate_rps, or an empty block, ended in a ValueError or TypeError traceback)."""
    for col, rows in (("tpot_s", ok), ("rate_rps", frame)):
        if col not in frame.columns:
            continue
        values = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)
        empty = rows[col].isna().to_numpy() | (rows[col].astype(str).str.strip() == "").to_numpy()
        bad = np.flatnonzero(~empty & (~np.isfinite(values) | (values < 0) | (values > MAX_TRACE_SPAN_S)))
        if bad.size:
            raise InputError(file, f"request {rows['request_id'].iloc[bad[0]]}.{col}",
                             f"must be a finite number >= 0 or empty, got {rows[col].iloc[bad[0]]!r}")
    if "block" in frame.columns:
        empty = frame["block"].isna().to_numpy() | (frame["block"].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise InputError(file, f"request {frame['request_id'].iloc[int(np.flatnonzero(empty)[0])]}.block",
                             "empty: every row of a table with a block column names its block")


def output_tokens_per_s(frame: pd.DataFrame) -> float:
    """Output tokens of the successful requests per second, from the first send to the last token (NaN with none)."""
    ok = frame[frame["ok"].astype(bool)]
    if ok.empty:
        return float("nan")
    span = float((ok["send_s"] + ok["e2e_s"]).max() - frame["send_s"].min())
    return float(ok["output_tokens"].sum() / span) if span > 0 else float("nan")


def tpot_s(ttft_s: float, e2e_s: float, output_tokens: int) -> float:
    """Mean inter-token time after the first token (vLLM's and genai-perf's TPOT definition); NaN for 1 token."""
    if output_tokens <= 1:
        return float("nan")
    return (e2e_s - ttft_s) / (output_tokens - 1)


def request_row(rid: Any, send_s: float, inp: float, out: float, ttft: float, e2e: float, ok: bool, error: str = "",
                rate: float = float("nan")) -> dict[str, Any]:
    """One request-table row (the client and every importer build rows here); latencies are NaN unless ok."""
    out_i = int(out or 0)
    return {"request_id": str(rid), "send_s": float(send_s), "input_tokens": int(inp), "output_tokens": out_i,
            "ttft_s": float(ttft) if ok else float("nan"), "tpot_s": tpot_s(ttft, e2e, out_i) if ok else float("nan"),
            "e2e_s": float(e2e) if ok else float("nan"), "ok": bool(ok), "error": error, "rate_rps": rate}


def within_step_tokens(steps: pd.DataFrame, max_tokens: int) -> tuple[pd.DataFrame, int]:
    """The steps of at most max_tokens tokens (prompt tokens + decode sequences: what an engine's token budget,
    max_num_batched_tokens, caps), and how many larger ones were left out. A profiler may time forwards no serving
    engine runs (MuxServe's reach 131,072 prompt tokens); fitting or checking on them says nothing of serving."""
    tokens = steps["prefill_tokens"].to_numpy(dtype=float) + steps["decode_seqs"].to_numpy(dtype=float)
    keep = tokens <= max_tokens
    return steps[keep].reset_index(drop=True), int((~keep).sum())


def read_table(path: str | Path) -> pd.DataFrame:
    """CSV or Parquet by extension; a missing or unreadable file is an input error naming it."""
    p = Path(path)
    # a regular file under MAX_TABLE_BYTES, read without blocking: a FIFO, device, folder, symlink loop or bad
    # name is one InputError (simfactory.inputs); pandas then parses the bytes, never the path
    raw = read_input_bytes(p, "", MAX_TABLE_BYTES, "measurement table")
    try:
        buf = io.BytesIO(raw)
        return pd.read_parquet(buf) if p.suffix == ".parquet" else pd.read_csv(buf, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises many parser types; the user needs the file and the reason
        reason = " ".join(str(exc).split())
        raise InputError(str(p), "", f"cannot read table: {reason[:300]}") from None
