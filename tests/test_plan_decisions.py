"""What decides a plan's answer, said out loud: no candidate meeting the SLOs (exit 1 and the closest miss), a
size the confidence interval decided, a max rate a longer run did or did not confirm, a bound checked by
simulating one count below it, and a Pareto plot that marks a point failing any target as failing."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.errors import InputError
from simfactory.plan import search
from simfactory.plan.search import CandidatePlan, Evaluation, PlanResult, ci_decided, closest_miss, search_replicas
from simfactory.plan.slo import parse_slo
from simfactory.report.plan import pareto_panels, plan_notes, summary_line

runner = CliRunner()


def _ev(replicas: int, met: bool, slo: dict, usd: float | None = None, rate: float = 10.0) -> Evaluation:
    return Evaluation("c", replicas, rate, met, slo, usd if usd is not None else 2.0 * replicas, None, None)


def _d(mean: float | None, ci: float | None, met: bool) -> dict:
    return {"mean": mean, "ci95": ci, "met": met, "samples": 5000}


def _case(tmp_path, horizon_s: float = 100.0):
    doc = scenario_doc(replicas=1, rate=2.0, output_tokens={"kind": "fixed", "value": 20}, horizon_s=horizon_s)
    return write_case(tmp_path, doc, step_time={"overhead_s": 0.05})


# ------------------------------------------------------------------------------- no candidate meets the SLOs


def test_an_impossible_slo_exits_1_naming_the_closest_miss(tmp_path):
    path = _case(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("max_replicas: 4\ncandidates:\n  - {name: a, overrides: {deployments.dep.max_num_seqs: 4}}\n")
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<1ms", "--space", str(space),
                              "-R", "2", "--out", str(tmp_path / "p")])
    assert res.exit_code == 1, res.output
    out = tmp_path / "p"
    doc = json.loads((out / "plan.json").read_text())  # the report is written all the same
    assert doc["met"] is False and doc["chosen"] is None and doc["closest"]["replicas"] in (1, 2, 4)
    line = (f"No candidate met e2e_p99<0.001s at 2/s with up to 4 replicas: closest a with "
            f"{doc['closest']['replicas']} replicas")
    assert line in res.output and "missed e2e_p99 by " in res.output, res.output
    assert "Traceback" not in res.output
    assert line in (out / "plan.md").read_text()
    assert doc["max_rate_per_s"] is None and not (out / "slo_vs_load.png").exists()


def test_bad_input_still_exits_2(tmp_path):
    res = runner.invoke(app, ["plan", str(_case(tmp_path)), "--target-rate", "2", "--slo", "e2e_p99>1ms",
                              "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and res.output.startswith("error: --slo"), res.output


def test_the_closest_miss_is_the_smallest_relative_shortfall():
    targets = parse_slo("ttft_p99<1s,e2e_p99<10s")
    far = _ev(2, False, {"ttft_p99": _d(math.inf, math.nan, False), "e2e_p99": _d(5.0, 0.1, True)})
    near = _ev(4, False, {"ttft_p99": _d(1.1, 0.1, False), "e2e_p99": _d(5.0, 0.1, True)})
    nearer_but_other = _ev(3, False, {"ttft_p99": _d(0.5, 0.1, True), "e2e_p99": _d(12.0, 1.0, False)})
    cp = CandidatePlan("c", {}, 2, None, None, [far, near, nearer_but_other])
    result = PlanResult(10.0, targets, [cp], None, max_replicas=4)
    assert closest_miss(result) is near  # 20% over ttft beats 30% over e2e and an unbounded p99
    line = summary_line(result)
    assert line.startswith("No candidate met ttft_p99<1s, e2e_p99<10s at 10/s with up to 4 replicas: closest c "
                           "with 4 replicas"), line
    assert "missed ttft_p99 by 0.2 s (95% bound 1.2 s > 1 s)" in line, line
    cp.evaluations = [far]
    assert "ttft_p99 is unbounded (more requests lost than p99 leaves out)" in summary_line(result)
    cp.evaluations = []
    assert "analytic lower bound (at least 2 replicas) is above max_replicas" in summary_line(result)


# ------------------------------------------------------------------- the confidence interval decided the size


def _ci_case(five_mean: float, five_ci: float) -> PlanResult:
    targets = parse_slo("ttft_p99<0.5s")
    four = _ev(4, False, {"ttft_p99": _d(0.9, 0.05, False)})
    five = _ev(5, False, {"ttft_p99": _d(five_mean, five_ci, five_mean + five_ci <= 0.5)})
    six = _ev(6, True, {"ttft_p99": _d(0.3, 0.05, True)})
    cp = CandidatePlan("h200", {}, 5, 6, six, [five, four, six])
    return PlanResult(10.0, targets, [cp], cp, replications=3)


def test_a_size_the_interval_decided_is_said():
    result = _ci_case(0.45, 0.1)  # the mean of 5 replicas passes, its 95% bound (0.55 s) does not
    decided = ci_decided(result.chosen, result.targets)
    assert decided is not None and decided[0].replicas == 5 and decided[1] == ["ttft_p99"]
    notes = plan_notes(result)
    assert ("5 replicas meet ttft_p99 on the mean of 3 runs but not at 95% confidence; more replications (-R) may "
            "confirm the smaller size") in notes[0], notes


def test_no_note_when_the_mean_decided_the_size_too():
    result = _ci_case(0.55, 0.05)  # 5 replicas miss on the mean as well
    assert ci_decided(result.chosen, result.targets) is None and plan_notes(result) == []


def test_a_plan_says_what_its_winners_forecasts_rest_on(tmp_path):
    """The winner's deployments' forecast evidence (the fidelity record's rows), a note per kind of forecast; an
    optimistic kind says how much of the headroom to allow for it. A profile the suites never ran adds none."""
    from simfactory.config.scenario import scenario_document
    from simfactory.fidelity_record import RECORD_FILE
    from simfactory.paths import DEFAULT_SCENARIO
    from simfactory.resolve.files import load_scenario

    result = _ci_case(0.55, 0.05)
    roof = {"basis": "every engine preset on roofline", "record": "all suites [roofline]", "points": 133,
            "mape": 0.327, "optimism": 0.252, "leaning": "optimistic"}
    kern = {"basis": "vllm preset on measured kernels", "record": "all suites [kernels] | vllm", "points": 10,
            "mape": 0.056, "optimism": -0.016, "leaning": "pessimistic"}
    result.forecast = [{"deployment": "big", **roof}, {"deployment": "small", **kern}, {"deployment": "big2", **roof}]
    notes = plan_notes(result)  # no headroom figure (the max-rate search did not run)
    assert notes == [
        "forecast check (big, big2): every engine preset on roofline, 133 published points: MAPE 32.7%, bias +25.2% "
        "(optimistic); no points at this TP; forecasts of this kind have run 25% faster than measured on average, "
        "and this plan has no headroom figure (--no-max-rate or no winner's load search): the fleet may be too small "
        "at the target rate; plan for a rate about 25% higher",
        "forecast check (small): vllm preset on measured kernels, 10 published points: MAPE 5.6%, bias -1.6% "
        "(pessimistic); no points at this TP"]
    result.headroom = 0.06  # less than the bias: the winner may miss its SLOs
    assert notes[1] in plan_notes(result) and ("more than the winner's headroom (6%): the fleet may miss its SLOs at "
                                               "the target rate; plan for a rate about 25% higher") in plan_notes(result)[0]
    result.headroom = 0.6
    assert plan_notes(result)[0].endswith("faster than measured on average: keep that much of the headroom (60%) for it")
    # the model's own points on its own preset outrank the preset's pooled figure: leaning the other way, no advice;
    # optimistic, its figure; another preset's model row (the pooled one) does not
    own = {"label": "m's published points", "record": "all suites [roofline] | model m | vllm", "points": 12,
           "mape": 0.05, "optimism": -0.02, "leaning": "pessimistic", "own_preset": True}
    result.forecast = [{"deployment": "big", **roof, "record": "all suites [roofline] | vllm", "of_model": own}]
    assert "faster" not in plan_notes(result)[0]
    own.update(optimism=0.4, leaning="optimistic")
    assert plan_notes(result)[0].endswith("this model's forecasts on this kind and preset have run 40% faster than "
                                          "measured on average (12 points): keep that much of the headroom (60%) for it")
    own.update(record="all suites [roofline] | model m", own_preset=False)
    assert plan_notes(result)[0].endswith("forecasts of this kind have run 25% faster than measured on average: keep "
                                          "that much of the headroom (60%) for it")
    (found,) = search.forecast_evidence(scenario_document(load_scenario(DEFAULT_SCENARIO)), "default.yaml")
    row = json.loads(RECORD_FILE.read_text())["breakdowns"][found["record"]]
    assert found["deployment"] == "llama8b" and (found["points"], found["mape"]) == (row["points"], row["mape"])
    case = _case(tmp_path)  # a linear user profile: no evidence, no note
    assert search.forecast_evidence(scenario_document(load_scenario(case)), str(case)) == []


def test_a_plan_weighs_the_forecasts_of_the_metrics_its_slos_bound():
    """A kind unbiased overall whose TTFT forecasts ran optimistic: a plan bounded by a TTFT SLO keeps headroom for
    that (the most optimistic of the kind's TTFT rows); one bounded only by e2e says nothing; pessimistic rows never
    advise; the larger of the overall and the SLO metric's optimism is the one weighed."""
    def row(label: str, optimism: float, points: int = 150) -> dict:
        return {"label": label, "record": "r", "points": points, "mape": 0.2, "optimism": optimism,
                "leaning": "optimistic" if optimism > 0.005 else "pessimistic"}

    kern = {"basis": "vllm preset on measured kernels", "record": "all suites [kernels] | vllm", "points": 10,
            "mape": 0.056, "optimism": -0.016, "leaning": "pessimistic",
            "by_metric": {"output_tokens_per_s": row("throughput", 0.3), "ttft_s": row("TTFT mean", 0.051, 153),
                          "ttft_median_s": row("TTFT median", -0.2, 33), "itl_s": row("ITL mean", 0.011)}}
    result = _ci_case(0.55, 0.05)  # its SLO: ttft_p99
    result.forecast, result.headroom = [{"deployment": "small", **kern}], 2.12
    (note,) = plan_notes(result)
    assert "per metric, MAPE (bias): throughput 20.0% (+30.0%), TTFT mean 20.0% (+5.1%), TTFT median 20.0% (-20.0%)" in note
    assert note.endswith("; TTFT mean forecasts of this kind (every preset) have run 5% faster than measured on average "
                         "(153 points), and the SLOs bound it: keep that much of the headroom (212%) for it"), note
    result.headroom = 0.03
    assert plan_notes(result)[0].endswith("more than the winner's headroom (3%): the fleet may miss its SLOs at the "
                                          "target rate; plan for a rate about 5% higher")
    result.targets = parse_slo("e2e_p99<10s")  # throughput's +30% is not an SLO metric's row: nothing to advise
    assert plan_notes(result)[0].endswith("TTFT median 20.0% (-20.0%), ITL mean 20.0% (+1.1%)")
    result.targets = parse_slo("tpot_p99<0.05s")
    assert "; ITL mean forecasts of this kind (every preset) have run 1% faster" in plan_notes(result)[0]
    kern["optimism"], kern["leaning"] = 0.08, "optimistic"  # the overall figure, larger, is the one weighed
    result.forecast = [{"deployment": "small", **kern}]
    assert plan_notes(result)[0].endswith("; forecasts of this kind have run 8% faster than measured on average, more "
                                          "than the winner's headroom (3%): the fleet may miss its SLOs at the target "
                                          "rate; plan for a rate about 8% higher")


def test_the_interval_note_needs_every_target_met_on_the_mean():
    targets = parse_slo("ttft_p99<0.5s,e2e_p99<10s")
    five = _ev(5, False, {"ttft_p99": _d(0.45, 0.1, False), "e2e_p99": _d(11.0, 0.5, False)})
    six = _ev(6, True, {"ttft_p99": _d(0.3, 0.05, True), "e2e_p99": _d(8.0, 0.5, True)})
    cp = CandidatePlan("c", {}, 5, 6, six, [five, six])
    assert ci_decided(cp, targets) is None


# ------------------------------------------------------------------------- one count below the analytic bound


def test_one_count_below_the_lower_bound_is_simulated():
    calls: list[int] = []

    def check(c):
        calls.append(c)
        return c >= 7

    assert search_replicas(check, 5, 5, 100) == 7
    assert calls[0] == 4 and calls.count(4) == 1  # the bound is checked, then the search goes on from it
    calls.clear()
    assert search_replicas(check, 1, 1, 100) == 7 and 0 not in calls  # no fleet of 0 replicas
    calls.clear()
    assert search_replicas(check, 3, 3, 100, floor=3) == 7 and 2 not in calls  # nor below the reserved replicas


def test_a_bound_that_is_too_high_is_caught_and_searched_beneath():
    calls: list[int] = []

    def check(c):
        calls.append(c)
        return c >= 3

    assert search_replicas(check, 10, 12, 100) == 3  # 9 passes: the bound of 10 was wrong
    assert calls[0] == 9 and 10 not in calls
    assert search_replicas(lambda c: c >= 3, 9, 9, 8) == 3  # a bound above the limit is still checked below it
    assert search_replicas(lambda c: c >= 3, 20, 20, 8) is None


def test_a_refuted_bound_is_noted():
    targets = parse_slo("ttft_p99<0.5s")
    four = _ev(4, True, {"ttft_p99": _d(0.3, 0.01, True)})
    three = _ev(3, False, {"ttft_p99": _d(0.9, 0.01, False)})
    cp = CandidatePlan("c", {}, 5, 4, four, [four, three])
    result = PlanResult(10.0, targets, [cp], cp, replications=3)
    assert cp.below_bound is four
    assert any("4 replicas met the SLOs below the analytic lower bound of 5" in n for n in plan_notes(result))


def test_the_report_lists_the_below_bound_point(tmp_path):
    """max_num_seqs 1, 1 s per request at 2/s: the bound is 3 replicas (c > lambda / mu), so 2 is simulated."""
    path = _case(tmp_path)
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<3s", "-R", "2",
                              "--no-max-rate", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "p" / "plan.json").read_text())
    cand = doc["candidates"][0]
    assert cand["lower_bound"] == 3 and 2 in cand["simulated_replicas"] and cand["below_bound_met"] is False
    ranked = pd.read_csv(tmp_path / "p" / "plan.csv")
    assert "2" in str(ranked.loc[0, "replica counts simulated"]).split(", ")


