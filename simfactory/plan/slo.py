"""SLO targets for planning ("ttft_p99<2s,e2e_p95<30s,slo_attainment>0.99"), judged on replications with
confidence intervals: a target counts as met only when the whole 95% interval is on the right side."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from simfactory.errors import InputError
from simfactory.metrics.ci import mean_ci

LATENCY = ("ttft", "tpot", "e2e", "queue", "task")
CAPACITY_LOSSES = ("shed", "rejected_queue_full", "unfinished", "aborted", "failed")  # outcomes more capacity avoids
STATS = ("p50", "p90", "p95", "p99", "mean", "max")
_TARGET = re.compile(r"^\s*([a-z0-9_]+?)(?:_(p50|p90|p95|p99|mean|max))?\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*(ms|s)?\s*$")


@dataclass(frozen=True)
class SloTarget:
    metric: str  # e.g. ttft, task, slo_attainment
    stat: str | None
    op: str  # "<" or ">"
    value: float  # seconds for latencies

    @property
    def label(self) -> str:
        return f"{self.metric}_{self.stat}" if self.stat else self.metric

    def read(self, summary: dict[str, Any]) -> float | None:
        if self.metric == "slo_attainment":
            return summary.get("service", {}).get("slo_attainment")
        if self.metric == "task":
            tasks = summary.get("tasks") or {}
            if not tasks:
                return None
            return next(iter(tasks.values()))["latency_s"].get(self.stat or "p99")
        value = summary["latency_s"][self.metric].get(self.stat or "p99")
        return math.inf if self._unanswered_beyond_quantile(summary) else value

    def samples(self, summaries: list[dict[str, Any]]) -> int | None:
        """The fewest values a replication's statistic rested on (latency count; tasks of the first task class)."""
        counts = []
        for s in summaries:
            if self.metric == "task":
                block = next(iter((s.get("tasks") or {}).values()), {}).get("latency_s", {})
            elif self.metric in LATENCY:
                block = s.get("latency_s", {}).get(self.metric, {})
            else:
                block = {}
            if block.get("count") is not None:
                counts.append(int(block["count"]))
        return min(counts) if counts else None

    def _unanswered_beyond_quantile(self, summary: dict[str, Any]) -> bool:
        """Latency percentiles cover completed requests only; a request shed, turned away by a full queue, given up
        or lost to a failure has no latency but did not meet the target either. When more than 1 - q of all
        requests ended so, the q-th percentile over them is unbounded (a p99 target fails past 1%). Requests the
        scenario refuses by policy (rate limits, too long for the model) are left out: capacity cannot change them."""
        if self.stat is None or not self.stat.startswith("p"):
            return False
        outcomes = summary.get("outcomes") or {}
        total = sum(outcomes.values())
        lost = sum(outcomes.get(k, 0) for k in CAPACITY_LOSSES)
        return bool(total) and lost * 100 > total * (100 - int(self.stat[1:]))


def parse_slo(text: str) -> list[SloTarget]:
    out = []
    for part in text.split(","):
        m = _TARGET.match(part)
        if not m:
            raise InputError("--slo", part.strip(), "expected METRIC_STAT<VALUE[s|ms], e.g. ttft_p99<2s or slo_attainment>0.99")
        metric, stat, op, value, unit = m.groups()
        if metric not in (*LATENCY, "slo_attainment"):
            raise InputError("--slo", part.strip(), f"unknown metric {metric!r} (ttft, tpot, e2e, queue, task, slo_attainment)")
        if metric in LATENCY and stat is None:
            raise InputError("--slo", part.strip(), f"give a statistic: {metric}_p99, {metric}_mean, ...")
        try:
            v = float(value)
        except ValueError:
            raise InputError("--slo", part.strip(), f"not a number: {value!r}") from None
        if not math.isfinite(v) or v < 0:
            raise InputError("--slo", part.strip(), "the target must be a finite number >= 0")
        upper = op.startswith("<")
        if metric in LATENCY and (not upper or v == 0):
            raise InputError("--slo", part.strip(), "a latency target is an upper bound above 0 (e.g. ttft_p99<2s): "
                                                   "more capacity can only lower latency")
        if metric == "slo_attainment" and (upper or v > 1):
            raise InputError("--slo", part.strip(), "attainment is a lower bound in [0, 1] (e.g. slo_attainment>0.99)")
        out.append(SloTarget(metric, stat, "<" if op.startswith("<") else ">", v / 1000 if unit == "ms" else v))
    return out


def judge(targets: list[SloTarget], summaries: list[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
    """Whether every target is met at 95% confidence, with each target's mean and half-width."""
    ok = True
    detail: dict[str, Any] = {}
    for t in targets:
        values = [t.read(s) for s in summaries]
        if any(v is None for v in values):
            ok = False
            detail[t.label] = {"mean": None, "ci95": None, "met": False}
            continue
        mean, half = mean_ci([float(v) for v in values if v is not None])
        met = mean + half <= t.value if t.op == "<" else mean - half >= t.value
        ok &= met
        detail[t.label] = {"mean": mean, "ci95": half, "met": met, "samples": t.samples(summaries)}
    return ok, detail


def mean_meets(t: SloTarget, detail: dict[str, Any] | None) -> bool:
    """Whether a point's mean over its replications (the point estimate, no interval) meets the target."""
    mean = (detail or {}).get("mean")
    if mean is None or not math.isfinite(mean):
        return False
    return mean <= t.value if t.op == "<" else mean >= t.value


def samples_wanted(t: SloTarget) -> int | None:
    """Values a percentile target should rest on: 10 beyond the percentile (p99: 1,000; p90: 100)."""
    if t.stat is None or not t.stat.startswith("p"):
        return None
    return math.ceil(1000 / (100 - int(t.stat[1:])))


def thin_samples(t: SloTarget, samples: int | None) -> bool:
    """Whether a percentile target rests on fewer values than `samples_wanted`."""
    wanted = samples_wanted(t)
    return samples is not None and wanted is not None and samples < wanted
