"""Overlap scheduling (SGLang's overlap scheduler, TensorRT-LLM 1.x's, vLLM's async scheduling): the engine forms
step n + 1 while step n runs, so a request that arrives during a step waits for the next one too."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import agent_doc, agent_scenario, assert_fast_forward_matches, scenario_doc, shipped_engines

from simfactory.api import run
from simfactory.hardware.step_time import StepLoad, StepTimeModel
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.queue import WaitingQueue
from simfactory.sim.requests import RequestTable
from simfactory.sim.run import FleetModel

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
    engines = shipped_engines()
    ahead = {name for name, e in engines.items() if e.defaults.overlap_schedule}
    assert {"tensorrt-llm", "vllm", "sglang", "sglang-0.5"} <= ahead
    assert not ahead & {"tensorrt-llm-0", "nim", "vllm-0.11", "vllm-0.6", "vllm-v0", "torch-eager"}
    # the preset's default applies where the scenario leaves it out; a scenario's own value wins
    doc = scenario_doc(engine="sglang")
    del doc["deployments"][0]["overlap_schedule"]
    assert case(doc, CONSTANT).deployments[0].config.overlap_schedule is True
    assert case(scenario_doc(engine="sglang"), CONSTANT).deployments[0].config.overlap_schedule is False


def both_modes(case, doc: dict, step: dict, workloads: dict | None = None):
    """(stepping every iteration, fast-forward) results of one scenario document."""
    results = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        results.append(FleetModel(case(d, step, workloads), seed=d["seed"]).run())
    return results


def test_a_closed_loop_clients_next_request_waits_for_the_step_after_the_one_formed_with_its_answer(case):
    """A client resends the instant its answer completes a step; that instant the engine forms the next step
    without it (engines process a step's outputs after forming the next), in both modes alike."""
    doc = scenario_doc(max_num_seqs=8, horizon_s=0.3, overlap_schedule=True, input_tokens={"kind": "fixed", "value": 10},
                       output_tokens={"kind": "geometric", "mean": 6})
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 2}
    exact, fast = both_modes(case, doc, CONSTANT)
    t = exact.table
    np.testing.assert_allclose(t.first_scheduled_s, fast.table.first_scheduled_s, rtol=1e-9, atol=1e-12)
    waits = [t.first_scheduled_s[i] - t.arrival_s[i] for i in range(len(t.outcome)) if t.arrival_s[i] > 0]
    # resent while the other client's request runs on: two steps (the one formed with its answer, then the next);
    # one when the other's last step is the one formed (the engine then has nothing else to run and takes it)
    assert waits.count(pytest.approx(2 * STEP_S)) >= len(waits) / 2, waits
    assert all(w in (pytest.approx(STEP_S), pytest.approx(2 * STEP_S)) for w in waits), waits


class _Constant(StepTimeModel):
    def step_s(self, load: StepLoad) -> float:
        return STEP_S


def _engine(exact: bool, log: list):
    env, table = FloatEnvironment(), RequestTable()
    queue = WaitingQueue(env)
    engine = ReplicaEngine(env, 0, queue, table, _Constant(), max_num_seqs=8, max_num_batched_tokens=4096,
                           block_size=16, kv_blocks=10_000, enable_chunked_prefill=True, overlap_schedule=True,
                           exact=exact, on_complete=lambda r: log.append(("done", r, round(env.now, 9))),
                           on_abort=lambda r: log.append(("abort", r, round(env.now, 9))))

    def put_at(at_s: float, output_tokens: int, priority: int = 0) -> None:
        def put(_event: object) -> None:
            rid = table.add(env.now, 0, 0, 10, output_tokens)
            table.priority[rid] = priority
            engine.held_counts[0] += 1
            queue.put(rid, priority)
        env.timeout(at_s).callbacks.append(put)
    return env, table, engine, put_at


