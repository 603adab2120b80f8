"""`simfactory regress` and `baseline update`: exit codes, tolerances, CI outputs, statistical mode."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.errors import InputErrors
from simfactory.regress.diff import diff_metrics
from simfactory.regress.tolerances import Tolerance, default_direction, load_tolerances

runner = CliRunner()
LINEAR = {"overhead_s": 0.01, "s_per_prefill_token": 1e-5}


def make_case(tmp_path, overhead_s=0.01, seed=1):
    doc = scenario_doc(rate=5, horizon_s=60, seed=seed, input_tokens={"kind": "fixed", "value": 200},
                       output_tokens={"kind": "geometric", "mean": 30}, max_num_seqs=16)
    return write_case(tmp_path / "case", doc, {**LINEAR, "overhead_s": overhead_s})


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res


def test_identical_run_passes_and_a_slower_profile_fails(tmp_path):
    scenario = make_case(tmp_path)
    base = tmp_path / "baselines"
    assert invoke("baseline", "update", scenario, "--baseline-dir", base).exit_code == 0
    assert invoke("regress", scenario, "--baseline-dir", base).exit_code == 0
    make_case(tmp_path, overhead_s=0.011)  # every step 10% slower: TTFT and latency rise
    assert invoke("regress", scenario, "--baseline-dir", base).exit_code == 1  # past the default 3% too
    res = invoke("regress", scenario, "--baseline-dir", base, "--exact", "--report-dir", tmp_path / "rep")
    assert res.exit_code == 1
    assert "latency_s.ttft.mean" in res.output and "**regression**" in res.output
    report = json.loads((tmp_path / "rep" / "regress.json").read_text())
    moved = {d["metric"]: d for d in report["diffs"]}
    assert moved["latency_s.ttft.mean"]["status"] == "regression"
    assert moved["latency_s.ttft.mean"]["rel_delta"] > 0.05


def test_tolerance_absorbs_a_small_change(tmp_path):
    scenario = make_case(tmp_path)
    base = tmp_path / "baselines"
    invoke("baseline", "update", scenario, "--baseline-dir", base)
    make_case(tmp_path, overhead_s=0.0101)
    tol = tmp_path / "tol.yaml"
    # 5% relative, with an absolute floor for small, discrete metrics (queue depth 0.017 -> 0.033 is noise)
    tol.write_text(yaml.safe_dump({"default": {"rel": "5%", "abs": 0.05}}))
    assert invoke("regress", scenario, "--baseline-dir", base, "--tolerances", tol).exit_code == 0
    tol.write_text(yaml.safe_dump({"default": "5%"}))
    assert invoke("regress", scenario, "--baseline-dir", base, "--tolerances", tol).exit_code == 1


def test_missing_or_corrupt_baseline_and_bad_tolerances_exit_2(tmp_path):
    scenario = make_case(tmp_path)
    base = tmp_path / "baselines"
    res = invoke("regress", scenario, "--baseline-dir", base)
    assert res.exit_code == 2 and "baseline not found" in res.output and "case.json" in res.output
    base.mkdir()
    (base / "case.json").write_text("{not json")
    res = invoke("regress", scenario, "--baseline-dir", base)
    assert res.exit_code == 2 and "corrupt baseline" in res.output
    invoke("baseline", "update", scenario, "--baseline-dir", base)
    tol = tmp_path / "tol.yaml"
    tol.write_text("rules:\n  'latency.*': fast\n")
    res = invoke("regress", scenario, "--baseline-dir", base, "--tolerances", tol)
    assert res.exit_code == 2 and "tol.yaml: rules.latency.*" in res.output and "'fast'" in res.output


def test_tolerance_parsing_patterns_percent_absolute_direction(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"default": "1%", "rules": {
        "latency_s.*.p99": "5%", "cost.usd_per_hour": 0.5, "throughput.*": {"rel": "2%", "direction": "both"}}}))
    t = load_tolerances(p)
    assert t.rule_for("latency_s.ttft.p99") == ("latency_s.*.p99", Tolerance(rel=0.05))
    assert t.rule_for("cost.usd_per_hour")[1] == Tolerance(abs=0.5)
    assert t.rule_for("throughput.requests_per_s")[1].direction == "both"
    assert t.rule_for("outcomes.completed") == ("default", Tolerance(rel=0.01))
    assert default_direction("cost.usd_per_request") == "increase"
    assert default_direction("service.goodput_per_s") == "decrease"
    # a rate is judged by its quantity: cost per successful task is a cost, tokens per dollar a yield
    assert default_direction("finance.unit_economics.usd_per_successful_task") == "increase"
    assert default_direction("tasks.coding.cost_usd.per_successful_task_fully_loaded") == "increase"
    assert default_direction("finance.unit_economics.tokens_per_usd") == "decrease"
    assert default_direction("latency_s.ttft.count") == "decrease"  # fewer requests measured is the worse way
    # direction-aware: a cost decrease passes, an increase fails, unless 'both' is asked
    base = {"cost.usd_per_hour": [10.0]}
    assert diff_metrics("s", base, {"cost.usd_per_hour": [8.0]}, t)[0].status == "improved"
    assert diff_metrics("s", base, {"cost.usd_per_hour": [10.4]}, t)[0].status == "ok"
    assert diff_metrics("s", base, {"cost.usd_per_hour": [10.6]}, t)[0].status == "regression"
    both = load_tolerances(None).model_copy(update={"rules": {"cost.*": Tolerance(rel=0.01, direction="both")}})
    assert diff_metrics("s", base, {"cost.usd_per_hour": [8.0]}, both)[0].status == "regression"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"rules": {"x": {"rel": "5%", "direction": "sideways"}}}))
    with pytest.raises(InputErrors) as info:
        load_tolerances(bad)
    assert "rules.x.direction" in str(info.value)


def test_junit_xml_shape_and_counts(tmp_path):
    scenario = make_case(tmp_path)
    base = tmp_path / "baselines"
    invoke("baseline", "update", scenario, "--baseline-dir", base)
    make_case(tmp_path, overhead_s=0.012)
    invoke("regress", scenario, "--baseline-dir", base, "--report-dir", tmp_path / "rep")
    root = ET.parse(tmp_path / "rep" / "regress.junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("tests")) == len(cases) == int(root.get("tests")) > 50
    assert int(suite.get("failures")) == len(failures) == int(root.get("failures")) > 0
    assert all(c.get("classname") == "case" and c.get("name") for c in cases)
    md = (tmp_path / "rep" / "regress.md").read_text()
    assert f"| case | {len(cases)} | {len(failures)} |" in md


def test_statistical_mode_ignores_seed_noise_but_flags_a_real_shift(tmp_path):
    scenario = make_case(tmp_path, seed=1)
    base = tmp_path / "baselines"
    tol = tmp_path / "tol.yaml"
    tol.write_text(yaml.safe_dump({"default": "2%", "rules": {"outcomes.*": "10%", "window.*": "10%"}}))
    invoke("baseline", "update", scenario, "--baseline-dir", base, "--replications", 5)
    noise = invoke("regress", scenario, "--baseline-dir", base, "--replications", 5, "--seed", 100, "--tolerances", tol)
    assert noise.exit_code == 0, noise.output
    make_case(tmp_path, overhead_s=0.011, seed=1)
    shifted = invoke("regress", scenario, "--baseline-dir", base, "--replications", 5, "--seed", 100, "--tolerances", tol)
    assert shifted.exit_code == 1 and "latency_s.tpot.mean" in shifted.output


def test_a_tolerance_rule_matching_no_metric_is_reported(tmp_path):
    scenario = make_case(tmp_path)
    base = tmp_path / "baselines"
    invoke("baseline", "update", scenario, "--baseline-dir", base)
    tol = tmp_path / "tol.yaml"
    tol.write_text(yaml.safe_dump({"rules": {"latency_s.ttft.*": "5%", "latncy_s.e2e.*": "5%"}}))
    res = invoke("regress", scenario, "--baseline-dir", base, "--tolerances", tol)
    assert res.exit_code == 0
    assert "rules.latncy_s.e2e.*: matches no metric" in res.output and "rules.latency_s.ttft" not in res.output


def test_many_null_metrics_raise_no_false_alarm_and_a_real_shift_is_found():
    """Benjamini-Hochberg over Welch p-values: 300 metrics that only changed seed (R=5 each) flag nothing; a
    metric shifted by 20 standard deviations is flagged among them."""
    import numpy as np

    from simfactory.regress.diff import significant_metrics

    rng = np.random.default_rng(7)
    base = {f"m{i}": list(rng.normal(100, 1, 5)) for i in range(300)}
    cur = {f"m{i}": list(rng.normal(100, 1, 5)) for i in range(300)}
    assert significant_metrics(base, cur) == set()
    cur["m0"] = list(rng.normal(120, 1, 5))
    assert significant_metrics(base, cur) == {"m0"}


def test_a_single_run_is_not_taken_as_exact_and_infinite_values_are_handled():
    import numpy as np

    from simfactory.regress.diff import significant_metrics, welch_p

    rng = np.random.default_rng(3)
    # one baseline run against ten current runs of the same distribution: false alarms near the 5% level, not 100%
    hits = sum(welch_p([float(rng.normal())], list(rng.normal(0, 1, 10))) < 0.05 for _ in range(400))
    assert hits < 40
    assert welch_p([1.0, float("inf")], [1.0, 2.0]) == 0.0 and welch_p([float("inf")] * 2, [float("inf")] * 2) == 1.0
    base = {f"m{i}": list(rng.normal(0, 1, 3)) for i in range(50)} | {"x": [1.0, float("inf")]}
    cur = {f"m{i}": list(rng.normal(0, 1, 3)) for i in range(50)} | {"x": [1.0, 2.0]}
    assert significant_metrics(base, cur) == {"x"}  # a move from infinity is flagged; the nulls are not


def test_default_tolerance_passes_small_moves_and_exact_is_opt_in(tmp_path):
    scenario = make_case(tmp_path)
    base = tmp_path / "baselines"
    invoke("baseline", "update", scenario, "--baseline-dir", base)
    make_case(tmp_path, overhead_s=0.01001)  # 0.1% slower steps: last-digit moves, no user would call it a regression
    res = invoke("regress", scenario, "--baseline-dir", base)
    assert res.exit_code == 0 and "3% per metric" in res.output
    assert invoke("regress", scenario, "--baseline-dir", base, "--exact").exit_code == 1
    both = invoke("regress", scenario, "--baseline-dir", base, "--exact", "--tolerances", tmp_path / "t.yaml")
    assert both.exit_code == 2
    make_case(tmp_path, overhead_s=0.005)  # twice as fast: better in every worse-is-higher metric, not a regression
    faster = invoke("regress", scenario, "--baseline-dir", base)
    assert faster.exit_code == 0, faster.output


def test_the_fidelity_records_evidence_is_not_a_metric_of_the_run():
    """A deployment's forecast evidence comes from the fidelity record, not from this run: refreshing the record
    must not fail every scenario's regression check (its own guard is tests/test_fidelity.py)."""
    from simfactory.regress.flatten import flatten

    s = {"deployments": [{"name": "a", "replicas": 2, "forecast_accuracy": {"points": 10, "mape": 0.05,
                                                                             "optimism": -0.01},
                          "prefill_forecast_accuracy": {"points": 10, "at_tp": {"points": 3}}}],
         "latency_s": {"ttft": {"p99": 0.2}}}
    assert flatten(s) == {"deployments.0.replicas": 2.0, "latency_s.ttft.p99": 0.2}
