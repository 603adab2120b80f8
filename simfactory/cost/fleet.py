"""Cost of every pool in a scenario per hour, from its location, prices and measured utilization."""

from __future__ import annotations

from dataclasses import dataclass

from simfactory.config.scenario import Pool
from simfactory.cost.pool_cost import (
    OnPremInputs,
    PoolCostPerHour,
    cloud_cost_per_hour,
    on_prem_cost_per_hour,
)
from simfactory.errors import InputError
from simfactory.resolve import ResolvedScenario


@dataclass(frozen=True)
class PoolCost:
    pool: str
    sku: str
    location: str
    accelerators: int
    utilization: float
    per_hour: PoolCostPerHour
    assumptions: dict[str, float | str]


def pool_cost(rs: ResolvedScenario, pool: Pool, utilization: float) -> PoolCost:
    profile = rs.pool_profiles[pool.name]
    i = [p.name for p in rs.scenario.pools].index(pool.name)
    if pool.location == "cloud":
        price = pool.cloud_usd_per_accel_hour
        if price is None:
            price = profile.price.cloud_usd_per_accel_hour
        if price is None:
            raise InputError(
                rs.file,
                f"pools[{i}].cloud_usd_per_accel_hour",
                f"profile {profile.sku!r} has no cloud price; set one for this pool",
            )
        per_hour = cloud_cost_per_hour(pool.count, price)
        assumptions: dict[str, float | str] = {
            "cloud_usd_per_accel_hour": price,
            "price_source": "scenario" if pool.cloud_usd_per_accel_hour is not None else profile.price.source,
        }
    else:
        server = pool.server_usd_per_accel
        if server is None:
            server = profile.price.server_usd_per_accel
        if server is None:
            raise InputError(
                rs.file, f"pools[{i}].server_usd_per_accel", f"profile {profile.sku!r} has no server price; set one"
            )
        d = rs.cost_defaults
        o = pool.on_prem
        x = OnPremInputs(
            accelerators=pool.count,
            server_usd_per_accel=server,
            amortization_years=o.amortization_years or d.amortization_years.value,
            tdp_w=profile.spec.tdp_w,
            idle_w=profile.spec.idle_w or 0.0,
            utilization=utilization,
            pue=o.pue or d.pue.value,
            usd_per_kwh=o.usd_per_kwh if o.usd_per_kwh is not None else d.usd_per_kwh.value,
            hosting_usd_per_kw_month=(
                o.hosting_usd_per_kw_month if o.hosting_usd_per_kw_month is not None else d.hosting_usd_per_kw_month.value
            ),
        )
        per_hour = on_prem_cost_per_hour(x)
        assumptions = {
            "server_usd_per_accel": x.server_usd_per_accel,
            "amortization_years": x.amortization_years,
            "tdp_w": x.tdp_w,
            "idle_w": x.idle_w,
            "pue": x.pue,
            "usd_per_kwh": x.usd_per_kwh,
            "hosting_usd_per_kw_month": x.hosting_usd_per_kw_month,
            "price_source": "scenario" if pool.server_usd_per_accel is not None else profile.price.source,
        }
    return PoolCost(pool.name, pool.sku, pool.location, pool.count, utilization, per_hour, assumptions)


def fleet_costs(rs: ResolvedScenario, utilization_by_pool: dict[str, float]) -> list[PoolCost]:
    return [pool_cost(rs, p, utilization_by_pool.get(p.name, 0.0)) for p in rs.scenario.pools]
