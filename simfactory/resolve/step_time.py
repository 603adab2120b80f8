"""Which step-time model a deployment gets, and where it comes from: a calibrated entry for its (model, engine,
dtype, TP), else the measured kernel tables with the engine's overhead prior, else the SKU's roofline."""

from __future__ import annotations

import functools
from typing import Any
from collections.abc import Mapping
from pathlib import Path

from simfactory.config.loader import record_read
from simfactory.config.profile import (
    UNQUANTIZED_DTYPES,
    EngineKernels,
    EnginePreset,
    HardwareProfile,
    KernelsStepTime,
    LinearStepTime,
    ModelArch,
    RooflineStepTime,
    StepTimeEntry,
)
from simfactory.config.scenario import Deployment
from simfactory.errors import InputError, InputErrors
from simfactory.hardware.collectives import Links
from simfactory.hardware.kernels import (
    FRAMEWORKS, AttentionRanks, KernelStepTime, kernel_step_time, load_kernel_tables,
)
from simfactory.hardware.moe import default_expert_imbalance
from simfactory.hardware.step_time import (
    LinearModel,
    RooflineModel,
    StepTimeModel,
    UntunedGemms,
    mla_block_fp8_gemm_shapes,
    shared_expert_gemm_shapes,
)
from simfactory.paths import PROFILES_DIR
from simfactory.resolve.files import calibrated_entries, load_models

SOURCE_PREFERENCE = {"measured": 0, "published-fit": 1, "roofline": 2}


def step_time_entry(d: Deployment, profile: HardwareProfile, dirs: list[Path]) -> tuple[StepTimeEntry, str] | None:
    """The explicit entry for this (model, engine, dtype, TP) and parallel layout (attention-DP groups, EP degree),
    measured first; None: the SKU's roofline."""
    matching = [(e, where) for e, where in _entries_for(d, profile, dirs) if _layout_of(e) == _layout_of(d)]
    return min(matching, key=lambda ew: SOURCE_PREFERENCE[ew[0].source]) if matching else None


def _entries_for(d: Deployment, profile: HardwareProfile, dirs: list[Path]) -> list[tuple[StepTimeEntry, str]]:
    """The profile's and the calibrated entries for this (model, engine, dtype, TP), whatever their layout."""
    entries = [(e, f"{profile.sku}.yaml") for e in profile.step_time_models]
    entries += calibrated_entries(dirs, profile.sku)
    return [(e, where) for e, where in entries if (e.model, e.engine, e.dtype, e.tp) == (d.model, d.engine, d.dtype, d.tp)]


def _layout_of(x: Deployment | StepTimeEntry) -> tuple[int, int]:
    """(attention-DP groups, EP degree) of a deployment or an entry."""
    return (x.dp_attention, x.ep_degree) if isinstance(x, Deployment) else (x.dp_attention, x.ep)


def entries_of_other_layouts(d: Deployment, profile: HardwareProfile, dirs: list[Path]) -> list[str]:
    """Where entries for this (model, engine, dtype, TP) exist only for other parallel layouts: 'file (dp_attention
    X, ep Y)' each, for a warning (they do not price this deployment)."""
    same = _entries_for(d, profile, dirs)
    if any(_layout_of(e) == _layout_of(d) for e, _ in same):
        return []
    return [f"{where} (dp_attention {e.dp_attention}, ep {e.ep})" for e, where in same]


def with_measured_power(d: Deployment, profile: HardwareProfile, dirs: list[Path]) -> HardwareProfile:
    """A measured profile's power curve (calibration's NVML fit) replaces the spec sheet's idle and max power,
    so the TCO energy model uses what was measured; its source says so."""
    chosen = step_time_entry(d, profile, dirs)
    if chosen is None or chosen[0].idle_w is None or chosen[0].max_w is None:
        return profile
    entry, where = chosen
    spec = profile.spec.model_copy(update={
        "idle_w": entry.idle_w, "tdp_w": entry.max_w,
        "source": f"power measured by calibration ({where}); spec sheet: {profile.spec.source}",
    })
    return profile.model_copy(update={"spec": spec})


