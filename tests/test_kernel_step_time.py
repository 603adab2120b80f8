"""Kernel-table step time (simfactory/hardware/kernels.py, tables in hardware_profiles/kernels/ derived from
aiconfigurator-core 0.12.0 by calibrate/kernels/derive.py): the tables are reproduced at their grid points,
interpolated between them, monotone, and decode stretches planned in O(1) equal stepping every iteration.
None of this needs aiconfigurator-core."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import pickle
import time
from bisect import bisect_right
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import assert_fast_forward_matches, scenario_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfactory.config.loader import load_model_file
from simfactory.config.profile import ModelCatalog
from simfactory.errors import InputError, InputErrors
from simfactory.hardware import kernels
from simfactory.hardware.kernel_file import pack, read_doc
from simfactory.hardware.kernels import AttentionRanks, KernelStepTime, kernel_step_time, load_kernel_tables
from simfactory.hardware.step_time import StepLoad
from simfactory.resolve import load_and_resolve

ROOT = Path(__file__).resolve().parents[1]
SKUS = ("a100-80gb", "h100-sxm", "h200", "b200", "l40s")
MODELS = {m.id: m for m in load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models}
OVERHEAD_S = 0.001


def model(sku: str = "h100-sxm", model_id: str = "llama-3.1-8b", engine: str = "vllm", dtype: str = "bf16",
          tp: int = 1, overhead_s: float = OVERHEAD_S, kv_dtype: str | None = None) -> KernelStepTime:
    m = kernel_step_time(MODELS[model_id], model_id, sku, engine, None, dtype, kv_dtype or dtype, tp, overhead_s)
    assert m is not None, (sku, model_id, engine, dtype, tp)
    return m


def records(sku: str = "h100-sxm", model_id: str = "llama-3.1-8b", framework: str = "vllm", dtype: str = "bf16",
            tp: int = 1) -> tuple[dict, dict, dict]:
    t = load_kernel_tables(sku)
    assert t is not None
    return t.grids, t.linear[(model_id, framework, tp, 1, 1, dtype)], t.attention[(model_id, framework, tp, 1, 1, dtype)]


def decode(m: KernelStepTime, b: int, s: float) -> float:
    return m.step_s(StepLoad(0, b, b * s, 0.0))


def test_every_sku_file_loads_with_its_source_and_attribution():
    kernels._cache.clear()
    t0 = time.perf_counter()
    tables = {sku: load_kernel_tables(sku) for sku in SKUS}
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for sku in SKUS:
        load_kernel_tables(sku)
    cached_s = time.perf_counter() - t0
    total_bytes = sum(t.path.stat().st_size for t in tables.values() if t)
    n = sum(len(t.combinations()) for t in tables.values() if t)
    print(f"\nbenchmark: loading all {len(SKUS)} kernel-table files ({total_bytes / 1e6:.2f} MB, {n} combinations) "
          f"took {load_s * 1e3:.0f} ms cold, {cached_s * 1e6:.0f} us cached")
    # a budget on what the package ships: 5.6 MB for these five since Qwen3 8B/14B/32B (2026-12-06), 6.2 MB since
    # gpt-oss on H100 and H200 (2026-12-07)
    assert total_bytes < 6.5e6
    for sku, t in tables.items():
        assert t is not None, sku
        h = t.header
        assert "https://pypi.org/project/aiconfigurator-core/0.12.0/" in h["source"]
        assert "https://github.com/ai-dynamo/aiconfigurator" in h["source"]
        assert h["sdk"]["version"].startswith("0.12.")
        assert h["license"] == "Apache-2.0" and "NVIDIA" in h["attribution"] and "Apache" in h["attribution"]
        assert h["as_of"] and set(h["frameworks"]) == {"vllm", "sglang", "trtllm"}
        assert t.combinations(), sku


def test_fp8_only_where_the_sku_has_it():
    a100 = load_kernel_tables("a100-80gb")
    h100 = load_kernel_tables("h100-sxm")
    assert a100 is not None and h100 is not None
    assert {k[5] for k in a100.linear} == {"bf16"}
    assert {k[5] for k in h100.linear if not k[0].startswith(("deepseek", "gpt-oss"))} == {"bf16", "fp8"}
    # FP4 on Hopper only for a weight-only FP4 checkpoint (gpt-oss's MXFP4 experts, run as W4A16)
    assert {k[5] for k in h100.linear if k[0].startswith("gpt-oss")} == {"fp4"}


def test_grid_points_reproduce_the_table_exactly():
    grids, lin, att = records()
    m = model()
    tokens = grids["tokens"]
    for bi, b in enumerate(grids["batch"]):
        i = tokens.index(b)
        fixed_ms = lin["linear_ms"][i] + lin["allreduce_ms"][i] + lin["logits_ms"][i]
        for j, s in enumerate(grids["kv_len"]):
            want = OVERHEAD_S + (fixed_ms + att["decode_attn_ms"][bi][j]) * 1e-3
            assert decode(m, int(b), s) == pytest.approx(want, rel=1e-12), (b, s)
    # one whole prompt of L tokens (L(L+1)/2 query-key pairs): non-attention at L tokens, one logits row, ctx(L)
    for li, length in enumerate(grids["prompt_len"]):
        if length in tokens:
            i = tokens.index(length)
            want = OVERHEAD_S + (lin["linear_ms"][i] + lin["allreduce_ms"][i] + lin["logits_ms"][0]
                                 + att["ctx_attn_ms"][li]) * 1e-3
            got = m.step_s(StepLoad(int(length), 0, 0.0, length * (length + 1) / 2))
            assert got == pytest.approx(want, rel=1e-12), length


def test_interpolates_linearly_between_grid_points():
    grids, lin, att = records()
    m = model(overhead_s=0.0)
    bs, ss, ts = grids["batch"], grids["kv_len"], grids["tokens"]
    fixed = (np.array(lin["linear_ms"]) + np.array(lin["allreduce_ms"]) + np.array(lin["logits_ms"])) * 1e-3
    table = np.array(att["decode_attn_ms"]) * 1e-3
    for b in (9, 13, 37, 100, 300, 1000, 1900):
        k = bisect_right(bs, b) - 1
        w = (b - bs[k]) / (bs[k + 1] - bs[k])
        row = table[k] * (1 - w) + table[k + 1] * w
        for s in (20.0, 700.0, 1500.5, 5000.0, 70000.0):
            want = np.interp(b, ts, fixed) + np.interp(s, ss, row)
            got = decode(m, b, s)
            assert got == pytest.approx(want, rel=1e-12), (b, s)
            lo = decode(m, b, ss[bisect_right(ss, s) - 1])
            hi = decode(m, b, ss[bisect_right(ss, s)])
            assert lo <= got <= hi
    # past the last KV length and batch: attention in proportion to each; below the first KV length: held
    def attn(b: int, s: float) -> float:
        return m.breakdown_s(StepLoad(0, b, b * s, 0.0))["decode_attention"]

    assert attn(8, 2 * ss[-1]) == pytest.approx(2 * attn(8, ss[-1]), rel=1e-12)
    assert attn(3 * int(bs[-1]), 1000.0) == pytest.approx(3 * attn(int(bs[-1]), 1000.0), rel=1e-12)
    assert decode(m, 8, 2.0) == decode(m, 8, ss[0])


def test_chunked_prefill_priced_by_query_key_pairs():
    m = model(overhead_s=0.0)
    whole = m.breakdown_s(StepLoad(2048, 0, 0.0, 2048 * 2049 / 2))["prefill_attention"]
    # the 2nd half of a 2048-token prompt (after 1024 cached tokens) attends to more keys than the 1st; the two
    # chunks, two steps, cost about the whole prompt plus one more launch of the step's attention kernels
    floor = m.breakdown_s(StepLoad(1, 0, 0.0, 1.0))["prefill_attention"]
    first = m.breakdown_s(StepLoad(1024, 0, 0.0, 1024 * 1025 / 2))["prefill_attention"]
    second = m.breakdown_s(StepLoad(1024, 0, 0.0, 1024 * (1024 + 1025 / 2)))["prefill_attention"]
    assert first < second
    assert first + second == pytest.approx(whole + floor, rel=0.1)
    parts = m.breakdown_s(StepLoad(512, 32, 32 * 1024.0, 512 * 513 / 2))
    assert sum(parts.values()) == pytest.approx(m.step_s(StepLoad(512, 32, 32 * 1024.0, 512 * 513 / 2)), rel=1e-12)


def test_prompts_in_one_step_share_the_attention_launch():
    # k whole prompts of L tokens in one step: the launch cost (a one-token prompt's) once, the rest per prompt, so
    # one prompt is the table's value and 32 short prompts cost far less than 32 steps of one (aiconfigurator's
    # own batched composition: 32 x 128 tokens 3.6 ms on H100 trtllm FP8, one alone 1.04 ms)
    grids, _, att = records()
    m = model(overhead_s=0.0)
    ctx = dict(zip(grids["prompt_len"], att["ctx_attn_ms"]))
    for k, length in ((1, 128), (32, 128), (4, 2048)):
        got = m.breakdown_s(StepLoad(k * length, 0, 0.0, k * length * (length + 1) / 2))["prefill_attention"]
        assert got == pytest.approx((ctx[1] + k * (ctx[length] - ctx[1])) * 1e-3, rel=1e-12), (k, length)
    assert m.breakdown_s(StepLoad(32 * 128, 0, 0.0, 32 * 128 * 129 / 2))["prefill_attention"] < 8 * ctx[128] * 1e-3


@pytest.mark.parametrize("sku", SKUS)
def test_monotone_in_batch_kv_and_tokens(sku):
    t = load_kernel_tables(sku)
    assert t is not None
    batches = [1, 2, 3, 5, 8, 11, 16, 24, 50, 64, 100, 128, 200, 256, 500, 512, 1000, 2048, 3000]
    lengths = [1.0, 8.0, 30.0, 100.0, 500.0, 1024.0, 3000.0, 4096.0, 10000.0, 40000.0, 131072.0, 200000.0]
    for combo in t.combinations():
        model_id, framework, tp, dtype, kv = combo
        engine = {"trtllm": "tensorrt-llm"}.get(framework, framework)
        m = model(sku, model_id, engine, dtype, tp, kv_dtype=kv)
        grid = np.array([[decode(m, b, s) for s in lengths] for b in batches])
        assert (np.diff(grid, axis=0) >= 0).all(), combo
        assert (np.diff(grid, axis=1) >= 0).all(), combo
        prefill = [m.step_s(StepLoad(n, 0, 0.0, n * (n + 1) / 2)) for n in (1, 64, 500, 2048, 8192, 30000, 70000)]
        assert (np.diff(prefill) >= 0).all(), combo


def test_tp8_decode_is_not_a_quarter_of_tp2():
    """Weights split 4 ways, but norms, logits and two all-reduces per layer do not shrink: TP8 batch-1 decode of
    a 70B model stays well above 1/4 of TP2 (the SDK: ~0.37), and the all-reduce part grows with TP."""
    for sku, dtype in (("h200", "bf16"), ("h100-sxm", "fp8")):
        tp2, tp8 = (model(sku, "llama-3.1-70b", "vllm", dtype, tp, overhead_s=0.0) for tp in (2, 8))
        ratio = decode(tp8, 1, 1024) / decode(tp2, 1, 1024)
        assert ratio > 0.3, (sku, ratio)
        ar2, ar8 = (m.breakdown_s(StepLoad(0, 1, 1024.0, 0.0))["allreduce"] for m in (tp2, tp8))
        assert 0 < ar2 < ar8
    tp1 = model("h200", "llama-3.1-70b", "vllm", "fp8", 1, overhead_s=0.0)
    assert tp1.breakdown_s(StepLoad(0, 1, 1024.0, 0.0))["allreduce"] == 0.0


def test_uncovered_combinations_return_none():
    arch = MODELS["llama-3.1-8b"]
    assert kernel_step_time(arch, "llama-3.1-8b", "mi300x", "vllm", None, "bf16", "bf16", 1, 0.0) is None
    assert kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "torch-eager", None, "bf16", "bf16", 1, 0.0) is None
    assert kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm", None, "int4", "bf16", 1, 0.0) is None
    assert kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm", None, "bf16", "bf16", 3, 0.0) is None
    assert kernel_step_time(arch, "llama-3.1-8b", "a100-80gb", "vllm", None, "fp8", "fp8", 1, 0.0) is None
    mav = MODELS["llama-4-maverick"]  # a MoE model derive_moe.py does not derive
    assert kernel_step_time(mav, "llama-4-maverick", "h100-sxm", "vllm", None, "bf16", "bf16", 8, 0.0) is None
    mix = MODELS["mixtral-8x7b"]  # derived on 1-8 devices, not 3
    assert kernel_step_time(mix, "mixtral-8x7b", "h100-sxm", "vllm", None, "bf16", "bf16", 2, 0.0) is not None
    assert kernel_step_time(mix, "mixtral-8x7b", "h100-sxm", "vllm", None, "bf16", "bf16", 3, 0.0) is None
    wider = arch.model_copy(update={"layers": 40})  # same id, another shape: the tables do not describe it
    assert kernel_step_time(wider, "llama-3.1-8b", "h100-sxm", "vllm", None, "bf16", "bf16", 1, 0.0) is None
    assert kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm", "0.5.4", "bf16", "bf16", 1, 0.0,
                            strict_version=True) is None
    older = kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm", "0.5.4", "bf16", "bf16", 1, 0.004)
    assert older is not None and "standing for vllm 0.5.4" in older.label
    # a preset name is not a framework: resolve and calibration map presets through engines.yaml's kernels.framework
    assert kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm-v0", None, "bf16", "bf16", 1, 0.0) is None
    # weights and KV cache in different dtypes combine two records
    assert kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm", None, "fp8", "bf16", 1, 0.0) is not None


def test_release_factor_scales_every_kernel_time_and_no_overhead():
    arch = MODELS["llama-3.1-8b"]
    base = kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "trtllm", None, "bf16", "bf16", 1, 0.003,
                            overhead_per_seq_s=2e-5)
    slow = kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "trtllm", None, "bf16", "bf16", 1, 0.003,
                            overhead_per_seq_s=2e-5, kernel_scale=1.25)
    assert isinstance(base, KernelStepTime) and isinstance(slow, KernelStepTime)
    assert "kernel times x1.25" in slow.label and "x1.25" not in base.label
    for load in (StepLoad(0, 7, 7 * 900.0, 0.0), StepLoad(300, 5, 5000.0, 300 * 301 / 2),
                 StepLoad(2048, 0, 0.0, 2048 * 2049 / 2), StepLoad(0, 200, 200 * 3000.0, 0.0)):
        parts, scaled = base.breakdown_s(load), slow.breakdown_s(load)
        assert scaled["overhead"] == pytest.approx(parts["overhead"], rel=1e-12)
        for name in ("linear", "allreduce", "logits", "decode_attention", "prefill_attention"):
            assert scaled[name] == pytest.approx(1.25 * parts[name], rel=1e-9), name
        assert slow.step_s(load) == pytest.approx(sum(scaled.values()), rel=1e-9)
    # the decode fast-forward stays exact: its affine stretch agrees with step_s under the factor
    a_s, b_s, n = slow.decode_affine(16, 16 * 500.0, 16.0, 50)
    assert a_s + b_s * (n - 1) == pytest.approx(slow.step_s(StepLoad(0, 16, 16 * 500.0 + 16.0 * (n - 1), 0.0)),
                                                rel=1e-9)
    with pytest.raises(ValueError, match="kernel_scale"):
        kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "trtllm", None, "bf16", "bf16", 1, 0.0,
                         kernel_scale=float("nan"))


def test_overhead_is_added_to_every_step():
    base, plus = model(overhead_s=0.0), model(overhead_s=0.0042)
    for load in (StepLoad(0, 7, 7 * 900.0, 0.0), StepLoad(300, 5, 5000.0, 300 * 301 / 2), StepLoad(0, 0, 0.0, 0.0)):
        assert plus.step_s(load) - base.step_s(load) == pytest.approx(0.0042, abs=1e-12)


_MODELS_FOR_PROPERTY = [("h100-sxm", "llama-3.1-8b", "vllm", "bf16", 1), ("h200", "llama-3.1-70b", "sglang", "fp8", 4),
                        ("l40s", "qwen2.5-7b", "tensorrt-llm", "fp8", 2),
                        ("a100-80gb", "llama-3.1-8b", "vllm", "bf16", 8)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(_MODELS_FOR_PROPERTY) - 1), decode_seqs=st.integers(1, 3000),
       mean_kv=st.floats(1.0, 300_000.0), kv_step=st.one_of(st.none(), st.floats(0.0, 5000.0)),
       n_max=st.integers(1, 20_000), integral=st.booleans())
def test_decode_affine_equals_stepping_every_iteration(which, decode_seqs, mean_kv, kv_step, n_max, integral):
    m = model(*_MODELS_FOR_PROPERTY[which][:4], tp=_MODELS_FOR_PROPERTY[which][4])
    b = decode_seqs
    kv0 = float(round(b * mean_kv)) if integral else b * mean_kv
    step = float(b) if kv_step is None else kv_step  # None: the engine's case, every sequence +1 token per step
    a_s, b_s, n = m.decode_affine(b, kv0, step, n_max)
    assert 1 <= n <= n_max
    idx = sorted({0, n - 1, *np.linspace(0, n - 1, min(n, 60)).astype(int).tolist()})
    for i in idx:
        want = m.step_s(StepLoad(0, b, kv0 + step * i, 0.0))
        assert a_s + b_s * i == pytest.approx(want, rel=1e-9, abs=0.0), (i, n)
    if n < n_max:  # cut at a KV-length grid point: the next step lies past it
        grid = load_kernel_tables("h100-sxm").grids["kv_len"]  # type: ignore[union-attr]
        s_last, s_next = (kv0 + step * (n - 1)) / b, (kv0 + step * n) / b
        assert any(s_last <= g < s_next for g in grid), (s_last, s_next)


def test_stretches_chain_across_breakpoints_to_the_step_by_step_total():
    m = model("h200", "llama-3.1-70b", "vllm", "bf16", 4)
    b, kv0, steps = 48, 48 * 100.0, 20_000  # mean KV 100 -> 20,100: crosses 14 grid points
    total, i = 0.0, 0
    cuts = 0
    while i < steps:
        a_s, b_s, n = m.decode_affine(b, kv0 + b * i, float(b), steps - i)
        total += n * a_s + b_s * n * (n - 1) / 2
        i += n
        cuts += 1
    direct = sum(m.step_s(StepLoad(0, b, kv0 + b * j, 0.0)) for j in range(steps))
    assert total == pytest.approx(direct, rel=1e-9)
    assert 10 <= cuts <= 20


@pytest.mark.parametrize("sku, model_id, tp, dtype, seed, block_size, chunked", [
    ("h100-sxm", "llama-3.1-8b", 1, "bf16", 3, 16, True),
    ("h200", "llama-3.1-70b", 4, "fp8", 5, 1, False),
    ("l40s", "qwen2.5-7b", 2, "bf16", 8, 32, True),
])
def test_engine_fast_forward_matches_stepping_with_kernel_tables(sku, model_id, tp, dtype, seed, block_size, chunked):
    """The real engine: the same scenario stepped every iteration and fast-forwarded gives the same answers."""
    from simfactory.config.scenario import Scenario
    from simfactory.resolve import resolve
    from simfactory.sim.run import FleetModel

    doc = scenario_doc(seed=seed, rate=12, max_num_seqs=24, max_num_batched_tokens=2048, kv_cache_tokens=60_000,
                       block_size=block_size, enable_chunked_prefill=chunked, model=model_id, tp=tp, dtype=dtype,
                       input_tokens={"kind": "lognormal", "median": 300, "sigma": 1.0, "max": 3000},
                       output_tokens={"kind": "geometric", "mean": 150}, horizon_s=8)
    doc["pools"][0]["sku"] = sku
    doc["sim"]["timeline_resolution_s"] = 0.25
    runs = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        rs = resolve(Scenario.model_validate(d), ROOT / "scenarios" / "case.yaml")
        dep = rs.deployments[0]
        kst = kernel_step_time(dep.arch, model_id, sku, "vllm", None, dtype, dtype, tp, 0.002)
        assert kst is not None
        rs = dataclasses.replace(rs, deployments=[dataclasses.replace(dep, step_time=kst)])
        runs.append(FleetModel(rs, seed=d["seed"]).run())
    exact, fast = runs
    assert_fast_forward_matches(exact, fast)
    np.testing.assert_array_equal(exact.replica_steps, fast.replica_steps)


def test_pickles_for_sweep_workers():
    m = model()
    m.step_s(StepLoad(0, 5, 5000.0, 0.0))  # fills the row cache
    again = pickle.loads(pickle.dumps(m))
    for load in (StepLoad(0, 5, 5000.0, 0.0), StepLoad(100, 3, 300.0, 5050.0)):
        assert again.step_s(load) == m.step_s(load)


def test_sdk_sample_points_survive_resampling():
    """The H100 Llama-3.1-8B BF16 vLLM decode steps the research report measured with the SDK itself
    (/tmp/aic measure.txt, aiconfigurator-core 0.12.0, ms): the tables reproduce them up to the monotone fit."""
    t = load_kernel_tables("h100-sxm")
    assert t is not None
    if not t.header["sdk"]["version"].startswith("0.12."):
        pytest.skip("tables regenerated with another SDK version")
    m = model(overhead_s=0.0)
    sdk_ms = {(1, 1024): 6.181, (1, 4096): 6.286, (32, 1024): 8.323, (32, 4096): 12.352, (128, 1024): 12.829,
              (128, 4096): 28.811}
    for (b, s), want in sdk_ms.items():
        assert decode(m, b, s) * 1e3 == pytest.approx(want, rel=0.05), (b, s)


def first_record(section: str, tmp_path) -> dict:
    """The first record of a section of the test file, read (and so checked) as a run reads it."""
    t = load_kernel_tables("test-gpu", [tmp_path])
    assert t is not None
    records = t.linear if section == "linear" else t.attention
    return records[next(iter(records))]


@pytest.mark.parametrize("packed", [True, False], ids=["format 2", "format 1"])
def test_refuses_broken_files(tmp_path, packed):
    """A broken file or header is refused when it is read; a broken record when a run first reads it (a file holds
    hundreds; kernel_file.py), with the file, the record and the field named either way, in both formats."""
    src = load_kernel_tables("h100-sxm")
    assert src is not None
    doc = read_doc(src.path)  # every curve as numbers
    folder = tmp_path / "kernels"
    folder.mkdir()

    def write(d: dict | bytes) -> None:
        d = d if isinstance(d, bytes) or not packed else {**pack(d), "format": d["format"]}
        data = d if isinstance(d, bytes) else gzip.compress(json.dumps(d).encode(), compresslevel=1)
        (folder / "test-gpu.json.gz").write_bytes(data)
        kernels._cache.clear()

    write(b"not gzip")
    with pytest.raises(InputError, match="gzip"):
        load_kernel_tables("test-gpu", [tmp_path])
    bad = copy.deepcopy(doc)
    bad["linear"][0]["linear_ms"][5] = -1.0
    write(bad)
    with pytest.raises(InputError, match=r"test-gpu.json.gz.*linear\[0\]\.linear_ms"):
        first_record("linear", tmp_path)
    bad = copy.deepcopy(doc)
    bad["attention"][0]["ctx_attn_ms"] = bad["attention"][0]["ctx_attn_ms"][::-1]
    write(bad)
    with pytest.raises(InputError, match=r"attention\[0\]\.ctx_attn_ms.*non-decreasing"):
        first_record("attention", tmp_path)
    bad = copy.deepcopy(doc)
    bad["attention"][0]["decode_attn_ms"][0] = "1 2 x" if packed else [1, 2, "x"]
    write(bad)
    with pytest.raises(InputError, match=r"attention\[0\]\.decode_attn_ms"):
        first_record("attention", tmp_path)
    bad = copy.deepcopy(doc)
    del bad["linear"][0]["tp"]
    write(bad)
    with pytest.raises(InputError, match=r"linear\[0\]"):
        load_kernel_tables("test-gpu", [tmp_path])
    write({**doc, "format": "something-else"})
    with pytest.raises(InputError, match="format"):
        load_kernel_tables("test-gpu", [tmp_path])
    write(doc)  # intact: every record reads back as the shipped file's
    t = load_kernel_tables("test-gpu", [tmp_path])
    assert t is not None and list(t.linear) == list(src.linear)
    assert all(t.linear[k] == src.linear[k] for k in t.linear) and all(t.attention[k] == src.attention[k]
                                                                         for k in t.attention)
    kernels._cache.clear()


def test_kernel_files_round_trip_exactly(tmp_path):
    """Packing a file's curves as text and reading them back gives the same numbers (the text is JSON's own)."""
    from simfactory.hardware.kernel_file import write_doc

    src = load_kernel_tables("h200")
    assert src is not None
    doc = read_doc(src.path)
    write_doc(doc, tmp_path / "copy.json.gz")
    assert read_doc(tmp_path / "copy.json.gz") == {**doc, "format": "simfactory-kernel-tables/2"}
    assert json.loads(gzip.decompress(src.path.read_bytes()))["format"] == "simfactory-kernel-tables/2"


def test_speed_of_step_s_and_decode_affine():
    """Benchmark lines only (no timed asserts): step_s runs once per engine iteration."""
    m = model("h200", "llama-3.1-70b", "vllm", "bf16", 4)
    loads = [StepLoad(0, b, b * (300.0 + 7 * i), 0.0) for i, b in enumerate(list(range(1, 257)) * 8)]
    mixed = [StepLoad(512 + i, 32, 32 * 900.0, (512 + i) * 400.0) for i in range(2000)]
    for ld in loads[:256]:
        m.step_s(ld)  # row cache, as after the first steps of a run

    def per_call_us(fn, items) -> float:
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        return (time.perf_counter() - t0) / len(items) * 1e6

    dec = min(per_call_us(m.step_s, loads) for _ in range(3))
    mix = min(per_call_us(m.step_s, mixed) for _ in range(3))
    aff = min(per_call_us(lambda ld: m.decode_affine(ld.decode_seqs, ld.kv_tokens_read, float(ld.decode_seqs), 5000),
                          loads) for _ in range(3))
    print(f"\nbenchmark: KernelStepTime step_s decode-only {dec:.2f} us, with prefill {mix:.2f} us, "
          f"decode_affine {aff:.2f} us per call")


def test_fitted_terms_keep_decode_affine_exact_and_touch_only_their_part():
    """calibrate fit --fit kernels: linear_scale multiplies the token-linear kernels, prefill_attn_scale prompt
    attention, prefill_overhead_s is added to steps that prefill; decode stretches still equal stepping."""
    base = model()
    fitted = kernel_step_time(MODELS["llama-3.1-8b"], "llama-3.1-8b", "h100-sxm", "vllm", None, "bf16", "bf16", 1,
                              OVERHEAD_S, overhead_per_seq_s=3e-5, prefill_overhead_s=0.002, linear_scale=1.2,
                              prefill_attn_scale=1.5)
    assert fitted is not None
    for load in (StepLoad(0, 7, 7 * 900.0, 0.0), StepLoad(300, 5, 5000.0, 300 * 301 / 2),
                 StepLoad(4096, 0, 0.0, 4096 * 4097 / 2)):
        b0, b1 = base.breakdown_s(load), fitted.breakdown_s(load)
        assert b1["linear"] + b1["allreduce"] == pytest.approx(1.2 * (b0["linear"] + b0["allreduce"]), rel=1e-12)
        assert b1["prefill_attention"] == pytest.approx(1.5 * b0["prefill_attention"], rel=1e-12)
        assert b1["decode_attention"] == b0["decode_attention"] and b1["logits"] == b0["logits"]
        seqs = load.decode_seqs + (1 if load.prefill_tokens else 0)
        assert b1["overhead"] - b0["overhead"] == pytest.approx(3e-5 * seqs + (0.002 if load.prefill_tokens else 0.0))
        assert sum(b1.values()) == pytest.approx(fitted.step_s(load), rel=1e-12)
    for b, kv0, step in ((1, 100.0, 1.0), (48, 48 * 1000.0, 48.0), (300, 300 * 7000.5, 300.0)):
        a_s, b_s, n = fitted.decode_affine(b, kv0, step, 5000)
        for i in sorted({0, n - 1, n // 2}):
            assert a_s + b_s * i == pytest.approx(fitted.step_s(StepLoad(0, b, kv0 + step * i, 0.0)), rel=1e-9)
    with pytest.raises(ValueError):
        KernelStepTime(*records()[:1], [0.0], [0.0], [0.0], [[0.0]], [0.0], 0.0, linear_scale=-1.0)  # type: ignore[misc]


@pytest.mark.parametrize("sku, source, expect", [
    ("h100-sxm", "auto", "measured kernels: kernel tables of aiconfigurator-core"),
    ("h100-sxm", "kernels", "measured kernels: kernel tables of aiconfigurator-core"),
    ("h100-sxm", "roofline", "roofline (SKU default factors of h100-sxm"),
    ("mi300x", "auto", "roofline (SKU default factors of mi300x"),
])
def test_step_time_source_picks_kernels_where_they_cover_else_the_roofline(tmp_path, sku, source, expect):
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0]["sku"] = sku
    doc["deployments"][0]["step_time_source"] = source
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    rs = load_and_resolve(tmp_path / "s.yaml")
    assert rs.deployments[0].step_time_source.startswith(expect)
    assert isinstance(rs.deployments[0].step_time, KernelStepTime) == expect.startswith("measured kernels")
    tables = [f for f in rs.input_hashes if f.endswith(".json.gz")]
    assert tables == ([str(ROOT / "hardware_profiles" / "kernels" / f"{sku}.json.gz")]
                      if expect.startswith("measured kernels") else [])
    # falling back to the roofline is said; asking for it is not
    fallback = [w for w in rs.warnings if "step times come from" in w]
    assert len(fallback) == (1 if source == "auto" and expect.startswith("roofline") else 0), rs.warnings
    if fallback:
        assert fallback[0].startswith(f"{tmp_path / 's.yaml'}: deployments[0]: step times come from {sku}'s roofline")
        assert "calibrate" in fallback[0] and "MoE" not in fallback[0]  # a dense model: no MoE clause


def test_a_moe_model_on_the_roofline_is_warned_how_optimistic_that_is(tmp_path):
    """Llama 4 Maverick has no kernel tables: its roofline fallback says MoE models run 60-150% optimistic on it
    (the sglang-qwen3-235b-b200 and trtllm-deepseek-r1 suites' roofline figures)."""
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="b200", count=8)
    doc["deployments"][0].update(model="llama-4-maverick", tp=8, dtype="fp8", engine="sglang", replicas=1)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    rs = load_and_resolve(tmp_path / "s.yaml")
    fallback = [w for w in rs.warnings if "step times come from" in w]
    assert len(fallback) == 1 and "60-150% optimistic" in fallback[0], rs.warnings


