"""Closed-loop clients (traffic.arrival process: closed): the load benchmark clients and interactive users offer.

Open arrival processes are drawn up front (sim/traffic.py), independent of how the fleet copes. A closed loop is
the other kind: a fixed population of `concurrency` clients, each with at most one request in flight, so the
offered load falls as responses slow down (vllm bench serve --max-concurrency, genai-perf's concurrency mode, a
user who reads an answer before asking again). One SimPy process per client, the way SimPy's examples model a
customer: join (at 0, or client k at k x ramp_up_s / concurrency), send, wait for the request to end (whatever its outcome: completed, rejected, shed, lost, timed out),
think, send again; an agent task is waited for as a whole. No client sends at or after the horizon, nor once the
process's `requests` (a benchmark's request count) have been sent in all.

Each request's class is drawn by weight among the classes the arrival process serves (those not replaying a
timestamped trace); its lengths, session and prefix come from the same per-class streams as open traffic
(add_plain_requests). Think times come from the stream "closed/think_time", classes from "class_mix"; these and
each class's requests are drawn DRAW_CHUNK at a time (vectorised, as open traffic is) and handed out in the order
the clients ask, which the event order fixes: same seed, same run. A client's sends are at least
MIN_CLOSED_LOOP_CYCLE_S apart (see simfactory.config.limits).
"""

from __future__ import annotations

from typing import Generator

import numpy as np
import simpy

from simfactory.config.limits import MIN_CLOSED_LOOP_CYCLE_S
from simfactory.config.scenario import ClosedArrivals
from simfactory.resolve import ResolvedClass
from simfactory.sim.fleet_view import ClientFleet, FleetCore
from simfactory.sim.requests import RequestTable
from simfactory.sim.traffic import add_plain_requests

DRAW_CHUNK = 1024  # draws per numpy call: one request at a time through add_plain_requests made runs ~3x slower
# what add_plain_requests draws for a request besides its lengths and deployment (see RequestTable.add's `like`)
DRAWN_COLUMNS = ("priority", "service_class", "tenant", "session", "difficulty", "prefix_key", "prefix_tokens")


class _Drawn:
    """DRAW_CHUNK requests of one class, drawn into a side table by add_plain_requests, as Python lists."""

    def __init__(self, fleet: FleetCore, c: ResolvedClass, first_row: int) -> None:
        k = DRAW_CHUNK
        side = RequestTable(k)
        rows = (first_row + np.arange(k)) % len(c.trace.input_tokens) if c.trace is not None else np.full(k, -1)
        add_plain_requests(fleet.rs, fleet.streams, np.zeros(k), np.full(k, c.index, dtype=np.int32), side, rows)
        side.trim()
        self.deployment = int(side.deployment_id[0])
        self.input_tokens = side.input_tokens.tolist()
        self.output_tokens = side.output_tokens.tolist()
        self.columns = [(name, getattr(side, name).tolist()) for name in DRAWN_COLUMNS]
        self.block_hashes = side.block_hashes
        self.next = 0


class ClosedLoop:
    """The clients of one closed arrival process; `fleet.source_done()` is called as each one stops."""

    def __init__(self, fleet: ClientFleet, process: ClosedArrivals, classes: list[ResolvedClass]) -> None:
        self.fleet = fleet
        self.env = fleet.env
        self.horizon_s = fleet.rs.scenario.sim.horizon_s
        self.think_time = process.think_time
        self.think_rng = fleet.streams.get("closed/think_time")
        self.class_rng = fleet.streams.get("class_mix")
        self.class_ids = [c.index for c in classes]
        w = np.array([c.config.weight for c in classes], dtype=float)
        self.class_p = w / w.sum()
        self._thinks: list[float] = []
        self._classes: list[int] = []
        self._drawn: dict[int, _Drawn] = {}
        self._handed_out = {c.index: 0 for c in classes}  # requests per class so far (untimed traces cycle rows)
        self.sends_left = process.requests  # the benchmark's request count still to send (None: no limit)
        n = process.concurrency
        for k in range(n):
            self.env.process(self.client(k * process.ramp_up_s / n))

    def _next_think_s(self) -> float:
        if not self._thinks:
            self._thinks = self.think_time.sample(self.think_rng, DRAW_CHUNK).tolist()[::-1]
        return self._thinks.pop()

    def _next_class(self) -> int:
        if len(self.class_ids) == 1:
            return self.class_ids[0]  # no draw, like arrival_schedule with one class
        if not self._classes:
            pick = self.class_rng.choice(len(self.class_ids), size=DRAW_CHUNK, p=self.class_p)
            self._classes = [self.class_ids[k] for k in pick.tolist()[::-1]]
        return self._classes.pop()

    def send(self) -> simpy.Event:
        """Send one request (or start one agent task) now; the event fires when it ends."""
        fleet = self.fleet
        class_id = self._next_class()
        c = fleet.rs.classes[class_id]
        if c.agent is not None:
            return fleet.start_task(class_id)
        d = self._drawn.get(class_id)
        if d is None or d.next == DRAW_CHUNK:
            d = self._drawn[class_id] = _Drawn(fleet, c, self._handed_out[class_id])
        self._handed_out[class_id] += 1
        i = d.next
        d.next += 1
        t = fleet.table
        rid = t.add(self.env.now, class_id, d.deployment, d.input_tokens[i], d.output_tokens[i])
        for name, values in d.columns:
            getattr(t, name)[rid] = values[i]
        if i in d.block_hashes:
            t.block_hashes[rid] = d.block_hashes[i]
        return fleet.submit(rid)

    def client(self, start_s: float = 0.0) -> Generator[simpy.Event, object, None]:
        env = self.env
        if start_s >= self.horizon_s:
            self.fleet.source_done()  # joins after the horizon: never sends
            return
        if start_s > 0.0:
            yield env.timeout(start_s)
        while True:
            if self.sends_left is not None:
                if self.sends_left == 0:
                    break  # the benchmark's request count is spent: this client stops
                self.sends_left -= 1
            sent_s = env.now
            yield self.send()
            next_s = max(env.now + self._next_think_s(), sent_s + MIN_CLOSED_LOOP_CYCLE_S)
            if next_s >= self.horizon_s:
                break  # its next request would arrive after the horizon: the client stops now
            yield env.timeout(next_s - env.now)
        self.fleet.source_done()
