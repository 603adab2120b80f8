"""Validation of fleet-scale shortcuts (simfactory/fleet), not a test: prints how far a sharded + sampled run and
a time-windowed run land from the full, continuous simulation of the same scenario.

    python benchmarks/fleet_validation.py            # 256 replicas, the three balancers; windows over a day
    python benchmarks/fleet_validation.py --quick    # 64 replicas, shorter horizons (a smoke run)
    python benchmarks/fleet_validation.py --json out.json

Cases:
  * shards: 256 Llama-3.1-8B H100 replicas (small enough to simulate whole) at ~60% load, Poisson chat. Full run
    vs 16 shards of 16 replicas with 4 sampled (scaled by 4), for random, round_robin and least_outstanding.
  * shard size: least_outstanding fully sharded into 64, 16, 4 and 2 shards (4, 16, 64, 128 replicas each): its
    error shrinks as shards grow, from past 2% in shards of 4-64 to within it at half the pool
    (benchmarks/jsq_phase.py says why).
  * windows: 16 replicas over a diurnal day compressed to 1,800 s (3x peak to trough); continuous vs 6 windows
    of 300 s with 60 s overlaps.
  * noise floor: the full run again on another seed: differences below it are seed noise, not bias.
Each figure is the relative difference (sharded - full) / full, in percent, for TTFT/TPOT/E2E p50/p99 and cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simfactory.api import simulate_metrics  # noqa: E402
from simfactory.config.loader import validate  # noqa: E402
from simfactory.config.scenario import Scenario  # noqa: E402
from simfactory.resolve import resolve  # noqa: E402

METRICS = [f"latency_s.{m}.{p}" for m in ("ttft", "tpot", "e2e") for p in ("p50", "p99")] + [
    "cost.usd_per_hour", "cost.usd_per_1m_output_tokens", "throughput.requests_per_s"]
TOLERANCE_PCT = 2.0


def chat(name: str, replicas: int, rate_per_s: float, horizon_s: float, balancer: str, seed: int = 7,
         arrival: dict[str, Any] | None = None, sharding: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name, "seed": seed,
        "pools": [{"name": "h100", "sku": "h100-sxm", "count": replicas, "location": "cloud", "provider": "runpod"}],
        "deployments": [{"name": "llama8b", "model": "llama-3.1-8b", "pool": "h100", "replicas": replicas,
                         "max_num_seqs": 64}],
        "traffic": {"arrival": arrival or {"process": "poisson", "rate_per_s": rate_per_s},
                    "classes": [{"name": "chat", "workload": "chat-sharegpt", "target": "llama8b"}]},
        "routing": {"load_balancer": balancer},
        "sim": {"horizon_s": horizon_s, "warmup_s": min(60.0, horizon_s / 10), "timeline_resolution_s": 10.0},
    }
    if sharding:
        doc["sharding"] = sharding
    return doc


def summary_of(doc: dict[str, Any], jobs: int) -> tuple[dict[str, Any], float]:
    file = str(ROOT / "scenarios" / "validation.yaml")  # workloads and profiles resolve from the project
    rs = resolve(validate(Scenario, doc, file), file)
    started = time.perf_counter()
    metrics, _ = simulate_metrics(rs, keep_logs=0, trace_tasks=0, jobs=jobs)
    return metrics.summary, time.perf_counter() - started


def pick(summary: dict[str, Any], path: str) -> float:
    node: Any = summary
    for part in path.split("."):
        node = node[part]
    return float(node)


def compare(label: str, full: dict[str, Any], other: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    diffs = {m: 100.0 * (pick(other, m) - pick(full, m)) / pick(full, m) for m in METRICS}
    worst = max(abs(v) for m, v in diffs.items() if m != "throughput.requests_per_s")
    rows.append({"case": label, "diff_pct": diffs, "worst_pct": worst})
    cells = " ".join(f"{diffs[m]:+6.2f}" for m in METRICS)
    print(f"{label:<44} {cells}  worst {worst:5.2f}%{'' if worst <= TOLERANCE_PCT else '  > 2%'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 replicas, shorter horizons")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cases", default="shards,sizes,windows,sampled-windows",
                    help="comma-separated: shards, sizes, windows, sampled-windows")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    replicas, horizon = (64, 100.0) if args.quick else (256, 300.0)
    rate = 9.0 * replicas  # ~60% of what an 8B H100 replica serves of this chat mix (assumption from trial runs)
    k = replicas // 16
    # time windows of the whole pool over the measured span (warm-up to horizon), a third of them simulated
    span_windows = {"windows": 9, "sample_windows": 3, "window_overlap_s": 20.0}
    print(f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    print(f"{'case':<44} " + " ".join(f"{m.split('.', 1)[1][:6]:>6}" for m in METRICS), flush=True)
    rows: list[dict[str, Any]] = []
    walls: dict[str, float] = {}
    for balancer in ("random", "round_robin", "least_outstanding"):
        if not cases & {"shards", "sizes", "sampled-windows"}:
            break
        full, walls[f"full {balancer}"] = summary_of(chat("full", replicas, rate, horizon, balancer), 1)
        if "shards" in cases:
            sampled, walls[f"sampled {balancer}"] = summary_of(
                chat("sampled", replicas, rate, horizon, balancer, sharding={"shards": k, "sample_shards": 4}),
                args.jobs)
            compare(f"{balancer}: {k} shards, 4 sampled", full, sampled, rows)
        if "sampled-windows" in cases:
            part, walls[f"sampled windows {balancer}"] = summary_of(
                chat("windows", replicas, rate, horizon, balancer, sharding=span_windows), args.jobs)
            compare(f"{balancer}: 9 windows of the pool, 3 sampled", full, part, rows)
        if balancer == "least_outstanding" and "sizes" in cases:
            other, _ = summary_of(chat("full", replicas, rate, horizon, balancer, seed=8), 1)
            compare("least_outstanding: noise floor (seed 8 vs 7)", full, other, rows)
            for shards in (replicas // 4, replicas // 16, replicas // 64, 2):
                if shards >= 2:
                    part, _ = summary_of(chat("sharded", replicas, rate, horizon, balancer,
                                              sharding={"shards": shards}), args.jobs)
                    compare(f"least_outstanding: {shards} shards of {replicas // shards}, all run", full, part, rows)
    day_s = 600.0 if args.quick else 1800.0
    diurnal = {"process": "diurnal", "mean_rate_per_s": 9.0 * 16 / 1.5, "period_s": day_s, "peak_to_trough": 3,
               "peak_hour": 14}
    if cases & {"windows", "sampled-windows"}:
        cont, walls["continuous day"] = summary_of(chat("day", 16, 0, day_s, "least_outstanding", arrival=diurnal), 1)
    if "windows" in cases:
        win, walls["windowed day"] = summary_of(chat("day", 16, 0, day_s, "least_outstanding", arrival=diurnal,
                                                     sharding={"windows": 6, "window_overlap_s": 60}), args.jobs)
        compare("diurnal day: 6 windows, 60 s overlap", cont, win, rows)
        other, _ = summary_of(chat("day", 16, 0, day_s, "least_outstanding", seed=8, arrival=diurnal), 1)
        compare("diurnal day: noise floor (seed 8 vs 7)", cont, other, rows)
    if "sampled-windows" in cases:
        for sample in (3, 2):
            part, walls[f"day, {sample} of 6 windows"] = summary_of(
                chat("day", 16, 0, day_s, "least_outstanding", arrival=diurnal,
                     sharding={"windows": 6, "sample_windows": sample, "window_overlap_s": 60}), args.jobs)
            compare(f"diurnal day: 6 windows, {sample} sampled", cont, part, rows)
    print("wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in walls.items()), flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "wall_s": walls, "replicas": replicas}, indent=1))


if __name__ == "__main__":
    main()
