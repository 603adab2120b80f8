"""A deployment's serving front end as a shared CPU: the API server's work outside the engine (HTTP, chat template,
tokenization, detokenization, one streamed chunk per output token), which caps a replica's streamed tokens per
second and makes requests wait before the engine once it is saturated.

A fluid model: every request is a job with CPU work to do, served at the same time as the others (an event loop
interleaves them), capacity shared max-min fairly: a job gets at most its cap (one core; a stream no more than its
tokens come out of the engine), the jobs that want less than an equal share get what they want, the others split
the rest equally. Two jobs per request, one after the other:

- ingress, from arrival: per-request work + per-input-token work; the engine sees the request when it is done.
  Requests being read get together what they would get apart, and either first come first served (in_order: a
  handler runs to its end once started, a burst is read one after the other) or shared like the rest (an event loop
  that runs every ready handler's next step each pass: a burst's requests are all read by about the same time);
- egress, from the first token: per-output-token work for every token, at most as fast as the engine makes them
  (its cap: that work spread over the engine's steps for the later tokens) until the engine is done, then as fast
  as one core goes. The client has the whole answer when both the engine and the egress are done. The first token
  is delivered after one token's work at the share a new job would get then.

A deployment's replicas' API servers are pooled: their cores together serve all its requests (per-replica servers
with the load balanced, as a fluid). Rates change only when a job starts or ends, the engine finishes one or the
replicas change, so the engine's fast-forward is untouched. Two regimes, the same shares:

- uncoupled, while the caps of the jobs held sum to no more than the cores (a server below saturation, most of the
  time): every job runs at its cap whatever the others do, so a change touches one job, and only a job that ends
  something (a request read; a stream whose engine is done) has an event, at its own end;
- coupled, once they sum to more: the shares are worked out anew over the jobs in flight at every change (a few
  vector operations over them), and one timer waits for the first job to run out of work.

Knows nothing of SimPy processes beyond the environment's clock.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from simfactory.sim.clock import FloatEnvironment

DONE_EPS_S = 1e-12  # work left below this is done (floating-point rounding of rate x time)


def fair_levels(caps: np.ndarray, capacity: float) -> np.ndarray:
    """Max-min fair shares of `capacity` among jobs that can each use at most caps[i] (water-filling): the jobs
    that want less than an equal share of what is left get their cap, the others that share."""
    n = len(caps)
    if n == 0 or caps.sum() <= capacity:  # room for every job's cap (most of the time, below saturation)
        return caps.copy()
    if caps.min() * n >= capacity:  # no cap binds: equal shares
        return np.full(n, capacity / n)
    order = np.sort(caps)
    before = np.concatenate(([0.0], np.cumsum(order)[:-1]))  # what the smaller caps take
    level = (capacity - before) / np.arange(n, 0, -1)  # the equal share left if the k smallest are capped
    bound = np.flatnonzero(order >= level)
    return caps.copy() if not len(bound) else np.minimum(caps, level[bound[0]])


class FrontEndServer:
    """One deployment's front ends, pooled: `capacity_fn()` cores (a core per replica's API server, times its
    workers) shared by all of its requests' jobs. A request has one job at a time (reading it, then streaming).

    Jobs live in arrays (slots). Uncoupled, a slot's work is as of its own t_s and it runs at its cap; coupled,
    every slot's work is as of last_s and the rates are the fair shares (module docstring)."""

    def __init__(self, env: FloatEnvironment, capacity_fn: Callable[[], float], in_order: bool = True) -> None:
        self.env = env
        self.capacity_fn = capacity_fn
        self.in_order = in_order  # requests are read first come first served (else shared like every other job)
        self.slot: dict[int, int] = {}  # request id -> its job's slot in the arrays
        self.reading: dict[int, None] = {}  # requests being read (ingress), in arrival order
        self.free: list[int] = []
        self.on_done: list[Callable[[], None] | None] = []
        self.owner: list[int] = []  # slot -> the request id holding it
        self.work = np.zeros(0)  # CPU-seconds still to do (as of t_s uncoupled, as of last_s coupled)
        self.cap = np.zeros(0)  # the most cores a job can use
        self.rate = np.zeros(0)  # cores it has now
        self.t_s = np.zeros(0)  # uncoupled: when the slot's work was brought up to date
        self.streaming = np.zeros(0, dtype=bool)  # streaming tokens (else reading the request)
        self.finished = np.zeros(0, dtype=bool)  # False: a stream whose engine still makes tokens
        self.ends: dict[int, simpy.Event] = {}  # uncoupled: slot -> the event at its job's end
        self.demand = 0.0  # the caps of the jobs held, summed
        self.coupled = False
        self.last_s = 0.0
        self.timer: simpy.Event | None = None  # coupled: when the first job runs out of work at the current shares
        self.busy_core_s = 0.0  # CPU-seconds of work done (uncoupled: as of each slot's t_s)
        self.capacity_core_s = 0.0  # core-seconds there were (replicas change the cores: autoscaling, faults)
        self.cores = capacity_fn()  # the cores now (capacity_changed reads them again)

    # ---- what the fleet calls ----
    def ingress(self, rid: int, work_s: float, on_done: Callable[[], None]) -> None:
        """Tokenize and admit request `rid`: `on_done` when its `work_s` of CPU is done (now, when there is none)."""
        if work_s <= DONE_EPS_S:
            on_done()
            return
        self.reading[rid] = None
        self._start(rid, work_s, 1.0, on_done, egress=False)

    def first_token_lag_s(self, work_s: float) -> float:
        """How long one token's `work_s` takes at the share a new job would get now."""
        if work_s <= 0:
            return 0.0
        if not self.coupled and self.demand + 1.0 <= self.cores:
            return work_s  # a whole core: every job has its cap
        self._advance()
        left = self.work if self.coupled else self.work - self._used_s()
        caps = np.append(self.cap[left > DONE_EPS_S], 1.0)
        return work_s / float(fair_levels(caps, self.cores)[-1])

    def egress(self, rid: int, work_s: float, cap: float, on_done: Callable[[], None]) -> None:
        """Stream `rid`'s tokens, `work_s` of CPU in all, using at most `cap` cores while the engine makes them.
        `on_done` once they are all out and `engine_done(rid)` was called."""
        self._start(rid, work_s, min(1.0, cap), on_done, egress=True)

    def engine_done(self, rid: int) -> bool:
        """The engine made `rid`'s last token: its stream may use a whole core. False when it has no job."""
        i = self.slot.get(rid)
        if i is None:
            return False
        self._advance()
        if not self.coupled:
            self._settle(i)
        self.finished[i] = True
        self.demand += 1.0 - float(self.cap[i])
        self.cap[i] = 1.0
        if self.work[i] <= DONE_EPS_S:  # streamed as fast as the engine made the tokens
            on_done = self._release(rid)
            if self.coupled:
                self._reschedule()
            on_done()
            return True
        if self.coupled or self.demand > self.cores:
            self._reschedule()
        else:
            self.rate[i] = 1.0
            self._arm(i)
        return True

    def remove(self, rid: int) -> bool:
        """The client gave up: drop `rid`'s job (True if it had one)."""
        i = self.slot.get(rid)
        if i is None:
            return False
        self._advance()
        if not self.coupled:
            self._settle(i)
        self._release(rid)
        if self.coupled:
            self._reschedule()
        return True

    def busy_until_now_s(self) -> tuple[float, float]:
        """CPU-seconds of work done and core-seconds there were, up to now (nothing changed)."""
        now = self.env._now
        dt = now - self.last_s
        if self.coupled:
            busy = self.busy_core_s + float(self.rate.sum()) * max(dt, 0.0)
        else:
            busy = self.busy_core_s + float(self._used_s().sum())
        return busy, self.capacity_core_s + self.cores * max(dt, 0.0)

    def capacity_changed(self) -> None:
        """Replicas started, stopped, failed or recovered: their API servers' cores with them, shared anew."""
        self._advance()
        self.cores = self.capacity_fn()
        if self.coupled or self.demand > self.cores:
            self._reschedule()

    def holds(self, rid: int) -> bool:
        return rid in self.slot

    def engine_is_done(self, rid: int) -> bool:
        """`rid` waits for its last tokens to be streamed (the engine is done with it)."""
        i = self.slot.get(rid)
        return i is not None and bool(self.streaming[i] and self.finished[i])

    # ---- the fluid server ----
    def _start(self, rid: int, work_s: float, cap: float, on_done: Callable[[], None], egress: bool) -> None:
        self._advance()
        if not self.free:
            self._grow()
        i = self.free.pop()
        self.slot[rid] = i
        self.on_done[i] = on_done
        self.owner[i] = rid
        self.work[i], self.cap[i], self.rate[i], self.t_s[i] = work_s, cap, 0.0, self.env._now
        self.streaming[i], self.finished[i] = egress, not egress
        self.demand += cap
        if self.coupled or self.demand > self.cores:
            self._reschedule()
        else:
            self.rate[i] = cap
            self._arm(i)

    def _grow(self) -> None:
        n = len(self.work)
        more = max(64, n)
        self.work = np.concatenate((self.work, np.zeros(more)))
        self.cap = np.concatenate((self.cap, np.zeros(more)))
        self.rate = np.concatenate((self.rate, np.zeros(more)))
        self.t_s = np.concatenate((self.t_s, np.zeros(more)))
        self.streaming = np.concatenate((self.streaming, np.zeros(more, dtype=bool)))
        self.finished = np.concatenate((self.finished, np.zeros(more, dtype=bool)))
        self.on_done += [None] * more
        self.owner += [-1] * more
        self.free += list(range(n + more - 1, n - 1, -1))

    def _release(self, rid: int) -> Callable[[], None]:
        """Free `rid`'s slot; its callback."""
        i = self.slot.pop(rid)
        self.reading.pop(rid, None)
        self._disarm(i)
        on_done = self.on_done[i]
        assert on_done is not None
        self.on_done[i] = None
        self.demand = self.demand - float(self.cap[i]) if self.slot else 0.0  # no drift left over once idle
        self.work[i] = self.cap[i] = self.rate[i] = 0.0
        self.free.append(i)
        return on_done

    def _advance(self) -> None:
        """Coupled: bring every job's work left up to now. Both: the core-seconds there were."""
        now = self.env._now
        dt = now - self.last_s
        if dt > 0:
            self.capacity_core_s += self.cores * dt
            if self.coupled and self.slot:
                self.busy_core_s += float(self.rate.sum()) * dt
                self.work -= self.rate * dt
        self.last_s = now

    # -- uncoupled: each job on its own --
    def _used_s(self) -> np.ndarray:
        """Per slot, the work done since its t_s at its rate (no more than it had to do)."""
        return np.minimum(self.work, self.rate * np.maximum(self.env._now - self.t_s, 0.0))

    def _disarm(self, i: int) -> None:
        """Cancel slot i's end event, if it has one."""
        end = self.ends.pop(i, None)
        if end is not None:
            end.callbacks.clear()  # type: ignore[union-attr]

    def _settle(self, i: int) -> None:
        """Bring slot i's work left up to now (no more done than there was to do)."""
        now = self.env._now
        dt = now - float(self.t_s[i])
        if dt > 0:
            used = min(float(self.work[i]), float(self.rate[i]) * dt)
            self.work[i] -= used
            self.busy_core_s += used
        self.t_s[i] = now

    def _arm(self, i: int) -> None:
        """An event at slot i's end, if that ends something (a request read; a stream whose engine is done): a
        stream still waiting for tokens just stops using its share when its work runs out."""
        self._disarm(i)
        work, rate = float(self.work[i]), float(self.rate[i])
        if self.finished[i] and work > DONE_EPS_S and rate > 0:
            self.ends[i] = self.env.call_at(float(self.t_s[i]) + work / rate, lambda _ev, i=i: self._ended(i))

    def _ended(self, i: int) -> None:
        """Uncoupled: slot i's job did its work (a request read, a stream whose engine was done): it ends."""
        self.ends.pop(i, None)
        self._advance()
        self._settle(i)
        self.work[i] = 0.0
        self._release(self.owner[i])()

    def _uncouple(self) -> None:
        """Every job at its cap from now, its work as of now, an event at each end that ends something."""
        self.coupled = False
        now = self.env._now
        self.t_s[:] = now
        held = np.fromiter(self.slot.values(), dtype=np.int64, count=len(self.slot))
        self.rate[held] = self.cap[held]
        for i in held.tolist():
            self._arm(i)

    def _couple(self) -> None:
        """Every slot's work as of now (the global clock from here on); the jobs' own events cancelled."""
        now = self.env._now
        used = self._used_s()
        self.busy_core_s += float(used.sum())
        self.work -= used
        self.t_s[:] = now
        for end in self.ends.values():
            end.callbacks.clear()  # type: ignore[union-attr]
        self.ends.clear()
        self.coupled = True
        self.last_s = now

    # -- coupled: shares over all jobs --
    def _reschedule(self) -> None:
        """New shares (uncoupled again once the caps fit the cores); a timer for the first job to run out of work."""
        if self.timer is not None:
            self.timer.callbacks.remove(self._on_timer)  # type: ignore[union-attr]
            self.timer = None
        if not self.coupled:
            self._couple()
        if self.demand <= self.cores:
            self._uncouple()
            return
        self.rate[:] = 0.0
        if not self.slot:
            return
        active = np.flatnonzero(self.work > DONE_EPS_S)  # free slots hold no work
        if not len(active):
            return
        self.rate[active] = fair_levels(self.cap[active], self.cores)
        if self.in_order and len(self.reading) > 1:
            self._read_in_order()
        busy = active[self.rate[active] > 0]
        first = float(np.min(self.work[busy] / self.rate[busy]))
        self.timer = self.env.call_at(self.env._now + first, self._on_timer)

    def _read_in_order(self) -> None:
        """Requests being read share what they would get together, first come first served (a request handler
        runs to its end once started), a core at most each: a burst is read one after the other, not all at once."""
        slots = [self.slot[rid] for rid in self.reading]
        left = float(self.rate[slots].sum())
        for i in slots:
            self.rate[i] = give = min(1.0, left)
            left -= give

    def _on_timer(self, _event: object) -> None:
        self.timer = None
        self._advance()
        out = np.flatnonzero((self.rate > 0) & (self.work <= DONE_EPS_S + self.rate * 1e-12))
        self.work[out] = 0.0
        done = [self._release(self.owner[i]) for i in out.tolist() if self.finished[i]]
        self._reschedule()
        for on_done in done:
            on_done()
