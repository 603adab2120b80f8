"""Turn a validated Scenario into everything the simulator needs: profiles, model shapes, step-time
models, KV capacity and length distributions, checking every cross-reference with its field path.

The stages live in submodules (files, pools, deployments, step_time, routes, classes, workloads, work_limits),
run in order by pipeline.resolve; this package re-exports the names used elsewhere."""

from __future__ import annotations

from simfactory.resolve.files import (
    NON_PROFILE_FILES,
    available,
    calibrated_entries,
    find_file,
    load_engines,
    load_models,
    load_profile,
    load_scenario,
    search_dirs,
)
from simfactory.resolve.pipeline import load_and_resolve, resolve
from simfactory.resolve.pools import load_price_book
from simfactory.resolve.resolved import ResolvedClass, ResolvedDeployment, ResolvedRoute, ResolvedScenario, Target
from simfactory.resolve.step_time import (
    SOURCE_PREFERENCE,
    choose_step_time,
    default_factors,
    kernel_coverage,
    kernel_model,
    step_time_entry,
    with_measured_power,
)
from simfactory.resolve.workloads import (
    WORKLOAD_ADAPTER,
    agent_roles,
    agent_steps,
    check_agent_references,
    load_workload,
    walk_steps,
)

__all__ = [
    "NON_PROFILE_FILES",
    "SOURCE_PREFERENCE",
    "WORKLOAD_ADAPTER",
    "ResolvedClass",
    "ResolvedDeployment",
    "ResolvedRoute",
    "ResolvedScenario",
    "Target",
    "agent_roles",
    "agent_steps",
    "available",
    "calibrated_entries",
    "check_agent_references",
    "choose_step_time",
    "default_factors",
    "find_file",
    "kernel_coverage",
    "kernel_model",
    "load_and_resolve",
    "load_engines",
    "load_models",
    "load_price_book",
    "load_profile",
    "load_scenario",
    "load_workload",
    "resolve",
    "search_dirs",
    "step_time_entry",
    "walk_steps",
    "with_measured_power",
]
