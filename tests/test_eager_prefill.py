"""An engine that launches prefill forwards without CUDA graphs (SGLang before 0.5.10; after it, deployments with DP
attention, expert parallelism, EPLB, speculative decoding or disaggregated prefill) cannot run a step with prompt
tokens faster than its host launches the kernels of every layer: the EagerPrefill prior (hardware_profiles/
engines.yaml) sets that floor by layer kind, for the kernel tables and the roofline alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import shipped_engines
import yaml

from simfactory.config.loader import load_model_file
from simfactory.config.profile import EagerPrefill, ModelCatalog
from simfactory.hardware.kernels import KernelStepTime, kernel_step_time
from simfactory.hardware.step_time import RooflineModel, StepLoad, StepTimeModel
from simfactory.resolve import load_and_resolve
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.queue import WaitingQueue
from simfactory.sim.requests import RequestTable

ROOT = Path(__file__).resolve().parents[1]
MODELS = {m.id: m for m in load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models}
ENGINES = shipped_engines()


def prompt(tokens: int, decodes: int = 0, kv: float = 0.0) -> StepLoad:
    return StepLoad(tokens, decodes, kv, tokens * (tokens + 1) / 2)


def test_the_floor_counts_dense_and_moe_layers_at_their_own_rate():
    eager = EagerPrefill(dense_layer_s=0.001, moe_layer_s=0.003, source="test", as_of="2026-12")
    r1, llama = MODELS["deepseek-r1"], MODELS["llama-3.1-70b"]
    assert (r1.layers, r1.moe_layers) == (61, 58)  # first_k_dense_replace 3
    assert eager.floor_s(r1) == pytest.approx(3 * 0.001 + 58 * 0.003)
    assert eager.floor_s(llama) == pytest.approx(llama.layers * 0.001)
    prior = ENGINES["sglang-0.5"].eager_prefill
    assert prior is not None and prior.only_with == [] and prior.source.count("https://") >= 5
    assert ENGINES["sglang"].eager_prefill is not None and ENGINES["sglang"].eager_prefill.only_with
    assert all(ENGINES[e].eager_prefill is None for e in ("vllm", "tensorrt-llm", "nim"))


def test_a_short_prefill_takes_the_launch_time_and_a_long_one_its_gpu_time():
    """max(kernels, floor) for steps with prompt tokens; decode-only steps (CUDA graphs) never see the floor."""
    arch = MODELS["deepseek-r1"]
    args = (arch, "deepseek-r1", "b200", "sglang", None, "fp8", "fp8", 8, 0.0005)
    plain = kernel_step_time(*args)
    floored = kernel_step_time(*args, prefill_floor_s=0.09)
    assert isinstance(plain, KernelStepTime) and isinstance(floored, KernelStepTime)
    short, long_ = prompt(128), prompt(16384)
    assert plain.step_s(short) < 0.09 < plain.step_s(long_)  # the floor binds only where the GPU work is shorter
    assert floored.step_s(short) == pytest.approx(0.09)
    assert floored.step_s(long_) == plain.step_s(long_)
    mixed = StepLoad(64, 32, 32 * 2000.0, 64 * 65 / 2)
    assert floored.step_s(mixed) == pytest.approx(max(0.09, plain.step_s(mixed)))
    for b in (1, 32, 256):
        decode = StepLoad(0, b, b * 1000.0, 0.0)
        assert floored.step_s(decode) == plain.step_s(decode)
        assert floored.decode_affine(b, b * 1000.0, b, 50) == plain.decode_affine(b, b * 1000.0, b, 50)
    parts = floored.breakdown_s(short)
    assert sum(parts.values()) == pytest.approx(floored.step_s(short))
    assert parts["launch_wait"] == pytest.approx(0.09 - plain.step_s(short))
    assert floored.breakdown_s(long_)["launch_wait"] == 0.0
    assert "at least 90 ms (eager launch)" in floored.label
    with pytest.raises(ValueError, match="prefill_floor_s"):
        KernelStepTime.__new__(KernelStepTime).__init__(
            {"tokens": [1, 2], "batch": [1, 2], "kv_len": [1, 2], "prompt_len": [1, 2]}, [0, 0], [0, 0], [0, 0],
            [[0, 0], [0, 0]], [0, 0], 0.0, prefill_floor_s=float("nan"))


def _resolve(tmp_path: Path, **deployment) -> object:
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="b200", count=8)
    doc["deployments"][0].update(replicas=1, tp=8, **deployment)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    return load_and_resolve(tmp_path / "s.yaml").deployments[0]


@pytest.mark.parametrize("engine, extra, eager", [
    ("sglang-0.5", {}, True),  # before 0.5.10: always eager
    ("sglang", {}, False),  # piecewise CUDA graphs for prefill by default
    ("sglang", {"dp_attention": 8}, True),  # ... which DP attention turns off
    ("sglang", {"expert_parallel": True}, True),  # ... and so does all-to-all expert parallelism
    ("vllm", {"dp_attention": 8}, False),  # V1 captures prefill in piecewise graphs: no floor
    ("vllm-0.6", {}, True),  # V0 runs every step with prompt tokens eagerly (graphs for decode-only steps)
])
def test_resolve_applies_the_prior_where_the_engine_prefills_eagerly(tmp_path, engine, extra, eager):
    arch = MODELS["deepseek-r1"]
    d = _resolve(tmp_path, model="deepseek-r1", dtype="fp8", engine=engine, **extra)
    floor_s = ENGINES["sglang"].eager_prefill.floor_s(arch)
    step = d.step_time  # kernel tables where they hold the layout (not B200 FP8 with DP attention), else roofline
    if isinstance(step, RooflineModel):
        assert step.factors.prefill_floor_s == (pytest.approx(floor_s) if eager else 0.0)
        assert ("eager prefill >=" in d.step_time_source) == eager
    else:
        inner = getattr(step, "model", step)  # DP attention wraps the kernel model
        assert isinstance(inner, KernelStepTime), d.step_time_source
        assert inner.prefill_floor_s == (pytest.approx(floor_s) if eager else 0.0)
        assert ("eager launch" in d.step_time_source) == eager
    assert step.step_s(prompt(32)) >= (floor_s if eager else 0.0)


def test_the_roofline_fallback_gets_the_floor_too(tmp_path):
    """Llama 4 Maverick has no kernel tables: its roofline carries the same prior (24 dense and 24 MoE layers,
    interleaved)."""
    d = _resolve(tmp_path, model="llama-4-maverick", dtype="fp8", engine="sglang-0.5")
    assert isinstance(d.step_time, RooflineModel)
    eager = ENGINES["sglang-0.5"].eager_prefill
    floor_s = eager.floor_s(MODELS["llama-4-maverick"])
    assert d.step_time.factors.prefill_floor_s == pytest.approx(floor_s)
    assert floor_s == pytest.approx(24 * eager.dense_layer_s + 24 * eager.moe_layer_s)
    assert d.step_time.step_s(prompt(16)) == pytest.approx(floor_s)
    assert f"eager prefill >= {floor_s * 1e3:.4g} ms" in d.step_time_source
    plain = _resolve(tmp_path, model="llama-4-maverick", dtype="fp8", engine="sglang")
    assert plain.step_time.factors.prefill_floor_s == 0.0 and plain.step_time.step_s(prompt(16)) < floor_s


def test_a_sweep_fit_keeps_the_engines_floor_it_does_not_fit():
    """calibrate fit on a concurrency sweep fits overhead and a GEMM multiplier through simulations; the eager
    prefill floor of the engine's prior stays in the spec it writes (kernel tables and roofline alike)."""
    from simfactory.calibration.sweep_fit import _kernels_family, _roofline_family
    from simfactory.config.profile import RooflineStepTime

    arch = MODELS["deepseek-r1"]
    prior = kernel_step_time(arch, "deepseek-r1", "b200", "sglang", None, "fp8", "fp8", 8, 0.0005,
                             prefill_floor_s=0.09)
    assert isinstance(prior, KernelStepTime)
    fam = _kernels_family(prior, lambda spec: prior)
    for x in fam.simplex:
        assert fam.to_spec(x).prefill_floor_s == 0.09
    start = RooflineStepTime(compute_efficiency=0.5, memory_efficiency=0.7, step_overhead_s=0.002, prefill_floor_s=0.12)
    roof = _roofline_family(start, lambda spec: prior)
    assert roof.to_spec(roof.x0).prefill_floor_s == 0.12