def test_an_engines_per_sequence_overhead_is_charged_per_sequence_and_fast_forwarded_exactly(tmp_path):
    """vLLM 0.5's host time grows with the sequences in a step (the vllm-v0 preset's per_seq_s): the resolved step
    time charges it once per sequence on top of the same kernels and fixed overhead, and the engine's closed-form
    decode stretches still match stepping every iteration."""
    from conftest import shipped_engines

    from simfactory.sim.run import FleetModel

    overhead = shipped_engines()["vllm-v0"].kernels.overhead
    per_seq = overhead.per_seq_s
    assert per_seq > 0
    doc = scenario_doc(rate=12, max_num_seqs=24, max_num_batched_tokens=4096, kv_cache_tokens=60_000, engine="vllm-v0",
                       input_tokens={"kind": "lognormal", "median": 300, "sigma": 1.0, "max": 3000},
                       output_tokens={"kind": "geometric", "mean": 150}, horizon_s=6)
    doc["pools"][0]["sku"] = "h100-sxm"
    runs = []
    for exact in (True, False):
        d = copy.deepcopy(doc)
        d["sim"]["exact"] = exact
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
        rs = load_and_resolve(tmp_path / "s.yaml")
        runs.append(FleetModel(rs, seed=d["seed"]).run())
    st = rs.deployments[0].step_time
    assert isinstance(st, KernelStepTime) and st.overhead_per_seq_s == pytest.approx(per_seq)
    assert f"{per_seq * 1e6:.4g} us/sequence" in rs.deployments[0].step_time_source
    arch = MODELS["llama-3.1-8b"]
    same, without = (kernel_step_time(arch, "llama-3.1-8b", "h100-sxm", "vllm", "0.5", "bf16", "bf16", 1, st.overhead_s,
                                      overhead_per_seq_s=x) for x in (per_seq, 0.0))
    # vllm-v0 steps decode or prefill, never both (prefill-first, no chunking); a step's prompts count as one row
    for load in (StepLoad(0, 1, 900.0, 0.0), StepLoad(0, 24, 24 * 900.0, 0.0), StepLoad(600, 0, 0.0, 600 * 601 / 2)):
        seqs = load.decode_seqs + (1 if load.prefill_tokens else 0)
        assert st.step_s(load) == pytest.approx(same.step_s(load), rel=1e-12)
        assert st.step_s(load) - without.step_s(load) == pytest.approx(per_seq * seqs, rel=1e-9)
    exact, fast = runs
    assert_fast_forward_matches(exact, fast)
    assert len(exact.table.outcome) > 30
    # the fixed part grows by the preset's per_extra_gpu_s for each tensor-parallel rank beyond the first
    d = copy.deepcopy(doc)
    d["deployments"][0]["tp"], d["pools"][0]["count"] = 2, 2
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    tp2 = load_and_resolve(tmp_path / "s.yaml").deployments[0].step_time
    assert overhead.per_extra_gpu_s > 0
    assert tp2.overhead_s - st.overhead_s == pytest.approx(overhead.per_extra_gpu_s, rel=1e-9)


