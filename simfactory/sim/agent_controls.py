"""Agent controls the task walker applies (sim/agents.py): gateway hops in front of tool services, context
compression arithmetic, and the per-component tally of calls, failures and timeouts.

Kept apart from the walker so each control reads on its own; the walker calls these at its leaves.
"""

from __future__ import annotations

import numpy as np

from simfactory.config.agent import CompressAction, Gateway
from simfactory.sim.outcomes import TaskRecord

CALLS, FAILURES, TIMEOUTS = 0, 1, 2


def tally(rec: TaskRecord, kind: str, name: str, what: int = CALLS) -> None:
    """Count a call (what=CALLS), or the failure / timeout of one, against component kind/name: one dict entry a
    (kind, name, what), its tuple hashing two interned names and a small int ("kind/name" is spelt out by the
    summary)."""
    key = (kind, name, what)
    rec.components[key] = rec.components.get(key, 0) + 1


class GatewayModel:
    """One gateway (MCP / A2A): each call through it draws the hop's latency and failure from the gateway's own
    random stream, so a gateway never shifts the draws of the task it serves."""

    def __init__(self, spec: Gateway, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng

    def hop(self, rec: TaskRecord) -> tuple[float, bool]:
        """(latency_s, failed) of one call through the gateway; its fee is charged to the task."""
        s = self.spec
        latency = max(float(s.latency_s.draw(self.rng)), 0.0)
        failed = s.fail_p > 0 and self.rng.random() < s.fail_p
        rec.gateway_calls += 1
        rec.usd_gateway += s.usd_per_call
        rec.usd_tools += s.usd_per_call
        tally(rec, "gateway", s.name)
        if failed:
            tally(rec, "gateway", s.name, FAILURES)
        return latency, failed


def compressed_context(action: CompressAction, context_tokens: float, system_tokens: float) -> float:
    """The carried context after a compression: the system prompt stays, the history above it shrinks."""
    history = max(context_tokens - system_tokens, 0.0)
    return min(context_tokens, system_tokens) + action.kept_tokens(history)
