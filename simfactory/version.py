"""The package version, in a module that imports nothing: modules that stamp outputs with it (summary.json,
provenance, sweep cache keys) and the CLI read it here without importing the package's lazy API, which would
make an import cycle.

A literal rather than importlib.metadata.version("simfactory"): the installed metadata is whatever the last
`pip install -e` wrote, and with several checkouts it may belong to another one, yet this version keys the
sweep cache. pyproject.toml reads this literal (dynamic version, setuptools attr).
"""

from __future__ import annotations

__version__ = "0.1.0"
