"""Calibration from whole-batch latencies (`vllm bench latency`-style tables): the step sums a closed batch runs,
exact recovery of a known linear step time, and a public dataset forecast from a few of its batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simfactory.calibration.batch_latency import batch_features, check_batches, fit_batches, split_batches
from simfactory.calibration.validate import Deployment, resolve_block, simulate_resolved
from simfactory.cli import app
from simfactory.config.profile import LinearStepTime
from simfactory.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
SLICE = ROOT / "calibrate" / "datasets" / "llm-inference-bench" / "h100-llama-3-8b-tp1.csv"
H100_8B = Deployment(sku="h100-sxm", model="llama-3.1-8b", engine="vllm-v0")


def _latency(dep: Deployment, truth: LinearStepTime, b: int, n_in: int, n_out: int) -> float:
    block = pd.DataFrame({"send_s": np.zeros(b), "input_tokens": n_in, "output_tokens": n_out})
    return float(simulate_resolved(resolve_block(block, dep), truth)["e2e_s"].max())


@pytest.mark.parametrize("engine", ["vllm-v0", "vllm", "sglang"])
def test_a_single_sequence_runs_one_prefill_then_a_decode_per_further_token(engine):
    """Whatever front end the engine's preset puts before a served request (vLLM V1's 8 ms, SGLang's API server as
    a shared CPU), a batch measured in-process has none: the steps are the engine's alone."""
    n_in, n_out = 300, 40
    dep = Deployment(sku="h100-sxm", model="llama-3.1-8b", engine=engine)
    x = batch_features(pd.DataFrame({"batch_size": [1], "input_tokens": [n_in], "output_tokens": [n_out]}), dep)[0]
    steps, prefill, decode_seqs, kv, pairs = x
    assert steps == pytest.approx(n_out) and prefill == pytest.approx(n_in) and decode_seqs == pytest.approx(n_out - 1)
    low, high = sum(n_in + k - 1 for k in range(1, n_out)), sum(n_in + k for k in range(1, n_out))
    assert low - 1e-3 <= kv <= high + 1e-3  # each decode reads the context so far
    assert pairs == pytest.approx(n_in * (n_in + 1) / 2, rel=1e-6)  # causal prompt attention


def test_a_known_linear_step_time_is_recovered_from_a_few_batches():
    truth = LinearStepTime(overhead_s=0.006, s_per_prefill_token=2e-5, s_per_decode_seq=1e-4, s_per_kv_token=3e-8,
                           s_per_attn_pair=1e-9)
    grid = [(b, n) for n in (64, 128, 256, 512) for b in (1, 4, 16)]
    table = pd.DataFrame({"batch_size": [b for b, _ in grid], "input_tokens": [n for _, n in grid],
                          "output_tokens": [n // 2 for _, n in grid],
                          "latency_s": [_latency(H100_8B, truth, b, n, n // 2) for b, n in grid]})
    fit = fit_batches(check_batches(table), H100_8B, by="prompt", max_train=6)
    assert fit.n_train == 6 and fit.n_heldout == 6
    assert fit.heldout_mape < 0.005 and fit.train_mape < 0.005  # latency is exactly linear in the coefficients


def test_a_public_slice_is_forecast_from_twelve_of_its_batches():
    """LLM-Inference-Bench, H100, Llama-3-8B, vLLM, TP 1: 12 batches fitted, the 8 at other prompt lengths forecast."""
    batches = check_batches(pd.read_csv(SLICE), str(SLICE))
    fit = fit_batches(batches, H100_8B, by="prompt", max_train=12)
    held = fit.predictions[fit.predictions["split"] == "heldout"]
    assert fit.n_train <= 12 and set(held["input_tokens"]) == {256, 1024}
    assert fit.heldout_mape < 0.05 and abs(held["error"].mean()) < 0.03


def test_split_holds_out_every_second_length_and_caps_training_rows():
    grid = pd.DataFrame([(b, n, n, 1.0) for n in (128, 256, 512, 1024, 2048) for b in (1, 16, 32, 64)],
                        columns=["batch_size", "input_tokens", "output_tokens", "latency_s"])
    held = split_batches(grid, "prompt")
    assert set(grid[held]["input_tokens"]) == {256, 1024} and (~held).sum() == 12
    held = split_batches(grid, "batch", max_train=5)
    assert set(grid[held & grid["input_tokens"].eq(128)]["batch_size"]) >= {16} and (~held).sum() == 5


@pytest.mark.parametrize("column, value, message", [
    ("batch_size", 0, "row 2.batch_size: must be a whole number >= 1"),
    ("input_tokens", 1.5, "row 2.input_tokens: must be a whole number >= 1"),
    ("latency_s", float("nan"), "row 2.latency_s: must be a finite number of seconds > 0"),
    ("latency_s", -1.0, "row 2.latency_s"),
])
def test_bad_batch_rows_name_row_and_column(column, value, message):
    table = pd.read_csv(SLICE).astype({column: object})
    table.loc[0, column] = value
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        check_batches(table, "t.csv")


def test_fit_command_writes_a_profile_from_a_batch_table_and_refuses_other_fits(tmp_path):
    base = ["calibrate", "fit", str(SLICE), "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--engine", "vllm-v0",
            "--profiles-dir", str(tmp_path / "p")]
    res = CliRunner().invoke(app, base + ["--fit", "roofline"])
    assert res.exit_code == 2 and "batch-latency tables fit a linear step time" in res.output, res.output
    res = CliRunner().invoke(app, base + ["--max-train-rows", "12"])
    assert res.exit_code == 0, res.output
    assert "held-out" in res.output and "one figure for both" in res.output
    folder = tmp_path / "p" / "h100-sxm"
    doc = yaml.safe_load((folder / "llama-3.1-8b-vllm-v0-bf16-tp1.yaml").read_text())
    assert doc["step_time"]["kind"] == "linear" and doc["fit_mape"] < 0.05
    assert "batch-latency fit: 12 batches fitted, 8 held out" in doc["provenance"]["method"]
    table = pd.read_csv(folder / "llama-3.1-8b-vllm-v0-bf16-tp1.batch-fit.csv")
    assert {"predicted_s", "error", "split", "steps"} <= set(table.columns) and len(table) == 20
    bad = tmp_path / "bad.csv"
    pd.read_csv(SLICE).assign(latency_s="slow").to_csv(bad, index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", str(bad), "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                   "--profiles-dir", str(tmp_path / "q")])
    assert res.exit_code == 2 and "row 2.latency_s" in res.output and "Traceback" not in res.output, res.output
