"""Joint planning: the replica counts of several deployments at once (a small- and a large-model tier behind a
router, two regions, ...), every fleet judged on the end-to-end SLOs of the whole scenario, as `plan` judges one.

Sizing the tiers one at a time answers the wrong question: with a router in front, a slow large tier can be
bought back by a faster small tier (and the reverse), so the cheapest fleet is a point of the joint space of
replica vectors. The search there:

1. an analytic start per deployment: its offered load from the routing at the target rate (plan/shares: weights,
   tiers and escalations), then the single-deployment bounds of plan/search.fleet_bounds (full-batch throughput;
   c > lambda / mu and Erlang C's servers with one sequence at a time);
2. grow, while the fleet misses a target: simulate adding replicas to each deployment and keep the addition that
   most reduces the worst relative shortfall (search.shortfall: how far the 95% bound is past the target) per
   dollar an hour; a deployment picked twice running doubles its step; when no addition helps, or the fleet is
   too far off for a shortfall to be measured (a percentile unbounded by lost requests), add to every deployment
   (doubling);
3. trim, from the fleet that meets: simulate removing replicas from each deployment (the step halving on a miss,
   down to 1), then swapping a replica of a dearer deployment for one or more of a cheaper one (while that is
   cheaper); move to the cheapest that still meets, until none does. That is a local minimum of these moves: with
   two deployments it was the cheapest fleet in every closed-form (Erlang C) case tests/test_plan_joint.py tries;
   with three or more, a cheaper fleet may need a three-way move the search does not try.

More replicas are assumed never to hurt: a fleet at or below (deployment by deployment) one that missed is not
simulated. Every simulated fleet is recorded (it feeds the Pareto front); the search stops at `max_points` fleets
per candidate. The answer is the cheapest simulated fleet that met every target. Each fleet runs on the same seeds
(common random numbers), so fleets differ in capacity, not in luck, and the same seed gives the same plan."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from simfactory.config.scenario import ClosedArrivals, Scenario, scenario_document
from simfactory.errors import InputError, InputErrors
from simfactory.plan.overrides import apply_overrides
from simfactory.plan.search import (
    CLOSED_NO_RATE,
    MAX_JOINT_POINTS,
    Candidate,
    CandidatePlan,
    Evaluation,
    PlanResult,
    PlanSpace,
    candidate_doc,
    candidates_of,
    deployment_index,
    evaluate,
    find_max_rate,
    forecast_evidence,
    fleet_bounds,
    plan,
    pool_need,
    replica_floor,
    resolve_doc,
    shortfall,
)
from simfactory.plan.shares import offered_load
from simfactory.plan.slo import SloTarget

Fleet = tuple[int, ...]  # replicas of each sized deployment, in the scenario's order


@dataclass
class JointEvaluation(Evaluation):
    """One simulated fleet: `replicas` is the fleet's total, `fleet` each sized deployment's count."""

    fleet: dict[str, int] = field(default_factory=dict)


@dataclass
class DeploymentStart:
    """A sized deployment's analytic point: its offered load and the bounds from it."""

    deployment: str
    attempts_per_request: float  # attempts it serves per arriving request (escalations included)
    rate_per_s: float  # offered attempts per second at the target rate
    lower_bound: int
    start: int


@dataclass
class JointCandidatePlan(CandidatePlan):
    """A candidate sized jointly: lower_bound and min_replicas are fleet totals; `fleet` the counts that won."""

    starts: list[DeploymentStart] = field(default_factory=list)
    fleet: dict[str, int] | None = None
    stopped: str = ""  # why the search ended early ("" when it ran to a local minimum)
    unattributed: list[str] = field(default_factory=list)  # load the routing alone does not place (shares.py)


@dataclass
class JointPlanResult(PlanResult):
    deployments: list[str] = field(default_factory=list)
    max_points: int = MAX_JOINT_POINTS
    wall_s: float = 0.0

    @property
    def sizing_points(self) -> int:
        return len(self.evaluations)

    @property
    def simulated_points(self) -> int:
        """Every simulated point: the fleets sized, the max-rate search's and the validating run."""
        best = self.chosen.best if self.chosen is not None else None
        curve = [e for e in self.load_curve if e is not best]
        return self.sizing_points + len(curve) + (self.validation is not None)


def as_joint(e: Evaluation, fleet: dict[str, int]) -> JointEvaluation:
    values = {f.name: getattr(e, f.name) for f in fields(Evaluation)}
    return JointEvaluation(**{**values, "replicas": sum(fleet.values())}, fleet=dict(fleet))


