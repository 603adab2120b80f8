"""Agent tasks against closed forms: exact sums, harmonic fan-out, order statistics, loops, retries,
tool queues (M/M/1), budgets and deadlines; the breakdown always adds up; no task is lost."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from conftest import agent_doc, agent_scenario

from simfactory.api import run
from simfactory.errors import InputError, InputErrors
from simfactory.sim.agents import CATEGORIES
from simfactory.sim.run import FleetModel

C0, A, B, C = 0.004, 1e-5, 3e-4, 2e-7
LINEAR = {"overhead_s": C0, "s_per_prefill_token": A, "s_per_decode_seq": B, "s_per_kv_token": C}
CATS = list(CATEGORIES)


def fixed(v: float) -> dict:
    return {"kind": "fixed", "value": v}


def expo(mean: float) -> dict:
    return {"kind": "exponential", "mean": mean}


def tasks_of(case, steps, rate=1.0, horizon_s=100.0, step_time=LINEAR, scenario_extra=None, **wl):
    doc = agent_scenario(rate=rate, horizon_s=horizon_s, max_num_seqs=64, **(scenario_extra or {}))
    return run(case(doc, step_time, {"agent": agent_doc(steps, **wl)})).tasks


def check_breakdown_adds_up(tasks):
    total = tasks[CATS].sum(axis=1)
    ended = tasks["outcome"] != "unfinished"
    assert np.allclose(total[ended], tasks["e2e_s"][ended], rtol=1e-9, atol=1e-9)


def mean_ci(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def test_chain_of_fixed_steps_takes_the_exact_sum(case):
    prompt, out, system = 200, 20, 100
    steps = [
        {"type": "wait", "name": "think", "duration_s": fixed(1.0)},
        {"type": "retrieval", "name": "kb", "latency_s": fixed(0.2), "hit_tokens": fixed(300)},
        {"type": "tool", "name": "api", "service": "svc", "latency_s": fixed(0.5)},
        {"type": "llm", "name": "answer", "model": "m", "input_tokens": fixed(prompt), "output_tokens": fixed(out)},
    ]
    # one task every 100 s: the fleet is idle when each arrives
    tasks = tasks_of(case, steps, rate=0.01, horizon_s=300, scenario_extra={"process": "constant"},
                     system_prompt_tokens=system, tools=[{"name": "svc"}])
    p = prompt + system + 300  # the prompt carries the system prompt and the retrieved passages
    llm = C0 + A * p + sum(C0 + B + C * (p + j) for j in range(1, out))
    assert len(tasks) == 3
    assert np.allclose(tasks["e2e_s"], 1.0 + 0.2 + 0.5 + llm, rtol=1e-12)
    assert np.allclose(tasks["wait"], 1.0) and np.allclose(tasks["tool"], 0.5) and np.allclose(tasks["retrieval"], 0.2)
    assert np.allclose(tasks["prefill"], C0 + A * p) and np.allclose(tasks["queue"], 0.0)
    assert (tasks["tokens_in"] == p).all() and (tasks["outcome"] == "completed").all()
    check_breakdown_adds_up(tasks)


@pytest.mark.parametrize("k", [2, 5])
def test_fan_out_join_all_mean_is_harmonic(case, k):
    rate = 2.0
    steps = [{"type": "parallel", "fan_out": fixed(k),
              "steps": [{"type": "wait", "name": "w", "duration_s": expo(1 / rate)}]}]
    tasks = tasks_of(case, steps, rate=20, horizon_s=200)
    mean, se = mean_ci(tasks["e2e_s"])
    harmonic = sum(1 / i for i in range(1, k + 1)) / rate
    assert abs(mean - harmonic) < 4 * se, (mean, se, harmonic)
    check_breakdown_adds_up(tasks)


def test_first_k_join_is_the_kth_order_statistic(case):
    n, k, rate = 5, 2, 1.0
    branch = [{"type": "wait", "name": "w", "duration_s": expo(1 / rate)}]
    steps = [{"type": "parallel", "branches": [branch] * n, "join": "first_k", "k": k}]
    tasks = tasks_of(case, steps, rate=20, horizon_s=200)
    mean, se = mean_ci(tasks["e2e_s"])
    expected = sum(1 / ((n - i) * rate) for i in range(k))
    assert abs(mean - expected) < 4 * se, (mean, se, expected)


@pytest.mark.parametrize("q, cap", [(0.6, 50), (0.8, 4)])
def test_loop_iterations_follow_the_geometric_law(case, q, cap):
    steps = [{"type": "loop", "continue_p": q, "max_iterations": cap,
              "steps": [{"type": "wait", "name": "w", "duration_s": fixed(0.01)}]}]
    tasks = tasks_of(case, steps, rate=20, horizon_s=200)
    mean, se = mean_ci(tasks["loop_iterations"])
    expected = (1 - q**cap) / (1 - q)  # 1/(1-q) capped at max_iterations
    assert abs(mean - expected) < 4 * se, (mean, se, expected)
    assert tasks["loop_iterations"].max() <= cap


def test_retry_until_success_takes_one_over_one_minus_p_attempts(case):
    p = 0.4
    steps = [{"type": "retry", "max_attempts": 100,
              "steps": [{"type": "tool", "name": "flaky", "service": "svc", "latency_s": fixed(0.01), "fail_p": p}]}]
    tasks = tasks_of(case, steps, rate=20, horizon_s=200, tools=[{"name": "svc"}])
    mean, se = mean_ci(tasks["retries"] + 1)
    assert abs(mean - 1 / (1 - p)) < 4 * se
    assert (tasks["outcome"] == "completed").all()
    rate = 1 - tasks["tool_failures"].sum() / tasks["tool_calls"].sum()
    assert rate == pytest.approx(1 - p, abs=0.03)


def test_retry_backoff_is_exponential_and_counted(case):
    steps = [{"type": "retry", "max_attempts": 3, "backoff_s": 1.0, "backoff_factor": 2.0,
              "steps": [{"type": "tool", "name": "down", "service": "svc", "latency_s": fixed(0.1), "fail_p": 1.0}]}]
    tasks = tasks_of(case, steps, rate=1, horizon_s=20, tools=[{"name": "svc"}], scenario_extra={"process": "constant"})
    assert (tasks["outcome"] == "failed").all()
    assert np.allclose(tasks["backoff"], 1.0 + 2.0)
    assert np.allclose(tasks["e2e_s"], 3 * 0.1 + 3.0)
    check_breakdown_adds_up(tasks)


def test_saturated_tool_is_an_mm1_queue(case):
    """Poisson tasks calling a tool with concurrency 1 and exponential latency: task time = M/M/1 sojourn."""
    lam, mu = 0.7, 1.0
    steps = [{"type": "tool", "name": "t", "service": "one", "latency_s": expo(1 / mu)}]
    tasks = tasks_of(case, steps, rate=lam, horizon_s=20000, tools=[{"name": "one", "concurrency": 1}])
    x = tasks[tasks["start_s"] > 1000].sort_values("start_s")["e2e_s"].to_numpy()
    batches = x[: len(x) - len(x) % 30].reshape(30, -1).mean(axis=1)
    mean, se = batches.mean(), batches.std(ddof=1) / math.sqrt(30)
    assert abs(mean - 1 / (mu - lam)) < 4 * se, (mean, se)


def test_deadline_caps_every_task_and_aborts_its_requests(case):
    steps = [{"type": "llm", "name": "slow", "model": "m", "input_tokens": fixed(100), "output_tokens": fixed(400)},
             {"type": "wait", "name": "w", "duration_s": fixed(5.0)}]
    doc = agent_scenario(rate=2, horizon_s=30, max_num_seqs=64)
    model = FleetModel(case(doc, LINEAR, {"agent": agent_doc(steps, deadline_s=1.0)}), seed=1)
    res = model.run()
    outcomes = {r.outcome for r in res.tasks}
    assert outcomes == {"timed_out"}
    assert all(r.end_s - r.start_s <= 1.0 + 1e-9 for r in res.tasks)
    assert all(abs(sum(r.breakdown[c] for c in CATS) - r.breakdown["total"]) < 1e-9 for r in res.tasks)
    t = res.table
    assert (t.outcome == 4).all()  # every LLM request was aborted by its task
    assert all(e.free_blocks == e.kv_blocks for e in model.engines)


def test_llm_step_timeout_fails_the_step(case):
    steps = [{"type": "retry", "max_attempts": 2, "steps": [
        {"type": "llm", "name": "s", "model": "m", "input_tokens": fixed(10), "output_tokens": fixed(1000),
         "timeout_s": 0.5}]}]
    tasks = tasks_of(case, steps, rate=0.2, horizon_s=10, scenario_extra={"process": "constant"})
    assert (tasks["outcome"] == "failed").all()
    assert np.allclose(tasks["e2e_s"], 1.0) and (tasks["retries"] == 1).all()


def test_token_budget_is_never_exceeded(case):
    body = [{"type": "llm", "name": "step", "model": "m", "input_tokens": fixed(100), "output_tokens": fixed(50)}]
    steps = [{"type": "loop", "continue_p": 1.0, "max_iterations": 20, "steps": body}]
    tasks = tasks_of(case, steps, rate=2, horizon_s=20, budget={"max_tokens": 2000})
    assert ((tasks["tokens_in"] + tasks["tokens_out"]) <= 2000).all()
    assert (tasks["outcome"] == "budget_stopped").all()
    fb = tasks_of(case, steps, rate=2, horizon_s=20, budget={"max_tokens": 2000, "on_exceed": "fallback", "fallback": [
        {"type": "wait", "name": "canned-answer", "duration_s": fixed(0.1)}]})
    assert (fb["outcome"] == "degraded").all()


def test_human_escalation_rate_and_reviewer_queue(case):
    steps = [{"type": "human", "name": "review", "p": 0.3, "pool": "rev", "handling_time_s": fixed(0.5)}]
    tasks = tasks_of(case, steps, rate=10, horizon_s=300, humans=[{"name": "rev", "count": 3, "usd_per_hour": 36}])
    assert tasks["escalated"].mean() == pytest.approx(0.3, abs=0.03)
    esc = tasks[tasks["escalated"]]
    assert (esc["human"] >= 0.5 - 1e-12).all()
    assert np.allclose(esc["usd_human"], 36 * 0.5 / 3600)


def test_no_task_is_lost_and_context_grows(case):
    steps = [
        {"type": "llm", "name": "plan", "model": "m", "input_tokens": fixed(50), "output_tokens": fixed(30)},
        {"type": "parallel", "fan_out": {"kind": "uniform", "low": 1, "high": 4}, "steps": [
            {"type": "tool", "name": "search", "service": "web", "latency_s": expo(0.3), "result_tokens": fixed(200),
             "fail_p": 0.1}]},
        {"type": "branch", "options": [
            {"p": 0.5, "steps": [{"type": "llm", "name": "short", "model": "m", "input_tokens": fixed(10),
                                  "output_tokens": fixed(20)}]},
            {"p": 0.5, "steps": []}]},
        {"type": "llm", "name": "synth", "model": "m", "input_tokens": fixed(10), "output_tokens": fixed(40)},
    ]
    tasks = tasks_of(case, steps, rate=20, horizon_s=30, tools=[{"name": "web", "concurrency": 8}])
    assert set(tasks["outcome"]) <= {"completed", "failed"}
    assert len(tasks) > 400
    check_breakdown_adds_up(tasks)
    done = tasks[tasks["outcome"] == "completed"]
    # the synthesis prompt carries the plan output and every search result
    assert (done["tokens_in"] >= 50 + 10 + 30 + 200).all()


@pytest.mark.parametrize(
    "step, field, reason",
    [
        ({"type": "loop", "continue_p": 0.5, "steps": [{"type": "wait", "name": "w", "duration_s": fixed(1)}]},
         "steps[0].max_iterations", "required field is missing"),
        ({"type": "teleport", "name": "x"}, "steps[0].type", "unknown value 'teleport'"),
        ({"type": "wait", "name": "w", "duration_s": {"kind": "fixed", "value": -1}}, "steps[0].duration_s.value",
         "greater than or equal to 0"),
        ({"type": "tool", "name": "t", "service": "nowhere", "latency_s": fixed(1)}, "steps[0].service",
         "unknown tool service 'nowhere'"),
        ({"type": "branch", "options": [{"p": 0.5, "steps": []}, {"p": 0.2, "steps": []}]}, "steps[0]", "sum to 0.7"),
    ],
)
def test_bad_workloads_are_rejected_with_the_field(case, step, field, reason):
    with pytest.raises((InputError, InputErrors)) as info:
        case(agent_scenario(), LINEAR, {"agent": agent_doc([step])})
    errs = info.value.errors if isinstance(info.value, InputErrors) else [info.value]
    assert any(f"agent.yaml: {field}:" in str(e) and reason in str(e) for e in errs), [str(e) for e in errs]


def test_unmapped_model_role_is_rejected(case):
    doc = agent_scenario()
    doc["traffic"]["classes"][0] = {"name": "task", "workload": "agent", "targets": {"other": "dep"}}
    steps = [{"type": "llm", "name": "s", "model": "m", "input_tokens": fixed(1), "output_tokens": fixed(1)}]
    with pytest.raises(InputErrors) as info:
        case(doc, LINEAR, {"agent": agent_doc(steps)})
    assert "no deployment for model role 'm'" in str(info.value)


def test_trace_file_is_bounded_and_well_formed(tmp_path):
    import json

    from typer.testing import CliRunner

    from simfactory.cli import app
    from simfactory.paths import SCENARIOS_DIR

    trace = tmp_path / "trace.json"
    res = CliRunner().invoke(app, ["run", str(SCENARIOS_DIR / "support-agent.yaml"), "--quiet", "--no-plots",
                                   "--out", str(tmp_path / "out"), "--trace", str(trace), "--trace-tasks", "7"])
    assert res.exit_code == 0, res.output
    events = json.loads(trace.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] in ("b", "e")]
    task_tracks = {e["tid"] for e in spans if e["pid"] == 1}
    assert len(task_tracks) == 7
    begins = {(e["cat"], e["id"]): e["ts"] for e in spans if e["ph"] == "b"}
    ends = {(e["cat"], e["id"]): e["ts"] for e in spans if e["ph"] == "e"}
    assert begins.keys() == ends.keys() and all(ends[k] >= begins[k] for k in begins)
    assert any(e["pid"] == 2 for e in spans)  # requests appear on replica tracks too
    tasks = (tmp_path / "out" / "tasks.csv").read_text().splitlines()
    assert len(tasks) > 100  # every task is in tasks.csv; only 7 are traced


def test_agent_context_is_reused_through_the_prefix_cache(case):
    body = [{"type": "llm", "name": "act", "model": "m", "input_tokens": fixed(50), "output_tokens": fixed(100)},
            {"type": "tool", "name": "run", "service": "svc", "latency_s": fixed(0.5), "result_tokens": fixed(400)}]
    steps = [{"type": "loop", "continue_p": 1.0, "max_iterations": 5, "steps": body}]
    wl = dict(system_prompt_tokens=2000, tools=[{"name": "svc"}])

    def run_with(capacity: int):
        doc = agent_scenario(rate=1, horizon_s=30, replicas=2, max_num_seqs=64, prefix_cache_tokens=capacity)
        doc["routing"]["load_balancer"] = "session_affinity"
        return run(case(doc, LINEAR, {"agent": agent_doc(steps, **wl)}))

    cached, plain = run_with(10_000_000), run_with(0)
    req = cached.requests.sort_values(["task_id", "arrival_s"])
    for _, g in req.groupby("task_id"):
        # every call after the first finds the context of the one before it: 2000 + 500 per iteration
        expected = [0 if i == 0 else 2000 + 500 * (i - 1) for i in range(len(g))]
        expected[0] = g["cached_tokens"].iloc[0]  # the first call may hit the shared system prompt
        assert list(g["cached_tokens"]) == expected
    assert cached.requests["ttft_s"].mean() < plain.requests["ttft_s"].mean()


def W(name: str, d: float) -> dict:
    return {"type": "wait", "name": name, "duration_s": fixed(d)}


def test_cancelled_branches_free_their_tools_and_reviewers(case):
    tool = lambda n, d: {"type": "tool", "name": n, "service": "svc", "latency_s": fixed(d)}  # noqa: E731
    steps = [{"type": "parallel", "join": "first_k", "k": 1, "branches": [[W("fast", 1)], [tool("slow", 50)]]},
             tool("quick", 1)]
    doc = agent_scenario(rate=1, horizon_s=1, process="constant")
    tasks = run(case(doc, LINEAR, {"agent": agent_doc(steps, tools=[{"name": "svc", "concurrency": 1}])})).tasks
    assert tasks["e2e_s"].iloc[0] == pytest.approx(2.0)  # the losing branch gave the tool slot back at 1 s
    steps = [{"type": "human", "name": "rev", "p": 1.0, "pool": "ops", "handling_time_s": fixed(50)}]
    doc = agent_scenario(rate=0.1, horizon_s=40, process="constant")
    tasks = run(case(doc, LINEAR, {"agent": agent_doc(steps, deadline_s=5.0, humans=[
        {"name": "ops", "count": 1, "usd_per_hour": 3600}])})).tasks
    # each task gets the reviewer at once (the previous one gave up at its deadline) and pays 5 s of review
    assert (tasks["outcome"] == "timed_out").all() and np.allclose(tasks["human"], 5.0)
    assert np.allclose(tasks["usd_human"], 5.0)


def test_breakdown_adds_up_for_a_timed_out_task_with_nested_forks(case):
    inner = {"type": "parallel", "join": "first_k", "k": 1, "branches": [[W("fast", 1)], [W("slow", 20)]]}
    steps = [{"type": "parallel", "branches": [[inner, W("after", 2)], [W("long", 100)]]}]
    doc = agent_scenario(rate=1, horizon_s=1, process="constant")
    tasks = run(case(doc, LINEAR, {"agent": agent_doc(steps, deadline_s=10.0)})).tasks
    assert (tasks["outcome"] == "timed_out").all()
    check_breakdown_adds_up(tasks)


def test_a_call_given_up_during_its_last_step_is_not_escalated(case):
    doc = agent_scenario(rate=1, horizon_s=1, process="constant")
    dep = doc["deployments"][0]
    doc["pools"][0]["count"] = 2
    doc["deployments"] = [{**dep, "name": "small"}, {**dep, "name": "large"}]
    doc["routing"]["routes"] = [{"name": "tiers", "policy": "cascade",
                                 "tiers": [{"deployment": "small", "fail_p": 1.0}, {"deployment": "large"}]}]
    doc["traffic"]["classes"][0]["target"] = "tiers"
    steps = [{"type": "llm", "name": "s", "model": "m", "input_tokens": fixed(1), "output_tokens": fixed(10),
              "timeout_s": 0.095}]
    res = run(case(doc, {"overhead_s": 0.01}, {"agent": agent_doc(steps)}))
    assert len(res.requests) == 1 and res.tasks["outcome"].iloc[0] == "failed"
    assert res.summary["service"]["routes"]["tiers"]["requests"] == 1  # agent calls count in route blocks


def test_a_verbatim_transcript_finds_the_whole_last_exchange_cached(case):
    """With the message kept (carry_input) the next prompt starts with the last call's whole sequence, context,
    message and answer: the replica that ran it holds all of it (vLLM keeps a finished sequence's blocks), so each
    call finds everything but the 400-token tool result that came after (before: only the last call's context)."""
    body = [{"type": "llm", "name": "act", "model": "m", "input_tokens": fixed(50), "output_tokens": fixed(100),
             "carry_input": True},
            {"type": "tool", "name": "run", "service": "svc", "latency_s": fixed(0.5), "result_tokens": fixed(400)}]
    steps = [{"type": "loop", "continue_p": 1.0, "max_iterations": 5, "steps": body}]
    doc = agent_scenario(rate=1, horizon_s=30, replicas=2, max_num_seqs=64, prefix_cache_tokens=10_000_000)
    doc["routing"]["load_balancer"] = "session_affinity"
    req = run(case(doc, LINEAR, {"agent": agent_doc(steps, system_prompt_tokens=2000, tools=[{"name": "svc"}])})
              ).requests.sort_values(["task_id", "arrival_s"])
    assert req["task_id"].nunique() > 5
    for _, g in req.groupby("task_id"):
        context = [2000 + 550 * i for i in range(len(g))]  # each iteration keeps 50 + 100 + 400 tokens
        assert list(g["input_tokens"]) == [c + 50 for c in context]
        assert list(g["cached_tokens"].iloc[1:]) == [c - 400 for c in context[1:]]


def test_a_compressed_context_is_not_found_in_the_cache_any_more(case):
    """After a compression the task's cached context is of the old text: the next call may reuse the system
    prompt (a prefix of both), never the old history (before, the cache answered with the compressed length)."""
    a = {"type": "llm", "name": "a", "model": "m", "input_tokens": fixed(50), "output_tokens": fixed(100),
         "carry_input": True}
    steps = [a, a, {"type": "compress", "name": "sq", "keep_fraction": 0.25, "latency_s": fixed(0.1)},
             {"type": "llm", "name": "b", "model": "m", "input_tokens": fixed(10), "output_tokens": fixed(5)}]
    doc = agent_scenario(rate=0.5, horizon_s=30, replicas=1, max_num_seqs=64, prefix_cache_tokens=10_000_000)
    req = run(case(doc, LINEAR, {"agent": agent_doc(steps, system_prompt_tokens=1000)})).requests
    b = req[req["step"] == "b"]
    assert len(b) > 5
    assert (b["input_tokens"] == 1000 + 75 + 10).all()  # the history of 300 kept at a quarter
    assert (b["cached_tokens"] == 1000).all()  # the system prompt only


def test_only_the_tasks_own_accepted_transcript_is_cached_as_its_prefix(case):
    """A parallel branch's sequence is not the next prompt's prefix (the join appends every branch), nor is a retry
    trial's (its answer may be thrown away and drawn again): after either, the next call finds the 1,000-token
    system prompt cached and nothing of the branches' or trials' answers."""
    def call(name: str, new: int, out: int, **extra: Any) -> dict[str, Any]:
        return {"type": "llm", "name": name, "model": "m", "input_tokens": fixed(new), "output_tokens": fixed(out),
                "carry_input": True, **extra}

    flows = {
        "parallel": [{"type": "parallel", "name": "p", "branches": [[call("a", 50, 10)], [call("b", 600, 200)]]}],
        "retry": [{"type": "retry", "name": "r", "max_attempts": 3, "steps": [call("a", 300, 100, fail_p=0.5)]}],
    }
    for name, head in flows.items():
        doc = agent_scenario(rate=0.05, horizon_s=400, replicas=2, max_num_seqs=64, prefix_cache_tokens=10_000_000)
        doc["traffic"]["arrival"] = {"process": "constant", "rate_per_s": 0.05}
        doc["routing"]["load_balancer"] = "round_robin"
        req = run(case(doc, LINEAR, {"agent": agent_doc(head + [call("final", 5, 5)], system_prompt_tokens=1000)}
                       )).requests
        final = req[req["step"] == "final"]
        assert len(final) > 5, name
        assert (final["input_tokens"] > 1000 + 5).all() and (final["cached_tokens"] == 1000).all(), name


def test_a_disaggregated_prefill_replica_keeps_the_prompt_it_computed(case):
    """Disaggregated, the prefill replica computed call a's prompt (system 1000 + message 300) and the decode replica
    its answer: call b finds the 1,300 tokens when it is prefilled where a was, and no more (the answer is not there),
    else only the system prompt."""
    steps = [{"type": "llm", "name": n, "model": "m", "input_tokens": fixed(i), "output_tokens": fixed(o),
              "carry_input": True} for n, i, o in (("a", 300, 100), ("b", 50, 20))]
    doc = agent_scenario(rate=0.2, horizon_s=100, replicas=2, max_num_seqs=64, prefix_cache_tokens=10_000_000)
    doc["pools"][0]["count"] = 4
    doc["deployments"][0]["disaggregated"] = {"prefill_replicas": 2, "kv_link_gb_s": 50, "kv_link_latency_s": 0.0005}
    req = run(case(doc, LINEAR, {"agent": agent_doc(steps, system_prompt_tokens=1000)})).requests
    a = req[req["step"] == "a"].set_index("task_id")
    b = req[req["step"] == "b"].set_index("task_id")
    same = a.loc[b.index, "prefill_replica"].to_numpy() == b["prefill_replica"].to_numpy()
    assert same.any() and (~same).any()
    assert (b["cached_tokens"][same] == 1300).all() and (b["cached_tokens"][~same] <= 1000).all()



@pytest.mark.parametrize("variant", ["plain", "front_end", "network", "semantic_cache", "outages_and_retries"])
def test_breakdowns_booked_at_the_end_of_the_run_equal_each_tasks_reading_at_its_end(case, monkeypatch, variant):
    """A finished task's LLM phases are booked over all tasks at once when the run ends (sim/task_breakdown.py);
    each equals agents.breakdown read from the task's log at the task's end, as before: escalated calls, parallel
    branches, step timeouts and deadlines under queueing, with a front end, a network link, a semantic cache, or
    outages whose lost requests are retried."""
    from simfactory.sim import run as fleet_run
    from simfactory.sim.agents import breakdown

    at_end: dict[int, dict[str, float]] = {}
    finish = fleet_run.FleetModel.finish_task

    def finish_task(self, rec):
        at_end[rec.task_id] = breakdown(rec.log, self.env.now, self.table)
        finish(self, rec)

    monkeypatch.setattr(fleet_run.FleetModel, "finish_task", finish_task)
    doc = agent_scenario(rate=20, horizon_s=20, max_num_seqs=8)
    dep = doc["deployments"][0]
    doc["pools"][0]["count"] = 2
    if variant == "front_end":
        dep["front_end_s"] = 0.02
        dep["front_end_work"] = {"per_request_s": 0.01, "per_input_token_s": 1e-5, "per_output_token_s": 2e-4}
    doc["deployments"] = [{**dep, "name": "small"}, {**dep, "name": "large"}]
    doc["routing"]["routes"] = [{"name": "tiers", "policy": "cascade",
                                 "tiers": [{"deployment": "small", "fail_p": 0.5}, {"deployment": "large"}]}]
    task_class = doc["traffic"]["classes"][0]
    task_class["target"] = "tiers"
    if variant == "semantic_cache":
        task_class["semantic_cache"] = {"hit_ratio": 0.3, "latency_s": fixed(0.3)}
    if variant == "network":
        task_class["region"], doc["pools"][0]["region"] = "eu", "us"
        doc["network"] = {"links": [{"a": "eu", "b": "us", "latency_s": 0.05, "jitter_s": 0.02}]}
    if variant == "outages_and_retries":
        doc["faults"] = {"retry": {"max_retries": 2, "backoff_s": 0.5},
                         "outages": [{"pool": "pool", "start_s": 5.0, "duration_s": 0.5},
                                     {"pool": "pool", "start_s": 12.0, "duration_s": 0.3}]}
    llm = {"type": "llm", "name": "a", "model": "m", "input_tokens": expo(300), "output_tokens": expo(40)}
    steps = [llm, {"type": "parallel", "branches": [[{**llm, "name": "b", "timeout_s": 0.3}],
                                                     [W("w", 0.2), {**llm, "name": "c"}]]},
             {**llm, "name": "d", "timeout_s": 0.4}]
    res = run(case(doc, LINEAR, {"agent": agent_doc(steps, deadline_s=1.5)}))
    ended = [tid for tid, outcome in zip(res.tasks["task_id"], res.tasks["outcome"]) if outcome != "unfinished"]
    assert len(ended) > 100 and "timed_out" in set(res.tasks["outcome"])  # over the network none completes
    booked = res.tasks.set_index("task_id")
    for tid in ended:
        for category in CATS:
            assert booked.at[tid, category] == pytest.approx(at_end[tid][category], rel=1e-12, abs=1e-12), (tid, category)
    check_breakdown_adds_up(res.tasks)


def test_a_retry_is_not_sent_for_a_call_its_task_gave_up_on(case):
    """A request lost to an outage is retried after its backoff, unless the agent step that sent it timed out (or
    its task ended) meanwhile: nobody waits for that answer, so no attempt is sent after its task's end."""
    doc = agent_scenario(rate=20, horizon_s=20, max_num_seqs=8)
    doc["faults"] = {"retry": {"max_retries": 2, "backoff_s": 0.5},
                     "outages": [{"pool": "pool", "start_s": 5.0, "duration_s": 1.0},
                                 {"pool": "pool", "start_s": 12.0, "duration_s": 1.0}]}
    llm = {"type": "llm", "name": "a", "model": "m", "input_tokens": expo(300), "output_tokens": expo(40),
           "timeout_s": 0.3}
    res = run(case(doc, LINEAR, {"agent": agent_doc([llm, {**llm, "name": "b"}], deadline_s=1.5)}))
    req, tasks = res.requests, res.tasks.set_index("task_id")
    assert (req["outcome"] == "failed").sum() > 0  # the outages lost requests; their steps time out before a retry
    end_s = tasks.loc[req["task_id"], "end_s"].to_numpy()
    assert (req["arrival_s"].to_numpy() <= end_s + 1e-9).all()
