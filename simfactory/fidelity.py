"""Fidelity: simulate published measurements and report predicted vs measured, per point and per suite.

A suite (calibrate/fidelity/*.yaml) lists points: hardware, model, precision, TP, workload and the
measured metric. Offline points submit every request at once (trtllm-bench / vllm bench throughput style)
and measure output tokens per second from the first arrival to the last completion.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from simfactory.config.loader import load_model_file
from simfactory.config.profile import AsOf, DType, RooflineStepTime
from simfactory.config.scenario import Scenario
from simfactory.paths import PROJECT_ROOT
from simfactory.resolve import ResolvedScenario, resolve
from simfactory.sim.run import simulate

FIDELITY_DIR = PROJECT_ROOT / "calibrate" / "fidelity"
OFFLINE_RATE_PER_S = 1e5  # "all at once": arrivals 10 microseconds apart


class FidelityPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    sku: str
    model: str
    dtype: DType
    tp: PositiveInt = 1
    input_tokens: PositiveInt
    output_tokens: PositiveInt
    metric: Literal["output_tokens_per_s"]
    measured: PositiveFloat


class FidelitySuite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    source: str = Field(min_length=1)
    as_of: AsOf
    engine: str = "vllm"
    mode: Literal["offline"] = "offline"
    max_num_seqs: PositiveInt = 256
    points: list[FidelityPoint] = Field(min_length=1)


@dataclasses.dataclass(frozen=True)
class PointResult:
    suite: str
    id: str
    metric: str
    measured: float
    predicted: float
    step_time_source: str

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.measured - 1.0


def offline_scenario(p: FidelityPoint, engine: str, max_num_seqs: int, requests: int) -> Scenario:
    return Scenario.model_validate({
        "name": p.id,
        "pools": [{"name": "p", "sku": p.sku, "count": p.tp, "location": "cloud"}],
        "deployments": [{"name": "d", "model": p.model, "pool": "p", "replicas": 1, "tp": p.tp, "dtype": p.dtype,
                         "engine": engine, "max_num_seqs": max_num_seqs, "max_num_batched_tokens": 8192}],
        "traffic": {"arrival": {"process": "constant", "rate_per_s": OFFLINE_RATE_PER_S},
                    "classes": [{"name": "c", "target": "d", "input_tokens": {"kind": "fixed", "value": p.input_tokens},
                                 "output_tokens": {"kind": "fixed", "value": p.output_tokens}}]},
        "sim": {"horizon_s": requests / OFFLINE_RATE_PER_S, "timeline_resolution_s": 60.0},
    })


def offline_output_tokens_per_s(rs: ResolvedScenario) -> float:
    """Output tokens of completed requests per second, first arrival to last completion (nan if none)."""
    from simfactory.sim.outcomes import Outcome

    t = simulate(rs, keep_logs=0).table
    done = t.outcome == Outcome.COMPLETED
    if not done.any():
        return float("nan")
    return float(t.output_tokens[done].sum() / (t.completion_s[done].max() - t.arrival_s.min()))


def with_roofline_factors(rs: ResolvedScenario, factors: RooflineStepTime) -> ResolvedScenario:
    """The same scenario with other roofline factors (used to fit them)."""
    d = rs.deployments[0]
    return dataclasses.replace(rs, deployments=[dataclasses.replace(d, step_time=dataclasses.replace(d.step_time, factors=factors))])


def run_suite(suite: FidelitySuite, requests: int = 800) -> list[PointResult]:
    out = []
    for p in suite.points:
        rs = resolve(offline_scenario(p, suite.engine, suite.max_num_seqs, requests))
        out.append(PointResult(suite.name, p.id, p.metric, p.measured, offline_output_tokens_per_s(rs),
                               rs.deployments[0].step_time_source.split(" (")[0]))
    return out


def summarize(results: list[PointResult]) -> dict[str, Any]:
    """MAPE and worst error per suite and per profile source (roofline vs measured)."""
    groups: dict[str, list[PointResult]] = {}
    for r in results:
        groups.setdefault(f"{r.suite} [{r.step_time_source}]", []).append(r)
    return {
        key: {"points": len(rs), "mape": sum(abs(r.error) for r in rs) / len(rs),
              "worst": max(rs, key=lambda r: abs(r.error)).id, "worst_error": max(abs(r.error) for r in rs)}
        for key, rs in sorted(groups.items())
    }


def load_suite(path: Path) -> FidelitySuite:
    return load_model_file(FidelitySuite, path)


def shipped_suites() -> list[Path]:
    return sorted(FIDELITY_DIR.glob("*.yaml"))
