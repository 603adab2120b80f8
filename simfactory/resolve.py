"""Turn a validated Scenario into everything the simulator needs: profiles, model shapes, step-time
models, KV capacity and length distributions, checking every cross-reference with its field path."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from simfactory.config.distributions import Distribution
from pydantic import TypeAdapter

from simfactory.config.agent import AgentWorkload, HumanStep, LlmStep, ToolStep, task_steps
from simfactory.config.limits import (
    MAX_AGENT_STEPS, MAX_ARRIVALS, MAX_AUTOSCALER_TICKS, MAX_FAULT_EVENTS, MAX_HOURLY_MIX_CELLS, MAX_KV_OVERCOMMIT,
    MAX_STATE_SWITCHES, MAX_TIMELINE_CELLS, MAX_TRAINING_EVENTS, MIN_CLOSED_LOOP_CYCLE_S,
)
from simfactory.config.loader import load_model_file, read_yaml, record_read, recording_reads, validate, validate_union
from simfactory.config.profile import (
    EngineCatalog,
    EnginePreset,
    HardwareProfile,
    KernelsStepTime,
    LinearStepTime,
    ModelArch,
    ModelCatalog,
    RooflineStepTime,
    StepTimeEntry,
)
from simfactory.config.routing import Route, Tier
from simfactory.config.scenario import (
    ClosedArrivals, Deployment, MmppArrivals, Pool, RequestClass, RequestWorkload, Scenario, Workload, kv_dtype_for, peak_rate_per_s,
)
from simfactory.config.prices import PriceBook
from simfactory.errors import InputError, InputErrors
from simfactory.inputs import MAX_YAML_BYTES, check_input_file, is_input_file, is_lookup_dir
from simfactory.hardware.memory import MemoryPlan, plan_memory
from simfactory.hardware.kernels import ENGINE_FRAMEWORK, KernelStepTime, kernel_step_time, load_kernel_tables
from simfactory.hardware.speculative import SpeculativeModel
from simfactory.traces.parse import parse_trace
from simfactory.traces.replay import ReplayRows, replay_rows
from simfactory.hardware.step_time import LinearModel, RooflineModel, StepTimeModel
from simfactory.paths import PROFILES_DIR, WORKLOADS_DIR

SOURCE_PREFERENCE = {"measured": 0, "published-fit": 1, "roofline": 2}
# MAX_ARRIVALS and the other bounds on one run's work: simfactory.config.limits


@dataclass(frozen=True)
class ResolvedDeployment:
    index: int
    config: Deployment
    pool: Pool
    profile: HardwareProfile
    arch: ModelArch
    step_time: StepTimeModel
    step_time_source: str
    memory: MemoryPlan
    kv_capacity_tokens: int
    kv_blocks: int
    max_model_len: int


@dataclass(frozen=True)
class Target:
    """Where a request goes: straight to a deployment, or through a route (tiers, weights, fallback)."""

    kind: str  # "deployment" | "route"
    index: int


@dataclass(frozen=True)
class ResolvedRoute:
    index: int
    config: Route
    tiers: list[tuple[int, Tier]]  # (deployment index, tier)
    weights: list[tuple[int, float]]  # (deployment index, weight)
    fallback: Target | None
    fallback_max_waiting: int
    candidates: list[int] = field(default_factory=list)  # deployment indexes (policy nearest)


@dataclass(frozen=True)
class ResolvedClass:
    """A traffic class: plain requests (lengths, one target) or agent tasks (workload, role -> target)."""

    index: int
    config: RequestClass
    target: Target | None  # plain requests; agent tasks use roles
    input_tokens: Distribution | None = None
    output_tokens: Distribution | None = None
    agent: AgentWorkload | None = None
    roles: dict[str, Target] = field(default_factory=dict)
    priority: int = 0
    service_class: int = -1  # index into scenario.service_classes, -1 none
    tenant: int = -1  # index into scenario.tenants, -1 none
    trace: ReplayRows | None = None  # replayed trace rows (arrival times when the format has them)

    @property
    def deployment_index(self) -> int:
        """The deployment of a plain class aimed straight at one (not through a route); -1 otherwise."""
        return self.target.index if self.target is not None and self.target.kind == "deployment" else -1

    @property
    def follows_arrival_process(self) -> bool:
        """traffic.arrival drives it: every class but one replaying a timestamped trace (those keep their times)."""
        return self.trace is None or self.trace.arrival_s is None


@dataclass(frozen=True)
class ResolvedScenario:
    scenario: Scenario
    file: str
    deployments: list[ResolvedDeployment]
    classes: list[ResolvedClass]
    pool_profiles: dict[str, HardwareProfile]
    price_book: PriceBook
    routes: list[ResolvedRoute] = field(default_factory=list)
    input_hashes: dict[str, str] = field(default_factory=dict)  # file read -> sha256 (provenance)
    warnings: list[str] = field(default_factory=list)  # e.g. trace rows skipped, with their line numbers

    @property
    def scenario_hash(self) -> str:
        """sha256 of the validated scenario's canonical JSON (independent of formatting and comments)."""
        return hashlib.sha256(self.scenario.model_dump_json().encode("utf-8")).hexdigest()


def search_dirs(scenario_file: Path | None, name: str, builtin: Path) -> list[Path]:
    """A user's own folder beside (or above) the scenario wins over the shipped one."""
    dirs: list[Path] = []
    if scenario_file is not None:
        here = scenario_file.resolve().parent
        dirs += [here / name, here.parent / name]
    dirs.append(builtin)
    unique: list[Path] = []
    for d in dirs:
        # something there that is not a folder (a file, a FIFO, a symlink loop) is refused, never skipped
        if is_lookup_dir(d, name) and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_file(dirs: list[Path], stem: str) -> Path | None:
    """The first `stem`.yaml / .yml in `dirs`. Anything found under that name (a folder, a FIFO, a symlink loop)
    is returned, for the loader to refuse in one line: a user's broken file never silently loses to a shipped
    one. None when nothing is there."""
    for d in dirs:
        for ext in (".yaml", ".yml"):
            p = d / f"{stem}{ext}"
            if is_input_file(p):
                return p
    return None


