"""Cost of every pool in a scenario: the pool's prices looked up (scenario override, then price book, then
the profile), turned into per-hour costs at the measured utilization, with every assumption recorded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from simfactory.config.prices import PriceBook, SourcedNumber
from simfactory.config.profile import HardwareProfile
from simfactory.config.scenario import Pool
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

    @property
    def usd_per_accel_hour(self) -> float:
        return self.per_hour.total_usd / self.accelerators

    @property
    def serving_busy(self) -> float:
        """Busy fraction of the serving accelerators (the whole pool's when no training holds any of it)."""
        return self.utilization if self.serving_utilization is None else self.serving_utilization

    @property
    def serving_usd_per_hour(self) -> float:
        """The part of the pool's cost that inference's unit costs carry."""
        return self.per_hour.total_usd * self.serving_fraction

    def at_utilization(self, utilization: float) -> "PoolCost":
        """The same pool priced at another utilization (only on-prem energy depends on it)."""
        if self.on_prem is None:
            return replace(self, utilization=utilization)
        x = replace(self.on_prem, utilization=utilization)
        return replace(self, utilization=utilization, on_prem=x, per_hour=on_prem_cost_per_hour(x))


def _num(name: str, n: SourcedNumber, override: float | None) -> tuple[float, Assumption]:
    if override is not None:
        return override, Assumption(name, override, n.unit, "scenario override")
    return n.value, Assumption(name, n.value, n.unit, n.source, str(n.as_of))


def cloud_inputs(pool: Pool, profile: HardwareProfile, book: PriceBook, lost_work_s: float, where: str,
                 reclamations_simulated: bool = False) -> tuple[CloudInputs, list[Assumption]]:
    """Price per accelerator-hour: the pool's override, else the price book's entry for its provider,
    region and contract, else the profile's on-demand price. Spot rework is a surcharge at the book's
    reclamation rate, unless the scenario simulates this pool's reclamations (faults.spot_reclamations): then
    the lost work is already in the simulated output, and charging it again would count it twice."""
    entry = book.cloud_price(pool.provider, pool.sku, pool.pricing, pool.region) if pool.provider else None
    if pool.cloud_usd_per_accel_hour is not None:
        price, src, as_of = pool.cloud_usd_per_accel_hour, "scenario override", ""
    elif entry is not None:
        price, src, as_of = entry.usd_per_accel_hour, entry.source, str(entry.as_of)
    elif profile.price.cloud_usd_per_accel_hour is not None:
        price, src, as_of = profile.price.cloud_usd_per_accel_hour, profile.price.source, str(profile.price.as_of)
    else:
        raise InputError(where, "cloud_usd_per_accel_hour", f"profile {profile.sku!r} has no cloud price; set one")
    label = f"{pool.provider or 'profile'} {pool.pricing}"
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
    return CloudInputs(pool.count, price, pool.pricing, interruptions, lost_s), out


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


def on_prem_inputs(pool: Pool, profile: HardwareProfile, book: PriceBook, utilization: float, where: str) -> tuple[OnPremInputs, list[Assumption]]:
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
        software_usd_per_accel_year=software_licence(pool, profile, book, take, out),
        maintenance_fraction_per_year=take("maintenance_fraction_per_year", "maintenance contract"),
        insurance_fraction_per_year=take("insurance_fraction_per_year", "insurance"),
        **resale_curve(b, out, pool),
    )
    return x, out


def software_licence(pool: Pool, profile: HardwareProfile, book: PriceBook, take: Any, out: list[Assumption]) -> float:
    """The per-accelerator licence, where it applies: a scenario override always; the price book's figure only
    for the vendors it names (its NVIDIA AI Enterprise price is not charged on AMD or Intel accelerators)."""
    vendors = book.on_prem.software_vendors
    if pool.on_prem.software_usd_per_accel_year is None and vendors is not None and profile.vendor not in vendors:
        out.append(Assumption(f"{pool.name}: software licences", 0.0, "USD/accelerator-year",
                              f"the price book's licence applies to {', '.join(vendors)} accelerators; "
                              f"{profile.sku} is {profile.vendor}"))
        return 0.0
    return take("software_usd_per_accel_year", "software licences")


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


