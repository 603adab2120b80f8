"""Frontier parallelism (issue #23): collectives over a placement, expert and attention-data parallelism as their own
degrees, expert imbalance, MTP, disaggregated prefill on its own pool and shape, and the memory checks engines pass.

Closed forms are written out here by hand from the formulas in hardware/collectives.py and hardware/step_time.py."""

from __future__ import annotations

import pytest
import yaml
from conftest import assert_fast_forward_matches, scenario_doc

from simfactory.config.profile import RooflineStepTime
from simfactory.config.scenario import Deployment, SpeculativeDecoding
from simfactory.errors import InputErrors
from simfactory.hardware.collectives import Links, all_to_all_s, allreduce_s, p2p_s
from simfactory.hardware.kernels import AttentionRanks
from simfactory.hardware.memory import plan_memory, sglang_mem_fraction
from simfactory.hardware.moe import default_expert_imbalance
from simfactory.hardware.speculative import expected_tokens_by_position, expected_tokens_per_step, mtp_draft_fraction
from simfactory.hardware.step_time import RooflineModel, StepLoad
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR
from simfactory.resolve import load_and_resolve, load_engines, load_models, load_profile, search_dirs
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import simulate

DIRS = search_dirs(None, "hardware_profiles", PROFILES_DIR)
MODELS = load_models(DIRS)
ENGINES = load_engines(DIRS)
H200 = load_profile(DIRS, "h200", "sku", "sku").spec
FACTORS = RooflineStepTime(compute_efficiency=0.5, memory_efficiency=0.8, step_overhead_s=0.0)
LINKS = Links(scale_up_bytes_per_s=900e9, scale_up_latency_s=1e-6, domain_devices=8, scale_out_bytes_per_s=50e9,
              scale_out_latency_s=1e-5)


def test_allreduce_is_a_ring_inside_a_domain_and_hierarchical_across():
    m = 1e6
    assert allreduce_s(m, 1, LINKS) == 0.0
    assert allreduce_s(m, 8, LINKS) == pytest.approx(2 * 7 / 8 * m / 900e9 + 1e-6)
    # 32 devices on 4 domains: ring inside each domain, then each device's 1/8 shard across the 4 over its NIC
    assert allreduce_s(m, 32, LINKS) == pytest.approx(2 * 7 / 8 * m / 900e9 + 1e-6 + 2 * 3 / 4 * (m / 8) / 50e9 + 1e-5)


def test_all_to_all_pays_the_nic_for_the_share_leaving_the_domain():
    b = 4e6
    assert all_to_all_s(b, 8, LINKS) == pytest.approx(7 / 8 * b / 900e9 + 1e-6)
    # 32 devices: 7/32 of the bytes stay on NVLink, 24/32 leave over the NIC at the same time; the NIC is slower
    assert all_to_all_s(b, 32, LINKS) == pytest.approx(max(7 / 32 * b / 900e9 + 1e-6, 24 / 32 * b / 50e9 + 1e-5))
    assert p2p_s(b, LINKS, True) == pytest.approx(b / 50e9 + 1e-5)
    no_nic = Links(900e9, 1e-6, 8, None, 1e-5)
    with pytest.raises(ValueError, match="scale_out_gb_s"):
        all_to_all_s(b, 16, no_nic)


def test_ep_all_to_all_bytes_with_attention_data_parallelism():
    """DP8 + EP8 on 8 x H200: each rank dispatches and combines its 1/8 of the step's tokens, each to 8 experts,
    hidden x 2 bytes each, times the busiest rank's load, on each of DeepSeek-R1's 58 MoE layers."""
    arch = MODELS["deepseek-r1"]
    m = RooflineModel(arch, H200, FACTORS, "fp8", "fp8", 8, ep=8, dp_attention=8, expert_imbalance=1.4)
    tokens = 256
    sent = tokens / 8 * 8 * arch.hidden * 2 * 1.4
    links = Links.of(H200)
    assert m.all_to_all_s(tokens) == pytest.approx(58 * 2 * all_to_all_s(sent, 8, links), rel=1e-12)
    # attention groups of one device need no attention all-reduce; the 3 dense MLP layers gather and scatter
    assert m.allreduce_s(tokens) == pytest.approx(3 * allreduce_s(tokens * arch.hidden * 2, 8, links), rel=1e-12)