def test_vllm_without_its_own_tables_of_a_model_takes_sglangs_under_its_own_overhead(tmp_path):
    """Qwen3-235B-A22B in BF16 at TP8 has no vLLM tables on a B300 (the SDK holds no vLLM BF16 MoE timings there,
    derive_moe.py's refused list): the vllm presets' stand_in puts SGLang's measured kernels of it under vLLM's
    overhead (the label says so) instead of the roofline; an engine without stand_in keeps the roofline where its
    own tables lack the model."""
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="b300", count=8, cloud_usd_per_accel_hour=10.0)
    doc["deployments"][0].update(model="qwen3-235b-a22b", tp=8, dtype="bf16", kv_dtype="bf16", engine="vllm",
                                 replicas=1)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    d = load_and_resolve(tmp_path / "s.yaml").deployments[0]
    assert d.step_time_source.startswith("measured kernels") and "sglang's tables stand in for vllm's" in d.step_time_source
    sglang = kernel_step_time(MODELS["qwen3-235b-a22b"], "qwen3-235b-a22b", "b300", "sglang", None, "bf16", "bf16", 8,
                              0.0)
    load = StepLoad(0, 32, 32000.0, 0.0)
    assert d.step_time.step_s(load) - d.step_time.overhead_s == pytest.approx(sglang.step_s(load))
    from simfactory.config.profile import KernelsStepTime
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve.step_time import kernel_model

    fitted, why = kernel_model(d.config, d.profile, d.arch, [PROFILES_DIR], "bf16", d.engine_preset,
                               fit=KernelsStepTime(overhead_s=0.002))  # a calibration fit on the stand-in too
    assert fitted is not None and "stand in" in fitted.label, why
    doc["deployments"][0]["engine"] = "vllm-0.6"  # no stand_in: its vLLM tables lack the model, so the roofline
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    assert load_and_resolve(tmp_path / "s.yaml").deployments[0].step_time_source.startswith("roofline")


