"""Why least-outstanding balancing does not shard (issue #29), measured: prints, for one pool of N Llama-3.1-8B
H100 replicas at the same load per replica (9 chat requests/s each, ~60%), TTFT p50/p99 and where in its running
engine step the chosen replica is when a request is dispatched to it.

    python benchmarks/jsq_phase.py                 # N = 16, 64, 128, 256, 512; 60 s each
    python benchmarks/jsq_phase.py --sizes 16,64 --horizon 30

`phase left` is the mean fraction of the chosen replica's running step still to go at dispatch: a request waits
that long before its prefill can start (engines admit new requests at step boundaries). Random placement gives
about 0.5. Requests end at step boundaries, so the replica that just finished one has the fewest outstanding
requests just as its next step starts; the faster arrivals come relative to a step (the bigger the pool at the
same load per replica), the sooner the next arrival lands there, with most of the step still to wait. A shard of
n replicas sees 1/k of the arrivals and so behaves like a pool of n: its TTFT is that of the smaller pool, and the
gap to the whole pool grows with the whole pool, not only as the shard shrinks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fleet_validation import chat, summary_of  # noqa: E402
from simfactory.sim.router import ReplicaBalancer  # noqa: E402

PHASES: list[float] = []
STEPS_S: list[float] = []


def _instrument() -> None:
    """Record, per dispatch, the fraction of the chosen replica's running step still to go."""
    dispatch = ReplicaBalancer.dispatch

    def recorded(self, rid: int, priority: int = 0, service_class: int = -1, key: int = -1) -> int:  # type: ignore[no-untyped-def]
        i = dispatch(self, rid, priority, service_class, key)
        if i >= 0:
            e = self.engines[i]
            now, st = e.env.now, e.stretch
            if st is not None:
                j = st.ended(now)
                end, length = st.end_s(j + 1), st.step_s(j)
            elif e.in_step:
                end, length = e.step_started_s + e.step_len_s, e.step_len_s
            else:
                end, length = now, 0.0
            if length > 0:
                PHASES.append((end - now) / length)
                STEPS_S.append(length)
        return i

    ReplicaBalancer.dispatch = recorded  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,64,128,256,512")
    ap.add_argument("--horizon", type=float, default=60.0)
    args = ap.parse_args()
    _instrument()
    print(f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'pool':>5} {'balancer':<18} {'arrivals/step':>13} {'TTFT p50 ms':>11} {'TTFT p99 ms':>11} "
          f"{'phase left':>10} {'wall s':>6}", flush=True)
    runs = [(int(n), "least_outstanding") for n in args.sizes.split(",")] + [(256, "round_robin")]
    for n, balancer in runs:
        PHASES.clear()
        STEPS_S.clear()
        started = time.perf_counter()
        s, _ = summary_of(chat("jsq", n, 9.0 * n, args.horizon, balancer), 1)
        ttft = s["latency_s"]["ttft"]
        step_s = float(np.mean(STEPS_S))  # the mean running step a request was sent into
        print(f"{n:>5} {balancer:<18} {9.0 * n * step_s:>13.2f} {ttft['p50'] * 1e3:>11.2f} {ttft['p99'] * 1e3:>11.2f} "
              f"{np.mean(PHASES):>10.3f} {time.perf_counter() - started:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
