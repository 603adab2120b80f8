"""Traffic classes: the deployment or route each one targets (per model role for agent workloads), its service
class and tenant, and what it sends: inline lengths, a workload file, or a replayed trace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simfactory.config.agent import AgentWorkload
from simfactory.config.scenario import ClosedArrivals, OpenProcess, RequestClass, RequestWorkload, Scenario
from simfactory.errors import InputError, InputErrors
from simfactory.resolve.files import Lookup
from simfactory.resolve.resolved import ResolvedClass, ResolvedDeployment, Target
from simfactory.resolve.workloads import agent_roles, class_workload
from simfactory.traces.parse import parse_trace
from simfactory.traces.replay import replay_rows


@dataclass(frozen=True)
class Names:
    """What scenario entries may name, and the index each name resolves to."""

    declared: set[str]  # every deployment in the file, resolved or not
    by_name: dict[str, int]  # deployment name -> resolved deployment index
    route_index: dict[str, int]  # route name -> position in routing.routes
    sc_index: dict[str, int]  # service class name -> position in service_classes
    tenant_index: dict[str, int]  # tenant name -> position in tenants

    @property
    def known(self) -> list[str]:
        return sorted(self.declared | set(self.route_index))

    def target_of(self, name: str) -> Target | None:
        """A route of that name first, else a resolved deployment; None for neither."""
        if name in self.route_index:
            return Target("route", self.route_index[name])
        if name in self.by_name:
            return Target("deployment", self.by_name[name])
        return None


def scenario_names(scenario: Scenario, deployments: list[ResolvedDeployment]) -> Names:
    return Names(
        declared={d.name for d in scenario.deployments},
        by_name={d.config.name: d.index for d in deployments},
        route_index={r.name: i for i, r in enumerate(scenario.routing.routes)},
        sc_index={sc.name: i for i, sc in enumerate(scenario.service_classes)},
        tenant_index={t.name: i for i, t in enumerate(scenario.tenants)},
    )


def resolve_classes(
    scenario: Scenario, lk: Lookup, names: Names, deployments: list[ResolvedDeployment], errors: list[InputError],
    warnings: list[str],
) -> list[ResolvedClass]:
    """The traffic classes that resolve, numbered in order."""
    classes: list[ResolvedClass] = []
    for i, c in enumerate(scenario.traffic.classes):
        rc = _resolve_class(scenario, i, c, len(classes), lk, names, deployments, errors, warnings)
        if rc is not None:
            classes.append(rc)
    return classes


def _resolve_class(
    scenario: Scenario, i: int, c: RequestClass, index: int, lk: Lookup, names: Names,
    deployments: list[ResolvedDeployment], errors: list[InputError], warnings: list[str],
) -> ResolvedClass | None:
    """traffic.classes[i] as resolved class number `index`; None when it cannot resolve (its errors appended)."""
    fname = lk.fname
    at = f"traffic.classes[{i}]"
    wanted = [("target", c.target)] if c.target is not None else []
    wanted += [(f"targets.{role}", dep) for role, dep in (c.targets or {}).items()]
    bad = [(f, d) for f, d in wanted if d not in names.declared and d not in names.route_index]
    for f, d in bad:
        errors.append(InputError(fname, f"{at}.{f}", f"unknown deployment or route {d!r} (known: {names.known})"))
    extras = _class_extras(scenario, c, at, names, fname, errors)
    if c.kv_retention is not None and c.workload is None:
        errors.append(InputError(fname, f"{at}.kv_retention", "keeps an agent task's KV cache between its LLM steps: "
                                 "give an agent workload (this class sends single requests)"))
    if c.trace is not None:
        return _trace_class(c, at, index, lk, names, extras, errors, warnings)
    try:
        workload = class_workload(c, lk.workload_dirs, fname, at)
    except (InputError, InputErrors) as e:
        errors.extend(e.errors if isinstance(e, InputErrors) else [e])
        return None
    targets = {f: names.target_of(d) for f, d in wanted}
    if bad or any(t is None for t in targets.values()):
        return None
    own = _own_arrival(c, at, workload, fname, errors)
    if isinstance(workload, AgentWorkload):
        return _agent_class(c, at, index, workload, names, extras, fname, errors, own)
    if c.kv_retention is not None and c.workload is not None:
        errors.append(InputError(fname, f"{at}.kv_retention", f"keeps an agent task's KV cache between its LLM "
                                 f"steps: workload {c.workload!r} sends single requests, not agent tasks"))
        return None
    if c.target is None:
        errors.append(InputError(fname, f"{at}.target", "plain requests need a target deployment or route"))
        return None
    inp, out = workload if isinstance(workload, tuple) else (workload.input_tokens, workload.output_tokens)
    rho = c.length_correlation if isinstance(workload, tuple) else workload.length_correlation
    rc = ResolvedClass(index, c, names.target_of(c.target), input_tokens=inp, output_tokens=out, arrival=own,
                       length_correlation=rho, **extras)
    _warn_too_long(rc, at, deployments, fname, warnings)
    return rc


def _own_arrival(c: RequestClass, at: str, workload: object, fname: str,
                 errors: list[InputError]) -> OpenProcess | None:
    """The class's own arrival process: as given, or (`arrival: workload`) the one its workload file states."""
    if c.arrival != "workload":
        return c.arrival  # type: ignore[return-value]
    process = workload.arrival if isinstance(workload, RequestWorkload) else None
    if process is None:
        what = f"workload {c.workload!r} states none" if c.workload is not None else "the class names no workload file"
        errors.append(InputError(fname, f"{at}.arrival", f"'workload' uses the arrival process of the class's workload "
                                 f"file, and {what} (trace fit writes one; or give the process here)"))
    return process


