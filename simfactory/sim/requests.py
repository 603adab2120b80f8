"""Per-request state and results as columnar arrays indexed by request id (no per-request objects)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simfactory.sim.outcomes import Outcome


@dataclass
class RequestTable:
    arrival_s: np.ndarray
    class_id: np.ndarray
    deployment_id: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    replica: np.ndarray = field(init=False)
    first_scheduled_s: np.ndarray = field(init=False)
    first_token_s: np.ndarray = field(init=False)
    completion_s: np.ndarray = field(init=False)
    preemptions: np.ndarray = field(init=False)
    generated: np.ndarray = field(init=False)
    outcome: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        self.replica = np.full(n, -1, dtype=np.int32)
        self.first_scheduled_s = np.full(n, np.nan)
        self.first_token_s = np.full(n, np.nan)
        self.completion_s = np.full(n, np.nan)
        self.preemptions = np.zeros(n, dtype=np.int32)
        self.generated = np.zeros(n, dtype=np.int64)
        self.outcome = np.full(n, int(Outcome.PENDING), dtype=np.int8)

    def __len__(self) -> int:
        return len(self.arrival_s)
