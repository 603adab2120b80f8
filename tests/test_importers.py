"""`calibrate import` on the newest output of each serving benchmark, built here the way each tool writes it
(the source file and commit named at each fixture), next to the older shapes tests/fixtures/calibration holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simfactory.calibration.importers import import_results
from simfactory.errors import InputError


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


# ------------------------------------------------------------------------------------------------------------
# vllm bench serve


def vllm_result() -> dict[str, Any]:
    """`vllm bench serve --save-result --save-detailed` as vllm/benchmarks/serve.py writes it at vllm commit
    009e6d4a1cd6: main_async's result_json (date ... ramp-up) merged with benchmark()'s result dict; failed
    requests have ttft 0.0, latency 0.0, output_lens 0 and their error text; start_times are perf_counter()."""
    return {
        "date": "20260801-101500", "endpoint_type": "openai", "backend": "openai", "label": None,
        "model_id": "meta-llama/Llama-3.1-8B-Instruct", "tokenizer_id": "meta-llama/Llama-3.1-8B-Instruct",
        "num_prompts": 3, "request_rate": 4.0, "burstiness": 1.0, "max_concurrency": None,
        "duration": 1.2, "completed": 2, "failed": 1, "total_input_tokens": 1536, "total_output_tokens": 7,
        "request_throughput": 1.67, "request_goodput": None, "output_throughput": 5.8,
        "total_token_throughput": 1285.8,
        "input_lens": [512, 256, 768],
        "output_lens": [4, 3, 0],
        "ttfts": [0.040, 0.050, 0.0],
        "itls": [[0.010, 0.012, 0.011], [0.020, 0.021], []],
        "latencies": [0.073, 0.091, 0.0],
        "start_times": [5021.10, 5021.35, 5021.90],
        "queue_times": [0.0, 0.0, 0.0],
        "generated_texts": [" a b c d", " e f g", ""],
        "errors": ["", "", "Bad Request"],
        "max_output_tokens_per_s": 7.0, "max_concurrent_requests": 2, "rtfx": 0.0,
        "mean_ttft_ms": 45.0, "median_ttft_ms": 45.0, "std_ttft_ms": 5.0, "p99_ttft_ms": 49.9,
        "mean_e2el_ms": 82.0, "median_e2el_ms": 82.0, "std_e2el_ms": 9.0, "p99_e2el_ms": 90.8,
    }


def test_vllm_bench_newest_reads_latencies_start_times_and_errors(tmp_path):
    t = import_results(write_json(tmp_path / "v.json", vllm_result()), "vllm-bench")
    assert list(t["ok"]) == [True, True, False]
    assert list(t["input_tokens"]) == [512, 256, 768] and list(t["output_tokens"]) == [4, 3, 0]
    assert t["ttft_s"].iloc[0] == pytest.approx(0.040) and t["e2e_s"].iloc[1] == pytest.approx(0.091)
    assert t["tpot_s"].iloc[1] == pytest.approx((0.091 - 0.050) / 2)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.25, 0.80])
    assert t["error"].iloc[2] == "Bad Request" and np.isnan(t["e2e_s"].iloc[2]) and (t["rate_rps"] == 4.0).all()


def test_vllm_bench_takes_e2e_from_latencies_not_the_gaps_when_it_has_them(tmp_path):
    doc = vllm_result()
    doc["latencies"][0] = 0.5  # a non-streamed tail the gaps do not see
    assert import_results(write_json(tmp_path / "v.json", doc), "vllm-bench")["e2e_s"].iloc[0] == pytest.approx(0.5)
    del doc["latencies"]  # the older shape: TTFT + the gaps
    t = import_results(write_json(tmp_path / "o.json", doc), "vllm-bench")
    assert t["e2e_s"].iloc[0] == pytest.approx(0.040 + 0.033)


def test_vllm_bench_back_to_back_rate_and_a_blank_error_still_count_as_a_failure(tmp_path):
    doc = vllm_result()
    doc["request_rate"] = "inf"  # what serve.py writes for --request-rate inf
    doc["errors"][2] = ""  # a non-200 reply with an empty reason
    del doc["start_times"]
    t = import_results(write_json(tmp_path / "v.json", doc), "vllm-bench")
    assert list(t["send_s"]) == [0.0, 0.0, 0.0] and t["rate_rps"].isna().all()
    assert int((~t["ok"]).sum()) == 1 and t["error"].iloc[2] == "no output tokens"


def test_vllm_bench_without_save_detailed_says_how_to_get_the_arrays(tmp_path):
    doc = {k: v for k, v in vllm_result().items()
           if k not in ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors")}
    assert "latencies" in doc  # serve.py keeps latencies and queue_times without --save-detailed
    with pytest.raises(InputError, match=r"input_lens: missing \(save the per-request arrays"):
        import_results(write_json(tmp_path / "v.json", doc), "vllm-bench")
    doc = vllm_result()
    doc["latencies"] = [0.1, "x", 0.0]
    with pytest.raises(InputError, match=r"latencies\[1\]: expected a finite number"):
        import_results(write_json(tmp_path / "b.json", doc), "vllm-bench")


# ------------------------------------------------------------------------------------------------------------
# aiperf


def aiperf_record(n: int, start_ns: int, phase: str = "profiling", metrics: dict | None = None,
                  error: dict | None = None, cancelled: bool = False) -> dict[str, Any]:
    """One profile_export.jsonl line as ai-dynamo/aiperf writes it: MetricRecordInfo
    (src/aiperf/common/models/record_export_models.py @745695dd) around MetricRecordMetadata
    (src/aiperf/common/metric_records_wire.py @017c63d2), msgspec with omit_defaults=True: None and False
    fields (error, was_cancelled, request_ack_ns ...) are left out; metrics in display units."""
    meta: dict[str, Any] = {"request_num": n, "session_num": n, "x_request_id": f"req-{n}",
                            "x_correlation_id": f"corr-{n}", "conversation_id": f"conv-{n}", "turn_index": 0,
                            "credit_issued_ns": start_ns - 1000, "credit_received_ns": start_ns - 500,
                            "request_start_ns": start_ns, "request_end_ns": start_ns + 300_000_000,
                            "worker_id": "worker_1", "record_processor_id": "record_processor_1",
                            "benchmark_phase": phase}
    if cancelled:
        meta.update(was_cancelled=True, cancellation_time_ns=start_ns + 1_000_000)
    else:
        meta["request_ack_ns"] = start_ns + 2_000_000
    rec: dict[str, Any] = {"metadata": meta, "metrics": metrics or {}}
    if error:
        rec["error"] = error
    return rec


def ms(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "ms"}


def tokens(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "tokens"}


def aiperf_file(tmp_path: Path) -> Path:
    t0 = 1_759_813_207_532_900_363
    ok = {"input_sequence_length": tokens(550), "time_to_first_token": ms(50.0), "request_latency": ms(250.0),
          "output_token_count": tokens(11), "output_sequence_length": tokens(11), "inter_token_latency": ms(20.0),
          "output_token_throughput_per_user": {"value": 50.0, "unit": "tokens/sec/user"}}
    records = [
        aiperf_record(0, t0 - 5_000_000_000, "warmup", ok),
        aiperf_record(0, t0, metrics=ok),
        aiperf_record(1, t0 + 500_000_000, metrics={**ok, "time_to_first_token": ms(60.0),
                                                   "request_latency": ms(460.0),
                                                   "output_sequence_length": tokens(21)}),
        aiperf_record(2, t0 + 1_000_000_000, metrics={"error_isl": tokens(300)},
                      error={"code": 503, "type": "ServiceUnavailable", "message": "overloaded"}),
        aiperf_record(3, t0 + 1_250_000_000, metrics={"error_isl": tokens(400)}, cancelled=True,
                      error={"code": 499, "type": "RequestCancellationError",
                             "message": "Request was cancelled after 0.001 seconds"}),
    ]
    path = tmp_path / "profile_export.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_aiperf_newest_records_without_defaults_and_with_error_isl(tmp_path):
    t = import_results(aiperf_file(tmp_path), "aiperf")
    assert list(t["request_id"]) == ["req-0", "req-1", "req-2", "req-3"]  # the warm-up record is skipped
    assert list(t["ok"]) == [True, True, False, False]
    assert t["ttft_s"].iloc[0] == pytest.approx(0.050) and t["e2e_s"].iloc[1] == pytest.approx(0.460)
    assert t["tpot_s"].iloc[0] == pytest.approx((0.250 - 0.050) / 10)
    assert list(t["input_tokens"]) == [550, 550, 300, 400] and list(t["output_tokens"]) == [11, 21, 0, 0]
    assert list(t["send_s"]) == pytest.approx([0.0, 0.5, 1.0, 1.25])
    assert t["error"].iloc[2] == "ServiceUnavailable 503: overloaded"
    assert t["error"].iloc[3].startswith("RequestCancellationError 499: Request was cancelled")


def test_aiperf_time_units_are_converted_and_an_unknown_one_is_named(tmp_path):
    rec = aiperf_record(0, 10**18, metrics={"input_sequence_length": tokens(10), "output_sequence_length": tokens(5),
                                            "time_to_first_token": {"value": 40_000, "unit": "us"},
                                            "request_latency": {"value": 0.2, "unit": "sec"}})
    (tmp_path / "a.jsonl").write_text(json.dumps(rec))
    t = import_results(tmp_path / "a.jsonl", "aiperf")
    assert t["ttft_s"].iloc[0] == pytest.approx(0.040) and t["e2e_s"].iloc[0] == pytest.approx(0.2)
    rec["metrics"]["request_latency"]["unit"] = "fortnights"
    (tmp_path / "b.jsonl").write_text(json.dumps(rec))
    with pytest.raises(InputError, match=r"line 1: metrics.request_latency.unit: unknown time unit 'fortnights'"):
        import_results(tmp_path / "b.jsonl", "aiperf")
    del rec["metrics"]["time_to_first_token"]
    rec["metrics"]["request_latency"]["unit"] = "ms"
    (tmp_path / "c.jsonl").write_text(json.dumps(rec))
    with pytest.raises(InputError, match=r"metrics.time_to_first_token: missing \(AIPerf records TTFT for streaming"):
        import_results(tmp_path / "c.jsonl", "aiperf")


def test_aiperf_older_pydantic_record_with_null_metrics_is_a_failed_row(tmp_path):
    """aiperf commit db4f6397 (2025-10, pydantic): every field written, error null when ok, and the docs of
    that version say metrics are null for a failed request."""
    rec = aiperf_record(7, 2 * 10**18, metrics={"input_sequence_length": tokens(9), "output_sequence_length": tokens(2),
                                               "time_to_first_token": ms(10.0), "request_latency": ms(30.0)})
    rec["metadata"].update(was_cancelled=False, cancellation_time_ns=None)
    rec["error"] = None
    failed = aiperf_record(8, 2 * 10**18 + 10**8, error={"code": None, "type": None, "message": "timed out"})
    failed.update(metrics=None)
    (tmp_path / "a.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(failed) + "\n")
    t = import_results(tmp_path / "a.jsonl", "aiperf")
    assert list(t["ok"]) == [True, False] and list(t["error"]) == ["", "timed out"]
    assert list(t["send_s"]) == pytest.approx([0.0, 0.1]) and t["e2e_s"].iloc[0] == pytest.approx(0.030)


# ------------------------------------------------------------------------------------------------------------
# genai-perf


def sse(chunk: dict[str, Any] | str) -> dict[str, str]:
    """One response output as perf_analyzer records an OpenAI stream: the raw SSE text of what arrived."""
    return {"response": "data: " + (chunk if isinstance(chunk, str) else json.dumps(chunk)) + "\n\n"}


def chat_delta(content: str | None = None, role: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": content} if role is None else {"role": role, "content": ""}
    return {"id": "c", "object": "chat.completion.chunk", "model": "llama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def genai_perf_export() -> dict[str, Any]:
    """profile_export.json as perf_analyzer's src/profile_data_exporter.cc writes it (triton-inference-server/
    perf_analyzer @263c5f6e, that file unchanged since aed6e3d4): experiments[].{experiment.{mode, value},
    requests[].{timestamp, request_inputs.payload, response_timestamps, response_outputs[].response},
    window_boundaries}, version, service_kind, endpoint; timestamps are system_clock nanoseconds."""
    usage_chunk = {"id": "c", "object": "chat.completion.chunk", "model": "llama", "choices": [],
                   "usage": {"prompt_tokens": 37, "completion_tokens": 3, "total_tokens": 40}}
    chat_payload = {"model": "llama", "messages": [{"role": "user", "content": "x" * 200}], "max_tokens": 3,
                    "stream": True, "stream_options": {"include_usage": True}}
    two_events = {"response": "data: " + json.dumps(chat_delta("b")) + "\n\ndata: " + json.dumps(chat_delta("c"))
                  + "\n\n"}  # perf_analyzer sometimes receives two SSE events as one response
    completion = {"id": "d", "object": "text_completion", "model": "llama",
                  "choices": [{"index": 0, "text": "t", "finish_reason": None}]}
    t0 = 1_760_000_000_000_000_000
    return {
        "experiments": [{
            "experiment": {"mode": "concurrency", "value": 2},
            "requests": [
                {"timestamp": t0, "request_inputs": {"payload": json.dumps(chat_payload)},
                 "response_timestamps": [t0 + 30_000_000, t0 + 80_000_000, t0 + 100_000_000, t0 + 101_000_000,
                                         t0 + 102_000_000],
                 "response_outputs": [sse(chat_delta(role="assistant")), sse(chat_delta("a")), two_events,
                                      sse(usage_chunk), sse("[DONE]")]},
                {"timestamp": t0 + 500_000_000,
                 "request_inputs": {"payload": json.dumps({"model": "llama", "prompt": "y" * 40, "stream": True})},
                 "response_timestamps": [t0 + 590_000_000, t0 + 600_000_000, t0 + 610_000_000, t0 + 611_000_000],
                 "response_outputs": [sse(completion), sse(completion), sse(completion), sse("[DONE]")]},
                {"timestamp": t0 + 700_000_000, "request_inputs": {"payload": json.dumps(chat_payload)},
                 "response_timestamps": [t0 + 750_000_000], "response_outputs": [sse("[DONE]")]},
            ],
            "window_boundaries": [t0, t0 + 1_000_000_000],
        }],
        "version": "",
        "service_kind": "openai",
        "endpoint": "v1/chat/completions",
    }


def test_genai_perf_drops_contentless_responses_and_reads_usage(tmp_path):
    t = import_results(write_json(tmp_path / "p.json", genai_perf_export()), "genai-perf")
    assert list(t["ok"]) == [True, True, False] and t["error"].iloc[2] == "no response"
    # request 0: role-only chunk, usage chunk and [DONE] dropped; TTFT at "a", E2E at the two-event response
    assert t["ttft_s"].iloc[0] == pytest.approx(0.080) and t["e2e_s"].iloc[0] == pytest.approx(0.100)
    assert t["output_tokens"].iloc[0] == 3 and t["input_tokens"].iloc[0] == 37  # from usage
    # request 1: no usage: one token per content chunk, prompt characters / 4
    assert t["output_tokens"].iloc[1] == 3 and t["input_tokens"].iloc[1] == 10
    assert t["ttft_s"].iloc[1] == pytest.approx(0.090) and t["e2e_s"].iloc[1] == pytest.approx(0.110)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.5, 0.7]) and t["rate_rps"].isna().all()  # concurrency mode


def test_genai_perf_two_events_in_one_response_are_two_tokens(tmp_path):
    doc = genai_perf_export()
    req = doc["experiments"][0]["requests"][0]
    req["response_outputs"][3] = sse("[DONE]")  # no usage chunk: count content events (a, b, c)
    t = import_results(write_json(tmp_path / "p.json", doc), "genai-perf")
    assert t["output_tokens"].iloc[0] == 3 and t["input_tokens"].iloc[0] == 50  # 200 characters / 4
    req["response_timestamps"][2] = "late"
    with pytest.raises(InputError, match=r"experiments\[0\].requests\[0\].response_timestamps\[2\]"):
        import_results(write_json(tmp_path / "q.json", doc), "genai-perf")


# ------------------------------------------------------------------------------------------------------------
# guidellm


def guidellm_request(rid: str, start: float, status: str, ttft_s: float | None, e2e_s: float | None,
                     prompt: int | None, output: int | None, error: str | None = None,
                     started: bool = True) -> dict[str, Any]:
    """One GenerativeRequestStats as guidellm's report (model_dump(mode="json")) holds it at guidellm commit
    ee7a7745 (src/guidellm/schemas/request_stats.py, info.py): fields plus the computed fields, which mirror
    info.timings (epoch seconds): request_start_time, request_latency, time_to_first_token_ms ..."""
    end = start + e2e_s if e2e_s is not None else None
    first = start + ttft_s if ttft_s is not None else None
    timings = {"targeted_start": start - 0.001, "queued": start - 0.01, "dequeued": start - 0.002,
               "scheduled_at": start - 0.001, "resolve_start": start,
               "request_start": start if started else None, "first_request_iteration": first,
               "first_token_iteration": first, "first_output_token_iteration": first,
               "last_token_iteration": end, "last_request_iteration": end, "request_iterations": output or 0,
               "token_iterations": output or 0, "request_end": end, "resolve_end": (end or start) + 0.001,
               "finalized": (end or start) + 0.002}
    info = {"request_id": rid, "conversation_id": None, "history_len": 0, "turn_index": 0, "node_id": None,
            "agent_id": None, "parent_node_ids": [], "status": status, "scheduler_node_id": 0,
            "scheduler_process_id": 0, "scheduler_start_time": start - 5, "timings": timings,
            "settings": {"relative_timestamp": None, "requeue_delay": None}, "error": error, "traceback": None}
    return {
        "type_": "generative_request_stats", "request_id": rid, "response_id": None,
        "request_args": '{"stream": true}', "output": "...", "reasoning_output": None, "tool_calls": None,
        "info": info, "input_metrics": {"text_tokens": prompt, "total_tokens": prompt},
        "output_metrics": {"text_tokens": output, "total_tokens": output},
        "request_start_time": start if started else timings["resolve_start"],
        "request_end_time": end if end is not None else timings["resolve_end"],
        "request_latency": e2e_s if started else None, "prompt_tokens": prompt, "cached_tokens": None,
        "output_tokens": output, "total_tokens": (prompt or 0) + (output or 0),
        "time_to_first_token_ms": 1000 * ttft_s if ttft_s is not None else None,
        "time_per_output_token_ms": 1000 * e2e_s / output if e2e_s and output else None,
        "inter_token_latency_ms": None, "tokens_per_second": None, "output_tokens_per_second": None,
        "time_to_first_output_token_ms": 1000 * ttft_s if ttft_s is not None else None,
        "iter_tokens_per_iteration": None, "output_tokens_per_iteration": None,
    }


def guidellm_report() -> dict[str, Any]:
    """GenerativeBenchmarksReport (src/guidellm/benchmark/schemas/report.py @ee7a7745): metadata.version 2,
    config, benchmarks[] of GenerativeBenchmark (schemas/benchmark.py) with config.strategy and requests as a
    StatusBreakdown {successful, incomplete, errored, total: null}."""
    t0 = 1_786_000_000.25
    bench = {
        "type_": "generative_benchmark",
        "config": {"id_": "b0", "run_id": "r0", "run_index": 0,
                   "strategy": {"type_": "constant", "rate": 3.0, "max_concurrency": None, "rampup_duration": 0.0},
                   "constraints": {}, "sample_size": None, "warmup": {"percent": None, "value": None},
                   "cooldown": {"percent": None, "value": None}, "prefer_response_metrics": True, "profile": {},
                   "requests": {}, "backend": {}, "environment": {}},
        "scheduler_state": {}, "scheduler_metrics": {}, "metrics": {},
        "requests": {
            "successful": [guidellm_request("g1", t0, "completed", 0.120, 0.8, 128, 33),
                           guidellm_request("g2", t0 + 0.4, "completed", 0.100, 0.6, 256, 17)],
            "incomplete": [guidellm_request("g4", t0 + 1.1, "cancelled", None, None, 64, None, started=False)],
            "errored": [guidellm_request("g3", t0 + 0.7, "errored", None, 0.05, 256, None,
                                         error="HTTPStatusError: 500 Internal Server Error")],
            "total": None,
        },
        "start_time": t0, "end_time": t0 + 2, "duration": 2.0, "warmup_duration": 0.0, "cooldown_duration": 0.0,
    }
    return {"metadata": {"version": 2, "guidellm_version": "0.7.3", "python_version": "3.12.3",
                         "platform": "Linux"}, "config": {}, "benchmarks": [bench]}


def test_guidellm_newest_report(tmp_path):
    t = import_results(write_json(tmp_path / "benchmarks.json", guidellm_report()), "guidellm")
    assert list(t["request_id"]) == ["g1", "g2", "g3", "g4"]
    assert list(t["ok"]) == [True, True, False, False]
    assert t["ttft_s"].iloc[0] == pytest.approx(0.120) and t["e2e_s"].iloc[1] == pytest.approx(0.6)
    assert t["tpot_s"].iloc[0] == pytest.approx((0.8 - 0.12) / 32)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.4, 0.7, 1.1])
    assert t["error"].iloc[2] == "HTTPStatusError: 500 Internal Server Error" and t["error"].iloc[3] == "incomplete"
    assert list(t["input_tokens"]) == [128, 256, 256, 64] and list(t["output_tokens"]) == [33, 17, 0, 0]
    assert (t["rate_rps"] == 3.0).all()


def test_guidellm_newest_nulls_and_missing_start_name_the_field(tmp_path):
    doc = guidellm_report()
    doc["benchmarks"][0]["requests"]["successful"][1]["time_to_first_token_ms"] = None  # a non-streamed request
    with pytest.raises(InputError, match=r"requests.successful\[1\].time_to_first_token_ms: missing \(null\)"):
        import_results(write_json(tmp_path / "a.json", doc), "guidellm")
    doc = guidellm_report()
    req = doc["benchmarks"][0]["requests"]["incomplete"][0]
    req["request_start_time"] = None
    req["info"]["timings"] = {}
    with pytest.raises(InputError, match=r"requests.incomplete\[0\].request_start_time: missing"):
        import_results(write_json(tmp_path / "b.json", doc), "guidellm")
