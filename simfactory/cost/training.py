"""What a training job costs: accelerator-hours it holds, priced at its pool's rate, per validated
checkpoint. Knows nothing of SimPy: it reads the replicated runs' outcomes."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from simfactory.metrics.ci import mean_ci


class RunOutcome(Protocol):
    wall_h: float
    failures: int
    checkpoints: int
    lost_h: float


def training_cost(runs: list[RunOutcome], accelerators: int, speed: float, usd_per_accel_hour: float,
                  validation_pass_rate: float) -> dict[str, Any]:
    """Cost = accelerator-hours held (accelerators x wall x the share of time the job has them) x rate.
    No runs (an idle-priority job on a pool with no idle time never finishes): every figure is None."""
    if not runs:
        keys = ("time_to_train_h", "time_to_train_h_ci95", "failures_mean", "lost_compute_h_mean", "checkpoints_mean",
                "validated_checkpoints_mean", "cost_usd", "cost_usd_ci95", "usd_per_validated_checkpoint")
        return {**dict.fromkeys(keys), "usd_per_accel_hour": usd_per_accel_hour, "never_finishes": True}
    wall = [r.wall_h for r in runs]
    usd = [accelerators * w * speed * usd_per_accel_hour for w in wall]
    ckpts = [r.checkpoints * validation_pass_rate for r in runs]
    wall_mean, wall_ci = mean_ci(wall)
    usd_mean, usd_ci = mean_ci(usd)
    valid = float(np.mean(ckpts)) if ckpts else 0.0
    return {
        "time_to_train_h": wall_mean,
        "time_to_train_h_ci95": wall_ci,
        "failures_mean": float(np.mean([r.failures for r in runs])) if runs else None,
        "lost_compute_h_mean": float(np.mean([r.lost_h for r in runs])) if runs else None,
        "checkpoints_mean": float(np.mean([r.checkpoints for r in runs])) if runs else None,
        "validated_checkpoints_mean": valid,
        "cost_usd": usd_mean,
        "cost_usd_ci95": usd_ci,
        "usd_per_validated_checkpoint": usd_mean / valid if valid else None,
        "usd_per_accel_hour": usd_per_accel_hour,
        "never_finishes": False,
    }
