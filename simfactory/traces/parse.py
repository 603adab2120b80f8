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
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from simfactory.errors import InputError, InputErrors

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


def _int(value: str, what: str) -> int:
    x = float(value)
    if not math.isfinite(x) or x < 0 or x != int(x):
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(x)


MAX_ABS_TIMESTAMP_S = 1e11  # ~3,000 years of epoch seconds: beyond it a timestamp is a unit slip or garbage


def _seconds(value: Any, what: str, scale: float = 1.0) -> float:
    """A timestamp in seconds: finite and of a plausible size (NaN, Infinity or 1e308 make a row bad)."""
    t = float(value) * scale
    if not math.isfinite(t) or abs(t) > MAX_ABS_TIMESTAMP_S:
        raise ValueError(f"{what} must be a finite time of plausible size, got {value!r}")
    return t


def parse_trace(path: str | Path, fmt: TraceFormat) -> Trace:
    p = Path(path)
    name = str(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(name, "", "trace file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(name, "", f"cannot read trace ({exc.__class__.__name__})") from None
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


def _finish(name: str, fmt: str, times: list[float] | None, inp: list[int], out: list[int], bad: list[str],
            hashes: list[list[int]] | None = None) -> Trace:
    arr = None
    if times is not None:
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
    times, inp, out, bad = [], [], [], []
    for line, row in enumerate(reader, start=2):
        try:
            stamp = row["TIMESTAMP"].strip()
            # 7-digit fractions ("18:15:46.6805900"): keep microseconds
            if "." in stamp:
                head, frac = stamp.split(".", 1)
                stamp = f"{head}.{frac[:6]}"
            t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            i, o = _int(row["ContextTokens"], "ContextTokens"), _int(row["GeneratedTokens"], "GeneratedTokens")
        except (ValueError, TypeError, AttributeError) as exc:
            bad.append(f"line {line}: {exc}")
            continue
        times.append(t), inp.append(i), out.append(o)
    return _finish(name, "azure", times, inp, out, bad)


def _burstgpt(name: str, text: str) -> Trace:
    reader, _ = _csv_rows(name, text, ["Timestamp", "Request tokens", "Response tokens"])
    times, inp, out, bad = [], [], [], []
    for line, row in enumerate(reader, start=2):
        try:
            t = _seconds(row["Timestamp"], "Timestamp")
            i, o = _int(row["Request tokens"], "Request tokens"), _int(row["Response tokens"], "Response tokens")
        except (ValueError, TypeError) as exc:
            bad.append(f"line {line}: {exc}")
            continue
        times.append(t), inp.append(i), out.append(o)
    return _finish(name, "burstgpt", times, inp, out, bad)


def _mooncake(name: str, text: str) -> Trace:
    times, inp, out, hashes, bad = [], [], [], [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            t = _seconds(row["timestamp"], "timestamp", 1e-3)
            i, o = _int(str(row["input_length"]), "input_length"), _int(str(row["output_length"]), "output_length")
            h = [_int(str(x), "hash_ids entry") for x in row.get("hash_ids", [])]
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            bad.append(f"line {line}: {exc.__class__.__name__}: {exc}")
            continue
        times.append(t), inp.append(i), out.append(o), hashes.append(h)
    return _finish(name, "mooncake", times, inp, out, bad, hashes)


def _load_json(name: str, text: str, kind: type, what: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
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
        inp.append(max(1, round(len(first["value"]) / CHARS_PER_TOKEN)))
        out.append(max(1, round(len(second["value"]) / CHARS_PER_TOKEN)))
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
            a, b = _int(str(i), "input_lens"), _int(str(o), "output_lens")
        except ValueError as exc:
            bad.append(f"request {k}: {exc}")
            continue
        inp.append(a)
        out.append(b)
    return _finish(name, "vllm-bench", None, inp, out, bad)
