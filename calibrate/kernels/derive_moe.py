"""Add mixture-of-experts models (DeepSeek-R1/V3 and Kimi K2 with MLA; Qwen3-235B-A22B, Mixtral-8x7B and, on
Hopper and Blackwell, gpt-oss-120b/20b with grouped-query attention) to hardware_profiles/kernels/<sku>.json.gz: per parallel
layout (devices, attention data-parallel groups, expert-parallel degree) kernel tables from NVIDIA's
aiconfigurator-core SDK, on the same grids as derive.py's dense tables and merged into the same files (the dense
records are left as they are; a SKU without a file gets one).

    HOME=$(mktemp -d) /tmp/aic-venv/bin/python calibrate/kernels/derive_moe.py        # every model, every SKU
    HOME=$(mktemp -d) /tmp/aic-venv/bin/python calibrate/kernels/derive_moe.py --model qwen3-235b-a22b
    HOME=$(mktemp -d) /tmp/aic-venv/bin/python calibrate/kernels/derive_moe.py --framework vllm   # the others kept

One record describes ONE attention rank of the layout (the SDK's per-rank step: the tables' tokens, batch and
prompts are that rank's); simfactory/hardware/kernels.py divides a replica's step among its dp_attention ranks.
What the SDK composes differently for these models, and how the tables hold it:
  linear(T)          every generation op at T tokens but the MLA block and the logits: norms, the MoE layer with its
                     dispatch/combine all-to-all (the SDK's overlapped `moe_overlap`), embedding, pipeline p2p
  decode_attn(B, s)  the whole generation MLA block (its projections and absorbed attention) of B sequences each
                     reading s tokens: the SDK prices projections and attention as one measured op; for
                     grouped-query attention the attention op alone (its QKV and output GEMMs are in linear)
  ctx_attn(L)        the whole context MLA block (or attention op) of one prompt of L tokens
so a decode step at grid points is the SDK's decode_step_latency exactly (before the monotone fit and the
static-FP8 saving of per-tensor FP8 on TensorRT-LLM, derive.py), and a prompt's prefill prices its MoE
with the generation-phase op at the prompt's token count (the SDK's context MoE path splits dispatch, experts and
combine, and some frameworks' context paths add an all-reduce op of their own). What the SDK's context path prices
above that composition at every checked prompt (128, 1,024 and 4,096 tokens), the least of the three differences,
is a cost per step that prefills: it is added to ctx_attn_ms at every length (the attention record's
`prefill_gap_ms`), which kernels.py charges once per step with prompt tokens (the table's first point). Every
framework's gain 0-2 ms this way (vLLM's MLA layouts gained 8-12 ms while the SDK priced vLLM's block-FP8 GEMMs with
their host-bound rows: VLLM_BLOCK_FP8_FROM below). After it every kept record is within MAX_PREFILL_DIFF of
predict_prefill_latency (each linear record keeps its remaining difference).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import logging
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from simfactory.config.profile import ModelArch  # noqa: E402
from simfactory.hardware.kernel_file import read_doc, write_doc  # noqa: E402

from derive import (  # noqa: E402  (after the path set-up)
    ATTRIBUTION, BATCH, FORMAT, KV_LEN, PROMPT_LEN, PYPI_URL, REPO_URL, STATIC_FP8_LAUNCH_SAVING, TOKENS, monotone,
    monotone_2d, sdk_info, setup, sig, with_static_saving, _scratch,
)


# simfactory SKU -> SDK system with MoE and MLA data
SYSTEMS = {"h200": "h200_sxm", "b200": "b200_sxm", "gb200": "gb200", "h100-sxm": "h100_sxm", "b300": "b300_sxm",
           "gb300": "gb300", "a100-80gb": "a100_sxm"}
FRAMEWORKS = ("trtllm", "sglang", "vllm")
# (devices, dp_attention, ep): tensor-parallel attention with experts tensor-parallel (ep 1) or expert-parallel
# over 2-8 devices, attention data-parallel with experts over every device (DP8 with EP8; DP4, two devices a rank, with
# experts tensor-parallel or EP4, as SGLang's cookbook serves Kimi K2 on 8 x B200); on the NVL72 racks the 4-GPU prefill
# and 32/64-GPU wide-EP decode layouts of disaggregated serving (EP48 is not a layout: 256 experts do not split
# over 48 ranks without redundant experts, which the SDK's tables do not hold); a model small enough for 1-4 devices
# also at TP 1, 2 and 4, experts tensor- or expert-parallel
LAYOUTS = {"8": [(8, 1, 1), (8, 1, 2), (8, 1, 4), (8, 1, 8), (8, 4, 1), (8, 4, 4), (8, 8, 8)],
           "small": [(1, 1, 1), (2, 1, 1), (2, 1, 2), (4, 1, 1), (4, 1, 4), (8, 1, 1), (8, 1, 8)],
           "rack": [(4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32), (64, 64, 64)]}
RACK_SKUS = {"gb200", "gb300"}
# simfactory dtype -> SDK (GEMM, MoE) quant modes: DeepSeek's FP8 checkpoints use 128x128 block scaling; NVIDIA's
# NVFP4 checkpoints quantize the routed experts to NVFP4 and keep the rest in FP8
QUANT = {"fp8": ("fp8_block", "fp8_block"), "fp4": ("fp8_block", "nvfp4"), "bf16": ("bfloat16", "bfloat16")}
KV_QUANT = {"fp8": "fp8", "bf16": "bfloat16"}
# simfactory model -> the SDK's config.json and the weight dtypes derived: DeepSeek-R1/V3 ship FP8 (block-scaled) and
# NVFP4 checkpoints, Kimi K2 FP8 (block-scaled); Qwen3-235B-A22B BF16 and FP8 (block-scaled,
# Qwen/Qwen3-235B-A22B-FP8); Mixtral-8x7B BF16 and FP8 (per-tensor scales, as its public FP8 checkpoints)
MODELS = {"deepseek-r1": "deepseek-ai--DeepSeek-R1_config.json", "deepseek-v3": "deepseek-ai--DeepSeek-V3_config.json",
          "kimi-k2": "moonshotai--Kimi-K2-Instruct_config.json",
          "qwen3-235b-a22b": "Qwen--Qwen3-235B-A22B_config.json",
          "mixtral-8x7b": "mistralai--Mixtral-8x7B-v0.1_config.json",
          "gpt-oss-120b": "openai--gpt-oss-120b_config.json", "gpt-oss-20b": "openai--gpt-oss-20b_config.json"}
DTYPES = {"deepseek-r1": ("fp8", "fp4"), "deepseek-v3": ("fp8", "fp4"), "kimi-k2": ("fp8",),
          "qwen3-235b-a22b": ("bf16", "fp8"), "mixtral-8x7b": ("bf16", "fp8"),
          "gpt-oss-120b": ("fp4",), "gpt-oss-20b": ("fp4",)}
# gpt-oss ships its experts in MXFP4 and everything else in BF16 (its "fp4" here, weight-only: models.yaml
# fp4_weight_only, so Hopper runs it too, as W4A16; derive_sku): the SDK's w4a16_mxfp4 MoE rows (BF16 activations:
# vLLM's FlashInfer TRT-LLM MXFP4-BF16 and Triton kernels, the source names of its rows; TensorRT-LLM's, an assumption) except SGLang on Blackwell, which quantizes the activations to
# MXFP8 before FlashInfer's TRT-LLM MXFP4 MoE by default (flashinfer_mxfp4_moe_precision "default" -> mxfp8_quantize in
# python/sglang/srt/layers/quantization/mxfp4.py of https://pypi.org/project/sglang/0.5.6.post1/): w4a8_mxfp4_mxfp8
MXFP4_MODELS = {"gpt-oss-120b", "gpt-oss-20b"}
MXFP8_ACTIVATIONS = {("sglang", s) for s in ("b200_sxm", "b300_sxm", "gb200", "gb300")}  # the racks: not derived yet
QUANT_BY_MODEL = {"mixtral-8x7b": {"fp8": ("fp8", "fp8")},
                  **{m: {"fp4": ("bfloat16", "w4a16_mxfp4")} for m in MXFP4_MODELS}}
SMALL = {"mixtral-8x7b", *MXFP4_MODELS}  # fits 1-4 devices: the "small" layouts, no rack layouts
# FP8 weights that fit four 80 GB devices (Qwen3-235B-A22B-FP8 at TP4 is a common H100 deployment): TP4 layouts too
# (experts tensor- or expert-parallel), off the racks
ALSO_TP4 = {"qwen3-235b-a22b"}
# a layout whose composed prefill, its gap added, misses the SDK's by more than this at a checked prompt is refused
MAX_PREFILL_DIFF = 0.10
PREFILL_CHECK = (128, 1024, 4096)  # prompt lengths (tokens) at which the composition is checked against the SDK

# SGLang prefills an MLA model on Hopper as multi-head attention over the decompressed K/V (FlashAttention 3, its
# default backend on sm90, dispatches MHA_CHUNKED_KV when a batch's prefixes sum to 0 or to at least 8,192 tokens:
# https://github.com/sgl-project/sglang/pull/5113 ; sgl-project/sglang#5064 for the default), while the SDK's sglang
# context-MLA rows time FlashAttention 3 on the absorbed MLA form ("the efficiency of fa3 for context mla is not that
# good ... 30-50% perf of GQA", https://github.com/ai-dynamo/aiconfigurator/pull/124): 3.2x vLLM's at 32K tokens on
# H200. On these SKUs an SGLang MLA record's context attention is vLLM's for the same attention layout (vLLM's MLA
# prefill is FlashAttention 3 MHA over the same decompressed K/V), less vLLM's prefill gap, plus SGLang's own.
MHA_PREFILL_SKUS = {"h100-sxm", "h200"}
MLA_MODELS = {"deepseek-r1", "deepseek-v3", "kimi-k2"}

# The SDK's vLLM block-FP8 GEMM rows (gemm/vllm/0.24.0, gemm_dtype fp8_block: DeepGEMM, CUTLASS and FlashInfer
# block-scaled kernels) are host-bound, not kernel time: a 2,048 x 4,096 GEMM takes a flat 57-91 us from 1 to 2,048
# rows on H100 and H200 and 170-560 us up to 8,192 rows on B200, B300, GB200 and GB300, where the SDK's SGLang rows of
# the same DeepGEMM kernel (sglang_deepgemm_gemm_nt_f8f8bf16) take 9-15 us at 1-512 rows and 59-66 us at 8,192 rows on
# Blackwell, and TensorRT-LLM's agree with SGLang's. vLLM runs decode in CUDA graphs, where no such host time exists:
# GPUStack's vLLM 0.11 runs of Qwen3-235B-A22B-FP8 on 4 x H100 (median ITL 34.8 ms at ~56 sequences of 4K,
# docs/performance-lab/qwen3-235b-a22b/h100.md at gpustack/gpustack 1f37f1b8bd79) fit the SGLang rows (~35 ms a step)
# and not vLLM's (~50 ms). So vLLM records price block-FP8 GEMMs with SGLang's rows of the same SKU: the SDK reads a
# copy of its systems data in which each vLLM gemm_perf.parquet's fp8_block rows are SGLang's (vllm_gemm_systems).
VLLM_BLOCK_FP8_FROM = "sglang"

# SGLang before 0.5.8 runs an unquantized (BF16) MoE layer with its Triton fused_moe kernel on every GPU: 0.5.6.post1's
# UnquantizedFusedMoEMethod.create_moe_runner picks MoeRunnerBackend.TRITON, and its server_args switch Qwen3-MoE to
# flashinfer_trtllm on sm100 only for fp8 / modelopt_fp4 checkpoints; from 0.5.8 a BF16 checkpoint
# (quantization None) gets flashinfer_trtllm there too. The SDK's sglang tables (0.5.14) time BF16 MoE on Blackwell
# with flashinfer_trtllm. Where the SDK also measured the Triton fused_moe kernel for a SKU and expert shape (its
# vLLM tables, kernel_source vllm_fused_moe: the kernel SGLang's fused_moe_triton was forked from, with vLLM's tuned
# configs), a BF16 sglang record gets a second curve, linear_ms_triton_moe, composed with those rows in place of
# flashinfer_trtllm's (not where SGLang's own rows of the shape are Triton's: Mixtral-8x7B's on B200): the
# `triton_bf16_moe` engine presets read it (hardware/kernels.py).
TRITON_MOE_KERNEL = "vllm_fused_moe"
# SGLang releases before 0.5.10 (the sglang-0.5 preset's 0.4-0.5.7) ran the MoE kernels of their time, which the SDK's
# current sglang release (0.5.14) times faster: where the SDK also ships an older sglang release's measured MoE table
# for a system (h100_sxm, h200_sxm: moe/sglang/0.5.10; the Triton block-FP8 and BF16 fused_moe of DeepSeek-R1/V3, Kimi
# K2, Qwen3-235B-A22B and Mixtral shapes, 10-44% slower at decode sizes and 11-25% at prefill sizes for DeepSeek's on
# H200), each sglang record gets a second curve composed with those rows in place of the current ones,
# linear_ms_older_moe (older_moe_systems, alternate_curve), which presets naming `older_moe` read (hardware/kernels.py).
OLDER_MOE_RELEASE = "0.5.10"
SHAPE = ["hidden_size", "inter_size", "num_experts", "topk"]

log = logging.getLogger("derive_moe")


def sglang_bf16_moe_kernel(systems: Path | None, system: str, version: str, arch: ModelArch) -> str | None:
    """The kernel the SDK's current sglang rows time a BF16 MoE layer of this model's expert shape with: triton
    (fused_moe) or the rows' kernel_source; None where it has no such rows. A BF16 sglang record says so
    (`moe_kernel`), so that an engine whose BF16 experts run on Triton where no Triton curve exists is told."""
    import aiconfigurator_core
    import pandas as pd

    root = systems or Path(aiconfigurator_core.__file__).parent / "systems"
    path = root / "data" / system / "moe" / "sglang" / version / "moe_perf.parquet"
    if not path.exists() or not arch.num_experts:
        return None
    d = pd.read_parquet(path, columns=["moe_dtype", "kernel_source", *SHAPE])
    q = d[(d.moe_dtype == "bfloat16") & (d.hidden_size == arch.hidden) & (d.inter_size == arch.intermediate)
          & (d.num_experts == arch.num_experts) & (d.topk == arch.experts_per_token)]
    kinds = sorted(set(q.kernel_source.dropna()))
    return None if not kinds else next((k for k in kinds if "triton" not in k), "triton")


def release_key(path: str) -> tuple[int, ...]:
    """A data folder's release (its name, e.g. 0.22.0 or 1.3.0rc20) as numbers for sorting: leading digits of each
    of its first three parts."""
    parts = Path(path).parent.name.split(".")[:3]
    return tuple(int("".join(c for c in itertools.takewhile(str.isdigit, x)) or 0) for x in parts)


def triton_moe_systems(systems: Path, work: Path) -> tuple[Path, dict[str, str]]:
    """A copy of `systems` (links) whose current sglang MoE tables on SKUs where SGLang times BF16 MoE with another
    kernel take, for every expert shape the newest vLLM table measured with Triton fused_moe, those BF16 rows instead
    (module comment above TRITON_MOE_KERNEL); and, per SDK system changed, where the rows came from."""
    import pandas as pd
    from aiconfigurator_core.sdk.perf_database import get_version_slots

    dst = work / "systems"
    shutil.copytree(systems, dst, symlinks=True)
    changed: dict[str, str] = {}
    for system in sorted(set(SYSTEMS.values())):
        version = (get_version_slots(system, "sglang") or {}).get("current")
        target = dst / "data" / system / "moe" / "sglang" / str(version) / "moe_perf.parquet"
        if version is None or not target.exists():
            continue
        sg = pd.read_parquet(target)
        bf16 = sg[sg.moe_dtype == "bfloat16"]
        if bf16.empty or bf16.kernel_source.str.contains("triton").all():
            continue  # no BF16 rows, or already the Triton kernel's (Hopper)
        own_triton = set(map(tuple, bf16[bf16.kernel_source.str.contains("triton")][SHAPE].values.tolist()))
        for path in sorted(glob.glob(str(dst / "data" / system / "moe" / "vllm" / "*" / "moe_perf.parquet")),
                           key=release_key, reverse=True):
            v = pd.read_parquet(path)
            v = v[(v.kernel_source == TRITON_MOE_KERNEL) & (v.moe_dtype == "bfloat16")].copy()
            v = v[~v[SHAPE].apply(tuple, axis=1).isin(own_triton)]  # SGLang's own Triton rows, where it has them
            if v.empty:
                continue
            shapes = set(map(tuple, v[SHAPE].values.tolist()))
            drop = (sg.moe_dtype == "bfloat16") & sg[SHAPE].apply(tuple, axis=1).isin(shapes)
            origin = f"vllm {Path(path).parent.name}"
            swap_rows(target, sg, ~drop, v, origin)
            changed[system] = f"{origin} {TRITON_MOE_KERNEL} rows ({len(shapes)} expert shapes)"
            break
    return dst, changed


def vllm_gemm_systems(work: Path) -> Path:
    """A copy of the SDK's systems data (files linked, not copied) whose vLLM GEMM tables take their fp8_block rows
    from the same SKU's current SGLang table (VLLM_BLOCK_FP8_FROM, comment above): the systems_path every handle
    reads. SKUs without both keep the SDK's rows."""
    import aiconfigurator_core
    import pandas as pd
    from aiconfigurator_core.sdk.perf_database import get_version_slots

    src = Path(aiconfigurator_core.__file__).parent / "systems"
    dst = work / "systems"
    shutil.copytree(src, dst, copy_function=os.symlink)
    for path in sorted(glob.glob(str(dst / "data" / "*" / "gemm" / "vllm" / "*" / "gemm_perf.parquet"))):
        system = Path(path).parts[-5]
        version = (get_version_slots(system, VLLM_BLOCK_FP8_FROM) or {}).get("current")
        other = src / "data" / system / "gemm" / VLLM_BLOCK_FP8_FROM / str(version) / "gemm_perf.parquet"
        if version is None or not other.is_file():
            continue
        vllm, rows = pd.read_parquet(path), pd.read_parquet(other)
        rows = rows[rows.gemm_dtype == "fp8_block"].copy()
        if rows.empty or not (vllm.gemm_dtype == "fp8_block").any():
            continue
        swap_rows(Path(path), vllm, vllm.gemm_dtype != "fp8_block", rows, f"{VLLM_BLOCK_FP8_FROM} {version}")
    return dst


