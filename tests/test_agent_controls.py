"""Agent controls: a tool-call budget ends tasks with a counted outcome; compression shrinks later prompts by
exactly what it states; a gateway adds exactly its latency and fee; the per-component fault table adds up to the
task outcomes; bad values of every new field are refused in one line; the same seed gives the same outputs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import agent_doc, agent_scenario, write_case
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app

C0, A, B, C = 0.004, 1e-5, 3e-4, 2e-7
LINEAR = {"overhead_s": C0, "s_per_prefill_token": A, "s_per_decode_seq": B, "s_per_kv_token": C}


def fixed(v: float) -> dict[str, Any]:
    return {"kind": "fixed", "value": v}


def tool(name: str = "api", latency_s: float = 0.1, **extra: Any) -> dict[str, Any]:
    return {"type": "tool", "name": name, "service": "svc", "latency_s": fixed(latency_s), **extra}


def llm(name: str, input_tokens: int = 10, output_tokens: int = 5, **extra: Any) -> dict[str, Any]:
    return {"type": "llm", "name": name, "model": "m", "input_tokens": fixed(input_tokens),
            "output_tokens": fixed(output_tokens), **extra}


def result_of(case, steps, rate=0.5, horizon_s=40.0, process="poisson", seed=1, **wl):
    doc = agent_scenario(rate=rate, horizon_s=horizon_s, max_num_seqs=64)
    doc["traffic"]["arrival"]["process"] = process
    doc["seed"] = seed
    wl.setdefault("tools", [{"name": "svc"}])
    return run(case(doc, LINEAR, {"agent": agent_doc(steps, **wl)}))


def loop_of_tools(n: int) -> list[dict[str, Any]]:
    return [{"type": "loop", "name": "react", "continue_p": 1.0, "max_iterations": n, "steps": [tool()]}]


# ---- budget ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cap, calls", [(3, 6), (6, 6), (0, 2)])
def test_tool_call_budget_stops_the_task_at_its_cap_and_is_counted(case, cap, calls):
    r = result_of(case, loop_of_tools(calls), budget={"max_tool_calls": cap})
    t = r.tasks
    assert len(t) > 5
    hit = cap < calls
    assert set(t["outcome"]) == {"budget_stopped" if hit else "completed"}
    assert (t["tool_calls"] == min(cap, calls)).all()  # the cap is never passed, and is reached
    s = r.summary["tasks"]["task"]
    measured = int(t["measured"].sum())
    assert s["outcomes"]["budget_stopped"] == s["controls"]["budget_hits"]["tool_calls"] == (measured if hit else 0)
    assert s["controls"]["budget_hits"]["tokens"] == s["controls"]["budget_hits"]["usd"] == 0


def test_tool_call_budget_with_fallback_degrades_instead(case):
    fallback = [{"type": "wait", "name": "apologise", "duration_s": fixed(0.25)}]
    r = result_of(case, loop_of_tools(5), budget={"max_tool_calls": 2, "on_exceed": "fallback", "fallback": fallback})
    t = r.tasks
    assert set(t["outcome"]) == {"degraded"}
    assert (t["tool_calls"] == 2).all()
    # two tool calls, then the fallback: nothing else runs
    assert np.allclose(t["e2e_s"], 2 * 0.1 + 0.25, rtol=1e-12)


# ---- compression -----------------------------------------------------------------------------------------------
SYSTEM = 100
RESULT = 1000  # a tool result of 1,000 tokens joins the context: 1,100 tokens carried


@pytest.mark.parametrize("action, kept", [
    ({"keep_fraction": 0.25}, 250),
    ({"max_tokens": 100}, 100),
    ({"keep_fraction": 0.5, "max_tokens": 300}, 300),
    ({"keep_fraction": 1.0}, RESULT),
])
def test_compress_step_shrinks_later_prompts_by_the_stated_amount(case, action, kept):
    steps = [tool(result_tokens=fixed(RESULT)),
             {"type": "compress", "name": "squeeze", "latency_s": fixed(0.5), "usd_per_call": 0.01, **action},
             llm("answer", input_tokens=10)]
    r = result_of(case, steps, system_prompt_tokens=SYSTEM, rate=0.2, process="constant")
    t = r.tasks
    # the only LLM call carries the system prompt, the kept history and its own 10 tokens
    assert (t["tokens_in"] == SYSTEM + kept + 10).all()
    s = r.summary["tasks"]["task"]["controls"]
    assert s["compressions_per_task"] == 1.0
    assert s["compressed_tokens_per_task"] == pytest.approx(RESULT - kept)
    assert np.allclose(t["usd_tools"], 0.01)
    assert (t["wait"] == 0.5).all()  # the fixed-cost compression's time


def test_compress_with_a_model_is_an_llm_call_on_the_context(case):
    steps = [tool(result_tokens=fixed(RESULT)),
             {"type": "compress", "name": "summarise", "model": "m", "keep_fraction": 0.2},
             llm("answer", input_tokens=10, output_tokens=5)]
    r = result_of(case, steps, system_prompt_tokens=SYSTEM, rate=0.2, process="constant")
    req = r.requests
    summarise = req[req["step"] == "summarise"]
    answer = req[req["step"] == "answer"]
    assert len(summarise) == len(answer) == len(r.tasks)
    assert (summarise["input_tokens"] == SYSTEM + RESULT).all()  # the prompt is the whole context
    assert (summarise["output_tokens"] == 200).all()  # the summary is the kept history
    assert (answer["input_tokens"] == SYSTEM + 200 + 10).all()


def test_auto_compress_fires_only_above_its_threshold(case):
    # context after the tool: 1,100 tokens, so the first LLM step is compressed (to 100 + 50); with a threshold of
    # 1,105 nothing is (b's context is 1,100 + a's 5 output tokens: not strictly above)
    steps = [tool(result_tokens=fixed(RESULT)), llm("a", output_tokens=5), llm("b", output_tokens=5)]
    auto = {"above_tokens": 1000, "max_tokens": 50, "latency_s": fixed(0.0)}
    r = result_of(case, steps, system_prompt_tokens=SYSTEM, rate=0.2, process="constant", auto_compress=auto)
    req = r.requests
    # a: 100 + 50 kept + 10; its 5 output tokens join: 155 < 1000, so b is not compressed: 155 + 10
    assert (req.loc[req["step"] == "a", "input_tokens"] == SYSTEM + 50 + 10).all()
    assert (req.loc[req["step"] == "b", "input_tokens"] == SYSTEM + 50 + 5 + 10).all()
    assert r.summary["tasks"]["task"]["controls"]["compressions_per_task"] == 1.0
    auto["above_tokens"] = SYSTEM + RESULT + 5
    r = result_of(case, steps, system_prompt_tokens=SYSTEM, rate=0.2, process="constant", auto_compress=auto)
    assert r.summary["tasks"]["task"]["controls"]["compressions_per_task"] == 0.0


# ---- gateway -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["workload", "service"])
def test_gateway_adds_exactly_its_latency_and_fee_per_call(case, where):
    steps = [tool("a", 0.5), tool("b", 0.25), llm("answer")]
    base = result_of(case, steps, rate=0.1, horizon_s=60, process="constant")
    gw = {"name": "mcp", "latency_s": fixed(0.03), "usd_per_call": 0.001}
    wl: dict[str, Any] = {"gateway": gw} if where == "workload" else {"tools": [{"name": "svc", "gateway": gw}]}
    via = result_of(case, steps, rate=0.1, horizon_s=60, process="constant", **wl)
    assert len(base.tasks) == len(via.tasks) > 3
    assert np.allclose(via.tasks["e2e_s"] - base.tasks["e2e_s"], 2 * 0.03, rtol=0, atol=1e-12)
    assert np.allclose(via.tasks["usd_tools"] - base.tasks["usd_tools"], 2 * 0.001, rtol=0, atol=1e-15)
    ctl = via.summary["tasks"]["task"]["controls"]
    assert ctl["gateway_calls_per_task"] == 2.0
    assert ctl["gateway_s_per_task"] == pytest.approx(0.06, rel=1e-12)
    assert via.summary["tasks"]["task"]["components"]["gateway/mcp"]["calls"] == 2 * int(via.tasks["measured"].sum())


@pytest.mark.parametrize("hop_s, tool_s, outcome, timed_out_at", [
    (0.1, 0.15, "completed", None),  # 0.25 s in all: within the 0.3 s timeout
    (0.2, 0.2, "failed", "tool/svc"),  # the tool alone would fit; with the hop the caller gives up at 0.3 s
    (0.5, 0.1, "failed", "gateway/mcp"),  # the caller gives up at the gateway: the tool is never reached
])
def test_a_tools_timeout_counts_the_gateway_hop(case, hop_s, tool_s, outcome, timed_out_at):
    """timeout_s runs from the call: the gateway hop, the wait for a slot and the tool (a client's timeout covers
    the whole request it sent through the gateway)."""
    steps = [tool("slow", tool_s, timeout_s=0.3)]
    r = result_of(case, steps, rate=0.2, process="constant", tools=[{"name": "svc", "gateway": {
        "name": "mcp", "latency_s": fixed(hop_s)}}])
    t = r.tasks
    assert len(t) > 3 and set(t["outcome"]) == {outcome}
    assert np.allclose(t["e2e_s"], min(hop_s + tool_s, 0.3), rtol=1e-12)
    comp = r.summary["tasks"]["task"]["components"]
    measured = int(t["measured"].sum())
    for key in ("tool/svc", "gateway/mcp"):
        assert comp.get(key, {}).get("timeouts", 0) == (measured if key == timed_out_at else 0)
    assert comp.get("tool/svc", {}).get("calls", 0) == (0 if timed_out_at == "gateway/mcp" else measured)
    # the tool's own counts: a call that timed out at the gateway never reached it (no call, no failure)
    reached = timed_out_at != "gateway/mcp"
    assert int(t["tool_calls"].sum()) == (len(t) if reached else 0)
    assert int(t["tool_failures"].sum()) == (len(t) if timed_out_at == "tool/svc" else 0)
    rate = r.summary["tasks"]["task"]["tool_success_rate"]
    assert rate == (None if not reached else 0.0 if timed_out_at else 1.0)


def test_a_failed_gateway_hop_never_reaches_the_tool(case):
    """The gateway's own failure: a gateway failure, not a tool call nor a tool failure (tool_success_rate has no
    calls to rate)."""
    r = result_of(case, [tool("t", 0.1)], rate=0.2, process="constant", tools=[{"name": "svc", "gateway": {
        "name": "mcp", "latency_s": fixed(0.01), "fail_p": 1.0}}])
    t = r.tasks
    assert len(t) > 3 and set(t["outcome"]) == {"failed"}
    assert int(t["tool_calls"].sum()) == int(t["tool_failures"].sum()) == 0
    task = r.summary["tasks"]["task"]
    assert task["tool_success_rate"] is None
    assert task["components"]["gateway/mcp"]["failures"] == int(t["measured"].sum())


# ---- per-component table ----------------------------------------------------------------------------------------
def test_component_failures_and_timeouts_add_up_to_failed_tasks(case):
    # no retries: every failed task has exactly one failed or timed-out call
    steps = [
        {"type": "retrieval", "name": "kb", "latency_s": fixed(0.01), "hit_tokens": fixed(10)},
        tool("lookup", fail_p=0.1),
        {"type": "tool", "name": "slow", "service": "svc", "latency_s": {"kind": "exponential", "mean": 0.2},
         "timeout_s": 0.3},
        llm("answer", fail_p=0.1),
    ]
    r = result_of(case, steps, rate=2.0, horizon_s=60, gateway={"latency_s": fixed(0.01), "fail_p": 0.05})
    t = r.tasks[r.tasks["measured"]]
    s = r.summary["tasks"]["task"]
    comp = s["components"]
    failed_calls = sum(c["failures"] + c["timeouts"] for c in comp.values())
    assert failed_calls == s["outcomes"]["failed"] == int((t["outcome"] == "failed").sum()) > 0
    assert sum(c["calls"] for k, c in comp.items() if k.startswith("tool/")) == int(t["tool_calls"].sum())
    assert sum(c["calls"] for k, c in comp.items() if k.startswith("llm/")) == int(t["llm_calls"].sum())
    assert comp["tool/svc"]["timeouts"] > 0 and comp["gateway/gateway"]["failures"] > 0
    for c in comp.values():
        assert c["failure_rate"] == pytest.approx(c["failures"] / c["calls"])
        assert c["timeout_rate"] == pytest.approx(c["timeouts"] / c["calls"])


def test_report_shows_the_component_table(tmp_path):
    steps = [tool(fail_p=0.2)]
    path = write_case(tmp_path, agent_scenario(rate=1.0, horizon_s=20.0),
                      workloads={"agent": agent_doc(steps, tools=[{"name": "svc"}], budget={"max_tool_calls": 1})})
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-plots", "--quiet"])
    assert res.exit_code == 0, res.output
    md = (out / "summary.md").read_text()
    assert "Faults and timeouts per component" in md and "| task | tool/svc |" in md
    assert "Agent controls" in md


# ---- determinism -------------------------------------------------------------------------------------------
def test_same_seed_same_outputs(case):
    steps = [tool(result_tokens={"kind": "exponential", "mean": 800}, fail_p=0.05),
             {"type": "compress", "name": "sq", "keep_fraction": 0.5, "latency_s": {"kind": "exponential", "mean": 0.1}},
             llm("answer")]
    wl = {"gateway": {"latency_s": {"kind": "exponential", "mean": 0.02}, "fail_p": 0.05},
          "budget": {"max_tool_calls": 1}}
    a = result_of(case, steps, rate=1.0, horizon_s=30, seed=5, **wl)
    b = result_of(case, steps, rate=1.0, horizon_s=30, seed=5, **wl)
    c = result_of(case, steps, rate=1.0, horizon_s=30, seed=6, **wl)
    assert a.tasks.equals(b.tasks)
    assert a.summary["tasks"] == b.summary["tasks"]
    assert not a.tasks["e2e_s"].equals(c.tasks["e2e_s"])


# ---- hostile values ------------------------------------------------------------------------------------------
def _refused(root: Path, workload: dict[str, Any], field: str) -> None:
    path = write_case(root, agent_scenario(), workloads={"agent": workload})
    res = CliRunner().invoke(app, ["validate", str(path)])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert f": {field}" in lines[0], (field, lines[0])


NAN, INF = float("nan"), float("inf")
BASE_TOOLS = [{"name": "svc"}]
COMPRESS = {"type": "compress", "name": "sq", "keep_fraction": 0.5, "latency_s": fixed(0.1)}
GW = {"latency_s": fixed(0.01)}


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return doc


HOSTILE = [
    ("budget.max_tool_calls", v) for v in (-1, 1e300, NAN, "3", True, 10**18)
] + [
    ("steps.1.keep_fraction", v) for v in (0, -0.5, 1.5, NAN, INF, "half")
] + [
    ("steps.1.max_tokens", v) for v in (-1, 10**12, NAN, "x")
] + [
    ("steps.1.usd_per_call", v) for v in (-1, INF, NAN)
] + [
    ("gateway.usd_per_call", v) for v in (-1, INF, NAN, "1")
] + [
    ("gateway.fail_p", v) for v in (-0.1, 1.1, NAN, INF)
] + [
    ("gateway.latency_s", v) for v in (5, {"kind": "fixed", "value": -1}, {"kind": "fixed", "value": INF})
] + [
    ("tools.0.gateway", v) for v in (3, {"latency_s": fixed(0.1), "fail_p": 2})
] + [
    ("auto_compress.above_tokens", v) for v in (0, -5, 10**12, NAN, "many")
]


def _error_path(dotted: str) -> str:
    """budget.max_tool_calls -> budget.max_tool_calls; steps.1.keep_fraction -> steps[1].keep_fraction"""
    return re.sub(r"\.(\d+)", r"[\1]", dotted)


@pytest.mark.parametrize("dotted, value", HOSTILE)
def test_hostile_values_of_agent_controls_are_refused_in_one_line(tmp_path, dotted, value):
    doc = agent_doc([tool(), COMPRESS, llm("answer")], tools=copy.deepcopy(BASE_TOOLS), budget={"max_tool_calls": 3},
                    gateway=dict(GW), auto_compress={"above_tokens": 1000, "keep_fraction": 0.5, "latency_s": fixed(0)})
    _refused(tmp_path, _set(doc, dotted, value), _error_path(dotted))


@pytest.mark.parametrize("action, reason", [
    ({"keep_fraction": 0.5}, "give model"),
    ({"latency_s": fixed(0.1)}, "keep_fraction"),
    ({"keep_fraction": 0.5, "latency_s": fixed(0.1), "model": "m"}, "one of them"),
    ({"keep_fraction": 0.5, "model": "m", "usd_per_call": 1.0}, "usd_per_call"),
])
def test_incomplete_compress_steps_are_refused_with_the_reason(tmp_path, action, reason):
    doc = agent_doc([{"type": "compress", "name": "sq", **action}, llm("answer")])
    path = write_case(tmp_path, agent_scenario(), workloads={"agent": doc})
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output and reason in res.output, res.output


@pytest.mark.parametrize("where", ["step", "auto"])
def test_a_compress_model_role_without_a_deployment_is_refused(tmp_path, where):
    summarise = {"keep_fraction": 0.5, "model": "summariser"}
    steps = [llm("answer")] + ([{"type": "compress", "name": "sq", **summarise}] if where == "step" else [])
    extra = {"auto_compress": {"above_tokens": 10, **summarise}} if where == "auto" else {}
    doc = agent_scenario()
    doc["traffic"]["classes"][0] = {"name": "task", "workload": "agent", "targets": {"m": "dep"}}
    path = write_case(tmp_path, doc, workloads={"agent": agent_doc(steps, **extra)})
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output and "'summariser'" in res.output, res.output


@pytest.mark.parametrize("cap, stopped", [(SYSTEM + RESULT + 200 - 1, True), (SYSTEM + RESULT + 200, False)])
def test_a_summarising_call_is_held_to_the_token_budget_like_any_llm_call(case, cap, stopped):
    """The compression call (prompt: the 1,100-token context; answer: the 200 kept) is made only within max_tokens;
    past it the task stops before the call, which is neither made nor counted."""
    steps = [tool(result_tokens=fixed(RESULT)),
             {"type": "compress", "name": "summarise", "model": "m", "keep_fraction": 0.2}]
    r = result_of(case, steps, system_prompt_tokens=SYSTEM, rate=0.2, process="constant",
                  budget={"max_tokens": cap})
    t = r.tasks
    assert len(t) > 3
    assert set(t["outcome"]) == {"budget_stopped" if stopped else "completed"}
    assert (t["llm_calls"] == (0 if stopped else 1)).all() and (t["tokens_in"] == (0 if stopped else 1100)).all()
    s = r.summary["tasks"]["task"]["controls"]
    assert s["compressions_per_task"] == (0.0 if stopped else 1.0)
    assert s["budget_hits"]["tokens"] == (int(t["measured"].sum()) if stopped else 0)
