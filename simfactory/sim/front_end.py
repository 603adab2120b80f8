"""A deployment's serving front end as a shared CPU: the API server's work outside the engine (HTTP, chat template,
tokenization, detokenization, one streamed chunk per output token), which caps a replica's streamed tokens per
second and makes requests wait before the engine once it is saturated.

A fluid model: every request is a job with CPU work to do, served at the same time as the others (an event loop
interleaves them), capacity shared max-min fairly: a job gets at most its cap (one core; a stream no more than its
tokens come out of the engine), the jobs that want less than an equal share get what they want, the others split
the rest equally. Two jobs per request, one after the other:

- ingress, from arrival: per-request work + per-input-token work; the engine sees the request when it is done;
- egress, from the first token: per-output-token work for the tokens after the first, at most as fast as the engine
  makes them (its cap: the work of one token per engine step) until the engine is done, then as fast as one core
  goes. The client has the whole answer when both the engine and the egress are done. The first token itself is
  delivered after one token's work at the share a new job would get then.

Rates change only when a job starts or ends (or the engine finishes one), so the server costs a few events per
request and the engine's fast-forward is untouched. Knows nothing of SimPy processes beyond the environment's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from simfactory.sim.clock import FloatEnvironment

DONE_EPS_S = 1e-12  # work left below this is done (floating-point rounding of rate x time)


@dataclass
class _Job:
    work_s: float  # CPU-seconds still to do
    cap: float  # the most cores it can use
    on_done: Callable[[], None]
    egress: bool = False  # streaming tokens (else reading the request)
    engine_done: bool = True  # False: an egress job whose engine still makes tokens (it cannot end before that)
    rate: float = 0.0


def fair_rates(caps: list[float], capacity: float) -> list[float]:
    """Max-min fair shares of `capacity` among jobs that can each use at most caps[i] (water-filling)."""
    n = len(caps)
    order = sorted(range(n), key=caps.__getitem__)
    rates = [0.0] * n
    left = capacity
    for k, i in enumerate(order):
        share = left / (n - k)
        if caps[i] >= share:
            for j in order[k:]:
                rates[j] = share
            return rates
        rates[i] = caps[i]
        left -= caps[i]
    return rates


class FrontEndServer:
    """One deployment's front ends, pooled: `capacity_fn()` cores (a core per replica's API server, times its
    workers) shared by all of its requests' jobs."""

    def __init__(self, env: FloatEnvironment, capacity_fn: Callable[[], float]) -> None:
        self.env = env
        self.capacity_fn = capacity_fn
        self.jobs: dict[int, _Job] = {}  # request id -> its job (a request has one at a time)
        self.last_s = 0.0
        self.timer: simpy.Event | None = None  # when the first job ends at the current shares
        self.busy_core_s = 0.0  # CPU-seconds of work done

    # ---- what the fleet calls ----
    def ingress(self, rid: int, work_s: float, on_done: Callable[[], None]) -> None:
        """Tokenize and admit request `rid`: `on_done` when its `work_s` of CPU is done (now, when there is none)."""
        if work_s <= DONE_EPS_S:
            on_done()
            return
        self._start(rid, _Job(work_s, 1.0, on_done))

    def first_token_lag_s(self, work_s: float) -> float:
        """How long one token's `work_s` takes at the share a new job would get now."""
        if work_s <= 0:
            return 0.0
        self._advance()
        caps = [j.cap for j in self.jobs.values() if j.work_s > DONE_EPS_S] + [1.0]
        return work_s / fair_rates(caps, self.capacity_fn())[-1]

    def egress(self, rid: int, work_s: float, cap: float, on_done: Callable[[], None]) -> None:
        """Stream `rid`'s later tokens, `work_s` of CPU in all, using at most `cap` cores while the engine makes
        them (one token's work per engine step). `on_done` once they are all out and `engine_done(rid)` was
        called."""
        self._start(rid, _Job(work_s, min(1.0, cap), on_done, egress=True, engine_done=False))

    def engine_done(self, rid: int) -> bool:
        """The engine made `rid`'s last token: its egress may use a whole core. False when it has no egress job."""
        job = self.jobs.get(rid)
        if job is None:
            return False
        self._advance()
        job.engine_done = True
        job.cap = 1.0
        if job.work_s <= DONE_EPS_S:  # streamed as fast as the engine made the tokens
            del self.jobs[rid]
            self._reschedule()
            job.on_done()
            return True
        self._reschedule()
        return True

    def remove(self, rid: int) -> bool:
        """The client gave up: drop `rid`'s job (True if it had one)."""
        if rid not in self.jobs:
            return False
        self._advance()
        del self.jobs[rid]
        self._reschedule()
        return True

    def busy_until_now_s(self) -> float:
        """CPU-seconds of work done up to now (the shares since the last change counted, nothing changed)."""
        dt = self.env.now - self.last_s
        return self.busy_core_s + sum(j.rate for j in self.jobs.values()) * dt if dt > 0 else self.busy_core_s

    def holds(self, rid: int) -> bool:
        return rid in self.jobs

    def engine_is_done(self, rid: int) -> bool:
        """`rid` waits for its last tokens to be streamed (the engine is done with it)."""
        job = self.jobs.get(rid)
        return job is not None and job.egress and job.engine_done

    # ---- the fluid server ----
    def _start(self, rid: int, job: _Job) -> None:
        self._advance()
        self.jobs[rid] = job
        self._reschedule()

    def _advance(self) -> None:
        """Bring every job's work left up to now."""
        now = self.env.now
        dt = now - self.last_s
        if dt > 0:
            for job in self.jobs.values():
                if job.rate > 0:
                    job.work_s -= job.rate * dt
                    self.busy_core_s += job.rate * dt
        self.last_s = now

    def _reschedule(self) -> None:
        """New shares; a timer for the first job to run out of work."""
        if self.timer is not None:
            self.timer.callbacks.remove(self._on_timer)  # type: ignore[union-attr]
            self.timer = None
        active = [j for j in self.jobs.values() if j.work_s > DONE_EPS_S]
        for job in self.jobs.values():
            job.rate = 0.0
        if not active:
            return
        first = float("inf")
        for job, r in zip(active, fair_rates([j.cap for j in active], self.capacity_fn())):
            job.rate = r
            first = min(first, job.work_s / r)
        self.timer = self.env.call_at(self.env.now + first, self._on_timer)

    def _on_timer(self, _event: object) -> None:
        self.timer = None
        self._advance()
        done: list[Callable[[], None]] = []
        for rid, job in list(self.jobs.items()):
            if job.rate > 0 and job.work_s <= DONE_EPS_S + job.rate * 1e-12:
                job.work_s = 0.0
                if job.engine_done:
                    del self.jobs[rid]
                    done.append(job.on_done)
        self._reschedule()
        for on_done in done:
            on_done()
