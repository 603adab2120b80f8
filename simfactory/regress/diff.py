"""Compare current metrics with a baseline under tolerances.

Deterministic mode (one run each): a metric regresses when it moved in its bad direction by more than
its tolerance. Statistical mode (R replications each): it must also lie outside the combined confidence
interval of the two means, |mean_new - mean_base| > z sqrt(se_new^2 + se_base^2), so a change of seed
alone is not flagged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from simfactory.regress.tolerances import ToleranceFile, default_direction

Z_CRITICAL = 3.0  # about 0.3% two-sided per metric: many metrics are compared at once


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


def diff_metrics(
    scenario: str, baseline: dict[str, list[float]], current: dict[str, list[float]], tolerances: ToleranceFile
) -> list[MetricDiff]:
    out: list[MetricDiff] = []
    for metric in sorted(set(baseline) | set(current)):
        rule, tol = tolerances.rule_for(metric)
        direction = tol.direction or default_direction(metric)
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
            significant = abs(delta) > Z_CRITICAL * math.sqrt(b_se**2 + c_se**2)
        beyond = abs(delta) > allowed and significant
        worse = (direction == "increase" and delta > 0) or (direction == "decrease" and delta < 0) or direction == "both"
        if not beyond:
            status = "ok"
        elif worse:
            status = "regression"
        else:
            status = "improved"
        rel = delta / abs(b_mean) if b_mean else (0.0 if delta == 0 else math.inf)
        out.append(MetricDiff(scenario, metric, b_mean, c_mean, delta, rel, allowed, rule, direction, status))
    return out


def has_regression(diffs: list[MetricDiff]) -> bool:
    return any(d.status in ("regression", "removed") for d in diffs)
