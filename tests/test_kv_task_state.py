"""KV cache as task state (kv_retention): an agent task's KV blocks pinned on its replica between LLM steps.

Invariants: with ample memory and no ttl each later step prefills exactly the tokens past its pin; ttl 0 is evict,
bit for bit; blocks are conserved at every step boundary (running + pinned + free = total) and none leak when
tasks end, fail or time out; the held block-seconds are the closed form sum over waits of blocks x min(wait, ttl);
hostile values of the new fields are refused in one line; the same seed gives the same run."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import agent_doc, agent_scenario, scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.metrics.summary import compute_metrics
from simfactory.sim.engine import blocks_for
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import FleetModel, simulate

runner = CliRunner()
TOOLS = [{"name": "t"}]


def fixed(v: float) -> dict[str, Any]:
    return {"kind": "fixed", "value": v}


def llm(name: str, new: int, out: int, **extra: Any) -> dict[str, Any]:
    return {"type": "llm", "name": name, "model": "m", "input_tokens": fixed(new), "output_tokens": fixed(out),
            "carry_input": True, **extra}


def tool(name: str, latency_s: float, result: int, **extra: Any) -> dict[str, Any]:
    return {"type": "tool", "name": name, "service": "t", "latency_s": fixed(latency_s), "result_tokens": fixed(result),
            **extra}


# three LLM steps with a tool call between each: (new input tokens, answer tokens) and the tools' result tokens
STEPS = [llm("a", 300, 40), tool("t1", 2.0, 70), llm("b", 25, 30), tool("t2", 5.0, 15), llm("c", 10, 5)]
NEW = [300, 25, 10]
RESULT = [70, 15]
SYSTEM = 100


def run_agent(case: Any, retention: dict[str, Any] | None, *, steps: list[dict[str, Any]] = STEPS, rate: float = 0.2,
              horizon_s: float = 40.0, replicas: int = 2, **deployment: Any) -> Any:
    extra = {"kv_retention": retention} if retention is not None else {}
    wl = agent_doc(steps, system_prompt_tokens=SYSTEM, tools=TOOLS, **extra)
    doc = agent_scenario(rate=rate, horizon_s=horizon_s, replicas=replicas,
                         **{"max_num_seqs": 64, "max_num_batched_tokens": 8192, **deployment})
    return simulate(case(doc, {"overhead_s": 0.01, "s_per_prefill_token": 1e-5}, {"agent": wl}))


def test_retain_with_ample_memory_prefills_only_the_tokens_past_the_pin(case):
    r = run_agent(case, {"policy": "retain"})
    t = r.table
    assert len(r.tasks) >= 4 and all(rec.outcome == "completed" for rec in r.tasks)
    saved = 0
    for rec in r.tasks:
        rids = [a[0] for a in rec.rids]
        assert len(rids) == 3
        assert len({int(t.replica[rid]) for rid in rids}) == 1, "every step goes where the task's KV is pinned"
        assert t.input_tokens[rids[0]] - t.cached_tokens[rids[0]] == SYSTEM + NEW[0]
        for k in (1, 2):
            # new: the step's own input, the tool's result and the previous answer's last token (its KV is computed
            # only when it is read back)
            assert t.input_tokens[rids[k]] - t.cached_tokens[rids[k]] == NEW[k] + RESULT[k - 1] + 1
            saved += int(t.cached_tokens[rids[k]])
        ended = r.kv_retention[rec.task_id].ended
        assert (ended["hit"], ended["task_end"], ended["expired"], ended["pressure"]) == (2, 1, 0, 0)
    assert sum(v.prefill_tokens_saved for v in r.kv_retention.values()) == saved
    assert int(t.preemptions.sum()) == 0


def test_a_pin_counts_only_for_what_the_next_prompt_starts_with(case):
    """Without carry_input the next prompt is [context][answer][tool result][message]: of a pin holding
    [context][message][answer] only the context is its prefix (before, the whole context of the next step was
    counted as pinned, the dropped message in the middle notwithstanding)."""
    steps = [llm(k, n, 20, carry_input=False) for k, n in (("a", 300), ("b", 25), ("c", 10))]
    r = run_agent(case, {"policy": "retain"}, steps=steps)
    t = r.table
    assert len(r.tasks) >= 4 and all(rec.outcome == "completed" for rec in r.tasks)
    for rec in r.tasks:
        rids = [a[0] for a in rec.rids]
        contexts = [SYSTEM, SYSTEM + 20, SYSTEM + 40]  # the answers join the context, the messages do not
        assert [int(t.context_tokens[rid]) for rid in rids] == contexts
        for k in (1, 2):
            assert t.cached_tokens[rids[k]] == contexts[k - 1]  # the context the pinned step was sent with
        assert r.kv_retention[rec.task_id].prefill_tokens_saved == contexts[0] + contexts[1]


def test_ttl_zero_is_evict_bit_for_bit(case):
    evict = run_agent(case, None)
    zero = run_agent(case, {"policy": "retain", "ttl_s": 0, "hold_slot": True})
    assert zero.kv_retention is None and not zero.resolved.classes[0].kv_retention
    for col in ("outcome", "replica", "cached_tokens", "first_token_s", "completion_s", "replica_s"):
        np.testing.assert_array_equal(getattr(evict.table, col), getattr(zero.table, col), err_msg=col)
    assert [rec.end_s for rec in evict.tasks] == [rec.end_s for rec in zero.tasks]
    assert "kv_retention" not in compute_metrics(zero).summary["tasks"]["task"]
    # and evict pays the whole prompt again at every step that retain would have taken over
    retain = run_agent(case, {"policy": "retain"})
    assert retain.table.cached_tokens.sum() > 0 == evict.table.cached_tokens.sum()


def _checked_model(case: Any, hold_slot: bool, exact: bool) -> tuple[FleetModel, list[int]]:
    """Tight KV (2,000 tokens), a task deadline, failing tools and plain requests beside the tasks; every engine's
    blocks are checked at each step boundary outside a fast-forward stretch."""
    steps = [llm("a", 200, 40), tool("t1", 4.0, 150, fail_p=0.2),
             {"type": "loop", "name": "l", "continue_p": 0.7, "max_iterations": 5,
              "steps": [llm("b", 30, 60), tool("t2", 1.0, 80)]}]
    wl = agent_doc(steps, system_prompt_tokens=SYSTEM, tools=TOOLS, deadline_s=12.0,
                   kv_retention={"policy": "retain", "ttl_s": 6.0, "hold_slot": hold_slot})
    doc = agent_scenario(rate=2.0, horizon_s=30.0, replicas=2, max_num_seqs=4, kv_cache_tokens=2000,
                         max_num_batched_tokens=2048)
    doc["traffic"]["classes"].append({"name": "chat", "target": "dep", "input_tokens": fixed(300),
                                      "output_tokens": fixed(200)})
    doc["sim"]["exact"] = exact
    model = FleetModel(case(doc, {"overhead_s": 0.01, "s_per_prefill_token": 1e-5}, {"agent": wl}), seed=3)
    checks = [0]
    for eng in model.engines:
        step_on = eng._next

        def checked(_event: object = None, eng: Any = eng, step_on: Any = step_on) -> None:
            if eng.stretch is None and not eng.in_step:
                assert eng.held_blocks() + eng.pinned_blocks + eng.free_blocks == eng.kv_blocks
                assert eng.pinned_blocks == sum(p.blocks for p in eng.pins.values()) and eng.free_blocks >= 0
                assert len(eng.running) + eng.held_slots <= 4
                kept = eng.preempted_kv  # preempted requests' blocks still cached are free blocks (vLLM preset)
                assert kept is not None and sum(kept.surviving(r, eng.free_blocks, eng.freed_blocks)
                                                for r in kept.kept) <= eng.free_blocks
                checks[0] += 1
            step_on(_event)

        eng._next = checked
    return model, checks


@pytest.mark.parametrize("hold_slot, exact", [(False, True), (True, True), (True, False)])
def test_blocks_are_conserved_and_none_leak_when_tasks_end_fail_or_time_out(case, hold_slot, exact):
    model, checks = _checked_model(case, hold_slot, exact)
    r = model.run()
    assert checks[0] > 100
    outcomes = {rec.outcome for rec in r.tasks}
    assert {"completed", "failed", "timed_out"} <= outcomes, outcomes
    ended = {k: sum(v.ended[k] for v in r.kv_retention.values()) for k in ("hit", "expired", "pressure", "task_end",
                                                                            "run_end")}
    assert ended["hit"] and ended["pressure"] and ended["task_end"], ended
    assert ended["run_end"] == 0  # every task ended during the drain and freed its pin itself
    assert (r.table.outcome != int(Outcome.UNFINISHED)).all()
    for eng in model.engines:
        assert not eng.pins and eng.pinned_blocks == 0 and eng.held_slots == 0
        assert eng.free_blocks == eng.kv_blocks and eng.max_num_seqs == 4
    assert not model.retention.where


def test_held_block_seconds_are_blocks_times_min_of_wait_and_ttl(case):
    """One task at a time on an idle replica: a pin lives from its step's completion until the next step is admitted
    (the wait, to the float) or its ttl, whichever is first; the last step's pin ends with the task."""
    waits_s, ttl_s = [3.0, 12.0], 5.0
    steps = [llm("a", 100, 20), {"type": "wait", "name": "w1", "duration_s": fixed(waits_s[0])},
             llm("b", 50, 30), {"type": "wait", "name": "w2", "duration_s": fixed(waits_s[1])}, llm("c", 10, 5)]
    wl = agent_doc(steps, kv_retention={"policy": "retain", "ttl_s": ttl_s})
    doc = agent_scenario(rate=0.02, horizon_s=120.0, replicas=1, max_num_seqs=8)
    doc["traffic"]["arrival"] = {"process": "constant", "rate_per_s": 0.02}
    rs = case(doc, {"overhead_s": 0.01}, {"agent": wl})
    r = simulate(rs)
    bs, kv_blocks = rs.deployments[0].config.block_size, rs.deployments[0].kv_blocks
    prompts = [100, 100 + 20 + 50]  # carry_input and carry_output: the transcript goes on verbatim
    outs = [20, 30]
    tokens = [p + o - 1 for p, o in zip(prompts, outs)]
    held = [min(w, ttl_s) for w in waits_s]
    assert len(r.tasks) >= 2 and all(rec.outcome == "completed" for rec in r.tasks)
    for rec in r.tasks:
        v = r.kv_retention[rec.task_id]
        assert v.kv_block_s == pytest.approx(sum(blocks_for(n, bs) * h for n, h in zip(tokens, held)), rel=1e-9)
        assert v.kv_token_s == pytest.approx(sum(n * h for n, h in zip(tokens, held)), rel=1e-9)
        assert v.accelerator_s == pytest.approx(v.kv_block_s / kv_blocks, rel=1e-9)  # tp 1
        assert v.slot_s == 0.0
        assert (v.ended["hit"], v.ended["expired"], v.ended["task_end"]) == (1, 1, 1)
        assert v.prefill_tokens_saved == tokens[0]  # step b reuses all of a's pin: a's prompt and answer
    block = compute_metrics(r).summary["tasks"]["task"]["kv_retention"]
    measured = [rec for rec in r.tasks if rec.start_s < 120.0]
    assert block["tasks"] == len(measured) and block["pins"] == 3 * len(measured)
    assert block["hit_ratio"] == pytest.approx(1 / 3)


