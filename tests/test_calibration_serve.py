"""Serving-level calibration without a GPU: the streaming client against a scripted in-test server, the
importers on fixtures in each tool's format, and predicted-vs-measured on a load the simulator produced."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simfactory.calibration.client import Endpoint, Session, endpoint_url, failure_causes, measure_endpoint, poisson_schedule
from simfactory.calibration.serving_summary import serving_summary
from simfactory.calibration.importers import import_results
from simfactory.calibration.validate import Deployment, compare, mape, simulate_block
from simfactory.cli import app
from simfactory.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "calibration"
FIRST_DELAY_S = 0.06
TOKEN_DELAY_S = 0.015


class ScriptedServer(BaseHTTPRequestHandler):
    """OpenAI-style SSE: waits FIRST_DELAY_S, then one text chunk per token every TOKEN_DELAY_S, a usage chunk
    and [DONE]; the model 'broken' answers HTTP 500."""

    def log_message(self, *args: object) -> None:
        pass

    seen: list[dict] = []  # every request body, for the tests to read

    def _fail(self, status: int, message: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(message)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ScriptedServer.seen.append({"path": self.path, "model": body["model"], "ignore_eos": "ignore_eos" in body,
                                    "auth": self.headers.get("Authorization"), "x_test": self.headers.get("X-Test")})
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            return self._fail(404, b'{"detail": "Not Found"}')
        if body["model"] == "broken":
            return self._fail(500, b'{"error": "boom"}')
        if body["model"] == "strict" and "ignore_eos" in body:  # transformers serve: extra fields are refused
            return self._fail(422, b'{"detail": [{"loc": ["body", "ignore_eos"], "msg": "Extra inputs are not permitted"}]}')
        if body["model"] == "auth" and (self.headers.get("Authorization") != "Bearer k" or self.headers.get("X-Test") != "1"):
            return self._fail(401, b'{"error": "unauthorized"}')
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chat = self.path.endswith("/chat/completions")
        n = int(body["max_tokens"])
        time.sleep(FIRST_DELAY_S)
        for k in range(n):
            if k:
                time.sleep(TOKEN_DELAY_S)
            choice = {"delta": {"content": f"t{k} "}} if chat else {"text": f"t{k} "}
            self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
            self.wfile.flush()
        prompt = body.get("prompt") or body["messages"][0]["content"]
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": n}
        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("chat", [False, True])
def test_client_recovers_the_servers_scripted_delays(server, chat):
    ep = Endpoint(url=server, model="m", chat=chat)
    table = measure_endpoint(ep, [20.0], 8, input_tokens=64, output_tokens=6, seed=1)
    assert len(table) == 8 and table["ok"].all()
    assert (table["output_tokens"] == 6).all()  # from the usage chunk
    assert table["ttft_s"].median() == pytest.approx(FIRST_DELAY_S, abs=0.02)
    assert table["tpot_s"].median() == pytest.approx(TOKEN_DELAY_S, abs=0.006)
    assert np.allclose(table["e2e_s"], table["ttft_s"] + 5 * table["tpot_s"])
    assert table["send_s"].is_monotonic_increasing or table["send_s"].sort_values().is_monotonic_increasing


def test_blocks_get_distinct_request_ids_and_repeated_rates_are_refused(server, tmp_path):
    from simfactory.calibration.measurements import check_requests

    table = measure_endpoint(Endpoint(url=server, model="m"), [40.0, 50.0], 3, 16, 4, seed=0)
    assert check_requests(table)["request_id"].is_unique and len(table) == 6
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", server, "--served-model", "m", "--sku", "h100-sxm",
                                   "--model", "llama-3.1-8b", "--rates", "2,2", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "each rate once" in res.output


def test_failed_requests_are_rows_not_gaps(server):
    table = measure_endpoint(Endpoint(url=server, model="broken"), [50.0], 3, 16, 4, seed=0)
    assert len(table) == 3 and not table["ok"].any()
    assert table["error"].str.startswith("HTTP 500").all()


def test_poisson_schedule_is_seeded_with_the_right_rate():
    a = poisson_schedule(5.0, 4000, 10, 10, seed=3)
    assert a == poisson_schedule(5.0, 4000, 10, 10, seed=3)
    gaps = np.diff([r.send_s for r in a])
    assert gaps.mean() == pytest.approx(0.2, rel=0.05)


def test_import_vllm_bench_detailed_result():
    t = import_results(FIXTURES / "vllm_bench.json", "vllm-bench")
    assert list(t["ok"]) == [True, True, False]
    assert t["ttft_s"].iloc[0] == pytest.approx(0.040)
    assert t["e2e_s"].iloc[0] == pytest.approx(0.040 + 0.033)
    assert t["tpot_s"].iloc[1] == pytest.approx(0.020)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.25, 0.60])
    assert t["error"].iloc[2] == "Server disconnected" and (t["rate_rps"] == 4.0).all()


def test_import_aiperf_skips_warmup_and_keeps_errors():
    t = import_results(FIXTURES / "aiperf_profile_export.jsonl", "aiperf")
    assert list(t["request_id"]) == ["r1", "r2", "r3"]
    assert t["ttft_s"].iloc[0] == pytest.approx(0.050) and t["e2e_s"].iloc[1] == pytest.approx(0.460)
    assert t["tpot_s"].iloc[0] == pytest.approx((0.250 - 0.050) / 10)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.5, 1.0]) and not t["ok"].iloc[2]


def test_import_genai_perf_counts_streamed_tokens():
    t = import_results(FIXTURES / "genai_perf_profile_export.json", "genai-perf")
    assert list(t["output_tokens"]) == [3, 2]  # [DONE] is not a token
    assert list(t["input_tokens"]) == [10, 2]  # 40 and 8 characters / 4
    assert t["ttft_s"].iloc[0] == pytest.approx(0.080) and t["e2e_s"].iloc[1] == pytest.approx(0.100)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.5]) and (t["rate_rps"] == 2.0).all()


def test_import_guidellm_report():
    t = import_results(FIXTURES / "guidellm_report.json", "guidellm")
    assert list(t["request_id"]) == ["g1", "g2", "g3"]
    assert t["ttft_s"].iloc[0] == pytest.approx(0.120) and t["e2e_s"].iloc[1] == pytest.approx(0.6)
    assert t["tpot_s"].iloc[0] == pytest.approx((0.8 - 0.12) / 32)
    assert list(t["send_s"]) == pytest.approx([0.0, 0.4, 0.7]) and t["error"].iloc[2] == "timeout"
    assert (t["rate_rps"] == 3.0).all()


def test_malformed_imports_name_the_field(tmp_path):
    doc = json.loads((FIXTURES / "vllm_bench.json").read_text())
    del doc["ttfts"]
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"r.json: ttfts: missing \(save the per-request arrays"):
        import_results(tmp_path / "r.json", "vllm-bench")
    doc = json.loads((FIXTURES / "guidellm_report.json").read_text())
    doc["benchmarks"][0]["requests"]["successful"][1]["time_to_first_token_ms"] = "fast"
    (tmp_path / "g.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"benchmarks\[0\].requests.successful\[1\].time_to_first_token_ms"):
        import_results(tmp_path / "g.json", "guidellm")
    res = CliRunner().invoke(app, ["calibrate", "import", str(tmp_path / "g.json"), "--format", "guidellm",
                                   "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "time_to_first_token_ms" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["calibrate", "import", str(FIXTURES / "aiperf_profile_export.jsonl"), "--format",
                                   "aiperf", "--out", str(tmp_path / "a.csv")])
    assert res.exit_code == 0 and len(pd.read_csv(tmp_path / "a.csv")) == 3


H100_8B = Deployment(sku="h100-sxm", model="llama-3.1-8b", replicas=1)


def test_validation_of_a_load_the_simulator_itself_served_has_no_error():
    """Round trip: simulate a Poisson load, call that the measurement, validate it: predicted == measured."""
    rng = np.random.default_rng(4)
    plan = pd.DataFrame({"send_s": np.cumsum(rng.exponential(0.25, 60)), "input_tokens": rng.integers(100, 2000, 60),
                         "output_tokens": rng.integers(20, 300, 60)})
    plan["send_s"] -= plan["send_s"].iloc[0]
    sim = simulate_block(plan, H100_8B, seed=0)
    measured = pd.DataFrame({"request_id": [str(i) for i in range(60)], "send_s": sim["send_s"],
                             "input_tokens": plan["input_tokens"], "output_tokens": sim["output_tokens"].astype(int),
                             "ttft_s": sim["ttft_s"], "tpot_s": sim["tpot_s"], "e2e_s": sim["e2e_s"], "ok": sim["ok"],
                             "rate_rps": 4.0})
    table = compare(measured, H100_8B, seed=0)
    assert set(table["metric"]) >= {"ttft_p50_s", "tpot_p90_s", "e2e_p90_s", "output_tokens_per_s"}
    assert mape(table) < 1e-6


def test_validation_sees_a_slower_server():
    """The same load measured 30% slower than simulated shows as about -23% error on E2E (1/1.3 - 1)."""
    plan = pd.DataFrame({"send_s": np.arange(20) * 0.5, "input_tokens": 500, "output_tokens": 100})
    sim = simulate_block(plan, H100_8B)
    slow = pd.DataFrame({"request_id": [str(i) for i in range(20)], "send_s": plan["send_s"], "input_tokens": 500,
                         "output_tokens": 100, "ttft_s": sim["ttft_s"] * 1.3, "tpot_s": sim["tpot_s"] * 1.3,
                         "e2e_s": sim["e2e_s"] * 1.3, "ok": True, "rate_rps": 2.0})
    row = compare(slow, H100_8B).set_index("metric").loc["e2e_p50_s"]
    assert row["error"] == pytest.approx(1 / 1.3 - 1, abs=0.01)


def test_serve_command_end_to_end_and_a_dead_endpoint(server, tmp_path):
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", server, "--served-model", "m", "--sku", "h100-sxm",
                                   "--model", "llama-3.1-8b", "--rates", "10,20", "--requests", "5",
                                   "--input-tokens", "32", "--output-tokens", "4", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    measured = pd.read_csv(tmp_path / "s" / "requests.csv")
    assert len(measured) == 10 and set(measured["rate_rps"]) == {10.0, 20.0}
    validation = pd.read_csv(tmp_path / "s" / "validation.csv")
    assert set(validation["rate_rps"].astype(str)) == {"10", "20"} and validation["predicted"].notna().all()
    assert "predicted vs measured" in res.output

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", f"http://127.0.0.1:{dead}", "--served-model", "m",
                                   "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--rates", "5", "--requests", "2",
                                   "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "every request failed" in res.output and "Traceback" not in res.output


def test_bad_deployment_flags_are_one_line_input_errors(tmp_path):
    t = import_results(FIXTURES / "guidellm_report.json", "guidellm")
    t.to_csv(tmp_path / "r.csv", index=False)
    for flag, value, field in (("--dtype", "bf17", "error: --dtype: unknown dtype 'bf17'"),
                               ("--tp", "0", "error: --tp: must be >= 1"),
                               ("--sku", "h9000", "error: --sku: no hardware profile 'h9000'"),
                               ("--model", "gpt-9", "error: --model: unknown model 'gpt-9'"),
                               ("--engine", "vllm9", "error: --engine: unknown engine 'vllm9'")):
        res = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "r.csv"), "--sku", "h100-sxm",
                                       "--model", "llama-3.1-8b", flag, value, "--out", str(tmp_path / "v")])
        assert res.exit_code == 2, res.output
        assert field in res.output and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_serve_refuses_an_unknown_sku_model_or_engine_before_contacting_the_server(tmp_path):
    """Nothing listens on the URL: an unknown --sku, --model or --engine is named in one line (exit 2), not found
    out as 'every request failed' after the load was sent."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing answers there
    base = ["calibrate", "serve", "--url", f"http://127.0.0.1:{port}", "--served-model", "m", "--out", str(tmp_path / "o")]
    for extra, says in ((["--sku", "h9000", "--model", "llama-3.1-8b"], "error: --sku: no hardware profile 'h9000'"),
                        (["--sku", "h100-sxm", "--model", "gpt-9"], "error: --model: unknown model 'gpt-9'"),
                        (["--sku", "h100-sxm", "--model", "llama-3.1-8b", "--engine", "vllm9"],
                         "error: --engine: unknown engine 'vllm9'")):
        res = CliRunner().invoke(app, base + extra)
        assert res.exit_code == 2, res.output
        assert says in res.output and "sending" not in res.output and "Traceback" not in res.output
        assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def slower_stack_measurements() -> pd.DataFrame:
    """'Measurements' from a stack far less efficient than the shipped H100 roofline, at three rates."""
    from simfactory.config.profile import RooflineStepTime

    truth = RooflineStepTime(compute_efficiency=0.35, memory_efficiency=0.45, step_overhead_s=0.006)
    return synthetic_measurements(truth, (2.0, 5.0, 10.0), 30, (200, 1500), (30, 200), seed=11)