def with_fleet(doc: dict[str, Any], fleet: dict[int, int]) -> dict[str, Any]:
    """The document with each deployment's replicas set and their pools sized to exactly what they then hold."""
    out = apply_overrides(doc, {}, "")
    for dep, n in fleet.items():
        out["deployments"][dep]["replicas"] = n
    for name in dict.fromkeys(out["deployments"][dep]["pool"] for dep in fleet):
        pool = next(p for p in out["pools"] if p["name"] == name)
        pool["count"] = max(1, pool_need(out, name))
    return out


def sized_deployments(base: dict[str, Any], space: PlanSpace, space_file: str) -> list[int]:
    """Which deployments a plan sizes: the one the space names, the ones it lists, else every static one."""
    if space.deployments:
        return sorted(deployment_index(base, n, space_file, f"deployments[{k}]") for k, n in enumerate(space.deployments))
    if space.deployment is not None or len(base["deployments"]) == 1:
        return [deployment_index(base, space.deployment, space_file)]
    static = [i for i, d in enumerate(base["deployments"]) if not d.get("autoscaling")]
    return static or [deployment_index(base, None, space_file)]


class FleetSearch:
    """The grow-then-trim search over fleets (the module docstring). simulate(fleet) judges one fleet."""

    def __init__(self, simulate: Callable[[Fleet], Evaluation], targets: list[SloTarget], floors: Fleet,
                 limits: Fleet, max_points: int) -> None:
        self.simulate, self.targets = simulate, targets
        self.floors, self.limits, self.max_points = floors, limits, max_points
        self.points: dict[Fleet, Evaluation] = {}
        self.prices: dict[int, float] = {}  # USD/hour of one more replica of deployment i, from simulated pairs
        self.stopped = ""

    def ev(self, x: Fleet) -> Evaluation | None:
        """The fleet's evaluation, simulated unless already known; None once max_points fleets were simulated."""
        if x in self.points:
            return self.points[x]
        if len(self.points) >= self.max_points:
            self.stopped = f"stopped at the budget of {self.max_points} simulated fleets"
            return None
        e = self.points[x] = self.simulate(x)
        for z, f in self.points.items():
            diff = [i for i in range(len(x)) if x[i] != z[i]]
            if len(diff) == 1:
                self.prices[diff[0]] = (e.usd_per_hour - f.usd_per_hour) / (x[diff[0]] - z[diff[0]])
        return e

    def known_miss(self, x: Fleet) -> bool:
        """At or below, deployment by deployment, a fleet that missed: it misses too (more never hurts)."""
        return any(not e.met and all(a <= b for a, b in zip(x, z)) for z, e in self.points.items())

    def score(self, e: Evaluation) -> float:
        """The worst relative shortfall of the point's 95% bounds (0: every target met)."""
        return max((shortfall(t, e.slo.get(t.label)) for t in self.targets), default=0.0)

    def step(self, x: Fleet, i: int, n: int) -> Fleet:
        return tuple(v + n if j == i else v for j, v in enumerate(x))

    def up_all(self, x: Fleet, steps: list[int]) -> Fleet:
        return tuple(min(lim, v + s) for v, s, lim in zip(x, steps, self.limits))

    @property
    def best(self) -> Fleet | None:
        """The cheapest simulated fleet meeting every target (ties: fewer replicas, then the first deployments')."""
        met = [x for x, e in self.points.items() if e.met]
        return min(met, key=lambda x: (self.points[x].usd_per_hour, sum(x), x)) if met else None

    def run(self, start: Fleet) -> None:
        grown = self.grow(start)
        if grown is not None:
            self.trim(*grown)

    def grow(self, x: Fleet) -> tuple[Fleet, list[int]] | None:
        """From x, add replicas until a fleet meets every target: (that fleet, the last step per deployment)."""
        steps, last = [1] * len(x), -1
        while True:
            e = self.ev(x)
            if e is None:
                return None
            if e.met:
                return x, steps
            up = {i: self.step(x, i, min(steps[i], self.limits[i] - x[i])) for i in range(len(x))
                  if x[i] < self.limits[i]}
            if not up:
                self.stopped = "every deployment is at max_replicas"
                return None
            gains = self._gains(e, up) if len(up) > 1 and math.isfinite(self.score(e)) else {}
            if gains is None:
                return None
            met = [i for i in gains if self.points[up[i]].met]
            if met:
                return up[min(met, key=lambda i: (self.points[up[i]].usd_per_hour, i))], steps
            i = max(gains, key=lambda i: (gains[i], -i)) if gains else -1
            if i < 0 or gains[i] <= 0:  # nothing measurable helps on its own: every deployment grows
                x, steps, last = self.up_all(x, steps), [2 * s for s in steps], -1
                continue
            x, steps[i], last = up[i], steps[i] * (2 if i == last else 1), i

    def _gains(self, e: Evaluation, up: dict[int, Fleet]) -> dict[int, float] | None:
        """Per deployment, the worst shortfall its addition removes per USD/hour it adds (None: out of budget)."""
        gains = {}
        for i, y in up.items():
            f = self.ev(y)
            if f is None:
                return None
            gains[i] = (self.score(e) - self.score(f)) / max(f.usd_per_hour - e.usd_per_hour, 1e-9)
        return gains

    def trim(self, x: Fleet, steps: list[int]) -> None:
        """From a fleet that meets, move to cheaper fleets that still meet: fewer replicas of one deployment (the
        step halving on a miss), then a replica of a dearer deployment swapped for cheaper ones."""
        t = [max(1, s // 2) for s in steps]
        while True:
            usd = self.points[x].usd_per_hour
            down = [[self.step(x, i, -t[i])] for i in range(len(x)) if x[i] - t[i] >= self.floors[i]]
            better = self._cheaper(down, usd)
            if better is None:
                return
            if not better and any(s > 1 for s in t):
                t = [max(1, s // 2) for s in t]
                continue
            if not better:
                better = self._cheaper(self._swaps(x), usd)
                if not better:
                    return
            x = min(better, key=lambda y: (self.points[y].usd_per_hour, y))

    def _swaps(self, x: Fleet) -> list[list[Fleet]]:
        """Per pair (i, j): one replica of deployment i for b = 1, 2, ... of deployment j, while that is cheaper."""
        out = []
        for i in range(len(x)):
            for j in range(len(x)):
                if i == j or i not in self.prices or j not in self.prices or x[i] - 1 < self.floors[i]:
                    continue
                bs = range(1, self.limits[j] - x[j] + 1)
                out.append([self.step(self.step(x, i, -1), j, b) for b in bs
                            if b * self.prices[j] < self.prices[i] - 1e-9])
        return out

    def _cheaper(self, groups: list[list[Fleet]], usd: float) -> list[Fleet] | None:
        """The fleets that meet every target for less than `usd`, trying each group's fleets in order up to its
        first that meets (each one costs more than the one before); None: the budget ran out."""
        out = []
        for group in groups:
            for y in group:
                if self.known_miss(y):
                    continue
                f = self.ev(y)
                if f is None:
                    return None
                if f.met:
                    if f.usd_per_hour < usd:
                        out.append(y)
                    break
        return out


def deployment_starts(doc: dict[str, Any], deps: list[int], file: str, rate: float,
                      targets: list[SloTarget]) -> tuple[list[DeploymentStart], list[str]]:
    """Each sized deployment's offered load (from the routing, at `rate`) and analytic (lower bound, start);
    with what the routing alone could not attribute."""
    floors = {i: replica_floor(doc, i) for i in deps}
    rs = resolve_doc(with_fleet(doc, floors), file)
    offered = offered_load(rs)
    out = []
    for i in deps:
        load, d = offered.loads[i], rs.deployments[i]
        lam = rate * load.attempts
        lower = start = floors[i]
        if load.attempts > 0:
            lower, start = fleet_bounds(d, floors[i], lam, load.input_tokens, load.output_tokens, targets)
        out.append(DeploymentStart(d.config.name, load.attempts, lam, lower, start))
    return out, offered.partial


@dataclass
class _Prepared:
    cand: Candidate
    doc: dict[str, Any]
    starts: list[DeploymentStart]
    unattributed: list[str]


def _prepare(base: dict[str, Any], deps: list[int], cand: Candidate, file: str, space_file: str, rate: float,
             targets: list[SloTarget]) -> _Prepared:
    """The candidate's scenario at the target rate and its analytic starts, or an InputError naming it."""
    doc = candidate_doc(base, deps, cand, space_file, rate)
    try:
        starts, partial = deployment_starts(doc, deps, file, rate, targets)
    except (InputError, InputErrors) as e:
        raise InputError(space_file, f"candidates[{cand.name}]", str(e).splitlines()[0]) from None
    return _Prepared(cand, doc, starts, partial)


def _size(p: _Prepared, deps: list[int], file: str, rate: float, targets: list[SloTarget], space: PlanSpace,
          replications: int, seed: int, on_eval: Callable[[Evaluation], None] | None) -> JointCandidatePlan:
    """One candidate's cheapest fleet meeting every target, by FleetSearch from its analytic starts."""
    names = [s.deployment for s in p.starts]
    cp = JointCandidatePlan(p.cand.name, p.cand.overrides, sum(s.lower_bound for s in p.starts), None, None,
                            starts=p.starts, unattributed=p.unattributed)

    def simulate(x: Fleet) -> Evaluation:
        e = evaluate(with_fleet(p.doc, dict(zip(deps, x))), deps[0], file, p.cand.name, x[0], rate, targets,
                     replications, seed)
        je = as_joint(e, dict(zip(names, x)))
        cp.evaluations.append(je)
        if on_eval:
            on_eval(je)
        return je

    floors = tuple(replica_floor(p.doc, i) for i in deps)
    limits = tuple(max(space.max_replicas, f) for f in floors)
    search = FleetSearch(simulate, targets, floors, limits, space.max_points)
    search.run(tuple(min(lim, max(f, s.start)) for f, lim, s in zip(floors, limits, p.starts)))
    cp.stopped = search.stopped
    best = search.best
    if best is not None:
        cp.best, cp.fleet, cp.min_replicas = search.points[best], dict(zip(names, best)), sum(best)  # type: ignore[assignment]
    return cp


def plan_joint(scenario: Scenario, file: str, rate: float, targets: list[SloTarget], space: PlanSpace,
               deps: list[int], replications: int = 3, space_file: str = "space", max_rate: bool = True,
               on_eval: Callable[[Evaluation], None] | None = None,
               on_phase: Callable[[str, int, int], None] | None = None) -> JointPlanResult:
    """Size the deployments `deps` jointly for every candidate, pick the cheapest fleet, then find its largest
    sustainable load (as `plan` does for one deployment)."""
    started_s = time.monotonic()
    phase = on_phase or (lambda name, k, of: None)
    base = scenario_document(scenario)
    prepared = [_prepare(base, deps, cand, file, space_file, rate, targets) for cand in candidates_of(space)]
    plans: list[CandidatePlan] = []
    for k, p in enumerate(prepared):
        phase("size", k + 1, len(prepared))
        plans.append(_size(p, deps, file, rate, targets, space, replications, scenario.seed, on_eval))
    feasible = [p for p in plans if p.best is not None]
    chosen = min(feasible, key=lambda p: (p.best.usd_per_hour, p.candidate)) if feasible else None  # type: ignore[union-attr]
    result = JointPlanResult(rate, targets, plans, chosen, replications=replications, max_replicas=space.max_replicas,
                             deployments=[base["deployments"][i]["name"] for i in deps], max_points=space.max_points)
    if isinstance(chosen, JointCandidatePlan) and chosen.fleet is not None:
        fleet = dict(chosen.fleet)
        doc = with_fleet(apply_overrides(base, chosen.overrides, space_file), dict(zip(deps, fleet.values())))
        result.forecast = forecast_evidence(doc, file)
        if max_rate:
            find_max_rate(result, doc, deps[0], file, scenario.seed, phase, on_eval,
                          replicas=fleet[result.deployments[0]], wrap=lambda e: as_joint(e, fleet))
    result.wall_s = time.monotonic() - started_s
    return result


def plan_fleet(scenario: Scenario, file: str, rate: float, targets: list[SloTarget], space: PlanSpace | None = None,
               replications: int = 3, space_file: str = "space", max_rate: bool = True,
               on_eval: Callable[[Evaluation], None] | None = None,
               on_phase: Callable[[str, int, int], None] | None = None,
               deployment: str | None = None) -> PlanResult:
    """`plan`'s entry: one deployment sized alone (a one-deployment scenario, or the one `deployment` or the
    space names) or several jointly (the space's `deployments`, else every static deployment of the scenario)."""
    space = space or PlanSpace()
    if not rate > 0:
        raise InputError("--target-rate", "", f"must be a rate > 0 per second, got {rate:g}")
    if isinstance(scenario.traffic.arrival, ClosedArrivals):
        raise InputError(file, "traffic.arrival.process", CLOSED_NO_RATE)
    base = scenario_document(scenario)
    if deployment is not None:
        if space.deployments or space.deployment not in (None, deployment):
            named = space.deployment or ", ".join(space.deployments)
            raise InputError("--deployment", "", f"{space_file} already names the deployment(s) to size ({named}); "
                                                 "give one or the other")
        deployment_index(base, deployment, "--deployment", "")
        space = space.model_copy(update={"deployment": deployment})
    deps = sized_deployments(base, space, space_file)
    if len(deps) == 1:
        one = space.model_copy(update={"deployment": base["deployments"][deps[0]]["name"], "deployments": []})
        return plan(scenario, file, rate, targets, one, replications, space_file, max_rate, on_eval, on_phase)
    return plan_joint(scenario, file, rate, targets, space, deps, replications, space_file, max_rate, on_eval,
                      on_phase)
