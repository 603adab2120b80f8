"""Cost models computed by hand to the cent; break-even, hybrid sizing, sensitivity; unit costs add up."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import scenario_doc

from simfactory.config.loader import validate
from simfactory.config.prices import PriceBook
from simfactory.cost.decision import OwnVsRent, decide, own_vs_rent
from simfactory.cost.finance import break_even, hybrid_sizing, owned_cost_curve
from simfactory.cost.fleet import PoolCost
from simfactory.cost.pool_cost import (
    HOURS_PER_MONTH,
    CloudInputs,
    OnPremInputs,
    cloud_cost_per_hour,
    on_prem_cost_per_hour,
)
from simfactory.errors import InputError, InputErrors
from simfactory.paths import PROFILES_DIR

ONPREM = dict(
    accelerators=8, accelerator_usd=30000, node_usd=120000, accelerators_per_node=8, depreciation_years=5,
    residual_value_fraction=0.1, tdp_w=700, idle_w=100, host_power_w_per_node=2000, utilization=0.5, pue=1.5,
    usd_per_kwh=0.10, colocation_usd_per_kw_month=150, staff_usd_per_year=200000, nodes_per_staff=50,
    software_usd_per_accel_year=4500,
)


def test_cloud_by_hand_including_spot_rework():
    assert cloud_cost_per_hour(CloudInputs(8, 2.69)).total_usd == pytest.approx(21.52)
    # spot: 8 x $1.20 = $9.60/h; 0.1 reclamations/h x 600 s lost = 1/60 of an hour redone: + $0.16/h
    c = cloud_cost_per_hour(CloudInputs(8, 1.20, "spot", interruptions_per_hour=0.1, lost_s_per_interruption=600))
    assert round(c.cloud_usd, 2) == 9.60
    assert round(c.spot_rework_usd, 2) == 0.16
    assert round(c.total_usd, 2) == 9.76


def test_on_prem_by_hand():
    # capex: 8 x 30,000 + 1 node x 120,000 = 360,000; x (1 - 0.1) / (5 x 8760 h) = $7.3973/h
    # energy: (8 x (100 + 600 x 0.5) W + 2,000 W host) = 5.2 kW x PUE 1.5 x $0.10 = $0.78/h
    # colocation: (8 x 0.7 + 2.0) kW = 7.6 kW x $150 / 730 h = $1.5616/h
    # staff: $200,000 / 50 nodes per engineer / 8760 h = $0.4566/h; licences: 8 x 4,500 / 8760 = $4.1096/h
    c = on_prem_cost_per_hour(OnPremInputs(**ONPREM))
    assert round(c.capex_usd, 2) == round(360000 * 0.9 / 43800, 2) == 7.40
    assert round(c.energy_usd, 2) == 0.78
    assert round(c.hosting_usd, 2) == round(7.6 * 150 / 730, 2) == 1.56
    assert round(c.staff_usd, 2) == 0.46
    assert round(c.software_usd, 2) == 4.11
    assert round(c.total_usd, 2) == round(360000 * 0.9 / 43800 + 0.78 + 7.6 * 150 / 730 + 200000 / 50 / 8760
                                          + 36000 / 8760, 2) == 14.31
    # 3-year TCO, undiscounted: purchase 360,000 minus book value after 3 of 5 years (360,000 x (1 - 0.9 x 0.6) =
    # 165,600), plus running cost (everything but depreciation) for 26,280 hours
    running = c.total_usd - c.capex_usd
    assert _own_npv(OnPremInputs(**ONPREM), 3) == pytest.approx(360000 - 165600 + running * 26280)
    # maintenance and insurance: a fraction of the purchase price per year
    m = on_prem_cost_per_hour(OnPremInputs(**ONPREM, maintenance_fraction_per_year=0.1, insurance_fraction_per_year=0.01))
    assert m.maintenance_usd == pytest.approx(36000 / 8760) and m.insurance_usd == pytest.approx(3600 / 8760)
    assert m.total_usd == pytest.approx(c.total_usd + 39600 / 8760)


def _own_npv(x: OnPremInputs, years: float, discount: float = 0.0) -> float:
    """The decision model's TCO of owning x for `years` at its utilization, selling at the end."""
    return own_vs_rent(x, None, years, discount).npv_own_usd(years * 12, x.utilization)


