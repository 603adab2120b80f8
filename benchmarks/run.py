"""Speed and memory benchmarks (not tests): wall time, simulated requests per wall second, SimPy events,
peak RSS, per case; JSON output that a later run can be compared with.

    python benchmarks/run.py                       # quick sizes (a few minutes on one core)
    python benchmarks/run.py --full                # issue-sized cases: 1M chat requests, 100k agent tasks
    python benchmarks/run.py --json out.json --compare previous.json

Each case runs in a fresh subprocess so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

def chat_scenario(name: str, accelerators: int, replicas: int, rate_per_s: float, **sim: float) -> dict:
    """Llama-3.1-8B on H100 replicas serving ShareGPT-like chat at a Poisson rate (the chat and sweep cases)."""
    return {
        "name": name,
        "seed": 1,
        "pools": [{"name": "p", "sku": "h100-sxm", "count": accelerators, "location": "cloud"}],
        "deployments": [{"name": "d", "model": "llama-3.1-8b", "pool": "p", "replicas": replicas}],
        "traffic": {"arrival": {"process": "poisson", "rate_per_s": rate_per_s},
                    "classes": [{"name": "chat", "workload": "chat-sharegpt", "target": "d"}]},
        "sim": {"warmup_s": 0.0, **sim},
    }


CHAT = chat_scenario("bench-chat", 64, 64, 640.0, horizon_s=0.0, timeline_resolution_s=10.0)
AGENTS = {
    "name": "bench-agents",
    "seed": 1,
    "pools": [{"name": "p", "sku": "h100-sxm", "count": 32, "location": "cloud"}],
    "deployments": [{"name": "small", "model": "llama-3.1-8b", "pool": "p", "replicas": 16},
                    {"name": "large", "model": "llama-3.1-70b", "pool": "p", "replicas": 4, "tp": 4, "dtype": "fp8"}],
    "traffic": {"arrival": {"process": "poisson", "rate_per_s": 20.0},
                "classes": [{"name": "support", "workload": "support-agent", "targets": {"small": "small", "large": "large"}}]},
    "sim": {"horizon_s": 0.0, "warmup_s": 0.0, "timeline_resolution_s": 10.0},
}


SWEEP_BASE = chat_scenario("bench-sweep-point", 4, 2, 10.0, horizon_s=20.0)


def sweep_child(n: int) -> dict:
    """A sweep of n points (rate x replicas x max_num_seqs x seed) of a small scenario over every core."""
    import os
    import tempfile

    sys.path.insert(0, str(ROOT))
    import simfactory
    from simfactory.config.scenario import Scenario
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep

    jobs = os.cpu_count() or 1
    rates = [round(4.0 + 0.5 * i, 1) for i in range(max(n // 20, 1))]
    spec = SweepSpec(mode="grid", parameters={
        "traffic.arrival.rate_per_s": rates, "deployments.0.replicas": [1, 2],
        "deployments.0.max_num_seqs": [32, 64, 128, 256, 512], "seed": [1, 2]})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        table = run_sweep(Scenario.model_validate(SWEEP_BASE), str(ROOT / "scenarios" / "bench.yaml"), spec,
                          "<bench>", Path(tmp), jobs=jobs)
    wall = time.perf_counter() - t0
    return {"case": f"sweep-{len(table)}", "units": len(table), "requests": int(table.filter(like="outcomes.").sum().sum()),
            "errors": int((table["error"].fillna("") != "").sum()), "wall_s": wall, "sim_wall_s": wall, "units_per_wall_s": len(table) / wall,
            "events": 0, "jobs": jobs, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "simfactory_version": simfactory.__version__}


def calibration_s(repeats: int = 5) -> float:
    """Seconds for a fixed pure-Python workload shaped like the engine's inner loop (heap pushes and pops, float
    arithmetic, dict and attribute access): the best of `repeats`. The host is shared and its speed drifts by
    tens of percent, so a comparison divides each case's wall time by this figure measured in the same run."""
    import heapq

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        heap: list[tuple[float, int]] = []
        state = {"busy": 0.0, "served": 0}
        for i in range(200_000):
            heapq.heappush(heap, ((i * 7919) % 10_007 * 1e-3, i))
            if len(heap) > 64:
                t, j = heapq.heappop(heap)
                state["busy"] += t * 0.5 + (j & 7) * 1e-4
                state["served"] += 1
        best = min(best, time.perf_counter() - t0)
    return best


