"""simfactory: discrete-event simulator and capacity planner for AI factories."""

from __future__ import annotations

from typing import Any

from simfactory.version import __version__ as __version__  # re-exported: simfactory.__version__

_API = {"load_scenario", "run", "prepare", "Result"}
__all__ = ["run", "prepare", "load_scenario", "Result", "__version__"]


def __getattr__(name: str) -> Any:
    """`simfactory.run` / `simfactory.load_scenario` without importing pandas at package import."""
    if name in _API:
        from simfactory import api

        return getattr(api, name)
    raise AttributeError(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
