"""The roofline's small-GEMM terms (RooflineStepTime.gemm_latency_s, gemm_ramp_tokens): a fixed launch time per weight
GEMM, and GEMM efficiency that ramps with the step's tokens, as AMD's MI300X kernel timings show."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import resolved_deployment

from simfactory.config.loader import load_model_file
from simfactory.config.profile import HardwareProfile, ModelCatalog, RooflineStepTime
from simfactory.hardware.step_time import RooflineModel, StepLoad, weight_gemms_per_step

ROOT = Path(__file__).resolve().parents[1]
MODELS = {m.id: m for m in load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models}
MI300X = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / "mi300x.yaml")
PLAIN = RooflineStepTime(compute_efficiency=0.4, memory_efficiency=0.65, step_overhead_s=0.004)


def model(factors: RooflineStepTime, tp: int = 8) -> RooflineModel:
    return RooflineModel(MODELS["llama-3.1-70b"], MI300X.spec, factors, "fp8", "fp8", tp)


@pytest.mark.parametrize("tp", [1, 8])
@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_each_weight_gemm_adds_its_launch_time_on_every_device(tp, tokens):
    """Four GEMMs a layer, each launched on every device whatever the tensor-parallel split."""
    latency = 9e-6
    with_latency = model(PLAIN.model_copy(update={"gemm_latency_s": latency}), tp)
    extra = with_latency.linear_s(tokens) - model(PLAIN, tp).linear_s(tokens)
    assert extra == pytest.approx(4 * MODELS["llama-3.1-70b"].layers * latency, rel=1e-9)


@pytest.mark.parametrize(("model_id", "per_layer"), [
    # DeepSeek-R1: MLA (fused q_a/kv_a, q_b, w_kc, w_vc, o) 5 a layer; 3 dense MLPs of 2; 58 MoE MLPs of router 1 +
    # experts 2 + shared expert 2
    ("deepseek-r1", lambda m: 5 * m.layers + 2 * 3 + 5 * (m.layers - 3)),
    ("kimi-k2", lambda m: 5 * m.layers + 2 * 1 + 5 * (m.layers - 1)),  # DeepSeek-V3's layer kinds, one dense layer
    ("llama-4-maverick", lambda m: 2 * m.layers + 2 * 24 + 5 * 24),  # every other layer MoE, with a shared expert
    ("qwen3-235b-a22b", lambda m: (2 + 3) * m.layers),  # GQA 2; MoE without shared experts 3
    ("mixtral-8x7b", lambda m: (2 + 3) * m.layers),
    ("llama-3.1-70b", lambda m: 4 * m.layers),
])
def test_weight_gemm_launches_follow_the_layers_parts(model_id, per_layer):
    """An MLA MoE layer launches more, smaller GEMMs than a dense GQA layer, and each takes the launch time."""
    m = MODELS[model_id]
    assert weight_gemms_per_step(m) == per_layer(m)
    plain = RooflineModel(m, MI300X.spec, PLAIN, "fp8", "fp8", 8)
    timed = RooflineModel(m, MI300X.spec, PLAIN.model_copy(update={"gemm_latency_s": 9e-6}), "fp8", "fp8", 8)
    assert timed.linear_s(1) - plain.linear_s(1) == pytest.approx(per_layer(m) * 9e-6, rel=1e-9)


def test_a_model_with_every_expert_active_still_launches_the_router_and_experts():
    """num_experts == experts_per_token is not sparse (is_moe False) but the engine runs it through its MoE code."""
    mixtral = MODELS["mixtral-8x7b"]
    m = mixtral.model_copy(update={"experts_per_token": 8, "active_params_b": mixtral.params_b})
    assert not m.is_moe and weight_gemms_per_step(m) == (2 + 3) * m.layers


@pytest.mark.parametrize(("engine", "fused"), [("sglang-0.5", True), ("sglang", True), ("vllm", False)])
def test_sglang_runs_deepseeks_shared_expert_inside_the_routed_kernel(engine, fused):
    """SGLang fuses DeepSeek-V3/R1's one shared expert into the routed experts' kernel (256 routed, one shared):
    two launches fewer a MoE layer on its roofline; other engines launch them apart."""
    m = MODELS["deepseek-r1"]
    d = resolved_deployment(engine, "mi300x", "deepseek-r1", 8, "fp8")
    assert d.step_time.fused_shared_experts is fused
    launches = weight_gemms_per_step(m) - (2 * m.moe_layers if fused else 0)
    assert weight_gemms_per_step(m, fused) == launches
    assert d.step_time.gemm_launches_s == pytest.approx(launches * MI300X.roofline.gemm_latency_s, rel=1e-12)


def test_only_deepseeks_shape_has_its_shared_expert_fused():
    """Kimi K2 (384 routed experts) and Llama 4 Maverick keep their shared-expert GEMMs on SGLang too."""
    assert resolved_deployment("sglang", "mi300x", "kimi-k2", 8, "fp8").step_time.fused_shared_experts is False


def test_gemm_efficiency_ramps_with_the_steps_tokens():
    """Compute-bound GEMMs at M tokens take FLOPs x (M + ramp) / peak: efficiency compute_efficiency x M / (M + ramp),
    a fifth of it at a fifth of the ramp (the curve AITER's MI300X FP8 GEMMs follow)."""
    ramp = 170.0
    plain, ramped = model(PLAIN, 1), model(PLAIN.model_copy(update={"gemm_ramp_tokens": ramp}), 1)
    for tokens in (2048, 8192):  # compute-bound on one device
        gemm = plain.linear_s(tokens) - plain.elementwise_s_per_token * tokens
        ramped_gemm = ramped.linear_s(tokens) - ramped.elementwise_s_per_token * tokens
        assert gemm == pytest.approx(plain.flops_per_token * tokens / plain.peak_flops, rel=1e-9)
        assert tokens / ramped_gemm * plain.flops_per_token == pytest.approx(
            plain.peak_flops * tokens / (tokens + ramp), rel=1e-9)
    # a one-token decode step stays bound by its weight reads when they are the slower
    assert ramped.linear_s(1) == pytest.approx(max(
        ramped.flops_per_token * (1 + ramp) / ramped.peak_flops,
        ramped.weight_bytes_read(1) / ramped.bandwidth) + ramped.elementwise_s_per_token, rel=1e-9)


def test_decode_stretches_stay_exact_with_the_gemm_terms():
    """The fast-forward's affine decode stretch equals stepping one step at a time."""
    m = RooflineModel(MODELS["llama-3.1-70b"], MI300X.spec, MI300X.roofline, "fp8", "fp8", 8)
    a_s, b_s, _ = m.decode_affine(32, 32 * 500.0, 32.0, 100)
    for i in (0, 1, 57):
        assert m.step_s(StepLoad(decode_seqs=32, kv_tokens_read=32 * 500.0 + 32 * i)) == pytest.approx(
            a_s + b_s * i, rel=1e-12)


def test_mi300x_ships_its_measured_gemm_terms_with_sources():
    r = MI300X.roofline
    assert r.gemm_latency_s == pytest.approx(9e-6) and r.gemm_ramp_tokens == pytest.approx(170)
    assert "aiter" in r.source and "rocm.blogs.amd.com" in r.source and r.as_of
    # MI325X (the same compute die) carries them over; SKUs with kernel tables or no such measurement have none
    mi325x = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / "mi325x.yaml").roofline
    assert (mi325x.gemm_latency_s, mi325x.gemm_ramp_tokens) == (r.gemm_latency_s, r.gemm_ramp_tokens)
    assert "mi300x" in mi325x.source and mi325x.compute_efficiency > r.compute_efficiency
    others = [load_model_file(HardwareProfile, p).roofline for p in (ROOT / "hardware_profiles").glob("*.yaml")
              if p.name not in ("mi300x.yaml", "mi325x.yaml", "engines.yaml", "models.yaml", "prices.yaml")]
    assert others and all(o.gemm_latency_s == 0 and o.gemm_ramp_tokens == 0 for o in others)


