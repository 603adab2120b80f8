"""The docs build with warnings as errors (reference pages generated from the models), and the example
notebook runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from simfactory.paths import PROJECT_ROOT
from simfactory.reference import cli_reference, schema_reference

BOX_DRAWING = re.compile("[\u2500-\u259f]")  # box drawing and block elements: ─ │ ╭ ╮ ╰ ╯ ┃ ━ ▀ ...
OUTSIDE_SERVICES = ("api.github.com", "fonts.googleapis.com", "fonts.gstatic.com", "github.com/simfactory")
# an element the browser loads by itself (not a link the reader may follow) from another host
EXTERNAL_LOAD = re.compile(r"<(?:link|script|img|iframe|source|video|audio|embed)\b[^>]*\b(?:href|src)="
                           r"[\"']?(?:https?:)?//")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The docs built as a user builds them (warnings are errors), once per module."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    out = tmp_path_factory.mktemp("docs") / "site"
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_docs_build_strict(site):
    page = (site / "reference" / "scenario" / "index.html").read_text()
    assert "max_num_batched_tokens" in page and "autoscaling" in page
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "<table>" in cli and 'id="simfactory-run"' in cli and not BOX_DRAWING.search(cli)


def test_built_site_calls_no_outside_service(site):
    """No page names a repository (material would fetch its stars from GitHub's API on every page view) or loads
    Google Fonts, or anything else, from another host: the site works offline and tells nobody it was opened.
    Material's script bundle carries the GitHub code path whatever the config, dormant unless a page has the
    repository widget (data-md-component="source"), so pages and styles are checked, not the bundle."""
    pages = [f for f in site.rglob("*") if f.suffix in (".html", ".xml", ".json") and "assets" not in f.parts]
    assert len(pages) > 10
    for f in pages:
        text = f.read_text(encoding="utf-8")
        name = f.relative_to(site)
        assert not [s for s in OUTSIDE_SERVICES if s in text], name
        assert 'data-md-component="source"' not in text and "md-source" not in text, name
        assert not EXTERNAL_LOAD.search(text), (name, EXTERNAL_LOAD.search(text).group(0))
    for f in (site / "assets").rglob("*.css"):
        text = f.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, f.name
        assert not re.search(r"url\([\"']?(?:https?:)?//", text), f.name


def _click_commands():
    """Every command and subcommand as (path, command, context), walked here from the click group Typer builds,
    in the order each group lists them (the order of `simfactory --help`)."""
    from typer.main import get_command

    from simfactory.cli.main import app

    def walk(cmd, path, ctx):
        yield path, cmd, ctx
        for name in getattr(cmd, "list_commands", lambda ctx: [])(ctx):
            sub = cmd.get_command(ctx, name)
            if not sub.hidden:
                yield from walk(sub, [*path, name], sub.context_class(sub, info_name=name, parent=ctx))

    root = get_command(app)
    return list(walk(root, [], root.context_class(root, info_name="simfactory")))


def _section(text, path):
    heading = f"## {' '.join(['simfactory', *path])}\n"
    assert heading in text, heading
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def _cells(row):
    """A table row's cells: split at the pipes the tables extension splits at (not escaped, not in code)."""
    masked = re.sub(r"`[^`]*`", lambda m: "x" * len(m.group(0)), row)
    edges = [m.start() for m in re.finditer(r"(?<!\\)\|", masked)]
    return [row[a + 1:b].strip() for a, b in zip(edges, edges[1:])]


def test_cli_reference_is_markdown_not_a_terminal_capture(monkeypatch):
    text = cli_reference()
    assert not BOX_DRAWING.search(text), BOX_DRAWING.search(text).group(0)
    assert "\x1b" not in text  # no ANSI escape
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TERM", "xterm-256color")
    assert cli_reference() == text  # nothing depends on the terminal
    tables = re.findall(r"(?:^\|.*\n)+", text, flags=re.M)
    for table in tables:  # every row has its header's cells: each `|` in a cell is escaped
        rows = table.splitlines()
        assert all(len(_cells(r)) == len(_cells(rows[0])) for r in rows), table


def test_cli_reference_has_a_heading_for_every_command_in_help_order():
    headings = re.findall(r"^## (simfactory.*)$", cli_reference(), flags=re.M)
    assert headings == [" ".join(["simfactory", *path]) for path, _, _ in _click_commands()]
    assert {"simfactory trace stats", "simfactory baseline update", "simfactory calibrate run"} <= set(headings)


def test_cli_reference_tables_every_parameter_and_no_type_beside_a_flag():
    text = cli_reference()
    for path, cmd, ctx in _click_commands():
        section = _section(text, path)
        rows = {_cells(r)[0]: _cells(r) for r in section.splitlines() if r.startswith("| `")}
        params = [p for p in cmd.get_params(ctx) if p is not cmd.get_help_option(ctx) and not p.hidden]
        for p in params:
            name = f"`{p.metavar or p.name.upper()}" if p.param_type_name == "argument" else f"`{p.opts[0]}`"
            row = next((cells for first, cells in rows.items() if first.startswith(name)), None)
            assert row is not None, (path, p.name)
            if getattr(p, "is_flag", False):
                assert row[1] == "", (path, p.name, row)  # an on/off flag takes no value: no type
            assert "bool" not in row[1], (path, p.name, row)
            if p.required:
                assert "required" in row[2], (path, p.name, row)
    run = _section(text, ["run"])
    assert "```bash\nsimfactory run " in run  # the example is a code block
    force = next(_cells(r) for r in run.splitlines() if r.startswith("| `--force`"))
    assert force[1] == "" and "bool" not in force[3]
    trace_tasks = next(_cells(r) for r in run.splitlines() if r.startswith("| `--trace-tasks`"))
    assert trace_tasks[1] == "int, 1 to 10000" and trace_tasks[2] == "`50`"


def test_reference_lists_every_field_of_the_models():
    from simfactory.config.scenario import Deployment

    text = schema_reference("scenario", "Scenario")
    for name in Deployment.model_fields:
        assert f"| `{name}` |" in text, name


def test_example_notebook_runs_under_jupyter_from_its_own_folder_and_shows_its_figures(tmp_path):
    """Exactly what a user does: `jupyter nbconvert --execute` in docs/notebooks/ (not the repository root)."""
    pytest.importorskip("nbconvert")
    pytest.importorskip("ipykernel")
    folder = PROJECT_ROOT / "docs" / "notebooks"
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("MPLBACKEND", None)  # Jupyter picks its own (inline), as for a user
    env.pop("SIMFACTORY_HOME", None)
    res = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "quickstart.ipynb", "--output-dir", str(tmp_path)], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    nb = json.loads((tmp_path / "quickstart.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the latency CDF and the utilization plot, once each


def test_every_shipped_file_the_docs_name_exists():
    """A copy-paste example must not name an input file the project does not ship (outputs after -o / --out are
    the user's to create)."""
    import re

    pat = re.compile(r"(?<![\w/.-])(?<!-o )(?<!--out )(?<!--output )"
                     r"((?:scenarios|workloads|hardware_profiles|calibrate|schemas)/[\w./-]+\.(?:yaml|json|csv))")
    missing = []
    for f in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]:
        if "reference" in f.relative_to(PROJECT_ROOT).parts:
            continue  # generated
        missing += [f"{f.name}: {m}" for m in sorted(set(pat.findall(f.read_text()))) if not (PROJECT_ROOT / m).exists()]
    from simfactory.cli.main import app
    from typer.main import get_command

    def docstrings(cmd):  # every command's help text, the examples in it included
        yield cmd.name, cmd.help or ""
        for sub in getattr(cmd, "commands", {}).values():
            yield from docstrings(sub)

    for name, text in docstrings(get_command(app)):
        missing += [f"{name} --help: {m}" for m in sorted(set(pat.findall(text))) if not (PROJECT_ROOT / m).exists()]
    assert not missing, missing
