"""Workload files: reading one (plain request lengths or an agent's step tree) and checking the references
inside an agent workload (tool services, reviewer pools), which the schema alone cannot see."""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter

from simfactory.config.agent import AgentWorkload, CompressStep, HumanStep, LlmStep, ToolStep
from simfactory.config.distributions import Distribution
from simfactory.config.loader import read_yaml, validate_union
from simfactory.config.scenario import RequestClass, RequestWorkload, Workload
from simfactory.errors import InputError, InputErrors
from simfactory.resolve.files import available, find_file

WORKLOAD_ADAPTER: TypeAdapter[RequestWorkload | AgentWorkload] = TypeAdapter(Workload)


def class_workload(
    c: RequestClass, dirs: list[Path], fname: str, at: str
) -> tuple[Distribution, Distribution] | RequestWorkload | AgentWorkload:
    """A class's inline lengths, or the workload file it names (looked up in `dirs`)."""
    if c.workload is None:
        assert c.input_tokens is not None and c.output_tokens is not None  # guaranteed by the schema
        return c.input_tokens, c.output_tokens
    path = find_file(dirs, c.workload)
    if path is None:
        raise InputError(fname, f"{at}.workload", f"no workload {c.workload!r} (available: {', '.join(available(dirs))})")
    return load_workload(path)


def load_workload(path: Path) -> RequestWorkload | AgentWorkload:
    """Read and validate a workload file, including its internal references (tools, reviewer pools)."""
    w = validate_union(WORKLOAD_ADAPTER, read_yaml(path), str(path))
    if isinstance(w, AgentWorkload):
        check_agent_references(w, str(path))
    return w


def walk_steps(steps: list, path: str):  # type: ignore[no-untyped-def]
    """Yield (field path, step) for every step of a step tree, depth first."""
    for i, st in enumerate(steps):
        here = f"{path}[{i}]"
        yield here, st
        for attr in ("steps", "fallback"):
            sub = getattr(st, attr, None)
            if sub:
                yield from walk_steps(sub, f"{here}.{attr}")
        for j, branch in enumerate(getattr(st, "branches", None) or []):
            yield from walk_steps(branch, f"{here}.branches[{j}]")
        for j, opt in enumerate(getattr(st, "options", None) or []):
            yield from walk_steps(opt.steps, f"{here}.options[{j}].steps")


def agent_steps(w: AgentWorkload):  # type: ignore[no-untyped-def]
    yield from walk_steps(w.steps, "steps")
    if w.budget is not None and w.budget.fallback:
        yield from walk_steps(w.budget.fallback, "budget.fallback")


def agent_roles(steps: list) -> set[str]:  # type: ignore[type-arg]
    return {st.model for _, st in walk_steps(steps, "steps")
            if isinstance(st, LlmStep) or (isinstance(st, CompressStep) and st.model is not None)}


def check_agent_references(w: AgentWorkload, file: str) -> None:
    tools = {t.name for t in w.tools}
    humans = {h.name for h in w.humans}
    errors = []
    for where, st in agent_steps(w):
        if isinstance(st, ToolStep) and st.service not in tools:
            errors.append(InputError(file, f"{where}.service", f"unknown tool service {st.service!r} (tools: {sorted(tools)})"))
        if isinstance(st, HumanStep) and st.pool not in humans:
            errors.append(InputError(file, f"{where}.pool", f"unknown reviewer pool {st.pool!r} (humans: {sorted(humans)})"))
    for label, names in (("tools", [t.name for t in w.tools]), ("humans", [h.name for h in w.humans])):
        if len(set(names)) != len(names):
            errors.append(InputError(file, label, "duplicate names"))
    if errors:
        raise InputErrors(errors)
