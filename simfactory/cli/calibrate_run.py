"""`simfactory calibrate run` (microbenchmark on this GPU) and `calibrate fit` (fit step measurements you
already have): thin commands over simfactory.calibration, registered on the `calibrate` sub-app."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from simfactory.cli.common import check_engine, err, input_errors, known_deployment, out, print_table
from simfactory.errors import InputError

EXIT_NO_GPU = 3  # distinct from bad input (2): the command was right, the machine cannot run it


def _context(sku: str, model: str) -> tuple[Any, Any]:
    """The model's shape and the SKU's spec (for the roofline candidate and the KV-memory design)."""
    return known_deployment(sku, model)


FIT_KINDS = ("linear", "roofline", "kernels", "best")


def _check_fit_flags(fit_model: str, max_heldout_mape: float, engine: str | None = None, heldout_by: str = "random",
                     max_train_rows: int | None = None) -> None:
    """--fit, --max-heldout-mape, --engine, --heldout-by and --max-train-rows, each refused in one line when it
    could not mean anything."""
    from simfactory.calibration.fit import HELDOUT_BY, MIN_TRAIN

    if fit_model not in FIT_KINDS:
        raise InputError("--fit", "", f"unknown fit {fit_model!r} (choose from {', '.join(FIT_KINDS)})")
    if heldout_by not in HELDOUT_BY:
        raise InputError("--heldout-by", "", f"unknown held-out design {heldout_by!r} (choose from {', '.join(HELDOUT_BY)})")
    if max_train_rows is not None and max_train_rows < MIN_TRAIN:
        raise InputError("--max-train-rows", "", f"must be at least {MIN_TRAIN}, got {max_train_rows}")
    if not (math.isfinite(max_heldout_mape) and max_heldout_mape > 0):
        raise InputError("--max-heldout-mape", "", f"must be a finite fraction > 0 (0.10 = 10%), got {max_heldout_mape}")
    if engine is not None:
        check_engine(engine)


@contextmanager
def _fails_with(code: int, *errors: type[Exception]) -> Iterator[None]:
    """These errors end the command with one red line and `code`, not a traceback."""
    try:
        yield
    except errors as e:
        from rich.markup import escape

        # escaped: a message such as "pip install 'simfactory[calibrate]'" must print its brackets
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code) from None


def _report(run: Any, out: Any) -> None:
    from rich.table import Table

    f = run.fit
    table = Table(title=f"fit: {f.kind} step-time model (held out: {f.heldout_by})")
    for col in ("split", "rows", "MAPE", "bias", "worst"):
        table.add_column(col, justify="right")
    p = f.predictions
    train = p[p["split"] == "train"]["error"]
    held = p[p["split"] == "heldout"]["error"]
    table.add_row("train", str(f.n_train), f"{f.train_mape:.2%}", f"{train.mean():+.2%}", f"{train.abs().max():.2%}")
    table.add_row("held-out", str(f.n_heldout), f"{f.heldout_mape:.2%}", f"{held.mean():+.2%}", f"{f.heldout_max_error:.2%}")
    for phase, pe in f.phases.items():
        if pe.n and pe.mape is not None and pe.bias is not None and pe.max_error is not None:
            table.add_row(f"held-out {phase}", str(pe.n), f"{pe.mape:.2%}", f"{pe.bias:+.2%}", f"{pe.max_error:.2%}")
        else:
            table.add_row(f"held-out {phase}", "0", "-", "-", "-")
    print_table(table)
    out.print(f"step time: {f.step_time.model_dump(exclude={'kind'})}")
    if run.shipped_mape is not None:
        out.print(f"the SKU's shipped roofline is off by {run.shipped_mape:.1%} (MAPE) on these measurements; the "
                  f"measured profile by {f.heldout_mape:.1%} on held-out ones")
    for note in run.notes:
        out.print(note, highlight=False, soft_wrap=True)
    if run.power is not None:
        out.print(f"power: idle {run.power.idle_w:.0f} W, max {run.power.max_w:.0f} W (MAPE {run.power.mape:.1%})")
    beside = ("predicted vs measured per block: .serving-fit.csv" if "serving" in f.kind else
              "predicted vs measured per row and metric: .sweep-fit.csv" if "sweep" in f.kind else
              "predicted vs measured per batch: .batch-fit.csv" if "batch" in f.kind else "raw steps CSV")
    out.print(f"[green]wrote[/green] {run.profile_path} (+ {beside}); `simfactory run` now uses it for this "
              "model, engine, dtype and TP on this SKU")


def _dry_run(model: str, backend: str, sku: str | None, dtype: str, tp: int, repetitions: int, warmup: int,
             quick: bool, out: Any) -> None:
    """The design `calibrate run` would time on this SKU and how long the GPU should be busy."""
    from collections import Counter

    from simfactory.calibration.microbench import design_for, estimate_gpu_s, shipped_roofline

    with input_errors():
        if sku is None:
            raise InputError("--sku", "", "--dry-run needs --sku (there is no GPU to ask)")
        arch, profile = _context(sku, model)
    roof = shipped_roofline(arch, profile, "vllm" if backend == "vllm" else "torch-eager", dtype, tp)
    points = design_for(arch, dtype, tp, profile.spec.hbm_gb, quick)
    kinds = ("prefill", "decode", "mixed") if backend == "vllm" else ("prefill", "decode")
    seconds, shapes = estimate_gpu_s(points, roof, kinds, repetitions, warmup, prefill_contexts=backend == "vllm")
    counts = Counter(p.kind for p in points if p.kind in kinds)
    out.print(f"{shapes} step shapes ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}) x "
              f"{warmup} warm-up + {repetitions} timed repetitions on {tp} x {sku} ({backend})", highlight=False)
    out.print(f"estimated GPU busy time {seconds / 60:.1f} min by the shipped roofline, plus engine start-up "
              "(vLLM: 1-3 min; torch: model init) and Python overhead per step", highlight=False)


def run_cmd(
    model: Annotated[str, typer.Option(help="Model id (hardware_profiles/models.yaml); its config.json comes "
                                            "from calibrate/model_configs/<model>/.")] = "llama-3.1-8b",
    backend: Annotated[str, typer.Option(help="vllm (the real engine) or torch (transformers, eager).")] = "vllm",
    sku: Annotated[Optional[str], typer.Option(help="SKU id to write the profile for (default: from the GPU's name).")] = None,
    dtype: Annotated[str, typer.Option(help="Weights: bf16 or fp8 (vllm).")] = "bf16",
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs (vllm).")] = 1,
    repetitions: Annotated[int, typer.Option(min=3, help="Timed repetitions per step shape.")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed repetitions first.")] = 3,
    quick: Annotated[bool, typer.Option(help="A small design (minutes): for a smoke test, not for publishing.")] = False,
    fit_model: Annotated[str, typer.Option("--fit", help="linear, roofline, kernels or best (lower held-out error).")] = "best",
    max_heldout_mape: Annotated[float, typer.Option(help="Refuse to write a profile above this held-out MAPE.")] = 0.10,
    force: Annotated[bool, typer.Option(help="Write the profile even when the fit error is over the threshold, or over files simfactory did not write.")] = False,
    config_dir: Annotated[Optional[Path], typer.Option(help="Folder with the model's config.json.")] = None,
    profiles_dir: Annotated[Path, typer.Option(help="Where profiles go (<dir>/<sku>/...).")] = Path("hardware_profiles"),
    dry_run: Annotated[bool, typer.Option(help="No GPU needed: print the design and its estimated GPU time "
                                               "(the SKU's roofline) for --sku, and exit.")] = False,
    device: Annotated[str, typer.Option(help="cuda (a GPU, NVML power sampled) or cpu (the torch backend on this "
                                             "machine's CPU: a rehearsal of the whole path; needs --sku, a small "
                                             "--config-dir model and no power curve).")] = "cuda",
) -> None:
    """Time engine steps on this GPU, fit the step-time model and write a measured profile.

    Writes <profiles-dir>/<sku>/<model>-<engine>-<dtype>-tp<N>.yaml (source: measured, held-out fit error,
    provenance) with the raw steps and NVML power samples as CSV beside it.

    Example: simfactory calibrate run --backend vllm --model llama-3.1-8b --tp 1
    """
    from simfactory.calibration.fit import FitRefused
    from simfactory.calibration.validate import check_deployment_flags

    with input_errors():
        check_deployment_flags(dtype, tp)
        _check_fit_flags(fit_model, max_heldout_mape)
        _check_device(device, backend, sku, tp)
    if dry_run:
        _dry_run(model, backend, sku, dtype, tp, repetitions, warmup, quick, out)
        return
    if device == "cpu":
        assert sku is not None
        gpu, chosen_sku, (arch, profile) = _cpu_info(), sku, _context(sku, model)
    else:
        gpu, chosen_sku, arch, profile = _gpu_and_profile(sku, model)
    engine, points = _start_engine(backend, model, config_dir, arch, dtype, tp, gpu.memory_gb, quick, device)
    _check_profile_target(profiles_dir, chosen_sku, model, engine.engine, dtype, tp, force, ("steps", "power"))
    steps, samples, not_reported = _time_steps(engine, points, tp, repetitions, warmup, device == "cuda")
    prov = _run_provenance(backend, model, dtype, tp, quick, gpu, engine, len(steps), repetitions, not_reported)
    from simfactory.calibration.microbench import publish

    with _fails_with(1, FitRefused), input_errors():
        run = publish(steps, sku=chosen_sku, model=model, engine=engine.engine, dtype=dtype, tp=tp,
                      profiles_dir=profiles_dir, provenance=prov, arch=arch, profile=profile, kind=fit_model,
                      max_heldout_mape=max_heldout_mape, force=force, samples=samples)
    _report(run, out)


def _check_profile_target(profiles_dir: Path, sku: str, model: str, engine: str, dtype: str, tp: int, force: bool,
                          tables: tuple[str, ...] = ()) -> None:
    """Refuse a profile path simfactory may not replace before the work (GPU time, or a fit with a simulator in the
    loop) is spent, not after it; `tables`: the kinds of CSV that will be written beside it, checked with it (a fit
    knows its tables' names only once it knows its kind: they are checked when it is written)."""
    from simfactory.calibration.profile_writer import check_profile_target, profile_name

    name = profile_name(model, engine, dtype, tp)
    folder = profiles_dir / sku
    with input_errors():
        check_profile_target(folder / f"{name}.yaml", [folder / f"{name}.{kind}.csv" for kind in tables], force)


def _check_device(device: str, backend: str, sku: str | None, tp: int) -> None:
    if backend not in ("vllm", "torch"):
        raise InputError("--backend", "backend", f"vllm or torch, not {backend!r}")
    if device not in ("cuda", "cpu"):
        raise InputError("--device", "device", f"cuda or cpu, not {device!r}")
    if device == "cpu" and backend != "torch":
        raise InputError("--device", "device", "cpu runs the torch backend only (--backend torch); vLLM needs a GPU")
    if device == "cpu" and sku is None:
        raise InputError("--sku", "sku", "--device cpu has no GPU name to tell the SKU from: pass --sku (the profile "
                                         "the rehearsal writes)")
    if device == "cpu" and tp != 1:
        raise InputError("--tp", "tp", "--device cpu times one device (--tp 1)")


def _cpu_info() -> Any:
    """This machine's CPU as the 'GPU' of a rehearsal: its memory, no driver, no power limit."""
    import os

    from simfactory.calibration.nvml import GpuInfo

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return GpuInfo(index=-1, name="cpu", driver="", cuda_driver="", memory_gb=memory, power_limit_w=None)


def _gpu_and_profile(sku: str | None, model: str) -> tuple[Any, str, Any, Any]:
    """GPU 0 (exit 3 without one), the SKU (--sku, else from the GPU's name), the model's shape and the SKU's profile."""
    from simfactory.calibration.nvml import NoGpu, require_gpu, sku_for

    with _fails_with(EXIT_NO_GPU, NoGpu):
        gpu = require_gpu(0)
    with input_errors():
        chosen_sku = sku or sku_for(gpu.name)
        if chosen_sku is None:
            raise InputError("--sku", "sku", f"cannot tell the SKU from the GPU name {gpu.name!r}; pass --sku")
        arch, profile = _context(chosen_sku, model)
    return gpu, chosen_sku, arch, profile


def _start_engine(backend: str, model: str, config_dir: Path | None, arch: Any, dtype: str, tp: int,
                  memory_gb: float, quick: bool, device: str = "cuda") -> tuple[Any, Any]:
    """The engine to time and the step shapes it can run in one iteration (the others are noted, not timed)."""
    from simfactory.calibration.backends import fitting_points, make_backend
    from simfactory.calibration.fit import FitRefused
    from simfactory.calibration.microbench import config_dir_for, design_for

    with _fails_with(2, FileNotFoundError, RuntimeError, ValueError, FitRefused):
        folder = config_dir_for(model, config_dir)
        points = design_for(arch, dtype, tp, memory_gb, quick)
        # vLLM admits a prompt only below max_num_seqs: room for the largest batch plus its prompts
        extra = {"max_num_seqs": max(p.decode_seqs + p.prefill_seqs for p in points)} if backend == "vllm" else {}
        if backend == "torch":
            extra["device"] = device
        engine = make_backend(backend, folder, dtype, tp, **extra)
    points, unfit = fitting_points(engine, points)
    if unfit:
        out.print(f"[yellow]note:[/yellow] {len(unfit)} step shapes exceed what {engine.engine} can run in one "
                  "iteration here (KV blocks, sequences or token budget) and are not timed", highlight=False)
    return engine, points


def _time_steps(engine: Any, points: Any, tp: int, repetitions: int, warmup: int,
                nvml: bool = True) -> tuple[Any, Any, set[str]]:
    """(steps with power, NVML samples, the NVML fields this GPU did not report), the GPUs sampled while timing;
    without NVML (a CPU rehearsal) the steps alone, no samples."""
    from simfactory.calibration.backends import StepShapeNotTimed
    from simfactory.calibration.microbench import add_power, measure
    from simfactory.calibration.nvml import NvmlSampler

    if not nvml:
        with _fails_with(1, StepShapeNotTimed):
            steps = measure(engine, points, repetitions, warmup, None,
                            on_point=lambda i, n: out.print(f"  step shape {i}/{n}", highlight=False))
        return steps, None, set()

    with NvmlSampler(tuple(range(tp))) as sampler, _fails_with(1, StepShapeNotTimed):
        steps = measure(engine, points, repetitions, warmup, sampler,
                        on_point=lambda i, n: out.print(f"  step shape {i}/{n}", highlight=False),
                        on_skip=lambda p, why: out.print(f"  [yellow]skipped[/yellow] {p}: {why}", highlight=False))
    samples = sampler.frame()
    if sampler.unsupported:
        out.print(f"[yellow]note:[/yellow] NVML did not report {', '.join(sorted(sampler.unsupported))} on this "
                  "GPU; those columns are empty and no power curve is fitted from them", highlight=False)
    return add_power(steps, samples), samples, set(sampler.unsupported)


def _run_provenance(backend: str, model: str, dtype: str, tp: int, quick: bool, gpu: Any, engine: Any, shapes: int,
                    repetitions: int, not_reported: set[str]) -> dict[str, Any]:
    """What the measured profile records about how it was measured: command, GPU, driver, engine, design."""
    from simfactory.calibration.microbench import base_provenance

    prov = base_provenance(["simfactory", "calibrate", "run", "--backend", backend, "--model", model, "--dtype",
                            dtype, "--tp", str(tp)] + (["--quick"] if quick else []))
    prov.update({"gpu": gpu.name, "gpus": str(tp), "driver": gpu.driver, "cuda_driver": gpu.cuda_driver,
                 "engine_version": engine.version(), "backend": backend,
                 "design": f"{shapes} step shapes x {repetitions} repetitions (median, outliers dropped)"})
    if not_reported:
        prov["nvml_not_reported"] = ", ".join(sorted(not_reported))
    return prov


def _fit_requests(requests: Any, dep: Any, profiles_dir: Path, prov: dict[str, Any], max_heldout_mape: float,
                  force: bool, space: Any, fit_model: str, out: Any) -> Any:
    from simfactory.calibration.microbench import publish_serving

    if fit_model == "kernels":
        raise InputError("--fit", "fit", "request tables fit roofline, linear or best (kernels: step tables only)")
    out.print(f"fitting a {fit_model} step time to {int(requests['ok'].sum())} measured requests (each evaluation "
              "replays the load) ...", highlight=False)
    return publish_serving(requests, dep, profiles_dir=profiles_dir, provenance=prov,
                           max_heldout_mape=max_heldout_mape, force=force, space=space, kind=fit_model)


def _fit_batches(batches: Any, dep: Any, profiles_dir: Path, prov: dict[str, Any], max_heldout_mape: float,
                 force: bool, fit_model: str, heldout_by: str, max_train_rows: Optional[int], out: Any) -> Any:
    from simfactory.calibration.microbench import publish_batches

    if fit_model not in ("linear", "best"):
        raise InputError("--fit", "fit", "batch-latency tables fit a linear step time (--fit linear or best)")
    out.print(f"fitting a linear step time to {len(batches)} measured batches (five simulations of each give its "
              "steps' sums) ...", highlight=False)
    return publish_batches(batches, dep, profiles_dir=profiles_dir, provenance=prov,
                           max_heldout_mape=max_heldout_mape, force=force, heldout_by=heldout_by,
                           max_train=max_train_rows)


def _search_space(compute_bounds: str, memory_bounds: str, overhead_bounds: str, max_evaluations: int) -> Any:
    """The serving fit's search space from LO:HI flags; a malformed or empty range is an input error naming it."""
    from simfactory.calibration.serving_fit import SearchSpace

    bounds = []
    for flag, text, cap in (("--compute-bounds", compute_bounds, 1.0), ("--memory-bounds", memory_bounds, 1.0),
                            ("--overhead-bounds", overhead_bounds, 10.0)):
        lo_s, sep, hi_s = text.partition(":")
        try:
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            lo = hi = float("nan")
        if not sep or not (math.isfinite(lo) and math.isfinite(hi)) or not 0.0 <= lo < hi <= cap:
            raise InputError(flag, "", f"expected LO:HI with 0 <= LO < HI <= {cap:g}, got {text!r}")
        bounds.append((lo, hi))
    if bounds[0][0] <= 0 or bounds[1][0] <= 0:
        raise InputError("--compute-bounds" if bounds[0][0] <= 0 else "--memory-bounds", "",
                         "an efficiency's lower bound must be above 0")
    return SearchSpace(bounds=tuple(bounds), max_evaluations=max_evaluations)


def fit_cmd(
    measurements: Annotated[Path, typer.Argument(help="A step table (the columns of `calibrate run`'s "
                                                      ".steps.csv), a request table (from `calibrate serve` or "
                                                      "`calibrate import`) or a batch-latency table (batch_size, "
                                                      "input_tokens, output_tokens, latency_s); CSV or Parquet.")],
    sku: Annotated[str, typer.Option(help="SKU id the measurements were taken on.")],
    model: Annotated[str, typer.Option(help="Model id (hardware_profiles/models.yaml).")],
    engine: Annotated[str, typer.Option(help="Engine label of the profile (vllm, sglang, torch-eager, ...).")] = "vllm",
    dtype: Annotated[str, typer.Option(help="Weights dtype.")] = "bf16",
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs.")] = 1,
    replicas: Annotated[int, typer.Option(help="Request tables: replicas that served the load.")] = 1,
    max_num_seqs: Annotated[Optional[int], typer.Option(help="Request and sweep tables: the server's max_num_seqs.")] = None,
    max_num_batched_tokens: Annotated[Optional[int], typer.Option(min=1, help="Sweep tables: the server's token budget per step (default: fitted among 512-16384).")] = None,
    gpu_memory_utilization: Annotated[Optional[float], typer.Option(help="Sweep tables: the server's KV-cache memory fraction (default: fitted among 0.5-0.95).")] = None,
    requests_per_client: Annotated[Optional[int], typer.Option(min=1, max=1000, help="Sweep tables: rows without a requests column value ran this many requests per client from a cold start, every one measured (AIPerf --request-count K x C; NIM's guide: 3); default: a steady state.")] = None,
    front_end_s: Annotated[Optional[str], typer.Option(help="Request and sweep tables: seconds the server's front end adds to each request before its engine (HTTP, tokenizer, Triton's ensemble), simulated as a deployment's front_end_s and not fitted (else the fit charges it to the engine); or auto to fit it with the step time (0-0.2 s: TTFT at low load is mostly the host's); left out: the engine preset's (vLLM V1 8 ms, SGLang 12 ms, else 0).")] = None,
    length_sigma: Annotated[float, typer.Option(help="Sweep tables: spread each row's prompt and answer lengths as lognormals of this shape (sigma, 0-2) around the row's means, truncated at 8x the mean; ~1 for ShareGPT-like datasets. 0 (default): every request has the row's lengths, as benchmarks with fixed synthetic lengths run (a fixed length keeps the clients in step).")] = 0.0,
    front_end_us_per_token: Annotated[Optional[str], typer.Option(help="Sweep tables: CPU microseconds the server's API process spends per streamed token (its front end as a shared core: deployment front_end_work), or auto to fit it among 0-150; default: the engine preset's front end (nim and sglang have one), else none.")] = None,
    fit_model: Annotated[str, typer.Option("--fit", help="linear, roofline, kernels (step tables: the SKU's kernel "
                                                         "tables + fitted engine overhead) or best (the lower "
                                                         "held-out error).")] = "best",
    heldout_by: Annotated[Optional[str], typer.Option(help="Held-out rows: random (25%; step tables' default), "
                                                 "batch (every second batch size, per phase) or prompt (every second "
                                                 "prompt / context length; batch-latency tables' default).")] = None,
    max_train_rows: Annotated[Optional[int], typer.Option(help="Step tables: train on at most this many rows (an even spread); the rest are held out.")] = None,
    max_step_tokens: Annotated[Optional[int], typer.Option(min=1, help="Step tables: leave out steps of more tokens (prompt tokens + decode sequences) than this, e.g. the engine's max_num_batched_tokens: it never runs larger ones.")] = None,
    max_heldout_mape: Annotated[float, typer.Option(help="Refuse to write a profile above this held-out MAPE.")] = 0.10,
    force: Annotated[bool, typer.Option(help="Write the profile even when the fit error is over the threshold, or over files simfactory did not write.")] = False,
    gpu_name: Annotated[Optional[str], typer.Option(help="GPU name for the provenance.")] = None,
    profiles_dir: Annotated[Path, typer.Option(help="Where profiles go (<dir>/<sku>/...).")] = Path("hardware_profiles"),
    compute_bounds: Annotated[str, typer.Option(help="Request tables: search range of the compute efficiency, LO:HI.")] = "0.02:1",
    memory_bounds: Annotated[str, typer.Option(help="Request tables: search range of the memory efficiency, LO:HI.")] = "0.02:1",
    overhead_bounds: Annotated[str, typer.Option(help="Request tables: search range of the per-step overhead in seconds, LO:HI.")] = "0:0.05",
    max_evaluations: Annotated[int, typer.Option(min=4, max=100_000, help="Request and sweep tables: simulations per fit (Nelder-Mead budget).")] = 60,
) -> None:
    """Fit measurements you already have (no GPU needed) and write a measured profile.

    A step table is fitted directly; a request table through the simulator, each block (rate x prompt length) held
    out in turn; a concurrency sweep (`calibrate sweep`) through simulated closed loops, every second level held out.

    Example: simfactory calibrate fit steps.csv --sku h100-sxm --model llama-3.1-8b
    """
    from simfactory.calibration.batch_latency import check_batches, is_batch_table
    from simfactory.calibration.fit import FitRefused
    from simfactory.calibration.measurements import REQUEST_COLUMNS, check_requests, check_steps, read_table
    from simfactory.calibration.validate import Deployment, check_deployment_flags

    with input_errors():
        check_deployment_flags(dtype, tp, replicas)
        _check_fit_flags(fit_model, max_heldout_mape, engine, heldout_by or "random", max_train_rows)
        space = _search_space(compute_bounds, memory_bounds, overhead_bounds, max_evaluations)
        table = read_table(measurements)
        front_end = _served_load_flags(front_end_s, length_sigma, table, REQUEST_COLUMNS)
        arch, profile = _context(sku, model)
        _check_profile_target(profiles_dir, sku, model, engine, dtype, tp, force)
    prov = _fit_provenance(measurements, gpu_name or sku)
    with _fails_with(1, FitRefused):
        if is_batch_table(table):
            with input_errors():
                run = _fit_batches(check_batches(table, str(measurements)), Deployment(
                    sku=sku, model=model, engine=engine, dtype=dtype, tp=tp, max_num_seqs=max_num_seqs), profiles_dir,
                    prov, max_heldout_mape, force, fit_model, heldout_by or "prompt", max_train_rows, out)
        elif _is_sweep(table):
            limits = (max_num_seqs, max_num_batched_tokens, gpu_memory_utilization, requests_per_client, front_end,
                      front_end_us_per_token, length_sigma)
            run = _fit_sweep(table, str(measurements), sku, model, engine, dtype, tp, limits, profiles_dir, prov,
                             max_heldout_mape, force, max_evaluations, fit_model, out)
        elif all(c in table.columns for c in REQUEST_COLUMNS):
            with input_errors():
                dep = Deployment(sku=sku, model=model, engine=engine, dtype=dtype, tp=tp, replicas=replicas,
                                 max_num_seqs=max_num_seqs, front_end_s=None if front_end == "auto" else front_end)
                run = _fit_requests(check_requests(table, str(measurements)), dep, profiles_dir, prov, max_heldout_mape,
                                    force, dataclasses.replace(space, fit_front_end=front_end == "auto"), fit_model, out)
        else:
            with input_errors():
                steps = check_steps(table, str(measurements))
            run = _fit_steps(steps, Deployment(sku=sku, model=model, engine=engine, dtype=dtype, tp=tp),
                             (arch, profile), profiles_dir, prov, max_heldout_mape, force, fit_model,
                             heldout_by or "random", max_train_rows, max_step_tokens, out)
    _report(run, out)


def _served_load_flags(value: Optional[str], length_sigma: float, table: Any, request_columns: Any
                       ) -> float | str | None:
    """--front-end-s: seconds, "auto" (fitted) or None (the preset's); it describes a served load: a step or
    batch-latency table has no front end in it. --length-sigma spreads a sweep's mean lengths: sweep tables only."""
    from simfactory.calibration.validate import check_front_end

    sweep = _is_sweep(table)
    if length_sigma and not sweep:
        raise InputError("--length-sigma", "", "applies to sweep tables (their rows state mean lengths); request "
                                               "and step tables give each request's own")
    if value is None:
        return None
    served = sweep or all(c in table.columns for c in request_columns)
    if value.strip().lower() == "auto":
        if not served:
            raise InputError("--front-end-s", "", "auto (fitted) applies to request and sweep tables (a served load); "
                                                  "step and batch-latency tables time the engine alone")
        return "auto"
    try:
        front_end_s = float(value)
    except ValueError:
        raise InputError("--front-end-s", "", f"seconds (e.g. 0.0034) or auto, got {value!r}") from None
    check_front_end(front_end_s)
    if front_end_s and not served:
        raise InputError("--front-end-s", "", "applies to request and sweep tables (a served load); step and "
                                              "batch-latency tables time the engine alone")
    return front_end_s


def _front_end_per_token_s(value: Optional[str]) -> float | str | None:
    """--front-end-us-per-token: seconds per streamed token, "auto" (searched) or None (the preset's)."""
    if value is None or value.strip().lower() == "auto":
        return None if value is None else "auto"
    try:
        us = float(value)
    except ValueError:
        us = math.nan
    if not 0 <= us <= 1000:  # also NaN; a deployment's per_output_token_s takes at most 1 ms
        raise InputError("--front-end-us-per-token", "", f"microseconds from 0 to 1000, or auto; got {value!r}")
    return us * 1e-6


def _fit_provenance(measurements: Path, gpu: str) -> dict[str, Any]:
    from simfactory.calibration.microbench import base_provenance

    return {**base_provenance(["simfactory", "calibrate", "fit", str(measurements)]), "gpu": gpu,
            "measurements": str(measurements)}


def _is_sweep(table: Any) -> bool:
    from simfactory.calibration.sweep_fit import is_sweep_table

    return is_sweep_table(table)


def _fit_sweep(table: Any, file: str, sku: str, model: str, engine: str, dtype: str, tp: int,
               limits: tuple[Optional[int], Optional[int], Optional[float], Optional[int], float | str | None,
                             Optional[str], float],
               profiles_dir: Path,
               prov: dict[str, Any],
               max_heldout_mape: float, force: bool, max_evaluations: int, fit_model: str, out: Any) -> Any:
    """A concurrency sweep: the server's limits (flags, else the engine preset's defaults), fit and publish."""
    from simfactory.calibration.microbench import publish_sweep
    from simfactory.calibration.sweep_fit import BUDGETS, KV_FRACTIONS, SweepSetup, check_sweep
    from simfactory.config.limits import MAX_TOKENS
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve import load_engines, load_profile, search_dirs

    with input_errors():
        if fit_model not in ("kernels", "roofline", "best"):
            raise InputError("--fit", "fit", "a concurrency sweep fits the terms kernel tables miss where the SKU "
                                             "has them, else the roofline (--fit best, kernels or roofline)")
        for flag, value in zip(("--max-num-seqs", "--max-num-batched-tokens"), limits[:2]):
            if value is not None and not 1 <= value <= MAX_TOKENS:
                raise InputError(flag, "", f"must be a whole number from 1 to {MAX_TOKENS:,}, got {value}")
        if limits[2] is not None and not 0 < limits[2] <= 1:  # also NaN
            raise InputError("--gpu-memory-utilization", "", f"must be a fraction above 0 and at most 1, got {limits[2]}")
        if not 0.0 <= limits[6] <= 2.0:  # also NaN
            raise InputError("--length-sigma", "", f"must be a lognormal shape from 0 to 2 (0: fixed lengths), got {limits[6]}")
        sweep = check_sweep(table, file, limits[3])
        dirs = search_dirs(None, "hardware_profiles", PROFILES_DIR)
        preset = load_engines(dirs).get(engine)
        defaults = preset.defaults if preset is not None else None
        device_bytes = load_profile(dirs, sku, "--sku", "sku").spec.device_bytes  # the defaults may follow it
        held = preset is None or preset.holds_seqs_to_budget()  # vLLM: no more sequences than the budget has tokens
        seqs = limits[0] or min((defaults.batch_size(device_bytes, sku) if defaults else None) or 256,
                                (limits[1] or MAX_TOKENS) if held else MAX_TOKENS)
        tokens = limits[1] or (max(seqs, BUDGETS[0]) if held else BUDGETS[0])
        base = preset.front_end if preset is not None else None
        per_token_s = _front_end_per_token_s(limits[5])
        fit_front_end = limits[4] == "auto"
        setup = SweepSetup(sku, model, engine, dtype, tp, seqs, tokens, file, limits[2],
                           None if fit_front_end else limits[4], per_token_s if per_token_s != "auto" else None, base,
                           seqs_within_budget=held, fit_front_end_s=fit_front_end, length_sigma=limits[6])
        if limits[6]:
            prov["lengths"] = (f"each row's prompt and answer lengths drawn from lognormals of sigma {limits[6]:g} "
                               "around its means, truncated at 8x the mean (--length-sigma)")
        counted = int(sweep["requests"].notna().sum())
        if counted:
            prov["benchmark"] = (f"{counted} of {len(sweep)} rows run as their benchmark's request count, from a cold "
                                 "start, every request measured; the others as a steady state")
        setup.check(sweep)
        searched = [f"max_num_batched_tokens (one fit per {', '.join(map(str, BUDGETS))})"] if limits[1] is None else []
        searched += [f"gpu_memory_utilization ({', '.join(map(str, KV_FRACTIONS))})"] if limits[2] is None else []
        searched += ["the front end's CPU per streamed token (0-150 us)"] if per_token_s == "auto" else []
        searched += ["in every fit, the front end per request (0-0.2 s, with the step time)"] if fit_front_end else []
        out.print(f"fitting to {len(sweep)} sweep rows (max_num_seqs {seqs}; "
                  f"{'fitted too: ' + ', then '.join(searched) if searched else 'the server settings given'}; every "
                  "evaluation simulates their closed loops) ...", highlight=False)
        search = {k: v for k, v, given in (
            ("max_num_batched_tokens", defaults.token_budget(device_bytes, sku) if defaults else None, limits[1]),
            ("gpu_memory_utilization", preset.memory.fraction if preset and preset.memory else None, limits[2]),
            ("front_end_per_token_s", base.per_output_token_s if base else 0.0, None if per_token_s == "auto" else 0))
            if given is None}
        return publish_sweep(sweep, setup, profiles_dir=profiles_dir, provenance=prov,
                             max_heldout_mape=max_heldout_mape, force=force, max_evaluations=max_evaluations,
                             kind=fit_model, search=search)


def _fit_steps(steps: Any, dep: Any, context: tuple[Any, Any], profiles_dir: Path, prov: dict[str, Any],
               max_heldout_mape: float, force: bool, fit_model: str, heldout_by: str, max_train_rows: Optional[int],
               max_step_tokens: Optional[int], out: Any) -> Any:
    """A step table: leave out steps above --max-step-tokens (saying how many), fit and publish."""
    from simfactory.calibration.measurements import within_step_tokens
    from simfactory.calibration.microbench import publish
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve import search_dirs

    if max_step_tokens is not None:
        steps, left_out = within_step_tokens(steps, max_step_tokens)
        out.print(f"left out {left_out} of {left_out + len(steps)} steps above {max_step_tokens} tokens "
                  "(--max-step-tokens)", highlight=False)
        prov["max_step_tokens"] = f"{max_step_tokens} ({left_out} larger steps left out)"
    arch, profile = context
    with input_errors():  # a profile file that simfactory did not write is refused, not a traceback
        return publish(steps, sku=dep.sku, model=dep.model, engine=dep.engine, dtype=dep.dtype, tp=dep.tp,
                       profiles_dir=profiles_dir, provenance=prov, arch=arch, profile=profile, kind=fit_model,
                       max_heldout_mape=max_heldout_mape, force=force, heldout_by=heldout_by,
                       max_train=max_train_rows, profile_dirs=search_dirs(None, "hardware_profiles", PROFILES_DIR))


def register(app: typer.Typer) -> None:
    """Add `run` and `fit` to the `calibrate` group."""
    app.command("run")(run_cmd)
    app.command("fit")(fit_cmd)
