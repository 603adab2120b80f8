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
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.core import SimTime, StopSimulation
from simpy.events import NORMAL, URGENT, Event, EventPriority


class FloatEnvironment(simpy.Environment):
    def run(self, until: SimTime | Event | None = None) -> Any:
        """SimPy's run (the same stopping rules, errors and results) with its step() inlined in the loop: a run
        processes every event through here, and the method call per event cost ~5% of a chat run."""
        if until is not None:
            if not isinstance(until, Event):
                at: SimTime = until if isinstance(until, int) else float(until)
                if at <= self.now:
                    raise ValueError(f"until ({at}) must be greater than the current simulation time")
                until = Event(self)
                until._ok = True
                until._value = None
                self.schedule(until, URGENT, at - self.now)
            elif until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)  # type: ignore[union-attr]
        queue = self._queue  # type: ignore[attr-defined]
        try:
            while queue:
                self._now, _, _, event = heappop(queue)
                callbacks, event.callbacks = event.callbacks, None
                try:
                    for callback in callbacks:
                        callback(event)
                except StopSimulation:  # as step() does: the remaining callbacks run when the run resumes
                    event.callbacks = callbacks[callbacks.index(callback) + 1:]
                    self.schedule(event, EventPriority(-1))
                    raise
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        except StopSimulation as stop:
            return stop.args[0]
        if until is not None:
            assert not until.triggered
            raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}')
        return None

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