def swap_rows(target: Path, table, keep, rows, origin: str) -> None:
    """Write, in place of `target` (a link into the SDK's own data: replaced, never written through), `table`'s rows
    where `keep` and then `rows`, stamped as the table's own (framework, version, device) with their kernel_source
    prefixed by `origin`."""
    import pandas as pd

    rows = rows.copy()
    for col in ("framework", "version", "device"):
        rows[col] = table[col].iloc[0]
    rows["kernel_source"] = f"{origin}: " + rows["kernel_source"].astype(str)
    target.unlink()
    pd.concat([table[keep], rows[table.columns]], ignore_index=True).to_parquet(target)


def older_moe_systems(systems: Path, work: Path) -> tuple[Path, dict[str, str]]:
    """A copy of `systems` (links) whose current sglang MoE tables take, for every (dtype, expert shape) the SDK's
    OLDER_MOE_RELEASE table of the same system measured, those rows instead (module comment above OLDER_MOE_RELEASE);
    and, per SDK system changed, what was taken."""
    import pandas as pd
    from aiconfigurator_core.sdk.perf_database import get_version_slots

    dst = work / "systems"
    shutil.copytree(systems, dst, symlinks=True)
    changed: dict[str, str] = {}
    keys = ["moe_dtype", *SHAPE]
    for system in sorted(set(SYSTEMS.values())):
        version = (get_version_slots(system, "sglang") or {}).get("current")
        target = dst / "data" / system / "moe" / "sglang" / str(version) / "moe_perf.parquet"
        older = dst / "data" / system / "moe" / "sglang" / OLDER_MOE_RELEASE / "moe_perf.parquet"
        if version is None or str(version) == OLDER_MOE_RELEASE or not target.exists() or not older.exists():
            continue
        cur, old = pd.read_parquet(target), pd.read_parquet(older)
        shapes = set(map(tuple, old[keys].values.tolist()))
        taken = cur[keys].apply(tuple, axis=1).isin(shapes)
        swap_rows(target, cur, ~taken, old, f"sglang {OLDER_MOE_RELEASE}")
        changed[system] = f"sglang {OLDER_MOE_RELEASE} moe_perf rows ({len(shapes)} dtype and expert shapes)"
    return dst, changed