def test_a_speculative_verify_pass_runs_as_a_graph_without_the_floor(tmp_path):
    """SGLang captures its verify and draft passes as CUDA graphs: decode steps with MTP pay no eager floor (the
    verify pass counts its draft tokens as prompt tokens, which must not look like a prefill), while a step with
    real prompt tokens still does."""
    spec = {"k": 3, "acceptance": 0.7, "mtp": True}
    d = _resolve(tmp_path, model="deepseek-r1", dtype="fp8", engine="sglang", speculative=spec)  # only_with: on
    floor_s = ENGINES["sglang"].eager_prefill.floor_s(MODELS["deepseek-r1"])
    assert d.step_time.target.prefill_floor_s == pytest.approx(floor_s)
    no_floor = dataclasses.replace(d.step_time, target=d.step_time.target.without_prefill_floor())
    assert no_floor.target.prefill_floor_s == 0.0 and no_floor.graphed is no_floor.target
    for b in (1, 16, 128):
        decode = StepLoad(0, b, b * 2000.0, 0.0)
        assert d.step_time.step_s(decode) == pytest.approx(no_floor.step_s(decode))
        assert d.step_time.step_s(decode) < floor_s
    assert d.step_time.step_s(prompt(64)) == pytest.approx(floor_s)
    assert d.step_time.step_s(StepLoad(64, 8, 8000.0, 64 * 65 / 2)) >= floor_s