def test_a_model_the_tables_lack_takes_the_tables_of_one_of_its_shape(tmp_path):
    """Llama-3.3-70B is Llama-3.1-70B's shape (models.yaml), and a user's fine-tune of it in a catalogue beside the
    scenario too: both run on Llama-3.1-70B's tables, step for step, and the label says whose. One dimension off
    (the MLP width), or a shape the catalogue does not know whole (no vocabulary), keeps the roofline."""
    base = MODELS["llama-3.1-70b"].model_dump()
    tune = {**base, "id": "acme-70b-ft", "source": "a fine-tune of Llama-3.1-70B", "as_of": "2026-12"}
    wider = {**tune, "id": "acme-70b-wide", "intermediate": 28800}
    vague = {**tune, "id": "acme-70b-vague", "vocab": None}
    (tmp_path / "hardware_profiles").mkdir()
    (tmp_path / "hardware_profiles" / "models.yaml").write_text(
        yaml.safe_dump({"models": [tune, wider, vague]}, sort_keys=False))
    (tmp_path / "scenarios").mkdir()
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="h100-sxm", count=2)
    doc["deployments"][0].update(tp=2, dtype="fp8", replicas=1)
    load = StepLoad(512, 16, 16_000.0, 512 * 513 / 2)
    steps = {}
    for model in ("llama-3.1-70b", "llama-3.3-70b", "acme-70b-ft", "acme-70b-wide", "acme-70b-vague"):
        doc["deployments"][0]["model"] = model
        (tmp_path / "scenarios" / "s.yaml").write_text(yaml.safe_dump(doc))
        d = load_and_resolve(tmp_path / "scenarios" / "s.yaml").deployments[0]
        twin = model in ("llama-3.3-70b", "acme-70b-ft")
        assert d.step_time_source.startswith("measured kernels" if twin or model == "llama-3.1-70b" else "roofline")
        assert (f"llama-3.1-70b's tables: {model} has its shape" in d.step_time_source) == twin, d.step_time_source
        steps[model] = d.step_time.step_s(load)
    assert steps["llama-3.3-70b"] == steps["acme-70b-ft"] == steps["llama-3.1-70b"]
    # a calibration fit of kind kernels on such a model (calibrate fit --model llama-3.3-70b) rests on the same tables
    from simfactory.config.profile import KernelsStepTime
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve.step_time import kernel_model

    doc["deployments"][0]["model"] = "llama-3.3-70b"
    (tmp_path / "scenarios" / "s.yaml").write_text(yaml.safe_dump(doc))
    d = load_and_resolve(tmp_path / "scenarios" / "s.yaml").deployments[0]
    fit = KernelsStepTime(overhead_s=0.002)
    alone, why = kernel_model(d.config, d.profile, d.arch, [PROFILES_DIR], "fp8", d.engine_preset, fit)
    assert alone is None and "has no llama-3.3-70b vllm TP2" in why  # no catalogue given: no twin looked for
    fitted, _ = kernel_model(d.config, d.profile, d.arch, [PROFILES_DIR], "fp8", d.engine_preset, fit, models=MODELS)
    assert fitted is not None and "llama-3.1-70b's tables: llama-3.3-70b has its shape" in fitted.label
    # a layout the twin's tables lack is refused in its terms: the message lists the twin's layouts
    doc["deployments"][0].update(model="acme-70b-ft", step_time_source="kernels", dtype="int8")
    (tmp_path / "scenarios" / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InputErrors) as e:
        load_and_resolve(tmp_path / "scenarios" / "s.yaml")
    assert "has no acme-70b-ft vllm TP2 int8" in str(e.value) and "llama-3.1-70b vllm tp2" in str(e.value), str(e.value)