def available(dirs: list[Path], exclude: tuple[str, ...] = ()) -> list[str]:
    names = {p.stem for d in dirs for p in d.glob("*.y*ml") if p.stem not in exclude}
    return sorted(names)


def load_profile(dirs: list[Path], sku: str, file: str, field: str) -> HardwareProfile:
    path = find_file(dirs, sku)
    if path is None:
        choices = ", ".join(available(dirs, exclude=NON_PROFILE_FILES))
        raise InputError(file, field, f"no hardware profile {sku!r} (available: {choices})")
    profile = load_model_file(HardwareProfile, path)
    if profile.sku != sku:
        raise InputError(str(path), "sku", f"is {profile.sku!r} but the file is named {path.stem!r}")
    return profile


NON_PROFILE_FILES = ("models", "prices", "engines")


def load_price_book(dirs: list[Path], scenario_file: Path | None, override: str | None, fname: str) -> PriceBook:
    """The scenario's own price book (finance.price_book), else prices.yaml beside it, else the shipped one."""
    if override is not None:
        base = scenario_file.resolve().parent if scenario_file is not None else Path.cwd()
        path = base / override
        try:
            path = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte: check_input_file says which
            pass
        try:
            check_input_file(path, "", MAX_YAML_BYTES, "price book")
        except InputError as e:
            raise InputError(fname, "finance.price_book", f"{e.reason}: {e.file}") from None
        return load_model_file(PriceBook, path)
    path = find_file(dirs, "prices")
    if path is None:
        raise InputError(fname, "finance.price_book", "no prices.yaml in " + ", ".join(map(str, dirs)))
    return load_model_file(PriceBook, path)


def _check_pool_prices(scenario: Scenario, profiles: dict[str, HardwareProfile], book: PriceBook, fname: str,
                       errors: list[InputError]) -> None:
    """Every pool can be priced: a known provider with a price for its SKU and contract, or a profile price."""
    for i, p in enumerate(scenario.pools):
        if p.name not in profiles:
            continue
        price = profiles[p.name].price
        spec = profiles[p.name].spec
        idle = book.idle_w(p.sku)
        if spec.idle_w is None and idle is not None and idle.idle_w > spec.tdp_w:
            errors.append(InputError(fname, f"pools[{i}].sku", f"the price book's idle power for {p.sku!r} "
                                     f"({idle.idle_w:g} W) exceeds the profile's tdp_w ({spec.tdp_w:g} W)"))
        if p.location == "cloud":
            if p.cloud_usd_per_accel_hour is not None:
                continue
            if p.provider is not None:
                if p.provider not in book.providers:
                    errors.append(InputError(fname, f"pools[{i}].provider",
                                             f"unknown provider {p.provider!r} (price book: {', '.join(book.providers)})"))
                elif book.cloud_price(p.provider, p.sku, p.pricing, p.region) is None:
                    offered = sorted({f"{c.sku}/{c.pricing}" for c in book.cloud if c.provider == p.provider})
                    errors.append(InputError(fname, f"pools[{i}].pricing",
                                             f"price book has no {p.pricing} price for {p.sku!r} at {p.provider} "
                                             f"(it has: {', '.join(offered) or 'none'}); set cloud_usd_per_accel_hour"))
            elif price.cloud_usd_per_accel_hour is None:
                errors.append(InputError(fname, f"pools[{i}].cloud_usd_per_accel_hour",
                                         f"profile {p.sku!r} has no cloud price; set one for this pool or a provider"))
        elif p.server_usd_per_accel is None and price.server_usd_per_accel is None and book.server_price(p.sku) is None:
            errors.append(InputError(fname, f"pools[{i}].server_usd_per_accel",
                                     f"neither the price book nor profile {p.sku!r} has a server price; set one for this pool"))


def _check_training(scenario: Scenario, used: dict[str, int], fname: str, errors: list[InputError]) -> None:
    pools = {p.name: p for p in scenario.pools}
    for i, job in enumerate(scenario.training):
        at = f"training[{i}]"
        pool = pools.get(job.pool)
        if pool is None:
            errors.append(InputError(fname, f"{at}.pool", f"unknown pool {job.pool!r} (pools: {sorted(pools)})"))
            continue
        inference = used.get(job.pool, 0)
        if job.priority == "dedicated":
            used[job.pool] = inference + job.accelerators
            if used[job.pool] > pool.count:
                errors.append(InputError(fname, f"{at}.accelerators",
                                         f"pool {job.pool!r} has {pool.count} accelerators; deployments and dedicated "
                                         f"training need {used[job.pool]}"))
        elif job.accelerators > inference:
            errors.append(InputError(fname, f"{at}.accelerators",
                                     f"priority idle runs on the inference replicas' idle time, but pool {job.pool!r} "
                                     f"serves on only {inference} accelerators"))


def load_engines(dirs: list[Path]) -> dict[str, EnginePreset]:
    engines: dict[str, EnginePreset] = {}
    for d in reversed(dirs):  # a user's presets override shipped ones with the same name
        path = d / "engines.yaml"
        if is_input_file(path):  # a broken one is refused by the loader, not skipped
            for e in load_model_file(EngineCatalog, path).engines:
                engines[e.name] = e
    return engines


def load_models(dirs: list[Path]) -> dict[str, ModelArch]:
    models: dict[str, ModelArch] = {}
    for d in reversed(dirs):  # user's catalogue overrides shipped entries with the same id
        path = d / "models.yaml"
        if is_input_file(path):  # a broken one is refused by the loader, not skipped
            for m in load_model_file(ModelCatalog, path).models:
                models[m.id] = m
    return models


def calibrated_entries(dirs: list[Path], sku: str) -> list[tuple[StepTimeEntry, str]]:
    """Per-combination profiles written by calibration: hardware_profiles/<sku>/*.yaml."""
    out = []
    for d in dirs:
        sub = d / sku
        if sub.is_dir():
            for p in sorted(sub.glob("*.yaml")):
                out.append((load_model_file(StepTimeEntry, p), str(p)))
    return out


