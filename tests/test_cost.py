"""Cost models computed by hand, to the cent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simfactory.cost.pool_cost import OnPremInputs, cloud_cost_per_hour, on_prem_cost_per_hour


def test_cloud_pays_every_provisioned_hour():
    assert cloud_cost_per_hour(8, 2.69).total_usd == pytest.approx(21.52)


def test_on_prem_by_hand():
    # 8 accelerators at $45,000 over 5 years: 360,000 / 43,800 h = $8.2192/h
    # power: 8 x (100 + (700 - 100) x 0.5) W = 3.2 kW x PUE 1.5 x $0.10 = $0.48/h
    # hosting: 8 x 0.7 kW = 5.6 kW x $150 / 730 h = $1.1507/h
    x = OnPremInputs(accelerators=8, server_usd_per_accel=45000, amortization_years=5, tdp_w=700, idle_w=100,
                     utilization=0.5, pue=1.5, usd_per_kwh=0.10, hosting_usd_per_kw_month=150)
    c = on_prem_cost_per_hour(x)
    assert round(c.capex_usd, 2) == 8.22
    assert round(c.energy_usd, 2) == 0.48
    assert round(c.hosting_usd, 2) == 1.15
    assert round(c.total_usd, 2) == round(360000 / 43800 + 0.48 + 5.6 * 150 / 730, 2) == 9.85
    assert c.cloud_usd == 0


@given(
    util=st.floats(0, 1),
    price=st.floats(1000, 100000),
    kwh=st.floats(0, 1),
    bump=st.floats(0.01, 10),
)
def test_on_prem_cost_is_monotone_in_prices_and_utilization(util, price, kwh, bump):
    base = dict(accelerators=4, server_usd_per_accel=price, amortization_years=4, tdp_w=700, idle_w=0,
                utilization=util, pue=1.3, usd_per_kwh=kwh, hosting_usd_per_kw_month=100)
    c0 = on_prem_cost_per_hour(OnPremInputs(**base)).total_usd
    for key in ("server_usd_per_accel", "usd_per_kwh", "hosting_usd_per_kw_month"):
        assert on_prem_cost_per_hour(OnPremInputs(**{**base, key: base[key] + bump})).total_usd > c0 - 1e-12
    more_util = min(1.0, util + 0.1)
    assert on_prem_cost_per_hour(OnPremInputs(**{**base, "utilization": more_util})).total_usd >= c0


def test_run_unit_costs_add_up(tmp_path):
    """The fleet cost over the window divided by completed work is what the summary reports."""
    from simfactory.api import run

    s = run(seed=3).summary
    c = s["cost"]
    window_h = (s["window"]["horizon_s"] - s["window"]["warmup_s"]) / 3600
    out_tokens = s["throughput"]["output_tokens_per_s"] * (window_h * 3600)
    assert c["usd_per_hour"] == pytest.approx(sum(p["usd_per_hour"] for p in c["pools"]))
    assert c["usd_per_1m_output_tokens"] * out_tokens / 1e6 == pytest.approx(c["usd_per_hour"] * window_h)
    # default: 4 cloud H100 at the profile's price
    assert c["pools"][0]["location"] == "cloud"
    assert c["usd_per_hour"] == pytest.approx(4 * c["pools"][0]["assumptions"]["cloud_usd_per_accel_hour"])
