"""One version: pyproject.toml reads it from simfactory/version.py, and the package re-exports it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import simfactory
from simfactory.version import __version__

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_pyproject_reads_the_version_module() -> None:
    doc = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert "version" not in doc["project"] and "version" in doc["project"]["dynamic"]
    assert doc["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "simfactory.version.__version__"}


def test_package_reexports_the_version() -> None:
    assert simfactory.__version__ is __version__
