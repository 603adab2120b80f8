"""`plan` against queueing theory (Erlang C) and its monotonicity; SLO parsing."""

from __future__ import annotations

import pytest
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.errors import InputError
from simfactory.plan.bounds import erlang_c_mean_wait_s, erlang_c_min_servers
from simfactory.plan.search import PlanSpace, min_replicas, plan
from simfactory.plan.slo import parse_slo
from simfactory.resolve import load_scenario

runner = CliRunner()
LAM = 8.0  # arrivals/s; service: geometric(20) steps of 0.05 s = 1 s mean, one sequence at a time (M/M/c-like)


@pytest.fixture(scope="module")
def mmc(tmp_path_factory):
    # one shared queue (balancer pull) makes the fleet an M/M/c queue rather than c queues behind a balancer
    doc = scenario_doc(replicas=1, rate=LAM, output_tokens={"kind": "geometric", "mean": 20}, horizon_s=1500,
                       warmup_s=100, balancer="pull")
    path = write_case(tmp_path_factory.mktemp("mmc"), doc, step_time={"overhead_s": 0.05})
    return load_scenario(path), str(path)


def _plan(mmc, rate: float, slo: str):
    sc, path = mmc
    return plan(sc, path, rate, parse_slo(slo), PlanSpace(max_replicas=40), replications=3, max_rate=False)


def test_plan_finds_the_erlang_c_minimum(mmc):
    target = 0.13  # M/M/c mean wait: 0.205 s with 10 servers, 0.082 s with 11
    assert erlang_c_mean_wait_s(10, LAM, 1.0) > target > erlang_c_mean_wait_s(11, LAM, 1.0)
    r = _plan(mmc, LAM, f"queue_mean<{target}s")
    assert r.chosen is not None and r.chosen.min_replicas == erlang_c_min_servers(LAM, 1.0, target) == 11
    simulated = {e.replicas: e for e in r.chosen.evaluations}
    assert not simulated[10].met and simulated[11].met  # the answer is checked by simulation, not assumed
    assert r.chosen.lower_bound == 9  # stability: c > lambda / mu
    assert 8 in simulated and not simulated[8].met  # one below the bound is simulated too: the bound is checked
    assert r.chosen.below_bound is simulated[8]


def test_plan_is_monotone_in_load_and_slo(mmc):
    base = _plan(mmc, LAM, "queue_mean<0.13s").chosen
    looser = _plan(mmc, LAM, "queue_mean<0.5s").chosen
    lighter = _plan(mmc, LAM / 2, "queue_mean<0.13s").chosen
    assert looser.min_replicas <= base.min_replicas and looser.best.usd_per_hour <= base.best.usd_per_hour
    assert lighter.min_replicas <= base.min_replicas and lighter.best.usd_per_hour <= base.best.usd_per_hour


def test_min_replicas_bisection_counts():
    calls = []

    def check(c):
        calls.append(c)
        return c >= 37

    assert min_replicas(check, 5, 5, 1000) == 37
    assert len(calls) <= 2 * 8  # doubling then bisection: logarithmic
    assert min_replicas(lambda c: False, 1, 1, 16) is None


@pytest.mark.parametrize("text, message", [
    ("ttft<2s", "give a statistic"),
    ("latency_p99<2s", "unknown metric 'latency'"),
    ("ttft_p99=2s", "expected METRIC_STAT<VALUE"),
    ("ttft_p99>2s", "a latency target is an upper bound"),
    ("e2e_p95<0s", "a latency target is an upper bound above 0"),
    ("slo_attainment>1.5", "attainment is a lower bound in [0, 1]"),
    ("slo_attainment<0.9", "attainment is a lower bound"),
])
def test_bad_slo_is_rejected(text, message):
    with pytest.raises(InputError) as e:
        parse_slo(text)
    assert message in str(e.value)


