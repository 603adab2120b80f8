"""`run --otlp`: simulated tasks as OpenTelemetry traces. The file is checked against OTLP's own protobuf message
definitions (opentelemetry-proto), with OTLP/JSON's hex ids, and against the run it came from."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from simfactory.api import prepare
from simfactory.cli import app
from simfactory.metrics.otel import EPOCH_UNIX_S, otlp_traces
from simfactory.sim.run import simulate
from simfactory.paths import PROJECT_ROOT

pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                         reason="opentelemetry-proto (the dev extra) checks the OTLP format")
from google.protobuf import json_format  # noqa: E402  (installed with opentelemetry-proto)

AGENT = PROJECT_ROOT / "scenarios" / "support-agent.yaml"


def _as_protobuf_json(doc: dict) -> dict:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as base64."""
    out = json.loads(json.dumps(doc))
    for rs in out["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return out


def _parse(doc: dict):
    msg = pb.ExportTraceServiceRequest()
    json_format.ParseDict(_as_protobuf_json(doc), msg, ignore_unknown_fields=True)  # OTLP: unknown fields ignored
    return msg


@pytest.fixture(scope="module")
def agent_run():
    return simulate(prepare(AGENT), seed=3, keep_logs=4)


def test_agent_tasks_are_otlp_traces_with_genai_spans(agent_run):
    doc = otlp_traces(agent_run, 4)
    msg = _parse(doc)
    spans = list(msg.resource_spans[0].scope_spans[0].spans)
    roots = [s for s in spans if not s.parent_span_id]
    assert len(roots) == 4 and len({s.trace_id for s in spans}) == 4
    ids = {s.span_id for s in spans}
    assert len(ids) == len(spans) and all(s.parent_span_id in ids for s in spans if s.parent_span_id)
    attrs = {s.span_id: {a.key: a.value for a in s.attributes} for s in spans}
    tasks = [t for t in agent_run.tasks if t.log][:4]
    for root, task in zip(roots, tasks):
        a = attrs[root.span_id]
        assert a["gen_ai.operation.name"].string_value == "invoke_agent"
        assert a["simfactory.task_id"].int_value == task.task_id
        assert root.start_time_unix_nano == EPOCH_UNIX_S * 10**9 + round(task.start_s * 1e9)
        chats = [s for s in spans if s.trace_id == root.trace_id and s.name.startswith("chat ")]
        assert len(chats) == int((agent_run.table.task_id == task.task_id).sum())  # every LLM attempt is a span
        assert sum(attrs[c.span_id]["gen_ai.usage.input_tokens"].int_value for c in chats) == task.tokens_in
        for c in chats:
            assert root.start_time_unix_nano <= c.start_time_unix_nano <= c.end_time_unix_nano
            assert c.kind == 3 and attrs[c.span_id]["gen_ai.request.model"].string_value.startswith("llama")
    assert any(s.name.startswith("execute_tool") for s in spans)


def test_the_same_seed_writes_the_same_traces(agent_run):
    again = simulate(prepare(AGENT), seed=3, keep_logs=4)
    assert json.dumps(otlp_traces(agent_run, 4)) == json.dumps(otlp_traces(again, 4))


def test_plain_requests_are_one_span_traces():
    result = simulate(prepare(PROJECT_ROOT / "scenarios" / "default.yaml"), seed=1, keep_logs=0)
    spans = list(_parse(otlp_traces(result, 7)).resource_spans[0].scope_spans[0].spans)
    assert len(spans) == 7 and len({s.trace_id for s in spans}) == 7 and not any(s.parent_span_id for s in spans)


def test_run_otlp_writes_it_in_the_run_folder(tmp_path):
    res = CliRunner().invoke(app, ["run", str(AGENT), "-o", str(tmp_path / "r"), "--otlp", "--trace-tasks", "2",
                                   "--no-plots", "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r" / "otlp.json").read_text())
    assert doc["generator"].startswith("simfactory")
    assert len([s for s in _parse(doc).resource_spans[0].scope_spans[0].spans if not s.parent_span_id]) == 2
