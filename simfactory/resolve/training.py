"""Training jobs at resolve: speed from hardware (model + layout on the pool's SKU), the memory check, the
input-pipeline cap, and serving slowed where a job shares the replicas' accelerators.

A job that names a `model` gets its tokens/s from hardware/training.py; the resolved job is the configured one
with tokens_per_s set, so the failure/checkpoint simulation and the costs read it like a typed-in speed. A job
with neither a model nor an input-pipeline cap is left exactly as configured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from simfactory.config.limits import MAX_TRAINING_EVENTS
from simfactory.config.profile import HardwareProfile, ModelArch
from simfactory.config.scenario import Scenario
from simfactory.config.training import TrainingJob
from simfactory.errors import InputError
from simfactory.hardware.collectives import Links
from simfactory.hardware.step_time import StepLoad, StepTimeModel
from simfactory.hardware.training import Layout, MemoryPerDevice, StepBreakdown, memory_per_device, step_breakdown
from simfactory.resolve.resolved import ResolvedDeployment

DEFAULT_DP_OVERLAP_FRACTION = 0.5  # assumption: half the gradient traffic hides behind the backward


@dataclass(frozen=True)
class TrainingEstimate:
    """What hardware gives one job: its step, memory and the speed it trains at (after the input-pipeline cap)."""

    layout: Layout
    step: StepBreakdown
    memory: MemoryPerDevice
    hbm_bytes: float
    gemm_efficiency: float
    gemm_efficiency_source: str  # "profile (calibrated)", "profile (uncalibrated prior)" or "job mfu_prior"
    tokens_per_s: float

    def report(self) -> dict[str, Any]:
        """Flat figures for the training table (only hardware-derived jobs carry them)."""
        return {
            "tokens_per_s": self.tokens_per_s,
            "hardware_tokens_per_s": self.step.tokens_per_s,
            "step_s": self.step.step_s,
            **{f"step_{k}": v for k, v in self.step.parts.items()},
            "mfu": self.step.mfu * self.tokens_per_s / self.step.tokens_per_s,
            "gemm_efficiency": self.gemm_efficiency,
            "gemm_efficiency_source": self.gemm_efficiency_source,
            "layout": f"tp{self.layout.tp} pp{self.layout.pp} dp{self.layout.dp} v{self.layout.virtual_stages} "
                      f"zero{self.layout.zero_stage} mb{self.layout.microbatches}"
                      + (" ckpt" if self.layout.activation_checkpointing else ""),
            "memory_per_gpu_bytes": self.memory.total_bytes,
            "hbm_per_gpu_bytes": self.hbm_bytes,
        }


@dataclass(frozen=True)
class ScaledStepTime(StepTimeModel):
    """Another step-time model's steps stretched by a factor: serving beside a training job (serving_share). The
    host's launch of an eager prefill (the inner model's floor) is not stretched: a step with prompt tokens takes
    max(kernels x factor, floor), as the engine prices it when the launch overlaps the step before."""

    inner: StepTimeModel
    factor: float
    floorless: StepTimeModel = field(init=False, repr=False, compare=False)  # the inner model without its floor

    def __post_init__(self) -> None:
        object.__setattr__(self, "floorless", self.inner.without_prefill_floor())

    def step_s(self, load: StepLoad) -> float:
        if load.prefill_tokens and self.floorless is not self.inner:
            return max(self.floorless.step_s(load) * self.factor, self.inner.prefill_launch_s())
        return self.inner.step_s(load) * self.factor

    def breakdown_s(self, load: StepLoad) -> dict[str, float]:
        """The inner model's parts (its whole step where it has none) and what serving beside the training job
        adds; they add up to step_s (an eager prefill's launch wait what is left of its floor)."""
        floored = bool(load.prefill_tokens) and self.floorless is not self.inner
        model = self.floorless if floored else self.inner
        step = model.step_s(load)
        inner = getattr(model, "breakdown_s", None)
        parts = {**(inner(load) if inner is not None else {"step": step}), "beside_training": step * (self.factor - 1.0)}
        if floored:
            parts["launch_wait"] = max(0.0, self.inner.prefill_launch_s() - step * self.factor)
        return parts

    def decode_affine(self, decode_seqs: int, kv0: float, kv_step: float, n_max: int) -> tuple[float, float, int]:
        a_s, b_s, n = self.inner.decode_affine(decode_seqs, kv0, kv_step, n_max)
        return a_s * self.factor, b_s * self.factor, n

    def prefill_launch_s(self) -> float:
        return self.inner.prefill_launch_s()  # the host's launch is not what the training job slows

    def absorbed_extend(self) -> tuple[float, float, float]:
        s_per_pair, below, graph_max = self.inner.absorbed_extend()
        return s_per_pair * self.factor, below, graph_max

    def prefix_up_s_per_token(self) -> float:
        return self.inner.prefix_up_s_per_token() * self.factor

    def mla_extend(self, load: StepLoad) -> tuple[float, str]:
        extra_s, kind = self.inner.mla_extend(load)
        return extra_s * self.factor, kind

    def without_prefill_floor(self) -> StepTimeModel:
        return ScaledStepTime(self.inner.without_prefill_floor(), self.factor) if self.inner.prefill_launch_s() else self


def layout_of(job: TrainingJob) -> Layout:
    """The job's layout with defaults filled in (config validation has checked tp x pp x dp = accelerators)."""
    tp, pp = job.tp or 1, job.pp or 1
    dp = job.dp if job.dp is not None else job.accelerators // (tp * pp)
    assert job.seq_len_tokens is not None
    seqs_per_replica = job.batch_tokens / job.seq_len_tokens / dp
    return Layout(tp=tp, pp=pp, dp=dp, seq_len_tokens=job.seq_len_tokens, global_batch_tokens=job.batch_tokens,
                  microbatches=job.microbatches or max(1, int(seqs_per_replica)),
                  virtual_stages=job.virtual_stages or 1, zero_stage=job.zero_stage or 0,
                  activation_checkpointing=bool(job.activation_checkpointing),
                  tp_overlap_fraction=job.tp_overlap_fraction or 0.0,
                  dp_overlap_fraction=(job.dp_overlap_fraction if job.dp_overlap_fraction is not None
                                       else DEFAULT_DP_OVERLAP_FRACTION))


def estimate(job: TrainingJob, arch: ModelArch, profile: HardwareProfile, at: str, fname: str) -> TrainingEstimate:
    """Step time and memory of a hardware-derived job on its pool's SKU; InputError when the layout cannot run."""
    lay = layout_of(job)
    precision = job.precision or "bf16"
    spec = profile.spec
    if lay.pp > arch.layers:
        raise InputError(fname, f"{at}.pp", f"{lay.pp} pipeline stages exceed {arch.layers} layers of {arch.id}")
    if arch.heads % lay.tp:
        raise InputError(fname, f"{at}.tp", f"{arch.id}'s {arch.heads} attention heads do not divide over tp {lay.tp}")
    if lay.tp > spec.scale_up_domain_devices:
        raise InputError(fname, f"{at}.tp", f"tp {lay.tp} exceeds {profile.sku}'s scale-up domain "
                         f"({spec.scale_up_domain_devices} devices): tensor parallelism stays on the scale-up link")
    if precision == "fp8" and spec.fp8_tflops is None:
        raise InputError(fname, f"{at}.precision", f"{profile.sku} has no FP8 tensor cores (spec.fp8_tflops)")
    if job.mfu_prior is not None:
        eff, source = job.mfu_prior, "job mfu_prior"
    else:
        prior = profile.training.gemm_efficiency(precision) if profile.training is not None else None
        if prior is None:
            raise InputError(fname, f"{at}.mfu_prior", f"profile {profile.sku!r} has no {precision} training prior "
                             "(training.*_gemm_efficiency); set mfu_prior on the job")
        assert profile.training is not None
        eff = prior
        source = "profile (calibrated)" if profile.training.calibrated else "profile (uncalibrated prior)"
    try:
        links = Links.of(spec) if lay.tp > 1 or lay.dp > 1 else None
        if links is not None and lay.devices > links.domain_devices:
            links._out()
    except ValueError as e:
        raise InputError(fname, f"{at}.accelerators", f"{profile.sku}: {e}") from None
    step = step_breakdown(arch, spec, precision, lay, eff, links)
    mem = memory_per_device(arch, lay)
    hbm = spec.device_bytes
    if mem.total_bytes > hbm:
        raise InputError(fname, at, f"job {job.name!r} needs {mem.total_bytes / 1e9:.1f} GB per GPU (weights "
                         f"{mem.weights_bytes / 1e9:.1f}, gradients {mem.grads_bytes / 1e9:.1f}, optimizer "
                         f"{mem.optimizer_bytes / 1e9:.1f}, activations {mem.activations_bytes / 1e9:.1f}) but "
                         f"{profile.sku} has {hbm / 1e9:.1f} GB: raise tp / pp / zero_stage, set "
                         "activation_checkpointing, or use fewer microbatch tokens")
    speed = step.tokens_per_s
    if job.input_pipeline_tokens_per_s is not None:
        speed = min(speed, job.input_pipeline_tokens_per_s)
    return TrainingEstimate(lay, step, mem, hbm, eff, source, speed)


def resolve_training(scenario: Scenario, models: dict[str, ModelArch], profiles: dict[str, HardwareProfile],
                     fname: str, errors: list[InputError]) -> tuple[list[TrainingJob], dict[str, TrainingEstimate]]:
    """The jobs as the simulation runs them (tokens_per_s derived or capped) and the hardware estimates."""
    jobs: list[TrainingJob] = []
    estimates: dict[str, TrainingEstimate] = {}
    for i, job in enumerate(scenario.training):
        at = f"training[{i}]"
        if job.model is None:
            if job.input_pipeline_tokens_per_s is not None and job.tokens_per_s is not None:
                job = job.model_copy(update={"tokens_per_s": min(job.tokens_per_s, job.input_pipeline_tokens_per_s)})
            jobs.append(job)
            continue
        if job.model not in models:
            errors.append(InputError(fname, f"{at}.model", f"unknown model {job.model!r} (known: "
                                     f"{', '.join(sorted(models))})"))
            continue
        profile = profiles.get(job.pool)
        if profile is None:
            continue  # unknown pool or missing profile: reported by check_training / pool_profiles
        try:
            est = estimate(job, models[job.model], profile, at, fname)
        except InputError as e:
            errors.append(e)
            continue
        update: dict[str, object] = {"tokens_per_s": est.tokens_per_s}
        if job.checkpoint_every_steps is not None:  # steps at the speed it trains at: hours of work between them
            update["checkpoint_interval_h"] = job.checkpoint_every_steps * job.batch_tokens / est.tokens_per_s / 3600.0
        resolved = job.model_copy(update=update)
        events = resolved.expected_events()
        if not events <= MAX_TRAINING_EVENTS:
            errors.append(InputError(fname, at, f"~{events:.3g} checkpoint segments and failures to simulate at the "
                                     f"derived {est.tokens_per_s:.4g} tokens/s, more than the "
                                     f"{MAX_TRAINING_EVENTS:.0e} one run takes: check node_mtbf_h, "
                                     "checkpoint_interval_h and total_tokens"))
            continue
        jobs.append(resolved)
        estimates[job.name] = est
    return jobs, estimates


def serving_slowdown(scenario: Scenario, deployments: list[ResolvedDeployment]) -> dict[str, float]:
    """Pool -> factor its serving steps are stretched by: a job with serving_share s covering c of the pool's
    serving accelerators stretches them by 1 / (1 - c (1 - s)) on average (the job's share spread evenly over
    the replicas; several such jobs on one pool add up, to at most 99%: serving_share >= 0.01 bounds one job
    alike). Pools without such a job are absent."""
    serving: dict[str, int] = {}
    for d in deployments:
        serving[d.config.pool] = serving.get(d.config.pool, 0) + d.config.replicas * d.config.tp * d.config.pp
    taken: dict[str, float] = {}
    for job in scenario.training:
        if job.serving_share is not None and job.serving_share < 1 and serving.get(job.pool):
            cover = min(1.0, job.accelerators / serving[job.pool])
            taken[job.pool] = min(0.99, taken.get(job.pool, 0.0) + cover * (1.0 - job.serving_share))
    return {pool: 1.0 / (1.0 - t) for pool, t in taken.items()}


def with_serving_slowdown(deployments: list[ResolvedDeployment],
                          factors: dict[str, float]) -> list[ResolvedDeployment]:
    """The deployments with their step times stretched where a training job shares their accelerators."""
    if not factors:
        return deployments
    return [dataclasses.replace(d, step_time=ScaledStepTime(d.step_time, factors[d.config.pool]))
            if d.config.pool in factors else d for d in deployments]
