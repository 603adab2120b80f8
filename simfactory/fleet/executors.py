"""Run independent jobs in this process, in local worker processes (--jobs N) or on a Ray cluster
(--executor ray, as `simfactory sweep` does: simfactory/plan/sweep.py), and return their results in job order,
so what is merged from them does not depend on the executor or on which job finished first."""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from simfactory.errors import InputError
from simfactory.ray_cluster import joined_ray
from simfactory.worker_pool import worker_pool

J = TypeVar("J")
R = TypeVar("R")
EXECUTORS = ("local", "ray")


def run_all(fn: Callable[[J], R], jobs: Sequence[J], executor: str = "local", workers: int = 1,
            ray_address: str | None = None, on_done: Callable[[int], None] | None = None) -> list[R]:
    """fn(job) for every job, results in job order; `on_done(finished count)` after each."""
    if executor not in EXECUTORS:
        raise InputError("--executor", executor, f"expected one of {', '.join(EXECUTORS)}")
    results: list[Any] = [None] * len(jobs)
    if executor == "ray":
        ray = joined_ray(ray_address)
        remote = ray.remote(fn)
        pending = {remote.remote(j): i for i, j in enumerate(jobs)}
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            results[pending[done[0]]] = ray.get(done[0])
            if on_done:
                on_done(len(jobs) - len(waiting))
    elif workers > 1 and len(jobs) > 1:
        with worker_pool(min(workers, len(jobs))) as pool:  # its workers end with this process (worker_pool)
            futures = [pool.submit(fn, j) for j in jobs]
            for n, (i, f) in enumerate(zip(range(len(jobs)), futures), start=1):
                results[i] = f.result()
                if on_done:
                    on_done(n)
    else:
        for i, j in enumerate(jobs):
            results[i] = fn(j)
            if on_done:
                on_done(i + 1)
    return results
