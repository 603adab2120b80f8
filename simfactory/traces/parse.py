"""Parsers for the public trace formats. Every bad row is reported with its line number; a trace with no
usable row is an error, never an empty run.

Formats (columns as published):
- azure: Azure LLM inference traces 2023/2024 (CSV: TIMESTAMP, ContextTokens, GeneratedTokens)
- burstgpt: BurstGPT (CSV: Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type)
- mooncake: Mooncake / FAST'25 (JSONL: timestamp [ms], input_length, output_length, hash_ids)
- sharegpt: ShareGPT conversations (JSON list; no timestamps; tokens estimated as characters / 4)
- vllm-bench: `vllm bench serve --save-result` JSON (input_lens, output_lens; no timestamps)
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from simfactory.errors import InputError, InputErrors
from simfactory.inputs import MAX_TRACE_BYTES, load_json_document, parse_json, read_input_text

TraceFormat = Literal["azure", "burstgpt", "mooncake", "sharegpt", "vllm-bench"]
CHARS_PER_TOKEN = 4.0  # rule of thumb for English text with BPE tokenizers (OpenAI tokenizer guidance)
MAX_REPORTED_BAD_ROWS = 20
# Mooncake's hash_ids name 512-token blocks: the FAST'25 conversation trace's first row has 6758 input
# tokens and 14 hash ids = ceil(6758 / 512) (github.com/kvcache-ai/Mooncake, FAST25-release/traces, 2025-02)
MOONCAKE_BLOCK_TOKENS = 512


@dataclass
class Trace:
    file: str
    format: str
    arrival_s: np.ndarray | None  # None: the format carries no timestamps (use the scenario's arrivals)
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: list[list[int]] | None = None
    hash_block_tokens: int = 0  # tokens per hash block (Mooncake: 512)
    bad_rows: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_tokens)


# More tokens than any model's context window (the longest published, Llama 4 Scout's, is 10M): a request this
# long is a corrupt row, and counts past 2^63 would not even fit the int64 arrays the simulator uses.
MAX_TRACE_TOKENS = 10_000_000
MAX_HASH_ID = 2**63 - 1  # Mooncake's block hashes are stored as int64 by its tools
_SHOWN_VALUE_CHARS = 40  # a bad value is quoted in its row's message up to this length


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE_CHARS else f"{text[:_SHOWN_VALUE_CHARS]}...({len(text)} characters)"


def _int(value: Any, what: str) -> int:
    """A token count: a whole number from 1 to MAX_TRACE_TOKENS ("374", "374.0", 374). Anything else (0, -3,
    1e300, 9300000000000000000, NaN, text) makes the row bad, never an OverflowError later."""
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (ValueError, TypeError, OverflowError):
        x = math.nan
    if not (math.isfinite(x) and 1 <= x <= MAX_TRACE_TOKENS and x == int(x)):
        raise ValueError(f"{what} must be a whole number of tokens from 1 to {MAX_TRACE_TOKENS:,}, got {_shown(value)}")
    return int(x)


def _hash_id(value: Any) -> int:
    """A Mooncake block hash: an integer from 0 to 2^63 - 1, kept exact (a float would round ids above 2^53)."""
    exact_float = isinstance(value, float) and value.is_integer() and abs(value) <= 2**53
    try:
        h = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) or exact_float else -1
    except ValueError:
        h = -1
    if not 0 <= h <= MAX_HASH_ID:
        raise ValueError(f"hash_ids entries must be integers from 0 to 2^63 - 1, got {_shown(value)}")
    return h


MAX_ABS_TIMESTAMP_S = 1e11  # ~3,000 years of epoch seconds: beyond it a timestamp is a unit slip or garbage
# The widest span a trace's timestamps may cover: public traces span an hour (Mooncake) to a few months
# (BurstGPT, 121 days). Rows outside the window of this width that holds the most rows are bad rows (a unit
# slip or garbage), so arrays indexed by second or by minute (trace stats' rate over time) stay small: a year of
# per-second counts is 250 MB, while 1e11 s would need 800 GB.
MAX_TRACE_SPAN_S = 366 * 86400.0


def _seconds(value: Any, what: str, scale: float = 1.0) -> float:
    """A timestamp in seconds: finite and of a plausible size (NaN, Infinity or 1e308 make a row bad)."""
    try:
        t = float(value) * scale if not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float (JSON allows any number of digits)
        t = math.inf
    if not math.isfinite(t) or abs(t) > MAX_ABS_TIMESTAMP_S:
        raise ValueError(f"{what} must be a finite time of plausible size, got {_shown(value)}")
    return t


def parse_trace(path: str | Path, fmt: TraceFormat) -> Trace:
    p = Path(path)
    name = str(p)
    # a regular file under MAX_TRACE_BYTES, read without blocking (a FIFO, a device, a folder, a symlink loop or
    # a bad name is one InputError), UTF-8 with an optional byte-order mark
    text = read_input_text(p, "", MAX_TRACE_BYTES, "trace")
    parser = {"azure": _azure, "burstgpt": _burstgpt, "mooncake": _mooncake, "sharegpt": _sharegpt,
              "vllm-bench": _vllm_bench}[fmt]
    trace = parser(name, text)
    if len(trace) == 0:
        detail = "; ".join(trace.bad_rows[:3]) or "no data rows"
        raise InputError(name, "", f"no usable rows in this {fmt} trace ({detail})")
    return trace


def _csv_rows(name: str, text: str, required: list[str]) -> tuple[csv.DictReader, list[str]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(name, "header", f"missing column(s) {missing}; found {header}")
    reader.fieldnames = header
    return reader, header


def _records(name: str, reader: csv.DictReader, bad: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) per CSV record. A record the csv module refuses (a field over its 128 KiB limit, as an
    unclosed quote makes; a NUL byte) is a bad row, and reading goes on at the next line."""
    lines = reader.reader  # the underlying reader counts physical lines (a quoted field may span several)
    while True:
        before = lines.line_num
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if lines.line_num == before:  # nothing consumed: the same error would repeat forever
                raise InputError(name, f"line {before + 1}", f"malformed CSV: {exc}") from None
            bad.append(f"line {lines.line_num}: malformed CSV ({exc}; an unclosed quote?)")
            continue
        yield lines.line_num, row