def test_disaggregated_prefill_replicas_prefill_eagerly(tmp_path):
    """The sglang preset turns the floor on for disaggregated serving: on the replicas that prefill, which resolve
    as a deployment of their own shape."""
    dis = {"prefill_replicas": 1, "prefill": {"tp": 8}}
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="b200", count=16)
    doc["deployments"][0].update(replicas=1, tp=8, model="deepseek-r1", dtype="fp8", engine="sglang",
                                 disaggregated=dis)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    rd = load_and_resolve(tmp_path / "s.yaml").deployments[0]
    floor_s = ENGINES["sglang"].eager_prefill.floor_s(MODELS["deepseek-r1"])
    assert rd.prefill is not None
    assert rd.prefill.step_time.prefill_floor_s == pytest.approx(floor_s)
    assert rd.prefill.step_time.step_s(prompt(128)) == pytest.approx(floor_s)


def test_dp_attention_floors_the_busiest_ranks_step_not_adds_to_it():
    """With DP attention the busiest rank's whole prompts add to the even step; the floor bounds that sum."""
    arch = MODELS["deepseek-r1"]
    args = (arch, "deepseek-r1", "h200", "sglang", None, "fp8", "fp8", 8, 0.0005)
    plain = kernel_step_time(*args, dp_attention=8, ep=8)
    floored = kernel_step_time(*args, dp_attention=8, ep=8, prefill_floor_s=0.09)
    assert plain is not None and floored is not None and not isinstance(plain, KernelStepTime)
    for tokens in (128, 1024, 4096):
        load = prompt(tokens)
        assert floored.step_s(load) == pytest.approx(max(plain.step_s(load), 0.09))
        parts = floored.breakdown_s(load)
        assert sum(parts.values()) == pytest.approx(floored.step_s(load))
        assert parts["launch_wait"] == pytest.approx(max(0.0, 0.09 - plain.step_s(load)))
    assert plain.step_s(prompt(4096)) > 0.09  # long prompts are the kernels' own
    graphed = floored.without_prefill_floor()
    assert graphed.step_s(prompt(128)) == plain.step_s(prompt(128)) and floored.inner.prefill_floor_s == 0.09


