"""An engine whose default token budget depends on the device (SGLang sizes chunked_prefill_size from the GPU's
memory: 8,192 tokens on an H100 or H200, 16,384 on a B200 or MI300X) gives each deployment the budget of its pool's
device; a scenario's own budget wins; tiers that do not cover every device are refused."""

from __future__ import annotations

import pytest
from conftest import scenario_doc
from pydantic import ValidationError

from simfactory.config.profile import EngineDefaults
from simfactory.config.scenario import Scenario
from simfactory.resolve import resolve


def budget(sku: str, engine: str = "sglang", **deployment) -> int:
    doc = scenario_doc(engine=engine, **deployment)
    doc["pools"][0]["sku"] = sku
    del doc["deployments"][0]["max_num_batched_tokens"]
    return resolve(Scenario.model_validate(doc)).deployments[0].config.max_num_batched_tokens


@pytest.mark.parametrize("sku, tokens", [("h100-sxm", 8192), ("h200", 8192), ("b200", 16384), ("mi300x", 16384),
                                         ("l40s", 4096)])
def test_sglang_budget_follows_the_devices_memory(sku, tokens):
    assert budget(sku) == tokens
    assert budget(sku, engine="sglang-0.5") == tokens


def test_an_engine_without_tiers_and_a_scenarios_own_budget_are_unchanged():
    assert budget("b200", engine="vllm") == 8192
    doc = scenario_doc(engine="sglang", max_num_batched_tokens=4096)
    doc["pools"][0]["sku"] = "b200"
    assert resolve(Scenario.model_validate(doc)).deployments[0].config.max_num_batched_tokens == 4096


def test_tiers_are_the_first_that_fits_and_must_cover_every_device():
    d = EngineDefaults.model_validate({"max_num_batched_tokens_by_memory": [
        {"below_gib": 40, "max_num_batched_tokens": 1024}, {"below_gib": None, "max_num_batched_tokens": 2048}]})
    assert d.token_budget(39.9 * 2**30) == 1024 and d.token_budget(40 * 2**30) == 2048
    assert d.token_budget(None) is None  # an unknown device: the plain default (none here)
    for bad in ([{"below_gib": 40, "max_num_batched_tokens": 1024}],  # no last tier
                [{"below_gib": 80, "max_num_batched_tokens": 1}, {"below_gib": 40, "max_num_batched_tokens": 2},
                 {"below_gib": None, "max_num_batched_tokens": 3}],  # out of order
                [{"below_gib": None, "max_num_batched_tokens": 1}, {"below_gib": None, "max_num_batched_tokens": 2}],
                []):
        with pytest.raises(ValidationError, match="max_num_batched_tokens_by_memory"):
            EngineDefaults.model_validate({"max_num_batched_tokens_by_memory": bad})