def sglang_mha_prefill(sku: str, attention: list[dict]) -> int:
    """Replace, in place, the context attention of the SGLang MLA records of an MHA_PREFILL_SKUS SKU with vLLM's for
    the same (model, tp, dp_attention, kv_dtype) (module comment above MHA_PREFILL_SKUS); returns how many changed.
    A layout vLLM has no record for keeps the SDK's rows."""
    if sku not in MHA_PREFILL_SKUS:
        return 0
    mla = [r for r in attention if r["model"] in MLA_MODELS]
    vllm = {(r["model"], r["tp"], r["dp_attention"], r["kv_dtype"]): r for r in mla if r["framework"] == "vllm"}
    changed = 0
    for r in mla:
        v = vllm.get((r["model"], r["tp"], r["dp_attention"], r["kv_dtype"]))
        if r["framework"] != "sglang" or v is None:
            continue
        gap = r["prefill_gap_ms"]
        r["ctx_attn_ms"] = [sig(x - v["prefill_gap_ms"] + gap) for x in v["ctx_attn_ms"]]
        r["ctx_attn_from"] = "vllm (MHA prefill)"
        changed += 1
    return changed


def quant(model: str, dtype: str, fw: str | None = None, system: str | None = None) -> tuple[str, str]:
    """The SDK's (GEMM, MoE) quant modes of a model's dtype; with a framework and system, as that engine runs them
    there (MXFP8_ACTIVATIONS)."""
    gemm, moe = QUANT_BY_MODEL.get(model, {}).get(dtype, QUANT[dtype])
    if model in MXFP4_MODELS and (fw, system) in MXFP8_ACTIVATIONS:
        moe = "w4a8_mxfp4_mxfp8"
    return gemm, moe


