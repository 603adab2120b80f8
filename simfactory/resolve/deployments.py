"""Deployments: the engine preset's defaults, the pool and model they name, whether the model fits the devices
under the engine's memory rule, KV capacity, the step-time model, and the parallelism and reservation rules
each deployment has to follow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from simfactory.config.limits import MAX_KV_OVERCOMMIT
from simfactory.config.profile import UNQUANTIZED_DTYPES, EnginePreset, HardwareProfile, ModelArch
from simfactory.config.scenario import Deployment, Pool, Scenario, kv_dtype_for
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.kernels import NO_OLDER_MOE_CURVE, NO_TRITON_CURVE
from simfactory.hardware.memory import MemoryPlan, plan_memory
from simfactory.hardware.speculative import SpeculativeModel, mtp_draft_fraction
from simfactory.hardware.step_time import RooflineModel, StepTimeModel
from simfactory.resolve.files import Lookup
from simfactory.resolve.resolved import ResolvedDeployment
from simfactory.resolve.step_time import (
    MEASURED_KERNELS_LABEL, ROOFLINE_DEFAULT_LABEL, choose_step_time, default_factors, entries_of_other_layouts,
    with_measured_power,
)


def resolve_deployments(
    scenario: Scenario, lk: Lookup, profiles: dict[str, HardwareProfile], errors: list[InputError], warnings: list[str]
) -> tuple[list[ResolvedDeployment], dict[str, int]]:
    """The deployments that resolve, and pool -> accelerators the deployments ask of it at their most replicas.
    A measured power curve replaces its pool's profile in `profiles` (the TCO energy model reads those)."""
    pools = {p.name: p for p in scenario.pools}
    used: dict[str, int] = {}
    deployments: list[ResolvedDeployment] = []
    for i, d in enumerate(scenario.deployments):
        rd = _resolve_deployment(scenario, i, d, len(deployments), lk, pools, profiles, used, errors, warnings)
        if rd is not None:
            deployments.append(rd)
    return deployments, used