def test_the_same_seed_gives_the_same_run(case):
    a, b = (run_agent(case, {"policy": "retain", "ttl_s": 3.0, "hold_slot": True}, kv_cache_tokens=4000)
            for _ in range(2))
    for col in ("outcome", "replica", "cached_tokens", "completion_s", "preemptions"):
        np.testing.assert_array_equal(getattr(a.table, col), getattr(b.table, col), err_msg=col)
    assert {k: (v.ended, v.kv_block_s) for k, v in a.kv_retention.items()} == {
        k: (v.ended, v.kv_block_s) for k, v in b.kv_retention.items()}


# ---- hostile values --------------------------------------------------------------------------------------------
def refused(root: Path, doc: dict[str, Any], workloads: dict[str, Any], named: Path, field: str, contains: str) -> None:
    """`validate` refuses the case in one line naming the file and field, exit code 2, no traceback."""
    path = write_case(root, copy.deepcopy(doc), workloads=workloads)
    res = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in res.output and res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith(f"error: {named}: {field}: "), lines[0]
    assert contains in lines[0], lines[0]


@pytest.mark.parametrize("value, field, contains", [
    ({"policy": "retain", "ttl_s": math.nan}, "ttl_s", "finite number"),
    ({"policy": "retain", "ttl_s": math.inf}, "ttl_s", "finite number"),
    ({"policy": "retain", "ttl_s": -1.0}, "ttl_s", "greater than or equal to 0"),
    ({"policy": "retain", "ttl_s": 1e300}, "ttl_s", "beyond"),
    ({"policy": "retain", "ttl_s": 1e10}, "ttl_s", "less than or equal to"),
    ({"policy": "retain", "ttl_s": "soon"}, "ttl_s", "valid number"),
    ({"policy": "keep"}, "policy", "'evict' or 'retain'"),
    ({"policy": "retain", "hold_slot": "maybe"}, "hold_slot", "valid boolean"),
    ({"policy": "retain", "pin_blocks": 3}, "pin_blocks", "unknown field"),
])
def test_hostile_values_are_refused_in_the_workload_and_the_class(tmp_path, value, field, contains):
    wl = agent_doc([llm("a", 10, 10)])
    refused(tmp_path / "w", agent_scenario(), {"agent": {**wl, "kv_retention": value}},
            tmp_path / "w" / "workloads" / "agent.yaml", f"kv_retention.{field}", contains)
    doc = agent_scenario()
    doc["traffic"]["classes"][0]["kv_retention"] = value
    refused(tmp_path / "c", doc, {"agent": wl}, tmp_path / "c" / "scenarios" / "case.yaml",
            f"traffic.classes[0].kv_retention.{field}", contains)


