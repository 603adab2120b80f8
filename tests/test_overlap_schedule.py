"""Overlap scheduling (SGLang's overlap scheduler, TensorRT-LLM 1.x's, vLLM's async scheduling): the engine forms
step n + 1 while step n runs, so a request that arrives during a step waits for the next one too."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import assert_fast_forward_matches, scenario_doc

from simfactory.api import run
from simfactory.config.loader import load_model_file
from simfactory.config.profile import EngineCatalog
from simfactory.sim.run import FleetModel

ROOT = Path(__file__).resolve().parents[1]
STEP_S = 0.01
CONSTANT = {"overhead_s": STEP_S}  # every step takes 10 ms whatever it holds


def two_requests(case, overlap: bool, schedule: str = "decode_first"):
    """Requests at t = 0 and t = 5 ms (in the middle of the first's prefill step), 10-token prompts, 30 tokens out."""
    doc = scenario_doc(rate=200, process="constant", horizon_s=0.006, input_tokens={"kind": "fixed", "value": 10},
                       output_tokens={"kind": "fixed", "value": 30}, max_num_seqs=8, schedule=schedule,
                       overlap_schedule=overlap)
    return run(case(doc, CONSTANT)).requests.sort_values("arrival_s")


def test_an_arrival_during_a_step_waits_one_more_step_with_overlap(case):
    plain, overlap = two_requests(case, False), two_requests(case, True)
    assert list(plain["arrival_s"]) == pytest.approx([0.0, 0.005])
    # synchronous: the second is scheduled when the step in flight ends (10 ms) and prefilled by 20 ms
    assert plain["ttft_s"].iloc[1] == pytest.approx(0.02 - 0.005)
    # overlap: the step from 10 to 20 ms was formed at 0 ms, before it arrived; its prefill runs from 20 to 30 ms
    assert overlap["ttft_s"].iloc[1] == pytest.approx(0.03 - 0.005)
    # the request already running is not delayed, and both finish (nothing dropped)
    assert overlap["e2e_s"].iloc[0] == pytest.approx(plain["e2e_s"].iloc[0]) == pytest.approx(30 * STEP_S)
    assert (overlap["outcome"] == "completed").all()


def test_an_idle_engine_takes_a_request_at_once(case):
    """Nothing in flight: the scheduler loop forms the request's prefill step as it arrives."""
    for overlap in (False, True):
        first = two_requests(case, overlap).iloc[0]
        assert first["ttft_s"] == pytest.approx(STEP_S)


def test_prefill_first_keeps_decoding_until_the_arrival_can_be_scheduled(case):
    """SGLang's schedule: a prompt that can be admitted gets a prefill step of its own while decodes wait. With
    overlap the prompt that arrived at 5 ms is admissible only from 20 ms, so the decode step from 10 to 20 ms runs
    and the pause comes one step later: the first request still loses exactly one step."""
    plain = two_requests(case, False, "prefill_first")
    overlap = two_requests(case, True, "prefill_first")
    assert plain["e2e_s"].iloc[0] == pytest.approx(31 * STEP_S)
    assert overlap["e2e_s"].iloc[0] == pytest.approx(31 * STEP_S)
    assert overlap["ttft_s"].iloc[1] == pytest.approx(plain["ttft_s"].iloc[1] + STEP_S)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_forward_matches_stepping_every_iteration_with_overlap(case, seed):
    doc = scenario_doc(seed=seed, rate=12, max_num_seqs=16, max_num_batched_tokens=1024, kv_cache_tokens=6000,
                       block_size=16, overlap_schedule=True, schedule="prefill_first" if seed == 2 else "decode_first",
                       input_tokens={"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 1500},
                       output_tokens={"kind": "geometric", "mean": 60}, horizon_s=8,
                       preemptive_priority=seed == 3)
    if seed == 3:  # two priorities, the urgent one preempting: it too waits for the step after the one in flight
        c = doc["traffic"]["classes"][0]
        doc["traffic"]["classes"] = [{**c, "name": "hi", "weight": 1, "service_class": "urgent"},
                                     {**c, "name": "lo", "weight": 2, "service_class": "bulk"}]
        doc["service_classes"] = [{"name": "urgent", "priority": 0}, {"name": "bulk", "priority": 1}]
    step = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4, "s_per_kv_token": 2e-7}
    results = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        results.append(FleetModel(case(d, step), seed=seed).run())
    exact, fast = results
    assert_fast_forward_matches(exact, fast)
    assert len(exact.table.outcome) > 50


def test_overlap_under_load_adds_about_a_step_to_ttft_and_nothing_to_throughput(case):
    """Steady load on one replica: mean TTFT grows by about one step; the work done per unit time does not change
    (the lag moves admissions, it does not add GPU time)."""
    def summary(overlap: bool) -> tuple[float, float, int]:
        doc = scenario_doc(rate=20, horizon_s=60, max_num_seqs=64, input_tokens={"kind": "fixed", "value": 200},
                           output_tokens={"kind": "fixed", "value": 100}, overlap_schedule=overlap)
        req = run(case(doc, CONSTANT)).requests
        done = req[req["outcome"] == "completed"]
        return float(done["ttft_s"].mean()), float(done["generated_tokens"].sum()), len(req)

    ttft0, tokens0, n0 = summary(False)
    ttft1, tokens1, n1 = summary(True)
    assert n0 == n1
    assert ttft1 - ttft0 == pytest.approx(STEP_S, rel=0.1)
    assert tokens1 == pytest.approx(tokens0, rel=0.01)


def test_presets_say_which_engines_schedule_ahead(case):
    engines = {e.name: e for e in load_model_file(EngineCatalog, ROOT / "hardware_profiles" / "engines.yaml").engines}
    ahead = {name for name, e in engines.items() if e.defaults.overlap_schedule}
    assert {"tensorrt-llm", "vllm", "sglang", "sglang-0.5"} <= ahead
    assert not ahead & {"tensorrt-llm-0", "nim", "vllm-v0", "torch-eager"}
    # the preset's default applies where the scenario leaves it out; a scenario's own value wins
    doc = scenario_doc(engine="sglang")
    del doc["deployments"][0]["overlap_schedule"]
    assert case(doc, CONSTANT).deployments[0].config.overlap_schedule is True
    assert case(scenario_doc(engine="sglang"), CONSTANT).deployments[0].config.overlap_schedule is False
