"""The fidelity runner: error arithmetic on a hand-made suite, and the shipped suite against its record."""

from __future__ import annotations

import json

import pytest
import yaml

from simfactory.fidelity import (FIDELITY_DIR, PointResult, breakdowns, load_suite, run_suite, shipped_suites,
                                 summarize)

MARGIN = 0.02


def test_errors_and_mape_on_a_two_row_suite(tmp_path, monkeypatch):
    suite = {"name": "hand", "source": "test", "as_of": "2026", "engine": "tensorrt-llm", "points": [
        {"id": "a", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128,
         "output_tokens": 128, "metric": "output_tokens_per_s", "measured": 1000.0},
        {"id": "b", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128,
         "output_tokens": 128, "metric": "output_tokens_per_s", "measured": 4000.0}]}
    p = tmp_path / "hand.yaml"
    p.write_text(yaml.safe_dump(suite))
    import simfactory.fidelity as fid

    monkeypatch.setattr(fid, "offline_output_tokens_per_s", lambda rs: 2000.0)  # a fixed prediction
    results = run_suite(load_suite(p), requests=10)
    assert [r.error for r in results] == [pytest.approx(1.0), pytest.approx(-0.5)]
    (key, s), = summarize(results).items()
    assert key == "hand [kernels]" and s["mape"] == pytest.approx(0.75) and s["worst"] == "a"
    assert s["worst_error"] == pytest.approx(1.0)


def test_summary_groups_by_profile_source():
    rs = [PointResult("s", "x", "m", 100, 110, "roofline"), PointResult("s", "y", "m", 100, 95, "measured")]
    s = summarize(rs)
    assert s["s [roofline]"]["mape"] == pytest.approx(0.10) and s["s [measured]"]["mape"] == pytest.approx(0.05)


def test_shipped_suites_do_not_lose_fidelity():
    """Every suite and every breakdown (per metric, TP, batch regime, engine) against its record: neither the
    MAPE nor the optimism (the costly direction) may grow."""
    recorded = json.loads((FIDELITY_DIR / "recorded.json").read_text())
    results = [r for p in shipped_suites() for r in run_suite(load_suite(p), requests=800)]
    for now, record in ((summarize(results), recorded["suites"]), (breakdowns(results), recorded["breakdowns"])):
        assert set(now) == set(record)
        for key, s in now.items():
            assert s["mape"] <= record[key]["mape"] + MARGIN, (key, s)
            assert s["optimism"] <= max(record[key]["optimism"], 0.0) + MARGIN, (key, s)


def test_suites_are_held_to_a_bar_of_mape_and_bias(tmp_path):
    """`fidelity` says which suites meet the bar (MAPE at most 15%, bias within +-5% by default, or --max-mape /
    --max-bias) and why the others do not; --json carries the same."""
    from typer.testing import CliRunner

    from simfactory.cli import app
    from simfactory.fidelity_bar import against_bar

    summary = {"a [kernels]": {"mape": 0.10, "optimism": 0.02}, "b [kernels]": {"mape": 0.20, "optimism": -0.01},
               "c [roofline]": {"mape": 0.08, "optimism": -0.07}, "d [kernels]": {"mape": 0.3, "optimism": 0.3}}
    inside, outside = against_bar(summary)
    assert inside == ["a [kernels]"]
    assert outside == ["b [kernels] (MAPE 20.0%)", "c [roofline] (bias -7.0%)", "d [kernels] (MAPE 30.0%, bias +30.0%)"]
    assert against_bar(summary, 0.25, 0.1)[0] == ["a [kernels]", "b [kernels]", "c [roofline]"]
    nan = float("nan")  # a suite whose points predicted nothing is outside, not inside
    assert against_bar({"e [kernels]": {"mape": nan, "optimism": nan}}) == ([], ["e [kernels] (MAPE nan%, bias +nan%)"])
    point = {"id": "p", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128,
             "output_tokens": 128, "max_num_seqs": 8, "metric": "batch_latency_s", "measured": 1e-6}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "source": "x", "as_of": "2026", "points": [point]}))
    res = CliRunner().invoke(app, ["fidelity", "-q", str(path), "--json", str(tmp_path / "f.json")])
    assert res.exit_code == 0, res.output
    assert ("within 15.0% MAPE and +-5.0% bias: 0 of 1 suites (per step-time source); outside: tiny [kernels] (MAPE") in " ".join(res.output.split())
    bar = json.loads((tmp_path / "f.json").read_text())["bar"]
    assert bar["max_mape"] == 0.15 and bar["inside"] == [] and bar["outside"][0].startswith("tiny [kernels]")


