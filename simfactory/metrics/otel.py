"""Simulated tasks and requests as OpenTelemetry traces (OTLP/JSON, the body of an ExportTraceServiceRequest), in
the GenAI semantic conventions, so that Jaeger, Grafana Tempo or Arize Phoenix load them beside real agent traces.

One trace per sampled agent task: a root `invoke_agent {workload}` span, and under it one span per step of the
task's log: `chat {model}` (kind CLIENT) for each LLM call attempt, with `gen_ai.usage.input_tokens` /
`output_tokens` and simfactory's queue, prefill and decode times; `execute_tool {step}` for tool calls; the other
categories (retrieval, cache, human, backoff, wait, network) as INTERNAL spans named after them. Plain requests
(no agent) are one-span traces. Simulated time 0 is EPOCH_UNIX_S (fixed, so the same seed writes the same file);
trace and span ids are hashes of the seed and the task or request, hex-encoded as OTLP/JSON requires
(https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding). GenAI attributes:
https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ and .../gen-ai-agent-spans/ (as_of 2026-11).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from simfactory.sim.agents import leaves
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import SimResult
from simfactory.version import __version__

EPOCH_UNIX_S = 1_767_225_600  # 2026-01-01T00:00:00Z: simulated time 0
SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 1, 3
STATUS_OK, STATUS_ERROR = 1, 2
PROVIDER = "simfactory"  # gen_ai.provider.name: the simulated serving stack


def _hex_id(nbytes: int, *parts: object) -> str:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=nbytes).hexdigest()


def _nanos(t_s: float) -> str:
    return str(EPOCH_UNIX_S * 10**9 + int(round(t_s * 1e9)))  # OTLP/JSON: 64-bit integers as decimal strings


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


class _Spans:
    """Spans of one trace, ids derived from the seed, the trace key and a running count."""

    def __init__(self, seed: int, key: str) -> None:
        self.seed, self.key = seed, key
        self.trace_id = _hex_id(16, seed, key)
        self.spans: list[dict[str, Any]] = []

    def add(self, name: str, kind: int, start_s: float, end_s: float, attrs: dict[str, Any],
            parent: str | None = None, error: bool = False) -> str:
        span_id = _hex_id(8, self.seed, self.key, len(self.spans))
        span = {"traceId": self.trace_id, "spanId": span_id, "name": name, "kind": kind,
                "startTimeUnixNano": _nanos(start_s), "endTimeUnixNano": _nanos(max(end_s, start_s)),
                "attributes": [_attr(k, v) for k, v in attrs.items() if v is not None],
                "status": {"code": STATUS_ERROR if error else STATUS_OK}}
        if parent is not None:
            span["parentSpanId"] = parent
        self.spans.append(span)
        return span_id


def _chat_attrs(result: SimResult, rid: int) -> dict[str, Any]:
    t = result.table
    dep = int(t.deployment_id[rid])
    model = result.resolved.deployments[dep].config.model if dep >= 0 else "unrouted"
    queue = t.first_scheduled_s[rid] - t.arrival_s[rid] - t.net_in_s[rid] - t.front_end_s[rid]
    ttft = t.first_token_s[rid] - t.arrival_s[rid]
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER, "gen_ai.request.model": model,
            "gen_ai.response.model": model, "gen_ai.usage.input_tokens": int(t.input_tokens[rid]),
            "gen_ai.usage.output_tokens": int(t.generated[rid]),
            "simfactory.request_id": rid, "simfactory.outcome": Outcome(int(t.outcome[rid])).label,
            "simfactory.step": result.step_names[int(t.step_id[rid])] if int(t.step_id[rid]) >= 0 else None,
            "simfactory.deployment": result.resolved.deployments[dep].config.name if dep >= 0 else None,
            "simfactory.replica": int(t.replica[rid]), "simfactory.queue_s": None if math.isnan(queue) else float(queue),
            "simfactory.front_end_s": float(t.front_end_s[rid]) or None,
            "simfactory.ttft_s": None if math.isnan(ttft) else float(ttft),
            "simfactory.cached_tokens": int(t.cached_tokens[rid]), "simfactory.preemptions": int(t.preemptions[rid])}


def _chat_span(trace: _Spans, result: SimResult, rid: int, start_s: float, stop_s: float, parent: str | None) -> None:
    t = result.table
    attrs = _chat_attrs(result, rid)
    end = t.completion_s[rid] if not math.isnan(t.completion_s[rid]) else stop_s
    served = int(t.outcome[rid]) in (Outcome.COMPLETED, Outcome.CACHE_HIT)
    trace.add(f"chat {attrs['gen_ai.request.model']}", SPAN_KIND_CLIENT, max(float(t.arrival_s[rid]), start_s),
              min(end, stop_s), attrs, parent, error=not served)


def _task_trace(result: SimResult, rec: Any) -> _Spans:
    trace = _Spans(result.seed, f"task-{rec.task_id}")
    end_s = rec.end_s if not math.isnan(rec.end_s) else result.end_s
    workload = result.resolved.scenario.traffic.classes[rec.class_id].name
    root = trace.add(f"invoke_agent {workload}", SPAN_KIND_INTERNAL, rec.start_s, end_s,
                     {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": workload,
                      "gen_ai.provider.name": PROVIDER, "simfactory.task_id": rec.task_id,
                      "simfactory.outcome": rec.outcome, "simfactory.llm_calls": rec.llm_calls,
                      "simfactory.tool_calls": rec.tool_calls, "gen_ai.usage.input_tokens": rec.tokens_in,
                      "gen_ai.usage.output_tokens": rec.tokens_out},
                     error=rec.outcome not in ("completed", "degraded"))
    for entry in leaves(rec.log):
        stop = entry.end_s if entry.end_s is not None else end_s
        for rid in entry.rids or []:
            _chat_span(trace, result, rid, entry.start_s, stop, root)
        if entry.rids:
            continue
        if entry.category == "tool":
            trace.add("execute_tool tool", SPAN_KIND_INTERNAL, entry.start_s, stop,
                      {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "tool"}, root)
        else:
            trace.add(entry.category, SPAN_KIND_INTERNAL, entry.start_s, stop,
                      {"simfactory.category": entry.category}, root)
    return trace


def otlp_traces(result: SimResult, max_traces: int, generator: str = f"simfactory {__version__}") -> dict[str, Any]:
    """The ExportTraceServiceRequest (OTLP/JSON) of up to `max_traces` tasks (the first with a kept log), or of the
    first `max_traces` requests when the run has no agent tasks. `generator` (a field OTLP receivers ignore) marks
    the file as simfactory's."""
    traces: list[_Spans] = [_task_trace(result, rec) for rec in [r for r in result.tasks if r.log][:max_traces]]
    if not traces:
        t = result.table
        for rid in range(min(len(t), max_traces)):
            trace = _Spans(result.seed, f"request-{rid}")
            _chat_span(trace, result, rid, float(t.arrival_s[rid]), result.end_s, None)
            traces.append(trace)
    scenario = result.resolved.scenario
    resource = {"attributes": [_attr("service.name", f"simfactory/{scenario.name}"),
                               _attr("service.version", __version__), _attr("simfactory.seed", result.seed),
                               _attr("simfactory.simulated", True)]}
    scope = {"name": "simfactory", "version": __version__}
    spans = [s for tr in traces for s in tr.spans]
    return {"generator": generator,
            "resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": scope, "spans": spans}]}]}
