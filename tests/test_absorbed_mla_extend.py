"""SGLang runs a DeepSeek prefill batch whose prompts have some computed tokens (a cached prefix, earlier chunks),
fewer than 8,192 in all, in multi-head latent attention's absorbed form on Hopper (FA3), and from 0.5.10 every batch
of at most 2,048 tokens that runs as a piecewise CUDA graph: 3.4x the attention work per query-key pair of the MHA
form the kernel tables time (engines.yaml kernels.absorbed_mla_extend)."""

from __future__ import annotations

import math

import pytest
from conftest import resolved_deployment, shipped_engines

from simfactory.hardware.kernels import KernelStepTime
from simfactory.hardware.step_time import StepLoad, StepTimeModel
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.queue import WaitingQueue
from simfactory.sim.requests import RequestTable

ENGINES = shipped_engines()
KERNEL_S, PER_PAIR_S = 0.01, 1e-4


def test_the_absorbed_form_does_3_4x_the_work_per_pair_for_deepseek():
    from simfactory.config.loader import load_model_file
    from simfactory.config.profile import ModelCatalog
    from simfactory.paths import PROFILES_DIR

    models = {m.id: m for m in load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml").models}
    rule = ENGINES["sglang-0.5"].kernels.absorbed_mla_extend[0]
    assert rule.ratio(models["deepseek-r1"]) == pytest.approx((2 * 512 + 64) / (128 + 64 + 128))
    assert rule.ratio(models["llama-3.1-70b"]) == 1.0  # not latent attention
    assert rule.below_prefix_tokens == 8192 and set(rule.skus) == {"h100-sxm", "h200"}
    assert ENGINES["sglang-0.5.8"].kernels.absorbed_mla_extend == ENGINES["sglang-0.5"].kernels.absorbed_mla_extend
    hopper, blackwell = ENGINES["sglang"].kernels.absorbed_mla_extend  # 0.5.10: piecewise graphs up to 2,048 tokens
    assert (hopper.below_prefix_tokens, hopper.graph_max_tokens) == (8192, 2048)
    assert (blackwell.below_prefix_tokens, blackwell.graph_max_tokens) == (None, 2048)  # trtllm_mla: MHA form above


@pytest.mark.parametrize("engine, sku, model, below, graph_max", [
    ("sglang-0.5", "h200", "deepseek-r1", 8192, 0),  # FA3: the absorbed form below 8,192 computed tokens
    ("sglang-0.5", "b200", "deepseek-r1", 0, 0),  # trtllm_mla: always the MHA form
    ("sglang-0.5", "h200", "llama-3.1-70b", 0, 0),  # grouped-query attention: nothing to absorb
    ("sglang", "h200", "deepseek-r1", 8192, 2048),  # 0.5.10: and piecewise-graph prefills of up to 2,048 tokens
    ("sglang", "b200", "deepseek-r1", 0, 2048),
])
def test_resolve_prices_the_absorbed_form_where_sglang_dispatches_to_it(engine, sku, model, below, graph_max):
    d = resolved_deployment(engine, sku, model, 8, "fp8")
    step = d.step_time
    s_per_pair, *limits = step.absorbed_extend()
    expected = bool(below or graph_max)
    assert (s_per_pair > 0, limits) == (expected, [below, graph_max])
    assert ("absorbed form" in d.step_time_source) == expected
    if expected:
        assert isinstance(step, KernelStepTime)
        # the tables' MHA-form rate it is priced from is a physical one: the H200's FA3 at 20-100% of its BF16 peak
        arch = d.arch
        mha_flops_per_pair = arch.heads // 8 * 2 * (arch.qk_nope_head_dim + arch.qk_rope_head_dim + arch.v_head_dim)
        rate = mha_flops_per_pair * arch.layers / (s_per_pair / (2.4))  # 3.4 - 1: the extra per pair
        assert 0.2 * d.profile.spec.bf16_tflops * 1e12 < rate < d.profile.spec.bf16_tflops * 1e12
        # a whole 8,192-token prompt's attention, absorbed, costs at least as much again as the prompt attention the
        # tables give it (the MHA form's, projections included)
        pairs = 8192 * 8193 / 2
        whole = step.breakdown_s(StepLoad(8192, 0, 0.0, pairs))["prefill_attention"]
        assert s_per_pair * pairs > 0.5 * whole


def test_without_piecewise_graphs_only_the_prefix_rule_holds(tmp_path):
    """Expert parallelism turns SGLang 0.5.10's piecewise graphs off (its prefills launch eagerly): no graph rule."""
    import yaml

    from simfactory.resolve import load_and_resolve
    from conftest import scenario_doc

    doc = scenario_doc(engine="sglang")
    doc["pools"][0].update(sku="h200", count=8)
    doc["deployments"][0].update(model="deepseek-r1", tp=8, dtype="fp8", replicas=1, expert_parallel=True)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    d = load_and_resolve(tmp_path / "s.yaml").deployments[0]
    assert d.step_time.prefill_launch_s() > 0  # eager
    assert d.step_time.absorbed_extend()[1:] == (8192, 0)
    # on a B200 the rule is the graphs' alone (trtllm_mla takes the MHA form for prefixes): eager, no batch is absorbed,
    # and the label says nothing of the absorbed form
    doc["pools"][0].update(sku="b200")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    d = load_and_resolve(tmp_path / "s.yaml").deployments[0]
    assert d.step_time.prefill_launch_s() > 0 and d.step_time.absorbed_extend()[0] == 0.0
    assert "absorbed" not in d.step_time_source and d.step_time.prefix_up_s_per_token() > 0


class _Absorbing(StepTimeModel):
    def __init__(self, below: float, graph_max: float, up_s: float = 0.0) -> None:
        self.below, self.graph_max, self.up_s = below, graph_max, up_s

    def step_s(self, load: StepLoad) -> float:
        return KERNEL_S

    def absorbed_extend(self) -> tuple[float, float, float]:
        return (PER_PAIR_S if self.below or self.graph_max else 0.0), self.below, self.graph_max

    def prefix_up_s_per_token(self) -> float:
        return self.up_s


def _first_token_s(below: float, exact: bool, graph_max: float = 0.0, up_s: float = 0.0) -> float:
    """A 30-token prompt alone, in a 20-token budget: chunks of 20 (nothing computed) and 10 (20 computed)."""
    env, table = FloatEnvironment(), RequestTable()
    queue = WaitingQueue(env)
    ReplicaEngine(env, 0, queue, table, _Absorbing(below, graph_max, up_s), max_num_seqs=8, max_num_batched_tokens=20,
                  block_size=16, kv_blocks=1000, enable_chunked_prefill=True, exact=exact,
                  on_complete=lambda r: None, on_abort=lambda r: None)
    queue.put(table.add(0.0, 0, 0, 30, 5), 0)
    env.run(until=5.0)
    return float(table.first_token_s[0])


@pytest.mark.parametrize("exact", [True, False])
def test_a_chunk_with_computed_tokens_below_the_threshold_pays_for_its_pairs(exact):
    pairs = 10 * (20 + 11 / 2)  # the second chunk's query-key pairs, its 20 computed tokens' keys included
    assert _first_token_s(0.0, exact) == pytest.approx(2 * KERNEL_S)  # never absorbed
    assert _first_token_s(8192, exact) == pytest.approx(2 * KERNEL_S + PER_PAIR_S * pairs)
    assert _first_token_s(math.inf, exact) == pytest.approx(2 * KERNEL_S + PER_PAIR_S * pairs)
    assert _first_token_s(20, exact) == pytest.approx(2 * KERNEL_S)  # 20 computed: back to the MHA form
    first_pairs = 20 * 21 / 2  # the first chunk's: nothing computed, but 20 tokens fit a 20-token graph
    assert _first_token_s(0.0, exact, graph_max=20) == pytest.approx(2 * KERNEL_S + PER_PAIR_S * (first_pairs + pairs))
    assert _first_token_s(0.0, exact, graph_max=19) == pytest.approx(2 * KERNEL_S + PER_PAIR_S * pairs)



@pytest.mark.parametrize("exact", [True, False])
def test_the_mha_form_reexpands_computed_tokens_and_the_absorbed_form_does_not(exact):
    """The second chunk has 20 computed tokens: in the MHA form it re-expands them from the cached latent (1 ms a
    token here); a batch in the absorbed form reads the latent as it is."""
    up_s = 1e-3
    assert _first_token_s(0.0, exact, up_s=up_s) == pytest.approx(2 * KERNEL_S + 20 * up_s)
    pairs = 10 * (20 + 11 / 2)
    assert _first_token_s(8192, exact, up_s=up_s) == pytest.approx(2 * KERNEL_S + PER_PAIR_S * pairs)


def test_reexpanding_a_cached_latent_token_costs_its_share_of_a_prompt_token():
    """DeepSeek-R1 at TP8: the KV up projection is 5.7% of the attention block's projections a token (512 x 16 heads x
    (128 + 128) of 7,168 x 1,536 + 1,536 x 16 x 192 + 7,168 x 576 + that + 16 x 128 x 7,168), and the seconds the
    tables give it imply an FP8 GEMM rate between 10% and 100% of the GPU's peak; no such term for a GQA model."""
    from simfactory.config.loader import load_model_file
    from simfactory.config.profile import ModelCatalog
    from simfactory.paths import PROFILES_DIR

    models = {m.id: m for m in load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml").models}
    r1 = models["deepseek-r1"]
    up = 512 * 16 * 256
    assert r1.mla_kv_up_share(8) == pytest.approx(up / (7168 * 1536 + 1536 * 16 * 192 + 7168 * 576 + up + 16 * 128 * 7168))
    assert models["llama-3.1-70b"].mla_kv_up_share(8) == 0.0
    for engine, sku in (("sglang-0.5", "h200"), ("vllm-0.11", "h200"), ("tensorrt-llm", "b200")):
        d = resolved_deployment(engine, sku, "deepseek-r1", 8, "fp8")
        rate = 2 * up * r1.layers / d.step_time.prefix_up_s_per_token()
        assert 0.1 * d.profile.spec.fp8_tflops * 1e12 < rate < d.profile.spec.fp8_tflops * 1e12, (engine, sku)
    assert resolved_deployment("vllm", "h200", "llama-3.1-70b", 8, "fp8").step_time.prefix_up_s_per_token() == 0.0
