"""Library entry points used by the CLI, tests and notebooks."""

from __future__ import annotations

from pathlib import Path

from simfactory.config.scenario import Scenario
from simfactory.metrics.summary import RunMetrics, compute_metrics
from simfactory.paths import DEFAULT_SCENARIO
from simfactory.resolve import ResolvedScenario, load_scenario, resolve
from simfactory.sim.run import ProgressFn, simulate

__all__ = ["load_scenario", "prepare", "run", "DEFAULT_SCENARIO"]


def prepare(scenario: Scenario | str | Path | None = None) -> ResolvedScenario:
    """Load (if a path), validate and resolve a scenario; None means the shipped default."""
    if scenario is None:
        scenario = DEFAULT_SCENARIO
    if isinstance(scenario, Scenario):
        return resolve(scenario)
    return resolve(load_scenario(scenario), scenario)


def run(
    scenario: Scenario | str | Path | ResolvedScenario | None = None,
    seed: int | None = None,
    progress: ProgressFn | None = None,
) -> RunMetrics:
    """Simulate a scenario once and return its DataFrames and summary."""
    rs = scenario if isinstance(scenario, ResolvedScenario) else prepare(scenario)
    return compute_metrics(simulate(rs, seed=seed, progress=progress))
