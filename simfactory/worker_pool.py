"""Local worker processes (`sweep --jobs N`, `run --jobs N` of a sharded scenario) that end with their command.

A worker ignores Ctrl-C (the command handles it: a terminal's Ctrl-C reaches the whole process group and printed
each worker's traceback) and ends within a second once the process that started it is gone (after kill -9 of a
sweep its workers lived on for good, holding hundreds of MB each). When the command stops early (Ctrl-C, an error,
a stop), the pool is stopped at once: points not started are dropped and running ones are terminated, not waited
for (a second Ctrl-C while waiting hung the process in the executor's shutdown)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from simfactory.errors import InputError
from simfactory.processes import ProcessId, alive, this_process


def _worker_start(parent: ProcessId) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the command's own handler (cli/main) is not a worker's

    def watch() -> None:  # the command's process by pid and start time: a worker's parent may be a fork server
        while alive(*parent):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers end with this process; stopped at once if the block ends with an exception.
    A worker that dies (the out-of-memory killer) is one line naming what was kept, not a traceback."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_start, initargs=(this_process(),))
    try:
        yield pool
    except BrokenProcessPool:
        stop_pool(pool)
        raise InputError("--jobs", "workers", "a worker process ended unexpectedly (out of memory, or killed): the "
                                              "work finished so far is kept; run again (a sweep: with --resume), "
                                              "with fewer --jobs if memory is short") from None
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Drop the jobs not started and terminate the workers running the others."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor keeps them by pid
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        try:
            p.terminate()
        except (OSError, AttributeError):
            pass
    for p in processes:
        p.join(timeout=5)
