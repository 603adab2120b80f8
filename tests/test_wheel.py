"""A normal install works: build the wheel, install it into a fresh virtual environment outside the repository,
and run the README's commands from a temporary directory (no checkout on the path, shipped data from the wheel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from simfactory.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not (PROJECT_ROOT / "pyproject.toml").is_file(), reason="needs the source checkout")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(simfactory executable, its python, a working directory outside the repo, env with HOME in a temp dir)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # built from a copy: the build's own files (build/, *.egg-info) never land in the checkout
    for part in ("simfactory", "scenarios", "workloads", "hardware_profiles", "schemas", "calibrate/fidelity",
                 "calibrate/model_configs", "quality"):
        shutil.copytree(PROJECT_ROOT / part, src / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((root / "dist").glob("simfactory-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("simfactory/data/scenarios/default.yaml", "simfactory/data/workloads/chat-sharegpt.yaml",
                    "simfactory/data/hardware_profiles/h100-sxm.yaml", "simfactory/data/schemas/scenario.json",
                    "simfactory/data/calibrate/fidelity/recorded.json", "simfactory/data/quality/scores.yaml"):
        assert shipped in names, f"the wheel lacks {shipped}"
    # the dependencies come from this interpreter's site-packages; the wheel is the only simfactory in the venv
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root / "venv")
    py = root / "venv" / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    work = root / "elsewhere"
    (work / "home").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SIMFACTORY_HOME")}
    env.update(HOME=str(work / "home"), COLUMNS="100")
    return root / "venv" / "bin" / "simfactory", py, work, env


def _sf(installed, *args: str) -> subprocess.CompletedProcess:
    exe, _, work, env = installed
    return subprocess.run([str(exe), *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_is_the_wheel_with_its_data(installed):
    _, py, work, env = installed
    where = subprocess.run([str(py), "-c", "import simfactory.paths as p; print(p.__file__); print(p.PROJECT_ROOT)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert str(PROJECT_ROOT) not in where[0] and "site-packages" in where[0]
    assert where[1].endswith("simfactory/data") and not Path(where[1]).is_symlink()


def test_readme_commands_run_from_an_installed_wheel_in_any_directory(installed):
    ex = _sf(installed, "examples")
    assert ex.returncode == 0 and "default" in ex.stdout, ex.stdout + ex.stderr
    for args in (["validate"], ["validate", "scenarios/cache-on.yaml"]):
        res = _sf(installed, *args)
        assert res.returncode == 0, (args, res.stdout + res.stderr)
    res = _sf(installed, "run", "--out", "out", "--no-plots", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((installed[2] / "out" / "summary.json").read_text())
    assert summary["scenario"] == "default" and summary["window"]["measured_requests"] > 0
    schema = _sf(installed, "schema", "scenario")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"]
    fid = _sf(installed, "fidelity", "calibrate/fidelity/vllm-perf-latency.yaml", "--requests", "10")
    assert fid.returncode == 0 and "MAPE" in fid.stdout, fid.stdout + fid.stderr
    missing = _sf(installed, "validate", "scenarios/no-such.yaml")
    assert missing.returncode == 2 and "no-such.yaml" in missing.stderr + missing.stdout
