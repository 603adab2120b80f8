"""SGLang 0.5.6-0.5.7 on MI300X ran block-FP8 linear layers on aiter's Triton GEMM with one generic configuration
(engines.yaml sglang-0.5 kernels.untuned_block_fp8_gemm): a call runs 128 x 128 output tiles, one workgroup each,
looping over K in 128-wide steps, so a decode-size call takes K / 128 steps however few bytes it reads. The roofline
charges what that exceeds its own price of each of an MLA layer's three such GEMMs by."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import resolved_deployment, shipped_engines

from simfactory.hardware.step_time import StepLoad, UntunedGemms, mla_block_fp8_gemm_shapes
from simfactory.resolve.step_time import untuned_gemms

MI300X_ENGINE = shipped_engines()["sglang-0.5"].kernels.untuned_block_fp8_gemm


def test_deepseeks_three_dense_gemms_are_the_shapes_aiter_tuned_later():
    """At TP8: the fused q_a/kv_a down-projection 2112 x 7168, q_b 3072 x 1536, o_proj 7168 x 2048 (aiter#2024's)."""
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    u = d.step_time.untuned_gemms
    assert u.attention == ((2112, 7168), (3072, 1536), (7168, 2048)) and u.layers == 61
    assert u.moe_mlp == () and u.moe_layers == 0  # SGLang runs DeepSeek's shared expert inside the routed kernel


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
    for n, k in u.attention:
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
    ("sglang-0.5.8", "mi300x", "deepseek-r1", "fp8"),  # its images' aiter is not known: not charged
    ("vllm", "mi300x", "deepseek-r1", "fp8"),
    ("sglang-0.5", "mi300x", "qwen3-235b-a22b", "fp8"),  # not an MLA model: not covered
])
def test_other_engines_skus_and_models_are_not_charged(engine, sku, model, dtype):
    assert resolved_deployment(engine, sku, model, 8, dtype).step_time.untuned_gemms is None


def test_only_the_skus_it_names_are_charged():
    """H200 runs its own kernels (and its tables); the preset names gfx942's MI300X and MI325X only."""
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    kernels = shipped_engines()["sglang-0.5"].kernels
    assert untuned_gemms(kernels, "mi325x", d.arch, "fp8", 8) == d.step_time.untuned_gemms
    assert untuned_gemms(kernels, "h200", d.arch, "fp8", 8) is None
    assert untuned_gemms(kernels, "mi300x", d.arch, "fp4", 8) is None
    mi325x = resolved_deployment("sglang-0.5", "mi325x", "deepseek-r1", 8, "fp8")
    assert mi325x.step_time.untuned_gemms == d.step_time.untuned_gemms and mi325x.step_time.untuned_extra_s(1) > 0


def test_unfused_shared_experts_pay_too():
    """Kimi K2 (384 routed experts: SGLang does not fuse its shared expert) runs the shared expert's gate-up
    (512 x 7168 at TP8) and down (7168 x 256) on the same kernel in each MoE layer."""
    d = resolved_deployment("sglang-0.5", "mi300x", "kimi-k2", 8, "fp8")
    u = d.step_time.untuned_gemms
    assert u.moe_mlp == ((512, 7168), (7168, 256)) and u.moe_layers == d.arch.moe_layers
    per_layer = d.step_time._untuned_call_extra_s(u, 1, 512, 7168) + d.step_time._untuned_call_extra_s(u, 1, 7168, 256)
    attention = sum(d.step_time._untuned_call_extra_s(u, 1, n, k) for n, k in u.attention)
    assert d.step_time.untuned_extra_s(1) == pytest.approx(61 * attention + u.moe_layers * per_layer, rel=1e-12)
    assert per_layer > 100e-6  # the gate-up's 56 K steps on 4 workgroups


