"""Regenerate hardware_profiles/kernels/<sku>.json.gz: compact kernel-time tables derived offline from NVIDIA's
aiconfigurator-core SDK (operator timings measured on real GPUs, composed per model by the SDK).

Why offline: the SDK is an 82 MB binary wheel (manylinux/macOS arm64 only, Python 3.11-3.13, numpy>=2.1) with a
seconds-long cold start; simfactory reads these few-MB tables instead and never imports it (see README.md here).

    python3.11 -m venv /tmp/aic-venv && /tmp/aic-venv/bin/pip install -e ".[kernels]"
    /tmp/aic-venv/bin/python calibrate/kernels/derive.py            # all SKUs, models, frameworks
    /tmp/aic-venv/bin/python calibrate/kernels/derive.py --sku h100-sxm --model llama-3.1-8b --check

What one table holds, per (model, framework, TP) and SDK database version (milliseconds, one engine step on one
GPU of the TP group; see simfactory/hardware/kernels.py for how a step is composed from them):
  linear:    per weight dtype, on the token grid T (tokens in the step = prefill tokens + decode sequences):
             `linear_ms`    every non-attention op at T tokens (GEMMs, norms, activation, embedding) but the logits
             `allreduce_ms` the tensor-parallel all-reduces at T tokens (zero at TP 1)
             `logits_ms`    the logits GEMM at m = T rows (rows = sequences that sample a token)
  attention: per KV-cache dtype,
             `decode_attn_ms[b][j]` decode attention of batch[b] sequences each reading kv_len[j] tokens
             `ctx_attn_ms[i]`       context (prefill) attention of one whole prompt of prompt_len[i] tokens
The SDK queries: EngineHandle.evaluate_generation_ops (the generation op list at batch T, which for non-attention
ops equals the context op list at T tokens) and mixed_step_breakdown(L, 0, L, 2)[2] for a prompt's attention.
A decode step at grid (B, s) therefore reproduces decode_step_latency(B, s - 1, 0) exactly before the monotone fit and
the static-FP8 saving (STATIC_FP8_LAUNCH_SAVING) are applied (checked below, on those raw curves).

Tables are forced monotone (least-absolute-deviations isotonic fit: non-decreasing in tokens, batch, KV length and
prompt length); each table changed gets a row in calibrate/kernels/anomalies.csv (points changed, the largest
change) and its record counts the points. Cross-record oddities (FP8 slower than BF16, more TP slower) are listed
there too but not changed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import atexit
import importlib.metadata
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simfactory.config.loader import load_model_file
from simfactory.config.profile import EngineCatalog, HardwareProfile, ModelArch, ModelCatalog
from simfactory.config.scenario import kv_dtype_for
from simfactory.hardware.kernel_file import FORMAT, read_doc, write_doc
from simfactory.hardware.memory import plan_memory

PYPI_URL = "https://pypi.org/project/aiconfigurator-core/0.12.0/"
REPO_URL = "https://github.com/ai-dynamo/aiconfigurator"
ATTRIBUTION = (
    "Derived from NVIDIA AIConfigurator (aiconfigurator-core 0.12.0: its kernel performance database and step "
    "composition), Copyright (c) 2025-2026 NVIDIA CORPORATION & AFFILIATES, licensed under the Apache License 2.0 "
    "(http://www.apache.org/licenses/LICENSE-2.0). Changes: resampled on simfactory's grids by "
    "calibrate/kernels/derive.py and forced monotone; TensorRT-LLM FP8 linear layers less what the SDK's static-scale "
    "lane saves at one token (static_fp8_saving_ms); vLLM's block-FP8 GEMMs in the mixture-of-experts records priced "
    "with SGLang's block-FP8 GEMM rows of the same SKU (calibrate/kernels/derive_moe.py, VLLM_BLOCK_FP8_FROM); "
    "SGLang's BF16 mixture-of-experts records where the SDK times them with another kernel carry a second curve with "
    "its Triton fused_moe rows of the same SKU in their place (linear_ms_triton_moe, TRITON_MOE_KERNEL); SGLang's "
    "mixture-of-experts records on SKUs where the SDK also ships SGLang 0.5.10's measured MoE kernels carry a second "
    "curve with those rows in place of the current release's (linear_ms_older_moe, OLDER_MOE_RELEASE)."
)

# simfactory SKU -> aiconfigurator system (only SKUs with measured data in the SDK; B300 and the GB200/GB300 racks
# since 2026-12-06, beside their MoE records)
SYSTEMS = {"a100-80gb": "a100_sxm", "h100-sxm": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm", "l40s": "l40s",
           "b300": "b300_sxm", "gb200": "gb200", "gb300": "gb300"}
FRAMEWORKS = ("vllm", "sglang", "trtllm")
TPS = (1, 2, 4, 8)
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default; the same fit test resolve applies (simfactory.hardware.memory)
# A layout is derived when it fits under vLLM's default (above) or under its own framework's memory rule (the engine
# preset's in hardware_profiles/engines.yaml): TensorRT-LLM, which sizes its KV cache from what is left after the
# weights (fraction_of_free), runs layouts vLLM's 0.9 of the whole device cannot, e.g. Llama-3.1-70B FP16 at TP2 on
# 2 x A100-80GB (NVIDIA's perf overview, 0.17).
FIT_PRESETS = {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt-llm"}


def _fit_rules() -> dict:
    presets = {e.name: e for e in load_model_file(EngineCatalog, ROOT / "hardware_profiles" / "engines.yaml").engines}
    return {fw: presets[name].memory for fw, name in FIT_PRESETS.items()}


FIT_RULES = _fit_rules()
# simfactory dtype -> SDK quant modes. FMHA stays bf16 with an FP8 KV cache (the SDK's default lane on Hopper).
GEMM_QUANT = {"bf16": "bfloat16", "fp8": "fp8", "fp4": "nvfp4"}  # fp4: NVIDIA's NVFP4 checkpoints (ModelOpt), Blackwell only
# Per-tensor FP8 in TensorRT-LLM is a ModelOpt checkpoint with static activation scales (trtllm-build, trtllm-bench and
# NIM quantize with ModelOpt; TensorRT-LLM's FP8QDQ linear runs static_quantize_e4m3_per_tensor when the checkpoint
# has an input_scale). The SDK's trtllm `fp8` GEMM rows are timed without one, so each GEMM carries a dynamic
# quantization (amax reduction, scale: ~7 us a GEMM on H100 at 1-16 tokens, launch-bound; collector/trtllm/
# collect_gemm.py says so), and the SDK prices ModelOpt per-tensor checkpoints as `fp8_static` instead (its rows
# less the measured compute-scale, less the static quantize where the producing kernel can emit FP8;
# https://github.com/ai-dynamo/aiconfigurator/pull/261). What that saves at one token (the launch-bound kernels) is
# taken off at every token count; the part of the static lane's saving that grows with the step's tokens is not:
# TensorRT-LLM's published large-batch throughput (perf-overview 0.13-0.17, MLPerf Llama-2-70B) agrees with the
# dynamic rows within 2-3% (with this saving -1.9% to +3.6% bias), and goes 6-10% optimistic with the whole
# static lane. vLLM's and SGLang's FP8 lanes stay
# as timed (dynamic: their compute-scale is 0-1.2 us a GEMM, their whole static saving 0.3-0.5 ms a step at one token
# on H100, and their usual FP8 deployments quantize at run time).
STATIC_FP8_LAUNCH_SAVING = {"trtllm"}
KV_QUANT = {"bf16": "bfloat16", "fp8": "fp8", "fp4": "fp8"}  # an FP4 model's KV cache in FP8 (its fp8 attention records serve it)
FMHA_QUANT = "bfloat16"

# Grids (shared by every record of every file). Batch and KV length follow the SDK's own grids (powers of two)
# with midpoints, which also catch the kinks of its +-10% smoothing of decode attention; every batch is a token
# point, so a decode-only step at a grid batch needs no interpolation of the non-attention part. KV lengths start
# at 8: below that the SDK extrapolates off its grid (lower values at s = 1, 2), while decode attention of short
# contexts is launch-bound and flat, so the model holds the value at 8.
BATCH = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224,
         256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 2048]
KV_LEN = [8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384,
          24576, 32768, 49152, 65536, 98304, 131072]
TOKENS = sorted(set(BATCH) | {2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480,
                              24576, 28672, 32768, 40960, 49152, 65536})
PROMPT_LEN = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192,
              12288, 16384, 24576, 32768, 49152, 65536, 98304, 131072]

# Shapes models.yaml does not hold (the SDK needs them for GEMM sizes) for models without a config.json in
# calibrate/model_configs/ or in the SDK's own model_configs/.
EXTRA_SHAPES = {
    "llama-2-70b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "intermediate_size": 28672,
        "vocab_size": 32000, "tie_word_embeddings": False,
        "_source": "huggingface.co/meta-llama/Llama-2-70b-hf config.json (as cited in hardware_profiles/models.yaml)",
    },
    "llama-3.2-1b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "intermediate_size": 8192,
        "vocab_size": 128256, "tie_word_embeddings": True,
        "_source": "huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
    },
    "llama-7b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "intermediate_size": 11008,
        "vocab_size": 32000, "tie_word_embeddings": False,
        "_source": "huggingface.co/huggyllama/llama-7b/blob/main/config.json (cited in models.yaml)",
    },
    "llama-13b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "intermediate_size": 13824,
        "vocab_size": 32000, "tie_word_embeddings": False,
        "_source": "huggingface.co/huggyllama/llama-13b/blob/main/config.json (cited in models.yaml)",
    },
}
SDK_MODEL_CONFIGS = {"llama-3.1-405b": "meta-llama--Meta-Llama-3.1-405B_config.json"}

log = logging.getLogger("derive")


def model_config_dir(arch: ModelArch, work: Path) -> tuple[Path, str]:
    """A folder with a Hugging Face config.json for this model (no download ever): ours, the SDK's, or one written
    from ModelArch plus EXTRA_SHAPES. Checks the shape against models.yaml."""
    import aiconfigurator_core

    ours = ROOT / "calibrate" / "model_configs" / arch.id / "config.json"
    sdk_dir = Path(aiconfigurator_core.__file__).parent / "model_configs"
    out = work / arch.id
    out.mkdir(parents=True, exist_ok=True)
    if ours.is_file():
        cfg, source = json.loads(ours.read_text()), f"calibrate/model_configs/{arch.id}/config.json"
    elif arch.id in SDK_MODEL_CONFIGS:
        name = SDK_MODEL_CONFIGS[arch.id]
        cfg, source = json.loads((sdk_dir / name).read_text()), f"aiconfigurator_core/model_configs/{name}"
    elif arch.id in EXTRA_SHAPES:
        extra = dict(EXTRA_SHAPES[arch.id])
        source = "written from hardware_profiles/models.yaml + " + extra.pop("_source")
        cfg = {**extra, "hidden_size": arch.hidden, "num_hidden_layers": arch.layers,
               "num_attention_heads": arch.heads, "num_key_value_heads": arch.kv_heads, "head_dim": arch.head_dim,
               "max_position_embeddings": arch.max_context_tokens, "torch_dtype": "bfloat16", "hidden_act": "silu",
               "rms_norm_eps": 1e-5}
    else:
        raise LookupError(f"no config.json for {arch.id}: add calibrate/model_configs/{arch.id}/config.json")
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    got = (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
           head_dim)
    want = (arch.layers, arch.hidden, arch.heads, arch.kv_heads, arch.head_dim)
    if got != want:
        raise ValueError(f"{arch.id}: {source} has (layers, hidden, heads, kv_heads, head_dim) {got}, "
                         f"models.yaml {want}")
    (out / "config.json").write_text(json.dumps(cfg))
    return out, source


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return ys[n // 2] if n % 2 else 0.5 * (ys[n // 2 - 1] + ys[n // 2])


def isotonic(values: list[float]) -> list[float]:
    """Least-absolute-deviations non-decreasing fit (pool adjacent violators with block medians; Robertson,
    Wright & Dykstra, Order Restricted Statistical Inference, 1988): a run that goes down is replaced by its
    median. Why medians: the SDK's tables hold both noise (+-5-10% where small GEMMs and short-context attention
    are launch- or memory-bound, flat in the batch) and isolated spikes and dips (e.g. 3.0 ms among 0.8-1.1 ms);
    a running maximum turns noise and spikes into a systematic slowdown and a least-squares fit lets one spike
    lift a long run, while the median ignores it."""
    blocks: list[list[float]] = []
    for v in values:
        blocks.append([v])
        while len(blocks) > 1 and _median(blocks[-2]) > _median(blocks[-1]):
            last = blocks.pop()
            blocks[-1].extend(last)
    out: list[float] = []
    for blk in blocks:
        out.extend([_median(blk)] * len(blk))
    return out


def cummax(values: list[float]) -> list[float]:
    out, top = [], -math.inf
    for v in values:
        top = max(top, v)
        out.append(top)
    return out


def monotone(values: list[float], where: list[str], table: str, tag: dict, anomalies: list[dict]) -> list[float]:
    """isotonic(values); logs one anomaly row per table that changed: how many points, the largest relative change."""
    out = isotonic(values)
    changed = [(abs(b - a) / a if a else math.inf, i) for i, (a, b) in enumerate(zip(values, out)) if b != a]
    if changed:
        _, i = max(changed)
        anomalies.append({**tag, "table": table, "points": f"{len(changed)}/{len(values)}", "at": where[i],
                          "sdk_ms": values[i], "forced_ms": out[i], "rel_change": out[i] / values[i] - 1})
    return out


def monotone_2d(table: list[list[float]], tag: dict, anomalies: list[dict]) -> list[list[float]]:
    """decode_attn_ms[b][j] made non-decreasing along KV length (rows), then along batch (columns); one anomaly row."""
    nb, ns = len(BATCH), len(KV_LEN)
    rows = [isotonic(r) for r in table]
    cols = [isotonic([rows[b][j] for b in range(nb)]) for j in range(ns)]
    # the column fit can leave a row slightly out of order (medians of pooled blocks): a running maximum along
    # rows, then columns, restores both (it is order-preserving, so the second pass keeps the first's order)
    rows = [cummax([cols[j][b] for j in range(ns)]) for b in range(nb)]
    cols = [cummax([rows[b][j] for b in range(nb)]) for j in range(ns)]
    out = [[cols[j][b] for j in range(ns)] for b in range(nb)]
    assert all(x <= y for r in out for x, y in zip(r, r[1:])), "KV-length order"
    assert all(out[b][j] <= out[b + 1][j] for b in range(nb - 1) for j in range(ns)), "batch order"
    changed = [(abs(out[b][j] - table[b][j]) / table[b][j], b, j) for b in range(len(BATCH)) for j in range(len(KV_LEN))
               if out[b][j] != table[b][j]]
    if changed:
        _, b, j = max(changed)
        anomalies.append({**tag, "table": "decode_attn_ms", "points": f"{len(changed)}/{len(BATCH) * len(KV_LEN)}",
                          "at": f"B={BATCH[b]} s={KV_LEN[j]}", "sdk_ms": table[b][j], "forced_ms": out[b][j],
                          "rel_change": out[b][j] / table[b][j] - 1})
    return out


def count_points(rows: list[dict]) -> int:
    return sum(int(r["points"].split("/")[0]) for r in rows)


def _scratch(prefix: str) -> Path:
    """A scratch folder for the SDK's config files, removed when the script ends (they were left in /tmp)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def sig(x: float) -> float:
    return float(f"{x:.6g}")


