"""Write calibrate/fidelity/trtllm-perf-overview-v0.17.yaml: TensorRT-LLM's perf-overview "generated using version
0.17" (offline max throughput, trtllm-bench), with each point's request count from the page and the engine limits
trtllm-bench's tuning heuristic picks (the same rule as trtllm-perf-overview.yaml, which this script reproduces for
that suite's points with --check).

    python calibrate/fidelity/make_trtllm_v017.py            # writes the suite
    python calibrate/fidelity/make_trtllm_v017.py --check    # the heuristic against trtllm-perf-overview.yaml

Source of the table (the page as stored at that commit states version 0.17):
https://github.com/NVIDIA/TensorRT-LLM/blob/258c7540c03517def55d9a5aadfa9288af474e1b/docs/source/performance/perf-overview.md
Heuristic: tensorrt_llm/bench/build/tuning.py (calc_engine_setting / finetune_setting),
https://github.com/NVIDIA/TensorRT-LLM/blob/04cba882084a25665e7f80f5bda71b35b9790b6f/tensorrt_llm/bench/build/tuning.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOURCE = ("https://github.com/NVIDIA/TensorRT-LLM/blob/258c7540c03517def55d9a5aadfa9288af474e1b/docs/source/"
          "performance/perf-overview.md")
GIB = 1024**3
# The KV-cache fraction the page's runs used, for the engine limits and the KV cache alike: 0.95. v0.17's flow builds
# its engine with `trtllm-bench build --dataset`, whose tuning call passes no fraction (get_benchmark_engine_settings'
# default, 0.95), and the page runs it "In majority of cases" at --kv_cache_free_gpu_mem_fraction 0.95 ("We fall back
# to 0.90 if we hit an out of memory issue"); 1.0's PyTorch flow tunes with the throughput command's fraction, 0.95
# "In many cases" (the default 0.90 the fallback). 0.90, the command's default, until 2026-12-07.
KV_FRACTION = 0.95
# "$num_requests" per ISL/OSL ("Preparing a Dataset")
REQUESTS = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (2048, 128): 3000, (2048, 2048): 1500,
            (5000, 500): 1500, (1000, 1000): 3000, (500, 2000): 3000, (20000, 2000): 1000}
SHAPES = [(128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000), (2048, 128), (2048, 2048), (5000, 500),
          (20000, 2000)]
# (model, TP) -> {column: nine values in SHAPES order, None where the page has none}; columns: the page's GPUs
# (H200 141GB HBM3, H100 80GB HBM3, L40S, A100-SXM4-80GB; GH200 left out: no SKU), FP8 except A100 (FP16)
TABLE: dict[tuple[str, int], dict[str, list[float | None]]] = {
    ("llama-3.1-8b", 1): {
        "h200": [29526.04, 25398.86, 17370.8, 21020.81, 17537.96, 3794.14, 11968.5, 3987.79, 1804.1],
        "h100-sxm": [28836.77, 21109.38, 13593.65, 16500.69, 15244.78, 3556.73, 9488.42, 3559.36, 1401.31],
        "l40s": [9104.61, 5365.81, 3025.92, 4273.75, 4054.71, 1066.52, 2225.27, 981.2, 327.97],
        "a100-80gb": [6627.27, 5255.99, 3453.79, 4276.58, 3786.83, 799.61, 2424.16, 825.13, 330.04]},
    ("llama-3.1-70b", 1): {
        "h200": [4020.75, 4165.68, 2651.75, 3018.39, 2823.45, 465.99, 1913.8, 560.16, 279.52],
        "h100-sxm": [3378.03, 911.62, 426.32, 775.57, 839.97, 343.29, None, 245.34, None]},
    ("llama-3.1-70b", 2): {
        "h200": [6823.01, 8290.35, 6526.67, 6848.02, 5164.76, 809, 4183.88, 1025.38, 640.62],
        "h100-sxm": [6645.12, 6169.58, 3897.06, 4972.57, 4390.53, 772.66, 2898.16, 919.73, 443.01],
        "a100-80gb": [1313.96, 531.26, None, 439.41, 472.94, 148.96, 261.1, 121.47, None]},
    ("llama-3.1-70b", 4): {
        "h200": [11098.63, 14156, 10574.06, 12452.79, 8911.29, 1358.06, 7130.44, 1811.55, 1199.68],
        "h100-sxm": [11127.53, 11511.93, 7439.41, 9836.7, 7430.99, 1302.6, 5480.03, 1602.78, 920.19],
        "l40s": [1523.52, 1942.66, 1440.23, 1634.72, 1209.25, 177.72, 969.68, 249.52, 162.25],
        "a100-80gb": [2733.48, 2811.27, 1976.49, 2275.79, 1921.77, 325.15, 1393.64, 392.62, 212.08]},
    ("llama-3.1-70b", 8): {
        "h200": [15355.84, 21195.88, 16941.52, 17278.4, 13181.24, 1983.03, 11142.47, 2717.83, 1920.45],
        "h100-sxm": [14730.69, 17061.82, 14171.43, 14679.33, 11451.16, 1923.41, 8801.95, 2457.42, 1512.6],
        "l40s": [1464.03, 2303.31, 2018.22, 1971.96, 1333.62, 176.16, 1200.16, 259.71, 209.87],
        "a100-80gb": [4717.62, 5241.5, 3724.67, 4445.37, 3320.41, 542.38, 2553.71, 696.34, 413.38]},
    ("llama-3.1-405b", 8): {
        "h200": [3874.19, 5938.09, 5168.37, 5084.29, 3399.69, 463.42, 2940.62, 669.13, 535.31]},
}


def load_yaml(path: Path) -> dict:
    text = path.read_text()
    return yaml.safe_load(text)


def memory_gib(sku: str) -> float:
    """The device's total memory as NVML reports it (the profile's spec.memory.total_bytes), in GiB."""
    return load_yaml(ROOT / "hardware_profiles" / f"{sku}.yaml")["spec"]["memory"]["total_bytes"] / GIB


def model(model_id: str) -> dict:
    return next(m for m in load_yaml(ROOT / "hardware_profiles" / "models.yaml")["models"] if m["id"] == model_id)


def engine_limits(model_id: str, sku: str, tp: int, isl: int, osl: int, dtype_bytes: float,
                  kv_bytes: float | None = None) -> tuple[int, int]:
    """trtllm-bench's max_batch_size and max_num_tokens for this model, mapping and dataset (calc_engine_setting,
    finetune_setting with optimistic tuning), the tokens at least one whole prompt plus the batch (no chunked
    context in its runs). kv_bytes: bytes per KV element where not the weights' (NVFP4 checkpoints: FP8, 1)."""
    m = model(model_id)
    kv = dtype_bytes if kv_bytes is None else kv_bytes
    per_token_gib = 2 * m["layers"] * max(tp, m["kv_heads"]) * m["head_dim"] * kv / GIB
    available = memory_gib(sku) * tp - m["params_b"] * 1e9 * dtype_bytes / GIB
    requests = available * KV_FRACTION / (per_token_gib * (isl + osl))
    raw_bs = min(requests, 4096)
    raw_token = min(raw_bs * (1 + isl / osl), 32768)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_token < 4096:
        tokens = max(2048, 256 * math.ceil(raw_token / 256))
    elif raw_token < 8192:
        tokens = 512 * math.ceil(raw_token / 512)
    else:
        tokens = 1024 * math.ceil(raw_token / 1024)
    return bs, max(tokens, isl + bs)


