"""Tokens per KV block are the engine's own: vLLM 16, but 64 with FlashMLA (latent attention on Hopper) and 128 with
CUTLASS MLA (on a B200); SGLang 1, but 64 on Blackwell, where its default attention backends take no smaller page;
TensorRT-LLM's LLM API 32. A scenario's own block_size wins; an engine that names none keeps 16."""

from __future__ import annotations

import pytest
from conftest import scenario_doc
from pydantic import ValidationError

from simfactory.config.profile import BlockSizeRule, EngineDefaults
from simfactory.config.scenario import Scenario
from simfactory.resolve import resolve


def block(sku: str, engine: str, model: str = "llama-3.1-8b", **deployment) -> tuple[int, int]:
    """(block_size, KV blocks) of a one-replica deployment of `model` on `sku` under `engine`."""
    doc = scenario_doc(engine=engine, model=model, dtype="fp8", **deployment)
    doc["pools"][0]["sku"] = sku
    doc["pools"][0]["count"] = deployment.get("tp", 1)
    rd = resolve(Scenario.model_validate(doc)).deployments[0]
    return rd.config.block_size, rd.kv_blocks


@pytest.mark.parametrize("engine, sku, model, tp, size", [
    ("vllm", "h200", "llama-3.1-8b", 1, 16), ("vllm-0.11", "h100-sxm", "llama-3.1-8b", 1, 16),
    ("vllm", "h200", "deepseek-r1", 8, 64), ("vllm-0.11", "b200", "deepseek-r1", 8, 128),
    ("vllm", "l40s", "llama-3.1-8b", 1, 16), ("vllm-0.6", "h100-sxm", "llama-3.1-8b", 1, 16),
    ("sglang", "h100-sxm", "llama-3.1-8b", 1, 1), ("sglang", "b200", "llama-3.1-8b", 1, 64),
    ("sglang-0.5", "b200", "deepseek-r1", 8, 64), ("sglang-0.5", "h200", "deepseek-r1", 8, 1),
    ("tensorrt-llm", "h100-sxm", "llama-3.1-8b", 1, 32), ("tensorrt-llm-0", "h100-sxm", "llama-3.1-8b", 1, 16),
])
def test_each_engine_allocates_its_own_block_on_each_gpu(engine, sku, model, tp, size):
    got, blocks = block(sku, engine, model, tp=tp)
    assert got == size
    assert blocks == 1_000_000 // size  # scenario_doc's KV pool of a million tokens, in whole blocks


def test_a_scenarios_own_block_size_wins():
    assert block("b200", "sglang", block_size=16)[0] == 16
    assert block("h200", "vllm", "deepseek-r1", tp=8, block_size=32)[0] == 32


def test_rules_hold_by_gpu_and_attention_kind_first_one_first():
    d = EngineDefaults(block_size=16, block_size_rules=[
        BlockSizeRule(skus=["h200"], latent_attention=True, block_size=64),
        BlockSizeRule(skus=["h200", "b200"], block_size=128)])
    assert d.kv_block_size("h200", latent_attention=True) == 64
    assert d.kv_block_size("h200", latent_attention=False) == 128
    assert d.kv_block_size("b200", latent_attention=True) == 128
    assert d.kv_block_size("l40s", latent_attention=True) == 16
    assert d.kv_block_size(None, latent_attention=False) == 16
    assert EngineDefaults().kv_block_size("h200", latent_attention=False) is None
    for bad in ({"skus": [], "block_size": 64}, {"skus": ["h200"], "block_size": 0},
                {"skus": ["h200"], "block_size": 10**6}):
        with pytest.raises(ValidationError):
            BlockSizeRule.model_validate(bad)