def sdk_config(arch: ModelArch, work: Path) -> Path:
    """The SDK's config.json for the model, checked against hardware_profiles/models.yaml (the tables are keyed by
    the model's shape there)."""
    import aiconfigurator_core

    out = work / arch.id
    out.mkdir(parents=True, exist_ok=True)
    src = Path(aiconfigurator_core.__file__).parent / "model_configs" / MODELS[arch.id]
    cfg = json.loads(src.read_text())
    got = (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
           cfg.get("n_routed_experts") or cfg.get("num_local_experts") or cfg.get("num_experts"),
           cfg["num_experts_per_tok"], cfg.get("first_k_dense_replace") or 0)
    want = (arch.layers, arch.hidden, arch.heads, arch.num_experts, arch.experts_per_token, arch.dense_layers)
    if got != want:
        raise ValueError(f"{arch.id}: {src.name} has (layers, hidden, heads, experts, per token, dense layers) {got}, "
                         f"models.yaml {want}")
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def handle(cfg: Path, system: str, fw: str, version: str, layout: tuple[int, int, int], model: str, dtype: str,
           kv: str, gemm: str | None = None, systems: Path | None = None):
    from aiconfigurator_core.sdk.engine import EngineHandle

    devices, dp, ep = layout
    default_gemm, moe = quant(model, dtype, fw, system)
    gemm = gemm or default_gemm
    return EngineHandle.compile(str(cfg), system, fw, backend_version=version, tp_size=devices // dp,
                                attention_dp_size=dp, moe_tp_size=devices // ep, moe_ep_size=ep,
                                gemm_quant_mode=gemm, moe_quant_mode=moe, kvcache_quant_mode=KV_QUANT[kv],
                                fmha_quant_mode="bfloat16", systems_path=str(systems) if systems else None)


