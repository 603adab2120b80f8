"""Does a fitted workload stand in for its trace? Simulate the trace's replay and the fitted workload on the same
fleet, at several loads (the trace sped up k times; the fitted arrivals run k times faster), and compare the
latency percentiles users feel: TTFT and end-to-end p50 and p99."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simfactory.config.loader import read_yaml, validate
from simfactory.config.scenario import Scenario
from simfactory.errors import InputError
from simfactory.traces.fit import fit_workload
from simfactory.traces.parse import Trace, parse_trace

METRICS = (("ttft", "p50"), ("ttft", "p99"), ("e2e", "p50"), ("e2e", "p99"))
DRAIN_S = 600.0  # enough for a saturated fleet's backlog to finish, so no request is left out of the percentiles


@dataclass
class LoadComparison:
    speedup: float
    replay: dict[str, float]  # "ttft_p50_s" ... for the replayed trace
    fitted: dict[str, float]  # the same, averaged over the fitted workload's seeds
    fitted_spread: dict[str, float]  # (max - min) / mean over those seeds
    queue_mean: float  # the replay's mean number of waiting requests (how loaded the fleet is)
    requests: tuple[int, int]  # (replayed, fitted mean) requests measured
    errors: dict[str, float] = field(default_factory=dict)  # fitted / replay - 1


def _class_doc(scenario_doc: dict[str, Any], src: str) -> dict[str, Any]:
    classes = scenario_doc.get("traffic", {}).get("classes") if isinstance(scenario_doc.get("traffic"), dict) else None
    if not classes or not isinstance(classes[0], dict):
        raise InputError(src, "traffic.classes", "needs a class whose target serves the trace")
    keep = ("name", "target", "targets", "service_class", "tenant", "region", "shared_prefix_tokens",
            "prefix_variants", "sessions", "difficulty")
    return {k: v for k, v in classes[0].items() if k in keep}


def _variant(base: dict[str, Any], cls: dict[str, Any], horizon_s: float) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    doc["traffic"] = {"classes": [cls]}
    doc["sim"] = {**doc.get("sim", {}), "horizon_s": horizon_s, "warmup_s": 0.0, "drain": True,
                  "max_drain_s": DRAIN_S}
    doc["sim"].pop("timeline_resolution_s", None)
    return doc


def _latencies(summary: dict[str, Any]) -> dict[str, float]:
    lat = summary["latency_s"]
    return {f"{m}_{p}_s": float(lat[m][p]) for m, p in METRICS if lat[m].get(p) is not None}


def _simulate(doc: dict[str, Any], src: str, seed: int) -> dict[str, Any]:
    from simfactory.api import run
    from simfactory.resolve import resolve

    return run(resolve(validate(Scenario, doc, src), src), seed=seed).summary


def compare_fit(scenario: Path, trace_file: Path, fmt: str, speedups: list[float], seeds: int = 3,
                trace: Trace | None = None) -> list[LoadComparison]:
    """For each speedup: the replay's latency percentiles, the fitted workload's (mean over `seeds` seeds), and
    the relative error of each. The scenario's first class gives the target; its other classes are dropped.

    A timestamped trace brings its own arrivals (the fit brings its rate schedule); a trace recorded on a coarse
    tick (most timestamps repeated) is replayed and fitted with each batch spread over its tick
    (`trace.spread_batches`): the batch instants are the recording's, not the traffic's. A trace of lengths only
    (sharegpt, vllm-bench) is replayed and fitted under the scenario's traffic.arrival, k times faster: what is
    compared is then the lengths and their pairing."""
    src = str(scenario)
    base = read_yaml(scenario)
    trace = trace or parse_trace(trace_file, fmt)  # type: ignore[arg-type]
    workload, _ = fit_workload(trace, "fitted")
    cls = _class_doc(base, src)
    shared = (base.get("traffic") or {}).get("arrival") if isinstance(base.get("traffic"), dict) else None
    if trace.arrival_s is None and not (isinstance(shared, dict) and shared.get("process") not in (None, "closed")):
        raise InputError(src, "traffic.arrival", f"{fmt} rows have no arrival times: the scenario's traffic.arrival "
                         "(an open process) sets the load for both the replay and the fit")
    span_s = (float(trace.arrival_s.max() - trace.arrival_s.min()) if trace.arrival_s is not None
              else float(base["sim"]["horizon_s"]))
    out = []
    for k in speedups:
        horizon = span_s / k + 1e-6 if trace.arrival_s is not None else span_s
        timing = ({"arrival": shared, "rate_scale": k} if trace.arrival_s is None
                  else {"arrival": workload.get("arrival"), "rate_scale": k})
        replay_cls = {**cls, "trace": {"file": str(Path(trace_file).resolve()), "format": fmt}}
        if trace.arrival_s is None:
            replay_cls.update(timing)
        else:
            replay_cls["trace"].update(speedup=k, spread_batches=True)
        fitted_cls = {**cls, "input_tokens": workload["input_tokens"], "output_tokens": workload["output_tokens"],
                      "length_correlation": workload["length_correlation"], **timing}
        replay = _simulate(_variant(base, replay_cls, horizon), src, seed=int(base.get("seed", 0)))
        runs = [_simulate(_variant(base, fitted_cls, horizon), src, seed=s + 1) for s in range(seeds)]
        out.append(_compared(k, replay, runs))
    return out


def _compared(k: float, replay: dict[str, Any], runs: list[dict[str, Any]]) -> LoadComparison:
    """One load's comparison: the replay's percentiles against the fitted runs' mean, their spread and errors."""
    lat = [_latencies(r) for r in runs]
    rep = _latencies(replay)
    keys = [key for key in rep if all(key in x for x in lat)]
    mean = {key: float(np.mean([x[key] for x in lat])) for key in keys}
    spread = {key: float((max(x[key] for x in lat) - min(x[key] for x in lat)) / mean[key]) if mean[key] else 0.0
              for key in keys}
    errors = {key: mean[key] / rep[key] - 1.0 for key in keys if rep[key] > 0}
    measured = (int(replay["window"]["measured_requests"]),
                int(np.mean([r["window"]["measured_requests"] for r in runs])))
    return LoadComparison(k, rep, mean, spread, _queue_mean(replay), measured, errors)


def _queue_mean(summary: dict[str, Any]) -> float:
    """Requests waiting to be scheduled, on average over the run, summed over deployments: ~0 at light load, and
    growing fast as the fleet nears saturation."""
    return float(sum(d.get("queue_depth_mean") or 0.0 for d in summary.get("deployments", [])))
