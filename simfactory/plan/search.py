"""`plan`: the cheapest fleet meeting every SLO at a target load.

For each candidate (overrides from a search space: SKU, TP, dtype, ...) the minimum replica count is found
by bisection between analytic bounds and a doubling search, judging each count on R replications with
confidence intervals; one count below the analytic lower bound is always simulated too, so a bound that is
too high is caught (and searched beneath) rather than trusted. Candidates are ranked by cost; every evaluated
(candidate, replicas) point feeds a cost vs tail-latency Pareto front; for the winner the largest sustainable
rate (bisection) gives headroom, and one longer run at that rate validates it."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Callable

import numpy as np
from pydantic import Field, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.limits import MAX_SIMULATED_S, MAX_SWEEP_RUNS
from simfactory.config.loader import validate
from simfactory.config.scenario import ClosedArrivals, Scenario, scenario_document
from simfactory.errors import InputError, InputErrors
from simfactory.plan.bounds import (erlang_c_min_servers, front_end_max_rate_per_s, replica_max_rate_per_s,
                                    single_sequence_service_s)
from simfactory.plan.overrides import apply_overrides, check_paths
from simfactory.plan.slo import SloTarget, judge, mean_meets
from simfactory.plan.sweep import run_seed

if TYPE_CHECKING:  # resolution is imported when a candidate is sized, not when the CLI starts
    from simfactory.resolve.resolved import ResolvedDeployment


MAX_JOINT_POINTS = 40  # joint sizing: simulated fleets per candidate (each -R replications) before it stops


class Candidate(StrictModel):
    name: str
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted scenario path -> value")


class PlanSpace(StrictModel):
    """What may change: explicit candidates and/or a grid of overrides (Cartesian), and which deployments are
    sized: one (`deployment`), several jointly (`deployments`), or by default every static deployment of the
    scenario (jointly when there are several)."""

    deployment: str | None = Field(default=None, description="size this deployment alone; the others keep the "
                                   "scenario's replica counts")
    deployments: list[str] = Field(default_factory=list, description="size these deployments jointly (default: "
                                   "every deployment that is not autoscaled)")
    max_points: int = Field(default=MAX_JOINT_POINTS, ge=1, le=MAX_SWEEP_RUNS, description="joint sizing: the most "
                            "fleets (points of R replications) simulated per candidate")
    candidates: list[Candidate] = Field(default_factory=list)
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict, description="dotted scenario path -> values to try (at least one each)")
    max_replicas: int = Field(default=256, ge=1, le=100_000)

    @model_validator(mode="after")
    def _bounded(self) -> "PlanSpace":
        if self.deployment is not None and self.deployments:
            raise ValueError("give deployment (size one) or deployments (size several jointly), not both")
        if len(set(self.deployments)) < len(self.deployments):
            raise ValueError(f"deployments: a deployment is named twice ({', '.join(self.deployments)})")
        n = math.prod(len(v) for v in self.grid.values()) if self.grid else 0
        if n + len(self.candidates) > MAX_SWEEP_RUNS:
            raise ValueError(f"{len(self.candidates)} candidates and a grid of {n:,} combinations are more than "
                             f"{MAX_SWEEP_RUNS:,} candidates to plan; narrow the grid")
        return self


@dataclass
class Evaluation:
    candidate: str
    replicas: int
    rate_per_s: float
    met: bool
    slo: dict[str, Any]
    usd_per_hour: float
    usd_per_1m_tokens: float | None
    usd_per_successful_task: float | None


@dataclass
class CandidatePlan:
    candidate: str
    overrides: dict[str, Any]
    lower_bound: int
    min_replicas: int | None  # None: no count up to max_replicas meets the SLOs
    best: Evaluation | None
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def below_bound(self) -> Evaluation | None:
        """The point one count below the analytic lower bound (simulated whenever that count is a fleet): when
        it meets the SLOs, the bound was too high and the search went beneath it."""
        return next((e for e in self.evaluations if e.replicas == self.lower_bound - 1), None)


@dataclass
class PlanResult:
    target_rate_per_s: float
    targets: list[SloTarget]
    candidates: list[CandidatePlan]
    chosen: CandidatePlan | None
    max_rate_per_s: float | None = None
    headroom: float | None = None
    load_curve: list[Evaluation] = field(default_factory=list)  # the winner's fleet at the rates tried
    max_rate_is_lower_bound: bool = False  # the search stopped doubling before the SLOs failed
    replications: int = 1
    max_replicas: int | None = None
    validation: Evaluation | None = None  # one longer run of the winner at max_rate_per_s
    validation_horizon_s: float | None = None  # its horizon (None: no longer run fits the input limits)
    # the winner's deployments' forecast evidence (fidelity_record): how far forecasts of their kind have been
    # from published measurements, which a plan's margin should allow for
    forecast: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_rate_validated(self) -> bool | None:
        """Whether the longer run at the claimed max rate met every SLO (None: not run)."""
        return None if self.validation is None else self.validation.met

    @property
    def evaluations(self) -> list[Evaluation]:
        return [e for c in self.candidates for e in c.evaluations]


CLOSED_NO_RATE = ("closed: its clients set the load (concurrency, think time), so there is no arrival rate to set; "
                  "plan for a target rate with an open process (poisson, constant, gamma, weibull, schedule, diurnal or "
                  "mmpp)")


def set_rate(doc: dict[str, Any], rate: float) -> None:
    """Scale the scenario's arrival process to a mean of `rate` requests (or tasks) per second."""
    a = doc["traffic"].get("arrival")
    if a is None:
        raise InputError("--target-rate", "traffic.arrival", "the scenario replays a timestamped trace: no rate to set")
    if a["process"] == "closed":
        raise InputError("--target-rate", "traffic.arrival.process", CLOSED_NO_RATE)
    own = [i for i, c in enumerate(doc["traffic"].get("classes") or []) if isinstance(c, dict) and c.get("arrival")]
    if own:
        raise InputError("--target-rate", f"traffic.classes[{own[0]}].arrival", "this class has its own arrival "
                         "process, which --target-rate (traffic.arrival's rate) does not set: plan with its "
                         "rate_scale in a sweep, or move it to traffic.arrival")
    if a["process"] == "diurnal":
        a["mean_rate_per_s"] = rate
    elif a["process"] == "mmpp":
        total = sum(s["mean_sojourn_s"] for s in a["states"])
        mean = sum(s["rate_per_s"] * s["mean_sojourn_s"] for s in a["states"]) / total
        for s in a["states"]:
            s["rate_per_s"] = s["rate_per_s"] * rate / mean if mean else rate
    elif a["process"] == "schedule":  # the same swings, scaled to the mean
        mean = sum(a["rates_per_s"]) / len(a["rates_per_s"])
        a["rates_per_s"] = [r * rate / mean for r in a["rates_per_s"]]
    else:
        a["rate_per_s"] = rate


