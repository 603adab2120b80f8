"""Training jobs with node failures and checkpoints: a SimPy process per job run, replicated.

The job computes in segments of `interval` hours, writing a checkpoint after each (work stops for the
checkpoint cost). The job fails at rate nodes / node_MTBF (exponential, so a fresh draw per attempt is
exact); a failure loses the work since the last checkpoint and costs the restart time. A job on idle
capacity progresses at the idle fraction of its accelerators.

Young (1974): the interval minimizing expected time is about sqrt(2 x checkpoint cost x MTBF);
Daly (2006) refines it to sqrt(2 delta M) - delta. Both are reported beside the simulated optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simpy

from simfactory.config.limits import MAX_TRAINING_EVENTS
from simfactory.config.training import TrainingJob
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.streams import RandomStreams


def job_mtbf_h(job: TrainingJob) -> float:
    """Any of the job's nodes failing stops the job: MTBF / nodes (whole nodes)."""
    return job.node_mtbf_h / math.ceil(job.nodes)


def young_interval_h(checkpoint_cost_h: float, mtbf_h: float) -> float:
    """Young's first-order optimum: sqrt(2 delta M)."""
    return math.sqrt(2.0 * checkpoint_cost_h * mtbf_h)


def daly_interval_h(checkpoint_cost_h: float, mtbf_h: float) -> float:
    """Daly's first-order refinement: sqrt(2 delta M) - delta (valid for delta < 2M; else M)."""
    if checkpoint_cost_h >= 2.0 * mtbf_h:
        return mtbf_h
    return math.sqrt(2.0 * checkpoint_cost_h * mtbf_h) - checkpoint_cost_h


def daly_expected_wall_h(work_h: float, interval_h: float, checkpoint_cost_h: float, restart_h: float, mtbf_h: float) -> float:
    """Daly (2006) expected wall time with exponential failures and failure-free restarts:
    M e^(R/M) (e^((tau+delta)/M) - 1) W / tau."""
    m = mtbf_h
    return m * math.exp(restart_h / m) * math.expm1((interval_h + checkpoint_cost_h) / m) * work_h / interval_h


@dataclass(frozen=True)
class TrainingRun:
    wall_h: float
    failures: int
    checkpoints: int
    lost_h: float


def _job(env: simpy.Environment, rng: np.random.Generator, work_h: float, interval_h: float, ckpt_h: float,
         restart_h: float, mtbf_h: float, speed: float, out: list[TrainingRun]):
    done_h = 0.0
    failures = checkpoints = 0
    lost_h = 0.0
    while done_h < work_h - 1e-12:
        segment_h = min(interval_h, work_h - done_h)
        need_h = (segment_h + ckpt_h) / speed
        to_failure_h = rng.exponential(mtbf_h)
        if to_failure_h >= need_h:
            yield env.timeout(need_h)
            done_h += segment_h
            checkpoints += 1
        else:
            yield env.timeout(to_failure_h + restart_h)
            failures += 1
            lost_h += to_failure_h
    out.append(TrainingRun(env.now, failures, checkpoints, lost_h))


def progress_fraction(job: TrainingJob, idle_fraction: float) -> float:
    """Share of full speed the job trains at: dedicated 1; idle priority the serving accelerators' idle share;
    beside serving (serving_share s < 1) the idle share plus (1 - s) of the busy share (weighted sharing)."""
    if job.priority == "dedicated":
        return 1.0
    if job.serving_share is None or job.serving_share >= 1:
        return idle_fraction
    return idle_fraction + (1.0 - idle_fraction) * (1.0 - job.serving_share)


def simulate_job(job: TrainingJob, seed: int, idle_fraction: float = 1.0, interval_h: float | None = None,
                 replications: int | None = None) -> list[TrainingRun]:
    """Replicated runs of one job (each its own SimPy environment); `interval_h` overrides the job's."""
    speed = progress_fraction(job, idle_fraction)
    if speed <= 0 or job.expected_events(speed) > MAX_TRAINING_EVENTS:
        # no progress: a job on idle capacity that is (almost) never idle would fail between every pair of
        # checkpoints forever (resolve bounds the dedicated case, whose speed is known before the run)
        return []
    mtbf = job_mtbf_h(job)
    ckpt_h = job.checkpoint_cost_s / 3600.0
    tau = interval_h if interval_h is not None else chosen_interval_h(job)
    rng = RandomStreams(seed).get(f"training.{job.name}.{tau:.9g}")
    out: list[TrainingRun] = []
    for _ in range(replications or job.replications):
        env = FloatEnvironment()
        env.process(_job(env, rng, job.compute_hours, tau, ckpt_h, job.restart_s / 3600.0, mtbf, speed, out))
        env.run()
    return out


def chosen_interval_h(job: TrainingJob) -> float:
    """The job's interval; `optimal` is Young's (with free checkpoints: a hundredth of the MTBF)."""
    if job.checkpoint_interval_h != "optimal":
        return float(job.checkpoint_interval_h)
    if job.checkpoint_cost_s == 0:
        return min(job.compute_hours, job_mtbf_h(job) / 100.0)
    return young_interval_h(job.checkpoint_cost_s / 3600.0, job_mtbf_h(job))