def test_bias_sign_and_breakdowns():
    """Optimism is + when a latency is predicted low or a throughput high; breakdowns split by TP and regime."""
    rs = [PointResult("s", "a", "output_tokens_per_s", 100, 120, "roofline", tp=8, batch=256),
          PointResult("s", "b", "itl_s", 0.02, 0.015, "roofline", tp=8, batch=1),
          PointResult("s", "c", "ttft_s", 0.5, 0.6, "roofline", tp=2, batch=16)]
    assert [round(r.optimism, 3) for r in rs] == [0.2, 0.25, -0.2]
    (_, s), = summarize(rs).items()
    assert s["optimism"] == pytest.approx((0.2 + 0.25 - 0.2) / 3) and s["bias"] == pytest.approx((0.2 - 0.25 + 0.2) / 3)
    b = breakdowns(rs)
    assert b["all suites | tp 8"]["points"] == 2 and b["all suites | tp 8"]["optimism"] == pytest.approx(0.225)
    assert {k for k in b if "batch" in k} == {"all suites | batch 1", "all suites | batch 2-32", "all suites | batch 33+"}


def test_concurrency_one_runs_requests_back_to_back():
    # one client: each request is sent when the previous one ends, so throughput = out / (TTFT + (out - 1) x ITL)
    from simfactory.fidelity import FidelityPoint, offline_metrics, offline_scenario
    from simfactory.resolve import resolve

    p = FidelityPoint(id="c1", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=500, output_tokens=50,
                      concurrency=1, metric="itl_s", measured=1.0)
    m = offline_metrics(resolve(offline_scenario(p, "vllm", 1, 6)))
    assert m["output_tokens_per_s"] == pytest.approx(50 / (m["ttft_s"] + 49 * m["itl_s"]), rel=1e-4)
    assert 0 < m["itl_s"] < m["ttft_s"]  # a 500-token prefill step is longer than a one-token decode step
    one = offline_metrics(resolve(offline_scenario(p, "vllm", 1, 1)))  # a batch of one: latency = TTFT + 49 ITL
    assert one["batch_latency_s"] == pytest.approx(one["ttft_s"] + 49 * one["itl_s"], rel=1e-9)


def test_a_benchmarks_request_count_measures_its_cold_start():
    """With requests_per_client k the C clients send together and every one of the k x C requests is measured:
    the first wave queues behind its co-arriving prompts (a 2,048-token budget prefills two 1,000-token prompts
    per step), so mean TTFT falls towards the steady state as k grows; throughput counts the ramp and the drain."""
    from simfactory.fidelity import FidelityPoint, closed_loop_metrics

    p = FidelityPoint(id="c16", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=1000,
                      output_tokens=100, concurrency=16, metric="ttft_s", measured=1.0)
    one, three = (closed_loop_metrics(p, "tensorrt-llm", 256, 2048, requests=k * 16)[0] for k in (1, 3))
    steady = closed_loop_metrics(p, "tensorrt-llm", 256, 2048)[0]
    assert one["ttft_s"] > 1.5 * steady["ttft_s"] and one["ttft_s"] > three["ttft_s"] > steady["ttft_s"], (one, steady)
    assert one["output_tokens_per_s"] < three["output_tokens_per_s"] < steady["output_tokens_per_s"]
    # the median TTFT of the 3 x C run is a steady-state request's: the first wave (a third) lies above it
    median = three["ttft_median_s"]
    assert median < three["ttft_s"] and median == pytest.approx(steady["ttft_median_s"], rel=0.25), (three, steady)


