"""Vidur and simfactory on the same model, SKU and synthetic workload: both predictions and both wall times.

    python benchmarks/vidur_side_by_side.py                          # Llama-3-8B, H100, TP1, 4 QPS, 512 requests
    python benchmarks/vidur_side_by_side.py --qps 8 --requests 1024 --input-tokens 1024 --output-tokens 256
    python benchmarks/vidur_side_by_side.py --vidur-python /path/to/venv/bin/python

Vidur (MLSys'24; `pip install vidur`) runs as a subprocess through its documented CLI (`python -m vidur.main`,
flags as printed by its `--help`) with the vLLM scheduler, fixed request lengths and Poisson arrivals; it
fetches its profiling data from the Hugging Face Hub on first use, so it needs network access once. simfactory
runs the same workload with the vllm engine preset and its roofline (or measured) profile. The two runs draw
their own arrival times (same rate, different random streams), so compare distributions, not single requests.
Not a test: it needs Vidur installed and prints figures; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from simfactory.config.scenario import Scenario
from simfactory.resolve import resolve
from simfactory.sim.outcomes import Outcome
from simfactory.sim.run import simulate

# simfactory id -> Vidur's model name and device names (vidur 0.0.26: vidur/config/model_config.py, device_sku_config.py)
VIDUR_MODELS = {"llama-3.1-8b": "meta-llama/Llama-3-8B", "llama-3.1-70b": "meta-llama/Llama-3-70B",
                "llama-2-70b": "meta-llama/Llama-2-70b-hf"}
VIDUR_DEVICES = {"h100-sxm": ("h100", "h100_dgx"), "a100-80gb": ("a100", "a100_dgx")}
PERCENTILES = (50, 90, 99)


def summarize(ttft_s: np.ndarray, tpot_s: np.ndarray, e2e_s: np.ndarray, output_tokens_per_s: float) -> dict[str, float]:
    out = {"throughput output tok/s": output_tokens_per_s}
    for name, v in (("TTFT s", ttft_s), ("TPOT s", tpot_s), ("E2E s", e2e_s)):
        for q in PERCENTILES:
            out[f"{name} p{q}"] = float(np.percentile(v, q))
    return out


def run_simfactory(a: argparse.Namespace) -> tuple[dict[str, float], float]:
    sc = Scenario.model_validate({
        "name": "vidur-side-by-side",
        "seed": 1,
        "pools": [{"name": "p", "sku": a.sku, "count": a.tp, "location": "cloud"}],
        "deployments": [{"name": "d", "model": a.model, "pool": "p", "replicas": 1, "tp": a.tp, "dtype": "bf16",
                         "engine": "vllm", "max_num_seqs": a.batch_cap}],
        "traffic": {"arrival": {"process": "poisson", "rate_per_s": a.qps},
                    "classes": [{"name": "c", "target": "d",
                                 "input_tokens": {"kind": "fixed", "value": a.input_tokens},
                                 "output_tokens": {"kind": "fixed", "value": a.output_tokens}}]},
        "sim": {"horizon_s": a.requests / a.qps, "timeline_resolution_s": 60.0},
    })
    t0 = time.perf_counter()
    t = simulate(resolve(sc), keep_logs=0).table
    wall = time.perf_counter() - t0
    done = t.outcome == Outcome.COMPLETED
    arr, first, end, out = t.arrival_s[done], t.first_token_s[done], t.completion_s[done], t.output_tokens[done]
    tpot = (end - first) / np.maximum(out - 1, 1)
    return summarize(first - arr, tpot, end - arr, float(out.sum() / (end.max() - arr.min()))), wall


def run_vidur(a: argparse.Namespace) -> tuple[dict[str, float], float]:
    device, network = VIDUR_DEVICES[a.sku]
    out_dir = Path(tempfile.mkdtemp(prefix="vidur-"))
    cmd = [
        a.vidur_python, "-m", "vidur.main",
        "--replica_config_model_name", VIDUR_MODELS[a.model],
        "--replica_config_device", device,
        "--replica_config_network_device", network,
        "--replica_config_tensor_parallel_size", str(a.tp),
        "--replica_config_num_pipeline_stages", "1",
        "--cluster_config_num_replicas", "1",
        "--request_generator_config_type", "synthetic",
        "--synthetic_request_generator_config_num_requests", str(a.requests),
        "--length_generator_config_type", "fixed",
        "--fixed_request_length_generator_config_prefill_tokens", str(a.input_tokens),
        "--fixed_request_length_generator_config_decode_tokens", str(a.output_tokens),
        "--interval_generator_config_type", "poisson",
        "--poisson_request_interval_generator_config_qps", str(a.qps),
        "--replica_scheduler_config_type", "vllm",
        "--vllm_scheduler_config_batch_size_cap", str(a.batch_cap),
        "--metrics_config_output_dir", str(out_dir),
        "--no-metrics_config_store_plots",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: vidur exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    csv = next(out_dir.glob("*/request_metrics.csv"))
    df = pd.read_csv(csv).sort_values("Request Id")
    arrival = df["request_inter_arrival_delay"].fillna(0.0).cumsum().to_numpy()
    e2e = df["request_e2e_time"].to_numpy()
    ttft = df["prefill_e2e_time"].to_numpy()
    tpot = df["decode_time_execution_plus_preemption_normalized"].to_numpy()
    decode = df["request_num_decode_tokens"].to_numpy()
    throughput = float(decode.sum() / ((arrival + e2e).max() - arrival.min()))
    return summarize(ttft, tpot, e2e, throughput), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="llama-3.1-8b", choices=sorted(VIDUR_MODELS))
    p.add_argument("--sku", default="h100-sxm", choices=sorted(VIDUR_DEVICES))
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--qps", type=float, default=4.0)
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--input-tokens", type=int, default=512)
    p.add_argument("--output-tokens", type=int, default=128)
    p.add_argument("--batch-cap", type=int, default=128, help="max_num_seqs / Vidur's batch_size_cap")
    p.add_argument("--vidur-python", default=sys.executable, help="a Python with vidur installed")
    a = p.parse_args()

    sim, sim_wall = run_simfactory(a)
    vid, vid_wall = run_vidur(a)
    print(f"{a.model} on {a.tp}x {a.sku}, Poisson {a.qps:g} QPS, {a.requests} requests, "
          f"{a.input_tokens} in / {a.output_tokens} out, batch cap {a.batch_cap}")
    print(f"{'metric':<26}{'simfactory':>14}{'vidur':>14}{'vidur/sim':>11}")
    for k in sim:
        print(f"{k:<26}{sim[k]:>14.4f}{vid[k]:>14.4f}{vid[k] / sim[k] if sim[k] else float('nan'):>11.2f}")
    print(f"{'wall s':<26}{sim_wall:>14.2f}{vid_wall:>14.2f}{vid_wall / sim_wall:>11.2f}")


if __name__ == "__main__":
    main()
