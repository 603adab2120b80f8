"""`simfactory calibrate run`: time a design of engine steps on this GPU, fit the step-time model, publish a
measured profile. Order matters: the GPU is checked before anything heavy is imported, the fit is checked
before anything is written, and the profile files appear together or not at all.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simfactory.calibration.backends import Backend, StepShapeNotTimed
from simfactory.calibration.design import DesignPoint, DesignSpace, design
from simfactory.calibration.fit import (
    FitRefused,
    FitResult,
    KernelsContext,
    PowerFit,
    RooflineContext,
    check_threshold,
    fit_power,
    fit_step_time,
)
from simfactory.calibration.measurements import check_steps
from simfactory.calibration.nvml import NvmlSampler, window_means
from simfactory.calibration.profile_writer import build_entry, write_profile
from simfactory.config.profile import ModelArch
from simfactory.config.scenario import kv_dtype_for
from simfactory.hardware.collectives import Links
from simfactory.inputs import MAX_SUMMARY_BYTES, parse_json, read_input_text
from simfactory.paths import CALIBRATE_DIR, PROFILES_DIR
from simfactory.resolve.files import load_models
from simfactory.resolve.step_time import (
    absorbed_extend_terms,
    eager_prefill_floor_s,
    engine_gemm_terms,
    older_moe,
    redefined,
    same_shape_models,
    triton_moe,
    unpacked_gqa_scale,
)

MODEL_CONFIGS = CALIBRATE_DIR / "model_configs"
OUTLIER_MADS = 5.0  # repetitions further than this many median absolute deviations from the median are dropped


def robust_stats(times_s: list[float]) -> tuple[float, float, int]:
    """Median, 90th percentile and count of repetitions after dropping outliers (a GC pause, a clock change)."""
    t = np.asarray(times_s, dtype=float)
    med = float(np.median(t))
    mad = float(np.median(np.abs(t - med))) or med * 1e-3
    kept = t[np.abs(t - med) <= OUTLIER_MADS * 1.4826 * mad]
    return float(np.median(kept)), float(np.percentile(kept, 90)), int(len(kept))


def measure(backend: Backend, points: list[DesignPoint], repetitions: int = 10, warmup: int = 3,
            sampler: NvmlSampler | None = None, on_point: Callable[[int, int], None] | None = None,
            on_skip: Callable[[DesignPoint, str], None] | None = None) -> pd.DataFrame:
    """The step table (see measurements.py) for the points this backend can time; a point the engine could not
    run as one iteration (StepShapeNotTimed) is reported to `on_skip` and left out."""
    rows: list[dict[str, Any]] = []
    usable = [p for p in points if p.kind in backend.kinds]
    for i, point in enumerate(usable):
        start = sampler.now_s() if sampler is not None else 0.0
        try:
            times = backend.time_point(point, repetitions, warmup)
        except StepShapeNotTimed as e:
            if on_skip:
                on_skip(point, str(e))
            continue
        end = sampler.now_s() if sampler is not None else 0.0
        med, p90, kept = robust_stats(times)
        load = point.load()
        row: dict[str, Any] = {
            "kind": point.kind, "prefill_seqs": point.prefill_seqs, "prompt_tokens": point.prefill_tokens,
            "context_tokens": point.context_tokens, "prefill_tokens": load.prefill_tokens,
            "decode_seqs": load.decode_seqs, "kv_tokens_read": load.kv_tokens_read,
            "prefill_attn_pairs": load.prefill_attn_pairs, "step_s": med, "step_s_p90": p90, "repetitions": kept,
            "window_start_s": start, "window_end_s": end,
        }
        rows.append(row)
        if on_point:
            on_point(i + 1, len(usable))
    if not rows:
        raise StepShapeNotTimed("no step shape of the design could be timed on this engine")
    return check_steps(pd.DataFrame(rows), "<measured steps>")


def add_power(steps: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Mean power and SM utilization over each point's timing window."""
    means = [window_means(samples, a, b) for a, b in zip(steps["window_start_s"], steps["window_end_s"])]
    out = steps.copy()
    out["power_w"] = [m[0] for m in means]
    out["sm_util"] = [m[1] for m in means]
    return out