class Deriver:
    def __init__(self, system: str, framework: str, version: str, cfg_dir: Path):
        self.system, self.framework, self.version, self.cfg_dir = system, framework, version, cfg_dir
        self.handles: dict[tuple, object] = {}

    def handle(self, tp: int, dtype: str, kv_dtype: str, quant: str | None = None):
        from aiconfigurator_core.sdk.engine import EngineHandle

        quant = quant or GEMM_QUANT[dtype]
        key = (tp, quant, kv_dtype)
        if key not in self.handles:
            self.handles[key] = EngineHandle.compile(
                str(self.cfg_dir), self.system, self.framework, backend_version=self.version, tp_size=tp,
                gemm_quant_mode=quant, kvcache_quant_mode=KV_QUANT[kv_dtype], fmha_quant_mode=FMHA_QUANT)
        return self.handles[key]

    def static_fp8_one_token_ms(self, tp: int, dtype: str) -> tuple[float, float] | None:
        """(dynamic, static) non-attention time of a one-token step where static activation scales apply
        (STATIC_FP8_LAUNCH_SAVING), None elsewhere."""
        if dtype != "fp8" or self.framework not in STATIC_FP8_LAUNCH_SAVING:
            return None
        dyn, static = self.handle(tp, dtype, dtype), self.handle(tp, dtype, dtype, "fp8_static")
        return ms_sum(dyn, op_indices(dyn)["linear"], 1, 1), ms_sum(static, op_indices(static)["linear"], 1, 1)