def synthetic_measurements(truth, rates, n, prompts, answers, seed, dep=H100_8B) -> pd.DataFrame:
    """A request table the simulator produced on `truth` (a step time) for `dep`: n Poisson requests per rate,
    prompt and answer lengths uniform in the given ranges."""
    rng = np.random.default_rng(seed)
    blocks = []
    for rate in rates:
        plan = pd.DataFrame({"send_s": np.cumsum(rng.exponential(1 / rate, n)), "input_tokens": rng.integers(*prompts, n),
                             "output_tokens": rng.integers(*answers, n)})
        plan["send_s"] -= plan["send_s"].iloc[0]
        sim = simulate_block(plan, dep, factors=truth)
        blocks.append(pd.DataFrame({"request_id": [f"{rate}-{i}" for i in range(n)], "send_s": plan["send_s"],
                                    "input_tokens": plan["input_tokens"], "output_tokens": sim["output_tokens"].astype(int),
                                    "ttft_s": sim["ttft_s"], "tpot_s": sim["tpot_s"], "e2e_s": sim["e2e_s"],
                                    "ok": sim["ok"], "rate_rps": rate}))
    return pd.concat(blocks, ignore_index=True)


def test_fit_to_serving_measurements_holds_out_each_block_in_turn(slower_stack_measurements):
    """Fitting the roofline to those measurements brings the error from large to small, on each rate block when a
    fit to the other two predicts it (leave one block out)."""
    from simfactory.calibration.serving_fit import SearchSpace, fit_serving

    fit = fit_serving(slower_stack_measurements, H100_8B, space=SearchSpace(max_evaluations=40))
    assert fit.heldout is not None and set(fit.heldout["rate_rps"]) == {"2", "5", "10"}
    assert fit.start_mape > 0.15  # the shipped factors are far off this stack
    assert fit.train_mape < 0.05 and fit.heldout_mape < 0.08
    assert set(fit.block_errors()) == {"2", "5", "10"} and fit.worst_block()[1] < 0.12
    assert not fit.on_bounds
    result = fit.as_fit_result()
    assert result.heldout_mape == fit.heldout_mape and set(result.predictions["split"]) == {"train", "heldout"}
    # throughput rows are reported apart, not in the headline
    assert fit.heldout_mape == pytest.approx(
        mape(fit.heldout[fit.heldout["metric"] != "output_tokens_per_s"]))