def points() -> list[dict]:
    out = []
    for (model_id, tp), columns in TABLE.items():
        for sku, values in columns.items():
            dtype, nbytes = ("fp16", 2.0) if sku == "a100-80gb" else ("fp8", 1.0)
            for (isl, osl), measured in zip(SHAPES, values):
                if measured is None:
                    continue
                bs, tokens = engine_limits(model_id, sku, tp, isl, osl, nbytes)
                out.append({"id": f"trt017-{model_id}-{dtype}-{sku}-tp{tp}-{isl}-{osl}", "sku": sku, "model": model_id,
                            "dtype": dtype, "tp": tp, "input_tokens": isl, "output_tokens": osl,
                            "requests": REQUESTS[(isl, osl)], "max_num_seqs": bs, "max_num_batched_tokens": tokens,
                            "metric": "output_tokens_per_s", "measured": measured})
    return out


def check() -> int:
    """The heuristic against the limits trtllm-perf-overview.yaml states for its points."""
    suite = load_yaml(HERE / "trtllm-perf-overview.yaml")
    bad = 0
    for p in suite["points"]:
        got = engine_limits(p["model"].replace("llama-3.3-70b", "llama-3.1-70b"), p["sku"], p["tp"], p["input_tokens"],
                            p["output_tokens"], 1.0)
        if got != (p["max_num_seqs"], p["max_num_batched_tokens"]):
            bad += 1
            print(p["id"], "suite", (p["max_num_seqs"], p["max_num_batched_tokens"]), "heuristic", got)
    print(f"{len(suite['points']) - bad} of {len(suite['points'])} points agree")
    return 1 if bad else 0


