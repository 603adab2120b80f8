"""`calibrate serve`'s load shapes and repeats: vllm bench serve's ramp-up and length spread, goodput, run
metadata, and repeated designs with per-block confidence intervals (fits hold out a block with all its repeats)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from simfactory.calibration.client import Endpoint, Load, Ramp, measure_endpoint, plan_blocks, poisson_schedule
from simfactory.calibration.repeats import repeat_figures, repeat_stats, unstable_blocks
from simfactory.calibration.serving_summary import parse_goodput, serving_summary
from simfactory.calibration.validate import Deployment, blocks_of, compare_blocks
from simfactory.cli import app
from simfactory.errors import InputError
from test_calibration_serve import FIRST_DELAY_S, server  # noqa: F401  (the scripted SSE server fixture)

H100_8B = Deployment(sku="h100-sxm", model="llama-3.1-8b")


def test_ramp_rates_are_vllm_bench_serves_and_the_gaps_follow_them():
    n = 5
    assert np.allclose(Ramp("linear", 1.0, 9.0).rates(n), [1, 3, 5, 7, 9])
    assert np.allclose(Ramp("exponential", 1.0, 16.0).rates(n), [1, 2, 4, 8, 16])
    plan = poisson_schedule(float("nan"), 4000, 10, 10, seed=5, ramp=Ramp("linear", 1.0, 20.0))
    gaps = np.diff([p.send_s for p in plan])
    rates = Ramp("linear", 1.0, 20.0).rates(4000)
    # gap i (before request i + 1) is exponential at request i + 1's rate: early gaps long, late ones short
    for part in (slice(0, 400), slice(3600, 3999)):
        assert gaps[part].mean() == pytest.approx(np.mean(1 / rates[1:][part]), rel=0.12)


def test_range_ratio_spreads_lengths_uniformly_and_leaves_the_sends_alone():
    even = poisson_schedule(4.0, 3000, 100, 40, seed=2)
    spread = poisson_schedule(4.0, 3000, 100, 40, seed=2, range_ratio=0.5)
    assert [p.send_s for p in even] == [p.send_s for p in spread]
    assert {p.input_tokens for p in even} == {100} and {p.output_tokens for p in even} == {40}
    inputs = np.array([p.input_tokens for p in spread])
    outputs = np.array([p.output_tokens for p in spread])
    assert inputs.min() == 50 and inputs.max() == 150 and inputs.mean() == pytest.approx(100, rel=0.03)
    assert outputs.min() == 20 and outputs.max() == 60
    assert sps.kstest((inputs - 49.5) / 101, "uniform").pvalue > 0.001  # uniform on the integers 50..150


def test_repeats_run_the_whole_design_again_interleaved_with_fresh_draws():
    blocks = plan_blocks([2.0, 4.0], 5, [16], 3, seed=7, load=Load(repeats=3))
    assert [(b.label, b.repeat) for b in blocks] == [("2", 0), ("4", 0), ("2", 1), ("4", 1), ("2", 2), ("4", 2)]
    assert blocks[0].plan != blocks[2].plan  # a repeat is a fresh draw, not the same schedule again
    assert blocks[0].plan == plan_blocks([2.0, 4.0], 5, [16], 3, seed=7, load=Load(repeats=1))[0].plan
    ramps = plan_blocks([2.0], 5, [16, 64], 3, seed=7, load=Load(ramp=Ramp("linear", 1, 5), repeats=2))
    assert [b.label for b in ramps] == ["ramp 1-5 @ 16 tok", "ramp 1-5 @ 64 tok"] * 2


def test_repeat_stats_are_t_intervals_and_flag_the_unstable_block():
    rows = []
    for rep, (ttft_a, ttft_b) in enumerate([(0.10, 0.10), (0.10, 0.20), (0.10, 0.05)]):
        for block, ttft in (("A", ttft_a), ("B", ttft_b)):
            for i in range(4):
                rows.append({"request_id": f"{block}{rep}{i}", "send_s": i * 0.5, "input_tokens": 10,
                             "output_tokens": 5, "ttft_s": ttft, "tpot_s": 0.01, "e2e_s": ttft + 0.04, "ok": True,
                             "block": block, "repeat": rep})
    table = pd.DataFrame(rows)
    stats = repeat_stats(table).set_index(["block", "figure"])
    a, b = stats.loc[("A", "ttft_p50_s")], stats.loc[("B", "ttft_p50_s")]
    assert a["repeats"] == 3 and a["mean"] == pytest.approx(0.10) and a["ci95"] == 0.0 and a["stable"]
    values = np.array([0.10, 0.20, 0.05])
    half = sps.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert b["mean"] == pytest.approx(values.mean()) and b["ci95"] == pytest.approx(half) and not b["stable"]
    assert "ttft_p50_s" in unstable_blocks(repeat_stats(table))["B"] and "A" not in unstable_blocks(repeat_stats(table))
    assert len(repeat_figures(table)) == 2 * 3 * 7


def test_goodput_counts_requests_that_met_every_limit():
    assert parse_goodput(["ttft:300 tpot:50"]) == {"ttft_s": 0.3, "tpot_s": 0.05}
    assert parse_goodput(["ttft:300", "e2el:2000"]) == {"ttft_s": 0.3, "e2e_s": 2.0}
    for bad in (["ttft"], ["itl:5"], ["ttft:-1"], ["tpot:x"]):
        with pytest.raises(InputError, match="--goodput"):
            parse_goodput(bad)
    table = pd.DataFrame({"request_id": ["a", "b", "c", "d"], "send_s": [0.0, 1.0, 2.0, 3.0],
                          "input_tokens": 10, "output_tokens": 5, "ttft_s": [0.1, 0.5, 0.1, 0.1],
                          "tpot_s": [0.01, 0.01, 0.09, 0.01], "e2e_s": [0.2, 0.6, 0.5, 1.0], "ok": True})
    s = serving_summary(table, [], {"ttft_s": 0.3, "tpot_s": 0.05})
    assert s["goodput"]["requests_met"] == 2  # b misses TTFT, c misses TPOT
    assert s["goodput"]["request_goodput_per_s"] == pytest.approx(2 / 4.0)  # first send to last token: 4 s


def test_a_repeated_blocks_sends_restart_and_its_repeats_are_compared_pooled():
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(2):
        for block, rate in (("2", 2.0), ("6", 6.0)):
            sends = np.cumsum(rng.exponential(1 / rate, 12))
            for i, s in enumerate(sends - sends[0]):
                rows.append({"request_id": f"{block}-{rep}-{i}", "send_s": s, "input_tokens": 200, "output_tokens": 20,
                             "ttft_s": 0.05, "tpot_s": 0.01, "e2e_s": 0.24, "ok": True, "block": block, "repeat": rep,
                             "rate_rps": rate})
    table = pd.DataFrame(rows)
    blocks = blocks_of(table, H100_8B)
    assert [(b.label, b.repeat) for b in blocks] == [("2", 0), ("6", 0), ("2", 1), ("6", 1)]
    assert all(b.sent["send_s"].min() == 0 and len(b.sent) == 12 for b in blocks)
    compared = compare_blocks(blocks)
    assert list(dict.fromkeys(compared["rate_rps"])) == ["2", "6"]  # one row set per block, not per repeat
    assert (compared["requests"] == 24).all()


def test_serve_with_repeats_ramp_goodput_and_metadata_end_to_end(server, tmp_path):  # noqa: F811
    base = ["calibrate", "serve", "--url", server, "--served-model", "m", "--sku", "h100-sxm", "--model",
            "llama-3.1-8b", "--requests", "4", "--input-tokens", "16", "--output-tokens", "3", "--warmup", "0"]
    res = CliRunner().invoke(app, base + ["--rates", "20,40", "--repeats", "2", "--goodput", "ttft:5000",
                                          "--metadata", "gpu=test rig", "--range-ratio", "0.5",
                                          "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "over 2 repeats: mean +- 95% CI" in res.output and "Request goodput (req/s)" in res.output
    table = pd.read_csv(tmp_path / "r" / "requests.csv")
    assert len(table) == 16 and sorted(set(table["repeat"])) == [0, 1]
    assert table["input_tokens"].between(8, 24).all()
    stats = pd.read_csv(tmp_path / "r" / "repeats.csv")
    assert set(stats["block"].astype(str)) == {"20", "40"} and (stats["repeats"] == 2).all()
    ttft = stats[(stats["figure"] == "ttft_p50_s")]["mean"]
    assert (ttft >= FIRST_DELAY_S - 0.005).all()
    meta = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert meta["metadata"] == {"gpu": "test rig"} and meta["run"]["options"]["repeats"] == 2
    assert meta["summary"]["goodput"]["requests_met"] == 16 and len(meta["repeats"]) == len(stats)
    res = CliRunner().invoke(app, base + ["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "10",
                                          "--ramp-up-end-rps", "40", "--out", str(tmp_path / "ramp")])
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(tmp_path / "ramp" / "requests.csv")["block"]) == {"ramp 10-40"}


@pytest.mark.parametrize("flags, message", [
    (["--ramp-up-strategy", "cubic", "--ramp-up-start-rps", "1", "--ramp-up-end-rps", "2"],
     "--ramp-up-strategy: ramp_up_strategy: linear or exponential"),
    (["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1"], "--ramp-up-end-rps: ramp_up_end_rps: a linear ramp"),
    (["--ramp-up-start-rps", "1"], "need a strategy"),
    (["--ramp-up-strategy", "exponential", "--ramp-up-start-rps", "0", "--ramp-up-end-rps", "4"],
     "--ramp-up-start-rps: ramp_up_start_rps: must be > 0 for an exponential ramp"),
    (["--goodput", "latency:3"], "--goodput: goodput: expected NAME:MILLISECONDS"),
    (["--metadata", "novalue"], "--metadata: metadata: expected KEY=VALUE"),
    (["--repeats", "0"], "--repeats"),
    (["--range-ratio", "1.5"], "--range-ratio"),
    (["--rates", "1e-300"], "--rates: rates: rates must be positive, between 0.001 and 100000 req/s, got 1e-300"),
    (["--rates", "2,inf"], "--rates: rates: rates must be positive, between"),
    (["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "0", "--ramp-up-end-rps", "4"],
     "--ramp-up-start-rps: ramp_up_start_rps: rates must be positive, between"),
    (["--ramp-up-strategy", "exponential", "--ramp-up-start-rps", "1e-300", "--ramp-up-end-rps", "1e300"],
     "--ramp-up-start-rps: ramp_up_start_rps: rates must be positive, between"),
    (["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1", "--ramp-up-end-rps", "nan"], "--ramp-up-end-rps"),
])
def test_bad_load_flags_are_one_line_errors_before_anything_is_sent(tmp_path, flags, message):
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", "http://127.0.0.1:9", "--served-model", "m",
                                   "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--out", str(tmp_path / "o")] + flags)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_a_request_past_timeout_is_a_failed_row_naming_the_timeout(server):  # noqa: F811
    table = measure_endpoint(Endpoint(url=server, model="m", timeout_s=FIRST_DELAY_S / 6), [50.0], 2, 16, 3, seed=0)
    assert len(table) == 2 and not table["ok"].any()
    assert table["error"].str.contains("Timeout").all()


def test_progress_names_each_block_and_repeat(server, tmp_path):  # noqa: F811
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", server, "--served-model", "m", "--sku", "h100-sxm",
                                   "--model", "llama-3.1-8b", "--rates", "40", "--requests", "2", "--input-tokens",
                                   "16", "--output-tokens", "2", "--warmup", "0", "--repeats", "2",
                                   "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "block 1/2 (40 (repeat 1)): 2 requests, 0 failed" in res.output
    assert "block 2/2 (40 (repeat 2)): 2 requests, 0 failed" in res.output
