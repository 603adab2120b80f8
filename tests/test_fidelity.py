"""The fidelity runner: error arithmetic on a hand-made suite, and the shipped suite against its record."""

from __future__ import annotations

import json

import pytest
import yaml

from simfactory.fidelity import FIDELITY_DIR, PointResult, load_suite, run_suite, shipped_suites, summarize

MARGIN = 0.02


def test_errors_and_mape_on_a_two_row_suite(tmp_path, monkeypatch):
    suite = {"name": "hand", "source": "test", "as_of": "2026", "engine": "tensorrt-llm", "points": [
        {"id": "a", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128,
         "output_tokens": 128, "metric": "output_tokens_per_s", "measured": 1000.0},
        {"id": "b", "sku": "h100-sxm", "model": "llama-3.1-8b", "dtype": "fp8", "input_tokens": 128,
         "output_tokens": 128, "metric": "output_tokens_per_s", "measured": 4000.0}]}
    p = tmp_path / "hand.yaml"
    p.write_text(yaml.safe_dump(suite))
    import simfactory.fidelity as fid

    monkeypatch.setattr(fid, "offline_output_tokens_per_s", lambda rs: 2000.0)  # a fixed prediction
    results = run_suite(load_suite(p), requests=10)
    assert [r.error for r in results] == [pytest.approx(1.0), pytest.approx(-0.5)]
    (key, s), = summarize(results).items()
    assert key == "hand [roofline]" and s["mape"] == pytest.approx(0.75) and s["worst"] == "a"
    assert s["worst_error"] == pytest.approx(1.0)


def test_summary_groups_by_profile_source():
    rs = [PointResult("s", "x", "m", 100, 110, "roofline"), PointResult("s", "y", "m", 100, 95, "measured")]
    s = summarize(rs)
    assert s["s [roofline]"]["mape"] == pytest.approx(0.10) and s["s [measured]"]["mape"] == pytest.approx(0.05)


def test_shipped_suites_do_not_lose_fidelity():
    recorded = json.loads((FIDELITY_DIR / "recorded.json").read_text())["suites"]
    results = [r for p in shipped_suites() for r in run_suite(load_suite(p), requests=800)]
    summary = summarize(results)
    assert set(summary) == set(recorded)
    for key, s in summary.items():
        assert s["mape"] <= recorded[key]["mape"] + MARGIN, (key, s)
