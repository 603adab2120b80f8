"""What failures cost: availability, requests lost / retried / failed, work recomputed and paid twice, the load
retries add, and SLO attainment inside fault windows against outside them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simfactory.sim.run import SimResult

RECOVERY_S = 60.0  # "after a fault": requests arriving in the minute after a window closes
MAX_WINDOW_ROWS = 100  # per-window detail kept in the summary (the first ones by start time)


def _union_s(intervals: list[tuple[float, float]]) -> float:
    """Total length of a union of intervals (overlapping fault windows counted once)."""
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_b is None or a > cur_b:
            total += (cur_b - cur_a) if cur_b is not None and cur_a is not None else 0.0
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None and cur_b is not None:
        total += cur_b - cur_a
    return total


def by_window(labels: list[tuple[int, float, float]], arrivals: np.ndarray, met: np.ndarray) -> list[dict[str, Any]]:
    """Each fault window on its own: requests arriving in it, their SLO attainment, and goodput (requests that
    met their SLO per second of the window), next to the same for the rest of the run."""
    rows = []
    for replica, a, b in sorted(labels, key=lambda w: (w[1], w[0]))[:MAX_WINDOW_ROWS]:
        inside = (arrivals >= a) & (arrivals < b)
        n = int(inside.sum())
        rows.append({"replica": replica, "start_s": a, "end_s": b, "requests": n,
                     "slo_attainment": float(met[inside].mean()) if n else None,
                     "goodput_rps": float(met[inside].sum() / (b - a)) if b > a else None})
    return rows


def resilience_summary(result: SimResult, req: pd.DataFrame, lreq: pd.DataFrame) -> dict[str, Any]:
    log = result.faults
    faults = result.resolved.scenario.faults
    if log is None or not (faults.replica_failures or faults.outages or faults.spot_reclamations
                           or faults.tool_brownouts or faults.retrieval_brownouts or faults.rolling_restarts):
        return {}
    end = result.end_s
    failing = sorted({r for r, _, _ in log.failures} | {
        info.replica_id for info in result.replicas
        if info.pool in {f.pool for f in [*faults.replica_failures, *faults.outages, *faults.spot_reclamations,
                                          *faults.rolling_restarts]}})
    avail = {int(r): 1.0 - log.down_s(r, 0.0, end) / end for r in failing} if end > 0 else {}
    lost = np.array([rid for _, _, rid in log.lost], dtype=np.int64)
    lost_rows = req.set_index("request_id").loc[lost] if len(lost) else req.iloc[0:0]
    windows = [(a, (end if b != b else b)) for _, a, b in log.failures]
    brownouts = [*faults.tool_brownouts, *faults.retrieval_brownouts]
    windows += [(b.start_s, b.start_s + b.duration_s) for b in brownouts]
    arrivals = lreq["arrival_s"].to_numpy() if len(lreq) else np.zeros(0)
    in_window = np.zeros(len(arrivals), dtype=bool)
    for a, b in windows:
        in_window |= (arrivals >= a) & (arrivals < b)
    after = np.zeros(len(arrivals), dtype=bool)  # the minute after each window: recovery
    for a, b in windows:
        after |= (arrivals >= b) & (arrivals < b + RECOVERY_S)
    after &= ~in_window
    met = lreq["slo_met"].to_numpy(dtype=bool) if len(lreq) else np.zeros(0, dtype=bool)
    first_attempts = int((req["attempt"] == 0).sum()) if "attempt" in req else len(req)
    labels = [(int(r), float(a), float(end if b != b else b)) for r, a, b in log.failures]
    labels += [(-1, float(b.start_s), float(b.start_s + b.duration_s)) for b in brownouts]
    covered = _union_s([(a, min(b, end)) for _, a, b in labels if a < end])
    outside_s = end - covered
    repairs = [b - a for _, a, b in log.failures if b == b]
    return {
        "failures": len(log.failures),
        "availability_mean": float(np.mean(list(avail.values()))) if avail else None,
        "availability_by_replica": avail,
        "requests_lost": int(len(lost)),
        "retries": int(log.retries),
        "failed": int(log.failed),
        "offered_load_factor": (first_attempts + log.retries) / first_attempts if first_attempts else None,
        "tokens_recomputed": int(lost_rows["generated_tokens"].sum() + lost_rows.loc[
            lost_rows["first_scheduled_s"].notna(), "input_tokens"].sum()) if len(lost_rows) else 0,
        "usd_lost_work": float(lost_rows["usd"].sum()) if len(lost_rows) else 0.0,
        "mean_time_to_repair_s": float(np.mean(repairs)) if repairs else None,
        "slo_attainment_in_fault_windows": float(met[in_window].mean()) if in_window.any() else None,
        "slo_attainment_after_windows": float(met[after].mean()) if after.any() else None,
        "slo_attainment_outside": float(met[~in_window & ~after].mean()) if (~in_window & ~after).any() else None,
        "requests_in_fault_windows": int(in_window.sum()),
        "windows": [[int(r), float(a), float(end if b != b else b)] for r, a, b in log.failures[:500]]
        + [[-1, b.start_s, b.start_s + b.duration_s] for b in brownouts],  # -1: a tool or retrieval brownout
        "by_window": by_window(labels, arrivals, met),
        "goodput_rps_outside": (float(met[~in_window].sum() / outside_s) if outside_s > 0 else None),
    }
