"""Every command's --help carries an example; --verbose explains the run; completion is installable."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from simfactory.cli import app

runner = CliRunner()
COMMANDS = [["run"], ["validate"], ["compare"], ["trace"], ["trace", "stats"], ["trace", "fit"], ["fidelity"],
            ["schema"], ["init"], ["examples"], ["regress"], ["baseline"], ["baseline", "update"], ["sweep"], ["plan"],
            ["report"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_has_an_example(cmd):
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output


def test_completion_is_offered():
    res = runner.invoke(app, ["--help"])
    assert "--install-completion" in res.output and "--show-completion" in res.output


def test_verbose_run_explains_the_resolution(tmp_path):
    res = runner.invoke(app, ["run", "--verbose", "--no-plots", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "deployment llama8b: llama-3.1-8b on h100-sxm" in res.output and "KV capacity" in res.output
    assert "timings: simulate" in res.output


def _all_commands():
    from typer.main import get_command

    def walk(cmd, path):
        yield path
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return list(walk(get_command(app), []))


def test_no_help_shows_a_type_beside_a_flag():
    """`--force <bool>` reads as if the flag took a value; flags carry no type (options with values keep theirs)."""
    for cmd in _all_commands():
        res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (cmd, res.output)
        assert "<bool>" not in res.output, cmd
    assert "<int" in runner.invoke(app, ["fidelity", "--help"], env={"COLUMNS": "200"}).output


def test_tables_fit_80_columns_without_cutting_cells(tmp_path):
    """On an 80-column terminal no cell ends in "..." ("compl...", "$/suc...", "0.253..."): a wide table is transposed."""
    from simfactory.paths import SCENARIOS_DIR

    for args in (["run", str(SCENARIOS_DIR / "support-agent.yaml"), "--no-plots", "--out", str(tmp_path / "r")],
                 ["compare", str(SCENARIOS_DIR / "cache-on.yaml"), str(SCENARIOS_DIR / "cache-off.yaml"),
                  "--out", str(tmp_path / "c")]):
        res = runner.invoke(app, args, env={"COLUMNS": "80"})
        assert res.exit_code == 0, res.output
        table_lines = [line for line in res.output.splitlines() if line[:1] in "┏┃┡│└"]
        assert table_lines and "…" not in "\n".join(table_lines), (args[0], res.output)
        assert max(len(line) for line in table_lines) <= 80
    assert "$/successful task, all-in" in runner.invoke(
        app, ["run", str(SCENARIOS_DIR / "support-agent.yaml"), "--no-plots", "--out", str(tmp_path / "r2")],
        env={"COLUMNS": "80"}).output


def test_json_dash_puts_only_json_on_stdout_for_every_result_command(tmp_path):
    """One output convention: --json FILE, or - for stdout (then stdout holds the JSON and nothing else)."""
    import json

    from conftest import scenario_doc, write_case

    from simfactory.paths import SCENARIOS_DIR

    case = write_case(tmp_path / "case", scenario_doc(rate=2.0, horizon_s=30), {"overhead_s": 0.01})
    trace = tmp_path / "t.csv"
    trace.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     + "".join(f"{i * 0.5},m,{100 + i},{10 + i},{110 + 2 * i},API log\n" for i in range(30)))
    grid = tmp_path / "g.yaml"
    grid.write_text("mode: grid\nreplications: 1\nparameters: {traffic.arrival.rate_per_s: [1, 2]}\n")
    assert runner.invoke(app, ["baseline", "update", str(case), "--baseline-dir", str(tmp_path / "b")]).exit_code == 0
    commands = {
        "run": ["run", str(case), "--no-plots", "--out", str(tmp_path / "r")],
        "compare": ["compare", str(case), str(SCENARIOS_DIR / "cache-off.yaml"), "--out", str(tmp_path / "c")],
        "sweep": ["sweep", str(case), "--grid", str(grid), "--out", str(tmp_path / "s")],
        "plan": ["plan", str(case), "--target-rate", "2", "--slo", "e2e_p99<30s", "-R", "2", "--no-max-rate",
                 "--out", str(tmp_path / "p")],
        "regress": ["regress", str(case), "--baseline-dir", str(tmp_path / "b")],
        "fidelity": ["fidelity", "calibrate/fidelity/vllm-perf-latency.yaml", "--requests", "10"],
        "validate": ["validate", str(case)],
        "examples": ["examples"],
        "trace stats": ["trace", "stats", str(trace), "--format", "burstgpt"],
    }
    for name, args in commands.items():
        res = runner.invoke(app, [*args, "--json", "-"])
        assert res.exit_code == 0, (name, res.output)
        doc = json.loads(res.stdout)  # the whole of stdout parses: no table, no progress, no "wrote ..." line
        assert "simfactory_version" in doc if name == "run" else doc["generator"].startswith("simfactory"), name
    to_file = runner.invoke(app, [*commands["sweep"], "--json", str(tmp_path / "sweep.json"), "--out", str(tmp_path / "s2")])
    assert to_file.exit_code == 0 and len(json.loads((tmp_path / "sweep.json").read_text())["points"]) == 2



def test_no_color_turns_styles_off(monkeypatch):
    from rich.color import ColorSystem

    from simfactory.cli import common

    for console in (common.out, common.err):
        monkeypatch.setattr(console, "_force_terminal", True)
        monkeypatch.setattr(console, "_color_system", ColorSystem.STANDARD)
        monkeypatch.setattr(console, "no_color", False)
    import re

    colors = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])[0-9;]*m")  # foreground colors (bold / italic may stay)
    args = ["compare", "only-one.yaml"]  # an error line: "error:" in red on a color terminal
    assert colors.search(runner.invoke(app, args).output)
    plain = runner.invoke(app, ["--no-color", *args])
    assert plain.exit_code == 2 and "error:" in plain.output and not colors.search(plain.output)


def test_json_output_takes_numpy_values(tmp_path):
    import json

    import numpy as np

    from simfactory.cli.common import emit_json

    emit_json(str(tmp_path / "x.json"), {"a": np.arange(3), "b": np.float32("nan"), "c": np.int64(7),
                                         "d": [np.float64(1.5)]})
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["a"] == [0, 1, 2] and doc["b"] is None and doc["c"] == 7 and doc["d"] == [1.5]