def test_a_fit_on_its_search_bound_or_past_the_threshold_is_refused_naming_why(slower_stack_measurements, tmp_path):
    slower_stack_measurements.to_csv(tmp_path / "requests.csv", index=False)
    base = ["calibrate", "fit", str(tmp_path / "requests.csv"), "--sku", "h100-sxm", "--model", "llama-3.1-8b",
            "--profiles-dir", str(tmp_path / "p"), "--max-evaluations", "30"]
    # the true compute efficiency (0.35) lies below the allowed range: the fit hits its lower bound
    res = CliRunner().invoke(app, base + ["--compute-bounds", "0.6:1"])
    assert res.exit_code == 1, res.output
    assert "compute_efficiency = 0.6 (lower bound of 0.6-1)" in res.output and "Pass --force" in res.output
    assert not (tmp_path / "p").exists()
    res = CliRunner().invoke(app, base + ["--max-heldout-mape", "0.001"])
    assert res.exit_code == 1 and "held-out block" in res.output and "per block: 2:" in res.output, res.output
    for flag, value in (("--compute-bounds", "1:0.5"), ("--memory-bounds", "x"), ("--overhead-bounds", "0:99"),
                        ("--compute-bounds", "0:1")):
        res = CliRunner().invoke(app, base + [flag, value])
        assert res.exit_code == 2 and f"error: {flag}" in res.output and "Traceback" not in res.output, res.output


