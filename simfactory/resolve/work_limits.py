"""The bounds on one run's work (simfactory.config.limits): arrivals drawn, MMPP state switches, agent steps,
timeline rows, autoscaler decisions, fault and training events. A scenario past one is refused up front, with
the field to change, rather than running out of memory or time hours in."""

from __future__ import annotations

from simfactory.config.agent import task_steps
from simfactory.config.limits import (
    MAX_AGENT_STEPS, MAX_ARRIVALS, MAX_AUTOSCALER_TICKS, MAX_FAULT_EVENTS, MAX_HOURLY_MIX_CELLS, MAX_SCHEDULE_WINDOWS,
    MAX_STATE_SWITCHES,
    MAX_TIMELINE_CELLS, MAX_TRAINING_EVENTS, MIN_CLOSED_LOOP_CYCLE_S,
)
from simfactory.config.scenario import (
    ClosedArrivals, Deployment, MmppArrivals, OpenProcess, ScheduleArrivals, Scenario, peak_rate_per_s,
)
from simfactory.errors import InputError
from simfactory.resolve.resolved import ResolvedClass


def open_process_work(a: OpenProcess, horizon_s: float, field: str, fname: str) -> list[InputError]:
    """An open process's work over horizon_s: arrivals drawn (at its peak rate: diurnal thinning draws candidates
    there), a schedule's windows stepped through, MMPP state switches; an error per bound passed."""
    peak = peak_rate_per_s(a)
    expected = peak * horizon_s
    if not expected <= MAX_ARRIVALS:
        rate_field = f"{field}.rate_per_s" if hasattr(a, "rate_per_s") else (
            f"{field}.mean_rate_per_s" if hasattr(a, "mean_rate_per_s") else
            f"{field}.rates_per_s" if isinstance(a, ScheduleArrivals) else f"{field}.states")
        what = {"diurnal": "peak rate (mean x the largest multipliers and flash events)", "schedule": "busiest window's rate",
                "mmpp": "busiest state's rate"}.get(a.process, "rate")
        return [InputError(fname, rate_field, f"{what} {peak:.3g}/s x horizon {horizon_s:g} s means ~{expected:.3g} "
                           f"arrivals, more than the {MAX_ARRIVALS:.0e} one run simulates; shorten sim.horizon_s or "
                           "lower the rate")]
    if isinstance(a, ScheduleArrivals) and horizon_s / a.window_s > MAX_SCHEDULE_WINDOWS:
        return [InputError(fname, f"{field}.window_s", f"{a.window_s:g} s windows over {horizon_s:g} s are "
                           f"~{horizon_s / a.window_s:.3g} windows, more than the {MAX_SCHEDULE_WINDOWS:,} one run steps "
                           "through; longer windows")]
    if isinstance(a, MmppArrivals):
        switches = a.switches_per_s() * horizon_s
        if switches > MAX_STATE_SWITCHES:
            j = min(range(len(a.states)), key=lambda k: a.states[k].mean_sojourn_s)
            return [InputError(fname, f"{field}.states[{j}].mean_sojourn_s",
                               f"sojourns this short mean ~{switches:.3g} state switches over the horizon, more "
                               f"than the {MAX_STATE_SWITCHES:,} one run draws; lengthen the sojourns")]
    return []


def check_own_processes(scenario: Scenario, classes: list[ResolvedClass], fname: str, errors: list[InputError]) -> None:
    """Each class's own arrival process (run rate_scale times faster) fits one run, its agent steps included."""
    at = {c.index: scenario.traffic.classes.index(c.config) for c in classes}
    for c in classes:
        if c.arrival is None:
            continue
        field = f"traffic.classes[{at[c.index]}].arrival"
        span = scenario.sim.horizon_s * c.config.rate_scale
        work = open_process_work(c.arrival, span, field, fname)
        errors += work
        if not work and c.agent is not None:
            _check_agent_steps(c, peak_rate_per_s(c.arrival) * span, f"traffic.classes[{at[c.index]}].workload", fname,
                               errors)