def test_a_users_catalogue_that_redefines_a_tabled_model_does_not_move_its_tables(tmp_path):
    """The tables were derived for the shipped Llama-3.1-70B. A user's catalogue that gives that id another MLP
    width has no tables of it (a deployment of it asking for kernels is refused, saying why); Llama-3.3-70B still
    takes the tables, as it runs like the shipped model; a user model of the redefined shape does not."""
    base = MODELS["llama-3.1-70b"].model_dump()
    other = {**base, "intermediate": 28800, "source": "a user's redefinition", "as_of": "2026-12"}
    lookalike = {**other, "id": "acme-70b-wide"}
    (tmp_path / "hardware_profiles").mkdir()
    (tmp_path / "hardware_profiles" / "models.yaml").write_text(
        yaml.safe_dump({"models": [other, lookalike]}, sort_keys=False))
    (tmp_path / "scenarios").mkdir()
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="h100-sxm", count=2)
    doc["deployments"][0].update(tp=2, dtype="fp8", replicas=1)
    for model, expect in (("llama-3.3-70b", "measured kernels"), ("acme-70b-wide", "roofline"),
                          ("llama-3.1-70b", "roofline")):
        doc["deployments"][0]["model"] = model
        (tmp_path / "scenarios" / "s.yaml").write_text(yaml.safe_dump(doc))
        d = load_and_resolve(tmp_path / "scenarios" / "s.yaml").deployments[0]
        assert d.step_time_source.startswith(expect), (model, d.step_time_source)
    doc["deployments"][0]["step_time_source"] = "kernels"
    (tmp_path / "scenarios" / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InputErrors) as e:
        load_and_resolve(tmp_path / "scenarios" / "s.yaml")
    assert "the catalogue's llama-3.1-70b is not the shipped llama-3.1-70b" in str(e.value), str(e.value)