def test_serve_measures_every_rate_at_every_prompt_length_as_blocks(server):
    table = measure_endpoint(Endpoint(url=server, model="m"), [40.0, 60.0], 2, [16, 64], 3, seed=0)
    assert len(table) == 8 and table["request_id"].is_unique
    assert list(dict.fromkeys(table["block"])) == ["40 @ 16 tok", "60 @ 16 tok", "40 @ 64 tok", "60 @ 64 tok"]
    one = measure_endpoint(Endpoint(url=server, model="m"), [40.0], 2, 16, 3, seed=0)
    assert set(one["block"]) == {"40"}


def test_fit_command_on_a_request_table_writes_a_profile_the_simulator_uses(slower_stack_measurements, tmp_path):
    slower_stack_measurements.to_csv(tmp_path / "requests.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", str(tmp_path / "requests.csv"), "--sku", "h100-sxm", "--model",
                                   "llama-3.1-8b", "--profiles-dir", str(tmp_path / "hardware_profiles")])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load((tmp_path / "hardware_profiles" / "h100-sxm" / "llama-3.1-8b-vllm-bf16-tp1.yaml").read_text())
    # the fit's table is predicted vs measured per block, named for it (not .steps.csv)
    table = pd.read_csv(tmp_path / "hardware_profiles" / "h100-sxm" / "llama-3.1-8b-vllm-bf16-tp1.serving-fit.csv")
    assert {"metric", "measured", "predicted", "split"} <= set(table.columns)
    assert not (tmp_path / "hardware_profiles" / "h100-sxm" / "llama-3.1-8b-vllm-bf16-tp1.steps.csv").exists()
    assert doc["source"] == "measured" and doc["step_time"]["kind"] == "roofline"
    assert doc["provenance"]["method"].startswith("serving-level fit") and doc["fit_mape"] < 0.06
    from simfactory.calibration.validate import Deployment as Dep, compare as cmp

    # validating the same measurements from that folder now uses the measured profile: small error
    table = cmp(slower_stack_measurements, Dep(sku="h100-sxm", model="llama-3.1-8b"), base_dir=tmp_path)
    assert mape(table) < 0.06


