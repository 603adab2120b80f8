"""An agent workload fitted to OpenTelemetry traces (OTLP/JSON, GenAI semantic conventions): the agent analogue
of `trace fit`.

Each trace is one task: its root span (no parent in the trace) and its leaf spans, the steps. A step's key is its
`simfactory.step` attribute when it has one, else its span name (`chat llama-3.1-8b`, `execute_tool crm`); its
type comes from `gen_ai.operation.name` (chat / text_completion / generate_content: an LLM call; execute_tool: a
tool call), or a span named `retrieval`; anything else is a pause of the span's duration. Per key, over the traces:
how often it appears (a branch when not always), how many times (a loop whose continue probability gives that
mean, capped at the most seen), how many run at once (a parallel fan-out when a trace overlaps them), and its
measured quantiles: prompt and answer tokens (`gen_ai.usage.*`) for LLM calls, durations for the others. Steps run
in the order they first appear (their mean rank). LLM calls carry no context between them (each call's prompt is
the whole prompt the trace recorded) and name their model as the role a scenario maps to a deployment. Task
arrivals (the root spans' starts) are fitted as `trace fit` fits requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simfactory.config.limits import MAX_TOKENS
from simfactory.errors import InputError
from simfactory.inputs import MAX_RESULTS_BYTES, load_json_document, read_input_text
from simfactory.traces.fit import fit_arrivals

LLM_OPERATIONS = ("chat", "text_completion", "generate_content")
TOKEN_ATTRIBUTES = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
QUANTILE_POINTS = 101
MAX_FITTED_ITERATIONS = 1000


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_s: float
    end_s: float
    attrs: dict[str, Any]


@dataclass
class StepStats:
    kind: str  # llm | tool | retrieval | wait
    key: str
    model: str = ""
    ranks: list[float] = field(default_factory=list)  # first-occurrence rank in each trace that has it
    counts: list[int] = field(default_factory=list)  # occurrences per trace that has it
    overlaps: list[int] = field(default_factory=list)  # most of it open at once, per trace that has it
    durations_s: list[float] = field(default_factory=list)
    input_tokens: list[float] = field(default_factory=list)
    output_tokens: list[float] = field(default_factory=list)


def _value(v: dict[str, Any]) -> Any:
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        return int(v["intValue"])
    return None


def read_spans(path: Path) -> list[Span]:
    """Every span of an OTLP/JSON traces file; a file that is not one is an InputError naming the field."""
    doc = load_json_document(read_input_text(path, "", MAX_RESULTS_BYTES, "traces file"), str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        raise InputError(str(path), "resourceSpans", "not an OTLP/JSON traces file (no resourceSpans list)")
    spans = []
    def objects(items: Any, where: str) -> list[tuple[int, dict[str, Any]]]:
        if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
            raise InputError(str(path), where, "expected a list of JSON objects, as OTLP/JSON has there")
        return list(enumerate(items))

    for i, rs in objects(doc["resourceSpans"], "resourceSpans"):
        for j, ss in objects(rs.get("scopeSpans") or [], f"resourceSpans[{i}].scopeSpans"):
            for k, sp in enumerate(ss.get("spans") or []):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                try:
                    start, end = int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"])
                    attrs = {a["key"]: _value(a.get("value") or {}) for a in sp.get("attributes") or []}
                    for key in TOKEN_ATTRIBUTES:
                        v = attrs.get(key)
                        if v is not None and not (isinstance(v, (int, float)) and 0 <= v <= MAX_TOKENS):
                            raise ValueError(f"{key} must be a token count 0-{MAX_TOKENS:,}, got {v!r}")
                    spans.append(Span(str(sp["traceId"]), str(sp["spanId"]), str(sp.get("parentSpanId") or ""),
                                      str(sp.get("name", "")), start / 1e9, max(end, start) / 1e9, attrs))
                except (KeyError, TypeError, ValueError) as exc:
                    raise InputError(str(path), where, f"not an OTLP span ({type(exc).__name__}: {exc})") from None
    if not spans:
        raise InputError(str(path), "resourceSpans", "no spans")
    return spans


def _kind(sp: Span) -> str:
    op = sp.attrs.get("gen_ai.operation.name")
    if op in LLM_OPERATIONS:
        return "llm"
    if op == "execute_tool":
        return "tool"
    return "retrieval" if sp.name == "retrieval" or sp.attrs.get("simfactory.category") == "retrieval" else "wait"


def _max_open(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return max(best, 1)


def collect(spans: list[Span]) -> tuple[dict[str, StepStats], list[float], int]:
    """Per step key its statistics, the task start times and the number of traces."""
    by_trace: dict[str, list[Span]] = {}
    for sp in spans:
        by_trace.setdefault(sp.trace_id, []).append(sp)
    stats: dict[str, StepStats] = {}
    starts = []
    for group in by_trace.values():
        ids = {sp.span_id for sp in group}
        parents = {sp.parent_id for sp in group}
        roots = [sp for sp in group if sp.parent_id not in ids]
        root_ids = {sp.span_id for sp in roots}
        starts.append(min(sp.start_s for sp in roots))
        leaves = sorted((sp for sp in group if sp.span_id not in parents and sp.span_id not in root_ids),
                        key=lambda s: s.start_s)
        seen: dict[str, list[Span]] = {}
        for sp in leaves:
            seen.setdefault(str(sp.attrs.get("simfactory.step") or sp.name), []).append(sp)
        for rank, (key, occ) in enumerate(seen.items()):
            kind = _kind(occ[0])
            st = stats.setdefault(key, StepStats(kind, key, str(occ[0].attrs.get("gen_ai.request.model") or "")))
            st.ranks.append(rank)
            st.counts.append(len(occ))
            st.overlaps.append(_max_open([(s.start_s, s.end_s) for s in occ]))
            st.durations_s += [s.end_s - s.start_s for s in occ]
            st.input_tokens += [float(s.attrs.get("gen_ai.usage.input_tokens") or 1) for s in occ]
            st.output_tokens += [float(s.attrs.get("gen_ai.usage.output_tokens") or 1) for s in occ]
    return stats, starts, len(by_trace)


def _quantiles(values: list[float], floor: float) -> dict[str, Any]:
    v = np.maximum(np.asarray(values, dtype=float), floor)
    if np.ptp(v) == 0:
        return {"kind": "fixed", "value": float(f"{v[0]:.6g}")}
    q = np.maximum.accumulate(np.quantile(v, np.linspace(0, 1, QUANTILE_POINTS)))
    return {"kind": "quantiles", "values": [float(f"{x:.6g}") for x in q]}


def _name(key: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in key).strip("-")
    return out or "step"


def _body(st: StepStats) -> dict[str, Any]:
    name = _name(st.key)
    if st.kind == "llm":
        return {"type": "llm", "name": name, "model": _name(st.model or "model"), "include_context": False,
                "carry_output": False, "input_tokens": _quantiles(st.input_tokens, 1),
                "output_tokens": _quantiles(st.output_tokens, 1)}
    if st.kind == "tool":
        return {"type": "tool", "name": name, "service": "traced-tools", "latency_s": _quantiles(st.durations_s, 1e-6)}
    if st.kind == "retrieval":
        return {"type": "retrieval", "name": name, "latency_s": _quantiles(st.durations_s, 1e-6),
                "hit_tokens": {"kind": "fixed", "value": 0}}
    return {"type": "wait", "name": name, "duration_s": _quantiles(st.durations_s, 0.0)}


def _step(st: StepStats, traces: int) -> dict[str, Any]:
    """The key's step: its body, in a parallel fan-out when a trace ran several at once, in a loop when it repeats,
    in a branch when some traces lack it."""
    step = _body(st)
    fan = int(round(float(np.median(st.overlaps))))
    per_run = [c / fan for c in st.counts] if fan > 1 else [float(c) for c in st.counts]
    if fan > 1:
        step = {"type": "parallel", "name": f"{step['name']}-fan-out", "steps": [step],
                "fan_out": {"kind": "fixed", "value": fan}}
    mean_runs = float(np.mean(per_run))
    if max(per_run) > 1 and mean_runs > 1:
        step = {"type": "loop", "name": f"{_name(st.key)}-loop", "continue_p": round(1 - 1 / mean_runs, 6),
                "max_iterations": int(min(math.ceil(max(per_run)), MAX_FITTED_ITERATIONS)), "steps": [step]}
    p = len(st.counts) / traces
    if p < 0.999:
        step = {"type": "branch", "name": f"{_name(st.key)}-taken",
                "options": [{"p": round(p, 6), "steps": [step]}, {"p": round(1 - round(p, 6), 6), "steps": []}]}
    return step


def fit_agent(path: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `kind: agent` workload the traces describe, and a report (traces, steps, the fitted task arrivals)."""
    stats, starts, traces = collect(read_spans(path))
    ordered = sorted(stats.values(), key=lambda s: (float(np.mean(s.ranks)), s.key))
    if not ordered:
        raise InputError(str(path), "spans", "no step spans under the traces' roots")
    workload: dict[str, Any] = {
        "kind": "agent", "name": name,
        "description": f"Fitted to {path} ({traces} traces) by simfactory trace fit-agent.",
        "system_prompt_tokens": 0, "carry_over": 0.0,
        "steps": [_step(s, traces) for s in ordered],
        "source": f"fitted to {path}", "as_of": "fitted"}
    if any(s.kind == "tool" for s in ordered):
        workload["tools"] = [{"name": "traced-tools"}]
    report: dict[str, Any] = {"traces": traces, "roles": sorted({_name(s.model) for s in ordered if s.kind == "llm"}),
                              "steps": [{"key": s.key, "kind": s.kind, "in_traces": len(s.counts),
                                         "mean_count": float(np.mean(s.counts))} for s in ordered]}
    arrivals = fit_arrivals(np.asarray(starts))
    if arrivals is not None:
        report["arrival"] = arrivals.chosen.process
    return workload, report


