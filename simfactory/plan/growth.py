"""`plan-growth`: a month-by-month capacity and commitment plan for a growing, uncertain demand.

The simulator is run once, not per month: the base scenario's deployment is sized by `plan` at one rate and its
SLOs (or the file states the result), which gives the rate one replica sustains at the SLOs. Each demand future's
rate in each month then needs ceil(rate / that) replicas, times the accelerators a replica holds (linear in the
rate: a larger fleet pools its variability better, so this errs on the side of capacity). The price book gives each
way to hold capacity its cost (owned hardware through the own-vs-rent model's purchase, running costs and resale
curve, cost/decision.py; cloud rows for on-demand, reserved and spot) and its lead time and availability
(`procurement:`); simfactory/cost/commitment.py finds the commitments of least expected cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simfactory.config.growth import GrowthPlanFile, LognormalGrowth
from simfactory.config.limits import MAX_ACCELERATORS
from simfactory.config.loader import load_model_file
from simfactory.config.scenario import Pool, Scenario
from simfactory.cost.commitment import CommitmentPlan, CommitmentProblem, Contract, Rental, solve
from simfactory.cost.decision import OwnVsRent, discount_factor, own_vs_rent, rent_usd_per_accel_hour
from simfactory.cost.fleet import Assumption, cloud_inputs, discount_rate, on_prem_inputs
from simfactory.cost.pool_cost import HOURS_PER_MONTH
from simfactory.errors import InputError
from simfactory.plan.search import PlanSpace, plan
from simfactory.plan.slo import parse_slo
from simfactory.resolve import ResolvedScenario, load_scenario, resolve

Phase = Callable[[str], None]
RESERVED_TERMS_MONTHS = {"reserved_1y": 12, "reserved_3y": 36}


def load_growth(path: str | Path) -> GrowthPlanFile:
    """Read and validate a growth plan file (InputError(s) name the file and field)."""
    return load_model_file(GrowthPlanFile, Path(path))


@dataclass(frozen=True)
class Base:
    """The base scenario and the deployment that serves the demand."""

    file: str  # the growth file (errors name it)
    scenario_file: Path
    scenario: Scenario
    rs: ResolvedScenario
    dep: int
    pool: Pool

    @property
    def accelerators_per_replica(self) -> int:
        d = self.rs.deployments[self.dep].config
        return d.tp * d.pp


def base_scenario(spec: GrowthPlanFile, file: str) -> Base:
    """The base scenario (relative to the growth file) resolved, and its serving deployment: a plain one (an
    autoscaled or disaggregated deployment has no single replica shape to count)."""
    path = Path(file).parent / spec.scenario
    if not path.is_file():
        raise InputError(file, "scenario", f"no scenario file {path}")
    sc = load_scenario(path)
    rs = resolve(sc, path)
    names = [d.config.name for d in rs.deployments]
    if spec.deployment is not None and spec.deployment not in names:
        raise InputError(file, "deployment", f"unknown deployment {spec.deployment!r} (in {path.name}: "
                                             f"{', '.join(names)})")
    dep = 0 if spec.deployment is None else names.index(spec.deployment)
    d = rs.deployments[dep].config
    if d.autoscaling is not None or d.disaggregated is not None:
        raise InputError(file, "deployment", f"{d.name!r} is {'autoscaled' if d.autoscaling else 'disaggregated'}: "
                         "a growth plan counts replicas of one shape; plan a static, aggregated deployment")
    pool = next(p for p in sc.pools if p.name == d.pool)
    return Base(file, path, sc, rs, dep, pool)


def capacity_per_replica(spec: GrowthPlanFile, base: Base, phase: Phase) -> tuple[float, str, list[dict[str, Any]]]:
    """(requests per second one replica sustains at the SLOs, where that figure comes from, and the forecast
    evidence of the plan that found it: none for a stated figure)."""
    cap = spec.capacity
    if cap.requests_per_s_per_replica is not None:
        return cap.requests_per_s_per_replica, f"stated: {cap.source}", []
    assert cap.plan is not None
    try:
        targets = parse_slo(cap.plan.slo)
    except InputError as e:
        raise InputError(base.file, "capacity.plan.slo", f"{e.field}: {e.reason}") from None
    name = base.rs.deployments[base.dep].config.name
    phase(f"sizing {name} at {cap.plan.rate_per_s:g}/s for {cap.plan.slo} (simfactory plan, "
          f"{cap.plan.replications} runs per count)")
    result = plan(base.scenario, str(base.scenario_file), cap.plan.rate_per_s, targets, PlanSpace(deployment=name),
                  cap.plan.replications, max_rate=False,
                  on_eval=lambda e: phase(f"  {e.replicas} replicas at {e.rate_per_s:g}/s: "
                                          f"{'meets' if e.met else 'misses'} the SLOs"))
    if result.chosen is None or result.chosen.min_replicas is None:
        raise InputError(base.file, "capacity.plan", f"no replica count up to {result.max_replicas} meets "
                         f"{cap.plan.slo} at {cap.plan.rate_per_s:g}/s: loosen the SLOs or lower rate_per_s")
    n = result.chosen.min_replicas
    return cap.plan.rate_per_s / n, (f"simfactory plan {base.scenario_file.name} at {cap.plan.rate_per_s:g}/s, "
                                     f"{cap.plan.slo}: {n} replicas ({cap.plan.replications} runs per count)"), \
        result.forecast


def optimistic_capacity_warnings(forecast: list[dict[str, Any]]) -> list[str]:
    """A capacity per replica planned on forecasts of a kind that has run optimistic commits to too little: say by
    about how much, and how to keep a margin."""
    return [f"the capacity per replica rests on forecasts of {a['deployment']} ({a['basis']}) that have run "
            f"{a['optimism']:+.1%} against published measurements: the plan may commit to about that much too little "
            "capacity; for a margin, state capacity.requests_per_s_per_replica that much lower"
            for a in forecast if a.get("leaning") == "optimistic"]


def demand_rates(spec: GrowthPlanFile) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(rates (S, H) per second, weights (S,), names): month 1 runs at the start rate; each later month grows it
    by its future's growth. Lognormal: ln(1 + g) per future ~ Normal(ln(1 + median), sigma), plus independent
    monthly noise; scenarios: each named future grows at its steady rate."""
    h, g = spec.horizon_months, spec.demand.growth
    r0 = spec.demand.start_rate_per_s
    if isinstance(g, LognormalGrowth):
        samples = g.samples if g.sigma_monthly > 0 or g.noise_monthly > 0 else 1  # one certain future
        rng = np.random.default_rng([spec.seed, 31])  # the demand futures' own stream
        trend = rng.normal(math.log1p(g.median_monthly), g.sigma_monthly, size=(samples, 1))
        noise = rng.normal(0.0, g.noise_monthly, size=(samples, h)) if g.noise_monthly > 0 else 0.0
        steps = np.broadcast_to(trend, (samples, h)) + noise
        steps[:, 0] = 0.0
        rates = r0 * np.exp(np.cumsum(steps, axis=1))
        return rates, np.full(samples, 1.0 / samples), [f"future {i + 1}" for i in range(samples)]
    months = np.arange(h)
    rates = np.array([r0 * (1.0 + s.monthly) ** months for s in g.scenarios])
    weights = np.array([s.probability for s in g.scenarios])
    return rates, weights / weights.sum(), [s.name for s in g.scenarios]