def default_factors(profile: HardwareProfile, preset: EnginePreset | None,
                    prefill_floor_s: float = 0.0) -> RooflineStepTime:
    """The SKU's roofline factors with the engine's per-step overhead multiplier: the step-time model of a
    deployment without an explicit entry (and the baseline calibration reports its error against)."""
    r = profile.roofline
    multiplier = preset.step_overhead_multiplier if preset is not None else 1.0
    return RooflineStepTime(compute_efficiency=r.compute_efficiency, memory_efficiency=r.memory_efficiency,
                            step_overhead_s=r.step_overhead_s * multiplier, prefill_floor_s=prefill_floor_s,
                            gemm_latency_s=r.gemm_latency_s, gemm_ramp_tokens=r.gemm_ramp_tokens)


def eager_prefill_floor_s(d: Deployment | None, arch: ModelArch, preset: EnginePreset | None,
                          prefill_role: bool = False, dtype: str | None = None) -> float:
    """The engine's eager-prefill launch time for this model (0 when its prefill forwards run as CUDA graphs, or
    the deployment uses none of the features that turn them off). prefill_role: d is the prefill replicas of a
    disaggregated deployment (resolved as a deployment of their own, without `disaggregated`). d None: a plain
    tensor-parallel deployment serving `dtype` weights (None: quantized)."""
    eager = preset.eager_prefill if preset is not None else None
    if eager is None:
        return 0.0
    if eager.only_with:
        if d is None:  # a plain tensor-parallel deployment (calibration's baselines) uses none of them
            return 0.0
        used = {"dp_attention": d.dp_attention > 1, "expert_parallel": d.ep_degree > 1 and arch.is_moe,
                "eplb": d.eplb and arch.is_moe, "speculative": d.speculative is not None,
                "disaggregated": d.disaggregated is not None or prefill_role}
        if not any(used[c] for c in eager.only_with):
            return 0.0
    return eager.floor_s(arch, d.dtype if d is not None else dtype)


ROOFLINE_DEFAULT_LABEL = "roofline (SKU default factors of "  # the uncalibrated fallback


def choose_step_time(
    d: Deployment, profile: HardwareProfile, arch: ModelArch, dirs: list[Path], kv_dtype: str,
    preset: EnginePreset | None = None, at: str = "deployment", fname: str = "", prefill_role: bool = False,
    models: Mapping[str, ModelArch] | None = None,
) -> tuple[StepTimeModel, str]:
    """The deployment's step-time model and a label saying where it comes from: a calibrated entry for this
    (model, engine, dtype, TP, layout) first (the user's own measurement), else the measured kernel tables plus the
    engine's overhead prior where they cover it, else the SKU's roofline (step_time_source narrows the choice)."""
    chosen = step_time_entry(d, profile, dirs) if d.step_time_source == "auto" else None
    if chosen is not None:
        entry, where = chosen
        spec = entry.step_time
        label = f"{entry.source} ({where})"
        if isinstance(spec, LinearStepTime):
            return LinearModel(spec), label
        if isinstance(spec, KernelsStepTime):
            fitted, why_not = kernel_model(d, profile, arch, dirs, kv_dtype, preset, spec, models=models)
            if fitted is None:
                raise InputErrors([InputError(fname, f"{at}.step_time_source",
                                              f"the {label} step-time entry is a fit on kernel tables, and {why_not}")])
            fitted.label = f"{label}: {fitted.label}"
            return fitted, label
        fitted_roofline = roofline_model(d, profile, arch, kv_dtype, spec, preset)
        return fitted_roofline, label + untuned_label(fitted_roofline, d.engine)
    if d.step_time_source != "roofline":
        kernels, why_not = kernel_model(d, profile, arch, dirs, kv_dtype, preset, prefill_role=prefill_role,
                                        models=models)
        if kernels is not None:
            assert preset is not None and preset.kernels is not None
            kernels.label = f"{MEASURED_KERNELS_LABEL}{kernels.label} ({d.engine} {preset.kernels.version} prior)"
            return kernels, kernels.label
        if d.step_time_source == "kernels":
            raise InputErrors([InputError(fname, f"{at}.step_time_source", f"no measured kernels: {why_not}")])
    multiplier = preset.step_overhead_multiplier if preset is not None else 1.0
    floor_s = eager_prefill_floor_s(d, arch, preset, prefill_role)
    eager = f", eager prefill >= {floor_s * 1e3:.4g} ms" if floor_s else ""
    # a release factor relates a release to the kernel tables' release; the roofline was fitted to other runs
    release = (f", {d.engine}'s release factor not applied (it scales kernel tables)"
               if preset is not None and preset.kernels is not None and preset.kernels.release_factor is not None else "")
    model = roofline_model(d, profile, arch, kv_dtype, default_factors(profile, preset, floor_s), preset)
    return model, (f"{ROOFLINE_DEFAULT_LABEL}{profile.sku}, {d.engine} overhead x{multiplier:g}{eager}{release}"
                   f"{untuned_label(model, d.engine)})")