def step_time_entry(d: Deployment, profile: HardwareProfile, dirs: list[Path]) -> tuple[StepTimeEntry, str] | None:
    """The explicit entry for this (model, engine, dtype, TP), measured first; None: the SKU's roofline."""
    entries = [(e, f"{profile.sku}.yaml") for e in profile.step_time_models]
    entries += calibrated_entries(dirs, profile.sku)
    matching = [
        (e, where)
        for e, where in entries
        if (e.model, e.engine, e.dtype, e.tp) == (d.model, d.engine, d.dtype, d.tp)
    ]
    return min(matching, key=lambda ew: SOURCE_PREFERENCE[ew[0].source]) if matching else None


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


def default_factors(profile: HardwareProfile, preset: EnginePreset | None) -> RooflineStepTime:
    """The SKU's roofline factors with the engine's per-step overhead multiplier: the step-time model of a
    deployment without an explicit entry (and the baseline calibration reports its error against)."""
    r = profile.roofline
    multiplier = preset.step_overhead_multiplier if preset is not None else 1.0
    return RooflineStepTime(compute_efficiency=r.compute_efficiency, memory_efficiency=r.memory_efficiency,
                            step_overhead_s=r.step_overhead_s * multiplier)


def choose_step_time(
    d: Deployment, profile: HardwareProfile, arch: ModelArch, dirs: list[Path], kv_dtype: str,
    preset: EnginePreset | None = None, at: str = "deployment", fname: str = "",
) -> tuple[StepTimeModel, str]:
    """The deployment's step-time model and a label saying where it comes from: a calibrated entry for this
    (model, engine, dtype, TP) first (the user's own measurement), else the measured kernel tables plus the
    engine's overhead prior where they cover it, else the SKU's roofline (step_time_source narrows the choice)."""
    chosen = step_time_entry(d, profile, dirs) if d.step_time_source == "auto" else None
    if chosen is not None:
        entry, where = chosen
        spec = entry.step_time
        label = f"{entry.source} ({where})"
        if isinstance(spec, LinearStepTime):
            return LinearModel(spec), label
        if isinstance(spec, KernelsStepTime):
            fitted, why_not = kernel_model(d, profile, arch, dirs, kv_dtype, preset, spec)
            if fitted is None:
                raise InputErrors([InputError(fname, f"{at}.step_time_source",
                                              f"the {label} step-time entry is a fit on kernel tables, and {why_not}")])
            fitted.label = f"{label}: {fitted.label}"
            return fitted, label
        return RooflineModel(arch, profile.spec, spec, d.dtype, kv_dtype, d.tp, d.expert_parallel, d.pp), label
    if d.step_time_source != "roofline":
        kernels, why_not = kernel_model(d, profile, arch, dirs, kv_dtype, preset)
        if kernels is not None:
            assert preset is not None and preset.kernels is not None
            kernels.label = f"measured kernels: {kernels.label} ({d.engine} {preset.kernels.version} prior)"
            return kernels, kernels.label
        if d.step_time_source == "kernels":
            raise InputErrors([InputError(fname, f"{at}.step_time_source", f"no measured kernels: {why_not}")])
    multiplier = preset.step_overhead_multiplier if preset is not None else 1.0
    return (
        RooflineModel(arch, profile.spec, default_factors(profile, preset), d.dtype, kv_dtype, d.tp, d.expert_parallel,
                      d.pp),
        f"roofline (SKU default factors of {profile.sku}, {d.engine} overhead x{multiplier:g})",
    )


def kernel_coverage(sku: str, dirs: list[Path]) -> list[tuple[str, str, int, str, str]]:
    tables = load_kernel_tables(sku, dirs)
    return tables.combinations() if tables is not None else []


def kernel_model(
    d: Deployment, profile: HardwareProfile, arch: ModelArch, dirs: list[Path], kv_dtype: str,
    preset: EnginePreset | None, fit: KernelsStepTime | None = None,
) -> tuple[KernelStepTime | None, str]:
    """The measured-kernel step time of a deployment, or None and why the tables do not cover it. The engine's
    overhead prior, or with `fit` (a calibrated entry of kind kernels) the fitted overhead and corrections."""
    k = preset.kernels if preset is not None else None
    if k is None and fit is None:
        return None, f"the engine preset {d.engine!r} names no kernel framework (hardware_profiles/engines.yaml)"
    if d.pp > 1 or d.expert_parallel or arch.is_moe:
        return None, "the tables hold dense models with tensor parallelism only (no pipeline or expert parallelism)"
    framework = k.framework if k is not None else ENGINE_FRAMEWORK.get(d.engine, d.engine)
    if fit is None:
        assert k is not None
        version: str | None = k.version
        terms = {"overhead_s": k.overhead.step_s(arch.layers, d.tp), "overhead_per_seq_s": k.overhead.per_seq_s}
    else:
        version = None
        terms = fit.model_dump(exclude={"kind"})  # its fields are kernel_step_time's parameters
    model = kernel_step_time(arch, d.model, profile.sku, framework, version, d.dtype, kv_dtype, d.tp,
                             profile_dirs=dirs, **terms)
    if model is None:
        covered = sorted({f"{m} {f} tp{tp} {dt}/{kv}" for m, f, tp, dt, kv in kernel_coverage(profile.sku, dirs)
                          if m == d.model and f == framework})
        return None, (f"hardware_profiles/kernels/{profile.sku}.json.gz has no {d.model} {framework} TP{d.tp} "
                      f"{d.dtype} weights / {kv_dtype} KV" + (f" (it has: {', '.join(covered)})" if covered else ""))
    record_read(Path(model.source_file), model.source_sha256)
    return model, ""


def resolve(scenario: Scenario, file: str | Path | None = None) -> ResolvedScenario:
    """Check references and build the runtime description; raises InputErrors naming file and field.
    Records the sha256 of every file it reads (profiles, models, workloads, cost defaults)."""
    with recording_reads() as reads:
        rs = _resolve(scenario, file)
    return dataclasses.replace(rs, input_hashes=dict(sorted(reads.items())))