def accelerators_needed(rates: np.ndarray, rate_per_replica: float, accelerators_per_replica: int) -> np.ndarray:
    """Whole replicas for each month's rate, in accelerators."""
    return np.ceil(rates / rate_per_replica - 1e-9).clip(min=0.0) * accelerators_per_replica


@dataclass
class Channels:
    """What each way of holding capacity costs, per accelerator, with the figures' sources."""

    on_demand_usd_per_month: float
    spot_usd_per_month: float | None = None
    reserved_usd_per_month: dict[str, float] = field(default_factory=dict)  # reserved_1y / reserved_3y
    own: OwnVsRent | None = None
    lead_months: dict[str, int] = field(default_factory=dict)  # contract -> lead time
    max_per_month: dict[str, int | None] = field(default_factory=dict)
    assumptions: list[Assumption] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _licence_usd_per_accel_year(base: Base) -> float:
    """The licence every accelerator serving the deployment pays: the pool's own figure, else its engine's."""
    own = base.pool.software_usd_per_accel_year
    own = base.pool.on_prem.software_usd_per_accel_year if own is None else own
    if own is not None:
        return own
    preset = base.rs.deployments[base.dep].engine_preset
    return preset.licence.usd_per_accel_year if preset is not None and preset.licence is not None else 0.0


