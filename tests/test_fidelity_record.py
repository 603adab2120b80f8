"""A run's forecast evidence: how far its deployments' kind of forecast (step-time source, engine preset) has been
from the published measurements the fidelity suites replay, read from the record they last wrote."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.fidelity import PointResult, breakdowns, record_doc
from simfactory.fidelity_record import (RECORD_FILE, evidence, kind_engine_key, kind_key, kind_metric_key,
                                        kind_model_key, kind_tp_key, leaning, record_problem, source_kind)
from simfactory.resolve.step_time import MEASURED_KERNELS_LABEL, ROOFLINE_DEFAULT_LABEL

KERNELS = MEASURED_KERNELS_LABEL + "kernel tables of ... (vllm 0.24.0 prior)"


def _record(tmp_path, breakdown: dict) -> object:
    path = tmp_path / "recorded.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"breakdowns": breakdown, "suites": {}, "note": "test"}))
    return path


def test_a_deployment_is_matched_on_its_preset_and_source_kind_else_on_the_kind_alone(tmp_path):
    path = _record(tmp_path, {
        kind_key("kernels"): {"points": 100, "mape": 0.12, "optimism": 0.02, "skus": ["b200", "h100-sxm"]},
        kind_engine_key("kernels", "vllm"): {"points": 10, "mape": 0.05, "optimism": -0.016, "skus": ["h100-sxm"]},
        kind_engine_key("kernels", "nim"): {"points": 90, "mape": 0.13, "optimism": 0.04},
        kind_key("roofline"): {"points": 40, "mape": 0.3, "optimism": 0.25, "skus": ["mi300x"]},
        kind_tp_key("kernels", 8): {"points": 30, "mape": 0.14, "optimism": 0.05},
    })
    own = evidence(KERNELS, "vllm", sku="h100-sxm", path=path)
    assert (own.points, own.mape, own.optimism, own.basis) == (10, 0.05, -0.016, "vllm preset on measured kernels")
    assert own.presets_range is None  # its own preset's points: no pooling to hide anything
    other = evidence(KERNELS, "sglang", path=path)  # no sglang points on kernels: every preset's, and it says so
    assert (other.points, other.record_key, other.basis) == (100, "all suites [kernels]", "sglang preset not "
                                                            "checked; every engine preset on measured kernels")
    assert other.presets_range == (-0.016, 0.04)  # a pooled +2% made of presets leaning both ways
    roof = evidence(ROOFLINE_DEFAULT_LABEL + "mi355x, sglang overhead x1.2)", "sglang", sku="mi355x", path=path)
    assert roof.points == 40 and roof.basis.endswith("every engine preset on roofline (measured on mi300x; none on "
                                                     "mi355x)")
    assert evidence(KERNELS, None, path=path).points == 100
    # beside it, the kind at the deployment's own TP (every preset): the error grows with TP
    at8 = evidence(KERNELS, "vllm", 8, path=path)
    assert at8.points == 10 and (at8.at_tp.points, at8.at_tp.optimism) == (30, 0.05)
    assert at8.at_tp.basis == "every engine preset on measured kernels at TP 8"
    assert evidence(KERNELS, "vllm", 4, path=path).at_tp is None  # no points at TP 4
    assert own.at_tp is None  # no TP asked
    # a calibrated or user profile, a roofline entry of its own included, was never run by the suites: no
    # evidence, not someone else's
    for entry in ("published-fit (hardware_profiles/h100-sxm/x.yaml)", "roofline (my_profiles/h100-sxm/fit.yaml)",
                  "measured (my_profiles/h100-sxm/fit.yaml)"):
        assert evidence(entry, "vllm", path=path) is None, entry
    assert evidence(KERNELS, "vllm", path=tmp_path / "missing.json") is None
    (tmp_path / "broken.json").write_text("{not json")
    assert evidence(KERNELS, "vllm", path=tmp_path / "broken.json") is None
    # ... and a missing, broken or outdated record is said to be so, not passed off as "never checked"
    assert "missing or unreadable" in record_problem(tmp_path / "broken.json")
    assert "predates" in record_problem(_record(tmp_path / "old", {"all suites | tp 1": {"points": 3}}))
    assert record_problem(path) is None
    d = own.as_dict()
    assert d["leaning"] == "pessimistic" and d["record"] == "all suites [kernels] | vllm" and d["skus"] == ["h100-sxm"]
    assert [leaning(x) for x in (0.03, -0.03, 0.004)] == ["optimistic", "pessimistic", "unbiased"]


def test_a_deployment_also_gets_its_kinds_figures_per_metric(tmp_path):
    """Beside the pooled figure, the kind's figure per metric (every preset), in the report's metric order, unknown
    metrics after by name: a TTFT forecast is not lent the throughput forecasts' accuracy. The per-metric rows are not
    presets (the presets' bias range ignores them)."""
    path = _record(tmp_path, {
        kind_key("kernels"): {"points": 100, "mape": 0.12, "optimism": 0.02},
        kind_engine_key("kernels", "nim"): {"points": 90, "mape": 0.13, "optimism": 0.04},
        kind_engine_key("kernels", "vllm"): {"points": 10, "mape": 0.05, "optimism": -0.016},
        kind_metric_key("kernels", "ttft_s"): {"points": 40, "mape": 0.19, "optimism": 0.9},
        kind_metric_key("kernels", "output_tokens_per_s"): {"points": 50, "mape": 0.07, "optimism": -0.5},
        kind_metric_key("kernels", "queue_s"): {"points": 10, "mape": 0.3, "optimism": 0.1},
        kind_metric_key("kernels", "itl_s"): {"points": 0, "mape": 0.3, "optimism": 0.1},  # no points: left out
        kind_key("roofline"): {"points": 30, "mape": 0.3, "optimism": 0.25},
        kind_metric_key("roofline", "ttft_s"): {"points": 9, "mape": 0.48, "optimism": 0.31},
    })
    e = evidence(KERNELS, "sglang", path=path)
    assert [m for m, _ in e.by_metric] == ["output_tokens_per_s", "ttft_s", "queue_s"]
    ttft = dict(e.by_metric)["ttft_s"]
    assert (ttft.points, ttft.mape, ttft.optimism, ttft.basis) == (40, 0.19, 0.9, "TTFT mean")
    assert e.presets_range == (-0.016, 0.04)  # the +0.9 and -0.5 metric rows are not presets
    assert evidence(KERNELS, "vllm", 8, path=path).by_metric == e.by_metric  # the kind's rows whatever the preset
    d = e.as_dict()["by_metric"]
    assert list(d) == ["output_tokens_per_s", "ttft_s", "queue_s"] and d["queue_s"]["label"] == "queue_s"
    assert d["ttft_s"] == {"label": "TTFT mean", "record": "all suites [kernels] | metric ttft_s", "points": 40,
                           "mape": 0.19, "optimism": 0.9, "leaning": "optimistic"}
    assert [m for m, _ in evidence(ROOFLINE_DEFAULT_LABEL + "x)", None, path=path).by_metric] == ["ttft_s"]
    assert evidence(KERNELS, "vllm", path=_record(tmp_path / "old", {kind_key("kernels"): {
        "points": 3, "mape": 0.1, "optimism": 0.0}})).by_metric == ()  # a record without them: none, not an error


def test_a_model_the_suites_measured_gets_its_own_points_beside_its_kinds(tmp_path):
    """A deployment of a model some suite measured cites that model's points on its source kind beside the pooled
    figures, naming the presets, TPs and hardware they pool (a kind's pooled bias can hide one model leaning hard:
    gpt-oss-120b's one-client steps, 90% pessimistic among kernels points near +2%). Model rows are not presets, and
    a model no suite measured gets none, not another's."""
    from simfactory.report.markdown import accuracy_rows, forecast_check_lines

    path = _record(tmp_path, {
        kind_key("kernels"): {"points": 100, "mape": 0.12, "optimism": 0.02},
        kind_engine_key("kernels", "sglang-0.5"): {"points": 60, "mape": 0.13, "optimism": 0.03, "skus": ["b200"]},
        kind_engine_key("kernels", "vllm"): {"points": 40, "mape": 0.1, "optimism": 0.01},
        kind_model_key("kernels", "gpt-oss-120b"): {"points": 4, "mape": 0.903, "optimism": -0.903, "skus": ["b200"],
                                                    "presets": ["sglang-0.5"], "tps": [8]},
        kind_model_key("roofline", "llama-3.1-8b"): {"points": 9, "mape": 0.4, "optimism": 0.3},
        kind_model_key("kernels", "qwen3-32b"): {"points": 30, "mape": 0.2, "optimism": 0.1, "presets": ["vllm", "nim"]},
        kind_model_key("kernels", "qwen3-32b", "vllm"): {"points": 10, "mape": 0.3, "optimism": -0.3,
                                                         "presets": ["vllm"], "tps": [2], "skus": ["h100-sxm"]},
    })
    e = evidence(KERNELS, "sglang-0.5", 8, "b300", path=path, model="gpt-oss-120b")
    m = e.of_model
    assert (m.points, m.mape, m.optimism, m.record_key) == (4, 0.903, -0.903, "all suites [kernels] | model gpt-oss-120b")
    assert m.basis == "gpt-oss-120b's published points on measured kernels (sglang-0.5; TP 8; b200)"
    assert evidence(KERNELS, "sglang-0.5", path=path, model="llama-3.1-8b").of_model is None  # a roofline row only
    assert evidence(KERNELS, "sglang-0.5", path=path).of_model is None  # no model asked
    assert evidence(KERNELS, "mystery", path=path).presets_range == (0.01, 0.03)  # the -0.903 row is no preset
    # a model's points on the deployment's own preset where a suite ran it there (they can lean the other way), else
    # every preset's
    own_preset = evidence(KERNELS, "vllm", path=path, model="qwen3-32b").of_model
    assert (own_preset.record_key, own_preset.optimism) == (kind_model_key("kernels", "qwen3-32b", "vllm"), -0.3)
    assert own_preset.basis == "qwen3-32b's published points on measured kernels (vllm; TP 2; h100-sxm)"
    assert own_preset.own_preset and not m.own_preset
    assert evidence(KERNELS, "sglang-0.5", path=path, model="qwen3-32b").of_model.record_key == kind_model_key(
        "kernels", "qwen3-32b")
    d = e.as_dict()
    assert d["of_model"] == {"label": m.basis, "record": m.record_key, "points": 4, "mape": 0.903,
                             "optimism": -0.903, "leaning": "pessimistic", "skus": ["b200"], "own_preset": False}
    own = f"{m.basis}: 4, MAPE 90.3%, bias -90.3% (pessimistic)"
    assert own in forecast_check_lines([("oss", d)])[0]
    assert accuracy_rows([{"name": "oss", "forecast_accuracy": d}])[0][-1].endswith(own)
    # deployments share a sentence only where all of it is theirs: not two models, nor two SKUs the words differ on
    llama = evidence(KERNELS, "sglang-0.5", 8, "b300", path=path).as_dict()
    on_b200 = evidence(KERNELS, "sglang-0.5", 8, "b200", path=path, model="gpt-oss-120b").as_dict()
    lines = forecast_check_lines([("oss-b300", d), ("llama", llama), ("oss-b200", on_b200), ("oss2-b300", d)])
    assert len(lines) == 3 and lines[0].startswith("forecast check (oss-b300, oss2-b300): sglang-0.5 preset on "
                                                   "measured kernels (measured on b200; none on b300)")
    assert "none on" not in next(x for x in lines if x.startswith("forecast check (oss-b200)"))


def test_a_catalogue_model_under_a_shipped_id_cites_no_shipped_models_points(tmp_path):
    """A user's catalogue entry that redefines a shipped id with another shape is not that model: its run cites the
    kind's figures, not the shipped model's own points (it gets no tables of that id either); the shipped model and a
    release of its shape keep theirs."""
    import yaml

    from simfactory.metrics.summary import forecast_accuracy
    from simfactory.paths import PROFILES_DIR
    from simfactory.resolve import load_and_resolve

    shipped = {m["id"]: m for m in yaml.safe_load((PROFILES_DIR / "models.yaml").read_text())["models"]}
    wide = {**shipped["llama-3.1-70b"], "intermediate": 28800, "source": "a user's redefinition", "as_of": "2026-12"}
    (tmp_path / "hardware_profiles").mkdir()
    (tmp_path / "scenarios").mkdir()
    doc = yaml.safe_load((PROFILES_DIR.parent / "scenarios" / "default.yaml").read_text())
    doc["pools"][0].update(sku="mi300x", count=2)  # the roofline, where the shipped 70B has a model row
    doc["deployments"][0].update(model="llama-3.1-70b", tp=2, dtype="fp8", replicas=1)
    (tmp_path / "scenarios" / "s.yaml").write_text(yaml.safe_dump(doc))

    def of_model() -> dict | None:
        return forecast_accuracy(load_and_resolve(tmp_path / "scenarios" / "s.yaml").deployments[0])["of_model"]

    assert of_model()["record"] == kind_model_key("roofline", "llama-3.1-70b")
    (tmp_path / "hardware_profiles" / "models.yaml").write_text(yaml.safe_dump({"models": [wide]}, sort_keys=False))
    assert of_model() is None


def test_fidelity_writes_the_breakdowns_the_lookup_reads():
    """The keys a report looks up are the ones `fidelity` pools its points under (one function makes both), and
    the record names each cited row's hardware."""
    rs = [PointResult("a", "x", "output_tokens_per_s", 100, 110, "kernels", engine="vllm 0.19.1", preset="vllm",
                      sku="h100-sxm", model="llama-3.1-8b"),
          PointResult("b", "y", "itl_s", 0.01, 0.008, "kernels", tp=2, engine="nim NIM 1.8.0", preset="nim", sku="h200"),
          PointResult("c", "z", "itl_s", 0.02, 0.025, "roofline", engine="vllm-v0", preset="vllm-v0", sku="mi300x")]
    b = breakdowns(rs)
    assert b[kind_key("kernels")]["points"] == 2 and b[kind_key("kernels")]["optimism"] == pytest.approx(0.15)
    assert b[kind_engine_key("kernels", "vllm")]["optimism"] == pytest.approx(0.1)
    assert b[kind_engine_key("roofline", "vllm-v0")]["optimism"] == pytest.approx(-0.25)
    assert b[kind_metric_key("kernels", "itl_s")]["points"] == 1 and b[kind_metric_key("kernels", "itl_s")][
        "optimism"] == pytest.approx(0.2)
    rec = record_doc(rs, "why")
    assert rec["breakdowns"][kind_metric_key("kernels", "output_tokens_per_s")]["skus"] == ["h100-sxm"]
    assert rec["note"] == "why" and rec["breakdowns"][kind_key("kernels")]["skus"] == ["h100-sxm", "h200"]
    assert rec["breakdowns"][kind_tp_key("kernels", 2)]["skus"] == ["h200"]
    assert rec["breakdowns"][kind_model_key("kernels", "llama-3.1-8b")] == {
        "mape": 0.1, "optimism": 0.1, "points": 1, "skus": ["h100-sxm"], "presets": ["vllm"], "tps": [1]}
    assert rec["breakdowns"][kind_model_key("kernels", "llama-3.1-8b", "vllm")] == {
        "mape": 0.1, "optimism": 0.1, "points": 1, "skus": ["h100-sxm"], "presets": ["vllm"], "tps": [1]}
    assert rec["breakdowns"][kind_model_key("kernels", "model not stated")]["points"] == 1
    assert "skus" not in rec["breakdowns"]["all suites | tp 1"] and rec["suites"]["a [kernels]"]["points"] == 1
    assert source_kind(KERNELS) == "kernels" and source_kind(ROOFLINE_DEFAULT_LABEL + "x)") == "roofline"
    assert source_kind("roofline (x.yaml)") == "roofline entry"


def test_the_shipped_record_covers_every_preset_the_suites_run():
    """Every engine preset a shipped suite names has its row on the source kind it ran on."""
    import yaml

    from simfactory.fidelity import shipped_suites

    record = json.loads(RECORD_FILE.read_text())["breakdowns"]
    presets = {yaml.safe_load(p.read_text()).get("engine") for p in shipped_suites()}
    keys = {k for k in record if k.startswith("all suites [")}
    for preset in presets - {None}:
        assert any(k.endswith(f"| {preset}") for k in keys), preset
    assert {kind_key("kernels"), kind_key("roofline")} <= keys
    for kind in ("kernels", "roofline"):  # and each kind's figure per metric, TTFT among them
        assert {kind_metric_key(kind, m) for m in ("output_tokens_per_s", "itl_s", "ttft_s")} <= keys, kind


def test_a_run_reports_its_forecast_evidence_in_every_output(tmp_path):
    """summary.json, summary.md, report.html and the terminal all carry the record's row for the deployment."""
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    (d,) = s["deployments"]
    a = d["forecast_accuracy"]
    row = json.loads(RECORD_FILE.read_text())["breakdowns"][a["record"]]
    assert a["record"] == kind_engine_key("kernels", "vllm")  # the default scenario: vLLM on measured kernels
    assert (a["points"], a["mape"], a["optimism"]) == (row["points"], row["mape"], row["optimism"])
    md = (out / "summary.md").read_text()
    assert "## Forecast accuracy" in md
    t = a["at_tp"]
    assert t["record"] == kind_tp_key("kernels", d["tp"]) and t["points"] == json.loads(RECORD_FILE.read_text())[
        "breakdowns"][t["record"]]["points"]
    m = a["of_model"]  # Llama-3.1-8B's own points on measured kernels with vLLM, beside its kind's (suites measured it)
    assert m["record"] == kind_model_key("kernels", "llama-3.1-8b", "vllm") and m["points"] == json.loads(
        RECORD_FILE.read_text())["breakdowns"][m["record"]]["points"]
    own = f"{m['label']}: {m['points']:,}, MAPE {m['mape']:.1%}, bias {m['optimism']:+.1%} ({m['leaning']})"
    assert (f"| {d['name']} | {a['basis']} | {a['points']:,} | {a['mape']:.1%} | {a['optimism']:+.1%} ({a['leaning']}) "
            f"| TP {d['tp']}: {t['points']:,} points, MAPE {t['mape']:.1%}, bias {t['optimism']:+.1%}; {own} |") in md
    terminal = " ".join(res.output.split())
    assert f"forecast check ({d['name']}): {a['basis']}" in terminal and own in terminal
    ttft = a["by_metric"]["ttft_s"]  # the kind's figures per metric: summary.json, summary.md, the terminal
    assert ttft["record"] == kind_metric_key("kernels", "ttft_s") and ttft["points"] == json.loads(
        RECORD_FILE.read_text())["breakdowns"][ttft["record"]]["points"]
    assert (f"| {d['name']} | measured kernels | TTFT mean | {ttft['points']:,} | {ttft['mape']:.1%} | "
            f"{ttft['optimism']:+.1%} ({ttft['leaning']}) |") in md
    assert f"TTFT mean {ttft['mape']:.1%} ({ttft['optimism']:+.1%})" in terminal
    rep = CliRunner().invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    html = (out / "report.html").read_text()
    assert "Forecast accuracy</h2>" in html and a["basis"] in html and "TTFT mean" in html
    report_md = (out / "report.md").read_text()
    assert "## Forecast accuracy" in report_md and "| llama8b | measured kernels | TTFT mean |" in report_md


def test_compare_says_when_its_runs_rest_on_forecasts_that_lean_apart():
    """A roofline run against a measured-kernel run: the table gives each run's most optimistic kind, and a note
    says the comparison favours the roofline run by about the gap between their biases (none under 5 points)."""
    from simfactory.report.compare import comparison_frame, forecast_gap_line

    def run(name, *evidence):
        return {"scenario": name, "deployments": [{"name": f"d{i}", "forecast_accuracy": a}
                                                  for i, a in enumerate(evidence)]}

    kern = {"basis": "vllm preset on measured kernels", "points": 10, "mape": 0.056, "optimism": -0.016}
    roof = {"basis": "every engine preset on roofline", "points": 133, "mape": 0.327, "optimism": 0.252}
    a, b = run("h200", kern), run("mi355x", kern, roof)
    line = forecast_gap_line([a, b], ["h200", "mi355x"])
    assert line == ("forecasts differ in accuracy: mi355x's (every engine preset on roofline) have run +25.2% against "
                    "published measurements, h200's (vllm preset on measured kernels) -1.6%: mi355x's latency and "
                    "throughput forecasts have run about 27 points more optimistic, so differences in those metrics "
                    "smaller than that are within forecast error (see each run's Forecast accuracy)")
    row = comparison_frame([a, b]).loc["forecast bias of its kind (most optimistic deployment)"]
    assert list(row) == ["-1.6%, MAPE 5.6% (vllm preset on measured kernels, 10 pts)",
                         "+25.2%, MAPE 32.7% (every engine preset on roofline, 133 pts)"]
    near = {**kern, "optimism": 0.03}
    assert forecast_gap_line([a, run("other", near)], ["h200", "other"]) is None  # 4.6 points apart
    assert forecast_gap_line([a, {"scenario": "user", "deployments": [{"name": "x", "forecast_accuracy": None}]}],
                             ["h200", "user"]) is None  # one run has no evidence: nothing to weigh


def test_the_accuracy_table_tells_no_evidence_from_a_summary_that_predates_it():
    from simfactory.report.markdown import accuracy_rows

    a = {"basis": "vllm preset on measured kernels", "points": 10, "mape": 0.056, "optimism": -0.016,
         "leaning": "pessimistic"}
    rows = accuracy_rows([{"name": "x", "forecast_accuracy": a}, {"name": "y", "forecast_accuracy": None},
                          {"name": "z"}])
    assert rows[0] == ["x", "vllm preset on measured kernels", "10", "5.6%", "-1.6% (pessimistic)",
                       "no points at this TP"]
    assert rows[1][1].startswith("not checked by the shipped suites") and rows[2][1].startswith("not recorded")


def test_a_disaggregated_prefill_side_gets_its_own_evidence_and_a_missing_record_is_named(monkeypatch):
    """The prefill replicas run on their own hardware and step time: their evidence is a row of its own. With no
    usable record, the table says why rather than 'never checked'."""
    import simfactory.metrics.summary as summary
    from simfactory.paths import SCENARIOS_DIR
    from simfactory.fidelity_record import forecast_sides
    from simfactory.report.markdown import accuracy_rows
    from simfactory.resolve import resolve
    from simfactory.resolve.files import load_scenario

    (d,) = resolve(load_scenario(SCENARIOS_DIR / "stack-disaggregated.yaml")).deployments
    fields = summary.forecast_fields(d)
    assert d.prefill is not None and fields["prefill_forecast_accuracy"]["record"].startswith("all suites [kernels]")
    row = {"name": d.config.name, **fields}
    assert [n for n, _ in forecast_sides(row)] == [d.config.name, f"{d.config.name} (prefill)"]
    assert [r[0] for r in accuracy_rows([row])] == [d.config.name, f"{d.config.name} (prefill)"]
    monkeypatch.setattr(summary, "record_problem", lambda: "the fidelity record /x/recorded.json is missing")
    gone = {"name": "a", **summary.forecast_fields(d)}
    assert gone["forecast_accuracy"] is None and "prefill_forecast_accuracy" not in gone
    assert accuracy_rows([gone])[0][1] == "unknown: the fidelity record /x/recorded.json is missing"


def test_fidelity_writes_the_record_and_replaces_only_its_own(tmp_path):
    """`fidelity --record FILE --note TEXT` writes the record reports cite (with the SKUs of the cited rows); a file
    simfactory did not write is left alone unless --force."""
    import yaml

    point = {"id": "p", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128,
             "output_tokens": 128, "max_num_seqs": 8, "metric": "batch_latency_s", "measured": 1.0}
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "tiny", "source": "x", "as_of": "2026", "engine": "vllm",
                                     "points": [point]}))
    foreign = tmp_path / "recorded.json"
    foreign.write_text('{"mine": true}')
    runner = CliRunner()
    res = runner.invoke(app, ["fidelity", "-q", str(suite), "--record", str(foreign), "--note", "first"])
    assert res.exit_code == 2 and "--record" in res.output and foreign.read_text() == '{"mine": true}'
    res = runner.invoke(app, ["fidelity", "-q", str(suite), "--record", str(foreign), "--note", "first", "--force"])
    assert res.exit_code == 0, res.output
    rec = json.loads(foreign.read_text())
    assert rec["note"] == "first" and rec["generator"].startswith("simfactory")
    assert rec["breakdowns"][kind_engine_key("kernels", "vllm")]["skus"] == ["h100-sxm"]
    assert set(rec["suites"]) == {"tiny [kernels]"}
    # a record from fewer suites than are shipped replaces one only with --force (CI holds every suite to it),
    # checked before any suite runs
    res = runner.invoke(app, ["fidelity", "-q", str(suite), "--record", str(foreign), "--note", "second"])
    assert res.exit_code == 2 and "not every shipped suite" in " ".join(res.output.split())
    assert json.loads(foreign.read_text())["note"] == "first" and "predicted vs measured" not in res.output
    res = runner.invoke(app, ["fidelity", "-q", str(suite), "--record", str(foreign), "--note", "second", "--force"])
    assert res.exit_code == 0 and json.loads(foreign.read_text())["note"] == "second"
    report = tmp_path / "report.json"  # a file simfactory wrote that is no record: not replaced by one
    assert runner.invoke(app, ["fidelity", "-q", str(suite), "--json", str(report)]).exit_code == 0
    res = runner.invoke(app, ["fidelity", "-q", str(suite), "--record", str(report), "--note", "x"])
    assert res.exit_code == 2 and "no fidelity record" in " ".join(res.output.split())


