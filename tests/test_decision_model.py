"""The own-vs-rent decision model (simfactory/cost/decision.py): TCO at the horizon, break-even month and
break-even load come from one D(t, u) = own - rent, so they agree by construction; checked on random inputs,
by hand, and end to end on scenarios/tco-onprem.yaml."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simfactory.cost.decision import (
    OwnVsRent,
    annuity_factor,
    decide,
    horizon_months,
    monthly_rate,
    own_vs_rent,
)
from simfactory.cost.pool_cost import HOURS_PER_MONTH, CloudInputs, OnPremInputs


def _curve(points: list[tuple[float, float]]):
    months = np.cumsum([0.0] + [m for m, _ in points])
    fraction = [1.0] + [f for _, f in points]
    return lambda age: float(np.interp(age, months, fraction))


@st.composite
def models(draw) -> OwnVsRent:
    n = draw(st.integers(1, 64))
    return OwnVsRent(
        accelerators=n,
        capex_usd=draw(st.floats(1e3, 1e7)),
        fixed_usd_per_month=draw(st.floats(0, 1e5)),
        energy_usd_per_month_at_load_0=draw(st.floats(0, 1e4)),
        energy_usd_per_month_per_load=draw(st.floats(0, 1e4)),
        rent_usd_per_accel_hour=draw(st.floats(0, 20)),
        rent_all_hours_usd_per_month=0.0,
        # a market curve: fraction of the purchase by age, any shape within [0, 0.95] after month 0
        resale_fraction=_curve(draw(st.lists(st.tuples(st.floats(1, 36), st.floats(0, 0.95)), min_size=1, max_size=5))),
        discount_rate_annual=draw(st.floats(0, 0.3)),
        horizon_months=draw(st.integers(1, 120)),
    )


@settings(max_examples=300, deadline=None)
@given(m=models(), load=st.floats(0, 1))
def test_the_three_answers_agree(m, load):
    """owning no dearer at the horizon <=> break-even month within it <=> load >= break-even load."""
    dec = decide(m, load)
    h = m.horizon_months
    gap = m.npv_own_usd(h, load) - m.npv_rent_usd(h, load)
    scale = m.capex_usd + (m.fixed_usd_per_month + m.energy_usd_per_month_at_load_0 + m.energy_usd_per_month_per_load
                           + m.rent_usd_per_month_per_load) * h
    assume(abs(gap) > 1e-9 * scale)  # not on the knife edge, where rounding decides
    assert dec.own_cheaper == (gap <= 0) == (dec.own_npv_usd <= dec.rent_npv_usd)
    assert dec.own_cheaper == (dec.break_even_month is not None)
    assert dec.own_cheaper == (dec.break_even_load is not None and load >= dec.break_even_load)
    # affine in the load
    assert dec.own_npv_usd == pytest.approx(dec.own_npv_usd_at_load_0 + dec.own_npv_usd_per_load * load, rel=1e-9, abs=1e-6)
    assert dec.rent_npv_usd == pytest.approx(dec.rent_npv_usd_per_load * load, rel=1e-9, abs=1e-6)
    if dec.break_even_load is not None:  # the closed form is where the two cross
        u = dec.break_even_load
        assert m.npv_own_usd(h, u) == pytest.approx(m.npv_rent_usd(h, u), rel=1e-7, abs=1e-6 * scale)
    if dec.break_even_month is not None:  # owning, selling at month t, no dearer from T to H; dearer just before
        t0 = dec.break_even_month
        tol = 1e-9 * scale
        assert all(m.npv_own_usd(t, load) <= m.npv_rent_usd(t, load) + tol for t in range(t0, h + 1))
        if t0 > 1:
            assert m.npv_own_usd(t0 - 1, load) > m.npv_rent_usd(t0 - 1, load) - tol


def _hand_model(**kw) -> OwnVsRent:
    base = dict(accelerators=8, capex_usd=400_000.0, fixed_usd_per_month=6_000.0, energy_usd_per_month_at_load_0=500.0,
                energy_usd_per_month_per_load=1_500.0, rent_usd_per_accel_hour=4.0, rent_all_hours_usd_per_month=0.0,
                resale_fraction=lambda age: 0.0, discount_rate_annual=0.0, horizon_months=36)
    return OwnVsRent(**{**base, **kw})


def test_break_even_load_by_hand_undiscounted_without_resale():
    # own(36, u) = 400,000 + (6,000 + 500 + 1,500 u) x 36; rent(36, u) = 4 x 8 x 730 u x 36 = 23,360 u x 36
    # equal at u* = (400,000 + 6,500 x 36) / ((23,360 - 1,500) x 36) = 634,000 / 786,960
    m = _hand_model()
    assert m.rent_usd_per_month_per_load == pytest.approx(4.0 * 8 * HOURS_PER_MONTH) == pytest.approx(23_360.0)
    dec = decide(m, 0.9)
    assert dec.break_even_load == pytest.approx(634_000 / 786_960)
    assert dec.own_cheaper and dec.break_even_month is not None
    # at load 0.9 owning catches up in month T: 400,000 + (6,500 + 1,350) T <= 21,024 T  =>  T >= 30.36
    assert dec.break_even_month == 31
    assert not decide(m, 0.5).own_cheaper and decide(m, 0.5).break_even_month is None


def test_discounting_lowers_a_constant_stream_by_the_annuity_factor():
    d = 0.08
    r = monthly_rate(d)
    assert (1 + r) ** 12 == pytest.approx(1.08)
    by_sum = sum(1_000.0 / (1 + r) ** k for k in range(1, 37))
    assert float(annuity_factor(36, d)) * 1_000.0 == pytest.approx(by_sum)
    assert float(annuity_factor(36, 0.0)) == 36.0
    # renting the same load for 36 months: discounted = undiscounted x a(36) / 36
    flat, discounted = _hand_model(), _hand_model(discount_rate_annual=d)
    assert discounted.npv_rent_usd(36, 0.5) == pytest.approx(flat.npv_rent_usd(36, 0.5) * by_sum / 36_000.0)
    assert discounted.npv_rent_usd(36, 0.5) < flat.npv_rent_usd(36, 0.5)
    # the resale at the horizon is discounted too: one payment at month 36
    resale = _hand_model(resale_fraction=lambda age: 0.3, fixed_usd_per_month=0.0, energy_usd_per_month_at_load_0=0.0,
                         energy_usd_per_month_per_load=0.0, discount_rate_annual=d)
    assert resale.npv_own_usd(36, 0.0) == pytest.approx(400_000 * (1 - 0.3 / 1.08 ** 3))


def test_model_from_priced_pools():
    """own_vs_rent reads the pool's prices: energy on the idle-to-TDP curve, fixed running costs (maintenance and
    insurance included), the market resale curve, the rent price with spot rework."""
    x = OnPremInputs(accelerators=8, accelerator_usd=30000, node_usd=120000, accelerators_per_node=8, depreciation_years=5,
                     residual_value_fraction=0.1, tdp_w=700, idle_w=100, host_power_w_per_node=2000, utilization=0.5,
                     pue=1.5, usd_per_kwh=0.10, colocation_usd_per_kw_month=150, staff_usd_per_year=200000,
                     nodes_per_staff=50, software_usd_per_accel_year=4500, resale_months=(0, 12, 24, 36, 60),
                     resale_fraction=(1.0, 0.65, 0.45, 0.30, 0.10), maintenance_fraction_per_year=0.1,
                     insurance_fraction_per_year=0.01)
    c = CloudInputs(8, 2.0, "spot", interruptions_per_hour=0.1, lost_s_per_interruption=600)
    m = own_vs_rent(x, c, 3, 0.0)
    assert m.energy_usd_per_month_at_load_0 == pytest.approx((8 * 100 + 2000) / 1e3 * 1.5 * 0.10 * HOURS_PER_MONTH)
    assert m.energy_usd_per_month_per_load == pytest.approx(8 * 600 / 1e3 * 1.5 * 0.10 * HOURS_PER_MONTH)
    fixed = 7.6 * 150 + 200000 / 50 / 12 + 8 * 4500 / 12 + 360000 * 0.11 / 12
    assert m.fixed_usd_per_month == pytest.approx(fixed)
    assert m.resale_fraction(36) == pytest.approx(0.30) and m.resale_fraction(30) == pytest.approx(0.375)
    assert m.rent_usd_per_accel_hour == pytest.approx(2.0 * (1 + 0.1 * 600 / 3600))
    assert horizon_months(3) == m.horizon_months == 36
    # undiscounted, the 3-year TCO of owning at load 0.5 is purchase - 30% resale + 36 months of running cost
    assert m.npv_own_usd(36, 0.5) == pytest.approx(
        360000 * 0.7 + (fixed + m.energy_usd_per_month_at_load_0 + 0.5 * m.energy_usd_per_month_per_load) * 36)


def test_tco_onprem_tells_one_story():
    """scenarios/tco-onprem.yaml end to end: the TCO, break-even month, break-even load, verdict and the report's
    TCO table all agree."""
    from simfactory.api import run
    from simfactory.paths import SCENARIOS_DIR
    from simfactory.report.finance import finance_tables

    s = run(str(SCENARIOS_DIR / "tco-onprem.yaml"), seed=1).summary
    tco = s["finance"]["tco"]
    assert tco["discount_rate_annual"] == pytest.approx(0.08) and tco["horizon_months"] == 36
    pool = tco["pools"][0]
    own = pool["own_npv_usd"] <= pool["rent_npv_usd"]
    assert own == pool["own_cheaper"]
    assert own == (pool["break_even_month"] is not None and pool["break_even_month"] <= 36)
    assert own == (pool["break_even_load"] is not None and pool["decision_load"] >= pool["break_even_load"])
    assert pool["decision_load"] == pytest.approx(pool["load_fraction"])
    assert pool["tco_usd"] == pytest.approx(pool["own_npv_usd"])  # the owned pool as configured
    assert pool["alternative_tco_usd"] == pytest.approx(pool["rent_npv_usd"])  # renting what the load needs
    assert pool["verdict"].startswith("Owning is cheaper" if own else "Renting is cheaper")
    row = next(t for t in finance_tables(s) if t.key == "tco").frame.iloc[0]
    assert "8.0%/year" in next(t for t in finance_tables(s) if t.key == "tco").title
    assert row["verdict"] == pool["verdict"]
    if own:
        assert row["break-even month"] == pool["break_even_month"]
    else:
        assert row["break-even month"] == "not within 36 months"
    # every assumption the decision rests on is listed with its source
    names = {a["name"] for a in s["finance"]["assumptions"]}
    assert {"discount rate", "h100-dc: maintenance contract", "h100-dc: insurance"} <= names