def _resolve_deployment(
    scenario: Scenario, i: int, d: Deployment, index: int, lk: Lookup, pools: dict[str, Pool],
    profiles: dict[str, HardwareProfile], used: dict[str, int], errors: list[InputError], warnings: list[str],
    at: str | None = None, prefill_role: bool = False,
) -> ResolvedDeployment | None:
    """deployments[i] as resolved deployment number `index` (its prefill replicas as one more resolved deployment
    when disaggregated, `at` naming where their shape comes from, prefill_role set); None once an error about it
    is appended."""
    fname = lk.fname
    at = at or f"deployments[{i}]"
    raw = d  # as the scenario gives it: a prefill pool of another device takes that device's defaults
    with_preset = _with_preset(d, at, lk, errors, profiles.get(d.pool))
    if with_preset is None:
        return None
    d, preset = with_preset
    if d.pool not in pools:
        errors.append(InputError(fname, f"{at}.pool", f"unknown pool {d.pool!r} (pools: {sorted(pools)})"))
        return None
    peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
    used[d.pool] = used.get(d.pool, 0) + peak * d.tp * d.pp
    profile = profiles.get(d.pool)
    arch = _model_arch(d, at, profile, lk, errors)
    if arch is None or profile is None:
        return None
    kv_dtype = kv_dtype_for(d.dtype, d.kv_dtype, arch)
    if not _fp4_ok(d, at, arch, profile, kv_dtype, fname, errors):
        return None
    spec_cfg = d.speculative
    draft_name = spec_cfg.draft_model if spec_cfg is not None else None
    if draft_name is not None and draft_name not in lk.models:
        errors.append(InputError(fname, f"{at}.speculative.draft_model",
                                 f"unknown model {draft_name!r} (known: {', '.join(sorted(lk.models))})"))
        return None
    draft_arch = lk.models[draft_name] if draft_name is not None else None
    if spec_cfg is not None and spec_cfg.mtp and not arch.mtp_modules:
        errors.append(InputError(fname, f"{at}.speculative.mtp",
                                 f"{d.model} ships no multi-token-prediction module (models.yaml mtp_modules is 0); "
                                 "use draft_model or draft_step_fraction"))
        return None
    mem = _fit_memory(d, at, arch, profile, preset, kv_dtype, draft_arch, fname, errors)
    if mem is None:
        return None
    kv = _kv_capacity(d, at, mem, profile, fname, errors, warnings)
    if kv is None:
        return None
    kv_tokens, kv_blocks = kv
    max_model_len = d.max_model_len or arch.max_context_tokens
    warnings.extend(_short_pool_warning(d, at, max_model_len, kv_tokens, fname))
    try:
        step_time, label = choose_step_time(d, profile, arch, lk.profile_dirs, kv_dtype, preset, at, fname,
                                            prefill_role, models=lk.models)
    except InputErrors as e:
        errors.extend(e.errors)
        return None
    profiles[d.pool] = with_measured_power(d, profiles[d.pool], lk.profile_dirs)
    warnings.extend(_step_time_warnings(d, at, fname, profile, arch, label, lk.profile_dirs))
    warnings.extend(_preset_warnings(d, at, fname, preset, kv_dtype))
    if (d.expert_imbalance is not None or d.eplb) and not isinstance(step_time, RooflineModel):
        warnings.append(f"{fname}: {at}: expert_imbalance and eplb shape the roofline only; the step time here is "
                        f"{label.split(':')[0]}, whose MoE timings carry their own measured routing skew")
    if not _parallelism_ok(scenario, d, at, profile, arch, step_time, fname, errors):
        return None
    if spec_cfg is not None:
        step_time, label = _speculative(d, profile, arch, kv_dtype, draft_arch, step_time, label)
    rd = ResolvedDeployment(
        index=index, config=d, pool=pools[d.pool], profile=profile, arch=arch, step_time=step_time,
        step_time_source=label, memory=mem, kv_capacity_tokens=kv_tokens, kv_blocks=kv_blocks,
        max_model_len=max_model_len, engine_preset=preset,
    )
    if d.disaggregated is None:
        return rd
    prefill = _resolve_prefill(scenario, i, raw, index, lk, pools, profiles, used, errors, warnings)
    link = _kv_link(d, rd, prefill, f"{at}.disaggregated", fname, errors) if prefill is not None else None
    if prefill is None or link is None:
        return None
    return replace(rd, prefill=prefill, kv_link_bytes_per_s=link[0], kv_link_latency_s=link[1])


def _resolve_prefill(
    scenario: Scenario, i: int, d: Deployment, index: int, lk: Lookup, pools: dict[str, Pool],
    profiles: dict[str, HardwareProfile], used: dict[str, int], errors: list[InputError], warnings: list[str],
) -> ResolvedDeployment | None:
    """A disaggregated deployment's prefill replicas, resolved like a deployment of their own shape (the
    deployment's, with what disaggregated.prefill sets) so memory, KV capacity and step time follow their devices."""
    assert d.disaggregated is not None
    at = f"deployments[{i}].disaggregated.prefill"
    shape = d.disaggregated.prefill
    update: dict[str, object] = {"replicas": d.disaggregated.prefill_replicas, "disaggregated": None,
                                 "autoscaling": None, "reserved": []}
    if shape is not None:
        update.update(shape.model_dump(exclude_none=True))
        if shape.ep is not None or shape.tp is not None:
            update["expert_parallel"] = False  # ep says it (or the deployment's, below)
            if shape.ep is None and d.ep_degree > 1:
                update["ep"] = shape.tp if d.expert_parallel else d.ep
    pd = d.model_copy(update=update)
    try:
        pd._parallel_degrees()  # model_copy does not validate
    except ValueError as e:
        errors.append(InputError(lk.fname, at, str(e)))
        return None
    return _resolve_deployment(scenario, i, pd, index, lk, pools, profiles, used, errors, warnings, at,
                               prefill_role=True)