def test_roofline_dp_attention_waits_for_the_rank_holding_a_whole_prompt():
    """The roofline prices attention DP's prompt imbalance as the kernel path does: eight 1,024-token prompts (one a
    rank) cost the even split; one 8,192-token prompt sits on one rank, whose attention GEMMs and prompt attention
    over its 8,192 tokens (not 1,024) are what the step waits for."""
    arch = MODELS["deepseek-r1"]
    dp8 = RooflineModel(arch, H200, FACTORS, "fp8", "fp8", 8, ep=8, dp_attention=8)
    spread = StepLoad(8192, 64, 64 * 2000.0, 8 * 1024 * 512.5)
    whole = StepLoad(8192, 64, 64 * 2000.0, 8192 * 4096.5)
    assert dp8.busiest_rank_s(spread) == 0.0
    extra_tokens, extra_pairs = 8192 - 1024, 8192 * 4096.5 * 7 / 8
    expected = (2 * arch.attention_params_b() * 1e9 * extra_tokens / dp8.peak_flops
                + arch.attn_flops_per_pair() * extra_pairs / dp8.attention_peak_flops)
    assert dp8.busiest_rank_s(whole) == pytest.approx(expected, rel=1e-12)
    # on top of the even split, whose own prompt attention already grows with the longer prompt's pairs
    assert dp8.step_s(whole) - expected >= dp8.step_s(spread) > 0.0
    # decode-only steps (the engine's fast-forward) are untouched
    a, b, n = dp8.decode_affine(64, 64 * 2000.0, 64.0, 10)
    assert a == pytest.approx(dp8.step_s(StepLoad(0, 64, 64 * 2000.0, 0.0)), rel=1e-12)