def _owned(**kw) -> PoolCost:
    x = OnPremInputs(**{**ONPREM, **kw})
    return PoolCost("p", "sku", "on_prem", x.accelerators, x.utilization, on_prem_cost_per_hour(x), None, x, 700, 100)


def _rented(price: float, n: int = 8) -> PoolCost:
    c = CloudInputs(n, price)
    return PoolCost("p", "sku", "cloud", n, 0.5, cloud_cost_per_hour(c), c, None, 700, 100)


@pytest.mark.parametrize("price", [2.5, 3.59, 6.0, 9.0])
@pytest.mark.parametrize("discount", [0.0, 0.08])
def test_break_even_load_is_where_owning_and_renting_cross(price, discount):
    owned, rented = _owned(), _rented(price)
    u_star = break_even(owned, rented, 3, discount, 0.5)["break_even_load"]
    m = own_vs_rent(owned.on_prem, rented.cloud, 3, discount)
    grid = np.linspace(0, 1, 100001)
    diff = np.array([m.npv_own_usd(36, u) - m.npv_rent_usd(36, u) for u in grid[::1000]])
    crossings = grid[::1000][np.nonzero(np.diff(np.sign(diff)))[0]]
    if u_star is None:
        assert len(crossings) == 0 and diff[-1] > 0
    else:
        assert len(crossings) == 1
        assert m.npv_own_usd(36, u_star) == pytest.approx(m.npv_rent_usd(36, u_star), rel=1e-9)


def test_break_even_month_by_hand():
    # buy for $360,000, then run for $7,000/month, or rent for $19,000/month, no resale, undiscounted: owning is
    # no dearer from month 30 on
    n = 8
    model = OwnVsRent(accelerators=n, capex_usd=360000, fixed_usd_per_month=7000, energy_usd_per_month_at_load_0=0.0,
                      energy_usd_per_month_per_load=0.0, rent_usd_per_accel_hour=19000 / (n * HOURS_PER_MONTH),
                      rent_all_hours_usd_per_month=19000, resale_fraction=lambda months: 0.0, discount_rate_annual=0.0,
                      horizon_months=36)
    assert decide(model, 1.0).break_even_month == 30
    assert decide(model, 1.0).break_even_load == pytest.approx((360000 + 7000 * 36) / (19000 * 36))
    cheap = dataclasses.replace(model, rent_usd_per_accel_hour=6000 / (n * HOURS_PER_MONTH))
    assert decide(cheap, 1.0).break_even_month is None and decide(cheap, 1.0).break_even_load is None


def test_hybrid_sizing_finds_the_cheapest_baseline():
    # demand: 2 accelerators half the time, 6 the other half. Renting is dear ($10/h): owning the peak wins;
    # renting is cheap ($0.5/h): own nothing.
    demand = np.array([2.0, 6.0] * 50)
    owned = _owned(accelerators=6)
    c0, slope = owned_cost_curve(owned, 3, 0.0)
    dear = hybrid_sizing(demand, c0, slope, 10.0)
    assert dear["best_baseline_accels"] == 6
    cheap = hybrid_sizing(demand, c0, slope, 0.5)
    assert cheap["best_baseline_accels"] == 0
    # the B = 2 row by hand: 2 owned at utilization 1 + 4 accelerators rented half the time
    row = dear["rows"][2]
    assert row["total_usd_per_hour"] == pytest.approx(2 * (c0 + slope) + 10.0 * 2.0)
    # a reserved baseline at $3/h (no utilization term): 4 reserved + 2 rented half the time = 12 + 10
    reserved = hybrid_sizing(demand, 3.0, 0.0, 10.0)
    assert reserved["rows"][4]["total_usd_per_hour"] == pytest.approx(4 * 3.0 + 10.0 * 1.0)
    assert reserved["best_baseline_accels"] == 6  # renting at 10 half the time costs more than reserving at 3


