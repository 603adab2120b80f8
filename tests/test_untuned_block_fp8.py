"""SGLang 0.5.6-0.5.7 on MI300X ran block-FP8 linear layers on aiter's Triton GEMM with one generic configuration
(engines.yaml sglang-0.5 kernels.untuned_block_fp8_gemm): a call runs 128 x 128 output tiles, one workgroup each,
looping over K in 128-wide steps, so a decode-size call takes K / 128 steps however few bytes it reads. The roofline
charges what that exceeds its own price of each of an MLA layer's three such GEMMs by."""

from __future__ import annotations

import math

import pytest
from conftest import resolved_deployment, shipped_engines

from simfactory.hardware.step_time import StepLoad, UntunedGemms, mla_block_fp8_gemm_shapes
from simfactory.resolve.step_time import untuned_gemms

MI300X_ENGINE = shipped_engines()["sglang-0.5"].kernels.untuned_block_fp8_gemm


def test_deepseeks_three_dense_gemms_are_the_shapes_aiter_tuned_later():
    """At TP8: the fused q_a/kv_a down-projection 2112 x 7168, q_b 3072 x 1536, o_proj 7168 x 2048 (aiter#2024's)."""
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    assert d.step_time.untuned_gemms.shapes == ((2112, 7168), (3072, 1536), (7168, 2048))
    assert d.step_time.untuned_gemms.layers == 61


def test_a_small_call_takes_its_k_steps_and_a_large_one_its_waves():
    u = UntunedGemms(((2112, 7168),), 61, 128, 2.2e-6, 304)
    assert u.call_s(1, 2112, 7168) == pytest.approx(56 * 2.2e-6)
    assert u.call_s(128, 2112, 7168) == u.call_s(1, 2112, 7168)  # one M tile: the same 17 workgroups
    # 8,192 tokens: 64 M tiles x 17 N tiles = 1,088 workgroups, four waves of 304
    assert u.call_s(8192, 2112, 7168) == pytest.approx(4 * 56 * 2.2e-6)


@pytest.mark.parametrize("tokens", [1, 16, 256, 8192])
def test_the_step_pays_what_each_call_exceeds_the_rooflines_price_by(tokens):
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    st, u = d.step_time, d.step_time.untuned_gemms
    expected = 0.0
    for n, k in u.shapes:
        untuned = math.ceil(math.ceil(tokens / 128) * math.ceil(n / 128) / 304) * math.ceil(k / 128) * 2.2e-6
        priced = max(2 * (tokens + st.factors.gemm_ramp_tokens) * n * k / st.peak_flops, n * k / st.bandwidth)
        expected += max(0.0, untuned - priced - st.factors.gemm_latency_s)
    assert st.untuned_extra_s(tokens) == pytest.approx(61 * expected, rel=1e-12)
    plain = resolved_deployment("sglang", "mi300x", "deepseek-r1", 8, "fp8").step_time  # 0.5.10+: tuned
    assert st.linear_s(tokens) - plain.linear_s(tokens) == pytest.approx(st.untuned_extra_s(tokens), rel=1e-9)
    load = StepLoad(0, tokens, tokens * 1000.0, 0.0)
    assert st.step_s(load) > plain.step_s(load)


def test_a_one_token_step_pays_about_nine_ms_as_the_label_says():
    """Decode of DeepSeek on 8 x MI300X: ~123 + ~26 + ~35 us of K steps a layer against ~40 us priced."""
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    extra_ms = d.step_time.untuned_extra_s(1) * 1e3
    assert 8.0 < extra_ms < 10.0
    assert f"untuned kernel: +{extra_ms:.3g} ms a one-token step" in d.step_time_source


@pytest.mark.parametrize(("engine", "sku", "model", "dtype"), [
    ("sglang", "mi300x", "deepseek-r1", "fp8"),  # 0.5.10 and later: aiter's tuned configurations
    ("vllm", "mi300x", "deepseek-r1", "fp8"),
    ("sglang-0.5", "mi300x", "qwen3-235b-a22b", "fp8"),  # not an MLA model: not covered
])
def test_other_engines_skus_and_models_are_not_charged(engine, sku, model, dtype):
    assert resolved_deployment(engine, sku, model, 8, dtype).step_time.untuned_gemms is None


def test_only_the_skus_it_names_are_charged():
    """H200 runs its own kernels (and its tables); the preset names gfx942's MI300X and MI325X only."""
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    preset = shipped_engines()["sglang-0.5"]
    assert untuned_gemms(d.config, "mi325x", d.arch, preset) == d.step_time.untuned_gemms
    assert untuned_gemms(d.config, "h200", d.arch, preset) is None
    assert untuned_gemms(d.config.model_copy(update={"dtype": "fp4"}), "mi300x", d.arch, preset) is None


def test_without_a_q_latent_q_and_the_kv_latent_are_projected_apart():
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    arch = d.arch.model_copy(update={"q_lora_rank": None})
    assert mla_block_fp8_gemm_shapes(arch, 8) == ((3072, 7168), (576, 7168), (7168, 2048))
    assert mla_block_fp8_gemm_shapes(d.arch, 2)[1:] == ((12288, 1536), (7168, 8192))  # split over an attention group


def test_the_preset_names_its_sources():
    assert MI300X_ENGINE.skus == ["mi300x", "mi325x"] and MI300X_ENGINE.compute_units == 304
    assert "https://github.com/ROCm/aiter/pull/1930" in MI300X_ENGINE.source
    assert "https://github.com/sgl-project/sglang/pull/13617" in MI300X_ENGINE.source
