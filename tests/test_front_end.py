"""A deployment's serving front end (front_end_s): the time an inference server spends on a request before its
engine sees it (HTTP, tokenization, Triton's ensemble). It delays the request's arrival at the engine, so it is in
TTFT and E2E exactly once per request, never in queue time, and in a closed loop it lengthens every cycle."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import scenario_doc
from pydantic import ValidationError

from simfactory.api import run
from simfactory.config.scenario import Scenario
from simfactory.fidelity import FidelitySuite

STEP_S = 0.01  # the test profile's fixed step time (conftest.write_case)
OUTPUT_TOKENS = 10  # conftest.scenario_doc: one prompt token, ten output tokens


def test_an_idle_engine_answers_front_end_later_and_queue_time_is_unchanged(case):
    plain = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0))).requests
    fronted = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0, front_end_s=0.025))).requests
    assert len(plain) == len(fronted) == 20 and (fronted["outcome"] == "completed").all()
    assert np.allclose(plain["ttft_s"], STEP_S) and np.allclose(plain["e2e_s"], OUTPUT_TOKENS * STEP_S)
    assert np.allclose(fronted["ttft_s"], STEP_S + 0.025)
    assert np.allclose(fronted["e2e_s"], OUTPUT_TOKENS * STEP_S + 0.025)
    assert np.allclose(fronted["queue_s"], 0.0) and np.allclose(fronted["admission_wait_s"], 0.0)
    assert np.allclose(fronted["front_end_s"], 0.025) and np.allclose(plain["front_end_s"], 0.0)
    assert np.allclose(fronted["network_s"], 0.0)  # not network time


def test_a_closed_loop_cycle_is_the_service_plus_the_front_end(case):
    """N clients with no think time, all served in one batch of constant steps: every cycle is front end + the
    request's OUTPUT_TOKENS steps, so throughput is N / (front_end + service) exactly (Little's law, R = N / X)."""
    n, front_end_s = 4, 0.05
    doc = scenario_doc(max_num_seqs=n, horizon_s=30.0, front_end_s=front_end_s)
    doc["traffic"]["arrival"] = {"process": "closed", "concurrency": n}
    req = run(case(doc)).requests
    done = req[req["outcome"] == "completed"]
    cycle_s = front_end_s + OUTPUT_TOKENS * STEP_S
    assert np.allclose(done["e2e_s"], cycle_s)
    window = done[(done["completion_s"] >= 5.0) & (done["completion_s"] < 25.0)]
    assert len(window) / 20.0 == pytest.approx(n / cycle_s, rel=0.02)


def test_a_request_the_front_door_cannot_turn_away_reaches_its_deployment_without_an_event_of_its_own(case):
    """The arrival chain takes such a request at its delivery (arrival + front_end_s) rather than scheduling the
    delivery from its arrival: one event fewer per request, and nothing else changes. A response cache that never
    answers (hit_ratio 0) keeps a class on the scheduled-delivery path: the same requests, served alike, counted in
    the system from their arrival in both."""
    from simfactory.sim.run import simulate

    doc = scenario_doc(rate=40.0, horizon_s=20.0, front_end_s=0.025, max_num_seqs=8)
    cached = copy.deepcopy(doc)
    cached["traffic"]["classes"][0]["semantic_cache"] = {"hit_ratio": 0.0, "latency_s": {"kind": "fixed", "value": 0.01}}
    direct, scheduled = simulate(case(doc)), simulate(case(cached))
    a, b = direct.table, scheduled.table
    assert len(a.arrival_s) == len(b.arrival_s) > 600
    for column in ("arrival_s", "first_scheduled_s", "first_token_s", "completion_s", "front_end_s"):
        assert np.array_equal(getattr(a, column), getattr(b, column)), column
    assert (a.first_scheduled_s >= a.arrival_s + 0.025 - 1e-12).all()
    assert direct.events == scheduled.events - len(a.arrival_s)
    assert direct.timelines.in_system == scheduled.timelines.in_system


def test_every_request_taken_at_its_delivery_keeps_its_reading_time_the_last_one_too(case):
    """Behind a fixed front end the API server's reading (front_end_work) follows: every request's front_end_s is
    the two together on an idle server, the run's last arrival included (the chain's last entry once read it back)."""
    work = {"per_request_s": 0.004, "per_input_token_s": 0.0, "per_output_token_s": 0.0, "cores_per_replica": 1.0}
    req = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0, front_end_s=0.01,
                                front_end_work=work))).requests
    assert len(req) == 20 and (req["outcome"] == "completed").all()
    assert np.allclose(req["front_end_s"], 0.014)


def test_a_request_on_the_wire_at_the_end_is_recorded_at_its_deployment(case):
    """A run that stops (no drain) while a request is between its arrival and its deployment: unfinished, counted
    as arrived, and at the deployment it was sent to, whichever path carried it."""
    doc = scenario_doc(rate=1.0, process="constant", horizon_s=10.5, front_end_s=0.9)
    doc["sim"]["drain"] = False
    req = run(case(doc)).requests
    late = req[req["arrival_s"] > 9.5]
    assert len(late) == 1 and (late["outcome"] == "unfinished").all()
    assert (late["deployment"] == "dep").all() and np.allclose(late["front_end_s"], 0.9)


@pytest.mark.parametrize("bad", [-0.001, 61.0, math.inf, "fast"])
def test_a_bad_front_end_names_the_field(bad):
    doc = scenario_doc(front_end_s=bad)
    with pytest.raises(ValidationError) as e:
        Scenario.model_validate(doc)
    assert "front_end_s" in str(e.value)


def _suite(shared: dict, own: dict | None = None) -> dict:
    point = {"id": "p", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "bf16", "input_tokens": 100,
             "output_tokens": 10, "rate_per_s": 1.0, "requests": 10, "metric": "ttft_s", "measured": 0.02}
    return {"name": "s", "source": "test", "as_of": "2026-12", "deployment": shared,
            "points": [point, {**point, "id": "q", "deployment": own or {}}]}


def test_a_suites_shared_deployment_fields_reach_every_point_and_a_points_own_win():
    suite = FidelitySuite.model_validate(_suite({"front_end_s": 0.003}, {"front_end_s": 0.001}))
    assert [p.deployment for p in suite.points] == [{"front_end_s": 0.003}, {"front_end_s": 0.001}]
    with pytest.raises(ValidationError) as e:
        FidelitySuite.model_validate(_suite({"front_end_s": -1}))
    assert "front_end_s" in str(e.value)
    with pytest.raises(ValidationError, match="point's own fields"):
        FidelitySuite.model_validate(_suite({"tp": 2}))


def test_an_agent_tasks_breakdown_books_the_front_end_apart_and_still_adds_up(case):
    """Two LLM calls in a chain on an idle fleet: each pays the front end once; the task's breakdown has it under
    front_end (not queue) and its parts still sum to the task's E2E."""
    from conftest import agent_doc, agent_scenario

    from simfactory.sim.agents import CATEGORIES

    llm = {"type": "llm", "model": "m", "input_tokens": {"kind": "fixed", "value": 1},
           "output_tokens": {"kind": "fixed", "value": OUTPUT_TOKENS}}
    doc = agent_scenario(rate=0.05, horizon_s=100.0, max_num_seqs=8, front_end_s=0.03)
    doc["traffic"]["arrival"]["process"] = "constant"
    tasks = run(case(doc, None, {"agent": agent_doc([{**llm, "name": "a"}, {**llm, "name": "b"}])})).tasks
    done = tasks[tasks["outcome"] == "completed"]
    assert len(done) == 5
    assert np.allclose(done["front_end"], 2 * 0.03) and np.allclose(done["queue"], 0.0)
    assert np.allclose(done["e2e_s"], 2 * (0.03 + OUTPUT_TOKENS * STEP_S))
    assert np.allclose(done[list(CATEGORIES)].sum(axis=1), done["e2e_s"])


