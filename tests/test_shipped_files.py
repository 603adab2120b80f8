"""Every shipped scenario, workload and profile loads; every scenario runs (on a shortened horizon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simfactory.api import run
from simfactory.config.loader import load_model_file
from simfactory.config.profile import HardwareProfile, ModelCatalog
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR, WORKLOADS_DIR
from simfactory.resolve import NON_PROFILE_FILES, load_scenario, load_workload, resolve

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
                if p.stem not in NON_PROFILE_FILES}
    assert REQUIRED_SKUS <= set(profiles)
    assert any(p.kind == "asic" for p in profiles.values())
    for sku, p in profiles.items():
        assert p.sku == sku
        assert p.spec.source and p.price.source and p.roofline.source


def test_models_and_workloads_load():
    cat = load_model_file(ModelCatalog, PROFILES_DIR / "models.yaml")
    assert {"llama-3.1-8b", "llama-3.1-70b"} <= {m.id for m in cat.models}
    kinds = set()
    for p in WORKLOADS_DIR.glob("*.yaml"):
        w = load_workload(p)
        assert w.name == p.stem and w.source
        kinds.add(w.kind)
    assert kinds == {"requests", "agent"}


AGENT_SCENARIOS = ["support-agent", "deep-research", "coding-agent"]


@pytest.mark.parametrize("name", AGENT_SCENARIOS)
def test_shipped_agent_scenarios_report_tasks(name):
    m = run(SCENARIOS_DIR / f"{name}.yaml")
    (cls, block), = m.summary["tasks"].items()
    assert block["tasks"] > 0 and block["outcome_rates"]["completed"] > 0.5
    assert block["cost_usd"]["per_successful_task_attributed"] > 0
    lat = block["latency_s"]
    assert sum(v for v in block["breakdown_mean_s"].values()) == pytest.approx(lat["mean"], rel=1e-9)


def test_scenario_headers_name_only_the_load_balancer_they_set():
    """A header that says "session affinity" keeps conversations together must set it (cache-on.yaml said so and
    used least_outstanding)."""
    names = {"session affinity": "session_affinity", "session_affinity": "session_affinity",
             "power of two": "power_of_two", "least_kv": "least_kv"}
    wrong = []
    for p in sorted(SCENARIOS_DIR.glob("*.yaml")):
        header = "\n".join(line for line in p.read_text().splitlines() if line.startswith("#")).lower()
        balancer = load_scenario(p).routing.load_balancer
        wrong += [f"{p.name}: header says {words!r}, sets {balancer}" for words, policy in names.items()
                  if words in header and balancer != policy]
    assert not wrong, wrong