def deployment_index(doc: dict[str, Any], name: str | None, file: str = "space", where: str = "deployment") -> int:
    """The index of the deployment to size (None: the first), refusing an unknown or autoscaled one."""
    names = [d["name"] for d in doc["deployments"]]
    if name is not None and name not in names:
        raise InputError(file, where, f"unknown deployment {name!r} (deployments: {', '.join(names)})")
    i = 0 if name is None else names.index(name)
    if doc["deployments"][i].get("autoscaling"):
        raise InputError(file, where, f"{names[i]!r} is autoscaled: its replica count is only where it starts; plan "
                                      "a static deployment (or compare autoscaling policies with `simfactory compare`)")
    return i


def pool_need(doc: dict[str, Any], pool: str) -> int:
    """Accelerators a pool's deployments and dedicated training jobs hold (the resolver's rule: peak replicas,
    plus disaggregated prefill replicas, times tp x pp)."""
    need = 0
    for d in doc.get("deployments", []):
        disagg = d.get("disaggregated") or {}
        shape = disagg.get("prefill") or {}
        if shape.get("pool", d.get("pool")) == pool and disagg:
            devices = shape["tp"] if "tp" in shape else d.get("tp", 1) * d.get("pp", 1)
            need += disagg.get("prefill_replicas", 0) * devices
        if d.get("pool") != pool:
            continue
        peak = (d.get("autoscaling") or {}).get("max_replicas", d["replicas"])
        need += peak * d.get("tp", 1) * d.get("pp", 1)
    need += sum(j.get("accelerators", 0) for j in doc.get("training", [])
                if j.get("pool") == pool and j.get("priority", "dedicated") == "dedicated")
    return need


def with_replicas(doc: dict[str, Any], dep: int, replicas: int) -> dict[str, Any]:
    """The document with `replicas` for the deployment and its pool sized to exactly what it then holds: a
    candidate pays for the fleet it needs, not for spare accelerators left in the pool it started from (and a
    tp or pp change resizes the pool with it)."""
    out = apply_overrides(doc, {}, "")
    d = out["deployments"][dep]
    d["replicas"] = replicas
    pool = next(p for p in out["pools"] if p["name"] == d["pool"])
    pool["count"] = max(1, pool_need(out, pool["name"]))
    return out