def test_attention_groups_run_their_own_share_of_the_tokens():
    """With dp_attention, each group runs the attention projections on its own sequences' tokens."""
    kernels = shipped_engines()["sglang-0.5"].kernels
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    dp8 = untuned_gemms(kernels, "mi300x", d.arch, "fp8", 8, dp_attention=8)
    assert dp8.groups == 8 and dp8.attention == mla_block_fp8_gemm_shapes(d.arch, 1)
    one = UntunedGemms(dp8.attention, dp8.layers, dp8.tile, dp8.k_step_s, dp8.compute_units)
    # 8 x 1,024 tokens over 8 groups cost what 1,024 tokens cost one group (here, on 8 GPUs)
    st = dataclasses.replace(d.step_time, dp_attention=8, untuned_gemms=dp8)
    st_one = dataclasses.replace(d.step_time, dp_attention=8, untuned_gemms=one)
    assert st.untuned_extra_s(8 * 1024) == pytest.approx(st_one.untuned_extra_s(1024), rel=1e-12)
    assert st.untuned_extra_s(8 * 1024) < st_one.untuned_extra_s(8 * 1024)


def test_without_a_q_latent_q_and_the_kv_latent_are_projected_apart():
    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    arch = d.arch.model_copy(update={"q_lora_rank": None})
    assert mla_block_fp8_gemm_shapes(arch, 8) == ((3072, 7168), (576, 7168), (7168, 2048))
    assert mla_block_fp8_gemm_shapes(d.arch, 2)[1:] == ((12288, 1536), (7168, 8192))  # split over an attention group


def test_the_preset_names_its_sources():
    assert MI300X_ENGINE.skus == ["mi300x", "mi325x"] and MI300X_ENGINE.compute_units == 304
    assert "https://github.com/ROCm/aiter/pull/1930" in MI300X_ENGINE.source
    assert "https://github.com/sgl-project/sglang/pull/13617" in MI300X_ENGINE.source


def test_a_step_table_fit_keeps_the_untuned_gemms_and_fits_the_rest():
    """`calibrate fit` on MI300X steps of an engine with untuned GEMMs prices them as resolve does (RooflineContext
    carries them), so the fitted factors are what resolve adds them to: steps made with known factors plus the term
    are fitted back to those factors; a fit told nothing of the term absorbs it and misses."""
    import pandas as pd

    from simfactory.calibration.fit import RooflineContext, fit_step_time

    d = resolved_deployment("sglang-0.5", "mi300x", "deepseek-r1", 8, "fp8")
    truth = d.step_time.factors.model_copy(update={"compute_efficiency": 0.3, "memory_efficiency": 0.5,
                                                   "step_overhead_s": 0.006, "prefill_floor_s": 0.0})
    m = dataclasses.replace(d.step_time, factors=truth)
    rows = [dict(prefill_tokens=0, decode_seqs=b, kv_tokens_read=b * c, prefill_attn_pairs=0.0, prefill_seqs=0)
            for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) for c in (512, 2048)]
    rows += [dict(prefill_tokens=n * t, decode_seqs=0, kv_tokens_read=0, prefill_seqs=n,
                  prefill_attn_pairs=n * t * (t + 1) / 2) for t in (256, 1024, 4096) for n in (1, 2)]
    steps = pd.DataFrame(rows)
    steps["step_s"] = [m.step_s(StepLoad(r.prefill_tokens, r.decode_seqs, float(r.kv_tokens_read),
                                         float(r.prefill_attn_pairs))) for r in steps.itertuples()]
    # a plain TP8 roofline as the step-table fit builds it: no expert parallelism or imbalance, as m has none
    assert m.ep_degree == 1 and m.expert_imbalance == 1.0
    ctx = RooflineContext(d.arch, m.spec, "fp8", m.kv_dtype, 8, d.profile.roofline, m.fused_shared_experts,
                          m.untuned_gemms)
    fit = fit_step_time(steps, "roofline", ctx, heldout_by="random")
    got = fit.step_time
    assert (got.compute_efficiency, got.memory_efficiency, got.step_overhead_s) == pytest.approx((0.3, 0.5, 0.006),
                                                                                                   rel=0.02)
    blind = fit_step_time(steps, "roofline", ctx._replace(untuned_gemms=None), heldout_by="random")
    assert blind.step_time.step_overhead_s > 0.006 + 0.005  # the untuned GEMMs' ~9 ms absorbed into the overhead
