"""An engine whose default token budget depends on the device (SGLang sizes chunked_prefill_size from the GPU's
memory: 8,192 tokens on an H100 or H200, 16,384 on a B200 or MI300X; vLLM V1 its budget and batch size, A100s
excepted) gives each deployment the defaults of its pool's device; a scenario's own values win; tiers that do not
cover every device are refused."""

from __future__ import annotations

import pytest
from conftest import scenario_doc
from pydantic import ValidationError

from simfactory.config.profile import EngineDefaults
from simfactory.config.scenario import Scenario
from simfactory.resolve import resolve


def limits(sku: str, engine: str = "sglang", **deployment) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) a deployment that leaves both out gets on this SKU."""
    doc = scenario_doc(engine=engine, **deployment)
    doc["pools"][0]["sku"] = sku
    for name in ("max_num_batched_tokens", "max_num_seqs"):
        if name not in deployment:
            del doc["deployments"][0][name]
    cfg = resolve(Scenario.model_validate(doc)).deployments[0].config
    return cfg.max_num_batched_tokens, cfg.max_num_seqs


def budget(sku: str, engine: str = "sglang", **deployment) -> int:
    return limits(sku, engine, **deployment)[0]


@pytest.mark.parametrize("sku, tokens", [("h100-sxm", 8192), ("h200", 8192), ("b200", 16384), ("mi300x", 16384),
                                         ("l40s", 4096)])
def test_sglang_budget_follows_the_devices_memory(sku, tokens):
    assert budget(sku) == tokens
    assert budget(sku, engine="sglang-0.5") == tokens


@pytest.mark.parametrize("sku, tokens, seqs", [("h100-sxm", 8192, 1024), ("h200", 8192, 1024), ("b200", 8192, 1024),
                                               ("mi300x", 8192, 1024), ("a100-80gb", 2048, 256), ("l40s", 2048, 256)])
def test_vllm_v1s_budget_and_batch_follow_the_device_and_spare_a100s(sku, tokens, seqs):
    """vLLM V1's API server: 8,192 tokens and 1,024 sequences on 70 GiB or more, except A100s (by name: an 80 GB
    A100 keeps 2,048 and 256, as smaller GPUs do); a scenario's own max_num_seqs wins."""
    assert limits(sku, engine="vllm") == limits(sku, engine="vllm-0.11") == (tokens, seqs)
    assert limits(sku, engine="vllm", max_num_seqs=64) == (tokens, 64)


def test_a_left_out_batch_never_exceeds_the_budget_and_a_pair_that_cannot_run_is_refused():
    """vLLM clamps its default max_num_seqs to the token budget (min(1,024, 512) on an H100); a batch the device's
    default budget cannot cover (4,096 sequences, 2,048 tokens on an A100) is refused naming the field."""
    from simfactory.errors import InputErrors

    assert limits("h100-sxm", engine="vllm", max_num_batched_tokens=512) == (512, 512)
    with pytest.raises(InputErrors, match=r"max_num_seqs: max_num_batched_tokens \(2048 \(the vllm preset's on this "
                       r"device; set max_num_batched_tokens\)\) must be >= max_num_seqs \(4096\)"):
        limits("a100-80gb", engine="vllm", max_num_seqs=4096)
    with pytest.raises(InputErrors, match=r"max_num_batched_tokens: max_num_batched_tokens \(512\) must be"):
        limits("a100-80gb", engine="vllm", max_num_seqs=1024, max_num_batched_tokens=512)
    # SGLang's budget bounds prefill batches only, unless the deployment schedules decode-first
    assert limits("h100-sxm", engine="sglang", max_num_seqs=1024, max_num_batched_tokens=512) == (512, 1024)
    with pytest.raises(InputErrors, match=r"sglang with schedule decode_first counts a step's decodes"):
        limits("h100-sxm", engine="sglang", max_num_seqs=1024, max_num_batched_tokens=512, schedule="decode_first")


def test_disaggregated_prefill_on_another_device_takes_that_devices_defaults():
    """Decode on H100s, prefill on A100s: each side gets its own device's vLLM defaults."""
    doc = scenario_doc(engine="vllm")
    dep = doc["deployments"][0]
    for name in ("max_num_batched_tokens", "max_num_seqs"):
        del dep[name]
    doc["pools"] = [{"name": "pool", "sku": "h100-sxm", "count": 1, "location": "cloud"},
                    {"name": "pre", "sku": "a100-80gb", "count": 1, "location": "cloud"}]
    dep["disaggregated"] = {"prefill_replicas": 1, "prefill": {"pool": "pre"}, "kv_link_gb_s": 50.0}
    rd = resolve(Scenario.model_validate(doc)).deployments[0]
    assert (rd.config.max_num_batched_tokens, rd.config.max_num_seqs) == (8192, 1024)
    assert rd.prefill is not None
    assert (rd.prefill.config.max_num_batched_tokens, rd.prefill.config.max_num_seqs) == (2048, 256)


def test_an_engine_without_tiers_and_a_scenarios_own_budget_are_unchanged():
    assert limits("b200", engine="vllm-0.6") == (8192, 256)
    doc = scenario_doc(engine="sglang", max_num_batched_tokens=4096)
    doc["pools"][0]["sku"] = "b200"
    assert resolve(Scenario.model_validate(doc)).deployments[0].config.max_num_batched_tokens == 4096


def test_tiers_are_the_first_that_fits_and_must_cover_every_device():
    d = EngineDefaults.model_validate({"max_num_batched_tokens_by_memory": [
        {"below_gib": 40, "max_num_batched_tokens": 1024}, {"below_gib": None, "max_num_batched_tokens": 2048}]})
    assert d.token_budget(39.9 * 2**30) == 1024 and d.token_budget(40 * 2**30) == 2048
    assert d.token_budget(None) is None  # an unknown device: the plain default (none here)
    assert d.batch_size(80 * 2**30) is None  # a tier that names no batch size: the plain default
    named = EngineDefaults.model_validate({"max_num_seqs": 8, "first_tier_skus": ["old-gpu"],
                                           "max_num_batched_tokens_by_memory": [
        {"below_gib": 40, "max_num_batched_tokens": 1024, "max_num_seqs": 16},
        {"below_gib": None, "max_num_batched_tokens": 2048}]})
    assert named.batch_size(20 * 2**30) == 16 and named.batch_size(80 * 2**30) == 8
    assert named.token_budget(80 * 2**30, "old-gpu") == 1024 and named.batch_size(80 * 2**30, "old-gpu") == 16
    for bad in ([{"below_gib": 40, "max_num_batched_tokens": 1024}],  # no last tier
                [{"below_gib": 80, "max_num_batched_tokens": 1}, {"below_gib": 40, "max_num_batched_tokens": 2},
                 {"below_gib": None, "max_num_batched_tokens": 3}],  # out of order
                [{"below_gib": None, "max_num_batched_tokens": 1}, {"below_gib": None, "max_num_batched_tokens": 2}],
                []):
        with pytest.raises(ValidationError, match="max_num_batched_tokens_by_memory"):
            EngineDefaults.model_validate({"max_num_batched_tokens_by_memory": bad})
