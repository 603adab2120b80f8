"""Accelerators beyond GPUs (issue #31): TPU v5e / v6e, Trainium2, Inferentia2 and a Xeon socket. Their profiles carry
sourced, dated spec sheets whose numbers obey the vendors' own arithmetic; their price rows are the instance rates per
chip (or socket) they quote; a short simulation completes on each; an ASIC refuses a model outside its
supported_models with the existing message; the shipped scenarios run from the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.config.loader import load_model_file
from simfactory.config.prices import PriceBook
from simfactory.config.profile import HardwareProfile, ModelCatalog
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.memory import device_memory_bytes
from simfactory.hardware.step_time import RooflineModel, StepLoad
from simfactory.metrics.finance import scorecard_inputs
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR
from simfactory.resolve import load_and_resolve

GIB = 2**30
URL = re.compile(r"https?://\S+")
# sku -> (kind, provider, region of its price row)
NEW_SKUS = {
    "tpu-v5e": ("asic", "gcp", "us-central1"),
    "tpu-v6e": ("asic", "gcp", "us-central1"),
    "trainium2": ("asic", "aws", "us-east-2"),
    "inferentia2": ("asic", "aws", "us-east-1"),
    "xeon-8488c": ("cpu", "aws", "us-east-1"),
}
# (sku) -> (instance or slice rate / its chips or sockets, the instance rate the row's source must quote)
LIST_PRICES = {
    "tpu-v5e": (307.20 / 256, "$307.20"),   # tpu-v5litepod-256, us-central1
    "tpu-v6e": (21.60 / 8, "$21.60"),       # tpu-v6e-8, us-central1
    "trainium2": (35.76 / 16, "$35.76"),    # trn2.48xlarge, us-east-2
    "inferentia2": (12.98127 / 12, "$12.98127"),  # inf2.48xlarge, us-east-1
    "xeon-8488c": (8.568 / 2, "$8.568"),    # c7i.metal-48xl (two sockets), us-east-1; c7i.metal-24xl is one
}
MODELS = {m.id: m for m in load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml").models}


def _profile(sku: str) -> HardwareProfile:
    return load_model_file(HardwareProfile, PROFILES_DIR / f"{sku}.yaml")


def _book() -> PriceBook:
    return load_model_file(PriceBook, PROFILES_DIR / "prices.yaml")


def _doc(sku: str, model: str = "llama-3.2-1b", count: int = 2, dtype: str = "bf16", **pool) -> dict:
    deployment = {"name": "d", "model": model, "pool": "p", "replicas": count, "tp": 1, "dtype": dtype,
                  "engine": "vllm", "max_num_seqs": 16, "max_num_batched_tokens": 2048}
    return {
        "name": "beyond-gpus", "seed": 3,
        "pools": [{"name": "p", "sku": sku, "count": count, "location": "cloud", **pool}],
        "deployments": [deployment],
        "traffic": {"arrival": {"process": "poisson", "rate_per_s": 2.0},
                    "classes": [{"name": "c", "target": "d", "input_tokens": {"kind": "fixed", "value": 256},
                                 "output_tokens": {"kind": "fixed", "value": 32}}]},
        "sim": {"horizon_s": 20, "warmup_s": 2, "timeline_resolution_s": 1.0},
    }


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# -- profiles ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sku", NEW_SKUS)
def test_profile_validates_with_sourced_dated_blocks_and_low_confidence_priors(sku):
    p = _profile(sku)
    assert p.sku == sku and p.kind == NEW_SKUS[sku][0]
    blocks = [p.spec, p.price, p.roofline] + ([p.spec.memory] if p.spec.memory else [])
    for block in blocks:
        assert URL.search(block.source), f"{sku}: a block without a source URL"
        assert str(block.as_of).strip() and "../shared" not in block.source
    # the efficiency factors are priors, and say so
    assert "assumption, not fitted" in p.roofline.source and "confidence: low" in p.roofline.source
    # no public per-chip power for any of them: the figure is marked as a judgement
    assert "tdp_w" in p.spec.source and "confidence: low" in p.spec.source
    assert p.price.server_usd_per_accel is None  # none of these is sold to own


def test_device_memory_is_what_the_vendor_states_in_binary_units():
    assert _profile("tpu-v5e").spec.memory.total_bytes == 16 * GIB
    assert _profile("trainium2").spec.memory.total_bytes == 96 * GIB
    assert _profile("inferentia2").spec.memory.total_bytes == 32 * GIB
    assert _profile("xeon-8488c").spec.memory.total_bytes == 192 * GIB  # c7i.metal-24xl: one socket's DDR5
    # v6e publishes "32 GB"; its runtime reports 33,550,237,696 bytes per chip (31.25 GiB): between the decimal and
    # the binary reading, and that is what the accounting uses
    v6e = _profile("tpu-v6e").spec
    assert v6e.memory is not None and device_memory_bytes(v6e)[0] == 33_550_237_696
    assert 32e9 < v6e.memory.total_bytes < 32 * GIB
    for sku in ("tpu-v5e", "trainium2", "inferentia2", "xeon-8488c"):
        spec = _profile(sku).spec  # the spec sheet's "16 GB" / "96 GiB" is binary: the device has the GiB figure
        assert spec.memory.total_bytes == spec.hbm_gb * GIB > spec.hbm_gb * 1e9


def test_peak_rates_follow_the_vendors_arithmetic():
    v5e, v6e = _profile("tpu-v5e").spec, _profile("tpu-v6e").spec
    assert v6e.bf16_tflops > v5e.bf16_tflops and v6e.hbm_tb_s > v5e.hbm_tb_s
    assert v6e.bf16_tflops / v5e.bf16_tflops == pytest.approx(4.7, rel=0.01)  # Google's "4.7x peak compute per chip"
    for spec in (v5e, v6e):
        assert spec.tflops("int8") == pytest.approx(2 * spec.bf16_tflops, rel=0.01)
        assert spec.tflops("fp8") == spec.bf16_tflops  # no fp8 units: the bf16 rate
    trn2, inf2 = _profile("trainium2").spec, _profile("inferentia2").spec
    assert trn2.tflops("fp8") == pytest.approx(2 * trn2.bf16_tflops, rel=0.03)
    assert inf2.tflops("fp8") == inf2.bf16_tflops and inf2.tflops("int8") == 2 * inf2.bf16_tflops
    # a Xeon socket: 48 cores x 1024 BF16 (2048 INT8) AMX operations per cycle x 2.4 GHz
    cpu = _profile("xeon-8488c").spec
    assert cpu.bf16_tflops == pytest.approx(48 * 1024 * 2.4e9 / 1e12, rel=1e-4)
    assert cpu.tflops("int8") == pytest.approx(48 * 2048 * 2.4e9 / 1e12, rel=1e-4)


def test_cpu_memory_bandwidth_is_eight_ddr5_channels_far_below_any_hbm():
    cpu = _profile("xeon-8488c").spec
    assert cpu.hbm_tb_s * 1e12 == pytest.approx(8 * 4800e6 * 8)  # channels x transfers/s x 8 bytes
    others = [load_model_file(HardwareProfile, p).spec.hbm_tb_s for p in PROFILES_DIR.glob("*.yaml")
              if p.stem not in ("models", "prices", "engines", "xeon-8488c")]
    assert len(others) >= 16
    assert cpu.hbm_tb_s < min(others) / 2  # half the slowest accelerator's (Inferentia2 / TPU v5e)
    assert cpu.hbm_tb_s < _profile("h100-sxm").spec.hbm_tb_s / 10


@pytest.mark.parametrize("sku", NEW_SKUS)
def test_batch_one_decode_is_overhead_plus_weights_over_derated_bandwidth(sku):
    """A batch-1 decode of Llama-3.2-1B is memory-bound on all five: overhead + weight bytes / (bandwidth x
    memory_efficiency), plus the one token's K/V read."""
    p = _profile(sku)
    arch = MODELS["llama-3.2-1b"]
    m = RooflineModel(arch, p.spec, p.roofline, "bf16", "bf16", 1)
    bandwidth = p.spec.hbm_tb_s * 1e12 * p.roofline.memory_efficiency
    expected = p.roofline.step_overhead_s + (arch.weight_bytes("bf16") + arch.kv_bytes_per_token("bf16")) / bandwidth
    assert m.step_s(StepLoad(decode_seqs=1, kv_tokens_read=1)) == pytest.approx(expected, rel=1e-3)


