"""The matplotlib backend reports draw with: Agg (files only, no windows, safe in sweep threads and Ray workers),
except inside a Jupyter kernel, whose inline backend shows `result.plot_*()` figures in the notebook."""

from __future__ import annotations

import sys

import matplotlib


def use_headless_backend() -> None:
    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