def test_a_growth_plan_sized_on_optimistic_forecasts_warns_of_under_commitment():
    from simfactory.plan.growth import optimistic_capacity_warnings

    roof = {"deployment": "r1", "basis": "every engine preset on roofline", "optimism": 0.252, "leaning": "optimistic"}
    kern = {"deployment": "llama8b", "basis": "vllm preset on measured kernels", "optimism": -0.016,
            "leaning": "pessimistic"}
    assert optimistic_capacity_warnings([kern]) == []
    (w,) = optimistic_capacity_warnings([kern, roof])
    assert w.startswith("the capacity per replica rests on forecasts of r1 (every engine preset on roofline) that have "
                        "run +25.2% against published measurements: the plan may commit to about that much too little")


def test_a_sweep_row_carries_its_points_forecast_bias(tmp_path):
    """A grid over SKUs crosses kinds of forecast: each row says how optimistic its most optimistic kind has run."""
    from simfactory.config.scenario import scenario_document
    from simfactory.paths import SCENARIOS_DIR
    from simfactory.plan.sweep import PointJob, run_point
    from simfactory.resolve.files import load_scenario

    doc = scenario_document(load_scenario(SCENARIOS_DIR / "default.yaml"))
    doc["sim"]["horizon_s"], doc["sim"]["warmup_s"] = 20.0, 5.0
    rows = [run_point(PointJob(doc, "default.yaml", i, 0, 1, {"pools.0.sku": sku}))
            for i, sku in enumerate(("h100-sxm", "mi300x"))]
    record = json.loads(RECORD_FILE.read_text())["breakdowns"]
    assert [r["error"] for r in rows] == ["", ""]
    assert rows[0]["forecast.optimism_max"] == record[kind_engine_key("kernels", "vllm")]["optimism"]
    assert rows[1]["forecast.optimism_max"] == record[kind_key("roofline")]["optimism"]  # no vllm points on it
