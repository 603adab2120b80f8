"""Frontier SKUs and FP4 (issue #23): the B300 / GB200 / GB300 / MI325X / MI355X profiles validate and serve a small
scenario; fp4 weights are refused on a SKU without FP4 tensor cores, take 0.5 byte per parameter where they are
accepted, and the roofline runs them at the SKU's fp4_tflops."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.config.loader import load_model_file
from simfactory.config.profile import BYTES_PER_PARAM, HardwareProfile, ModelCatalog
from simfactory.errors import InputError, InputErrors
from simfactory.hardware import memory
from simfactory.hardware.step_time import RooflineModel
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import load_and_resolve

NEW_SKUS = ("b300", "gb200", "gb300", "mi325x", "mi355x")
FP4_SKUS = {"b200": 9000, "b300": 14000, "gb200": 10000, "gb300": 15000, "mi355x": 10000}
URL = re.compile(r"https?://\S+")


def _profile(sku: str) -> HardwareProfile:
    return load_model_file(HardwareProfile, PROFILES_DIR / f"{sku}.yaml")


def _doc(sku: str, dtype: str = "fp8", location: str = "cloud", **dep) -> dict:
    pool = {"name": "p", "sku": sku, "count": 2, "location": location}
    if location == "cloud":
        pool["cloud_usd_per_accel_hour"] = 5.0  # B300 and MI355X have no sourced default price
    deployment = {"name": "d", "model": "llama-3.1-70b", "pool": "p", "replicas": 1, "tp": 2, "dtype": dtype,
                  "engine": "vllm", **dep}
    return {
        "name": "frontier", "seed": 1, "pools": [pool], "deployments": [deployment],
        "traffic": {"arrival": {"process": "poisson", "rate_per_s": 2.0},
                    "classes": [{"name": "chat", "workload": "chat-sharegpt", "target": "d"}]},
        "sim": {"horizon_s": 20, "warmup_s": 2, "timeline_resolution_s": 1.0},
    }


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.mark.parametrize("sku", NEW_SKUS)
def test_new_profile_validates_with_sourced_dated_numbers(sku):
    p = _profile(sku)
    assert p.sku == sku and p.kind == "gpu"
    for block in (p.spec, p.price, p.roofline):
        assert URL.search(block.source), f"{sku}: a block without a source URL"
        assert str(block.as_of).strip()
    assert "assumption, not fitted" in p.roofline.source
    assert p.spec.hbm_tb_s > 0 and p.spec.bf16_tflops > 0 and p.spec.fp8_tflops and p.spec.tdp_w > 0
    assert p.spec.interconnect_gb_s
    assert p.spec.fp4_tflops == FP4_SKUS.get(sku)


def test_fp4_rates_are_dense_and_above_fp8():
    for sku, fp4 in FP4_SKUS.items():
        spec = _profile(sku).spec
        assert spec.fp4_tflops == fp4 and spec.tflops("fp4") == fp4
        assert spec.fp8_tflops is not None and spec.fp4_tflops >= 2 * spec.fp8_tflops * 0.9


@pytest.mark.parametrize("sku", NEW_SKUS)
def test_small_fp8_scenario_runs_on_each_new_sku(sku, tmp_path):
    rs = load_and_resolve(_write(tmp_path, _doc(sku)))
    d = rs.deployments[0]
    assert d.profile.sku == sku and d.kv_capacity_tokens > 0
    r = run(rs)
    assert r.summary["outcomes"]["completed"] > 0


@pytest.mark.parametrize("sku", ["gb200", "gb300"])
def test_on_prem_pool_of_a_rack_gpu_uses_the_profile_purchase_price(sku, tmp_path):
    load_and_resolve(_write(tmp_path, _doc(sku, location="on_prem")))


def _errors(path: Path) -> list[str]:
    with pytest.raises((InputError, InputErrors)) as info:
        load_and_resolve(path)
    e = info.value
    return [str(x) for x in (e.errors if isinstance(e, InputErrors) else [e])]


def test_fp4_on_h100_is_refused_with_file_field_and_numbers(tmp_path):
    path = _write(tmp_path, _doc("h100-sxm", dtype="fp4"))
    errs = _errors(path)
    assert len(errs) == 1
    assert str(path) in errs[0] and "deployments[0].dtype" in errs[0]
    assert ("h100-sxm has no FP4 tensor cores (spec.fp4_tflops not set; bf16 989, fp8 1979 TFLOPS): "
            "use fp8 or a SKU with FP4") in errs[0]


def test_fp4_kv_cache_on_a_sku_without_fp4_is_refused(tmp_path):
    errs = _errors(_write(tmp_path, _doc("mi325x", dtype="fp8", kv_dtype="fp4")))
    assert len(errs) == 1 and "deployments[0].kv_dtype" in errs[0]
    assert "mi325x has no FP4 tensor cores" in errs[0] and "bf16 1307, fp8 2615 TFLOPS" in errs[0]


def test_cli_exits_2_on_fp4_without_fp4_tensor_cores(tmp_path):
    path = _write(tmp_path, _doc("h100-sxm", dtype="fp4"))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2
    assert "h100-sxm has no FP4 tensor cores" in res.output


def test_fp4_on_b200_is_accepted_at_half_a_byte_per_parameter_on_its_fp4_kernel_tables(tmp_path):
    assert BYTES_PER_PARAM["fp4"] == 0.5
    rs = load_and_resolve(_write(tmp_path, _doc("b200", dtype="fp4")))
    d = rs.deployments[0]
    assert d.arch.weight_bytes("fp4") == pytest.approx(0.5 * d.arch.params_b * 1e9)
    # per device: the fp4 weights (plus the 16-bit embedding / LM head every quantized dtype keeps) over TP
    assert d.memory.weight_bytes_per_device * d.config.tp == pytest.approx(memory.weight_bytes(d.arch, "fp4"))
    fp8 = load_and_resolve(_write(tmp_path, _doc("b200", dtype="fp8"))).deployments[0]
    assert d.memory.weight_bytes_per_device < fp8.memory.weight_bytes_per_device
    # the B200 tables hold NVFP4 linear layers (derive.py) and the fp8 KV cache's attention: measured kernels, the
    # FP4 GEMMs faster than FP8's at a full prefill chunk; on the roofline too (asked for), at fp4_tflops
    assert d.step_time_source.startswith("measured kernels") and "fp4 weights, fp8 KV" in d.step_time_source
    from simfactory.hardware.step_time import StepLoad
    load = StepLoad(8192, 0, 0.0, 8192 * 8193 / 2)
    assert d.step_time.step_s(load) < fp8.step_time.step_s(load)
    doc = _doc("b200", dtype="fp4", step_time_source="roofline")
    roof = load_and_resolve(_write(tmp_path, doc)).deployments[0]
    assert isinstance(roof.step_time, RooflineModel) and roof.step_time.kv_dtype == "fp8"


def test_roofline_compute_uses_fp4_tflops_for_fp4():
    p = _profile("b200")
    cat = load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml")
    arch = next(m for m in cat.models if m.id == "llama-3.1-70b")
    fp4 = RooflineModel(arch, p.spec, p.roofline, "fp4", "fp8", 1)
    fp8 = RooflineModel(arch, p.spec, p.roofline, "fp8", "fp8", 1)
    eff = p.roofline.compute_efficiency
    assert fp4.peak_flops == pytest.approx(9000e12 * eff)
    assert fp8.peak_flops == pytest.approx(4500e12 * eff)
    assert fp4.weight_bytes_read(1) == pytest.approx(fp8.weight_bytes_read(1) / 2)  # weight bytes read per step
    # without fp4 tensor cores the spec falls back (resolve refuses such a deployment before it gets here)
    assert _profile("h100-sxm").spec.tflops("fp4") == _profile("h100-sxm").spec.fp8_tflops