def _kv_link(d: Deployment, decode: ResolvedDeployment, prefill: ResolvedDeployment, at: str, fname: str,
             errors: list[InputError]) -> tuple[float, float] | None:
    """(bytes/s, latency) of the KV transfer from a prefill to a decode replica: the scenario's kv_link_gb_s, else
    the placement's link (disaggregated's docstring in config/scenario.py); None with an error when it has none."""
    g = d.disaggregated
    assert g is not None
    if g.kv_link_gb_s is not None:
        return g.kv_link_gb_s * 1e9, g.kv_link_latency_s or 0.0
    pc, dspec, pspec = prefill.config, decode.profile.spec, prefill.profile.spec
    prefill_devices, decode_devices = pc.tp * pc.pp, d.tp * d.pp
    peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
    together = g.prefill_replicas * prefill_devices + peak * decode_devices
    lanes = min(prefill_devices, decode_devices)
    if pc.pool == d.pool and together <= dspec.scale_up_domain_devices and dspec.interconnect_gb_s is not None:
        return dspec.interconnect_gb_s * 1e9 * lanes, g.kv_link_latency_s if g.kv_link_latency_s is not None \
            else dspec.interconnect_latency_s
    if dspec.scale_out_gb_s is None or pspec.scale_out_gb_s is None:
        errors.append(InputError(fname, f"{at}.kv_link_gb_s",
                                 f"the KV cache crosses the scale-out network ({together} devices over "
                                 f"{'two pools' if pc.pool != d.pool else 'more than one scale-up domain'}) and "
                                 f"{(decode if dspec.scale_out_gb_s is None else prefill).profile.sku} names no "
                                 "spec.scale_out_gb_s: give kv_link_gb_s"))
        return None
    latency = g.kv_link_latency_s if g.kv_link_latency_s is not None else max(dspec.scale_out_latency_s,
                                                                              pspec.scale_out_latency_s)
    return min(dspec.scale_out_gb_s, pspec.scale_out_gb_s) * 1e9 * lanes, latency


def _fp4_ok(d: Deployment, at: str, arch: ModelArch, profile: HardwareProfile, kv_dtype: str, fname: str,
            errors: list[InputError]) -> bool:
    """fp4 weights (or KV cache) need FP4 tensor cores: a SKU whose spec has no fp4_tflops is refused, naming its rates;
    except the weights of a weight-only FP4 checkpoint (models.yaml fp4_weight_only: gpt-oss), which run as W4A16."""
    if profile.spec.fp4_tflops:
        return True
    needs_fp4_cores = d.dtype == "fp4" and not arch.weight_only_fp4(d.dtype)
    field = "dtype" if needs_fp4_cores else "kv_dtype" if kv_dtype == "fp4" else None
    if field is None:
        return True
    spec = profile.spec
    rates = f"bf16 {spec.bf16_tflops:.0f}" + (f", fp8 {spec.fp8_tflops:.0f}" if spec.fp8_tflops else "")
    alt = "fp8" if spec.fp8_tflops else "bf16"
    errors.append(InputError(fname, f"{at}.{field}",
                             f"{profile.sku} has no FP4 tensor cores (spec.fp4_tflops not set; {rates} TFLOPS): "
                             f"use {alt} or a SKU with FP4"))
    return False