def design_for(arch: ModelArch, dtype: str, tp: int, memory_gb: float, quick: bool) -> list[DesignPoint]:
    """The default design, trimmed to the KV cache that fits: 90% of memory minus the weights."""
    kv_bytes = arch.kv_bytes_per_token("bf16")
    free_bytes = 0.9 * memory_gb * 1e9 * tp - arch.weight_bytes(dtype)
    if free_bytes <= 0:
        raise FitRefused(f"{arch.id} in {dtype} does not fit {tp} x {memory_gb:.0f} GB")
    kv_tokens = int(free_bytes * 0.8 / kv_bytes)
    base = DesignSpace(prompt_tokens=(128, 1024), batch_sizes=(1, 16, 64), context_tokens=(512, 4096)) if quick else DesignSpace()
    space = DesignSpace(base.prompt_tokens, base.batch_sizes, base.context_tokens, base.max_batched_tokens,
                        max_context_tokens=max(kv_tokens * 4 // max(base.batch_sizes), 1024))
    points = [p for p in design(space, mixed_points=4 if quick else 12)
              if p.decode_seqs * (p.context_tokens + 1) + p.prefill_seqs * p.prefill_tokens <= kv_tokens]
    if not points:
        raise FitRefused(f"no step shape of the design fits the {kv_tokens:,} KV tokens left on {tp} x "
                         f"{memory_gb:.0f} GB beside {arch.id} in {dtype}")
    return points


def estimate_gpu_s(points: list[DesignPoint], step_time: Any, kinds: tuple[str, ...], repetitions: int, warmup: int,
                   prefill_contexts: bool, max_batched_tokens: int = 8192) -> tuple[float, int]:
    """Rough GPU time of a design under a step-time model (the shipped roofline before calibrating): the timed
    and warm-up steps, plus (vLLM, which builds real KV caches) prefilling each decode batch's context in chunks
    of the token budget. Excludes engine start-up. Returns (seconds, shapes timed)."""
    from simfactory.hardware.step_time import StepLoad

    total = 0.0
    usable = [p for p in points if p.kind in kinds]
    for p in usable:
        total += (repetitions + warmup) * step_time.step_s(p.load())
        context = p.decode_seqs * p.context_tokens if prefill_contexts else 0
        if context:
            chunks = -(-context // max_batched_tokens)
            per_chunk = min(context, max_batched_tokens)
            pairs = per_chunk * (p.context_tokens + 1) / 2
            total += chunks * step_time.step_s(StepLoad(per_chunk, 0, 0.0, float(pairs)))
    return total, len(usable)


@dataclass(frozen=True)
class CalibrationRun:
    profile_path: Path
    fit: FitResult
    power: PowerFit | None
    steps: pd.DataFrame
    shipped_mape: float | None = None  # the uncalibrated (roofline) profile's error on the same steps
    notes: tuple[str, ...] = ()  # what the report prints beside the table (per-block errors, warnings)


def shipped_preset(engine: str) -> Any:
    """The shipped engine preset of that name (engines.yaml), None for a name that is no shipped preset. Shipped
    presets only, as shipped_roofline reads them: calibration has no scenario beside which a user's own engines.yaml
    would be found."""
    from simfactory.resolve import load_engines, search_dirs

    return load_engines(search_dirs(None, "hardware_profiles", PROFILES_DIR)).get(engine)


def preset_kernels(engine: str) -> Any:
    """The shipped engine preset's kernels section, None for a name that is no shipped preset with kernels."""
    preset = shipped_preset(engine)
    return preset.kernels if preset is not None else None


def kernel_framework(engine: str, kernels: Any) -> tuple[str, float]:
    """The kernel framework an engine preset runs (its kernels section, preset_kernels: engines.yaml
    kernels.framework) and its release factor on the tables' times (1 without one); a name that is no shipped preset
    with kernels (None) is passed on as is (a framework: vllm, sglang, trtllm)."""
    if kernels is None:
        return engine, 1.0
    release = kernels.release_factor
    return kernels.framework, release.factor if release is not None else 1.0


def shipped_roofline(arch: ModelArch, profile: Any, engine: str, dtype: str, tp: int) -> Any:
    """The step-time model `simfactory run` uses for this combination before it is calibrated: the SKU's roofline
    with the engine preset's overhead multiplier (resolve.default_factors)."""
    from simfactory.hardware.step_time import RooflineModel
    from simfactory.resolve import default_factors, load_engines, search_dirs
    from simfactory.resolve.step_time import eager_prefill_floor_s

    preset = load_engines(search_dirs(None, "hardware_profiles", PROFILES_DIR)).get(engine)
    factors = default_factors(profile, preset, eager_prefill_floor_s(None, arch, preset, dtype=dtype))
    kernels = preset.kernels if preset is not None else None
    return RooflineModel(arch, profile.spec, factors, dtype, kv_dtype_for(dtype, arch=arch), tp,
                         **engine_gemm_terms(kernels, profile.sku, arch, dtype, tp))


def shipped_roofline_mape(steps: pd.DataFrame, arch: ModelArch, profile: Any, engine: str, dtype: str, tp: int) -> float:
    """How far the shipped roofline (what `simfactory run` used before) is from these measurements."""
    from simfactory.hardware.step_time import StepLoad

    model = shipped_roofline(arch, profile, engine, dtype, tp)
    cols = ["prefill_tokens", "decode_seqs", "kv_tokens_read", "prefill_attn_pairs"]
    predicted = np.array([model.step_s(StepLoad(int(a), int(b), float(c), float(d)))
                          for a, b, c, d in steps[cols].itertuples(index=False)])
    return float(np.mean(np.abs(predicted / steps["step_s"].to_numpy(dtype=float) - 1.0)))


def publish(steps: pd.DataFrame, *, sku: str, model: str, engine: str, dtype: str, tp: int, profiles_dir: Path,
            provenance: dict[str, Any], arch: ModelArch | None = None, profile: Any = None, kind: str = "best",
            max_heldout_mape: float = 0.10, force: bool = False, samples: pd.DataFrame | None = None,
            seed: int = 0, heldout_by: str = "random", max_train: int | None = None,
            profile_dirs: list[Path] | None = None) -> CalibrationRun:
    """Fit, check the held-out error, fit power when sampled, write the profile (shared by run and fit).
    heldout_by / max_train: the held-out design (fit.split_steps); profile_dirs: where kernel tables are looked up."""
    preset = preset_kernels(engine)
    roof = (RooflineContext(arch, profile.spec, dtype, kv_dtype_for(dtype, arch=arch), tp, profile.roofline,
                            **engine_gemm_terms(preset, sku, arch, dtype, tp))
            if arch is not None and profile is not None else None)
    links = Links.of_group(profile.spec, tp) if profile is not None else None
    framework, kernel_scale = kernel_framework(engine, preset)
    kernels = None
    if arch is not None and not redefined(arch):  # a user's own model under a shipped id has no tables of its own
        # the folders the tables are read from, as hardware/kernels.py reads them (None: the shipped ones; a list,
        # empty too: those only), for the twins and the tables alike
        dirs = list(profile_dirs) if profile_dirs is not None else [PROFILES_DIR]
        twins = tuple(same_shape_models(arch, sku, dirs, load_models(dirs)))  # it runs on them, so it fits on them
        graphs = not eager_prefill_floor_s(None, arch, shipped_preset(engine), dtype=dtype)
        kernels = KernelsContext(arch, model, sku, framework, dtype, kv_dtype_for(dtype, arch=arch), tp, dirs, links,
                                 kernel_scale, twins, unpacked_gqa_scale(preset, sku, arch, tp),
                                 triton_moe(preset, arch, dtype), absorbed_extend_terms(preset, sku, arch, graphs),
                                 arch.mla_kv_up_share(tp), older_moe(preset, sku, arch))
    fit = fit_step_time(steps, kind, roof, seed=seed, kernels=kernels, heldout_by=heldout_by, max_train=max_train)
    check_threshold(fit, max_heldout_mape, force)
    shipped = None
    if arch is not None and profile is not None:
        shipped = shipped_roofline_mape(steps, arch, profile, engine, dtype, tp)
        provenance = {**provenance, "shipped_roofline_mape": f"{shipped:.2%} (the SKU's roofline on these steps)"}
    power = None
    if "power_w" in steps and "sm_util" in steps and steps["power_w"].notna().sum() >= 3:
        try:
            power = fit_power(steps["sm_util"].to_numpy(), steps["power_w"].to_numpy())
        except FitRefused:
            power = None  # utilization did not vary enough: keep the price book's idle power
    entry = build_entry(fit, model=model, engine=engine, dtype=dtype, tp=tp, provenance=provenance, power=power)
    return CalibrationRun(write_profile(entry, fit, profiles_dir, sku, samples, force), fit, power, steps, shipped)


def publish_serving(requests: pd.DataFrame, dep: Any, *, profiles_dir: Path, provenance: dict[str, Any],
                    max_heldout_mape: float = 0.10, force: bool = False, space: Any = None,
                    kind: str = "roofline") -> CalibrationRun:
    """Fit the roofline to serving measurements (serving_fit), with the same threshold and files as `publish`;
    `space` (serving_fit.SearchSpace) bounds the search."""
    from simfactory.calibration.serving_fit import check_serving_fit, fit_serving

    sf = fit_serving(requests, dep, space=space, kind=kind)
    warnings = check_serving_fit(sf, max_heldout_mape, force)
    fit = sf.as_fit_result()
    check_threshold(fit, max_heldout_mape, force)
    fitted_front_end = (f"; front_end_s {sf.front_end_s:g} fitted with the step time (training MAPE by value: "
                        + ", ".join(f"{v:g} {e:.1%}" for v, e in sf.front_end_tried.items()) + ")"
                        if sf.front_end_s is not None else "")
    provenance = {**provenance, "method": f"serving-level fit: {sf.evaluations} simulated replays, held out one "
                                          f"block at a time{fitted_front_end}",
                  "shipped_roofline_mape": f"{sf.start_mape:.2%} (the SKU's roofline replaying the load, latency "
                                           "percentiles)",
                  "throughput_mape": f"{sf.throughput_mape():.2%} (reported apart: right whenever the server keeps up)"}
    if warnings:
        provenance["warnings"] = " | ".join(warnings)
    entry = build_entry(fit, model=dep.model, engine=dep.engine, dtype=dep.dtype, tp=dep.tp, provenance=provenance)
    notes = [f"held out one block at a time (a fit to the other blocks predicts it): "
             + ", ".join(f"block {k}: {v:.1%}" for k, v in sf.block_errors().items())] if sf.heldout is not None else [
        "one block only: no held-out error (measure two or more rates or prompt lengths)"]
    notes.append(f"throughput rows (right whenever the server keeps up; not in the MAPE): {sf.throughput_mape():.1%}")
    if sf.front_end_s is not None:  # not in the step time: the scenario's deployment must carry it
        notes.append(f"the server's front end per request, fitted (chosen on every block, then each block held out "
                     f"behind it): give your scenario's deployment front_end_s: {sf.front_end_s:g}")
    notes += [f"warning: {w}" for w in warnings]
    return CalibrationRun(write_profile(entry, fit, profiles_dir, dep.sku, force=force), fit, None, requests,
                          sf.start_mape, tuple(notes))


def base_provenance(command: list[str]) -> dict[str, Any]:
    return {"command": " ".join(command), "python": platform.python_version(), "host_os": platform.platform()}


def config_dir_for(model: str, override: Path | None) -> Path:
    """calibrate/model_configs/<model>/ (or --config-dir), which must hold a config.json."""
    folder = override if override is not None else MODEL_CONFIGS / model
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'}: no model config; put the model's Hugging Face config.json "
                                "there or pass --config-dir")
    parse_json(read_input_text(folder / "config.json", "--config-dir", MAX_SUMMARY_BYTES, "model config"),
               str(folder / "config.json"), "--config-dir")
    return folder


def scenario_deployment(setup: Any) -> str:
    """The measured server's fields for a scenario's deployment (flow YAML; name, pool and replicas are yours)."""
    fields = {"model": setup.model, "engine": setup.engine, "dtype": setup.dtype, "tp": setup.tp,
              "max_num_seqs": setup.max_num_seqs, "max_num_batched_tokens": setup.max_num_batched_tokens}
    if setup.gpu_memory_utilization is not None:
        fields["gpu_memory_utilization"] = setup.gpu_memory_utilization
    if setup.front_end_s is not None:  # the server's front end: not in the fitted step time, so the deployment must say it
        fields["front_end_s"] = setup.front_end_s
    work = setup.front_end_work()
    if work is not None:  # likewise its API server's CPU work (given or fitted)
        fields["front_end_work"] = "{" + ", ".join(f"{k}: {v:g}" if isinstance(v, (int, float)) else f"{k}: {v}"
                                                   for k, v in work.model_dump().items() if v is not None) + "}"
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def _sweep_fit_searched(sweep: pd.DataFrame, setup: Any, max_evaluations: int, kind: str,
                        search: dict[str, Any]) -> tuple[Any, list[str], Any, list[Any]]:
    """The sweep fit, searching the server settings named in `search` (field -> the engine preset's value, kept
    when the sweep does not decide it): the budget first, then the KV fraction at that budget, then the front end's
    CPU per streamed token at both."""
    from simfactory.calibration.sweep_fit import fit_sweep, fit_sweep_budget, fit_sweep_front_end, fit_sweep_kv

    searches = []
    if "max_num_batched_tokens" in search:
        fit, on_bounds, setup, found = fit_sweep_budget(sweep, setup, max_evaluations, kind,
                                                        preferred=search["max_num_batched_tokens"])
        searches.append(found)
    if "gpu_memory_utilization" in search:
        fit, on_bounds, setup, found = fit_sweep_kv(sweep, setup, max_evaluations, kind,
                                                    preferred=search["gpu_memory_utilization"])
        searches.append(found)
    if "front_end_per_token_s" in search:
        fit, on_bounds, setup, found = fit_sweep_front_end(sweep, setup, max_evaluations, kind,
                                                           preferred=search["front_end_per_token_s"])
        searches.append(found)
    if not searches:
        fit, on_bounds, setup = fit_sweep(sweep, setup, max_evaluations, kind)
    return fit, on_bounds, setup, searches


def publish_sweep(sweep: pd.DataFrame, setup: Any, *, profiles_dir: Path, provenance: dict[str, Any],
                  max_heldout_mape: float = 0.10, force: bool = False, max_evaluations: int = 60,
                  kind: str = "best", search: dict[str, Any] | None = None) -> CalibrationRun:
    """Fit the terms kernels miss to a concurrency sweep (sweep_fit), with the same threshold and files as
    `publish`; the predicted vs measured table goes beside the profile as .sweep-fit.csv. The server settings in
    `search` are fitted too (_sweep_fit_searched). A fitted term on its search bound refuses the fit (unless
    forced): the sweep is then not explained by the server described."""
    setup.check(sweep)
    fit, on_bounds, setup, searches = _sweep_fit_searched(sweep, setup, max_evaluations, kind, search or {})
    if on_bounds and not force:
        raise FitRefused("fitted terms sit on their search bounds: " + "; ".join(on_bounds) + ". Check --sku, --tp, "
                         "--engine, --max-num-seqs, --max-num-batched-tokens and --gpu-memory-utilization; pass "
                         "--force to write it anyway")
    check_threshold(fit, max_heldout_mape, force, unit="value", advice=(
        "Something outside the step time sets part of the sweep (see the per-metric errors: a front end, a batch or "
        "token limit, the KV pool); fit the metrics it explains (drop a column) or"))
    p = fit.predictions
    prior = (p["prior_predicted"] / p["measured"] - 1.0).where(p["metric"] != "output_tokens_per_s",
                                                               1.0 - p["prior_predicted"] / p["measured"])
    found = {f.field: f.text() for f in searches}
    kv = setup.gpu_memory_utilization
    server = (f"max_num_seqs {setup.max_num_seqs}, "
              + found.get("max_num_batched_tokens", f"max_num_batched_tokens {setup.max_num_batched_tokens}") + ", "
              + found.get("gpu_memory_utilization", f"gpu_memory_utilization {kv}" if kv is not None
                          else "the engine preset's KV memory fraction")
              + (", " + found["front_end_per_token_s"] if "front_end_per_token_s" in found else "")
              + (f", front_end_s {setup.front_end_s:.4g} (fitted with the step time)" if setup.fit_front_end_s
                 and setup.front_end_s is not None else ""))
    provenance = {**provenance, "method": f"concurrency-sweep fit: {fit.n_train} measured values fitted, "
                                          f"{fit.n_heldout} held out ({fit.heldout_by}); {server}",
                  "prior_error": f"MAPE {prior.abs().mean():.2%}, bias {prior.mean():+.2%} (+ = slower) over "
                                 f"{len(p)} measured values, before fitting"}
    entry = build_entry(fit, model=setup.model, engine=setup.engine, dtype=setup.dtype, tp=setup.tp,
                        provenance=provenance)
    notes = (f"before fitting, the prior ({fit.kind.split(' ')[0]}) was off by {prior.abs().mean():.1%} (MAPE, bias "
             f"{prior.mean():+.1%}, + = slower) on all {len(p)} measured values",
             f"server: {server}",
             "the profile holds the step time only: give your scenario's deployment these fields too (name, pool "
             "and replicas are yours): " + scenario_deployment(setup)) + tuple(f"warning: {w}" for w in on_bounds)
    return CalibrationRun(write_profile(entry, fit, profiles_dir, setup.sku, force=force), fit, None, sweep, None,
                          notes)


def publish_batches(batches: pd.DataFrame, dep: Any, *, profiles_dir: Path, provenance: dict[str, Any],
                    max_heldout_mape: float = 0.10, force: bool = False, heldout_by: str = "prompt",
                    max_train: int | None = None) -> CalibrationRun:
    """Fit a linear step time to whole-batch latencies (batch_latency), with the same threshold and files as
    `publish`; the predicted vs measured table goes beside the profile as .batch-fit.csv."""
    from simfactory.calibration.batch_latency import fit_batches, heldout_bias

    fit = fit_batches(batches, dep, by=heldout_by, max_train=max_train)
    check_threshold(fit, max_heldout_mape, force)
    provenance = {**provenance, "method": f"batch-latency fit: {fit.n_train} batches fitted, {fit.n_heldout} held "
                                          f"out ({fit.heldout_by}), held-out bias {heldout_bias(fit):+.2%}"}
    entry = build_entry(fit, model=dep.model, engine=dep.engine, dtype=dep.dtype, tp=dep.tp, provenance=provenance)
    notes = ("a batch's latency mixes prefill and decode steps: the held-out error is one figure for both",)
    return CalibrationRun(write_profile(entry, fit, profiles_dir, dep.sku, force=force), fit, None, batches, None, notes)
