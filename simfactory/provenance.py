"""Where a run's numbers came from: version, git commit, input hashes, seed."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from typing import Any

from simfactory.version import __version__
from simfactory.paths import PROJECT_ROOT
from simfactory.resolve import ResolvedScenario


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The simfactory checkout's commit, when it is a git checkout and git is available; else
    $SIMFACTORY_GIT_SHA, for a copy of the tree without .git (a container, a lent GPU machine)."""
    fallback = os.environ.get("SIMFACTORY_GIT_SHA") or None
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return fallback
    return (out.stdout.strip() or fallback) if out.returncode == 0 else fallback


def provenance(rs: ResolvedScenario, seed: int) -> dict[str, Any]:
    return {
        "simfactory_version": __version__,
        "git_sha": git_sha(),
        "scenario_sha256": rs.scenario_hash,
        "seed": seed,
        "inputs_sha256": {short_path(p): h for p, h in rs.input_hashes.items()},
    }


def short_path(path: str) -> str:
    """Paths inside the project are shown relative to it, so hashes compare across checkouts."""
    root = str(PROJECT_ROOT.resolve())
    from pathlib import Path

    p = str(Path(path).resolve())
    return p[len(root) + 1:] if p.startswith(root + "/") else path