def test_request_tables_are_checked_for_ok_words_and_duplicate_ids(tmp_path):
    from simfactory.calibration.measurements import check_requests

    t = import_results(FIXTURES / "guidellm_report.json", "guidellm")
    words = t.assign(ok=["yes" if v else "no" for v in t["ok"]])
    assert (check_requests(words)["ok"] == t["ok"]).all()  # "no" is False, not a truthy string
    with pytest.raises(InputError, match=r"row 1.ok: expected true/false, got 'maybe'"):
        check_requests(t.assign(ok=["maybe"] * len(t)), "r.csv")
    with pytest.raises(InputError, match="appears more than once"):
        check_requests(t.assign(request_id="same"), "r.csv")


@pytest.mark.parametrize("body, field", [
    ('{"input_lens": 5, "output_lens": [1], "ttfts": [1], "itls": [[]]}', "input_lens: expected a list"),
    ('{"input_lens": [1, 2], "output_lens": [1, 2], "ttfts": [1, 1], "itls": [[], []], "errors": [""]}',
     "errors: expected a list of 2"),
    ('{"input_lens": [1], "output_lens": ["abc"], "ttfts": [1], "itls": [[]]}', "output_lens[0]: expected a finite"),
    ('{"input_lens": [1], "output_lens": [-10], "ttfts": [1], "itls": [[]]}', "output_lens[0]: must be >= 0"),
    ('{"input_lens": [1], "output_lens": [3], "ttfts": [1], "itls": [[]], "start_times": ["x"]}', "start_times[0]"),
])
def test_malformed_vllm_bench_results_name_the_field(tmp_path, body, field):
    (tmp_path / "r.json").write_text(body)
    with pytest.raises(InputError, match=re.escape(field)):
        import_results(tmp_path / "r.json", "vllm-bench")


def test_an_unforeseen_shape_or_a_directory_is_still_one_input_error(tmp_path):
    (tmp_path / "g.json").write_text('{"benchmarks": 5}')
    with pytest.raises(InputError, match="not a guidellm results file"):
        import_results(tmp_path / "g.json", "guidellm")
    with pytest.raises(InputError, match="is a directory"):
        import_results(tmp_path, "aiperf")


def test_validate_on_a_table_without_successes_names_the_file(tmp_path):
    t = import_results(FIXTURES / "guidellm_report.json", "guidellm")
    t.assign(ok=False).to_csv(tmp_path / "r.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "r.csv"), "--sku", "h100-sxm", "--model",
                                   "llama-3.1-8b", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and f"{tmp_path / 'r.csv'}: ok: no successful request" in res.output


def _request_table(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"request_id": range(n), "send_s": np.linspace(0, 15, n), "input_tokens": 512,
                         "output_tokens": 64, "ttft_s": 0.05, "tpot_s": 0.01, "e2e_s": 0.68, "ok": True, "error": "",
                         "rate_rps": 2.0})


@pytest.mark.parametrize("column, value, needle", [
    ("rate_rps", "x", "request 0.rate_rps: must be a finite number >= 0 or empty"),  # TypeError traceback
    ("rate_rps", -1.0, "request 0.rate_rps"),  # -1 is the 'no rate' sentinel: it joined the trace block
    ("tpot_s", "x", "request 0.tpot_s"),  # fit: ValueError traceback; validate: exit 1 "could not convert"
    ("block", np.nan, "request 0.block: empty"),  # fit: "no successful requests to compare" ValueError traceback
    ("input_tokens", 10**12, "request 0.input_tokens: a successful request's input_tokens is a whole number"),
    ("input_tokens", 512.5, "request 0.input_tokens"),
    ("send_s", 1e300, "request 0.send_s: must be at most"),  # named the flags' sim.horizon_s
    ("e2e_s", 1e300, "request 0.e2e_s: must be at most"),  # validated as if measured
])
def test_a_request_table_value_fit_or_validate_cannot_use_is_named_in_one_line(tmp_path, column, value, needle):
    """calibrate validate and calibrate fit read a request table's optional columns (rate_rps, tpot_s, block) and
    replay its tokens and sends: text there ended in tracebacks, and a count or time past any trace's was refused
    naming a temporary load.csv or the deployment flags instead of the table."""
    t = _request_table().assign(block="2rps")
    t[column] = t[column].astype(object)
    t.loc[0, column] = value
    t.to_csv(tmp_path / "r.csv", index=False)
    for cmd in (["calibrate", "validate", str(tmp_path / "r.csv"), "--out", str(tmp_path / "v")],
                ["calibrate", "fit", str(tmp_path / "r.csv"), "--profiles-dir", str(tmp_path / "hp"),
                 "--max-evaluations", "4"]):
        res = CliRunner().invoke(app, [*cmd, "--sku", "h100-sxm", "--model", "llama-3.1-8b"])
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and f"{tmp_path / 'r.csv'}: {needle}" in errors[0], res.output
    assert not (tmp_path / "v").exists() and not (tmp_path / "hp").exists()


