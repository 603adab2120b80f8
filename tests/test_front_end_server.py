"""A deployment's API server as a shared CPU (deployments[].front_end_work, sim/front_end.py): per-request,
per-prompt-token and per-output-token work on `cores_per_replica` cores a replica, shared max-min fairly.

Closed forms: an idle server adds exactly the ingress work to TTFT and E2E (and one token's work to TTFT); a
saturated one serves cores / (per_request + per_input_token x in + per_output_token x out) requests a second
whatever the engine could do; the fair shares conserve capacity and never exceed a cap."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import agent_doc, agent_scenario, scenario_doc
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simfactory.api import run
from simfactory.config.profile import FrontEndWork
from simfactory.config.scenario import Scenario
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.front_end import FrontEndServer, fair_levels
from simfactory.sim.run import simulate

STEP_S = 0.01  # the test profile's fixed step time (conftest.write_case)
OUTPUT_TOKENS = 10  # conftest.scenario_doc: one prompt token, ten output tokens


@settings(max_examples=200, deadline=None)
@given(caps=st.lists(st.floats(0.001, 1.0), min_size=1, max_size=30), capacity=st.floats(0.1, 8.0))
def test_fair_shares_conserve_capacity_respect_caps_and_are_max_min_fair(caps, capacity):
    rates = fair_levels(np.asarray(caps), capacity)
    assert sum(rates) == pytest.approx(min(capacity, sum(caps)), rel=1e-9)
    assert all(r <= c * (1 + 1e-12) for r, c in zip(rates, caps))
    # a job held below its cap gets at least what any other job gets (it could not be given more)
    top = max(rates)
    assert all(r >= top * (1 - 1e-9) for r, c in zip(rates, caps) if r < c * (1 - 1e-9))


def test_requests_read_together_are_read_in_turn_on_one_core_or_at_once_on_two():
    for cores, expected_s in ((1.0, [0.001, 0.002, 0.003]), (2.0, [0.001, 0.001, 0.002]), (3.0, [0.001] * 3)):
        env = FloatEnvironment()
        fe = FrontEndServer(env, lambda cores=cores: cores)
        ends: list[tuple[int, float]] = []
        for rid in range(3):
            fe.ingress(rid, 0.001, lambda rid=rid: ends.append((rid, env.now)))
        env.run()
        assert [r for r, _ in ends] == [0, 1, 2]  # first come, first read
        assert [t for _, t in ends] == pytest.approx(expected_s)
        assert fe.busy_core_s == pytest.approx(0.003)


def test_readers_together_get_what_they_would_get_apart_beside_streams():
    """Two readers and two uncapped streams on one core: the readers' half goes to the first reader alone."""
    env = FloatEnvironment()
    fe = FrontEndServer(env, lambda: 1.0)
    ends: dict[str, float] = {}
    for rid in (0, 1):
        fe.egress(rid, 1.0, 1.0, lambda: None)
    fe.ingress(2, 0.001, lambda: ends.setdefault("a", env.now))
    fe.ingress(3, 0.001, lambda: ends.setdefault("b", env.now))
    env.run(until=0.1)
    assert ends["a"] == pytest.approx(0.002)  # half a core
    assert ends["b"] == pytest.approx(0.002 + 0.001 / (1 / 3))  # then a third, as a lone reader beside two streams


def test_a_capped_stream_waits_for_its_engine_and_leaves_the_rest_to_others():
    """A stream capped at 0.25 core and a reader: the reader gets 0.75 core; the stream, done with its work, still
    ends only when its engine is done (and then at once)."""
    env = FloatEnvironment()
    fe = FrontEndServer(env, lambda: 1.0)
    ends: dict[str, float] = {}
    fe.egress(0, 0.001, 0.25, lambda: ends.setdefault("stream", env.now))
    fe.ingress(1, 0.003, lambda: ends.setdefault("read", env.now))
    env.run(until=0.1)
    assert ends == {"read": pytest.approx(0.004)}  # 0.75 core until the stream's 0.004 s, then 1 core: 0.003 done
    assert fe.holds(0) and not fe.engine_is_done(0)
    assert fe.engine_done(0) and ends["stream"] == pytest.approx(0.1)
    assert not fe.holds(0)