def _resolve(scenario: Scenario, file: str | Path | None = None) -> ResolvedScenario:
    path = Path(file) if file is not None else None
    fname = str(file) if file is not None else f"<scenario {scenario.name}>"
    errors: list[InputError] = []
    profile_dirs = search_dirs(path, "hardware_profiles", PROFILES_DIR)
    workload_dirs = search_dirs(path, "workloads", WORKLOADS_DIR)
    models = load_models(profile_dirs)
    engines = load_engines(profile_dirs)

    _check_unique(scenario, fname, errors)
    pools = {p.name: p for p in scenario.pools}
    profiles: dict[str, HardwareProfile] = {}
    for i, p in enumerate(scenario.pools):
        try:
            profiles[p.name] = load_profile(profile_dirs, p.sku, fname, f"pools[{i}].sku")
        except InputError as e:
            errors.append(e)
            continue
    price_book: PriceBook | None = None
    try:
        price_book = load_price_book(profile_dirs, path, scenario.finance.price_book, fname)
        _check_pool_prices(scenario, profiles, price_book, fname, errors)
    except InputError as e:
        errors.append(e)

    used: dict[str, int] = {}
    deployments: list[ResolvedDeployment] = []
    warnings: list[str] = []
    for i, d in enumerate(scenario.deployments):
        at = f"deployments[{i}]"
        if d.engine not in engines:
            errors.append(InputError(fname, f"{at}.engine", f"unknown engine {d.engine!r} (engines: {', '.join(sorted(engines))})"))
            continue
        preset = engines[d.engine]
        unset = {k: v for k, v in preset.defaults.model_dump(exclude_none=True).items() if k not in d.model_fields_set}
        d = d.model_copy(update=unset)  # the preset's defaults for what the scenario leaves out
        if preset.max_num_seqs_built is not None and d.max_num_seqs > preset.max_num_seqs_built:
            errors.append(InputError(fname, f"{at}.max_num_seqs",
                                     f"{d.engine} engines are built for at most {preset.max_num_seqs_built} sequences"))
            continue
        if d.pool not in pools:
            errors.append(InputError(fname, f"{at}.pool", f"unknown pool {d.pool!r} (pools: {sorted(pools)})"))
            continue
        prefill_extra = d.disaggregated.prefill_replicas if d.disaggregated is not None else 0
        peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
        used[d.pool] = used.get(d.pool, 0) + (peak + prefill_extra) * d.tp * d.pp
        if d.model not in models:
            errors.append(
                InputError(fname, f"{at}.model", f"unknown model {d.model!r} (known: {', '.join(sorted(models))})")
            )
            continue
        profile = profiles.get(d.pool)
        if profile is None:
            continue
        if profile.supported_models is not None and d.model not in profile.supported_models:
            errors.append(
                InputError(
                    fname,
                    f"{at}.model",
                    f"{profile.sku} cannot run {d.model!r} (supported: {', '.join(profile.supported_models)})",
                )
            )
            continue
        arch = models[d.model]
        kv_dtype = kv_dtype_for(d.dtype, d.kv_dtype)
        spec_cfg = d.speculative
        draft_arch = None
        if spec_cfg is not None and spec_cfg.draft_model is not None:
            if spec_cfg.draft_model not in models:
                errors.append(InputError(fname, f"{at}.speculative.draft_model",
                                         f"unknown model {spec_cfg.draft_model!r} (known: {', '.join(sorted(models))})"))
                continue
            draft_arch = models[spec_cfg.draft_model]
        extra = draft_arch.weight_bytes(d.dtype) if draft_arch is not None else 0.0
        # the engine's own fraction unless the scenario sets gpu_memory_utilization (hardware/memory.py)
        mem = plan_memory(arch, profile.spec, d.dtype, kv_dtype, d.tp * d.pp,
                          d.gpu_memory_utilization if "gpu_memory_utilization" in d.model_fields_set else None, extra,
                          rule=preset.memory, max_num_batched_tokens=d.max_num_batched_tokens,
                          max_num_seqs=d.max_num_seqs)
        if not mem.fits:
            errors.append(
                InputError(
                    fname,
                    f"{at}",
                    f"{d.model} in {d.dtype} does not fit {d.tp * d.pp} x {profile.sku} under {d.engine}'s memory rule: "
                    f"needs {(mem.weight_bytes_per_device + mem.reserve_bytes_per_device) / 2**30:.1f} GiB per device "
                    f"for weights, activations and non-torch memory, {mem.usable_bytes_per_device / 2**30:.1f} GiB "
                    f"usable ({mem.fraction:.0%} of the {mem.engine_total_bytes / 2**30:.1f} GiB an engine sees)",
                )
            )
            continue
        kv_tokens = d.kv_cache_tokens if d.kv_cache_tokens is not None else mem.kv_capacity_tokens
        if d.kv_cache_tokens is not None:
            devices = d.tp * d.pp
            kv_bytes = d.kv_cache_tokens * mem.kv_bytes_per_token
            if kv_bytes > MAX_KV_OVERCOMMIT * mem.device_bytes * devices:
                errors.append(InputError(fname, f"{at}.kv_cache_tokens",
                                         f"{d.kv_cache_tokens:,} tokens of {d.model} KV take {kv_bytes / 1e9:.3g} GB, more "
                                         f"than {MAX_KV_OVERCOMMIT:g}x the {mem.device_bytes * devices / 1e9:g} GB of its "
                                         f"{devices} x {profile.sku}; the devices hold ~{mem.kv_capacity_tokens:,} tokens"))
                continue
            if kv_bytes > mem.kv_bytes_per_device * devices:
                warnings.append(f"{fname}: {at}.kv_cache_tokens: {d.kv_cache_tokens:,} tokens of KV take "
                                f"{kv_bytes / 1e9:.3g} GB but {devices} x {profile.sku} leave "
                                f"{max(mem.kv_bytes_per_device, 0) * devices / 1e9:.3g} GB for it (~{mem.kv_capacity_tokens:,} "
                                "tokens): the run assumes memory the devices do not have")
        kv_blocks = kv_tokens // d.pp // d.block_size  # per micro-batch engine: pp share the replica's KV
        if kv_blocks < 1:
            errors.append(InputError(fname, f"{at}.kv_cache_tokens", f"smaller than one block ({d.block_size} tokens)"))
            continue
        try:
            step_time, label = choose_step_time(d, profile, arch, profile_dirs, kv_dtype, preset, at, fname)
        except InputErrors as e:
            errors.extend(e.errors)
            continue
        profiles[d.pool] = with_measured_power(d, profiles[d.pool], profile_dirs)
        if d.tp * d.pp > 1 and profile.spec.interconnect_gb_s is None and isinstance(step_time, RooflineModel):
            errors.append(InputError(fname, f"{at}.tp", f"{profile.sku} has no interconnect bandwidth for tp x pp > 1"))
            continue
        if d.disaggregated is not None and (d.pp > 1 or d.reserved or scenario.routing.load_balancer == "pull"):
            errors.append(InputError(fname, f"{at}.disaggregated",
                                     "disaggregation is modelled without pipeline parallelism, reservations or pull balancing"))
            continue
        if d.expert_parallel and not arch.is_moe:
            errors.append(InputError(fname, f"{at}.expert_parallel", f"{d.model} is not a mixture-of-experts model"))
            continue
        if spec_cfg is not None:
            draft = None
            if draft_arch is not None:
                r = profile.roofline
                # the draft runs inside the same engine iteration: its passes add kernel time, not step overhead
                factors = RooflineStepTime(compute_efficiency=r.compute_efficiency,
                                           memory_efficiency=r.memory_efficiency, step_overhead_s=0.0)
                draft = RooflineModel(draft_arch, profile.spec, factors, d.dtype, kv_dtype, d.tp)
            step_time = SpeculativeModel(step_time, spec_cfg.k, spec_cfg.acceptance, draft, spec_cfg.draft_step_fraction)
            label += f", speculative k={spec_cfg.k} a={spec_cfg.acceptance:g} (E={step_time.tokens_per_step:.2f} tokens/step)"
        max_len = d.max_model_len or arch.max_context_tokens
        deployments.append(
            ResolvedDeployment(
                index=len(deployments),
                config=d,
                pool=pools[d.pool],
                profile=profile,
                arch=arch,
                step_time=step_time,
                step_time_source=label,
                memory=mem,
                kv_capacity_tokens=kv_tokens,
                kv_blocks=kv_blocks,
                max_model_len=max_len,
            )
        )
    for name, n in used.items():
        i = [p.name for p in scenario.pools].index(name)
        if n > pools[name].count:
            errors.append(
                InputError(
                    fname,
                    f"pools[{i}].count",
                    f"pool {name!r} has {pools[name].count} accelerators but its deployments need {n} (replicas x tp x pp)",
                )
            )

    _check_training(scenario, used, fname, errors)
    for kind in ("replica_failures", "outages", "spot_reclamations", "rolling_restarts"):
        for i, f in enumerate(getattr(scenario.faults, kind)):
            if f.pool not in pools:
                errors.append(InputError(fname, f"faults.{kind}[{i}].pool", f"unknown pool {f.pool!r} (pools: {sorted(pools)})"))

    by_name = {d.config.name: d.index for d in deployments}
    declared = {d.name for d in scenario.deployments}
    routes = _resolve_routes(scenario, by_name, declared, fname, errors)
    route_index = {r.name: i for i, r in enumerate(scenario.routing.routes)}
    known = sorted(declared | set(route_index))
    sc_index = {sc.name: i for i, sc in enumerate(scenario.service_classes)}
    tenant_index = {t.name: i for i, t in enumerate(scenario.tenants)}
    _check_deployment_extras(scenario, sc_index, fname, errors)

    def target_of(name: str) -> Target | None:
        if name in route_index:
            return Target("route", route_index[name])
        if name in by_name:
            return Target("deployment", by_name[name])
        return None

    classes: list[ResolvedClass] = []
    for i, c in enumerate(scenario.traffic.classes):
        at = f"traffic.classes[{i}]"
        wanted = [("target", c.target)] if c.target is not None else []
        wanted += [(f"targets.{role}", dep) for role, dep in (c.targets or {}).items()]
        bad = [(f, d) for f, d in wanted if d not in declared and d not in route_index]
        for f, d in bad:
            errors.append(InputError(fname, f"{at}.{f}", f"unknown deployment or route {d!r} (known: {known})"))
        extras: dict[str, int] = {}
        if c.service_class is not None:
            if c.service_class not in sc_index:
                errors.append(InputError(fname, f"{at}.service_class",
                                         f"unknown service class {c.service_class!r} (service_classes: {sorted(sc_index)})"))
            else:
                extras["service_class"] = sc_index[c.service_class]
                extras["priority"] = scenario.service_classes[sc_index[c.service_class]].priority
        if c.tenant is not None:
            if c.tenant not in tenant_index:
                errors.append(InputError(fname, f"{at}.tenant", f"unknown tenant {c.tenant!r} (tenants: {sorted(tenant_index)})"))
            else:
                extras["tenant"] = tenant_index[c.tenant]
        if c.trace is not None:
            trace_path = Path(c.trace.file)
            if not trace_path.is_absolute() and path is not None:
                trace_path = path.resolve().parent / trace_path
            try:
                parsed = parse_trace(trace_path, c.trace.format)
                rows = replay_rows(parsed, c.trace)
                warnings += [f"{trace_path}: {b} (row skipped)" for b in parsed.bad_rows]
            except (InputError, InputErrors) as e:
                errors.extend(e.errors if isinstance(e, InputErrors) else [e])
                continue
            if rows.arrival_s is not None and len(rows.arrival_s) == 0:
                errors.append(InputError(fname, f"{at}.trace", f"no request of {trace_path} falls in the window"))
                continue
            if c.target is None:
                errors.append(InputError(fname, f"{at}.target", "a trace class needs a target deployment or route"))
                continue
            t = target_of(c.target)
            if t is None:
                continue
            classes.append(ResolvedClass(len(classes), c, t, trace=rows, **extras))
            continue
        try:
            workload = _workload(c, workload_dirs, fname, at)
        except (InputError, InputErrors) as e:
            errors.extend(e.errors if isinstance(e, InputErrors) else [e])
            continue
        targets = {f: target_of(d) for f, d in wanted}
        if bad or any(t is None for t in targets.values()):
            continue
        if isinstance(workload, AgentWorkload):
            roles: dict[str, Target] = {}
            for role in sorted(agent_roles(workload.steps)):
                dep = (c.targets or {}).get(role, c.target)
                if dep is None:
                    errors.append(InputError(fname, f"{at}.targets", f"no deployment for model role {role!r} of workload {workload.name!r}"))
                    continue
                t = target_of(dep)
                assert t is not None
                roles[role] = t
            classes.append(ResolvedClass(len(classes), c, None, agent=workload, roles=roles, **extras))
            continue
        if c.target is None:
            errors.append(InputError(fname, f"{at}.target", "plain requests need a target deployment or route"))
            continue
        inp, out = workload if isinstance(workload, tuple) else (workload.input_tokens, workload.output_tokens)
        target = target_of(c.target)
        classes.append(ResolvedClass(len(classes), c, target, input_tokens=inp, output_tokens=out, **extras))
        if target is not None and target.kind == "deployment":
            dep = deployments[target.index]
            mean_tokens = inp.mean() + out.mean()
            if mean_tokens > dep.kv_capacity_tokens:
                warnings.append(f"{fname}: {at}: its requests average {mean_tokens:,.0f} tokens but deployment "
                                f"{dep.config.name!r} holds {dep.kv_capacity_tokens:,} KV tokens per replica: most will "
                                "end rejected_too_long")
            elif mean_tokens > dep.max_model_len:
                warnings.append(f"{fname}: {at}: its requests average {mean_tokens:,.0f} tokens but deployment "
                                f"{dep.config.name!r} accepts at most {dep.max_model_len:,} (max_model_len or the "
                                "model's context): most will end rejected_too_long")

    tools = {t.name for c in classes if c.agent is not None for t in c.agent.tools}
    for i, b in enumerate(scenario.faults.tool_brownouts):
        if b.service not in tools:
            errors.append(InputError(fname, f"faults.tool_brownouts[{i}].service",
                                     f"no agent tool {b.service!r} (tools: {', '.join(sorted(tools)) or 'none'})"))
    workloads = sorted({c.agent.name for c in classes if c.agent is not None})
    for i, rb in enumerate(scenario.faults.retrieval_brownouts):
        if rb.workload is not None and rb.workload not in workloads:
            errors.append(InputError(fname, f"faults.retrieval_brownouts[{i}].workload",
                                     f"no agent workload {rb.workload!r} (workloads: {', '.join(workloads) or 'none'})"))
    needs_process = any(c.follows_arrival_process for c in classes)
    a = scenario.traffic.arrival
    if needs_process and a is not None:
        _check_arrivals(scenario, classes, fname, errors)
    if needs_process and scenario.traffic.arrival is None:
        errors.append(InputError(fname, "traffic.arrival", "required: some classes do not replay a timestamped trace"))
    _check_periodic_work(scenario, fname, errors)
    if errors:
        raise InputErrors(errors)
    assert price_book is not None
    return ResolvedScenario(scenario, fname, deployments, classes, profiles, price_book, routes, warnings=warnings)