def resolve_doc(doc: dict[str, Any], file: str):  # type: ignore[no-untyped-def]
    from simfactory.resolve import resolve

    return resolve(validate(Scenario, doc, file), file)


def forecast_evidence(doc: dict[str, Any], file: str) -> list[dict[str, Any]]:
    """Each deployment's forecast evidence in a candidate's document (fidelity_record.evidence; deployments the
    shipped suites never checked are left out), for the plan's note on its margin."""
    from simfactory.fidelity_record import forecast_sides
    from simfactory.metrics.summary import forecast_fields

    return [{"deployment": name, **a} for d in resolve_doc(doc, file).deployments
            for name, a in forecast_sides({"name": d.config.name, **forecast_fields(d)}) if a is not None]


def replica_floor(doc: dict[str, Any], dep: int) -> int:
    """The smallest fleet there is: every reserved replica plus one unreserved."""
    return 1 + sum(r.get("replicas", 0) for r in doc["deployments"][dep].get("reserved") or [])


def _bounds(doc: dict[str, Any], dep: int, file: str, rate: float, targets: list[SloTarget]) -> tuple[int, int]:
    """(lower bound, first guess) for the replica count: full-batch throughput, and Erlang C when the
    engine serves one sequence at a time and the target is the mean queueing delay."""
    floor = replica_floor(doc, dep)
    rs = resolve_doc(with_replicas(doc, dep, floor), file)
    plain = [c for c in rs.classes if c.agent is None and c.input_tokens is not None and c.output_tokens is not None]
    if not plain or len(rs.deployments) > 1:
        return floor, floor
    w = np.array([c.config.weight for c in plain], dtype=float)
    w /= w.sum()
    shared = sum(wi * c.config.shared_prefix_tokens for wi, c in zip(w, plain))
    n_in = float(sum(wi * c.input_tokens.mean() for wi, c in zip(w, plain))) + shared  # type: ignore[union-attr]
    n_out = float(sum(wi * c.output_tokens.mean() for wi, c in zip(w, plain)))  # type: ignore[union-attr]
    return fleet_bounds(rs.deployments[dep], floor, rate, n_in, n_out, targets)


def fleet_bounds(d: ResolvedDeployment, floor: int, rate: float, n_in: float, n_out: float,
                 targets: list[SloTarget]) -> tuple[int, int]:
    """(lower bound, first guess) for one deployment offered `rate` requests/s of n_in + n_out mean tokens: a
    replica cannot complete more than its full-batch throughput; with one sequence at a time the fleet is M/G/c
    (c > lambda / mu) and Erlang C's servers are the guess for a mean-queueing target."""
    mu_max = replica_max_rate_per_s(d.step_time, d.config.max_num_seqs, d.kv_capacity_tokens, n_in, n_out)
    work = d.front_end_work()
    if work is not None:  # the API server's CPU caps the replica too
        mu_max = min(mu_max, front_end_max_rate_per_s(work.cores_per_replica, work.request_s(n_in, n_out)))
    lower = max(floor, math.ceil(rate / mu_max - 1e-12)) if math.isfinite(mu_max) else floor
    guess = lower
    if d.config.max_num_seqs == 1:
        mu = 1.0 / single_sequence_service_s(d.step_time, n_in, n_out)
        lower = max(lower, math.floor(rate / mu) + 1)  # stability of M/G/c
        guess = lower
        for t in targets:
            if t.metric == "queue" and t.stat == "mean" and t.op == "<":
                guess = max(guess, erlang_c_min_servers(rate, mu, t.value))
    return lower, guess


def evaluate(doc: dict[str, Any], dep: int, file: str, candidate: str, replicas: int, rate: float,
             targets: list[SloTarget], replications: int, base_seed: int, point: int = 0) -> Evaluation:
    from simfactory.metrics.summary import compute_metrics
    from simfactory.sim.run import simulate

    d = with_replicas(doc, dep, replicas)
    set_rate(d, rate)
    rs = resolve_doc(d, file)
    # common random numbers: replication r sees the same arrivals at every replica count and candidate, so a
    # comparison between counts is a comparison of capacity, not of seeds
    summaries = [compute_metrics(simulate(rs, seed=run_seed(base_seed, point, r), keep_logs=0), trace_tasks=0).summary
                 for r in range(replications)]
    met, detail = judge(targets, summaries)
    ue = [s["finance"]["unit_economics"] for s in summaries]

    def mean(key: str) -> float | None:
        v = [u[key] for u in ue if u[key] is not None]
        return float(np.mean(v)) if v else None

    return Evaluation(candidate, replicas, rate, met, detail, float(np.mean([s["cost"]["usd_per_hour"] for s in summaries])),
                      mean("usd_per_1m_tokens"), mean("usd_per_successful_task"))


