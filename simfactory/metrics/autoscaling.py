"""What autoscaling did: provisioned replica-hours (what a cloud pool bills), replicas over time, scale events,
and how the SLOs fared while capacity was being added."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simfactory.sim.run import SimResult


def billed_accelerators(result: SimResult, start_s: float, end_s: float, peak: bool = False) -> dict[str, float]:
    """Per cloud pool with autoscaled deployments: mean accelerators provisioned over the window (the pool's
    other accelerators are provisioned all the time); with `peak`, the most provisioned at once (what owning
    the same service would take: owned hardware does not scale in)."""
    rs = result.resolved
    window = end_s - start_s
    out: dict[str, float] = {}
    for d in rs.deployments:
        a = d.config.autoscaling
        log = result.autoscale.get(d.config.name)
        if a is None or log is None or d.pool.location != "cloud" or window <= 0:
            continue
        base = out.get(d.pool.name, float(d.pool.count))
        replicas = log.peak_provisioned(start_s, end_s) if peak else log.provisioned_replica_s(start_s, end_s) / window
        out[d.pool.name] = base - a.max_replicas * d.config.tp + replicas * d.config.tp
    return out


def autoscaling_summary(result: SimResult, req: pd.DataFrame, start_s: float, end_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in result.resolved.deployments:
        log = result.autoscale.get(d.config.name)
        if log is None:
            continue
        replica_s = log.provisioned_replica_s(start_s, end_s)
        samples = [log.provisioned_at(t) for t in np.linspace(start_s, end_s, 200, endpoint=False)]
        boots = [t for t, kind, _ in log.events if kind == "boot"]
        # requests that arrived while a replica was booting: the ramps
        mine = req[(req["deployment"] == d.config.name) & req["measured"]]
        in_ramp = np.zeros(len(mine), dtype=bool)
        arrivals = mine["arrival_s"].to_numpy()
        for t in boots:
            in_ramp |= (arrivals >= t) & (arrivals < t + log.delay_s)
        ramp = mine[in_ramp]
        out[d.config.name] = {
            "provisioned_replica_hours": replica_s / 3600.0,
            "provisioned_accelerator_hours": replica_s * d.config.tp / 3600.0,
            "replicas_mean": replica_s / (end_s - start_s) if end_s > start_s else None,
            "replicas_min": int(min(samples)) if samples else None,
            "replicas_max": int(max(samples)) if samples else None,
            "max_replicas": d.config.autoscaling.max_replicas if d.config.autoscaling else None,
            "scale_up_delay_s": log.delay_s,
            "scale_ups": len(boots) + sum(1 for _, k, _ in log.events if k == "reactivated"),
            "scale_downs": sum(1 for _, k, _ in log.events if k == "drain"),
            "requests_during_ramps": int(len(ramp)),
            "ttft_p99_during_ramps_s": float(np.percentile(ramp["ttft_s"].dropna(), 99)) if ramp["ttft_s"].notna().any() else None,
            "ttft_p99_s": float(np.percentile(mine["ttft_s"].dropna(), 99)) if mine["ttft_s"].notna().any() else None,
        }
    return out