def _front_end(per_request_s: float = 0.0, per_input_token_s: float = 0.0, per_output_token_s: float = 0.0,
               cores: float = 1.0) -> dict:
    return {"per_request_s": per_request_s, "per_input_token_s": per_input_token_s,
            "per_output_token_s": per_output_token_s, "cores_per_replica": cores}


@pytest.mark.parametrize("engine_done_s, stream_end_s", [(0.010, 0.015), (0.030, 0.030)])
def test_jobs_run_at_their_caps_below_saturation_and_share_above_it(engine_done_s, stream_end_s):
    """One core. A stream (0.01 s of work, capped at half a core) alone runs at its cap; a reader (0.002 s) joining
    it asks for more than the core, so both get half until the reader is done at 4 ms; then the stream has its
    half again. Its engine done at 10 ms, 0.005 s is left and it gets a whole core: done at 15 ms. Done at 30 ms
    instead, its work ran out at 20 ms: it ends at once. Either way the core did 12 ms of work."""
    env = FloatEnvironment()
    fe = FrontEndServer(env, lambda: 1.0)
    ends: dict[str, float] = {}
    fe.egress(0, 0.01, 0.5, lambda: ends.setdefault("stream", env.now))
    fe.ingress(1, 0.002, lambda: ends.setdefault("read", env.now))
    env.timeout(engine_done_s).callbacks.append(lambda _ev: fe.engine_done(0))
    env.run()
    assert ends == {"read": pytest.approx(0.004), "stream": pytest.approx(stream_end_s)}
    assert fe.busy_core_s == pytest.approx(0.012) and not fe.holds(0)


def test_a_server_below_saturation_costs_an_event_a_request_read_and_none_a_stream_that_keeps_up():
    """Ten readers and ten streams on twenty cores: every job at its cap. Each read is one event at its own end;
    a stream that keeps up with its engine ends when the engine does, with no event of its own."""
    env = FloatEnvironment()
    fe = FrontEndServer(env, lambda: 20.0)
    ends: list[float] = []
    for rid in range(10):
        fe.ingress(rid, 0.001 * (rid + 1), lambda: ends.append(env.now))
        fe.egress(100 + rid, 0.001, 0.1, lambda: ends.append(env.now))
    env.run()
    assert ends == pytest.approx([0.001 * (k + 1) for k in range(10)])  # each at its own pace, none slowed
    assert next(env._eid) == 10  # SimPy numbers every event it schedules: one a read, none a stream
    for rid in range(10):
        assert fe.engine_done(100 + rid)  # 0.001 s at 0.1 core took 0.01 s, long done: out at once
    assert len(ends) == 20 and fe.busy_core_s == pytest.approx(0.055 + 0.01)


def test_an_idle_server_adds_its_ingress_work_to_ttft_and_e2e_and_one_token_to_ttft(case):
    work = _front_end(per_request_s=0.004, per_input_token_s=5e-5, per_output_token_s=0.0002)
    plain = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0))).requests
    fronted = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0, front_end_work=work))).requests
    assert len(fronted) == 20 and (fronted["outcome"] == "completed").all()
    ingress_s = 0.004 + 5e-5 * 1  # one prompt token
    assert np.allclose(fronted["front_end_s"], ingress_s) and np.allclose(fronted["queue_s"], 0.0)
    assert np.allclose(fronted["ttft_s"], plain["ttft_s"] + ingress_s + 0.0002)
    # the stream (10 tokens x 0.2 ms, at most 0.2 ms a 10 ms step) keeps up with the engine: E2E gains nothing more
    assert np.allclose(fronted["e2e_s"], plain["e2e_s"] + ingress_s)


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_saturated_server_sets_the_cycle_whatever_the_engine_could_do(case, replicas):
    """20 clients a replica with no think time, on engines that could serve all 20 in a 0.1 s cycle: they send
    together, are prefilled in one step, then share a core of 1 ms a token, so every cycle is one step + 20 x 10 x
    1 ms (2.1x the engine's) and throughput is 20 / that a replica (Little's law)."""
    per_token_s, n = 0.001, 20 * replicas
    doc = scenario_doc(replicas=replicas, max_num_seqs=20, horizon_s=30.0,
                       front_end_work=_front_end(per_output_token_s=per_token_s))
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": n}
    out = run(case(doc))
    req = out.requests
    done = req[req["outcome"] == "completed"]
    cycle_s = STEP_S + 20 * OUTPUT_TOKENS * per_token_s
    # the cores are busy all of a cycle but its prefill step (the summary says it is the bottleneck)
    busy = out.summary["front_end"]["busy_frac"]["dep"]
    assert busy == pytest.approx(20 * OUTPUT_TOKENS * per_token_s / cycle_s, rel=0.01)
    assert np.allclose(done["e2e_s"], cycle_s)
    window = done[(done["completion_s"] >= 10.0) & (done["completion_s"] < 30.0)]
    assert len(window) / 20.0 == pytest.approx(n / cycle_s, rel=0.02)
    # tokens reach the client at the server's pace, not the engine's
    assert (done["tpot_s"] >= 2 * STEP_S - 1e-12).all()


