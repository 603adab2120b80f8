"""Answer quality: the quality table (quality/scores.yaml), the mapping from benchmark score to an LLM step's failure
odds, the summary's acceptance rates and cost per successful task, and the shipped scenario pairs."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import agent_doc, agent_scenario, scenario_doc, write_case
from typer.testing import CliRunner

import simfactory
from simfactory.cli import app
from simfactory.config.loader import load_model_file
from simfactory.config.profile import ModelCatalog
from simfactory.config.quality import QualityTable
from simfactory.metrics.quality import wilson_interval
from simfactory.paths import PROFILES_DIR, QUALITY_DIR, SCENARIOS_DIR
from simfactory.plan.shares import tier_attempts
from simfactory.quality import error_ratio_fail_p, logistic_fail_p, mapped_fail_p
from simfactory.resolve import load_and_resolve
from simfactory.schemas import schema

runner = CliRunner()
FIXED = {"kind": "fixed", "value": 10}
REF = {"model": "llama-3.1-70b", "dtype": "bf16"}
Z_999 = 3.2905  # two-sided 99.9% normal quantile: a deterministic seed, and a bound that chance rarely crosses


def table(score_8b: float = 80.0, score_70b: float = 90.0, **extra_entry: Any) -> dict[str, Any]:
    entry = {"model": "llama-3.1-8b", "dtype": "bf16", "scores": {"bench": score_8b}, "source": "test",
             "as_of": "2026-11", **extra_entry}
    return {"benchmarks": [{"name": "bench", "description": "test", "source": "test"}],
            "entries": [entry, {"model": "llama-3.1-70b", "dtype": "bf16", "scores": {"bench": score_70b},
                                "source": "test", "as_of": "2026-11"}]}


def llm(fail_p: float = 0.2, mapped: bool = True, **quality: Any) -> dict[str, Any]:
    """An LLM step with fail_p; `mapped`: with a quality block (benchmark 'bench', reference 70B BF16, + quality)."""
    step = {"type": "llm", "name": "answer", "model": "m", "input_tokens": FIXED, "output_tokens": FIXED,
            "fail_p": fail_p}
    if mapped:
        step["quality"] = {"benchmark": "bench", "reference": REF, **quality}
    return step


def write(root: Path, steps: list[dict[str, Any]], scores: dict[str, Any] | None, rate: float = 20.0,
          horizon_s: float = 100.0) -> Path:
    doc = agent_scenario(rate=rate, horizon_s=horizon_s, max_num_seqs=256)
    path = write_case(root, doc, workloads={"agent": agent_doc(steps)})
    if scores is not None:
        (root / "quality").mkdir(exist_ok=True)
        (root / "quality" / "scores.yaml").write_text(yaml.safe_dump(scores))
    return path


def quality_of(path: Path) -> dict[str, Any]:
    return simfactory.run(load_and_resolve(path)).summary["quality"]


# ---- the mapping in closed form -----------------------------------------------------------------------------------
def test_error_ratio_scales_failures_by_the_benchmark_error_rates():
    assert error_ratio_fail_p(0.1, 90.0, 95.0) == pytest.approx(0.1 * 10 / 5)
    assert error_ratio_fail_p(0.1, 95.0, 95.0) == 0.1  # exactly the reference's at its own score
    assert error_ratio_fail_p(0.6, 50.0, 90.0) == 1.0  # capped
    assert error_ratio_fail_p(0.1, 100.0, 90.0) == 0.0  # a perfect model never fails


def test_logistic_shifts_log_odds_by_the_slope_times_the_score_difference():
    p = logistic_fail_p(0.2, 85.0, 90.0, 0.1)
    assert math.log((1 - p) / p) == pytest.approx(math.log(0.8 / 0.2) + 0.1 * (85.0 - 90.0))
    assert logistic_fail_p(0.2, 90.0, 90.0, 0.1) == pytest.approx(0.2)
    assert logistic_fail_p(0.0, 10.0, 90.0, 1.0) == 0.0 and logistic_fail_p(1.0, 99.0, 10.0, 1.0) == 1.0
    assert logistic_fail_p(0.5, 100.0, 0.0, 10.0) == 0.0  # log-odds of +-1000: no overflow either way
    assert logistic_fail_p(0.5, 0.0, 100.0, 10.0) == 1.0


@pytest.mark.parametrize("mapping,slope", [("error_ratio", None), ("logistic", 0.05)])
def test_a_weaker_score_never_lowers_the_failure_probability(mapping, slope):
    scores = [100.0 * i / 50 for i in range(50)]
    fails = [mapped_fail_p(0.15, s, 80.0, mapping, slope) for s in scores]
    assert all(a >= b for a, b in zip(fails, fails[1:]))
    assert fails[0] > 0.15 > fails[-1]


# ---- the simulation against the mapping ---------------------------------------------------------------------------
def test_a_single_steps_acceptance_matches_the_mapped_probability(tmp_path):
    """One LLM step, fail_p 0.2 on a reference scoring 90; the answering 8B scores 80: error ratio 20/10 -> 0.4."""
    q = quality_of(write(tmp_path, [llm(0.2)], table(80.0, 90.0)))
    (row,) = q["steps"]
    assert row["mapped_success_p"] == pytest.approx(1 - 0.2 * 20 / 10)
    n, ok = row["answers"], row["accepted"]
    assert n > 1000
    lo, hi = wilson_interval(ok, n, Z_999)
    assert lo <= 0.6 <= hi, (ok, n)
    lo95, hi95 = wilson_interval(ok, n)
    assert row["success_rate_ci95"] == pytest.approx([lo95, hi95])
    (dec,) = q["decomposition"].values()
    assert dec["task_success_rate"] == pytest.approx(ok / n, abs=0.02)  # one call per task, a few unmeasured


def test_a_weaker_model_succeeds_less_often(tmp_path):
    """The same run (same seed, same draws) with the answering model scored lower: fewer answers accepted."""
    rates = []
    for i, score in enumerate((88.0, 80.0, 70.0)):
        q = quality_of(write(tmp_path / str(i), [llm(0.1)], table(score, 90.0), rate=5.0))
        rates.append(q["steps"][0]["success_rate"])
    assert rates[0] > rates[1] > rates[2]


def test_fail_p_alone_runs_as_before_and_reads_no_table(tmp_path):
    """Without a quality block nothing reads the table and no quality section appears; with a block whose reference
    is the answering (model, dtype) itself, every task ends exactly as with fail_p alone (same draws)."""
    rs = load_and_resolve(write(tmp_path / "a", [llm(0.3, mapped=False)], table(80.0, 90.0)))
    plain = simfactory.run(rs)
    step = llm(0.3)
    step["quality"]["reference"] = {"model": "llama-3.1-8b", "dtype": "bf16"}
    mapped = simfactory.run(load_and_resolve(write(tmp_path / "b", [step], table(80.0, 90.0))))
    assert rs.quality is None and "quality" not in plain.summary
    assert not any(Path(f).name == "scores.yaml" for f in rs.input_hashes)
    assert list(plain.tasks["outcome"]) == list(mapped.tasks["outcome"])
    assert plain.summary["tasks"] == mapped.summary["tasks"]
    assert mapped.summary["quality"]["steps"][0]["mapped_success_p"] == pytest.approx(0.7)


def test_cost_per_successful_task_is_cost_over_successes(tmp_path):
    steps = [{"type": "retry", "name": "r", "max_attempts": 2, "steps": [llm(0.3), llm(0.3)]}]
    m = simfactory.run(load_and_resolve(write(tmp_path, steps, table(70.0, 90.0), rate=5.0)))
    (cls, d), = m.summary["quality"]["decomposition"].items()
    t = m.tasks[m.tasks["measured"]]
    ok = t["outcome"].isin(["completed", "degraded"])
    assert d["tasks"] == len(t) and d["successful_tasks"] == int(ok.sum()) and 0 < d["successful_tasks"] < d["tasks"]
    assert d["usd_per_successful_task_attributed"] == pytest.approx(t["usd_total"].sum() / ok.sum())
    # one class, no tools: the fully loaded cost is the fleet's cost over the window, spread over the successes
    window_h = (m.summary["window"]["horizon_s"] - m.summary["window"]["warmup_s"]) / 3600.0
    assert d["usd_fully_loaded"] == pytest.approx(m.summary["cost"]["usd_per_hour"] * window_h)
    assert d["usd_per_successful_task_fully_loaded"] == pytest.approx(d["usd_fully_loaded"] / d["successful_tasks"])
    assert d["usd_per_successful_task_fully_loaded"] == pytest.approx(d["usd_per_task_fully_loaded"]
                                                                      / d["task_success_rate"])
    assert d["on_successful_tasks_usd_per_success"] + d["on_failed_tasks_usd_per_success"] == pytest.approx(
        d["usd_per_successful_task_fully_loaded"])
    assert d["failed_tasks_share_of_cost"] == pytest.approx(t.loc[~ok, "usd_total"].sum() / t["usd_total"].sum())
    assert 0 < d["rejected_answers_share_of_cost"] < 1


# ---- bad input: one line, exit 2 ------------------------------------------------------------------------------------
def refused(path: Path, file: Path, field: str, contains: str = "", commands: tuple[str, ...] = ("validate",)) -> str:
    """Each command refuses the case in one line `error: FILE: FIELD: reason`, exit 2, nothing written."""
    for cmd in commands:
        args = [cmd, str(path)] + (["--out", str(path.parent / "out"), "--quiet", "--no-plots"] if cmd == "run" else [])
        res = runner.invoke(app, args)
        assert "Traceback" not in res.output, res.output
        assert res.exit_code == 2, (cmd, res.exit_code, res.output)
        lines = [x for x in res.output.splitlines() if x.strip()]
        assert len(lines) == 1, res.output
        assert lines[0].startswith(f"error: {file}: {field}: "), lines[0]
        assert contains in lines[0], lines[0]
        assert not (path.parent / "out").exists()
    return lines[0]


def test_a_deployment_whose_model_or_precision_is_not_in_the_table_is_refused(tmp_path):
    path = write(tmp_path / "a", [llm()], table())
    doc = yaml.safe_load(path.read_text())
    doc["deployments"][0]["dtype"] = "fp8"
    path.write_text(yaml.safe_dump(doc))
    refused(path, path, "deployments[0]", "no quality entry for model 'llama-3.1-8b' at dtype fp8", ("validate", "run"))
    other = table()
    other["entries"][0]["model"] = "llama-3.2-1b"
    path = write(tmp_path / "b", [llm()], other)
    refused(path, path, "deployments[0]", "no quality entry for model 'llama-3.1-8b' at dtype bf16")


@pytest.mark.parametrize("quality,field,contains", [
    ({"reference": {"model": "nope-7b", "dtype": "bf16"}}, "steps[0].quality.reference", "no quality entry"),
    ({"reference": {"model": "llama-3.1-70b", "dtype": "int4"}}, "steps[0].quality.reference", "at dtype int4"),
    ({"benchmark": "arena"}, "steps[0].quality.benchmark", "unknown benchmark 'arena'"),
])
def test_an_unknown_reference_or_benchmark_is_refused_in_the_workload(tmp_path, quality, field, contains):
    step = llm()
    step["quality"].update(quality)
    path = write(tmp_path, [step], table())
    refused(path, tmp_path / "workloads" / "agent.yaml", field, contains)


def test_without_a_table_beside_the_scenario_the_shipped_one_is_read(tmp_path):
    """The shipped table has no benchmark 'bench': the step naming it is refused, naming the shipped file."""
    path = write(tmp_path, [llm()], None)
    line = refused(path, tmp_path / "workloads" / "agent.yaml", "steps[0].quality.benchmark", "unknown benchmark")
    assert str(QUALITY_DIR / "scores.yaml") in line


@pytest.mark.parametrize("value,contains", [
    (float("nan"), "finite"), (float("inf"), "finite"), (-0.1, "greater than 0"), (50.0, "less than or equal"),
    (1e300, "beyond"),
    ("steep", "number"), (True, "number"),
])
def test_hostile_logit_per_point_is_refused(tmp_path, value, contains):
    path = write(tmp_path, [llm(mapping="logistic", logit_per_point=value)], table())
    refused(path, tmp_path / "workloads" / "agent.yaml", "steps[0].quality.logit_per_point", contains)


@pytest.mark.parametrize("quality,field", [
    ({"mapping": "logistic"}, "steps[0].quality"),
    ({"logit_per_point": 0.1}, "steps[0].quality"),
    ({"mapping": "linear"}, "steps[0].quality.mapping"),
    ({"extra": 1}, "steps[0].quality.extra"),
    ({"benchmark": 5}, "steps[0].quality.benchmark"),
    ({"benchmark": "GSM8K"}, "steps[0].quality.benchmark"),
    ({"reference": "llama-3.1-70b"}, "steps[0].quality.reference"),
])
def test_inconsistent_quality_blocks_are_refused(tmp_path, quality, field):
    path = write(tmp_path, [llm(**quality)], table())
    refused(path, tmp_path / "workloads" / "agent.yaml", field)


@pytest.mark.parametrize("edit,field,contains", [
    (lambda t: t["entries"][0]["scores"].__setitem__("bench", float("nan")), "entries[0].scores.bench", "finite"),
    (lambda t: t["entries"][0]["scores"].__setitem__("bench", 1e300), "entries[0].scores.bench", "beyond"),
    (lambda t: t["entries"][0]["scores"].__setitem__("bench", 101), "entries[0].scores.bench", "less than or equal"),
    (lambda t: t["entries"][0]["scores"].__setitem__("bench", -1), "entries[0].scores.bench", "greater than"),
    (lambda t: t["entries"][0]["scores"].__setitem__("bench", "high"), "entries[0].scores.bench", "number"),
    (lambda t: t["entries"][0].pop("source"), "entries[0].source", "missing"),
    (lambda t: t["entries"][0].pop("as_of"), "entries[0].as_of", "missing"),
    (lambda t: t["entries"].append({**t["entries"][0], "dtype": "int4", "scores": {}, "recovery": 97.9}),
     "entries[2].recovery", "less than or equal to 2"),
    (lambda t: t["entries"].append({**t["entries"][0], "dtype": "int4", "scores": {}, "recovery": -0.5}),
     "entries[2].recovery", "greater than 0"),
])
def test_hostile_table_values_are_refused_naming_the_table(tmp_path, edit, field, contains):
    scores = table()
    edit(scores)
    path = write(tmp_path, [llm()], scores)
    refused(path, tmp_path / "quality" / "scores.yaml", field, contains)


def test_recovery_entries_scale_the_bf16_scores():
    t = QualityTable.model_validate(table(80.0, 90.0) | {"entries": [
        *table(80.0, 90.0)["entries"],
        {"model": "llama-3.1-8b", "dtype": "int4", "recovery": 0.9, "source": "t", "as_of": "2026-11"},
        {"model": "llama-3.1-8b", "dtype": "fp8", "recovery_by_benchmark": {"bench": 1.5}, "source": "t",
         "as_of": "2026-11"}]})
    s = t.scores()
    assert s[("llama-3.1-8b", "int4")]["bench"] == pytest.approx(72.0)
    assert s[("llama-3.1-8b", "fp8")]["bench"] == 100.0  # capped


# ---- the shipped table and scenarios --------------------------------------------------------------------------------
def test_every_shipped_score_has_a_public_source_and_a_date():
    path = QUALITY_DIR / "scores.yaml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../schemas/quality.json")
    jsonschema.validate(yaml.safe_load(text), schema("quality"))  # what an editor checks as the user types
    t = load_model_file(QualityTable, path)
    for b in t.benchmarks:
        assert b.source.startswith("https://"), b.name
    for e in t.entries:
        assert "https://" in e.source and e.as_of, (e.model, e.dtype)
    keys = set(t.scores())
    for model in ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"):
        assert {(model, d) for d in ("bf16", "fp8", "int4")} <= keys
    assert {("deepseek-r1", "fp8"), ("deepseek-r1", "fp4")} <= keys  # the frontier scenarios' precisions
    models = {m.id for m in load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml").models}
    assert {m for m, _ in keys} <= models  # every row names a model deployments can serve


def _headline(name: str) -> tuple[float, float]:
    s = simfactory.run(SCENARIOS_DIR / f"{name}.yaml").summary
    return s["finance"]["unit_economics"]["usd_per_1m_tokens"], s["finance"]["unit_economics"]["usd_per_successful_task"]


@pytest.mark.parametrize("cheap,dear,cheap_wins", [
    ("quality-reasoning-8b-int4", "quality-reasoning-70b-fp8", False),
    ("quality-triage-8b-int4", "quality-triage-70b-fp8", True),
    ("quality-reasoning-70b-int4", "quality-reasoning-70b-fp8", True),
])
def test_the_cheaper_deployment_wins_or_loses_on_cost_per_success(cheap, dear, cheap_wins):
    """Cheaper per token every time; per successful task the 8B loses the hard task (its answers fail the validator
    far more often) and wins the easy one, and 70B INT4 (almost FP8's scores, half the GPUs) wins the hard one."""
    cheap_token, cheap_task = _headline(cheap)
    dear_token, dear_task = _headline(dear)
    assert cheap_token < dear_token
    assert (cheap_task < dear_task) == cheap_wins


def test_a_cascade_escalation_changes_which_tier_answers_and_its_success_rate(tmp_path):
    """Role -> cascade route (8B scoring 80, then 70B scoring 90): the route's validator sends half the calls on to
    70B; each answer is then judged at its own tier's mapped probability (0.4 and 0.2 failure)."""
    path = write(tmp_path, [llm(0.2)], table(80.0, 90.0), rate=10.0)
    doc = yaml.safe_load(path.read_text())
    doc["deployments"].append({**doc["deployments"][0], "name": "big", "model": "llama-3.1-70b", "tp": 4})
    doc["pools"][0]["count"] = 5
    doc["routing"]["routes"] = [{"name": "tiers", "policy": "cascade", "tiers": [
        {"deployment": "dep", "fail_p": 0.5}, {"deployment": "big", "fail_p": 0.0}]}]
    doc["traffic"]["classes"][0]["target"] = "tiers"
    path.write_text(yaml.safe_dump(doc))
    (tmp_path / "hardware_profiles" / "test-gpu.yaml").write_text(
        (tmp_path / "hardware_profiles" / "test-gpu.yaml").read_text().replace(
            "step_time_models:", "step_time_models:\n- {model: llama-3.1-70b, engine: vllm, dtype: bf16, tp: 4, "
            "source: measured, step_time: {kind: linear, overhead_s: 0.01}}", 1))
    rows = {r["deployment"]: r for r in quality_of(path)["steps"]}
    assert rows["dep"]["mapped_success_p"] == pytest.approx(0.6) and rows["big"]["mapped_success_p"] == pytest.approx(0.8)
    n = rows["dep"]["answers"] + rows["big"]["answers"]
    lo, hi = wilson_interval(rows["big"]["answers"], n, Z_999)
    assert lo <= 0.5 <= hi  # the route escalated about half
    for r in rows.values():
        lo, hi = wilson_interval(r["accepted"], r["answers"], Z_999)
        assert lo <= r["mapped_success_p"] <= hi


def test_parallel_branches_judge_each_call_where_it_was_made(tmp_path):
    """Two branches at once: a slow step and a fast one. Each judged answer points at its own call's requests."""
    from simfactory.sim.run import simulate

    slow = {**llm(0.3), "name": "slow", "output_tokens": {"kind": "fixed", "value": 200}}
    fast = {**llm(0.3), "name": "fast"}
    steps = [{"type": "parallel", "name": "fork", "branches": [[slow], [fast]]}]
    result = simulate(load_and_resolve(write(tmp_path, steps, table(80.0, 90.0), rate=2.0, horizon_s=30.0)))
    judged = [(rec, j) for rec in result.tasks for j in rec.judged]
    assert len(judged) > 20
    for rec, (step, call, _, _) in judged:
        rid = rec.rids[call][-1]
        assert result.step_names[int(result.table.step_id[rid])] == step


@pytest.mark.parametrize("kind,word", [("fifo", "FIFO"), ("folder", "directory"), ("loop", "symlink loop"),
                                       ("dev-zero", "device")])
def test_a_broken_table_beside_the_scenario_is_refused_not_skipped_for_the_shipped_one(tmp_path, kind, word):
    """Nothing blocks on a FIFO or reads /dev/zero: one line naming scores.yaml, exit 2."""
    path = write(tmp_path, [llm()], None)
    target = tmp_path / "quality" / "scores.yaml"
    target.parent.mkdir()
    {"fifo": lambda: os.mkfifo(target), "folder": target.mkdir, "loop": lambda: os.symlink(target.name, target),
     "dev-zero": lambda: os.symlink("/dev/zero", target)}[kind]()
    res = runner.invoke(app, ["validate", str(path)])
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and "Traceback" not in res.output and len(lines) == 1, res.output
    assert "scores.yaml" in lines[0] and word in lines[0], lines[0]


# ---- route tiers --------------------------------------------------------------------------------------------------
def tiered(root: Path, scores: dict[str, Any] | None, tier_quality: dict[str, Any] | None, fail_p: float = 0.1,
           rate: float = 10.0, horizon_s: float = 200.0) -> Path:
    """A cascade of two 8B tiers on the test GPU, the first with fail_p measured on `quality.reference`."""
    doc = scenario_doc(rate=rate, horizon_s=horizon_s, output_tokens={"kind": "fixed", "value": 10})
    dep = doc["deployments"][0]
    doc["pools"] = [{"name": "p", "sku": "test-gpu", "count": 2, "location": "cloud"}]
    doc["deployments"] = [{**dep, "name": "small", "pool": "p", "max_num_seqs": 64},
                          {**dep, "name": "large", "pool": "p", "max_num_seqs": 64}]  # the last tier: no quality
    tier = {"deployment": "small", "fail_p": fail_p, **({"quality": tier_quality} if tier_quality else {})}
    doc["routing"]["routes"] = [{"name": "tiered", "policy": "cascade", "tiers": [tier, {"deployment": "large"}]}]
    doc["traffic"]["classes"][0]["target"] = "tiered"
    path = write_case(root, doc)
    if scores is not None:
        (root / "quality").mkdir(exist_ok=True)
        (root / "quality" / "scores.yaml").write_text(yaml.safe_dump(scores))
    return path


def test_a_tiers_rejection_rate_follows_its_models_score(tmp_path):
    """fail_p 0.1 measured on the 70B (90 points): the 8B tier (80 points) is rejected, and escalates, at
    0.1 x 20 / 10 = 0.2 (error_ratio); without the quality block at the 0.1 given."""
    expected = error_ratio_fail_p(0.1, 80.0, 90.0)
    for quality, p in (({"benchmark": "bench", "reference": REF}, expected), (None, 0.1)):
        rs = load_and_resolve(tiered(tmp_path / str(p), table(), quality))
        assert rs.routes[0].tiers[0][1].fail_p == pytest.approx(p)
        s = simfactory.run(rs).summary
        n = s["service"]["routes"]["tiered"]["requests"]
        rate = s["service"]["routes"]["tiered"]["escalation_rate"]
        assert n > 1000 and abs(rate - p) < Z_999 * math.sqrt(p * (1 - p) / n), (rate, p, n)
    # the planner's expected attempts read the same mapped odds
    attempts = tier_attempts(load_and_resolve(tiered(tmp_path / "plan", table(), {"benchmark": "bench",
                                                                                  "reference": REF})).routes[0], None)
    assert attempts == {0: pytest.approx(1.0), 1: pytest.approx(expected)}


@pytest.mark.parametrize("scores, quality, field, reason", [
    (table(), {"benchmark": "nope", "reference": REF}, "routing.routes[0].tiers[0].quality.benchmark",
     "unknown benchmark 'nope'"),
    (table(), {"benchmark": "bench", "reference": {"model": "llama-3.1-405b", "dtype": "bf16"}},
     "routing.routes[0].tiers[0].quality.reference", "no quality entry for model 'llama-3.1-405b'"),
    ({**table(), "entries": table()["entries"][1:]}, {"benchmark": "bench", "reference": REF}, "deployments[0]",
     "no quality entry for model 'llama-3.1-8b' at dtype bf16"),
])
def test_a_tier_quality_block_the_table_cannot_serve_is_refused_in_one_line(tmp_path, scores, quality, field, reason):
    path = tiered(tmp_path, scores, quality)
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    line = [x for x in res.output.splitlines() if field in x]
    assert line and reason in line[0], res.output