def test_the_planners_rate_bound_holds_for_an_eager_engine(tmp_path):
    """plan's replica_max_rate_per_s bounds what one replica completes: a batch of prompts shares one floor, so the
    bound leaves the floor out (charging each prompt a whole floor would cap it below what a replica offered three
    prompts per floor is simulated to complete)."""
    from simfactory.api import run
    from simfactory.plan.bounds import replica_max_rate_per_s

    d = _resolve(tmp_path, model="deepseek-r1", dtype="fp8", engine="sglang-0.5")
    floor_s = d.step_time.prefill_floor_s
    bound = replica_max_rate_per_s(d.step_time, 256, d.kv_capacity_tokens, 128, 256)
    assert bound == replica_max_rate_per_s(d.step_time.without_prefill_floor(), 256, d.kv_capacity_tokens, 128, 256)
    doc = yaml.safe_load((tmp_path / "s.yaml").read_text())
    doc["traffic"] = {"arrival": {"process": "poisson", "rate_per_s": 3 / floor_s},
                      "classes": [{"name": "c", "target": doc["deployments"][0]["name"],
                                   "input_tokens": {"kind": "fixed", "value": 128},
                                   "output_tokens": {"kind": "fixed", "value": 256}}]}
    doc["sim"] = {"horizon_s": 60, "warmup_s": 10}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    done = run(tmp_path / "s.yaml", seed=1).summary["throughput"]["requests_per_s"]
    assert done > 1.5 / floor_s and bound > 1.5 / floor_s  # the floor was not charged per prompt


def test_calibration_baselines_and_serving_fits_keep_the_engines_floor():
    """The shipped model calibration compares against (microbench.shipped_roofline) and a serving fit's roofline
    (SearchSpace.clip) carry the engine's eager-prefill floor; the sglang preset's, which only DP attention and the
    like turn on, stays off for their plain tensor-parallel deployment."""
    import numpy as np

    from simfactory.calibration.microbench import shipped_roofline
    from simfactory.calibration.serving_fit import SearchSpace
    from simfactory.config.profile import HardwareProfile, RooflineStepTime
    from simfactory.config.loader import load_model_file

    b200 = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / "b200.yaml")
    arch = MODELS["deepseek-r1"]
    floor_s = ENGINES["sglang-0.5"].eager_prefill.floor_s(arch)
    assert shipped_roofline(arch, b200, "sglang-0.5", "fp8", 8).factors.prefill_floor_s == pytest.approx(floor_s)
    assert shipped_roofline(arch, b200, "sglang", "fp8", 8).factors.prefill_floor_s == 0.0
    kept = RooflineStepTime(compute_efficiency=0.9, memory_efficiency=0.9, step_overhead_s=0.0, prefill_floor_s=0.1,
                            gemm_latency_s=9e-6, gemm_ramp_tokens=170)
    clipped = SearchSpace(kept=kept).clip(np.array([0.5, 0.5, 0.001]))
    assert (clipped.prefill_floor_s, clipped.gemm_latency_s, clipped.gemm_ramp_tokens) == (0.1, 9e-6, 170)
    assert (clipped.compute_efficiency, clipped.memory_efficiency, clipped.step_overhead_s) == (0.5, 0.5, 0.001)


