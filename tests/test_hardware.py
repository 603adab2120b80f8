"""Roofline step time and memory accounting against their formulas."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simfactory.config.profile import RooflineStepTime, Spec
from simfactory.hardware.memory import plan_memory
from simfactory.hardware.step_time import ALLREDUCES_PER_LAYER, ELEMENTWISE_BYTES_PER_HIDDEN, RooflineModel, StepLoad
from simfactory.resolve import load_models, search_dirs
from simfactory.paths import PROFILES_DIR

MODELS = load_models(search_dirs(None, "hardware_profiles", PROFILES_DIR))
H100 = Spec(hbm_gb=80, hbm_tb_s=3.35, bf16_tflops=989.4, fp8_tflops=1978.9, tdp_w=700, interconnect_gb_s=450,
            source="test", as_of="2026")
IDEAL = RooflineStepTime(compute_efficiency=1.0, memory_efficiency=1.0, step_overhead_s=0.0)


def model(name: str, tp: int = 1, dtype: str = "bf16") -> RooflineModel:
    return RooflineModel(MODELS[name], H100, IDEAL, dtype, dtype, tp)


def test_decode_batch_one_is_weight_bytes_over_bandwidth():
    m = model("llama-3.1-8b")
    arch = MODELS["llama-3.1-8b"]
    expected = arch.params_b * 1e9 * 2 / (3.35e12) + elementwise_s(arch, "bf16", 1)
    assert m.step_s(StepLoad(decode_seqs=1)) == pytest.approx(expected, rel=1e-12)


def elementwise_s(arch, dtype: str, tokens: int, bandwidth: float = 3.35e12) -> float:
    """The elementwise work every device repeats: layers x hidden x bytes per element per token, at memory speed."""
    per = ELEMENTWISE_BYTES_PER_HIDDEN["quantized" if dtype in ("fp8", "int8", "fp4") else "16-bit"]
    return tokens * arch.layers * arch.hidden * per / bandwidth


def test_elementwise_work_does_not_shrink_with_tp():
    """Per token and layer every TP rank normalizes and adds the whole hidden vector: the GEMMs' time halves with
    TP, that work does not, so the time per device of a compute-bound step falls by less than TP (the measured
    kernel tables show it: calibrate/kernels/fit_elementwise.py)."""
    arch = MODELS["llama-3.1-8b"]
    tokens = 16384
    one, eight = model("llama-3.1-8b", 1), model("llama-3.1-8b", 8)
    gemm = 2 * arch.active_params_b * 1e9 * tokens / 989.4e12
    assert one.linear_s(tokens) == pytest.approx(gemm + elementwise_s(arch, "bf16", tokens), rel=1e-12)
    assert eight.linear_s(tokens) == pytest.approx(gemm / 8 + elementwise_s(arch, "bf16", tokens), rel=1e-12)
    assert one.linear_s(tokens) / eight.linear_s(tokens) < 7.0
    f8 = model("llama-3.1-8b", dtype="fp8")  # quantizing the activations for an FP8 GEMM is more elementwise work
    assert f8.elementwise_s_per_token > one.elementwise_s_per_token


def test_large_prefill_is_compute_bound():
    """The GEMMs of a 16k-token prefill are compute-bound; attention is its own phase: the slower of its query-key
    FLOPs and the KV it writes (with no query-key pairs given here, the 16k tokens' K/V bytes)."""
    m = model("llama-3.1-8b")
    arch = MODELS["llama-3.1-8b"]
    tokens = 16384
    t = m.step_s(StepLoad(prefill_tokens=tokens))
    linear_flops = 2 * arch.active_params_b * 1e9 * tokens / 989.4e12 + elementwise_s(arch, "bf16", tokens)
    kv_write = tokens * arch.kv_bytes_per_token("bf16") / 3.35e12
    assert t == pytest.approx(linear_flops + kv_write, rel=1e-12)
    assert linear_flops > arch.params_b * 2e9 / 3.35e12  # above the weights' memory time
    pairs = tokens * (tokens + 1) / 2
    causal = m.step_s(StepLoad(prefill_tokens=tokens, prefill_attn_pairs=pairs))
    assert causal == pytest.approx(linear_flops + arch.attn_flops_per_pair() * pairs / 989.4e12, rel=1e-12)


def test_gemms_and_attention_are_separate_rooflines():
    """A large decode batch over long contexts: compute-bound GEMMs and a memory-bound KV read add up."""
    m = model("llama-3.1-8b")
    arch = MODELS["llama-3.1-8b"]
    b, kv = 512, 512 * 8000
    gemm = 2 * arch.active_params_b * 1e9 * b / 989.4e12
    assert gemm > arch.params_b * 2e9 / 3.35e12
    kv_read = kv * arch.kv_bytes_per_token("bf16") / 3.35e12
    assert kv_read > arch.attn_flops_per_pair() * kv / 989.4e12
    assert m.step_s(StepLoad(decode_seqs=b, kv_tokens_read=kv)) == pytest.approx(
        gemm + elementwise_s(arch, "bf16", b) + kv_read, rel=1e-12)


def test_step_time_is_monotone_in_batch_and_tokens():
    m = model("llama-3.1-70b", tp=4)
    prev = 0.0
    for b in (1, 2, 8, 32, 128, 512):
        t = m.step_s(StepLoad(decode_seqs=b, kv_tokens_read=b * 1000))
        assert t >= prev
        prev = t
    assert m.step_s(StepLoad(prefill_tokens=2000)) > m.step_s(StepLoad(prefill_tokens=1000))


def test_tp2_halves_weight_time_and_adds_allreduce():
    arch = MODELS["llama-3.1-8b"]
    one, two = model("llama-3.1-8b", 1), model("llama-3.1-8b", 2)
    tokens = 1
    ar = ALLREDUCES_PER_LAYER * arch.layers * (2 * (2 - 1) / 2 * tokens * arch.hidden * 2 / 450e9 + H100.interconnect_latency_s)
    assert two.allreduce_s(tokens) == pytest.approx(ar, rel=1e-12)
    each = elementwise_s(arch, "bf16", tokens)  # every device does it whole
    assert two.step_s(StepLoad(decode_seqs=1)) == pytest.approx(
        (one.step_s(StepLoad(decode_seqs=1)) - each) / 2 + each + ar, rel=1e-12)


def test_fp8_uses_fp8_peak_and_halves_weight_bytes():
    bf, f8 = model("llama-3.1-8b"), model("llama-3.1-8b", dtype="fp8")
    arch = MODELS["llama-3.1-8b"]
    weights = bf.step_s(StepLoad(decode_seqs=1)) - elementwise_s(arch, "bf16", 1)
    assert f8.step_s(StepLoad(decode_seqs=1)) == pytest.approx(weights / 2 + elementwise_s(arch, "fp8", 1), rel=1e-9)
    gemm = 2 * arch.active_params_b * 1e9 * 16384
    assert f8.linear_s(16384) == pytest.approx(gemm / 1978.9e12 + elementwise_s(arch, "fp8", 16384), rel=1e-9)
    assert f8.step_s(StepLoad(prefill_tokens=16384)) < 0.6 * bf.step_s(StepLoad(prefill_tokens=16384))


def test_70b_bf16_does_not_fit_one_80gb_device_but_int4_does():
    arch = MODELS["llama-3.1-70b"]
    assert not plan_memory(arch, H100, "bf16", "bf16", 1, 0.9).fits
    int4 = plan_memory(arch, H100, "int4", "bf16", 1, 0.9)
    assert int4.fits and int4.kv_capacity_tokens > 0
    assert not plan_memory(arch, H100, "bf16", "bf16", 2, 0.9).fits  # 70.6 GB of weights per device
    assert plan_memory(arch, H100, "bf16", "bf16", 4, 0.9).fits


def test_kv_capacity_formula():
    arch = MODELS["llama-3.1-8b"]
    p = plan_memory(arch, H100, "bf16", "bf16", 1, 0.9)
    assert arch.kv_bytes_per_token("bf16") == 131072  # matches the reference figure for Llama-3.1-8B
    # no spec.memory: hbm_gb read as decimal GB; vLLM's rule (tests/test_memory_capacity.py checks it against logs)
    free = 80e9 * 0.9 - arch.params_b * 1e9 * 2 - p.activation_bytes_per_device - p.non_torch_bytes_per_device
    assert p.kv_capacity_tokens == int(free // 131072)
    assert p.weight_bytes_per_device + p.kv_bytes_per_device + p.reserve_bytes_per_device <= 80e9


def test_moe_reads_only_the_experts_its_tokens_route_to():
    m = MODELS["mixtral-8x7b"]
    experts = m.expert_params_b()
    assert m.params_b - experts + 2 / 8 * experts == pytest.approx(m.active_params_b)  # one token: active params
    assert m.weight_fraction_read(1) == pytest.approx(m.active_params_b / m.params_b)
    assert m.weight_fraction_read(4) == pytest.approx((m.params_b - experts * (0.75**4)) / m.params_b)
    assert m.weight_fraction_read(512) == pytest.approx(1.0, abs=1e-9)
    dense = MODELS["llama-3.1-8b"]
    assert dense.weight_fraction_read(1) == 1.0
    moe = RooflineModel(m, H100, IDEAL, "bf16", "bf16", 2)
    assert moe.step_s(StepLoad(decode_seqs=1)) == pytest.approx(m.active_params_b * 2e9 / 2 / 3.35e12
                                                                + elementwise_s(m, "bf16", 1) + moe.allreduce_s(1),
                                                                rel=1e-9)


def test_expert_parallel_all_to_all_cost():
    m = MODELS["mixtral-8x7b"]
    ep = RooflineModel(m, H100, IDEAL, "bf16", "bf16", 4, expert_parallel=True)
    tokens = 64
    msg = tokens * m.hidden * 2 * 2  # bf16 activations x top-2 experts
    expected = m.layers * (2 * 3 / 4 * msg / 450e9 + 2 * H100.interconnect_latency_s)
    assert ep.all_to_all_s(tokens) == pytest.approx(expected, rel=1e-12)
    assert RooflineModel(m, H100, IDEAL, "bf16", "bf16", 4).all_to_all_s(tokens) == 0.0


def test_pipeline_parallel_splits_memory_and_adds_stage_transfers():
    arch = MODELS["llama-3.1-70b"]
    assert not plan_memory(arch, H100, "bf16", "bf16", 1, 0.9).fits
    assert plan_memory(arch, H100, "bf16", "bf16", 2 * 2, 0.9).fits  # tp=2 x pp=2 devices hold the weights
    pp = RooflineModel(arch, H100, IDEAL, "bf16", "bf16", 2, pp=2)
    tp_only = RooflineModel(arch, H100, IDEAL, "bf16", "bf16", 2)
    # a pass goes through both stages: same compute/memory time as the TP group alone, plus one p2p hop
    hop = 8 * arch.hidden * 2 / 450e9 + H100.interconnect_latency_s
    assert pp.step_s(StepLoad(decode_seqs=8)) == pytest.approx(tp_only.step_s(StepLoad(decode_seqs=8)) + hop, rel=1e-12)


def test_pipeline_replica_keeps_pp_micro_batches_in_flight(tmp_path):
    import yaml

    from simfactory.api import run
    from simfactory.paths import DEFAULT_SCENARIO

    doc = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    doc["pools"][0]["count"] = 4
    doc["deployments"][0].update(model="llama-3.1-70b", replicas=1, tp=2, pp=2)
    doc["traffic"]["arrival"]["rate_per_s"] = 3
    doc["sim"]["horizon_s"] = 60
    p = tmp_path / "pp.yaml"
    p.write_text(yaml.safe_dump(doc))
    m = run(p)
    reps = m.summary["replicas"]
    assert len(reps) == 2 and all(r["steps"] > 0 for r in reps)  # two micro-batch engines share the work
    assert m.summary["outcomes"]["completed"] > 0
    assert m.summary["cost"]["pools"][0]["accelerators"] == 4


def _affine_matches_step_s(m, seqs: int, kv0: float, n_max: int) -> int:
    """decode_affine's steps equal step_s's to float tolerance for every planned step; returns n."""
    a_s, b_s, n = m.decode_affine(seqs, kv0, float(seqs), n_max)
    assert 1 <= n <= n_max
    for i in list(range(min(n, 50))) + list(range(max(n - 50, 0), n)):
        want = m.step_s(StepLoad(0, seqs, kv0 + seqs * i, 0))
        assert a_s + b_s * i == pytest.approx(want, rel=1e-9), (i, n)
    return n


@given(seqs=st.integers(1, 512), kv0=st.floats(0, 4e6), n_max=st.integers(1, 20_000),
       name=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b"]), tp=st.sampled_from([1, 2, 4]))
@settings(max_examples=200, deadline=None)
def test_decode_steps_in_closed_form_match_step_s_until_the_regime_changes(seqs, kv0, n_max, name, tp):
    """The fast-forward plans a stretch as a_s + b_s * i: exact while max(compute, memory) keeps its side; the
    stretch stops where it switches (the next step is off the line)."""
    factors = RooflineStepTime(compute_efficiency=0.5, memory_efficiency=0.8, step_overhead_s=0.002)
    m = RooflineModel(MODELS[name], H100, factors, "bf16", "bf16", tp)
    n = _affine_matches_step_s(m, seqs, kv0, n_max)
    if n < n_max:  # cut at the crossover: the line no longer predicts step n
        a_s, b_s, _ = m.decode_affine(seqs, kv0, float(seqs), n_max)
        nxt = m.step_s(StepLoad(0, seqs, kv0 + seqs * (n + 1), 0))
        assert a_s + b_s * (n + 1) != pytest.approx(nxt, rel=1e-9)


def test_decode_affine_fallback_finds_the_crossover_of_a_convex_model():
    """Models without their own closed form fall back to bisection on step_s: a convex, piecewise-affine step (a
    max of two lines in the KV tokens read) is planned up to the crossover and no further; speculative decoding over
    the roofline (affine in the KV read for a fixed batch) is planned in one stretch."""
    from simfactory.hardware.speculative import SpeculativeModel
    from simfactory.hardware.step_time import StepTimeModel

    class TwoLines(StepTimeModel):
        def step_s(self, load: StepLoad) -> float:
            return max(0.010 + 1e-9 * load.kv_tokens_read, 0.002 + 8.1e-8 * load.kv_tokens_read)

    seqs = 64
    crossings = [_affine_matches_step_s(TwoLines(), seqs, kv0, 5000) for kv0 in (0.0, 5e4, 1e6)]
    assert crossings[-1] == 5000  # past the crossing at 1e5 KV tokens read: one line
    assert crossings[0] == pytest.approx(1e5 / seqs, abs=2) and crossings[1] == pytest.approx(5e4 / seqs, abs=2)
    spec = SpeculativeModel(model("llama-3.1-8b"), 4, 0.7, draft_fraction=0.1)
    assert all(_affine_matches_step_s(spec, seqs, kv0, 5000) == 5000 for kv0 in (0.0, 1e6))