def _cloud_month_usd(base: Base, provider: str, region: str, pricing: str, licence: float,
                     out: list[Assumption]) -> float | None:
    """USD per accelerator-month renting at the book's row for this provider, SKU and contract (with the engine's
    licence and a spot pool's rework), or None when the book has no such row."""
    book = base.rs.price_book
    if book.cloud_price(provider, base.pool.sku, pricing, region) is None:
        return None
    pool = base.pool.model_copy(update={"location": "cloud", "provider": provider, "region": region,
                                        "pricing": pricing, "count": 1, "cloud_usd_per_accel_hour": None})
    profile = base.rs.pool_profiles[base.pool.name]
    c, notes = cloud_inputs(pool, profile, book, 0.0, f"{base.file}: cloud", False, {"licence": licence})
    out += [replace(a, name=a.name.replace(f"{pool.name}: ", f"{pricing}: ", 1)) for a in notes]
    return rent_usd_per_accel_hour(c) * HOURS_PER_MONTH


def _procure(base: Base, ch: Channels, contract: str, channel: str, provider: str | None) -> None:
    """Lead time and availability of a contract from the book's procurement rows (none: 0 months, no limit)."""
    row = base.rs.price_book.procurement_for(base.pool.sku, channel, provider)
    if row is None:
        ch.lead_months[contract], ch.max_per_month[contract] = 0, None
        ch.warnings.append(f"the price book has no procurement row for {base.pool.sku} {channel}"
                           f"{' (' + provider + ')' if provider else ''}: {contract} taken as usable from month 1, "
                           "with no availability limit")
        return
    ch.lead_months[contract], ch.max_per_month[contract] = row.lead_time_months, row.max_accelerators_per_month
    limit = "no stated limit" if row.max_accelerators_per_month is None else \
        f"at most {row.max_accelerators_per_month} accelerators a month"
    ch.assumptions.append(Assumption(f"{contract}: lead time, availability", f"{row.lead_time_months} months, {limit}",
                                     "months", row.source, str(row.as_of)))


def channels(spec: GrowthPlanFile, base: Base, rate_annual: float) -> Channels:
    """Each allowed way of holding capacity priced from the base scenario's price book; an allowed contract the
    book has no row for is an error naming the option."""
    provider = spec.cloud.provider or base.pool.provider
    if provider is None:
        raise InputError(base.file, "cloud.provider", "name the cloud provider to rent from (the base pool names "
                         f"none); the price book's: {', '.join(base.rs.price_book.providers)}")
    region = spec.cloud.region or base.pool.region
    licence = _licence_usd_per_accel_year(base)
    notes: list[Assumption] = []
    od = _cloud_month_usd(base, provider, region, "on_demand", licence, notes)
    if od is None:
        raise InputError(base.file, "cloud.provider", f"the price book has no {provider} on_demand row for "
                         f"{base.pool.sku}: on-demand covers what is not committed; choose another provider")
    ch = Channels(od, assumptions=notes)
    if spec.options.spot_max_share > 0:
        ch.spot_usd_per_month = _cloud_month_usd(base, provider, region, "spot", licence, notes)
        if ch.spot_usd_per_month is None:
            raise InputError(base.file, "options.spot_max_share", f"the price book has no {provider} spot row for "
                             f"{base.pool.sku}: set 0, or choose another provider")
    for term in RESERVED_TERMS_MONTHS:
        if getattr(spec.options, term):
            usd = _cloud_month_usd(base, provider, region, term, licence, notes)
            if usd is None:
                raise InputError(base.file, f"options.{term}", f"the price book has no {provider} {term} row for "
                                 f"{base.pool.sku}: set {term}: false, or choose another provider")
            ch.reserved_usd_per_month[term] = usd
            _procure(base, ch, term, "reserved", provider)
    if spec.options.own:
        ch.own = _own_model(spec, base, rate_annual, licence, ch)
        _procure(base, ch, "own", "own", None)
    return ch


def _own_model(spec: GrowthPlanFile, base: Base, rate_annual: float, licence: float, ch: Channels) -> OwnVsRent:
    """One owned accelerator in the decision model's terms: purchase (with its share of the node), fixed running
    cost, energy at idle and per unit of load, resale value by age."""
    pool = base.pool.model_copy(update={"location": "on_prem", "provider": None, "pricing": "on_demand", "count": 1})
    profile = base.rs.pool_profiles[base.pool.name]
    x, notes = on_prem_inputs(pool, profile, base.rs.price_book, 1.0, f"{base.file}: options.own", licence)
    ch.assumptions += [replace(a, name=a.name.replace(f"{pool.name}: ", "own: ", 1)) for a in notes]
    return own_vs_rent(x, None, spec.horizon_months / 12.0, rate_annual)


