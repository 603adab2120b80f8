"""Which process this is and whether another still runs, by pid and start time: a pid alone can be reused once its
process is gone, so a record of one (an output's lock or marker, a worker's parent) keeps its start time too."""

from __future__ import annotations

import os
from pathlib import Path

ProcessId = tuple[int, int | None]  # (pid, start time in clock ticks since boot; None where /proc does not say)


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a live owner from a reused pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, ticks: int | None) -> bool:
    """Whether the process (pid, start ticks) still runs: a pid now held by a process started later is not it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    if ticks is None:
        return True
    now = start_ticks(pid)
    return now is None or now == ticks


def this_process() -> ProcessId:
    pid = os.getpid()
    return pid, start_ticks(pid)