@settings(max_examples=40, deadline=None)
@given(
    util=st.floats(0, 1),
    price=st.floats(1000, 100000),
    kwh=st.floats(0, 1),
    cloud=st.floats(0.1, 20),
    bump=st.floats(0.01, 10),
)
def test_cost_is_monotone_in_price_inputs(util, price, kwh, cloud, bump):
    base = {**ONPREM, "accelerator_usd": price, "usd_per_kwh": kwh, "utilization": util}
    c0 = on_prem_cost_per_hour(OnPremInputs(**base)).total_usd
    for key in ("accelerator_usd", "node_usd", "usd_per_kwh", "colocation_usd_per_kw_month", "staff_usd_per_year",
                "software_usd_per_accel_year", "pue"):
        assert on_prem_cost_per_hour(OnPremInputs(**{**base, key: base[key] + bump})).total_usd >= c0 - 1e-9
    assert on_prem_cost_per_hour(OnPremInputs(**{**base, "utilization": min(1.0, util + 0.1)})).total_usd >= c0
    assert on_prem_cost_per_hour(OnPremInputs(**{**base, "depreciation_years": 5 + bump})).total_usd <= c0 + 1e-9
    k0 = cloud_cost_per_hour(CloudInputs(4, cloud, "spot", 0.1, 300)).total_usd
    assert cloud_cost_per_hour(CloudInputs(4, cloud + bump, "spot", 0.1, 300)).total_usd > k0
    assert cloud_cost_per_hour(CloudInputs(4, cloud, "spot", 0.1 + bump, 300)).total_usd > k0


def _book() -> dict:
    return yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())


def test_shipped_price_book_is_sourced_and_valid():
    book = validate(PriceBook, _book(), "prices.yaml")
    assert book.cloud and book.servers
    assert all(c.source and c.as_of for c in book.cloud)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b["cloud"][0].pop("source"), "prices.yaml: cloud[0].source: required field is missing"),
        (lambda b: b["cloud"][0].__setitem__("usd_per_accel_hour", -1.0),
         "prices.yaml: cloud[0].usd_per_accel_hour: Input should be greater than or equal to 0 (got -1.0)"),
        (lambda b: b["cloud"][0].__setitem__("provider", "acme-cloud"),
         "prices.yaml: cloud[0].provider: unknown provider 'acme-cloud' (known: "),
        (lambda b: b["on_prem"]["pue"].__setitem__("value", float("nan")),
         "prices.yaml: on_prem.pue.value: Input should be a finite number"),
        (lambda b: b["on_prem"]["pue"].__setitem__("value", 0.5), "prices.yaml: on_prem.pue.value: must be >= 1"),
        (lambda b: b["on_prem"]["staff_usd_per_year"].pop("as_of"),
         "prices.yaml: on_prem.staff_usd_per_year.as_of: required field is missing"),
        (lambda b: b["cloud"][0].__setitem__("pricing", "spot"),
         "prices.yaml: cloud[0]: a spot price needs interruptions_per_hour"),
    ],
)
def test_bad_price_book_entries_are_rejected_clearly(edit, message):
    doc = copy.deepcopy(_book())
    edit(doc)
    with pytest.raises((InputError, InputErrors)) as e:
        validate(PriceBook, doc, "prices.yaml")
    assert str(e.value).startswith(message), str(e.value)


def test_scenario_with_unknown_provider_is_rejected(case):
    doc = scenario_doc()
    doc["pools"][0].update(provider="acme-cloud", pricing="reserved_1y")
    with pytest.raises((InputError, InputErrors)) as e:
        case(doc)
    assert "pools[0].provider: unknown provider 'acme-cloud' (price book: aws" in str(e.value)


