"""How each request ended. Every request ends with exactly one of these."""

from __future__ import annotations

from enum import IntEnum


class Outcome(IntEnum):
    PENDING = 0  # only while the simulation runs
    COMPLETED = 1
    REJECTED_TOO_LONG = 2  # prompt + output exceed what the deployment can hold (max_model_len / KV capacity)
    UNFINISHED = 3  # still queued or running when the simulation stopped (drain off or drain cap hit)
    ABORTED = 4  # the caller gave up (an agent step's timeout or the task's deadline) before it finished
    REJECTED_RATE_LIMIT = 5  # the tenant's token bucket was empty (HTTP 429)
    REJECTED_QUEUE_FULL = 6  # the deployment's waiting queue was at its cap (HTTP 429)
    SHED = 7  # waited longer than its service class's max_queue_s without being scheduled
    CACHE_HIT = 8  # answered by the semantic (response) cache in front of the router; no model ran
    FAILED = 9  # lost to a replica failure and not retried (retries off, exhausted, or over budget)

    @property
    def label(self) -> str:
        return self.name.lower()


# Plain ints for comparing with the table's numpy scalars: an IntEnum operand makes numpy probe the enum's
# attributes (about 4 us a comparison, on every arrival); an int costs nothing.
PENDING_CODE = int(Outcome.PENDING)
COMPLETED_CODE = int(Outcome.COMPLETED)
CACHE_HIT_CODE = int(Outcome.CACHE_HIT)
