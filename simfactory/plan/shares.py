"""The load each deployment of a routed fleet is offered, from the routing alone (no simulation): per arriving
request, the expected number of attempts a deployment serves and their mean lengths. Joint planning turns it into
each deployment's own analytic bounds (a tier offered lambda_i requests/s is sized like a fleet of its own).

- a class aimed at a deployment: one attempt there;
- weighted: the weights' shares (Bernoulli thinning of the arrivals);
- cheapest_capable and cascade: over the class's difficulty distribution, a request starts at its first tier
  (the smallest covering its difficulty, or the smallest) and moves on to the next tier with the probability the
  validator rejects the answer (fail_p within the tier's capability, fail_p_incapable beyond it), as the
  simulator's router does (simfactory/sim/router.py: first_tier, rejection_p). Tier j's attempts are
  E_d[P(reach j | d)]; the expectation is a midpoint rule on the difficulty's quantile function.

What the routing alone does not decide is left out and said (`partial`): policy nearest (the split follows
regions and queues), agent tasks (their calls per task follow the graph), replayed traces, and load moved by
a fallback when a deployment is overloaded. The offered load is then a lower bound, and so are the bounds from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simfactory.config.distributions import Distribution
from simfactory.resolve.resolved import ResolvedRoute, ResolvedScenario

DIFFICULTY_QUANTILES = 4000  # midpoints of the difficulty's quantile function: tier shares to ~1e-4


@dataclass
class DeploymentLoad:
    """One deployment's offered attempts per arriving request, with their mean input and output tokens."""

    attempts: float = 0.0
    input_tokens_sum: float = 0.0  # attempts x mean input tokens (shared prefixes included), summed over classes
    output_tokens_sum: float = 0.0

    @property
    def input_tokens(self) -> float:
        return self.input_tokens_sum / self.attempts if self.attempts else 0.0

    @property
    def output_tokens(self) -> float:
        return self.output_tokens_sum / self.attempts if self.attempts else 0.0


@dataclass
class OfferedLoad:
    loads: dict[int, DeploymentLoad]  # deployment index -> its load per arriving request
    partial: list[str] = field(default_factory=list)  # what the routing alone could not attribute, and why


def _difficulties(difficulty: Distribution | None) -> np.ndarray:
    u = (np.arange(DIFFICULTY_QUANTILES) + 0.5) / DIFFICULTY_QUANTILES
    if difficulty is None:
        return np.zeros(len(u))
    return np.clip(np.asarray(difficulty.ppf(u), dtype=float), 0.0, 1.0)


def tier_attempts(route: ResolvedRoute, difficulty: Distribution | None) -> dict[int, float]:
    """Expected attempts per request at each tier's deployment: start at the first tier, escalate on rejection."""
    d = _difficulties(difficulty)
    caps = np.array([t.capability for _, t in route.tiers])
    if route.config.policy == "cheapest_capable":
        capable = d[:, None] <= caps[None, :]
        first = np.where(capable.any(axis=1), capable.argmax(axis=1), len(caps) - 1)
    else:  # cascade
        first = np.zeros(len(d), dtype=int)
    reach = np.zeros(len(d))  # P(an attempt at tier j | difficulty)
    out: dict[int, float] = {}
    for j, (dep, tier) in enumerate(route.tiers):
        reach = reach + (first == j)
        out[dep] = out.get(dep, 0.0) + float(reach.mean())
        reach = reach * np.where(d <= tier.capability, tier.fail_p, tier.fail_p_incapable)
    return out


def route_attempts(route: ResolvedRoute, difficulty: Distribution | None) -> dict[int, float] | None:
    """Expected attempts per request at each deployment of a route; None where the routing alone does not decide
    the split (policy nearest)."""
    if route.tiers:
        return tier_attempts(route, difficulty)
    if route.candidates:
        return None
    total = sum(w for _, w in route.weights)
    out: dict[int, float] = {}
    for dep, w in route.weights:
        out[dep] = out.get(dep, 0.0) + w / total
    return out


def offered_load(rs: ResolvedScenario) -> OfferedLoad:
    """Per deployment: attempts per request arriving by traffic.arrival, and their mean lengths."""
    result = OfferedLoad({d.index: DeploymentLoad() for d in rs.deployments})
    classes = [c for c in rs.classes if c.follows_arrival_process]
    total_weight = sum(c.config.weight for c in classes) or 1.0
    for c in classes:
        share = c.config.weight / total_weight
        if c.agent is not None or c.input_tokens is None or c.output_tokens is None or c.target is None:
            why = "runs agent tasks, whose calls follow the task's graph" if c.agent is not None else "replays a trace"
            result.partial.append(f"class {c.config.name} {why}")
            continue
        attempts: dict[int, float] | None = {c.target.index: 1.0}
        if c.target.kind == "route":
            route = rs.routes[c.target.index]
            attempts = route_attempts(route, c.config.difficulty)
            if route.fallback is not None:
                result.partial.append(f"route {route.config.name}'s fallback moves load off an overloaded "
                                      "deployment")
            if attempts is None:
                result.partial.append(f"class {c.config.name} takes route {route.config.name}, whose split "
                                      "(policy nearest) follows regions and queues")
                continue
        n_in = c.input_tokens.mean() + c.config.shared_prefix_tokens
        n_out = c.output_tokens.mean()
        for dep, a in attempts.items():
            load = result.loads[dep]
            load.attempts += share * a
            load.input_tokens_sum += share * a * n_in
            load.output_tokens_sum += share * a * n_out
    return result