def test_dp_attention_reads_each_mla_latent_once_and_holds_attention_weights_per_group():
    arch = MODELS["deepseek-r1"]
    tp8 = RooflineModel(arch, H200, FACTORS, "fp8", "fp8", 8, expert_parallel=True)
    dp8 = RooflineModel(arch, H200, FACTORS, "fp8", "fp8", 8, ep=8, dp_attention=8)
    kv = arch.kv_bytes_per_token("fp8")
    assert tp8.kv_bytes_per_token_device == kv and dp8.kv_bytes_per_token_device == pytest.approx(kv / 8)
    attention = arch.attention_params_b() * 1e9  # fp8: a byte per parameter
    assert dp8.fixed_weight_bytes - tp8.fixed_weight_bytes == pytest.approx(7 * attention / 8)
    # at a large decode batch with long contexts the latent read dominates, and DP attention wins
    load = StepLoad(decode_seqs=256, kv_tokens_read=256 * 8000)
    assert dp8.step_s(load) < tp8.step_s(load)
    # the memory plan: 8 groups each cache their own sequences' latents
    rule = ENGINES["tensorrt-llm"].memory
    p_tp = plan_memory(arch, H200, "fp8", "fp8", 8, rule=rule)
    p_dp = plan_memory(arch, H200, "fp8", "fp8", 8, rule=rule, dp_attention=8)
    assert p_dp.weight_bytes_per_device - p_tp.weight_bytes_per_device == pytest.approx(7 * attention / 8)
    assert p_dp.kv_capacity_tokens == int(p_dp.kv_bytes_per_device * 8 // kv)


def test_expert_imbalance_defaults_follow_the_published_points():
    assert default_expert_imbalance(1) == 1.0
    assert default_expert_imbalance(32) == pytest.approx(2.564)
    assert default_expert_imbalance(32, eplb=True) == pytest.approx(1.109)
    assert default_expert_imbalance(20) == pytest.approx(1.4 + (2.564 - 1.4) * 12 / 24)
    assert default_expert_imbalance(256) == default_expert_imbalance(72)
    arch = MODELS["deepseek-r1"]
    even = RooflineModel(arch, H200, FACTORS, "fp8", "fp8", 8, ep=8, dp_attention=8, expert_imbalance=1.0)
    skew = RooflineModel(arch, H200, FACTORS, "fp8", "fp8", 8, ep=8, dp_attention=8, expert_imbalance=2.0)
    routed = arch.expert_params_b() * 8 / 256 * 1e9
    assert skew.flops_per_token - even.flops_per_token == pytest.approx(2 * routed / 8)
    assert skew.all_to_all_s(64) > even.all_to_all_s(64)


def test_parallel_degrees_are_validated():
    base = {"name": "d", "model": "deepseek-r1", "pool": "p", "replicas": 1, "tp": 8}
    with pytest.raises(ValueError, match="ep: 3 does not divide tp"):
        Deployment(**base, ep=3)
    with pytest.raises(ValueError, match="dp_attention: 3 does not divide tp"):
        Deployment(**base, dp_attention=3)
    with pytest.raises(ValueError, match="expert_parallel means ep = tp"):
        Deployment(**base, ep=4, expert_parallel=True)
    with pytest.raises(ValueError, match="modelled with pp 1"):
        Deployment(**{**base, "tp": 4}, pp=2, dp_attention=2)
    assert Deployment(**base, expert_parallel=True).ep_degree == 8 and Deployment(**base).ep_degree == 1


def _write(tmp_path, doc):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _r1_doc(sku="h200", count=8, dtype="fp8", **deployment):
    doc = scenario_doc(model="deepseek-r1", dtype=dtype, max_num_seqs=16, horizon_s=4.0, rate=2.0,
                       input_tokens={"kind": "fixed", "value": 300}, output_tokens={"kind": "fixed", "value": 6},
                       **deployment)
    del doc["deployments"][0]["kv_cache_tokens"]
    doc["pools"][0].update(sku=sku, count=count)
    return doc


def test_wide_ep_across_nodes_uses_the_nic_and_is_refused_without_one(tmp_path):
    rs = load_and_resolve(_write(tmp_path, _r1_doc(count=16, tp=16, dp_attention=16, ep=16)))
    m = rs.deployments[0].step_time
    assert isinstance(m, RooflineModel) and m.links.domains(16) == 2
    inside = RooflineModel(MODELS["deepseek-r1"], H200.model_copy(update={"scale_up_domain_devices": 16}), FACTORS,
                           "fp8", "fp8", 16, ep=16, dp_attention=16, expert_imbalance=m.expert_imbalance)
    assert m.all_to_all_s(512) > 3 * inside.all_to_all_s(512)  # 400 Gb/s NICs vs NVLink
    assert (simulate(rs).table.outcome == Outcome.COMPLETED).sum() > 0
    with pytest.raises(InputErrors) as e:
        load_and_resolve(_write(tmp_path, _r1_doc(sku="b300", count=16, tp=16, dp_attention=16, ep=16)))
    assert "deployments[0].tp" in str(e.value) and "spec.scale_out_gb_s" in str(e.value)


def test_ep_on_a_dense_model_and_imbalance_without_ep_are_refused(tmp_path):
    doc = _r1_doc(tp=8, ep=8)
    doc["deployments"][0]["model"] = "llama-3.3-70b"
    with pytest.raises(InputErrors, match=r"deployments\[0\]\.ep: llama-3.3-70b is not a mixture-of-experts"):
        load_and_resolve(_write(tmp_path, doc))
    with pytest.raises(InputErrors, match=r"expert_imbalance: applies to expert parallelism"):
        load_and_resolve(_write(tmp_path, _r1_doc(tp=8, expert_imbalance=1.5)))


@pytest.mark.parametrize("engine", ["sglang", "vllm", "tensorrt-llm"])
@pytest.mark.parametrize("sku,tp", [("h200", 8), ("b200", 4)])
def test_memory_check_accepts_r1_fp8_where_engines_run_it(engine, sku, tp):
    """DeepSeek-R1 FP8 runs on 8 x H200 and on 4 x B200 (SGLang's and vLLM's DeepSeek guides); SGLang's default
    fraction comes from the device's memory, 0.922 on a B200 at TP4 (183,359 MiB less a 13.8 GiB reserve)."""
    spec = load_profile(DIRS, sku, "sku", "sku").spec
    p = plan_memory(MODELS["deepseek-r1"], spec, "fp8", "fp8", tp, rule=ENGINES[engine].memory)
    assert p.fits and p.kv_capacity_tokens > 50_000
    b200 = load_profile(DIRS, "b200", "sku", "sku").spec.memory
    assert sglang_mem_fraction(b200.total_bytes, 8192, 4) == pytest.approx(
        round((183359 - (512 + 8192 * 1.5 + 512 * 2 + 4 / 8 * 1024)) / 183359, 3))


def test_mtp_expected_tokens_and_draft_cost():
    assert expected_tokens_by_position([0.7] * 4) == pytest.approx(expected_tokens_per_step(0.7, 4))
    assert expected_tokens_by_position([0.9, 0.5, 0.2]) == pytest.approx(1 + 0.9 + 0.45 + 0.09)
    arch = MODELS["deepseek-r1"]
    assert mtp_draft_fraction(arch) == pytest.approx((37 / 61 + 129280 * 7168 / 1e9) / 37)
    with pytest.raises(ValueError, match="3 values for k = 2"):
        SpeculativeDecoding(k=2, acceptance_by_position=[0.9, 0.7, 0.3], mtp=True)
    with pytest.raises(ValueError, match="one of them"):
        SpeculativeDecoding(k=2, mtp=True)


def test_mtp_resolves_on_deepseek_and_is_refused_without_a_module(tmp_path):
    spec = {"k": 3, "acceptance_by_position": [0.92, 0.72, 0.36], "mtp": True}
    rs = load_and_resolve(_write(tmp_path, _r1_doc(tp=8, speculative=spec)))
    d = rs.deployments[0]
    assert d.step_time.tokens_per_step == pytest.approx(1 + 0.92 + 0.92 * 0.72 + 0.92 * 0.72 * 0.36)
    assert "speculative MTP k=3" in d.step_time_source
    doc = _r1_doc(tp=8, speculative=spec)
    doc["deployments"][0]["model"] = "kimi-k2"
    with pytest.raises(InputErrors, match=r"speculative\.mtp: kimi-k2 ships no multi-token-prediction module"):
        load_and_resolve(_write(tmp_path, doc))


def test_disaggregated_prefill_on_another_pool_and_shape_moves_kv_over_the_nics(tmp_path):
    """Prefill on 2 x B200 replicas of TP4, decode on one 8 x H200 replica: the prefill replicas resolve on their own
    SKU and shape, the pools count their devices, and each request's KV (input tokens x 35,136 bytes of FP8 latent)
    crosses 4 NIC lanes of 50 GB/s (the smaller replica's devices) plus the NIC latency."""
    doc = _r1_doc(tp=8, disaggregated={"prefill_replicas": 2, "prefill": {"pool": "pre", "tp": 4}})
    doc["pools"].append({"name": "pre", "sku": "b200", "count": 8, "location": "cloud"})
    rs = load_and_resolve(_write(tmp_path, doc))
    d = rs.deployments[0]
    assert d.prefill is not None and d.prefill.profile.sku == "b200" and d.prefill.config.tp == 4
    assert d.kv_link_bytes_per_s == pytest.approx(4 * 50e9) and d.kv_link_latency_s == pytest.approx(1e-5)
    res = simulate(rs)
    t = res.table
    done = t.outcome == Outcome.COMPLETED
    assert done.sum() > 0
    kv = MODELS["deepseek-r1"].kv_bytes_per_token("fp8")
    assert kv == 61 * (512 + 64)
    assert t.kv_transfer_s[done] == pytest.approx(t.input_tokens[done] * kv / 200e9 + 1e-5)
    pools = {r.replica_id: (r.pool, r.role) for r in res.replicas}
    assert sorted(pools.values()) == [("pool", "decode"), ("pre", "prefill"), ("pre", "prefill")]
    doc["pools"][1]["count"] = 4
    with pytest.raises(InputErrors, match="pre"):
        load_and_resolve(_write(tmp_path, doc))


def test_disaggregation_inside_one_nvlink_domain_uses_nvlink(tmp_path):
    doc = _r1_doc(sku="gb200", count=16, tp=8, dtype="fp4",
                  disaggregated={"prefill_replicas": 2, "prefill": {"tp": 4}})
    doc["pools"][0]["location"] = "on_prem"
    d = load_and_resolve(_write(tmp_path, doc)).deployments[0]
    assert d.kv_link_bytes_per_s == pytest.approx(4 * 900e9)
    doc["deployments"][0]["disaggregated"]["prefill"] = {"tp": 4, "dp_attention": 8}
    with pytest.raises(InputErrors, match=r"disaggregated\.prefill: dp_attention: 8 does not divide tp \(4\)"):
        load_and_resolve(_write(tmp_path, doc))


def test_gb200_nvl72_wide_ep_disaggregated_scenario_resolves_to_its_shape():
    rs = load_and_resolve(SCENARIOS_DIR / "frontier-r1-fp4-gb200-nvl72-disagg.yaml")
    d = rs.deployments[0]
    assert d.config.tp == 64 and d.config.dp_attention == 64 and d.config.ep_degree == 64
    assert d.prefill is not None and d.prefill.config.tp == 4 and d.prefill.config.ep_degree == 4
    assert d.kv_link_bytes_per_s == pytest.approx(4 * 900e9)  # 72 devices in one NVLink domain
    # per-rank measured kernels for both shapes: the decode replica's 64 attention ranks, the prefill replicas' 4
    assert isinstance(d.step_time, AttentionRanks) and d.step_time.ranks == 64
    assert isinstance(d.prefill.step_time, AttentionRanks) and d.prefill.step_time.ranks == 4
    assert d.step_time_source.startswith("measured kernels") and "DP-attention 64 EP64" in d.step_time_source
    assert 2 * 4 + 64 == rs.scenario.pools[0].count


def test_attention_ranks_price_the_busiest_rank():
    """A replica of 8 attention ranks steps like its busiest rank: ceil(B / 8) sequences and their KV share."""
    rs = load_and_resolve(SCENARIOS_DIR / "frontier-r1-fp4-gb200-nvl72-disagg.yaml")
    m = rs.deployments[0].prefill.step_time
    assert isinstance(m, AttentionRanks) and m.ranks == 4
    inner = m.inner
    assert m.step_s(StepLoad(0, 10, 10 * 2000.0, 0.0)) == pytest.approx(inner.step_s(StepLoad(0, 3, 3 * 2000.0, 0.0)))
    # four prompts of 1,024 tokens: one on each rank, the even split
    assert m.step_s(StepLoad(4096, 0, 0.0, 4 * 1024 * 512.5)) == pytest.approx(
        inner.step_s(StepLoad(1024, 0, 0.0, 1024 * 512.5)))
    # one prompt of 4,096 tokens lives on one rank: slower than a quarter of it on each, faster than that rank
    # computing the whole step alone (the expert layers' work stays spread over the ranks)
    one = StepLoad(4096, 3, 3 * 2000.0, 4096 * 2048.5)
    even = inner.step_s(StepLoad(1024, 1, 2000.0, 4096 * 2048.5 / 4))
    alone = inner.step_s(StepLoad(4096, 1, 2000.0, 4096 * 2048.5))
    assert even < m.step_s(one) < alone
    assert [(b.prefill_tokens, b.prefill_attn_pairs) for b in m.busiest_loads(one)] == [(4096, 4096 * 2048.5)]
    # nine prompts over four ranks: the busiest holds three (read off the totals, or placed from the chunks)
    nine = StepLoad(9 * 512, 0, 0.0, 9 * 512 * 256.5)
    assert [(b.prefill_tokens, b.prefill_attn_pairs) for b in m.busiest_loads(nine)] == [(3 * 512, 3 * 512 * 256.5)]
    placed = nine._replace(chunks=((512, 0),) * 9)
    assert [(b.prefill_tokens, b.prefill_attn_pairs) for b in m.busiest_loads(placed)] == [(3 * 512, 3 * 512 * 256.5)]
    assert m.step_s(placed) == pytest.approx(m.step_s(nine))
    arch = rs.deployments[0].arch
    assert m.local_share == pytest.approx(arch.attention_params_b() / arch.active_params_b)
    assert 0.25 < m.local_share < 0.35  # DeepSeek-R1: 11.4 B of attention weights among 37 B active
    parts = m.breakdown_s(one)
    assert sum(parts.values()) == pytest.approx(m.step_s(one)) and parts["busiest_rank"] > 0.0
    a, b, n = m.decode_affine(10, 20000.0, 10.0, 50)
    for i in (0, n - 1):
        assert a + b * i == pytest.approx(m.step_s(StepLoad(0, 10, 20000.0 + 10 * i, 0.0)), rel=1e-9)


def test_imbalance_on_the_kernel_path_is_a_warning(tmp_path):
    doc = _r1_doc(tp=8, ep=8, eplb=True)
    doc["deployments"][0]["engine"] = "sglang"
    rs = load_and_resolve(_write(tmp_path, doc))
    assert rs.deployments[0].step_time_source.startswith("measured kernels")
    assert any("expert_imbalance and eplb shape the roofline only" in w for w in rs.warnings)


def test_prefill_replicas_devices_agree_between_cost_and_resolve(tmp_path):
    """The devices the cost and the pool check count for one prefill replica are those its resolved replica holds
    (tp x pp); disaggregation with pipeline parallelism is refused, so pp never splits the two."""
    doc = _r1_doc(sku="h200", count=64, tp=8, disaggregated={"prefill_replicas": 2, "prefill": {"tp": 8}})
    d = load_and_resolve(_write(tmp_path, doc)).deployments[0]
    assert d.prefill is not None
    assert d.config.prefill_devices() == ("pool", d.prefill.config.tp * d.prefill.config.pp) == ("pool", 8)
    doc["deployments"][0]["pp"] = 2
    with pytest.raises(InputErrors, match="without pipeline parallelism"):
        load_and_resolve(_write(tmp_path, doc))


@pytest.mark.parametrize("engine", ["vllm-0.11", "sglang-0.5"])
def test_attention_ranks_price_latent_attention_extends_on_the_slowest_rank(tmp_path, engine):
    """With DP attention each rank runs its own forward batch: the latent-attention form (re-expanding computed
    tokens, or SGLang's absorbed form below 8,192 of them on Hopper) is each rank's, from its own prompts, and the
    step waits for the slowest rank. The engine's steps carry their chunks, so mixed steps are placed as they are."""
    rs = load_and_resolve(_write(tmp_path, _r1_doc(tp=8, dp_attention=8, ep=8, engine=engine)))
    m = rs.deployments[0].step_time
    assert isinstance(m, AttentionRanks) and m.ranks == 8
    assert rs.deployments[0].step_time_source.startswith("measured kernels")
    assert m.absorbed_extend() == m.inner.absorbed_extend() and m.prefix_up_s_per_token() > 0
    new, cached = 500, 4000

    def step(*chunks: tuple[int, int]) -> StepLoad:
        return StepLoad(sum(c for c, _ in chunks), 0, 0.0, sum(c * (d + (c + 1) / 2.0) for c, d in chunks),
                        sum(d for _, d in chunks), chunks)

    def alone(c: int, d: int) -> StepLoad:
        return step((c, d))._replace(chunks=None)

    alone_s, kind = m.inner.mla_extend(alone(new, cached))
    assert alone_s > 0 and kind == ("kv_up" if engine == "vllm-0.11" else "absorbed")
    # eight prompts after cached prefixes: one on each rank; nine: the busiest holds two
    assert m.mla_extend(step(*[(new, cached)] * 8)) == pytest.approx((alone_s, kind))
    assert m.mla_extend(step(*[(new, cached)] * 9)) == pytest.approx(m.inner.mla_extend(step(*[(new, cached)] * 2)))
    assert m.step_s(step(*[(new, cached)] * 8)) == pytest.approx(m.step_s(step(*[(new, cached)] * 8)._replace(
        chunks=None)))  # equal prompts: the totals read right
    # a fresh long prompt beside an agent's turn after a long cached context: each on a rank of its own, the long
    # prompt whole on one (read off the totals as equal prompts, it would spread over the ranks: 3x optimistic)
    mixed = step((8176, 0), (16, 100_000))
    assert m.unfloored_s(mixed) >= m.unfloored_s(step((8176, 0))) - 1e-12
    assert m.mla_extend(mixed) == pytest.approx(m.inner.mla_extend(alone(16, 100_000)))
    # seven fresh prompts and one with a 16-token cached prefix: no rank holds two
    seven = step(*[(1024, 0)] * 7, (1000, 16))
    assert max(b.prefill_tokens for b in m.busiest_loads(seven)) == 1024
    # a few computed tokens on one rank among fresh prompts are still that rank's to price
    few = step(*[(1000, 0)] * 7, (1000, 3))
    assert m.mla_extend(few)[0] == pytest.approx(m.inner.mla_extend(alone(1000, 3))[0]) and m.mla_extend(few)[0] > 0


def test_a_verify_pass_under_dp_attention_spreads_with_its_sequences(tmp_path):
    """MTP's verify pass prices each decoding sequence's draft tokens as prompt tokens after its context; they stay
    with their sequence, spread over the attention ranks (not read off the totals as one long prompt on one rank),
    and a step's real prompts keep their chunks and computed tokens through the speculative model."""
    doc = _r1_doc(tp=8, dp_attention=8, ep=8, engine="sglang-0.5",
                  speculative={"k": 3, "acceptance_by_position": [0.92, 0.72, 0.36], "mtp": True})
    m = load_and_resolve(_write(tmp_path, doc)).deployments[0].step_time
    ranks = m.target
    assert isinstance(ranks, AttentionRanks)
    verify = StepLoad(3 * 16, 16, 16 * 3000.0, 3 * 16 * 3000.0, 0, ())
    even = StepLoad(6, 2, 2 * 3000.0, 3 * 16 * 3000.0 / 8)
    assert ranks.unfloored_s(verify) == pytest.approx(ranks.inner.unfloored_s(even))
    chunks = ((500, 4000),) * 8
    prompts = StepLoad(4000, 16, 16 * 3000.0, 8 * 500 * 4250.5, 8 * 4000, chunks)
    # eight prompts after cached prefixes, one a rank, beside the decodes' verify pass: below the target's own step
    # with the same prompts (which decodes one token a sequence without drafts) plus a quarter
    assert m.step_s(prompts) < 1.25 * ranks.step_s(prompts)


class _Recording:
    """A step time of 10 ms that keeps every load it prices."""

    def __init__(self) -> None:
        self.loads: list[StepLoad] = []

    def step_s(self, load: StepLoad) -> float:
        self.loads.append(load)
        return 0.01

    def __getattr__(self, name):  # the rest of StepTimeModel's interface, as the base class answers it
        from simfactory.hardware.step_time import StepTimeModel

        return getattr(StepTimeModel(), name)


@pytest.mark.parametrize("ranks, steps", [
    (1, [((20, 0),), ((10, 20), (10, 0))]),
    # a rank's share is 5 tokens: the 30-token prompt takes six steps, the 10-token one two beside it (one partial
    # prefill a rank, each rank running its own)
    (4, [((5, 0), (5, 0)), ((5, 5), (5, 5)), ((5, 10),), ((5, 15),), ((5, 20),), ((5, 25),)]),
])
def test_each_attention_rank_prefills_within_its_share_of_the_budget(ranks, steps):
    """With attention data-parallel ranks a prompt's chunk is at most the rank's share of the step's token budget
    (SGLang divides chunked_prefill_size by dp_size; other engines' ranks each have their own budget), and every
    engine step carries its chunks, (tokens, computed before), for the busiest-rank placement."""
    from simfactory.sim.clock import FloatEnvironment
    from simfactory.sim.engine import ReplicaEngine
    from simfactory.sim.queue import WaitingQueue
    from simfactory.sim.requests import RequestTable

    env, table, rec = FloatEnvironment(), RequestTable(), _Recording()
    queue = WaitingQueue(env)
    ReplicaEngine(env, 0, queue, table, rec, max_num_seqs=8, max_num_batched_tokens=20, block_size=16,
                  kv_blocks=1000, enable_chunked_prefill=True, attention_ranks=ranks, exact=True,
                  on_complete=lambda r: None, on_abort=lambda r: None)
    queue.put(table.add(0.0, 0, 0, 30, 2), 0)
    queue.put(table.add(0.0, 0, 0, 10, 2), 0)
    env.run(until=5.0)
    prefills = [load for load in rec.loads if load.prefill_tokens]
    assert [load.chunks for load in prefills] == steps
    for load in prefills:
        assert sum(c for c, _ in load.chunks) == load.prefill_tokens
        assert sum(d for _, d in load.chunks) == load.computed_tokens
        assert load.prefill_attn_pairs == sum(c * (d + (c + 1) / 2) for c, d in load.chunks)


@pytest.mark.parametrize("engine, seqs, budget", [("vllm", 8 * 1024, 8 * 8192), ("tensorrt-llm", 8 * 256, 8 * 8192),
                                                   ("sglang", 8 * 2048, 8192)])
def test_an_engines_defaults_per_attention_rank_scale_with_the_ranks(tmp_path, engine, seqs, budget):
    """vLLM's data-parallel ranks are engine cores of their own and TensorRT-LLM's attention-DP ranks schedule within
    their own max_batch_size and max_num_tokens: a DP8 replica left at the defaults holds 8 ranks' worth; SGLang sizes
    each rank's running requests (8 x 2,048, beyond the 8,192-token prefill budget: its decode batches have none) but
    divides chunked_prefill_size among the ranks. Set values stay the replica's."""
    doc = _r1_doc(tp=8, dp_attention=8, ep=8, engine=engine)
    del doc["deployments"][0]["max_num_seqs"]
    doc["deployments"][0].pop("max_num_batched_tokens", None)
    dp = load_and_resolve(_write(tmp_path, doc)).deployments[0]
    c = dp.config
    assert (c.max_num_seqs, c.max_num_batched_tokens) == (seqs, budget)
    plain = _r1_doc(tp=8, engine=engine)
    del plain["deployments"][0]["max_num_seqs"]
    plain["deployments"][0].pop("max_num_batched_tokens", None)
    tp8 = load_and_resolve(_write(tmp_path, plain)).deployments[0]
    p = tp8.config
    if engine != "sglang":  # a rank profiles its own budget: the activation peak a device holds is a TP8 replica's
        assert dp.memory.activation_bytes_per_device == pytest.approx(tp8.memory.activation_bytes_per_device)
        assert dp.memory.activation_bytes_per_device > 0
    assert p.max_num_batched_tokens * (8 if engine != "sglang" else 1) == budget
    assert p.max_num_seqs * 8 == seqs or (engine == "sglang" and p.max_num_seqs == 2048)
    doc["deployments"][0].update(max_num_seqs=512, max_num_batched_tokens=4096)
    c = load_and_resolve(_write(tmp_path, doc)).deployments[0].config
    assert (c.max_num_seqs, c.max_num_batched_tokens) == (512, 4096)


def test_only_engines_that_count_decodes_in_the_budget_hold_max_num_seqs_to_it(tmp_path):
    """vLLM counts a step's decodes in max_num_batched_tokens and refuses more sequences than it; SGLang's
    chunked_prefill_size bounds prefill batches only, so 1,024 running requests beside a 512-token budget all decode
    each step (a decode step of all of them, no prefill in it)."""
    doc = _r1_doc(tp=8, engine="vllm")
    doc["deployments"][0].update(max_num_seqs=1024, max_num_batched_tokens=512)
    with pytest.raises(InputErrors) as e:
        load_and_resolve(_write(tmp_path, doc))
    assert "deployments[0].max_num_batched_tokens" in str(e.value)
    assert "must be >= max_num_seqs (1024)" in str(e.value)
    doc["deployments"][0]["engine"] = "sglang"
    doc["traffic"] = {"arrival": {"process": "closed", "concurrency": 600},
                      "classes": [{"name": "c", "target": doc["deployments"][0]["name"],
                                   "input_tokens": {"kind": "fixed", "value": 64},
                                   "output_tokens": {"kind": "fixed", "value": 200}}]}
    doc["sim"] = {"horizon_s": 30, "warmup_s": 0, "timeline_resolution_s": 1.0}
    res = simulate(load_and_resolve(_write(tmp_path, doc)))
    assert max(max(row) for row in res.timelines.running) > 512  # more running than the budget has tokens
    assert (res.table.outcome == Outcome.COMPLETED).sum() > 600
    doc["sim"]["exact"] = True  # fast-forward's decode stretches agree with stepping every iteration here too
    assert_fast_forward_matches(simulate(load_and_resolve(_write(tmp_path, doc))), res)


def test_without_chunked_prefill_a_request_must_fit_one_ranks_budget(tmp_path):
    """Without chunked prefill a request's prompt and answer must fit one step's budget (vLLM refuses a longer one):
    with attention data-parallel ranks, one rank's share of it. Every request ends with a recorded outcome."""
    doc = _r1_doc(tp=8, dp_attention=8, ep=8, engine="vllm")
    doc["deployments"][0].update(max_num_seqs=64, max_num_batched_tokens=2048, enable_chunked_prefill=False)
    rs = load_and_resolve(_write(tmp_path, doc))  # 300 + 6 tokens a request: above a rank's 256
    t = simulate(rs).table
    assert len(t.outcome) > 0 and (t.outcome == Outcome.REJECTED_TOO_LONG).all()
    doc["deployments"][0].update(max_num_batched_tokens=8 * 512)
    t = simulate(load_and_resolve(_write(tmp_path, doc))).table
    assert (t.outcome == Outcome.COMPLETED).sum() > 0 and not (t.outcome == Outcome.REJECTED_TOO_LONG).any()


@pytest.mark.parametrize("engine, warned", [("vllm-0.6", True), ("tensorrt-llm-0", True), ("nim", True),
                                            ("vllm", False), ("tensorrt-llm", False), ("sglang-0.5", False)])
def test_dp_attention_on_an_engine_without_it_is_warned(tmp_path, engine, warned):
    rs = load_and_resolve(_write(tmp_path, _r1_doc(tp=8, dp_attention=8, ep=8, engine=engine)))
    said = [w for w in rs.warnings if "no attention data parallelism" in w]
    assert bool(said) == warned
    assert all("deployments[0].dp_attention" in w and engine in w for w in said)


def test_sglang_pads_each_attention_ranks_decode_batch_to_its_attention_tp_size(tmp_path):
    """SGLang's decode CUDA graphs with DP attention hold batches that are multiples of an attention rank's TP size,
    every rank padded to the largest (engines.yaml dp_attention_graph_padding): with --tp 8 --dp 4 one request
    decodes as two rows on each rank, so the step pays the per-token work (GEMMs, LM head) of two; with DP8 (one
    device a rank) or on an engine without the rule, none is added. Fast-forward and the breakdown agree with it."""
    def model(engine: str, dp: int, ep: int = 1):
        doc = _r1_doc(sku="b200", tp=8, dp_attention=dp, ep=ep)
        doc["deployments"][0].update(engine=engine, kv_dtype="bf16")
        return load_and_resolve(_write(tmp_path, doc)).deployments[0].step_time

    m = model("sglang-0.5", 4)
    assert isinstance(m, AttentionRanks) and m.ranks == 4 and m.pad_multiple == 2
    inner = m.inner
    one = StepLoad(0, 1, 1_000.0, 0.0)
    padded = inner.token_work_s(2) - inner.token_work_s(1)
    assert padded > 0.0
    assert m.step_s(one) == pytest.approx(inner.step_s(one) + padded, rel=1e-12)
    # nine sequences: the busiest rank holds three, run as four; eight: two a rank, no padding
    assert m.step_s(StepLoad(0, 9, 9_000.0, 0.0)) == pytest.approx(
        inner.step_s(StepLoad(0, 3, 3_000.0, 0.0)) + inner.token_work_s(4) - inner.token_work_s(3), rel=1e-12)
    assert m.step_s(StepLoad(0, 8, 8_000.0, 0.0)) == pytest.approx(inner.step_s(StepLoad(0, 2, 2_000.0, 0.0)))
    parts = m.breakdown_s(one)
    assert sum(parts.values()) == pytest.approx(m.step_s(one)) and parts["busiest_rank"] == pytest.approx(0.0)
    a, b, n = m.decode_affine(9, 9_000.0, 9.0, 40)
    for i in (0, n - 1):
        assert a + b * i == pytest.approx(m.step_s(StepLoad(0, 9, 9_000.0 + 9 * i, 0.0)), rel=1e-9)
    # a step that prefills runs eagerly, unpadded; DP8 has one device a rank; TensorRT-LLM has no such rule
    prefill = StepLoad(512, 1, 1_000.0, 512 * 256.5)
    assert m.step_s(prefill) == pytest.approx(AttentionRanks(inner, 4, m.local_share).step_s(prefill))
    assert model("sglang-0.5", 8, ep=8).pad_multiple == 1
    assert model("tensorrt-llm", 4).pad_multiple == 1
