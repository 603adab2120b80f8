"""Calibration without a GPU: fitting recovers known models, refuses poor fits, publishes a profile the
simulator then uses; the NVML sampler (on a fake NVML) integrates energy; no GPU gives one clear message."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import default_h100_8b_deployment
import typer
import yaml
from typer.testing import CliRunner

from simfactory.calibration.design import QUICK, DesignPoint, design
from simfactory.calibration.fit import FitRefused, check_threshold, fit_power, fit_step_time, phase_of, split_steps
from simfactory.calibration.measurements import check_steps
from simfactory.calibration.microbench import MODEL_CONFIGS, measure, publish, robust_stats
from simfactory.calibration.nvml import NvmlSampler, energy_j, samples_frame, sku_for
from simfactory.config.profile import LinearStepTime, RooflineStepTime
from simfactory.errors import InputError
from simfactory.hardware.step_time import LinearModel, RooflineModel, StepLoad
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import load_models, load_profile

ROOT = Path(__file__).resolve().parents[1]
TRUE = LinearStepTime(overhead_s=0.004, s_per_prefill_token=6e-5, s_per_decode_seq=1e-4, s_per_kv_token=3e-8,
                      s_per_attn_pair=2e-10)


def table(step_s, noise: float = 0.02, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in design():
        ld = p.load()
        rows.append({"kind": p.kind, "prefill_tokens": ld.prefill_tokens, "decode_seqs": ld.decode_seqs,
                     "kv_tokens_read": ld.kv_tokens_read, "prefill_attn_pairs": ld.prefill_attn_pairs,
                     "step_s": step_s(ld) * (1 + rng.normal(0, noise))})
    return pd.DataFrame(rows)


def h100_8b():
    models = load_models([PROFILES_DIR])
    return models["llama-3.1-8b"], load_profile([PROFILES_DIR], "h100-sxm", "x", "sku")


def test_linear_fit_recovers_known_coefficients_from_noisy_steps():
    fit = fit_step_time(table(LinearModel(TRUE).step_s), "linear")
    s = fit.step_time
    assert s.overhead_s == pytest.approx(TRUE.overhead_s, rel=0.1)
    assert s.s_per_prefill_token == pytest.approx(TRUE.s_per_prefill_token, rel=0.05)
    assert s.s_per_decode_seq == pytest.approx(TRUE.s_per_decode_seq, rel=0.15)
    assert s.s_per_kv_token == pytest.approx(TRUE.s_per_kv_token, rel=0.15)
    assert fit.heldout_mape < 0.03  # 2% noise: the held-out error is the noise, not model error
    assert fit.n_heldout >= 10 and set(fit.predictions["split"]) == {"train", "heldout"}


def test_roofline_fit_recovers_efficiencies_and_best_picks_it():
    arch, profile = h100_8b()
    truth = RooflineStepTime(compute_efficiency=0.55, memory_efficiency=0.8, step_overhead_s=0.003)
    model = RooflineModel(arch, profile.spec, truth, "bf16", "bf16", 1)
    steps = table(model.step_s, noise=0.01)
    fit = fit_step_time(steps, "best", (arch, profile.spec, "bf16", "bf16", 1))
    assert fit.kind == "roofline"
    assert fit.step_time.compute_efficiency == pytest.approx(0.55, rel=0.05)
    assert fit.step_time.memory_efficiency == pytest.approx(0.8, rel=0.05)
    assert fit.heldout_mape < 0.02


def test_data_from_a_different_model_gives_a_large_error_and_is_refused():
    # attention cost quadratic in the whole batch's tokens: no linear model in the load features fits it
    def quadratic(ld: StepLoad) -> float:
        tokens = ld.prefill_tokens + ld.decode_seqs
        return 0.002 + 4e-9 * tokens**2 + 5e-6 * (ld.kv_tokens_read / max(ld.decode_seqs, 1)) ** 1.5
    fit = fit_step_time(table(quadratic, noise=0.0), "linear")
    assert fit.heldout_mape > 0.10
    with pytest.raises(FitRefused, match="held-out MAPE"):
        check_threshold(fit, 0.10)
    check_threshold(fit, 0.10, force=True)  # --force publishes anyway


def test_too_few_steps_cannot_be_fitted():
    with pytest.raises(FitRefused, match="at least"):
        fit_step_time(table(LinearModel(TRUE).step_s).head(5), "linear")


def test_outlier_repetitions_are_dropped():
    med, p90, kept = robust_stats([0.010, 0.0101, 0.0099, 0.0100, 0.0102, 0.25])
    assert kept == 5 and med == pytest.approx(0.0100, rel=0.01) and p90 < 0.011


def test_power_fit_recovers_idle_and_max():
    u = np.linspace(0.05, 1.0, 40)
    p = 120 + (690 - 120) * u + np.random.default_rng(0).normal(0, 5, u.size)
    fit = fit_power(u, p)
    assert fit.idle_w == pytest.approx(120, abs=8) and fit.max_w == pytest.approx(690, abs=8)
    with pytest.raises(FitRefused):
        fit_power(np.full(10, 0.9), np.full(10, 600.0))  # no spread in utilization: no curve


def test_energy_is_the_integral_of_power():
    frame = samples_frame([(t, 300.0 + 100.0 * t, 0.5, 1.0, 1980, 2619, 60) for t in np.linspace(0, 2, 41)])
    assert energy_j(frame) == pytest.approx(300 * 2 + 100 * 2**2 / 2)  # linear power: trapezoids are exact
    assert energy_j(frame, 1.0, 2.0) == pytest.approx(300 + 100 * (4 - 1) / 2)


class FakeNvml(types.ModuleType):
    """Enough of pynvml for the sampler: two GPUs drawing 350 W and 250 W at 60% / 40% utilization."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.calls = 0

    def nvmlInit(self): pass  # noqa: E704
    def nvmlDeviceGetHandleByIndex(self, i): return i  # noqa: E704
    def nvmlDeviceGetPowerUsage(self, h): self.calls += 1; return 350_000 if h == 0 else 250_000  # noqa: E702,E704
    def nvmlDeviceGetUtilizationRates(self, h): return types.SimpleNamespace(gpu=60 if h == 0 else 40)  # noqa: E704
    def nvmlDeviceGetMemoryInfo(self, h): return types.SimpleNamespace(used=40e9, total=80e9)  # noqa: E704
    def nvmlDeviceGetClockInfo(self, h, kind): return 1980 if kind == 1 else 2619  # noqa: E704
    def nvmlDeviceGetTemperature(self, h, kind): return 61 + h  # noqa: E704