def test_unquantized_moe_layers_launch_fewer_kernels_than_quantized_ones():
    """An FP8 block-scaled MoE layer quantizes activations before its expert GEMMs (and DeepSeek's shared expert and
    attention projections add more); BF16 ones do not: the sglang presets price them apart, dense layers alike."""
    eager = ENGINES["sglang-0.5"].eager_prefill
    qwen = MODELS["qwen3-235b-a22b"]
    assert eager.moe_layer_unquantized_s is not None and eager.moe_layer_unquantized_s < eager.moe_layer_s
    assert eager.floor_s(qwen, "bf16") == pytest.approx(qwen.moe_layers * eager.moe_layer_unquantized_s
                                                        + (qwen.layers - qwen.moe_layers) * eager.dense_layer_s)
    assert eager.floor_s(qwen, "fp8") == eager.floor_s(qwen) > eager.floor_s(qwen, "bf16")
    llama = MODELS["llama-3.1-70b"]
    assert eager.floor_s(llama, "bf16") == eager.floor_s(llama, "fp8")  # no MoE layer: nothing differs
    no_split = EagerPrefill(dense_layer_s=0.001, moe_layer_s=0.003, source="test", as_of="2026-12")
    assert no_split.floor_s(MODELS["deepseek-r1"], "bf16") == no_split.floor_s(MODELS["deepseek-r1"], "fp8")
    from simfactory.resolve.step_time import eager_prefill_floor_s

    assert eager_prefill_floor_s(None, qwen, ENGINES["sglang-0.5"], dtype="bf16") == eager.floor_s(qwen, "bf16")


class _Floored(StepTimeModel):
    """Every step's kernels take KERNEL_S; a step with prompt tokens at least FLOOR_S (its host launch)."""

    def __init__(self, floor_s: float) -> None:
        self.floor_s = floor_s

    def step_s(self, load: StepLoad) -> float:
        return max(KERNEL_S, self.floor_s) if load.prefill_tokens else KERNEL_S

    def without_prefill_floor(self) -> StepTimeModel:
        return _Floored(0.0)

    def prefill_launch_s(self) -> float:
        return self.floor_s


KERNEL_S, FLOOR_S = 0.01, 0.035


def _first_tokens(arrivals_s: list[float], overlap: bool, exact: bool, floor_s: float = FLOOR_S,
                  budget: int = 4096, schedule: str = "decode_first", launch_overlap: bool = True,
                  prefix_syncs: bool = False, prompts: list[int] | None = None) -> tuple[list[float], list[float]]:
    """(first-token times, completion times) of prompts (10 tokens each by default) with 20-token answers arriving
    at arrivals_s."""
    env, table = FloatEnvironment(), RequestTable()
    queue = WaitingQueue(env)
    ReplicaEngine(env, 0, queue, table, _Floored(floor_s), max_num_seqs=8, max_num_batched_tokens=budget,
                  block_size=16, kv_blocks=10_000, enable_chunked_prefill=True, overlap_schedule=overlap, exact=exact,
                  schedule=schedule, eager_launch=(launch_overlap, prefix_syncs),
                  on_complete=lambda r: None, on_abort=lambda r: None)
    for at_s, tokens in zip(arrivals_s, prompts or [10] * len(arrivals_s)):
        def put(_event: object, tokens: int = tokens) -> None:
            queue.put(table.add(env.now, 0, 0, tokens, 20), 0)
        env.timeout(at_s).callbacks.append(put)
    env.run(until=5.0)
    n = len(arrivals_s)
    return [round(float(x), 9) for x in table.first_token_s[:n]], [round(float(x), 9) for x in table.completion_s[:n]]


@pytest.mark.parametrize("exact", [True, False])
def test_an_overlap_scheduler_launches_an_eager_prefill_while_the_step_before_it_runs(exact):
    """SGLang's overlap loop launches step n + 1 while step n runs on the GPU, so an eager prefill's host launch
    (35 ms here) starts with the 10 ms decode step before it and the GPU waits only for the 25 ms left. An idle GPU
    (the first request) waits for all of it, as does an engine that launches a step only after the one before ends."""
    overlap, _ = _first_tokens([0.0, 0.052], True, exact)
    plain, _ = _first_tokens([0.0, 0.052], False, exact)
    assert overlap[0] == plain[0] == pytest.approx(FLOOR_S)  # idle: the whole launch
    # without overlap: decodes 35-45, 45-55; the arrival at 52 ms is scheduled at 55 ms, its prefill takes the floor
    assert plain[1] == pytest.approx(0.055 + FLOOR_S)
    # overlap: the step from 55 ms was formed at 45 ms, before the arrival; its prefill step is formed at 65 ms, its
    # launch began with the decode step 55-65 ms, so it ends 35 ms after 55 ms: the step after formation pays it back
    assert overlap[1] == pytest.approx(0.055 + FLOOR_S)