def test_step_time_source_kernels_is_refused_where_the_tables_do_not_cover(tmp_path):
    doc = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    doc["pools"][0]["sku"] = "mi300x"
    doc["deployments"][0]["step_time_source"] = "kernels"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InputErrors) as e:
        load_and_resolve(tmp_path / "s.yaml")
    assert str(e.value).startswith(f"{tmp_path / 's.yaml'}: deployments[0].step_time_source: no measured kernels")


def test_moe_models_derived_apart_agree_where_their_shapes_do():
    """DeepSeek-V3 and R1 share one architecture and were derived from the SDK apart (derive_moe.py): equal steps.
    Kimi K2 (half the heads, 384 experts) and Qwen3-235B-A22B have tables of their own on the same layouts."""
    for sku in ("h200", "b200"):
        r1, v3, k2, q3 = (kernel_step_time(MODELS[m], m, sku, "sglang", None, dt, dt, 8, 0.0)
                          for m, dt in (("deepseek-r1", "fp8"), ("deepseek-v3", "fp8"), ("kimi-k2", "fp8"),
                                        ("qwen3-235b-a22b", "bf16")))
        assert all(isinstance(m, KernelStepTime) for m in (r1, v3, k2, q3)), sku
        for load in (StepLoad(0, 1, 1000.0, 0.0), StepLoad(0, 64, 64000.0, 0.0), StepLoad(1024, 0, 0.0, 524800.0)):
            assert v3.step_s(load) == r1.step_s(load)
            assert k2.step_s(load) != r1.step_s(load) and q3.step_s(load) > 0


