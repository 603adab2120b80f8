"""Serving results users already have -> the request table (measurements.py), for validation and fitting.

Each importer reads the newest format of its tool and the older one it read before; it tells them apart by the
fields present. Checked against the tools' source (2026):
- vllm-bench: `vllm bench serve --save-result --save-detailed` JSON (vllm/benchmarks/serve.py). Newest (vllm
  commit 009e6d4a1cd6): per-request arrays `input_lens`, `output_lens` (0 for a failure), `ttfts` (s), `itls`
  (the inter-chunk gaps of each request, s), `latencies` (end to end, s), `start_times` (send times,
  time.perf_counter() s), `queue_times`, `generated_texts`, `errors` ("" when ok); top-level `request_rate` (a
  number, or "inf"). Older (vllm commit def9ce85ba10 and benchmarks/benchmark_serving.py before it): no
  `latencies` and no `start_times`, so E2E is TTFT + the gaps and the requests are spread evenly at the rate.
  Without --save-detailed the token arrays are missing and the file cannot be imported (the message says so).
- aiperf: AIPerf's `profile_export.jsonl`, one record per request. Newest (ai-dynamo/aiperf commits 745695dd
  src/aiperf/common/models/record_export_models.py and 017c63d2 src/aiperf/common/metric_records_wire.py): msgspec
  structs written with omit_defaults, so `error` (null when ok) and `metadata.was_cancelled` (false) may be absent;
  `metadata.{request_start_ns, benchmark_phase ("warmup" | "profiling"), x_request_id, request_num}`,
  `metrics.{input_sequence_length, output_sequence_length (output + reasoning tokens), time_to_first_token
  (streaming runs only), request_latency}` as {value, unit} in display units (ms; ns, us, s and sec are read too);
  a failed request carries `metrics.error_isl` (its input tokens) and `error.{code, type, message}`. Older (aiperf
  commit db4f6397, 2025-10-10, aiperf/common/models/record_models.py, pydantic): the same names with every field
  written (`error: null`, `was_cancelled: false`), `metrics` possibly null for a failure. Warm-up records are
  skipped.
- genai-perf: the `profile_export.json` perf_analyzer writes (src/profile_data_exporter.cc, unchanged since
  aed6e3d4 2025-02; checked at perf_analyzer commit 263c5f6e, 2025-12-15, genai-perf 0.0.16dev, which AIPerf
  succeeds): `experiments[].experiment.{mode, value}`, `experiments[].requests[].{timestamp (ns),
  request_inputs.{payload (JSON text) | text_input | input_ids}, response_timestamps (ns),
  response_outputs[].{response (SSE text) | text_output | output_ids}}`. As genai-perf's llm_profile_data_parser
  does, responses with no content ([DONE], SSE comments and events, role-only or usage-only chunks) are dropped
  with their timestamps: TTFT is the first content response, E2E the last. Output tokens are a chunk's
  `usage.completion_tokens` when the stream carries usage, else one per content chunk (the vLLM and TRT-LLM
  streaming default); input tokens are `usage.prompt_tokens`, the payload's stated count, or the prompt's
  characters / 4, since genai-perf keeps token counts out of this file (it runs a tokenizer).
- guidellm: a GuideLLM report JSON (`benchmarks.json`). Newest (guidellm commit ee7a7745, 2026-08-07, v0.7.3+;
  this shape since v0.4.0): `metadata.version` 2, `benchmarks[].config.strategy.rate`,
  `benchmarks[].requests.{successful, errored, incomplete}[]` of GenerativeRequestStats
  (src/guidellm/schemas/request_stats.py) with `request_start_time` (epoch s), `request_latency` (s),
  `time_to_first_token_ms`, `prompt_tokens`, `output_tokens` (each null when unknown) and `info.{error,
  timings.{request_start, resolve_start, scheduled_at, targeted_start, ...}}`. Older (guidellm 0.2-0.3.x,
  src/guidellm/benchmark/benchmark.py GenerativeTextResponseStats/ErrorStats): `benchmarks[].args.strategy.rate`
  and requests with `start_time` (epoch s), `request_latency` (s), `time_to_first_token_ms`, `prompt_tokens`,
  `output_tokens`, `error`. With a --sample-size the report holds a sample of the requests, and so does the table.
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
from simfactory.inputs import MAX_RESULTS_BYTES, load_json_document, parse_json, read_input_text
from simfactory.traces.parse import MAX_TRACE_TOKENS

ImportFormat = Literal["vllm-bench", "aiperf", "genai-perf", "guidellm"]
FORMATS: tuple[str, ...] = ("vllm-bench", "aiperf", "genai-perf", "guidellm")
CHARS_PER_TOKEN = 4.0  # same rule of thumb as the trace parsers
UNITS_PER_S = {"ns": 1e9, "nanoseconds": 1e9, "us": 1e6, "microseconds": 1e6, "ms": 1e3, "milliseconds": 1e3,
               "s": 1.0, "sec": 1.0, "seconds": 1.0}  # AIPerf's MetricTimeUnit tags, old and new
VLLM_HINT = " (save the per-request arrays with `vllm bench serve --save-result --save-detailed`)"
SSE_NOT_DATA = (":", "event:", "id:", "retry:")  # genai-perf's not_data_sse_field


def _read_text(path: Path) -> str:
    """A regular results file under MAX_RESULTS_BYTES, read without blocking (simfactory.inputs)."""
    return read_input_text(path, "", MAX_RESULTS_BYTES, "results file")


def load_results_json(path: Path) -> Any:
    """A results file read as JSON (size-capped, non-blocking); any failure one InputError naming it."""
    return load_json_document(_read_text(path), str(path))


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


def _given(doc: dict[str, Any], key: str, file: str, where: str = "", hint: str = "") -> Any:
    """Like _need, but null counts as missing too (the newest formats write null for what they do not know)."""
    value = _need(doc, key, file, where, hint)
    if value is None:
        raise InputError(file, f"{where}{key}", f"missing (null){hint}")
    return value


def _number(value: Any, file: str, field: str) -> float:
    try:
        x = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        x = math.inf
    if not math.isfinite(x):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise InputError(file, field, f"expected a finite number, got {shown}")
    return x


def _ns(value: Any, file: str, field: str) -> int | float:
    """A nanosecond timestamp, kept an exact int when it is one (as a float, 1.7e18 ns is good to 256 ns only)."""
    x = _number(value, file, field)
    return value if isinstance(value, int) and not isinstance(value, bool) else x


def _rate_rps(value: Any) -> float:
    """A recorded request rate, or NaN for none, "inf" (vLLM's back-to-back) or anything not a finite number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else float("nan")


def _vllm_array(doc: dict[str, Any], key: str, n: int, file: str, optional: bool = False) -> list[Any] | None:
    """One of vllm's per-request arrays: a list of n entries, or None when optional and absent (or null)."""
    arr = doc.get(key)
    if arr is None and optional:
        return None
    if not isinstance(arr, list) or len(arr) != n:
        raise InputError(file, key, f"expected a list of {n} entries (one per request, like input_lens)")
    return arr


def vllm_bench(path: Path) -> pd.DataFrame:
    doc = load_results_json(path)
    f = str(path)
    if not isinstance(doc, dict):
        raise InputError(f, "", "expected a JSON object (vllm bench serve --save-result output)")
    for key in ("input_lens", "output_lens", "ttfts"):
        _need(doc, key, f, hint=VLLM_HINT)
    if doc.get("latencies") is None:  # older vllm: E2E is TTFT + the inter-token gaps
        _need(doc, "itls", f, hint=VLLM_HINT)
    inp = doc["input_lens"]
    if not isinstance(inp, list):
        raise InputError(f, "input_lens", "expected a list (one entry per request)")
    n = len(inp)
    out_raw, ttfts = _vllm_array(doc, "output_lens", n, f) or [], _vllm_array(doc, "ttfts", n, f) or []
    latencies = _vllm_array(doc, "latencies", n, f, optional=True)
    itls = _vllm_array(doc, "itls", n, f, optional=latencies is not None)
    errors = _vllm_array(doc, "errors", n, f, optional=True) or [""] * n
    starts_raw = _vllm_array(doc, "start_times", n, f, optional=True)
    starts = None if starts_raw is None else [_number(x, f, f"start_times[{i}]") for i, x in enumerate(starts_raw)]
    out = [_tokens(x or 0, f, f"output_lens[{i}]") for i, x in enumerate(out_raw)]
    t0 = min(starts) if starts else 0.0
    rate = _rate_rps(doc.get("request_rate"))
    rows = []
    for i in range(n):
        ok = not errors[i] and out[i] > 0
        ttft_s = _number(ttfts[i], f, f"ttfts[{i}]") if ok else 0.0
        if not ok:
            e2e_s = 0.0
        elif latencies is not None:
            e2e_s = _number(latencies[i], f, f"latencies[{i}]")
        else:
            gaps = itls[i] if itls is not None and isinstance(itls[i], list) else []
            e2e_s = ttft_s + sum(_number(g, f, f"itls[{i}]") for g in gaps)
        send_s = (starts[i] - t0) if starts else float("nan")
        error = str(errors[i] or "") or ("" if ok else "no output tokens")  # a non-200 reply may give no reason
        rows.append(request_row(i, send_s, _tokens(inp[i], f, f"input_lens[{i}]"), out[i], ttft_s, e2e_s, bool(ok),
                                error, rate))
    frame = pd.DataFrame(rows)
    if not starts:  # send times unknown: replay as evenly spread at the recorded rate (or back to back)
        gap_s = 1.0 / rate if rate > 0 else 0.0
        frame["send_s"] = np.arange(n) * gap_s
    return frame


def _metric(metrics: dict[str, Any], name: str, file: str, line: int, time: bool = False) -> float | None:
    """An AIPerf metric {value, unit}, None when absent; times come back in seconds."""
    m = metrics.get(name)
    if m is None:
        return None
    field = f"line {line}: metrics.{name}"
    value = _number(m.get("value") if isinstance(m, dict) else m, file, f"{field}.value")
    unit = m.get("unit") if isinstance(m, dict) else None
    if not time or unit in (None, ""):  # a bare number: already seconds (or tokens)
        return value
    if str(unit).lower() not in UNITS_PER_S:
        raise InputError(file, f"{field}.unit", f"unknown time unit {str(unit)[:40]!r} (expected ns, us, ms or s)")
    return value / UNITS_PER_S[str(unit).lower()]


def _aiperf_error(error: Any, cancelled: bool) -> str:
    """An AIPerf ErrorDetails {code, type, message} as one line, e.g. "ServiceUnavailable 503: overloaded"."""
    if isinstance(error, dict):
        head = " ".join(str(error[k]) for k in ("type", "code") if error.get(k) not in (None, ""))
        message = error.get("message")
        return f"{head}: {message}" if head and message else str(message or head or json.dumps(error))
    if error:
        return str(error)
    return "cancelled" if cancelled else ""


def _aiperf_row(rec: dict[str, Any], meta: dict[str, Any], f: str, line: int) -> tuple[dict[str, Any], int | float]:
    """One request row (send_s still 0) and its request_start_ns."""
    start_ns = _ns(_need(meta, "request_start_ns", f, f"line {line}: metadata."), f,
                   f"line {line}: metadata.request_start_ns")
    metrics = rec.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise InputError(f, f"line {line}: metrics", "expected an object of {value, unit} metrics")
    error, cancelled = rec.get("error"), bool(meta.get("was_cancelled", False))
    ok = not error and not cancelled
    isl_name = "input_sequence_length" if "input_sequence_length" in metrics or ok else "error_isl"
    inp = _metric(metrics, isl_name, f, line)
    out = _metric(metrics, "output_sequence_length", f, line)
    for name, v in ((isl_name, inp), ("output_sequence_length", out)):
        if v is not None:
            _tokens(v, f, f"line {line}: metrics.{name}.value")
    ttft_s = _metric(metrics, "time_to_first_token", f, line, time=True)
    e2e_s = _metric(metrics, "request_latency", f, line, time=True)
    if ok:
        for name, v in (("input_sequence_length", inp), ("output_sequence_length", out),
                        ("time_to_first_token", ttft_s), ("request_latency", e2e_s)):
            if v is None:
                hint = " (AIPerf records TTFT for streaming runs only: profile with --streaming)" \
                    if name == "time_to_first_token" else ""
                raise InputError(f, f"line {line}: metrics.{name}", f"missing{hint}")
    rid = next((meta[k] for k in ("x_request_id", "request_num") if meta.get(k) is not None), f"line {line}")
    return request_row(rid, 0.0, inp or 0, out or 0, ttft_s or 0.0, e2e_s or 0.0, ok,
                       _aiperf_error(error, cancelled)), start_ns


def aiperf(path: Path) -> pd.DataFrame:
    f = str(path)
    rows: list[tuple[dict[str, Any], int | float]] = []
    for line, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        rec = load_json_document(raw, f, f"line {line}")
        meta = _need(rec, "metadata", f, f"line {line}: ")
        if not isinstance(meta, dict):
            raise InputError(f, f"line {line}: metadata", "expected an object")
        if str(meta.get("benchmark_phase", "profiling")).lower() != "profiling":
            continue  # warm-up requests are not measurements
        rows.append(_aiperf_row(rec, meta, f, line))
    if not rows:
        raise InputError(f, "", "no profiling records")
    return _sent_ns_apart(rows)


def _sent_ns_apart(rows: list[tuple[dict[str, Any], int | float]]) -> pd.DataFrame:
    """Request rows with send_s from their nanosecond send times, relative to the first, subtracted exactly."""
    t0_ns = min(start_ns for _, start_ns in rows)
    return pd.DataFrame([{**row, "send_s": (start_ns - t0_ns) / 1e9} for row, start_ns in rows])


def _chunk_has_text(data: Any) -> bool:
    """Whether one streamed chunk carries generated text (OpenAI completions or chat, vLLM's reasoning fields,
    Triton generate's text_output); a non-object chunk (Hugging Face generate's list) counts when not empty."""
    if not isinstance(data, dict):
        return bool(data)
    if "text_output" in data:
        return bool(data["text_output"])
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False  # e.g. the usage-only chunk that ends a stream with include_usage
    holders = (choices[0], choices[0].get("delta"), choices[0].get("message"))
    return any(isinstance(h, dict) and any(h.get(k) for k in ("text", "content", "reasoning_content", "reasoning"))
               for h in holders)


def _genai_response(output: Any, file: str, field: str) -> tuple[int, dict[str, Any] | None]:
    """(content chunks, usage) of one genai-perf response output: its SSE events that carry text count, [DONE],
    comments, role-only and usage-only events do not (several events can arrive as one response)."""
    if not isinstance(output, dict):
        return 0, None
    if "response" not in output:  # Triton / TRT-LLM outputs: text_output or output_ids
        ids = output.get("output_ids")
        return (len(ids) if isinstance(ids, list) else int(any(v not in ("", None) for v in output.values()))), None
    chunks, usage = 0, None
    for event in str(output["response"] or "").strip().split("\n\n"):
        event = event.strip()
        if not event or event.startswith(SSE_NOT_DATA):
            continue
        body = event[len("data:"):].strip() if event.startswith("data:") else event
        if body == "[DONE]":
            continue
        try:
            data = parse_json(body, file, field)
        except ValueError:  # not JSON: plain text
            chunks += 1
            continue
        if isinstance(data, dict) and isinstance(data.get("usage"), dict):
            usage = data["usage"]
        chunks += _chunk_has_text(data)
    return chunks, usage


def _genai_content(stamps: list[int | float], outputs: Any, file: str,
                   where: str) -> tuple[list[int | float], int, dict[str, Any] | None]:
    """The response timestamps that carry content, the content chunks and the last usage seen; without outputs
    (or a count that does not match) every response is one token, as before."""
    if not isinstance(outputs, list) or len(outputs) != len(stamps):
        return stamps, len(stamps), None
    kept: list[int | float] = []
    chunks, usage = 0, None
    for i, (stamp, output) in enumerate(zip(stamps, outputs)):
        n, found = _genai_response(output, file, f"{where}response_outputs[{i}]")
        usage = found or usage
        if n:
            kept.append(stamp)
            chunks += n
    return kept, chunks, usage


def _genai_row(req: dict[str, Any], where: str, f: str, rid: str, rate: float) -> tuple[dict[str, Any], int | float]:
    """One request row (send_s still 0) and its timestamp (ns)."""
    ts_ns = _ns(_need(req, "timestamp", f, where), f, where + "timestamp")
    raw = _need(req, "response_timestamps", f, where)
    if not isinstance(raw, list):
        raise InputError(f, where + "response_timestamps", "expected a list of nanosecond timestamps")
    stamps = [_ns(t, f, f"{where}response_timestamps[{i}]") for i, t in enumerate(raw)]
    kept, chunks, usage = _genai_content(stamps, req.get("response_outputs"), f, where)
    usage = usage or {}
    if usage.get("prompt_tokens") is not None:
        inp = _tokens(usage["prompt_tokens"], f, where + "response_outputs: usage.prompt_tokens")
    else:
        inp = _tokens(_prompt_tokens(req.get("request_inputs"), f, where + "request_inputs"), f,
                      where + "request_inputs")
    out = chunks
    if usage.get("completion_tokens") is not None:
        out = _tokens(usage["completion_tokens"], f, where + "response_outputs: usage.completion_tokens")
    ok = len(kept) > 0
    ttft_s = (kept[0] - ts_ns) / 1e9 if ok else 0.0
    e2e_s = (kept[-1] - ts_ns) / 1e9 if ok else 0.0
    row = request_row(rid, 0.0, inp, out if ok else 0, ttft_s, e2e_s, ok, "" if ok else "no response", rate)
    return row, ts_ns


def genai_perf(path: Path) -> pd.DataFrame:
    doc = load_results_json(path)
    f = str(path)
    experiments = _need(doc, "experiments", f)
    rows: list[tuple[dict[str, Any], int | float]] = []
    for e, exp in enumerate(experiments):
        requests = _need(exp, "requests", f, f"experiments[{e}].")
        setting = exp.get("experiment") or {}
        rate = _rate_rps(setting.get("value")) if setting.get("mode") == "request_rate" else float("nan")
        for r, req in enumerate(requests):
            rows.append(_genai_row(req, f"experiments[{e}].requests[{r}].", f, f"{e}-{r}", rate))
    if not rows:
        raise InputError(f, "experiments", "no requests")
    return _sent_ns_apart(rows)


def _prompt_tokens(inputs: Any, file: str = "<payload>", field: str = "payload") -> int:
    """Tokens of a genai-perf request: Triton C API's input_ids, the payload's stated count if any, else the
    prompt's characters / 4 (OpenAI `payload` JSON text: prompt or messages; Triton: text_input)."""
    inputs = inputs if isinstance(inputs, dict) else {}
    if isinstance(inputs.get("input_ids"), list):
        return len(inputs["input_ids"])
    payload = inputs.get("payload", inputs.get("text_input", ""))
    try:
        body = parse_json(payload, file, field) if isinstance(payload, str) else payload
    except ValueError:  # not JSON (JSONDecodeError), or an over-long integer: the text is the prompt
        body = {"prompt": payload}
    if not isinstance(body, dict):
        return max(int(len(str(body)) / CHARS_PER_TOKEN), 1)
    for key in ("prompt_tokens", "input_tokens"):
        if isinstance(body.get(key), int):
            return int(body[key])
    text = body.get("prompt") or body.get("text_input") or " ".join(
        _message_text(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))
    return max(int(len(str(text)) / CHARS_PER_TOKEN), 1)


def _message_text(content: Any) -> str:
    """A chat message's text: a string, or the text parts of a multimodal list."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _guidellm_start(req: dict[str, Any], f: str, where: str) -> float:
    """Send time (epoch s): `request_start_time` (0.4+: request_start, else resolve_start) or `start_time`
    (0.2-0.3); for a newest-format request that never reached the server, the first of its scheduler timings."""
    info = req.get("info") if isinstance(req.get("info"), dict) else {}
    timings = info.get("timings") if isinstance(info.get("timings"), dict) else {}
    candidates = [("request_start_time", req.get("request_start_time")), ("start_time", req.get("start_time"))]
    candidates += [(f"info.timings.{k}", timings.get(k))
                   for k in ("request_start", "resolve_start", "scheduled_at", "dequeued", "targeted_start")]
    for key, value in candidates:
        if value is not None:
            return _number(value, f, where + key)
    raise InputError(f, where + ("request_start_time" if info else "start_time"), "missing")


def _guidellm_row(req: dict[str, Any], status: str, f: str, where: str, rid: str, rate: float) -> dict[str, Any]:
    ok = status == "successful"
    start_s = _guidellm_start(req, f, where)
    inp = _tokens(req.get("prompt_tokens") or 0, f, where + "prompt_tokens")
    out = _tokens(req.get("output_tokens") or 0, f, where + "output_tokens")
    ttft_s = e2e_s = 0.0
    if ok:
        inp = _tokens(_given(req, "prompt_tokens", f, where), f, where + "prompt_tokens")
        out = _tokens(_given(req, "output_tokens", f, where), f, where + "output_tokens")
        ttft_s = _number(_given(req, "time_to_first_token_ms", f, where), f, where + "time_to_first_token_ms") / 1000.0
        e2e_s = _number(_given(req, "request_latency", f, where), f, where + "request_latency")
    info = req.get("info") if isinstance(req.get("info"), dict) else {}
    error = req.get("error") or info.get("error")
    return request_row(req.get("request_id") or rid, start_s, inp, out, ttft_s, e2e_s, ok,
                       "" if ok else str(error or status), rate)


def guidellm(path: Path) -> pd.DataFrame:
    doc = load_results_json(path)
    f = str(path)
    benchmarks = _need(doc, "benchmarks", f)
    rows: list[dict[str, Any]] = []
    for b, bench in enumerate(benchmarks):
        requests = _need(bench, "requests", f, f"benchmarks[{b}].")
        rate = _guidellm_rate(bench)
        for status in ("successful", "errored", "incomplete"):
            for r, req in enumerate(requests.get(status, []) or []):
                rows.append(_guidellm_row(req, status, f, f"benchmarks[{b}].requests.{status}[{r}].",
                                          f"{b}-{status}-{r}", rate))
    if not rows:
        raise InputError(f, "benchmarks", "no requests")
    frame = pd.DataFrame(rows)
    frame["send_s"] -= frame["send_s"].min()
    return frame


def _guidellm_rate(bench: dict[str, Any]) -> float:
    """The strategy's rate: `config.strategy` (0.4+), `args.strategy` (0.2-0.3), or `scheduler.strategy`."""
    for holder in ("config", "args", "scheduler"):
        section = bench.get(holder)
        strategy = section.get("strategy") if isinstance(section, dict) else None
        rate = strategy.get("rate") if isinstance(strategy, dict) else None
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
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
