"""Library entry points used by the CLI, tests and notebooks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simfactory.config.scenario import Scenario
from simfactory.metrics.summary import RunMetrics, compute_metrics
from simfactory.paths import DEFAULT_SCENARIO
from simfactory.resolve import ResolvedScenario, load_scenario, resolve
from simfactory.sim.run import DEFAULT_KEEP_LOGS, ProgressFn, SimResult, simulate

__all__ = ["load_scenario", "prepare", "run", "simulate_metrics", "step_tables", "Result", "DEFAULT_SCENARIO"]


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


DEFAULT_CONTEXT_TOKENS, DEFAULT_PROMPT_TOKENS = 2048, 1024  # a deployment no class with lengths is aimed at


def _lengths(rs: ResolvedScenario, index: int) -> tuple[int, int]:
    """Typical (KV tokens a decoding sequence reads, prompt tokens) for a deployment's steps: the mean prompt plus
    half the mean answer, and the mean prompt, over the classes with lengths sent straight to it (else over every
    class with lengths; else defaults)."""
    with_lengths = [c for c in rs.classes if c.input_tokens is not None and c.output_tokens is not None]
    mine = [c for c in with_lengths if c.deployment_index == index] or with_lengths
    if not mine:
        return DEFAULT_CONTEXT_TOKENS, DEFAULT_PROMPT_TOKENS
    prompt = sum(c.input_tokens.mean() for c in mine) / len(mine)  # type: ignore[union-attr]
    answer = sum(c.output_tokens.mean() for c in mine) / len(mine)  # type: ignore[union-attr]
    return max(round(prompt + answer / 2), 1), max(round(prompt), 1)


def step_tables(rs: ResolvedScenario) -> dict[str, list[dict[str, object]]]:
    """Per deployment (and its prefill replicas, disaggregated): what one engine step costs at typical loads and of
    what (hardware/step_table.py), the loads sized from its limits, KV cache and traffic's lengths.

    Example:
        >>> simfactory.step_tables(simfactory.prepare())["llama8b"][0]   # {'load': 'decode 1 x ... KV', 'step_ms': ...}
    """
    from simfactory.hardware.step_table import step_rows, typical_loads

    tables: dict[str, list[dict[str, object]]] = {}
    for d in rs.deployments:
        context, prompt = _lengths(rs, d.index)
        for name, part in ((d.config.name, d), (f"{d.config.name} (prefill)", d.prefill)):
            if part is None:
                continue
            c = part.config
            loads = typical_loads(c.max_num_seqs, c.max_num_batched_tokens, part.kv_capacity_tokens, context, prompt)
            tables[name] = step_rows(part.step_time, loads)
    return tables
