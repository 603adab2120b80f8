"""KV cache as task state: the agent-kv-evict / agent-kv-retain pair and its variants, over several seeds.

    python benchmarks/kv_retention.py [--seeds 5]

Prints one Markdown row per variant: the agent's task latency, the chat class's TTFT (the requests that share the
replica with the agents), output tokens/s, and how the pins ended. Mean over seeds 0..N-1 (a task's steps draw from
one stream per class, so a change of timing changes the tasks drawn: single runs are noisy; see README, "KV cache
as task state"). Each run is the shipped scenario with the overrides listed; nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from simfactory.api import prepare
from simfactory.config.scenario import Scenario
from simfactory.metrics.summary import compute_metrics
from simfactory.sim.run import simulate

ROOT = Path(__file__).resolve().parent.parent
COUNTS = {"hits", "expired", "pressure", "saved_per_task"}
Edit = Callable[[dict[str, Any]], None]


def _retain(ttl_s: float | None = 30.0, hold_slot: bool = False) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        d["traffic"]["classes"][0]["kv_retention"] = {"policy": "retain", "ttl_s": ttl_s, "hold_slot": hold_slot}
    return edit


def _deployment(**fields: Any) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        d["deployments"][0].update(fields)
    return edit


VARIANTS: list[tuple[str, str, list[Edit]]] = [
    ("evict (agent-kv-evict)", "evict", []),
    ("retain, ttl 30 s (agent-kv-retain)", "retain", []),
    ("retain, no ttl", "evict", [_retain(None)]),
    ("retain, ttl 5 s", "evict", [_retain(5.0)]),
    ("evict + 200k-token prefix cache", "evict", [_deployment(prefix_cache_tokens=200_000)]),
    ("evict, ample KV (gpu_memory_utilization 0.9)", "evict", [_deployment(gpu_memory_utilization=0.9)]),
    ("retain 30 s, ample KV", "retain", [_deployment(gpu_memory_utilization=0.9)]),
    ("evict, max_num_seqs 8, ample KV", "evict", [_deployment(max_num_seqs=8, gpu_memory_utilization=0.9)]),
    ("retain 30 s + hold_slot, max_num_seqs 8, ample KV", "evict",
     [_retain(30.0, True), _deployment(max_num_seqs=8, gpu_memory_utilization=0.9)]),
]


def run_once(base: str, edits: list[Edit], seed: int) -> dict[str, float]:
    doc = yaml.safe_load((ROOT / "scenarios" / f"agent-kv-{base}.yaml").read_text())
    doc = copy.deepcopy(doc)
    for edit in edits:
        edit(doc)
    r = simulate(prepare(Scenario.model_validate(doc)), seed)
    s = compute_metrics(r).summary
    task, chat = s["tasks"]["agent"], s["classes"]["chat"]["latency_s"]
    kv = task.get("kv_retention") or {}
    ended = kv.get("pins_ended", {})
    return {
        "task_mean_s": task["latency_s"]["mean"], "task_p99_s": task["latency_s"]["p99"],
        "chat_ttft_p50_s": chat["ttft"]["p50"], "chat_ttft_p99_s": chat["ttft"]["p99"],
        "tokens_per_s": s["throughput"]["output_tokens_per_s"],
        "hits": ended.get("hit", 0), "expired": ended.get("expired", 0), "pressure": ended.get("pressure", 0),
        "saved_per_task": kv.get("prefill_tokens_saved_per_task") or 0.0,
        "accel_s_per_task": kv.get("accelerator_s_per_task") or 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    n = ap.parse_args().seeds
    cols = ["task_mean_s", "task_p99_s", "chat_ttft_p50_s", "chat_ttft_p99_s", "tokens_per_s", "hits", "expired",
            "pressure", "saved_per_task", "accel_s_per_task"]
    print(f"mean over seeds 0..{n - 1}")
    print("| variant | agent task mean s | agent task p99 s | chat TTFT p50 s | chat TTFT p99 s | output tok/s | "
          "pin hits | expired | pressure evictions | prefill tokens saved/task | accelerator-s held/task |")
    print("|---" * (len(cols) + 1) + "|")
    t0 = time.time()
    for label, base, edits in VARIANTS:
        runs = [run_once(base, edits, seed) for seed in range(n)]
        means = [statistics.fmean(r[c] for r in runs) for c in cols]
        cells = [f"{m:,.0f}" if c in COUNTS or m >= 10 else f"{m:,.2f}" for c, m in zip(cols, means)]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
