"""`run -R N` and `compare -R N`: replications on common random numbers, a 95% t interval per headline metric,
and paired differences between scenarios.

The interval is held to a closed form: one replica serving one request at a time (max_num_seqs 1) with Poisson
arrivals and geometric output lengths (the discrete exponential: tests/test_queueing_theory.py) is busy a
fraction rho = lambda E[S] of the time in steady state, whatever the service distribution (Little's law applied
to the server). Over many independent batches of 5 replications the interval must cover rho about 95% of the
time, and be as wide as t(0.975, 4) s / sqrt(5) says, no wider.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.metrics.ci import describe, mean_ci, paired_difference
from simfactory.plan.replicate import paired, paired_comparisons, replicate, replication_seeds
from conftest import scenario_doc, write_case

runner = CliRunner()
DT = 0.05
MEAN_TOKENS = 20  # E[S] = 1 s
BUSY = "mean replica busy fraction"
E2E_P99 = "E2E p99 (ms)"
T_975_4 = 2.7764451051977987  # Student t quantile, 4 degrees of freedom (scipy.stats.t.ppf(0.975, 4))


def mm1(rate: float, replicas: int = 1, horizon_s: float = 100.0, warmup_s: float = 20.0) -> dict:
    return scenario_doc(rate=rate, replicas=replicas, output_tokens={"kind": "geometric", "mean": MEAN_TOKENS},
                        horizon_s=horizon_s, warmup_s=warmup_s, balancer="pull")


def test_t_interval_covers_a_normal_mean_at_the_stated_rate():
    """The interval itself: 4,000 batches of 5 normal draws, coverage 95% within 3 binomial standard errors;
    paired differences of correlated pairs likewise."""
    rng = np.random.default_rng(7)
    batches = 4000
    hits = 0
    for _ in range(batches):
        mean, half = mean_ci(list(rng.normal(3.0, 2.0, 5)))
        hits += abs(mean - 3.0) <= half
    paired_hits = 0
    for _ in range(batches):
        shared = rng.normal(10.0, 5.0, 5)  # common random numbers: a large shared part, cancelled by pairing
        d = paired_difference(list(shared + rng.normal(0, 0.1, 5)), list(shared + 0.5 + rng.normal(0, 0.1, 5)))
        paired_hits += abs(d["mean_diff"] - 0.5) <= d["ci95"]
    tolerance = 3 * math.sqrt(0.95 * 0.05 / batches)
    assert abs(hits / batches - 0.95) < tolerance, hits / batches
    assert abs(paired_hits / batches - 0.95) < tolerance, paired_hits / batches


def test_ci_of_utilization_covers_rho_over_many_seeds(case):
    """M/M/1-like, rho = 0.5: 60 independent batches of 5 replications (seeds never shared between batches)."""
    lam = 0.5
    rho = lam * MEAN_TOKENS * DT
    rs = case(mm1(lam), {"overhead_s": DT})
    batches, hits, halves, values = 60, 0, [], []
    for b in range(batches):
        rep = replicate(rs, 5, base_seed=1000 + 5 * b)
        ci = rep.ci()[BUSY]
        assert ci["n"] == 5
        hits += abs(ci["mean"] - rho) <= ci["ci95"]
        halves.append(ci["ci95"])
        values += [v[BUSY] for v in rep.values]
    # binomial(60, 0.95): at most 52 covered has probability about 1%
    assert hits / batches >= 0.88, (hits, batches)
    assert abs(np.mean(values) - rho) < 3 * np.std(values, ddof=1) / math.sqrt(len(values))
    # as wide as the t interval should be on average (E[s] = 0.94 sigma for n = 5): a z interval (x 0.71) or a
    # missing sqrt(n) (x 2.2) would be outside
    expected = T_975_4 * np.std(values, ddof=1) / math.sqrt(5)
    assert 0.75 < np.mean(halves) / expected < 1.15, (np.mean(halves), expected)


def test_identical_scenarios_differ_by_nothing(case):
    """Common random numbers: the same fleet run twice on the same seeds has every paired difference exactly 0,
    not significant, and the same arrivals."""
    runs = [replicate(case(mm1(0.8), {"overhead_s": DT}), 3, base_seed=11) for _ in range(2)]
    rows = paired_comparisons(runs, ["a", "b"])
    assert rows and {r["metric"] for r in rows} >= {BUSY, E2E_P99, "USD per 1M tokens (in+out)"}
    for r in rows:
        assert r["mean_diff"] == 0 and r["ci95"] == 0 and not r["significant"], r


def test_fewer_replicas_is_significantly_slower(case):
    """The same arrivals (the measured request count is equal replication by replication) on 1 replica instead of
    2: p99 E2E is higher, significantly; the paired interval is narrower than the unpaired one would be."""
    two = replicate(case(mm1(0.8, replicas=2, horizon_s=150), {"overhead_s": DT}), 4, base_seed=3)
    one = replicate(case(mm1(0.8, replicas=1, horizon_s=150), {"overhead_s": DT}), 4, base_seed=3)
    measured = "LLM requests measured (with escalations)"
    assert [v[measured] for v in two.values] == [v[measured] for v in one.values]
    d = paired(two, one, E2E_P99)
    assert d is not None and d["significant"] and d["mean_diff"] > 0, d
    assert d["mean_diff"] - d["ci95"] > 0
    busy = paired(two, one, BUSY)
    assert busy["significant"] and busy["mean_diff"] > 0


def test_same_seed_gives_the_same_ci_table_and_replication_0_is_the_plain_run(case):
    from simfactory.metrics.summary import compute_metrics
    from simfactory.report.compare import headline_values
    from simfactory.sim.run import simulate

    rs = case(mm1(0.6, horizon_s=60, warmup_s=10), {"overhead_s": DT})
    a, b = replicate(rs, 3, base_seed=5), replicate(rs, 3, base_seed=5)
    assert a.seeds == b.seeds == replication_seeds(5, 3) == [5, 6, 7]
    assert a.ci() == b.ci() and a.values == b.values
    assert a.values[0] == headline_values(compute_metrics(simulate(rs, seed=5)).summary)
    assert replicate(rs, 3, base_seed=6).values[:2] == a.values[1:]  # seed base + r: nothing else
    assert replicate(rs, 1).seeds == [rs.scenario.seed]


def test_describe_and_paired_edge_cases():
    assert describe([2.0]) == {"mean": 2.0, "std": 0.0, "ci95": 0.0, "n": 1}
    d = describe([1.0, 2.0, 3.0])
    assert d["std"] == pytest.approx(1.0) and d["ci95"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    constant = paired_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])  # a fixed price difference: no noise in it
    assert constant["mean_diff"] == pytest.approx(1.0) and constant["ci95"] == 0 and constant["significant"]
    assert constant["relative"] == pytest.approx(0.5)
    assert not paired_difference([1.0, 2.0], [1.0, 2.0])["significant"]
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


@pytest.fixture
def two_fleets(tmp_path):
    """Two scenario files, 1 and 2 replicas on the same traffic, small enough to run a few times."""
    one = write_case(tmp_path / "one", {**mm1(0.6, horizon_s=60, warmup_s=10), "name": "one"}, {"overhead_s": DT})
    two = write_case(tmp_path / "two", {**mm1(0.6, replicas=2, horizon_s=60, warmup_s=10), "name": "two"},
                     {"overhead_s": DT})
    return one, two


def test_run_R_writes_the_replicate_tables_beside_replication_0(tmp_path, two_fleets):
    one, _ = two_fleets
    plain, replicated, doc = tmp_path / "plain", tmp_path / "r3", tmp_path / "r3.json"
    assert runner.invoke(app, ["run", str(one), "--out", str(plain), "--no-plots", "-q"]).exit_code == 0
    res = runner.invoke(app, ["run", str(one), "--out", str(replicated), "--no-plots", "-R", "3", "--json", str(doc)])
    assert res.exit_code == 0, res.output
    assert "mean and 95% t interval" in res.output and "± 95% CI" in res.output and "ci.csv" in res.output
    table = pd.read_csv(replicated / "replications.csv")
    assert list(table["replication"]) == [0, 1, 2] and list(table["seed"]) == [1, 2, 3]
    ci = pd.read_csv(replicated / "ci.csv").set_index("metric")
    assert list(ci.columns) == ["mean", "std", "ci95", "n"] and (ci["n"] == 3).all()
    assert ci.loc[BUSY, "mean"] == pytest.approx(table[BUSY].mean())
    # replication 0 is the plain run: the same requests, the same report
    assert (plain / "requests.csv").read_bytes() == (replicated / "requests.csv").read_bytes()
    assert not (plain / "ci.csv").exists()
    block = json.loads(doc.read_text())["replications"]
    assert block["n"] == 3 and block["seeds"] == [1, 2, 3] and block["ci"][BUSY]["n"] == 3


def test_compare_R_adds_intervals_significance_and_a_verdict(tmp_path, two_fleets):
    out, doc = tmp_path / "cmp", tmp_path / "cmp.json"
    res = runner.invoke(app, ["compare", *map(str, two_fleets), "--out", str(out), "-R", "3", "--seed", "4",
                              "--json", str(doc)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "paired difference" in text and "two vs one" in text and "significant" in text
    assert "paired replications" in text and "at 95%" in text  # the verdict on the recommendation's cost
    sig = pd.read_csv(out / "significance.csv")
    assert set(sig["run"]) == {"two"} and set(sig["baseline"]) == {"one"}
    row = sig.set_index("metric").loc["USD per hour"]
    assert bool(row["significant"]) and row["relative"] == pytest.approx(1.0)  # twice the replicas, twice the price
    assert set(pd.read_csv(out / "ci.csv")["run"]) == {"one", "two"}
    assert list(pd.read_csv(out / "1-one" / "replications.csv")["seed"]) == [4, 5, 6]
    block = json.loads(doc.read_text())["replications"]
    assert set(block["runs"]) == {"one", "two"} and block["significance"] and block["verdict"].startswith("cost per")


@pytest.mark.parametrize("value", ["0", "1.5", "x", "1001"])
def test_bad_replications_exit_2_naming_the_flag(tmp_path, two_fleets, value):
    for cmd in (["run", str(two_fleets[0])], ["compare", *map(str, two_fleets)]):
        res = runner.invoke(app, [*cmd, "--out", str(tmp_path / "never"), "-R", value])
        assert res.exit_code == 2, res.output
        assert "--replications" in res.output
        assert not (tmp_path / "never").exists()
