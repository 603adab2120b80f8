"""Time-varying load: diurnal (hourly table, sinusoid, weekdays, flash events), MMPP, shifting class mixes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import scenario_doc
from scipy import integrate

from simfactory.config.loader import validate
from simfactory.config.scenario import DiurnalArrivals, MmppArrivals
from simfactory.errors import InputError, InputErrors
from simfactory.sim.streams import RandomStreams
from simfactory.sim.traffic import arrival_schedule, arrival_times, diurnal_multiplier, mmpp_mean_rate

HOURLY = [0.2] * 7 + [1.0] * 4 + [2.0] * 6 + [1.0] * 4 + [0.5] * 3


def _expected(process: DiurnalArrivals, a: float, b: float) -> float:
    """Integral of the rate over [a, b) (numerically, over the piecewise function)."""
    f = lambda t: process.mean_rate_per_s * float(diurnal_multiplier(process, np.array([t]))[0])  # noqa: E731
    pts = np.linspace(a, b, 241)
    return sum(integrate.quad(f, x, y, limit=50)[0] for x, y in zip(pts[:-1], pts[1:]))


@pytest.mark.parametrize(
    "shape",
    [
        {"hourly_multipliers": HOURLY},
        {"peak_to_trough": 4.0, "peak_hour": 15},
        {"peak_to_trough": 2.0, "events": [{"start_s": 300, "duration_s": 60, "multiplier": 5}]},
    ],
)
def test_diurnal_counts_follow_the_integral_of_the_rate(shape):
    # a day compressed into 1,200 s; counts in each 100 s window are Poisson with mean = integral of the rate
    p = DiurnalArrivals(mean_rate_per_s=50, period_s=1200, **shape)
    rng = np.random.default_rng(3)
    t = arrival_times(p, 1200, rng)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 1200
    for a in range(0, 1200, 100):
        lam = _expected(p, a, a + 100)
        n = int(((t >= a) & (t < a + 100)).sum())
        assert abs(n - lam) < 4.5 * math.sqrt(lam) + 1, (a, n, lam)


def test_sinusoid_peak_to_trough_and_weekdays():
    p = DiurnalArrivals(mean_rate_per_s=1, period_s=24, peak_to_trough=3, peak_hour=12,
                       weekday_multipliers=[1, 1, 1, 1, 1, 0.5, 0.5])
    m = diurnal_multiplier(p, np.array([12.0, 0.0, 24 * 5 + 12.0]))
    assert m[0] / m[1] == pytest.approx(3.0)
    assert m[2] == pytest.approx(0.5 * m[0])


def test_mmpp_long_run_rate_matches_its_stationary_formula():
    p = MmppArrivals(states=[{"rate_per_s": 2, "mean_sojourn_s": 30}, {"rate_per_s": 20, "mean_sojourn_s": 10},
                             {"rate_per_s": 0, "mean_sojourn_s": 20}])
    assert mmpp_mean_rate(p) == pytest.approx((2 * 30 + 20 * 10) / 60)
    rates = [len(arrival_times(p, 20000, np.random.default_rng(s))) / 20000 for s in range(8)]
    mean, sd = np.mean(rates), np.std(rates, ddof=1)
    assert abs(mean - mmpp_mean_rate(p)) < 4 * sd / math.sqrt(len(rates)) + 0.02
    # burstier than Poisson: counts over 50 s windows have variance well above their mean
    t = arrival_times(p, 20000, np.random.default_rng(1))
    counts = np.histogram(t, bins=np.arange(0, 20001, 50))[0]
    assert counts.var() > 3 * counts.mean()


def test_class_mix_shifts_with_the_hour(case):
    doc = scenario_doc(horizon_s=240)
    doc["traffic"]["arrival"] = {"process": "diurnal", "mean_rate_per_s": 40, "period_s": 240,
                                 "hourly_multipliers": [1.0] * 24}
    base = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = [
        {**base, "name": "day", "weight_by_hour": [0.0] * 8 + [3.0] * 12 + [0.0] * 4},
        {**base, "name": "night", "weight_by_hour": [1.0] * 8 + [1.0] * 12 + [1.0] * 4},
    ]
    rs = case(doc)
    t, cls, _ = arrival_schedule(rs, RandomStreams(rs.scenario.seed))
    hour = (24 * t / 240).astype(int)
    day_hours = (hour >= 8) & (hour < 20)
    assert (cls[~day_hours] == 1).all()  # outside 8-20h only 'night' has weight
    share = (cls[day_hours] == 0).mean()  # 3:1 during the day
    n = day_hours.sum()
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n)


def test_diurnal_needs_exactly_one_shape():
    with pytest.raises((InputError, InputErrors)) as e:
        validate(DiurnalArrivals, {"mean_rate_per_s": 1, "hourly_multipliers": HOURLY, "peak_to_trough": 2}, "s.yaml")
    assert "give hourly_multipliers or peak_to_trough" in str(e.value)
    with pytest.raises((InputError, InputErrors)) as e:
        validate(DiurnalArrivals, {"mean_rate_per_s": 1, "hourly_multipliers": [1.0] * 23}, "s.yaml")
    assert "s.yaml: hourly_multipliers" in str(e.value)