# -- prices ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sku", NEW_SKUS)
def test_price_row_is_the_quoted_instance_rate_per_chip_and_the_profile_default(sku):
    book = _book()
    _, provider, region = NEW_SKUS[sku]
    row = book.cloud_price(provider, sku, "on_demand", region)
    per_device, quoted = LIST_PRICES[sku]
    assert row is not None and row.region == region
    assert row.usd_per_accel_hour == pytest.approx(per_device, abs=5e-4)
    assert quoted in row.source and URL.search(row.source) and "vailability" in row.source
    price = _profile(sku).price
    assert price.cloud_usd_per_accel_hour == pytest.approx(book.on_demand_offers(sku)[0].usd_per_accel_hour)
    assert book.row_priced_at(sku, price.cloud_usd_per_accel_hour) is row
    assert "names no provider" in price.source and provider in price.source.lower()


def test_inferentia2_keeps_the_single_chip_rate_as_a_labelled_alternative_and_a_committed_row():
    book = _book()
    rows = [c for c in book.cloud if c.sku == "inferentia2"]
    assert [c.pricing for c in rows] == ["on_demand", "on_demand", "reserved_1y"]
    assert "not the default" in rows[1].source and rows[1].usd_per_accel_hour < rows[0].usd_per_accel_hour
    assert book.cloud_price("aws", "inferentia2", "on_demand", "us-east-1") is rows[0]
    assert rows[2].confidence == "low" and "committed" in rows[2].source
    assert rows[2].usd_per_accel_hour == pytest.approx(8.1782 / 12, abs=5e-4)


