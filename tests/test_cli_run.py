"""`simfactory run` end to end: the default scenario, the files it writes, determinism by seed."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from simfactory.cli import app

runner = CliRunner()
FILES = {"summary.md", "summary.json", "requests.csv", "latency_cdf.png", "utilization.png", "queue_depth.png",
         "timeline_replicas.csv", "timeline_system.csv"}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "default"
    res = runner.invoke(app, ["run", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_default_run_writes_the_report(default_run):
    out, text = default_run
    assert FILES <= {p.name for p in out.iterdir()}
    s = json.loads((out / "summary.json").read_text())
    assert s["scenario"] == "default" and s["schema_version"] == 1
    req = pd.read_csv(out / "requests.csv")
    assert len(req) == s["window"]["total_requests"] == sum(s["outcomes"].values())
    assert s["outcomes"]["completed"] == len(req)
    for name in ("ttft", "tpot", "e2e"):
        block = s["latency_s"][name]
        assert 0 < block["p50"] <= block["p90"] <= block["p95"] <= block["p99"] <= block["max"]
    assert s["cost"]["usd_per_1m_output_tokens"] > 0
    md = (out / "summary.md").read_text()
    assert "## Latency" in md and "![latency_cdf.png](latency_cdf.png)" in md
    assert "TTFT" in text and "cost:" in text
    for png in ("latency_cdf.png", "utilization.png", "queue_depth.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finance_outputs_match_the_summary(default_run):
    """finance.xlsx has one sheet per finance table; its numbers are the summary's; assumptions carry sources."""
    from openpyxl import load_workbook

    from simfactory.report.finance import UNIT_ROWS, finance_tables

    out, _ = default_run
    s = json.loads((out / "summary.json").read_text())
    tables = finance_tables(s)
    wb = load_workbook(out / "finance.xlsx")
    assert wb.sheetnames == [t.key for t in tables]
    sheet = pd.read_excel(out / "finance.xlsx", sheet_name="unit_economics")
    ue = s["finance"]["unit_economics"]
    for (key, label, _), (_, row) in zip(UNIT_ROWS, sheet.iterrows()):
        assert row["metric"] == label
        assert (pd.isna(row["value"]) and ue[key] is None) or row["value"] == pytest.approx(ue[key])
    csv = pd.read_csv(out / "finance_assumptions.csv")
    assert len(csv) == len(s["finance"]["assumptions"]) and csv["source"].notna().all()
    assert "## Cost and finance" in (out / "summary.md").read_text()
    for png in ("cost_sensitivity.png", "break_even.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_default():
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 0 and "is valid" in res.output


def _run(tmp_path, name, *args):
    out = tmp_path / name
    res = runner.invoke(app, ["run", "--quiet", "--no-plots", "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return json.loads((out / "summary.json").read_text()), (out / "requests.csv").read_text()


def test_same_seed_same_outputs_different_seed_different(tmp_path):
    a_sum, a_req = _run(tmp_path, "a", "--seed", "5")
    b_sum, b_req = _run(tmp_path, "b", "--seed", "5")
    c_sum, c_req = _run(tmp_path, "c", "--seed", "6")
    for s in (a_sum, b_sum, c_sum):
        s.pop("scenario_file")
    assert a_sum == b_sum and a_req == b_req
    assert a_sum["seed"] == 5 and c_sum["seed"] == 6
    assert a_req != c_req
    assert a_sum["latency_s"]["e2e"]["mean"] != c_sum["latency_s"]["e2e"]["mean"]


def test_rerun_replaces_the_output_directory(tmp_path):
    _run(tmp_path, "x", "--seed", "1")
    _run(tmp_path, "x", "--seed", "2")  # an output simfactory wrote (its marker lists every file): replaced
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temp dirs or locks left behind
    (tmp_path / "x" / "tasks.csv").write_text("mine")  # named like an output, but not written by simfactory
    res = runner.invoke(app, ["run", "--out", str(tmp_path / "x"), "--no-plots", "--quiet"])
    assert res.exit_code == 2 and "tasks.csv" in res.output and (tmp_path / "x" / "tasks.csv").read_text() == "mine"
    (tmp_path / "x" / "tasks.csv").unlink()
    (tmp_path / "x" / "notes.txt").write_text("mine")  # not an output: the rerun is refused, the file kept
    res = runner.invoke(app, ["run", "--out", str(tmp_path / "x"), "--no-plots", "--quiet"])
    assert res.exit_code == 2 and "notes.txt" in res.output and (tmp_path / "x" / "notes.txt").exists()


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "run" in res.output and "validate" in res.output


def test_compare_runs_scenarios_side_by_side(tmp_path):
    from simfactory.paths import SCENARIOS_DIR

    res = runner.invoke(app, ["compare", str(SCENARIOS_DIR / "cache-off.yaml"), str(SCENARIOS_DIR / "cache-on.yaml"),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    assert list(df.columns) == ["cache-off", "cache-on"]
    ttft = df.loc["TTFT p50 (ms)"].astype(float)
    assert ttft["cache-on"] < ttft["cache-off"]  # the shared system prompt is not prefilled again
    assert "| prefix cache: requests with a hit |" in (tmp_path / "compare.md").read_text()
    bad = runner.invoke(app, ["compare", str(SCENARIOS_DIR / "cache-on.yaml")])
    assert bad.exit_code == 2
    # the folder of an interrupted compare (run folders, no compare.md yet) takes a rerun; a foreign file does not
    for f in tmp_path.glob("compare.*"):
        f.unlink()
    (tmp_path / "1-cache-off" / "mine.txt").write_text("x")
    res = runner.invoke(app, ["compare", str(SCENARIOS_DIR / "cache-off.yaml"), str(SCENARIOS_DIR / "cache-on.yaml"),
                              "--out", str(tmp_path)])
    assert res.exit_code == 2 and "mine.txt" in res.output
    (tmp_path / "1-cache-off" / "mine.txt").unlink()
    res = runner.invoke(app, ["compare", str(SCENARIOS_DIR / "cache-off.yaml"), str(SCENARIOS_DIR / "cache-on.yaml"),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output


def test_format_json_prints_only_the_summary(tmp_path):
    res = runner.invoke(app, ["run", "--format", "json", "--no-plots", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0
    assert json.loads(res.stdout) == json.loads((tmp_path / "o" / "summary.json").read_text())
    assert runner.invoke(app, ["run", "--format", "yaml", "--out", str(tmp_path / "p")]).exit_code == 2


def test_compare_recommendation_picks_the_cheapest_run_meeting_its_slos():
    from simfactory.report.compare import recommendation

    def s(attain, usd, per_task=None):
        d = {"service": {"slo_attainment": attain}, "cost": {"usd_per_request": usd}}
        if per_task is not None:
            d["finance"] = {"unit_economics": {"usd_per_successful_task": per_task}}
        return d

    line = recommendation([s(0.995, 1.0), s(0.999, 0.63), s(0.5, 0.1)], ["A", "B", "C"])
    assert line.startswith("recommended: B — highest score")  # cheaper, as good: the scorecard's top-ranked run
    assert "C excluded: SLO attainment 50.0% < 99%" in line  # misses its SLOs, however cheap
    assert recommendation([s(0.5, 1.0)], ["A"]).startswith("No run meets its SLOs")
    assert "per successful task" in recommendation([s(1.0, 9, 2.0), s(1.0, 9, 1.0)], ["A", "B"])


def test_interrupted_run_writes_nothing(tmp_path, monkeypatch):
    import simfactory.report.writer as writer

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "write_plots", boom)  # interrupt halfway through writing the report
    res = runner.invoke(app, ["run", "--quiet", "--out", str(tmp_path / "o")])
    assert res.exit_code == 130 and "interrupted" in res.output
    assert list(tmp_path.iterdir()) == []  # no report directory, no temp directory left


def test_compare_tco_trio_with_scorecard(tmp_path):
    """Cloud vs on-prem vs hybrid for the same workload: TCO, scorecard and a recommendation that is the
    scorecard's top-ranked run meeting SLOs and capacity, and an xlsx finance can open."""
    from openpyxl import load_workbook

    from simfactory.paths import SCENARIOS_DIR

    names = ["tco-cloud", "tco-onprem", "tco-hybrid"]
    res = runner.invoke(app, ["compare", *(str(SCENARIOS_DIR / f"{n}.yaml") for n in names), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    tco = df.loc["TCO over horizon USD"].astype(float)
    per_1m = df.loc["USD per 1M tokens (in+out)"].astype(float)
    # one own-vs-rent model (simfactory/cost/decision.py): the owned run's TCO is its present value of owning, and
    # whether owning wins follows from its load against the break-even load
    onprem = json.loads((tmp_path / "2-tco-onprem" / "summary.json").read_text())["finance"]["tco"]["pools"][0]
    assert tco["tco-onprem"] == pytest.approx(onprem["own_npv_usd"], rel=1e-6)
    assert onprem["own_cheaper"] == (onprem["break_even_load"] is not None
                                     and onprem["decision_load"] >= onprem["break_even_load"])
    card = pd.read_csv(tmp_path / "scorecard.csv", index_col=0)
    criteria = ["performance", "cost", "utilization", "data_movement", "operational_simplicity", "lock_in_freedom"]
    for n in names:
        total = sum(float(card.loc[c, "weight"]) * float(card.loc[c, n]) for c in criteria)
        assert float(card.loc["weighted total", n]) == pytest.approx(total)
    assert float(card.loc["cost", per_1m.idxmin()]) == 10.0  # the cheapest run's cost score
    top = next(n for n in names if int(card.loc["rank", n]) == 1)
    assert float(card.loc["capacity", top]) == 10.0
    assert (tmp_path / "compare.md").read_text().splitlines()[2].startswith(f"recommended: {top} — ")
    assert float(card.loc["operational_simplicity", "tco-cloud"]) > float(card.loc["operational_simplicity", "tco-onprem"])
    wb = load_workbook(tmp_path / "compare.xlsx")
    assert wb.sheetnames[:2] == ["comparison", "scorecard"]
    assert {"1-tco", "2-tco", "3-tco", "1-unit_economics", "3-assumptions"} <= set(wb.sheetnames)
    html = (tmp_path / "compare.html").read_text()
    for n in names:
        assert f"{n}: finance" in html
    assert (tmp_path / "compare.md").read_text().splitlines()[2] in html
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_an_output_path_holding_other_files_is_refused_and_left_alone(tmp_path, monkeypatch):
    """--out replaces an earlier run directory whole; a folder of the user's own files, a file, or the working
    directory is refused (exit 2, before simulating), never deleted."""
    mine = tmp_path / "project"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    for target in (mine, mine / "notes.txt"):
        res = runner.invoke(app, ["run", "--out", str(target), "--no-plots", "--quiet"])
        assert res.exit_code == 2 and "--out" in res.output, res.output
    monkeypatch.chdir(mine)
    res = runner.invoke(app, ["run", "--out", ".", "--no-plots", "--quiet"])
    assert res.exit_code == 2 and "working directory" in res.output
    res = runner.invoke(app, ["run", "--out", "..", "--no-plots", "--quiet"])
    assert res.exit_code == 2 and "working directory" in res.output
    res = runner.invoke(app, ["run", "--out", "r", "--trace", "sub", "--no-plots", "--quiet"])
    assert res.exit_code == 2 and "sub: --trace: is a directory" in res.output and not (mine / "r").exists()
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "sub").is_dir()


def test_report_never_overwrites_the_runs_own_files(default_run):
    out, _ = default_run
    before = (out / "summary.json").read_text()
    res = runner.invoke(app, ["report", str(out), "--out", str(out / "summary.json")])
    assert res.exit_code == 2 and "*.html" in res.output
    assert (out / "summary.json").read_text() == before


def test_baselines_of_two_sources_with_one_name_are_refused_before_anything_is_written(tmp_path):
    from simfactory.paths import SCENARIOS_DIR

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for p in (a, b):
        p.write_text((SCENARIOS_DIR / "default.yaml").read_text())
    res = runner.invoke(app, ["baseline", "update", str(a), str(b), "--baseline-dir", str(tmp_path / "bl")])
    assert res.exit_code == 2 and "also the name of" in res.output
    assert not (tmp_path / "bl").exists()


def test_init_names_the_file_asked_for_and_file_outputs_refuse_directories(tmp_path):
    res = runner.invoke(app, ["init", "--non-interactive", "--model", "llama-99b", "-o", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and "--model: unknown model 'llama-99b' (choose from:" in res.output
    assert "draft" not in res.output and not list(tmp_path.iterdir())
    # a scenario the answers make invalid (70B in bf16 on one 48 GB L40S) names the file asked for, writes nothing,
    # and prints the answers as flags, so nothing typed is lost
    res = runner.invoke(app, ["init", "--non-interactive", "--model", "llama-3.1-70b", "--sku", "l40s",
                              "-o", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and f"{tmp_path / 's.yaml'}: deployments[0]" in res.output
    assert "--model llama-3.1-70b --sku l40s" in res.output and not list(tmp_path.iterdir())
    (tmp_path / "d").mkdir()
    res = runner.invoke(app, ["init", "--non-interactive", "--force", "-o", str(tmp_path / "d")])
    assert res.exit_code == 2 and "--output: is a directory" in res.output


def test_interactive_init_checks_each_answer_as_given_and_asks_dtype_and_location(tmp_path, monkeypatch):
    """A bad answer is explained and asked again at once (earlier answers kept), and every question a scenario needs
    is asked, dtype and location included."""
    monkeypatch.setattr("simfactory.cli.init._interactive", lambda: True)
    answers = ["my scenario", "ok-name",      # name: a space is refused, then a good one
               "llama-99b", "llama-3.1-8b",   # model: unknown, then known
               "h100-sxm", "fp9", "fp8",      # sku, then dtype: unknown, then known
               "zero", "2", "1", "5", "0.5",  # replicas: not a number, then 2; tp; rate; TTFT SLO
               "moon", "on_prem"]             # location: refused, then on_prem
    res = runner.invoke(app, ["init", "-o", str(tmp_path / "s.yaml")], input="\n".join(answers) + "\n")
    assert res.exit_code == 0, res.output
    for problem in ("got 'my scenario'", "unknown model 'llama-99b'", "unknown dtype 'fp9'", "replicas must be a whole",
                    "unknown location 'moon'"):
        assert problem in res.output, problem
    import yaml

    doc = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert doc["name"] == "ok-name" and doc["deployments"][0]["dtype"] == "fp8"
    assert doc["pools"][0]["location"] == "on_prem" and doc["traffic"]["arrival"]["rate_per_s"] == 5


def test_init_checks_defaults_and_numbers_and_quotes_the_answers_it_prints(tmp_path):
    res = runner.invoke(app, ["init", "--non-interactive", "-o", str(tmp_path / "my scen.yaml")])
    assert res.exit_code == 2 and "--name: the default:" in res.output and "got 'my scen'" in res.output
    assert runner.invoke(app, ["init", "--non-interactive", "--rate", "inf", "-o", str(tmp_path / "a.yaml")]).exit_code == 2
    res = runner.invoke(app, ["init", "--non-interactive", "--name", "x", "--model", "llama-3.1-70b", "--sku", "l40s",
                              "-o", str(tmp_path / "d d" / "s.yaml")])
    assert res.exit_code == 2 and f"-o '{tmp_path / 'd d' / 's.yaml'}'" in res.output