def _check_arrivals(scenario: Scenario, classes: list[ResolvedClass], fname: str, errors: list[InputError]) -> None:
    """The arrival process's total work: arrivals drawn (at its peak rate: diurnal thinning draws candidates
    there; a closed loop's clients at most one per MIN_CLOSED_LOOP_CYCLE_S or mean think time), MMPP state
    switches, and agent steps (expected tasks x expected steps per task)."""
    a = scenario.traffic.arrival
    assert a is not None
    horizon = scenario.sim.horizon_s
    if isinstance(a, ClosedArrivals):
        # Each client sends at t = 0, then at most once per cycle; a cycle lasts at least the floor and, on
        # average, at least the mean think time (E[max(floor, think + response)] >= max(floor, E[think])).
        cycle = max(MIN_CLOSED_LOOP_CYCLE_S, a.think_time.mean())
        expected = a.concurrency * (1.0 + horizon / cycle)
        if not expected <= MAX_ARRIVALS:
            errors.append(InputError(fname, "traffic.arrival.concurrency",
                                     f"{a.concurrency:,} clients x horizon {horizon:g} s / a cycle of at least "
                                     f"{cycle:.3g} s (the larger of the mean think time and the "
                                     f"{MIN_CLOSED_LOOP_CYCLE_S:g} s floor between sends, which requests that end at "
                                     f"once reach) means up to ~{expected:.3g} requests, more than the "
                                     f"{MAX_ARRIVALS:.0e} one run simulates; fewer clients, a longer think time or a "
                                     "shorter sim.horizon_s"))
            return
    else:
        peak = peak_rate_per_s(a)
        expected = peak * horizon
        if not expected <= MAX_ARRIVALS:
            field = "traffic.arrival.rate_per_s" if hasattr(a, "rate_per_s") else (
                "traffic.arrival.mean_rate_per_s" if hasattr(a, "mean_rate_per_s") else "traffic.arrival.states")
            what = {"diurnal": "peak rate (mean x the largest multipliers and flash events)",
                    "mmpp": "busiest state's rate"}.get(a.process, "rate")
            errors.append(InputError(fname, field, f"{what} {peak:.3g}/s x horizon {horizon:g} s means ~{expected:.3g} "
                                     f"arrivals, more than the {MAX_ARRIVALS:.0e} one run simulates; shorten "
                                     "sim.horizon_s or lower the rate"))
            return
    if isinstance(a, MmppArrivals):
        switches = a.switches_per_s() * horizon
        if switches > MAX_STATE_SWITCHES:
            j = min(range(len(a.states)), key=lambda k: a.states[k].mean_sojourn_s)
            errors.append(InputError(fname, f"traffic.arrival.states[{j}].mean_sojourn_s",
                                     f"sojourns this short mean ~{switches:.3g} state switches over the horizon, more "
                                     f"than the {MAX_STATE_SWITCHES:,} one run draws; lengthen the sojourns"))
    weights = {c.index: c.config.weight for c in classes if c.follows_arrival_process}
    total_weight = sum(weights.values()) or 1.0
    hourly = [c for c in classes if c.index in weights and c.config.weight_by_hour is not None]
    at = {c.index: scenario.traffic.classes.index(c.config) for c in classes}  # resolved -> file position
    if a.process == "diurnal" and hourly and len(weights) > 1 and expected * len(weights) > MAX_HOURLY_MIX_CELLS:
        errors.append(InputError(fname, f"traffic.classes[{at[hourly[0].index]}].weight_by_hour",
                                 f"~{expected:.3g} arrivals x {len(weights)} classes drawn by hour means "
                                 f"~{expected * len(weights):.3g} weights, more than the {MAX_HOURLY_MIX_CELLS:.0e} one "
                                 "run holds; fewer classes or a shorter horizon"))
    for c in classes:
        if c.agent is None or c.index not in weights:
            continue
        per_task = task_steps(c.agent).expected
        steps = expected * weights[c.index] / total_weight * per_task
        if steps > MAX_AGENT_STEPS:
            errors.append(InputError(fname, f"traffic.classes[{at[c.index]}].workload",
                                     f"~{expected * weights[c.index] / total_weight:.3g} tasks of {c.agent.name!r} x "
                                     f"~{per_task:.3g} steps each means ~{steps:.3g} steps, more than the "
                                     f"{MAX_AGENT_STEPS:.0e} one run simulates; shorten the horizon, lower the rate or "
                                     "the workload's loop and retry caps"))


