"""Sweeps: the same table whatever the executor, resumable, and clear errors for bad field paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.config.loader import validate
from simfactory.errors import InputError, InputErrors
from simfactory.plan.grid import SweepSpec, points
from simfactory.plan.sweep import ROWS_FILE, run_sweep
from simfactory.resolve import load_scenario

ROOT = Path(__file__).resolve().parents[1]

runner = CliRunner()
GRID = {"mode": "grid", "replications": 2,
        "parameters": {"deployments.dep.replicas": [1, 2], "traffic.arrival.rate_per_s": [2.0, 4.0]}}


@pytest.fixture
def setup(tmp_path):
    doc = scenario_doc(replicas=2, rate=2.0, horizon_s=30.0)
    path = write_case(tmp_path, doc)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    return path, grid, tmp_path


def _run(path, grid, out, **kw):
    spec = validate(SweepSpec, yaml.safe_load(grid.read_text()), str(grid))
    return run_sweep(load_scenario(path), str(path), spec, str(grid), out, **kw)


def test_jobs_do_not_change_the_table(setup):
    path, grid, tmp = setup
    one = _run(path, grid, tmp / "one")
    two = _run(path, grid, tmp / "two", jobs=2)
    pd.testing.assert_frame_equal(one, two)
    assert len(one) == 8 and (one["error"] == "").all()
    assert one.groupby("point")["seed"].nunique().eq(2).all()  # replications differ
    # more replicas never hurt latency at the same load and seed structure: the grid really changed the runs
    assert set(one["param.deployments.dep.replicas"]) == {1, 2}
    assert pd.read_parquet(tmp / "one" / "results.parquet").equals(one)


def _as_written(out) -> None:
    """Take sweep.jsonl as it is now for rows the sweep appended itself (held to these bytes, as while it runs):
    the rows a test wrote then reach --resume's own checks, past the folder's proof."""
    from simfactory import outputs

    def change(doc):
        outputs._set_streamed(doc, ROWS_FILE, [outputs._content_state(out / ROWS_FILE)])

    outputs.OutputFolder(out, "--out", "sweep")._rewrite_marker(change)


def test_interrupted_sweep_resumes_to_the_same_table(setup):
    path, grid, tmp = setup
    full = _run(path, grid, tmp / "full")
    out = tmp / "cut"

    def interrupt(n, total):
        if n == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(path, grid, out, on_row=interrupt)
    assert len((out / ROWS_FILE).read_text().splitlines()) == 3
    calls = []
    resumed = _run(path, grid, out, resume=True, on_row=lambda n, total: calls.append(n))
    assert calls[0] == 3  # three rows kept, the rest run
    pd.testing.assert_frame_equal(full, resumed)
    assert len((out / ROWS_FILE).read_text().splitlines()) == len(full)
    calls.clear()
    again = _run(path, grid, out, resume=True, on_row=lambda n, total: calls.append(n))
    assert calls == [len(full)]
    pd.testing.assert_frame_equal(full, again)


@pytest.mark.parametrize("row, needle", [
    ("[1]", "line 2: not a row this sweep wrote"),  # TypeError traceback
    ('{"a": 1}', "line 2: not a row this sweep wrote"),  # KeyError 'point' traceback
    ('{"point": "x", "replication": 0}', "line 2: not a row this sweep wrote"),  # TypeError in sorted()
    ('{"point": [1], "replication": 0}', "line 2: not a row this sweep wrote"),  # unhashable list
    ('{"point": 999, "replication": 0}', "point 999 replication 0: not a point of this sweep's grid"),  # joined
    (None, "point 0 replication 0: repeated"),  # a row written twice joined the results twice
])
def test_resume_reads_only_rows_this_sweep_wrote(setup, row, needle):
    """--resume reads sweep.jsonl back: an edited row ended in a TypeError/KeyError traceback, and a stray or
    repeated row silently joined results.csv; now one line naming the rows file and the row, exit 2."""
    path, grid, tmp = setup
    out = tmp / "o"
    _run(path, grid, out)
    lines = (out / ROWS_FILE).read_text().splitlines()
    extra = lines[0] if row is None else row
    (out / ROWS_FILE).write_text(lines[0] + "\n" + extra + "\n")
    _as_written(out)  # an edit is refused before --resume reads a row: as if the sweep had written these
    before = (out / ROWS_FILE).read_text()
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(out), "--resume", "--quiet"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and f"{out / ROWS_FILE}: {needle}" in errors[0], res.output
    assert (out / ROWS_FILE).read_text() == before


def test_unknown_field_path_names_the_nearest(setup):
    path, grid, tmp = setup
    bad = dict(GRID, parameters={"deployments.dep.replics": [1]})
    grid.write_text(yaml.safe_dump(bad))
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(tmp / "o")])
    assert res.exit_code == 2
    assert "unknown field 'replics' in deployments.dep (did you mean replicas" in res.output
    assert "Traceback" not in res.output
    bad = dict(GRID, parameters={"deployments.nope.replicas": [1]})
    grid.write_text(yaml.safe_dump(bad))
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(tmp / "o")])
    assert res.exit_code == 2 and "no entry 'nope' in deployments (valid: 0, dep)" in res.output


def test_a_point_the_scenario_cannot_take_is_recorded(setup):
    path, grid, tmp = setup
    grid.write_text(yaml.safe_dump(dict(GRID, replications=1, parameters={"deployments.dep.replicas": [2, 5]})))
    t = _run(path, grid, tmp / "o")
    assert len(t) == 2
    assert t.loc[0, "error"] == "" and "pool 'pool' has 2 accelerators" in t.loc[1, "error"]


def test_latin_hypercube_is_stratified_and_reproducible():
    spec = SweepSpec(mode="lhs", samples=20, parameters={"a": {"low": 0, "high": 10}, "b": {"low": 1, "high": 100, "log": True}})
    p1, p2 = points(spec, 7), points(spec, 7)
    assert p1 == p2
    a = sorted(p["a"] for p in p1)
    assert all(i / 2 <= x < (i + 1) / 2 for i, x in enumerate(a))  # one draw in each of the 20 strata
    with pytest.raises(InputErrors) as e:
        validate(SweepSpec, {"mode": "grid", "parameters": {"a": {"low": 0, "high": 1}}}, "g.yaml")
    assert str(e.value) == "g.yaml: parameters.a: a range needs mode lhs (grid takes value lists)"


def test_ray_executor_gives_the_same_table(setup, local_ray):
    path, grid, tmp = setup
    local = _run(path, grid, tmp / "local")
    remote = _run(path, grid, tmp / "ray", executor="ray")  # on the fixture's cluster (ray is in the dev extra)
    pd.testing.assert_frame_equal(local, remote)


def test_lhs_integer_ranges_sample_every_value_equally_ends_included():
    from collections import Counter

    spec = SweepSpec(mode="lhs", samples=3000, parameters={"r": {"low": 2, "high": 4, "integer": True}})
    counts = Counter(p["r"] for p in points(spec, seed=1))
    assert set(counts) == {2, 3, 4} and all(abs(n - 1000) <= 1 for n in counts.values())


def test_resume_refuses_rows_made_from_other_input_files(setup):
    """The resume key covers the files the scenario reads: a changed profile is a different sweep."""
    path, grid, tmp = setup
    _run(path, grid, tmp / "o")
    profile = next(path.parent.parent.glob("hardware_profiles/*.yaml"))
    profile.write_text(profile.read_text() + "\n# edited\n")
    with pytest.raises(InputError, match="a file they read"):
        _run(path, grid, tmp / "o", resume=True)


def test_a_parameter_that_is_neither_a_list_nor_a_range_gets_one_plain_message(tmp_path):
    with pytest.raises(InputErrors) as e:
        validate(SweepSpec, {"mode": "grid", "parameters": {"deployments.0.replicas": 5}}, "g.yaml")
    assert str(e.value) == ("g.yaml: parameters.deployments.0.replicas: expected a list of values (grid) or a "
                            "{low, high} range (lhs) (got 5)")


def test_lhs_integer_ranges_with_fractional_bounds_stay_inside_them():
    from collections import Counter

    spec = SweepSpec(mode="lhs", samples=3000, parameters={"r": {"low": 1.5, "high": 4.2, "integer": True}})
    counts = Counter(p["r"] for p in points(spec, seed=1))
    assert set(counts) == {2, 3, 4} and all(abs(n - 1000) <= 1 for n in counts.values())
    with pytest.raises(InputErrors, match="no integer lies in"):
        validate(SweepSpec, {"mode": "lhs", "parameters": {"r": {"low": 1.2, "high": 1.8, "integer": True}}}, "g.yaml")


def test_sweep_prints_a_table_of_its_points_with_units(setup):
    path, grid, tmp = setup
    grid.write_text(yaml.safe_dump(dict(GRID, replications=1, parameters={"deployments.dep.replicas": [2, 5]})))
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(tmp / "o")], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "TTFT p99 ms" in res.output and "replicas" in res.output and "errors" in res.output
    from simfactory.plan.sweep import point_summary

    summary = point_summary(pd.read_parquet(tmp / "o" / "results.parquet"))
    assert summary["errors"].tolist() == [0, 1] and summary["replicas"].tolist() == [2, 5]
    quiet = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(tmp / "q"), "--quiet"])
    assert "TTFT p99 ms" not in quiet.output


def test_a_ray_cluster_that_refuses_us_is_one_line_exit_2_with_the_auth_hint(setup, monkeypatch):
    """Ray 2.60 with token authentication used to end `--ray-address HOST:PORT` in a raw traceback, exit 1."""
    import sys
    import types

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False

    def refuse(**kw):
        raise ConnectionError("Failed to connect to GCS at 10.0.0.5:6379: UNAUTHENTICATED: token required\\nmore")

    fake.init = refuse
    monkeypatch.setitem(sys.modules, "ray", fake)
    path, grid, tmp = setup
    res = runner.invoke(app, ["sweep", str(path), "--grid", str(grid), "--out", str(tmp / "o"), "--executor", "ray",
                              "--ray-address", "10.0.0.5:6379"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--ray-address" in res.output and "UNAUTHENTICATED" in res.output and "RAY_AUTH_TOKEN" in res.output


@pytest.mark.parametrize("name", ["tco-full-stack", "agent-controls"])
def test_a_points_headline_reads_the_same_numbers_as_the_whole_flattened_summary(name):
    """headline() walks only the summary's subtrees that can hold a headline path: the same numbers, in the same
    order, as flattening every number and keeping the headline ones (shipped scenarios with finance and agents)."""
    from simfactory.metrics.summary import compute_metrics
    from simfactory.plan.sweep import HEADLINE_EXCLUDED, HEADLINE_PREFIXES, headline
    from simfactory.regress.flatten import flatten
    from simfactory.resolve import resolve
    from simfactory.sim.run import simulate

    path = ROOT / "scenarios" / f"{name}.yaml"
    summary = compute_metrics(simulate(resolve(load_scenario(path), path), keep_logs=0), trace_tasks=0).summary
    everything = [(k, v) for k, v in flatten(summary).items()
                  if k.startswith(HEADLINE_PREFIXES) and not k.startswith(HEADLINE_EXCLUDED)]
    assert len(everything) > 20 and list(headline(summary).items()) == everything


def test_an_interrupted_parallel_sweep_stops_its_workers_at_once(setup):
    """Ctrl-C with --jobs 2: the workers (which ignore Ctrl-C) ran their points to the end before the sweep exited,
    and a second Ctrl-C meanwhile hung it; now they are terminated, and no worker is left when the sweep returns."""
    import multiprocessing

    path, grid, tmp = setup
    grid.write_text(yaml.safe_dump(dict(GRID, replications=4)))

    def interrupt(n, total):
        if n == 1:
            raise KeyboardInterrupt

    before = {p.pid for p in multiprocessing.active_children()}  # another test's, in this process
    with pytest.raises(KeyboardInterrupt):
        _run(path, grid, tmp / "o", jobs=2, on_row=interrupt)
    assert {p.pid for p in multiprocessing.active_children()} <= before
    assert len((tmp / "o" / ROWS_FILE).read_text().splitlines()) == 1


def test_a_refused_results_write_names_the_file(tmp_path, monkeypatch):
    """pyarrow's OSError on a full disk carries no file name, so the sweep's one error line named none: it names
    results.parquet now; an error that names its file keeps it."""
    from simfactory.plan import sweep

    def full(self, path, **kw):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(OSError) as e:
        sweep._write_results(pd.DataFrame({"a": [1]}), tmp_path)
    assert e.value.filename == "results.parquet" and "No space left on device" in str(e.value)

    def named(self, path, **kw):
        raise OSError(28, "No space left on device", "/mnt/full/x")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", named)
    with pytest.raises(OSError) as e:
        sweep._write_results(pd.DataFrame({"a": [1]}), tmp_path)
    assert e.value.filename == "/mnt/full/x"
