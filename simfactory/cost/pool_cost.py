"""Cost of a pool per hour, and over a horizon: pure functions of prices and load.

Cloud pays every provisioned accelerator-hour, busy or idle (spot adds the work that reclamations make
it redo), plus the licences of the software it runs (a rental price does not include them). On-prem
amortizes the purchase (accelerators plus their share of host, network and storage) down to its residual
value, and pays energy (the power model in LOAD, idle + (TDP - idle) x load, x PUE), colocation on
provisioned kW, staff per node, software licences per accelerator, and a maintenance contract and insurance
(each a fraction of the purchase price per year).

Load is the share of the accelerators' capacity the demand uses (simfactory/metrics/finance.py, pool_loads),
not the busy fraction: continuous batching keeps a replica stepping at almost any load.

These are per-hour accounting views (unit costs, the cost table). Whether to own or rent over a horizon, and
the TCO, break-even month and break-even load, come from one model: simfactory/cost/decision.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOURS_PER_YEAR = 8760.0
HOURS_PER_MONTH = HOURS_PER_YEAR / 12


@dataclass(frozen=True)
class OnPremInputs:
    accelerators: int
    accelerator_usd: float
    node_usd: float  # host + network + storage of one node, without its accelerators
    accelerators_per_node: float
    depreciation_years: float
    residual_value_fraction: float
    tdp_w: float
    idle_w: float
    host_power_w_per_node: float
    utilization: float  # the pool's LOAD (demand / capacity, clipped to [0, 1]): what the power model bills
    pue: float
    usd_per_kwh: float
    colocation_usd_per_kw_month: float
    staff_usd_per_year: float
    nodes_per_staff: float
    software_usd_per_accel_year: float  # licences of the engines it runs, spread over the pool's accelerators
    resale_months: tuple[float, ...] = ()  # market value by age (fraction of purchase) for the TCO horizon;
    resale_fraction: tuple[float, ...] = ()  # empty: the book value is credited instead
    maintenance_fraction_per_year: float = 0.0  # support contract, fraction of capex per year
    insurance_fraction_per_year: float = 0.0  # equipment insurance, fraction of capex per year

    @property
    def nodes(self) -> float:
        """Nodes the pool occupies; node costs are shared pro rata, so 4 GPUs of an 8-GPU node pay half."""
        return self.accelerators / self.accelerators_per_node

    @property
    def capex_usd(self) -> float:
        return self.accelerators * self.accelerator_usd + self.nodes * self.node_usd


@dataclass(frozen=True)
class CloudInputs:
    accelerators: int
    usd_per_accel_hour: float
    pricing: str = "on_demand"
    interruptions_per_hour: float = 0.0  # spot reclamations per replica-hour
    lost_s_per_interruption: float = 0.0  # restart (weights load, cold start) + in-flight work redone
    software_usd_per_accel_year: float = 0.0  # licences of the engines it runs (not in the rental price)


@dataclass(frozen=True)
class PoolCostPerHour:
    capex_usd: float = 0.0
    energy_usd: float = 0.0
    hosting_usd: float = 0.0
    staff_usd: float = 0.0
    software_usd: float = 0.0
    maintenance_usd: float = 0.0
    insurance_usd: float = 0.0
    cloud_usd: float = 0.0
    spot_rework_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        return (
            self.capex_usd
            + self.energy_usd
            + self.hosting_usd
            + self.staff_usd
            + self.software_usd
            + self.maintenance_usd
            + self.insurance_usd
            + self.cloud_usd
            + self.spot_rework_usd
        )

    @property
    def fixed_usd(self) -> float:
        """What is paid whether or not the accelerators work (everything but energy)."""
        return self.total_usd - self.energy_usd

    def as_dict(self) -> dict[str, float]:
        return {
            "cloud": self.cloud_usd,
            "spot_rework": self.spot_rework_usd,
            "capex": self.capex_usd,
            "energy": self.energy_usd,
            "hosting": self.hosting_usd,
            "staff": self.staff_usd,
            "software": self.software_usd,
            "maintenance": self.maintenance_usd,
            "insurance": self.insurance_usd,
        }


def cloud_cost_per_hour(x: CloudInputs) -> PoolCostPerHour:
    """Provisioned hours at the contract rate, plus licences per accelerator-hour; a spot reclamation loses
    `lost_s_per_interruption` of the replica's time, which is paid again (rental and licence alike):
    rework = (rate + licence) x interruptions/h x lost_s / 3600."""
    base = x.accelerators * x.usd_per_accel_hour
    software = x.accelerators * x.software_usd_per_accel_year / HOURS_PER_YEAR
    rework = (base + software) * x.interruptions_per_hour * x.lost_s_per_interruption / 3600.0
    return PoolCostPerHour(cloud_usd=base, software_usd=software, spot_rework_usd=rework)


def average_power_w(tdp_w: float, idle_w: float, load: float) -> float:
    """The power model in load: idle + (TDP - idle) x load, load clipped to [0, 1] (a linear first-order model
    of accelerator power; a calibrated profile's measured idle and maximum power replace the spec sheet's idle
    and TDP: resolve/step_time.py with_measured_power)."""
    return idle_w + (tdp_w - idle_w) * min(1.0, max(0.0, load))


def on_prem_cost_per_hour(x: OnPremInputs) -> PoolCostPerHour:
    """Straight-line depreciation to residual value + facility energy + colocation + staff + licences +
    maintenance contract + insurance."""
    capex = x.capex_usd * (1.0 - x.residual_value_fraction) / (x.depreciation_years * HOURS_PER_YEAR)
    it_kw = (x.accelerators * average_power_w(x.tdp_w, x.idle_w, x.utilization) + x.nodes * x.host_power_w_per_node) / 1e3
    energy = it_kw * x.pue * x.usd_per_kwh
    provisioned_kw = (x.accelerators * x.tdp_w + x.nodes * x.host_power_w_per_node) / 1e3
    hosting = provisioned_kw * x.colocation_usd_per_kw_month / HOURS_PER_MONTH
    staff = x.staff_usd_per_year * x.nodes / x.nodes_per_staff / HOURS_PER_YEAR
    software = x.software_usd_per_accel_year * x.accelerators / HOURS_PER_YEAR
    maintenance = x.capex_usd * x.maintenance_fraction_per_year / HOURS_PER_YEAR
    insurance = x.capex_usd * x.insurance_fraction_per_year / HOURS_PER_YEAR
    return PoolCostPerHour(capex_usd=capex, energy_usd=energy, hosting_usd=hosting, staff_usd=staff, software_usd=software,
                           maintenance_usd=maintenance, insurance_usd=insurance)


def residual_value_usd(x: OnPremInputs, years: float) -> float:
    """What the hardware is worth after `years`: its market resale value where the price book gives a curve
    (linear between points, flat beyond the last), else its book value (straight-line down to the residual)."""
    if x.resale_months:
        return x.capex_usd * float(np.interp(years * 12.0, x.resale_months, x.resale_fraction))
    used = min(years / x.depreciation_years, 1.0)
    return x.capex_usd * (1.0 - (1.0 - x.residual_value_fraction) * used)
