"""Replications of one scenario on common random numbers, for `run -R N` and `compare -R N`: N runs, seeds
base, base + 1, ..., each reduced to the headline metrics of `compare`'s table, with a 95% t interval per
metric (simfactory.metrics.ci) and, between scenarios, paired differences.

Replication r runs on seed base + r in every scenario (as `regress --replications` does), so two scenarios'
replication r see the same arrivals and lengths (each random stream is derived from the seed and the stream's
name, simfactory/sim/streams.py): their difference is the difference of the fleets, not of the draws, and the
paired interval is far narrower than two independent ones. Replication 0 is the plain run on the base seed, so
`-R N` writes the same report folder as `-R 1` and adds the replicate tables beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simfactory.metrics.ci import describe, paired_difference
from simfactory.report.compare import headline_values

if TYPE_CHECKING:  # SimPy is imported when a replication runs, not when the CLI starts
    from simfactory.resolve import ResolvedScenario
    from simfactory.sim.run import ProgressFn


def replication_seeds(base_seed: int, replications: int) -> list[int]:
    """Replication r's seed: base + r (config/limits.MAX_SEED leaves room for 1000 replications)."""
    return [base_seed + r for r in range(replications)]


def replication_progress(progress: ProgressFn | None, r: int, replications: int) -> ProgressFn | None:
    """One bar over every replication: replication r's simulated seconds placed after the r before it."""
    if progress is None:
        return None
    return lambda done_s, total_s: progress(r * total_s + done_s, replications * total_s)


@dataclass(frozen=True)
class Replications:
    """One scenario's replications: each one's seed and headline metric values (label -> value)."""

    scenario: str
    seeds: list[int]
    values: list[dict[str, float]] = field(repr=False)

    @property
    def metrics(self) -> list[str]:
        """Every metric any replication has, in the side-by-side table's order."""
        return list(dict.fromkeys(k for v in self.values for k in v))

    def ci(self) -> dict[str, dict[str, Any]]:
        """Per metric: mean, std, ci95 and n over the replications that have it."""
        return {m: describe([v[m] for v in self.values if m in v]) for m in self.metrics}


def replicate(rs: ResolvedScenario, replications: int, base_seed: int | None = None,
              first_summary: dict[str, Any] | None = None, progress: ProgressFn | None = None) -> Replications:
    """Simulate `replications` runs on seeds base, base + 1, ... (base: the scenario's seed) and keep each one's
    headline metrics; `first_summary` is replication 0's summary when the caller has already run it (`run`
    writes its report folder from that run), so it is not simulated twice."""
    from simfactory.metrics.summary import compute_metrics
    from simfactory.sim.run import simulate

    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    seeds = replication_seeds(rs.scenario.seed if base_seed is None else base_seed, replications)
    values = []
    for r, seed in enumerate(seeds):
        if r == 0 and first_summary is not None:
            summary = first_summary
        else:
            result = simulate(rs, seed=seed, progress=replication_progress(progress, r, replications), keep_logs=0)
            summary = compute_metrics(result, trace_tasks=0).summary
        values.append(headline_values(summary))
    return Replications(rs.scenario.name, seeds, values)


def paired(base: Replications, other: Replications, metric: str) -> dict[str, Any] | None:
    """other - base on one metric over the replications both have it in (same seed, same r), or None where
    fewer than two pairs are left (no interval)."""
    pairs = [(a[metric], b[metric]) for a, b in zip(base.values, other.values) if metric in a and metric in b]
    if len(pairs) < 2:
        return None
    return paired_difference([a for a, _ in pairs], [b for _, b in pairs])


def paired_comparisons(runs: list[Replications], names: list[str]) -> list[dict[str, Any]]:
    """Every run after the first against the first, metric by metric: one row each (run, baseline, metric,
    mean_diff, ci95, relative, relative_ci95, n, significant)."""
    if any(r.seeds != runs[0].seeds for r in runs):
        raise ValueError("paired comparisons need every run on the same seeds (common random numbers)")
    rows = []
    for name, other in zip(names[1:], runs[1:]):
        for metric in runs[0].metrics:
            d = paired(runs[0], other, metric)
            if d is not None:
                rows.append({"run": name, "baseline": names[0], "metric": metric, **d})
    return rows