def test_run_unit_costs_add_up():
    """Per-unit costs times units give the window's cost; pools add up to the fleet."""
    from simfactory.api import run

    s = run(seed=3).summary
    c, ue = s["cost"], s["finance"]["unit_economics"]
    window_h = (s["window"]["horizon_s"] - s["window"]["warmup_s"]) / 3600
    out_tokens = s["throughput"]["output_tokens_per_s"] * (window_h * 3600)
    in_tokens = s["throughput"]["input_tokens_per_s"] * (window_h * 3600)
    completed = s["throughput"]["requests_per_s"] * (window_h * 3600)
    assert c["usd_per_hour"] == pytest.approx(sum(p["usd_per_hour"] for p in c["pools"]))
    assert c["usd_per_hour"] == pytest.approx(sum(sum(p["breakdown_usd_per_hour"].values()) for p in c["pools"]))
    assert ue["usd_per_1m_tokens"] * (in_tokens + out_tokens) / 1e6 == pytest.approx(ue["serving_window_usd"])
    assert ue["usd_per_request"] * completed == pytest.approx(ue["serving_window_usd"])
    assert ue["serving_window_usd"] == pytest.approx(c["usd_per_hour"] * window_h)
    # default: 4 cloud H100 at the profile's on-demand price
    assert c["pools"][0]["location"] == "cloud"
    price = next(a["value"] for a in s["finance"]["assumptions"] if "cloud price" in a["name"])
    assert c["usd_per_hour"] == pytest.approx(4 * price)


def test_hybrid_sizing_matches_the_definition_at_every_baseline():
    """The prefix-sum evaluation equals mean(min(d, B)) and mean(max(d - B, 0)) computed directly."""
    d = np.random.default_rng(7).gamma(2.0, 3.0, 500)
    out = hybrid_sizing(d, 2.0, 1.5, 4.0)
    for row in out["rows"]:
        b = row["baseline_accels"]
        u = np.minimum(d, b).mean() / b if b else 0.0
        assert row["owned_utilization"] == pytest.approx(u, rel=1e-12, abs=1e-12)
        assert row["burst_usd_per_hour"] == pytest.approx(4.0 * np.maximum(d - b, 0).mean(), rel=1e-9, abs=1e-12)


def test_hybrid_sizing_table_of_a_large_fleet_is_sampled_but_the_best_is_exact():
    d = np.random.default_rng(8).gamma(3.0, 400.0, 300)  # thousands of accelerators at the peak
    out = hybrid_sizing(d, 2.0, 1.5, 4.0)
    assert len(out["rows"]) <= 201 and out["rows"][-1]["baseline_accels"] == int(np.ceil(d.max()))

    def total(b: int) -> float:
        u = np.minimum(d, b).mean() / b if b else 0.0
        return b * (2.0 + 1.5 * u) + 4.0 * np.maximum(d - b, 0).mean()

    best = min(range(int(np.ceil(d.max())) + 1), key=total)
    assert out["best_baseline_accels"] == best
    assert out["best_usd_per_hour"] == pytest.approx(total(best), rel=1e-9)


def _shipped_summary(name: str, seed: int = 1) -> dict:
    from simfactory.api import run
    from simfactory.paths import SCENARIOS_DIR

    return run(str(SCENARIOS_DIR / f"{name}.yaml"), seed=seed).summary


def test_inference_unit_costs_exclude_accelerators_held_by_dedicated_training():
    """tco-training-mixed: 136 owned GPUs, 128 held by a dedicated pre-training job (costed in the training
    table). Inference's unit costs divide only the 8 serving GPUs' share of the pool cost."""
    s = _shipped_summary("tco-training-mixed")
    ue, c = s["finance"]["unit_economics"], s["cost"]
    assert ue["serving_usd_per_hour"] == pytest.approx(ue["fleet_usd_per_hour"] * 8 / 136)
    window_h = (s["window"]["horizon_s"] - s["window"]["warmup_s"]) / 3600
    assert ue["serving_window_usd"] == pytest.approx(ue["serving_usd_per_hour"] * window_h)
    assert c["usd_per_hour"] == pytest.approx(ue["fleet_usd_per_hour"])  # the whole fleet is still reported
    assert c["serving_usd_per_hour"] == pytest.approx(ue["serving_usd_per_hour"])
    assert ue["usd_per_1m_output_tokens_all_in"] == pytest.approx(c["usd_per_1m_output_tokens"])


