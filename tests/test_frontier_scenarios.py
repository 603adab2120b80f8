"""Frontier scenarios and the throughput-per-GPU vs interactivity curve (issue #23)."""

from __future__ import annotations

import pytest

from simfactory.paths import SCENARIOS_DIR
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.report.frontier import frontier_curve, plot_frontier_curves, scenario_gpus
from simfactory.resolve import load_and_resolve

FRONTIER = {"frontier-r1-fp8-8xh200": ("h200", "fp8"), "frontier-r1-fp4-8xb200": ("b200", "fp4"),
            "frontier-r1-fp8-8xmi355x": ("mi355x", "fp8")}


def _row(conc, tpot, tput, usd=1.0, error=""):
    return {"param.traffic.arrival.concurrency": str(conc), "latency_s.tpot.mean": str(tpot),
            "throughput.output_tokens_per_s": str(tput), "cost.usd_per_1m_output_tokens": str(usd), "error": error}


def test_curve_closed_form():
    rows = [_row(64, 0.05, 8000.0, 2.0), _row(4, 0.01, 800.0, 10.0), _row(16, "", "", error="too many replicas")]
    pts = frontier_curve(rows, gpus=8)
    assert [p["concurrency"] for p in pts] == [4, 64]
    assert pts[0]["tokens_per_s_per_user"] == pytest.approx(100.0)      # 1 / 0.01 s
    assert pts[0]["output_tokens_per_s_per_gpu"] == pytest.approx(100.0)  # 800 / 8
    assert pts[1]["tokens_per_s_per_user"] == pytest.approx(20.0)
    assert pts[1]["output_tokens_per_s_per_gpu"] == pytest.approx(1000.0)
    assert pts[1]["usd_per_1m_output_tokens"] == pytest.approx(2.0)


def test_curve_averages_replications_and_rejects_no_gpus():
    pts = frontier_curve([_row(8, 0.02, 400.0), _row(8, 0.04, 800.0)], gpus=4)
    assert len(pts) == 1
    assert pts[0]["tokens_per_s_per_user"] == pytest.approx((50.0 + 25.0) / 2)
    assert pts[0]["output_tokens_per_s_per_gpu"] == pytest.approx(150.0)
    with pytest.raises(ValueError):
        frontier_curve([], gpus=0)


def _sweep(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.csv").write_text(
        "param.traffic.arrival.concurrency,latency_s.tpot.mean,throughput.output_tokens_per_s,"
        "cost.usd_per_1m_output_tokens,error\n4,0.01,800,10,\n64,0.05,8000,2,\n")
    return sweep


def test_plot_and_command_write_png_and_points(tmp_path):
    sweep = _sweep(tmp_path)
    out = tmp_path / "curve"
    res = CliRunner().invoke(app, ["frontier", f"{SCENARIOS_DIR / 'frontier-r1-fp8-8xh200.yaml'}={sweep}",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "frontier-curve.png").stat().st_size > 0
    lines = (out / "frontier-curve.csv").read_text().splitlines()
    assert lines[1] == "frontier-r1-fp8-8xh200,4,100.00,100.0,10.000"
    png = tmp_path / "b.png"
    plot_frontier_curves({"a": frontier_curve([_row(1, 0.02, 50.0)], 1)}, png)
    assert png.is_file()


def test_command_refuses_bad_input_and_foreign_folders(tmp_path):
    scenario = SCENARIOS_DIR / "frontier-r1-fp8-8xh200.yaml"
    sweep = _sweep(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    cases = [
        ([f"{scenario}={tmp_path / 'nowhere'}", "--out", str(tmp_path / "o1")], "results.csv: SWEEP_DIR: file not found"),
        ([str(scenario), "--out", str(tmp_path / "o2")], "SCENARIO=SWEEP_DIR: expected a scenario file"),
        ([f"{tmp_path / 'none.yaml'}={sweep}", "--out", str(tmp_path / "o3")], "none.yaml"),
        ([f"{scenario}={sweep}", "--out", str(mine)], str(mine)),
    ]
    for argv, message in cases:
        res = CliRunner().invoke(app, ["frontier", *argv])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert message in res.output, res.output
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (sweep / "results.csv").write_text("a,b\n1,2\n")
    res = CliRunner().invoke(app, ["frontier", f"{scenario}={sweep}", "--out", str(tmp_path / "o4")])
    assert res.exit_code == 2 and "is not a concurrency sweep: no column" in res.output, res.output


@pytest.mark.parametrize("name", sorted(FRONTIER))
def test_frontier_scenario_resolves_to_its_dtype(name):
    path = SCENARIOS_DIR / f"{name}.yaml"
    sku, dtype = FRONTIER[name]
    rs = load_and_resolve(path)
    assert len(rs.deployments) == 1
    d = rs.deployments[0]
    assert d.config.model == "deepseek-r1" and d.config.tp == 8 and d.config.dtype == dtype
    assert d.profile.sku == sku and d.kv_capacity_tokens > 0
    assert scenario_gpus(path) == 8
    assert "roofline" in path.read_text().split("description:", 1)[1].splitlines()[0]


def test_a_results_csv_that_is_a_pipe_or_a_device_is_refused_not_waited_on(tmp_path):
    """read_sweep opened results.csv as any file: a FIFO there hung `frontier` for ever (and /dev/zero never
    ends); it is read as a bounded regular file now, like every other input."""
    import os
    import threading

    scenario = SCENARIOS_DIR / "frontier-r1-fp8-8xh200.yaml"
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "results.csv")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "results.csv").symlink_to("/dev/zero")
    for folder, reason in (("fifo", "named pipe"), ("dev", "character device")):
        box = {}
        worker = threading.Thread(target=lambda: box.setdefault("res", CliRunner().invoke(
            app, ["frontier", f"{scenario}={tmp_path / folder}", "--out", str(tmp_path / f"o-{folder}")])),
            daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), f"frontier on a {reason} hung"
        res = box["res"]
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"results.csv: SWEEP_DIR: is a {reason}" in res.output, res.output
