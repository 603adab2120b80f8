"""The simulation clock: a SimPy environment whose event times are always Python floats.

Delays drawn with numpy (arrival gaps, tool latencies) are numpy scalars; SimPy adds them to `now`, so one
such delay would make the clock a numpy float64 and, since every later event time is computed from it, keep it
one for the rest of the run: every time calculation in the engines then goes through numpy scalar arithmetic,
several times slower than float arithmetic with identical results. Converting at the one place event times are
made keeps the clock a float (the same IEEE values, so the same answers).

Components driven by callbacks (the replica engines, the arrivals) schedule events at exact times with `call_at`
and start with `start`; the engines' hot paths read `_now` directly (SimPy's `now` is a property over it).
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush

import simpy
from simpy.core import SimTime
from simpy.events import NORMAL, URGENT, EventPriority


class FloatEnvironment(simpy.Environment):
    def schedule(self, event: simpy.Event, priority: EventPriority = NORMAL, delay: SimTime = 0) -> None:
        heappush(self._queue, (float(self._now + delay), priority, next(self._eid), event))  # type: ignore[attr-defined]

    def call_at(self, at_s: float, callback: Callable[[simpy.Event], None]) -> simpy.Event:
        """An event at exactly at_s (a time computed in closed form, not now + delay) whose one callback is given;
        the caller may later take the callback off to cancel it."""
        if at_s < self._now:  # type: ignore[attr-defined]
            raise ValueError(f"event at {at_s} is before now ({self._now})")  # type: ignore[attr-defined]
        ev = At(self, callback)
        heappush(self._queue, (at_s, NORMAL, next(self._eid), ev))  # type: ignore[attr-defined]
        return ev

    def start(self, callback: Callable[[simpy.Event], None]) -> simpy.Event:
        """Call back now, before the normal events due now, the way a SimPy process starts (an urgent event), so a
        component driven by callbacks keeps the order a process would have had."""
        ev = At(self, callback)
        heappush(self._queue, (self._now, URGENT, next(self._eid), ev))  # type: ignore[attr-defined]
        return ev


class At(simpy.Event):
    """A triggered event with one callback (Event's initialization inlined, as simpy's Timeout does)."""

    def __init__(self, env: simpy.Environment, callback: Callable[[simpy.Event], None]) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = None
        self._ok = True
