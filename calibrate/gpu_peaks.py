"""What this GPU really does, in 10 seconds: dense bf16 matrix-product rate and device-to-device copy bandwidth,
for comparing a SKU's spec-sheet peaks (what the roofline profiles scale) with the part in hand. Prints JSON.

    python3 calibrate/gpu_peaks.py [--out peaks.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _timed_ms(torch, fn, repetitions: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repetitions):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    matmul_ms = _timed_ms(torch, lambda: a @ b)
    src = torch.empty(4 * 2**30, dtype=torch.uint8, device="cuda")  # 4 GiB: far beyond L2
    dst = torch.empty_like(src)
    copy_ms = _timed_ms(torch, lambda: dst.copy_(src))
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "bf16_matmul_tflops": round(2 * n**3 / (matmul_ms / 1e3) / 1e12, 1),
        "copy_tb_per_s": round(2 * src.numel() / (copy_ms / 1e3) / 1e12, 2),  # bytes read + written
        "method": "median of 10 CUDA-event timings after 3 warm-ups; 8192^3 bf16 product on random data; "
                  "4 GiB device-to-device copy counting bytes read and written",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