def test_a_request_table_without_rates_or_tpot_still_validates(tmp_path):
    """Empty rate_rps (a replayed trace's rows) and empty tpot_s (one output token) are not refused."""
    t = _request_table().assign(rate_rps=np.nan)
    t.loc[0, "tpot_s"] = np.nan
    t.to_csv(tmp_path / "r.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "r.csv"), "--sku", "h100-sxm", "--model",
                                   "llama-3.1-8b", "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output


def test_base_url_with_or_without_v1_reaches_the_same_endpoint(server):
    for base in (server, server + "/", server + "/v1", server + "/v1/"):
        assert endpoint_url(base, False) == server + "/v1/completions"
        assert endpoint_url(base, True) == server + "/v1/chat/completions"
    table = measure_endpoint(Endpoint(url=server + "/v1", model="m"), [50.0], 2, 16, 3, seed=0)
    assert table["ok"].all()


def test_a_server_refusing_ignore_eos_is_asked_again_without_it_and_the_run_says_so(server):
    ScriptedServer.seen.clear()
    session = Session(ignore_eos=True)
    table = measure_endpoint(Endpoint(url=server, model="strict"), [5.0], 4, 16, 3, seed=0, concurrency=1,
                             session=session)
    assert table["ok"].all() and (table["output_tokens"] == 3).all()
    assert not session.ignore_eos and len(session.notes) == 1
    assert "refused ignore_eos (HTTP 422" in session.notes[0] and "Extra inputs are not permitted" in session.notes[0]
    strict = [r for r in ScriptedServer.seen if r["model"] == "strict"]
    # one refused request with it, then every request without it (asked again once, not for every request)
    assert [r["ignore_eos"] for r in strict] == [True, False, False, False, False]
    ScriptedServer.seen.clear()
    measure_endpoint(Endpoint(url=server, model="m", ignore_eos=False), [50.0], 2, 16, 3, seed=0)
    assert not any(r["ignore_eos"] for r in ScriptedServer.seen)


def test_api_key_and_headers_are_sent(server):
    bare = measure_endpoint(Endpoint(url=server, model="auth"), [50.0], 2, 16, 3, seed=0)
    assert not bare["ok"].any() and bare["error"].str.startswith("HTTP 401").all()
    assert "check --api-key and --header" in failure_causes(bare)[0]
    ep = Endpoint(url=server, model="auth", api_key="k", headers=(("X-Test", "1"),))
    assert measure_endpoint(ep, [50.0], 2, 16, 3, seed=0)["ok"].all()


def test_failures_name_their_cause_once_with_a_hint(server):
    wrong_path = Endpoint(url=server + "/v2", model="m")
    table = measure_endpoint(wrong_path, [50.0], 3, 16, 3, seed=0)
    causes = failure_causes(table)
    assert len(causes) == 1 and causes[0].startswith("3 x HTTP 404 from ") and "check --url" in causes[0]
    assert "Not Found" in causes[0]


def test_warm_up_requests_are_sent_first_and_not_recorded(server):
    ScriptedServer.seen.clear()
    session = Session(ignore_eos=True)
    table = measure_endpoint(Endpoint(url=server, model="m"), [50.0], 3, 16, 3, seed=0, session=session, warmup=2)
    assert len(table) == 3 and len(ScriptedServer.seen) == 5 and len(session.raw) == 3
    assert any(n.startswith("2 warm-up request(s) not recorded") for n in session.notes)


def test_serving_summary_reads_like_vllm_bench_serve(server):
    session = Session(ignore_eos=True)
    table = measure_endpoint(Endpoint(url=server, model="m"), [20.0], 6, 16, 5, seed=0, session=session)
    s = serving_summary(table, session.raw)
    assert s["successful_requests"] == 6 and s["failed_requests"] == 0
    # the fake server's delays, plus what a busy 2-core machine adds (never less than the delay itself)
    assert TOKEN_DELAY_S - 0.003 <= s["itl_s"]["median"] <= TOKEN_DELAY_S + 0.02  # 4 chunk gaps per request
    assert FIRST_DELAY_S - 0.005 <= s["ttft_s"]["median"] <= FIRST_DELAY_S + 0.06
    assert s["output_token_throughput_per_s"] == pytest.approx(30 / s["duration_s"])


def test_serve_writes_raw_records_and_summary_and_refuses_bad_flags(server, tmp_path):
    base = ["calibrate", "serve", "--served-model", "strict", "--sku", "h100-sxm", "--model", "llama-3.1-8b",
            "--rates", "20", "--requests", "4", "--input-tokens", "16", "--output-tokens", "3", "--warmup", "1"]
    res = CliRunner().invoke(app, base + ["--url", server + "/v1", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "note: the server refused ignore_eos" in res.output and "Mean ITL (ms)" in res.output
    meta = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert meta["ignore_eos_sent"] is False and meta["summary"]["successful_requests"] == 4
    lines = (tmp_path / "s" / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(len(json.loads(x)["chunk_s"]) == 3 for x in lines)
    for flags, message in ((["--url", "localhost:8000"], "--url: url: expected http(s)://host[:port]"),
                           (["--url", server + "/v1/completions"], "give the server's base URL"),
                           (["--url", server, "--header", "no-colon"], "--header: header: expected 'Name: value'"),
                           (["--url", server, "--endpoint", "embeddings"], "--endpoint: endpoint: completions or chat")):
        res = CliRunner().invoke(app, base + flags + ["--out", str(tmp_path / "bad")])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (flags, res.output)


def test_no_gpu_hint_keeps_its_brackets(monkeypatch):
    """The extra to install is printed whole (rich markup once ate `[calibrate]`)."""
    from simfactory.calibration import nvml

    def no_gpu(index=0):
        raise nvml.NoGpu("calibration needs NVML: pip install 'simfactory[calibrate]' (nvidia-ml-py) on a GPU machine")

    monkeypatch.setattr(nvml, "require_gpu", no_gpu)
    res = CliRunner().invoke(app, ["calibrate", "run", "--model", "llama-3.1-8b"])
    assert res.exit_code == 3 and "pip install 'simfactory[calibrate]'" in res.output, res.output


def test_validate_uses_the_profiles_a_fit_wrote_and_names_its_step_time(slower_stack_measurements, tmp_path):
    slower_stack_measurements.to_csv(tmp_path / "requests.csv", index=False)
    flags = ["--sku", "h100-sxm", "--model", "llama-3.1-8b"]
    res = CliRunner().invoke(app, ["calibrate", "fit", str(tmp_path / "requests.csv"), *flags, "--max-evaluations", "30",
                                   "--profiles-dir", str(tmp_path / "mine"), "--force"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "requests.csv"), *flags,
                                   "--profiles-dir", str(tmp_path / "mine"), "--out", str(tmp_path / "v")])
    assert res.exit_code == 0 and "step time simulated: measured" in res.output, res.output
    res = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "requests.csv"), *flags,
                                   "--out", str(tmp_path / "v2")])
    assert res.exit_code == 0 and "step time simulated: measured kernels" in res.output, res.output
    res = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "requests.csv"), *flags,
                                   "--profiles-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "v3")])
    assert res.exit_code == 2 and "--profiles-dir" in res.output and "is not a folder" in res.output


