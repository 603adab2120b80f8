"""How each request ended (every request ends with exactly one Outcome), and each agent task's record.

TaskRecord lives here rather than in agents.py so the fleet (run.py) and its view (fleet_view.py) can name
what a finished task hands back without importing the agent machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


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


@dataclass(slots=True)
class TaskRecord:
    """One agent task's outcome (one of agents.TASK_OUTCOMES), totals and time log."""

    task_id: int
    class_id: int
    start_s: float
    end_s: float = float("nan")
    outcome: str = "unfinished"
    escalated: bool = False
    steps: int = 0
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    retrieval_calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    loop_iterations: int = 0
    usd_tools: float = 0.0
    usd_retrieval: float = 0.0
    usd_human: float = 0.0
    usd_network: float = 0.0  # egress of tool and retrieval results (LLM egress is on the requests)
    usd_llm_estimate: float = 0.0
    budget_limit: str = ""  # which cap a budget hit came from: tokens | usd | tool_calls
    compressions: int = 0
    compressed_tokens: float = 0.0  # context tokens removed by compressions
    gateway_calls: int = 0
    gateway_s: float = 0.0  # time spent crossing gateways (summed, not critical path)
    usd_gateway: float = 0.0  # gateway fees (also inside usd_tools)
    # (kind, name, what) -> count, what: agent_controls.CALLS, FAILURES or TIMEOUTS (absent: none)
    components: dict[tuple[str, str, int], int] = field(default_factory=dict)
    rids: list[list[int]] = field(default_factory=list)  # per LLM call, its attempts' request ids
    # scenarios with quality: per answered LLM call (step name, its index in rids, fail_p applied, accepted)
    judged: list[tuple[str, int, float, bool]] = field(default_factory=list)
    log: list[Any] = field(default_factory=list)
    breakdown: dict[str, float] = field(default_factory=dict)
