"""vLLM 0.11 on FlashAttention 2 (A100, L40S): a step that prefills and decodes runs one varlen launch whose longest
query is the prompt chunk, and FlashAttention 2 packs a KV head's query heads (and splits the KV) only for
decode-only launches, so each query head reads its KV head apart: decode attention costs the rank's query heads per
KV head times the tables' decode-only step (engines.yaml vllm-0.11 kernels.unpacked_gqa_mixed_steps)."""

from __future__ import annotations

import pickle

import pytest
from conftest import resolved_deployment

from simfactory.hardware.kernels import kernel_step_time
from simfactory.hardware.step_time import StepLoad
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import load_models
from simfactory.resolve.step_time import unpacked_gqa_scale

MODELS = load_models([PROFILES_DIR])


def tables(scale: float):
    m = kernel_step_time(MODELS["qwen3-14b"], "qwen3-14b", "a100-80gb", "vllm", None, "bf16", "bf16", 1, 0.001,
                         mixed_decode_attn_scale=scale)
    assert m is not None
    return m


def test_only_decode_attention_in_a_step_that_also_prefills_is_scaled():
    plain, unpacked = tables(1.0), tables(5.0)
    decode = StepLoad(0, 128, 128 * 2048.0, 0.0)
    assert unpacked.step_s(decode) == plain.step_s(decode)  # decode-only steps: the tables' (packed) kernel
    assert unpacked.decode_affine(128, 128 * 2048.0, 128.0, 50) == plain.decode_affine(128, 128 * 2048.0, 128.0, 50)
    prefill = StepLoad(2048, 0, 0.0, 2048 * 2049 / 2)
    assert unpacked.step_s(prefill) == plain.step_s(prefill)  # no decodes, nothing to scale
    mixed = StepLoad(1920, 128, 128 * 2048.0, 1920 * 1921 / 2)
    attention = plain.breakdown_s(mixed)["decode_attention"]
    assert attention > 0
    assert unpacked.step_s(mixed) == pytest.approx(plain.step_s(mixed) + 4 * attention, rel=1e-12)
    parts = unpacked.breakdown_s(mixed)
    assert parts["decode_attention"] == pytest.approx(5 * attention) and sum(parts.values()) == pytest.approx(
        unpacked.step_s(mixed))
    assert pickle.loads(pickle.dumps(unpacked)).step_s(mixed) == unpacked.step_s(mixed)
    assert "x5 (each query head reads its KV head apart)" in unpacked.label
    with pytest.raises(ValueError, match="mixed_decode_attn_scale"):
        tables(float("nan"))


@pytest.mark.parametrize("engine,sku,model,tp,scale", [
    ("vllm-0.11", "a100-80gb", "qwen3-14b", 1, 5.0),  # 40 query heads over 8 KV heads
    ("vllm-0.11", "a100-80gb", "qwen3-32b", 1, 8.0),
    ("vllm-0.11", "a100-80gb", "llama-3.1-70b", 2, 8.0),  # 32 over 4 a rank
    ("vllm-0.11", "a100-80gb", "qwen3-235b-a22b", 8, 8.0),  # 4 KV heads over 8 ranks: one replicated, 8 query heads
    ("vllm-0.11", "h100-sxm", "qwen3-14b", 1, 1.0),  # FlashAttention 3 packs them
    ("vllm", "a100-80gb", "qwen3-14b", 1, 5.0),  # later releases too (v0.13.0, v0.24.0: the same single launch)
    ("vllm", "l40s", "qwen3-8b", 1, 4.0),  # Ada: FlashAttention 2 as well; 32 over 8
    ("vllm-0.6", "a100-80gb", "qwen3-14b", 1, 1.0),  # V0: prompts and decodes in separate launches
    ("sglang-0.5", "a100-80gb", "qwen3-14b", 1, 1.0),  # FlashInfer
])
def test_the_factor_is_the_ranks_query_heads_per_kv_head_where_the_engine_runs_that_kernel(engine, sku, model, tp,
                                                                                            scale):
    dep = resolved_deployment(engine, sku, model, tp, "bf16")
    inner = getattr(dep.step_time, "inner", dep.step_time)
    assert inner.mixed_decode_attn_scale == scale
    assert ("each query head reads its KV head apart" in dep.step_time_source) == (scale != 1.0)


def test_no_preset_or_unlisted_sku_means_no_factor():
    assert unpacked_gqa_scale(None, "a100-80gb", MODELS["qwen3-14b"], 1) == 1.0