def _class_extras(
    scenario: Scenario, c: RequestClass, at: str, names: Names, fname: str, errors: list[InputError]
) -> dict[str, int]:
    """ResolvedClass's service_class, priority and tenant fields, for the names that are known."""
    extras: dict[str, int] = {}
    sc = _known(c.service_class, names.sc_index, "service class", f"{at}.service_class", fname, errors)
    if sc is not None:
        extras["service_class"] = sc
        extras["priority"] = scenario.service_classes[sc].priority
    tenant = _known(c.tenant, names.tenant_index, "tenant", f"{at}.tenant", fname, errors)
    if tenant is not None:
        extras["tenant"] = tenant
    return extras


def _known(name: str | None, index: dict[str, int], what: str, field: str, fname: str,
           errors: list[InputError]) -> int | None:
    """The index of a named service class or tenant; an InputError listing the known names when it is unknown."""
    if name is None:
        return None
    if name not in index:
        listed = "service_classes" if what == "service class" else "tenants"
        errors.append(InputError(fname, field, f"unknown {what} {name!r} ({listed}: {sorted(index)})"))
        return None
    return index[name]


def _trace_class(
    c: RequestClass, at: str, index: int, lk: Lookup, names: Names, extras: dict[str, int],
    errors: list[InputError], warnings: list[str],
) -> ResolvedClass | None:
    """A class replaying a trace file (relative to the scenario's folder); its skipped rows become warnings."""
    assert c.trace is not None
    fname = lk.fname
    trace_path = Path(c.trace.file)
    if not trace_path.is_absolute() and lk.path is not None:
        trace_path = lk.path.resolve().parent / trace_path
    try:
        parsed = parse_trace(trace_path, c.trace.format)
        rows = replay_rows(parsed, c.trace)
        warnings += [f"{trace_path}: {b} (row skipped)" for b in parsed.bad_rows]
    except (InputError, InputErrors) as e:
        errors.extend(e.errors if isinstance(e, InputErrors) else [e])
        return None
    if rows.arrival_s is not None and len(rows.arrival_s) == 0:
        errors.append(InputError(fname, f"{at}.trace", f"no request of {trace_path} falls in the window"))
        return None
    if rows.arrival_s is None and c.trace.sample < 1.0:
        errors.append(InputError(fname, f"{at}.trace.sample",
                                 f"thins a trace's timestamped arrivals, and {c.trace.format} rows have no timestamps "
                                 "(they bring lengths; traffic.arrival sets the rate): lower the arrival rate instead"))
        return None
    if c.target is None:
        errors.append(InputError(fname, f"{at}.target", "a trace class needs a target deployment or route"))
        return None
    t = names.target_of(c.target)
    if t is None:
        return None
    if c.arrival == "workload":
        errors.append(InputError(fname, f"{at}.arrival", "'workload' reads a workload file's arrival process, and this "
                                 "class replays a trace: give the process itself"))
        return None
    if c.arrival is not None and rows.arrival_s is not None:
        errors.append(InputError(fname, f"{at}.arrival", f"{c.trace.format} rows carry their own arrival times: a "
                                 "class replaying them cannot also have an arrival process (drop one; trace.speedup "
                                 "changes the replay's rate)"))
        return None
    return ResolvedClass(index, c, t, trace=rows, arrival=c.arrival, **extras)  # type: ignore[arg-type]


