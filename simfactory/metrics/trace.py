"""Chrome / Perfetto trace events for a sample of tasks (open the file in ui.perfetto.dev).

One track per sampled task (its steps, with LLM calls split into queue / prefill / decode) and one per
replica (the sampled tasks' requests while they were scheduled there). Async events are used so that
parallel branches and batched requests may overlap on a track.
"""

from __future__ import annotations

import math
from typing import Any

from simfactory.sim.agents import leaves
from simfactory.sim.run import SimResult

TASKS_PID = 1
REPLICAS_PID = 2


def _us(t: float) -> float:
    return round(t * 1e6, 3)


def trace_events(result: SimResult, max_tasks: int) -> list[dict[str, Any]]:
    t = result.table
    names = result.step_names
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": TASKS_PID, "name": "process_name", "args": {"name": "agent tasks"}},
        {"ph": "M", "pid": REPLICAS_PID, "name": "process_name", "args": {"name": "replicas"}},
    ]
    for r in result.replicas:
        events.append({"ph": "M", "pid": REPLICAS_PID, "tid": r.replica_id, "name": "thread_name",
                       "args": {"name": f"{r.deployment}#{r.index_in_deployment}"}})
    seq = 0

    def span(pid: int, tid: int, name: str, cat: str, start: float, end: float, args: dict[str, Any] | None = None) -> None:
        nonlocal seq
        if not (end >= start) or math.isnan(start):
            return
        seq += 1
        base = {"pid": pid, "tid": tid, "cat": cat, "id": seq, "name": name}
        events.append({**base, "ph": "b", "ts": _us(start), "args": args or {}})
        events.append({**base, "ph": "e", "ts": _us(end)})

    sampled = [rec for rec in result.tasks if rec.log][:max_tasks]
    for rec in sampled:
        tid = rec.task_id
        end_s = rec.end_s if not math.isnan(rec.end_s) else result.end_s
        events.append({"ph": "M", "pid": TASKS_PID, "tid": tid, "name": "thread_name", "args": {"name": f"task {tid}"}})
        span(TASKS_PID, tid, f"task {tid} ({rec.outcome})", "task", rec.start_s, end_s,
             {k: round(v, 6) for k, v in rec.breakdown.items()})
        for entry in leaves(rec.log):
            stop = entry.end_s if entry.end_s is not None else end_s
            if not entry.rids:
                span(TASKS_PID, tid, entry.category, entry.category, entry.start_s, stop)
                continue
            for rid in entry.rids:
                a_end = t.completion_s[rid] if not math.isnan(t.completion_s[rid]) else stop
                a_end = min(a_end, stop)
                a_start = max(float(t.arrival_s[rid]), entry.start_s)
                step = names[t.step_id[rid]] if t.step_id[rid] >= 0 else "llm"
                args = {"request": rid, "attempt": int(t.attempt[rid]), "input_tokens": int(t.input_tokens[rid]),
                        "output_tokens": int(t.output_tokens[rid]), "preemptions": int(t.preemptions[rid])}
                span(TASKS_PID, tid, f"llm: {step}", "llm", a_start, a_end, args)
                sched, first = t.first_scheduled_s[rid], t.first_token_s[rid]
                # on the wire to the deployment, then its serving front end, then the engine's queue
                on_wire = min(a_start + float(t.net_in_s[rid]), a_end)
                q_start = min(on_wire + float(t.front_end_s[rid]), a_end)
                if on_wire > a_start:
                    span(TASKS_PID, tid, "network", "network", a_start, on_wire)
                if q_start > on_wire:
                    span(TASKS_PID, tid, "front end", "front_end", on_wire, q_start)
                if math.isnan(sched) or sched > a_end:
                    span(TASKS_PID, tid, "queue", "queue", q_start, a_end)
                    continue
                span(TASKS_PID, tid, "queue", "queue", q_start, max(sched, q_start))
                if not math.isnan(first) and first <= a_end:
                    span(TASKS_PID, tid, "prefill", "prefill", sched, first)
                    span(TASKS_PID, tid, "decode", "decode", first, a_end)
                else:
                    span(TASKS_PID, tid, "prefill", "prefill", sched, a_end)
                replica = int(t.replica[rid])
                if replica >= 0:
                    span(REPLICAS_PID, replica, f"task {tid}: {step}", "request", sched, a_end, args)
    return events