def pool_cost(rs: ResolvedScenario, pool: Pool, utilization: float, lost_work_s: float = 0.0) -> PoolCost:
    profile = rs.pool_profiles[pool.name]
    i = [p.name for p in rs.scenario.pools].index(pool.name)
    where = f"{rs.file}: pools[{i}]"  # (count may be a billed average: autoscaled cloud pools)
    if pool.location == "cloud":
        simulated = any(f.pool == pool.name for f in rs.scenario.faults.spot_reclamations)
        c, assumptions = cloud_inputs(pool, profile, rs.price_book, lost_work_s, where, simulated)
        idle_w, power = idle_power(pool, profile, rs.price_book)
        return PoolCost(pool.name, pool.sku, pool.location, pool.count, utilization, cloud_cost_per_hour(c), c, None,
                        profile.spec.tdp_w, idle_w, assumptions + power)
    x, assumptions = on_prem_inputs(pool, profile, rs.price_book, utilization, where)
    return PoolCost(pool.name, pool.sku, pool.location, pool.count, utilization, on_prem_cost_per_hour(x), None, x,
                    x.tdp_w, x.idle_w, assumptions)


def fleet_costs(rs: ResolvedScenario, utilization_by_pool: dict[str, float], lost_work_s: float = 0.0,
                billed_accelerators: dict[str, float] | None = None) -> list[PoolCost]:
    """Every pool priced; `billed_accelerators` replaces a cloud pool's count with what autoscaling provisioned
    on average (cloud bills provisioned accelerator-hours)."""
    billed = billed_accelerators or {}
    return [
        pool_cost(rs, p.model_copy(update={"count": billed[p.name]}) if p.name in billed else p,
                  utilization_by_pool.get(p.name, 0.0), lost_work_s)
        for p in rs.scenario.pools
    ]


def alternative_cost(rs: ResolvedScenario, pc: PoolCost, owned_accelerators: float | None = None) -> PoolCost | None:
    """The same service priced the other way (cloud on-demand <-> owned), for break-even analysis; None when
    there is no price for the other way (e.g. an ASIC with no public cloud price). Owning an autoscaled cloud
    pool's service takes its peak (`owned_accelerators`, whole accelerators), not its configured maximum."""
    pool = next(p for p in rs.scenario.pools if p.name == pc.pool)
    update: dict[str, object] = {"location": "on_prem" if pool.location == "cloud" else "cloud", "provider": None,
                                 "pricing": "on_demand"}
    if pool.location == "cloud" and owned_accelerators is not None:
        update["count"] = max(1, math.ceil(owned_accelerators - 1e-9))
    other = pool.model_copy(update=update)
    profile = rs.pool_profiles[pool.name]
    where = f"{rs.file}: pools[{pool.name}]"
    if other.location == "cloud":
        price = pool.cloud_usd_per_accel_hour
        source = ("scenario override", "") if price is not None else (profile.price.source, str(profile.price.as_of))
        if price is None:
            price = profile.price.cloud_usd_per_accel_hour
        if price is None:
            return None
        c = CloudInputs(pool.count, price)
        a = [Assumption(f"{pool.name}: cloud price if rented (on-demand)", price, "USD/accelerator-hour", *source)]
        return PoolCost(pool.name, pool.sku, "cloud", pool.count, pc.utilization, cloud_cost_per_hour(c), c, None,
                        pc.tdp_w, pc.idle_w, a, pc.serving_fraction)
    utilization = min(1.0, pc.utilization * pc.accelerators / other.count)  # the same busy time on more hardware
    try:
        x, a = on_prem_inputs(other, profile, rs.price_book, utilization, where)
    except InputError:
        return None
    if other.count != pool.count:
        a.append(Assumption(f"{pool.name}: accelerators if owned", other.count, "accelerators",
                            "the autoscaled pool's peak provisioned in the window (owned hardware does not scale in)"))
    return PoolCost(pool.name, pool.sku, "on_prem", other.count, utilization, on_prem_cost_per_hour(x), None, x,
                    x.tdp_w, x.idle_w, a, pc.serving_fraction)


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