def _step_time_warnings(d: Deployment, at: str, fname: str, profile: HardwareProfile, arch: ModelArch, label: str,
                        dirs: list[Path]) -> list[str]:
    """What a user should know about where a deployment's step times come from: calibrated entries that exist only
    for other parallel layouts, and a fall-back to the SKU's roofline."""
    warnings: list[str] = []
    others = entries_of_other_layouts(d, profile, dirs) if d.step_time_source == "auto" else []
    if others:
        warnings.append(f"{fname}: {at}: calibrated step times for {d.model} on {d.engine} TP{d.tp} {d.dtype} exist only "
                        f"for other parallel layouts ({'; '.join(others)}), not this one (dp_attention "
                        f"{d.dp_attention}, ep {d.ep_degree}): an entry prices only the layout it was measured at")
    if label.startswith(MEASURED_KERNELS_LABEL) and NO_TRITON_CURVE in label:  # the prior; a fit corrects for it
        warnings.append(f"{fname}: {at}: {d.engine} runs {d.model}'s BF16 experts on Triton fused_moe, which "
                        f"{profile.sku}'s kernel tables hold no timings of for this layout: another MoE kernel's "
                        "rows stand in (the label names it), faster than that one, so step times are optimistic "
                        "(10-14% in time per output token on SGLang 0.5.6's Qwen3-235B-A22B runs on B200 before its "
                        "Triton curve; README, Fidelity); calibrate, or use the engine release whose kernel the "
                        "tables time (sglang-0.5.8 or later)")
    if label.startswith(MEASURED_KERNELS_LABEL) and NO_OLDER_MOE_CURVE in label:
        warnings.append(f"{fname}: {at}: {d.engine} runs {d.model}'s experts on an older release's MoE kernels, which "
                        f"{profile.sku}'s kernel tables hold no timings of for this model and dtype: the tables' "
                        "newer release's rows stand in (the label says so), likely faster than the engine's (that "
                        "older release timed DeepSeek-R1's experts 10-44% slower on an H200), so step times may be "
                        "optimistic; calibrate, or use the engine release the tables time")
    if d.step_time_source == "auto" and label.startswith(ROOFLINE_DEFAULT_LABEL):
        moe = (" For MoE models it is far more so: published runs of Qwen3-235B-A22B and DeepSeek-R1 on 8 GPUs "
               "are 60-150% optimistic on it (decode steps about half as long as measured).") \
            if arch.num_experts else ""
        warnings.append(f"{fname}: {at}: step times come from {profile.sku}'s roofline (no measured kernels cover "
                        f"{d.model} on {d.engine} TP{d.tp} {d.dtype} weights / {kv_dtype_for(d.dtype, d.kv_dtype, arch)} KV, "
                        "and no calibrated profile does): a bound scaled "
                        "by assumed efficiencies, optimistic on most fidelity suites that run on it (README, "
                        f"Fidelity); calibrate it (simfactory calibrate) before sizing capacity on it.{moe}")
    return warnings


def _preset_warnings(d: Deployment, at: str, fname: str, preset: EnginePreset, kv_dtype: str) -> list[str]:
    """What the deployment asks of its engine preset that the engine would do otherwise."""
    warnings = []
    if preset.kv_cache_auto == "activations" and d.kv_dtype is None and kv_dtype not in UNQUANTIZED_DTYPES:
        warnings.append(f"{fname}: {at}: the KV cache is simulated in {kv_dtype}, the default for {d.dtype} weights; "
                        f"{d.engine} keeps it in BF16, half the tokens of an FP8 cache, unless started with one (vLLM: "
                        "--kv-cache-dtype fp8): set kv_dtype (bf16 for a server started without one, fp8 to say it was)")
    if d.dp_attention > 1 and not preset.attention_dp:
        warnings.append(f"{fname}: {at}.dp_attention: {d.engine} has no attention data parallelism (engines.yaml "
                        f"attention_dp false); simulated as an engine with it would run, which this release cannot")
    return warnings


def _with_preset(d: Deployment, at: str, lk: Lookup, errors: list[InputError],
                 profile: HardwareProfile | None = None) -> tuple[Deployment, EnginePreset] | None:
    """The deployment with its engine preset's defaults for what the scenario leaves out (the token budget by its
    pool's device memory where the engine sizes it so), and the preset."""
    if d.engine not in lk.engines:
        errors.append(InputError(lk.fname, f"{at}.engine",
                                 f"unknown engine {d.engine!r} (engines: {', '.join(sorted(lk.engines))})"))
        return None
    preset = lk.engines[d.engine]
    defaults = preset.defaults.model_dump(exclude_none=True, exclude={"max_num_batched_tokens_by_memory",
                                                                      "first_tier_skus", "per_attention_rank",
                                                                      "block_size", "block_size_rules"})
    device = (profile.spec.device_bytes, profile.sku) if profile is not None else (None, None)
    arch = lk.models.get(d.model)  # an unknown model is refused later, where its arch is looked up
    block = preset.defaults.kv_block_size(device[1], arch is not None and arch.is_mla)
    if block is not None:
        defaults["block_size"] = block
    budget, seqs = preset.defaults.token_budget(*device), preset.defaults.batch_size(*device)
    if budget is not None:
        defaults["max_num_batched_tokens"] = budget
    if seqs is not None:
        defaults["max_num_seqs"] = seqs
    for name in preset.defaults.per_attention_rank:  # each rank's limit: the replica's is their sum
        if name in defaults:
            defaults[name] *= d.dp_attention
    unset = {k: v for k, v in defaults.items() if k not in d.model_fields_set}
    held = preset.holds_seqs_to_budget(unset.get("schedule", d.schedule))  # the schedule it will run
    if "max_num_seqs" in unset and held:  # vLLM: min(default, max_num_batched_tokens)
        unset["max_num_seqs"] = min(unset["max_num_seqs"], unset.get("max_num_batched_tokens", d.max_num_batched_tokens))
    d = d.model_copy(update=unset)  # the preset's defaults for what the scenario leaves out
    if d.max_num_batched_tokens < d.max_num_seqs and held:
        field, whose = (("max_num_seqs", f" (the {d.engine} preset's on this device; set max_num_batched_tokens)")
                        if "max_num_batched_tokens" in unset else ("max_num_batched_tokens", ""))
        errors.append(InputError(lk.fname, f"{at}.{field}",
                                 f"max_num_batched_tokens ({d.max_num_batched_tokens}{whose}) must be >= max_num_seqs "
                                 f"({d.max_num_seqs}): {d.engine} with schedule {d.schedule} counts a step's decodes in "
                                 "its token budget, so every running sequence can decode each step"))
        return None
    # each attention data-parallel rank schedules its own batch: the engine's build limit is per rank
    if preset.max_num_seqs_built is not None and d.max_num_seqs > preset.max_num_seqs_built * d.dp_attention:
        per_rank = f" per attention rank (max_num_seqs / dp_attention {d.dp_attention})" if d.dp_attention > 1 else ""
        errors.append(InputError(lk.fname, f"{at}.max_num_seqs",
                                 f"{d.engine} engines are built for at most {preset.max_num_seqs_built} sequences"
                                 f"{per_rank}"))
        return None
    return d, preset


