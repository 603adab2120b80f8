"""An engine release whose kernels ran slower than the tables' release (EngineKernels.release_factor): every kernel
time of a deployment on that preset is scaled, the engine overhead is not, and the run says so. The factor is data
with a source, refused when it is not a plausible ratio."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import resolved_deployment, shipped_engines

from simfactory.config.loader import load_model_file
from simfactory.config.profile import EngineCatalog
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.step_time import StepLoad

ROOT = Path(__file__).resolve().parents[1]
LOADS = (StepLoad(0, 1, 500.0, 0.0), StepLoad(0, 64, 64 * 1500.0, 0.0), StepLoad(2048, 0, 0.0, 2048 * 1024.5),
         StepLoad(700, 31, 31 * 900.0, 700 * 350.5))


def _resolved(engine: str):
    return resolved_deployment(engine, "h100-sxm", "llama-3.1-70b", 4, "fp8")


def test_the_014_preset_scales_every_kernel_time_of_the_0x_preset_and_keeps_its_overhead():
    old, base = _resolved("tensorrt-llm-0.14"), _resolved("tensorrt-llm-0")
    assert old.step_time_source.startswith("measured kernels") and "kernel times x1.1 for that release" in \
        old.step_time_source
    assert "x1.1" not in base.step_time_source
    # the engines' all-reduce latency (EngineKernels.allreduce_latency) is a latency: added after the factor, never
    # scaled by it (tests/test_engine_allreduce.py)
    extra_old, extra_base = old.step_time.allreduce_extra_s, base.step_time.allreduce_extra_s
    for load in LOADS:
        slow, fast = old.step_time.breakdown_s(load), base.step_time.breakdown_s(load)
        assert slow["overhead"] == pytest.approx(fast["overhead"], rel=1e-12)
        kernels = sum(v for k, v in fast.items() if k not in ("overhead", "launch_wait")) - extra_base
        assert old.step_time.step_s(load) - slow["overhead"] - extra_old == pytest.approx(1.10 * kernels, rel=1e-9)
    # otherwise the 0.x preset: its scheduler defaults (no overlap), memory rule and kernel framework
    presets = shipped_engines()
    new, zero = presets["tensorrt-llm-0.14"], presets["tensorrt-llm-0"]
    assert new.defaults == zero.defaults and new.defaults.overlap_schedule is False and new.memory == zero.memory
    assert new.kernels.framework == zero.kernels.framework and zero.kernels.release_factor is None


@pytest.mark.parametrize("factor", [0.1, 3.0, "fast"])
def test_an_implausible_release_factor_names_the_file_and_field(tmp_path, factor):
    text = (ROOT / "hardware_profiles" / "engines.yaml").read_text()
    assert "        factor: 1.10\n" in text
    bad = tmp_path / "engines.yaml"
    bad.write_text(text.replace("        factor: 1.10\n", f"        factor: {factor}\n"))
    with pytest.raises((InputError, InputErrors)) as e:
        load_model_file(EngineCatalog, bad)
    assert "engines.yaml" in str(e.value) and "release_factor" in str(e.value)


def test_a_release_factor_needs_a_source(tmp_path):
    text = (ROOT / "hardware_profiles" / "engines.yaml").read_text()
    start = text.index("      release_factor:\n")
    block_end = text.index("        as_of: 2024-10\n", start)
    bad = tmp_path / "engines.yaml"
    bad.write_text(text[:start] + "      release_factor: {factor: 1.1, as_of: 2024-10}\n"
                   + text[block_end + len("        as_of: 2024-10\n"):])
    with pytest.raises((InputError, InputErrors)) as e:
        load_model_file(EngineCatalog, bad)
    assert "release_factor" in str(e.value) and "source" in str(e.value)


def test_a_sweep_fit_on_the_014_preset_starts_at_its_prior_and_keeps_the_factor():
    """A concurrency-sweep fit varies the overheads and the GEMM multiplier from the preset's prior: its start must
    be that prior (the release factor on every kernel, not only the GEMMs) and the entry it writes keeps the factor."""
    import pandas as pd

    from simfactory.calibration.sweep_fit import SweepSetup, _family

    sweep = pd.DataFrame({"concurrency": [1, 4], "input_tokens": [500, 500], "output_tokens": [200, 200],
                          "itl_s": [0.02, 0.03]})
    setup = SweepSetup("h100-sxm", "llama-3.1-70b", "tensorrt-llm-0.14", "fp8", 4, 256, 2048)
    family = _family(setup, sweep, "kernels")
    start = family.to_spec(family.x0)
    assert start.kernel_scale == pytest.approx(1.10)
    prior = _resolved("tensorrt-llm-0.14").step_time
    fitted = family.to_model(start)
    for load in LOADS:
        assert fitted.step_s(load) == pytest.approx(prior.step_s(load), rel=1e-12)


def test_a_deployment_the_tables_do_not_cover_says_the_factor_is_not_applied():
    d = resolved_deployment("tensorrt-llm-0.14", "mi300x", "llama-3.1-8b", 1, "fp8")  # a SKU with no kernel tables
    assert d.step_time_source.startswith("roofline") and "release factor not applied" in d.step_time_source


def test_a_measured_all_reduce_is_not_scaled_by_the_release_factor():
    """The L40S profile's all-reduce at TP 4 is a measured bus bandwidth, not a kernel time of the tables' release."""
    from simfactory.config.profile import HardwareProfile, ModelCatalog
    from simfactory.hardware.collectives import Links
    from simfactory.hardware.kernels import kernel_step_time

    l40s = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / "l40s.yaml")
    arch = {m.id: m for m in load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models}[
        "llama-3.1-70b"]
    args = (arch, "llama-3.1-70b", "l40s", "trtllm", None, "fp8", "fp8", 4, 0.001)
    plain = kernel_step_time(*args, links=Links.of(l40s.spec))
    slow = kernel_step_time(*args, links=Links.of(l40s.spec), kernel_scale=1.1)
    for load in LOADS:
        a, b = plain.breakdown_s(load), slow.breakdown_s(load)
        assert b["allreduce"] == pytest.approx(a["allreduce"], rel=1e-9) and a["allreduce"] > 0
        assert b["linear"] == pytest.approx(1.1 * a["linear"], rel=1e-9)
