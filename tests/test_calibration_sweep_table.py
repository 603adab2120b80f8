"""`calibrate sweep`: a benchmark's runs at several concurrency levels summarised into the sweep table
`calibrate fit` reads (calibration/sweep_table.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from simfactory.calibration.sweep_fit import check_sweep, is_sweep_table
from simfactory.calibration.sweep_table import sweep_from_results
from simfactory.cli import app
from simfactory.errors import InputError


def vllm_run(path: Path, concurrency: int | None, ttft: float, tpot: float, n: int = 4, inp: int = 512,
             out: int = 5, failed: int = 0, **extra: Any) -> Path:
    """A `vllm bench serve --save-result --save-detailed` file (the shape tests/test_importers.py documents): n
    requests of fixed lengths, each TTFT `ttft` and then `tpot` per further token, sent `ttft` apart."""
    lat = ttft + tpot * (out - 1)
    ok = n - failed
    doc = {"max_concurrency": concurrency, "request_rate": "inf", "burstiness": 1.0, "duration": 2.0,
           "completed": ok, "failed": failed, "output_throughput": ok * out / 2.0,
           "input_lens": [inp] * n, "output_lens": [out] * ok + [0] * failed,
           "ttfts": [ttft] * ok + [0.0] * failed, "itls": [[tpot] * (out - 1)] * ok + [[]] * failed,
           "latencies": [lat] * ok + [0.0] * failed, "start_times": [100.0 + i * ttft for i in range(n)],
           "errors": [""] * ok + ["Bad Request"] * failed, **extra}
    path.write_text(json.dumps(doc))
    return path


def test_each_file_becomes_one_level_with_the_benchmarks_own_means(tmp_path):
    files = [vllm_run(tmp_path / "c8.json", 8, 0.09, 0.012, failed=1), vllm_run(tmp_path / "c1.json", 1, 0.03, 0.01)]
    table, notes = sweep_from_results(files, "vllm-bench")
    assert table["concurrency"].tolist() == [1, 8]  # sorted by level
    c8 = table.iloc[1]
    assert (c8["input_tokens"], c8["output_tokens"]) == (512, 5)
    assert c8["ttft_s"] == pytest.approx(0.09) and c8["itl_s"] == pytest.approx(0.012)
    assert c8["output_tokens_per_s"] == pytest.approx(3 * 5 / 2.0)  # the file's output_throughput (3 ok requests)
    assert any("1 of 4 requests failed" in n for n in notes)
    assert table["requests"].tolist() == [4, 4]  # every request the run sent (failed ones held a client too)
    checked = check_sweep(table)
    assert is_sweep_table(table) and checked["requests"].tolist() == [4, 4]  # the fit runs each as the bench did
    assert not any("cold start" in n for n in notes)


def test_a_level_also_gives_the_medians_a_first_burst_does_not_move(tmp_path):
    """bench_serving and vllm bench serve print the median TTFT and TPOT beside the means: one slow first request
    moves the means, not the medians, and the fit reads both (phases ttft_median, itl_median)."""
    path = vllm_run(tmp_path / "c4.json", 4, 0.1, 0.01, n=5)
    doc = json.loads(path.read_text())
    doc["ttfts"][0], doc["itls"][0] = 1.1, [0.05] * 4  # the first request waited and then crawled
    doc["latencies"][0] = 1.1 + 0.05 * 4
    path.write_text(json.dumps(doc))
    row = sweep_from_results([path], "vllm-bench")[0].iloc[0]
    assert row["ttft_s"] == pytest.approx(0.3) and row["ttft_median_s"] == pytest.approx(0.1)
    assert row["itl_s"] == pytest.approx(0.018) and row["itl_median_s"] == pytest.approx(0.01)
    two = pd.DataFrame([row.to_dict(), {**row.to_dict(), "concurrency": 8}])
    assert check_sweep(two)["ttft_median_s"].tolist() == pytest.approx([0.1, 0.1])  # a column the fit reads


def test_varying_lengths_are_noted_and_missing_levels_are_one_line(tmp_path):
    f = vllm_run(tmp_path / "a.json", None, 0.05, 0.01)
    doc = json.loads(f.read_text())
    doc["input_lens"] = [100, 900, 100, 900]
    f.write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        sweep_from_results([f], "vllm-bench")
    assert e.value.file == str(f) and e.value.field == "max_concurrency" and "give --concurrency" in e.value.reason
    table, notes = sweep_from_results([f], "vllm-bench", [16])
    assert table["concurrency"].tolist() == [16] and table["input_tokens"].tolist() == [500]
    assert any("input_tokens vary" in n for n in notes)
    with pytest.raises(InputError, match="gives 2 levels for 1 files"):
        sweep_from_results([f], "vllm-bench", [1, 2])
    g = vllm_run(tmp_path / "g.json", 16, 0.05, 0.01, inp=500)
    with pytest.raises(InputError, match="repeats an earlier file"):
        sweep_from_results([f, g], "vllm-bench", [16, 16])


def test_the_command_writes_the_table_fit_reads_and_keeps_a_users_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = vllm_run(tmp_path / "a.json", 1, 0.03, 0.01), vllm_run(tmp_path / "b.json", 4, 0.05, 0.011)
    res = CliRunner().invoke(app, ["calibrate", "sweep", str(a), str(b), "--format", "vllm-bench"])
    assert res.exit_code == 0 and "wrote 2 levels to sweep.csv" in res.output, res.output
    assert is_sweep_table(pd.read_csv("sweep.csv"))
    Path("mine.csv").write_text("precious\n")
    res = CliRunner().invoke(app, ["calibrate", "sweep", str(a), "--format", "vllm-bench", "--out", "mine.csv"])
    assert res.exit_code == 2 and Path("mine.csv").read_text() == "precious\n", res.output
    res = CliRunner().invoke(app, ["calibrate", "sweep", str(a), "--format", "vllm-bench", "--concurrency", "0",
                                   "--out", "x.csv"])
    assert res.exit_code == 2 and "--concurrency" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["calibrate", "sweep", str(a), "--format", "vllm-bench", "--concurrency",
                                   str(2**63), "--out", "x.csv"])
    assert res.exit_code == 2 and "from 1 to 10,000,000" in res.output and not Path("x.csv").exists()


def test_runs_a_sweep_row_cannot_stand_for_are_refused_or_noted(tmp_path):
    inf = vllm_run(tmp_path / "inf.json", None, 0.05, 0.01)
    inf.write_text(inf.read_text().replace('"max_concurrency": null', '"max_concurrency": Infinity'))
    with pytest.raises(InputError) as e:
        sweep_from_results([inf], "vllm-bench")
    assert e.value.field == "max_concurrency" and "whole number" in e.value.reason
    one = vllm_run(tmp_path / "one.json", 4, 0.05, 0.01, out=1)
    with pytest.raises(InputError, match="at least 2 output tokens"):
        sweep_from_results([one], "vllm-bench")
    multi = tmp_path / "benchmarks.json"
    multi.write_text(json.dumps({"benchmarks": [{}, {}]}))
    with pytest.raises(InputError) as e:
        sweep_from_results([multi], "guidellm", [8])
    assert e.value.field == "benchmarks" and "holds 2 runs" in e.value.reason
    with pytest.raises(InputError, match="unknown format"):
        sweep_from_results([one], "bogus")
    old = vllm_run(tmp_path / "old.json", 4, 0.05, 0.01)  # an older vllm: no start_times, no output_throughput
    doc = json.loads(old.read_text())
    del doc["start_times"], doc["output_throughput"]
    old.write_text(json.dumps(doc))
    table, notes = sweep_from_results([old], "vllm-bench")
    assert table["output_tokens_per_s"].isna().all() and any("no throughput" in n for n in notes)
    assert table["itl_s"].notna().all()  # the rest of the row stands


def test_a_format_not_known_to_measure_from_a_cold_start_leaves_the_count_empty(tmp_path):
    """GuideLLM's requests are not known to start with the clients' first burst: no request count (a steady state
    in the fit), and a note saying how to give it."""
    from test_importers import guidellm_report

    f = tmp_path / "benchmarks.json"
    f.write_text(json.dumps(guidellm_report()))
    table, notes = sweep_from_results([f], "guidellm", [4])
    two_levels = pd.concat([table, table.assign(concurrency=8)], ignore_index=True)
    assert table["requests"].isna().all() and check_sweep(two_levels)["requests"].isna().all()
    assert any("requests column is left empty" in n for n in notes)