def test_latency_medians_are_over_requests_and_skip_one_token_answers():
    """bench_serving's "Median TTFT" and "Median TPOT": per request, TTFT, and the time after the first token over
    the tokens after it (requests of one token have no TPOT)."""
    import numpy as np

    from simfactory.fidelity import latency_metrics

    sent = np.zeros(4)
    first = np.array([0.1, 0.2, 0.3, 1.0])
    end = first + np.array([0.9, 0.2, 0.0, 4.0])
    out = np.array([10, 3, 1, 41])  # TPOTs 0.1, 0.1, -, 0.1
    m = latency_metrics(sent, first, end, out)
    assert m["ttft_s"] == pytest.approx(0.4) and m["ttft_median_s"] == pytest.approx(0.25)
    assert m["itl_s"] == pytest.approx(0.1) and m["itl_median_s"] == pytest.approx(0.1)
    m = latency_metrics(sent[:3], first[:3], np.array([1.0, 0.3, 0.3]), np.array([10, 3, 1]))  # TPOTs 0.1, 0.05
    assert m["itl_median_s"] == pytest.approx(0.075) and m["itl_s"] == pytest.approx(0.075)
    assert np.isnan(latency_metrics(sent[:1], first[:1], end[:1], np.array([1]))["itl_median_s"])


def test_a_concurrency_points_own_request_count_overrides_the_suites(monkeypatch):
    """A point's `requests` is its benchmark's --num-prompts: that count from a cold start, whatever the suite's
    requests_per_client says."""
    import simfactory.fidelity as fid

    seen = []
    monkeypatch.setattr(fid, "closed_loop_metrics", lambda p, *a, requests=None, **k: (
        seen.append(requests) or ({"ttft_s": 1.0}, "kernels")))
    point = {"sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 10, "output_tokens": 10,
             "concurrency": 16, "metric": "ttft_s", "measured": 1.0}
    suite = fid.FidelitySuite.model_validate({"name": "s", "source": "x", "as_of": "2026", "requests_per_client": 3,
                                              "points": [{"id": "own", "requests": 80, **point}, {"id": "k", **point}]})
    fid.run_suite(suite)
    assert seen == [80, 48]


def test_a_suite_without_a_batch_limit_leaves_it_to_the_engine_preset_for_the_device():
    """max_num_seqs null: a concurrency point runs with the preset's default for its device (vLLM V1 on an H100:
    1,024 sequences); an offline point, whose one batch that limit is, is refused naming it."""
    from simfactory.errors import InputError
    from simfactory.fidelity import FidelityPoint, FidelitySuite, closed_loop_scenario
    from simfactory.resolve import resolve

    p = FidelityPoint(id="c", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=10, output_tokens=10,
                      concurrency=2000, metric="ttft_s", measured=1.0)
    seqs = resolve(closed_loop_scenario(p, "vllm", None, None, 10.0)).deployments[0].config.max_num_seqs
    assert seqs == 1024 and resolve(closed_loop_scenario(p, "vllm", 64, None, 10.0)).deployments[0].config.max_num_seqs == 64
    offline = {"id": "o", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 10,
               "output_tokens": 10, "metric": "output_tokens_per_s", "measured": 1.0}
    suite = FidelitySuite.model_validate({"name": "s", "source": "x", "as_of": "2026", "max_num_seqs": None,
                                          "points": [offline]})
    with pytest.raises(InputError, match="needs a batch limit") as e:
        run_suite(suite)
    assert e.value.field == "points.o.max_num_seqs"


