"""`calibrate fit` on a concurrency sweep (calibration/sweep_fit.py): the terms kernel tables miss, fitted through
simulated closed loops and checked on concurrency levels the fit never saw."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simfactory.calibration.sweep_fit import SweepSetup, _family, check_sweep, fit_sweep, is_sweep_table, split_sweep
from simfactory.cli import app
from simfactory.config.profile import KernelsStepTime, RooflineStepTime
from simfactory.errors import InputError
from simfactory.fidelity import closed_loop_metrics, closed_loop_scenario
from simfactory.paths import CALIBRATE_DIR
from simfactory.resolve import resolve

NIM = CALIBRATE_DIR / "datasets" / "nim-h100"
SETUP_8B = SweepSetup("h100-sxm", "llama-3.1-8b", "tensorrt-llm", "fp8", 1, 256, 2048)


def _sweep(levels: list[int], shapes: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"concurrency": c, "input_tokens": i, "output_tokens": o, "ttft_s": 1.0, "itl_s": 1.0,
                          "output_tokens_per_s": 1.0} for i, o in shapes for c in levels])


@pytest.mark.parametrize("change, field, reason", [
    ({"concurrency": 0}, "row 3.concurrency", "whole number from 1"),
    ({"concurrency": 2.5}, "row 3.concurrency", "whole number"),
    ({"output_tokens": 1}, "row 3.output_tokens", "from 2"),
    ({"ttft_s": -0.1}, "row 3.ttft_s", "positive number"),
    ({"itl_s": "fast"}, "row 3.itl_s", "positive number"),
    ({"ttft_s": None, "itl_s": None, "output_tokens_per_s": None}, "row 3", "measures nothing"),
    ({"concurrency": 1}, "row 3", "repeats an earlier row"),
    ({"concurrency": 4096, "output_tokens": 8000}, "", "output tokens per evaluation"),
])
def test_a_bad_sweep_row_is_named_by_line_and_column(change, field, reason):
    t = _sweep([1, 4, 16], [(200, 64)]).astype(object)
    for col, v in change.items():
        t.at[1, col] = v
    with pytest.raises(InputError) as e:
        check_sweep(t, "s.csv")
    assert e.value.file == "s.csv" and e.value.field == field and reason in e.value.reason


def test_a_sweep_table_is_told_apart_and_empty_cells_are_not_measured():
    t = _sweep([1, 4], [(200, 64)]).drop(columns=["ttft_s"])
    assert is_sweep_table(t) and not is_sweep_table(t.drop(columns=["itl_s", "output_tokens_per_s"]))
    t.loc[0, "itl_s"] = None
    checked = check_sweep(t, "s.csv")
    assert checked["itl_s"].isna().tolist() == [True, False] and checked["ttft_s"].isna().all()


def test_every_second_concurrency_level_of_each_shape_is_held_out():
    t = check_sweep(_sweep([1, 5, 25, 50, 100], [(200, 64), (1000, 128)]).sample(frac=1.0, random_state=3))
    held = split_sweep(t)
    assert sorted(t[held]["concurrency"].tolist()) == [5, 5, 50, 50]
    with pytest.raises(InputError, match="at least two levels"):
        check_sweep(_sweep([8], [(200, 64), (1000, 128)]), "s.csv")


def test_a_sweep_simulated_with_known_terms_is_fitted_back_and_predicts_its_held_out_levels():
    """Ground truth from the simulator itself: a server whose GEMMs run 20% faster than the tables and whose
    engine spends 2 ms a step; the fit must find both from the training levels and predict the others."""
    truth = KernelsStepTime(overhead_s=0.002, linear_scale=0.8)
    sweep = _sweep([1, 4, 16, 48, 96], [(400, 48)]).drop(columns=["ttft_s", "itl_s", "output_tokens_per_s"])
    family = _family(SETUP_8B, sweep)
    measured = SETUP_8B.simulate(sweep, family.to_model(truth))
    fit, on_bounds, _ = fit_sweep(check_sweep(pd.concat([sweep, measured], axis=1)), SETUP_8B, max_evaluations=80)
    assert not on_bounds
    assert fit.step_time.linear_scale == pytest.approx(0.8, rel=0.05)
    assert fit.step_time.overhead_s == pytest.approx(0.002, abs=0.0006)
    assert fit.heldout_mape < 0.02
    assert set(fit.phases) == {"ttft", "itl", "ttft_median", "itl_median", "throughput"}  # every metric was given
    prior = fit.predictions["prior_predicted"] / fit.predictions["measured"] - 1
    assert prior.abs().mean() > 5 * fit.heldout_mape  # the prior (tables x 1, its own overhead) was well off


def test_a_sweep_measured_from_cold_starts_is_fitted_back_when_the_fit_is_told_its_request_count():
    """Ground truth measured as AIPerf with --request-count 3 x C runs (the first wave of C prompts in every mean):
    told so, the fit finds the terms again; fitting it as a steady state misses the TTFT the wave adds."""
    truth = KernelsStepTime(overhead_s=0.002, linear_scale=0.8)
    shape = _sweep([1, 4, 16, 48, 96], [(1500, 48)])
    counted = check_sweep(shape, requests_per_client=3)
    assert counted["requests"].tolist() == [3, 12, 48, 144, 288]
    measured = SETUP_8B.simulate(counted, _family(SETUP_8B, counted).to_model(truth))
    table = counted.assign(**{c: measured[c] for c in measured})
    fit, on_bounds, _ = fit_sweep(table, SETUP_8B, max_evaluations=80)
    assert not on_bounds and fit.heldout_mape < 0.02, fit.phases
    assert fit.step_time.linear_scale == pytest.approx(0.8, rel=0.05)
    steady, *_ = fit_sweep(table.assign(requests=float("nan")), SETUP_8B, max_evaluations=80)
    assert steady.phases["ttft"].mape > 5 * fit.phases["ttft"].mape, (steady.phases["ttft"], fit.phases["ttft"])


def test_a_rows_own_request_count_runs_that_row_as_its_benchmark_did():
    """A `requests` cell is the benchmark's count at that level: that row (and only it) runs from a cold start;
    an empty cell is not known (a steady state, or --requests-per-client's count)."""
    t = _sweep([2, 16], [(1000, 32)]).astype(object).assign(requests=[None, 16])
    checked = check_sweep(t, "s.csv")
    assert checked["requests"].isna().tolist() == [True, False]
    assert check_sweep(t, "s.csv", requests_per_client=5)["requests"].tolist() == [10, 16]
    sim = SETUP_8B.simulate(checked, None)
    cold, _ = closed_loop_metrics(SETUP_8B.point(checked.iloc[1]), "tensorrt-llm", 256, 2048, requests=16)
    steady, _ = closed_loop_metrics(SETUP_8B.point(checked.iloc[1]), "tensorrt-llm", 256, 2048)
    # the first wave of 16 co-arriving prompts (cold) waits far longer than a steady state's arrivals
    assert sim.loc[1, "ttft_s"] == pytest.approx(cold["ttft_s"], rel=1e-12) and cold["ttft_s"] > 1.5 * steady["ttft_s"]
    t.at[0, "requests"] = 2.5
    with pytest.raises(InputError) as e:
        check_sweep(t, "s.csv")
    assert e.value.field == "row 2.requests" and "whole number" in e.value.reason


def test_a_request_count_sizes_the_work_a_sweep_evaluation_simulates():
    t = _sweep([1, 4096], [(200, 8000)])  # 4097 clients x 8,000 tokens: 262M at 8 per client, 98M at 3
    with pytest.raises(InputError, match="output tokens per evaluation"):
        check_sweep(t, "s.csv")
    assert len(check_sweep(t, "s.csv", requests_per_client=3)) == 2
    assert len(check_sweep(t.assign(requests=[8, 8192]), "s.csv")) == 2


def test_nims_published_70b_sweep_calibrates_to_its_held_out_levels():
    """NVIDIA's NIM 1.8.0 Llama-3.3-70B sweep on 2 x H100 (the dataset's README), at the fidelity suites' budget of
    2048: fitted on concurrency 1, 25, 100, 200 of each shape, the other seven levels' ITL and throughput within 5%
    and unbiased within 3%, closer than the prior came on them."""
    sweep = check_sweep(pd.read_csv(NIM / "llama-3.3-70b-fp8-tp2.sweep.csv"))
    fit, on_bounds, _ = fit_sweep(sweep, SweepSetup("h100-sxm", "llama-3.1-70b", "tensorrt-llm", "fp8", 2, 256, 2048))
    assert not on_bounds
    p = fit.predictions[fit.predictions["split"] == "heldout"]
    assert sorted(set(p["concurrency"])) == [5, 50, 150, 250]
    for phase, metric in (("itl", "itl_s"), ("throughput", "output_tokens_per_s")):
        pe = fit.phases[phase]
        assert pe.n == 7 and pe.mape < 0.05 and abs(pe.bias) < 0.03, (phase, pe)
        rows = p[p["metric"] == metric]
        prior_mape = (rows["prior_predicted"] / rows["measured"] - 1).abs().mean()
        assert pe.mape < prior_mape, (phase, pe.mape, prior_mape)


def test_a_sweep_of_a_model_of_a_tabled_shape_fits_on_that_models_tables():
    """Llama-3.3-70B has no tables of its own; a sweep fit of it starts from Llama-3.1-70B's, as `run` prices it."""
    from simfactory.calibration.sweep_fit import _family

    sweep = check_sweep(pd.read_csv(NIM / "llama-3.3-70b-fp8-tp2.sweep.csv"))
    family = _family(SweepSetup("h100-sxm", "llama-3.3-70b", "tensorrt-llm", "fp8", 2, 256, 2048), sweep, "kernels")
    assert family.kind == "kernels"
    model = family.to_model(family.to_spec(family.x0))
    assert "llama-3.1-70b's tables: llama-3.3-70b has its shape" in model.label


def test_the_command_writes_a_profile_that_run_then_uses_exactly_as_fitted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = NIM / "llama-3.3-70b-fp8-tp2.sweep.csv"
    sweep = pd.read_csv(table)
    sweep[sweep["input_tokens"] == 5000].head(4).to_csv(tmp_path / "s.csv", index=False)  # c 1, 5, 25, 50
    base = ["calibrate", "fit", "s.csv", "--sku", "h100-sxm", "--model", "llama-3.1-70b", "--engine", "tensorrt-llm",
            "--dtype", "fp8", "--tp", "2", "--max-num-batched-tokens", "2048", "--gpu-memory-utilization", "0.8"]
    res = CliRunner().invoke(app, base + ["--fit", "linear"])
    assert res.exit_code == 2 and "a concurrency sweep fits" in res.output, res.output
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 0, res.output
    assert "held-out itl" in res.output and "before fitting, the prior (kernels) was off by" in res.output
    assert ("{model: llama-3.1-70b, engine: tensorrt-llm, dtype: fp8, tp: 2, max_num_seqs: 256, "
            "max_num_batched_tokens: 2048, gpu_memory_utilization: 0.8}") in " ".join(res.output.split())
    folder = Path("hardware_profiles") / "h100-sxm"
    doc = yaml.safe_load((folder / "llama-3.1-70b-tensorrt-llm-fp8-tp2.yaml").read_text())
    assert doc["step_time"]["kind"] == "kernels"
    assert "max_num_batched_tokens 2048, gpu_memory_utilization 0.8" in doc["provenance"]["method"]
    fitted = pd.read_csv(folder / "llama-3.1-70b-tensorrt-llm-fp8-tp2.sweep-fit.csv")
    setup = SweepSetup("h100-sxm", "llama-3.1-70b", "tensorrt-llm", "fp8", 2, 256, 2048, gpu_memory_utilization=0.8)
    row = next(check_sweep(pd.read_csv("s.csv")).itertuples(index=False))
    scenario = closed_loop_scenario(setup.point(row), "tensorrt-llm", 256, 2048, 1.0)
    d = resolve(scenario, tmp_path / "scenario.yaml").deployments[0]  # a scenario beside ./hardware_profiles
    assert d.step_time_source.startswith("measured (")
    metrics, _ = closed_loop_metrics(setup.point(row), "tensorrt-llm", 256, 2048, d.step_time)
    want = fitted[(fitted["concurrency"] == row.concurrency) & (fitted["metric"] == "itl_s")]["predicted"].item()
    assert metrics["itl_s"] == pytest.approx(want, rel=1e-9)
    bad = tmp_path / "bad.csv"
    sweep.assign(concurrency=-1).to_csv(bad, index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", str(bad), "--sku", "h100-sxm", "--model", "llama-3.1-70b"])
    assert res.exit_code == 2 and "row 2.concurrency" in res.output and "Traceback" not in res.output, res.output


def test_an_unknown_token_budget_is_fitted_too_and_a_server_no_scenario_can_hold_is_one_line():
    """The budget decides how many co-arriving prompts a step prefills, so it shapes TTFT: a sweep simulated at
    2048 is fitted back to 2048 among 512, 2048 and 8192."""
    from simfactory.calibration.sweep_fit import fit_sweep_budget

    truth = SweepSetup("h100-sxm", "llama-3.1-8b", "tensorrt-llm", "fp8", 1, 256, 2048)
    sweep = _sweep([1, 8, 24, 48], [(1500, 32)]).drop(columns=["ttft_s", "itl_s", "output_tokens_per_s"])
    measured = truth.simulate(sweep, _family(truth, sweep).to_model(KernelsStepTime(overhead_s=0.001)))
    sweep = check_sweep(pd.concat([sweep, measured], axis=1))
    fit, _, chosen, found = fit_sweep_budget(sweep, truth, max_evaluations=30, budgets=(512, 2048, 8192))
    tried = found.tried
    assert chosen.max_num_batched_tokens == 2048 and set(tried) == {512, 2048, 8192} and found.determined
    assert tried[2048] < 0.5 * min(tried[512], tried[8192]) and fit.heldout_mape < 0.05
    with pytest.raises(InputError, match="must be >= max_num_seqs") as e:
        SweepSetup("h100-sxm", "llama-3.1-8b", "tensorrt-llm", "fp8", 1, 1024, 512).check(sweep)
    assert e.value.file == "--max-num-seqs / --max-num-batched-tokens"
    with pytest.raises(InputError, match="the KV cache it leaves") as e:  # a fraction that passes the range check
        SweepSetup("h100-sxm", "llama-3.1-8b", "tensorrt-llm", "fp8", 1, 256, 2048, gpu_memory_utilization=1e-300).check(sweep)
    assert e.value.file == "--gpu-memory-utilization"


def test_on_a_sku_without_kernel_tables_the_roofline_factors_are_fitted_back():
    setup = SweepSetup("mi300x", "llama-3.1-8b", "vllm", "bf16", 1, 256, 2048, front_end_s=0.0)  # the engine alone
    # up to 128 clients: a sweep that stays memory-bound (48 at most) lets memory efficiency and overhead trade off
    sweep = _sweep([1, 4, 16, 48, 128], [(600, 48)]).drop(columns=["ttft_s", "itl_s", "output_tokens_per_s"])
    family = _family(setup, sweep)
    assert family.kind == "roofline"
    # the fit searches the three classic factors and keeps the SKU's small-GEMM terms (MI300X's), as the truth has them
    truth = RooflineStepTime(compute_efficiency=0.35, memory_efficiency=0.4, step_overhead_s=0.012, gemm_latency_s=9e-6,
                             gemm_ramp_tokens=170)
    measured = setup.simulate(sweep, family.to_model(truth))
    fit, on_bounds, _ = fit_sweep(check_sweep(pd.concat([sweep, measured], axis=1)), setup, max_evaluations=80)
    assert not on_bounds and fit.kind.startswith("roofline") and fit.heldout_mape < 0.03
    prior = (fit.predictions["prior_predicted"] / fit.predictions["measured"] - 1).abs().mean()
    assert prior > 0.1  # the SKU's default factors were well off
    got = fit.step_time
    assert (got.compute_efficiency, got.memory_efficiency, got.step_overhead_s) == pytest.approx((0.35, 0.4, 0.012),
                                                                                                   rel=0.05)
    with pytest.raises(InputError, match="no measured kernels"):
        fit_sweep(check_sweep(pd.concat([sweep, measured], axis=1)), setup, kind="kernels")


def test_a_row_no_simulated_request_can_complete_or_the_simulator_cannot_hold_is_named_by_its_row():
    setup = dataclasses.replace(SETUP_8B, file="s.csv")
    long = check_sweep(pd.DataFrame([{"concurrency": c, "input_tokens": 200_000, "output_tokens": 10, "itl_s": 0.01}
                                     for c in (1, 4)]), "s.csv")  # past the model's 131,072-token context
    with pytest.raises(InputError) as e:
        fit_sweep(long, setup, max_evaluations=4)
    assert (e.value.file, e.value.field) == ("s.csv", "row 2") and "no simulated request completed" in e.value.reason
    big = check_sweep(pd.DataFrame([{"concurrency": c, "input_tokens": 1000, "output_tokens": 1000, "itl_s": 0.01}
                                    for c in (1, 4000)]), "s.csv")
    with pytest.raises(InputError) as e:
        setup.simulate(big, _family(setup, big).to_model(KernelsStepTime(overhead_s=0.001)))
    assert (e.value.file, e.value.field) == ("s.csv", "row 3") and e.value.reason.startswith("cannot be simulated")


def test_an_unknown_kv_memory_fraction_is_fitted_from_where_clients_start_queueing():
    """A server whose KV pool is two thirds of the default (0.6 of its memory instead of 0.9) queues clients for
    KV room from 24 clients of 3,000-token prompts on an L40S; the fraction is found among 0.6 and 0.9."""
    from simfactory.calibration.sweep_fit import fit_sweep_kv

    truth = SweepSetup("l40s", "llama-3.1-8b", "tensorrt-llm", "bf16", 1, 256, 2048, "s.csv", 0.6)
    sweep = pd.DataFrame([{"concurrency": c, "input_tokens": 3000, "output_tokens": 64} for c in (1, 8, 24, 48, 64)])
    measured = truth.simulate(sweep, _family(truth, sweep).to_model(KernelsStepTime(overhead_s=0.001)))
    assert measured["ttft_s"].iloc[-1] > 5 * measured["ttft_s"].iloc[1]  # the queue is there to be found
    sweep = check_sweep(pd.concat([sweep, measured], axis=1), "s.csv")
    unknown = dataclasses.replace(truth, gpu_memory_utilization=None)
    fit, _, chosen, found = fit_sweep_kv(sweep, unknown, max_evaluations=30, fractions=(0.6, 0.9), preferred=0.9)
    tried = found.tried
    assert chosen.gpu_memory_utilization == 0.6 and tried[0.6] < tried[0.9] / 3 and fit.heldout_mape < 0.02


def test_a_setting_the_sweep_does_not_bind_keeps_the_presets_value_and_one_that_cannot_run_is_skipped():
    """A light sweep never fills the KV pool: every fraction fits alike, so the engine preset's is kept and said to
    be undecided (not the smallest tried, which would halve KV room in the user's scenario). On 2 x H100, a bf16
    70B leaves no KV room at a fraction of 0.5: that candidate is skipped, not fatal."""
    from simfactory.calibration.sweep_fit import fit_sweep_kv

    light = check_sweep(pd.DataFrame([{"concurrency": c, "input_tokens": 200, "output_tokens": 16, "itl_s": 0.02 + c * 1e-4}
                                      for c in (1, 2, 4)]), "s.csv")
    setup = SweepSetup("h100-sxm", "llama-3.1-70b", "vllm", "bf16", 2, 256, 2048, "s.csv")
    _, _, chosen, found = fit_sweep_kv(light, setup, max_evaluations=8, fractions=(0.5, 0.95, 0.9), preferred=0.9)
    assert isinstance(found.tried[0.5], str) and "does not fit" in found.tried[0.5]
    assert found.tried[0.95] == pytest.approx(found.tried[0.9], abs=1e-6)
    assert chosen.gpu_memory_utilization == 0.9 and not found.determined and "not decided" in found.text()
    with pytest.raises(InputError) as e:
        fit_sweep_kv(light, setup, max_evaluations=8, fractions=(0.5,))
    assert e.value.file == "--gpu-memory-utilization" and "can be simulated" in e.value.reason


def test_the_command_runs_rows_as_their_benchmark_did_and_says_so(tmp_path, monkeypatch):
    """--requests-per-client fills the count of rows without one; the provenance says how many rows ran so."""
    monkeypatch.chdir(tmp_path)
    _sweep([1, 2, 4], [(200, 16)]).drop(columns=["output_tokens_per_s"]).assign(requests=[3, None, None]).to_csv(
        "s.csv", index=False)
    base = ["calibrate", "fit", "s.csv", "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--engine", "tensorrt-llm",
            "--dtype", "fp8", "--max-num-batched-tokens", "2048", "--gpu-memory-utilization", "0.9",
            "--max-evaluations", "4", "--force"]
    res = CliRunner().invoke(app, base + ["--requests-per-client", "0"])
    assert res.exit_code == 2 and "--requests-per-client" in res.output, res.output
    res = CliRunner().invoke(app, base + ["--requests-per-client", "2"])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load((Path("hardware_profiles") / "h100-sxm" / "llama-3.1-8b-tensorrt-llm-fp8-tp1.yaml").read_text())
    assert doc["provenance"]["benchmark"].startswith("3 of 3 rows run as their benchmark's request count")


def test_the_fits_loss_counts_small_errors_whole_and_far_off_rows_less():
    """robust_loss: ~|e| near zero (slope 1), half the slope at ROW_ERROR_SCALE, logarithmic past it, never flat (a
    fit far from the truth still has a way down); a row 10x off weighs as much as ~5 rows 25% off, not 40."""
    import numpy as np

    from simfactory.calibration.sweep_fit import ROW_ERROR_SCALE, robust_loss

    e = np.array([0.0, 1e-6, 0.05, 0.25, 1.0, 10.0, 100.0])
    loss = robust_loss(e)
    assert loss[0] == 0.0 and loss[1] == pytest.approx(1e-6, rel=1e-5)
    assert np.all(np.diff(loss) > 0) and np.all(loss <= e)
    slope = (robust_loss(np.array([ROW_ERROR_SCALE + 1e-7])) - robust_loss(np.array([ROW_ERROR_SCALE]))) / 1e-7
    assert slope[0] == pytest.approx(0.5, rel=1e-4)
    assert 5 < robust_loss(np.array([10.0]))[0] / robust_loss(np.array([0.25]))[0] < 6


def _front_end_sweep() -> pd.DataFrame:
    """An 8B FP8 server whose API process spends 60 us of CPU a streamed token: its streamed tokens level off near
    1 / 60 us = 16.7k/s from ~128 clients while the GPU alone would go on (cold starts, 2 x C requests a level)."""
    truth = SweepSetup("h100-sxm", "llama-3.1-8b", "tensorrt-llm-0", "fp8", 1, 256, 2048, front_end_per_token_s=6e-5)
    sweep = pd.DataFrame([{"concurrency": c, "input_tokens": 64, "output_tokens": 128, "requests": 2 * c}
                          for c in (1, 16, 64, 128, 192, 256)])
    measured = truth.simulate(sweep, _family(truth, sweep).to_model(KernelsStepTime(overhead_s=0.001)))
    return check_sweep(pd.concat([sweep, measured], axis=1))


def test_a_front_end_that_caps_streamed_tokens_is_fitted_back_from_where_throughput_levels_off():
    from simfactory.calibration.sweep_fit import fit_sweep_front_end

    sweep = _front_end_sweep()
    assert sweep["output_tokens_per_s"].iloc[-1] < 1.01 / 6e-5  # the plateau is there to be found
    unknown = SweepSetup("h100-sxm", "llama-3.1-8b", "tensorrt-llm-0", "fp8", 1, 256, 2048)
    fit, _, chosen, found = fit_sweep_front_end(sweep, unknown, max_evaluations=12, per_token_s=(0.0, 6e-5, 1.5e-4),
                                                preferred=0.0)
    tried = found.tried
    assert chosen.front_end_per_token_s == 6e-5 and found.determined
    assert tried[6e-5] < tried[0.0] / 3 and fit.heldout_mape < 0.03
    # what the user puts in their scenario carries it (the fitted step time does not)
    from simfactory.calibration.microbench import scenario_deployment

    assert "front_end_work: {per_request_s: 0, per_input_token_s: 0, per_output_token_s: 6e-05" in (
        scenario_deployment(chosen))
    assert "front_end_work" not in scenario_deployment(unknown)


@pytest.mark.parametrize("value", ["-1", "nan", "2000", "fast"])
def test_a_bad_front_end_per_token_flag_is_one_line_exit_2(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    _sweep([1, 2, 4], [(200, 16)]).to_csv("s.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", "s.csv", "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                   "--front-end-us-per-token", value])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "--front-end-us-per-token" in errors[0], res.output
    assert not Path("hardware_profiles").exists()


def test_the_command_fits_the_front_end_when_asked_and_says_what_to_put_in_the_scenario(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _front_end_sweep().to_csv("s.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", "s.csv", "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                   "--engine", "tensorrt-llm-0", "--dtype", "fp8", "--max-num-batched-tokens", "2048",
                                   "--gpu-memory-utilization", "0.9", "--max-evaluations", "12",
                                   "--front-end-us-per-token", "auto"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "front_end_per_token_s 6e-05 (fitted" in said and "per_output_token_s: 6e-05" in said
    doc = yaml.safe_load((Path("hardware_profiles") / "h100-sxm" / "llama-3.1-8b-tensorrt-llm-0-fp8-tp1.yaml")
                         .read_text())
    assert "front_end_per_token_s 6e-05" in doc["provenance"]["method"]


def test_the_budget_search_goes_below_max_num_seqs_only_where_the_engine_allows_it(monkeypatch):
    """vLLM holds max_num_seqs to the token budget, so budgets below it are never tried; SGLang's chunked_prefill_size
    bounds prefill batches only, so a 1,024-request server may run any of them (and resolves with each)."""
    from simfactory.calibration import sweep_fit

    tried: dict[str, list[int]] = {}
    monkeypatch.setattr(sweep_fit, "fit_sweep_server", lambda sweep, setup, field, values, *a: tried.setdefault(
        setup.engine, list(values)))
    for engine, held in (("vllm", True), ("sglang", False)):
        setup = SweepSetup("h100-sxm", "llama-3.1-8b", engine, "fp8", 1, 1024, 8192, seqs_within_budget=held)
        sweep_fit.fit_sweep_budget(pd.DataFrame(), setup)
    assert tried == {"vllm": [1024, 2048, 4096, 8192, 16384], "sglang": [512, 1024, 2048, 4096, 8192, 16384]}
    sweep = _sweep([1, 8], [(1500, 32)])
    SweepSetup("h100-sxm", "llama-3.1-8b", "sglang", "fp8", 1, 1024, 512, seqs_within_budget=False).check(sweep)
    with pytest.raises(InputError, match="must be >= max_num_seqs"):
        SweepSetup("h100-sxm", "llama-3.1-8b", "vllm", "fp8", 1, 1024, 512).check(sweep)


def _host_sweep(front_end_s: float) -> pd.DataFrame:
    """A vLLM 0.11 server on a host whose API server spends `front_end_s` a request before the engine sees it:
    TTFT at one client is that much longer, ITL untouched, the loop's throughput a little lower."""
    truth = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm-0.11", "bf16", 1, 256, 2048, front_end_s=front_end_s)
    sweep = pd.DataFrame([{"concurrency": c, "input_tokens": 400, "output_tokens": 64} for c in (1, 2, 4, 8, 16, 32)])
    measured = truth.simulate(sweep, _family(truth, sweep).to_model(KernelsStepTime(overhead_s=0.002,
                                                                                    linear_scale=0.9)))
    return check_sweep(pd.concat([sweep, measured], axis=1))


def test_a_hosts_front_end_per_request_is_fitted_with_the_step_time_when_asked():
    """TTFT at low concurrency is mostly the host's work per request: told to fit it, the sweep fit finds a 35 ms
    front end the preset's 8 ms misses, and the held-out levels come right; left to the preset, the step-time terms
    cannot explain TTFT and the held-out TTFT stays off."""
    sweep = _host_sweep(0.035)
    unknown = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm-0.11", "bf16", 1, 256, 2048)
    kept, _, kept_setup = fit_sweep(sweep, unknown)
    assert kept_setup.front_end_s is None and kept.phases["ttft"].mape > 0.1 and kept.phases["ttft"].bias < -0.1
    fit, on_bounds, fitted = fit_sweep(sweep, dataclasses.replace(unknown, fit_front_end_s=True))
    assert not on_bounds and fitted.front_end_s == pytest.approx(0.035, abs=0.002)
    assert fit.phases["ttft"].mape < 0.02 and fit.heldout_mape < 0.02
    from simfactory.calibration.microbench import scenario_deployment

    assert f"front_end_s: {fitted.front_end_s}" in scenario_deployment(fitted)  # what the scenario must carry


@pytest.mark.parametrize("front_end_s, expected", [(0.0, 0.0), (0.3, 0.2)])
def test_a_fitted_front_end_stays_at_zero_where_there_is_none_and_one_past_its_bound_refuses_the_fit(
        front_end_s, expected):
    setup = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm-0.11", "bf16", 1, 256, 2048, fit_front_end_s=True)
    _, on_bounds, fitted = fit_sweep(_host_sweep(front_end_s), setup)
    assert fitted.front_end_s == pytest.approx(expected, abs=0.001)
    assert bool(on_bounds) == (expected == 0.2) and all("front_end_s" in b for b in on_bounds)


def test_the_command_fits_the_front_end_per_request_when_asked_and_says_what_to_put_in_the_scenario(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _host_sweep(0.035).to_csv("s.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", "s.csv", "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                   "--engine", "vllm-0.11", "--max-num-seqs", "256", "--max-num-batched-tokens",
                                   "2048", "--gpu-memory-utilization", "0.9", "--front-end-s", "auto"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "the front end per request" in said and "front_end_s 0.03" in said and "(fitted with the step time)" in said
    assert "front_end_s: 0.03" in said
    doc = yaml.safe_load((Path("hardware_profiles") / "h100-sxm" / "llama-3.1-8b-vllm-0.11-bf16-tp1.yaml").read_text())
    assert "front_end_s 0.03" in doc["provenance"]["method"]


@pytest.mark.parametrize("flag, value, table, reason", [
    ("--front-end-s", "fast", "sweep", "seconds (e.g. 0.0034) or auto"),
    ("--front-end-s", "-1", "sweep", "must be seconds from 0"),
    ("--front-end-s", "nan", "sweep", "must be seconds from 0"),
    ("--front-end-s", "auto", "steps", "auto (fitted) applies to request and sweep"),
    ("--length-sigma", "-1", "sweep", "lognormal shape from 0 to 2"),
    ("--length-sigma", "3", "sweep", "lognormal shape from 0 to 2"),
    ("--length-sigma", "nan", "sweep", "lognormal shape from 0 to 2"),
    ("--length-sigma", "1", "steps", "applies to sweep tables"),
])
def test_a_bad_front_end_or_length_flag_is_one_line_exit_2(tmp_path, monkeypatch, flag, value, table, reason):
    monkeypatch.chdir(tmp_path)
    if table == "sweep":
        _sweep([1, 2, 4], [(200, 16)]).to_csv("t.csv", index=False)
    else:
        pd.DataFrame([{"prefill_tokens": 128 * i, "decode_seqs": 0, "kv_tokens": 0, "step_s": 0.01 * i}
                      for i in range(1, 9)]).to_csv("t.csv", index=False)
    res = CliRunner().invoke(app, ["calibrate", "fit", "t.csv", "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                   flag, value])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [ln for ln in " ".join(res.output.split()).split("error: ")[1:]]
    assert len(errors) == 1 and flag in errors[0] and reason in errors[0], res.output
    assert not Path("hardware_profiles").exists()


def test_a_lognormal_with_a_given_mean_keeps_that_mean_inside_its_bounds():
    from simfactory.config.distributions import lognormal_with_mean

    for mean, sigma in ((233, 1.0), (4, 0.5), (32_000, 1.5), (2, 1.0), (2, 2.0)):  # 2 in [1, 16]: a median below 1
        d = lognormal_with_mean(mean, sigma, 1.0, 8.0 * mean)
        draws = d.sample(np.random.default_rng(0), 400_000)
        assert d.mean() == pytest.approx(mean, rel=1e-6) and draws.mean() == pytest.approx(mean, rel=1e-2)
        assert draws.min() >= 1.0 and draws.max() <= 8.0 * mean
    with pytest.raises(ValueError, match="low < mean < high"):
        lognormal_with_mean(10, 1.0, 20, 80)
    with pytest.raises(ValueError, match="no median gives a mean of 1.01"):  # too close to the lower bound
        lognormal_with_mean(1.01, 1.0, 1.0, 8.08)


def test_a_sweep_measured_on_spread_lengths_is_fitted_with_its_spread_and_its_hosts_front_end():
    """A dataset's lengths (ShareGPT's spread) keep clients out of step; simulated at the rows' fixed means they stay
    in step and TTFT at 2-8 clients comes out far off whatever the front end. Told the spread (--length-sigma), the
    fit finds the 35 ms front end and holds the levels it did not see."""
    truth = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm-0.11", "bf16", 1, 256, 2048, front_end_s=0.035,
                       length_sigma=1.0)
    rows = pd.DataFrame([{"concurrency": c, "input_tokens": 233, "output_tokens": 221, "requests": 100}
                         for c in (1, 2, 4, 8)])
    measured = truth.simulate(rows, _family(truth, rows).to_model(KernelsStepTime(overhead_s=0.002)))
    sweep = check_sweep(pd.concat([rows, measured], axis=1))
    fixed = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm-0.11", "bf16", 1, 256, 2048, fit_front_end_s=True)
    spread = dataclasses.replace(fixed, length_sigma=1.0)
    stepped, _, _ = fit_sweep(sweep, fixed)
    fit, on_bounds, fitted = fit_sweep(sweep, spread)
    assert not on_bounds and fitted.front_end_s == pytest.approx(0.035, abs=0.003)
    assert fit.phases["ttft"].mape < 0.05 and stepped.phases["ttft"].mape > 3 * fit.phases["ttft"].mape


def test_gpustacks_sharegpt_runs_calibrate_with_their_hosts_front_end_and_their_spread():
    """GPUStack's vLLM 0.11 Qwen3-8B runs (the dataset's README): fitted with the host's front end and ShareGPT's spread,
    the levels the fit never saw (2 and 8 clients) come within 5%, TTFT included; with fixed lengths they do not."""
    sweep = check_sweep(pd.read_csv(CALIBRATE_DIR / "datasets" / "gpustack-h100" / "qwen3-8b-bf16-vllm-0.11.sweep.csv"))
    setup = SweepSetup("h100-sxm", "qwen3-8b", "vllm-0.11", "bf16", 1, 1024, 8192, gpu_memory_utilization=0.9,
                       fit_front_end_s=True)
    spread, _, fitted = fit_sweep(sweep, dataclasses.replace(setup, length_sigma=1.0))
    fixed, _, _ = fit_sweep(sweep, setup)
    assert 0.03 < fitted.front_end_s < 0.05  # ~40 ms: the preset's prior is 8 ms and a template parse
    assert spread.heldout_mape < 0.05 and spread.phases["ttft"].mape < 0.06
    assert fixed.phases["ttft"].mape > 4 * spread.phases["ttft"].mape