def contracts(ch: Channels, h: int) -> tuple[tuple[Contract, ...], int]:
    """The commitment contracts with their cash flows per start month, and M, the last month any of them pays."""
    terms = [RESERVED_TERMS_MONTHS[t] for t in ch.reserved_usd_per_month]
    m = h + max(terms, default=0)
    out = []
    if ch.own is not None:
        o = ch.own
        cash = np.zeros((h, m + 1))
        running = o.fixed_usd_per_month + o.energy_usd_per_month_at_load_0
        for t in range(h):  # in service from month t + 1: invoiced on delivery, paid with that month's bills
            cash[t, t + 1] += o.capex_usd
            cash[t, t + 1:h + 1] += running
        value = np.array([o.capex_usd * o.resale_fraction(float(age)) for age in range(h + 1)])  # by age
        value[0] = o.capex_usd  # what it cost: a curve below 1 at age 0 is an immediate loss, in its first month
        accrual = np.zeros((h, m + 1))
        for t in range(h):  # as incurred: running costs and the month's loss of market value
            accrual[t, t + 1:h + 1] = running + value[:h - t] - value[1:h - t + 1]
        resale = value[h - np.arange(h)]  # sold at the horizon, at age h - t
        out.append(Contract("own", cash, h, 1 + ch.lead_months["own"], ch.max_per_month["own"],
                            o.energy_usd_per_month_per_load, resale, accrual))
    for term, usd in ch.reserved_usd_per_month.items():
        months = RESERVED_TERMS_MONTHS[term]
        cash = np.zeros((h, m + 1))
        for t in range(h):  # every month of the term is paid, also after the horizon
            cash[t, t + 1:t + 1 + months] = usd
        out.append(Contract(term, cash, months, 1 + ch.lead_months[term], ch.max_per_month[term]))
    return tuple(out), m


@dataclass
class GrowthPlan:
    spec: GrowthPlanFile
    file: str
    sku: str
    provider: str
    region: str
    discount_rate_annual: float
    rate_per_replica_per_s: float
    accelerators_per_replica: int
    capacity_source: str
    rates: np.ndarray  # (S, H) requests per second
    names: list[str]
    problem: CommitmentProblem
    plan: CommitmentPlan
    channels: Channels
    assumptions: list[Assumption]
    warnings: list[str]
    capacity_forecast: list[dict[str, Any]] = field(default_factory=list)  # the sizing plan's forecast evidence


def plan_growth(spec: GrowthPlanFile, file: str, phase: Phase = lambda text: None) -> GrowthPlan:
    """The whole plan: base scenario, capacity per replica, demand futures, prices, then the optimizer."""
    base = base_scenario(spec, file)
    rate_annual, rate_note = discount_rate(base.rs)
    ch = channels(spec, base, rate_annual)  # before any simulation: a bad option is refused at once
    per_replica, source, forecast = capacity_per_replica(spec, base, phase)
    rates, weights, names = demand_rates(spec)
    need = accelerators_needed(rates, per_replica, base.accelerators_per_replica)
    if need.max(initial=0.0) > MAX_ACCELERATORS:
        raise InputError(file, "demand", f"the demand reaches {need.max():,.0f} accelerators, more than "
                         f"{MAX_ACCELERATORS:,}: check start_rate_per_s and growth")
    cons, m = contracts(ch, spec.horizon_months)
    problem = CommitmentProblem(need, weights, discount_factor(np.arange(m + 1), rate_annual), cons,
                                Rental(ch.on_demand_usd_per_month, ch.spot_usd_per_month, spec.options.spot_max_share),
                                spec.options.commit_unit_accelerators)
    phase(f"optimizing commitments over {len(names)} futures x {spec.horizon_months} months")
    result = solve(problem, spec.solver_time_limit_s)
    capacity_note = Assumption("capacity per replica", per_replica, "requests/s at the SLOs", source)
    provider = spec.cloud.provider or base.pool.provider or ""
    return GrowthPlan(spec, file, base.pool.sku, provider, spec.cloud.region or base.pool.region, rate_annual,
                      per_replica, base.accelerators_per_replica, source, rates, names, problem, result, ch,
                      [capacity_note, rate_note, *ch.assumptions],
                      list(base.rs.warnings) + ch.warnings + optimistic_capacity_warnings(forecast), forecast)
