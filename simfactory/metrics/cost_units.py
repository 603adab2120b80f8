"""What the cost stack and its unit economics count, from a run's frames: the measured request attempts summed per
(class, deployment, workflow path) and one row per measured agent task, each labelled with its application (traffic
class), tenant, model tier (deployment), workflow path and pool, and carrying the quantities costs are allocated by
(GPU-seconds, tokens, violations, ...).

A request belongs to the window when its logical request does (the first attempt arrived in [warm-up, horizon)):
escalations and retries count with the request they serve. A task belongs when it started in the window.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from simfactory.metrics.slo import ANSWERED
from simfactory.resolve import ResolvedScenario
from simfactory.sim.agents import SUCCESS

NO_TENANT = "(no tenant)"
NOT_ROUTED = "(not routed)"
SINGLE = "(single requests)"
AGENT_TIER = "(agent tools, retrieval, reviewers)"
OTHER_PATHS = "(other paths)"
UNALLOCATED = "(unallocated)"
MAX_PATHS = 12  # workflow paths reported one by one; rarer paths are summed as OTHER_PATHS
DIMENSIONS = {"application": "by_application", "tenant": "by_tenant", "tier": "by_tier", "path": "by_workflow_path"}
KEYS = ["application", "tenant", "tier", "path", "pool"]
COUNTS = ["requests", "successful_requests", "tasks", "successful_tasks", "tokens", "internet_input_tokens",
          "internet_output_tokens", "crossing_tokens", "gpu_s", "violations", "logical_requests", "saved_s",
          "latency_units", "cross_region_usd", "agent_usd"]


def task_paths(req: pd.DataFrame, tasks: pd.DataFrame) -> dict[int, str]:
    """Each task's workflow path: its LLM steps in the order first called ("xN" when called N times: retries, loop
    iterations), then its outcome (and escalation to a human). Paths beyond the MAX_PATHS most common among the
    measured tasks read OTHER_PATHS."""
    if not len(tasks):
        return {}
    first = (req["task_id"].to_numpy() >= 0) & (req["origin"].to_numpy() < 0)  # each LLM call's first attempt
    step_code, step_names = pd.factorize(req["step"].to_numpy(dtype=object)[first])
    named = step_code >= 0  # as groupby, which leaves out a missing key
    task, step_code = req["task_id"].to_numpy()[first][named], step_code[named]
    at = req["arrival_s"].to_numpy()[first][named]
    # (task, step) groups: when first called and how often, then each task's steps in order of first call (ties:
    # the group met first, as a groupby in order of appearance and a stable sort leave them)
    key = task * max(len(step_names), 1) + step_code
    order = np.lexsort((at, key))
    key, at = key[order], at[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.array([], dtype=np.int64)
    counts = np.diff(np.r_[starts, len(key)])
    g_task, g_step, g_first = task[order][starts], step_code[order][starts], at[starts]
    g_met = np.minimum.reduceat(order, starts) if len(starts) else starts
    by = np.lexsort((g_met, g_first, g_task))
    g_task, g_step, counts = g_task[by], g_step[by], counts[by]
    names = np.asarray(step_names, dtype=object)[g_step] if len(g_step) else np.array([], dtype=object)
    label = np.where(counts > 1, names + " x" + counts.astype(str).astype(object), names)
    tids = g_task
    starts = np.flatnonzero(np.r_[True, tids[1:] != tids[:-1]]) if len(tids) else np.array([], dtype=np.int64)
    ends = np.r_[starts[1:], len(tids)]
    # one string per task, joined in plain Python (a pandas groupby-join runs a Python call per group)
    labels, task_ids = label.tolist(), tids.tolist()
    steps = {task_ids[a]: " > ".join(labels[a:b]) for a, b in zip(starts.tolist(), ends.tolist())}
    out: dict[int, str] = {}
    for tid, outcome, escalated in zip(tasks["task_id"].tolist(), tasks["outcome"].tolist(),
                                       tasks["escalated"].tolist()):
        head = steps.get(tid, "(no LLM call)")
        out[tid] = f"{head}: {outcome}, escalated" if escalated else f"{head}: {outcome}"
    counted = Counter(out[t] for t in tasks["task_id"].to_numpy()[tasks["measured"].to_numpy(dtype=bool)].tolist())
    kept = {p for p, _ in sorted(counted.items(), key=lambda pn: (-pn[1], pn[0]))[:MAX_PATHS]}
    return {t: (p if p in kept else OTHER_PATHS) for t, p in out.items()}


Cells = dict[str, np.ndarray]  # column -> one value per cell: labels (KEYS) and quantities (COUNTS)


def _labels(task_ids: np.ndarray, paths: dict[int, str]) -> np.ndarray:
    """Each task id's path (OTHER_PATHS for one without)."""
    mapped = pd.Series(task_ids).map(paths).astype(object)
    return mapped.where(mapped.notna(), OTHER_PATHS).to_numpy()


