"""A sharded (and/or windowed) run: plan the per-shard, per-window scenarios, simulate them on an executor, merge
their raw results into one SimResult and compute the summary from it with the single-run code, so the summary has
the layout of an ordinary run's plus a `sharding` section (shards, what was simulated, intervals when sampled)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from simfactory.config.loader import validate
from simfactory.config.scenario import Scenario, scenario_document
from simfactory.fleet.executors import run_all
from simfactory.fleet.merge import merge_shards
from simfactory.fleet.sampling import SCALE_NOTE, TIME, WINDOW_SCALE_NOTE, scale_summary, shard_intervals
from simfactory.fleet.windows import Window, join_windows, plan_windows, window_scenario
from simfactory.metrics.ci import CI_LEVEL
from simfactory.metrics.summary import RunMetrics, compute_metrics
from simfactory.resolve import ResolvedScenario, resolve
from simfactory.resolve.shards import shard_scenario, shard_seed
from simfactory.sim.run import ProgressFn, SimResult, simulate

WINDOW_SEED_KEY = 0x77  # spawn-key part that tells a window's seed from its shard's


@dataclass(frozen=True)
class PartJob:
    """One simulation of a sharded run: shard `shard`'s window `window` (its scenario as a JSON document)."""

    scenario_doc: dict[str, Any]
    scenario_file: str
    shard: int
    window: int
    seed: int
    keep_logs: int = 0
    summarize: bool = False  # a sampled shard: its own summary too (for the between-shard intervals)


@dataclass
class PartOutput:
    shard: int
    window: int
    result: SimResult  # with resolved=None (the parent holds it; it need not travel between processes)
    summary: dict[str, Any] | None = None  # the part's own summary (sampled shards without windows)


def is_sharded(rs: ResolvedScenario) -> bool:
    sh = rs.scenario.sharding
    return sh is not None and (sh.shards > 1 or sh.windows > 1)


def part_seed(base: int, shard: int, window: int, windows: int) -> int:
    """A shard's seed (fleet/shards.py); with windows, each window its own stream derived from it."""
    seed = shard_seed(base, shard)
    if windows == 1:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(WINDOW_SEED_KEY, window)).generate_state(1)[0])


def simulate_part(job: PartJob) -> PartOutput:
    """Resolve and simulate one part (in whatever process or Ray worker runs it)."""
    rs = resolve(validate(Scenario, job.scenario_doc, job.scenario_file), job.scenario_file)
    result = simulate(rs, seed=job.seed, keep_logs=job.keep_logs)
    summary = compute_metrics(result, trace_tasks=0).summary if job.summarize else None  # in the worker: parallel
    travelling = dataclasses.replace(result, resolved=None)  # type: ignore[arg-type]
    return PartOutput(job.shard, job.window, travelling, summary)


def _join(rs_shard: ResolvedScenario, outputs: list[PartOutput], windows: list[Window], seed: int) -> SimResult:
    """One shard's result: its single part, or its time windows joined on the original clock."""
    parts = [dataclasses.replace(o.result, resolved=rs_shard) for o in outputs]
    return parts[0] if len(windows) == 1 else join_windows(rs_shard, parts, windows, seed)


