"""The quality table (quality/scores.yaml), read only when some agent LLM step or route tier has a `quality:` block:
every deployment such a step can reach (its role's deployment, or a route's tiers, weights, candidates and
fallbacks), and a tier's own deployment, must have a (model, dtype) entry scoring the block's benchmark, and so must
its reference; anything missing is an InputError (exit 2)."""

from __future__ import annotations

from simfactory.config.agent import LlmStep
from simfactory.config.loader import load_model_file
from simfactory.config.quality import QualityTable, StepQuality
from simfactory.errors import InputError
from simfactory.paths import QUALITY_DIR
from simfactory.quality import mapped_fail_p
from simfactory.resolve.files import Lookup, find_file, search_dirs
from simfactory.resolve.resolved import ResolvedClass, ResolvedDeployment, ResolvedQuality, ResolvedRoute, Target
from simfactory.resolve.workloads import agent_steps


def reachable(target: Target, routes: list[ResolvedRoute], seen: frozenset[int] = frozenset()) -> set[int]:
    """Deployment indexes a call to `target` may be answered by (route fallbacks followed, cycles cut)."""
    if target.kind == "deployment":
        return {target.index}
    if target.index in seen or target.index >= len(routes):  # a route that failed to resolve is already an error
        return set()
    r = routes[target.index]
    out = {d for d, _ in r.tiers} | {d for d, _ in r.weights} | set(r.candidates)
    if r.fallback is not None:
        out |= reachable(r.fallback, routes, seen | {target.index})
    return out


def _reference_score(q: StepQuality, scores: dict[tuple[str, str], dict[str, float]], benchmarks: set[str],
                     path: str, known: list[str], at: str, where: str, errors: list[InputError]) -> float | None:
    """The reference's score on the block's benchmark; None (with the error said) when the table cannot give it."""
    if q.benchmark not in benchmarks:
        errors.append(InputError(at, f"{where}.quality.benchmark", f"unknown benchmark {q.benchmark!r} in {path} "
                                 f"(benchmarks: {', '.join(sorted(benchmarks))})"))
        return None
    ref = scores.get((q.reference.model, q.reference.dtype))
    if ref is None:
        errors.append(InputError(at, f"{where}.quality.reference", f"no quality entry for model "
                                 f"{q.reference.model!r} at dtype {q.reference.dtype} in {path} (entries: "
                                 f"{', '.join(known)})"))
        return None
    if q.benchmark not in ref:
        errors.append(InputError(at, f"{where}.quality.reference", f"{q.reference.model} {q.reference.dtype} has "
                                 f"no {q.benchmark} score in {path}"))
        return None
    if q.mapping == "error_ratio" and ref[q.benchmark] >= 100.0:
        errors.append(InputError(at, f"{where}.quality.reference", f"scores 100 on {q.benchmark}: error_ratio "
                                 "divides by the reference's error rate; choose another reference or mapping "
                                 "logistic"))
    return ref[q.benchmark]


def _deployment_score(dep: ResolvedDeployment, d: int, q: StepQuality, scores: dict[tuple[str, str], dict[str, float]],
                      path: str, known: list[str], fname: str, needed_by: str, errors: list[InputError]) -> float | None:
    """The deployment's score on the block's benchmark; None (with the error said) when the table has none."""
    key = (dep.config.model, dep.config.dtype)
    if key not in scores:
        errors.append(InputError(fname, f"deployments[{d}]", f"no quality entry for model {dep.config.model!r} at "
                                 f"dtype {dep.config.dtype} in {path}, needed by {needed_by} (entries: "
                                 f"{', '.join(known)})"))
        return None
    if q.benchmark not in scores[key]:
        errors.append(InputError(fname, f"deployments[{d}]", f"{dep.config.model} {dep.config.dtype} has no "
                                 f"{q.benchmark} score in {path}, needed by {needed_by}"))
        return None
    return scores[key][q.benchmark]


def resolve_quality(lk: Lookup, deployments: list[ResolvedDeployment], classes: list[ResolvedClass],
                    routes: list[ResolvedRoute], errors: list[InputError]) -> ResolvedQuality | None:
    """Check every quality block against the table; map route tiers' fail_p to their deployments in place (a tier's
    deployment is fixed, so its odds are too). The scores travel into the simulation only for LLM steps, whose
    answering deployment is known only when the call ends."""
    uses = [(c, where, st) for c in classes if c.agent is not None for where, st in agent_steps(c.agent)
            if isinstance(st, LlmStep) and st.quality is not None]
    tiers = [(r, j) for r in routes for j, (_, t) in enumerate(r.tiers) if t.quality is not None]
    if not uses and not tiers:
        return None  # nothing read: scenarios without quality keep their provenance (input hashes) as they were
    dirs = search_dirs(lk.path, "quality", QUALITY_DIR)  # a user's quality/ beside the scenario wins
    path = find_file(dirs, "scores")
    if path is None:
        errors.append(InputError(lk.fname, "quality", "LLM steps or route tiers have quality: blocks but no "
                                 "scores.yaml is found in " + ", ".join(map(str, dirs))))
        return None
    table = load_model_file(QualityTable, path)
    scores = table.scores()
    known = sorted(f"{m} {d}" for m, d in scores)
    benchmarks = {b.name for b in table.benchmarks}
    for c, where, st in uses:
        q = st.quality
        assert q is not None and c.agent is not None
        wfile = find_file(lk.workload_dirs, c.config.workload) if c.config.workload else None
        at = str(wfile) if wfile is not None else f"{lk.fname}: traffic.classes[{c.index}]"
        if _reference_score(q, scores, benchmarks, str(path), known, at, where, errors) is None:
            continue
        target = c.roles.get(st.model)
        for d in sorted(reachable(target, routes)) if target is not None else []:
            if d < len(deployments):
                _deployment_score(deployments[d], d, q, scores, str(path), known, lk.fname,
                                  f"{where} of workload {c.agent.name}", errors)
    for r, j in tiers:
        d, tier = r.tiers[j]
        q = tier.quality
        assert q is not None
        where = f"routing.routes[{r.index}].tiers[{j}]"
        ref = _reference_score(q, scores, benchmarks, str(path), known, lk.fname, where, errors)
        score = _deployment_score(deployments[d], d, q, scores, str(path), known, lk.fname, where, errors) \
            if d < len(deployments) else None
        if ref is None or score is None or (q.mapping == "error_ratio" and ref >= 100.0):
            continue
        r.tiers[j] = (d, tier.model_copy(update={
            "fail_p": mapped_fail_p(tier.fail_p, score, ref, q.mapping, q.logit_per_point)}))
    if not uses:
        return None  # only tiers: their odds are mapped above, the simulation needs no scores
    per_dep = [scores.get((d.config.model, d.config.dtype), {}) for d in deployments]
    return ResolvedQuality(str(path), scores, per_dep)