def test_sampler_runs_at_least_10_hz_and_integrates_energy(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    with NvmlSampler((0, 1), interval_s=0.02) as s:
        time.sleep(0.5)
    frame = s.frame()
    duration = frame["t_s"].iloc[-1] - frame["t_s"].iloc[0]
    assert len(frame) / max(duration, 1e-9) >= 10
    assert (frame["power_w"] == 600.0).all() and frame["sm_util"].iloc[0] == pytest.approx(0.5)
    assert energy_j(frame) == pytest.approx(600.0 * duration)
    with pytest.raises(ValueError, match="10 Hz"):
        NvmlSampler(interval_s=0.5)


def test_a_counter_nvml_does_not_report_costs_its_column_only(monkeypatch):
    """Some VMs and GPUs refuse power readings (NVMLError_NotSupported): the sampler keeps the other fields."""
    nv = FakeNvml()

    def not_supported(h):
        raise RuntimeError("Not Supported")

    nv.nvmlDeviceGetPowerUsage = not_supported  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    with NvmlSampler((0,), interval_s=0.02) as s:
        time.sleep(0.1)
    frame = s.frame()
    assert len(frame) >= 2 and frame["power_w"].isna().all() and (frame["sm_util"] == 0.6).all()
    assert s.unsupported == {"power_w"}


class FakeBackend:
    """Times from a known linear model with noise and an occasional disturbed repetition."""

    engine = "fake"
    kinds = ("prefill", "decode", "mixed")

    def __init__(self) -> None:
        self.rng = np.random.default_rng(3)

    def version(self) -> str:
        return "fake 1.0"

    def time_point(self, point: DesignPoint, repetitions: int, warmup: int) -> list[float]:
        t = LinearModel(TRUE).step_s(point.load())
        out = list(t * (1 + self.rng.normal(0, 0.01, repetitions)))
        out[0] *= 20  # one disturbed repetition per point: dropped as an outlier
        return out


def test_measured_profile_is_published_and_preferred_by_the_simulator(tmp_path):
    steps = measure(FakeBackend(), design(QUICK, mixed_points=6), repetitions=8, warmup=1)
    assert steps["repetitions"].between(5, 7).all()  # the 20x repetition never survives
    truth = [LinearModel(TRUE).step_s(StepLoad(*r)) for r in steps[["prefill_tokens", "decode_seqs", "kv_tokens_read",
                                                                      "prefill_attn_pairs"]].itertuples(index=False)]
    np.testing.assert_allclose(steps["step_s"], truth, rtol=0.03)
    steps["power_w"] = 100 + 500 * np.linspace(0.1, 1, len(steps))
    steps["sm_util"] = np.linspace(0.1, 1, len(steps))
    arch, profile = h100_8b()
    run = publish(steps, sku="h100-sxm", model="llama-3.1-8b", engine="vllm", dtype="bf16", tp=1,
                  profiles_dir=tmp_path / "hardware_profiles", provenance={"gpu": "NVIDIA H100 80GB HBM3"},
                  arch=arch, profile=profile, kind="linear")
    path = tmp_path / "hardware_profiles" / "h100-sxm" / "llama-3.1-8b-vllm-bf16-tp1.yaml"
    assert run.profile_path == path
    assert (path.parent / "llama-3.1-8b-vllm-bf16-tp1.steps.csv").is_file()
    doc = yaml.safe_load(path.read_text())
    assert doc["source"] == "measured" and doc["fit_mape"] == pytest.approx(run.fit.heldout_mape, abs=1e-6)
    assert doc["provenance"]["gpu"] == "NVIDIA H100 80GB HBM3" and "held-out MAPE" in doc["provenance"]["fit"]
    assert run.shipped_mape is not None and run.shipped_mape > run.fit.heldout_mape  # fake data != H100 roofline
    assert "shipped_roofline_mape" in doc["provenance"]
    assert doc["idle_w"] == pytest.approx(100, abs=5) and doc["max_w"] == pytest.approx(600, abs=5)
    assert path.read_text().startswith("# yaml-language-server: $schema=../../schemas/measured-profile.json")

    # a scenario beside that folder runs on the measured model, and its energy uses the measured power
    rs, dep = default_h100_8b_deployment(tmp_path)
    assert dep.step_time_source.startswith("measured")
    assert isinstance(dep.step_time, LinearModel)
    assert dep.step_time.spec.s_per_prefill_token == pytest.approx(TRUE.s_per_prefill_token, rel=0.05)
    assert rs.pool_profiles[dep.pool.name].spec.idle_w == pytest.approx(doc["idle_w"])
    assert "measured" in rs.pool_profiles[dep.pool.name].spec.source


def calibrate_cli() -> typer.Typer:
    from simfactory.cli.calibrate_run import register

    app = typer.Typer()
    register(app)
    return app


def test_no_gpu_gives_one_clear_message_and_writes_nothing(tmp_path, monkeypatch):
    fake = types.ModuleType("pynvml")

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = no_driver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    out = tmp_path / "profiles"
    res = CliRunner().invoke(calibrate_cli(), ["run", "--backend", "torch", "--profiles-dir", str(out)])
    assert res.exit_code == 3, res.output
    assert "no NVIDIA GPU found" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_prefill_floor_bounds_prefill_steps_only():
    arch, profile = h100_8b()
    plain = RooflineStepTime(compute_efficiency=0.55, memory_efficiency=0.8, step_overhead_s=0.003)
    floored = plain.model_copy(update={"prefill_floor_s": 0.02})
    a, b = (RooflineModel(arch, profile.spec, f, "bf16", "bf16", 1) for f in (plain, floored))
    short, long_, decode = StepLoad(32, 0, 0.0, 528.0), StepLoad(16384, 0, 0.0, 16384 * 16385 / 2), StepLoad(0, 8, 8000.0)
    assert a.step_s(short) < 0.02 and b.step_s(short) == pytest.approx(0.02)  # a short prefill waits for the floor
    assert b.step_s(long_) == a.step_s(long_) > 0.02  # a long one hides it
    assert b.step_s(decode) == a.step_s(decode) < 0.02  # decode steps never pay it (graph-captured)
    assert b.decode_affine(8, 8000.0, 8.0, 10) == a.decode_affine(8, 8000.0, 8.0, 10)


def test_roofline_fit_recovers_a_prefill_floor_and_the_cap_spreads_over_step_times():
    arch, profile = h100_8b()
    truth = RooflineStepTime(compute_efficiency=0.55, memory_efficiency=0.8, step_overhead_s=0.003,
                             prefill_floor_s=0.012)
    model = RooflineModel(arch, profile.spec, truth, "bf16", "bf16", 1)
    steps = table(model.step_s, noise=0.01)
    floored = steps["prefill_tokens"].gt(0) & steps["step_s"].lt(0.0125)
    assert floored.sum() >= 3  # the design has prefills short enough to sit on the floor
    candidates = ~split_steps(steps, "batch")
    heldout = split_steps(steps, "batch", max_train=12)
    phase, times = phase_of(steps), steps["step_s"].to_numpy()
    for ph in ("prefill", "decode"):  # 12 rows spread over each phase's step times: its shortest and longest train
        pool = np.sort(times[candidates & (phase == ph)])
        trained = times[~heldout & (phase == ph)]
        assert trained.min() <= pool[1] and trained.max() >= pool[-2]
    fit = fit_step_time(steps, "roofline", (arch, profile.spec, "bf16", "bf16", 1), heldout_by="batch", max_train=12)
    assert fit.step_time.prefill_floor_s == pytest.approx(0.012, rel=0.1)
    assert fit.phases["prefill"].mape < 0.03
    decode_only = steps[steps["prefill_tokens"] == 0].reset_index(drop=True)
    assert fit_step_time(decode_only, "roofline", (arch, profile.spec, "bf16", "bf16", 1)).step_time.prefill_floor_s == 0


def test_fit_command_leaves_out_steps_above_max_step_tokens(tmp_path):
    steps = measure(FakeBackend(), design(QUICK, mixed_points=6), repetitions=6, warmup=0)
    steps.to_csv(tmp_path / "steps.csv", index=False)
    tokens = steps["prefill_tokens"] + steps["decode_seqs"]
    limit = int(np.sort(tokens.unique())[-2])
    args = ["fit", str(tmp_path / "steps.csv"), "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--fit", "linear",
            "--profiles-dir", str(tmp_path / "hp")]
    res = CliRunner().invoke(calibrate_cli(), [*args, "--max-step-tokens", str(limit)])
    assert res.exit_code == 0, res.output
    left_out = int((tokens > limit).sum())
    assert f"left out {left_out} of {len(steps)} steps above {limit} tokens" in " ".join(res.output.split())
    written = yaml.safe_load(next((tmp_path / "hp" / "h100-sxm").glob("*.yaml")).read_text())
    assert f"{limit} ({left_out} larger steps left out)" in json.dumps(written)
    res = CliRunner().invoke(calibrate_cli(), [*args, "--max-step-tokens", "0"])
    assert res.exit_code == 2 and "--max-step-tokens" in res.output


def test_fit_command_publishes_from_a_csv_and_rejects_a_malformed_one(tmp_path):
    steps = measure(FakeBackend(), design(QUICK, mixed_points=6), repetitions=6, warmup=0)
    steps.to_csv(tmp_path / "steps.csv", index=False)
    app = calibrate_cli()
    args = ["fit", str(tmp_path / "steps.csv"), "--sku", "h100-sxm", "--model", "llama-3.1-8b",
            "--profiles-dir", str(tmp_path / "hp")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "hp" / "h100-sxm" / "llama-3.1-8b-vllm-bf16-tp1.yaml").is_file()

    steps.drop(columns=["kv_tokens_read"]).to_csv(tmp_path / "bad.csv", index=False)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "bad.csv"), *args[2:]])
    assert res.exit_code == 2 and "bad.csv: kv_tokens_read" in res.output

    # a poor fit is refused (exit 1) unless --force, and nothing is written when refused
    steps["step_s"] = 0.002 + 4e-12 * (steps["prefill_tokens"] + steps["decode_seqs"]) ** 3
    steps.to_csv(tmp_path / "odd.csv", index=False)
    shutil.rmtree(tmp_path / "hp")
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "odd.csv"), *args[2:], "--fit", "linear"])
    assert res.exit_code == 1 and "held-out MAPE" in res.output and not (tmp_path / "hp").exists()
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "odd.csv"), *args[2:], "--fit", "linear", "--force"])
    assert res.exit_code == 0, res.output