def static_saving_ms(fitted_one_token_ms: float, one_token: tuple[float, float] | None) -> float:
    """The constant taken off a monotone-fitted linear curve: what the static lane saves at one token, never taking
    the curve below the static lane's own one-token time (the fit may have lowered that point)."""
    if one_token is None:
        return 0.0
    dyn, static = one_token
    return max(0.0, min(dyn - static, fitted_one_token_ms - static))


def with_static_saving(linear_ms: list[float], one_token: Callable[[], tuple[float, float] | None],
                       refused: list[str], what: str) -> tuple[list[float], dict[str, float]]:
    """A monotone-fitted linear curve less its static-FP8 saving (STATIC_FP8_LAUNCH_SAVING), and the record field
    that says so. one_token gives (dynamic, static) one-token times, None where the saving does not apply; where the
    SDK cannot price the static lane the dynamic rows are kept and `refused` says so."""
    try:
        one = one_token()
    except Exception as e:  # the SDK's errors are its own classes
        refused.append(f"{what}: no static-FP8 saving ({type(e).__name__}: {str(e)[:120]}); the dynamic rows kept")
        one = None
    saving = static_saving_ms(linear_ms[0], one)  # a constant off a monotone curve keeps it monotone
    return [x - saving for x in linear_ms], ({"static_fp8_saving_ms": sig(saving)} if saving else {})