def _most_replicas(d: Deployment) -> int:
    """The most replicas a deployment runs at once: autoscaled to its maximum, with its prefill replicas."""
    peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
    return peak + (d.disaggregated.prefill_replicas if d.disaggregated is not None else 0)


def _replicas_by_pool(scenario: Scenario) -> dict[str, list[tuple[int, int]]]:
    """Pool -> (most replicas, devices per replica) of each deployment on it."""
    out: dict[str, list[tuple[int, int]]] = {}
    for d in scenario.deployments:
        out.setdefault(d.pool, []).append((_most_replicas(d), d.tp * d.pp))
    return out


def _check_periodic_work(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    """Work that repeats over the run's span (horizon plus the longest drain): timeline rows, autoscaler
    decisions, fault events and training events. Each is refused past its bound in simfactory.config.limits."""
    sim = scenario.sim
    span = sim.span_s
    by_pool = _replicas_by_pool(scenario)
    engines = sum(_most_replicas(d) * d.pp for d in scenario.deployments)  # pp micro-batch engines per replica
    cells = span / sim.timeline_resolution_s * engines
    if cells > MAX_TIMELINE_CELLS:
        errors.append(InputError(fname, "sim.timeline_resolution_s",
                                 f"{span / sim.timeline_resolution_s:.3g} samples x {engines:,} replica engines means "
                                 f"~{cells:.3g} timeline rows, more than the {MAX_TIMELINE_CELLS:.0e} one run keeps; "
                                 "use a coarser resolution"))
    for i, d in enumerate(scenario.deployments):
        if d.autoscaling is not None and span / d.autoscaling.interval_s > MAX_AUTOSCALER_TICKS:
            errors.append(InputError(fname, f"deployments[{i}].autoscaling.interval_s",
                                     f"{d.autoscaling.interval_s:g} s means ~{span / d.autoscaling.interval_s:.3g} "
                                     f"decisions over {span:g} s, more than the {MAX_AUTOSCALER_TICKS:,} one run takes"))
    faults = scenario.faults
    for i, f in enumerate(faults.replica_failures):
        events = sum(n * span / (f.mtbf_s / (devices if f.per == "device" else 1) + f.mttr_s)
                     for n, devices in by_pool.get(f.pool, []))
        _check_fault_events(events, f"faults.replica_failures[{i}].mtbf_s", fname, errors)
    for i, sp in enumerate(faults.spot_reclamations):
        events = sum(n for n, _ in by_pool.get(sp.pool, [])) * span / (
            3600.0 / sp.per_replica_hour + sp.notice_s + sp.replacement_s)
        _check_fault_events(events, f"faults.spot_reclamations[{i}].per_replica_hour", fname, errors)
    for i, rr in enumerate(faults.rolling_restarts):
        events = sum(n for n, _ in by_pool.get(rr.pool, [])) * (min(rr.drain_s, span) + 2)  # drain polls every 1 s
        _check_fault_events(events, f"faults.rolling_restarts[{i}].drain_s", fname, errors)
    for i, job in enumerate(scenario.training):
        events = job.expected_events()
        if not events <= MAX_TRAINING_EVENTS:
            errors.append(InputError(fname, f"training[{i}]",
                                     f"~{events:.3g} checkpoint segments and failures to simulate ({job.replications} "
                                     f"replications, the checkpoint interval scan included), more than the "
                                     f"{MAX_TRAINING_EVENTS:.0e} one run takes: the job barely progresses between "
                                     "failures (node_mtbf_h, checkpoint_interval_h, work); check them"))


def _check_fault_events(events: float, field: str, fname: str, errors: list[InputError]) -> None:
    if events > MAX_FAULT_EVENTS:
        errors.append(InputError(fname, field, f"means ~{events:.3g} fault events over the run, more than the "
                                 f"{MAX_FAULT_EVENTS:,} one run simulates"))


def _resolve_routes(
    scenario: Scenario, by_name: dict[str, int], declared: set[str], fname: str, errors: list[InputError]
) -> list[ResolvedRoute]:
    route_names = [r.name for r in scenario.routing.routes]
    routes: list[ResolvedRoute] = []
    for i, r in enumerate(scenario.routing.routes):
        at = f"routing.routes[{i}]"
        if r.name in declared:
            errors.append(InputError(fname, f"{at}.name", f"{r.name!r} is also a deployment name; use distinct names"))
        if r.name in route_names[:i]:
            errors.append(InputError(fname, f"{at}.name", f"duplicate route name {r.name!r}"))
        ok = True
        for j, tier in enumerate(r.tiers):
            if tier.deployment not in declared:
                errors.append(InputError(fname, f"{at}.tiers[{j}].deployment",
                                         f"unknown tier deployment {tier.deployment!r} (deployments: {sorted(declared)})"))
                ok = False
        for dep in r.weights:
            if dep not in declared:
                errors.append(InputError(fname, f"{at}.weights.{dep}", f"unknown deployment {dep!r} (deployments: {sorted(declared)})"))
                ok = False
        for j, dep in enumerate(r.candidates):
            if dep not in declared:
                errors.append(InputError(fname, f"{at}.candidates[{j}]", f"unknown deployment {dep!r} (deployments: {sorted(declared)})"))
                ok = False
        fallback: Target | None = None
        if r.fallback is not None:
            name = r.fallback.deployment
            if name in route_names:
                fallback = Target("route", route_names.index(name))
            elif name in declared:
                fallback = Target("deployment", by_name[name]) if name in by_name else None
            else:
                errors.append(InputError(fname, f"{at}.fallback.deployment",
                                         f"unknown deployment or route {name!r} (known: {sorted(declared | set(route_names))})"))
                ok = False
        names = [t.deployment for t in r.tiers] + list(r.weights) + list(r.candidates)
        if not ok or any(d not in by_name for d in names):
            continue
        routes.append(ResolvedRoute(
            i, r, [(by_name[t.deployment], t) for t in r.tiers], [(by_name[d], w) for d, w in r.weights.items()],
            fallback, r.fallback.max_waiting if r.fallback is not None and r.fallback.max_waiting else 0,
            [by_name[d] for d in r.candidates],
        ))
    # fallbacks that lead back to where they started would bounce a request forever
    for i, r in enumerate(scenario.routing.routes):
        seen = [r.name]
        nxt = r.fallback.deployment if r.fallback is not None else None
        while nxt in route_names:
            if nxt in seen:
                errors.append(InputError(fname, f"routing.routes[{i}].fallback",
                                         "fallback cycle: " + " -> ".join([*seen, nxt])))
                break
            seen.append(nxt)
            f = scenario.routing.routes[route_names.index(nxt)].fallback
            nxt = f.deployment if f is not None else None
    return routes


def _check_deployment_extras(scenario: Scenario, sc_index: dict[str, int], fname: str, errors: list[InputError]) -> None:
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


def _check_unique(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    for section, names in (
        ("pools", [p.name for p in scenario.pools]),
        ("deployments", [d.name for d in scenario.deployments]),
        ("traffic.classes", [c.name for c in scenario.traffic.classes]),
    ):
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                errors.append(InputError(fname, f"{section}[{i}].name", f"duplicate name {n!r}"))
            seen.add(n)


WORKLOAD_ADAPTER: TypeAdapter[RequestWorkload | AgentWorkload] = TypeAdapter(Workload)


def _workload(
    c: RequestClass, dirs: list[Path], fname: str, at: str
) -> tuple[Distribution, Distribution] | RequestWorkload | AgentWorkload:
    if c.workload is None:
        assert c.input_tokens is not None and c.output_tokens is not None  # guaranteed by the schema
        return c.input_tokens, c.output_tokens
    path = find_file(dirs, c.workload)
    if path is None:
        raise InputError(fname, f"{at}.workload", f"no workload {c.workload!r} (available: {', '.join(available(dirs))})")
    return load_workload(path)


def load_workload(path: Path) -> RequestWorkload | AgentWorkload:
    """Read and validate a workload file, including its internal references (tools, reviewer pools)."""
    w = validate_union(WORKLOAD_ADAPTER, read_yaml(path), str(path))
    if isinstance(w, AgentWorkload):
        check_agent_references(w, str(path))
    return w


def walk_steps(steps: list, path: str):  # type: ignore[no-untyped-def]
    """Yield (field path, step) for every step of a step tree, depth first."""
    for i, st in enumerate(steps):
        here = f"{path}[{i}]"
        yield here, st
        for attr in ("steps", "fallback"):
            sub = getattr(st, attr, None)
            if sub:
                yield from walk_steps(sub, f"{here}.{attr}")
        for j, branch in enumerate(getattr(st, "branches", None) or []):
            yield from walk_steps(branch, f"{here}.branches[{j}]")
        for j, opt in enumerate(getattr(st, "options", None) or []):
            yield from walk_steps(opt.steps, f"{here}.options[{j}].steps")


def agent_steps(w: AgentWorkload):  # type: ignore[no-untyped-def]
    yield from walk_steps(w.steps, "steps")
    if w.budget is not None and w.budget.fallback:
        yield from walk_steps(w.budget.fallback, "budget.fallback")


def agent_roles(steps: list) -> set[str]:  # type: ignore[type-arg]
    return {st.model for _, st in walk_steps(steps, "steps") if isinstance(st, LlmStep)}


def check_agent_references(w: AgentWorkload, file: str) -> None:
    tools = {t.name for t in w.tools}
    humans = {h.name for h in w.humans}
    errors = []
    for where, st in agent_steps(w):
        if isinstance(st, ToolStep) and st.service not in tools:
            errors.append(InputError(file, f"{where}.service", f"unknown tool service {st.service!r} (tools: {sorted(tools)})"))
        if isinstance(st, HumanStep) and st.pool not in humans:
            errors.append(InputError(file, f"{where}.pool", f"unknown reviewer pool {st.pool!r} (humans: {sorted(humans)})"))
    for label, names in (("tools", [t.name for t in w.tools]), ("humans", [h.name for h in w.humans])):
        if len(set(names)) != len(names):
            errors.append(InputError(file, label, "duplicate names"))
    if errors:
        raise InputErrors(errors)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (references are checked by `resolve`)."""
    p = Path(path)
    return validate(Scenario, read_yaml(p), str(p))


def load_and_resolve(path: str | Path) -> ResolvedScenario:
    return resolve(load_scenario(path), path)