def is_attention(op: str) -> bool:
    """The op the attention tables hold: the MLA block, or grouped-query attention's attention kernel."""
    return "mla" in op or op.endswith("_attention")


def op_names(evaluate, **shape) -> list[str]:
    """The names of a handle's compiled op list in order (evaluate_generation_ops or evaluate_context_ops, one op at a
    time up to the first index out of range): the per-op views (decode_step_per_op, run_static_per_op) merge ops of
    one name, as gpt-oss's windowed and full attention, so their positions are not the op list's."""
    names: list[str] = []
    while True:
        try:
            names.append(evaluate([len(names)], **shape)[0][0])
        except ValueError as e:
            if "out of range" not in str(e):
                raise
            return names


def groups(h) -> dict[str, list[int]]:
    names = op_names(h.evaluate_generation_ops, batch_size=1, s=1)
    out: dict[str, list[int]] = {"mla": [], "logits": [], "allreduce": [], "linear": []}
    for i, n in enumerate(names):
        key = ("mla" if is_attention(n) else "logits" if n.endswith("logits_gemm")
               else "allreduce" if n.endswith("_ar") or "_ar_" in n else "linear")
        out[key].append(i)
    # one attention op, or ops of one name the SDK splits a model's layers into (gpt-oss: windowed and full)
    if len({names[i] for i in out["mla"]}) != 1 or len(out["logits"]) != 1:
        raise ValueError(f"unexpected generation op list {names}")
    return out


def context_mla(h) -> list[int]:
    names = op_names(h.evaluate_context_ops, batch_size=1, s=16)
    idx = [i for i, n in enumerate(names) if is_attention(n)]
    if len({names[i] for i in idx}) != 1:
        raise ValueError(f"unexpected context op list {names}")
    return idx


def ms(values) -> float:
    return sum(v[1] for v in values)


def static_fp8_one_token_ms(h, cfg: Path, system: str, fw: str, version: str, layout: tuple[int, int, int],
                            model: str, dtype: str, kv: str, systems: Path | None = None) -> tuple[float, float] | None:
    """(dynamic, static) non-attention time of a one-token step where the GEMMs are per-tensor FP8 on a framework
    that runs them with static scales (derive.py, STATIC_FP8_LAUNCH_SAVING); None elsewhere (block-scaled FP8, BF16)."""
    if quant(model, dtype)[0] != "fp8" or fw not in STATIC_FP8_LAUNCH_SAVING:
        return None
    static = handle(cfg, system, fw, version, layout, model, dtype, kv, gemm="fp8_static", systems=systems)
    dyn, stat = (ms(x.evaluate_generation_ops(groups(x)["linear"], batch_size=1, s=1)) for x in (h, static))
    return dyn, stat


