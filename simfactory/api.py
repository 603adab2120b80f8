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


def _lengths(rs: ResolvedScenario, index: int) -> tuple[int, int, str]:
    """Typical (KV tokens a decoding sequence reads, prompt tokens) for a deployment's steps, and where they come
    from: the mean prompt plus half the mean answer, and the mean prompt, weighted by the classes' traffic weights,
    over the plain classes sent straight to it; for one that only agent tasks call, defaults (an agent's context
    grows call by call); else over every plain class with lengths (through routes); else defaults."""
    plain = [c for c in rs.classes if c.input_tokens is not None and c.output_tokens is not None]
    mine = [c for c in plain if c.deployment_index == index]
    agents = any(t.kind == "deployment" and t.index == index for c in rs.classes for t in c.roles.values())
    if mine:
        why = "its traffic's mean lengths"
    elif agents or not plain:
        return DEFAULT_CONTEXT_TOKENS, DEFAULT_PROMPT_TOKENS, (
            "default lengths: agent tasks call it, their context growing call by call" if agents
            else "default lengths: no class with lengths")
    else:
        mine, why = plain, "the mean lengths of all traffic (it is reached through routes)"
    weight = sum(c.config.weight for c in mine)
    prompt = sum(c.config.weight * c.input_tokens.mean() for c in mine) / weight  # type: ignore[union-attr]
    answer = sum(c.config.weight * c.output_tokens.mean() for c in mine) / weight  # type: ignore[union-attr]
    return max(round(prompt + answer / 2), 1), max(round(prompt), 1), why


def step_tables(rs: ResolvedScenario) -> dict[str, dict[str, object]]:
    """Per deployment (and apart, a disaggregated one's prefill pool): what one engine step costs at typical loads
    and of what (hardware/step_table.py), the loads sized from its limits, KV cache and traffic's lengths
    (`lengths` says whence); a pool that only decodes or only prefills gets those rows alone. `note` says what a
    row means where it is not one plain step (speculative decoding: the cycle's time per token it yields).

    Example:
        >>> simfactory.step_tables(simfactory.prepare())["llama8b"]["rows"][0]   # {'load': 'decode 1 x 291', ...}
    """
    from simfactory.hardware.speculative import SpeculativeModel
    from simfactory.hardware.step_table import cached_prefill, step_rows, typical_loads
    from simfactory.hardware.step_time import rank_chunk_tokens

    tables: dict[str, dict[str, object]] = {}
    for d in rs.deployments:
        context, prompt, why = _lengths(rs, d.index)
        parts = [(d.config.name, d, True, d.prefill is None)]
        if d.prefill is not None:
            parts.append((f"{d.config.name} (prefill)", d.prefill, False, True))
        for name, part, decode, prefill in parts:
            c = part.config
            chunk = rank_chunk_tokens(c.max_num_batched_tokens, c.dp_attention)
            loads = typical_loads(c.max_num_seqs, c.max_num_batched_tokens, part.kv_capacity_tokens, context, prompt,
                                  decode=decode, prefill=prefill, max_chunk_tokens=chunk)
            cached = (cached_prefill(c.max_num_batched_tokens, part.kv_capacity_tokens, context, prompt, chunk)
                      if prefill else None)
            if cached is not None:
                loads.append(cached)
            st = part.step_time
            note = (f"speculative decoding: a decode row is a draft-and-verify cycle's time per token it yields "
                    f"({st.tokens_per_step:.2f} a cycle)" if isinstance(st, SpeculativeModel) else None)
            tables[name] = {"context_tokens": context, "prompt_tokens": prompt, "lengths": why, "note": note,
                            "rows": step_rows(st, loads)}
    return tables
