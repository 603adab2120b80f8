"""Serving results users already have -> the request table (measurements.py), for validation and fitting.

Formats (checked against the tools' source, 2026-11):
- vllm-bench: `vllm bench serve --save-result --save-detailed` JSON (vllm/benchmarks/serve.py): per-request
  arrays `input_lens`, `output_lens`, `ttfts` (s), `itls` (list of inter-token gaps per request, s), optional
  `start_times` (send times, s) and `errors`; top-level `request_rate`. Without --save-detailed the arrays are
  missing and the file cannot be imported (the message says so).
- aiperf: AIPerf's `profile_export.jsonl` (one record per request: `metadata.request_start_ns`,
  `metadata.benchmark_phase`, `metrics.{input_sequence_length, output_sequence_length, time_to_first_token,
  request_latency}` as {value, unit}, `error`); warm-up records are skipped.
- genai-perf: genai-perf's `profile_export.json` (`experiments[].requests[]` with `timestamp` and
  `response_timestamps` in ns); output tokens are the streamed responses (one token per chunk, the vLLM and
  TRT-LLM streaming default) and input tokens are estimated from the prompt's characters (/ 4) unless the
  payload names them, since genai-perf keeps token counts out of this file.
- guidellm: a GuideLLM report JSON (`benchmarks[].requests.{successful, errored, incomplete}[]` with
  `prompt_tokens`, `output_tokens`, `start_time`, `time_to_first_token_ms`, `request_latency` (s)).
A malformed file is an InputError naming the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from simfactory.calibration.measurements import check_requests, request_row
from simfactory.errors import InputError
from simfactory.inputs import MAX_RESULTS_BYTES, parse_json, read_input_text
from simfactory.traces.parse import MAX_TRACE_TOKENS

ImportFormat = Literal["vllm-bench", "aiperf", "genai-perf", "guidellm"]
FORMATS: tuple[str, ...] = ("vllm-bench", "aiperf", "genai-perf", "guidellm")
CHARS_PER_TOKEN = 4.0  # same rule of thumb as the trace parsers


def _read_text(path: Path) -> str:
    """A regular results file under MAX_RESULTS_BYTES, read without blocking (simfactory.inputs)."""
    return read_input_text(path, "", MAX_RESULTS_BYTES, "results file")


def _json(text: str, file: str, field: str) -> Any:
    """One JSON document: invalid, nested too deeply, or an integer of more than 4,300 digits (Python's guard)
    is one InputError naming `field`."""
    try:
        return parse_json(text, file, field)
    except json.JSONDecodeError as exc:
        raise InputError(file, field, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise InputError(file, field, f"not valid JSON ({str(exc)[:120]})") from None


def _load_json(path: Path) -> Any:
    return _json(_read_text(path), str(path), "")


def _tokens(value: Any, file: str, field: str) -> float:
    """A token count: a whole number from 0 (a failed request) to MAX_TRACE_TOKENS, as the trace readers allow;
    10**30 is a corrupt file, not a request (and would overflow the simulator's int64 arrays)."""
    x = _number(value, file, field)
    if x < 0:
        raise InputError(file, field, "must be >= 0")
    if not (x <= MAX_TRACE_TOKENS and x == int(x)):
        raise InputError(file, field, f"expected a whole number of tokens up to {MAX_TRACE_TOKENS:,}, got {value!r}"[:300])
    return x


def _need(doc: dict[str, Any], key: str, file: str, where: str = "", hint: str = "") -> Any:
    if not isinstance(doc, dict) or key not in doc:
        raise InputError(file, f"{where}{key}", f"missing{hint}")
    return doc[key]


def _number(value: Any, file: str, field: str) -> float:
    try:
        x = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        x = math.inf
    if not math.isfinite(x):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise InputError(file, field, f"expected a finite number, got {shown}")
    return x


def vllm_bench(path: Path) -> pd.DataFrame:
    doc = _load_json(path)
    f = str(path)
    if not isinstance(doc, dict):
        raise InputError(f, "", "expected a JSON object (vllm bench serve --save-result output)")
    hint = " (save the per-request arrays with `vllm bench serve --save-result --save-detailed`)"
    inp = _need(doc, "input_lens", f, hint=hint)
    out = _need(doc, "output_lens", f, hint=hint)
    ttfts = _need(doc, "ttfts", f, hint=hint)
    itls = _need(doc, "itls", f, hint=hint)
    if not isinstance(inp, list):
        raise InputError(f, "input_lens", "expected a list (one entry per request)")
    n = len(inp)
    for key, arr in (("output_lens", out), ("ttfts", ttfts), ("itls", itls)):
        if not isinstance(arr, list) or len(arr) != n:
            raise InputError(f, key, f"expected a list of {n} entries (one per request, like input_lens)")
    errors = doc.get("errors") or [""] * n
    if not isinstance(errors, list) or len(errors) != n:
        raise InputError(f, "errors", f"expected a list of {n} entries (one per request, like input_lens)")
    starts = doc.get("start_times")
    if starts is not None:
        if not isinstance(starts, list) or len(starts) != n:
            raise InputError(f, "start_times", f"expected a list of {n} entries")
        starts = [_number(x, f, f"start_times[{i}]") for i, x in enumerate(starts)]
    out = [None if x is None else _tokens(x, f, f"output_lens[{i}]") for i, x in enumerate(out)]
    if any(x is not None and x < 0 for x in out):
        raise InputError(f, f"output_lens[{next(i for i, x in enumerate(out) if x is not None and x < 0)}]",
                         "must be >= 0")
    t0 = min(starts) if starts else 0.0
    rate = doc.get("request_rate")
    rate_f = float(rate) if isinstance(rate, (int, float)) and math.isfinite(rate) else float("nan")
    rows = []
    for i in range(n):
        ok = not errors[i] and out[i] and out[i] > 0
        ttft = _number(ttfts[i], f, f"ttfts[{i}]") if ok else 0.0
        gaps = itls[i] if isinstance(itls[i], list) else []
        e2e = ttft + sum(_number(g, f, f"itls[{i}]") for g in gaps)
        send = (starts[i] - t0) if starts else float("nan")
        rows.append(request_row(i, send, _tokens(inp[i], f, f"input_lens[{i}]"), out[i] or 0, ttft, e2e, bool(ok),
                         str(errors[i] or ""), rate_f))
    frame = pd.DataFrame(rows)
    if not starts:  # send times unknown: replay as evenly spread at the recorded rate (or back to back)
        gap = 1.0 / rate_f if rate_f > 0 else 0.0
        frame["send_s"] = np.arange(n) * gap
    return frame


def _metric(record: dict[str, Any], name: str, file: str, line: int) -> float | None:
    m = record.get("metrics", {}).get(name)
    if m is None:
        return None
    value = _number(m.get("value") if isinstance(m, dict) else m, file, f"line {line}: metrics.{name}.value")
    unit = m.get("unit", "") if isinstance(m, dict) else ""
    return value / 1000.0 if unit == "ms" else value / 1e9 if unit == "ns" else value


def aiperf(path: Path) -> pd.DataFrame:
    f = str(path)
    lines = _read_text(path).splitlines()
    rows: list[dict[str, Any]] = []
    starts: list[float] = []
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        rec = _json(raw, f, f"line {line}")
        meta = _need(rec, "metadata", f, f"line {line}: ")
        if meta.get("benchmark_phase", "profiling") != "profiling":
            continue  # warm-up requests are not measurements
        start_ns = _number(_need(meta, "request_start_ns", f, f"line {line}: metadata."), f,
                           f"line {line}: metadata.request_start_ns")
        error = rec.get("error")
        ok = not error and not meta.get("was_cancelled", False)
        inp = _metric(rec, "input_sequence_length", f, line)
        out = _metric(rec, "output_sequence_length", f, line)
        for name, v in (("input_sequence_length", inp), ("output_sequence_length", out)):
            if v is not None:
                _tokens(v, f, f"line {line}: metrics.{name}.value")
        ttft = _metric(rec, "time_to_first_token", f, line)
        e2e = _metric(rec, "request_latency", f, line)
        if ok:
            for name, v in (("input_sequence_length", inp), ("output_sequence_length", out),
                            ("time_to_first_token", ttft), ("request_latency", e2e)):
                if v is None:
                    raise InputError(f, f"line {line}: metrics.{name}", "missing")
        starts.append(start_ns / 1e9)
        rows.append(request_row(meta.get("x_request_id", line), start_ns / 1e9, inp or 0, out or 0, ttft or 0.0, e2e or 0.0,
                         bool(ok), json.dumps(error) if error else ("cancelled" if not ok else "")))
    if not rows:
        raise InputError(f, "", "no profiling records")
    frame = pd.DataFrame(rows)
    frame["send_s"] -= min(starts)
    return frame


def genai_perf(path: Path) -> pd.DataFrame:
    doc = _load_json(path)
    f = str(path)
    experiments = _need(doc, "experiments", f)
    rows: list[dict[str, Any]] = []
    t0 = None
    for e, exp in enumerate(experiments):
        requests = _need(exp, "requests", f, f"experiments[{e}].")
        setting = exp.get("experiment", {})
        rate = float(setting.get("value", float("nan"))) if setting.get("mode") == "request_rate" else float("nan")
        for r, req in enumerate(requests):
            where = f"experiments[{e}].requests[{r}]."
            ts = _number(_need(req, "timestamp", f, where), f, where + "timestamp")
            stamps = _need(req, "response_timestamps", f, where)
            t0 = ts if t0 is None else min(t0, ts)
            payload = req.get("request_inputs", {}).get("payload", "")
            inp = _tokens(_prompt_tokens(payload, f, where + "request_inputs.payload"), f,
                          where + "request_inputs.payload")
            ok = isinstance(stamps, list) and len(stamps) > 0
            outputs = [o for o in req.get("response_outputs", []) if "[DONE]" not in str(o.get("response", ""))]
            out = len(outputs) if outputs else (len(stamps) if ok else 0)
            ttft = (stamps[0] - ts) / 1e9 if ok else 0.0
            e2e = (stamps[-1] - ts) / 1e9 if ok else 0.0
            rows.append(request_row(f"{e}-{r}", ts / 1e9, inp, out, ttft, e2e, ok, "" if ok else "no response", rate))
    if not rows:
        raise InputError(f, "experiments", "no requests")
    frame = pd.DataFrame(rows)
    frame["send_s"] -= (t0 or 0.0) / 1e9
    return frame


def _prompt_tokens(payload: Any, file: str = "<payload>", field: str = "payload") -> int:
    """Tokens of a genai-perf request payload: its stated count if any, else characters / 4."""
    try:
        body = parse_json(payload, file, field) if isinstance(payload, str) else payload
    except ValueError:  # not JSON (JSONDecodeError), or an over-long integer: the text is the prompt
        body = {"prompt": payload}
    if not isinstance(body, dict):
        return max(int(len(str(body)) / CHARS_PER_TOKEN), 1)
    for key in ("prompt_tokens", "input_tokens"):
        if isinstance(body.get(key), int):
            return int(body[key])
    text = body.get("prompt") or " ".join(str(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))
    return max(int(len(str(text)) / CHARS_PER_TOKEN), 1)


def guidellm(path: Path) -> pd.DataFrame:
    doc = _load_json(path)
    f = str(path)
    benchmarks = _need(doc, "benchmarks", f)
    rows: list[dict[str, Any]] = []
    for b, bench in enumerate(benchmarks):
        requests = _need(bench, "requests", f, f"benchmarks[{b}].")
        rate = _guidellm_rate(bench)
        for status in ("successful", "errored", "incomplete"):
            for r, req in enumerate(requests.get(status, []) or []):
                where = f"benchmarks[{b}].requests.{status}[{r}]."
                ok = status == "successful"
                start = _number(_need(req, "start_time", f, where), f, where + "start_time")
                inp = _tokens(req.get("prompt_tokens") or 0, f, where + "prompt_tokens")
                out = _tokens(req.get("output_tokens") or 0, f, where + "output_tokens")
                ttft = e2e = 0.0
                if ok:
                    inp = _tokens(_need(req, "prompt_tokens", f, where), f, where + "prompt_tokens")
                    out = _tokens(_need(req, "output_tokens", f, where), f, where + "output_tokens")
                    ttft = _number(_need(req, "time_to_first_token_ms", f, where), f,
                                   where + "time_to_first_token_ms") / 1000.0
                    e2e = _number(_need(req, "request_latency", f, where), f, where + "request_latency")
                rows.append(request_row(req.get("request_id", f"{b}-{status}-{r}"), start, inp, out, ttft, e2e, ok,
                                 "" if ok else str(req.get("error") or status), rate))
    if not rows:
        raise InputError(f, "benchmarks", "no requests")
    frame = pd.DataFrame(rows)
    frame["send_s"] -= frame["send_s"].min()
    return frame


def _guidellm_rate(bench: dict[str, Any]) -> float:
    for holder in (bench.get("args", {}).get("strategy", {}), bench.get("config", {}).get("strategy", {}),
                   bench.get("scheduler", {}).get("strategy", {})):
        rate = holder.get("rate") if isinstance(holder, dict) else None
        if isinstance(rate, (int, float)):
            return float(rate)
    return float("nan")


PARSERS = {"vllm-bench": vllm_bench, "aiperf": aiperf, "genai-perf": genai_perf, "guidellm": guidellm}


def import_results(path: str | Path, fmt: str) -> pd.DataFrame:
    """Parse a results file into a checked request table, sorted by send time."""
    p = Path(path)
    if fmt not in PARSERS:
        raise InputError("--format", "format", f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    try:
        frame = PARSERS[fmt](p)
    except InputError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        # a shape the checks above did not foresee: still one line naming the file, never a traceback
        raise InputError(str(p), "", f"not a {fmt} results file this importer understands "
                                     f"({exc.__class__.__name__}: {exc})") from None
    return check_requests(frame.sort_values("send_s", kind="stable").reset_index(drop=True), str(p))
