"""`simfactory compare`'s scorecard and recommendation agree by construction: cost is a criterion, capacity
(SLOs met, load at most 1) is a gate, and the recommendation is the top-ranked run that passes it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from simfactory.report.compare import (
    COST_WEIGHT,
    CRITERIA,
    GATE,
    MEETS,
    card_weights,
    comparison_frame,
    recommendation,
    scorecard,
    verdict_lines,
)

WEIGHTS = {"performance": 0.3, "utilization": 0.2, "data_movement": 0.15, "operational_simplicity": 0.2,
           "lock_in_freedom": 0.15}


def summary(name: str, per_1m: float | None, load: float | None, attain: float = 1.0, simplicity: float = 5.0,
            own_cheaper: bool | None = None) -> dict[str, Any]:
    pools = [{"pool": f"{name}-pool", "load_fraction": load, "own_cheaper": own_cheaper,
              "verdict": f"{'Owning' if own_cheaper else 'Renting'} is cheaper: because." if own_cheaper is not None
              else "no price for the other way (owned <-> rented): no own-vs-rent comparison"}]
    return {
        "scenario": name,
        "service": {"slo_attainment": attain, "slo_targets_defined": True},
        "latency_s": {"e2e": {"p99": 1.0}},
        "cost": {"usd_per_1m_tokens": per_1m, "usd_per_request": None if per_1m is None else per_1m / 1000},
        "finance": {
            "unit_economics": {"usd_per_1m_tokens": per_1m, "usd_per_successful_task": None,
                               "fleet_load_fraction": load},
            "tco": {"tco_usd": 1.0, "horizon_years": 3, "pools": pools},
            "scorecard": {"weights": WEIGHTS,
                          "ratings": {"operational_simplicity": simplicity, "lock_in_freedom": 7.0}},
        },
    }


def test_weights_keep_the_scenarios_proportions_and_add_cost():
    w = card_weights([summary("a", 1.0, 0.5)])
    assert set(w) == set(CRITERIA)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["cost"] == pytest.approx(COST_WEIGHT)
    assert w["performance"] / w["utilization"] == pytest.approx(0.3 / 0.2)
    assert w["performance"] == pytest.approx(0.3 * (1 - COST_WEIGHT))
    # weights that name cost are used as they are (normalized)
    w = card_weights([summary("a", 1.0, 0.5)], {"performance": 1.0, "cost": 1.0})
    assert w["cost"] == pytest.approx(0.5) and w["utilization"] == 0.0


def test_cost_criterion_best_is_10_scaled_against_the_others():
    runs = [summary("a", 0.10, 0.5), summary("b", 0.20, 0.5), summary("c", None, 0.5)]
    card = scorecard(runs, ["a", "b", "c"])
    assert card.loc["cost", "a"] == pytest.approx(10.0)
    assert card.loc["cost", "b"] == pytest.approx(5.0)
    assert card.loc["cost", "c"] == 0.0  # no cost figure (nothing served)
    for n in ("a", "b", "c"):
        total = sum(card.loc[c, "weight"] * card.loc[c, n] for c in CRITERIA)
        assert card.loc["weighted total", n] == pytest.approx(total)


def test_load_over_1_fails_capacity_and_is_never_recommended():
    # "cheap" is cheapest and simplest, so it has the highest weighted total, but its demand exceeds its fleet
    runs = [summary("cheap", 0.05, 1.02, simplicity=10.0), summary("mid", 0.09, 0.6), summary("dear", 0.10, 0.9)]
    names = ["cheap", "mid", "dear"]
    card = scorecard(runs, names)
    assert card.loc["weighted total", "cheap"] > max(card.loc["weighted total", n] for n in ("mid", "dear"))
    assert card.loc[GATE, "cheap"] == 0.0 and card.loc[MEETS, "cheap"] == "no: load 1.02 > 1"
    assert card.loc["rank", "cheap"] == 3  # after every run that passes
    top = next(n for n in names if card.loc["rank", n] == 1)
    line = recommendation(runs, names, card)
    assert line.startswith(f"recommended: {top} — highest score ")
    assert "among runs meeting SLOs and capacity" in line
    assert "cheap excluded: load 1.02 > 1" in line
    assert f"{card.loc['weighted total', top]:.1f}" in line


def test_missed_slos_fail_the_gate_and_the_line_says_why():
    runs = [summary("a", 0.05, 0.5, attain=0.9), summary("b", 0.09, 0.6)]
    card = scorecard(runs, ["a", "b"])
    assert card.loc[GATE, "a"] == 0.0 and card.loc["rank", "b"] == 1
    line = recommendation(runs, ["a", "b"], card)
    assert line.startswith("recommended: b — score") and "the only run meeting SLOs and capacity" in line
    assert "a excluded: SLO attainment 90.0% < 99%" in line
    none = recommendation([summary("a", 0.05, 1.5), summary("b", 0.09, 0.6, attain=0.5)], ["a", "b"])
    assert none.startswith("No run meets its SLOs") and "a: load 1.50 > 1" in none and "b: SLO attainment" in none


def test_recommended_run_is_rank_1_and_the_cheaper_run_is_named():
    runs = [summary("cheap", 0.09, 0.3, simplicity=2.0), summary("good", 0.10, 0.9, simplicity=9.0)]
    card = scorecard(runs, ["cheap", "good"])
    assert card.loc["rank", "good"] == 1
    line = recommendation(runs, ["cheap", "good"], card)
    assert line.startswith("recommended: good — highest score")
    assert "it costs $0.1000 per 1M tokens; cheap is cheaper at $0.09000 but scores" in line


def test_own_vs_rent_verdicts_are_shown_where_the_summary_has_one():
    runs = [summary("owned", 0.1, 0.8, own_cheaper=True), summary("rented", 0.1, 0.2, own_cheaper=False),
            summary("none", 0.1, 0.5)]
    names = ["owned", "rented", "none"]
    df = comparison_frame(runs)
    row = df.loc["own vs rent (decision model)"]
    assert row["owned"] == "owned-pool: owning cheaper" and row["rented"] == "rented-pool: renting cheaper"
    assert pd.isna(row["none"])
    lines = verdict_lines(runs, names)
    assert lines == ["owned, pool owned-pool: Owning is cheaper: because.",
                     "rented, pool rented-pool: Renting is cheaper: because."]


def test_compare_states_units_request_latencies_in_ms_task_latencies_in_s():
    from simfactory.report.compare import compare_panels, comparison_frame

    s = {"scenario": "a", "latency_s": {"ttft": {"p50": 0.1, "p99": 0.25}, "tpot": {"p50": 0.01}, "e2e": {"p99": 3.0}},
         "tasks": {"c": {"latency_s": {"p50": 10.0, "p99": 20.0}, "outcome_rates": {"completed": 1.0}}}}
    df = comparison_frame([s, s])
    assert df.loc["TTFT p99 (ms)"].tolist() == [250.0, 250.0] and df.loc["E2E p99 (ms)"].tolist() == [3000.0, 3000.0]
    assert df.loc["task latency p99 (s)"].tolist() == [20.0, 20.0]
    latency_rows = [r for r in df.index if any(w in r for w in ("TTFT", "TPOT", "E2E", "latency"))]
    assert latency_rows and all(r.endswith("(ms)") or r.endswith("(s)") for r in latency_rows)
    assert [t for t, _ in compare_panels([s]) if "p99" in t] == ["TTFT p99 (ms)", "E2E p99 (ms)"]


def test_a_front_end_busy_row_appears_only_when_some_run_models_one():
    a, b = summary("a", 1.0, 0.5), summary("b", 2.0, 0.5)
    assert not any("front end busy" in str(i) for i in comparison_frame([a, b]).index)
    a["front_end"] = {"share_of_e2e": 0.01, "busy_frac": {"d1": 0.4, "d2": 0.9}}
    frame = comparison_frame([a, b])
    row = next(i for i in frame.index if "front end busy" in str(i))
    assert list(frame.loc[row])[0] == 0.9 and pd.isna(list(frame.loc[row])[1])
