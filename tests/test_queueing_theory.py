"""The serving core against closed-form queueing results.

A replica with max_num_seqs=1 serves one request at a time. With a step time that is a constant dt,
a request with n output tokens takes exactly n steps (one prefill step that yields the first token,
n-1 decode steps), so its service time is n * dt:
- geometric n (mean m): service is the discrete analogue of exponential; E[S^2] = dt^2 (2 - 1/m) m^2,
  which the Pollaczek-Khinchine formula turns into the exact mean wait, within 2.5% of M/M/1's;
- fixed n: deterministic service, M/D/1.
Waits are estimated with batch means; the test passes when theory lies within 3.5 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simfactory.api import run
from conftest import scenario_doc

DT = 0.05
MEAN_TOKENS = 20  # E[S] = 1 s


def batch_means(x: np.ndarray, batches: int = 30) -> tuple[float, float]:
    usable = len(x) - len(x) % batches
    means = x[:usable].reshape(batches, -1).mean(axis=1)
    return float(means.mean()), float(means.std(ddof=1) / math.sqrt(batches))


def measured_waits(metrics) -> np.ndarray:
    req = metrics.requests
    req = req[req["measured"]].sort_values("arrival_s")
    assert (req["outcome"] == "completed").all()
    return req["queue_s"].to_numpy()


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lambda / mu (Erlang C)."""
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def pk_wait(lam: float, es: float, es2: float) -> float:
    """Pollaczek-Khinchine mean wait of M/G/1."""
    return lam * es2 / (2 * (1 - lam * es))


def geometric_second_moment(m: float, dt: float) -> float:
    p = 1 / m
    return dt**2 * (2 - p) / p**2


def test_mm1_mean_wait(case):
    lam = 0.6
    rs = case(
        scenario_doc(
            rate=lam, output_tokens={"kind": "geometric", "mean": MEAN_TOKENS}, horizon_s=20000, warmup_s=1000
        ),
        {"overhead_s": DT},
    )
    mean, se = batch_means(measured_waits(run(rs)))
    es = MEAN_TOKENS * DT
    exact = pk_wait(lam, es, geometric_second_moment(MEAN_TOKENS, DT))
    mm1 = (lam * es) / (1 / es - lam)
    assert abs(mean - exact) < 3.5 * se, (mean, se, exact)
    assert abs(mean - mm1) < 3.5 * se + 0.03 * mm1, (mean, se, mm1)


def test_mmc_mean_wait_matches_erlang_c(case):
    c, lam = 3, 2.1
    rs = case(
        scenario_doc(
            replicas=c, rate=lam, balancer="pull", output_tokens={"kind": "geometric", "mean": MEAN_TOKENS},
            horizon_s=8000, warmup_s=500,
        ),
        {"overhead_s": DT},
    )
    mean, se = batch_means(measured_waits(run(rs)))
    mu = 1 / (MEAN_TOKENS * DT)
    expected = erlang_c(c, lam / mu) / (c * mu - lam)
    # geometric service has CV^2 = 0.95 instead of 1; allow that few-percent bias on top of the CI
    assert abs(mean - expected) < 3.5 * se + 0.03 * expected, (mean, se, expected)


def test_md1_mean_wait(case):
    lam = 0.6
    rs = case(
        scenario_doc(
            rate=lam, output_tokens={"kind": "fixed", "value": MEAN_TOKENS}, horizon_s=20000, warmup_s=1000
        ),
        {"overhead_s": DT},
    )
    m = run(rs)
    assert np.allclose(m.requests["e2e_s"] - m.requests["queue_s"], MEAN_TOKENS * DT)
    mean, se = batch_means(measured_waits(m))
    s = MEAN_TOKENS * DT
    expected = pk_wait(lam, s, s * s)  # = rho S / (2 (1 - rho))
    assert abs(mean - expected) < 3.5 * se, (mean, se, expected)


def test_random_split_gives_independent_mm1_queues(case):
    """Poisson splitting: random routing over 2 replicas makes each an M/G/1 at half the rate."""
    lam = 1.2
    rs = case(
        scenario_doc(
            replicas=2, rate=lam, balancer="random", output_tokens={"kind": "geometric", "mean": MEAN_TOKENS},
            horizon_s=12000, warmup_s=500,
        ),
        {"overhead_s": DT},
    )
    mean, se = batch_means(measured_waits(run(rs)))
    expected = pk_wait(lam / 2, MEAN_TOKENS * DT, geometric_second_moment(MEAN_TOKENS, DT))
    assert abs(mean - expected) < 3.5 * se, (mean, se, expected)


def test_pull_beats_random_split(case):
    """One shared queue (M/M/2) waits less than two random-split queues at the same load."""
    doc = scenario_doc
    kw = dict(replicas=2, rate=1.4, output_tokens={"kind": "geometric", "mean": MEAN_TOKENS}, horizon_s=3000,
              warmup_s=200)
    pull = measured_waits(run(case(doc(balancer="pull", **kw), {"overhead_s": DT}))).mean()
    rand = measured_waits(run(case(doc(balancer="random", **kw), {"overhead_s": DT}))).mean()
    assert pull < 0.6 * rand


@pytest.mark.parametrize("balancer", ["least_outstanding", "pull"])
def test_littles_law_on_a_batching_llm_fleet(case, balancer):
    """L (time-average requests in system, sampled) = lambda x W (mean time in system) for a batching fleet."""
    doc = scenario_doc(
        replicas=2, rate=25.0, balancer=balancer, max_num_seqs=16, max_num_batched_tokens=512,
        input_tokens={"kind": "lognormal", "median": 200, "sigma": 0.8, "max": 2000},
        output_tokens={"kind": "lognormal", "median": 60, "sigma": 0.8, "max": 1000},
        horizon_s=1500, warmup_s=100,
    )
    doc["sim"]["timeline_resolution_s"] = 0.05
    m = run(case(doc, {"overhead_s": 0.004, "s_per_prefill_token": 2e-5, "s_per_decode_seq": 2e-4,
                       "s_per_kv_token": 1e-7}))
    ll = m.summary["little_law"]
    lam_w = ll["arrival_rate_per_s"] * ll["mean_time_in_system_s"]
    assert ll["mean_in_system"] > 5  # a loaded system, so the check is not trivial
    assert ll["mean_in_system"] == pytest.approx(lam_w, rel=0.05)