def test_parse_units():
    t = parse_slo("ttft_p99<200ms, slo_attainment>0.99")
    assert (t[0].metric, t[0].stat, t[0].op, t[0].value) == ("ttft", "p99", "<", 0.2)
    assert (t[1].metric, t[1].op, t[1].value) == ("slo_attainment", ">", 0.99)


def test_plan_cli_writes_ranked_table_and_pareto(tmp_path):
    doc = scenario_doc(replicas=1, rate=2.0, output_tokens={"kind": "fixed", "value": 20}, horizon_s=200)
    path = write_case(tmp_path, doc, step_time={"overhead_s": 0.05})
    space = tmp_path / "space.yaml"
    space.write_text("candidates:\n  - {name: a, overrides: {deployments.dep.max_num_seqs: 1}}\n"
                     "  - {name: b, overrides: {deployments.dep.max_num_seqs: 4}}\n")
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<3s", "--space", str(space),
                              "-R", "2", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "Cheapest fleet meeting e2e_p99<3s" in res.output
    for f in ("plan.md", "plan.csv", "plan_points.csv", "plan.json", "pareto.png", "slo_vs_load.png"):
        assert (tmp_path / "p" / f).exists()
    bad = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e<3s", "--out", str(tmp_path / "q")])
    assert bad.exit_code == 2 and "error: --slo" in bad.output


