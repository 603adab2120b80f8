"""TensorRT-engine builds' tensor-parallel all-reduce (EngineKernels.allreduce_latency): where the kernel tables'
one-token all-reduce (TensorRT-LLM 1.3's, in CUDA graphs) is faster than the engine's, every all-reduce of a step
costs the difference more, at every token count; a latency, so no factor scales it and fast-forward stays exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import resolved_deployment, shipped_engines

from simfactory.calibration.sweep_fit import _kernels_family
from simfactory.config.loader import load_model_file
from simfactory.config.profile import EngineCatalog
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.kernels import load_kernel_tables
from simfactory.hardware.step_time import StepLoad

ROOT = Path(__file__).resolve().parents[1]
LOADS = (StepLoad(0, 1, 500.0, 0.0), StepLoad(0, 64, 64 * 1500.0, 0.0), StepLoad(2048, 0, 0.0, 2048 * 1024.5),
         StepLoad(700, 31, 31 * 900.0, 700 * 350.5))
PLUGIN_US = {2: 8.6, 4: 8.7, 8: 10.2}  # engines.yaml, tensorrt-llm-0


def _table_one_token_allreduce_s(sku: str, model: str, tp: int, dtype: str, layers: int) -> float:
    tables = load_kernel_tables(sku)
    assert tables is not None
    return tables.linear[(model, "trtllm", tp, 1, 1, dtype)]["allreduce_ms"][0] * 1e-3 / (2 * layers)


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_each_all_reduce_costs_the_engines_shortfall_more_at_every_load(tp):
    engine0 = resolved_deployment("tensorrt-llm-0", "h100-sxm", "llama-3.1-70b", tp, "fp8")
    engine1 = resolved_deployment("tensorrt-llm", "h100-sxm", "llama-3.1-70b", tp, "fp8")  # the tables' all-reduce
    per_call = PLUGIN_US[tp] * 1e-6 - _table_one_token_allreduce_s("h100-sxm", "llama-3.1-70b", tp, "fp8", 80)
    assert per_call > 4e-6  # the tables' 1.3 all-reduce is ~3 us, the plugin's 8.6-10.2 us
    for load in LOADS:
        diff = engine0.step_time.step_s(load) - engine1.step_time.step_s(load)
        assert diff == pytest.approx(2 * 80 * per_call, rel=1e-9)
        parts = engine0.step_time.breakdown_s(load)
        assert parts["allreduce"] - engine1.step_time.breakdown_s(load)["allreduce"] == pytest.approx(diff, rel=1e-9)
        assert sum(parts.values()) == pytest.approx(engine0.step_time.step_s(load), rel=1e-12)
    assert f"the engine's all-reduce, {PLUGIN_US[tp]:.3g} us a one-token call: +" in engine0.step_time_source
    assert "the engine's all-reduce" not in engine1.step_time_source


def test_the_largest_tp_key_at_or_below_a_group_applies():
    presets = shipped_engines()
    lat = presets["tensorrt-llm-0"].kernels.allreduce_latency
    assert [lat.at_tp_s(tp) for tp in (1, 2, 3, 4, 6, 8, 16)] == pytest.approx(
        [0.0, 8.6e-6, 8.6e-6, 8.7e-6, 8.7e-6, 10.2e-6, 10.2e-6])


def test_an_empty_step_and_a_step_past_the_tables_last_token_count():
    engine0 = resolved_deployment("tensorrt-llm-0", "h100-sxm", "llama-3.1-70b", 2, "fp8").step_time
    engine1 = resolved_deployment("tensorrt-llm", "h100-sxm", "llama-3.1-70b", 2, "fp8").step_time
    assert engine0.step_s(StepLoad(0, 0, 0.0, 0.0)) == engine0.overhead_s  # no tokens, no all-reduce
    big = StepLoad(100_000, 8, 8 * 2000.0, 100_000 * 50_000.0)  # past the 65,536-token grid: extrapolated
    assert engine0.step_s(big) - engine1.step_s(big) == pytest.approx(engine0.allreduce_extra_s, rel=1e-9)


def test_nim_is_the_tensorrt_engine_preset_with_its_licence():
    presets = shipped_engines()
    nim, zero = presets["nim"], presets["tensorrt-llm-0"]
    assert nim.kernels == zero.kernels and nim.defaults == zero.defaults and nim.memory == zero.memory
    assert nim.licence is not None and zero.licence is None


def test_a_measured_bus_bandwidth_is_the_servers_all_reduce_and_stays():
    """L40S prices TP 4-8 all-reduces from the profile's measured bandwidth (tests/test_measured_allreduce.py): the
    engine's latency does not add to a measurement of the server itself."""
    engine0 = resolved_deployment("tensorrt-llm-0", "l40s", "llama-3.1-70b", 4, "fp8")
    engine1 = resolved_deployment("tensorrt-llm", "l40s", "llama-3.1-70b", 4, "fp8")
    assert engine0.step_time.allreduce_extra_s == 0.0
    for load in LOADS:
        assert engine0.step_time.step_s(load) == engine1.step_time.step_s(load)


def test_fast_forward_stays_exact():
    st = resolved_deployment("tensorrt-llm-0", "h100-sxm", "llama-3.1-70b", 2, "fp8").step_time
    assert st.allreduce_extra_s > 0
    b, kv0, kv_step = 24, 24 * 700.0, 24.0
    a_s, b_s, n = st.decode_affine(b, kv0, kv_step, 400)
    assert n >= 2
    for i in range(n):
        assert a_s + b_s * i == pytest.approx(st.step_s(StepLoad(0, b, kv0 + kv_step * i, 0.0)), rel=1e-12)


def test_a_sweep_fit_keeps_the_engines_all_reduce():
    prior = resolved_deployment("tensorrt-llm-0", "h100-sxm", "llama-3.1-70b", 2, "fp8").step_time
    family = _kernels_family(prior, lambda spec: spec)
    assert family.to_spec(family.x0).allreduce_latency_s == pytest.approx(8.6e-6)


@pytest.mark.parametrize("bad, why", [("{2: 8600.0, 4: 8.7, 8: 10.2}", "less than or equal to 1000"),
                                      ("{1: 8.6, 4: 8.7, 8: 10.2}", "greater than or equal to 2"),
                                      ("{}", "at least 1")])
def test_an_implausible_latency_names_the_file_and_field(tmp_path, bad, why):
    text = (ROOT / "hardware_profiles" / "engines.yaml").read_text()
    good = "        us_by_tp: {2: 8.6, 4: 8.7, 8: 10.2}\n"
    assert good in text
    path = tmp_path / "engines.yaml"
    path.write_text(text.replace(good, f"        us_by_tp: {bad}\n"))
    with pytest.raises((InputError, InputErrors)) as e:
        load_model_file(EngineCatalog, path)
    assert "engines.yaml" in str(e.value) and "allreduce_latency" in str(e.value) and why in str(e.value)
