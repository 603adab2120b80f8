"""simfactory replaces or deletes only what it can prove it wrote (simfactory.outputs). Each case builds a folder
a user might name as --out, runs the command, and checks that every original entry is still there byte for byte.
HOME always points at a temporary folder (conftest), never at the real one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simfactory.cli import app
from simfactory.outputs import MARKER, clean_stale_temporaries, output_folder, read_marker
from conftest import scenario_doc, write_case

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under root (hidden ones too), without following links: file bytes, link targets, folders."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", stat.S_IMODE(p.stat().st_mode))
            else:
                out[rel] = ("file", p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return out


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    return write_case(tmp_path / "case", scenario_doc(rate=2.0, horizon_s=5.0))


def run_out(scenario: Path, out: Path | str, *extra: str):
    return runner.invoke(app, ["run", str(scenario), "--out", str(out), "--no-plots", "--quiet", *extra])


def assert_refused(res, *words: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for w in words:
        assert w in res.output, (w, res.output)


def _hidden_only(d: Path) -> None:
    (d / ".bashrc").write_text("alias ll='ls -l'\n")
    (d / ".ssh").mkdir()
    (d / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")


def _git_checkout(d: Path) -> None:
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (d / ".env").write_text("TOKEN=secret\n")


def _json_only(d: Path) -> None:
    (d / "credentials.json").write_text('{"key": "secret"}')
    (d / "package.json").write_text('{"name": "app"}')


def _png_only(d: Path) -> None:
    (d / "holiday.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")


def _earlier_run_files(d: Path) -> None:  # what simfactory before the marker wrote: refused all the same
    (d / "summary.json").write_text("{}")
    (d / "requests.csv").write_text("request_id\n")


@pytest.mark.parametrize("fill, first", [(_hidden_only, ".bashrc"), (_git_checkout, ".env"),
                                         (_json_only, "credentials.json"), (_png_only, "holiday.png"),
                                         (_earlier_run_files, "requests.csv")])
def test_a_folder_simfactory_did_not_write_is_refused_and_left_alone(tmp_path, scenario, fill, first):
    target = tmp_path / "target"
    target.mkdir()
    fill(target)
    before = snapshot(target)
    res = run_out(scenario, target)
    assert_refused(res, str(target), repr(first), "did not write")
    assert snapshot(target) == before


def test_the_home_folder_is_refused_even_holding_only_hidden_files(tmp_path, scenario, _isolated_home, monkeypatch):
    # matplotlib keeps its font cache under HOME, written when it is first imported: in a worker where this test
    # imports it first, that write (not simfactory's) changed the home folder under the snapshot
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    import matplotlib.font_manager  # noqa: F401
    _hidden_only(_isolated_home)
    before = snapshot(_isolated_home)
    res = run_out(scenario, _isolated_home)
    assert_refused(res, "home folder")
    assert snapshot(_isolated_home) == before
    # and a folder above home (it holds the home folder)
    res = run_out(scenario, _isolated_home.parent)
    assert_refused(res, "home folder")
    assert snapshot(_isolated_home) == before


def test_filesystem_root_working_directory_and_its_parents_are_refused(tmp_path, scenario, monkeypatch):
    work = tmp_path / "work" / "project"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path / "work")
    assert_refused(run_out(scenario, "/"), "filesystem root")
    assert_refused(run_out(scenario, "."), "working directory")
    assert_refused(run_out(scenario, ".."), "working directory")
    assert snapshot(tmp_path / "work") == before


def test_a_symlink_to_a_folder_with_files_is_refused(tmp_path, scenario):
    real = tmp_path / "real"
    real.mkdir()
    (real / "data.csv").write_text("a,b\n1,2\n")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    before = snapshot(tmp_path)
    assert_refused(run_out(scenario, link), "symbolic link")
    assert snapshot(tmp_path) == before


def test_a_symlink_inside_an_earlier_output_is_foreign(tmp_path, scenario):
    out = tmp_path / "out"
    assert run_out(scenario, out).exit_code == 0
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("keep")
    (out / "extra").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    before = snapshot(tmp_path)
    assert_refused(run_out(scenario, out), "'extra'")
    assert snapshot(tmp_path) == before


def test_a_file_as_out_is_refused(tmp_path, scenario):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert_refused(run_out(scenario, f), "is a file")
    assert f.read_text() == "mine"


def test_an_earlier_output_is_replaced_and_a_user_file_added_to_it_blocks_that(tmp_path, scenario):
    out = tmp_path / "out"
    assert run_out(scenario, out).exit_code == 0
    marker = read_marker(out)
    assert marker is not None and marker["command"] == "run"
    assert set(marker["files"]) == {p.name for p in out.iterdir() if p.name != MARKER}
    assert run_out(scenario, out).exit_code == 0  # an output simfactory wrote: replaced
    (out / "my-notes.md").write_text("analysis I wrote here")
    before = snapshot(out)
    assert_refused(run_out(scenario, out), "'my-notes.md'")
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]  # no temporaries left beside it


def test_an_empty_folder_becomes_the_output(tmp_path, scenario):
    out = tmp_path / "empty"
    out.mkdir()
    assert run_out(scenario, out).exit_code == 0
    assert (out / "summary.json").is_file() and read_marker(out) is not None


def test_outputs_follow_the_umask(tmp_path, scenario):
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert run_out(scenario, out).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from simfactory.outputs import output_folder
    with output_folder(Path(sys.argv[1]), "run") as f:
        def build(tmp):
            (tmp / "summary.json").write_text("{}")
            print("building", flush=True)
            time.sleep(60)
        f.replace(build)
""")