def test_step_table_rejects_bad_values_naming_row_and_field():
    good = pd.DataFrame([{"kind": "decode", "prefill_tokens": 0, "decode_seqs": 4, "kv_tokens_read": 100.0,
                          "prefill_attn_pairs": 0.0, "step_s": 0.01}])
    check_steps(good)
    with pytest.raises(InputError, match="row 1.step_s"):
        check_steps(good.assign(step_s=-1.0), "t.csv")
    with pytest.raises(InputError, match=r"t.csv: row 1.kind: expected prefill \| decode \| mixed, got 'decoding'"):
        check_steps(good.assign(kind="decoding"), "t.csv")
    check_steps(good.assign(kind="mixed"))


def test_shipped_model_configs_match_the_model_catalogue():
    models = load_models([PROFILES_DIR])
    folders = sorted(p for p in MODEL_CONFIGS.iterdir() if p.is_dir())
    assert len(folders) >= 5
    for folder in folders:
        cfg = json.loads((folder / "config.json").read_text())
        m = models[folder.name]
        assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (
            m.layers, m.hidden, m.heads, m.kv_heads), folder.name


def test_gpu_names_map_to_shipped_skus():
    assert sku_for("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert sku_for("NVIDIA H200") == "h200"
    assert sku_for("NVIDIA H100 PCIe") is None  # not the SXM part: the user must say which profile
    assert sku_for("Tesla T4") is None


def test_calibrate_run_end_to_end_on_a_fake_gpu(tmp_path, monkeypatch):
    """The whole `calibrate run` path (GPU check, design sized to memory, NVML sampling, outliers, fit, write)
    with NVML and the engine replaced by fakes: what a GPU machine runs, minus the GPU."""
    nv = FakeNvml()
    extra = {
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetName": lambda h: b"NVIDIA H100 80GB HBM3",
        "nvmlSystemGetDriverVersion": lambda: "550.54.15",
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700_000,
    }
    for name, fn in extra.items():
        setattr(nv, name, fn)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    import simfactory.calibration.backends as backends

    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: FakeBackend())
    out = tmp_path / "hp"
    res = CliRunner().invoke(calibrate_cli(), ["run", "--backend", "torch", "--quick", "--repetitions", "5",
                                               "--profiles-dir", str(out)])
    assert res.exit_code == 0, res.output
    path = out / "h100-sxm" / "llama-3.1-8b-fake-bf16-tp1.yaml"  # SKU from the GPU's name, engine from the backend
    doc = yaml.safe_load(path.read_text())
    assert doc["provenance"]["gpu"] == "NVIDIA H100 80GB HBM3" and doc["provenance"]["driver"] == "550.54.15"
    assert doc["provenance"]["engine_version"] == "fake 1.0" and doc["fit_mape"] < 0.05
    steps = pd.read_csv(path.with_name("llama-3.1-8b-fake-bf16-tp1.steps.csv"))
    assert set(steps["kind"]) == {"prefill", "decode", "mixed"} and steps["power_w"].eq(350.0).all()
    assert (path.with_name("llama-3.1-8b-fake-bf16-tp1.power.csv")).is_file()