def _objects(values: list[str]) -> np.ndarray:
    return np.asarray(values, dtype=object)


def _at(values: np.ndarray, ids: np.ndarray, default: float) -> np.ndarray:
    """values[ids], `default` where an id is negative or beyond the end."""
    ok = (ids >= 0) & (ids < len(values))
    out = np.full(len(ids), default, dtype=values.dtype)
    out[ok] = values[ids[ok]]
    return out


def _class_maps(rs: ResolvedScenario) -> dict[str, dict[str, Any]]:
    classes = [c.config for c in rs.classes]
    return {
        "tenant": {c.name: c.tenant or NO_TENANT for c in classes},
        "region": {c.name: c.region for c in classes},
        "agent": {c.config.name: c.agent is not None for c in rs.classes},
    }


def _closing(lreq: pd.DataFrame, rid: np.ndarray, n: int) -> tuple[np.ndarray, pd.DataFrame]:
    """The measured logical requests and the position (among the `n` rows whose request ids are `rid`) of the
    attempt that closed each."""
    closing = lreq.loc[lreq["measured"].to_numpy(), ["request_id", "outcome", "slo_met", "e2e_s", "ttft_s"]]
    pos = np.full(int(rid.max()) + 1 if len(rid) else 0, -1, dtype=np.int64)
    pos[rid] = np.arange(n)
    ids = closing["request_id"].to_numpy(dtype=np.int64)
    inside = ids < len(pos)
    at = np.full(len(ids), -1, dtype=np.int64)
    at[inside] = pos[ids[inside]]
    return at[at >= 0], closing[at >= 0]


def request_units(rs: ResolvedScenario, req: pd.DataFrame, lreq: pd.DataFrame, paths: dict[int, str],
                  latency: tuple[float, str] | None) -> Cells:
    """The attempts of measured logical requests, summed per (class, deployment, path): GPU-seconds (replica time x
    the deployment's tp x pp), tokens answered, tokens to and from callers over the internet (plain classes: an
    agent's LLM calls stay inside the platform), tokens crossing regions, the simulated cross-region egress, and
    on the attempt that closed its logical request: success, SLO violation and latency saved against `latency`
    (reference s, metric) for plain classes. Labels are decoded once per group, not per request."""
    origin = req["origin"].to_numpy()
    idx = np.flatnonzero(req["measured"].to_numpy()[np.where(origin >= 0, origin, req["request_id"].to_numpy())])
    c_code, c_names = pd.factorize(req["class"].to_numpy()[idx])
    d_code, d_names = pd.factorize(req["deployment"].to_numpy()[idx])
    maps, dep = _class_maps(rs), {d.config.name: d for d in rs.deployments}
    plain = ~np.array([maps["agent"].get(c, False) for c in c_names], dtype=bool)[c_code]
    d_region = [dep[d].pool.region if d in dep else None for d in d_names]
    crosses = np.array([[d is not None and maps["region"].get(c) != d for d in d_region] for c in c_names],
                       dtype=bool).reshape(len(c_names), len(d_names))[c_code, d_code]
    accels = np.array([dep[d].config.tp * dep[d].config.pp if d in dep else 0 for d in d_names], dtype=float)
    path_names = [SINGLE, OTHER_PATHS, *sorted(set(paths.values()) - {OTHER_PATHS})]
    code_of = {p: i for i, p in enumerate(path_names)}
    task = req["task_id"].to_numpy()[idx]
    by_task = np.ones(max(paths, default=-1) + 1, dtype=np.int64)  # OTHER_PATHS unless the task has a path
    for t, p in paths.items():
        by_task[t] = code_of[p]
    p_code = np.where(task >= 0, _at(by_task, task, 1), 0)
    tin, tout = req["input_tokens"].to_numpy()[idx], req["output_tokens"].to_numpy()[idx]
    answered = req["outcome"].isin(ANSWERED).to_numpy()[idx]
    cols = {"requests": np.ones(len(idx)), "tokens": (tin + tout) * answered,
            "gpu_s": req["replica_s"].to_numpy()[idx] * accels[d_code],
            "internet_input_tokens": tin * answered * plain, "internet_output_tokens": tout * answered * plain,
            "crossing_tokens": (tin + tout) * crosses, "cross_region_usd": req["egress_usd"].to_numpy()[idx]}
    at, closing = _closing(lreq, req["request_id"].to_numpy()[idx], len(idx))
    for name, values in (("logical_requests", 1.0), ("successful_requests", closing["outcome"].isin(ANSWERED)),
                         ("violations", ~closing["slo_met"].to_numpy(dtype=bool))):
        cols[name] = np.zeros(len(idx))
        cols[name][at] = values
    cols["saved_s"], cols["latency_units"] = np.zeros(len(idx)), np.zeros(len(idx))
    if latency is not None:
        value = latency[0] - closing[f"{latency[1]}_s"].to_numpy(dtype=float)
        keep = closing["outcome"].isin(ANSWERED).to_numpy() & plain[at] & ~np.isnan(value)
        cols["saved_s"][at[keep]], cols["latency_units"][at[keep]] = value[keep], 1.0
    key = (c_code * max(len(d_names), 1) + d_code) * len(path_names) + p_code
    groups, inv = np.unique(key, return_inverse=True)
    c_g, rest = np.divmod(groups, max(len(d_names), 1) * len(path_names))
    d_g, p_g = np.divmod(rest, len(path_names))
    return {
        "application": _objects([str(c) for c in c_names])[c_g],
        "tenant": _objects([maps["tenant"].get(c, NO_TENANT) for c in c_names])[c_g],
        "tier": _objects([d if d else NOT_ROUTED for d in d_names])[d_g],
        "pool": _objects([dep[d].config.pool if d in dep else "" for d in d_names])[d_g],
        "path": np.asarray(path_names, dtype=object)[p_g],
        **{k: np.bincount(inv, weights=v, minlength=len(groups)) for k, v in cols.items()},
    }