# -- simulation ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sku", NEW_SKUS)
def test_short_simulation_completes_and_is_priced_at_the_book_row(sku, tmp_path):
    _, provider, region = NEW_SKUS[sku]
    rs = load_and_resolve(_write(tmp_path, _doc(sku, provider=provider, region=region, pricing="on_demand")))
    d = rs.deployments[0]
    assert d.profile.sku == sku and d.kv_capacity_tokens > 0
    assert isinstance(d.step_time, RooflineModel) and "SKU default factors" in d.step_time_source
    s = run(rs).summary
    assert s["outcomes"]["completed"] > 0
    price = next(a for a in s["finance"]["assumptions"] if a["name"] == f"p: cloud price ({provider} on_demand)")
    assert price["value"] == pytest.approx(LIST_PRICES[sku][0], abs=5e-4)
    assert s["cost"]["usd_per_hour"] == pytest.approx(2 * price["value"])


def test_a_cpu_socket_decodes_slower_than_a_tpu_chip(tmp_path):
    """Same load, same model: TPOT follows the memory bandwidth (0.31 TB/s DDR5 vs 1.64 TB/s HBM)."""
    tpot = {}
    for sku in ("xeon-8488c", "tpu-v6e"):
        tpot[sku] = run(load_and_resolve(_write(tmp_path, _doc(sku)))).summary["latency_s"]["tpot"]["p50"]
    assert tpot["xeon-8488c"] > 1.5 * tpot["tpu-v6e"]


@pytest.mark.parametrize(("sku", "kind"), [("xeon-8488c", "gpu"), ("tpu-v5e", "asic")])
def test_lock_in_rating_treats_a_cpu_pool_as_open_and_a_tpu_pool_as_asic(sku, kind, tmp_path):
    rs = load_and_resolve(_write(tmp_path, _doc(sku)))
    card = scorecard_inputs(rs)
    assert card["accelerator_kind"] == kind
    assert card["ratings"]["lock_in_freedom"] == rs.price_book.scorecard.lock_in_freedom[kind]


# -- ASIC model support ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sku", "model"), [("tpu-v6e", "gpt-oss-20b"), ("tpu-v5e", "deepseek-v3"),
                                            ("trainium2", "kimi-k2"), ("inferentia2", "llama-3.1-405b")])
def test_an_unsupported_model_on_an_asic_is_refused_with_the_existing_message(sku, model, tmp_path):
    path = _write(tmp_path, _doc(sku, model=model))
    with pytest.raises((InputError, InputErrors)) as info:
        load_and_resolve(path)
    e = info.value
    errs = [str(x) for x in (e.errors if isinstance(e, InputErrors) else [e])]
    supported = ", ".join(_profile(sku).supported_models)
    assert errs == [f"{path}: deployments[0].model: {sku} cannot run {model!r} (supported: {supported})"]


@pytest.mark.parametrize("sku", NEW_SKUS)
def test_fp4_is_refused_on_each_as_no_fp4_rate_is_published(sku, tmp_path):
    path = _write(tmp_path, _doc(sku, dtype="fp4"))
    with pytest.raises((InputError, InputErrors)) as info:
        load_and_resolve(path)
    assert f"{sku} has no FP4 tensor cores" in str(info.value) and "deployments[0].dtype" in str(info.value)


def test_the_cpu_runs_any_catalogued_model_that_fits():
    assert _profile("xeon-8488c").supported_models is None
    assert "llama-3.1-405b" in _profile("trainium2").supported_models  # NxDI: "requires Trn2"
    assert "llama-3.1-405b" not in _profile("inferentia2").supported_models


# -- CLI -------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cpu-small-model", "tpu-v6e-chat"])
def test_shipped_scenario_runs_from_the_cli(name, tmp_path):
    out = tmp_path / name
    res = CliRunner().invoke(app, ["run", str(SCENARIOS_DIR / f"{name}.yaml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["scenario"] == name and s["outcomes"]["completed"] > 0
    assert s["cost"]["usd_per_hour"] > 0


def test_cli_exits_2_on_a_model_the_tpu_cannot_run(tmp_path):
    res = CliRunner().invoke(app, ["validate", str(_write(tmp_path, _doc("tpu-v6e", model="gpt-oss-20b")))])
    assert res.exit_code == 2
    assert "tpu-v6e cannot run 'gpt-oss-20b'" in res.output
