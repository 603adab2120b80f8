"""Library entry points used by the CLI, tests and notebooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simfactory.config.scenario import Scenario
from simfactory.metrics.summary import RunMetrics, compute_metrics
from simfactory.paths import DEFAULT_SCENARIO
from simfactory.resolve import ResolvedScenario, load_scenario, resolve
from simfactory.sim.run import DEFAULT_KEEP_LOGS, ProgressFn, SimResult, simulate

__all__ = ["load_scenario", "prepare", "run", "simulate_metrics", "Result", "DEFAULT_SCENARIO"]


class Result(RunMetrics):
    """A run's DataFrames (requests, tasks, replica_timelines, system_timeline, logical) and summary dict,
    with notebook plots: each plot_* returns a matplotlib Figure.

    Example:
        >>> import simfactory
        >>> r = simfactory.run()                      # the shipped default scenario
        >>> r.summary["latency_s"]["ttft"]["p99"]     # seconds
        >>> r.requests[["ttft_s", "e2e_s"]].describe()
    """

    def __repr__(self) -> str:
        """One line: the scenario and its headline figures (the DataFrames are attributes, not the repr)."""
        s = self.summary
        lat = s.get("latency_s", {})
        ttft, e2e = lat.get("ttft", {}).get("p99"), lat.get("e2e", {}).get("p99")
        ms = lambda x: "n/a" if x is None else f"{x * 1000:,.0f} ms"  # noqa: E731
        return (f"Result(scenario={s.get('scenario')!r}, seed={s.get('seed')}, requests={len(self.requests):,}, "
                f"tasks={len(self.tasks):,}, ttft_p99={ms(ttft)}, e2e_p99={ms(e2e)})")

    def plot_latency_cdf(self):  # type: ignore[no-untyped-def]
        from simfactory.report.plots import latency_cdf

        return latency_cdf(self)

    def plot_utilization(self):  # type: ignore[no-untyped-def]
        from simfactory.report.plots import utilization

        return utilization(self)

    def plot_queue_depth(self):  # type: ignore[no-untyped-def]
        from simfactory.report.plots import queue_depth

        return queue_depth(self)

    def plot_task_breakdown(self):  # type: ignore[no-untyped-def]
        from simfactory.report.plots import task_breakdown

        return task_breakdown(self)

    def plot_autoscaling(self):  # type: ignore[no-untyped-def]
        from simfactory.report.plots import autoscaling

        return autoscaling(self)


def prepare(scenario: Scenario | str | Path | None = None) -> ResolvedScenario:
    """Load (if a path), validate and resolve a scenario; None means the shipped default.

    Example:
        >>> rs = simfactory.prepare("scenarios/cache-on.yaml")
        >>> [d.kv_capacity_tokens for d in rs.deployments]
    """
    if scenario is None:
        scenario = DEFAULT_SCENARIO
    if isinstance(scenario, Scenario):
        return resolve(scenario)
    return resolve(load_scenario(scenario), scenario)


def run(
    scenario: Scenario | str | Path | ResolvedScenario | None = None,
    seed: int | None = None,
    progress: ProgressFn | None = None,
) -> "Result":
    """Simulate a scenario once and return its DataFrames and summary.

    Example:
        >>> r = simfactory.run("scenarios/default.yaml", seed=7)
        >>> r                                          # Result(scenario='default', ..., ttft_p99=..., e2e_p99=...)
        >>> r.plot_latency_cdf()
    """
    rs = scenario if isinstance(scenario, ResolvedScenario) else prepare(scenario)
    m, _ = simulate_metrics(rs, seed=seed, progress=progress)
    return Result(**{f.name: getattr(m, f.name) for f in dataclasses.fields(m)})


def simulate_metrics(
    rs: ResolvedScenario, seed: int | None = None, progress: ProgressFn | None = None,
    keep_logs: int = DEFAULT_KEEP_LOGS, trace_tasks: int = 50, jobs: int = 1, executor: str = "local",
    ray_address: str | None = None,
) -> tuple[RunMetrics, SimResult]:
    """One run's metrics and raw result: a single simulation, or, for a scenario with a `sharding:` block, its
    shards and windows on `executor` (local processes, `jobs` at a time, or Ray) merged (simfactory/fleet)."""
    from simfactory.fleet import is_sharded, run_sharded

    if is_sharded(rs):
        return run_sharded(rs, seed, jobs, executor, ray_address, progress, trace_tasks=trace_tasks)
    result = simulate(rs, seed=seed, progress=progress, keep_logs=keep_logs)
    return compute_metrics(result, trace_tasks=trace_tasks), result