@pytest.mark.parametrize("exact", [True, False])
def test_back_to_back_eager_prefills_stay_bound_by_their_launches(exact):
    """Prompts that each get a prefill step of their own (a 10-token budget, prefill first): the host launches one
    after the other, so each step takes the whole floor whatever overlaps, and a prefill whose kernels outlast the
    floor pays none."""
    for overlap in (True, False):
        first, _ = _first_tokens([0.0, 0.0, 0.0], overlap, exact, budget=10, schedule="prefill_first")
        assert first == pytest.approx([FLOOR_S, 2 * FLOOR_S, 3 * FLOOR_S])
        short, _ = _first_tokens([0.0, 0.0], overlap, exact, floor_s=0.004, budget=10, schedule="prefill_first")
        assert short == pytest.approx([KERNEL_S, 2 * KERNEL_S])


def test_the_head_start_keeps_fast_forward_exact():
    """Decode stretches (fast-forward) end where stepping every iteration does, so the prefill after one gets the
    same head start: arrivals inside a stretch, at its step boundaries and after it drains."""
    arrivals = [0.0, 0.0371, 0.095, 0.145, 0.6, 0.6004]
    for overlap in (True, False):
        assert _first_tokens(arrivals, overlap, True) == _first_tokens(arrivals, overlap, False)


@pytest.mark.parametrize("exact", [True, False])
def test_a_backend_that_syncs_for_computed_prompt_tokens_or_for_every_prefill_gets_no_head_start(exact):
    """A 15 ms launch, 10 ms kernels: a 30-token prompt arriving at 52 ms is prefilled in two chunks (a 20-token
    budget, one token for the running decode). Its first chunk, launched from 55 ms with the decode step before it,
    ends at 75 ms; its second (19 tokens already computed) launches from 70 ms, once the host is done with the first,
    and ends at 85 ms, unless the backend syncs the device for prompts with computed tokens (trtllm_mla's chunked-KV
    planning on Blackwell): then it launches at 75 ms and ends at 90 ms. A backend that syncs for every prefill
    (FlashInfer's planning) launches each at its step's start: 80 and 95 ms."""
    run = dict(arrivals_s=[0.0, 0.052], overlap=True, exact=exact, floor_s=0.015, budget=20, prompts=[10, 30])
    assert _first_tokens(**run)[0][1] == pytest.approx(0.085)
    assert _first_tokens(**run, prefix_syncs=True)[0][1] == pytest.approx(0.09)
    assert _first_tokens(**run, launch_overlap=False)[0][1] == pytest.approx(0.095)


@pytest.mark.parametrize("sku, model, dtype, expected", [
    ("h200", "deepseek-r1", "fp8", (True, False)),  # FA3: no sync on the prefill's launch path
    ("b200", "deepseek-r1", "fp8", (True, True)),  # trtllm_mla: a sync for prompts with computed tokens
    ("b200", "llama-3.1-70b", "bf16", (True, False)),  # trtllm_mha
    ("a100-80gb", "llama-3.1-70b", "bf16", (False, False)),  # FlashInfer syncs before any kernel
])
def test_the_preset_says_where_the_launch_overlaps_the_step_before(tmp_path, sku, model, dtype, expected):
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku=sku, count=8)
    doc["deployments"][0].update(replicas=1, tp=8, model=model, dtype=dtype, engine="sglang-0.5")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    d = load_and_resolve(tmp_path / "s.yaml").deployments[0]
    assert d.eager_launch_overlap() == expected
    doc["deployments"][0]["overlap_schedule"] = False  # a step formed only after the one before: nothing to overlap
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert load_and_resolve(tmp_path / "s.yaml").deployments[0].eager_launch_overlap() == (False, False)
    eager = ENGINES["sglang-0.5"].eager_prefill
    assert set(eager.mla_prefix_sync_skus) <= set(eager.launch_overlap_skus)
    assert ENGINES["sglang"].eager_prefill.launch_overlap_skus == []  # DP attention / EP paths: not read