def _drop_far_rows(times: list[float], where: list[str], rows: list[list[Any]], bad: list[str]) -> None:
    """Keep the rows of the MAX_TRACE_SPAN_S window that holds the most of them; the rest become bad rows (in
    place). One row in year 3000 among a week of 2023 is a bad row, not a trace spanning a millennium."""
    if not times:
        return
    t = np.asarray(times, dtype=float)
    if float(t.max() - t.min()) <= MAX_TRACE_SPAN_S:
        return
    ordered = np.sort(t)
    inside = np.searchsorted(ordered, ordered + MAX_TRACE_SPAN_S, side="right") - np.arange(len(ordered))
    lo = float(ordered[int(np.argmax(inside))])
    hi = lo + MAX_TRACE_SPAN_S
    far = np.flatnonzero((t < lo) | (t > hi))
    for k in far:
        days = (t[k] - lo) / 86400.0 if t[k] < lo else (t[k] - hi) / 86400.0
        bad.append(f"{where[k]}: timestamp lies {abs(days):,.0f} days {'before' if days < 0 else 'after'} the "
                   f"{MAX_TRACE_SPAN_S / 86400:.0f}-day window holding most rows (a unit slip or a garbage row?)")
    drop = set(far.tolist())
    for column in (times, where, *rows):
        column[:] = [v for k, v in enumerate(column) if k not in drop]


def _finish(name: str, fmt: str, times: list[float] | None, inp: list[int], out: list[int], bad: list[str],
            hashes: list[list[int]] | None = None, where: list[str] | None = None) -> Trace:
    arr = None
    if times is not None:
        _drop_far_rows(times, where if where is not None else [f"row {k + 1}" for k in range(len(times))],
                       [inp, out] + ([hashes] if hashes is not None else []), bad)
        arr = np.asarray(times, dtype=float)
        order = np.argsort(arr, kind="stable")
        arr = arr[order] - (arr.min() if len(arr) else 0.0)
        inp = list(np.asarray(inp)[order])
        out = list(np.asarray(out)[order])
        if hashes is not None:
            hashes = [hashes[i] for i in order]
    return Trace(name, fmt, arr, np.asarray(inp, dtype=np.int64), np.asarray(out, dtype=np.int64), hashes,
                 MOONCAKE_BLOCK_TOKENS if hashes is not None else 0, bad)