def op_indices(h) -> dict[str, list[int]]:
    """Positions in the generation op list: attention, logits, all-reduces, point-to-point, everything else."""
    names = [n for n, *_ in h.decode_step_per_op(1, 1, 0)]
    groups: dict[str, list[int]] = {"attention": [], "logits": [], "allreduce": [], "p2p": [], "linear": []}
    for i, n in enumerate(names):
        if n == "generation_attention":
            groups["attention"].append(i)
        elif n.endswith("logits_gemm"):
            groups["logits"].append(i)
        elif n.endswith("_ar") or "_ar_" in n:
            groups["allreduce"].append(i)
        elif n.endswith("_p2p"):
            groups["p2p"].append(i)
        else:
            groups["linear"].append(i)
    if len(groups["attention"]) != 1 or len(groups["logits"]) != 1:
        raise ValueError(f"unexpected generation op list {names}")
    return groups


def ms_sum(h, idx: list[int], batch: int, s: int) -> float:
    return sum(v[1] for v in h.evaluate_generation_ops(idx, batch_size=batch, s=s)) if idx else 0.0


def derive_linear(h) -> dict:
    g = op_indices(h)
    return {
        "linear_ms": [ms_sum(h, g["linear"], t, 1) for t in TOKENS],
        "allreduce_ms": [ms_sum(h, g["allreduce"], t, 1) for t in TOKENS],
        "logits_ms": [ms_sum(h, g["logits"], t, 1) for t in TOKENS],
    }