class _Sized(StepTimeModel):
    """Kernels of 5 ms + 0.1 ms a prompt token + 1 ms a decoding sequence; a prefill at least FLOOR_S."""

    def __init__(self, floor_s: float) -> None:
        self.floor_s = floor_s

    def step_s(self, load: StepLoad) -> float:
        kernels = 0.005 + 1e-4 * load.prefill_tokens + 1e-3 * load.decode_seqs
        return max(kernels, self.floor_s) if load.prefill_tokens else kernels

    def without_prefill_floor(self) -> StepTimeModel:
        return _Sized(0.0)

    def prefill_launch_s(self) -> float:
        return self.floor_s


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("answer, role", [(50, "mixed"), (1, "mixed"), (50, "prefill")])
def test_the_head_start_survives_a_step_that_emptied_the_batch(exact, answer, role):
    """A 90 ms launch; A's 1,450-token prefill (150 ms of kernels) then B's 150 tokens (20 ms), one prompt a step.
    B's launch starts once A's is done (90 ms), so B ends at 150 + max(20, 180 - 150) = 180 ms, whether A goes on
    decoding, ends with its prefill (a one-token answer) or leaves it (a prefill-role replica): the GPU ran until
    B's step either way. A request put while A's step ran is launched no earlier than it was put (100 ms: 190 ms)."""
    def first_tokens(arrivals_s: list[float]) -> list[float]:
        env, table = FloatEnvironment(), RequestTable()
        queue = WaitingQueue(env)
        ReplicaEngine(env, 0, queue, table, _Sized(0.09), max_num_seqs=8, max_num_batched_tokens=1500, block_size=16,
                      kv_blocks=10_000, enable_chunked_prefill=False, overlap_schedule=True, schedule="prefill_first",
                      eager_launch=(True, False), role=role, exact=exact, on_prefilled=lambda r: None,
                      on_complete=lambda r: None, on_abort=lambda r: None)
        for at_s, tokens in zip(arrivals_s, (1450, 150)):
            def put(_event: object, tokens: int = tokens) -> None:
                queue.put(table.add(env.now, 0, 0, tokens, answer), 0)
            env.timeout(at_s).callbacks.append(put)
        env.run(until=10.0)
        return [float(x) for x in table.first_token_s[:2]]

    assert first_tokens([0.0, 0.0]) == pytest.approx([0.15, 0.18])
    if answer == 1 or role == "prefill":  # A's step emptied the batch: B, put at 100 ms, is taken at once
        assert first_tokens([0.0, 0.1]) == pytest.approx([0.15, 0.19])


@pytest.mark.parametrize("extra", [{"dp_attention": 8}, {"expert_parallel": True},
                                   {"speculative": {"k": 3, "acceptance": 0.7, "mtp": True}}])
def test_no_head_start_on_launch_paths_not_read(tmp_path, extra):
    """The launch paths read for syncs were plain tensor-parallel ones; DP attention, expert parallelism and
    speculative decoding bring syncs of their own: the whole floor there."""
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="h200", count=8)
    doc["deployments"][0].update(replicas=1, tp=8, model="deepseek-r1", dtype="fp8", engine="sglang-0.5", **extra)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert load_and_resolve(tmp_path / "s.yaml").deployments[0].eager_launch_overlap() == (False, False)