def test_a_linear_serving_fit_recovers_a_server_the_roofline_cannot_describe():
    """'Measurements' from a linear step time (a CPU-like server: a large fixed cost per step, cheap tokens): the
    roofline family cannot reach it, the linear one holds out each block closely, and best picks linear."""
    from simfactory.calibration.serving_fit import SearchSpace, fit_serving
    from simfactory.config.profile import LinearStepTime

    truth = LinearStepTime(overhead_s=0.04, s_per_prefill_token=2e-4, s_per_decode_seq=2e-3, s_per_kv_token=1e-6)
    measured = synthetic_measurements(truth, (1.0, 3.0, 6.0), 25, (50, 400), (10, 40), seed=5)
    space = SearchSpace(max_evaluations=80)
    linear = fit_serving(measured, H100_8B, space=space, kind="linear")
    assert linear.kind == "linear" and linear.heldout_mape < 0.10, linear.block_errors()
    roofline = fit_serving(measured, H100_8B, space=SearchSpace(max_evaluations=30), kind="roofline")
    assert roofline.heldout_mape > linear.heldout_mape
    assert linear.as_fit_result().kind == "linear (fitted to serving measurements)"


def test_burstiness_keeps_the_rate_and_sets_the_gap_spread():
    even = poisson_schedule(5.0, 4000, 10, 10, seed=3)
    assert even == poisson_schedule(5.0, 4000, 10, 10, seed=3, burstiness=1.0)  # 1: the Poisson schedule as before
    for shape in (0.25, 4.0):
        gaps = np.diff([r.send_s for r in poisson_schedule(5.0, 8000, 10, 10, seed=3, burstiness=shape)])
        assert gaps.mean() == pytest.approx(0.2, rel=0.08)
        assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(shape), rel=0.1)  # gamma: CV = 1/sqrt(shape)


