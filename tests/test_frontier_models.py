"""Frontier models (issue #23): MLA, shared experts, dense-first layers, sliding windows in the catalogue.

Closed forms: DeepSeek-V3/R1 cache one latent of kv_lora_rank 512 plus a RoPE key of 64 per token and layer
(61 layers), https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/config.json; vLLM and SGLang run DeepSeek-R1
FP8 on one 8 x H200 node.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import scenario_doc

from simfactory.config.profile import ModelArch, RooflineStepTime
from simfactory.hardware.memory import plan_memory
from simfactory.hardware.step_time import RooflineModel
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import load_and_resolve, load_engines, load_models, load_profile, search_dirs
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import simulate

DIRS = search_dirs(None, "hardware_profiles", PROFILES_DIR)
MODELS = load_models(DIRS)
ENGINES = load_engines(DIRS)
NEW = ["deepseek-v3", "deepseek-r1", "kimi-k2", "qwen3-235b-a22b", "gpt-oss-120b", "gpt-oss-20b", "llama-3.3-70b",
       "llama-4-maverick"]
MLA = ["deepseek-v3", "deepseek-r1", "kimi-k2"]


def test_new_models_are_in_the_catalogue_with_their_config_shapes():
    for name in NEW:
        assert name in MODELS, name
        assert "huggingface.co" in MODELS[name].source
    r1 = MODELS["deepseek-r1"]
    assert (r1.layers, r1.hidden, r1.heads, r1.kv_lora_rank, r1.qk_rope_head_dim, r1.qk_nope_head_dim, r1.v_head_dim,
            r1.q_lora_rank, r1.num_experts, r1.shared_experts, r1.experts_per_token, r1.dense_layers, r1.vocab) == (
        61, 7168, 128, 512, 64, 128, 128, 1536, 256, 1, 8, 3, 129280)
    assert r1.moe_layers == 58 and r1.is_mla and r1.is_moe
    assert MODELS["deepseek-v3"].model_dump(exclude={"id", "source"}) == r1.model_dump(exclude={"id", "source"})
    k2 = MODELS["kimi-k2"]
    assert (k2.heads, k2.num_experts, k2.dense_layers, k2.vocab) == (64, 384, 1, 163840)
    assert MODELS["llama-3.3-70b"].model_dump(exclude={"id", "source"}) == \
        MODELS["llama-3.1-70b"].model_dump(exclude={"id", "source"})
    oss = MODELS["gpt-oss-120b"]
    assert (oss.layers, oss.sliding_window_tokens, oss.sliding_window_layers) == (36, 128, 18)
    mav = MODELS["llama-4-maverick"]
    assert (mav.layers, mav.hidden, mav.heads, mav.kv_heads, mav.num_experts, mav.experts_per_token, mav.moe_layers,
            mav.vocab) == (48, 5120, 40, 8, 128, 1, 24, 202048)
    # GQA attention: Q and O 5120 x 40 x 128, K and V 5120 x 8 x 128, per layer
    assert mav.attention_params_b() == pytest.approx(48 * (2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128) / 1e9)


def test_mla_kv_bytes_per_token_is_one_latent_per_layer():
    r1 = MODELS["deepseek-r1"]
    assert r1.kv_bytes_per_token("fp8") == 61 * (512 + 64) * 1 == 35_136
    assert r1.kv_bytes_per_token("bf16") == 2 * 35_136
    assert MODELS["kimi-k2"].kv_bytes_per_token("bf16") == 70_272  # head count does not enter MLA's cache
    assert r1.kv_tp_shards(8) == 1 and MODELS["llama-3.1-70b"].kv_tp_shards(8) == 8


def test_mla_attention_flops_per_pair_closed_form():
    r1 = MODELS["deepseek-r1"]
    absorbed = 61 * (2 * 128 * (512 + 64) + 2 * 128 * 512)
    assert r1.attn_flops_per_pair() == absorbed == 16_990_208
    assert r1.attn_flops_per_pair(absorbed=False) == 61 * (2 * 128 * (128 + 64) + 2 * 128 * 128)
    assert MODELS["kimi-k2"].attn_flops_per_pair() == absorbed // 2  # half the heads


def test_dense_and_gqa_models_keep_the_same_attention_flops():
    for name, a in MODELS.items():
        if a.is_mla:
            continue
        assert a.attn_flops_per_pair() == 4.0 * a.layers * (a.heads * a.head_dim), name
        assert a.kv_bytes_per_token("bf16") == 2 * a.layers * a.kv_heads * a.head_dim * 2, name


def test_roofline_uses_the_model_attention_flops():
    spec = load_profile(DIRS, "h200", "sku", "sku").spec
    factors = RooflineStepTime(compute_efficiency=0.5, memory_efficiency=0.8, step_overhead_s=0.0)
    for name in ("deepseek-r1", "llama-3.1-70b"):
        a = MODELS[name]
        m = RooflineModel(a, spec, factors, "fp8", "fp8", 8)
        assert m.flops_per_pair * 8 == pytest.approx(a.attn_flops_per_pair())  # type: ignore[attr-defined]


def test_mla_fields_validate_together():
    base = MODELS["llama-3.1-8b"].model_dump()
    with pytest.raises(ValueError, match="kv_lora_rank"):
        ModelArch(**{**base, "kv_lora_rank": 512})
    with pytest.raises(ValueError, match="kv_lora_rank"):
        ModelArch(**{**base, "v_head_dim": 128})
    with pytest.raises(ValueError, match="sliding_window"):
        ModelArch(**{**base, "sliding_window_tokens": 128})
    with pytest.raises(ValueError, match="sliding_window_layers"):
        ModelArch(**{**base, "sliding_window_tokens": 128, "sliding_window_layers": 33})
    with pytest.raises(ValueError, match="shared_experts"):
        ModelArch(**{**base, "shared_experts": 1})


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_deepseek_r1_fp8_fits_8_h200_with_a_replicated_latent(engine):
    spec = load_profile(DIRS, "h200", "sku", "sku").spec
    p = plan_memory(MODELS["deepseek-r1"], spec, "fp8", "fp8", 8, rule=ENGINES[engine].memory)
    assert p.fits and p.kv_capacity_tokens > 500_000
    # every rank holds the whole latent: capacity is one device's KV bytes over 35,136 bytes, not eight devices'
    assert p.kv_capacity_tokens == int(p.kv_bytes_per_device // 35_136)


def test_kimi_k2_fp8_on_8_h200_is_a_tight_fit():
    """1.04T FP8 parameters plus 16-bit embeddings are 130.3 GB per device at TP8 against the 135.2 GB vLLM uses
    of an H200 (0.9 x 150.25e9): ~2.3 GB per device is left for KV, a few tens of thousands of tokens."""
    spec = load_profile(DIRS, "h200", "sku", "sku").spec
    p = plan_memory(MODELS["kimi-k2"], spec, "fp8", "fp8", 8, rule=ENGINES["vllm"].memory)
    assert p.fits and 10_000 < p.kv_capacity_tokens < 131_072


# (model, SKU, TP, dtype): a deployment each model fits
FITS = [
    ("deepseek-v3", "h200", 8, "fp8"),
    ("deepseek-r1", "h200", 8, "fp8"),
    ("kimi-k2", "mi300x", 8, "fp8"),
    ("qwen3-235b-a22b", "h200", 4, "fp8"),
    ("gpt-oss-120b", "h200", 2, "fp8"),
    ("gpt-oss-20b", "h200", 1, "bf16"),
    ("llama-3.3-70b", "h200", 2, "bf16"),
    ("llama-4-maverick", "h200", 8, "fp8"),
]


@pytest.mark.parametrize("model,sku,tp,dtype", FITS)
def test_each_new_model_resolves_and_runs_on_its_kernels_or_the_roofline(tmp_path, model, sku, tp, dtype):
    doc = scenario_doc(model=model, tp=tp, dtype=dtype, max_num_seqs=8, horizon_s=5.0, rate=1.0,
                       input_tokens={"kind": "fixed", "value": 200}, output_tokens={"kind": "fixed", "value": 8})
    del doc["deployments"][0]["kv_cache_tokens"]  # the memory plan sizes the cache
    doc["pools"][0]["sku"] = sku
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    rs = load_and_resolve(tmp_path / "s.yaml")
    d = rs.deployments[0]
    # vLLM's own tables cover the DeepSeeks and Qwen3-235B-A22B at TP4 on an H200 (derive_moe.py), and Llama-3.3-70B
    # through Llama-3.1-70B's (the same shape); the others run on the roofline
    own = (model.startswith("deepseek") or model in ("qwen3-235b-a22b", "llama-3.3-70b")) and sku == "h200"
    assert d.step_time_source.startswith("measured kernels" if own else "roofline"), d.step_time_source
    assert ("llama-3.1-70b's tables" in d.step_time_source) == (model == "llama-3.3-70b")
    assert own == ("(h200_sxm, vllm " in d.step_time_source) and "stand in" not in d.step_time_source
    assert d.memory.fits and d.memory.kv_capacity_tokens > 0
    result = simulate(rs)
    assert (result.table.outcome == Outcome.COMPLETED).sum() > 0


def test_roofline_mla_kv_read_is_whole_latent_per_rank_and_all_to_all_skips_dense_layers():
    """Every TP rank holds and reads the whole MLA latent, so a decode step's KV time does not shrink with TP;
    expert all-to-all runs only on the MoE layers (DeepSeek-R1: 61 - 3 dense = 58)."""
    from simfactory.hardware.step_time import StepLoad

    arch = MODELS["deepseek-r1"]
    spec = load_profile(DIRS, "h200", "sku", "sku").spec
    factors = RooflineStepTime(compute_efficiency=0.5, memory_efficiency=0.8, step_overhead_s=0.0)
    m1 = RooflineModel(arch, spec, factors, "fp8", "fp8", tp=1)
    m8 = RooflineModel(arch, spec, factors, "fp8", "fp8", tp=8, expert_parallel=True)
    kv_per_token = arch.kv_bytes_per_token("fp8")
    # each device reads the whole latent: per-device KV bytes per token do not shrink with TP
    assert m1.kv_bytes_per_token_device == kv_per_token and m8.kv_bytes_per_token_device == kv_per_token
    assert arch.moe_layers == 58
    # dispatch + combine on each of the 58 MoE layers; every rank sends its 16 tokens x 8 experts x hidden x 2 bytes,
    # 7/8 of it to the other 7 ranks over NVLink (450 GB/s per direction on an H200)
    sent = 16 * 8 * arch.hidden * 2 * m8.expert_imbalance
    per_a2a = 7 / 8 * sent / (spec.interconnect_gb_s * 1e9) + spec.interconnect_latency_s
    assert m8.all_to_all_s(16) == pytest.approx(58 * 2 * per_a2a, rel=1e-12)
    assert m1.step_s(StepLoad(0, 1, 1e6, 0.0)) > 0


@pytest.mark.parametrize("sku,system", [("b200", "b200_sxm"), ("b300", "b300_sxm")])
@pytest.mark.parametrize("engine,kv_dtype", [("vllm", None), ("sglang-0.5", "bf16")])
@pytest.mark.parametrize("model,tp", [("gpt-oss-120b", 8), ("gpt-oss-20b", 1)])
def test_gpt_oss_mxfp4_on_blackwell_runs_on_its_own_kernel_tables(sku, system, engine, kv_dtype, model, tp):
    """gpt-oss's MXFP4 experts (dtype fp4) have kernel tables of their own on B200 and B300 (derive_moe.py): a
    deployment reads them, not the roofline and not another model's; SGLang's with its BF16 KV cache (the SDK holds
    no FP8-KV context attention for it there), vLLM's with the model's default cache (BF16: its checkpoint names no
    KV quantization). Its attention holds both of the
    SDK's attention ops (the 128-token windowed layers and the full ones, ~0.15 ms each at TP8 and 1,000 KV tokens),
    and the file says SGLang's experts run on the SDK's MXFP8-activation rows there."""
    from simfactory.config.scenario import Scenario
    from simfactory.hardware.kernels import load_kernel_tables
    from simfactory.hardware.step_time import StepLoad
    from simfactory.resolve import resolve

    def deployment(source: str):
        doc = scenario_doc(engine=engine, step_time_source=source)
        doc["pools"][0].update(sku=sku, count=tp, cloud_usd_per_accel_hour=5.0)
        doc["deployments"][0].update(model=model, tp=tp, dtype="fp4", replicas=1,
                                     **({"kv_dtype": kv_dtype} if kv_dtype else {}))
        return resolve(Scenario.model_validate(doc)).deployments[0]

    d = deployment("auto")
    framework = "vllm" if engine == "vllm" else "sglang"
    assert d.step_time_source.startswith("measured kernels"), d.step_time_source
    assert f"({system}, {framework} " in d.step_time_source and "'s tables" not in d.step_time_source
    step = d.step_time.breakdown_s(StepLoad(0, 1, 1_000.0, 0.0))
    kernels_s = sum(v for k, v in step.items() if k != "overhead")
    assert 1e-3 < kernels_s < 4e-3  # the SDK composes 2.0-2.1 ms for the 120B at TP8 on b200_sxm
    if tp == 8:
        assert step["decode_attention"] > 0.25e-3  # both attention ops, not the first alone
    roof = deployment("roofline").step_time.breakdown_s(StepLoad(0, 1, 1_000.0, 0.0))
    assert kernels_s > 2 * sum(v for k, v in roof.items() if k != "overhead")
    quant = load_kernel_tables(sku).header["moe"]["quant"][f"{model} fp4"]
    assert quant == {"gemm": "bfloat16", "moe": "w4a16_mxfp4", "moe_sglang": "w4a8_mxfp4_mxfp8"}


@pytest.mark.parametrize("sku,system", [("h100-sxm", "h100_sxm"), ("h200", "h200_sxm")])
@pytest.mark.parametrize("engine,framework", [("vllm", "vllm"), ("sglang-0.5", "sglang")])
@pytest.mark.parametrize("model,tp", [("gpt-oss-120b", 1), ("gpt-oss-120b", 2), ("gpt-oss-20b", 1)])
def test_gpt_oss_weight_only_mxfp4_runs_on_hopper_as_w4a16(sku, system, engine, framework, model, tp):
    """gpt-oss's MXFP4 experts multiply 16-bit activations (models.yaml fp4_weight_only), so dtype fp4 runs on
    Hopper, which has no FP4 tensor cores: on its own kernel tables there (the SDK's w4a16_mxfp4 rows, derive_moe.py),
    slower than the same layout's on B200; its KV cache BF16 unless set (the checkpoint names no KV quantization);
    its roofline at the BF16 rate with 16-bit activations, on B200's FP4 tensor cores too; and its eager-prefill floor
    that of an unquantized MoE model (no activation quantization launches)."""
    from simfactory.config.scenario import Scenario
    from simfactory.hardware.step_time import ELEMENTWISE_BYTES_PER_HIDDEN, StepLoad
    from simfactory.resolve import resolve

    def deployment(source: str, on: str = sku):
        doc = scenario_doc(engine=engine, step_time_source=source)
        doc["pools"][0].update(sku=on, count=tp, cloud_usd_per_accel_hour=5.0)
        doc["deployments"][0].update(model=model, tp=tp, dtype="fp4", replicas=1)
        rs = resolve(Scenario.model_validate(doc))
        assert not any("KV cache is simulated in" in w for w in rs.warnings)
        return rs.deployments[0]

    def kernels_s(d) -> float:
        return sum(v for k, v in d.step_time.breakdown_s(StepLoad(0, 1, 1_000.0, 0.0)).items() if k != "overhead")

    d = deployment("auto")
    assert d.step_time_source.startswith("measured kernels"), d.step_time_source
    assert f"({system}, {framework} " in d.step_time_source and "fp4 weights, bf16 KV" in d.step_time_source
    assert 1e-3 < kernels_s(d) < 12e-3  # a one-sequence decode step of the SDK's composition
    assert kernels_s(d) > kernels_s(deployment("auto", "b200"))  # B200's bandwidth and kernels: a faster step
    arch = MODELS[model]
    for on in (sku, "b200"):
        roof = deployment("roofline", on).step_time
        spec = load_profile(DIRS, on, "sku", "sku").spec
        assert (spec.fp4_tflops is None) == (on == sku)
        assert roof.peak_flops == pytest.approx(spec.bf16_tflops * 1e12 * roof.factors.compute_efficiency)
        assert roof.elementwise_s_per_token == pytest.approx(
            arch.layers * arch.hidden * ELEMENTWISE_BYTES_PER_HIDDEN["16-bit"] / roof.bandwidth)
    eager = ENGINES["sglang-0.5"].eager_prefill
    assert eager.floor_s(arch, "fp4") == pytest.approx(eager.floor_s(arch, "bf16"))
    assert eager.floor_s(arch, "fp4") < eager.floor_s(arch, None)


def test_fp4_stays_refused_on_hopper_for_checkpoints_that_quantize_activations(tmp_path):
    """Only a weight-only FP4 checkpoint runs on a GPU without FP4 tensor cores: DeepSeek-R1's NVFP4 (activations
    quantized too) and an FP4 KV cache for gpt-oss are refused there, naming the file and field."""
    from simfactory.errors import InputError, InputErrors

    for model, kv in (("deepseek-r1", None), ("gpt-oss-120b", "fp4")):
        doc = scenario_doc()
        doc["pools"][0].update(sku="h200", count=8)
        doc["deployments"][0].update(model=model, tp=8, dtype="fp4", replicas=1, **({"kv_dtype": kv} if kv else {}))
        path = tmp_path / f"{model}.yaml"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises((InputError, InputErrors)) as info:
            load_and_resolve(path)
        field = "kv_dtype" if kv else "dtype"
        assert f"deployments[0].{field}" in str(info.value) and "has no FP4 tensor cores" in str(info.value)


def test_gpt_oss_weights_are_mxfp4_experts_and_16_bit_rest():
    """gpt-oss's checkpoint quantizes only its MoE weights, to MXFP4 (4.25 bits a parameter: 4-bit elements and one
    8-bit scale per 32, https://arxiv.org/abs/2508.10925); attention, router and embeddings stay BF16. The memory
    model charges exactly that (the embeddings once, not again as a quantized model's 16-bit extra), the roofline
    reads the experts' bytes apart, and an FP8 DeepSeek checkpoint keeps the plain rule."""
    from simfactory.hardware.memory import weight_bytes

    oss = MODELS["gpt-oss-120b"]
    experts = oss.expert_params_b() * 1e9
    want = experts * 4.25 / 8 + (oss.params_b * 1e9 - experts) * 2.0
    assert weight_bytes(oss, "fp4") == pytest.approx(want, rel=1e-12)
    assert 60e9 < want < 66e9  # one 80 GB GPU holds it with room for a KV cache
    spec = load_profile(DIRS, "h100-sxm", "sku", "sku").spec
    roof = RooflineModel(oss, spec, RooflineStepTime(compute_efficiency=0.5, memory_efficiency=0.8,
                                                     step_overhead_s=0.0), "fp4", "bf16", tp=1)
    assert roof.expert_weight_bytes == pytest.approx(experts * 4.25 / 8)
    assert roof.fixed_weight_bytes == pytest.approx((oss.params_b * 1e9 - experts) * 2.0)
    r1 = MODELS["deepseek-r1"]
    assert r1.weight_bytes("fp8") == pytest.approx(r1.params_b * 1e9)  # FP8 everywhere but the embeddings
