"""Compare current metrics with a baseline under tolerances.

Deterministic mode (one run each): a metric regresses when it moved in its bad direction by more than
its tolerance. Statistical mode (R replications each): it must also differ significantly: a Welch t test per
metric (unequal variances, Welch-Satterthwaite degrees of freedom), with the Benjamini-Hochberg procedure
holding the false discovery rate of the scenario's metrics at FDR_Q. Hundreds of metrics are compared at
once; without the correction a change of seed alone would flag some of them on most runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from simfactory.regress.tolerances import ToleranceFile, default_direction

FDR_Q = 0.01  # expected share of false alarms among the metrics flagged in one scenario


@dataclass(frozen=True)
class MetricDiff:
    scenario: str
    metric: str
    baseline: float | None
    current: float | None
    delta: float | None
    rel_delta: float | None
    allowed: float | None
    rule: str
    direction: str
    status: str  # ok | regression | improved | changed | removed | added

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of a difference of means (Welch's t; when one side is a single run, its seed noise is
    taken to be the other side's, so a single run is not treated as exact). Non-finite values: 0 when only one
    side has them (a move to or from infinity), else 1. Two constant samples: 0 if they differ, else 1."""
    fa, fb = all(math.isfinite(x) for x in a), all(math.isfinite(x) for x in b)
    if not (fa and fb):
        return 0.0 if fa != fb else 1.0
    if len(a) < len(b):
        a, b = b, a  # a has the replications (at least 2: statistical mode)
    (ma, sa), (mb, sb) = _mean_se(a), _mean_se(b)
    if len(b) == 1:
        sd = sa * math.sqrt(len(a))  # the sample standard deviation of a
        se, df = sd * math.sqrt(1 / len(a) + 1.0), float(len(a) - 1)
    else:
        se = math.sqrt(sa**2 + sb**2)
        scale = max(sa, sb) or 1.0  # rescaled so x**4 cannot underflow
        parts = [(x / scale) ** 4 / (len(v) - 1) for x, v in ((sa, a), (sb, b)) if x > 0]
        df = (se / scale) ** 4 / sum(parts) if parts else 1.0
    if se == 0:
        return 0.0 if ma != mb else 1.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(ma - mb) / se, df))


def significant_metrics(baseline: dict[str, list[float]], current: dict[str, list[float]],
                        q: float = FDR_Q) -> set[str]:
    """Metrics whose change is significant, Benjamini-Hochberg over every metric with replications."""
    tested = sorted((welch_p(baseline[m], current[m]), m) for m in set(baseline) & set(current)
                    if len(baseline[m]) > 1 or len(current[m]) > 1)
    n = len(tested)
    cut = max((k for k, (p, _) in enumerate(tested, start=1) if p <= q * k / n), default=0)
    return {m for _, m in tested[:cut]}


def diff_metrics(
    scenario: str, baseline: dict[str, list[float]], current: dict[str, list[float]], tolerances: ToleranceFile
) -> list[MetricDiff]:
    out: list[MetricDiff] = []
    significant_set = significant_metrics(baseline, current)
    for metric in sorted(set(baseline) | set(current)):
        rule, tol = tolerances.rule_for(metric)
        direction = tol.direction or default_direction(metric)
        if tol.direction is None and direction == "both":
            direction = tolerances.unnamed_direction  # no worse way in the name: both, or only reported ("none")
        if metric not in current:
            out.append(MetricDiff(scenario, metric, _mean_se(baseline[metric])[0], None, None, None, None, rule,
                                  direction, "removed"))
            continue
        if metric not in baseline:
            out.append(MetricDiff(scenario, metric, None, _mean_se(current[metric])[0], None, None, None, rule,
                                  direction, "added"))
            continue
        b_mean, b_se = _mean_se(baseline[metric])
        c_mean, c_se = _mean_se(current[metric])
        delta = c_mean - b_mean
        allowed = tol.allowed(b_mean)
        significant = True
        if len(baseline[metric]) > 1 or len(current[metric]) > 1:
            significant = metric in significant_set
        beyond = abs(delta) > allowed and significant
        worse = (direction == "increase" and delta > 0) or (direction == "decrease" and delta < 0) or direction == "both"
        if not beyond:
            status = "ok"
        elif direction == "none":
            status = "changed"
        elif worse:
            status = "regression"
        else:
            status = "improved"
        rel = delta / abs(b_mean) if b_mean else (0.0 if delta == 0 else math.inf)
        out.append(MetricDiff(scenario, metric, b_mean, c_mean, delta, rel, allowed, rule, direction, status))
    return out


def has_regression(diffs: list[MetricDiff]) -> bool:
    return any(d.status in ("regression", "removed") for d in diffs)