HEADER = f"""# Published measurements simfactory predicts (simfactory fidelity): TensorRT-LLM perf-overview as of release 0.17,
# offline max throughput (trtllm-bench), H200 / H100 / L40S (FP8) and A100 (FP16), TP 1-8. Written by
# calibrate/fidelity/make_trtllm_v017.py (edit that, not this file).
name: trtllm-perf-overview-v0.17
description: >-
  TensorRT-LLM perf-overview table "generated using version 0.17" (token throughput in tokens/s of the whole TP
  group; trtllm-bench throughput, every request queued at once, fixed input/output lengths: prepare_dataset.py
  token-norm-dist, stdev 0). Engines built by trtllm-bench build with the dataset (FP8 with FP8 KV cache; the A100
  column is FP16), whose tuning heuristic sets max_batch_size and max_num_tokens: each point's max_num_seqs and
  max_num_batched_tokens, computed as for trtllm-perf-overview.yaml (the script reproduces that suite's 48 points),
  at a KV-cache fraction of 0.95: trtllm-bench build's own (its tuning call passes none; the default of
  get_benchmark_engine_settings in tensorrt_llm/bench/build/build.py) and the page's --kv_cache_free_gpu_mem_fraction
  "In majority of cases" (0.90, the fallback on out-of-memory, until 2026-12-07: 6.6% / +2.6% then); the KV cache
  too (deployment gpu_memory_utilization, the engine's free-memory fraction). requests: the page's $num_requests for each input/output length. Copied: Llama-3.1
  8B (TP1), 70B (TP1-8) and 405B (TP8, H200) in every column the page fills for them; not copied: GH200 (no SKU),
  Mistral 7B and Mixtral 8x22B (no model entry), Mixtral 8x7B (no MoE kernel tables for this engine). L40S at TP 4-8: the
  profile's all-reduce (a server with GPU peer-to-peer, hardware_profiles/l40s.yaml), not the kernel tables'.
source: {SOURCE}
as_of: '2025-02'
engine: tensorrt-llm-0
engine_version: '0.17'
mode: offline
deployment: {{gpu_memory_utilization: 0.95}}
points:
"""


def write_suite(path: Path, script: str, header: str, pts: list[dict]) -> Path:
    """A suite file: the header, then one flow-style point a line; a file whose header does not name `script` (one
    this script did not write) is left as it is."""
    if path.exists() and script not in path.read_text()[:400]:
        sys.exit(f"{path} was not written by this script (no header naming it): not replacing it")
    lines = [header.rstrip("\n")]
    for p in pts:
        lines.append("- " + yaml.safe_dump(p, default_flow_style=True, sort_keys=False, width=10_000).strip())
    path.write_text("\n".join(lines) + "\n")
    return path


def write() -> Path:
    return write_suite(HERE / "trtllm-perf-overview-v0.17.yaml", "calibrate/fidelity/make_trtllm_v017.py", HEADER,
                       points())


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(check())
    print(f"wrote {write()} ({len(points())} points)")