@pytest.mark.parametrize("model, skus", [("kimi-k2", ("h200", "b200", "b300")),
                                         ("deepseek-r1", ("h100-sxm", "h200", "b200", "b300"))])
def test_mla_models_have_tables_for_sglangs_dp4_layouts(model, skus):
    """SGLang's cookbook serves Kimi K2 on 8 x B200 with --dp 4 --enable-dp-attention (two devices a rank), experts
    tensor-parallel or --ep 4: derive_moe.py's DP4 layouts give the MLA models measured kernels where the roofline
    stood in (Kimi's one-sequence decode step 3x too fast there); the busiest rank prices the step, and one rank's
    sequence costs what it costs beside idle ranks."""
    for sku in skus:
        for ep in (1, 4):
            m = kernel_step_time(MODELS[model], model, sku, "sglang", None, "fp8", "bf16", 8, 0.0,
                                 dp_attention=4, ep=ep)
            assert isinstance(m, AttentionRanks), (sku, ep)
            one, four = m.step_s(StepLoad(0, 1, 333.0, 0.0)), m.step_s(StepLoad(0, 4, 4 * 333.0, 0.0))
            assert one > 0.006 and four == pytest.approx(one, rel=0.05)  # a sequence a rank: as fast as one alone
        assert kernel_step_time(MODELS[model], model, sku, "sglang", None, "fp8", "bf16", 8, 0.0,
                                dp_attention=2) is None  # a layout the tables lack: the roofline's


