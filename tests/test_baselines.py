"""The project's own regression gate: every shipped scenario against reports/baselines/.

A change that shifts results must update the baselines in the same commit:
    simfactory baseline update scenarios/*.yaml --baseline-dir reports/baselines
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from simfactory.paths import PROJECT_ROOT, SCENARIOS_DIR


# Shipped scenarios too large for the suite's budget, with why; each has a cheap path tested elsewhere.
FULL_SIZE_ONLY = {
    # a simulated day of 4 sampled shards (~2M requests, minutes on 2 cores); tests/test_sharding.py runs it on a
    # 60 s horizon, and its baseline is checked by hand: simfactory regress scenarios/fleet-10k-day.yaml --baseline-dir reports/baselines
    "fleet-10k-day.yaml": "a day of a 10,000-GPU fleet",
}
SHARDS = 2  # halves of the scenario list, so pytest-xdist's workers regress them side by side


@pytest.mark.parametrize("shard", range(SHARDS))
def test_shipped_scenarios_match_their_baselines(tmp_path, shard):
    scenarios = sorted(str(p) for p in SCENARIOS_DIR.glob("*.yaml") if p.name not in FULL_SIZE_ONLY)[shard::SHARDS]
    cmd = [sys.executable, "-m", "simfactory", "regress", *scenarios,
           "--baseline-dir", str(PROJECT_ROOT / "reports" / "baselines"),
           "--tolerances", str(PROJECT_ROOT / "reports" / "tolerances.yaml"), "--report-dir", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert (tmp_path / "regress.junit.xml").is_file()