def test_per_request_cost_counts_requests_as_callers_see_them():
    """routing-tiered: an escalated request is one request to its caller, however many attempts it took."""
    s = _shipped_summary("routing-tiered")
    ue = s["finance"]["unit_economics"]
    attempts = s["throughput"]["requests_per_s"] * (s["window"]["horizon_s"] - s["window"]["warmup_s"])
    answered = ue["serving_window_usd"] / ue["usd_per_request"]
    assert answered == pytest.approx(round(answered))  # a whole number of requests
    assert answered < attempts - 10  # escalations were folded in
    assert s["cost"]["usd_per_request"] == pytest.approx(ue["usd_per_request"])


def test_owning_an_autoscaled_cloud_service_is_priced_at_its_peak_not_its_maximum():
    s = _shipped_summary("autoscale-diurnal")
    pool = s["finance"]["tco"]["pools"][0]
    owned = next(a for a in s["finance"]["assumptions"] if a["name"].endswith("accelerators if owned"))
    billed = pool["accelerators"]
    assert pool["location"] == "cloud" and billed < owned["value"] < 8  # 8: the configured maximum
    assert owned["value"] == int(owned["value"])


def test_resale_curve_is_credited_at_the_horizon_and_book_value_without_one():
    curve = dict(resale_months=(0, 12, 24, 36, 60), resale_fraction=(1.0, 0.65, 0.45, 0.30, 0.10))
    x = OnPremInputs(**ONPREM, **curve)
    running = on_prem_cost_per_hour(x).total_usd - on_prem_cost_per_hour(x).capex_usd
    assert _own_npv(x, 3) == pytest.approx(360000 * (1 - 0.30) + running * 3 * 8760)
    assert _own_npv(x, 2.5) == pytest.approx(360000 * (1 - 0.375) + running * 2.5 * 8760)  # interpolated
    assert _own_npv(x, 7) == pytest.approx(360000 * (1 - 0.10) + running * 7 * 8760)  # flat past the end
    # the per-hour capex stays straight-line depreciation either way
    assert on_prem_cost_per_hour(x).capex_usd == pytest.approx(on_prem_cost_per_hour(OnPremInputs(**ONPREM)).capex_usd)


def test_the_price_book_carries_no_licence_and_a_pools_own_figure_applies_anywhere():
    """Licences follow the engine (engines.yaml), not the price book: an open-source engine on an owned H100 pays
    none; a book that still sets one is refused with the way out; a pool's own figure applies cloud or owned."""
    from simfactory.config.scenario import Scenario
    from simfactory.cost.fleet import fleet_costs
    from simfactory.resolve import resolve

    doc = scenario_doc()
    doc["pools"][0].update({"sku": "h100-sxm", "location": "on_prem"})
    for k in ("provider", "pricing"):
        doc["pools"][0].pop(k, None)
    rs = resolve(validate(Scenario, doc, "s.yaml"), "s.yaml")
    pc = fleet_costs(rs, {})[0]
    assert pc.on_prem.software_usd_per_accel_year == 0 and pc.per_hour.software_usd == 0
    assert any("no licence" in a.source for a in pc.assumptions if "licence" in a.name)
    book = _book()
    book["on_prem"]["software_usd_per_accel_year"] = {"value": 4500, "unit": "USD", "source": "x", "as_of": 2024}
    with pytest.raises(InputErrors, match="on_prem.software_usd_per_accel_year: licences follow the serving engine"):
        validate(PriceBook, book, "prices.yaml")
    for where, over in (("pool", {"software_usd_per_accel_year": 1000}),
                        ("on_prem", {"on_prem": {"software_usd_per_accel_year": 1000}})):
        d = copy.deepcopy(doc)
        d["pools"][0].update(over)
        pc = fleet_costs(resolve(validate(Scenario, d, "s.yaml"), "s.yaml"), {})[0]
        assert pc.per_hour.software_usd == pytest.approx(1000 * pc.accelerators / 8760), where