def derive_attention(h, bf16_handle) -> tuple[dict, list[str]]:
    """Decode attention on the (batch, KV length) grid and one whole prompt's context attention per length. Where
    the SDK has no context-attention rows for this KV dtype (sglang with an FP8 KV cache on Hopper), the BF16-KV
    lane stands in (prefill attention runs on BF16 activations either way) and the record's notes say so."""
    g = op_indices(h)
    dec = [[ms_sum(h, g["attention"], b, s) for s in KV_LEN] for b in BATCH]
    notes = []
    try:
        ctx = [h.mixed_step_breakdown(n, 0, n, 2)[2] for n in PROMPT_LEN]
    except Exception as e:
        if bf16_handle is None:
            raise
        ctx = [bf16_handle.mixed_step_breakdown(n, 0, n, 2)[2] for n in PROMPT_LEN]
        notes.append(f"ctx_attn_ms from the BF16-KV lane: the SDK has no context attention for this KV dtype "
                     f"({type(e).__name__})")
    return {"decode_attn_ms": dec, "ctx_attn_ms": ctx}, notes


def check_against_sdk(h, lin: dict, att: dict) -> dict:
    """Before the monotone fit, a step at grid points must equal the SDK: decode_step_latency(B, s - 1, 0) for
    decode, predict_prefill_latency(1, L) for one whole prompt (logits of its one sampled row)."""
    t_index = {t: i for i, t in enumerate(TOKENS)}

    def fixed(t: int, rows: int) -> float:
        return lin["linear_ms"][t_index[t]] + lin["allreduce_ms"][t_index[t]] + lin["logits_ms"][t_index[rows]]

    decode = 0.0
    for b in (1, 8, 64, 512):
        for j, s in enumerate(KV_LEN):
            if s <= 65536:
                ref = h.decode_step_latency(b, s - 1, 0)
                decode = max(decode, abs(fixed(b, b) + att["decode_attn_ms"][BATCH.index(b)][j] - ref) / ref)
    prefill = 0.0
    for i, n in enumerate(PROMPT_LEN):
        if n in t_index and n <= 16384:
            try:
                ref = h.predict_prefill_latency(1, n)
            except Exception:  # no context attention for this KV dtype (the record's notes say what stands in)
                break
            prefill = max(prefill, abs(fixed(n, 1) + att["ctx_attn_ms"][i] - ref) / ref)
    return {"grid_max_rel_err": max(decode, prefill)}