def _model_arch(
    d: Deployment, at: str, profile: HardwareProfile | None, lk: Lookup, errors: list[InputError]
) -> ModelArch | None:
    """The deployment's model, known to the catalogue and (with a profile) supported by its pool's SKU."""
    if d.model not in lk.models:
        errors.append(
            InputError(lk.fname, f"{at}.model", f"unknown model {d.model!r} (known: {', '.join(sorted(lk.models))})")
        )
        return None
    if profile is None:  # the pool's profile is missing: that error is already there
        return None
    if profile.supported_models is not None and d.model not in profile.supported_models:
        errors.append(
            InputError(
                lk.fname,
                f"{at}.model",
                f"{profile.sku} cannot run {d.model!r} (supported: {', '.join(profile.supported_models)})",
            )
        )
        return None
    return lk.models[d.model]


def _fit_memory(
    d: Deployment, at: str, arch: ModelArch, profile: HardwareProfile, preset: EnginePreset, kv_dtype: str,
    draft_arch: ModelArch | None, fname: str, errors: list[InputError],
) -> MemoryPlan | None:
    """The device memory plan (weights, reserve, KV) of one replica; None when the model does not fit."""
    extra = draft_arch.weight_bytes(d.dtype) if draft_arch is not None else 0.0
    if d.speculative is not None and d.speculative.mtp:  # the MTP module: about one more decoder layer of weights
        extra += arch.mtp_modules * arch.weight_bytes(d.dtype) / arch.layers
    # the engine's own fraction unless the scenario sets gpu_memory_utilization (hardware/memory.py)
    mem = plan_memory(arch, profile.spec, d.dtype, kv_dtype, d.tp * d.pp,
                      d.gpu_memory_utilization if "gpu_memory_utilization" in d.model_fields_set else None, extra,
                      rule=preset.memory, max_num_batched_tokens=d.max_num_batched_tokens,
                      max_num_seqs=d.max_num_seqs, dp_attention=d.dp_attention)
    if not mem.fits:
        errors.append(
            InputError(
                fname,
                f"{at}",
                f"{d.model} in {d.dtype} does not fit {d.tp * d.pp} x {profile.sku} under {d.engine}'s memory rule: "
                f"needs {mem.needed_bytes_per_device / 2**30:.1f} GiB per device for weights, activations"
                f"{'' if mem.non_torch_before_fraction else ' and non-torch memory'}, "
                f"{mem.usable_bytes_per_device / 2**30:.1f} GiB usable ({mem.fraction:.0%} of the "
                f"{mem.engine_total_bytes / 2**30:.1f} GiB an engine sees"
                f"{' less its non-torch memory' if mem.non_torch_before_fraction else ''})",
            )
        )
        return None
    return mem


