"""Sweeps, plans, shards and time windows edit a scenario as a document and validate it again; what the scenario
left out must stay left out, or an engine preset's defaults (TensorRT-LLM's kv_admission: full_sequence) are lost
to the schema's (a full model_dump wrote every field, so the round trip had made them all "set")."""

from __future__ import annotations

import pytest

from simfactory.config.loader import validate
from simfactory.config.scenario import LEFT_OUT_MATTERS, Scenario, scenario_document
from simfactory.paths import SCENARIOS_DIR
from simfactory.plan.overrides import apply_overrides
from simfactory.plan.grid import SweepSpec
from simfactory.plan.sweep import plan_jobs
from simfactory.fleet.windows import plan_windows, window_scenario
from simfactory.resolve import load_scenario, resolve
from simfactory.resolve.shards import shard_scenario


def left_out(sc: Scenario) -> list[tuple[str, str]]:
    """(where, field) of every field in LEFT_OUT_MATTERS the scenario left out."""
    out = []
    for i, d in enumerate(sc.deployments):
        out += [(f"deployments[{i}]", n) for n in LEFT_OUT_MATTERS[type(d)] if n not in d.model_fields_set]
    out += [("network", n) for n in LEFT_OUT_MATTERS[type(sc.network)] if n not in sc.network.model_fields_set]
    for i, link in enumerate(sc.network.links):
        out += [(f"network.links[{i}]", n) for n in LEFT_OUT_MATTERS[type(link)] if n not in link.model_fields_set]
    return out


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_a_shipped_scenario_survives_its_document(path):
    sc = load_scenario(path)
    again = validate(Scenario, scenario_document(sc), str(path))
    assert again == sc and left_out(again) == left_out(sc)


def test_a_tensorrt_llm_deployment_keeps_its_preset_through_a_sweep_and_a_shard():
    path = SCENARIOS_DIR / "stack-tensorrt-llm.yaml"
    sc = load_scenario(path)
    assert "kv_admission" not in sc.deployments[0].model_fields_set  # the preset decides
    assert resolve(sc, str(path)).deployments[0].config.kv_admission == "full_sequence"
    swept = apply_overrides(scenario_document(sc), {"deployments.0.replicas": 2}, "grid")
    assert resolve(validate(Scenario, swept, str(path)), str(path)).deployments[0].config.kv_admission == \
        "full_sequence"
    # before: validate(Scenario, sc.model_dump(mode="json")) had set kv_admission to the schema's first_chunk
    assert resolve(validate(Scenario, sc.model_dump(mode="json"), str(path)),
                   str(path)).deployments[0].config.kv_admission == "first_chunk"
    shard = shard_scenario(sc.model_copy(update={"sharding": None}), str(path), 1)
    assert resolve(shard, str(path)).deployments[0].config.kv_admission == "full_sequence"


def test_a_sweep_can_still_set_what_the_preset_would_decide(tmp_path):
    """An override of a left-out field is an explicit choice: it applies, and a misspelt one is still refused."""
    path = SCENARIOS_DIR / "stack-tensorrt-llm.yaml"
    sc = load_scenario(path)
    spec = SweepSpec.model_validate({"parameters": {"deployments.0.kv_admission": ["first_chunk", "full_sequence"]}})
    jobs = plan_jobs(sc, str(path), spec, "grid.yaml")
    got = [resolve(validate(Scenario, apply_overrides(j.scenario_doc, j.params, "grid.yaml"), str(path)),
                   str(path)).deployments[0].config.kv_admission for j in jobs]
    assert got == ["first_chunk", "full_sequence"]
    bad = SweepSpec.model_validate({"parameters": {"deployments.0.kv_admision": ["first_chunk"]}})
    with pytest.raises(Exception, match="kv_admision"):
        plan_jobs(sc, str(path), bad, "grid.yaml")


def test_a_time_window_of_a_tensorrt_llm_run_admits_as_the_engine_does():
    path = SCENARIOS_DIR / "stack-tensorrt-llm.yaml"
    sc = load_scenario(path)
    w = plan_windows(sc, 2, 0.0, str(path))[1]
    part = window_scenario(sc, str(path), w, 0.0)
    assert resolve(part, str(path)).deployments[0].config.kv_admission == "full_sequence"
