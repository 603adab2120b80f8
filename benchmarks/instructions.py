"""CPU instructions per simulated unit (request or agent task), counted by valgrind's callgrind: a figure that does
not move with the host's load, for comparing two commits on a shared machine where wall time varies by 10-30%
between identical runs (benchmarks/README.md).

    python benchmarks/instructions.py                          # this tree: chat and agents
    python benchmarks/instructions.py --tree /path/to/other/checkout --case agents

Each case runs twice under callgrind (a small and a larger size, the same code path as `run.py --child`); the
difference of the two counts over the difference in units is the marginal cost per unit, free of the start-up
(imports, scenario resolution), which both runs share. PYTHONHASHSEED is fixed so set iteration orders repeat.
Needs valgrind on PATH and takes ~1 minute per case (callgrind runs ~50x slower than native).
"""

from __future__ import annotations

import argparse
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


def instructions(tree: Path, case: str, n: int) -> int:
    """Instructions callgrind counts for one `run.py --child case n` process of `tree` (start-up included)."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             str(tree / "benchmarks" / "run.py"), "--child", case, str(n)],
            capture_output=True, text=True, env=env, cwd=tree, check=True,
        )
    found = COLLECTED.search(out.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in its output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


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
        low, high = instructions(tree, case, small), instructions(tree, case, large)
        per_unit = (high - low) / (large - small)
        print(f"{case:>7}: {per_unit / 1e3:9,.1f} k instructions per {'task' if case == 'agents' else 'request'} "
              f"({small:,} -> {large:,}: {low / 1e9:.3f} -> {high / 1e9:.3f} G)", flush=True)


if __name__ == "__main__":
    main()
