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

EXTENSIVE_KEYS = frozenset({
    "count", "requests", "successful_requests", "tasks", "successful_tasks", "tokens", "gpu_s", "usd",
    "measured_requests", "total_requests", "accelerators", "replicas", "mean_in_system", "owned_accelerators",
    "queue_depth_mean", "queue_depth_max", "replicas_mean", "demand_mean_accels", "demand_peak_accels",
    "baseline_accels", "best_baseline_accels", "prefill_tokens_saved", "provisioned_replica_hours",
    "provisioned_accelerator_hours", "accelerator_energy_kwh", "egress_usd", "replicas_min", "replicas_max",
    "max_replicas", "scale_ups", "scale_downs", "requests_during_ramps", "logical_requests", "completed",
    "own_npv_usd_at_load_0", "goodput_rps_outside",
})
TIME_UNITS = frozenset({"hours", "months", "h", "s", "years"})  # a cost line's quantity in these is the window
EXTENSIVE_SUFFIXES = ("_usd", "usd_per_hour", "usd_per_month", "_per_s", "_npv_usd_per_load")
INTENSIVE_MARKS = ("per_1m", "per_request", "per_successful", "per_task", "per_1000", "per_accel", "per_busy",
                   "per_provisioned", "tokens_per_")
UNSCALED_SECTIONS = ("provenance", "replicas", "window.warmup_s", "sim", "sharding", "resilience.by_window",
                     "resilience.windows")  # per simulated replica, or not counts
SCALE_NOTE = ("counts of requests, tokens, accelerators and replicas, USD totals and their rates per second or hour "
              "are the simulated shards' times `scale`; latencies, fractions and unit costs are theirs unchanged; "
              "`replicas` lists the simulated replicas only; what the fleet holds or is billed once (one copy of each "
              "model's weights, clusters, IOPS, a support plan's tiers, a monthly SLA credit) was priced at the "
              "shards' share of it, so scaling charges it once; cost-stack `basis` texts give the simulated shards' "
              "own figures")

# headline figures given an interval: summary path -> grows with the fleet (times k) or not
CI_METRICS: dict[str, bool] = {
    **{f"latency_s.{m}.{p}": False for m in ("ttft", "tpot", "e2e") for p in ("p50", "p99")},
    "throughput.requests_per_s": True,
    "throughput.output_tokens_per_s": True,
    "cost.usd_per_hour": True,
    "cost.window_usd": True,
    "cost.usd_per_1m_output_tokens": False,
}


def is_extensive(key: str) -> bool:
    """Whether a summary figure named `key` grows with the fleet (by name: see SCALE_NOTE)."""
    if any(mark in key for mark in INTENSIVE_MARKS):
        return False
    return key in EXTENSIVE_KEYS or key.endswith(EXTENSIVE_SUFFIXES)


def scale_summary(node: Any, factor: float, path: str = "", key: str = "", whole: bool = False) -> Any:
    """A copy of `node` with its extensive figures times `factor` (integers stay integers, rounded). `whole`: every
    figure below is extensive (a dict named as one, such as a pool's breakdown_usd_per_hour by cost component)."""
    if path in UNSCALED_SECTIONS or path.startswith("window.") and key not in EXTENSIVE_KEYS:
        return node
    if isinstance(node, dict):
        whole = whole or is_extensive(key)
        out = {k: scale_summary(v, factor, f"{path}.{k}" if path else str(k), key if whole else str(k), whole)
               for k, v in node.items()}
        if isinstance(node.get("quantity"), (int, float)) and node.get("quantity_unit") not in TIME_UNITS:
            out["quantity"] = node["quantity"] * factor  # a cost-stack line's GB, requests, calls (not its hours)
        if isinstance(node.get("basis"), str) and node["basis"] and "usd" in node:  # a cost-stack line's arithmetic
            out["basis"] = f"{node['basis']} (the simulated shards' figures; x {factor:g} for the fleet)"
        return out
    if isinstance(node, list):
        return [scale_summary(v, factor, path, key, whole) for v in node]
    counted = path.startswith("outcomes.")  # requests per outcome: every one a count
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not (counted or is_extensive(key)):
        return node
    if counted or isinstance(node, int):
        return int(round(node * factor))
    return node * factor


def _at(summary: dict[str, Any], path: str) -> float | None:
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def shard_intervals(merged: dict[str, Any], shard_summaries: Sequence[dict[str, Any]], shards: int) -> dict[str, Any]:
    """Per headline figure: the fleet estimate (from the merged summary), the simulated shards' values, and the
    95% half-width from their spread (times k for figures that grow with the fleet)."""
    m = len(shard_summaries)
    fpc = math.sqrt(max(0.0, 1.0 - m / shards))
    out: dict[str, Any] = {}
    for path, extensive in CI_METRICS.items():
        values = [_at(s, path) for s in shard_summaries]
        if any(v is None or not math.isfinite(v) for v in values):
            continue
        mean, half = mean_ci([float(v) for v in values if v is not None], CI_LEVEL)
        scale = shards if extensive else 1.0
        out[path] = {"estimate": _at(merged, path), "ci95": half * fpc * scale,
                     "shard_mean": mean, "shard_values": values}
    return out