def _azure(name: str, text: str) -> Trace:
    reader, _ = _csv_rows(name, text, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    times, inp, out, bad, where = [], [], [], [], []
    for line, row in _records(name, reader, bad):
        try:
            stamp = row["TIMESTAMP"].strip()
            # 7-digit fractions ("18:15:46.6805900"): keep microseconds
            if "." in stamp:
                head, frac = stamp.split(".", 1)
                stamp = f"{head}.{frac[:6]}"
            try:
                epoch = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except (OverflowError, OSError):  # year 1 in a timezone east of UTC, and the like
                raise ValueError(f"TIMESTAMP is not a time this machine can represent: {_shown(stamp)}") from None
            # the same plausibility cap as the other formats: year 9999 parses, but is no trace's time
            if not abs(epoch) <= MAX_ABS_TIMESTAMP_S:
                raise ValueError(f"TIMESTAMP must be a time of plausible size, got {_shown(stamp)}")
            t = epoch
            i, o = _int(row["ContextTokens"], "ContextTokens"), _int(row["GeneratedTokens"], "GeneratedTokens")
        except (ValueError, TypeError, AttributeError) as exc:
            bad.append(f"line {line}: {exc}")
            continue
        times.append(t), inp.append(i), out.append(o), where.append(f"line {line}")
    return _finish(name, "azure", times, inp, out, bad, where=where)


def _burstgpt(name: str, text: str) -> Trace:
    reader, _ = _csv_rows(name, text, ["Timestamp", "Request tokens", "Response tokens"])
    times, inp, out, bad, where = [], [], [], [], []
    for line, row in _records(name, reader, bad):
        try:
            t = _seconds(row["Timestamp"], "Timestamp")
            i, o = _int(row["Request tokens"], "Request tokens"), _int(row["Response tokens"], "Response tokens")
        except (ValueError, TypeError) as exc:
            bad.append(f"line {line}: {exc}")
            continue
        times.append(t), inp.append(i), out.append(o), where.append(f"line {line}")
    return _finish(name, "burstgpt", times, inp, out, bad, where=where)


def _mooncake(name: str, text: str) -> Trace:
    times, inp, out, hashes, bad, where = [], [], [], [], [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = parse_json(raw, name, f"line {line}")
            if not isinstance(row, dict):
                raise TypeError(f"expected a JSON object, got {type(row).__name__}")
            t = _seconds(row["timestamp"], "timestamp", 1e-3)
            i, o = _int(row["input_length"], "input_length"), _int(row["output_length"], "output_length")
            ids = row.get("hash_ids", [])
            if not isinstance(ids, list):
                raise TypeError(f"hash_ids must be a list, got {type(ids).__name__}")
            h = [_hash_id(x) for x in ids]
        except InputError as exc:  # nested too deeply for the JSON parser: this row only
            bad.append(f"line {line}: {exc.reason}")
            continue
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            bad.append(f"line {line}: {exc.__class__.__name__}: {_shown_error(exc)}")
            continue
        times.append(t), inp.append(i), out.append(o), hashes.append(h), where.append(f"line {line}")
    return _finish(name, "mooncake", times, inp, out, bad, hashes, where)


def _shown_error(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _load_json(name: str, text: str, kind: type, what: str) -> Any:
    data = load_json_document(text, name)
    if not isinstance(data, kind):
        raise InputError(name, "", f"expected {what}")
    return data


def _sharegpt(name: str, text: str) -> Trace:
    data = _load_json(name, text, list, "a JSON list of conversations")
    inp, out, bad = [], [], []
    for k, conv in enumerate(data):
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            bad.append(f"conversation {k}: needs at least a human and a gpt turn")
            continue
        first, second = turns[0], turns[1]
        if not (isinstance(first, dict) and isinstance(second, dict) and isinstance(first.get("value"), str)
                and isinstance(second.get("value"), str)):
            bad.append(f"conversation {k}: turns need a text 'value'")
            continue
        try:
            i = _int(max(1, round(len(first["value"]) / CHARS_PER_TOKEN)), "the human turn's estimated tokens")
            o = _int(max(1, round(len(second["value"]) / CHARS_PER_TOKEN)), "the gpt turn's estimated tokens")
        except ValueError as exc:
            bad.append(f"conversation {k}: {exc}")
            continue
        inp.append(i)
        out.append(o)
    return _finish(name, "sharegpt", None, inp, out, bad)


def _vllm_bench(name: str, text: str) -> Trace:
    data = _load_json(name, text, dict, "a JSON object (vllm bench serve --save-result)")
    errors = [InputError(name, f, "missing or not a list") for f in ("input_lens", "output_lens")
              if not isinstance(data.get(f), list)]
    if errors:
        raise InputErrors(errors)
    if len(data["input_lens"]) != len(data["output_lens"]):
        raise InputError(name, "output_lens", f"has {len(data['output_lens'])} entries, input_lens "
                                              f"{len(data['input_lens'])}: one pair per request")
    inp, out, bad = [], [], []
    for k, (i, o) in enumerate(zip(data["input_lens"], data["output_lens"])):
        try:
            a, b = _int(i, "input_lens"), _int(o, "output_lens")
        except ValueError as exc:
            bad.append(f"request {k}: {exc}")
            continue
        inp.append(a)
        out.append(b)
    return _finish(name, "vllm-bench", None, inp, out, bad)