def derive_record(h) -> tuple[dict, dict, float]:
    """The linear and attention tables of one handle (ctx_attn_ms with the SDK's prefill gap added, module
    docstring), and the largest relative difference of a composed prefill from the SDK's predict_prefill_latency
    after it (the decode steps equal the SDK's at grid points by construction)."""
    g = groups(h)
    cm = context_mla(h)
    lin = {"linear_ms": [ms(h.evaluate_generation_ops(g["linear"], batch_size=t, s=1)) for t in TOKENS],
           "allreduce_ms": [ms(h.evaluate_generation_ops(g["allreduce"], batch_size=t, s=1)) if g["allreduce"]
                            else 0.0 for t in TOKENS],
           "logits_ms": [ms(h.evaluate_generation_ops(g["logits"], batch_size=t, s=1)) for t in TOKENS]}
    att = {"decode_attn_ms": [[ms(h.evaluate_generation_ops(g["mla"], batch_size=b, s=s)) for s in KV_LEN]
                              for b in BATCH],
           "ctx_attn_ms": [ms(h.evaluate_context_ops(cm, batch_size=1, s=n)) for n in PROMPT_LEN]}
    composed, sdk = [], []
    for n in PREFILL_CHECK:
        i = TOKENS.index(n)
        composed.append(lin["linear_ms"][i] + lin["allreduce_ms"][i] + lin["logits_ms"][0]
                        + att["ctx_attn_ms"][PROMPT_LEN.index(n)])
        sdk.append(h.predict_prefill_latency(1, n))
    gap = max(0.0, min(r - c for c, r in zip(composed, sdk)))  # per step that prefills (module docstring)
    att["ctx_attn_ms"] = [x + gap for x in att["ctx_attn_ms"]]
    att["prefill_gap_ms"] = gap
    worst = max(abs((c + gap) / r - 1) for c, r in zip(composed, sdk))
    return lin, att, worst


def alternate_curve(cfg: Path, system: str, version: str, layout: tuple[int, int, int], arch_id: str, dtype: str,
                    kv: str, systems: Path, column: str, what: str, tag: dict, anomalies: list[dict],
                    refused: list[str]) -> dict:
    """A sglang record's second linear curve, `column`, composed with a copy of the systems data whose MoE rows are
    another kernel's or release's (triton_moe_systems: linear_ms_triton_moe; older_moe_systems:
    linear_ms_older_moe), or nothing, with the reason among the refusals, where that copy has no rows for the
    layout's expert split (any other error stops the run): the record then keeps one curve."""
    from aiconfigurator_core.sdk.errors import PerfDataNotAvailableError

    try:
        lin, _, _ = derive_record(handle(cfg, system, "sglang", version, layout, arch_id, dtype, kv, systems=systems))
    except PerfDataNotAvailableError as e:
        devices, dp, ep = layout
        refused.append(f"{arch_id} sglang {dtype}/{kv} TP{devices} DP{dp} EP{ep}: no {what} curve "
                       f"({type(e).__name__}: {str(e)[:120]})")
        return {}
    curve = monotone(lin["linear_ms"], [f"T={t}" for t in TOKENS], column, tag, anomalies)
    return {column: [sig(x) for x in curve]}


def curve_note(doc: dict, earlier: str | None, copy: tuple[Path, dict[str, str]] | None, system: str, column: str,
               text: str) -> str | None:
    """The MoE header's word on records' second curve `column`: `text` with the rows it was composed with where this
    run derived records that carry it, else what an earlier run said (`earlier`)."""
    if copy is not None and system in copy[1] and any(column in r for r in doc["linear"]):
        return text.format(rows=copy[1][system])
    return earlier