def test_a_suite_states_its_request_count_per_client():
    from pydantic import ValidationError

    doc = {"name": "s", "source": "x", "as_of": "2026", "mode": "concurrency", "points": [
        {"id": "a", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 10,
         "output_tokens": 10, "concurrency": 2, "metric": "ttft_s", "measured": 0.1}]}
    from simfactory.fidelity import FidelitySuite

    assert FidelitySuite.model_validate({**doc, "requests_per_client": 3}).requests_per_client == 3
    with pytest.raises(ValidationError, match="requests_per_client"):
        FidelitySuite.model_validate({**doc, "requests_per_client": 0})


def test_offline_points_measure_throughput_only_and_sources_are_summarized():
    from pydantic import ValidationError

    from simfactory.fidelity import FidelityPoint, summarize_by_source

    with pytest.raises(ValidationError, match="give max_num_seqs"):
        FidelityPoint(id="x", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=1, output_tokens=1,
                      metric="batch_latency_s", measured=1.0)
    for metric in ("ttft_s", "ttft_median_s", "itl_median_s"):
        with pytest.raises(ValidationError, match="needs a concurrency"):
            FidelityPoint(id="x", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=1, output_tokens=1,
                          metric=metric, measured=1.0)
    rs = [PointResult("a", "x", "m", 100, 110, "roofline"), PointResult("b", "y", "m", 100, 70, "roofline"),
          PointResult("b", "z", "m", 100, 95, "measured")]
    s = summarize_by_source(rs)
    assert s["roofline"]["points"] == 2 and s["roofline"]["mape"] == pytest.approx(0.20)
    assert s["measured"]["mape"] == pytest.approx(0.05)


def test_an_offline_point_runs_its_benchmarks_request_count_and_budgets(tmp_path, monkeypatch):
    # a point that states the requests its benchmark sent and the engine's limits is simulated with them; the
    # runner's request count is for points that state none
    from pydantic import ValidationError

    import simfactory.fidelity as fid

    with pytest.raises(ValidationError, match="a batch is its own size"):
        fid.FidelityPoint(id="x", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=1, output_tokens=1,
                          max_num_seqs=4, requests=100, metric="batch_latency_s", measured=1.0)
    base = {"sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128, "output_tokens": 128,
            "metric": "output_tokens_per_s", "measured": 1000.0}
    suite = {"name": "hand", "source": "test", "as_of": "2026", "engine": "tensorrt-llm", "max_num_seqs": 64,
             "points": [{"id": "stated", "requests": 30, "max_num_seqs": 16, "max_num_batched_tokens": 2048, **base},
                        {"id": "default", **base}]}
    p = tmp_path / "hand.yaml"
    p.write_text(yaml.safe_dump(suite))
    seen = []
    real = fid.offline_scenario

    budgets = []

    def spy(point, engine, max_num_seqs, requests, step_time_source="auto", max_num_batched_tokens=None):
        seen.append((point.id, max_num_seqs, requests, max_num_batched_tokens))
        sc = real(point, engine, max_num_seqs, requests, step_time_source, max_num_batched_tokens)
        budgets.append(resolve(sc).deployments[0].config.max_num_batched_tokens)
        return sc

    from simfactory.resolve import resolve

    monkeypatch.setattr(fid, "offline_scenario", spy)
    monkeypatch.setattr(fid, "offline_output_tokens_per_s", lambda rs: 1000.0)
    fid.run_suite(fid.load_suite(p), requests=10)
    # a point without a budget of its own (nor one for the suite) runs at the engine preset's for its device
    assert seen == [("stated", 16, 30, 2048), ("default", 64, 10, None)] and budgets == [2048, 8192]


def test_run_suite_reports_each_point_for_progress():
    from simfactory.fidelity import load_suite, run_suite
    from simfactory.paths import CALIBRATE_DIR

    suite = load_suite(CALIBRATE_DIR / "fidelity" / "vllm-perf-latency.yaml")
    seen: list[tuple[int, int]] = []
    run_suite(suite, 10, on_point=lambda done, total: seen.append((done, total)))
    assert seen == [(k, len(suite.points)) for k in range(1, len(suite.points) + 1)]


