"""Agent tasks' critical-path time per category, worked out for all finished tasks at once at the end of a run.

`agents.breakdown` reads a task's log: its leaves' intervals, and for each LLM attempt on the path ~10 values of the
request table. Those scalar reads of numpy columns, one task at a time, cost ~2.5% of an agent run. Here a task's
end only walks its log: leaves other than LLM calls are added to its breakdown at once, and each LLM attempt is kept
as a row (task, interval, request id, last attempt or not); `apply` then splits every attempt into network, front
end, cache, queue, prefill and decode, and the waits between attempts (a lost request's retry backoff), with
whole-column numpy operations over the request table. The arithmetic is `agents._accumulate`'s, element for element
(tests/test_agents.py checks the two against each other, read at each task's end).

Reading the table at the end of the run gives what it held at the task's end because (1) the attempt ids are
copied when the task ends, (2) every attempt still pending when its step or task ended was aborted then (a step's
timeout, a cancelled branch or deadline: Scope.cancel), and the PENDING guards of the fleet's later stages
(`_cache_hit`, `_ingress`, `_arrive`, `_fallback_if_waiting`) keep an aborted request's values from changing after,
(3) no retry is sent for a call its caller gave up on (`Call.abandoned`), and (4) the only later writes are times
at or after the task's end, which the clipping to the attempt's interval absorbs. A new path that leaves an
attempt pending past its task's end breaks this.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from simfactory.sim.agents import CATEGORIES, critical_leaves
from simfactory.sim.outcomes import CACHE_HIT_CODE, TaskRecord
from simfactory.sim.requests import RequestTable

LLM_PHASES = ("network", "front_end", "cache", "queue", "prefill", "decode")


class TaskBreakdowns:
    """LLM attempts of finished tasks' critical paths, as columns, until `apply` books them to their tasks."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        # typed arrays, not lists: 8 bytes a value instead of a Python object each (~3 attempts a task, 1M tasks)
        self.recs: list[TaskRecord] = []
        self.task = array("q")  # index into recs
        self.start_s = array("d")  # the leaf's interval, clipped at the task's end
        self.stop_s = array("d")
        self.rid = array("q")
        self.last = array("b")  # 1: the call's last attempt

    def collect(self, rec: TaskRecord, end_s: float) -> None:
        """rec.breakdown from rec.log clipped at end_s: every leaf but the LLM attempts, which `apply` adds."""
        rec.breakdown = dict.fromkeys(CATEGORIES, 0.0)
        self._walk(rec.log, end_s, rec.breakdown, len(self.recs))
        self.recs.append(rec)

    def _walk(self, log: list[Any], end_s: float, out: dict[str, float], index: int) -> None:
        # the task's rows gathered in lists, then one extend a column (not five a leaf: ~3 LLM leaves a task)
        rids: list[int] = []
        starts: list[float] = []
        stops: list[float] = []
        last: list[int] = []
        for entry, start, stop in critical_leaves(log, end_s):
            if entry.rids:
                n = len(entry.rids)
                rids += entry.rids
                starts += [start] * n
                stops += [stop] * n
                last += [0] * (n - 1)
                last.append(1)
            else:
                out[entry.category] += stop - start
        if rids:
            self.task.extend([index] * len(rids))
            self.start_s.extend(starts)
            self.stop_s.extend(stops)
            self.rid.extend(rids)
            self.last.extend(last)

    def apply(self, table: RequestTable) -> None:
        """Book every kept attempt's time per phase to its task (agents._accumulate, as whole columns). The table
        must be trimmed (RequestTable.trim: every column a numpy array)."""
        if not self.rid:
            return
        rid = np.frombuffer(self.rid, dtype=np.int64)
        start, stop = np.frombuffer(self.start_s), np.frombuffer(self.stop_s)
        last = np.frombuffer(self.last, dtype=np.int8).astype(bool)
        first = np.concatenate(([True], last[:-1]))  # a leaf's attempts are consecutive rows
        a0 = np.maximum(start, table.arrival_s[rid])
        done = table.completion_s[rid]
        open_ = np.isnan(done)
        with np.errstate(invalid="ignore"):
            a1 = np.where(last | open_, stop, np.minimum(done, stop))
            prev_end = np.maximum(start, np.concatenate(([0.0], a1[:-1])))
            gap_end = np.minimum(a0, stop)
            backoff = np.where(~first & (gap_end > prev_end), gap_end - prev_end, 0.0)
            counted = a1 > a0
            cache = counted & (table.outcome[rid] == CACHE_HIT_CODE)
            served = counted & ~cache
            on_wire = np.minimum(a0 + table.net_in_s[rid], a1)
            arrive = np.minimum(on_wire + table.front_end_s[rid], a1)
            back = np.where(last & ~open_, np.minimum(np.maximum(done, arrive), a1), a1)
            sched, first_token = table.first_scheduled_s[rid], table.first_token_s[rid]
            t1 = np.where(np.isnan(sched), back, np.minimum(np.maximum(sched, arrive), back))
            t2 = np.where(np.isnan(first_token), back, np.minimum(np.maximum(first_token, t1), back))
            phases = {
                "network": (on_wire - a0) + (a1 - back), "front_end": arrive - on_wire, "cache": a1 - a0,
                "queue": t1 - arrive, "prefill": t2 - t1, "decode": back - t2,
            }
        task = np.frombuffer(self.task, dtype=np.int64)
        n = len(self.recs)
        totals = {"backoff": np.bincount(task, weights=backoff, minlength=n)}
        for phase in LLM_PHASES:
            keep = cache if phase == "cache" else served
            totals[phase] = np.bincount(task[keep], weights=phases[phase][keep], minlength=n)
        for phase, total in totals.items():
            for i in np.flatnonzero(total):
                self.recs[i].breakdown[phase] += float(total[i])
        self._clear()  # booked: a later apply adds nothing twice
