"""A suite measured twice (repeat_of): how far the two measurements differ, in the report and in the bar's reasons,
and one clear error where the pairing is wrong."""

from __future__ import annotations

import json

import pytest
import yaml

from simfactory.errors import InputError
from simfactory.fidelity import FIDELITY_DIR, load_repeat, load_suite, measurement_spread, setup_key
from simfactory.fidelity_bar import against_bar

BASE = {"sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128, "output_tokens": 128,
        "max_num_seqs": 8}


def _suite(path, name, points, **extra):
    path.write_text(yaml.safe_dump({"name": name, "source": "x", "as_of": "2026", "points": points, **extra}))
    return path


def _pair(tmp_path, first_extra=None):
    """Two suites: 'a' measures a throughput and a batch latency of one setup and a throughput of another; 'b'
    measures the first setup again (both metrics) and a setup 'a' lacks."""
    a = [{"id": "t1", **BASE, "metric": "output_tokens_per_s", "measured": 1000.0},
         {"id": "l1", **BASE, "metric": "batch_latency_s", "measured": 2.0},
         {"id": "t2", **BASE, "tp": 2, "metric": "output_tokens_per_s", "measured": 1500.0}]
    b = [{"id": "again-t1", **BASE, "metric": "output_tokens_per_s", "measured": 1200.0},
         {"id": "again-l1", **BASE, "metric": "batch_latency_s", "measured": 1.5},
         {"id": "other", **BASE, "tp": 4, "metric": "output_tokens_per_s", "measured": 9.0}]
    pa = _suite(tmp_path / "a.yaml", "a", a, repeat_of="b", **(first_extra or {}))
    _suite(tmp_path / "b.yaml", "b", b)
    return pa


def test_spread_is_what_one_measurement_scores_as_a_forecast_of_the_other(tmp_path):
    """Matched by setup and metric only (ids differ); MAPE and optimism as a forecast's: b's 1,200 tok/s for a's
    1,000 is +20% (optimistic), b's 1.5 s for a's 2.0 s batch latency -25% error, +25% optimistic."""
    pa = _pair(tmp_path)
    suite = load_suite(pa)
    spread = measurement_spread(suite, load_repeat(pa, suite))
    assert spread["repeat_of"] == "b" and spread["points"] == 2
    assert spread["mape"] == pytest.approx((0.20 + 0.25) / 2)
    assert spread["optimism"] == pytest.approx((0.20 + 0.25) / 2)
    assert spread["by_metric"]["output_tokens_per_s"] == {"points": 1, "mape": pytest.approx(0.2),
                                                          "optimism": pytest.approx(0.2)}
    assert spread["by_metric"]["batch_latency_s"]["mape"] == pytest.approx(0.25)


def test_a_setup_measured_under_other_conditions_is_not_a_repeat(tmp_path):
    """A point whose setup differs in anything the simulation reads (here its deployment) is left out."""
    pa = _pair(tmp_path, {"deployment": {"kv_dtype": "bf16"}})
    suite = load_suite(pa)
    assert setup_key(suite.points[0]) != setup_key(load_suite(tmp_path / "b.yaml").points[0])
    with pytest.raises(InputError, match="repeat_of: no point of b measures a setup and metric of this suite"):
        measurement_spread(suite, load_repeat(pa, suite), str(pa))


@pytest.mark.parametrize("repeat_of, reason", [
    ("missing", "no suite file missing.yaml beside this one"),
    ("a", "names this suite itself: name the suite that measured it again"),
    ("wrong", "wrong.yaml holds suite 'b', not 'wrong'"),
])
def test_a_wrong_repeat_of_is_one_line_naming_file_and_field(tmp_path, repeat_of, reason):
    from typer.testing import CliRunner

    from simfactory.cli import app

    pa = _pair(tmp_path)
    (tmp_path / "wrong.yaml").write_text((tmp_path / "b.yaml").read_text())
    doc = yaml.safe_load(pa.read_text())
    pa.write_text(yaml.safe_dump({**doc, "repeat_of": repeat_of}))
    res = CliRunner().invoke(app, ["fidelity", "-q", str(pa)])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0] == f"error: {pa}: repeat_of: {reason}", lines


def test_report_and_bar_name_the_spread(tmp_path):
    """The report prints the spread, --json carries it, and a suite outside the bar says how far its two
    measurements differ; one inside the bar is listed as before."""
    from typer.testing import CliRunner

    from simfactory.cli import app

    pa = _pair(tmp_path)
    res = CliRunner().invoke(app, ["fidelity", "-q", str(pa), "--json", str(tmp_path / "f.json")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "measured twice: 2 points of a measured again in b differ by 22.5% on average" in text
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["spread"]["a"]["points"] == 2
    summary = {"a [kernels]": {"mape": 0.3, "optimism": 0.0}, "c [kernels]": {"mape": 0.01, "optimism": 0.0}}
    assert against_bar(summary, spread_mape={"a": 0.225, "c": 0.5}) == (
        ["c [kernels]"], ["a [kernels] (MAPE 30.0%, its setups measured twice differ by 22.5%)"])


def test_shipped_repeats_pair_up():
    """Every shipped suite that names a repeat shares setups with it, and the pairing runs both ways."""
    named = 0
    for path in sorted(FIDELITY_DIR.glob("*.yaml")):
        suite = load_suite(path)
        other = load_repeat(path, suite)
        if other is None:
            continue
        named += 1
        assert other.repeat_of == suite.name
        assert measurement_spread(suite, other)["points"] >= 1
    assert named >= 2


@pytest.mark.parametrize("change, reason", [
    ({"engine": "sglang-0.5"}, "b was simulated with other settings (engine)"),
    ({"max_num_batched_tokens": 2048, "requests_per_client": 3},
     "b was simulated with other settings (max_num_batched_tokens, requests_per_client)"),
])
def test_suites_run_under_other_settings_are_not_repeats(tmp_path, change, reason):
    """The suite-level settings a simulation reads (SUITE_SETTINGS) must agree too: the field promises the same
    engine and client."""
    pa = _pair(tmp_path)
    doc = yaml.safe_load((tmp_path / "b.yaml").read_text())
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**doc, **change}))
    suite = load_suite(pa)
    with pytest.raises(InputError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        measurement_spread(suite, load_repeat(pa, suite), str(pa))


def test_a_repeat_that_measures_one_setup_twice_is_ambiguous(tmp_path):
    pa = _pair(tmp_path)
    doc = yaml.safe_load((tmp_path / "b.yaml").read_text())
    doc["points"].append({**doc["points"][0], "id": "again-t1-twice", "measured": 1300.0})
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(doc))
    suite = load_suite(pa)
    with pytest.raises(InputError, match="measures one setup and metric twice \\(again-t1-twice\\)"):
        measurement_spread(suite, load_repeat(pa, suite), str(pa))