def task_units(rs: ResolvedScenario, req: pd.DataFrame, tasks: pd.DataFrame, paths: dict[int, str],
               idle_seats: dict[str, float], latency: tuple[float, str] | None) -> Cells:
    """One row per measured agent task: its tools, retrieval and reviewers (per use, plus its class's share of idle
    provisioned seats, spread evenly over the class's tasks), the egress of tool and retrieval results across
    regions (its LLM calls' egress is on their requests), success, and e2e latency saved against `latency`."""
    keep = tasks["measured"].to_numpy(dtype=bool) if len(tasks) else np.zeros(0, dtype=bool)
    if not keep.any():
        return {}

    def col(name: str, dtype: Any = None) -> np.ndarray:  # the measured tasks' column (no copy of the frame)
        return tasks[name].to_numpy(dtype=dtype)[keep]

    tenant = _class_maps(rs)["tenant"]
    code, names = pd.factorize(col("class", object))
    names = np.asarray([str(c) for c in names], dtype=object)
    cls = names[code]  # per task, decoded once per class
    per_class = np.bincount(code, minlength=len(names))
    share = np.asarray([idle_seats.get(c, 0.0) / n for c, n in zip(names, per_class)])[code]
    task_rows = req["task_id"].to_numpy() >= 0
    on_requests = np.bincount(req["task_id"].to_numpy()[task_rows], weights=req["egress_usd"].to_numpy()[task_rows])
    tid = col("task_id", np.int64)
    llm_egress = _at(on_requests, tid, 0.0)
    success = np.isin(col("outcome", object), list(SUCCESS))
    saved, counted = np.zeros(len(tid)), np.zeros(len(tid))
    if latency is not None and latency[1] == "e2e":
        e2e = col("e2e_s", float)
        counted = (success & ~np.isnan(e2e)).astype(float)
        saved = np.where(counted > 0, latency[0] - e2e, 0.0)
    return {
        "application": cls, "tenant": np.asarray([tenant.get(c, NO_TENANT) for c in names], dtype=object)[code],
        "tier": np.full(len(tid), AGENT_TIER, dtype=object), "pool": np.full(len(tid), "", dtype=object),
        "path": _labels(tid, paths), "tasks": np.ones(len(tid)), "successful_tasks": success.astype(float),
        "saved_s": saved, "latency_units": counted,
        "agent_usd": col("usd_tools", float) + col("usd_retrieval", float) + col("usd_human", float) + share,
        "cross_region_usd": np.maximum(col("usd_network", float) - llm_egress, 0.0),
    }


def unallocated_seats(idle_seats: dict[str, float], tasks: pd.DataFrame) -> float:
    """Idle reviewer seats of classes with no measured task: no task to carry them."""
    measured = set(tasks.loc[tasks["measured"], "class"].astype(str)) if len(tasks) else set()
    return sum(v for c, v in idle_seats.items() if c not in measured)


def cells(*parts: Cells) -> Cells:
    """Request groups and tasks side by side, plus one UNALLOCATED cell, as columns: allocation is linear in its
    bases, so allocating over these cells is exact (a million requests make a few dozen request groups)."""
    out: Cells = {}
    for k in KEYS:
        out[k] = np.concatenate([*(p[k] for p in parts if p), np.array([UNALLOCATED if k != "pool" else ""],
                                                                       dtype=object)])
    for k in COUNTS:
        out[k] = np.concatenate([*(p.get(k, np.zeros(len(p["application"]))) for p in parts if p), np.zeros(1)])
    return out
