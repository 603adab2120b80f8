"""Cost model honesty (#24): energy is billed on the load (demand / capacity), not the busy fraction; licences
follow the serving engine, on cloud and owned pools alike; provisioned reviewer seats are paid for the window."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from conftest import scenario_doc

from simfactory.cli import app
from simfactory.config.agent import AgentWorkload
from simfactory.config.loader import validate
from simfactory.config.prices import CloudPrice
from simfactory.config.scenario import Scenario
from simfactory.cost.decision import rent_usd_per_accel_hour
from simfactory.cost.finance import Units, sensitivity, unit_economics
from simfactory.cost.fleet import alternative_cost, fleet_costs, rental_licences
from simfactory.errors import InputErrors
from simfactory.paths import SCENARIOS_DIR, WORKLOADS_DIR
from simfactory.resolve import resolve

NVAIE = 4500.0  # NVIDIA AI Enterprise, USD per GPU-year (engines.yaml, the nim preset)
TDP, IDLE = 700.0, 70.0  # h100-sxm profile TDP; price book idle power


def _rs(location: str, engine: str = "vllm", replicas: int = 8, count: int = 8, **pool):  # type: ignore[no-untyped-def]
    doc = scenario_doc(replicas=replicas, engine=engine, max_num_seqs=8)
    doc["pools"][0].update({"sku": "h100-sxm", "location": location, "count": count, **pool})
    return resolve(validate(Scenario, doc, "s.yaml"), "s.yaml")


def test_energy_at_load_015_is_idle_plus_load_times_tdp_minus_idle_whatever_the_busy_fraction():
    rs = _rs("on_prem")
    book = rs.price_book.on_prem
    watts = IDLE + 0.15 * (TDP - IDLE)  # 164.5 W per GPU
    for busy in (1.0, 0.3):
        pc = fleet_costs(rs, {"pool": busy}, load_by_pool={"pool": 0.15})[0]
        assert pc.utilization == busy and pc.load == 0.15
        it_kw = (8 * watts + 1 * book.host_power_w_per_node.value) / 1e3  # 8 GPUs: one node
        assert pc.per_hour.energy_usd == pytest.approx(it_kw * book.pue.value * book.usd_per_kwh.value)
        units = Units(window_h=0.5, requests=100, input_tokens=2_000_000, output_tokens=1_000_000)
        ue = unit_economics([pc], units)
        kwh = 8 * watts / 1e3 * 0.5
        assert ue["accelerator_energy_kwh"] == pytest.approx(kwh)
        assert ue["tokens_per_joule"] == pytest.approx(3_000_000 / (kwh * 3.6e6))
    # a cloud pool's energy (for tokens per joule) follows the same model
    pc = fleet_costs(_rs("cloud"), {"pool": 1.0}, load_by_pool={"pool": 0.15})[0]
    assert unit_economics([pc], Units(1.0, 1, 0, 1))["accelerator_energy_kwh"] == pytest.approx(8 * watts / 1e3)


def test_the_sensitivity_tornado_moves_the_load_not_the_busy_fraction():
    pc = fleet_costs(_rs("on_prem"), {"pool": 1.0}, load_by_pool={"pool": 0.25})[0]
    t = sensitivity([pc], Units(window_h=1.0, requests=10, input_tokens=10**6, output_tokens=10**6), 0.2)
    rows = {r["input"]: r for r in t["rows"]}
    assert "load" in rows and "utilization" not in rows
    # output scales with the load: 20% more load, 20% more tokens on (nearly) the same cost
    assert rows["load"]["metric_at_high"] == pytest.approx(t["base"] / 1.2, rel=0.02)


@pytest.mark.parametrize("location", ["on_prem", "cloud"])
def test_vllm_is_charged_no_licence_on_either_side(location):
    rs = _rs(location)
    pc = fleet_costs(rs, {"pool": 1.0})[0]
    alt = alternative_cost(rs, pc)
    assert alt is not None and {pc.location, alt.location} == {"on_prem", "cloud"}
    for c in (pc, alt):
        assert c.per_hour.software_usd == 0.0
    assert any(a.source.endswith("carries no licence (open source)") for a in pc.assumptions)


def test_a_licensed_engine_is_charged_alike_per_accelerator_hour_on_both_sides():
    per_accel_hour = NVAIE / 8760
    costs = {loc: fleet_costs(_rs(loc, "nim"), {"pool": 1.0})[0] for loc in ("on_prem", "cloud")}
    for loc, pc in costs.items():
        assert pc.per_hour.software_usd == pytest.approx(8 * per_accel_hour), loc
        assert any("NVIDIA AI Enterprise" in a.name and a.value == NVAIE for a in pc.assumptions), loc
        alt = alternative_cost(_rs(loc, "nim"), pc)
        assert alt.per_hour.software_usd == pytest.approx(8 * per_accel_hour), loc
    # the elastic rent of the own-vs-rent decision pays it per accelerator-hour too
    cloud = costs["cloud"].cloud
    assert rent_usd_per_accel_hour(cloud) == pytest.approx(cloud.usd_per_accel_hour + per_accel_hour)
    # only the accelerators running the engine: 4 of 8
    for loc in ("on_prem", "cloud"):
        pc = fleet_costs(_rs(loc, "nim", replicas=4, count=8), {"pool": 1.0})[0]
        assert pc.per_hour.software_usd == pytest.approx(4 * per_accel_hour), loc
    # a pool's own figure replaces the engine's, on every accelerator
    pc = fleet_costs(_rs("cloud", "nim", software_usd_per_accel_year=0), {"pool": 1.0})[0]
    assert pc.per_hour.software_usd == 0.0


def test_a_cloud_price_row_that_includes_the_licence_is_not_charged_it_again():
    row = CloudPrice(provider="aws", sku="h100-sxm", pricing="on_demand", usd_per_accel_hour=9.0, source="s",
                     as_of="2026", includes_licences=["NVIDIA AI Enterprise"])
    pool = _rs("cloud").scenario.pools[0]
    out: list = []
    assert rental_licences({"NVIDIA AI Enterprise": NVAIE, "other": 100.0}, row, pool, out) == 100.0
    assert any("in the cloud price" in a.name for a in out)
    assert rental_licences({"NVIDIA AI Enterprise": NVAIE}, None, pool, []) == NVAIE


def _support_run(tmp_path, pricing: str | None):  # type: ignore[no-untyped-def]
    from simfactory.api import run

    wl = yaml.safe_load((WORKLOADS_DIR / "support-agent.yaml").read_text())
    if pricing is not None:
        wl["humans"][0]["pricing"] = pricing
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads" / "support-agent.yaml").write_text(yaml.safe_dump(wl))
    (tmp_path / "scenarios").mkdir()
    path = tmp_path / "scenarios" / "s.yaml"
    path.write_text((SCENARIOS_DIR / "support-agent.yaml").read_text())
    return run(str(path)), wl["humans"][0]


@pytest.mark.parametrize("pricing", [None, "per_use"])
def test_a_50_seat_reviewer_pool_is_paid_as_provisioned_by_default(tmp_path, pricing):
    r, humans = _support_run(tmp_path, pricing)
    s = r.summary
    window_h = (s["window"]["horizon_s"] - s["window"]["warmup_s"]) / 3600
    t = r.tasks[r.tasks["measured"]]
    handled = float(t["usd_human"].sum())
    seats = 50 * window_h * 24.8
    assert humans["count"] == 50 and humans["usd_per_hour"] == 24.8 and handled < seats
    human = seats if pricing is None else handled
    ue = s["finance"]["unit_economics"]
    others = float(t[["usd_tools", "usd_retrieval", "usd_network"]].sum().sum())
    assert ue["usd_per_task"] * len(t) == pytest.approx(ue["serving_window_usd"] + human + others)
    block = s["tasks"]["support"]["cost_usd"]
    assert block["per_successful_task_fully_loaded"] == pytest.approx(ue["usd_per_successful_task"])


def test_one_workloads_reviewer_pools_are_priced_alike():
    wl = yaml.safe_load((WORKLOADS_DIR / "support-agent.yaml").read_text())
    wl["humans"].append({"name": "leads", "count": 2, "usd_per_hour": 60, "pricing": "per_use"})
    with pytest.raises(InputErrors, match="price every reviewer pool of a workload alike"):
        validate(AgentWorkload, wl, "w.yaml")


def test_the_terminal_summary_shows_the_load_and_bills_energy_on_it(tmp_path):
    res = CliRunner().invoke(app, ["run", str(SCENARIOS_DIR / "tco-onprem.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    pool = s["cost"]["pools"][0]
    load = pool["load_fraction"]
    assert 0 < load < 0.5 < pool["utilization"]  # continuous batching: busy nearly always, at a fraction of capacity
    assert f"load (demand / capacity): h100-dc {load:.2f}" in text
    assert "busy fraction (share of time a replica had work)" in text and "replica busy fraction" not in text
    ue = s["finance"]["unit_economics"]
    window_h = (s["window"]["horizon_s"] - s["window"]["warmup_s"]) / 3600
    assert ue["fleet_load_fraction"] == pytest.approx(load)
    assert ue["accelerator_energy_kwh"] == pytest.approx(8 * (IDLE + load * (TDP - IDLE)) / 1e3 * window_h)
    assert s["finance"]["tco"]["pools"][0]["load_fraction"] == pytest.approx(load)
    assert pool["breakdown_usd_per_hour"]["software"] == 0.0  # vLLM: no licence