def min_replicas(check: Callable[[int], bool], lower: int, guess: int, limit: int) -> int | None:
    """Smallest c in [lower, limit] with check(c), assuming more replicas never hurt: from the guess, double
    until one passes, then bisect down to the last failure (lower - 1 fails by the bound)."""
    lo = lower - 1
    hi = min(max(lower, guess), limit)
    while not check(hi):
        if hi >= limit:
            return None
        lo, hi = hi, min(limit, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(mid):
            hi = mid
        else:
            lo = mid
    return hi


def search_replicas(check: Callable[[int], bool], lower: int, guess: int, limit: int, floor: int = 1) -> int | None:
    """`min_replicas`, after first simulating one count below the analytic lower bound (when that count is a
    fleet, >= floor): a bound that is too high shows as a pass there, and the search then goes beneath it."""
    below = lower - 1
    if floor <= below <= limit and check(below):
        return min_replicas(check, floor, below, limit)
    return min_replicas(check, lower, guess, limit) if lower <= limit else None


def ci_decided(cp: CandidatePlan, targets: list[SloTarget]) -> tuple[Evaluation, list[str]] | None:
    """When the confidence bound, not the point estimate, decided a candidate's size: the count one below its
    minimum meets every target on the mean of its replications but not at 95% confidence. That point and the
    targets only the interval failed; None otherwise (or when that count was not simulated)."""
    if cp.min_replicas is None:
        return None
    below = next((e for e in cp.evaluations if e.replicas == cp.min_replicas - 1), None)
    if below is None or below.met or not all(mean_meets(t, below.slo.get(t.label)) for t in targets):
        return None
    return below, [t.label for t in targets if not (below.slo.get(t.label) or {}).get("met")]


def shortfall(t: SloTarget, detail: dict[str, Any] | None) -> float:
    """How far a point's 95% bound is on the wrong side of a target, relative to it (0: met; inf: no value)."""
    mean, half = (detail or {}).get("mean"), (detail or {}).get("ci95") or 0.0
    if mean is None or not math.isfinite(mean) or not math.isfinite(half):
        return math.inf
    miss = mean + half - t.value if t.op == "<" else t.value - (mean - half)
    return max(0.0, miss) / max(t.value, 1e-9)


def closest_miss(result: PlanResult) -> Evaluation | None:
    """The simulated point nearest to meeting every target: the smallest worst relative shortfall (ties: more
    replicas, then cheaper)."""
    evals = result.evaluations
    if not evals:
        return None
    return min(evals, key=lambda e: (max(shortfall(t, e.slo.get(t.label)) for t in result.targets), -e.replicas,
                                     e.usd_per_hour))


def candidates_of(space: PlanSpace) -> list[Candidate]:
    out = list(space.candidates)
    if space.grid:
        names = list(space.grid)
        for combo in itertools.product(*(space.grid[n] for n in names)):
            ov = dict(zip(names, combo))
            out.append(Candidate(name=",".join(f"{k.split('.')[-1]}={v}" for k, v in ov.items()), overrides=ov))
    return out or [Candidate(name="as-is")]


# the arrival fields set_rate writes for every evaluation: an override of them would be silently replaced
RATE_FIELDS = ("rate_per_s", "mean_rate_per_s", "states")


def planner_set(path: str, doc: dict[str, Any], dep: int) -> str | None:
    """The planner-set field a dotted override path names, if any: the sized deployment's replicas, its pool's
    count, the arrival rate."""
    parts = path.split(".")

    def names(section: str, i: int) -> set[str]:
        return {str(i), str(doc[section][i].get("name"))}

    if len(parts) == 3 and parts[0] == "deployments" and parts[2] == "replicas" and parts[1] in names("deployments", dep):
        return "the replica count of the deployment it sizes"
    if len(parts) == 3 and parts[0] == "pools" and parts[2] == "count":
        pool = next((i for i, p in enumerate(doc["pools"]) if p["name"] == doc["deployments"][dep]["pool"]), None)
        if pool is not None and parts[1] in names("pools", pool):
            return "the size of the sized deployment's pool (to the replicas it needs)"
    if len(parts) >= 3 and parts[:2] == ["traffic", "arrival"] and parts[2] in RATE_FIELDS:
        return "the arrival rate (from --target-rate)"
    return None


def candidate_doc(base: dict[str, Any], deps: list[int], cand: Candidate, space_file: str, rate: float) -> dict[str, Any]:
    """The base scenario with the candidate's overrides at the target rate; an override of what plan sets itself
    (the sized deployments' replicas, ...) or of a path the scenario lacks is an InputError naming it."""
    for path in cand.overrides:
        what = next((w for w in (planner_set(path, base, dep) for dep in deps) if w is not None), None)
        if what is not None:
            raise InputError(space_file, f"candidates[{cand.name}].{path}",
                             f"plan sets {what} itself; an override of it would be ignored")
    check_paths(base, list(cand.overrides), space_file)
    doc = apply_overrides(base, cand.overrides, space_file)
    set_rate(doc, rate)
    return doc


def _prepare(base: dict[str, Any], dep: int, cand: Candidate, file: str, space_file: str, rate: float,
             targets: list[SloTarget]) -> tuple[Candidate, dict[str, Any], int, int]:
    """The candidate's scenario at the target rate and its analytic replica bounds, or an InputError naming it."""
    doc = candidate_doc(base, [dep], cand, space_file, rate)
    try:
        lower, guess = _bounds(doc, dep, file, rate, targets)
    except (InputError, InputErrors) as e:
        raise InputError(space_file, f"candidates[{cand.name}]", str(e).splitlines()[0]) from None
    return cand, doc, lower, guess


def plan(scenario: Scenario, file: str, rate: float, targets: list[SloTarget], space: PlanSpace | None = None,
         replications: int = 3, space_file: str = "space", max_rate: bool = True,
         on_eval: Callable[[Evaluation], None] | None = None,
         on_phase: Callable[[str, int, int], None] | None = None) -> PlanResult:
    """Size one deployment (space.deployment, default the first) for every candidate (fewest replicas meeting
    the SLOs), pick the cheapest, then find its largest sustainable load. `simfactory plan` goes through
    plan/joint.plan_fleet, which sizes several deployments jointly instead when the scenario has them. on_eval: each evaluation as it ends; on_phase(name, k, of): each phase as it starts
    ("size", candidate k of `of`; "max_rate"; "validate"), for progress displays."""
    space = space or PlanSpace()
    phase = on_phase or (lambda name, k, of: None)
    if isinstance(scenario.traffic.arrival, ClosedArrivals):
        raise InputError(file, "traffic.arrival.process", CLOSED_NO_RATE)
    base = scenario_document(scenario)
    dep = deployment_index(base, space.deployment, space_file)
    # every candidate is checked (paths, values, analytic bounds) before the first simulation: a bad one is
    # refused up front, not after minutes of progress on the others
    prepared = [_prepare(base, dep, cand, file, space_file, rate, targets) for cand in candidates_of(space)]

    def size(cand: Candidate, doc: dict[str, Any], lower: int, guess: int) -> CandidatePlan:
        cp = CandidatePlan(cand.name, cand.overrides, lower, None, None)
        cache: dict[int, Evaluation] = {}

        def check(c: int) -> bool:
            if c not in cache:
                ev = evaluate(doc, dep, file, cand.name, c, rate, targets, replications, scenario.seed)
                cache[c] = ev
                cp.evaluations.append(ev)
                if on_eval:
                    on_eval(ev)
            return cache[c].met

        cp.min_replicas = search_replicas(check, lower, guess, space.max_replicas, replica_floor(doc, dep))
        cp.best = cache.get(cp.min_replicas) if cp.min_replicas is not None else None
        return cp

    plans = []
    for k, p in enumerate(prepared):
        phase("size", k + 1, len(prepared))
        plans.append(size(*p))
    feasible = [p for p in plans if p.best is not None]
    chosen = min(feasible, key=lambda p: (p.best.usd_per_hour, p.candidate)) if feasible else None  # type: ignore[union-attr]
    result = PlanResult(rate, targets, plans, chosen, replications=replications, max_replicas=space.max_replicas)
    if chosen is not None:
        won = apply_overrides(base, chosen.overrides, space_file)
        result.forecast = forecast_evidence(won, file)
        if max_rate:
            find_max_rate(result, won, dep, file, scenario.seed, phase, on_eval)
    return result


def find_max_rate(result: PlanResult, doc: dict[str, Any], dep: int, file: str, seed: int,
                  phase: Callable[[str, int, int], None] = lambda name, k, of: None,
                  on_eval: Callable[[Evaluation], None] | None = None, replicas: int | None = None,
                  wrap: Callable[[Evaluation], Evaluation] = lambda e: e) -> None:
    """The winner's largest sustainable rate, headroom and load curve, then one longer run validating it.
    `replicas`: the sized deployment's count (default: the winner's); `wrap`: what each evaluation becomes (a
    joint plan's evaluations name the whole fleet)."""
    chosen, rate = result.chosen, result.target_rate_per_s
    assert chosen is not None
    replicas = replicas or chosen.min_replicas or 1
    phase("max_rate", 1, 1)

    def seen(e: Evaluation) -> None:
        e = wrap(e)
        result.load_curve.append(e)
        if on_eval:
            on_eval(e)

    result.max_rate_per_s = max_sustainable_rate(doc, dep, file, chosen.candidate, replicas, rate, result.targets,
                                                 result.replications, seed, seen)
    if chosen.best is not None:
        result.load_curve.append(chosen.best)
    result.load_curve.sort(key=lambda e: e.rate_per_s)
    result.headroom = result.max_rate_per_s / rate - 1.0
    result.max_rate_is_lower_bound = result.max_rate_per_s >= rate * 2**MAX_RATE_DOUBLINGS * (1 - 1e-9)
    phase("validate", 1, 1)
    validation, result.validation_horizon_s = validate_max_rate(
        doc, dep, file, chosen.candidate, replicas, result.max_rate_per_s, result.targets, seed)
    result.validation = wrap(validation) if validation is not None else None


VALIDATION_HORIZONS = (4.0, 2.0)  # the validating run's horizon, in plan horizons: the longest the limits allow


def validate_max_rate(doc: dict[str, Any], dep: int, file: str, name: str, replicas: int, rate: float,
                      targets: list[SloTarget], seed: int) -> tuple[Evaluation | None, float | None]:
    """One run at `rate`, 4x as long as the plan's (2x when 4x would pass an input limit: simulated time,
    arrivals, timeline samples, ...), on seeds no plan point used: short runs can sustain a load that a longer
    one shows to be building a queue. (its evaluation, its horizon), or (None, None) when no longer run fits."""
    horizon = float(doc["sim"]["horizon_s"])
    for factor in VALIDATION_HORIZONS:
        long_s = min(horizon * factor, MAX_SIMULATED_S)
        if long_s <= horizon:
            break
        d = apply_overrides(doc, {"sim.horizon_s": long_s}, "")
        try:
            return evaluate(d, dep, file, name, replicas, rate, targets, 1, seed, point=1), long_s
        except (InputError, InputErrors):
            continue
    return None, None


MAX_RATE_DOUBLINGS = 6  # the max-rate search stops at 64 x the target rate (then it is a lower bound)


def max_sustainable_rate(doc: dict[str, Any], dep: int, file: str, name: str, replicas: int, rate: float,
                         targets: list[SloTarget], replications: int, seed: int,
                         seen: Callable[[Evaluation], None] = lambda e: None, rel_tol: float = 0.05) -> float:
    """Largest rate (within rel_tol) at which `replicas` still meet every SLO: double, then bisect."""

    def ok(r: float) -> bool:
        e = evaluate(doc, dep, file, name, replicas, r, targets, replications, seed)
        seen(e)
        return e.met

    lo, hi = rate, rate * 2
    for _ in range(MAX_RATE_DOUBLINGS):
        if not ok(hi):
            break
        lo, hi = hi, hi * 2
    else:
        return lo
    while (hi - lo) / lo > rel_tol:
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def pareto_front(evals: list[Evaluation], latency_key: str) -> list[Evaluation]:
    """Evaluations no other beats on both cost and the latency target's mean."""
    pts = [e for e in evals if e.slo.get(latency_key, {}).get("mean") is not None]
    front = []
    for e in pts:
        lat = e.slo[latency_key]["mean"]
        if not any(o.usd_per_hour <= e.usd_per_hour and o.slo[latency_key]["mean"] <= lat
                   and (o.usd_per_hour < e.usd_per_hour or o.slo[latency_key]["mean"] < lat) for o in pts):
            front.append(e)
    return sorted(front, key=lambda e: e.usd_per_hour)
