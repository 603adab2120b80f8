"""The docs build with warnings as errors (reference pages generated from the models), and the example
notebook runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import matplotlib
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


def test_example_notebook_runs(monkeypatch):
    matplotlib.use("Agg")
    nb = json.loads((PROJECT_ROOT / "docs" / "notebooks" / "quickstart.ipynb").read_text())
    monkeypatch.chdir(PROJECT_ROOT)
    scope: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "quickstart.ipynb", "exec"), scope)  # noqa: S102
    assert "more" in scope and hasattr(scope["more"], "plot_latency_cdf")