def test_max_duration_stops_sending_and_says_how_many_were_not_sent(server):
    session = Session(ignore_eos=True)
    table = measure_endpoint(Endpoint(url=server, model="m"), [20.0], 12, 16, 2, seed=0, session=session,
                             max_duration_s=0.2)
    plan = poisson_schedule(20.0, 12, 16, 2, seed=0)
    expected = sum(p.send_s <= 0.2 for p in plan)
    assert 0 < len(table) == expected < 12
    assert any(f"{12 - expected} planned request(s) past it were not sent" in n for n in session.notes)


def test_a_tokenizer_makes_prompts_of_exactly_the_asked_length(server, tmp_path):
    pytest.importorskip("transformers", reason="--tokenizer needs transformers (the serve-test extra)")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from simfactory.calibration.client import exact_prompt

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["alpha bravo charlie delta echo foxtrot golf hotel india juliet 0 1 2 3 4 5 6 7 8 9"],
                            trainers.WordLevelTrainer(special_tokens=["<unk>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    for n in (1, 7, 50):
        assert len(fast.encode(exact_prompt(fast, n, salt=3), add_special_tokens=False)) == n
    fast.save_pretrained(tmp_path / "tok")
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", server, "--served-model", "m", "--sku", "h100-sxm",
                                   "--model", "llama-3.1-8b", "--rates", "20,30", "--requests", "3", "--input-tokens",
                                   "12", "--output-tokens", "3", "--warmup", "0", "--tokenizer", str(tmp_path / "tok"),
                                   "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "block 1/2 (20): 3 requests, 0 failed" in res.output and "block 2/2 (30)" in res.output
    # the scripted server counts prompt words: exactly 12 each
    assert (pd.read_csv(tmp_path / "s" / "requests.csv")["input_tokens"] == 12).all()
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", server, "--served-model", "m", "--sku", "h100-sxm",
                                   "--model", "llama-3.1-8b", "--tokenizer", str(tmp_path / "missing"),
                                   "--out", str(tmp_path / "s2")])
    assert res.exit_code == 2 and "--tokenizer: tokenizer: cannot load" in res.output


def test_an_exhausted_budget_is_reported_with_the_budget_used(slower_stack_measurements):
    from simfactory.calibration.serving_fit import SearchSpace, check_serving_fit, fit_serving

    fit = fit_serving(slower_stack_measurements.iloc[:60], H100_8B, space=SearchSpace(max_evaluations=5))
    assert fit.budget_exhausted
    warnings = check_serving_fit(fit, max_heldout_mape=10.0, force=True)
    assert any("evaluation budget (--max-evaluations 5)" in w for w in warnings)


def test_a_hosts_front_end_per_request_is_fitted_from_a_request_table_when_asked(tmp_path):
    """A server whose API process spends 40 ms a request (not the vllm preset's 8 ms): told to fit it, the serving
    fit finds it among the candidates and holds each block out within 5%; left to the preset it charges the
    difference to the step time and misses the blocks it did not see by more."""
    from simfactory.config.profile import RooflineStepTime
    from simfactory.calibration.serving_fit import SearchSpace, fit_serving

    truth = RooflineStepTime(compute_efficiency=0.35, memory_efficiency=0.45, step_overhead_s=0.006)
    host = Deployment(sku="h100-sxm", model="llama-3.1-8b", replicas=1, front_end_s=0.04)
    measured = synthetic_measurements(truth, (2.0, 5.0, 10.0), 30, (200, 1500), (30, 200), seed=11, dep=host)
    kept = fit_serving(measured, H100_8B, space=SearchSpace(max_evaluations=40))
    fit = fit_serving(measured, H100_8B, space=SearchSpace(max_evaluations=40, fit_front_end=True))
    assert kept.front_end_s is None and fit.front_end_s == 0.04 and not fit.on_bounds
    assert min(fit.front_end_tried.values()) == fit.front_end_tried[0.04] < fit.front_end_tried[0.0] / 2
    assert fit.heldout_mape < 0.05 and kept.heldout_mape > 2 * fit.heldout_mape
    measured.to_csv(tmp_path / "requests.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", str(tmp_path / "requests.csv"), "--sku", "h100-sxm", "--model",
                                   "llama-3.1-8b", "--profiles-dir", str(tmp_path / "hp"), "--max-evaluations", "40",
                                   "--front-end-s", "auto", "--fit", "roofline"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "give your scenario's deployment front_end_s: 0.04" in said, res.output
    doc = yaml.safe_load((tmp_path / "hp" / "h100-sxm" / "llama-3.1-8b-vllm-bf16-tp1.yaml").read_text())
    assert "front_end_s 0.04 fitted with the step time" in doc["provenance"]["method"]