# ----------------------------------------------------------------------- the max rate, validated by a longer run


def _validated(met: bool) -> PlanResult:
    targets = parse_slo("ttft_p99<0.5s")
    best = _ev(5, True, {"ttft_p99": _d(0.3, 0.01, True)})
    cp = CandidatePlan("h200", {}, 5, 5, best, [best])
    r = PlanResult(80.0, targets, [cp], cp, max_rate_per_s=125.0, headroom=125 / 80 - 1, replications=3)
    r.validation = _ev(5, met, {"ttft_p99": _d(0.3 if met else 0.61, 0.0, met)}, rate=125.0)
    r.validation_horizon_s = 1200.0
    return r


def test_a_max_rate_a_longer_run_confirms_is_reported_as_validated():
    line = summary_line(_validated(True))
    assert "it sustains up to 125/s (headroom 56%), validated on a 1,200 s run at that rate" in line, line


def test_a_max_rate_a_longer_run_refutes_is_not_claimed():
    line = summary_line(_validated(False))
    assert "not validated on a 1,200 s run" in line and "ttft_p99 by 0.11 s (0.61 s > 0.5 s)" in line, line
    assert "headroom" not in line and "sustains up to" not in line


def test_the_validating_run_is_as_long_as_the_input_limits_allow(monkeypatch):
    seen: list[tuple[float, int, int]] = []

    def fake(doc, dep, file, name, replicas, rate, targets, replications, seed, point=0):
        seen.append((doc["sim"]["horizon_s"], replications, point))
        if doc["sim"]["horizon_s"] > 250:
            raise InputError("s.yaml", "sim.horizon_s", "too many arrivals")
        return _ev(replicas, True, {}, rate=rate)

    monkeypatch.setattr(search, "evaluate", fake)
    doc = {"sim": {"horizon_s": 100.0}}
    ev, horizon = search.validate_max_rate(doc, 0, "s.yaml", "c", 5, 125.0, [], 1)
    assert horizon == 200.0 and ev is not None and ev.rate_per_s == 125.0
    assert seen == [(400.0, 1, 1), (200.0, 1, 1)]  # 4x refused by a limit, then 2x; one run, on fresh seeds
    monkeypatch.setattr(search, "evaluate", lambda *a, **k: (_ for _ in ()).throw(InputError("s", "f", "no")))
    assert search.validate_max_rate(doc, 0, "s.yaml", "c", 5, 125.0, [], 1) == (None, None)
    r = _validated(True)
    r.validation = r.validation_horizon_s = None
    assert "not validated: a longer run would pass the input limits" in summary_line(r)