def merged_doc(doc: dict | None, sku: str, system: str, versions: dict, models: list, frameworks: tuple[str, ...],
               linear: list[dict], attention: list[dict], refused: list[str], checks: list[float],
               triton: tuple[Path, dict[str, str]] | None, older: tuple[Path, dict[str, str]] | None = None) -> dict:
    """The SKU's file with this run's records in place of the same models' and frameworks' earlier ones (the others
    stay), its model shapes, and the MoE header (quant modes, refusals, checks) rewritten."""
    if doc is None:
        doc = {"format": FORMAT, "sku": sku, "system": system,
               "source": f"aiconfigurator-core 0.12.0 {PYPI_URL} ({REPO_URL}): NVIDIA's operator timings measured "
                         "on real GPUs, composed per model by its SDK; resampled by calibrate/kernels/derive_moe.py",
               "as_of": date.today().strftime("%Y-%m"), "generated": date.today().isoformat(),
               "license": "Apache-2.0", "attribution": ATTRIBUTION, "sdk": sdk_info(), "frameworks": versions,
               "units": "milliseconds per engine step on one GPU (kernel time only: no engine overhead)",
               "refused": [], "grids": {"batch": BATCH, "kv_len": KV_LEN, "tokens": TOKENS, "prompt_len": PROMPT_LEN},
               "models": {}, "linear": [], "attention": []}
    # the notice names every change made to the SDK's values (Apache-2.0 4b), whoever wrote the file first
    doc["attribution"], doc["static_fp8_launch_saving"] = ATTRIBUTION, sorted(STATIC_FP8_LAUNCH_SAVING)
    ids = {a.id for a in models}

    def stays(model: str, fw: str) -> bool:  # records of other models, or of frameworks not derived this run
        return model not in ids or fw not in frameworks

    doc["linear"] = [r for r in doc["linear"] if stays(r["model"], r["framework"])] + linear
    doc["attention"] = [r for r in doc["attention"] if stays(r["model"], r["framework"])] + attention
    mha = sglang_mha_prefill(sku, doc["attention"])
    for arch in models:
        if not any(r["model"] == arch.id for r in doc["linear"]):
            doc["models"].pop(arch.id, None)  # nothing derived for it on this SKU (e.g. FP8 on A100)
            continue
        doc["models"][arch.id] = {"layers": arch.layers, "hidden": arch.hidden, "heads": arch.heads,
                                  "kv_heads": arch.kv_heads, "head_dim": arch.head_dim,
                                  "config": f"aiconfigurator_core/model_configs/{MODELS[arch.id]}"}
    old = doc.get("moe", {})  # what earlier runs for other models recorded stays
    # a refusal reads "{model} {framework}[:] ...": kept when its model or framework was not derived this run
    kept = [r for r in old.get("refused", []) if stays(*[w.rstrip(":") for w in (r.split(" ", 2) + ["", ""])[:2]])]
    prev = (old.get("prefill_max_rel_diff_from_sdk", 0.0) if len(ids) < len(MODELS) or len(frameworks) < len(FRAMEWORKS)
            else 0.0)
    present = sorted({(r["model"], r["dtype"]) for r in doc["linear"] if r["model"] in MODELS})
    doc["moe"] = {"derived_by": "calibrate/kernels/derive_moe.py", "generated": date.today().isoformat(),
                  "per_rank": "records with dp_attention > 1 describe one attention rank (its tokens, batch, prompts)",
                  "quant": {f"{m} {d}": {**dict(zip(("gemm", "moe"), quant(m, d))),
                                         **({"moe_sglang": quant(m, d, "sglang", system)[1]}
                                            if quant(m, d, "sglang", system) != quant(m, d) else {})}
                            for m, d in present},
                  "prefill_gap": "each MoE attention record's ctx_attn_ms holds its prefill_gap_ms at every length: "
                                 "what the SDK's context path prices above the composed prefill (a per-step cost)",
                  "prefill_max_rel_diff_from_sdk": round(max(checks + [prev], default=0.0), 4),
                  "sglang_mha_prefill": (f"{mha} SGLang MLA records' ctx_attn_ms are vLLM's (ctx_attn_from): SGLang "
                                         "prefills MLA as FlashAttention-3 MHA on Hopper, the SDK's sglang rows time "
                                         "the absorbed form (calibrate/kernels/derive_moe.py, MHA_PREFILL_SKUS)"
                                         if mha else None),
                  "triton_bf16_moe": curve_note(
                      doc, old.get("triton_bf16_moe"), triton, system, "linear_ms_triton_moe",
                      "BF16 sglang records with linear_ms_triton_moe: the MoE layers priced with {rows} (SGLang before "
                      "0.5.8 runs BF16 MoE on Triton fused_moe; calibrate/kernels/derive_moe.py, TRITON_MOE_KERNEL)"),
                  "older_moe": curve_note(
                      doc, old.get("older_moe"), older, system, "linear_ms_older_moe",
                      "sglang records with linear_ms_older_moe: the MoE layers priced with {rows} (SGLang before "
                      f"{OLDER_MOE_RELEASE}; calibrate/kernels/derive_moe.py, OLDER_MOE_RELEASE)"),
                  "refused": kept + refused}
    return doc


