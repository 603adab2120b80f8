"""A priority queue of request ids (FIFO within a priority) that wakes idle engines when work arrives.

One queue per replica (push routing) or one shared by all replicas of a deployment (pull routing);
each engine also keeps one for its preempted requests, which go back in front of their priority.
Lower priority numbers are served first. Removal (a caller gave up) is lazy.
"""

from __future__ import annotations

import heapq
import math
from itertools import count
from typing import Any

import simpy


class WaitingQueue:
    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._heap: list[tuple[int, int, int, float]] = []  # (priority, sequence, rid, when put)
        self._removed: set[int] = set()
        self.members: set[int] = set()  # what it holds (engines test it directly: cheaper than len())
        self.put_count = 0  # puts so far: the sequence number of the next put (ties at one time broken by it)
        self._front = count(-1, -1)
        self._waiters: list[simpy.Event] = []

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, rid: int) -> bool:
        return rid in self.members

    def put(self, rid: int, priority: int = 0) -> None:
        seq = self.put_count
        self.put_count = seq + 1
        heapq.heappush(self._heap, (priority, seq, rid, self.env._now))  # _now: SimPy's now is a property
        self.members.add(rid)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for ev in waiters:
                ev.succeed()

    def put_front(self, rid: int, priority: int = 0) -> None:
        """Ahead of everything of the same priority (a preempted request resumes first; its engine knew it before,
        so it is put at minus infinity: an engine that schedules a step ahead does not make it wait)."""
        heapq.heappush(self._heap, (priority, next(self._front), rid, -math.inf))
        self.members.add(rid)

    def _clean(self) -> None:
        heap = self._heap
        while heap and heap[0][2] in self._removed:
            self._removed.discard(heapq.heappop(heap)[2])

    def head_key(self) -> tuple[int, int, int, float] | None:
        """(priority, sequence, rid, when put) of the next request, or None when empty."""
        heap = self._heap
        if self._removed and heap and heap[0][2] in self._removed:
            self._clean()
        return heap[0] if heap else None

    def head_put_before(self, cut_s: float, cut_puts: int) -> tuple[int, int, int, float] | None:
        """The first request in serving order put before the cut (before time cut_s, or among the first cut_puts
        puts): an overlapping engine's next admission, which a later, more urgent arrival must not hold up."""
        heap = self._heap
        key = heap[0] if heap and not self._removed else self.head_key()  # head_key's usual case inline (per step)
        if key is None or key[3] < cut_s or key[1] < cut_puts:
            return key
        removed = self._removed
        best = None
        for e in self._heap:  # rare: an urgent request put since the cut heads the queue
            if (e[3] < cut_s or e[1] < cut_puts) and e[2] not in removed and (best is None or e < best):
                best = e
        return best

    def take(self, rid: int) -> None:
        """Take this waiting request out to run it (the head, or one a later, more urgent arrival is ahead of)."""
        heap = self._heap
        if not self._removed and heap and heap[0][2] == rid:  # the usual case, head_key and pop inline (per admission)
            heapq.heappop(heap)
            self.members.discard(rid)
            return
        key = self.head_key()
        if key is not None and key[2] == rid:
            self.pop()
        else:
            self.remove(rid)

    def peek(self) -> int:
        key = self.head_key()
        assert key is not None
        return key[2]

    def pop(self) -> int:
        if self._removed:
            self._clean()
        rid = heapq.heappop(self._heap)[2]
        self.members.discard(rid)
        return rid

    def remove(self, rid: int) -> bool:
        """Take a request out of the queue (its caller gave up); False if it is not here."""
        if rid not in self.members:
            return False
        self.members.discard(rid)
        self._removed.add(rid)
        return True

    def add_waiter(self, waiter: simpy.Event | Any) -> None:
        """Anything with succeed() (an engine's stretch waker) called at the next put, like wait()'s events."""
        self._waiters.append(waiter)

    def wait(self) -> simpy.Event:
        """An event that fires at the next put (engines wait on it while idle)."""
        ev = simpy.Event(self.env)  # not env.event(): its bound constructor is a call
        self._waiters.append(ev)
        return ev
