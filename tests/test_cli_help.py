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