def test_the_deployments_own_work_wins_over_its_engine_presets_and_zero_work_is_no_server():
    from conftest import shipped_engines

    from simfactory.resolve import resolve

    def work(**deployment):
        doc = scenario_doc(**{"engine": "nim", **deployment})
        doc["pools"][0]["sku"] = "h100-sxm"
        return resolve(Scenario.model_validate(doc)).deployments[0].front_end_work()

    prior = shipped_engines()["nim"].front_end
    assert prior is not None and work() == prior
    assert work(front_end_work=_front_end(per_output_token_s=1e-5)).per_output_token_s == 1e-5
    assert work(front_end_work=_front_end()) is None
    assert work(engine="vllm") is None
    sglang = shipped_engines()["sglang"].front_end  # SGLang's TokenizerManager: one core, every streamed token
    assert sglang is not None and sglang.cores_per_replica == 1 and sglang.per_output_token_s > 0
    assert work(engine="sglang") == sglang == work(engine="sglang-0.5")


def test_requests_sent_together_reach_an_idle_engine_one_by_one_so_the_first_prefills_alone(case):
    """Two clients send at once: read one after the other, the first finds the engine idle and is prefilled alone,
    the second waits for that step (the test profile's 10 ms steps); with no front end both share one step."""
    doc = scenario_doc(max_num_seqs=2, horizon_s=1.0,
                       front_end_work=_front_end(per_request_s=1e-3) | {"ingress": "in_order"})
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 2, "requests": 2}
    t = simulate(case(doc), keep_logs=0).table
    assert np.allclose(np.sort(t.first_scheduled_s), [1e-3, 1e-3 + STEP_S])
    doc["deployments"][0].pop("front_end_work")
    t = simulate(case(doc), keep_logs=0).table
    assert np.allclose(t.first_scheduled_s, 0.0)


@pytest.mark.parametrize("field,bad", [("per_output_token_s", 0.01), ("per_request_s", -1.0),
                                       ("cores_per_replica", 0), ("per_input_token_s", "fast")])
def test_a_bad_front_end_work_names_the_field(field, bad):
    work = {**_front_end(per_output_token_s=7e-5), field: bad}
    with pytest.raises(ValidationError) as e:
        Scenario.model_validate(scenario_doc(front_end_work=work))
    assert "front_end_work" in str(e.value) and field in str(e.value)


def test_a_caller_that_gives_up_while_its_answer_streams_ends_it_once(case):
    """An LLM step with a 0.15 s timeout whose answer the engine makes in 0.1 s but a slow front end (0.3 ms a
    token on a hundredth of a core: 30 ms a token) streams for 0.3 s: the call times out while only the front end
    holds it; every request ends once."""
    llm = {"type": "llm", "name": "a", "model": "m", "input_tokens": {"kind": "fixed", "value": 1},
           "output_tokens": {"kind": "fixed", "value": OUTPUT_TOKENS}, "timeout_s": 0.15}
    doc = agent_scenario(rate=0.2, horizon_s=50.0, max_num_seqs=8,
                         front_end_work=_front_end(per_output_token_s=0.0003, cores=0.01))
    doc["traffic"]["arrival"]["process"] = "constant"
    res = run(case(doc, None, {"agent": agent_doc([llm])}))
    req = res.requests
    assert len(req) > 0 and not (req["outcome"] == "pending").any()
    assert (req["outcome"] != "completed").all()
    assert res.tasks["outcome"].notna().all()


