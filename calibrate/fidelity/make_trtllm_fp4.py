"""Write calibrate/fidelity/trtllm-perf-overview-fp4.yaml: the FP4 (NVFP4) columns of the TensorRT-LLM perf-overview
page trtllm-perf-overview.yaml takes its H100/H200 FP8 columns from (B200 and GB200; Llama-3.3-70B at TP1 and
Llama-3.1-405B at TP4), with each point's request count from the page and the engine limits trtllm-bench's tuning
heuristic picks for an NVFP4 checkpoint (0.5 bytes a weight, an FP8 KV cache: tuning.py's BYTES_PER_ELEM).

    python calibrate/fidelity/make_trtllm_fp4.py

Source of the table:
https://github.com/NVIDIA/TensorRT-LLM/blob/00f37686aa854010d68bcbd0f4ab000221541ca6/docs/source/performance/perf-overview.md
Heuristic: tensorrt_llm/bench/build/tuning.py (calc_engine_setting / finetune_setting, BYTES_PER_ELEM: NVFP4 0.5),
https://github.com/NVIDIA/TensorRT-LLM/blob/04cba882084a25665e7f80f5bda71b35b9790b6f/tensorrt_llm/bench/build/tuning.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_trtllm_v017 import REQUESTS, engine_limits, write_suite  # noqa: E402  (the same heuristic and counts)

SOURCE = ("https://github.com/NVIDIA/TensorRT-LLM/blob/00f37686aa854010d68bcbd0f4ab000221541ca6/docs/source/"
          "performance/perf-overview.md")
# the page's ISL/OSL rows, in its order
SHAPES = [(128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000), (1000, 2000), (2048, 128), (2048, 2048),
          (5000, 500), (20000, 2000)]
REQUESTS_FP4 = {**REQUESTS, (1000, 2000): 1500}  # the page's $num_requests table has 1000/2000 too
# (model id, page name, TP) -> {column: ten values in SHAPES order}; columns "B200 TPn (FP4)", "GB200 TPn (FP4)"
TABLE: dict[tuple[str, str, int], dict[str, list[float]]] = {
    ("llama-3.3-70b", "llama-3.3-70b", 1): {
        "b200": [11147, 9922, 6831, 7762, 7007, 6271, 1339, 4783, 1459, 665],
        "gb200": [12189, 11309, 7849, 9028, 7326, 6513, 1450, 5646, 1602, 755]},
    ("llama-3.1-405b", "llama-3.1-405b", 4): {
        "b200": [6281, 8020, 6345, 6244, 5209, 4933, 749, 4212, 1048, 672],
        "gb200": [6740, 8151, 6608, 6540, 5389, 5135, 797, 4407, 1112, 739]},
}

HEADER = f"""# Published measurements simfactory predicts (simfactory fidelity): TensorRT-LLM perf-overview (release 1.0 page),
# its FP4 columns: offline max throughput (trtllm-bench), B200 and GB200, NVFP4 checkpoints. Written by
# calibrate/fidelity/make_trtllm_fp4.py (edit that, not this file).
name: trtllm-perf-overview-fp4
description: >-
  TensorRT-LLM perf-overview, the page trtllm-perf-overview.yaml copies its H100/H200 FP8 columns from: the "B200
  TPn (FP4)" and "GB200 TPn (FP4)" columns of Llama 3.3 70B (TP1) and Llama 3.1 405B (TP4), total output tokens/s,
  nvidia/Llama-3.3-70B-Instruct-FP4 and nvidia/Llama-3.1-405B-Instruct-FP4 (NVFP4 weights, FP8 KV cache), PyTorch
  backend, trtllm-bench throughput with every request queued at once and fixed lengths (prepare_dataset.py
  token-norm-dist, stdev 0). max_num_seqs and max_num_batched_tokens: trtllm-bench's tuning heuristic as in
  trtllm-perf-overview.yaml, with an NVFP4 checkpoint's 0.5 bytes a weight and 1 byte a KV element
  (tuning.py BYTES_PER_ELEM) and --kv_cache_free_gpu_mem_fraction 0.95, the page's "In many cases" (the default 0.90
  its fallback on out-of-memory; 0.90 until 2026-12-07: -5.0% on this preset), for the KV cache too, over the model's parameter count
  (trtllm-bench may count the checkpoint's stored elements, two NVFP4 weights a byte, ~58% of it: that changes 26 of
  the 40 limits and moves the suite by 0.2 points, checked 2026-12-06). requests: the page's
  $num_requests. Llama-3.3-70B runs on Llama-3.1-70B's kernel tables (the same shape). Not copied: Llama 4
  Scout/Maverick and Qwen3-30B-A3B (no model entry or no FP4 MoE tables), Qwen3-235B-A22B FP4 (its MoE FP4 layouts are
  not derived), the RTX 6000 Pro tables (no SKU), the 8B (no FP4 column). Added 2026-12-06 with the dense FP4 kernel
  tables; none of its values was used to set a prior. Engine: the tensorrt-llm preset (its PyTorch flow: "Starting with
  v0.19, testing was performed using the PyTorch backend", the page's Command Overview; overlap scheduler on, no
  TensorRT all-reduce plugin); until 2026-12-07 the tensorrt-llm-0 preset of the TensorRT-engine releases (-5.4% then, at 0.90).
source: {SOURCE}
as_of: '2025'
engine: tensorrt-llm
engine_version: '1.0'
mode: offline
deployment: {{gpu_memory_utilization: 0.95}}
points:
"""


def points() -> list[dict]:
    out = []
    for (model_id, page_name, tp), columns in TABLE.items():
        for sku, values in columns.items():
            for (isl, osl), measured in zip(SHAPES, values):
                bs, tokens = engine_limits(model_id, sku, tp, isl, osl, 0.5, kv_bytes=1.0)
                out.append({"id": f"trt10-{page_name}-fp4-{sku}-tp{tp}-{isl}-{osl}", "sku": sku, "model": model_id,
                            "dtype": "fp4", "tp": tp, "input_tokens": isl, "output_tokens": osl,
                            "requests": REQUESTS_FP4[(isl, osl)], "max_num_seqs": bs,
                            "max_num_batched_tokens": tokens, "metric": "output_tokens_per_s", "measured": measured})
    return out


def write() -> Path:
    return write_suite(HERE / "trtllm-perf-overview-fp4.yaml", "calibrate/fidelity/make_trtllm_fp4.py", HEADER,
                       points())


if __name__ == "__main__":
    print(f"wrote {write()} ({len(points())} points)")
