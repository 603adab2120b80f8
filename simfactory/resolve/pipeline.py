"""resolve(): the stages in order, each appending the InputErrors it finds so that one run reports every
mistake in the scenario at once, not the first."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simfactory.config.loader import recording_reads
from simfactory.config.scenario import Scenario
from simfactory.errors import InputError, InputErrors
from simfactory.resolve.classes import check_agent_faults, check_trace_windows, resolve_classes, scenario_names
from simfactory.resolve.deployments import check_deployment_extras, resolve_deployments
from simfactory.resolve.files import load_scenario, lookup
from simfactory.resolve.pools import (
    check_fault_pools, check_pool_counts, check_training, pool_profiles, priced_book,
)
from simfactory.resolve.quality import resolve_quality
from simfactory.resolve.resolved import ResolvedScenario
from simfactory.resolve.routes import resolve_routes
from simfactory.resolve.training import resolve_training, serving_slowdown, with_serving_slowdown
from simfactory.resolve.shards import check_sharding
from simfactory.resolve.work_limits import check_arrival_process, check_periodic_work


def resolve(scenario: Scenario, file: str | Path | None = None) -> ResolvedScenario:
    """Check references and build the runtime description; raises InputErrors naming file and field.
    Records the sha256 of every file it reads (profiles, models, workloads, cost defaults)."""
    with recording_reads() as reads:
        rs = _resolve(scenario, file)
    return dataclasses.replace(rs, input_hashes=dict(sorted(reads.items())))


def _resolve(scenario: Scenario, file: str | Path | None = None) -> ResolvedScenario:
    lk = lookup(scenario, file)
    fname = lk.fname
    errors: list[InputError] = []
    warnings: list[str] = []
    check_unique_names(scenario, fname, errors)
    check_tenant_queues(scenario, fname, errors)
    profiles = pool_profiles(scenario, lk, errors)
    price_book = priced_book(scenario, profiles, lk, errors, warnings)
    deployments, used = resolve_deployments(scenario, lk, profiles, errors, warnings)
    check_pool_counts(scenario, used, fname, errors)
    check_training(scenario, used, fname, errors)
    training_jobs, training_estimates = resolve_training(scenario, lk.models, profiles, fname, errors)
    deployments = with_serving_slowdown(deployments, serving_slowdown(scenario, deployments))
    check_fault_pools(scenario, fname, errors)
    names = scenario_names(scenario, deployments)
    routes = resolve_routes(scenario, names.by_name, names.declared, fname, errors)
    check_deployment_extras(scenario, names.sc_index, fname, errors)
    classes = resolve_classes(scenario, lk, names, deployments, errors, warnings)
    check_trace_windows(scenario, classes, fname, warnings)
    check_agent_faults(scenario, classes, fname, errors)
    check_sharding(scenario, classes, fname, errors, warnings)
    sh = scenario.sharding
    if sh is None or (sh.shards == 1 and sh.windows == 1):  # a sharded run's parts are checked one by one (fleet/)
        check_arrival_process(scenario, classes, fname, errors)
        check_periodic_work(scenario, fname, errors)
    quality = resolve_quality(lk, deployments, classes, routes, errors)
    if errors:
        raise InputErrors(errors)
    assert price_book is not None
    return ResolvedScenario(scenario, fname, deployments, classes, profiles, price_book, routes, warnings=warnings,
                            training_jobs=training_jobs, training_estimates=training_estimates,
                            quality=quality)


def check_unique_names(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    """Pools, deployments, classes and tenants are referred to by name, so each name is used once per section."""
    for section, names in (
        ("pools", [p.name for p in scenario.pools]),
        ("deployments", [d.name for d in scenario.deployments]),
        ("traffic.classes", [c.name for c in scenario.traffic.classes]),
        ("tenants", [t.name for t in scenario.tenants]),
    ):
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                errors.append(InputError(fname, f"{section}[{i}].name", f"duplicate name {n!r}"))
            seen.add(n)


def check_tenant_queues(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    """A tenant's max_waiting bounds its queue at the tenant gate, which only fair share, max_concurrency and
    gpu_share make anyone wait in: without one of them the bound would silently never apply."""
    tenants = scenario.tenants
    if scenario.admission.policy == "fair_share" or any(
            t.max_concurrency is not None or t.gpu_share is not None for t in tenants):
        return
    for i, t in enumerate(tenants):
        if t.max_waiting is not None:
            errors.append(InputError(fname, f"tenants[{i}].max_waiting", "requests never wait at the tenant gate "
                                     "without admission.policy fair_share or some tenant's max_concurrency or "
                                     "gpu_share; set one of them, or bound the deployment's queue (max_waiting)"))


def load_and_resolve(path: str | Path) -> ResolvedScenario:
    return resolve(load_scenario(path), path)
