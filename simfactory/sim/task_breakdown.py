"""Agent tasks' critical-path time per category, worked out for all finished tasks at once at the end of a run.

`agents.breakdown` reads a task's log when it ends: its leaves' intervals, and for each LLM attempt on the path ~10
values of the request table. Those scalar reads of numpy columns, one task at a time, cost ~5% of an agent run.
Here a task's end only walks its log: leaves other than LLM calls are added to its breakdown at once, and each LLM
attempt is kept as a row (task, interval, request id, last attempt or not); `apply` then splits every attempt into
network, front end, cache, queue, prefill and decode with whole-column numpy operations over the request table.
The arithmetic is `agents._accumulate`'s, element for element, so the result is the same up to the order of the
additions (tests/test_agents.py checks them against each other). Reading the table at the end rather than at the
task's end changes nothing: every value read is clipped to the attempt's interval, which ends by the task's end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simfactory.sim.agents import CATEGORIES, Fork, _reach
from simfactory.sim.outcomes import CACHE_HIT_CODE, TaskRecord

LLM_PHASES = ("network", "front_end", "cache", "queue", "prefill", "decode")


class TaskBreakdowns:
    """LLM attempts of finished tasks' critical paths, as columns, until `apply` books them to their tasks."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.recs: list[TaskRecord] = []
        self.task: list[int] = []  # index into recs
        self.start: list[float] = []
        self.stop: list[float] = []
        self.rid: list[int] = []
        self.last: list[bool] = []

    def collect(self, rec: TaskRecord, end_s: float) -> None:
        """rec.breakdown from rec.log clipped at end_s: every leaf but the LLM attempts, which `apply` adds."""
        rec.breakdown = dict.fromkeys(CATEGORIES, 0.0)
        self._walk(rec.log, end_s, rec.breakdown, len(self.recs))
        self.recs.append(rec)

    def _walk(self, log: list[Any], end_s: float, out: dict[str, float], index: int) -> None:
        for entry in log:
            if isinstance(entry, Fork):
                if entry.chosen is not None:
                    branch = entry.branches[entry.chosen]
                else:  # still running at end_s: the branch that reaches furthest
                    branch = max(entry.branches, key=lambda b: _reach(b, end_s))
                self._walk(branch, end_s, out, index)
                continue
            start = entry.start_s
            stop = min(entry.end_s if entry.end_s is not None else end_s, end_s)
            if stop <= start:
                continue
            rids = entry.rids
            if rids:
                n = len(rids)
                self.task.extend([index] * n)
                self.start.extend([start] * n)
                self.stop.extend([stop] * n)
                self.rid.extend(rids)
                self.last.extend([j == n - 1 for j in range(n)])
            else:
                out[entry.category] += stop - start

    def apply(self, table: Any) -> None:
        """Book every kept attempt's time per phase to its task (agents._accumulate, as whole columns)."""
        if not self.rid:
            return
        rid = np.asarray(self.rid, dtype=np.int64)
        start, stop = np.asarray(self.start), np.asarray(self.stop)
        last = np.asarray(self.last, dtype=bool)
        a0 = np.maximum(start, table.arrival_s[rid])
        done = table.completion_s[rid]
        open_ = np.isnan(done)
        with np.errstate(invalid="ignore"):
            a1 = np.where(last | open_, stop, np.minimum(done, stop))
            counted = a1 > a0
            cache = counted & (table.outcome[rid] == CACHE_HIT_CODE)
            served = counted & ~cache
            on_wire = np.minimum(a0 + table.net_in_s[rid], a1)
            arrive = np.minimum(on_wire + table.front_end_s[rid], a1)
            back = np.where(last & ~open_, np.minimum(np.maximum(done, arrive), a1), a1)
            sched, first = table.first_scheduled_s[rid], table.first_token_s[rid]
            t1 = np.where(np.isnan(sched), back, np.minimum(np.maximum(sched, arrive), back))
            t2 = np.where(np.isnan(first), back, np.minimum(np.maximum(first, t1), back))
            phases = {
                "network": (on_wire - a0) + (a1 - back), "front_end": arrive - on_wire, "cache": a1 - a0,
                "queue": t1 - arrive, "prefill": t2 - t1, "decode": back - t2,
            }
        task = np.asarray(self.task, dtype=np.int64)
        n = len(self.recs)
        for phase in LLM_PHASES:
            keep = cache if phase == "cache" else served
            total = np.zeros(n)
            np.add.at(total, task[keep], phases[phase][keep])
            for i in np.flatnonzero(total):
                self.recs[i].breakdown[phase] += float(total[i])
        self._clear()  # booked: a later apply adds nothing twice
