"""Time windows: a long horizon split into W windows simulated apart, then joined into one run.

Window w covers [t_w, t_w+1) of the original horizon. It is simulated from t_w - overlap (so its queues, caches
and autoscaler are warm when the window opens) to t_w+1 + overlap (so requests arriving just before it closes
still meet the load that follows them), and only requests whose first attempt arrived inside [t_w, t_w+1) are kept,
with their times moved back to the original clock. Time-of-day inputs are shifted with the window: the diurnal
shape's start hour, its flash events and pool outages. What a window cannot reproduce from its own start is
refused (weekday multipliers, rate schedules); the boundary error that remains is measured by
benchmarks/fleet_validation.py against a continuous run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from simfactory.config.loader import validate
from simfactory.config.scenario import Scenario, scenario_document
from simfactory.resolve import ResolvedScenario
from simfactory.resolve.shards import window_length_s, windows_start_s
from simfactory.sim.autoscale import AutoscaleLog
from simfactory.sim.faults import FaultLog
from simfactory.sim.requests import COLUMNS, RequestTable
from simfactory.sim.run import SimResult, Timelines

TIME_COLUMNS = ("arrival_s", "admitted_s", "first_scheduled_s", "first_token_s", "completion_s")


@dataclass(frozen=True)
class Window:
    index: int
    start_s: float  # the window on the original clock: [start_s, end_s)
    end_s: float
    offset_s: float  # the original time of the window simulation's t = 0 (start_s less the overlap before)
    last: bool
    # also keep what arrived before start_s and ends after it (unmeasured, as a run's warm-up arrivals are): the
    # first of sampled windows back to back, whose start no earlier window's tail fills (fleet/run.py)
    in_flight: bool = False


def plan_windows(sc: Scenario, windows: int, overlap_s: float, file: str) -> list[Window]:
    """Equal windows whose edges and overlaps fall on the timeline grid (so busy time splits exactly), from 0 (or
    from the warm-up's end when only a sample of them is simulated: resolve/shards.py windows_start_s)."""
    length = window_length_s(sc, windows, file)
    start = windows_start_s(sc)
    resolution_s = sc.sim.timeline_resolution_s
    overlap = math.ceil(overlap_s / resolution_s - 1e-9) * resolution_s
    return [Window(w, start + w * length, start + (w + 1) * length, max(0.0, start + w * length - overlap),
                   w == windows - 1) for w in range(windows)]


def _shift_arrival(a: dict[str, Any], offset_s: float) -> dict[str, Any]:
    if a.get("process") != "diurnal":
        return a
    a = dict(a)
    a["start_hour"] = (a["start_hour"] + 24.0 * offset_s / a["period_s"]) % 24.0
    a["events"] = [{**e, "start_s": max(0.0, e["start_s"] - offset_s),
                    "duration_s": e["duration_s"] - max(0.0, offset_s - e["start_s"])}
                   for e in a["events"] if e["start_s"] + e["duration_s"] > offset_s]
    return a


def window_scenario(sc: Scenario, file: str, w: Window, overlap_s: float) -> Scenario:
    """The scenario simulating window w: its own clock from w.offset_s, the overlap after it, shifted inputs."""
    doc = scenario_document(sc)
    doc["sharding"] = None
    after = 0.0 if w.last else math.ceil(overlap_s / sc.sim.timeline_resolution_s - 1e-9) * sc.sim.timeline_resolution_s
    doc["sim"]["horizon_s"] = w.end_s + after - w.offset_s
    doc["sim"]["warmup_s"] = 0.0
    if not w.last:  # its requests finish as they would in a continuous run; only the last window ends the run
        doc["sim"]["drain"] = True
    if doc["traffic"].get("arrival"):
        doc["traffic"]["arrival"] = _shift_arrival(doc["traffic"]["arrival"], w.offset_s)
    for c in doc["traffic"]["classes"]:
        if isinstance(c.get("arrival"), dict):
            c["arrival"] = _shift_arrival(c["arrival"], w.offset_s)
    doc["faults"]["outages"] = [
        {**o, "start_s": max(0.0, o["start_s"] - w.offset_s),
         "duration_s": o["duration_s"] - max(0.0, w.offset_s - o["start_s"])}
        for o in doc["faults"]["outages"] if o["start_s"] + o["duration_s"] > w.offset_s]
    return validate(Scenario, doc, file)


def _kept_rows(t: RequestTable, w: Window) -> np.ndarray:
    """Rows whose first attempt arrived inside the window (an escalation or retry stays with its first attempt)."""
    first = np.where(t.origin >= 0, t.origin, np.arange(len(t)))
    arrival = np.asarray(t.arrival_s)[first] + w.offset_s
    keep = (arrival >= w.start_s) & ((arrival < w.end_s) | w.last)
    if w.in_flight:
        with np.errstate(invalid="ignore"):  # NaN: never completed
            keep |= (arrival < w.start_s) & (np.asarray(t.completion_s)[: len(t)] + w.offset_s >= w.start_s)
    return keep


def _clip(a: float, b: float, w: Window, close: float) -> tuple[float, float]:
    """An interval [a, b) (b NaN: still open) cut to the window; the last window keeps what runs past its end."""
    if not w.last:
        b = close if b != b else min(b, close)
    return max(a, w.start_s), b


def _rejoin(failures: list[tuple[int, float, float]], edges: set[float]) -> list[tuple[int, float, float]]:
    """A replica down across a window edge: its two pieces (cut there by _clip) made one failure again."""
    out: list[tuple[int, float, float]] = []
    for r, a, b in sorted(failures, key=lambda f: (f[0], f[1])):
        if out and out[-1][0] == r and out[-1][2] == a and a in edges:
            out[-1] = (r, out[-1][1], b)
        else:
            out.append((r, a, b))
    return sorted(out, key=lambda f: (f[1], f[0]))  # in the order they failed, as a continuous run logs them


def join_windows(rs: ResolvedScenario, parts: Sequence[SimResult], windows: Sequence[Window], seed: int) -> SimResult:
    """Windows (of the same replicas) as one run of `rs` on the original clock."""
    res = rs.scenario.sim.timeline_resolution_s
    tables, tl = [], Timelines()
    kept_ids: list[np.ndarray] = []
    row_base = 0
    autoscale: dict[str, AutoscaleLog] = {}
    faults = FaultLog()
    for p, w in zip(parts, windows):
        t = p.table
        keep = _kept_rows(t, w)
        new_id = np.cumsum(keep) - 1 + row_base
        kept_ids.append(new_id)
        sub = RequestTable(capacity=1)
        for name, (dtype, _fill) in COLUMNS.items():
            col = np.asarray(getattr(t, name), dtype=dtype)[: len(t)][keep]
            if name in TIME_COLUMNS:
                col = col + w.offset_s
            elif name == "origin":  # a first attempt left out (before an in-flight row's window): none
                col = np.where((col >= 0) & keep[np.maximum(col, 0)], new_id[np.maximum(col, 0)], -1)
            setattr(sub, name, col)
        sub.n = int(keep.sum())
        tables.append(sub)
        row_base += sub.n
        times = np.asarray(p.timelines.time_s) + w.offset_s
        rows = np.flatnonzero((times >= w.start_s) & ((times < w.end_s) | w.last))
        for attr in ("time_s", "in_system", "tasks_in_system", "deployment_queue", "gated", "waiting", "running",
                     "kv_used_frac", "busy_frac"):
            src = times if attr == "time_s" else getattr(p.timelines, attr)
            if len(src):
                getattr(tl, attr).extend(float(src[i]) if attr == "time_s" else src[i] for i in rows)
        close = math.nan if w.last else w.end_s
        for name, log in p.autoscale.items():
            merged = autoscale.setdefault(name, AutoscaleLog(log.deployment, log.tp, log.delay_s))
            for a, b in log.intervals:
                a, b = _clip(a + w.offset_s, b + w.offset_s, w, close)
                if b != b or b > a:
                    merged.intervals.append([a, b])
            merged.events += [(e + w.offset_s, kind, i) for e, kind, i in log.events
                              if w.start_s <= e + w.offset_s and (w.last or e + w.offset_s < w.end_s)]
        if p.faults is not None:
            for r, a, b in p.faults.failures:
                a, b = _clip(a + w.offset_s, b + w.offset_s, w, close)
                if b != b or b > a:
                    faults.failures.append((r, a, b))
            for when, r, q in p.faults.lost:
                if keep[q]:
                    faults.lost.append((when + w.offset_s, r, int(new_id[q])))
            faults.retries += p.faults.retries
            faults.failed += p.faults.failed
    faults.failures = _rejoin(faults.failures, {w.end_s for w in windows})
    table = RequestTable(capacity=1)
    for name, (dtype, _fill) in COLUMNS.items():
        setattr(table, name, np.concatenate([getattr(s, name) for s in tables]).astype(dtype, copy=False))
    table.n = row_base
    table._capacity = max(row_base, 1)
    busy = np.asarray(tl.busy_frac, dtype=float).reshape(len(tl.time_s), -1) * res
    times = np.asarray(tl.time_s)
    sc = rs.scenario.sim
    return SimResult(
        resolved=rs, seed=seed, table=table, tasks=[], step_names=list(parts[0].step_names),
        replicas=list(parts[0].replicas),
        replica_busy_s=busy.sum(axis=0),
        busy_at_warmup_s=busy[times <= sc.warmup_s].sum(axis=0),
        busy_at_horizon_s=busy[times <= sc.horizon_s].sum(axis=0),
        replica_steps=np.sum([np.asarray(p.replica_steps) for p in parts], axis=0),
        timelines=tl, end_s=parts[-1].end_s + windows[-1].offset_s, events=sum(p.events for p in parts),
        autoscale=autoscale, faults=faults if any(p.faults is not None for p in parts) else None,
    )