def untuned_label(model: RooflineModel, engine: str) -> str:
    """What a roofline's untuned GEMMs add, for its label ("" without any)."""
    if model.untuned_gemms is None:
        return ""
    return f", block-FP8 GEMMs on {engine}'s untuned kernel: +{model.untuned_extra_s(1) * 1e3:.3g} ms a one-token step"


def roofline_model(d: Deployment, profile: HardwareProfile, arch: ModelArch, kv_dtype: str,
                   factors: RooflineStepTime, preset: EnginePreset | None = None) -> RooflineModel:
    """The deployment's roofline with its parallel degrees and expert imbalance (the published default for its
    ep unless the scenario sets one), and the engine's kernels where they change its GEMMs (preset None: none)."""
    ep = d.ep_degree if arch.is_moe else 1
    imbalance = d.expert_imbalance if d.expert_imbalance is not None else default_expert_imbalance(ep, d.eplb)
    kernels = preset.kernels if preset is not None else None
    return RooflineModel(arch, profile.spec, factors, d.dtype, kv_dtype, d.tp, d.expert_parallel, d.pp, ep=ep,
                         dp_attention=d.dp_attention, expert_imbalance=imbalance,
                         **engine_gemm_terms(kernels, profile.sku, arch, d.dtype, d.tp, d.dp_attention, ep))


def engine_gemm_terms(kernels: EngineKernels | None, sku: str, arch: ModelArch, dtype: str, tp: int,
                      dp_attention: int = 1, ep: int = 1) -> dict[str, Any]:
    """RooflineModel's fields for what the engine's kernels change in its GEMMs (fused shared experts, untuned
    GEMMs): one place for resolve and calibration's rooflines alike."""
    return {"fused_shared_experts": fuses_shared_experts(arch, kernels, ep),
            "untuned_gemms": untuned_gemms(kernels, sku, arch, dtype, tp, dp_attention, ep)}


def fuses_shared_experts(arch: ModelArch, kernels: EngineKernels | None, ep: int) -> bool:
    """Whether the engine runs the model's shared expert as one more expert of the routed experts' fused kernel:
    SGLang does for DeepSeek-V3/R1's shape (256 routed experts, one shared) on CUDA sm80+ and ROCm gfx942+, unless
    DeepEP dispatches the experts (DeepseekV2ForCausalLM.determine_num_fused_shared_experts, v0.5.6; expert
    parallelism here is priced as all-to-all dispatch, so left unfused)."""
    return (kernels is not None and kernels.framework == "sglang"
            and arch.num_experts == 256 and arch.shared_experts == 1 and ep == 1)