def test_an_abort_still_ends_a_stretch_at_its_step_after_an_arrival_moved_the_cut_later():
    runs = []
    for exact in (True, False):
        log: list = []
        env, _, engine, put_at = _engine(exact, log)
        put_at(0.0, 100)  # decodes in a stretch from 10 ms
        put_at(0.035, 5)  # arrives in the step from 30 to 40 ms: the cut moves to 50 ms
        env.timeout(0.037).callbacks.append(lambda _e: engine.abort(0))  # leaves at the end of its step, 40 ms
        env.run(until=1.0)
        runs.append(log)
    assert runs[0] == runs[1] == [("abort", 0, 0.04), ("done", 1, 0.09)]


def test_a_later_urgent_arrival_does_not_hold_back_an_older_admissible_request():
    """The step from 50 ms was formed at 40 ms, before the urgent request arrived at 45 ms: the bulk one that
    arrived at 35 ms goes in it whether or not the urgent one waits at the head of the queue."""
    def first_scheduled(with_urgent: bool) -> float:
        env, table, _, put_at = _engine(True, [])
        put_at(0.0, 100, 1)
        put_at(0.035, 5, 1)
        if with_urgent:
            put_at(0.045, 5, 0)
        env.run(until=1.0)
        return float(table.first_scheduled_s[1])

    assert first_scheduled(False) == first_scheduled(True) == pytest.approx(0.05)


def test_prefill_first_with_full_sequence_admission_never_pauses_decodes_for_a_refused_prompt(case):
    """Full-sequence admission may refuse the head (its whole answer does not fit the reservations): decodes must
    keep running rather than leave an empty step."""
    doc = scenario_doc(seed=7591, rate=26.7, max_num_seqs=20, max_num_batched_tokens=2048, kv_cache_tokens=3441,
                       block_size=1, schedule="prefill_first", kv_admission="full_sequence",
                       input_tokens={"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 1500},
                       output_tokens={"kind": "geometric", "mean": 60}, horizon_s=6)
    step = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4, "s_per_kv_token": 2e-7}
    exact, fast = both_modes(case, doc, step)
    assert_fast_forward_matches(exact, fast)
    assert len(exact.table.outcome) > 100


def test_an_agents_next_call_waits_like_a_clients_resend(case):
    """An agent's next LLM call, sent the instant its previous answer ends, misses the step formed at that instant
    and joins the one after (two steps), like a closed-loop resend, while other requests keep the engine busy."""
    def fixed(v: int) -> dict:
        return {"kind": "fixed", "value": v}

    steps = [{"type": "llm", "name": f"s{i}", "model": "m", "input_tokens": fixed(10), "output_tokens": fixed(3)}
             for i in range(8)]
    doc = agent_scenario(rate=40, horizon_s=0.1, max_num_seqs=16, overlap_schedule=True, process="constant")
    # long chat requests keep decodes running: a call that arrives during one never finds the engine idle
    doc["traffic"]["classes"].append({"name": "chat", "target": "dep", "weight": 1, "input_tokens": fixed(10),
                                      "output_tokens": fixed(300)})
    exact, fast = both_modes(case, doc, CONSTANT, {"agent": agent_doc(steps)})
    t = exact.table
    np.testing.assert_allclose(t.first_scheduled_s, fast.table.first_scheduled_s, rtol=1e-9, atol=1e-12)
    chats = [i for i in range(len(t.outcome)) if int(t.output_tokens[i]) == 300]
    calls = [i for i in range(len(t.outcome)) if int(t.output_tokens[i]) == 3 and t.arrival_s[i] > 0
             and any(t.first_scheduled_s[c] < t.arrival_s[i] < t.completion_s[c] for c in chats)]
    assert len(calls) >= 3
    assert all(t.first_scheduled_s[i] - t.arrival_s[i] == pytest.approx(2 * STEP_S) for i in calls), \
        [t.first_scheduled_s[i] - t.arrival_s[i] for i in calls]