def _start_holder(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "building"
    return proc


def test_a_run_killed_mid_write_leaves_a_temporary_the_next_run_cleans(tmp_path, scenario):
    target = tmp_path / "runs" / "out"
    proc = _start_holder(target)
    proc.kill()  # kill -9
    proc.wait()
    left = [p for p in target.parent.iterdir() if ".simfactory-tmp-" in p.name]
    assert len(left) == 1 and read_marker(left[0]) is not None
    # a hidden folder that merely looks like one of ours, but has no marker, is not touched
    lookalike = target.parent / f".out.simfactory-tmp-{proc.pid}-0-abcd1234"
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("keep")
    assert run_out(scenario, target).exit_code == 0
    assert not left[0].exists()
    assert (lookalike / "keep.txt").read_text() == "keep"
    assert not target.with_name(".out.simfactory-lock").exists()


def test_a_live_writers_temporary_is_not_cleaned(tmp_path):
    target = tmp_path / "out"
    proc = _start_holder(target)
    try:
        assert clean_stale_temporaries(tmp_path) == []
        assert [p for p in tmp_path.iterdir() if ".simfactory-tmp-" in p.name]
    finally:
        proc.kill()
        proc.wait()


def test_two_writers_of_one_output_one_is_refused_cleanly(tmp_path, scenario):
    target = tmp_path / "out"
    proc = _start_holder(target)
    try:
        res = run_out(scenario, target)
        assert_refused(res, "another simfactory process is writing")
    finally:
        proc.kill()
        proc.wait()
    assert not target.exists()  # the killed writer never swapped in; nothing half-written
    assert run_out(scenario, target).exit_code == 0


def test_output_folder_holds_the_lock_for_the_whole_block(tmp_path):
    from simfactory.errors import InputError

    with output_folder(tmp_path / "x", "run"):
        with pytest.raises(InputError, match="another simfactory process"):
            with output_folder(tmp_path / "x", "run"):
                pass


# ------------------------------------------------------------------------------------------ files named by a flag


def test_output_files_a_user_wrote_need_force(tmp_path, scenario):
    trace = tmp_path / "trace.json"
    trace.write_text('{"mine": true}')
    res = run_out(scenario, tmp_path / "out", "--trace", str(trace))
    assert_refused(res, "not written by simfactory", "--force")
    assert trace.read_text() == '{"mine": true}' and not (tmp_path / "out").exists()
    assert run_out(scenario, tmp_path / "out", "--trace", str(trace), "--force").exit_code == 0
    assert json.loads(trace.read_text())["otherData"]["generator"].startswith("simfactory")
    assert run_out(scenario, tmp_path / "out", "--trace", str(trace)).exit_code == 0  # ours now: replaced


def test_trace_outputs_refuse_user_files(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                   "2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:51.0,100,10\n")
    mine = tmp_path / "stats.json"
    mine.write_text('{"keep": 1}')
    res = runner.invoke(app, ["trace", "stats", str(src), "--format", "azure", "--json", str(mine)])
    assert_refused(res, "not written by simfactory")
    assert mine.read_text() == '{"keep": 1}'
    ours = tmp_path / "ours.json"
    assert runner.invoke(app, ["trace", "stats", str(src), "--format", "azure", "--json", str(ours)]).exit_code == 0
    assert runner.invoke(app, ["trace", "stats", str(src), "--format", "azure", "--json", str(ours)]).exit_code == 0
    wl = tmp_path / "workload.yaml"
    wl.write_text("name: mine\n")
    res = runner.invoke(app, ["trace", "fit", str(src), "--format", "azure", "-o", str(wl)])
    assert_refused(res, "not written by simfactory")
    assert wl.read_text() == "name: mine\n"


def test_output_file_that_is_a_link_or_special_file_is_refused(tmp_path, scenario):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert_refused(run_out(scenario, tmp_path / "out", "--trace", str(link), "--force"), "symbolic link")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert_refused(run_out(scenario, tmp_path / "out", "--trace", str(fifo), "--force"), "not a regular file")
    assert real.read_text() == "{}"


def test_calibrate_import_does_not_replace_a_table_without_force(tmp_path):
    bench = REPO / "tests" / "fixtures" / "calibration" / "vllm_bench.json"
    mine = tmp_path / "requests.csv"
    mine.write_text("my,own\n1,2\n")
    res = runner.invoke(app, ["calibrate", "import", str(bench), "--format", "vllm-bench", "--out", str(mine)])
    assert_refused(res, "--force")
    assert mine.read_text() == "my,own\n1,2\n"
    res = runner.invoke(app, ["calibrate", "import", str(bench), "--format", "vllm-bench", "--out", str(mine), "--force"])
    assert res.exit_code == 0, res.output


def test_baseline_update_refuses_to_replace_a_file_that_is_not_a_baseline(tmp_path, scenario):
    base = tmp_path / "baselines"
    base.mkdir()
    name = yaml.safe_load(scenario.read_text())["name"]
    (base / f"{name}.json").write_text('{"my": "data"}')
    before = snapshot(base)
    res = runner.invoke(app, ["baseline", "update", str(scenario), "--baseline-dir", str(base)])
    assert_refused(res, "cannot be read as a baseline", "--force")
    assert snapshot(base) == before
    res = runner.invoke(app, ["baseline", "update", str(scenario), "--baseline-dir", str(base), "--force"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("name", ["../escaped", "/tmp/elsewhere", "a/b", "", ".", "a\x00b", [1], {"a": 1}, 7])
def test_baseline_of_a_run_folder_is_named_only_by_a_scenario_name(tmp_path, scenario, name):
    """A run folder's summary.json names the baseline file: a name with a path in it wrote the baseline outside
    --baseline-dir ("../escaped" -> a sibling file; "/abs" -> anywhere), and a list or object name ended in a
    TypeError traceback. Only a scenario name (letters, digits, . _ -) names a baseline."""
    run_dir = tmp_path / "run"
    assert run_out(scenario, run_dir).exit_code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps(dict(summary, scenario=name)))
    base = tmp_path / "baselines" / "inner"
    base.mkdir(parents=True)
    before = snapshot(tmp_path)
    for cmd in (["baseline", "update"], ["regress"]):
        res = runner.invoke(app, [*cmd, str(run_dir), "--baseline-dir", str(base)])
        assert_refused(res, "summary.json: scenario: expected a scenario name")
        assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ other commands


def test_report_adds_only_its_own_files_to_a_run_folder_simfactory_wrote(tmp_path, scenario):
    out = tmp_path / "out"
    assert run_out(scenario, out).exit_code == 0
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and "report.html" in read_marker(out)["files"]
    assert run_out(scenario, out).exit_code == 0  # the report's files are listed: the folder is still replaceable
    # a folder without the marker (a copy, or an older simfactory's) gets nothing added
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "summary.json").write_bytes((out / "summary.json").read_bytes())
    before = snapshot(copy)
    assert_refused(runner.invoke(app, ["report", str(copy)]), "marker")
    assert snapshot(copy) == before
    res = runner.invoke(app, ["report", str(copy), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert snapshot(copy) == before and (tmp_path / "r.html").is_file()


def test_compare_refuses_a_folder_with_user_files_before_simulating(tmp_path, scenario):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}")
    before = snapshot(out)
    res = runner.invoke(app, ["compare", str(scenario), str(scenario), "--out", str(out)])
    assert_refused(res, "'thesis.tex'")
    assert snapshot(out) == before


def test_compare_output_is_replaced_whole_on_a_rerun(tmp_path, scenario):
    out = tmp_path / "cmp"
    for _ in range(2):
        res = runner.invoke(app, ["compare", str(scenario), str(scenario), "--out", str(out)])
        assert res.exit_code == 0, res.output
    marker = read_marker(out)
    assert marker is not None and len(marker["folders"]) == 2
    for sub in marker["folders"]:
        assert read_marker(out / sub) is not None
    (out / marker["folders"][0] / "mine.txt").write_text("x")  # foreign, one level down
    assert_refused(runner.invoke(app, ["compare", str(scenario), str(scenario), "--out", str(out)]), "mine.txt")


def test_sweep_refuses_a_foreign_folder_and_resumes_only_its_own(tmp_path, scenario):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"mode": "grid", "replications": 1,
                                    "parameters": {"traffic.arrival.rate_per_s": [1.0, 2.0]}}))
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results.csv").write_text("my,results\n")
    before = snapshot(out)
    res = runner.invoke(app, ["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "--quiet"])
    assert_refused(res, "'results.csv'")
    assert snapshot(out) == before
    res = runner.invoke(app, ["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "--quiet", "--resume"])
    assert_refused(res, "marker")
    assert snapshot(out) == before
    fresh = tmp_path / "fresh"
    for args in ([], ["--resume"]):
        res = runner.invoke(app, ["sweep", str(scenario), "--grid", str(grid), "--out", str(fresh), "--quiet", *args])
        assert res.exit_code == 0, res.output
    assert {"results.csv", "results.parquet", "sweep.jsonl"} <= set(read_marker(fresh)["files"])


def test_regress_report_dir_refuses_a_foreign_folder(tmp_path, scenario):
    base = tmp_path / "baselines"
    assert runner.invoke(app, ["baseline", "update", str(scenario), "--baseline-dir", str(base)]).exit_code == 0
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "keep.xml").write_text("<mine/>")
    before = snapshot(rep)
    res = runner.invoke(app, ["regress", str(scenario), "--baseline-dir", str(base), "--report-dir", str(rep)])
    assert_refused(res, "'keep.xml'")
    assert snapshot(rep) == before
    ok = runner.invoke(app, ["regress", str(scenario), "--baseline-dir", str(base), "--report-dir", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r" / "regress.junit.xml").is_file()


def test_regress_json_is_never_a_baseline_or_the_tolerances_it_reads(tmp_path, scenario):
    """regress --json naming one of the baselines it compares with (stamped, so provably simfactory's) replaced that
    baseline with the diff; naming the tolerances file or a file in --report-dir is refused too, nothing run."""
    base = tmp_path / "baselines"
    assert runner.invoke(app, ["baseline", "update", str(scenario), "--baseline-dir", str(base)]).exit_code == 0
    (baseline,) = base.glob("*.json")
    tol = tmp_path / "tol.yaml"
    tol.write_text("rules: {}\n")
    before = snapshot(tmp_path)
    for target, extra, words in ((baseline, [], ("--baseline-dir", "name a file outside it")),
                                 (tol, ["--tolerances", str(tol)], ("is the input",)),
                                 (tmp_path / "rep" / "x.json", ["--report-dir", str(tmp_path / "rep")], ("--report-dir",))):
        res = runner.invoke(app, ["regress", str(scenario), "--baseline-dir", str(base), "--json", str(target), *extra])
        assert_refused(res, *words)
        assert snapshot(tmp_path) == before
    dangling = tmp_path / "gone"
    dangling.symlink_to(tmp_path / "nowhere")
    res = runner.invoke(app, ["baseline", "update", str(scenario), "--baseline-dir", str(dangling)])
    assert_refused(res, "symbolic link", "does not exist")


def test_temporaries_older_than_their_process_only(tmp_path):
    """The owner test behind cleaning: a pid that is alive with the same start time owns its temporary."""
    from simfactory.processes import alive, start_ticks

    me = os.getpid()
    assert alive(me, start_ticks(me))
    assert not alive(me, (start_ticks(me) or 0) + 12345)  # same pid, another process start: reused pid
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    assert not alive(proc.pid, None)


def test_calibrate_fit_refuses_a_profile_the_user_wrote_with_one_line(tmp_path):
    """`calibrate fit` on a step table, with a profile of the user's own where the fit would go: one error line,
    exit 2, the user's file untouched (it used to end in a traceback)."""
    hp = tmp_path / "hp"
    mine = hp / "a100-80gb" / "llama-13b-vllm-fp16-tp1.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own notes\n")
    before = snapshot(hp)
    steps = REPO / "calibrate" / "datasets" / "muxserve-a100" / "llama-13b-tp1.steps.csv"
    args = ["calibrate", "fit", str(steps), "--sku", "a100-80gb", "--model", "llama-13b", "--engine", "vllm",
            "--dtype", "fp16", "--tp", "1", "--fit", "linear", "--profiles-dir", str(hp)]
    assert_refused(runner.invoke(app, args), str(mine), "not written by simfactory", "--force")
    assert snapshot(hp) == before


def test_the_console_entry_turns_an_input_error_no_command_caught_into_one_line(tmp_path, monkeypatch):
    """The net under every command (simfactory.cli.console): an InputError a command lets through is printed as
    one line with exit 2, in a real process."""
    code = textwrap.dedent("""
        import typer
        from simfactory.cli import main
        from simfactory.errors import InputError

        def boom() -> None:
            raise InputError("x.yaml", "field", "reason")

        main.app.command("boom")(boom)
        main.console()
    """)
    res = subprocess.run([sys.executable, "-c", code, "boom"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip() == "error: x.yaml: field: reason"


# ------------------------------------------------------------------------------------------ proof of authorship
# (an independent audit of every writer, 2026-12-07, found each of these)


def test_a_file_is_ours_only_while_its_stamp_matches_its_content(tmp_path):
    """A stamp is the sha256 of the file's own content: an unchanged stamped file is ours; a mention of simfactory,
    a generator key of the user's or a stamped file edited since is not."""
    from simfactory.outputs import GENERATOR, stamp_json, stamp_text, written_by_simfactory

    cases = {
        "tagged.md": "The generator: simfactory tag is in our notes\nIMPORTANT\n",
        "mine.json": json.dumps({"generator": "simfactory-like my own tool", "data": 1}),
        "old.yaml": f"# generator: {GENERATOR}\nname: mine\n",  # an unstamped tag, as simfactory wrote before
        "code.py": (REPO / "simfactory" / "outputs.py").read_text(),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert not written_by_simfactory(tmp_path / name), name
    for name, text in {"a.yaml": stamp_text("# header\nname: x\n", at_line=1),
                       "a.html": stamp_text("<!DOCTYPE html>\n<html></html>\n", "<!-- ", " -->", at_line=1),
                       "a.json": stamp_json({"x": [1, 2.5, None], "y": "z"})}.items():
        path = tmp_path / name
        path.write_text(text)
        assert written_by_simfactory(path), name
        path.write_text(text.replace("x", "w").replace("html>", "html >"))  # an edit: no longer what it wrote
        assert text != path.read_text() and not written_by_simfactory(path), name
    doc = json.loads(stamp_json({"generator": "old", "content_sha256": "0", "k": 1}))
    assert list(doc)[:2] == ["generator", "content_sha256"] and doc["generator"] == GENERATOR


def test_a_stamped_json_reformatted_or_with_a_key_twice_is_the_users(tmp_path):
    """The JSON stamp hashes the file's bytes, not what they parse to: a reformatted copy (same content, other
    layout) or one with a key added twice (the last one wins when parsed) is no longer the file simfactory wrote."""
    from simfactory.outputs import stamp_json, written_by_simfactory

    text = stamp_json({"x": [1, 2.5], "y": "z"})
    path = tmp_path / "a.json"
    path.write_text(text)
    assert written_by_simfactory(path)
    path.write_text(json.dumps(json.loads(text), indent=4) + "\n")  # reformatted: what it parses to is unchanged
    assert json.loads(path.read_text()) == json.loads(text) and not written_by_simfactory(path)
    path.write_text(text.replace('"y": "z"', '"y": "mine", "y": "z"'))  # parses to the same object
    assert json.loads(path.read_text()) == json.loads(text) and not written_by_simfactory(path)
    path.write_text(text.rstrip("\n"))  # one byte less
    assert not written_by_simfactory(path)
    compact = stamp_json({"x": 1}, indent=None)
    path.write_text(compact)
    assert written_by_simfactory(path)


def test_a_hand_edited_output_is_never_replaced_without_force(tmp_path, scenario):
    """A --json file simfactory wrote is replaced by the next run; once the user edits it, it is theirs."""
    out_json = tmp_path / "s.json"
    assert run_out(scenario, tmp_path / "out", "--json", str(out_json)).exit_code == 0
    assert run_out(scenario, tmp_path / "out", "--json", str(out_json)).exit_code == 0  # ours, unchanged: replaced
    doc = json.loads(out_json.read_text())
    doc["my_note"] = "keep this"
    out_json.write_text(json.dumps(doc, indent=1))
    before = snapshot(tmp_path / "out"), out_json.read_bytes()
    assert_refused(run_out(scenario, tmp_path / "out", "--json", str(out_json)), "not written by simfactory")
    assert (snapshot(tmp_path / "out"), out_json.read_bytes()) == before
    init_file = tmp_path / "my.yaml"  # init's scenario, edited by hand: not replaced by another command's output
    res = runner.invoke(app, ["init", "--non-interactive", "-o", str(init_file)])
    assert res.exit_code == 0, res.output
    with init_file.open("a") as f:
        f.write("# my edit\n")
    edited = init_file.read_bytes()
    assert_refused(run_out(scenario, tmp_path / "out2", "--json", str(init_file)), "not written by simfactory")
    assert init_file.read_bytes() == edited


def test_files_named_like_simfactorys_lock_or_temporaries_are_the_users(tmp_path, scenario):
    """A file at the lock's name that is not simfactory's lock record refuses the write and stays; a file named
    like a temporary is never removed."""
    lock = tmp_path / ".r1.simfactory-lock"
    lock.write_text("A\n")
    lookalike = tmp_path / ".notes.simfactory-file-999999-1-abcd"
    lookalike.write_text("B\n")
    assert_refused(run_out(scenario, tmp_path / "r1"), ".r1.simfactory-lock", "not simfactory's lock")
    assert lock.read_text() == "A\n" and not (tmp_path / "r1").exists()
    assert run_out(scenario, tmp_path / "r2").exit_code == 0
    assert lookalike.read_text() == "B\n" and lock.read_text() == "A\n"
    assert not (tmp_path / ".r2.simfactory-lock").exists()  # its own lock, removed


def test_init_writes_its_draft_in_a_folder_of_its_own(tmp_path):
    """init's draft used to be a fixed name beside the output: a user's file there was consumed, a link there
    followed (overwriting what it pointed at), a failed validation deleted it."""
    user = tmp_path / "user.txt"
    user.write_text("mine\n")
    (tmp_path / ".d1.yaml.draft.yaml").write_text("draft of mine\n")
    (tmp_path / ".d2.yaml.draft.yaml").symlink_to(user)
    before = snapshot(tmp_path)
    for name in ("d1.yaml", "d2.yaml"):
        res = runner.invoke(app, ["init", "--non-interactive", "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    bad = runner.invoke(app, ["init", "--non-interactive", "--model", "llama-3.1-405b", "--sku", "l40s", "--tp", "1",
                              "-o", str(tmp_path / "d4.yaml")])
    assert bad.exit_code == 2
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k not in ("d1.yaml", "d2.yaml")} == before
    assert not (tmp_path / "d2.yaml").is_symlink() and not (tmp_path / "d4.yaml").exists()


def test_a_marker_naming_entries_outside_its_folder_is_none_of_ours(tmp_path, scenario):
    out = tmp_path / "r1"
    assert run_out(scenario, out).exit_code == 0
    victim = tmp_path / "userfile.txt"
    victim.write_text("keep\n")
    marker = json.loads((out / MARKER).read_text())
    marker["files"] += ["../userfile.txt", str(victim)]
    (out / MARKER).write_text(json.dumps(marker))
    assert read_marker(out) is None
    assert_refused(run_out(scenario, out), "marker")
    assert victim.read_text() == "keep\n"


def test_a_file_the_user_changed_in_an_output_folder_makes_it_theirs(tmp_path, scenario):
    """The marker keeps each file's size and time: an edited summary.md or finance.xlsx is not replaced by a rerun
    or a report."""
    out = tmp_path / "r1"
    assert run_out(scenario, out).exit_code == 0
    with (out / "summary.md").open("a") as f:
        f.write("\nmy conclusions\n")
    before = snapshot(out)
    assert_refused(run_out(scenario, out), "summary.md (changed since simfactory wrote it)")
    assert_refused(runner.invoke(app, ["report", str(out)]), "summary.md (changed since simfactory wrote it)")
    assert snapshot(out) == before


def test_a_command_does_not_replace_another_commands_output(tmp_path, scenario):
    out = tmp_path / "r1"
    assert run_out(scenario, out).exit_code == 0
    before = snapshot(out)
    res = runner.invoke(app, ["compare", str(scenario), str(scenario), "--out", str(out)])
    assert_refused(res, "holds the output of `simfactory run`", "`simfactory compare` does not replace")
    assert snapshot(out) == before
    assert run_out(scenario, out).exit_code == 0  # its own command replaces it


def test_one_commands_outputs_never_land_on_each_other_or_on_its_input(tmp_path, scenario):
    x = tmp_path / "x.json"
    assert_refused(run_out(scenario, tmp_path / "out", "--json", str(x), "--trace", str(x)), "--trace",
                   "one command's outputs must be different files")
    assert_refused(run_out(scenario, tmp_path / "out", "--json", str(tmp_path / "out" / "s.json")),
                   "inside the --out folder")
    assert not x.exists() and not (tmp_path / "out").exists()
    otlp = tmp_path / "otlp.json"
    otlp.write_text("{}")
    res = runner.invoke(app, ["trace", "fit-agent", str(otlp), "-o", str(otlp), "--force"])
    assert_refused(res, "is the input")
    assert otlp.read_text() == "{}"
    res = runner.invoke(app, ["fidelity", "-q", "--record", str(x), "--json", str(x)])
    assert_refused(res, "one command's outputs must be different files")
    assert_refused(runner.invoke(app, ["fidelity", "-q", "--note", "why"]), "--note", "give --record")
    assert not x.exists()


def test_resume_refuses_a_damaged_row_with_rows_after_it(tmp_path, scenario):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"mode": "grid", "replications": 1,
                                    "parameters": {"traffic.arrival.rate_per_s": [1.0, 2.0]}}))
    out = tmp_path / "sweep"
    assert runner.invoke(app, ["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "-q"]).exit_code == 0
    rows = (out / "sweep.jsonl").read_text().splitlines(keepends=True)
    (out / "sweep.jsonl").write_text("{not json\n" + "".join(rows))
    before = snapshot(out)
    res = runner.invoke(app, ["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "-q", "--resume"])
    assert_refused(res, "sweep.jsonl", "changed since simfactory wrote it")
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------ the re-audit's findings


def test_text_added_to_the_stamp_line_breaks_the_proof(tmp_path):
    """The stamp line is dropped before hashing, so it must be exactly the stamp: notes added to it are the user's."""
    from simfactory.outputs import stamp_text, written_by_simfactory

    for text, prefix, suffix, at in (("<!DOCTYPE html>\n<html></html>\n", "<!-- ", " -->", 1), ("name: x\n", "# ", "", 0)):
        path = tmp_path / "f"
        path.write_text(stamp_text(text, prefix, suffix, at))
        assert written_by_simfactory(path)
        lines = path.read_text().splitlines(keepends=True)
        lines[at] = lines[at].rstrip("\n") + "  my notes\n"
        path.write_text("".join(lines))
        assert not written_by_simfactory(path)
    with pytest.raises(ValueError):
        stamp_text("x\n", "// ")


def test_an_output_never_replaces_the_commands_own_input(tmp_path, scenario):
    """An init scenario is provably simfactory's: named as run's or compare's --json (or --trace), it was replaced
    by the output made from it."""
    mine = tmp_path / "my.yaml"
    assert runner.invoke(app, ["init", "--non-interactive", "--rate", "1", "-o", str(mine)]).exit_code == 0
    before = mine.read_bytes()
    for extra in (["--json", str(mine)], ["--trace", str(mine), "--force"]):
        assert_refused(run_out(mine, tmp_path / "r", *extra), "is the input")
    assert_refused(runner.invoke(app, ["compare", str(mine), str(scenario), "--out", str(tmp_path / "c"), "--json",
                                       str(mine)]), "is the input")
    assert mine.read_bytes() == before


def test_a_folder_from_before_file_stamps_is_not_taken_as_unchanged(tmp_path, scenario):
    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    marker = json.loads((out / MARKER).read_text())
    del marker["stamps"]  # as simfactory wrote markers before it kept stamps
    (out / MARKER).write_text(json.dumps(marker))
    assert_refused(run_out(scenario, out), "cannot tell whether it changed")


def test_simfactory_never_blocks_its_own_folder(tmp_path, scenario):
    """A --trace deeper inside the run folder, a --json reached through a link to it, a report --out inside it:
    refused up front (each made a folder simfactory then refused as foreign)."""
    out = tmp_path / "r"
    assert_refused(run_out(scenario, out, "--trace", str(out / "sub" / "t.json")), "inside the --out folder")
    (tmp_path / "lnk").symlink_to(out, target_is_directory=True)
    assert_refused(run_out(scenario, out, "--json", str(tmp_path / "lnk" / "s.json")), "inside the --out folder")
    assert run_out(scenario, out, "--trace", str(out / "t.json")).exit_code == 0  # directly in it: one of its files
    assert_refused(runner.invoke(app, ["report", str(out), "--out", str(out / "mine.html")]), "inside the RUN_DIR")
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert run_out(scenario, out).exit_code == 0


def test_an_interrupted_report_leaves_a_folder_simfactory_can_still_write(tmp_path, scenario, monkeypatch):
    """report's files move in one by one, each listed first: cut after any of them, the folder is still ours, and
    the killed writer's temporary inside it is cleaned by the next write."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    real_replace, moved = os.replace, []

    def cut(src, dst):  # the third file never moves in: as a kill would leave it (the temporary too)
        if len(moved) == 2:
            raise KeyboardInterrupt
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", cut)
    monkeypatch.setattr(outputs.shutil, "rmtree", lambda *a, **k: None)  # the temporary stays behind, as on kill -9
    with pytest.raises(KeyboardInterrupt):
        with outputs.output_folder(out, "report", "RUN_DIR", existing=True) as folder:
            folder.add(lambda tmp: [(tmp / n).write_text(n) for n in ("a.txt", "b.txt", "c.txt")])
    monkeypatch.undo()
    assert len(moved) == 2 and any(".simfactory-tmp-" in p.name for p in out.iterdir())
    monkeypatch.setattr(outputs, "alive", lambda *a: False)  # the interrupted writer is gone, as after kill -9
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    monkeypatch.undo()
    assert not any(".simfactory-tmp-" in p.name for p in out.iterdir()) and outputs.foreign_entry(out) is None
    assert run_out(scenario, out).exit_code == 0


def test_a_swap_cut_between_its_renames_gives_the_earlier_output_back(tmp_path, scenario, monkeypatch):
    """kill -9 between moving the earlier output aside and moving the new one in: the next write puts the earlier
    output back under its name (it used to delete it, with the new one)."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    earlier = snapshot(out)
    real_rename, calls = os.rename, []

    def cut(src, dst):
        calls.append(dst)
        if len(calls) >= 2:  # the new output into place, and the roll-back after it: a kill stops both
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", cut)
    monkeypatch.setattr(outputs.shutil, "rmtree", lambda *a, **k: None)  # nothing cleaned, as on kill -9
    with pytest.raises(KeyboardInterrupt):
        with outputs.output_folder(out, "run") as folder:
            folder.replace(lambda tmp: (tmp / "summary.json").write_text("{}"))
    monkeypatch.undo()
    assert not out.exists()
    monkeypatch.setattr(outputs, "alive", lambda *a: False)  # that writer is gone
    outputs.clean_stale_temporaries(tmp_path)
    monkeypatch.undo()
    assert snapshot(out) == earlier and not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]


def _finished_sweep(tmp_path: Path, scenario: Path) -> tuple[Path, list[str]]:
    """A two-point sweep run to the end in tmp_path/sweep, and the command line that ran it."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"mode": "grid", "replications": 1,
                                    "parameters": {"traffic.arrival.rate_per_s": [1.0, 2.0]}}))
    out = tmp_path / "sweep"
    args = ["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    return out, args


def test_a_finished_sweeps_rows_are_stamped_and_an_edit_to_them_shows(tmp_path, scenario):
    """sweep.jsonl grows while a sweep runs (no stamp then); once every row is written it is stamped, so a hand
    edit is no longer dropped by a rerun nor read back by --resume."""
    out, args = _finished_sweep(tmp_path, scenario)
    assert runner.invoke(app, [*args, "--resume"]).exit_code == 0  # nothing left to run: still stamped after
    assert "sweep.jsonl" in read_marker(out)["stamps"] and not read_marker(out)["streamed"]
    rows = (out / "sweep.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    first["my_annotation"] = "keep"
    (out / "sweep.jsonl").write_text("\n".join([json.dumps(first), *rows[1:]]) + "\n")
    before = snapshot(out)
    for extra in ([], ["--resume"]):
        assert_refused(runner.invoke(app, [*args, *extra]), "sweep.jsonl (changed since simfactory wrote it)")
    assert snapshot(out) == before


def test_baseline_update_replaces_only_a_baseline_it_can_prove_it_wrote(tmp_path, scenario):
    """A baseline edited by hand (a note added) is a readable baseline, but not what simfactory wrote: kept unless
    --force; an unchanged one is replaced (and every shipped baseline carries its stamp)."""
    from simfactory.outputs import written_by_simfactory

    base = tmp_path / "baselines"
    args = ["baseline", "update", str(scenario), "--baseline-dir", str(base)]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0  # its own, unchanged: replaced
    (path,) = base.glob("*.json")
    doc = json.loads(path.read_text())
    doc["my_note"] = "curated by hand"
    path.write_text(json.dumps(doc, indent=1))
    before = snapshot(base)
    assert_refused(runner.invoke(app, args), "cannot prove it wrote", "--force")
    assert snapshot(base) == before
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert all(written_by_simfactory(p) for p in (REPO / "reports" / "baselines").glob("*.json"))


def test_ctrl_c_while_starting_is_one_line_not_a_traceback():
    """The console script guards the CLI's import: an interrupt during start-up printed a KeyboardInterrupt
    traceback; now one line and exit 130, nothing written."""
    code = textwrap.dedent("""
        import builtins
        real = builtins.__import__

        def interrupted(name, *args, **kwargs):
            if name == "simfactory.cli.main":
                raise KeyboardInterrupt
            return real(name, *args, **kwargs)

        builtins.__import__ = interrupted
        from simfactory._console import main
        main()
    """)
    res = subprocess.run([sys.executable, "-c", code, "run"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 130 and "Traceback" not in res.stderr
    assert res.stderr.strip() == "interrupted while starting: nothing was written"


def test_a_sweep_run_again_keeps_the_earlier_one_until_it_is_done(tmp_path, scenario, monkeypatch):
    """Run again without --resume, a sweep is built beside the earlier one and swapped in at the end: interrupted,
    the earlier sweep is as it was (it used to be replaced at the start)."""
    import simfactory.plan.sweep as sweep_module

    out, args = _finished_sweep(tmp_path, scenario)
    before = snapshot(out)
    real = sweep_module.run_point

    def second_point_interrupted(job):
        if job.point == 1:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(sweep_module, "run_point", second_point_interrupted)
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    monkeypatch.undo()
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]
    assert runner.invoke(app, args).exit_code == 0  # run again to the end: the new sweep replaces it
    assert read_marker(out) is not None and (out / "results.csv").is_file()


# ------------------------------------------------------------------------------------------ leftovers of a kill
# (a third audit, 2026-12-07: cleanup took a folder the user named like a temporary, and leftovers blocked folders)


def test_an_output_named_like_a_temporary_is_refused(tmp_path, scenario):
    """A folder the user names like simfactory's temporaries (dead pid, our marker once written) would be removed
    by the next write beside it: such names are refused, for folders and files."""
    for name in (".x.simfactory-tmp-99999-0-abcd1234", ".x.simfactory-lock", f"{MARKER}.abcd1234.tmp"):
        assert_refused(run_out(scenario, tmp_path / name), "temporaries", "name it otherwise")
        res = run_out(scenario, tmp_path / "ok", "--json", str(tmp_path / name))
        assert_refused(res, "temporaries")
    assert [p.name for p in tmp_path.iterdir()] == ["scenario.yaml"] or not any(
        ".simfactory-" in p.name for p in tmp_path.iterdir())


def _cut_swap(out: Path, monkeypatch) -> None:
    """Replace `out` and stop (as kill -9 would) right after the earlier output is set aside."""
    import simfactory.outputs as outputs

    real_rename, calls = os.rename, []

    def cut(src, dst):
        calls.append(dst)
        if len(calls) >= 2:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", cut)
    monkeypatch.setattr(outputs.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        with outputs.output_folder(out, "run") as folder:
            folder.replace(lambda tmp: (tmp / "summary.json").write_text("{}"))
    monkeypatch.undo()


def test_a_set_aside_output_is_kept_when_the_user_made_its_name_again(tmp_path, scenario, monkeypatch):
    """After a swap cut between its renames, a folder the user makes at the output's name is not the output that
    swap wrote: the earlier output stays aside (it was deleted) and the user's folder is untouched."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    earlier = snapshot(out)
    _cut_swap(out, monkeypatch)
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    removed = outputs.clean_stale_temporaries(tmp_path)  # the new output's temporary, never moved in
    monkeypatch.undo()
    assert [p.name for p in removed if ".simfactory-old-" in p.name] == []
    (aside,) = [p for p in tmp_path.iterdir() if ".simfactory-old-" in p.name]
    assert snapshot(aside) == earlier and (out / "mine.txt").read_text() == "mine"


def test_a_finished_temporary_loses_only_what_its_marker_lists(tmp_path, monkeypatch):
    """A temporary whose marker says it is complete (killed just before its rename) and a set-aside output whose
    swap finished are cleaned file by file: something the marker does not list stays, with its folder."""
    import simfactory.outputs as outputs

    done = tmp_path / ".out.simfactory-tmp-99999-0-abcd1234"
    done.mkdir()
    (done / "summary.json").write_text("{}")
    outputs.OutputFolder._finish_marker(done, "run")
    (done / "later.txt").write_text("not listed")
    partial = tmp_path / ".out.simfactory-tmp-99999-0-abcd1235"
    partial.mkdir()
    outputs._write_marker(partial, outputs._marker_doc("run", [], [], "partial"))
    (partial / "half.json").write_text("{")
    empty = tmp_path / ".out.simfactory-tmp-99999-0-abcd1236"
    empty.mkdir()  # killed before its marker was written
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    removed = outputs.clean_stale_temporaries(tmp_path)
    monkeypatch.undo()
    assert set(removed) == {partial, empty}
    assert sorted(p.name for p in done.iterdir()) == ["later.txt"]


def test_leftover_marker_drafts_and_locks_are_cleaned_only_when_provably_ours(tmp_path, monkeypatch):
    """A marker draft or lock file a kill left (our record, its process gone; or empty, a minute old) no longer
    blocks the folder; a user's file at such a name, a fresh empty one, and a lock still held stay."""
    import fcntl
    import simfactory.outputs as outputs

    out = tmp_path / "o"
    out.mkdir()
    outputs._write_marker(out, outputs._marker_doc("run", [], [], "complete"))
    draft = out / f"{MARKER}.0123abcd.tmp"
    draft.write_text(json.dumps(outputs._marker_doc("run", [], [], "complete")))
    users = out / f"{MARKER}.0123abce.tmp"
    users.write_text("my notes\n")
    lock = tmp_path / ".o.simfactory-lock"
    lock.write_bytes(outputs._lock_record())
    empty_old, empty_new = tmp_path / ".p.simfactory-lock", tmp_path / ".q.simfactory-lock"
    empty_old.write_bytes(b"")
    empty_new.write_bytes(b"")
    os.utime(empty_old, (time.time() - 3600, time.time() - 3600))
    held = tmp_path / ".s.simfactory-lock"
    held.write_bytes(outputs._lock_record())
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert outputs.foreign_entry(out) is not None  # the draft blocks the folder until cleaned
    try:
        removed = set(outputs.clean_stale_temporaries(tmp_path, inside=True))  # records of a live process: kept
        assert removed == {empty_old}
        monkeypatch.setattr(outputs, "alive", lambda *a: False)
        removed |= set(outputs.clean_stale_temporaries(tmp_path))
        removed |= set(outputs.clean_stale_temporaries(out))
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert removed == {draft, lock, empty_old}
    assert users.read_text() == "my notes\n" and empty_new.exists() and held.exists()


def test_a_report_killed_inside_a_compare_does_not_block_the_compare(tmp_path, scenario, monkeypatch):
    """report into one of a compare's run folders, killed: its temporary and lock sit inside the compare's folder;
    the next compare over it cleans them (it refused the folder as foreign)."""
    import simfactory.outputs as outputs

    other = scenario.with_name("b.yaml")
    other.write_text(scenario.read_text())
    out = tmp_path / "cmp"
    args = ["compare", str(scenario), str(other), "--out", str(out), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    sub = next(p for p in out.iterdir() if p.is_dir())
    monkeypatch.setattr(outputs.shutil, "rmtree", lambda *a, **k: None)
    monkeypatch.setattr(outputs.os, "unlink", lambda *a, **k: None)  # the lock stays too, as on kill -9

    def killed(tmp):
        (tmp / "report.md").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with outputs.output_folder(sub, "report", "RUN_DIR", existing=True) as folder:
            folder.add(killed)
    monkeypatch.undo()
    assert outputs.foreign_entry(out) is not None
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    res = runner.invoke(app, args)
    monkeypatch.undo()
    assert res.exit_code == 0, res.output
    assert outputs.foreign_entry(out) is None


def test_a_set_aside_output_is_removed_once_its_swap_finished(tmp_path, scenario, monkeypatch):
    """Killed right after the new output took the name: the earlier one, set aside, is removed by the next write
    (the output at its name is the one that swap wrote)."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    monkeypatch.setattr(outputs, "_remove_owned", lambda folder: None)  # killed before the earlier one went
    assert run_out(scenario, out).exit_code == 0
    monkeypatch.undo()
    (aside,) = [p for p in tmp_path.iterdir() if ".simfactory-old-" in p.name]
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    assert outputs.clean_stale_temporaries(tmp_path) == [aside]
    monkeypatch.undo()
    assert not aside.exists() and outputs.foreign_entry(out) is None


# ------------------------------------------------------------------------------------------ a sweep's growing rows


def _sweep_setup(tmp_path: Path, scenario: Path) -> tuple[Path, list[str]]:
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"mode": "grid", "replications": 1,
                                    "parameters": {"traffic.arrival.rate_per_s": [1.0, 2.0, 3.0]}}))
    out = tmp_path / "sweep"
    return out, ["sweep", str(scenario), "--grid", str(grid), "--out", str(out), "-q"]


def _interrupted_sweep(tmp_path: Path, scenario: Path, after_rows: int = 1):
    """A sweep stopped (as by kill -9: nothing after the row) once `after_rows` rows are written."""
    from simfactory.config.loader import validate
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep
    from simfactory.resolve import load_scenario

    out, args = _sweep_setup(tmp_path, scenario)
    grid = Path(args[3])
    spec = validate(SweepSpec, yaml.safe_load(grid.read_text()), str(grid))

    def stop(n, total):
        if n == after_rows:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_scenario(scenario), str(scenario), spec, str(grid), out, on_row=stop)
    return out, args


def test_an_interrupted_sweeps_rows_edited_by_hand_are_never_read_back_nor_deleted(tmp_path, scenario):
    """A sweep whose writer is gone left its rows growing (no stamp): a hand edit, a replacement or a truncation
    was read back by --resume, truncated, or deleted by a rerun. The marker holds them to their bytes now."""
    out, args = _interrupted_sweep(tmp_path, scenario)
    rows = out / "sweep.jsonl"
    for mine in (rows.read_text() + '{"point": 2, "replication": 0, "my": "row"}\n', "my own notes\n", ""):
        rows.write_text(mine)
        before = snapshot(out)
        assert_refused(runner.invoke(app, [*args, "--resume"]), "sweep.jsonl", "changed since")
        assert_refused(runner.invoke(app, args), "sweep.jsonl", "changed since")
        assert snapshot(out) == before


def test_resuming_a_sweep_never_writes_into_a_hard_link_of_its_rows(tmp_path, scenario):
    """A backup made with `ln` shares the rows file's bytes: --resume appended (and truncated) in place, changing
    the backup. Now the rows are copied first and the copy appended to."""
    out, args = _interrupted_sweep(tmp_path, scenario)
    backup = tmp_path / "backup.jsonl"
    os.link(out / "sweep.jsonl", backup)
    kept = backup.read_bytes()
    res = runner.invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert backup.read_bytes() == kept and len((out / "sweep.jsonl").read_text().splitlines()) == 3
    assert os.stat(backup).st_nlink == 1


@pytest.mark.parametrize("how", ["replace", "link"])
def test_a_rows_file_replaced_or_linked_while_the_sweep_runs_stops_it(tmp_path, scenario, how):
    """A file swapped in for sweep.jsonl during a live sweep was stamped as simfactory's at the end (and a linked
    one appended to): the sweep stops with one line, the user's file left as it is and not taken for ours."""
    from simfactory.config.loader import validate
    from simfactory.errors import InputError
    from simfactory.outputs import foreign_entry
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep
    from simfactory.resolve import load_scenario

    out, args = _sweep_setup(tmp_path, scenario)
    grid = Path(args[3])
    spec = validate(SweepSpec, yaml.safe_load(grid.read_text()), str(grid))
    mine = tmp_path / "mine.jsonl"

    def meddle(n, total):
        if n == 1:
            if how == "replace":
                mine.write_text("my rows\n")
                os.replace(mine, out / "sweep.jsonl")
            else:
                os.link(out / "sweep.jsonl", mine)

    with pytest.raises(InputError, match="moved, replaced or linked"):
        run_sweep(load_scenario(scenario), str(scenario), spec, str(grid), out, on_row=meddle)
    if how == "replace":
        assert (out / "sweep.jsonl").read_text() == "my rows\n"
        assert foreign_entry(out) == "sweep.jsonl (changed since simfactory last appended to it)"
    else:
        assert len(mine.read_text().splitlines()) == 1


def test_ctrl_c_says_what_it_left(tmp_path, scenario, monkeypatch):
    """Typer ends an interrupted command with a silent exit 130: a sweep says which rows it kept and how to go on,
    and every other command says its outputs are as they were or complete (one line, no traceback)."""
    import simfactory.plan.sweep as sweep_mod

    real, calls = sweep_mod.run_point, []

    def second_interrupts(job):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(sweep_mod, "run_point", second_interrupts)
    out, args = _sweep_setup(tmp_path, scenario)
    res = runner.invoke(app, args)
    assert res.exit_code == 130
    assert f"interrupted: 1 finished row kept in {out / 'sweep.jsonl'}: the same command with --resume" in res.output
    monkeypatch.undo()
    assert runner.invoke(app, [*args, "--resume"]).exit_code == 0
    res = _console_with_simulate(tmp_path, "raise KeyboardInterrupt", "run", str(scenario), "--out",
                                 str(tmp_path / "r"), "-q")
    assert res.returncode == 130 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().endswith(f"interrupted: nothing written to {tmp_path / 'r'}")  # there was none before
    assert not (tmp_path / "r").exists()
    res = _console_with_simulate(tmp_path, "raise KeyboardInterrupt", "compare", str(scenario), str(scenario),
                                 "--out", str(tmp_path / "c"), "-q")
    assert res.returncode == 130 and "Traceback" not in res.stderr, res.stderr
    assert "interrupted: every output this command was writing is as it was before it, or complete" in res.stderr


def test_a_command_reading_an_output_a_cut_swap_set_aside_finds_it(tmp_path, scenario, monkeypatch):
    """After a swap cut by a kill, the run's name was empty until the next write beside it: `report RUN --out`
    said summary.json was not found. A reader puts the earlier output back first (its process gone)."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    earlier = (out / "summary.json").read_bytes()
    _cut_swap(out, monkeypatch)
    assert not out.exists()
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    res = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "x.html")])
    monkeypatch.undo()
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").read_bytes() == earlier and (tmp_path / "x.html").is_file()


def test_a_forked_worker_lets_go_of_the_output_lock(tmp_path):
    """A sweep's pool workers are forked while the output is locked: they held the flock (it belongs to the open file
    a fork shares), so after kill -9 of the sweep the next run was refused as 'another process is writing' for as
    long as a worker lived. A forked child closes its copies of the lock descriptors."""
    code = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        from simfactory.outputs import output_folder

        with output_folder(Path(sys.argv[1]), "sweep"):
            if os.fork() == 0:  # a worker: lives on after its parent is killed
                time.sleep(60)
                os._exit(0)
            print("locked", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        proc.wait()
        assert (tmp_path / ".out.simfactory-lock").exists()  # left by the kill, its worker alive
        from simfactory.errors import InputError

        for _ in range(100):  # the worker lets go once it is first scheduled (its at-fork handler): a moment
            try:
                with output_folder(tmp_path / "out", "sweep") as folder:  # refused for good before: the worker held it
                    folder.replace(lambda tmp: (tmp / "a.txt").write_text("a"))
                break
            except InputError:
                time.sleep(0.05)
        assert (tmp_path / "out" / "a.txt").read_text() == "a"
    finally:
        os.killpg(proc.pid, 9)


# ------------------------------------------------------------------------------------------ the fourth audit's
# (2026-12-07, of the fixes above: edits during a write, single files inside output folders)


def test_a_file_edited_while_report_builds_is_not_replaced(tmp_path, scenario):
    """report builds its files for a moment, then moves them in: report.md edited meanwhile was overwritten."""
    import simfactory.outputs as outputs
    from simfactory.errors import InputError

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0

    def build(tmp):
        (tmp / "report.md").write_text("new")
        with open(out / "report.md", "a") as f:  # the user, meanwhile
            f.write("\nMY NOTES\n")

    with pytest.raises(InputError, match="changed since simfactory wrote it"):
        with outputs.output_folder(out, "report", "RUN_DIR", existing=True) as folder:
            folder.add(build)
    assert (out / "report.md").read_text().endswith("MY NOTES\n")


def test_a_rows_file_appended_to_by_someone_else_stops_the_sweep_at_once(tmp_path, scenario):
    """A live sweep went on appending to a sweep.jsonl the user had changed in place (and said so only at the end,
    wrongly): the next append sees it and stops."""
    from simfactory.config.loader import validate
    from simfactory.errors import InputError
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep
    from simfactory.resolve import load_scenario

    out, args = _sweep_setup(tmp_path, scenario)
    grid = Path(args[3])
    spec = validate(SweepSpec, yaml.safe_load(grid.read_text()), str(grid))

    def meddle(n, total):
        if n == 1:
            with open(out / "sweep.jsonl", "a") as f:
                f.write('{"note": "mine"}\n')

    with pytest.raises(InputError, match="changed by someone else"):
        run_sweep(load_scenario(scenario), str(scenario), spec, str(grid), out, on_row=meddle)
    lines = (out / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[-1] == '{"note": "mine"}'


def test_a_single_file_is_never_written_into_another_output_folder(tmp_path, scenario):
    """report --out naming a file inside another run replaced that run's report.html without its lock and left the
    run refused; --json inside a sweep's or compare's --out made the folder foreign after the work."""
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    for r in (r1, r2):
        assert run_out(scenario, r).exit_code == 0
    assert runner.invoke(app, ["report", str(r2)]).exit_code == 0
    before = snapshot(r2)
    assert_refused(runner.invoke(app, ["report", str(r1), "--out", str(r2 / "report.html")]), "inside", "r2")
    assert_refused(run_out(scenario, tmp_path / "r3", "--json", str(r2 / "plots" / "x.json")), "inside")
    assert snapshot(r2) == before
    out, args = _sweep_setup(tmp_path, scenario)
    assert_refused(runner.invoke(app, [*args, "--json", str(out / "points.json")]), "--out folder")
    assert not out.exists()


def test_ctrl_c_during_a_swap_takes_effect_after_it(tmp_path, scenario, monkeypatch):
    """Ctrl-C landing between a swap's renames left the run's name empty (or the earlier run half deleted) and said
    'nothing written'; now it takes effect once the swap is done, and says the run was written."""
    import signal

    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    real_rename = os.rename

    def interrupted_rename(src, dst):
        if ".simfactory-old-" in str(dst):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right at the set-aside
        real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", interrupted_rename)
    res = run_out(scenario, out)
    monkeypatch.undo()
    assert res.exit_code == 130 and f"interrupted: the run was written to {out}, whole" in res.output, res.output
    assert outputs.foreign_entry(out) is None and (out / "summary.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]


def test_a_temporary_killed_while_its_first_marker_was_written_is_cleaned(tmp_path, monkeypatch):
    """kill -9 after a temporary's mkdir, while its marker's draft was being written: the folder held only that
    draft, was never cleaned, and refused its parent output for good."""
    import simfactory.outputs as outputs

    out = tmp_path / "o"
    out.mkdir()
    outputs._write_marker(out, outputs._marker_doc("report", [], [], "complete"))
    tmp = out / ".add.simfactory-tmp-99999-0-abcd1234"
    tmp.mkdir()
    (tmp / f"{MARKER}.0123abcd.tmp").write_text('{"generator": "simf')
    assert outputs.foreign_entry(out) is not None
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    assert outputs.clean_stale_temporaries(out) == [tmp]
    monkeypatch.undo()
    assert outputs.foreign_entry(out) is None


def test_a_killed_sweeps_workers_end_with_it(tmp_path, scenario):
    """kill -9 of `sweep --jobs 2` left its workers alive for good (ppid 1, holding memory and the rows file open)."""
    import signal

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"mode": "grid", "replications": 1,
                                    "parameters": {"traffic.arrival.rate_per_s": [1.0 + i for i in range(40)]}}))
    out = tmp_path / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "simfactory", "sweep", str(scenario), "--grid", str(grid), "--out",
                             str(out), "-q", "--jobs", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO),
                                                            "HOME": str(tmp_path)})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((out / "sweep.jsonl").is_file()
                                              and (out / "sweep.jsonl").read_text().count("\n") >= 1):
            time.sleep(0.1)
        workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert workers, "the sweep runs its points in worker processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() and
                                             "zombie" not in Path(f"/proc/{w}/status").read_text() for w in workers):
            time.sleep(0.2)
        assert not any(Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()
                       for w in workers)
    finally:
        proc.kill()


def test_a_system_error_is_one_line_not_a_traceback(tmp_path, scenario):
    """A write the system refuses (a full disk: ENOSPC) printed a raw OSError traceback."""
    code = textwrap.dedent("""
        import errno, os
        import simfactory.outputs as outputs

        def full(*a, **k):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/mnt/full/x")

        outputs.OutputFolder._finish_marker = staticmethod(full)
        from simfactory.cli.main import console
        console()
    """)
    res = subprocess.run([sys.executable, "-c", code, "run", str(scenario), "--out", str(tmp_path / "r"), "-q"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert "No space left on device" in res.stderr and not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]


def test_a_lock_file_removed_by_hand_mid_run_is_no_traceback(tmp_path, scenario, monkeypatch):
    """`rm .r.simfactory-lock` while a run wrote ended it in a FileNotFoundError traceback after its outputs."""
    import simfactory.outputs as outputs

    real = outputs.OutputFolder.replace

    def replace_and_remove_lock(self, build, streamed=()):
        (self.path.parent / f".{self.path.name}.simfactory-lock").unlink()
        return real(self, build, streamed)

    monkeypatch.setattr(outputs.OutputFolder, "replace", replace_and_remove_lock)
    res = run_out(scenario, tmp_path / "r")
    assert res.exit_code == 0, res.output


def test_a_second_writer_during_a_report_is_told_another_process_is_writing(tmp_path, scenario):
    """A run over a folder while `report` adds to it was told the report's live temporary was 'not written by
    simfactory'; it is told another simfactory process is writing (and nothing changes)."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    pid, ticks = outputs.this_process()
    live = out / f".add.simfactory-tmp-{pid}-{ticks or 0}-abcd1234"
    live.mkdir()
    outputs._write_marker(live, outputs._marker_doc("report", [], [], "partial"))
    before = snapshot(out)
    assert_refused(run_out(scenario, out), "another simfactory process is writing this output now")
    assert_refused(runner.invoke(app, ["report", str(out)]), "another simfactory process is writing")
    assert snapshot(out) == before


def test_two_long_names_that_begin_alike_do_not_share_a_lock(tmp_path):
    """Names were cut to 80 characters for the lock: two --out folders sharing those refused each other."""
    a, b = tmp_path / ("x" * 90 + "-a"), tmp_path / ("x" * 90 + "-b")
    with output_folder(a, "run") as fa, output_folder(b, "run") as fb:
        fa.replace(lambda tmp: (tmp / "a.txt").write_text("a"))
        fb.replace(lambda tmp: (tmp / "b.txt").write_text("b"))
    assert (a / "a.txt").is_file() and (b / "b.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]


def test_a_sweep_set_aside_by_a_cut_swap_stays_the_earlier_sweep(tmp_path, scenario, monkeypatch):
    """A rerun cut between its renames set the earlier sweep aside; the next plain sweep decided there was no
    earlier sweep before cleanup put it back, replaced it with an empty one and, interrupted, lost it."""
    import simfactory.outputs as outputs
    from simfactory.config.loader import validate
    from simfactory.plan.grid import SweepSpec
    from simfactory.plan.sweep import run_sweep
    from simfactory.resolve import load_scenario

    out, args = _sweep_setup(tmp_path, scenario)
    assert runner.invoke(app, args).exit_code == 0
    results = (out / "results.csv").read_bytes()
    real_rename, calls = os.rename, []

    def cut(src, dst):
        calls.append(dst)
        if ".simfactory-old-" not in str(dst) and len(calls) >= 2:
            raise KeyboardInterrupt  # kill -9 right after the earlier sweep was set aside
        real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", cut)
    monkeypatch.setattr(outputs.shutil, "rmtree", lambda *a, **k: None)
    monkeypatch.setattr(outputs, "_uninterrupted", outputs.contextmanager(lambda: (yield)))  # a kill is not held
    assert runner.invoke(app, args).exit_code == 130
    monkeypatch.undo()
    assert not out.exists()
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    grid = Path(args[3])
    spec = validate(SweepSpec, yaml.safe_load(grid.read_text()), str(grid))

    def stop(n, total):
        if n == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_scenario(scenario), str(scenario), spec, str(grid), out, on_row=stop)
    monkeypatch.undo()
    assert (out / "results.csv").read_bytes() == results


def test_calibrate_fit_refuses_the_profile_path_before_fitting(tmp_path, monkeypatch):
    """A profile of the user's where the fit would go was refused only after the fit (minutes with a simulator in the
    loop); now before it starts."""
    import simfactory.cli.calibrate_run as calibrate_run

    def never(*a, **k):
        raise AssertionError("fitted before the profile path was checked")

    monkeypatch.setattr(calibrate_run, "_fit_steps", never)
    hp = tmp_path / "hp"
    mine = hp / "a100-80gb" / "llama-13b-vllm-fp16-tp1.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own notes\n")
    steps = REPO / "calibrate" / "datasets" / "muxserve-a100" / "llama-13b-tp1.steps.csv"
    args = ["calibrate", "fit", str(steps), "--sku", "a100-80gb", "--model", "llama-13b", "--engine", "vllm",
            "--dtype", "fp16", "--tp", "1", "--fit", "linear", "--profiles-dir", str(hp)]
    assert_refused(runner.invoke(app, args), str(mine), "not written by simfactory")
    assert mine.read_text() == "my own notes\n"


def test_a_sweep_whose_rows_outgrow_the_proof_limit_still_finishes(tmp_path, scenario, monkeypatch):
    """Rows over 256 MiB (about 80,000 points) could not be proven: the sweep failed at its end ('changed by someone
    else') and its folder was refused for good. A growing file is hashed in chunks, whatever its size."""
    import simfactory.outputs as outputs

    monkeypatch.setattr(outputs, "_MAX_PROOF_BYTES", 2000)  # as if the rows were that large
    out, args = _sweep_setup(tmp_path, scenario)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "sweep.jsonl").stat().st_size > 2000 and (out / "results.csv").is_file()
    assert runner.invoke(app, [*args, "--resume"]).exit_code == 0


def test_an_output_folder_inside_another_output_is_refused(tmp_path, scenario):
    """run --out r/sub inside a finished run was accepted, and r was then refused ('sub', which simfactory did not
    write, though it did); a single file there was refused already."""
    r = tmp_path / "r"
    assert run_out(scenario, r).exit_code == 0
    before = snapshot(r)
    assert_refused(run_out(scenario, r / "sub"), "inside", "output of `simfactory run`")
    assert snapshot(r) == before and run_out(scenario, r).exit_code == 0


def test_a_live_lock_inside_a_folder_means_another_writer(tmp_path, scenario):
    """compare over a folder while report writes one of its runs was told the report's lock was a file simfactory
    did not write; it is told another simfactory process is writing."""
    import simfactory.outputs as outputs

    other = scenario.with_name("b.yaml")
    other.write_text(scenario.read_text())
    out = tmp_path / "cmp"
    args = ["compare", str(scenario), str(other), "--out", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    sub = next(p for p in out.iterdir() if p.is_dir())
    with outputs.output_folder(sub, "report", "RUN_DIR", existing=True):  # report holds the run's lock now
        assert_refused(runner.invoke(app, args), "another simfactory process is writing")


def test_ctrl_c_in_a_rerun_sweep_after_its_swap_says_the_new_sweep_is_in_place(tmp_path, scenario, monkeypatch):
    """Ctrl-C right at a rerun's swap: the new sweep is in place (the swap finishes first), but the message said
    the earlier one was as it was."""
    import signal

    import simfactory.outputs as outputs

    out, args = _sweep_setup(tmp_path, scenario)
    assert runner.invoke(app, args).exit_code == 0
    real_rename = os.rename

    def interrupted_rename(src, dst):
        if ".simfactory-old-" in str(dst):
            os.kill(os.getpid(), signal.SIGINT)
        real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", interrupted_rename)
    res = runner.invoke(app, [*args])
    monkeypatch.undo()
    assert res.exit_code == 130 and f"interrupted: the new sweep was written to {out}, whole" in res.output, res.output
    assert (out / "results.csv").is_file() and outputs.foreign_entry(out) is None


def test_a_long_named_output_set_aside_by_a_cut_swap_comes_back(tmp_path, scenario, monkeypatch):
    """Names of 80+ characters are cut in a temporary's name, so a set-aside earlier output could not say where it
    went back: it stayed hidden for good. The next write to (or read of) that name puts it back."""
    import simfactory.outputs as outputs

    out = tmp_path / ("r" * 100)
    assert run_out(scenario, out).exit_code == 0
    earlier = (out / "summary.json").read_bytes()
    _cut_swap(out, monkeypatch)
    assert not out.exists()
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    assert outputs.restore_set_aside(out)
    monkeypatch.undo()
    assert (out / "summary.json").read_bytes() == earlier


def test_worker_pools_work_whatever_the_start_method(tmp_path):
    """The watchdog compared a worker's parent pid with the command's: under the forkserver start method (Python
    3.14's default on Linux) every worker's parent is the fork server, so each ended at once and the pool broke."""
    code = textwrap.dedent("""
        import multiprocessing, sys
        from simfactory.worker_pool import worker_pool
        if __name__ == "__main__":
            multiprocessing.set_start_method(sys.argv[1])
            with worker_pool(2) as pool:
                print(sorted(pool.map(abs, [-3, -1, -2])))
    """)
    script = tmp_path / "pool.py"
    script.write_text(code)
    for method in ("fork", "forkserver", "spawn"):
        res = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert res.returncode == 0 and res.stdout.strip() == "[1, 2, 3]", (method, res.stderr[-500:])


def test_a_set_aside_output_whose_swap_finished_stays_aside_when_the_new_one_is_deleted(tmp_path, scenario,
                                                                                      monkeypatch):
    """Killed after the new output took the name but before the earlier one was removed, then the user deleted the
    new one: a reader silently brought the older output back under the name. Only a cut swap (its new output's
    temporary still there) gives the earlier output back."""
    import simfactory.outputs as outputs

    out = tmp_path / "r"
    assert run_out(scenario, out).exit_code == 0
    monkeypatch.setattr(outputs, "_remove_owned", lambda folder: None)  # killed before the earlier one went
    assert run_out(scenario, out).exit_code == 0
    monkeypatch.undo()
    import shutil

    shutil.rmtree(out)  # the user deletes the new output
    monkeypatch.setattr(outputs, "alive", lambda *a: False)
    assert not outputs.restore_set_aside(out)
    monkeypatch.undo()
    assert not out.exists() and [p for p in tmp_path.iterdir() if ".simfactory-old-" in p.name]


def test_sigterm_is_handled_as_an_interruption(tmp_path, scenario):
    """SIGTERM (kill, timeout, a service stop) ended a command silently, its temporaries left for the next write;
    now it runs the same clean-up as Ctrl-C, says what it left, and exits 143."""
    res = _console_with_simulate(tmp_path, "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)", "run",
                                 str(scenario), "--out", str(tmp_path / "r"), "-q")
    assert res.returncode == 143 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().endswith(f"interrupted: nothing written to {tmp_path / 'r'}")
    assert not [p for p in tmp_path.iterdir() if ".simfactory-" in p.name]


def _console_with_simulate(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess:
    """The console entry run in a fresh interpreter with the simulator replaced by `body` (one line of statements),
    HOME in tmp_path."""
    code = ("import os, signal, time\nimport simfactory.sim.run as sim_run\n"
            f"def patched(*a, **k):\n    {body}\n"
            "sim_run.simulate = patched\nfrom simfactory.cli.main import console\nconsole()\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
