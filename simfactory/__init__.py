"""simfactory: discrete-event simulator and capacity planner for AI factories."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"load_scenario", "run", "prepare"}


def __getattr__(name: str) -> Any:
    """`simfactory.run` / `simfactory.load_scenario` without importing pandas at package import."""
    if name in _API:
        from simfactory import api

        return getattr(api, name)
    raise AttributeError(name)