def test_simulated_spot_reclamations_carry_no_second_rework_surcharge():
    s = _shipped_summary("spot-reclamation-only")
    pool = s["cost"]["pools"][0]
    assert pool["pricing"] == "spot" and pool["breakdown_usd_per_hour"]["spot_rework"] == 0.0
    assert any(a["value"] == "simulated" for a in s["finance"]["assumptions"] if "spot reclamations" in a["name"])


def test_break_even_is_set_against_the_load_not_the_busy_fraction():
    """tco-onprem: continuous batching keeps the replicas stepping nearly all the time at a third of their
    capacity; the TCO table's load (what the demand needs) is the hybrid table's mean demand over the pool."""
    s = _shipped_summary("tco-onprem")
    pool = s["finance"]["tco"]["pools"][0]
    demand = s["finance"]["hybrid"][pool["pool"]]["owned"]["demand_mean_accels"]
    assert pool["load_fraction"] == pytest.approx(demand / pool["accelerators"])
    assert pool["utilization"] > 0.95 and pool["load_fraction"] < 0.5
    assert s["finance"]["unit_economics"]["fleet_load_fraction"] == pytest.approx(pool["load_fraction"])


def test_dedicated_training_is_load_and_is_not_charged_to_agent_tasks(tmp_path):
    """coding-agent on 8 of 16 cloud H100s, the other 8 held by a dedicated fine-tune: the pool's load counts the
    training accelerators; the per-task cost (tasks block) and the unit economics both leave their cost out."""
    from simfactory.api import run
    from simfactory.paths import SCENARIOS_DIR

    doc = yaml.safe_load((SCENARIOS_DIR / "coding-agent.yaml").read_text())
    doc["pools"][0]["count"] = 16
    doc["training"] = [{"name": "ft", "pool": "h100-cloud", "accelerators": 8, "priority": "dedicated",
                        "work_hours": 12, "node_mtbf_h": 6300, "checkpoint_interval_h": 1, "checkpoint_cost_s": 10,
                        "restart_s": 300}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    s = run(str(tmp_path / "s.yaml"), seed=1).summary
    pool = s["finance"]["tco"]["pools"][0]
    demand = s["finance"]["hybrid"]["h100-cloud"]["owned"]["demand_mean_accels"]
    assert pool["load_fraction"] == pytest.approx((demand + 8) / 16)
    ue = s["finance"]["unit_economics"]
    per_task = s["tasks"]["coding"]["cost_usd"]["per_successful_task_fully_loaded"]
    assert per_task == pytest.approx(ue["usd_per_successful_task"], rel=1e-6)
    assert ue["serving_usd_per_hour"] == pytest.approx(ue["fleet_usd_per_hour"] / 2)


def test_a_scenarios_own_residual_value_means_book_value_in_the_tco():
    from simfactory.config.scenario import Scenario
    from simfactory.cost.fleet import fleet_costs
    from simfactory.resolve import resolve

    doc = scenario_doc()
    doc["pools"][0].update({"location": "on_prem", "sku": "h100-sxm"})
    for k in ("provider", "pricing"):
        doc["pools"][0].pop(k, None)
    x = fleet_costs(resolve(validate(Scenario, doc, "s.yaml"), "s.yaml"), {})[0].on_prem
    assert x.resale_months  # the price book's market curve
    doc["pools"][0]["on_prem"] = {"residual_value_fraction": 0.6}
    x = fleet_costs(resolve(validate(Scenario, doc, "s.yaml"), "s.yaml"), {})[0].on_prem
    assert not x.resale_months and _own_npv(x, 5) == pytest.approx(
        x.capex_usd * 0.4 + (on_prem_cost_per_hour(x).total_usd - on_prem_cost_per_hour(x).capex_usd) * 5 * 8760)
