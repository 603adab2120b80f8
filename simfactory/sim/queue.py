"""A FIFO of request ids that wakes idle engines when work arrives.

One queue per replica (push routing) or one shared by all replicas of a deployment (pull routing).
"""

from __future__ import annotations

from collections import deque

import simpy


class WaitingQueue:
    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._items: deque[int] = deque()
        self._waiters: list[simpy.Event] = []

    def __len__(self) -> int:
        return len(self._items)

    def put(self, rid: int) -> None:
        self._items.append(rid)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for ev in waiters:
                ev.succeed()

    def peek(self) -> int:
        return self._items[0]

    def pop(self) -> int:
        return self._items.popleft()

    def remove(self, rid: int) -> bool:
        """Take a request out of the queue (its caller gave up); False if it is not here."""
        try:
            self._items.remove(rid)
        except ValueError:
            return False
        return True

    def wait(self) -> simpy.Event:
        """An event that fires at the next put (engines wait on it while idle)."""
        ev = self.env.event()
        self._waiters.append(ev)
        return ev