def test_a_step_table_fit_keeps_the_skus_gemm_terms_and_finds_the_rest():
    """`calibrate fit` on a step table fits the three classic factors (and a prefill floor) and keeps the SKU's
    small-GEMM terms, as the concurrency-sweep fit does: steps generated with MI300X's terms and other factors are
    fitted back, and the fit carries the terms; a fit told nothing of them cannot price the small decode GEMMs."""
    import pandas as pd

    from simfactory.calibration.fit import RooflineContext, fit_step_time

    truth = MI300X.roofline
    true_factors = RooflineStepTime(compute_efficiency=0.3, memory_efficiency=0.5, step_overhead_s=0.006,
                                    gemm_latency_s=truth.gemm_latency_s, gemm_ramp_tokens=truth.gemm_ramp_tokens)
    rows = [dict(prefill_tokens=0, decode_seqs=b, kv_tokens_read=b * ctx, prefill_attn_pairs=0.0, prefill_seqs=0)
            for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) for ctx in (512, 2048)]
    rows += [dict(prefill_tokens=n * n_tok, decode_seqs=0, kv_tokens_read=0, prefill_seqs=n,
                  prefill_attn_pairs=n * n_tok * (n_tok + 1) / 2) for n_tok in (256, 1024, 4096) for n in (1, 2)]
    steps = pd.DataFrame(rows)
    m = model(true_factors, 1)
    steps["step_s"] = [m.step_s(StepLoad(r.prefill_tokens, r.decode_seqs, float(r.kv_tokens_read),
                                         float(r.prefill_attn_pairs))) for r in steps.itertuples()]
    ctx = RooflineContext(MODELS["llama-3.1-70b"], MI300X.spec, "fp8", "fp8", 1, truth)
    fit = fit_step_time(steps, "roofline", ctx, heldout_by="random")
    got = fit.step_time
    assert (got.gemm_latency_s, got.gemm_ramp_tokens) == (truth.gemm_latency_s, truth.gemm_ramp_tokens)
    assert (got.compute_efficiency, got.memory_efficiency, got.step_overhead_s) == pytest.approx((0.3, 0.5, 0.006),
                                                                                                   rel=0.02)
    assert fit.heldout_mape < 0.005
    blind = fit_step_time(steps, "roofline", ctx._replace(sku_default=None), heldout_by="random")
    assert blind.step_time.gemm_latency_s == 0.0 and blind.heldout_mape > 5 * fit.heldout_mape