def sampled_windows(windows: Sequence[Window], sample: int) -> list[Window]:
    """A systematic sample: the middle window of each of `sample` equal stretches (a midpoint rule over a daily
    shape; any window of a steady load)."""
    per = len(windows) // sample
    return [w for w in windows if w.index % per == per // 2]


def back_to_back(chosen: Sequence[Window]) -> list[Window]:
    """The sampled windows on a clock of their own, one after the other from 0 (what the summary code reads as one
    run of sample x window length); only the horizon's last window keeps what arrives after its end. Each window's
    tail (requests ending after it) completes inside the next one's span, as in a continuous run; the first window
    keeps the requests in flight at its start (unmeasured, like a warm-up's), so the span counts the completions a
    continuous run's would, not one tail fewer."""
    length = chosen[0].end_s - chosen[0].start_s
    return [Window(w.index, i * length, (i + 1) * length, w.offset_s - w.start_s + i * length, w.last, i == 0)
            for i, w in enumerate(chosen)]


def run_window_sample(rs: ResolvedScenario, base: int, jobs: int, executor: str, ray_address: str | None,
                      progress: ProgressFn | None, trace_tasks: int) -> tuple[RunMetrics, SimResult]:
    """Simulate m of the W time windows, every replica in each (so a load-aware balancer sees the whole pool), and
    report the horizon: the sampled windows are summarized back to back by the single-run code, then what grows
    with time is scaled by W / m (fleet/sampling.py), with intervals from the spread between windows."""
    sc, file = rs.scenario, rs.file or "scenario"
    sh = sc.sharding
    assert sh is not None and sh.sample_windows is not None
    windows = plan_windows(sc, sh.windows, sh.window_overlap_s, file)
    chosen = sampled_windows(windows, sh.sample_windows)
    plain = sc.model_copy(update={"sharding": None})
    parts = [window_scenario(plain, file, w, sh.window_overlap_s) for w in chosen]
    for part in parts:  # each window's own work limits, before any is simulated
        resolve(part, file)
    todo = [PartJob(scenario_document(part), file, 0, w.index, part_seed(base, 0, w.index, len(windows)))
            for part, w in zip(parts, chosen)]
    on_done: Callable[[int], None] | None = (
        (lambda n: progress(sc.sim.horizon_s * n / len(todo), sc.sim.horizon_s)) if progress else None)
    outputs = run_all(simulate_part, todo, executor, jobs, ray_address, on_done)
    length = chosen[0].end_s - chosen[0].start_s

    def spanning(n: int) -> ResolvedScenario:  # the plain scenario over n windows back to back, all measured
        return resolve(plain.model_copy(update={"sim": sc.sim.model_copy(
            update={"horizon_s": n * length, "warmup_s": 0.0})}), file)

    rs_one = spanning(1)
    per_window = [compute_metrics(join_windows(rs_one, [dataclasses.replace(o.result, resolved=rs_one)],
                                               back_to_back([w]), base), trace_tasks=0).summary
                  for o, w in zip(outputs, chosen)]
    rs_all = spanning(len(chosen))
    joined = join_windows(rs_all, [dataclasses.replace(o.result, resolved=rs_all) for o in outputs],
                          back_to_back(chosen), base)
    del outputs
    metrics = compute_metrics(joined, trace_tasks=trace_tasks)
    factor = len(windows) / len(chosen)
    summary = scale_summary(metrics.summary, factor, dimension=TIME)
    summary["window"].update({"warmup_s": sc.sim.warmup_s, "horizon_s": sc.sim.horizon_s,
                              "end_s": sc.sim.horizon_s + joined.end_s - len(chosen) * length})
    summary["sharding"] = {
        "shards": 1, "simulated_shards": 1, "sampled": True, "windows": len(windows),
        "window_overlap_s": sh.window_overlap_s, "simulations": len(todo), "executor": executor,
        "simulated_windows": [w.index for w in chosen], "window_s": length,
        "window_seeds": [job.seed for job in todo], "scale": factor,
        "stands_for": f"{len(chosen)} simulated windows stand for {len(windows)}", "scaled": WINDOW_SCALE_NOTE,
        "ci_level": CI_LEVEL, "ci95": shard_intervals(summary, per_window, len(windows), TIME)}
    metrics.summary = summary
    return metrics, joined


def run_sharded(rs: ResolvedScenario, seed: int | None = None, jobs: int = 1, executor: str = "local",
                ray_address: str | None = None, progress: ProgressFn | None = None,
                trace_tasks: int = 0) -> tuple[RunMetrics, SimResult]:
    """Simulate a scenario with a sharding block; returns the merged metrics and the merged raw result."""
    sc, file = rs.scenario, rs.file or "scenario"
    sh = sc.sharding
    assert sh is not None
    if sh.sample_windows is not None and sh.sample_windows < sh.windows:
        return run_window_sample(rs, sc.seed if seed is None else seed, jobs, executor, ray_address, progress,
                                 trace_tasks)
    base = sc.seed if seed is None else seed
    k, m = sh.shards, sh.sample_shards or sh.shards
    # what cannot be split was refused when the scenario resolved (resolve/shards.py check_sharding)
    shard_sc = shard_scenario(sc, file, k, 1) if k > 1 else sc.model_copy(update={"sharding": None})
    fleet_sc = sc.model_copy(update={"sharding": None}) if m == k else shard_scenario(sc, file, k, m)
    windows: list[Window] = [Window(0, 0.0, sc.sim.horizon_s, 0.0, True)]
    if sh.windows > 1:
        windows = plan_windows(sc, sh.windows, sh.window_overlap_s, file)
    part_scs = [window_scenario(shard_sc, file, w, sh.window_overlap_s) if len(windows) > 1 else shard_sc
                for w in windows]
    rs_shard = resolve(shard_sc, file)
    if len(windows) > 1:  # each window's own work limits, before any is simulated (one window is the shard itself)
        for part in part_scs:
            resolve(part, file)
    docs = [scenario_document(part) for part in part_scs]
    summarize = m < k and len(windows) == 1
    todo = [PartJob(docs[w.index], file, s, w.index, part_seed(base, s, w.index, len(windows)), 0, summarize)
            for s in range(m) for w in windows]
    on_done: Callable[[int], None] | None = (
        (lambda n: progress(sc.sim.horizon_s * n / len(todo), sc.sim.horizon_s)) if progress else None)
    outputs = run_all(simulate_part, todo, executor, jobs, ray_address, on_done)
    # the fleet the merged result stands for: windows only (k = 1) is the shard itself, already resolved
    rs_fleet = rs_shard if k == 1 else dataclasses.replace(resolve(fleet_sc, file), fleet_share=m / k) if m < k \
        else dataclasses.replace(rs, scenario=fleet_sc)
    shard_results = [_join(rs_shard, [o for o in outputs if o.shard == s], windows, base) for s in range(m)]
    per_shard = ([o.summary for o in outputs if o.summary is not None] if summarize
                 else [compute_metrics(r, trace_tasks=0).summary for r in shard_results] if m < k else [])
    del outputs  # the parts' tables live on in the merged one only (peak memory)
    merged = merge_shards(rs_fleet, shard_results, base) if k > 1 else dataclasses.replace(shard_results[0],
                                                                                          resolved=rs_fleet, seed=base)
    del shard_results
    metrics = compute_metrics(merged, trace_tasks=trace_tasks)
    info: dict[str, Any] = {"shards": k, "simulated_shards": m, "sampled": m < k, "windows": len(windows),
                            "window_overlap_s": sh.window_overlap_s if len(windows) > 1 else 0.0,
                            "simulations": len(todo), "executor": executor,
                            "shard_seeds": [shard_seed(base, s) for s in range(m)]}
    if m < k:
        metrics.summary = scale_summary(metrics.summary, k / m)
        info.update({"scale": k / m, "stands_for": f"{m} simulated shards stand for {k}",
                     "scaled": SCALE_NOTE, "ci_level": CI_LEVEL,
                     "ci95": shard_intervals(metrics.summary, per_shard, k)})
    metrics.summary["sharding"] = info
    return metrics, merged