def _check_agent_steps(c: ResolvedClass, tasks: float, field: str, fname: str, errors: list[InputError]) -> None:
    assert c.agent is not None
    per_task = task_steps(c.agent).expected
    steps = tasks * per_task
    if steps > MAX_AGENT_STEPS:
        errors.append(InputError(fname, field, f"~{tasks:.3g} tasks of {c.agent.name!r} x ~{per_task:.3g} steps each "
                                 f"means ~{steps:.3g} steps, more than the {MAX_AGENT_STEPS:.0e} one run simulates; "
                                 "shorten the horizon, lower the rate or the workload's loop and retry caps"))


def check_arrival_process(scenario: Scenario, classes: list[ResolvedClass], fname: str, errors: list[InputError]) -> None:
    """traffic.arrival is there when some class follows it, and its work fits one run; so do the classes' own."""
    check_own_processes(scenario, classes, fname, errors)
    needs_process = any(c.follows_arrival_process for c in classes)
    a = scenario.traffic.arrival
    if needs_process and a is not None:
        check_arrivals(scenario, classes, fname, errors)
    if needs_process and scenario.traffic.arrival is None:
        errors.append(InputError(fname, "traffic.arrival", "required: some classes neither replay a timestamped trace nor have their own arrival"))


def check_arrivals(scenario: Scenario, classes: list[ResolvedClass], fname: str, errors: list[InputError]) -> None:
    """The arrival process's total work: arrivals drawn (at its peak rate: diurnal thinning draws candidates
    there; a closed loop's clients at most one per MIN_CLOSED_LOOP_CYCLE_S or mean think time), MMPP state
    switches, and agent steps (expected tasks x expected steps per task)."""
    a = scenario.traffic.arrival
    assert a is not None
    horizon = scenario.sim.horizon_s
    if isinstance(a, ClosedArrivals):
        # Each client sends at t = 0, then at most once per cycle; a cycle lasts at least the floor and, on
        # average, at least the mean think time (E[max(floor, think + response)] >= max(floor, E[think])).
        cycle = max(MIN_CLOSED_LOOP_CYCLE_S, a.think_time.mean())
        expected = a.concurrency * (1.0 + horizon / cycle)
        if a.requests is not None:  # a request count stops the clients sooner
            expected = min(expected, float(a.requests))
        if not expected <= MAX_ARRIVALS:
            errors.append(InputError(fname, "traffic.arrival.concurrency",
                                     f"{a.concurrency:,} clients x horizon {horizon:g} s / a cycle of at least "
                                     f"{cycle:.3g} s (the larger of the mean think time and the "
                                     f"{MIN_CLOSED_LOOP_CYCLE_S:g} s floor between sends, which requests that end at "
                                     f"once reach) means up to ~{expected:.3g} requests, more than the "
                                     f"{MAX_ARRIVALS:.0e} one run simulates; fewer clients, a longer think time or a "
                                     "shorter sim.horizon_s"))
            return
    else:
        expected = peak_rate_per_s(a) * horizon
        work = open_process_work(a, horizon, "traffic.arrival", fname)
        if work:
            errors += work
            return
    weights = {c.index: c.config.weight for c in classes if c.follows_arrival_process}
    total_weight = sum(weights.values()) or 1.0
    hourly = [c for c in classes if c.index in weights and c.config.weight_by_hour is not None]
    at = {c.index: scenario.traffic.classes.index(c.config) for c in classes}  # resolved -> file position
    if a.process == "diurnal" and hourly and len(weights) > 1 and expected * len(weights) > MAX_HOURLY_MIX_CELLS:
        errors.append(InputError(fname, f"traffic.classes[{at[hourly[0].index]}].weight_by_hour",
                                 f"~{expected:.3g} arrivals x {len(weights)} classes drawn by hour means "
                                 f"~{expected * len(weights):.3g} weights, more than the {MAX_HOURLY_MIX_CELLS:.0e} one "
                                 "run holds; fewer classes or a shorter horizon"))
    for c in classes:
        if c.agent is not None and c.index in weights:
            _check_agent_steps(c, expected * weights[c.index] / total_weight, f"traffic.classes[{at[c.index]}].workload",
                               fname, errors)