def test_calibration_simulates_the_measured_servers_front_end():
    """`calibrate validate/serve/fit --front-end-s`: the replayed load reaches the engine that much later, so with
    requests far apart every simulated TTFT and E2E is exactly that much longer and TPOT is unchanged; left out,
    the engine preset's front end applies (vLLM V1's 8 ms), and 0 is a value, not "left out"."""
    import pandas as pd

    from simfactory.calibration.validate import Deployment, simulate_block

    plan = pd.DataFrame({"send_s": np.arange(10) * 2.0, "input_tokens": 500, "output_tokens": 50})
    plain = simulate_block(plan, Deployment(sku="h100-sxm", model="llama-3.1-8b", front_end_s=0.0))
    fronted = simulate_block(plan, Deployment(sku="h100-sxm", model="llama-3.1-8b", front_end_s=0.004))
    preset = simulate_block(plan, Deployment(sku="h100-sxm", model="llama-3.1-8b"))
    assert np.allclose(fronted["ttft_s"] - plain["ttft_s"], 0.004)
    assert np.allclose(fronted["e2e_s"] - plain["e2e_s"], 0.004)
    assert np.allclose(fronted["tpot_s"], plain["tpot_s"])
    assert np.allclose(preset["ttft_s"] - plain["ttft_s"], 0.008)