def case_child(kind: str, n: int) -> dict:
    """Run one case in this process and report its figures."""
    if kind == "sweep":
        return sweep_child(n)
    sys.path.insert(0, str(ROOT))
    import simfactory
    from simfactory.config.scenario import Scenario
    from simfactory.metrics.summary import compute_metrics
    from simfactory.resolve import resolve
    from simfactory.sim.run import simulate

    doc = json.loads(json.dumps(CHAT if kind == "chat" else AGENTS))
    rate = doc["traffic"]["arrival"]["rate_per_s"]
    doc["sim"]["horizon_s"] = n / rate
    rs = resolve(Scenario.model_validate(doc), ROOT / "scenarios" / "bench.yaml")
    t0 = time.perf_counter()
    result = simulate(rs, keep_logs=0)
    sim_s = time.perf_counter() - t0
    compute_metrics(result, trace_tasks=0)
    wall = time.perf_counter() - t0
    units = len(result.tasks) if kind == "agents" else len(result.table)
    return {"case": f"{kind}-{n}", "units": units, "requests": len(result.table), "wall_s": wall, "sim_wall_s": sim_s,
            "units_per_wall_s": units / wall, "events": result.events,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "simfactory_version": simfactory.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="issue-sized cases (slow)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--compare", type=Path, help="a previous --json output to compare with")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(calibration_s() if args.child[0] == "calibrate" else case_child(args.child[0], int(args.child[1]))))
        return
    # read the previous figures first: --json may overwrite the same file
    previous_doc = json.loads(args.compare.read_text()) if args.compare else None
    previous = previous_doc["cases"] if previous_doc else None
    sizes = [("chat", 1_000_000), ("agents", 100_000), ("chat", 10_000), ("chat", 100_000), ("sweep", 1000)] if (
        args.full) else [("chat", 10_000), ("chat", 30_000), ("chat", 100_000), ("agents", 5_000), ("sweep", 100)]
    calibration = json.loads(subprocess.run([sys.executable, __file__, "--child", "calibrate", "0"], capture_output=True,
                                            text=True, check=True).stdout)
    print(f"{'calibration':>14}: {calibration:8.3f} s (fixed pure-Python loop; the host's speed in this run)", flush=True)
    rows = []
    for kind, n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            sys.exit(1)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['case']:>14}: {row['wall_s']:8.2f} s wall ({row['sim_wall_s']:.2f} s simulating), "
              f"{row['units_per_wall_s']:9,.0f} units/s, {row['events']:>11,} events, {row['peak_rss_mb']:7,.0f} MB peak",
              flush=True)
    chat = sorted((r["units"], r["wall_s"]) for r in rows if r["case"].startswith("chat"))
    scaling = None
    if len(chat) >= 2:
        n = np.array([c[0] for c in chat], dtype=float)
        w = np.array([c[1] for c in chat])
        slope, intercept = np.polyfit(n, w, 1)  # least squares: wall = intercept + slope x requests
        # superlinear work shows as an exponent above 1 in wall ~ n^k (log-log fit)
        exponent = float(np.polyfit(np.log(n), np.log(w), 1)[0])
        scaling = {"s_per_million": slope * 1e6, "intercept_s": intercept, "loglog_exponent": exponent}
        print(f"chat scaling: {slope * 1e6:.2f} s per million requests (least squares over {len(chat)} sizes, "
              f"{int(n[0]):,} to {int(n[-1]):,}); log-log exponent {exponent:.3f} (1 = linear); wall per request "
              + ", ".join(f"{wi / ni * 1e6:.1f} us" for ni, wi in zip(n, w)))
    report = {"machine": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
              "calibration_s": calibration, "cases": rows, "chat_scaling": scaling}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if previous is not None:
        prev = {r["case"]: r for r in previous}
        # the same code on a busier host is slower: divide by the ratio of the two runs' calibration figures
        host = calibration / previous_doc["calibration_s"] if previous_doc.get("calibration_s") else None
        if host is None:
            print("the previous run has no calibration figure: wall-time changes below include the host's drift")
        else:
            print(f"host speed: calibration {host - 1:+.1%} against the previous run (normalised column divides it out)")
        for r in rows:
            p = prev.get(r["case"])
            if p:
                ratio = r["wall_s"] / p["wall_s"]
                normalised = f", normalised {ratio / host - 1:+.1%}" if host else ""
                print(f"{r['case']:>14}: wall {ratio - 1:+.1%}{normalised}, peak RSS {r['peak_rss_mb'] / p['peak_rss_mb'] - 1:+.1%}")


if __name__ == "__main__":
    main()
