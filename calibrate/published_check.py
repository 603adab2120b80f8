"""Compare simulated offline max throughput with TensorRT-LLM's published perf-overview table.

Source of the measurements: https://github.com/NVIDIA/TensorRT-LLM/blob/00f37686aa854010d68bcbd0f4ab000221541ca6/docs/source/performance/perf-overview.md
(copied in ../shared/reference/public_figures.yaml, id trtllm_llama31_8b_fp8). Llama-3.1-8B, FP8, TP1.
Run: python calibrate/published_check.py [--requests N] [--fit]
Prints predicted vs published total output tokens/s and the error, per SKU and ISL/OSL, using the shipped
profiles' roofline factors. --fit grid-searches the factors (compute efficiency, memory efficiency, per-step
overhead) for the lowest mean absolute error: how the shipped NVIDIA factors were chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools

from simfactory.api import run
from simfactory.config.profile import RooflineStepTime
from simfactory.config.scenario import Scenario
from simfactory.resolve import ResolvedScenario, resolve
from simfactory.sim.run import simulate

PUBLISHED = {  # (isl, osl): {sku: output tokens/s}
    (128, 128): {"h100-sxm": 28312, "h200": 27911},
    (128, 2048): {"h100-sxm": 22714, "h200": 26221},
    (500, 2000): {"h100-sxm": 17660, "h200": 20770},
    (1000, 1000): {"h100-sxm": 15220, "h200": 17744},
    (2048, 128): {"h100-sxm": 3450, "h200": 3538},
    (2048, 2048): {"h100-sxm": 9305, "h200": 12194},
    (5000, 500): {"h100-sxm": 3459, "h200": 3902},
}


def offline_scenario(sku: str, isl: int, osl: int, n: int, max_num_seqs: int) -> Scenario:
    return Scenario.model_validate(
        {
            "name": f"offline-{sku}-{isl}-{osl}",
            "pools": [{"name": "p", "sku": sku, "count": 1, "location": "cloud"}],
            "deployments": [{"name": "d", "model": "llama-3.1-8b", "pool": "p", "replicas": 1, "dtype": "fp8",
                             "engine": "tensorrt-llm",
                             "max_num_seqs": max_num_seqs, "max_num_batched_tokens": 8192}],
            "traffic": {"arrival": {"process": "constant", "rate_per_s": 1e5},
                        "classes": [{"name": "c", "target": "d", "input_tokens": {"kind": "fixed", "value": isl},
                                     "output_tokens": {"kind": "fixed", "value": osl}}]},
            "sim": {"horizon_s": n / 1e5, "timeline_resolution_s": 10.0},
        }
    )


def with_factors(rs: ResolvedScenario, factors: RooflineStepTime) -> ResolvedScenario:
    d = rs.deployments[0]
    st = dataclasses.replace(d.step_time, factors=factors)
    return dataclasses.replace(rs, deployments=[dataclasses.replace(d, step_time=st)])


def fit(n: int, max_num_seqs: int) -> None:
    cases = [(isl, osl, sku, pub) for (isl, osl), by in PUBLISHED.items() for sku, pub in by.items()]
    resolved = {c[:3]: resolve(offline_scenario(c[2], c[0], c[1], n, max_num_seqs)) for c in cases}
    results = []
    for ce, me, ov in itertools.product([0.45, 0.55, 0.65, 0.75], [0.6, 0.7, 0.8, 0.9], [0.001, 0.002, 0.003, 0.004, 0.005]):
        factors = RooflineStepTime(compute_efficiency=ce, memory_efficiency=me, step_overhead_s=ov)
        errs = []
        for isl, osl, sku, pub in cases:
            t = simulate(with_factors(resolved[(isl, osl, sku)], factors)).table
            errs.append(abs(t.output_tokens.sum() / t.completion_s.max() / pub - 1))
        results.append((sum(errs) / len(errs), max(errs), ce, me, ov))
    print("MAPE   max   compute_eff memory_eff overhead_s")
    for mape, mx, ce, me, ov in sorted(results)[:5]:
        print(f"{mape:5.1%} {mx:5.1%}   {ce:<11} {me:<10} {ov}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--max-num-seqs", type=int, default=512)
    ap.add_argument("--fit", action="store_true", help="grid-search the roofline factors")
    args = ap.parse_args()
    if args.fit:
        fit(args.requests, args.max_num_seqs)
        return
    errors = []
    print(f"{'sku':9} {'isl/osl':>10} {'published':>10} {'simulated':>10} {'error':>8}")
    for (isl, osl), by_sku in PUBLISHED.items():
        for sku, published in by_sku.items():
            m = run(offline_scenario(sku, isl, osl, args.requests, args.max_num_seqs))
            req = m.requests
            sim = req["output_tokens"].sum() / req["completion_s"].max()
            err = sim / published - 1
            errors.append(abs(err))
            print(f"{sku:9} {f'{isl}/{osl}':>10} {published:>10,} {sim:>10,.0f} {err:>+8.1%}")
    print(f"MAPE {sum(errors) / len(errors):.1%} over {len(errors)} points")


if __name__ == "__main__":
    main()
