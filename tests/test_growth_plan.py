"""plan-growth: the commitment optimizer against brute force, its behaviour under uncertainty, the growth file end
to end (certain flat demand, no demand, the shipped 24-month plan) and hostile inputs (exit 2, the field named)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.cost.commitment import (
    CommitmentProblem,
    Contract,
    Rental,
    expected_cost_usd,
    recourse,
    solve,
    weighted_quantile,
)
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR
from simfactory.plan.growth import load_growth, plan_growth
from simfactory.plan.growth_summary import month_rows, totals

SHIPPED = SCENARIOS_DIR / "growth" / "assistant-24m.yaml"


# ---- the optimizer on small problems, against an enumeration written here ---------------------------------------


def _reserved(h: int, m: int, term: int, usd: float, earliest: int = 1) -> Contract:
    cash = np.zeros((h, m + 1))
    for t in range(h):
        cash[t, t + 1:t + 1 + term] = usd
    return Contract(f"reserved{term}", cash, term, earliest)


def _owned(h: int, m: int, capex: float, running: float, resale: float, use: float, earliest: int,
           cap: float | None) -> Contract:
    cash = np.zeros((h, m + 1))
    for t in range(h):
        cash[t, t + 1] += capex
        cash[t, t + 1:h + 1] += running
    return Contract("own", cash, h, earliest, cap, use, np.full(h, capex * resale))


def _brute_force(p: CommitmentProblem, max_units: int) -> tuple[float, list[np.ndarray]]:
    """Every commitment schedule with 0..max_units units per contract and month (lead time and availability
    respected), each costed by its own arithmetic: commitments' present value, then per future and month the
    cheapest way to fill what reservations leave (owned at their use cost, spot up to its share, on demand)."""
    h, n_c = p.months, len(p.contracts)
    v = p.discount
    best, argmins = np.inf, []
    for flat in itertools.product(range(max_units + 1), repeat=n_c * h):
        n = np.array(flat, dtype=float).reshape(n_c, h)
        if any(n[i, t] > 0 and (t + 1 < c.earliest_month or (c.max_per_month is not None and n[i, t] * p.unit
                                                             > c.max_per_month))
               for i, c in enumerate(p.contracts) for t in range(h)):
            continue
        acc = n * p.unit
        cost = sum(acc[i] @ (c.cash_usd @ v) - acc[i] @ c.credits(h) * v[h] for i, c in enumerate(p.contracts))
        for s in range(p.demand.shape[0]):
            for t in range(h):
                live = [sum(acc[i, tau] for tau in range(h) if tau <= t < tau + c.active_months)
                        for i, c in enumerate(p.contracts)]
                d = p.demand[s, t]
                left = max(0.0, d - sum(x for x, c in zip(live, p.contracts) if c.use_usd_per_month == 0))
                offers = [(c.use_usd_per_month, x) for x, c in zip(live, p.contracts) if c.use_usd_per_month > 0]
                if p.rental.spot_usd_per_month is not None:
                    offers.append((p.rental.spot_usd_per_month, p.rental.spot_max_share * d))
                offers.append((p.rental.on_demand_usd_per_month, np.inf))
                month = 0.0
                for price, limit in sorted(offers):
                    take = min(left, limit)
                    month += price * take
                    left -= take
                cost += p.weights[s] * v[t + 1] * month
        tol = 1e-6 * max(1.0, abs(cost))
        if cost < best - tol:
            best, argmins = cost, [acc]
        elif abs(cost - best) <= tol:
            argmins.append(acc)
    return best, argmins


def _small_problem(seed: int) -> tuple[CommitmentProblem, int]:
    """3 months, 2 futures, owned (2-month lead... or 1) with availability, a 2-month reservation, spot."""
    rng = np.random.default_rng(seed)
    h, m = 3, 5
    unit = int(rng.choice([1, 2]))
    demand = rng.integers(0, 7, size=(2, h)).astype(float)
    od = float(rng.uniform(90, 110))
    contracts = (
        _owned(h, m, capex=float(rng.uniform(60, 300)), running=float(rng.uniform(10, 30)),
               resale=float(rng.uniform(0.3, 0.7)), use=float(rng.uniform(1, 5)), earliest=int(rng.integers(1, 3)),
               cap=float(rng.choice([2, 4])) * unit),
        _reserved(h, m, term=2, usd=float(rng.uniform(40, 95)), earliest=int(rng.integers(1, 3))),
    )
    weights = np.array([0.4, 0.6]) if seed % 2 else np.array([0.5, 0.5])
    discount = (1 + 0.01) ** -np.arange(m + 1)
    p = CommitmentProblem(demand, weights, discount, contracts,
                          Rental(od, float(rng.uniform(40, 80)), float(rng.choice([0.0, 0.25]))), unit)
    return p, int(np.ceil(demand.max() / unit))


@pytest.mark.parametrize("seed", range(6))
def test_the_commitment_optimizer_matches_a_brute_force_enumeration(seed):
    p, max_units = _small_problem(seed)
    best, argmins = _brute_force(p, max_units)
    plan = solve(p, time_limit_s=60)
    assert plan.status == "optimal"
    assert plan.expected_usd == pytest.approx(best, rel=1e-6, abs=1e-6)
    assert any(np.array_equal(plan.starts, a) for a in argmins), (plan.starts, argmins)
    assert expected_cost_usd(p, plan.starts) == pytest.approx(best, rel=1e-6, abs=1e-6)


def test_the_brute_force_cases_exercise_every_kind_of_decision():
    """The enumeration above is worth something only if its optima commit, own, reserve and rent."""
    kinds = set()
    for seed in range(6):
        p, _ = _small_problem(seed)
        plan = solve(p)
        kinds |= {c.name for c, row in zip(p.contracts, plan.starts) if row.sum() > 0}
        rec = recourse(p, plan.starts)
        kinds |= {"on demand"} if rec.on_demand.sum() > 0 else set()
        kinds |= {"spot"} if rec.spot.sum() > 0 else set()
        kinds |= {"stranded"} if rec.stranded.sum() > 0 else set()
    assert {"own", "reserved2", "on demand", "spot", "stranded"} <= kinds, kinds


def _growth_problem(demand: np.ndarray, weights: np.ndarray | None = None) -> CommitmentProblem:
    """Six months with the shape of a real book: owning (2-month lead, resale), a 1-year reservation, on demand."""
    h = demand.shape[1]
    m = h + 12
    contracts = (_owned(h, m, capex=44_000, running=700, resale=0.8, use=60, earliest=3, cap=None),
                 _reserved(h, m, term=12, usd=3_100))
    w = np.full(len(demand), 1 / len(demand)) if weights is None else weights
    return CommitmentProblem(demand, w, 1.0064 ** -np.arange(m + 1), contracts, Rental(5_000, 2_600, 0.1), 8)


def test_more_uncertainty_never_lowers_the_expected_cost_for_the_same_mean():
    """A mean-preserving spread of demand can only raise the optimum: the second stage is convex in demand
    (Jensen), for every first stage, so for the best one too."""
    mean = np.array([16, 20, 24, 32, 40, 48], dtype=float)
    costs = []
    for spread in (0, 4, 8, 12, 16):
        futures = np.array([mean - spread, mean + spread])
        assert futures.mean(axis=0) == pytest.approx(mean)
        costs.append(solve(_growth_problem(futures)).expected_usd)
    assert all(b >= a - 1e-6 * a for a, b in zip(costs, costs[1:])), costs
    assert costs[-1] > costs[0]


def test_a_flat_certain_demand_is_all_committed_when_a_reservation_is_cheaper():
    h = 12
    demand = np.full((1, h), 24.0)
    m = h + 12
    p = CommitmentProblem(demand, np.ones(1), 1.0064 ** -np.arange(m + 1), (_reserved(h, m, 12, 3_100),),
                          Rental(5_000), 8)
    plan = solve(p)
    assert plan.starts[0, 0] == 24 and plan.starts.sum() == 24
    rec = recourse(p, plan.starts)
    assert rec.on_demand.sum() == 0 and rec.stranded.sum() == 0
    dearer = CommitmentProblem(demand, np.ones(1), p.discount, (_reserved(h, m, 12, 5_100),), Rental(5_000), 8)
    assert solve(dearer).starts.sum() == 0  # reserved above on-demand: nothing committed


def test_zero_demand_commits_nothing():
    p = _growth_problem(np.zeros((3, 6)))
    plan = solve(p)
    assert plan.starts.sum() == 0 and plan.expected_usd == 0


def test_weighted_quantiles_are_the_inverse_distribution_function():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(101, 4))
    for q in (0.1, 0.5, 0.9):
        assert np.allclose(weighted_quantile(x, np.ones(101), q), np.quantile(x, q, axis=0, method="inverted_cdf"))
    assert weighted_quantile(np.array([1.0, 2.0, 3.0]), np.array([0.05, 0.05, 0.9]), 0.1) == 2.0


# ---- growth files end to end ------------------------------------------------------------------------------------


def _growth_doc(**changes) -> dict:
    doc = {
        "name": "case", "scenario": str(SCENARIOS_DIR / "tco-cloud.yaml"), "horizon_months": 12, "seed": 1,
        "capacity": {"requests_per_s_per_replica": 40.0, "source": "test: a stated figure"},
        "demand": {"start_rate_per_s": 400, "growth": {"distribution": "lognormal", "median_monthly": 0.0}},
        "cloud": {"provider": "aws", "region": "us-east-1"},
        "options": {"own": False, "reserved_1y": True, "reserved_3y": False, "commit_unit_accelerators": 1},
    }
    for key, value in changes.items():
        node = doc
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        node[last] = value
    return doc


def _write(tmp_path: Path, doc: dict, name: str = "growth.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def test_a_flat_certain_demand_is_reserved_from_the_first_month_its_lead_time_allows(tmp_path):
    """AWS: reserved_1y $4.30 < on-demand $6.88 per GPU-hour; the book's 1-month lead time leaves month 1 on
    demand, every later month all reserved, nothing idle."""
    f = _write(tmp_path, _growth_doc())
    gp = plan_growth(load_growth(f), str(f))
    rows = month_rows(gp)
    assert [r["demand_p50_accelerators"] for r in rows] == [10.0] * 12
    assert rows[0]["reserved_1y_accelerators"] == 0 and rows[0]["on_demand_expected_accelerators"] == 10
    assert all(r["reserved_1y_accelerators"] == 10 and r["on_demand_expected_accelerators"] == 0 for r in rows[1:])
    assert sum(r["stranded_p10_path_accelerators"] for r in rows) == 0
    assert gp.channels.reserved_usd_per_month["reserved_1y"] == pytest.approx(4.3 * 730)
    assert gp.channels.on_demand_usd_per_month == pytest.approx(6.88 * 730)


def test_no_demand_commits_nothing_and_costs_nothing(tmp_path):
    f = _write(tmp_path, _growth_doc(**{"demand.start_rate_per_s": 0, "options.own": True,
                                        "options.reserved_3y": True}))
    gp = plan_growth(load_growth(f), str(f))
    assert gp.plan.starts.sum() == 0
    tot = totals(gp)
    assert tot["expected_usd"] == 0 and tot["p90_usd"] == 0


def test_named_futures_weigh_by_their_probabilities(tmp_path):
    growth = {"distribution": "scenarios", "scenarios": [{"name": "flat", "probability": 0.25, "monthly": 0.0},
                                                         {"name": "fast", "probability": 0.75, "monthly": 0.1}]}
    f = _write(tmp_path, _growth_doc(**{"demand.growth": growth}))
    gp = plan_growth(load_growth(f), str(f))
    assert gp.names == ["flat", "fast"]
    assert gp.problem.weights.tolist() == [0.25, 0.75]
    assert gp.rates[1, 11] == pytest.approx(400 * 1.1 ** 11)
    rows = month_rows(gp)
    assert rows[-1]["demand_p10_accelerators"] == 10 and rows[-1]["demand_p90_accelerators"] == np.ceil(
        400 * 1.1 ** 11 / 40)
    named = totals(gp)["named_futures"]
    assert [f["future"] for f in named] == ["flat", "fast"]
    assert 0.25 * named[0]["usd"] + 0.75 * named[1]["usd"] == pytest.approx(totals(gp)["expected_usd"], rel=1e-9)
    assert named[0]["stranded_accelerator_months"] >= named[1]["stranded_accelerator_months"]


def _invoke(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _one_error(code: int, output: str, *words: str) -> str:
    assert code == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors, output
    for w in words:
        assert w in errors[0], (w, errors)
    return errors[0]


@pytest.mark.parametrize("change, field", [
    ({"demand.growth.median_monthly": -0.7}, "demand.growth.median_monthly"),
    ({"demand.growth.median_monthly": 8}, "demand.growth.median_monthly"),
    ({"horizon_months": 0}, "horizon_months"),
    ({"horizon_months": 121}, "horizon_months"),
    ({"demand.start_rate_per_s": -1}, "demand.start_rate_per_s"),
    ({"demand.growth.sigma_monthly": -0.1}, "demand.growth.sigma_monthly"),
    ({"options.spot_max_share": 1.5}, "options.spot_max_share"),
    ({"capacity.plan": {"rate_per_s": 10, "slo": "ttft_p99<1s"}}, "capacity"),
    ({"capacity.source": None}, "capacity.source"),
    ({"demand.growth": {"distribution": "scenarios", "scenarios": [{"name": "a", "probability": 0.5,
                                                                    "monthly": 0.1}]}}, "demand.growth"),
    ({"demand.growth.distribution": "normal"}, "demand.growth.distribution"),
    ({"scenario": "no-such.yaml"}, "scenario"),
    ({"deployment": "nope"}, "deployment"),
    ({"cloud.provider": "runpod"}, "options.reserved_1y"),
    ({"cloud.provider": "tensorwave", "options.reserved_1y": False}, "cloud.provider"),
    ({"options.spot_max_share": 0.2, "cloud.provider": "lambda", "options.reserved_1y": False},
     "options.spot_max_share"),
    ({"capacity": {"plan": {"rate_per_s": 10, "slo": "ttft_p99>1s"}}}, "capacity.plan.slo"),
    ({"demand.start_rate_per_s": 1e12}, "demand"),
])
def test_hostile_growth_files_exit_2_naming_the_field(tmp_path, change, field):
    f = _write(tmp_path, _growth_doc(**change))
    line = _one_error(*_invoke("plan-growth", f, "-o", tmp_path / "out", "--quiet"), "growth.yaml", field)
    assert not (tmp_path / "out").exists(), line


def test_a_procurement_row_for_an_unknown_sku_exits_2_naming_it(tmp_path):
    """The price book refuses a procurement row for a SKU it prices nowhere (a typo would silently give the real
    SKU no lead time)."""
    shutil.copy(SCENARIOS_DIR / "tco-cloud.yaml", tmp_path / "base.yaml")
    (tmp_path / "hardware_profiles").mkdir()
    book = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    book["procurement"].append({"sku": "h900", "channel": "own", "lead_time_months": 2, "as_of": "2026",
                                "source": "https://example.com/quote"})
    (tmp_path / "hardware_profiles" / "prices.yaml").write_text(yaml.safe_dump(book))
    f = _write(tmp_path, _growth_doc(scenario="base.yaml"))
    i = len(book["procurement"]) - 1
    _one_error(*_invoke("plan-growth", f, "-o", tmp_path / "out"), "prices.yaml", f"procurement[{i}].sku",
               "unknown SKU 'h900'")


@pytest.mark.parametrize("row, field", [
    ({"sku": "h100-sxm", "channel": "own", "provider": "aws"}, "provider"),
    ({"sku": "h100-sxm", "channel": "reserved", "provider": "nocloud"}, "provider"),
    ({"sku": "h100-sxm", "channel": "own"}, "procurement[8]"),  # a second own row for h100-sxm
    ({"sku": "h100-sxm", "channel": "own", "lead_time_months": -1}, "lead_time_months"),
])
def test_bad_procurement_rows_are_refused(tmp_path, row, field):
    shutil.copy(SCENARIOS_DIR / "tco-cloud.yaml", tmp_path / "base.yaml")
    (tmp_path / "hardware_profiles").mkdir()
    book = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    book["procurement"].append({"lead_time_months": 2, "as_of": "2026", "source": "https://example.com/q", **row})
    (tmp_path / "hardware_profiles" / "prices.yaml").write_text(yaml.safe_dump(book))
    assert len(book["procurement"]) == 9
    _one_error(*_invoke("validate", tmp_path / "base.yaml"), "prices.yaml", field)


GROWTH_FILES = sorted((SCENARIOS_DIR / "growth").glob("*.yaml"))


def test_shipped_growth_files_point_editors_at_their_schema_and_validate():
    import jsonschema

    from simfactory.schemas import schema

    assert SHIPPED in GROWTH_FILES and len(GROWTH_FILES) >= 2
    for path in GROWTH_FILES:
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=../../schemas/growth.json"), path
        jsonschema.validate(yaml.safe_load(text), schema("growth"))


@pytest.mark.parametrize("path", GROWTH_FILES, ids=lambda p: p.stem)
def test_the_shipped_growth_plans_run_and_their_reports_add_up(tmp_path, path):
    """Every scenarios/growth/*.yaml end to end (assistant-24m.yaml runs one `plan` of tco-cloud.yaml for its
    capacity): 24 months of advice within the price book's lead times and availability, the risk band in order,
    the files written."""
    from simfactory.config.loader import load_model_file
    from simfactory.config.prices import PriceBook

    out = tmp_path / "growth"
    code, output = _invoke("plan-growth", path, "-o", out, "--json", tmp_path / "g.json")
    assert code == 0, output
    doc = json.loads((tmp_path / "g.json").read_text())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["growth-plan.csv", "growth-plan.md", "growth-plan.xlsx", "growth-plan.json", "growth-fan.png"])
    assert len(doc["months"]) == 24 and doc["futures"] == 100
    tot = doc["totals"]
    assert tot["p10_usd"] <= tot["p50_usd"] <= tot["p90_usd"]
    assert 0 < tot["expected_usd"] < tot["all_on_demand_expected_usd"]
    assert tot["p10_path"]["usd"] <= tot["p50_path"]["usd"] <= tot["p90_path"]["usd"]
    assert tot["p10_path"]["stranded_accelerator_months"] >= tot["p90_path"]["stranded_accelerator_months"]
    assert doc["commitments"], "a shipped plan commits something"
    book = load_model_file(PriceBook, PROFILES_DIR / "prices.yaml")
    for c in doc["commitments"]:
        row = book.procurement_for("h100-sxm", "own" if c["contract"] == "own" else "reserved", "aws")
        assert c["accelerators"] % 8 == 0
        assert c["lead_time_months"] == row.lead_time_months
        assert c["start_month"] >= 1 + row.lead_time_months
        assert c["decide_month"] == c["start_month"] - row.lead_time_months
        assert row.max_accelerators_per_month is None or c["accelerators"] <= row.max_accelerators_per_month
    for r in doc["months"]:
        served = r["committed_accelerators"] - r["stranded_p10_path_accelerators"]
        assert served <= r["demand_p10_accelerators"] + 1e-9  # stranded = committed beyond the P10 demand
        assert r["cost_p10_usd"] <= r["cost_p50_usd"] <= r["cost_p90_usd"]
    months = pd.read_csv(out / "growth-plan.csv")
    assert months["cost expected USD"].sum() == pytest.approx(tot["expected_nominal_usd"], rel=1e-9)
    assert any(a.startswith("Due now:") for a in doc["advice"])
    assert any(a.startswith("Downside:") for a in doc["advice"]) and any(a.startswith("Expected cost") for a in
                                                                          doc["advice"])
    md = (out / "growth-plan.md").read_text()
    assert "## Month by month" in md and "growth-fan.png" in md and "$" in md
    assert (out / "growth-fan.png").stat().st_size > 10_000
    assert "Expected cost" in output and "wrote" in output
