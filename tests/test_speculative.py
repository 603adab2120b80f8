"""Speculative decoding: the expected-tokens formula, no free lunch at acceptance 0, and the crossover."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from simfactory.api import run
from simfactory.config.profile import RooflineStepTime, Spec
from simfactory.hardware.speculative import SpeculativeModel, expected_tokens_per_step
from simfactory.hardware.step_time import RooflineModel, StepLoad
from simfactory.paths import DEFAULT_SCENARIO, PROFILES_DIR
from simfactory.resolve import load_models, search_dirs

MODELS = load_models(search_dirs(None, "hardware_profiles", PROFILES_DIR))
H100 = Spec(hbm_gb=80, hbm_tb_s=3.35, bf16_tflops=989.4, tdp_w=700, source="test", as_of="2026")
F = RooflineStepTime(compute_efficiency=0.55, memory_efficiency=0.8, step_overhead_s=0.003)
TARGET = RooflineModel(MODELS["llama-3.1-8b"], H100, F, "bf16", "bf16", 1)
# the draft's passes run inside the target's engine iteration: kernel time only, no per-step overhead
DRAFT = RooflineModel(MODELS["llama-3.2-1b"], H100, F.model_copy(update={"step_overhead_s": 0.0}), "bf16", "bf16", 1)


@pytest.mark.parametrize("a, k, expected", [(0.0, 4, 1.0), (0.5, 1, 1.5), (0.5, 3, 1.875), (0.8, 4, 3.3616),
                                            (1.0, 5, 6.0)])
def test_expected_tokens_per_step_closed_form(a, k, expected):
    assert expected_tokens_per_step(a, k) == pytest.approx(expected)
    # the closed form is the mean of the geometric acceptance process: sum_{i=0..k} a^i
    assert expected_tokens_per_step(a, k) == pytest.approx(sum(a**i for i in range(k + 1)))


@given(k=st.integers(1, 8), batch=st.integers(1, 512), ctx=st.integers(1, 8000), frac=st.floats(0, 0.5))
def test_acceptance_zero_is_never_faster(k, batch, ctx, frac):
    load = StepLoad(decode_seqs=batch, kv_tokens_read=batch * ctx)
    for spec in (SpeculativeModel(TARGET, k, 0.0, draft=DRAFT), SpeculativeModel(TARGET, k, 0.0, draft_fraction=frac)):
        assert spec.step_s(load) >= TARGET.step_s(load) - 1e-15


def test_speculation_helps_at_small_batch_and_hurts_at_large_batch():
    spec = SpeculativeModel(TARGET, 4, 0.7, draft=DRAFT)
    per_token = lambda b: spec.step_s(StepLoad(decode_seqs=b, kv_tokens_read=b * 1000))  # noqa: E731
    plain = lambda b: TARGET.step_s(StepLoad(decode_seqs=b, kv_tokens_read=b * 1000))  # noqa: E731
    assert per_token(1) < 0.6 * plain(1)
    assert per_token(512) > plain(512)
    crossover = next(b for b in range(1, 513) if per_token(b) >= plain(b))
    assert 8 < crossover < 512


def test_speculative_scenario_lowers_tpot_at_light_load(tmp_path):
    doc = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    doc["traffic"]["arrival"]["rate_per_s"] = 2
    doc["sim"]["horizon_s"] = 120
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(doc))
    doc["deployments"][0]["speculative"] = {"k": 4, "acceptance": 0.7, "draft_model": "llama-3.2-1b"}
    fast = tmp_path / "spec.yaml"
    fast.write_text(yaml.safe_dump(doc))
    plain = run(base).summary["latency_s"]["tpot"]["p50"]
    spec = run(fast)
    assert spec.summary["latency_s"]["tpot"]["p50"] < 0.7 * plain
    assert "speculative k=4" in spec.summary["deployments"][0]["step_time_source"]
    # the draft's weights take memory from the KV cache
    assert spec.summary["deployments"][0]["kv_capacity_tokens"] < run(base).summary["deployments"][0]["kv_capacity_tokens"]
