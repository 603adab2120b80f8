"""TensorRT-LLM's FP8 lane in the kernel tables: static activation scales (calibrate/kernels/derive.py,
STATIC_FP8_LAUNCH_SAVING). The SDK times trtllm's per-tensor FP8 GEMMs with a dynamic quantization (~7 us of
launch-bound kernels a GEMM on H100); ModelOpt checkpoints, which TensorRT-LLM and NIM run, carry static scales."""

from __future__ import annotations

import pytest

from simfactory.hardware.kernel_file import read_doc
from simfactory.hardware.kernels import load_kernel_tables
from simfactory.paths import PROFILES_DIR

GEMMS_PER_LAYER = 4  # QKV, output projection, gate/up, down
DENSE_SKUS = ("h100-sxm", "h200", "b200", "l40s")  # the files with FP8 dense records


def _doc(sku: str) -> dict:
    return read_doc(PROFILES_DIR / "kernels" / f"{sku}.json.gz")


@pytest.mark.parametrize("sku", DENSE_SKUS)
def test_only_tensorrt_llm_fp8_records_carry_the_static_saving(sku):
    doc = _doc(sku)
    assert doc["static_fp8_launch_saving"] == ["trtllm"]
    dense = [r for r in doc["linear"] if "prefill_rel_diff_from_sdk" not in r]  # MoE layouts (derive_moe.py) have it
    assert any(r["framework"] == "trtllm" and r["dtype"] == "fp8" for r in dense)
    for r in dense:
        if r["framework"] == "trtllm" and r["dtype"] == "fp8":
            # what is left of the one-token step is the static lane's own (weight reads), not a sliver
            assert r["static_fp8_saving_ms"] > 0 and r["linear_ms"][0] > 0.25 * r["static_fp8_saving_ms"], \
                (r["model"], r["tp"])
        else:
            assert "static_fp8_saving_ms" not in r, (r["model"], r["framework"], r["dtype"])


@pytest.mark.parametrize("model", ["llama-3.1-8b", "llama-3.1-70b"])
def test_the_saving_is_the_dynamic_quantization_launch_cost_of_every_gemm(model):
    """~7 us a GEMM on H100 (the SDK's trtllm compute-scale table at 1-16 tokens), whatever the TP: each rank runs
    every layer's four GEMMs."""
    doc = _doc("h100-sxm")
    layers = doc["models"][model]["layers"]
    recs = [r for r in doc["linear"] if r["model"] == model and r["framework"] == "trtllm" and r["dtype"] == "fp8"]
    assert recs
    for r in recs:
        per_gemm_us = r["static_fp8_saving_ms"] * 1e3 / (GEMMS_PER_LAYER * layers)
        assert 5.0 < per_gemm_us < 10.0, (r["tp"], per_gemm_us)


def test_small_batch_fp8_gemms_agree_across_engines_once_static():
    """At one token the linear layers are weight reads: trtllm's FP8 lane (static) lands with vLLM's and SGLang's
    (which never carried that cost) instead of 27% above them, and stays below its own BF16 lane."""
    t = load_kernel_tables("h100-sxm")
    assert t is not None
    lin = {fw: t.linear[("llama-3.1-8b", fw, 1, 1, 1, "fp8")]["linear_ms"][0] for fw in ("trtllm", "vllm", "sglang")}
    others = (lin["vllm"] + lin["sglang"]) / 2
    assert lin["trtllm"] == pytest.approx(others, rel=0.03)
    assert lin["trtllm"] < t.linear[("llama-3.1-8b", "trtllm", 1, 1, 1, "bf16")]["linear_ms"][0] * 0.75


MIXTRAL_FP8_SKUS = ("h100-sxm", "h200", "b200", "b300")  # the files holding Mixtral-8x7B's per-tensor FP8 layouts


@pytest.mark.parametrize("sku", MIXTRAL_FP8_SKUS)
def test_moe_layouts_carry_it_only_where_the_gemms_are_per_tensor_fp8(sku):
    """Mixtral-8x7B's FP8 (per-tensor scales) on TensorRT-LLM; not DeepSeek's, Kimi's or Qwen3's block-scaled FP8,
    not BF16; and the file's notice says so."""
    doc = _doc(sku)
    assert doc["static_fp8_launch_saving"] == ["trtllm"] and "static-scale" in doc["attribution"]
    moe = [r for r in doc["linear"] if "prefill_rel_diff_from_sdk" in r]
    mixtral = [r for r in moe if (r["model"], r["framework"], r["dtype"]) == ("mixtral-8x7b", "trtllm", "fp8")]
    assert mixtral and all("static_fp8_saving_ms" in r for r in mixtral)
    assert all("static_fp8_saving_ms" not in r for r in moe if r not in mixtral)
    layers = doc["models"]["mixtral-8x7b"]["layers"]
    for r in mixtral:  # attention projections only (2 GEMMs a layer; the experts are MoE ops)
        assert 5.0 < r["static_fp8_saving_ms"] * 1e3 / (2 * layers) < 10.0
        assert r["linear_ms"][0] > 0.25 * r["static_fp8_saving_ms"]
