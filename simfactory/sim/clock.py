"""The simulation clock: a SimPy environment whose event times are always Python floats.

Delays drawn with numpy (arrival gaps, tool latencies) are numpy scalars; SimPy adds them to `now`, so one
such delay would make the clock a numpy float64 and, since every later event time is computed from it, keep it
one for the rest of the run: every time calculation in the engines then goes through numpy scalar arithmetic,
several times slower than float arithmetic with identical results. Converting at the one place event times are
made keeps the clock a float (the same IEEE values, so the same answers).

Components driven by callbacks (the replica engines, the arrivals) schedule events at exact times with `call_at`
and start with `start`; the engines' hot paths read `_now` directly (SimPy's `now` is a property over it).

`call_later` is for a delay that recurs (an agent task's deadline, a deployment's fixed front end): its callbacks are
due in the order they were set, so one event heap entry at a time stands for all of them (a `DelayLine`). An agent
run otherwise keeps one deadline timer per open task in the heap (~98% of its entries), and every event pushed into
or popped from the heap pays for their depth.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.core import EmptySchedule, SimTime, StopSimulation
from simpy.events import NORMAL, URGENT, Event, EventPriority


class FloatEnvironment(simpy.Environment):
    def __init__(self, initial_time: SimTime = 0) -> None:
        super().__init__(initial_time)
        self._lines: dict[float, DelayLine] = {}  # call_later's, by delay

    def run(self, until: SimTime | Event | None = None) -> Any:
        """SimPy's run, its step() spelt out in the loop: a Python call less per event (~1% of an agent run). Both
        follow SimPy 4.1.2's Environment.run and step (MIT licence); tests/test_clock.py runs the same events on
        both, so a SimPy release that changes them fails there."""
        if until is not None:
            if not isinstance(until, Event):  # a time: an urgent event then stops the run, as in SimPy
                at: SimTime = until if isinstance(until, int) else float(until)
                if at <= self._now:  # type: ignore[attr-defined]
                    raise ValueError(f"until ({at}) must be greater than the current simulation time")
                until = Event(self)
                until._ok = True
                until._value = None
                self.schedule(until, URGENT, at - self._now)  # type: ignore[attr-defined]
            elif until.callbacks is None:
                return until.value  # already processed
            until.callbacks.append(StopSimulation.callback)  # type: ignore[union-attr]
        try:
            self._steps()
        except StopSimulation as exc:
            return exc.args[0]  # until's value
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}') from None
        return None

    def _steps(self) -> None:
        """SimPy's step() until an exception ends the run (StopSimulation, EmptySchedule, a failed event's)."""
        queue = self._queue  # type: ignore[attr-defined]
        while True:
            try:
                self._now, _, _, event = heappop(queue)
            except IndexError:
                raise EmptySchedule from None
            callbacks, event.callbacks = event.callbacks, None
            try:
                for callback in callbacks:
                    callback(event)
            except StopSimulation:  # the until event's: its other callbacks run when the run resumes
                event.callbacks = callbacks[callbacks.index(callback) + 1:]
                self.schedule(event, EventPriority(-1))
                raise
            if not event._ok and not hasattr(event, "_defused"):  # a failed event nothing defused crashes the run
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc

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

    def call_later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        """callback(*args) delay_s from now, in the very place among the events due then that a Timeout(delay_s) made
        now would have (see DelayLine); it cannot be cancelled (a callback that may find itself stale checks). For
        delays from a small set (a workload's deadline, a deployment's fixed front end): every delay keeps its line for
        the run, so drawn delays go to call_at."""
        line = self._lines.get(delay_s)
        if line is None:
            if not delay_s >= 0:
                raise ValueError(f"negative delay {delay_s}")  # as a Timeout says; a line's order needs it
            line = self._lines[delay_s] = DelayLine(self, delay_s)
        line.add(callback, args)


class At(simpy.Event):
    """A triggered event with one callback (Event's initialization inlined, as simpy's Timeout does)."""

    def __init__(self, env: simpy.Environment, callback: Callable[[simpy.Event], None]) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = None
        self._ok = True


class DelayLine:
    """Callbacks due a fixed delay after each was set: one event heap entry at a time for all of them.

    The callbacks of one delay fall due in the order they were set (now never decreases, nor does now + delay), so
    only the earliest needs an entry in the heap. Each keeps the key a Timeout(delay) made when it was set would have
    had: (float(now + delay), NORMAL, the event id taken then), and its entry goes into the heap when the one before
    it fires, before its own time, so events due at the same time run in the same order, and the run numbers as many
    events (its id is taken when it is set, as a Timeout's is; no id is taken when the entry goes in).
    """

    def __init__(self, env: FloatEnvironment, delay_s: float) -> None:
        self.env = env
        self.delay_s = delay_s
        self.pending: deque[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = deque()
        # one event, re-armed for each entry: SimPy takes its callbacks off it before calling them
        self.event = At(env, self._fire)
        self.callbacks = self.event.callbacks

    def add(self, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        env = self.env
        pending = self.pending
        pending.append((float(env._now + self.delay_s), next(env._eid), callback, args))  # type: ignore[attr-defined]
        if len(pending) == 1:  # nothing armed: this one heads the line
            self._arm()

    def _arm(self) -> None:
        at_s, eid, _, _ = self.pending[0]
        self.event.callbacks = self.callbacks
        heappush(self.env._queue, (at_s, NORMAL, eid, self.event))  # type: ignore[attr-defined]

    def _fire(self, _event: simpy.Event) -> None:
        _, _, callback, args = self.pending.popleft()
        if self.pending:  # armed before the call, which may add to this line
            self._arm()
        callback(*args)
