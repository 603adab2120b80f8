"""Fit the roofline's elementwise term to the shipped kernel tables (how ELEMENTWISE_BYTES_PER_HIDDEN was chosen).

Run: python calibrate/kernels/fit_elementwise.py

A tensor-parallel rank runs its 1/tp share of each weight GEMM, but the elementwise work around them (RMSNorms,
residual adds, rotary, the activation quantization of FP8 GEMMs) touches the whole hidden vector of every token on
every rank. So per token and layer a rank spends FLOPs / tp at GEMM speed plus a fixed number of bytes per hidden
element at memory speed, which does not shrink with TP: the GEMMs' share falls as they shrink, which is why the
measured efficiency per GPU falls with TP. For every table of Llama-3.1-8B and -70B (TP 1-8) this fits, on the
compute-bound steps (2,048 tokens and more), time = FLOPs / (peak x e_max) + tokens x layers x hidden x B /
(bandwidth x 0.8), with e_max and B (bytes per hidden element and layer) free, and prints the fit beside the one
without B. The shipped constants are the medians of B over H100 and H200 (all three frameworks).
"""

from __future__ import annotations

import statistics

import numpy as np
from scipy.optimize import least_squares

from simfactory.hardware.kernels import load_kernel_tables
from simfactory.paths import PROFILES_DIR
from simfactory.resolve import load_models, load_profile

MODELS = ("llama-3.1-8b", "llama-3.1-70b")
MEMORY_EFFICIENCY = 0.8  # the NVIDIA roofline prior's
MIN_TOKENS = 2048  # compute-bound steps: the weight reads are hidden


def fit(sku: str, framework: str, dtype: str) -> tuple[int, float, float, float, float, float] | None:
    tables = load_kernel_tables(sku)
    if tables is None:
        return None
    models = load_models([PROFILES_DIR])
    spec = load_profile([PROFILES_DIR], sku, "x", "sku").spec
    tokens = np.array(tables.grids["tokens"])
    flops, elements, seconds = [], [], []
    for (model, fw, tp, dp, ep, dt), lin in tables.linear.items():
        if model not in MODELS or fw != framework or dt != dtype or dp != 1 or ep != 1:
            continue
        arch, keep = models[model], tokens >= MIN_TOKENS
        for n, ms in zip(tokens[keep], np.array(lin["linear_ms"])[keep]):
            flops.append(2.0 * arch.active_params_b * 1e9 * n / tp)
            elements.append(n * arch.layers * arch.hidden)
            seconds.append(ms / 1e3)
    if not flops:
        return None
    f, h, s = np.array(flops), np.array(elements), np.array(seconds)
    peak, bandwidth = spec.tflops(dtype) * 1e12, spec.hbm_tb_s * 1e12 * MEMORY_EFFICIENCY

    def with_term(p: np.ndarray) -> np.ndarray:
        return (f / (peak * p[0]) + h * p[1] / bandwidth) / s - 1.0

    def without(p: np.ndarray) -> np.ndarray:
        return f / (peak * p[0]) / s - 1.0

    a = least_squares(with_term, [0.7, 10.0], bounds=([0.05, 0.0], [1.0, 200.0]))
    b = least_squares(without, [0.7], bounds=([0.05], [1.0]))
    return (len(s), float(a.x[0]), float(a.x[1]), float(np.abs(with_term(a.x)).mean()), float(b.x[0]),
            float(np.abs(without(b.x)).mean()))


def main() -> None:
    chosen: dict[str, list[float]] = {"16-bit": [], "8-bit": []}
    print(f"{'sku':10} {'framework':9} {'dtype':5} {'rows':>4}  e_max  B (bytes/element)  MAPE | without B: e  MAPE")
    for sku in ("h100-sxm", "h200", "a100-80gb", "b200"):
        for framework in ("trtllm", "vllm", "sglang"):
            for dtype in ("bf16", "fp8"):
                r = fit(sku, framework, dtype)
                if r is None:
                    continue
                n, e, bytes_, mape, e0, mape0 = r
                print(f"{sku:10} {framework:9} {dtype:5} {n:4}  {e:.3f}  {bytes_:6.1f}             {mape:5.1%} | "
                      f"{e0:.3f} {mape0:5.1%}")
                if sku in ("h100-sxm", "h200"):
                    chosen["8-bit" if dtype == "fp8" else "16-bit"].append(bytes_)
    for k, v in chosen.items():
        print(f"median B, {k} activations (H100, H200): {statistics.median(v):.1f} bytes per hidden element and layer")


if __name__ == "__main__":
    main()