def test_a_target_rate_of_zero_is_a_flag_error(tmp_path):
    from typer.testing import CliRunner

    from simfactory.cli import app
    from simfactory.paths import SCENARIOS_DIR

    res = CliRunner().invoke(app, ["plan", str(SCENARIOS_DIR / "default.yaml"), "--target-rate", "0", "--slo",
                                   "ttft_p99<2s", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and res.output.strip() == "error: --target-rate: must be a rate > 0 per second, got 0"


def test_a_latency_percentile_counts_requests_capacity_lost_as_missing_it():
    import math

    from simfactory.plan.slo import SloTarget

    s = {"outcomes": {"completed": 980, "shed": 20}, "latency_s": {"e2e": {"p99": 2.0, "p90": 1.5}}}
    assert SloTarget("e2e", "p99", "<", 5.0).read(s) == math.inf  # 2% shed: the p99 is beyond any target
    assert SloTarget("e2e", "p90", "<", 5.0).read(s) == 1.5  # 2% is within the 10% a p90 leaves out
    s["outcomes"] = {"completed": 980, "rejected_rate_limit": 20}  # policy, not capacity: left out
    assert SloTarget("e2e", "p99", "<", 5.0).read(s) == 2.0


def test_thin_percentiles_are_recognised():
    from simfactory.plan.slo import SloTarget, thin_samples

    t = SloTarget("task", "p99", "<", 600.0)
    summaries = [{"tasks": {"x": {"latency_s": {"count": 23}}}}, {"tasks": {"x": {"latency_s": {"count": 30}}}}]
    assert t.samples(summaries) == 23 and thin_samples(t, 23)
    assert not thin_samples(t, 1000) and not thin_samples(SloTarget("ttft", "mean", "<", 1.0), 5)
    assert not thin_samples(SloTarget("ttft", "p90", "<", 1.0), 100)  # exactly the 100 a p90 wants


def test_a_deployment_with_reserved_replicas_is_planned_from_one_more_than_it_reserves(tmp_path):
    from typer.testing import CliRunner

    from simfactory.cli import app
    from simfactory.paths import SCENARIOS_DIR

    res = CliRunner().invoke(app, ["plan", str(SCENARIOS_DIR / "service-classes.yaml"), "--target-rate", "10", "--slo",
                                   "ttft_p99<2s", "-R", "2", "--no-max-rate", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "Cheapest fleet" in res.output and "as-is with 1 replicas" not in res.output


@pytest.mark.parametrize("override, says", [
    ("deployments.dep.replicas", "replica count of the deployment it sizes"),
    ("deployments.0.replicas", "replica count of the deployment it sizes"),
    ("traffic.arrival.rate_per_s", "arrival rate"),
])
def test_plan_refuses_overrides_of_what_it_sets_itself(tmp_path, override, says):
    doc = scenario_doc(replicas=1, rate=2.0, output_tokens={"kind": "fixed", "value": 20}, horizon_s=100)
    path = write_case(tmp_path, doc, step_time={"overhead_s": 0.05})
    space = tmp_path / "space.yaml"
    space.write_text(f"candidates:\n  - {{name: a, overrides: {{{override}: 3}}}}\n")
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<3s", "--space", str(space),
                              "-R", "1", "--no-max-rate", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {space}: candidates[a].{override}: plan sets ") and says in res.output
    assert not (tmp_path / "p").exists()


def test_plan_checks_every_candidate_before_the_first_simulation(tmp_path):
    """A bad value in the last candidate is refused before any candidate is evaluated (no progress lines)."""
    doc = scenario_doc(replicas=1, rate=2.0, output_tokens={"kind": "fixed", "value": 20}, horizon_s=100)
    path = write_case(tmp_path, doc, step_time={"overhead_s": 0.05})
    space = tmp_path / "space.yaml"
    space.write_text("candidates:\n  - {name: good, overrides: {deployments.dep.max_num_seqs: 4}}\n"
                     "  - {name: bad, overrides: {deployments.dep.max_num_seqs: -1}}\n")
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<3s", "--space", str(space),
                              "-R", "1", "--no-max-rate", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {space}: candidates[bad]"), res.output
    assert "replicas at" not in res.output


def test_a_plan_grid_beyond_the_run_limit_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="narrow the grid"):
        PlanSpace(grid={"a": list(range(1000)), "b": list(range(1000))})


def test_a_chart_whose_legend_outgrows_it_saves_without_a_terminal_warning(tmp_path):
    """`plan` used to print matplotlib's "Tight layout not applied" when its Pareto legend grew past the axes."""
    import warnings

    from simfactory.report.finance import plt, save_chart

    fig, ax = plt.subplots(figsize=(3, 1.2))
    for i in range(40):
        ax.plot([0, 1], [i, i + 1], label=f"candidate {i} with a long descriptive name (meets every SLO)")
    ax.set_title("a title long enough to crowd the axes " * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_chart(fig, ax, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_plan_reports_its_phases_in_order_and_quiet_silences_the_run_lines(tmp_path):
    from simfactory.cli.plan import PlanProgress
    from simfactory.plan.search import PlanSpace, plan
    from simfactory.plan.slo import parse_slo
    from simfactory.resolve import load_scenario

    doc = scenario_doc(replicas=1, rate=2.0, output_tokens={"kind": "fixed", "value": 20}, horizon_s=120)
    path = write_case(tmp_path, doc, step_time={"overhead_s": 0.05})
    space = PlanSpace(candidates=[{"name": "a", "overrides": {"deployments.dep.max_num_seqs": 1}},
                                  {"name": "b", "overrides": {"deployments.dep.max_num_seqs": 4}}])
    phases, runs = [], []
    plan(load_scenario(path), str(path), 2.0, parse_slo("e2e_p99<3s"), space, 2, on_eval=runs.append,
         on_phase=lambda name, k, of: phases.append((name, k, of)))
    assert phases == [("size", 1, 2), ("size", 2, 2), ("max_rate", 1, 1), ("validate", 1, 1)]
    assert len(runs) >= 4  # every sizing and max-load run is reported as it ends
    p = PlanProgress(quiet=False)
    p.phase("size", 2, 3)
    p.runs, p.runs_at_phase = 5, 4
    assert p._runs_left("size", 2, 3) == 4 * 2 - 1 + 12  # 2 candidates at ~4 runs, 1 done, max load 8, validation 4
    res = runner.invoke(app, ["plan", str(path), "--target-rate", "2", "--slo", "e2e_p99<3s", "-R", "2", "--quiet",
                              "--out", str(tmp_path / "p")])
    assert res.exit_code == 0 and "replicas at" not in res.output and "Cheapest fleet" in res.output
