"""Shard sampling: a fleet of k identical shards, of which m were simulated, reported as the whole fleet.

The merged summary of the m shards (metrics/summary.py on their merged records) already gives the fleet's
latency distribution, fractions and unit costs: the shards are identically distributed, so pooling m of them
estimates what pooling all k would give. What grows with the fleet (requests, tokens, accelerators, replicas, USD
totals and their rates per second or hour) is multiplied by k / m. Each headline figure also gets a 95% Student-t
interval from the spread between the simulated shards (metrics/ci.py), shrunk by the finite-population correction
sqrt(1 - m/k) (Cochran, Sampling Techniques, 3rd ed., 1977, eq. 2.20: sampling m of k shards without replacement)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from simfactory.metrics.ci import CI_LEVEL, mean_ci

# How a summary figure grows when a sample stands for more (each by its key; a dict named as one passes its kind to
# every figure below it, such as a pool's breakdown_usd_per_hour by cost component):
#   TOTAL: a total over the measured window: grows with the fleet and with time (requests, tokens, USD, hours used);
#   LEVEL: a level or rate: grows with the fleet, not with time (accelerators, requests/s, USD/h, NPV over fixed years);
#   SPAN: the window's own length: grows with time only (a cost stack's window_h);
#   anything else is intensive: a latency, fraction, ratio or unit cost, the same for a sample and the whole.
# tests/test_sharding.py checks every figure of rich scenarios against k merged copies of a shard and W tiled copies
# of a window, so a figure added without a kind here fails there.
TOTAL, LEVEL, SPAN, INTENSIVE = "total", "level", "span", "intensive"
TOTAL_KEYS = frozenset({
    "count", "requests", "successful_requests", "tasks", "successful_tasks", "tokens", "gpu_s", "usd",
    "measured_requests", "total_requests", "prefill_tokens_saved", "provisioned_replica_hours",
    "provisioned_accelerator_hours", "accelerator_energy_kwh", "scale_ups", "scale_downs", "requests_during_ramps",
    "logical_requests", "completed", "aborted", "shed", "rejected", "rejected_queue_full", "rejected_rate_limit",
    "rejected_too_long", "unfinished", "failed", "cache_hits", "cache_hit", "hits", "lookups", "evictions",
    "stale_hits", "failures", "requests_lost", "retries", "tokens_recomputed", "requests_in_fault_windows",
    "usd_lost_work", "untenanted_requests", "net_seconds_saved", "steps", "preemptions",
})
LEVEL_KEYS = frozenset({
    "accelerators", "replicas", "owned_accelerators", "mean_in_system", "queue_depth_mean", "queue_depth_max",
    "replicas_mean", "replicas_min", "replicas_max", "max_replicas", "demand_mean_accels", "demand_peak_accels",
    "baseline_accels", "best_baseline_accels", "own_npv_usd", "rent_npv_usd", "rent_all_hours_npv_usd", "tco_usd",
    "alternative_tco_usd", "upfront_capex_usd", "own_npv_usd_at_load_0", "goodput_rps_outside", "net_monthly_usd",
})
SPAN_KEYS = frozenset({"window_h", "window_months"})
LEVEL_SUFFIXES = ("_per_s", "usd_per_hour", "usd_per_month", "_npv_usd_per_load")
INTENSIVE_MARKS = ("per_1m", "per_request", "per_successful", "per_task", "per_1000", "per_accel", "per_busy",
                   "per_provisioned", "per_billion", "tokens_per_usd", "tokens_per_joule")
# sections left as they are, per dimension: what lists the simulated replicas or fault windows one by one, the hybrid
# sizing (computed on the fleet's demand: metrics/summary.py finance_section), the inputs as the simulation took them
# (finance.assumptions), settings and provenance
# a deployment's forecast evidence (the fidelity record's figures, named by the metrics they are about) is no figure
# of the run: never scaled
KEPT = ("provenance", "sim", "sharding", "finance.hybrid", "finance.scorecard", "finance.sensitivity",
        "finance.assumptions", "finance.training", "tasks", "quality", "deployments.forecast_accuracy",
        "deployments.prefill_forecast_accuracy")
KEPT_BY_FLEET = ("replicas", "resilience.by_window", "resilience.windows", "resilience.availability_by_replica")
KEPT_BY_TIME = ("resilience.by_window", "resilience.windows")
FLEET, TIME = "fleet", "time"
FLEET_ASSUMPTIONS = ("accelerators if owned",)  # inputs the summary took from the simulated shards' own size
# a cost-stack line's quantity grows with time only where it is used over the window (its hours, tasks, GB moved or
# written, USD billed, violations); a held quantity (GB stored, IOPS, clusters) does not
TIME_QUANTITY_LINES = frozenset({"compute", "agent_external", "storage_logs", "network_internet",
                                 "network_cross_region", "orchestration_platform_fee", "support", "sla"})
TIME_UNITS = frozenset({"hours", "months", "h", "s", "years"})  # a line's quantity in these is the window's length
SCALE_NOTE = ("counts of requests, tokens, accelerators and replicas, USD totals and their rates per second or hour "
              "are the simulated shards' times `scale`; latencies, fractions and unit costs are theirs unchanged; "
              "`replicas` lists the simulated replicas only; what the fleet holds or is billed once (one copy of each "
              "model's weights, clusters, IOPS, a support plan's tiers, a monthly SLA credit) was priced at the "
              "shards' share of it, so scaling charges it once; the hybrid sizing is the fleet's (its demand scaled "
              "before sizing); cost-stack `basis` texts give the simulated shards' own figures")
WINDOW_SCALE_NOTE = ("the sampled windows were simulated with every replica and summarized back to back (their "
                     "timelines and logs are on that clock); totals over the measured span (requests, tokens, USD, "
                     "hours) are theirs times `scale`; rates, levels (USD per hour, accelerators), latencies, "
                     "fractions and unit costs are theirs unchanged; `replicas` steps and preemptions are scaled, "
                     "busy and KV fractions not; peaks and minima (queue depth, replicas, demand) are the sampled "
                     "windows' own, so a peak between them is not seen")

# headline figures given an interval: summary path -> its kind (how it grows with the fleet or with time)
CI_METRICS: dict[str, str] = {
    **{f"latency_s.{m}.{p}": INTENSIVE for m in ("ttft", "tpot", "e2e") for p in ("p50", "p99")},
    "throughput.requests_per_s": LEVEL,
    "throughput.output_tokens_per_s": LEVEL,
    "cost.usd_per_hour": LEVEL,
    "cost.window_usd": TOTAL,
    "cost.usd_per_1m_output_tokens": INTENSIVE,
}


def kind_of(key: str) -> str:
    """How a summary figure named `key` grows (TOTAL, LEVEL, SPAN or INTENSIVE; see above)."""
    if key in SPAN_KEYS:
        return SPAN
    if key in LEVEL_KEYS:
        return LEVEL
    if key in TOTAL_KEYS:
        return TOTAL
    if any(mark in key for mark in INTENSIVE_MARKS):
        return INTENSIVE
    if key.endswith(LEVEL_SUFFIXES):
        return LEVEL
    return TOTAL if key.endswith("_usd") else INTENSIVE


def grows(kind: str, dimension: str) -> bool:
    """Whether a figure of `kind` is multiplied when a sample stands for more along `dimension` (FLEET or TIME)."""
    return kind == TOTAL or (kind == LEVEL and dimension == FLEET) or (kind == SPAN and dimension == TIME)


def is_extensive(key: str) -> bool:
    """Whether a summary figure named `key` grows with the fleet."""
    return grows(kind_of(key), FLEET)


def _kept(path: str, dimension: str) -> bool:
    sections = KEPT + (KEPT_BY_FLEET if dimension == FLEET else KEPT_BY_TIME)
    return any(path == s or path.startswith(s + ".") for s in sections)


def _quantity_grows(line: dict[str, Any], dimension: str) -> bool:
    if dimension == FLEET:
        return line.get("quantity_unit") not in TIME_UNITS
    return line.get("key") in TIME_QUANTITY_LINES


def scale_summary(node: Any, factor: float, path: str = "", key: str = "", whole: str = "",
                  dimension: str = FLEET) -> Any:
    """A copy of `node` with the figures that grow along `dimension` times `factor` (integers stay integers,
    rounded). `whole`: the kind every figure below takes (a dict named as a TOTAL or LEVEL figure)."""
    if path == "finance.assumptions" and dimension == FLEET and isinstance(node, list):
        return [{**a, "value": a["value"] * factor} if str(a.get("name", "")).endswith(FLEET_ASSUMPTIONS) else a
                for a in node]
    if _kept(path, dimension) or path.startswith("window.") and key not in TOTAL_KEYS:
        return node
    if isinstance(node, dict):
        if not whole and kind_of(key) != INTENSIVE and key:
            whole = kind_of(key)
        out = {k: scale_summary(v, factor, f"{path}.{k}" if path else str(k), str(k), whole, dimension)
               for k, v in node.items()}
        if isinstance(node.get("quantity"), (int, float)) and _quantity_grows(node, dimension):
            out["quantity"] = node["quantity"] * factor  # a cost-stack line's GB, requests, calls, hours
        if isinstance(node.get("basis"), str) and node["basis"] and "usd" in node:  # a cost-stack line's arithmetic
            what = "shards'" if dimension == FLEET else "windows'"
            whole_of = "the fleet" if dimension == FLEET else "the horizon"
            out["basis"] = f"{node['basis']} (the simulated {what} figures; x {factor:g} for {whole_of})"
        return out
    if isinstance(node, list):  # rows (dicts) classify their own figures; a list of numbers is its key's
        return [scale_summary(v, factor, path, "" if isinstance(v, dict) else key, "" if isinstance(v, dict) else whole,
                              dimension) for v in node]
    counted = path.startswith("outcomes.")  # requests per outcome: every one a count
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return node
    if not (counted or grows(whole or kind_of(key), dimension)):
        return node
    if isinstance(node, int):
        return int(round(node * factor))
    return node * factor


def _at(summary: dict[str, Any], path: str) -> float | None:
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def shard_intervals(merged: dict[str, Any], shard_summaries: Sequence[dict[str, Any]], shards: int,
                    dimension: str = FLEET) -> dict[str, Any]:
    """Per headline figure: the whole's estimate (from the merged, scaled summary), the simulated parts' values
    (shards, or time windows with dimension=TIME), and the 95% half-width from their spread (times the number of
    parts for figures that grow along `dimension`)."""
    m = len(shard_summaries)
    fpc = math.sqrt(max(0.0, 1.0 - m / shards))
    part = "shard" if dimension == FLEET else "window"
    out: dict[str, Any] = {}
    for path, kind in CI_METRICS.items():
        values = [_at(s, path) for s in shard_summaries]
        if any(v is None or not math.isfinite(v) for v in values):
            continue
        mean, half = mean_ci([float(v) for v in values if v is not None], CI_LEVEL)
        scale = shards if grows(kind, dimension) else 1.0
        out[path] = {"estimate": _at(merged, path), "ci95": half * fpc * scale,
                     f"{part}_mean": mean, f"{part}_values": values}
    return out
