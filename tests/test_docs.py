"""The docs build with warnings as errors (reference pages generated from the models), and the example
notebook runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from simfactory.paths import PROJECT_ROOT
from simfactory.reference import schema_reference


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    page = (tmp_path / "site" / "reference" / "scenario" / "index.html").read_text()
    assert "max_num_batched_tokens" in page and "autoscaling" in page


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
