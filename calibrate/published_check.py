"""Fit the SKU roofline factors to a fidelity suite (how the shipped NVIDIA factors were chosen).

Run: python calibrate/published_check.py [--fit] [--requests N]
Without --fit it prints the TensorRT-LLM Llama-3.1-8B FP8 points (H100, H200) predicted vs measured with
the shipped roofline factors (the fallback for SKUs and models without measured kernels; `simfactory fidelity`
uses the kernel tables where they cover a point). --fit grid-searches
compute efficiency, memory efficiency and per-step overhead for the lowest mean absolute error.
"""

from __future__ import annotations

import argparse
import itertools

from simfactory.config.profile import RooflineStepTime
from simfactory.fidelity import (
    FIDELITY_DIR,
    load_suite,
    offline_output_tokens_per_s,
    offline_scenario,
    with_roofline_factors,
)
from simfactory.resolve import resolve

SUITE = FIDELITY_DIR / "trtllm-perf-overview.yaml"


def points_8b(requests: int):  # type: ignore[no-untyped-def]
    suite = load_suite(SUITE)
    pts = [p for p in suite.points if p.model == "llama-3.1-8b"]
    return [(p, resolve(offline_scenario(p, suite.engine, suite.max_num_seqs, requests, "roofline"))) for p in pts]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--fit", action="store_true", help="grid-search the roofline factors")
    args = ap.parse_args()
    cases = points_8b(args.requests)
    if args.fit:
        results = []
        for ce, me, ov in itertools.product([0.5, 0.55, 0.6, 0.65, 0.7, 0.75], [0.7, 0.8, 0.9], [0.001, 0.002, 0.003, 0.004]):
            f = RooflineStepTime(compute_efficiency=ce, memory_efficiency=me, step_overhead_s=ov)
            errs = [abs(offline_output_tokens_per_s(with_roofline_factors(rs, f)) / p.measured - 1) for p, rs in cases]
            results.append((sum(errs) / len(errs), max(errs), ce, me, ov))
        print("MAPE   max   compute_eff memory_eff overhead_s")
        for mape, mx, ce, me, ov in sorted(results)[:5]:
            print(f"{mape:5.1%} {mx:5.1%}   {ce:<11} {me:<10} {ov}")
        return
    errors = []
    print(f"{'point':42} {'published':>10} {'simulated':>10} {'error':>8}")
    for p, rs in cases:
        sim = offline_output_tokens_per_s(rs)
        errors.append(abs(sim / p.measured - 1))
        print(f"{p.id:42} {p.measured:>10,.0f} {sim:>10,.0f} {sim / p.measured - 1:>+8.1%}")
    print(f"MAPE {sum(errors) / len(errors):.1%} over {len(errors)} points")


if __name__ == "__main__":
    main()