def test_moe_prefill_gap_is_charged_once_per_prefill_step():
    """derive_moe.py adds what the SDK's context path prices above the composition (`prefill_gap_ms`, the least
    difference at the checked prompts) to every point of ctx_attn_ms: one step with prompts pays it once, however
    many prompts it holds: 0-3 ms on every framework since vLLM's block-FP8 GEMMs are priced with SGLang's rows
    (vLLM's DeepSeek-R1 layouts on an H200 had ~10 ms while the SDK's host-bound vLLM rows priced its context path)."""
    doc = read_doc(ROOT / "hardware_profiles" / "kernels" / "h200.json.gz")
    gaps = {(r["model"], r["framework"], r["tp"], r.get("dp_attention", 1), r.get("ep", 1), r["kv_dtype"]):
            r["prefill_gap_ms"] for r in doc["attention"] if "prefill_gap_ms" in r}
    assert gaps and all(g >= 0 for g in gaps.values())
    for r in doc["attention"]:
        if "prefill_gap_ms" in r:
            assert r["ctx_attn_ms"][0] >= r["prefill_gap_ms"]
    vllm_gap = gaps[("deepseek-r1", "vllm", 8, 1, 1, "bf16")]
    assert 0.0 < vllm_gap < 3.0 and max(gaps.values()) < 3.0
    m = kernel_step_time(MODELS["deepseek-r1"], "deepseek-r1", "h200", "vllm", None, "fp8", "bf16", 8, 0.0)
    assert isinstance(m, KernelStepTime)
    pa_one = m.breakdown_s(StepLoad(128, 0, 0.0, 128 * 129 / 2))["prefill_attention"]
    pa_two = m.breakdown_s(StepLoad(256, 0, 0.0, 2 * 128 * 129 / 2))["prefill_attention"]
    # two 128-token prompts in one step: each one's attention above the table's first point, that point (the gap
    # with it) once
    assert 2 * pa_one - pa_two == pytest.approx(m._ctx[0]) and m._ctx[0] >= vllm_gap / 1e3


@pytest.mark.parametrize("sku", ["h100-sxm", "h200", "b200"])
def test_vllm_block_fp8_layers_are_not_slower_than_bf16_ones(sku):
    """The SDK's vLLM block-FP8 GEMM rows are host-bound (flat 60-90 us on Hopper, 170-560 us on Blackwell, from 1 to
    thousands of rows), so derive_moe.py prices vLLM's block-FP8 GEMMs with SGLang's rows of the same DeepGEMM kernel:
    Qwen3-235B-A22B-FP8's non-attention layers are then within 30% of SGLang's own FP8 layers at every token count up
    to 2,048 and, on Hopper, where half the weight bytes make FP8 decode faster, no slower than BF16's (with the
    host-bound rows they took twice BF16's time at one token; on Blackwell both frameworks' FP8 layers are slower than
    BF16 at a few tokens, the activation quantization's cost)."""
    tables = load_kernel_tables(sku)
    tokens = tables.grids["tokens"]
    tp = 4 if sku != "b200" else 8
    ep = 1 if sku != "b200" else 8
    fp8, bf16, sglang = (np.asarray(tables.linear[("qwen3-235b-a22b", fw, tp, 1, ep, dt)]["linear_ms"], dtype=float)
                         for fw, dt in (("vllm", "fp8"), ("vllm", "bf16"), ("sglang", "fp8")))
    upto = tokens.index(2048.0) + 1
    assert (np.abs(fp8[:upto] / sglang[:upto] - 1) < 0.3).all()
    if sku != "b200":
        assert (fp8[:upto] <= bf16[:upto] * 1.02).all()


@pytest.mark.parametrize("sku", ["h100-sxm", "h200"])
def test_sglang_prefills_mla_on_hopper_as_multi_head_attention(sku):
    """SGLang's FlashAttention-3 backend runs an MLA model's prefill as MHA over the decompressed K/V (sglang#5113),
    which the SDK's sglang context rows (absorbed MLA, aiconfigurator#124) do not time: on Hopper the SGLang records
    take vLLM's context attention (the same FA3 MHA) with their own prefill gap, so a 32K-token prompt's attention is
    within a third of TensorRT-LLM's, not 2-3x it. Blackwell keeps the SDK's rows."""
    def record(doc, fw):
        return next(r for r in doc["attention"] if r["model"] == "deepseek-r1" and r["framework"] == fw
                    and r["tp"] == 8 and r["dp_attention"] == 1 and r["ep"] == 1 and r["kv_dtype"] == "bf16")

    doc = read_doc(ROOT / "hardware_profiles" / "kernels" / f"{sku}.json.gz")
    sg, vl, trt = record(doc, "sglang"), record(doc, "vllm"), record(doc, "trtllm")
    assert sg["ctx_attn_from"].startswith("vllm")
    for a, b in zip(sg["ctx_attn_ms"], vl["ctx_attn_ms"]):
        assert a - sg["prefill_gap_ms"] == pytest.approx(b - vl["prefill_gap_ms"], rel=1e-3, abs=2e-3)
    at_32k = doc["grids"]["prompt_len"].index(32768)
    assert 0.67 < sg["ctx_attn_ms"][at_32k] / trt["ctx_attn_ms"][at_32k] < 1.5
    blackwell = read_doc(ROOT / "hardware_profiles" / "kernels" / "b200.json.gz")
    assert "ctx_attn_from" not in record(blackwell, "sglang")
