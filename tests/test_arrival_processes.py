"""Weibull renewal and rate-schedule arrivals, per-class arrival processes, measured-quantile lengths, truncated
lognormals and rank-correlated lengths: closed forms and invariants, plus the errors a user sees."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from scipy import stats as sps
from typer.testing import CliRunner

from simfactory.cli.main import app
from simfactory.config.distributions import LogNormal, Quantiles, check_counts, sample_joint_tokens
from simfactory.config.scenario import ScheduleArrivals, WeibullArrivals
from simfactory.errors import InputErrors
from simfactory.resolve import load_and_resolve
from simfactory.sim.streams import RandomStreams
from simfactory.sim.traffic import arrival_schedule, arrival_times, weibull_shape_for_cv
from conftest import scenario_doc, write_case

runner = CliRunner()


@pytest.mark.parametrize("shape", [0.4, 1.0, 2.5])
def test_weibull_gaps_have_the_closed_form_rate_and_cv(shape):
    t = arrival_times(WeibullArrivals(rate_per_s=50.0, shape=shape), 4000.0, np.random.default_rng(3))
    g = np.diff(t)
    cv = math.sqrt(math.gamma(1 + 2 / shape) / math.gamma(1 + 1 / shape) ** 2 - 1)
    assert len(t) / 4000.0 == pytest.approx(50.0, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.06)
    assert weibull_shape_for_cv(cv) == pytest.approx(shape, rel=1e-6)


@pytest.mark.parametrize("gaps", ["gamma", "weibull"])
def test_schedule_holds_each_windows_rate_and_the_cv_inside(gaps):
    process = ScheduleArrivals(window_s=100.0, rates_per_s=[2.0, 0.0, 20.0], gaps=gaps, cv=[1.0, 1.0, 3.0])
    t = arrival_times(process, 3000.0, np.random.default_rng(5))  # the 3 windows repeat 10 times
    counts = np.bincount((t // 100).astype(int), minlength=30).reshape(10, 3)
    assert counts[:, 1].sum() == 0
    assert counts[:, 0].mean() == pytest.approx(200, rel=0.06)
    assert counts[:, 2].mean() == pytest.approx(2000, rel=0.1)
    busy = t[(t // 100).astype(int) % 3 == 2]
    g = np.diff(busy)[np.diff((busy // 100).astype(int)) == 0]
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.15)
    once = arrival_times(process.model_copy(update={"repeat": False}), 3000.0, np.random.default_rng(5))
    assert once.max() < 300.0


def test_schedule_refuses_cvs_that_do_not_match_its_windows():
    with pytest.raises(ValueError, match="cv has 1 entries but rates_per_s has 2"):
        ScheduleArrivals(window_s=1, rates_per_s=[1, 2], cv=[1.0])
    with pytest.raises(ValueError, match="every rate is 0"):
        ScheduleArrivals(window_s=1, rates_per_s=[0, 0])


def test_quantile_lengths_reproduce_their_quantiles_and_refuse_disorder():
    q = Quantiles(values=[1, 10, 100, 1000, 5000])
    x = q.sample(np.random.default_rng(1), 200_000)
    assert np.quantile(x, [0.25, 0.5, 0.75]) == pytest.approx([10, 100, 1000], rel=0.03)
    assert x.min() >= 1 and x.max() <= 5000
    assert x.mean() == pytest.approx(q.mean(), rel=0.02)
    with pytest.raises(ValueError, match=r"values\[2\] = 5 < values\[1\] = 10"):
        Quantiles(values=[1, 10, 5])
    with pytest.raises(ValueError, match="at least 1"):
        check_counts(Quantiles(values=[0, 10]), "token counts", 1, 100)


def test_truncated_lognormal_has_no_pile_up_at_its_bound_and_the_mean_it_states():
    clamped = LogNormal(median=500, sigma=1.2, min=1, max=2000)
    truncated = clamped.model_copy(update={"truncate": True})
    rng = np.random.default_rng(2)
    a, b = clamped.sample(rng, 100_000), truncated.sample(rng, 100_000)
    assert (a == 2000).mean() > 0.1  # clamping piles the tail at the bound
    assert (b >= 1999.5).mean() < 0.001 and b.max() <= 2000
    assert b.mean() == pytest.approx(truncated.mean(), rel=0.02)
    with pytest.raises(ValueError, match="truncate: give min and/or max"):
        LogNormal(median=5, sigma=1, truncate=True)


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.8])
def test_copula_pairs_lengths_with_the_rank_correlation_and_keeps_each_marginal(rho):
    inp, out = LogNormal(median=800, sigma=0.9), Quantiles(values=[1, 20, 150, 600, 4000])
    a, b = sample_joint_tokens(inp, out, rho, np.random.default_rng(1), np.random.default_rng(2), 50_000)
    assert sps.spearmanr(a, b).statistic == pytest.approx(rho, abs=0.02)
    assert np.median(a) == pytest.approx(800, rel=0.03) and np.median(b) == pytest.approx(150, rel=0.03)


def _two_classes(tmp_path, second: dict, **first) -> dict:
    doc = scenario_doc(rate=5.0, horizon_s=400)
    base = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = [{**base, **first}, {**base, "name": "b", **second}]
    return doc


def test_each_class_can_run_its_own_arrival_process_at_a_rate_scale(tmp_path):
    own = {"process": "poisson", "rate_per_s": 2.0}
    doc = _two_classes(tmp_path, {"arrival": own, "rate_scale": 3.0})
    rs = load_and_resolve(write_case(tmp_path, doc))
    times, cls, _ = arrival_schedule(rs, RandomStreams(4))
    assert (cls == 0).sum() / 400 == pytest.approx(5.0, rel=0.08)  # traffic.arrival, now its alone
    assert (cls == 1).sum() / 400 == pytest.approx(6.0, rel=0.08)  # 2/s x 3
    assert np.all(np.diff(times) >= 0)
    again, _, _ = arrival_schedule(rs, RandomStreams(4))
    assert np.array_equal(times, again)


def test_class_arrival_errors_name_the_field(tmp_path):
    doc = _two_classes(tmp_path, {"arrival": "workload"})
    with pytest.raises(InputErrors) as e:
        load_and_resolve(write_case(tmp_path / "a", doc))
    assert "traffic.classes[1].arrival" in str(e.value) and "names no workload file" in str(e.value)
    doc = _two_classes(tmp_path, {"rate_scale": 2.0})
    with pytest.raises(InputErrors) as e:
        load_and_resolve(write_case(tmp_path / "b", doc))
    assert "rate_scale scales the class's own arrival process" in str(e.value)
    doc = scenario_doc(horizon_s=10)
    doc["traffic"]["classes"][0]["arrival"] = {"process": "schedule", "window_s": 1e-9, "rates_per_s": [1.0]}
    with pytest.raises(InputErrors) as e:
        load_and_resolve(write_case(tmp_path / "c", doc))
    assert "traffic.classes[0].arrival.window_s" in str(e.value)


def _bursty_trace(path, n_windows: int = 20) -> None:
    rng = np.random.default_rng(11)
    rows, start = [], 0.0
    for rate in rng.choice([0.5, 3.0], size=n_windows):
        t = start + np.cumsum(rng.gamma(0.5, 1 / (rate * 0.5), int(rate * 60)))
        rows += [(x, int(rng.integers(50, 400)), int(rng.integers(5, 60))) for x in t[t < start + 30]]
        start += 30
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    lines += [f"{a:.6f},m,{i},{o},{i + o},API log" for a, i, o in rows]
    path.write_text("\n".join(lines) + "\n")


def test_trace_compare_prints_replay_and_fit_and_gates_on_the_tolerance(tmp_path):
    _bursty_trace(tmp_path / "t.csv")
    root = tmp_path / "case"
    write_case(root, scenario_doc(max_num_seqs=16), {"overhead_s": 0.002, "s_per_prefill_token": 0.0001, "s_per_decode_seq": 0.0005})
    args = ["trace", "compare", str(tmp_path / "t.csv"), "-f", "burstgpt", "-s", str(root / "scenarios" / "case.yaml"),
            "--speedup", "1", "--seeds", "2", "--json", str(tmp_path / "c.json")]
    res = runner.invoke(app, args + ["--tolerance", "5"])
    assert res.exit_code == 0, res.output
    assert "ttft p99" in res.output and "largest error" in res.output
    loads = yaml.safe_load((tmp_path / "c.json").read_text())["loads"]
    assert loads[0]["speedup"] == 1 and loads[0]["requests"][0] > 100
    strict = runner.invoke(app, args + ["--tolerance", "0", "--force"])
    assert strict.exit_code == 1 and "outside the 0% tolerance" in strict.output
    bad = runner.invoke(app, args[:-2] + ["--speedup", "-1"])
    assert bad.exit_code == 2


def test_batched_timestamps_are_spread_over_their_tick_and_nothing_else_moves():
    from simfactory.traces.stats import batch_tick_s, spread_batches

    batched = np.repeat(np.arange(0.0, 300.0, 3.0), 10)  # 10 requests per 3 s tick, as Mooncake's trace records them
    assert batch_tick_s(batched) == pytest.approx(3.0)
    spread = spread_batches(batched, np.random.default_rng(1))
    assert np.all((spread >= batched) & (spread < batched + 3.0))
    assert (np.diff(np.sort(spread)) == 0).mean() == 0
    smooth = np.cumsum(np.random.default_rng(2).exponential(1.0, 500))
    assert batch_tick_s(smooth) == 0.0 and np.array_equal(spread_batches(smooth, np.random.default_rng(1)), smooth)


def test_plan_target_rate_scales_a_schedule_and_refuses_a_class_with_its_own_process():
    from simfactory.plan.search import set_rate

    doc = {"traffic": {"arrival": {"process": "schedule", "window_s": 10, "rates_per_s": [1.0, 3.0]},
                       "classes": [{"name": "a"}]}}
    set_rate(doc, 6.0)
    assert doc["traffic"]["arrival"]["rates_per_s"] == [3.0, 9.0]  # mean 6, the same 1:3 swing
    doc["traffic"]["classes"].append({"name": "b", "arrival": {"process": "poisson", "rate_per_s": 1}})
    with pytest.raises(Exception, match=r"traffic.classes\[1\].arrival"):
        set_rate(doc, 6.0)


def test_trace_compare_on_a_lengths_only_trace_uses_the_scenarios_arrivals(tmp_path):
    """vllm-bench / sharegpt rows have no timestamps: replay and fit both run under traffic.arrival (k x faster), so
    what is compared is the lengths and their pairing."""
    import json

    rng = np.random.default_rng(3)
    inp = rng.integers(20, 400, 300).tolist()
    out = [max(1, int(i / 8 + rng.integers(0, 20))) for i in inp]  # output grows with input
    (tmp_path / "b.json").write_text(json.dumps({"backend": "vllm", "input_lens": inp, "output_lens": out}))
    root = tmp_path / "case"
    write_case(root, scenario_doc(rate=3.0, horizon_s=60, max_num_seqs=16),
               {"overhead_s": 0.002, "s_per_prefill_token": 0.0001, "s_per_decode_seq": 0.0005})
    res = runner.invoke(app, ["trace", "compare", str(tmp_path / "b.json"), "-f", "vllm-bench", "-s",
                              str(root / "scenarios" / "case.yaml"), "--speedup", "1", "--speedup", "2", "--seeds", "2",
                              "--tolerance", "5", "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    loads = json.loads((tmp_path / "c.json").read_text())["loads"]
    assert [x["speedup"] for x in loads] == [1, 2]
    assert loads[1]["requests"][0] == pytest.approx(2 * loads[0]["requests"][0], rel=0.2)  # 2x the load
    closed = scenario_doc(rate=3.0, horizon_s=60)
    closed["traffic"]["arrival"] = {"process": "closed", "concurrency": 2}
    write_case(tmp_path / "closed", closed)
    bad = runner.invoke(app, ["trace", "compare", str(tmp_path / "b.json"), "-f", "vllm-bench", "-s",
                              str(tmp_path / "closed" / "scenarios" / "case.yaml"), "--speedup", "1"])
    assert bad.exit_code == 2 and "traffic.arrival" in bad.output


def test_a_fitted_schedule_gives_no_sliver_window_a_huge_rate():
    """The trace's last arrival used to sit alone in a sliver of a window: its rate (count / sliver) was played for a
    whole window, and the schedule's mean rate was many times the trace's."""
    from simfactory.traces.fit import fit_arrivals

    rng = np.random.default_rng(0)
    parts = [w * 60 + np.sort(rng.uniform(0, 60, rng.poisson((2 if w % 2 == 0 else 20) * 60))) for w in range(20)]
    t = np.concatenate(parts)
    t = np.concatenate(([0.0], t[t > 0], [1200.00001]))
    process = fit_arrivals(t).chosen.process
    rates = process["rates_per_s"]
    assert max(rates) < 3 * 20  # no window far above the busiest real minute
    assert sum(rates) / len(rates) == pytest.approx(len(t) / 1200.0, rel=0.05)


def test_a_truncated_lognormal_without_spread_or_mass_states_the_mean_it_draws():
    for d in (LogNormal(median=1000, sigma=0.1, max=10, truncate=True),
              LogNormal(median=100, sigma=0, min=10, max=50, truncate=True)):
        assert d.mean() == pytest.approx(d.sample(np.random.default_rng(0), 1000).mean(), rel=1e-6)


@pytest.mark.parametrize("dist", [
    LogNormal(median=379.8, sigma=1.0, min=1, max=512),  # answers capped by max_tokens: 38% of draws on the cap
    LogNormal(median=100, sigma=1.5, min=20, max=300),  # both tails clamped
    LogNormal(median=50, sigma=0.5),  # no bounds
    LogNormal(median=223, sigma=0.9, min=74, max=602, truncate=True),
    LogNormal(median=50, sigma=0, min=60, max=70),  # no spread, raised to its floor
])
def test_a_lognormal_states_the_mean_of_the_draws_it_makes_clamped_or_truncated(dist):
    """A clamped lognormal's mean is the clamped draws' (the bounds' piles included), not the unclipped
    distribution's: a suite that states its mean output of answers cut at max_tokens is held to what is drawn."""
    drawn = dist.sample(np.random.default_rng(0), 2_000_000).mean()
    assert dist.mean() == pytest.approx(drawn, rel=2e-3)
    if dist.max is not None and not dist.truncate and dist.sigma > 0:
        unclipped = dist.median * np.exp(dist.sigma ** 2 / 2)
        assert dist.mean() < unclipped  # clamping the upper tail lowers it