def test_the_v017_suite_is_what_its_script_writes_and_the_rule_matches_the_older_suite(capsys):
    """calibrate/fidelity/make_trtllm_v017.py derives each point's engine limits with trtllm-bench's tuning rule:
    the rule reproduces every setting trtllm-perf-overview.yaml states, and the shipped suite holds its points."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_v017", FIDELITY_DIR / "make_trtllm_v017.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.check() == 0
    shipped = yaml.safe_load((FIDELITY_DIR / "trtllm-perf-overview-v0.17.yaml").read_text())["points"]
    assert shipped == script.points() and len(shipped) == 158
    load_suite(FIDELITY_DIR / "trtllm-perf-overview-v0.17.yaml")  # a valid suite


def test_a_rate_point_at_low_load_sees_what_a_lone_request_sees():
    """An open loop at 0.05 requests/s of 40-token answers almost never has two requests in flight: its mean TTFT and
    ITL are a lone request's, the closed loop of one client's; at 40 requests/s they queue and batch, so both grow."""
    from simfactory.fidelity import FidelityPoint, closed_loop_metrics, open_loop_metrics

    common = dict(id="r", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=500, output_tokens=40,
                  metric="ttft_s", measured=1.0)
    slow, _ = open_loop_metrics(FidelityPoint(**common, rate_per_s=0.05, requests=40), "tensorrt-llm", 256, 2048)
    lone, _ = closed_loop_metrics(FidelityPoint(**common, concurrency=1), "tensorrt-llm", 256, 2048)
    assert slow["ttft_s"] == pytest.approx(lone["ttft_s"], rel=0.02) and slow["itl_s"] == pytest.approx(lone["itl_s"], rel=0.02)
    assert slow["in_flight"] < 0.02
    busy, _ = open_loop_metrics(FidelityPoint(**common, rate_per_s=40.0, requests=400), "tensorrt-llm", 256, 2048)
    assert busy["ttft_s"] > slow["ttft_s"] and busy["itl_s"] > slow["itl_s"] and busy["in_flight"] > 5


@pytest.mark.parametrize("extra, reason", [
    ({"rate_per_s": 2.0}, "give requests"),
    ({"rate_per_s": 2.0, "requests": 10, "concurrency": 4}, "no concurrency"),
    ({"rate_per_s": float("inf"), "requests": 10}, "finite number"),
])
def test_a_rate_point_needs_its_request_count_and_no_clients(extra, reason):
    from pydantic import ValidationError

    from simfactory.fidelity import FidelityPoint

    with pytest.raises(ValidationError, match=reason):
        FidelityPoint(id="r", sku="h100-sxm", model="llama-3.1-8b", dtype="fp8", input_tokens=10, output_tokens=10,
                      metric="ttft_s", measured=1.0, **extra)


@pytest.mark.parametrize("extra, field", [
    ({"rate_per_s": 1e300, "requests": 10}, "traffic.arrival.poisson: rate_per_s"),
    ({"rate_per_s": 1e-300, "requests": 10}, "sim: horizon_s"),
    ({"concurrency": 4, "input_tokens": 10**14}, "traffic.classes.0.input_tokens"),
])
def test_a_point_no_scenario_can_hold_is_one_line_naming_it(tmp_path, extra, field):
    """Values a point accepts but the scenario it becomes cannot hold: `simfactory fidelity` says which point and
    why, exit 2, no traceback."""
    from typer.testing import CliRunner

    from simfactory.cli import app

    point = {"id": "hostile", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 100,
             "output_tokens": 10, "metric": "ttft_s", "measured": 0.1, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "h", "source": "x", "as_of": "2026", "points": [point]}))
    res = CliRunner().invoke(app, ["fidelity", "-q", str(path)])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0].startswith(f"error: fidelity point hostile: {field}"), lines