def test_run_says_how_busy_a_modelled_front_end_was_and_only_then(tmp_path):
    from conftest import write_case
    from typer.testing import CliRunner

    from simfactory.cli import app

    def ran(name: str, **deployment) -> tuple[str, str]:
        path = write_case(tmp_path / name, scenario_doc(rate=10.0, horizon_s=20.0, max_num_seqs=8, **deployment))
        res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / name / "o"), "--no-plots"])
        assert res.exit_code == 0, res.output
        return res.output, (tmp_path / name / "o" / "summary.md").read_text()

    # 10 requests/s x 10 tokens x 1 ms = 0.1 of a core
    said, md = ran("fe", front_end_work=_front_end(per_output_token_s=0.001))
    line = next(ln for ln in said.splitlines() if ln.startswith("front end busy"))
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(0.1, abs=0.03)
    assert "## Front ends" in md
    assert "limits" not in said  # 10% busy: no bottleneck to point at
    said, _ = ran("full", front_end_work=_front_end(per_output_token_s=0.001, cores=0.1))  # 100% busy
    assert any(ln.startswith("note: the API server, not the GPUs, limits dep") for ln in said.splitlines()), said
    said, md = ran("plain")
    assert "front end busy" not in said and "## Front ends" not in md


@pytest.mark.parametrize("delayed", [False, True])
def test_fast_forward_matches_stepping_behind_a_saturated_front_end(case, delayed):
    """The front end reads the engine only at first tokens (the pace a stream may go) and completions: the same
    answers whether the engine steps every iteration or fast-forwards decode stretches, first tokens delayed or
    not, with the front end past saturation (50 req/s x ~60 tokens x 0.5 ms = 1.5 cores on 1)."""
    import copy

    from conftest import assert_fast_forward_matches

    from simfactory.sim.run import FleetModel

    doc = scenario_doc(rate=50.0, max_num_seqs=24, horizon_s=6, delayed_first_token=delayed, overlap_schedule=delayed,
                       input_tokens={"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 1500},
                       output_tokens={"kind": "geometric", "mean": 60},
                       front_end_work=_front_end(per_request_s=0.001, per_input_token_s=1e-6, per_output_token_s=5e-4))
    step = {"overhead_s": 0.004, "s_per_prefill_token": 1e-5, "s_per_decode_seq": 3e-4, "s_per_kv_token": 2e-7}
    runs = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        runs.append(FleetModel(case(d, step), seed=1).run())
    exact, fast = runs
    assert_fast_forward_matches(exact, fast)
    assert (exact.table.completion_s > 0).any()


def test_the_planners_replica_bound_includes_what_the_api_server_can_stream():
    """plan prunes fleets a replica could not serve: with a front end of 1 ms a token, a replica's core streams at
    most 1 / (10 x 1 ms) = 100 requests/s of ten tokens, so 450 requests/s need at least 5 replicas whatever the GPU
    could do; without a front end the GPU's own bound decides (fewer)."""
    from simfactory.plan.bounds import front_end_max_rate_per_s
    from simfactory.plan.search import fleet_bounds
    from simfactory.resolve import resolve

    work = FrontEndWork(per_request_s=0.001, per_input_token_s=1e-6, per_output_token_s=1e-4, cores_per_replica=2.0)
    assert front_end_max_rate_per_s(2.0, work.request_s(1000, 90)) == pytest.approx(2.0 / (0.001 + 0.001 + 0.009))
    none = FrontEndWork(per_request_s=0.0, per_output_token_s=0.0)
    assert front_end_max_rate_per_s(1.0, none.request_s(100, 100)) == float("inf")

    def lower(**deployment) -> int:
        doc = scenario_doc(max_num_seqs=256, **deployment)
        doc["pools"][0]["sku"] = "h100-sxm"
        d = resolve(Scenario.model_validate(doc)).deployments[0]
        return fleet_bounds(d, 1, 450.0, 1.0, 10.0, [])[0]

    assert lower(front_end_work=_front_end(per_output_token_s=0.001)) == 5
    assert lower() < 5


def test_cores_that_come_and_go_are_shared_anew_and_counted_for_the_busy_fraction():
    """Two requests of 1 core-second read on 1 core, first come first served... with a second replica up at 0.5 s
    both are read at once on a core each: the first at 1.0 s (0.5 + 0.5), the second at 1.5 s (0.5 left); core time
    counts 1 core to 0.5 s and 2 after."""
    env = FloatEnvironment()
    cores = {"n": 1.0}
    fe = FrontEndServer(env, lambda: cores["n"])
    ends: list[float] = []
    fe.ingress(0, 1.0, lambda: ends.append(env.now))
    fe.ingress(1, 1.0, lambda: ends.append(env.now))

    def second_replica(_ev):
        cores["n"] = 2.0
        fe.capacity_changed()

    env.call_at(0.5, second_replica)
    env.run()
    assert ends == pytest.approx([1.0, 1.5])
    busy, core_s = fe.busy_until_now_s()
    assert busy == pytest.approx(2.0) and core_s == pytest.approx(0.5 * 1 + 1.0 * 2)


def test_requests_read_shared_are_all_read_by_the_end_of_the_burst():
    """ingress shared (vLLM's event loop): three requests read together on one core progress together and are read
    at once, 3 x their work, where in order they end one work apart; beside a stream, the readers and the stream
    split the core evenly."""
    env = FloatEnvironment()
    fe = FrontEndServer(env, lambda: 1.0, in_order=False)
    ends: list[float] = []
    for rid in range(3):
        fe.ingress(rid, 0.001, lambda: ends.append(env.now))
    env.run()
    assert ends == pytest.approx([0.003] * 3) and fe.busy_core_s == pytest.approx(0.003)
    env = FloatEnvironment()
    fe = FrontEndServer(env, lambda: 1.0, in_order=False)
    fe.egress(0, 1.0, 1.0, lambda: None)
    got: list[float] = []
    for rid in (1, 2):
        fe.ingress(rid, 0.001, lambda: got.append(env.now))
    env.run(until=0.1)
    assert got == pytest.approx([0.003, 0.003])  # a third of the core each


def test_a_burst_behind_a_shared_front_end_reaches_the_engine_together(case):
    """Two clients send at once to a front end that reads them shared: both are read by 2 x the work and share the
    engine's first step (in order, the first would be prefilled alone: the test above)."""
    doc = scenario_doc(max_num_seqs=2, horizon_s=1.0,
                       front_end_work=_front_end(per_request_s=1e-3) | {"ingress": "shared"})
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": 2, "requests": 2}
    t = simulate(case(doc), keep_logs=0).table
    assert np.allclose(t.first_scheduled_s, [2e-3, 2e-3])


def test_a_front_end_left_without_ingress_reads_the_engines_way():
    """ingress left out: the engine preset's front end's, else vLLM's presets read shared (their event loop), the
    others in order; a deployment's own ingress wins."""
    from simfactory.resolve import resolve

    def ingress(engine: str, **work: object) -> str:
        doc = scenario_doc(engine=engine, front_end_work=_front_end(per_request_s=1e-3) | work)
        doc["pools"][0]["sku"] = "h100-sxm"
        return resolve(Scenario.model_validate(doc)).deployments[0].front_end_ingress()

    assert ingress("vllm") == ingress("vllm-0.11") == "shared"
    assert ingress("sglang") == ingress("nim") == "in_order"
    assert ingress("vllm", ingress="in_order") == "in_order" and ingress("sglang", ingress="shared") == "shared"
    doc = scenario_doc(engine="vllm-0.11")  # the preset's own front end, which says shared
    doc["pools"][0]["sku"] = "h100-sxm"
    d = resolve(Scenario.model_validate(doc)).deployments[0]
    assert d.front_end_work() is not None and d.front_end_ingress() == "shared"