def untuned_gemms(kernels: EngineKernels | None, sku: str, arch: ModelArch, dtype: str, tp: int,
                  dp_attention: int = 1, ep: int = 1) -> UntunedGemms | None:
    """The GEMMs the engine runs on a kernel with one generic configuration on this SKU (its preset's
    kernels.untuned_block_fp8_gemm): an MLA model's dense linear layers, when its FP8 weights are block-scaled as
    DeepSeek's FP8 checkpoints are: the attention projections in each attention group, and the shared experts where
    they run apart from the routed ones. Not the first dense layers' MLPs (their width is not in the catalogue).
    None elsewhere."""
    u = kernels.untuned_block_fp8_gemm if kernels is not None else None
    if u is None or sku not in u.skus or dtype != "fp8" or not arch.is_mla:
        return None
    attention = mla_block_fp8_gemm_shapes(arch, tp // dp_attention)  # a validated deployment: dp_attention divides tp
    if not attention:
        return None
    fused = fuses_shared_experts(arch, kernels, ep)
    moe_mlp = () if fused or ep > 1 else shared_expert_gemm_shapes(arch, tp)
    return UntunedGemms(attention, arch.layers, u.tile, u.k_step_s, u.compute_units, dp_attention, moe_mlp,
                        arch.moe_layers if moe_mlp else 0)


def kernel_coverage(sku: str, dirs: list[Path]) -> list[tuple[str, str, int, str, str]]:
    tables = load_kernel_tables(sku, dirs)
    return tables.combinations() if tables is not None else []


@functools.cache
def shipped_models() -> dict[str, ModelArch]:
    """The shipped catalogue, which the shipped kernel tables were derived from (a user's catalogue may redefine an
    id; the tables stay what they are)."""
    return load_models([PROFILES_DIR])


def redefined(arch: ModelArch) -> bool:
    """A user's catalogue entry under a shipped id with other dimensions than the shipped model's (a corrected
    parameter count is not one): the tables of that id were derived for the shipped one."""
    shipped = shipped_models().get(arch.id)
    return shipped is not None and not arch.runs_like(shipped, known_whole=False, params=False)


def same_shape_models(arch: ModelArch, sku: str, dirs: list[Path],
                      models: Mapping[str, ModelArch] | None) -> list[str]:
    """The models in the SKU's kernel tables that this model runs like (ModelArch.runs_like), for a model the tables
    do not hold: a release or fine-tune of a tabled model runs the same kernels. Compared with the shipped catalogue's
    entry of a tabled model (what its tables were derived from), else the given catalogue's (a user's own tables)."""
    tables = load_kernel_tables(sku, dirs)
    if tables is None or models is None or arch.id in tables.models:
        return []
    refs = {m: shipped_models().get(m) or models.get(m) for m in sorted(tables.models)}
    return [m for m, ref in refs.items() if ref is not None and arch.runs_like(ref)]


def unpacked_gqa_scale(k: EngineKernels | None, sku: str, arch: ModelArch, attention_tp: int) -> float:
    """What decode attention costs in a step that also prefills over a decode-only step's, on an engine and SKU
    whose attention kernel reads each KV head once per query head there (EngineKernels.unpacked_gqa_mixed_steps):
    a rank's query heads per KV head (a KV head replicated over ranks when there are fewer than the TP size)."""
    if k is None or k.unpacked_gqa_mixed_steps is None or sku not in k.unpacked_gqa_mixed_steps.skus:
        return 1.0
    q_heads = max(1, arch.heads // attention_tp)
    kv_heads = max(1, arch.kv_heads // attention_tp)
    return max(1.0, q_heads / kv_heads)


def absorbed_extend_terms(k: EngineKernels | None, sku: str, arch: ModelArch,
                          graphs: bool) -> tuple[float, float, float]:
    """kernel_step_time's `absorbed`: (the absorbed form's work per query-key pair over the tables', computed prompt
    tokens below which a batch runs it, batch tokens up to which it does whatever those are) where the engine runs
    some of a latent-attention model's prefill batches in the absorbed form on this SKU (EngineKernels.
    absorbed_mla_extend; with DP attention each rank picks the form from its own prompts, AttentionRanks.mla_extend);
    graphs: the deployment's prefills run as piecewise CUDA graphs (no eager-prefill floor); (1, 0, 0) elsewhere."""
    if k is None or not arch.is_mla:
        return 1.0, 0.0, 0.0
    for rule in k.absorbed_mla_extend:
        if sku in rule.skus and rule.ratio(arch) > 1.0:
            graph_max = float(rule.graph_max_tokens or 0) if graphs else 0.0
            below = float(rule.below_prefix_tokens or 0)
            if below or graph_max:  # else no batch takes the absorbed form here (Blackwell's rule, eager prefill)
                return rule.ratio(arch), below, graph_max
    return 1.0, 0.0, 0.0


def absorbed_note(below: float, graph_max: float, ratio: float) -> str:
    """What a kernel-table label says of the prefill batches it prices in latent attention's absorbed form."""
    which = [f"1 to {below - 1:g} computed prompt tokens"] if below else []
    which += [f"at most {graph_max:g} tokens (piecewise CUDA graphs)"] if graph_max else []
    return f"; a prefill batch with {' or '.join(which)} in latent attention's absorbed form, x{ratio:.3g} the work a pair"


MEASURED_KERNELS_LABEL = "measured kernels: "  # how an uncalibrated kernel-table step time's label starts


def triton_moe(k: EngineKernels | None, arch: ModelArch, dtype: str) -> bool:
    """Whether a deployment's MoE layers run on Triton fused_moe where the tables' release runs another kernel:
    the engine says so for BF16 MoE (EngineKernels.triton_bf16_moe) and the deployment is a BF16/FP16 MoE model."""
    return k is not None and k.triton_bf16_moe is not None and arch.is_moe and dtype in UNQUANTIZED_DTYPES


def older_moe(k: EngineKernels | None, sku: str, arch: ModelArch) -> str | None:
    """The older release whose measured MoE kernels a MoE model's layers are priced with on this SKU
    (EngineKernels.older_moe), else None."""
    return k.older_moe.release if k is not None and k.older_moe is not None and arch.is_moe \
        and sku in k.older_moe.skus else None


def kernel_model(
    d: Deployment, profile: HardwareProfile, arch: ModelArch, dirs: list[Path], kv_dtype: str,
    preset: EnginePreset | None, fit: KernelsStepTime | None = None, prefill_role: bool = False,
    models: Mapping[str, ModelArch] | None = None,
) -> tuple[KernelStepTime | AttentionRanks | None, str]:
    """The measured-kernel step time of a deployment, or None and why the tables do not cover it. The engine's
    overhead prior, or with `fit` (a calibrated entry of kind kernels) the fitted overhead and corrections. With
    `models` (the catalogue), a model the tables lack takes the tables of one of the same shape (the label says so);
    the engine's own framework first, then its stand-ins."""
    k = preset.kernels if preset is not None else None
    if k is None and fit is None:
        return None, f"the engine preset {d.engine!r} names no kernel framework (hardware_profiles/engines.yaml)"
    if d.pp > 1:
        return None, "the tables hold no pipeline parallelism"
    ep = d.ep_degree if arch.is_moe else 1
    framework = k.framework if k is not None else FRAMEWORKS.get(d.engine, d.engine)
    if fit is None:
        assert k is not None
        version: str | None = k.version
        # host sync and collective launches grow with the tensor-parallel group, the whole of it with DP attention too:
        # every step all-gathers each rank's batch over all of it (SGLang's prepare_mlp_sync_batch, TensorRT-LLM's
        # attention-DP request balancing) and the MoE layers' collectives span it (engines.yaml sglang overhead)
        terms = {"overhead_s": k.overhead.step_s(arch.layers, d.tp),
                 "overhead_per_seq_s": k.overhead.per_seq_s,
                 "prefill_floor_s": eager_prefill_floor_s(d, arch, preset, prefill_role),
                 "kernel_scale": k.release_factor.factor if k.release_factor is not None else 1.0,
                 "allreduce_latency_s": k.allreduce_latency.at_tp_s(d.tp) if k.allreduce_latency is not None else 0.0}
    else:
        version = None
        terms = fit.model_dump(exclude={"kind", "allreduce_bus_gb_s"})  # kernel_step_time's parameters
    terms["mixed_decode_attn_scale"] = unpacked_gqa_scale(k, profile.sku, arch, d.tp // d.dp_attention)
    terms["triton_moe"] = triton_moe(k, arch, d.dtype)
    graphs = not eager_prefill_floor_s(d, arch, preset, prefill_role)
    terms["absorbed"] = absorbed_extend_terms(k, profile.sku, arch, graphs)
    terms["mla_kv_up_share"] = arch.mla_kv_up_share(d.tp // d.dp_attention)
    terms["dp_graph_padding"] = k is not None and k.dp_attention_graph_padding is not None
    terms["older_moe"] = older_moe(k, profile.sku, arch)
    links = Links.of_group(profile.spec, d.tp)
    if fit is not None and links is not None:  # a fit keeps the all-reduce it was fitted with
        links = links.with_measured_allreduce(d.tp, fit.allreduce_bus_gb_s)
    if redefined(arch):
        return None, (f"the catalogue's {d.model} is not the shipped {d.model} the kernel tables were derived for (its "
                      f"dimensions differ): give it an id of its own")
    twins = same_shape_models(arch, profile.sku, dirs, models)
    tries = [(fw, version if fw == framework else None, m)  # a fit on the stand-in's tables too
             for fw in [framework, *(k.stand_in if k is not None else [])] for m in [d.model, *twins]]
    model = None
    for fw, ver, model_id in tries:
        model = kernel_step_time(arch, model_id, profile.sku, fw, ver, d.dtype, kv_dtype, d.tp, profile_dirs=dirs,
                                 dp_attention=d.dp_attention, ep=ep, links=links, **terms)
        if model is not None:
            if model_id != d.model:
                model.label += f"; {model_id}'s tables: {d.model} has its shape"
            if fw != framework:
                model.label += f"; {fw}'s tables stand in for {framework}'s, which lack this model or layout"
            if model.absorbed_extend()[0]:
                model.label += absorbed_note(*model.absorbed_extend()[1:], terms["absorbed"][0])
            break
    if model is None:
        tables = load_kernel_tables(profile.sku, dirs)
        model_id = d.model if not twins else twins[0]  # what the file holds of this model, or of its shape
        covered = sorted({f"{m} {f} tp{tp}{f' dp{dp}' if dp > 1 else ''}{f' ep{e}' if e > 1 else ''} {dt}/{kv}"
                          for m, f, tp, dp, e, dt, kv in (tables.layouts() if tables is not None else [])
                          if m == model_id and f == framework})
        layout = (f" DP-attention {d.dp_attention}" if d.dp_attention > 1 else "") + (f" EP{ep}" if ep > 1 else "")
        has = (f" (it has: {', '.join(covered)})" if model_id == d.model
               else f" (it has, of {model_id}, whose tables {d.model} takes as its shape: {', '.join(covered)})")
        return None, (f"hardware_profiles/kernels/{profile.sku}.json.gz has no {d.model} {framework} TP{d.tp}{layout} "
                      f"{d.dtype} weights / {kv_dtype} KV" + (has if covered else ""))
    record_read(Path(model.source_file), model.source_sha256)
    return model, ""
