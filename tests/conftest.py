"""Shared helpers: build scenarios with a test accelerator whose step time is a known linear model."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simfactory.resolve import ResolvedScenario, load_and_resolve

TEST_SKU = "test-gpu"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs with HOME in a temporary folder: nothing a test does can reach the real home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def local_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A local Ray cluster for one test. Ray 2.60 turns token authentication on for a new local cluster, keeps the
    token in ~/.ray (the test's temporary home) and sets RAY_AUTH_MODE=token in the process: a later test in the
    same worker, with another home, then started a cluster that found no token and died. So authentication is off
    for these throwaway clusters, and the RAY_* variables Ray sets are removed afterwards."""
    import ray

    before = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for k in [k for k in os.environ if k.startswith("RAY_") and k not in before]:
            del os.environ[k]


def profile_doc(step_time: dict[str, Any]) -> dict[str, Any]:
    return {
        "sku": TEST_SKU,
        "name": "Test accelerator with a fixed step-time model",
        "vendor": "test",
        "kind": "gpu",
        "spec": {"hbm_gb": 80, "hbm_tb_s": 3.0, "bf16_tflops": 1000, "tdp_w": 500, "source": "test", "as_of": "2026-11"},
        "price": {"cloud_usd_per_accel_hour": 2.0, "server_usd_per_accel": 40000, "source": "test", "as_of": "2026-11"},
        "roofline": {"compute_efficiency": 0.5, "memory_efficiency": 0.5, "step_overhead_s": 0.001, "source": "test",
                     "as_of": "2026-11"},
        "step_time_models": [
            {"model": "llama-3.1-8b", "engine": "vllm", "dtype": "bf16", "tp": 1, "source": "measured",
             "step_time": {"kind": "linear", **step_time}}
        ],
    }


def scenario_doc(
    *,
    replicas: int = 1,
    rate: float = 1.0,
    process: str = "poisson",
    input_tokens: dict[str, Any] | None = None,
    output_tokens: dict[str, Any] | None = None,
    horizon_s: float = 100.0,
    warmup_s: float = 0.0,
    balancer: str = "least_outstanding",
    seed: int = 1,
    **deployment: Any,
) -> dict[str, Any]:
    # a synchronous scheduler (no overlap) and no API server in front: the closed forms of the engine tests count
    # steps from an arrival
    dep = {"name": "dep", "model": "llama-3.1-8b", "pool": "pool", "replicas": replicas, "max_num_seqs": 1,
           "max_num_batched_tokens": 4096, "kv_cache_tokens": 1_000_000, "overlap_schedule": False, "front_end_s": 0.0}
    dep.update(deployment)
    return {
        "name": "case",
        "seed": seed,
        "pools": [{"name": "pool", "sku": TEST_SKU, "count": replicas * dep.get("tp", 1), "location": "cloud"}],
        "deployments": [dep],
        "traffic": {
            "arrival": {"process": process, "rate_per_s": rate},
            "classes": [{"name": "c", "target": "dep",
                         "input_tokens": input_tokens or {"kind": "fixed", "value": 1},
                         "output_tokens": output_tokens or {"kind": "fixed", "value": 10}}],
        },
        "routing": {"load_balancer": balancer},
        "sim": {"horizon_s": horizon_s, "warmup_s": warmup_s, "timeline_resolution_s": 1.0},
    }


def shipped_engines() -> dict[str, Any]:
    """hardware_profiles/engines.yaml's presets by name, as its schema loads them."""
    from simfactory.config.loader import load_model_file
    from simfactory.config.profile import EngineCatalog

    path = Path(__file__).resolve().parents[1] / "hardware_profiles" / "engines.yaml"
    return {e.name: e for e in load_model_file(EngineCatalog, path).engines}


def resolved_deployment(engine: str, sku: str, model: str, tp: int, dtype: str) -> Any:
    """One replica of `model` on `tp` devices of a shipped SKU, resolved (its step time and label)."""
    from simfactory.config.scenario import Scenario
    from simfactory.resolve import resolve

    doc = scenario_doc(engine=engine)
    doc["pools"][0].update(sku=sku, count=tp)
    doc["deployments"][0].update(model=model, tp=tp, dtype=dtype, replicas=1)
    return resolve(Scenario.model_validate(doc)).deployments[0]


def write_case(
    root: Path, scenario: dict[str, Any], step_time: dict[str, Any] | None = None,
    workloads: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write hardware_profiles/test-gpu.yaml, workloads/*.yaml and scenarios/case.yaml under root."""
    (root / "hardware_profiles").mkdir(parents=True, exist_ok=True)
    (root / "workloads").mkdir(parents=True, exist_ok=True)
    for name, doc in (workloads or {}).items():
        (root / "workloads" / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    (root / "scenarios").mkdir(parents=True, exist_ok=True)
    st = step_time or {"overhead_s": 0.01}
    (root / "hardware_profiles" / f"{TEST_SKU}.yaml").write_text(yaml.safe_dump(profile_doc(st)))
    path = root / "scenarios" / "case.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


@pytest.fixture
def case(tmp_path: Path):
    """case(scenario_dict, step_time) -> ResolvedScenario (each call gets its own folder)."""
    counter = {"n": 0}

    def make(
        scenario: dict[str, Any], step_time: dict[str, Any] | None = None,
        workloads: dict[str, dict[str, Any]] | None = None,
    ) -> ResolvedScenario:
        counter["n"] += 1
        return load_and_resolve(
            write_case(tmp_path / f"c{counter['n']}", copy.deepcopy(scenario), step_time, workloads)
        )

    return make


def agent_doc(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An agent workload named 'agent' with the given steps."""
    return {"kind": "agent", "name": "agent", "source": "test", "as_of": "2026-11", "steps": steps, **extra}


def agent_scenario(rate: float = 1.0, horizon_s: float = 100.0, replicas: int = 1, **deployment: Any) -> dict[str, Any]:
    doc = scenario_doc(rate=rate, horizon_s=horizon_s, replicas=replicas, **deployment)
    doc["traffic"]["classes"] = [{"name": "task", "workload": "agent", "target": "dep"}]
    return doc


def assert_fast_forward_matches(exact: Any, fast: Any) -> None:
    """Two runs of one fleet, stepping every iteration and fast-forwarding: same outcomes, tokens and times."""
    import numpy as np

    assert fast.events < exact.events
    np.testing.assert_array_equal(exact.table.outcome, fast.table.outcome)
    np.testing.assert_array_equal(exact.table.generated, fast.table.generated)
    for col in ("first_token_s", "completion_s", "replica_s"):
        np.testing.assert_allclose(getattr(exact.table, col), getattr(fast.table, col), rtol=1e-9, atol=1e-12,
                                   err_msg=col)


def default_h100_8b_deployment(tmp_path: Path) -> Any:
    """The default scenario copied beside a calibrated profile folder in tmp_path, resolved: its H100 Llama-3.1-8B
    BF16 TP1 vLLM deployment, which a measured profile there replaces the step time of."""
    from simfactory.api import prepare
    from simfactory.paths import SCENARIOS_DIR

    (tmp_path / "s.yaml").write_text((SCENARIOS_DIR / "default.yaml").read_text())
    rs = prepare(tmp_path / "s.yaml")
    return rs, next(d for d in rs.deployments if d.profile.sku == "h100-sxm" and d.config.model == "llama-3.1-8b"
                    and d.config.tp == 1 and d.config.dtype == "bf16" and d.config.engine == "vllm")