def _agent_class(
    c: RequestClass, at: str, index: int, workload: AgentWorkload, names: Names, extras: dict[str, int], fname: str,
    errors: list[InputError], own: OpenProcess | None = None,
) -> ResolvedClass:
    """An agent workload's class: each model role goes to targets[role], else to the class's target."""
    roles: dict[str, Target] = {}
    auto = workload.auto_compress
    for role in sorted(agent_roles(workload.steps) | ({auto.model} if auto is not None and auto.model else set())):
        dep = (c.targets or {}).get(role, c.target)
        if dep is None:
            errors.append(InputError(fname, f"{at}.targets",
                                     f"no deployment for model role {role!r} of workload {workload.name!r}"))
            continue
        t = names.target_of(dep)
        assert t is not None
        roles[role] = t
    policy = c.kv_retention or workload.kv_retention
    return ResolvedClass(index, c, None, agent=workload, roles=roles, arrival=own,
                         kv_retention=policy if policy is not None and policy.retains else None, **extras)


def _warn_too_long(rc: ResolvedClass, at: str, deployments: list[ResolvedDeployment], fname: str,
                   warnings: list[str]) -> None:
    """Requests that mostly end rejected_too_long are almost always a mistake in the scenario: say so."""
    target = rc.target
    if target is None or target.kind != "deployment":
        return
    assert rc.input_tokens is not None and rc.output_tokens is not None
    dep = deployments[target.index]
    mean_tokens = rc.input_tokens.mean() + rc.output_tokens.mean()
    if mean_tokens > dep.kv_capacity_tokens:
        warnings.append(f"{fname}: {at}: its requests average {mean_tokens:,.0f} tokens but deployment "
                        f"{dep.config.name!r} holds {dep.kv_capacity_tokens:,} KV tokens per replica: most will "
                        "end rejected_too_long")
    elif mean_tokens > dep.max_model_len:
        warnings.append(f"{fname}: {at}: its requests average {mean_tokens:,.0f} tokens but deployment "
                        f"{dep.config.name!r} accepts at most {dep.max_model_len:,} (max_model_len or the "
                        "model's context): most will end rejected_too_long")


def check_agent_faults(scenario: Scenario, classes: list[ResolvedClass], fname: str, errors: list[InputError]) -> None:
    """Tool and retrieval brownouts name a tool or workload some resolved agent class uses."""
    tools = {t.name for c in classes if c.agent is not None for t in c.agent.tools}
    for i, b in enumerate(scenario.faults.tool_brownouts):
        if b.service not in tools:
            errors.append(InputError(fname, f"faults.tool_brownouts[{i}].service",
                                     f"no agent tool {b.service!r} (tools: {', '.join(sorted(tools)) or 'none'})"))
    workloads = sorted({c.agent.name for c in classes if c.agent is not None})
    for i, rb in enumerate(scenario.faults.retrieval_brownouts):
        if rb.workload is not None and rb.workload not in workloads:
            errors.append(InputError(fname, f"faults.retrieval_brownouts[{i}].workload",
                                     f"no agent workload {rb.workload!r} (workloads: {', '.join(workloads) or 'none'})"))


def check_trace_windows(scenario: Scenario, classes: list[ResolvedClass], fname: str, warnings: list[str]) -> None:
    """A timestamped trace longer than the run is replayed only up to sim.horizon_s: say how many rows that
    leaves out and what horizon would replay them all (nothing is dropped without a word). Likewise a closed loop's
    request count with a warm-up: the requests sent before it are not measured."""
    horizon = scenario.sim.horizon_s
    a = scenario.traffic.arrival
    if isinstance(a, ClosedArrivals) and a.requests is not None and scenario.sim.warmup_s > 0:
        warnings.append(f"{fname}: traffic.arrival.requests: only the requests sent after sim.warmup_s "
                        f"({scenario.sim.warmup_s:g} s) are measured, and the first {a.concurrency:,} go out "
                        f"{'over the ramp-up' if a.ramp_up_s else 'at once at 0 s'}; a benchmark with a request count measures them all: set sim.warmup_s: 0 for that")
    for c in classes:
        if c.trace is None or c.trace.arrival_s is None or not len(c.trace.arrival_s):
            continue
        late = int((c.trace.arrival_s >= horizon).sum())
        if late:
            span = float(c.trace.arrival_s.max())
            warnings.append(f"{fname}: traffic.classes[{c.index}].trace: {late:,} of {len(c.trace.arrival_s):,} "
                            f"trace rows arrive after sim.horizon_s ({horizon:g} s) and are not replayed; a horizon "
                            f"above {span:.6g} s replays them all (or set trace.end_s / speedup)")