def derive_system(sku: str, models: list[ModelArch], frameworks: list[str], out_dir: Path, anomalies: list[dict],
                  check: bool) -> dict:
    from aiconfigurator_core.sdk.perf_database import get_version_slots

    system = SYSTEMS[sku]
    profile = load_model_file(HardwareProfile, ROOT / "hardware_profiles" / f"{sku}.yaml")
    dtypes = ["bf16"] + (["fp8"] if profile.spec.fp8_tflops else []) + (["fp4"] if profile.spec.fp4_tflops else [])
    versions = {fw: (get_version_slots(system, fw) or {}).get("current") for fw in frameworks}
    work = _scratch("aic-derive-")
    linear_recs, attn_recs, model_meta, refused, checks = [], [], {}, [], []
    try:
        for arch in models:
            try:
                cfg_dir, cfg_source = model_config_dir(arch, work)
            except LookupError as e:  # a catalogue model with no config to give the SDK: listed, not fatal
                refused.append(str(e))
                continue
            model_meta[arch.id] = {"layers": arch.layers, "hidden": arch.hidden, "heads": arch.heads,
                                   "kv_heads": arch.kv_heads, "head_dim": arch.head_dim, "config": cfg_source}
            for fw in frameworks:
                version = versions[fw]
                if version is None:
                    refused.append(f"{arch.id} {fw}: no queryable version on {system}")
                    continue
                der = Deriver(system, fw, version, cfg_dir)
                for tp in TPS:
                    if arch.heads % tp:
                        refused.append(f"{arch.id} {fw} TP{tp}: {arch.heads} heads do not split over {tp} GPUs")
                        continue
                    fits = {d: plan_memory(arch, profile.spec, d, kv_dtype_for(d), tp, GPU_MEMORY_UTILIZATION).fits
                            or plan_memory(arch, profile.spec, d, kv_dtype_for(d), tp, rule=FIT_RULES[fw]).fits
                            for d in dtypes}
                    if not any(fits.values()):
                        refused.append(f"{arch.id} {fw} TP{tp}: does not fit {tp} x {sku} in any dtype")
                        continue
                    bf16_ctx = None
                    for d in dtypes:
                        key = dict(model=arch.id, framework=fw, tp=tp)
                        t0 = time.perf_counter()
                        try:
                            h = der.handle(tp, d, d)
                            att, att_notes = derive_attention(h, bf16_ctx)
                            lin = derive_linear(h) if fits[d] else None
                            if d == "bf16":
                                bf16_ctx = h
                        except Exception as e:
                            refused.append(f"{arch.id} {fw} {d} TP{tp}: {type(e).__name__}: {str(e)[:160]}")
                            log.warning("refused %s %s %s TP%d: %s", arch.id, fw, d, tp, str(e)[:160])
                            continue
                        if check and lin is not None:
                            c = check_against_sdk(h, lin, att)
                            checks.append({**key, "dtype": d, **c})
                        tag = dict(sku=sku, model=arch.id, framework=fw, version=version, tp=tp)
                        before = len(anomalies)
                        if lin is not None:
                            for name in ("linear_ms", "allreduce_ms", "logits_ms"):
                                lin[name] = monotone(lin[name], [f"T={t}" for t in TOKENS], name,
                                                     {**tag, "dtype": d}, anomalies)
                            lin["linear_ms"], static = with_static_saving(
                                lin["linear_ms"], lambda: der.static_fp8_one_token_ms(tp, d), refused,
                                f"{arch.id} {fw} {d} TP{tp}")
                            linear_recs.append({**key, "dtype": d,
                                                **{k: [sig(x) for x in v] for k, v in lin.items()},
                                                "monotone_fixes": count_points(anomalies[before:]), **static})
                        if d == "fp4":  # its FP8 KV cache: the fp8 weights' attention records serve it
                            log.info("%s %s %s %s TP%d: %.2fs", sku, arch.id, fw, d, tp, time.perf_counter() - t0)
                            continue
                        before = len(anomalies)
                        atag = {**tag, "dtype": f"kv {d}"}
                        dec = monotone_2d(att["decode_attn_ms"], atag, anomalies)
                        ctx = monotone(att["ctx_attn_ms"], [f"L={n}" for n in PROMPT_LEN], "ctx_attn_ms", atag,
                                       anomalies)
                        attn_recs.append({**key, "kv_dtype": d,
                                          "decode_attn_ms": [[sig(x) for x in row] for row in dec],
                                          "ctx_attn_ms": [sig(x) for x in ctx],
                                          "monotone_fixes": count_points(anomalies[before:]),
                                          **({"notes": att_notes} if att_notes else {})})
                        log.info("%s %s %s %s TP%d: %.2fs", sku, arch.id, fw, d, tp, time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cross_record_anomalies(sku, linear_recs, attn_recs, versions, anomalies)
    header = {
        "format": FORMAT,
        "sku": sku,
        "system": system,
        "source": f"aiconfigurator-core 0.12.0 {PYPI_URL} ({REPO_URL}): NVIDIA's operator timings measured on "
                  f"real GPUs, composed per model by its SDK; resampled by calibrate/kernels/derive.py",
        "as_of": date.today().strftime("%Y-%m"),
        "generated": date.today().isoformat(),
        "license": "Apache-2.0",
        "attribution": ATTRIBUTION,
        "sdk": sdk_info(),
        "frameworks": versions,
        "quant": {d: {"gemm": GEMM_QUANT[d], "kv_cache": KV_QUANT[d], "fmha": FMHA_QUANT} for d in dtypes},
        "static_fp8_launch_saving": sorted(STATIC_FP8_LAUNCH_SAVING),
        "units": "milliseconds per engine step on one GPU of the TP group (kernel time only: no engine overhead)",
        "gpu_memory_utilization_fit": GPU_MEMORY_UTILIZATION,
        "fit_rules": "a layout fits under vLLM's 0.9 of the device or under its framework's engine preset's memory "
                     f"rule ({', '.join(f'{k}: {v}' for k, v in FIT_PRESETS.items())}; hardware_profiles/engines.yaml)",
        "refused": refused,
    }
    doc = {**header, "grids": {"batch": BATCH, "kv_len": KV_LEN, "tokens": TOKENS, "prompt_len": PROMPT_LEN},
           "models": model_meta, "linear": linear_recs, "attention": attn_recs}
    path = out_dir / f"{sku}.json.gz"
    write_doc(doc, path)  # format 2: curves as text (simfactory/hardware/kernel_file.py)
    return {"sku": sku, "path": str(path), "bytes": path.stat().st_size, "linear": len(linear_recs),
            "attention": len(attn_recs), "refused": len(refused), "checks": checks}


def cross_record_anomalies(sku: str, linear: list[dict], attn: list[dict], versions: dict,
                           anomalies: list[dict]) -> None:
    """Logged, not changed: a B=1, KV 1024 decode step slower in FP8 than in BF16, or slower at a higher TP."""
    j = KV_LEN.index(1024)
    attn_by_key = {(a["model"], a["framework"], a["tp"], a["kv_dtype"]): a for a in attn}
    step = {}
    for lin in linear:
        key = (lin["model"], lin["framework"], lin["tp"], lin["dtype"])
        att = attn_by_key.get(key)
        if att is not None:
            step[key] = lin["linear_ms"][0] + lin["allreduce_ms"][0] + lin["logits_ms"][0] + att["decode_attn_ms"][0][j]
    for (m, fw, tp, d), v in step.items():
        tag = dict(sku=sku, model=m, framework=fw, version=versions[fw], tp=tp)
        if d == "fp8" and (m, fw, tp, "bf16") in step and v > step[(m, fw, tp, "bf16")]:
            anomalies.append({**tag, "dtype": "fp8 vs bf16", "table": "decode step (not changed)", "points": "",
                              "at": "B=1 s=1024", "sdk_ms": v, "forced_ms": step[(m, fw, tp, "bf16")],
                              "rel_change": v / step[(m, fw, tp, "bf16")] - 1})
        lower = [t for t in TPS if t < tp and (m, fw, t, d) in step]
        if lower and v > step[(m, fw, lower[-1], d)]:
            anomalies.append({**tag, "dtype": d, "table": f"decode step vs TP{lower[-1]} (not changed)", "points": "",
                              "at": "B=1 s=1024", "sdk_ms": v, "forced_ms": step[(m, fw, lower[-1], d)],
                              "rel_change": v / step[(m, fw, lower[-1], d)] - 1})


def sdk_info() -> dict:
    info = {"package": "aiconfigurator-core", "version": importlib.metadata.version("aiconfigurator-core"),
            "pypi": PYPI_URL, "repository": REPO_URL}
    try:
        files = importlib.metadata.files("aiconfigurator-core") or []
        so = [f for f in files if str(f).endswith(".so")]
        if so:
            info["extension_sha256"] = hashlib.sha256(Path(so[0].locate()).read_bytes()).hexdigest()
    except OSError:
        pass
    return info


def setup(verbose: bool) -> list[ModelArch]:
    """Logging for a derivation run (the SDK's own loggers quiet), and the model catalogue."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    for noisy in ("aiconfigurator_core", "aiconfigurator"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return load_model_file(ModelCatalog, ROOT / "hardware_profiles" / "models.yaml").models


def merge_into(existing: Path, fresh: dict, model_ids: set[str], frameworks: set[str]) -> dict:
    """The existing file's document with the fresh run's records of `model_ids` (under `frameworks`) in place of its
    own, every other record, the MoE section and the header kept as they are (a `merged` entry says what came in
    when). Refused where the fresh run read another SDK or framework versions: one file holds one SDK's tables."""
    doc = read_doc(existing)
    differ = [key for key in ("sdk", "grids", "format") if fresh.get(key) != doc.get(key)]
    differ += ["frameworks"] if any(doc["frameworks"].get(fw) != v for fw, v in fresh["frameworks"].items()) else []
    if differ:  # the run's frameworks may be a subset of the file's, at the file's versions
        raise SystemExit(f"{existing}: its {', '.join(differ)} differs from this run's; derive the whole file instead")

    def kept(rec: dict) -> bool:
        return not (rec["model"] in model_ids and rec["framework"] in frameworks)

    doc["models"] = {**doc["models"], **fresh["models"]}
    doc["linear"] = [r for r in doc["linear"] if kept(r)] + fresh["linear"]
    doc["attention"] = [r for r in doc["attention"] if kept(r)] + fresh["attention"]
    # derive_system's refusals name the model, then the framework ("m fw ..." or "m fw: ..."), or its missing config
    stale = tuple(f"{m} {fw}{sep}" for m in model_ids for fw in frameworks for sep in (" ", ":"))
    stale += tuple(f"no config.json for {m}:" for m in model_ids)
    doc["refused"] = [x for x in doc["refused"] if not x.startswith(stale)] + fresh["refused"]
    doc["merged"] = [*doc.get("merged", []), {"models": sorted(model_ids), "frameworks": sorted(frameworks),
                                               "generated": fresh["generated"]}]
    return doc


def merge_anomalies(path: Path, fresh: list[dict], skus: set[str], model_ids: set[str]) -> list[dict]:
    """The anomalies file's rows less those of these SKUs' models, then this run's: a merge rewrites no other row."""
    if not path.is_file():
        return fresh
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not (r["sku"] in skus and r["model"] in model_ids)]
    for r in rows:  # as written: numbers back to floats for the writer's format
        r.update(sdk_ms=float(r["sdk_ms"]), forced_ms=float(r["forced_ms"]), rel_change=float(r["rel_change"]))
    return rows + fresh


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sku", action="append", choices=sorted(SYSTEMS), help="default: all")
    ap.add_argument("--model", action="append", help="default: every dense model in hardware_profiles/models.yaml")
    ap.add_argument("--framework", action="append", choices=FRAMEWORKS, help="default: all")
    ap.add_argument("--out", type=Path, default=ROOT / "hardware_profiles" / "kernels")
    ap.add_argument("--anomalies", type=Path, default=ROOT / "calibrate" / "kernels" / "anomalies.csv")
    ap.add_argument("--check", action="store_true", help="compare grid points with the SDK's decode_step_latency")
    ap.add_argument("--merge", action="store_true",
                    help="add the --model records to each SKU's existing file, every other record kept as it is")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    models = [m for m in setup(args.verbose) if not m.is_moe and (not args.model or m.id in args.model)]
    if args.merge and not args.model:
        ap.error("--merge adds the models named with --model")
    anomalies: list[dict] = []
    total = 0
    frameworks = args.framework or list(FRAMEWORKS)
    for sku in args.sku or list(SYSTEMS):
        t0 = time.perf_counter()
        out = Path(tempfile.mkdtemp(prefix="aic-merge-")) if args.merge else args.out
        r = derive_system(sku, models, frameworks, out, anomalies, args.check)
        if args.merge:
            fresh, target = read_doc(Path(r["path"])), args.out / f"{sku}.json.gz"
            write_doc(merge_into(target, fresh, {m.id for m in models}, set(frameworks)), target)
            shutil.rmtree(out, ignore_errors=True)
            r["bytes"] = target.stat().st_size
        total += r["bytes"]
        worst = max((c["grid_max_rel_err"] for c in r["checks"]), default=None)
        print(f"{sku}: {r['linear']} linear + {r['attention']} attention records, {r['refused']} refused, "
              f"{r['bytes'] / 1e3:.0f} kB, {time.perf_counter() - t0:.0f} s"
              + (f"; max rel. difference from the SDK at grid points {worst:.1e}" if worst is not None else ""))
    if args.merge:
        anomalies = merge_anomalies(args.anomalies, anomalies, set(args.sku or SYSTEMS), {m.id for m in models})
    args.anomalies.parent.mkdir(parents=True, exist_ok=True)
    with open(args.anomalies, "w", newline="") as f:
        w = csv.DictWriter(f, ["sku", "model", "framework", "version", "tp", "dtype", "table", "points", "at",
                               "sdk_ms", "forced_ms", "rel_change"])
        w.writeheader()
        for a in anomalies:
            w.writerow({**a, "sdk_ms": f"{a['sdk_ms']:.6g}", "forced_ms": f"{a['forced_ms']:.6g}",
                        "rel_change": f"{a['rel_change']:+.4f}"})
    print(f"total {total / 1e6:.2f} MB; {len(anomalies)} anomalies -> {args.anomalies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
