"""Calibration from a few measured batches, checked on the rest: LLM-Inference-Bench's vLLM batch latencies.

For each (GPU, model, TP) slice of calibrate/datasets/llm-inference-bench/vllm-batch-latency.csv with at least
8 rows: fit a linear step time to at most --max-train-rows batches (every second prompt length held out, then an
even spread), forecast the held-out batches, and print MAPE and signed bias (+ = predicts slower than measured),
beside the uncalibrated prior (the shipped step time of the `vllm-v0` engine preset on that SKU: measured kernels
where they cover it, else the roofline) on the same held-out batches.

    python calibrate/batch_latency_check.py [--max-train-rows 12] [--sku mi300x] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from simfactory.calibration.batch_latency import check_batches, fit_batches
from simfactory.calibration.fit import FitRefused
from simfactory.calibration.validate import Deployment, resolve_block, simulate_resolved

DATA = Path(__file__).resolve().parent / "datasets" / "llm-inference-bench" / "vllm-batch-latency.csv"
ENGINE = "vllm-v0"  # the runs used vLLM of mid-2024 (v0 scheduler), CUDA graphs on


def prior_latency_s(row: pd.Series, dep: Deployment) -> float:
    """The uncalibrated forecast of one batch: the deployment's shipped step time, the batch sent at once."""
    block = pd.DataFrame({"send_s": np.zeros(int(row.batch_size)), "input_tokens": int(row.input_tokens),
                          "output_tokens": int(row.output_tokens)})
    sim = simulate_resolved(resolve_block(block, dep))
    return float(sim["e2e_s"].max()) if len(sim) == row.batch_size else float("nan")


def check_slice(rows: pd.DataFrame, dep: Deployment, max_train: int) -> dict[str, object]:
    batches = check_batches(rows.reset_index(drop=True), str(DATA))
    fit = fit_batches(batches, dep, by="prompt", max_train=max_train)
    p = fit.predictions
    held = p[p["split"] == "heldout"]
    prior = np.array([prior_latency_s(r, dep) for r in held.itertuples(index=False)])
    prior_err = prior / held["latency_s"].to_numpy() - 1.0
    return {"sku": dep.sku, "model": dep.model, "tp": dep.tp, "train": fit.n_train, "heldout": fit.n_heldout,
            "heldout_mape": fit.heldout_mape, "heldout_bias": float(held["error"].mean()),
            "heldout_worst": fit.heldout_max_error, "prior_mape": float(np.nanmean(np.abs(prior_err))),
            "prior_bias": float(np.nanmean(prior_err))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-train-rows", type=int, default=12)
    ap.add_argument("--sku", default=None, help="only this SKU's slices")
    ap.add_argument("--csv", type=Path, default=None, help="also write the table here (a new file)")
    args = ap.parse_args(argv)
    data = pd.read_csv(DATA)
    if args.sku:
        data = data[data["sku"] == args.sku]
    results = []
    for (sku, model, tp), rows in data.groupby(["sku", "model", "tp"], sort=True):
        if len(rows) < 8:
            continue
        dep = Deployment(sku=sku, model=model, engine=ENGINE, tp=int(tp))
        try:
            results.append(check_slice(rows, dep, args.max_train_rows))
        except FitRefused as e:
            print(f"{sku} {model} tp{tp}: refused ({e})", file=sys.stderr)
    table = pd.DataFrame(results)
    show = table.copy()
    for col in ("heldout_mape", "heldout_bias", "heldout_worst", "prior_mape", "prior_bias"):
        show[col] = [f"{v:+.1%}" if "bias" in col else f"{v:.1%}" for v in table[col]]
    print("| " + " | ".join(show.columns) + " |\n|" + "---|" * len(show.columns))
    for row in show.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")
    by_sku = table.groupby("sku")[["heldout_mape", "heldout_bias", "prior_mape", "prior_bias"]].mean()
    print("\nmean per SKU:\n" + by_sku.to_string(float_format=lambda v: f"{v:+.3f}"))
    if args.csv is not None:
        if args.csv.exists():
            print(f"error: {args.csv} exists; give a new file", file=sys.stderr)
            return 2
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