def derive_sku(sku: str, models: list, out_dir: Path, anomalies: list[dict], systems: Path | None = None,
               frameworks: tuple[str, ...] = FRAMEWORKS, triton: tuple[Path, dict[str, str]] | None = None,
               older: tuple[Path, dict[str, str]] | None = None) -> dict:
    from aiconfigurator_core.sdk.perf_database import get_version_slots

    system = SYSTEMS[sku]
    path = out_dir / f"{sku}.json.gz"
    doc = read_doc(path) if path.is_file() else None
    versions = {fw: (get_version_slots(system, fw) or {}).get("current") for fw in FRAMEWORKS}
    if doc is not None:  # one SDK version per framework and file: the dense records' versions
        versions = {fw: doc["frameworks"].get(fw, v) for fw, v in versions.items()}
    blackwell = sku.startswith(("b", "gb"))
    rack = sku in RACK_SKUS
    linear, attention, refused, checks = [], [], [], []
    work = _scratch("aic-moe-")
    for arch in models:
        if rack and arch.id in SMALL:
            continue
        # fp4 only on Blackwell, but for a weight-only FP4 checkpoint (gpt-oss, W4A16 elsewhere): simfactory refuses
        # dtype fp4 without FP4 tensor cores otherwise (resolve/deployments.py _fp4_ok)
        dtypes = [d for d in DTYPES[arch.id] if d != "fp4" or blackwell or arch.fp4_weight_only]
        if not dtypes:
            continue  # nothing of it would be read here
        cfg = sdk_config(arch, work)
        layouts = LAYOUTS["rack" if rack else "small" if arch.id in SMALL else "8"]
        if arch.id in ALSO_TP4 and not rack:
            layouts = layouts + [(4, 1, 1), (4, 1, 4)]
        for fw in frameworks:
            if versions[fw] is None:
                refused.append(f"{arch.id} {fw}: no queryable version on {system}")
                continue
            bf16_kernel = sglang_bf16_moe_kernel(systems, system, versions[fw], arch) if fw == "sglang" else None
            for layout in layouts:
                for d in dtypes:
                    for kv in ("fp8", "bf16"):
                        devices, dp, ep = layout
                        key = dict(model=arch.id, framework=fw, tp=devices, dp_attention=dp, ep=ep)
                        t0 = time.perf_counter()
                        try:
                            h = handle(cfg, system, fw, versions[fw], layout, arch.id, d, kv, systems=systems)
                            lin, att, worst = derive_record(h)
                        except Exception as e:
                            refused.append(f"{arch.id} {fw} {d}/{kv} TP{devices} DP{dp} EP{ep}: "
                                           f"{type(e).__name__}: {str(e)[:120]}")
                            continue
                        if worst > MAX_PREFILL_DIFF:
                            refused.append(f"{arch.id} {fw} {d}/{kv} TP{devices} DP{dp} EP{ep}: a composed prefill "
                                           f"with its {att['prefill_gap_ms']:.3g} ms gap misses the SDK's "
                                           f"predict_prefill_latency by {100 * worst:.0f}% (its context MoE path "
                                           "is priced differently)")
                            continue
                        checks.append(worst)
                        tag = dict(sku=sku, model=arch.id, framework=fw, version=versions[fw],
                                   tp=f"{devices} dp{dp} ep{ep}")
                        rec = {**key, "dtype": d}  # the GEMMs and experts do not depend on the KV dtype
                        if not any(all(r.get(k) == v for k, v in rec.items()) for r in linear):
                            tables = {k: monotone(v, [f"T={t}" for t in TOKENS], k, {**tag, "dtype": d}, anomalies)
                                      for k, v in lin.items()}
                            tables["linear_ms"], static = with_static_saving(
                                tables["linear_ms"], lambda: static_fp8_one_token_ms(
                                    h, cfg, system, fw, versions[fw], layout, arch.id, d, kv, systems),
                                refused, f"{arch.id} {fw} {d} TP{devices} DP{dp} EP{ep}")
                            extra = (alternate_curve(cfg, system, versions[fw], layout, arch.id, d, kv, triton[0],
                                                     "linear_ms_triton_moe", "Triton fused_moe", {**tag, "dtype": d},
                                                     anomalies, refused)
                                     if triton is not None and system in triton[1] and fw == "sglang" and d == "bf16"
                                     else {})
                            if extra.get("linear_ms_triton_moe") == [sig(x) for x in tables["linear_ms"]]:
                                extra = {}  # the SDK's own rows of this shape are Triton's already
                            extra.update({"moe_kernel": bf16_kernel} if bf16_kernel and d == "bf16" else {})
                            if older is not None and system in older[1] and fw == "sglang":
                                slower = alternate_curve(cfg, system, versions[fw], layout, arch.id, d, kv, older[0],
                                                         "linear_ms_older_moe", f"sglang {OLDER_MOE_RELEASE} MoE",
                                                         {**tag, "dtype": d}, anomalies, refused)
                                if slower.get("linear_ms_older_moe") != [sig(x) for x in tables["linear_ms"]]:
                                    extra.update(slower)  # the same curve: the older table has no rows of the shape
                            linear.append({**rec, "prefill_rel_diff_from_sdk": round(worst, 4),
                                           **{k: [sig(x) for x in v] for k, v in tables.items()}, **static, **extra})
                        arec = {**key, "kv_dtype": kv}
                        if not any(all(r.get(k) == v for k, v in arec.items()) for r in attention):
                            atag = {**tag, "dtype": f"kv {kv}"}
                            attention.append({**arec, "weights_dtype": d,
                                              "decode_attn_ms": [[sig(x) for x in row] for row in
                                                                 monotone_2d(att["decode_attn_ms"], atag, anomalies)],
                                              "ctx_attn_ms": [sig(x) for x in monotone(
                                                  att["ctx_attn_ms"], [f"L={n}" for n in PROMPT_LEN],
                                                  "ctx_attn_ms", atag, anomalies)],
                                              "prefill_gap_ms": sig(att["prefill_gap_ms"])})
                        log.info("%s %s %s %s/%s %s: %.1fs, prefill within %.1f%%", sku, arch.id, fw, d, kv,
                                 layout, time.perf_counter() - t0, 100 * worst)
    doc = merged_doc(doc, sku, system, versions, models, frameworks, linear, attention, refused, checks, triton,
                     older)
    write_doc(doc, path)
    return {"sku": sku, "linear": len(linear), "attention": len(attention), "refused": len(refused),
            "prefill_max_rel_diff": max(checks, default=0.0), "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sku", action="append", choices=sorted(SYSTEMS), help="default: all")
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="default: all")
    ap.add_argument("--framework", action="append", choices=FRAMEWORKS, help="default: all (the others' records "
                    "stay as they are)")
    ap.add_argument("--out", type=Path, default=ROOT / "hardware_profiles" / "kernels")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    models = [m for m in setup(args.verbose) if m.id in MODELS and (not args.model or m.id in args.model)]
    frameworks = tuple(args.framework or FRAMEWORKS)
    anomalies: list[dict] = []
    systems = vllm_gemm_systems(_scratch("aic-systems-"))
    triton = triton_moe_systems(systems, _scratch("aic-triton-"))
    older = older_moe_systems(systems, _scratch("aic-older-"))
    for sku in args.sku or list(SYSTEMS):
        t0 = time.perf_counter()
        r = derive_sku(sku, models, args.out, anomalies, systems, frameworks, triton, older)
        print(f"{sku}: {r['linear']} linear + {r['attention']} attention records, {r['refused']} refused, "
              f"prefill within {100 * r['prefill_max_rel_diff']:.1f}% of the SDK, {r['bytes'] / 1e3:.0f} kB, "
              f"{time.perf_counter() - t0:.0f} s")
    print(f"{len(anomalies)} tables forced monotone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
