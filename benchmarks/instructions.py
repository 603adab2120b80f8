"""CPU instructions per simulated unit (request or agent task), counted by valgrind's callgrind: a figure that does
not move with the host's load, for comparing two commits on a shared machine where wall time varies by 10-30%
between identical runs (benchmarks/README.md).

    python benchmarks/instructions.py                          # this tree: chat and agents
    python benchmarks/instructions.py --tree /path/to/other/checkout --case agents

Each case runs twice under callgrind (a small and a larger size, the same code path as `run.py --child`); the
difference of the two counts over the difference in units simulated is the marginal cost per unit, free of the start-up
(imports, scenario resolution), which both runs share. PYTHONHASHSEED is fixed so set iteration orders repeat.
Needs valgrind on PATH; callgrind runs ~50x slower than native: 1-3 minutes per case on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"chat": (1_000, 10_000), "agents": (200, 1_500)}
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(tree: Path, case: str, n: int) -> tuple[int, int]:
    """(instructions callgrind counts for one `run.py --child case n` process of `tree`, start-up included; the units
    it simulated: Poisson arrivals make that a little more or less than n)."""
    with tempfile.TemporaryDirectory() as home:
        # one BLAS thread: OpenBLAS's worker threads otherwise add a varying few million instructions a run
        env = {**os.environ, "HOME": home, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree),
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             str(tree / "benchmarks" / "run.py"), "--child", case, str(n)],
            capture_output=True, text=True, env=env, cwd=tree,
        )
    if out.returncode != 0:
        sys.exit(f"{case} {n} failed under valgrind:\n{out.stderr[-2000:]}")
    pid = re.search(r"==(\d+)== Command:", out.stderr)
    found = re.search(rf"=={pid.group(1)}== Collected\s*:\s*(\d+)", out.stderr) if pid else COLLECTED.search(out.stderr)
    if found is None:
        sys.exit(f"no callgrind total in its output:\n{out.stderr[-2000:]}")
    units = int(json.loads(out.stdout.strip().splitlines()[-1])["units"])
    return int(found.group(1)), units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    ap.add_argument("--case", choices=sorted(SIZES), action="append", help="chat and/or agents (default: both)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH (apt install valgrind)")
    tree = args.tree.resolve()
    for case in args.case or sorted(SIZES):
        small, large = SIZES[case]
        (low, n_low), (high, n_high) = instructions(tree, case, small), instructions(tree, case, large)
        per_unit = (high - low) / (n_high - n_low)
        print(f"{case:>7}: {per_unit / 1e3:9,.1f} k instructions per {'task' if case == 'agents' else 'request'} "
              f"({n_low:,} -> {n_high:,} simulated: {low / 1e9:.3f} -> {high / 1e9:.3f} G)", flush=True)


if __name__ == "__main__":
    main()
