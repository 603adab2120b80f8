"""Cost of a pool per hour: cloud pays per provisioned accelerator-hour; on-prem amortizes capex
and pays power (TDP x utilization x PUE) and hosting (colocation $/kW-month at TDP)."""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_YEAR = 8760.0
HOURS_PER_MONTH = HOURS_PER_YEAR / 12


@dataclass(frozen=True)
class OnPremInputs:
    accelerators: int
    server_usd_per_accel: float
    amortization_years: float
    tdp_w: float
    idle_w: float
    utilization: float
    pue: float
    usd_per_kwh: float
    hosting_usd_per_kw_month: float


@dataclass(frozen=True)
class PoolCostPerHour:
    capex_usd: float
    energy_usd: float
    hosting_usd: float
    cloud_usd: float

    @property
    def total_usd(self) -> float:
        return self.capex_usd + self.energy_usd + self.hosting_usd + self.cloud_usd


def cloud_cost_per_hour(accelerators: int, usd_per_accel_hour: float) -> PoolCostPerHour:
    """Cloud bills every provisioned accelerator-hour, busy or idle."""
    return PoolCostPerHour(0.0, 0.0, 0.0, accelerators * usd_per_accel_hour)


def average_power_w(tdp_w: float, idle_w: float, utilization: float) -> float:
    """Linear power curve between idle and TDP (idle 0 gives the plain TDP x utilization)."""
    return idle_w + (tdp_w - idle_w) * utilization


def on_prem_cost_per_hour(x: OnPremInputs) -> PoolCostPerHour:
    """Straight-line depreciation + facility energy (IT power x PUE) + hosting priced on provisioned kW."""
    capex = x.accelerators * x.server_usd_per_accel / (x.amortization_years * HOURS_PER_YEAR)
    it_kw = x.accelerators * average_power_w(x.tdp_w, x.idle_w, x.utilization) / 1000.0
    energy = it_kw * x.pue * x.usd_per_kwh
    provisioned_kw = x.accelerators * x.tdp_w / 1000.0
    hosting = provisioned_kw * x.hosting_usd_per_kw_month / HOURS_PER_MONTH
    return PoolCostPerHour(capex, energy, hosting, 0.0)