def test_a_sweep_fit_runs_its_closed_loops_behind_the_front_end():
    import pandas as pd

    from simfactory.calibration.sweep_fit import SweepSetup

    row = next(pd.DataFrame({"concurrency": [1], "input_tokens": [500], "output_tokens": [50]}).itertuples())
    plain = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm", "fp8", 1, 256, 2048)
    fronted = SweepSetup("h100-sxm", "llama-3.1-8b", "vllm", "fp8", 1, 256, 2048, front_end_s=0.004)
    assert plain.point(row).deployment == {} and fronted.point(row).deployment == {"front_end_s": 0.004}
    # what the fit tells the user to put in their scenario includes it (the fitted step time does not)
    from simfactory.calibration.microbench import scenario_deployment

    assert "front_end_s: 0.004" in scenario_deployment(fronted) and "front_end_s" not in scenario_deployment(plain)


@pytest.mark.parametrize("value", ["-1", "nan", "61"])
def test_a_bad_front_end_flag_is_one_line_exit_2(tmp_path, value):
    from typer.testing import CliRunner

    from simfactory.cli import app

    pd_table = tmp_path / "r.csv"
    pd_table.write_text("request_id,send_s,input_tokens,output_tokens,ttft_s,tpot_s,e2e_s,ok,error,rate_rps\n"
                        "0,0,512,64,0.05,0.01,0.68,true,,2\n")
    res = CliRunner().invoke(app, ["calibrate", "validate", str(pd_table), "--sku", "h100-sxm", "--model",
                                   "llama-3.1-8b", "--front-end-s", value, "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "--front-end-s" in errors[0], res.output
    assert not (tmp_path / "v").exists()


def test_overload_behind_a_front_end_still_ends_every_request_once(case):
    """Queue caps, shedding and length limits behind a 20 ms front end: every arrival has one outcome, and a shed
    request waited max_queue_s at the engine after its front end (queue time does not include it)."""
    doc = scenario_doc(rate=60, output_tokens={"kind": "geometric", "mean": 40},
                       input_tokens={"kind": "uniform", "low": 1, "high": 3000}, horizon_s=30,
                       max_num_seqs=4, max_waiting=20, max_model_len=2500, front_end_s=0.02)
    doc["traffic"]["classes"][0]["service_class"] = "slow"
    doc["service_classes"] = [{"name": "slow", "max_queue_s": 0.5}]
    req = run(case(doc, {"overhead_s": 0.01})).requests
    counts = req["outcome"].value_counts()
    assert counts.sum() == len(req) and "pending" not in counts
    for o in ("completed", "rejected_queue_full", "shed", "rejected_too_long"):
        assert counts.get(o, 0) > 0, (o, counts)
    shed = req[req["outcome"] == "shed"]
    assert np.allclose(shed["departure_s"] - shed["arrival_s"], 0.02 + 0.5)
    done = req[req["outcome"] == "completed"]
    assert (done["ttft_s"] >= 0.02 + STEP_S - 1e-12).all() and (done["queue_s"] >= -1e-12).all()
    assert np.allclose(done["ttft_s"], done["front_end_s"] + done["queue_s"]
                       + (done["first_token_s"] - done["first_scheduled_s"]))


def test_a_front_end_on_a_step_table_is_refused(tmp_path):
    from typer.testing import CliRunner

    from simfactory.cli import app

    steps = tmp_path / "s.csv"
    steps.write_text("prefill_tokens,decode_seqs,kv_tokens_read,prefill_attn_pairs,step_s\n"
                     + "".join(f"0,{b},{b * 100},0,{0.005 + b * 1e-4}\n" for b in range(1, 40)))
    res = CliRunner().invoke(app, ["calibrate", "fit", str(steps), "--sku", "h100-sxm", "--model", "llama-3.1-8b",
                                   "--front-end-s", "0.003", "--profiles-dir", str(tmp_path / "hp")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "--front-end-s" in errors[0] and "step" in errors[0], res.output
    assert not (tmp_path / "hp").exists()


def test_the_summary_reports_the_front_ends_share_of_e2e(case):
    m = run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0, front_end_s=0.025)))
    block = m.summary["front_end"]
    assert block["mean_front_end_s"] == pytest.approx(0.025)
    assert block["share_of_e2e"] == pytest.approx(0.025 / (0.025 + OUTPUT_TOKENS * STEP_S))
    assert run(case(scenario_doc(rate=0.5, process="constant", horizon_s=40.0))).summary["front_end"][
        "share_of_e2e"] == 0.0


def test_traces_show_the_front_end_apart_from_the_queue(case):
    """Perfetto: a `front end` span before each LLM call's queue span; OTLP: its own attribute, queue time net of it."""
    from conftest import agent_doc, agent_scenario

    from simfactory.metrics.otel import otlp_traces
    from simfactory.metrics.trace import trace_events
    from simfactory.sim.run import simulate

    llm = {"type": "llm", "name": "a", "model": "m", "input_tokens": {"kind": "fixed", "value": 1},
           "output_tokens": {"kind": "fixed", "value": OUTPUT_TOKENS}}
    doc = agent_scenario(rate=0.05, horizon_s=100.0, max_num_seqs=8, front_end_s=0.03)
    doc["traffic"]["arrival"]["process"] = "constant"
    result = simulate(case(doc, None, {"agent": agent_doc([llm])}), seed=1, keep_logs=2)
    events = trace_events(result, 2)
    def spans_of(name):  # async begin/end pairs: (start, end) in microseconds
        begin = [e["ts"] for e in events if e.get("name") == name and e["ph"] == "b"]
        end = [e["ts"] for e in events if e.get("name") == name and e["ph"] == "e"]
        return list(zip(begin, end))

    fronts, queues = spans_of("front end"), spans_of("queue")
    assert len(fronts) == 2 and all(b - a == pytest.approx(0.03 * 1e6) for a, b in fronts)
    assert all(q[0] == pytest.approx(f[1]) for f, q in zip(fronts, queues))  # the queue starts after the front end
    spans = [s for rs in otlp_traces(result, 2)["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    chats = [{a["key"]: a["value"] for a in s["attributes"]} for s in spans if s["name"].startswith("chat ")]
    assert chats and all(c["simfactory.front_end_s"]["doubleValue"] == pytest.approx(0.03) for c in chats)
    assert all(c["simfactory.queue_s"]["doubleValue"] == pytest.approx(0.0, abs=1e-9) for c in chats)


def test_an_engine_presets_front_end_applies_only_where_the_deployment_leaves_it_out():
    """The sglang presets carry SGLang's front end (12 ms at one client), vLLM V1's theirs (8 ms); a deployment's
    own value, 0 included, wins; engines without one stay at 0; the scenario document keeps it left out (so a re-run
    resolves it again)."""
    from conftest import shipped_engines

    from simfactory.config.scenario import scenario_document
    from simfactory.resolve import resolve

    def resolved(**deployment):
        doc = scenario_doc(**deployment)
        if "front_end_s" not in deployment:
            del doc["deployments"][0]["front_end_s"]  # scenario_doc's engine-alone 0
        doc["pools"][0]["sku"] = "h100-sxm"
        scenario = Scenario.model_validate(doc)
        return resolve(scenario).deployments[0].config, scenario

    preset = shipped_engines()["sglang"].defaults.front_end_s
    assert preset == 0.012 and shipped_engines()["sglang-0.5"].defaults.front_end_s == preset
    cfg, scenario = resolved(engine="sglang")
    assert cfg.front_end_s == preset and "front_end_s" not in scenario_document(scenario)["deployments"][0]
    assert resolved(engine="sglang", front_end_s=0.0)[0].front_end_s == 0.0
    assert resolved(engine="sglang", front_end_s=0.003)[0].front_end_s == 0.003
    engines = shipped_engines()
    assert engines["vllm"].defaults.front_end_s == engines["vllm-0.11"].defaults.front_end_s == 0.008
    assert resolved(engine="vllm")[0].front_end_s == 0.008 and resolved(engine="vllm", front_end_s=0.0)[0].front_end_s == 0.0
    assert resolved(engine="vllm-0.6")[0].front_end_s == 0.0 and resolved(engine="tensorrt-llm")[0].front_end_s == 0.0
