"""`simfactory report RUN_DIR`: one self-contained HTML (no external resources), Markdown, CSV and xlsx."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from openpyxl import load_workbook
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.paths import SCENARIOS_DIR
from simfactory.report.finance import finance_tables

runner = CliRunner()


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.images: list[str] = []
        self.tables = 0
        self.headings: list[str] = []
        self.scripts = 0
        self._in_h = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http://", "https://", "//")):
                self.external.append(a[key])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self.tables += 1
            assert "sortable" in a.get("class", "")
        if tag == "script":
            self.scripts += 1
        self._in_h = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3"):
            self._in_h = False

    def handle_data(self, data):
        if self._in_h:
            self.headings.append(data.strip())


def _array(v) -> np.ndarray:
    """plotly >= 6 writes numeric arrays as base64 typed arrays ({"bdata", "dtype"})."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _plotly_traces(html: str) -> list[list[dict]]:
    """The trace list of every Plotly.newPlot(id, traces, layout, config) call in the page."""
    out, dec = [], json.JSONDecoder()
    for part in html.split("Plotly.newPlot(")[1:]:
        rest = part[part.index(",") + 1:].lstrip()
        traces, _ = dec.raw_decode(rest)
        out.append(traces)
    return out


def test_report_is_self_contained_and_complete(tmp_path):
    run_dir = tmp_path / "run"
    res = runner.invoke(app, ["run", str(SCENARIOS_DIR / "tco-training-mixed.yaml"), "--out", str(run_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    for f in run_dir.glob("finance*"):
        f.unlink()  # the report rebuilds them from summary.json
    res = runner.invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    s = json.loads((run_dir / "summary.json").read_text())
    page = Page()
    page.feed((run_dir / "report.html").read_text())
    assert page.external == []  # opens offline
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    tables = finance_tables(s)
    for t in tables:
        assert t.title in page.headings
    # headline, finance tables, latency, forecast accuracy (overall and per metric), provenance
    assert page.tables == 1 + len(tables) + 4
    assert "Forecast accuracy" in page.headings
    # interactive charts: plotly.js inlined once, and the CDF data are the run's requests
    html = (run_dir / "report.html").read_text()
    assert html.count("Plotly.newPlot(") == 2  # latency CDFs, timelines (no agent tasks here)
    traces = _plotly_traces(html)[0]
    req = pd.read_csv(run_dir / "requests.csv")
    done = req[(req["outcome"] == "completed") & req["measured"]]
    ttft = next(t for t in traces if t["name"].endswith("ttft_s"))
    x = _array(ttft["x"])
    assert len(x) == min(len(done), 2000)
    assert x.max() == pytest.approx(done["ttft_s"].max())
    md = (run_dir / "report.md").read_text()
    assert "Cost per validated checkpoint" in md or "validated checkpoint" in md
    assert load_workbook(run_dir / "finance.xlsx").sheetnames == [t.key for t in tables]
    assert (run_dir / "finance_training.csv").exists()


def test_report_on_a_bad_directory_is_one_line_exit_2(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: ") and "summary.json: not found" in res.output
    assert "Traceback" not in res.output
    (tmp_path / "summary.json").write_text("{not json")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "summary.json: unreadable" in res.output


def _one_error(res, *needles: str) -> str:
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, res.output
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from conftest import scenario_doc, write_case

    root = tmp_path_factory.mktemp("small_run")
    res = runner.invoke(app, ["run", str(write_case(root / "case", scenario_doc(rate=2.0, horizon_s=5.0))),
                              "--out", str(root / "run"), "--no-plots", "--quiet"])
    assert res.exit_code == 0, res.output
    return root / "run"


SUMMARY_EDITS = [  # (edit of summary.json, what the error line names)
    (lambda s: {"scenario": "x", "finance": {}, "cost": {}, "latency_s": {}}, "summary.json: unit_economics: missing"),
    (lambda s: dict(s, finance=[1, 2]), "summary.json: not the shape"),
    (lambda s: dict(s, latency_s="x"), "summary.json: not the shape"),
    (lambda s: dict(s, finance=dict(s["finance"], unit_economics={})), "summary.json: fleet_usd_per_hour: missing"),
    (lambda s: dict(s, provenance=[1]), "summary.json: not the shape"),
    (lambda s: dict(s, tenants={"policy": "x"}), "summary.json: by_tenant: missing"),
]


@pytest.mark.parametrize("edit, needle", SUMMARY_EDITS)
def test_report_on_a_summary_in_another_shape_is_one_line_and_writes_nothing(tmp_path, small_run, edit, needle):
    """A summary.json edited (or written by another tool) into a shape `simfactory run` does not write ended in a
    KeyError / TypeError / AttributeError traceback, after report.md and the finance files were half written."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps(edit(s)))
    before = sorted(p.name for p in run_dir.iterdir())
    # an edited summary.json makes the folder the user's: nothing is added to it; elsewhere, the shape is named
    _one_error(runner.invoke(app, ["report", str(run_dir)]), "summary.json (changed since simfactory wrote it)")
    _one_error(runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")]), needle)
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("table, text, needle", [
    ("requests.csv", "request_id,x\n1,2\n", "requests.csv: outcome: missing column"),
    ("requests.csv", "outcome,measured,deployment,ttft_s,tpot_s,e2e_s\ncompleted,True,a,x,y,z\n",
     "requests.csv: cannot be plotted"),
    ("timeline_replicas.csv", "a\n1\n", "timeline_replicas.csv: deployment: missing column"),
    ("timeline_replicas.csv", "time_s,deployment,kv_used_frac,busy_frac\n0,l,abc,def\n",
     "timeline_replicas.csv: cannot be plotted"),
    ("timeline_system.csv", "a\n1\n", "timeline_system.csv: time_s: missing column"),
])
def test_report_on_a_run_table_in_another_shape_is_one_line(tmp_path, small_run, table, text, needle):
    """The interactive charts read the run's CSVs: a missing column was a KeyError traceback."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)
    (run_dir / table).write_text(text)
    _one_error(runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")]), needle)


@pytest.mark.parametrize("lo, hi, minor_labels", [
    (0.0072, 0.0137, "all"),  # under 0.7 decades: every minor tick in view is labelled
    (0.0234, 0.1194, "2, 3 and 5"),  # the default run's TTFT: 0.03 labelled where the curve rises, not 0.05 alone
    (0.004, 0.2, "2 and 5"),  # under two decades: 2 and 5 only
    (0.002, 30.0, "none"),  # wider: the decades alone (matplotlib's minor labels would crowd)
])
def test_log_axes_label_plain_numbers_without_crowding(lo, hi, minor_labels):
    from simfactory.report.plots import _log_x, plt

    fig, ax = plt.subplots()
    ax.plot([lo, hi], [0, 1])
    _log_x(ax)
    fig.canvas.draw()
    lo_view, hi_view = ax.get_xlim()
    ticks = [(t.get_loc(), t.label1.get_text()) for t in ax.xaxis.get_minor_ticks() if lo_view <= t.get_loc() <= hi_view]
    major = [t.label1.get_text() for t in ax.xaxis.get_major_ticks() if lo_view <= t.get_loc() <= hi_view]
    plt.close(fig)
    labelled = [(x, text) for x, text in ticks if text]
    mantissas = {round(x / 10 ** np.floor(np.log10(x))) for x, _ in labelled}
    if minor_labels == "all":
        assert ticks and len(labelled) == len(ticks)
    elif minor_labels == "2, 3 and 5":
        assert mantissas == {3, 5}  # 2 (0.02) is out of view; every other one in it is labelled
    elif minor_labels == "2 and 5":
        assert labelled and mantissas <= {2, 5}
    else:
        assert not labelled
    assert all(float(text) == pytest.approx(x) for x, text in labelled)  # plain numbers, not 10^k mathtext
    assert all(m and "^" not in m for m in major)


@pytest.mark.parametrize("values", [[31.6, 31.6, 31.6], [0.0297, 0.0301, 0.0308]])
def test_latencies_all_alike_get_a_linear_axis_around_them(values):
    """A log axis over one value collapses (every request of a burst with fixed lengths alike), and over a few
    percent it crowds its minor labels: below NARROW_DECADES the axis stays linear, its window holding the data."""
    from simfactory.report.plots import _log_x, plt

    fig, ax = plt.subplots()
    ax.plot(values, np.linspace(0, 1, len(values)))
    assert _log_x(ax) is False
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    plt.close(fig)
    assert ax.get_xscale() == "linear" and lo < min(values) <= max(values) < hi