def test_kv_retention_on_a_class_of_single_requests_is_refused(tmp_path):
    doc = scenario_doc()
    doc["traffic"]["classes"][0]["kv_retention"] = {"policy": "retain"}
    refused(tmp_path, doc, {}, tmp_path / "scenarios" / "case.yaml", "traffic.classes[0].kv_retention",
            "give an agent workload")


def test_a_class_policy_overrides_the_workload_and_the_report_shows_it(tmp_path, case):
    wl = agent_doc(STEPS, system_prompt_tokens=SYSTEM, tools=TOOLS, kv_retention={"policy": "retain"})
    doc = agent_scenario(rate=0.2, horizon_s=20.0, max_num_seqs=16)
    doc["traffic"]["classes"][0]["kv_retention"] = {"policy": "evict"}
    assert case(doc, None, {"agent": wl}).classes[0].kv_retention is None
    doc["traffic"]["classes"][0]["kv_retention"] = {"policy": "retain", "ttl_s": 30}
    path = write_case(tmp_path / "run", doc, {"overhead_s": 0.01}, {"agent": wl})
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(path), "--out", str(out), "--no-plots", "--quiet"])
    assert res.exit_code == 0, res.output
    block = yaml.safe_load((out / "summary.json").read_text())["tasks"]["task"]["kv_retention"]
    assert block["policy"] == {"ttl_s": 30.0, "hold_slot": False} and block["pins_ended"]["hit"] > 0
    assert "KV cache kept between a task's LLM steps" in (out / "summary.md").read_text()