def test_design_gpu_time_estimate_and_dry_run():
    from simfactory.calibration.microbench import estimate_gpu_s

    model = LinearModel(TRUE)
    pts = [DesignPoint("decode", decode_seqs=4, context_tokens=1000), DesignPoint("prefill", prefill_seqs=2, prefill_tokens=500)]
    seconds, shapes = estimate_gpu_s(pts, model, ("prefill", "decode"), repetitions=10, warmup=2, prefill_contexts=False)
    assert shapes == 2
    assert seconds == pytest.approx(12 * (model.step_s(pts[0].load()) + model.step_s(pts[1].load())))
    with_context, _ = estimate_gpu_s(pts, model, ("prefill", "decode"), 10, 2, prefill_contexts=True,
                                     max_batched_tokens=1000)
    # vLLM also prefills the decode batch's 4,000 context tokens: 4 chunks of 1,000
    chunk = model.step_s(StepLoad(1000, 0, 0.0, 1000 * 1001 / 2))
    assert with_context == pytest.approx(seconds + 4 * chunk)

    res = CliRunner().invoke(calibrate_cli(), ["run", "--dry-run", "--sku", "h100-sxm", "--model", "llama-3.1-8b"])
    assert res.exit_code == 0 and "step shapes" in res.output and "estimated GPU busy time" in res.output
    res = CliRunner().invoke(calibrate_cli(), ["run", "--dry-run", "--model", "llama-3.1-8b"])
    assert res.exit_code == 2 and "--dry-run needs --sku" in res.output
    res = CliRunner().invoke(calibrate_cli(), ["run", "--dry-run", "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                               "--backend", "tensorrt"])
    assert res.exit_code == 2 and "--backend: backend: vllm or torch, not 'tensorrt'" in res.output


def test_a_torch_eager_profile_is_usable_by_a_scenario_on_that_engine(tmp_path):
    """The torch backend writes `engine: torch-eager`; a deployment naming that engine (a shipped preset) runs on
    the measured step time."""
    steps = measure(FakeBackend(), design(QUICK, mixed_points=0), repetitions=6, warmup=0)
    publish(steps, sku="h100-sxm", model="llama-3.1-8b", engine="torch-eager", dtype="bf16", tp=1,
            profiles_dir=tmp_path / "hardware_profiles", provenance={"gpu": "test"}, kind="linear")
    scenario = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    for d in scenario["deployments"]:
        d["engine"] = "torch-eager"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    from simfactory.api import prepare

    rs = prepare(tmp_path / "s.yaml")
    assert all(d.step_time_source.startswith("measured") for d in rs.deployments)
    from simfactory.api import step_tables

    rows = step_tables(rs)[rs.deployments[0].config.name]["rows"]  # `validate --steps`: the fit's own terms
    assert all(set(r["parts_ms"]) <= {"overhead", "prefill_tokens", "decode_seqs", "kv_read", "prefill_attention"}
               and sum(r["parts_ms"].values()) == pytest.approx(r["step_ms"]) for r in rows)


@pytest.mark.parametrize("flags, message", [
    (["--fit", "magic"], "error: --fit: unknown fit 'magic'"),
    (["--max-heldout-mape", "-1"], "error: --max-heldout-mape: must be a finite fraction > 0"),
    (["--max-heldout-mape", "nan"], "error: --max-heldout-mape: must be a finite fraction > 0"),
    (["--engine", "xyz"], "error: --engine: unknown engine 'xyz'"),
    (["--tp", "0"], "error: --tp: must be >= 1"),
    (["--dtype", "bf17"], "error: --dtype: unknown dtype 'bf17'"),
])
def test_fit_flags_that_cannot_mean_anything_are_one_line_errors(tmp_path, flags, message):
    steps = measure(FakeBackend(), design(QUICK, mixed_points=6), repetitions=6, warmup=0)
    steps.to_csv(tmp_path / "steps.csv", index=False)
    res = CliRunner().invoke(calibrate_cli(), ["fit", str(tmp_path / "steps.csv"), "--sku", "h100-sxm", "--model",
                                               "llama-3.1-8b", "--profiles-dir", str(tmp_path / "hp"), *flags])
    assert res.exit_code == 2 and message in res.output and not (tmp_path / "hp").exists()


def test_a_fit_outside_a_git_checkout_writes_its_profile(tmp_path, monkeypatch):
    """An installed wheel has no git checkout to name: the profile's provenance says so instead of the fit failing
    with a validation traceback (git_sha None)."""
    import simfactory.calibration.profile_writer as pw

    monkeypatch.setattr(pw, "git_sha", lambda: None)
    steps = tmp_path / "s.csv"
    rows = ["kind,prefill_tokens,decode_seqs,kv_tokens_read,prefill_attn_pairs,step_s"]
    rows += [f"decode,0,{b},{b * 100},0,{0.005 + b * 1e-4}" for b in range(1, 40)]
    rows += [f"prefill,{t},0,0,{t * (t + 1) / 2},{0.005 + t * 2e-5}" for t in (128, 256, 512, 1024)]
    steps.write_text("\n".join(rows) + "\n")
    res = CliRunner().invoke(calibrate_cli(), ["fit", str(steps), "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                                "--fit", "linear", "--profiles-dir", str(tmp_path / "hp")])
    assert res.exit_code == 0, res.output
    written = list((tmp_path / "hp").rglob("*.yaml"))
    assert written and "not a git checkout" in written[0].read_text()


def _fitted_profile(tmp_path):
    """A linear step fit written by `calibrate fit` into tmp_path/hp: its command line, the profiles folder, the
    profile, its entry and the fit (to write again as another kind)."""
    from simfactory.config.loader import load_model_file
    from simfactory.config.profile import StepTimeEntry

    steps = measure(FakeBackend(), design(QUICK, mixed_points=6), repetitions=6, warmup=0)
    steps.to_csv(tmp_path / "steps.csv", index=False)
    hp = tmp_path / "hp"
    args = ["fit", str(tmp_path / "steps.csv"), "--sku", "h100-sxm", "--model", "llama-3.1-8b", "--fit", "linear",
            "--profiles-dir", str(hp)]
    assert CliRunner().invoke(calibrate_cli(), args).exit_code == 0
    (target,) = (hp / "h100-sxm").glob("*.yaml")
    return args, hp, target, load_model_file(StepTimeEntry, target), fit_step_time(steps, "linear")


def test_a_profile_refit_of_another_kind_takes_its_old_tables_along(tmp_path):
    """A step fit writes X.steps.csv beside X.yaml; a later fit of another kind (a batch table) wrote
    X.batch-fit.csv and left X.steps.csv, which no profile named any more, so the next step fit was refused
    ("not the file the profile beside it names"). The tables a replaced profile named, unchanged, go with it."""
    import dataclasses

    from simfactory.calibration.profile_writer import write_profile

    args, hp, target, entry, step_fit = _fitted_profile(tmp_path)
    folder = hp / "h100-sxm"
    write_profile(entry, dataclasses.replace(step_fit, kind="batch linear"), hp, "h100-sxm")
    assert {p.name for p in folder.iterdir()} == {target.name, target.name.replace(".yaml", ".batch-fit.csv")}
    mine = folder / target.name.replace(".yaml", ".steps.csv")
    mine.write_text("my own table\n")  # not one the profile names: stays, and refuses the next fit
    write_profile(entry, dataclasses.replace(step_fit, kind="batch linear"), hp, "h100-sxm")
    assert mine.read_text() == "my own table\n"
    mine.unlink()
    assert CliRunner().invoke(calibrate_cli(), args).exit_code == 0  # refused before: the stale steps.csv
    assert {p.name for p in folder.iterdir()} == {target.name.replace(".yaml", ".steps.csv"), target.name}


@pytest.mark.parametrize("cut_after", [1, 2, 3])
def test_a_profile_write_cut_anywhere_leaves_every_table_named(tmp_path, monkeypatch, cut_after):
    """kill -9 between replacing a profile's CSV and its YAML left a CSV the profile did not name, and every later
    fit was refused ('not the file the profile beside it names'). Cut after any rename, the next fit goes through."""
    import dataclasses

    import simfactory.calibration.profile_writer as writer
    from simfactory.calibration.profile_writer import write_profile

    args, hp, target, entry, step_fit = _fitted_profile(tmp_path)
    real, calls = os.replace, []

    def cut(src, dst):
        real(src, dst)
        if Path(dst).parent != hp / "h100-sxm":
            return  # a marker of the draft folder
        calls.append(dst)
        if len(calls) == cut_after:
            raise KeyboardInterrupt  # as kill -9 right after this rename (the draft folder goes, as a kill leaves it)

    monkeypatch.setattr(writer.os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        write_profile(entry, dataclasses.replace(step_fit, kind="batch linear", predictions=step_fit.predictions.head(3)),
                      hp, "h100-sxm")
    monkeypatch.undo()
    res = CliRunner().invoke(calibrate_cli(), args)
    assert res.exit_code == 0, res.output
    assert {p.name for p in (hp / "h100-sxm").iterdir()} == {target.name, target.name.replace(".yaml", ".steps.csv")}