def _most_replicas(d: Deployment) -> int:
    """The most replicas a deployment runs at once: autoscaled to its maximum, with its prefill replicas."""
    peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
    return peak + (d.disaggregated.prefill_replicas if d.disaggregated is not None else 0)


def _replicas_by_pool(scenario: Scenario) -> dict[str, list[tuple[int, int]]]:
    """Pool -> (most replicas, devices per replica) of each deployment on it."""
    out: dict[str, list[tuple[int, int]]] = {}
    for d in scenario.deployments:
        peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
        out.setdefault(d.pool, []).append((peak, d.tp * d.pp))
        if d.disaggregated is not None:
            pool, devices = d.prefill_devices()
            out.setdefault(pool, []).append((d.disaggregated.prefill_replicas, devices))
    return out


def check_periodic_work(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    """Work that repeats over the run's span (horizon plus the longest drain): timeline rows, autoscaler
    decisions, fault events and training events. Each is refused past its bound in simfactory.config.limits."""
    sim = scenario.sim
    span = sim.span_s
    by_pool = _replicas_by_pool(scenario)
    engines = sum(_most_replicas(d) * d.pp for d in scenario.deployments)  # pp micro-batch engines per replica
    cells = span / sim.timeline_resolution_s * engines
    if cells > MAX_TIMELINE_CELLS:
        errors.append(InputError(fname, "sim.timeline_resolution_s",
                                 f"{span / sim.timeline_resolution_s:.3g} samples x {engines:,} replica engines means "
                                 f"~{cells:.3g} timeline rows, more than the {MAX_TIMELINE_CELLS:.0e} one run keeps; "
                                 "use a coarser resolution"))
    for i, d in enumerate(scenario.deployments):
        if d.autoscaling is not None and span / d.autoscaling.interval_s > MAX_AUTOSCALER_TICKS:
            errors.append(InputError(fname, f"deployments[{i}].autoscaling.interval_s",
                                     f"{d.autoscaling.interval_s:g} s means ~{span / d.autoscaling.interval_s:.3g} "
                                     f"decisions over {span:g} s, more than the {MAX_AUTOSCALER_TICKS:,} one run takes"))
    faults = scenario.faults
    for i, f in enumerate(faults.replica_failures):
        events = sum(n * span / (f.mtbf_s / (devices if f.per == "device" else 1) + f.mttr_s)
                     for n, devices in by_pool.get(f.pool, []))
        _check_fault_events(events, f"faults.replica_failures[{i}].mtbf_s", fname, errors)
    for i, sp in enumerate(faults.spot_reclamations):
        events = sum(n for n, _ in by_pool.get(sp.pool, [])) * span / (
            3600.0 / sp.per_replica_hour + sp.notice_s + sp.replacement_s)
        _check_fault_events(events, f"faults.spot_reclamations[{i}].per_replica_hour", fname, errors)
    for i, rr in enumerate(faults.rolling_restarts):
        events = sum(n for n, _ in by_pool.get(rr.pool, [])) * (min(rr.drain_s, span) + 2)  # drain polls every 1 s
        _check_fault_events(events, f"faults.rolling_restarts[{i}].drain_s", fname, errors)
    for i, job in enumerate(scenario.training):
        if job.model is not None:
            continue  # its speed comes from hardware: resolve/training.py checks it once derived
        events = job.expected_events()
        if not events <= MAX_TRAINING_EVENTS:
            errors.append(InputError(fname, f"training[{i}]",
                                     f"~{events:.3g} checkpoint segments and failures to simulate ({job.replications} "
                                     f"replications, the checkpoint interval scan included), more than the "
                                     f"{MAX_TRAINING_EVENTS:.0e} one run takes: the job barely progresses between "
                                     "failures (node_mtbf_h, checkpoint_interval_h, work); check them"))


def _check_fault_events(events: float, field: str, fname: str, errors: list[InputError]) -> None:
    if events > MAX_FAULT_EVENTS:
        errors.append(InputError(fname, field, f"means ~{events:.3g} fault events over the run, more than the "
                                 f"{MAX_FAULT_EVENTS:,} one run simulates"))
