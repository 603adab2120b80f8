"""Raw simulation results -> pandas DataFrames (requests and timelines).

Metric definitions (aligned with vllm bench / genai-perf):
  TTFT  = first token time - arrival (includes queueing and, across regions, the network both ways)
  TPOT  = (completion - first token) / (output tokens - 1), for served requests with more than one output token
  E2E   = completion - arrival (plus the network back to the caller)
  queue = first scheduled - arrival at the deployment (time before the first prefill step started)
  admission wait = handed to the replicas - arrival at the deployment (the part of queue spent at the tenant gate)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import SimResult


def requests_frame(result: SimResult) -> pd.DataFrame:
    t = result.table
    rs = result.resolved
    sim = rs.scenario.sim
    class_names = np.array([c.config.name for c in rs.classes], dtype=object)
    dep_names = np.array([*(d.config.name for d in rs.deployments), ""], dtype=object)  # -1: never routed
    labels = np.array([o.label for o in Outcome], dtype=object)
    step_names = np.array([*result.step_names, ""], dtype=object)  # step_id -1 (plain request) -> ""
    out_tokens = t.output_tokens.astype(float)
    served = t.outcome == Outcome.COMPLETED
    answered = served | (t.outcome == Outcome.CACHE_HIT)
    # what the caller sees: the answer travels back over the network (net_out) after the engine is done
    first_seen = t.first_token_s + t.net_out_s
    done_seen = t.completion_s + t.net_out_s
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(served & (out_tokens > 1), (t.completion_s - t.first_token_s) / (out_tokens - 1), np.nan)
    df = pd.DataFrame(
        {
            "request_id": np.arange(len(t)),
            "class": class_names[t.class_id] if len(t) else [],
            "deployment": dep_names[t.deployment_id] if len(t) else [],
            "replica": t.replica,
            "arrival_s": t.arrival_s,
            "admitted_s": t.admitted_s,
            "first_scheduled_s": t.first_scheduled_s,
            "first_token_s": t.first_token_s,
            "completion_s": np.where(answered, t.completion_s, np.nan),
            "departure_s": np.where(answered, done_seen, t.completion_s),  # answer seen, or rejection; NaN unfinished
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "generated_tokens": t.generated,
            "preemptions": t.preemptions,
            "outcome": labels[t.outcome] if len(t) else [],
            "ttft_s": first_seen - t.arrival_s,
            "tpot_s": tpot,
            "e2e_s": np.where(answered, done_seen - t.arrival_s, np.nan),
            "queue_s": t.first_scheduled_s - t.arrival_s - t.net_in_s - t.front_end_s,
            "admission_wait_s": t.admitted_s - t.arrival_s - t.net_in_s - t.front_end_s,
            "network_s": np.where(answered, t.net_in_s + t.net_out_s, t.net_in_s),
            "front_end_s": t.front_end_s,
            "egress_usd": t.egress_usd,
            "measured": (t.arrival_s >= sim.warmup_s) & (t.arrival_s < sim.horizon_s),
            "task_id": t.task_id,
            "service_class_id": t.service_class,
            "tenant_id": t.tenant,
            "session": t.session,
            "difficulty": t.difficulty,
            "cached_tokens": t.cached_tokens,
            "fallbacks": t.fallbacks,
            "route_id": t.route_id,
            "prefill_replica": t.prefill_replica,
            "kv_transfer_s": t.kv_transfer_s,
            "origin": t.origin,
            "attempt": t.attempt,
            "step": step_names[t.step_id] if len(t) else [],
            "replica_s": t.replica_s,
        },
        copy=False,  # columns view the table's arrays (no 1M-row copy and consolidation): read-only, never .loc-assign
    )
    return df


def replica_timelines_frame(result: SimResult) -> pd.DataFrame:
    """Long format: one row per (sample time, replica)."""
    tl = result.timelines
    n_t = len(tl.time_s)
    n_r = len(result.replicas)
    time = np.repeat(np.asarray(tl.time_s), n_r)
    return pd.DataFrame(
        {
            "time_s": time,
            "replica": np.tile(np.arange(n_r), n_t),
            "deployment": np.tile([r.deployment for r in result.replicas], n_t),
            "waiting": np.asarray(tl.waiting, dtype=np.int64).reshape(-1) if n_t else [],
            "running": np.asarray(tl.running, dtype=np.int64).reshape(-1) if n_t else [],
            "kv_used_frac": np.asarray(tl.kv_used_frac, dtype=float).reshape(-1) if n_t else [],
            "busy_frac": np.asarray(tl.busy_frac, dtype=float).reshape(-1) if n_t else [],
        }
    )


def system_timeline_frame(result: SimResult) -> pd.DataFrame:
    """One row per sample: requests in the system and each deployment's total queue depth."""
    tl = result.timelines
    df = pd.DataFrame({"time_s": tl.time_s, "in_system": tl.in_system})
    queues = np.asarray(tl.deployment_queue, dtype=np.int64).reshape(len(tl.time_s), -1)
    for k, d in enumerate(result.resolved.deployments):
        df[f"queue_depth.{d.config.name}"] = queues[:, k]
    for name, log in result.autoscale.items():  # provisioned replicas of autoscaled deployments
        df[f"replicas.{name}"] = [log.provisioned_at(float(t)) for t in tl.time_s]
    return df