def test_a_replica_failure_drops_its_pins(case):
    """An outage takes both replicas down mid-run: the pins they held end as `fault` (their blocks with them), and
    nothing is left pinned or allocated at the end."""
    wl = agent_doc(STEPS, system_prompt_tokens=SYSTEM, tools=TOOLS, kv_retention={"policy": "retain"})
    doc = agent_scenario(rate=0.5, horizon_s=30.0, replicas=2, max_num_seqs=64)
    doc["faults"] = {"outages": [{"pool": "pool", "start_s": 10.0, "duration_s": 1.0}]}
    model = FleetModel(case(doc, {"overhead_s": 0.01}, {"agent": wl}), seed=5)
    r = model.run()
    faults = sum(v.ended["fault"] for v in r.kv_retention.values())
    assert faults > 0 and sum(v.ended["run_end"] for v in r.kv_retention.values()) == 0
    assert all(not e.pins and e.free_blocks == e.kv_blocks for e in model.engines)


def test_a_step_without_the_task_context_takes_its_pin_and_slot_but_reuses_nothing(case):
    """include_context: false: the next step's prompt does not start with the pinned KV. It still takes over its
    task's pin (blocks and held slot, so a one-slot replica is not left idle), booked as superseded, not a hit."""
    steps = [llm("a", 200, 20), tool("t1", 1.0, 10), llm("b", 50, 10, include_context=False)]
    r = run_agent(case, {"policy": "retain", "hold_slot": True}, steps=steps, replicas=1, max_num_seqs=1)
    assert r.table.cached_tokens.sum() == 0 and all(rec.outcome == "completed" for rec in r.tasks)
    for v in r.kv_retention.values():
        assert (v.ended["hit"], v.ended["superseded"], v.ended["task_end"]) == (0, 1, 1)
        assert v.prefill_tokens_saved == 0


def test_compressing_the_context_gives_back_the_pin_it_made_stale(case):
    """A compress step rewrites the carried context, so the KV pinned for the old one is no longer a prefix of the
    next prompt: the pin ends superseded and the step after it reuses nothing beyond the system prompt."""
    squeeze = {"type": "compress", "name": "sq", "keep_fraction": 0.5, "latency_s": fixed(0.1)}
    steps = [llm("a", 300, 40), tool("t1", 2.0, 70), squeeze, llm("b", 25, 30)]
    r = run_agent(case, {"policy": "retain"}, steps=steps)
    t = r.table
    assert len(r.tasks) >= 4 and all(rec.outcome == "completed" for rec in r.tasks)
    for rec in r.tasks:
        ended = r.kv_retention[rec.task_id].ended
        assert (ended["superseded"], ended["hit"], ended["task_end"]) == (1, 0, 1)
        second = rec.rids[1][0]
        assert t.cached_tokens[second] <= SYSTEM
