"""Cost of every pool in a scenario: the pool's prices looked up (scenario override, then price book, then
the profile), turned into per-hour costs at the measured load, with every assumption recorded. Licences
follow the software: each engine preset's (engines.yaml `licence`), on the accelerators running it, cloud
and owned alike."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from simfactory.config.prices import CloudPrice, PriceBook, SourcedNumber
from simfactory.config.profile import EnginePreset, HardwareProfile
from simfactory.config.scenario import Deployment, Pool
from simfactory.cost.pool_cost import (
    CloudInputs,
    OnPremInputs,
    PoolCostPerHour,
    cloud_cost_per_hour,
    on_prem_cost_per_hour,
)
from simfactory.errors import InputError
from simfactory.resolve import ResolvedScenario


@dataclass(frozen=True)
class Assumption:
    """One number the cost rests on, with where it came from (a finance reader audits these)."""

    name: str
    value: float | str
    unit: str
    source: str
    as_of: str = ""


@dataclass(frozen=True)
class PoolCost:
    pool: str
    sku: str
    location: str
    accelerators: int
    utilization: float
    per_hour: PoolCostPerHour
    cloud: CloudInputs | None
    on_prem: OnPremInputs | None
    tdp_w: float
    idle_w: float
    assumptions: list[Assumption] = field(default_factory=list)
    serving_fraction: float = 1.0  # share of the pool's accelerators that serve inference (not dedicated training)
    serving_utilization: float | None = None  # busy fraction of those serving accelerators (None: `utilization`)
    load: float | None = None  # demand / capacity (metrics/finance.py pool_loads); None: no demand curve
    serving_load: float | None = None  # load of the serving accelerators (None: `power_load`)
    licence_usd_per_accel_year: float = 0.0  # the engines' licences over the pool, before a price row includes any

    @property
    def usd_per_accel_hour(self) -> float:
        return self.per_hour.total_usd / self.accelerators

    @property
    def serving_busy(self) -> float:
        """Busy fraction of the serving accelerators (the whole pool's when no training holds any of it)."""
        return self.utilization if self.serving_utilization is None else self.serving_utilization

    @property
    def power_load(self) -> float:
        """The load the power model bills: `load`, else (no demand curve) the busy fraction standing in."""
        return self.utilization if self.load is None else self.load

    @property
    def serving_power_load(self) -> float:
        """The load of the serving accelerators (the whole pool's when no training holds any of it)."""
        return self.power_load if self.serving_load is None else self.serving_load

    @property
    def serving_usd_per_hour(self) -> float:
        """The part of the pool's cost that inference's unit costs carry."""
        return self.per_hour.total_usd * self.serving_fraction

    def at_load(self, load: float) -> "PoolCost":
        """The same pool priced at another load (only on-prem energy depends on it)."""
        if self.on_prem is None:
            return replace(self, load=load)
        x = replace(self.on_prem, utilization=min(1.0, max(0.0, load)))
        return replace(self, load=load, on_prem=x, per_hour=on_prem_cost_per_hour(x))


def _num(name: str, n: SourcedNumber, override: float | None) -> tuple[float, Assumption]:
    if override is not None:
        return override, Assumption(name, override, n.unit, "scenario override")
    return n.value, Assumption(name, n.value, n.unit, n.source, str(n.as_of))


def _price_label(pool: Pool, from_book_row: bool, book: PriceBook, price: float) -> str:
    """Who prices the pool, as the assumptions table names it: a pool that names no provider (or one the book has
    no row for) gets the profile's default, the book's cheapest on-demand row for the SKU, and says so."""
    if pool.cloud_usd_per_accel_hour is not None:
        return "scenario override"
    if from_book_row:
        return f"{pool.provider} {pool.pricing}"
    row = book.row_priced_at(pool.sku, price)
    who = f"{row.provider} on_demand" if row is not None else "profile on_demand"
    if pool.provider:
        return f"{who}, default: the book has no {pool.provider} {pool.pricing} row for {pool.sku}"
    return f"{who}, default: the pool names no provider"


def cloud_inputs(pool: Pool, profile: HardwareProfile, book: PriceBook, lost_work_s: float, where: str,
                 reclamations_simulated: bool = False,
                 licences: dict[str, float] | None = None) -> tuple[CloudInputs, list[Assumption]]:
    """Price per accelerator-hour: the pool's override, else the price book's entry for its provider,
    region and contract, else the profile's on-demand price. Spot rework is a surcharge at the book's
    reclamation rate, unless the scenario simulates this pool's reclamations (faults.spot_reclamations): then
    the lost work is already in the simulated output, and charging it again would count it twice. `licences`
    (name -> USD per pool accelerator-year, pool_licences) are charged on top, but those the price row says it
    includes."""
    entry = book.cloud_price(pool.provider, pool.sku, pool.pricing, pool.region) if pool.provider else None
    if pool.cloud_usd_per_accel_hour is not None:
        price, src, as_of = pool.cloud_usd_per_accel_hour, "scenario override", ""
    elif entry is not None:
        price, src, as_of = entry.usd_per_accel_hour, entry.source, str(entry.as_of)
    elif profile.price.cloud_usd_per_accel_hour is not None:
        price, src, as_of = profile.price.cloud_usd_per_accel_hour, profile.price.source, str(profile.price.as_of)
    else:
        raise InputError(where, "cloud_usd_per_accel_hour", f"profile {profile.sku!r} has no cloud price; set one")
    label = _price_label(pool, entry is not None, book, price)
    out = [Assumption(f"{pool.name}: cloud price ({label})", price, "USD/accelerator-hour", src, as_of)]
    interruptions = 0.0
    lost_s = 0.0
    if pool.pricing == "spot" and reclamations_simulated:
        out.append(Assumption(f"{pool.name}: spot reclamations", "simulated", "faults.spot_reclamations",
                              "the scenario: lost work is in the measured output, no rework surcharge"))
    elif pool.pricing == "spot":
        if pool.spot_interruptions_per_hour is not None:
            interruptions = pool.spot_interruptions_per_hour
            out.append(Assumption(f"{pool.name}: spot reclamations", interruptions, "per replica-hour", "scenario override"))
        elif entry is not None and entry.interruptions_per_hour is not None:
            interruptions = entry.interruptions_per_hour
            out.append(Assumption(f"{pool.name}: spot reclamations", interruptions, "per replica-hour", entry.source, str(entry.as_of)))
        lost_s = pool.spot_restart_s + lost_work_s
        out.append(Assumption(f"{pool.name}: time lost per reclamation", lost_s, "s",
                              f"spot_restart_s {pool.spot_restart_s:g} s + in-flight work redone {lost_work_s:.1f} s "
                              "(mean request time in service, simulated)"))
    software = rental_licences(licences or {}, entry if pool.cloud_usd_per_accel_hour is None else None, pool, out)
    return CloudInputs(pool.count, price, pool.pricing, interruptions, lost_s, software), out


def rental_licences(licences: dict[str, float], entry: CloudPrice | None, pool: Pool, out: list[Assumption]) -> float:
    """The licences a rented pool pays on top of its rate: all of them, but those its price row includes."""
    included = set(entry.includes_licences) if entry is not None else set()
    for name in sorted(included & set(licences)):
        out.append(Assumption(f"{pool.name}: {name} in the cloud price", 0.0, "USD/accelerator-year",
                              f"the price row includes it ({entry.source if entry else ''})"))
    return sum(v for k, v in licences.items() if k not in included)


def deployment_accelerators(d: Deployment) -> int:
    """Accelerators a deployment holds at its peak, as the pool check counts them: replicas (or max_replicas when
    autoscaled) x tp x pp, plus its prefill replicas x their devices (in whichever pool they sit)."""
    peak = d.autoscaling.max_replicas if d.autoscaling is not None else d.replicas
    prefill = d.disaggregated.prefill_replicas * d.prefill_devices()[1] if d.disaggregated is not None else 0
    return peak * d.tp * d.pp + prefill


def engine_presets(rs: ResolvedScenario) -> dict[str, EnginePreset]:
    """The engine presets the scenario's deployments were resolved with (a user's engines.yaml beside it wins
    there), not read again from disk."""
    return {d.config.engine: d.engine_preset for d in rs.deployments if d.engine_preset is not None}


def pool_licences(rs: ResolvedScenario, pool: Pool,
                  presets: dict[str, EnginePreset]) -> tuple[dict[str, float], list[Assumption]]:
    """Software licences of a pool, name -> USD per accelerator-year spread over its configured accelerators: the
    pool's own figure (on every accelerator), else each engine preset's licence on the accelerators running that
    engine (pro rata, so an autoscaled pool pays on what it provisions). Open-source engines: none, recorded."""
    own = pool.software_usd_per_accel_year
    own = pool.on_prem.software_usd_per_accel_year if own is None else own
    if own is not None:
        return {"software licences": own}, [Assumption(f"{pool.name}: software licences", own, "USD/accelerator-year",
                                                       "scenario override (every accelerator of the pool)")]
    configured = next((p.count for p in rs.scenario.pools if p.name == pool.name), pool.count)
    running: dict[str, int] = {}
    for d in rs.deployments:
        if d.config.pool == pool.name:
            running[d.config.engine] = running.get(d.config.engine, 0) + deployment_accelerators(d.config)
    licences: dict[str, float] = {}
    out = []
    for engine, n in running.items():
        lic = presets[engine].licence if engine in presets else None
        if lic is None:
            out.append(Assumption(f"{pool.name}: software licence ({engine})", 0.0, "USD/accelerator-year",
                                  f"engine preset {engine} carries no licence (open source)"))
            continue
        licences[lic.name] = licences.get(lic.name, 0.0) + lic.usd_per_accel_year * n / configured
        out.append(Assumption(f"{pool.name}: software licence ({engine}: {lic.name})", lic.usd_per_accel_year,
                              "USD/accelerator-year", f"engine preset {engine}, on the {n} of {configured} "
                              f"accelerators running it: {lic.source}", str(lic.as_of)))
    return licences, out


def idle_power(pool: Pool, profile: HardwareProfile, book: PriceBook) -> tuple[float, list[Assumption]]:
    """Idle power for the power curve: the profile's, else the price book's, else 0 (power = TDP x utilization)."""
    idle = book.idle_w(pool.sku)
    tdp = Assumption(f"{pool.name}: TDP", profile.spec.tdp_w, "W", profile.spec.source, str(profile.spec.as_of))
    if profile.spec.idle_w is not None:
        return profile.spec.idle_w, [tdp, Assumption(f"{pool.name}: idle power", profile.spec.idle_w, "W",
                                                     profile.spec.source, str(profile.spec.as_of))]
    if idle is not None:
        return idle.idle_w, [tdp, Assumption(f"{pool.name}: idle power", idle.idle_w, "W", idle.source, str(idle.as_of))]
    return 0.0, [tdp, Assumption(f"{pool.name}: idle power", 0.0, "W", "unknown: power taken as TDP x utilization")]


def on_prem_inputs(pool: Pool, profile: HardwareProfile, book: PriceBook, utilization: float, where: str,
                   licence_usd_per_accel_year: float = 0.0) -> tuple[OnPremInputs, list[Assumption]]:
    """Owned pool inputs; `utilization` is the load the power model bills, `licence_usd_per_accel_year` the
    engines' licences spread over the pool (pool_licences)."""
    o = pool.on_prem
    b = book.on_prem
    out: list[Assumption] = []

    def take(name: str, unit_name: str) -> float:
        book_value, override = getattr(b, name), getattr(o, name)
        if book_value is None:  # an optional row (maintenance, insurance) this price book lacks
            value = 0.0 if override is None else override
            out.append(Assumption(f"{pool.name}: {unit_name}", value, "fraction of purchase price per year",
                                  "not in the price book: not charged" if override is None else "scenario override"))
            return value
        value, a = _num(f"{pool.name}: {unit_name}", book_value, override)
        out.append(a)
        return value

    per_node = take("accelerators_per_node", "accelerators per node")
    server = book.server_price(pool.sku)
    if pool.server_usd_per_accel is not None:
        accel_usd, node_usd = pool.server_usd_per_accel, 0.0
        out.append(Assumption(f"{pool.name}: server capex per accelerator (all-in)", accel_usd, "USD", "scenario override"))
    elif server is not None:
        accel_usd = server.accelerator_usd
        out.append(Assumption(f"{pool.name}: accelerator price", accel_usd, "USD", server.source, str(server.as_of)))
        node_usd = take("host_usd_per_node", "host per node") + take("network_usd_per_node", "network per node")
        node_usd += take("storage_usd_per_node", "storage per node")
    elif profile.price.server_usd_per_accel is not None:
        accel_usd, node_usd = profile.price.server_usd_per_accel, 0.0
        out.append(Assumption(f"{pool.name}: server capex per accelerator (all-in)", accel_usd, "USD",
                              profile.price.source, str(profile.price.as_of)))
    else:
        raise InputError(where, "server_usd_per_accel", f"no server price for {profile.sku!r}; set one")
    idle_w, a = idle_power(pool, profile, book)
    out += a
    x = OnPremInputs(
        accelerators=pool.count,
        accelerator_usd=accel_usd,
        node_usd=node_usd,
        accelerators_per_node=per_node,
        depreciation_years=take("depreciation_years", "depreciation"),
        residual_value_fraction=take("residual_value_fraction", "residual value"),
        tdp_w=profile.spec.tdp_w,
        idle_w=idle_w,
        host_power_w_per_node=take("host_power_w_per_node", "host power per node"),
        utilization=utilization,
        pue=take("pue", "PUE"),
        usd_per_kwh=take("usd_per_kwh", "electricity"),
        colocation_usd_per_kw_month=take("colocation_usd_per_kw_month", "colocation"),
        staff_usd_per_year=take("staff_usd_per_year", "staff cost"),
        nodes_per_staff=take("nodes_per_staff", "nodes per engineer"),
        software_usd_per_accel_year=licence_usd_per_accel_year,
        maintenance_fraction_per_year=take("maintenance_fraction_per_year", "maintenance contract"),
        insurance_fraction_per_year=take("insurance_fraction_per_year", "insurance"),
        **resale_curve(b, out, pool),
    )
    return x, out


def resale_curve(book: Any, out: list[Assumption], pool: Pool) -> dict[str, tuple[float, ...]]:
    """The price book's market-value curve for the TCO horizon, unless the scenario sets its own residual value
    or depreciation period for the pool: then its book value (its own assumption) is what the TCO credits."""
    curve = book.resale_value
    o = pool.on_prem
    if curve is None or o.residual_value_fraction is not None or o.depreciation_years is not None:
        return {}
    points = ", ".join(f"{f:.0%} at {m:g} months" for m, f in zip(curve.months, curve.fraction))
    out.append(Assumption(f"{pool.name}: resale value (TCO horizon)", points, "fraction of purchase price",
                          curve.source, str(curve.as_of)))
    return {"resale_months": tuple(curve.months), "resale_fraction": tuple(curve.fraction)}


def pool_cost(rs: ResolvedScenario, pool: Pool, utilization: float, lost_work_s: float = 0.0, load: float | None = None,
              presets: dict[str, EnginePreset] | None = None) -> PoolCost:
    """One pool priced: `utilization` is its busy fraction, `load` its demand / capacity (the power model bills
    the load; without one the busy fraction stands in); `presets`: the engine presets (read when not given)."""
    profile = rs.pool_profiles[pool.name]
    i = [p.name for p in rs.scenario.pools].index(pool.name)
    where = f"{rs.file}: pools[{i}]"  # (count may be a billed average: autoscaled cloud pools)
    licences, licence_notes = pool_licences(rs, pool, engine_presets(rs) if presets is None else presets)
    licence = sum(licences.values())
    if pool.location == "cloud":
        simulated = any(f.pool == pool.name for f in rs.scenario.faults.spot_reclamations)
        c, assumptions = cloud_inputs(pool, profile, rs.price_book, lost_work_s, where, simulated, licences)
        idle_w, power = idle_power(pool, profile, rs.price_book)
        return PoolCost(pool.name, pool.sku, pool.location, pool.count, utilization, cloud_cost_per_hour(c), c, None,
                        profile.spec.tdp_w, idle_w, assumptions + licence_notes + power, load=load,
                        licence_usd_per_accel_year=licence)
    power_load = utilization if load is None else min(1.0, max(0.0, load))
    x, assumptions = on_prem_inputs(pool, profile, rs.price_book, power_load, where, licence)
    return PoolCost(pool.name, pool.sku, pool.location, pool.count, utilization, on_prem_cost_per_hour(x), None, x,
                    x.tdp_w, x.idle_w, assumptions + licence_notes, load=load, licence_usd_per_accel_year=licence)


def fleet_costs(rs: ResolvedScenario, utilization_by_pool: dict[str, float], lost_work_s: float = 0.0,
                billed_accelerators: dict[str, float] | None = None,
                load_by_pool: dict[str, float] | None = None) -> list[PoolCost]:
    """Every pool priced at its busy fraction and load (metrics/finance.py pool_loads); `billed_accelerators`
    replaces a cloud pool's count with what autoscaling provisioned on average (cloud bills provisioned
    accelerator-hours)."""
    billed = billed_accelerators or {}
    loads = load_by_pool or {}
    presets = engine_presets(rs)
    return [
        pool_cost(rs, p.model_copy(update={"count": billed[p.name]}) if p.name in billed else p,
                  utilization_by_pool.get(p.name, 0.0), lost_work_s, loads.get(p.name), presets)
        for p in rs.scenario.pools
    ]


def alternative_cost(rs: ResolvedScenario, pc: PoolCost, owned_accelerators: float | None = None) -> PoolCost | None:
    """The same service priced the other way (cloud on-demand <-> owned), for break-even analysis; None when
    there is no price for the other way (e.g. an ASIC with no public cloud price). Owning an autoscaled cloud
    pool's service takes its peak (`owned_accelerators`, whole accelerators), not its configured maximum. The
    software is the same either way, so is its licence."""
    pool = next(p for p in rs.scenario.pools if p.name == pc.pool)
    update: dict[str, object] = {"location": "on_prem" if pool.location == "cloud" else "cloud", "provider": None,
                                 "pricing": "on_demand"}
    if pool.location == "cloud" and owned_accelerators is not None:
        update["count"] = max(1, math.ceil(owned_accelerators - 1e-9))
    other = pool.model_copy(update=update)
    profile = rs.pool_profiles[pool.name]
    where = f"{rs.file}: pools[{pool.name}]"
    licence = pc.licence_usd_per_accel_year
    if other.location == "cloud":
        price = pool.cloud_usd_per_accel_hour
        source = ("scenario override", "") if price is not None else (profile.price.source, str(profile.price.as_of))
        if price is None:
            price = profile.price.cloud_usd_per_accel_hour
        if price is None:
            return None
        c = CloudInputs(pool.count, price, software_usd_per_accel_year=licence)
        a = [Assumption(f"{pool.name}: cloud price if rented (on-demand)", price, "USD/accelerator-hour", *source)]
        return PoolCost(pool.name, pool.sku, "cloud", pool.count, pc.utilization, cloud_cost_per_hour(c), c, None,
                        pc.tdp_w, pc.idle_w, a, pc.serving_fraction, load=pc.load, licence_usd_per_accel_year=licence)
    scale = pc.accelerators / other.count  # the same demand on other hardware
    utilization = min(1.0, pc.utilization * scale)
    load = None if pc.load is None else pc.load * scale
    try:
        x, a = on_prem_inputs(other, profile, rs.price_book, min(1.0, pc.power_load * scale), where, licence)
    except InputError:
        return None
    if other.count != pool.count:
        a.append(Assumption(f"{pool.name}: accelerators if owned", other.count, "accelerators",
                            "the autoscaled pool's peak provisioned in the window (owned hardware does not scale in)"))
    return PoolCost(pool.name, pool.sku, "on_prem", other.count, utilization, on_prem_cost_per_hour(x), None, x,
                    x.tdp_w, x.idle_w, a, pc.serving_fraction, load=load, licence_usd_per_accel_year=licence)


def discount_rate(rs: ResolvedScenario) -> tuple[float, Assumption]:
    """The annual discount rate of the own-vs-rent decision model: the scenario's finance.discount_rate_annual,
    else the price book's, else 0 (cash flows not discounted; recorded as such)."""
    own = rs.scenario.finance.discount_rate_annual
    if own is not None:
        return own, Assumption("discount rate", own, "fraction per year", "scenario finance.discount_rate_annual")
    n = rs.price_book.finance.discount_rate_annual
    if n is None:
        return 0.0, Assumption("discount rate", 0.0, "fraction per year", "not in the price book: cash flows not discounted")
    return n.value, Assumption("discount rate", n.value, n.unit, n.source, str(n.as_of))
