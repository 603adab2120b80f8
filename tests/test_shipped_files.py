"""Every shipped scenario, workload and profile loads; every scenario runs (on a shortened horizon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simfactory.api import run
from simfactory.config.loader import load_model_file, read_yaml, validate
from simfactory.config.profile import HardwareProfile, ModelCatalog
from simfactory.config.scenario import RequestWorkload
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR, WORKLOADS_DIR
from simfactory.resolve import load_scenario, resolve

SCENARIOS = sorted(SCENARIOS_DIR.glob("*.yaml"))
REQUIRED_SKUS = {"h100-sxm", "h200", "a100-80gb", "l40s", "b200", "mi300x"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_runs(path: Path):
    sc = load_scenario(path)
    short = sc.model_copy(update={"sim": sc.sim.model_copy(update={"horizon_s": 60.0, "warmup_s": 10.0})})
    m = run(resolve(short, path))
    s = m.summary
    assert s["outcomes"]["completed"] > 0
    assert sum(s["outcomes"].values()) == s["window"]["total_requests"]


def test_shipped_profiles_cover_the_required_skus_and_carry_sources():
    profiles = {p.stem: load_model_file(HardwareProfile, p) for p in PROFILES_DIR.glob("*.yaml")
                if p.stem not in ("models", "cost_defaults")}
    assert REQUIRED_SKUS <= set(profiles)
    assert any(p.kind == "asic" for p in profiles.values())
    for sku, p in profiles.items():
        assert p.sku == sku
        assert p.spec.source and p.price.source and p.roofline.source


def test_models_and_workloads_load():
    cat = load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml")
    assert {"llama-3.1-8b", "llama-3.1-70b"} <= {m.id for m in cat.models}
    for p in WORKLOADS_DIR.glob("*.yaml"):
        w = validate(RequestWorkload, read_yaml(p), str(p))
        assert w.name == p.stem
