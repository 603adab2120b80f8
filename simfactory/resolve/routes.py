"""Routes: tiers, weights and candidates that name deployments, and fallbacks that name a deployment or another
route. Unknown names are refused, and so are fallbacks that lead back where they started."""

from __future__ import annotations

from simfactory.config.scenario import Scenario
from simfactory.errors import InputError
from simfactory.resolve.resolved import ResolvedRoute, Target


def resolve_routes(
    scenario: Scenario, by_name: dict[str, int], declared: set[str], fname: str, errors: list[InputError]
) -> list[ResolvedRoute]:
    """The routes whose every deployment resolved (`by_name`: name -> resolved index; `declared`: every name)."""
    route_names = [r.name for r in scenario.routing.routes]
    routes: list[ResolvedRoute] = []
    for i, r in enumerate(scenario.routing.routes):
        at = f"routing.routes[{i}]"
        if r.name in declared:
            errors.append(InputError(fname, f"{at}.name", f"{r.name!r} is also a deployment name; use distinct names"))
        if r.name in route_names[:i]:
            errors.append(InputError(fname, f"{at}.name", f"duplicate route name {r.name!r}"))
        ok = True
        for j, tier in enumerate(r.tiers):
            if tier.deployment not in declared:
                errors.append(InputError(fname, f"{at}.tiers[{j}].deployment",
                                         f"unknown tier deployment {tier.deployment!r} (deployments: {sorted(declared)})"))
                ok = False
        for dep in r.weights:
            if dep not in declared:
                errors.append(InputError(fname, f"{at}.weights.{dep}", f"unknown deployment {dep!r} (deployments: {sorted(declared)})"))
                ok = False
        for j, dep in enumerate(r.candidates):
            if dep not in declared:
                errors.append(InputError(fname, f"{at}.candidates[{j}]", f"unknown deployment {dep!r} (deployments: {sorted(declared)})"))
                ok = False
        fallback: Target | None = None
        if r.fallback is not None:
            name = r.fallback.deployment
            if name in route_names:
                fallback = Target("route", route_names.index(name))
            elif name in declared:
                fallback = Target("deployment", by_name[name]) if name in by_name else None
            else:
                errors.append(InputError(fname, f"{at}.fallback.deployment",
                                         f"unknown deployment or route {name!r} (known: {sorted(declared | set(route_names))})"))
                ok = False
        names = [t.deployment for t in r.tiers] + list(r.weights) + list(r.candidates)
        if not ok or any(d not in by_name for d in names):
            continue
        routes.append(ResolvedRoute(
            i, r, [(by_name[t.deployment], t) for t in r.tiers], [(by_name[d], w) for d, w in r.weights.items()],
            fallback, r.fallback.max_waiting if r.fallback is not None and r.fallback.max_waiting else 0,
            [by_name[d] for d in r.candidates],
        ))
    check_fallback_cycles(scenario, fname, errors)
    return routes


def check_fallback_cycles(scenario: Scenario, fname: str, errors: list[InputError]) -> None:
    """Fallbacks that lead back to where they started would bounce a request forever."""
    route_names = [r.name for r in scenario.routing.routes]
    for i, r in enumerate(scenario.routing.routes):
        seen = [r.name]
        nxt = r.fallback.deployment if r.fallback is not None else None
        while nxt in route_names:
            if nxt in seen:
                errors.append(InputError(fname, f"routing.routes[{i}].fallback",
                                         "fallback cycle: " + " -> ".join([*seen, nxt])))
                break
            seen.append(nxt)
            f = scenario.routing.routes[route_names.index(nxt)].fallback
            nxt = f.deployment if f is not None else None