def _kv_capacity(
    d: Deployment, at: str, mem: MemoryPlan, profile: HardwareProfile, fname: str, errors: list[InputError],
    warnings: list[str],
) -> tuple[int, int] | None:
    """(KV tokens per replica, KV blocks per micro-batch engine): the memory plan's, or kv_cache_tokens when set
    (refused past MAX_KV_OVERCOMMIT x the devices' memory, a warning past what they leave for KV)."""
    kv_tokens = d.kv_cache_tokens if d.kv_cache_tokens is not None else mem.kv_capacity_tokens
    if d.kv_cache_tokens is not None:
        devices = d.tp * d.pp
        kv_bytes = d.kv_cache_tokens * mem.kv_bytes_per_token
        if kv_bytes > MAX_KV_OVERCOMMIT * mem.device_bytes * devices:
            errors.append(InputError(fname, f"{at}.kv_cache_tokens",
                                     f"{d.kv_cache_tokens:,} tokens of {d.model} KV take {kv_bytes / 1e9:.3g} GB, more "
                                     f"than {MAX_KV_OVERCOMMIT:g}x the {mem.device_bytes * devices / 1e9:g} GB of its "
                                     f"{devices} x {profile.sku}; the devices hold ~{mem.kv_capacity_tokens:,} tokens"))
            return None
        if kv_bytes > mem.kv_bytes_per_device * devices:
            warnings.append(f"{fname}: {at}.kv_cache_tokens: {d.kv_cache_tokens:,} tokens of KV take "
                            f"{kv_bytes / 1e9:.3g} GB but {devices} x {profile.sku} leave "
                            f"{max(mem.kv_bytes_per_device, 0) * devices / 1e9:.3g} GB for it (~{mem.kv_capacity_tokens:,} "
                            "tokens): the run assumes memory the devices do not have")
    kv_blocks = kv_tokens // d.pp // d.block_size  # per micro-batch engine: pp share the replica's KV
    if kv_blocks < 1:
        errors.append(InputError(fname, f"{at}.kv_cache_tokens", f"smaller than one block ({d.block_size} tokens)"))
        return None
    return kv_tokens, kv_blocks


def _short_pool_warning(d: Deployment, at: str, max_len: int, kv_tokens: int, fname: str) -> list[str]:
    """A KV pool that cannot hold one request of max_len (the deployment's max_model_len, else the model's context):
    vLLM refuses to start such a server (check_enough_kv_cache_memory, vllm/v1/core/kv_cache_utils.py), SGLang and
    TensorRT-LLM start but cannot serve such a request; the run goes on, its longest requests refused."""
    if kv_tokens >= max_len:
        return []
    whose = "" if d.max_model_len else " (the model's context: max_model_len is not set)"
    return [f"{fname}: {at}: its KV pool holds {kv_tokens:,} tokens, less than one request of max_model_len, "
            f"{max_len:,}{whose}. vLLM refuses to start such a server (set max_model_len to at most {kv_tokens:,}, or "
            "give it more memory); SGLang and TensorRT-LLM start, but a request longer than the pool is refused"]


def _parallelism_ok(
    scenario: Scenario, d: Deployment, at: str, profile: HardwareProfile, arch: ModelArch, step_time: StepTimeModel,
    fname: str, errors: list[InputError],
) -> bool:
    """Tensor/pipeline parallelism, disaggregation and expert parallelism only where they are modelled."""
    if d.tp * d.pp > 1 and profile.spec.interconnect_gb_s is None and isinstance(step_time, RooflineModel):
        errors.append(InputError(fname, f"{at}.tp", f"{profile.sku} has no interconnect bandwidth for tp x pp > 1"))
        return False
    if d.disaggregated is not None and (d.pp > 1 or d.reserved or scenario.routing.load_balancer == "pull"):
        errors.append(InputError(fname, f"{at}.disaggregated",
                                 "disaggregation is modelled without pipeline parallelism, reservations or pull balancing"))
        return False
    if (d.expert_parallel or d.ep_degree > 1) and not arch.is_moe:
        field = "expert_parallel" if d.expert_parallel else "ep"
        errors.append(InputError(fname, f"{at}.{field}", f"{d.model} is not a mixture-of-experts model"))
        return False
    if d.expert_imbalance is not None and d.ep_degree == 1:
        errors.append(InputError(fname, f"{at}.expert_imbalance", "applies to expert parallelism (ep > 1) only"))
        return False
    spec = profile.spec
    devices = d.tp * d.pp
    if devices > spec.scale_up_domain_devices and spec.scale_out_gb_s is None and isinstance(step_time, RooflineModel):
        errors.append(InputError(fname, f"{at}.tp",
                                 f"a replica of {devices} x {profile.sku} spans "
                                 f"{-(-devices // spec.scale_up_domain_devices)} scale-up domains of "
                                 f"{spec.scale_up_domain_devices}, and the profile names no scale-out network "
                                 "(spec.scale_out_gb_s)"))
        return False
    return True