def test_the_cli_validates_the_max_rate_on_a_4x_run(tmp_path):
    path = _case(tmp_path)
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "1", "--slo", "e2e_p99<3s", "-R", "2",
                              "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "validated on a 400 s run" in res.output, res.output
    doc = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert doc["max_rate_validation"]["horizon_s"] == 400.0


# ------------------------------------------------------------------------------------- the Pareto plot's data


def test_pareto_marks_a_point_failing_the_second_target_as_failing():
    targets = parse_slo("ttft_p99<1s,e2e_p99<10s")
    passes_both = _ev(4, True, {"ttft_p99": _d(0.5, 0.1, True), "e2e_p99": _d(5.0, 0.5, True)})
    fails_second = _ev(3, False, {"ttft_p99": _d(0.8, 0.1, True), "e2e_p99": _d(12.0, 0.5, False)})
    cp = CandidatePlan("c", {}, 3, 4, passes_both, [fails_second, passes_both])
    panels = pareto_panels(PlanResult(10.0, targets, [cp], cp))
    assert [p["target"].label for p in panels] == ["ttft_p99", "e2e_p99"]  # every target has its panel
    for panel in panels:
        met = {p["replicas"]: p["met"] for p in panel["points"]}
        assert met == {3: False, 4: True}  # the ttft panel too: 3 replicas meet ttft but fail e2e


@pytest.mark.parametrize("slo", ["slo_attainment>0.9", "ttft_p99<1s,slo_attainment>0.9"])
def test_pareto_panels_cover_attainment_targets(slo):
    targets = parse_slo(slo)
    slo_detail = {t.label: _d(0.95 if t.metric == "slo_attainment" else 0.5, 0.01, True) for t in targets}
    e = _ev(2, True, slo_detail)
    cp = CandidatePlan("c", {}, 2, 2, e, [e])
    panels = pareto_panels(PlanResult(10.0, targets, [cp], cp))
    assert len(panels) == len(targets) and all(len(p["points"]) == 1 for p in panels)