def _speculative(
    d: Deployment, profile: HardwareProfile, arch: ModelArch, kv_dtype: str, draft_arch: ModelArch | None,
    step_time: StepTimeModel, label: str,
) -> tuple[SpeculativeModel, str]:
    """The target's step time wrapped in speculative decoding (with the draft model's passes, when one is named)."""
    spec_cfg = d.speculative
    assert spec_cfg is not None
    draft = None
    if draft_arch is not None:
        # the draft runs inside the same engine iteration: its passes add kernel time, not step overhead
        factors = default_factors(profile, None).model_copy(update={"step_overhead_s": 0.0})
        # the draft on the SKU's roofline alone: no engine kernel terms (fused experts, untuned GEMMs) for a draft
        draft = RooflineModel(draft_arch, profile.spec, factors, d.dtype, kv_dtype, d.tp)
    fraction = mtp_draft_fraction(arch) if spec_cfg.mtp else spec_cfg.draft_step_fraction
    by_position = spec_cfg.acceptance_by_position
    model = SpeculativeModel(step_time, spec_cfg.k, spec_cfg.acceptance or 0.0, draft, fraction,
                             tuple(by_position) if by_position is not None else None)
    accept = (f"a={spec_cfg.acceptance:g}" if by_position is None
              else "a by position " + "/".join(f"{p:g}" for p in by_position))
    drafter = " MTP" if spec_cfg.mtp else ""
    label += f", speculative{drafter} k={spec_cfg.k} {accept} (E={model.tokens_per_step:.2f} tokens/step)"
    return model, label


def check_deployment_extras(
    scenario: Scenario, sc_index: dict[str, int], fname: str, errors: list[InputError]
) -> None:
    """Reservations name known service classes and leave a replica for everyone else; autoscaling starts in its
    range and only where it is modelled (push balancing, no reservations, no disaggregation, pp 1)."""
    for i, d in enumerate(scenario.deployments):
        for j, res in enumerate(d.reserved):
            if res.service_class not in sc_index:
                errors.append(InputError(fname, f"deployments[{i}].reserved[{j}].service_class",
                                         f"unknown service class {res.service_class!r} (service_classes: {sorted(sc_index)})"))
        if d.reserved and scenario.routing.load_balancer == "pull":
            errors.append(InputError(fname, f"deployments[{i}].reserved",
                                     "reserved replicas need a push load balancer (pull shares one queue)"))
        a = d.autoscaling
        if a is not None:
            at = f"deployments[{i}].autoscaling"
            if not a.min_replicas <= d.replicas <= a.max_replicas:
                errors.append(InputError(fname, f"deployments[{i}].replicas",
                                         f"the starting count {d.replicas} must lie in [min_replicas {a.min_replicas}, "
                                         f"max_replicas {a.max_replicas}]"))
            if scenario.routing.load_balancer == "pull" or d.reserved or d.disaggregated is not None or d.pp > 1:
                errors.append(InputError(fname, at, "autoscaling needs a push load balancer, no reserved replicas, "
                                                    "no disaggregation and pp 1"))
        if sum(r.replicas for r in d.reserved) >= d.replicas and d.reserved:
            errors.append(InputError(fname, f"deployments[{i}].reserved",
                                     f"reserves {sum(r.replicas for r in d.reserved)} of {d.replicas} replicas; "
                                     "leave at least one for everyone else"))
