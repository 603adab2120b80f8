"""Own or rent: ONE decision model from which the TCO over the horizon, the break-even month and the
break-even load are all computed, so that the three answers cannot disagree.

Cash flows are monthly and discounted at the monthly rate r = (1 + d)^(1/12) - 1 of an annual rate d. The
purchase K is paid at month 0; running costs and rent at the end of each month (present value of 1 a month for
t months: a(t) = (1 - (1 + r)^-t) / r, = t when d = 0); the hardware is sold at the month t that owning stops,
for K x f(t), its resale fraction at age t (the price book's market curve, else book value), discounted by
v(t) = (1 + r)^-t.

Owning N accelerators at load u (the share of the provisioned accelerator-hours the demand needs, in [0, 1]):

    own(t, u)  = K - K f(t) v(t) + (F + E0 + E1 u) a(t)

F: fixed running cost per month (colocation on provisioned kW, staff, licences, maintenance contract and
insurance, the last two a fraction of K per year); E0 + E1 u: energy per month (accelerators at idle +
(TDP - idle) x u, host power, x PUE x $/kWh: pool_cost.average_power_w).

Renting elastically, only the accelerator-hours the load needs (N u an hour at p per accelerator-hour, with a
spot pool's rework surcharge):

    rent(t, u) = R u a(t),   R = p N hours-per-month (1 + rework)

Only against this elastic alternative does a break-even LOAD exist: renting the same N accelerators every hour
costs the same at any load, so against it owning either always or never wins. That figure is kept as a labelled
reference (`rent_all_hours_npv_usd`), with no break-even claim attached.

Both are affine in u: D(t, u) = own - rent = A(t) - B(t) u, with A(t) = K (1 - f(t) v(t)) + (F + E0) a(t) and
B(t) = (R - E1) a(t).

- Break-even load u* (at the horizon H): the u in [0, 1] where D(H, u) = 0, i.e. A(H) / B(H); None when owning is
  never cheaper for u in [0, 1] (B(H) <= 0, or A(H) / B(H) > 1).
- Break-even month (at load u): the smallest month T <= H such that owning, selling at month t, is no dearer than
  renting for every t in [T, H]; None: "not within the horizon".

Hence, by construction: owning no dearer at H  <=>  break-even month <= H  <=>  u >= u*.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from simfactory.cost.pool_cost import (
    HOURS_PER_MONTH,
    HOURS_PER_YEAR,
    CloudInputs,
    OnPremInputs,
    cloud_cost_per_hour,
    on_prem_cost_per_hour,
    residual_value_usd,
)


def horizon_months(years: float) -> int:
    """The horizon in whole months (cash flows are monthly); at least one."""
    return max(1, round(years * 12.0))


def monthly_rate(discount_rate_annual: float) -> float:
    """The monthly rate that compounds to the annual one: (1 + d)^(1/12) - 1 (via log1p/expm1, exact for tiny d)."""
    return float(np.expm1(np.log1p(discount_rate_annual) / 12.0))


def discount_factor(months: np.ndarray | float, discount_rate_annual: float) -> np.ndarray:
    """v(t) = (1 + r)^-t: what 1 paid at month t is worth today."""
    return np.exp(-np.asarray(months, dtype=float) * np.log1p(monthly_rate(discount_rate_annual)))


def annuity_factor(months: np.ndarray | float, discount_rate_annual: float) -> np.ndarray:
    """a(t): present value of 1 paid at the end of each of t months ((1 - v(t)) / r; t when undiscounted)."""
    t = np.asarray(months, dtype=float)
    r = monthly_rate(discount_rate_annual)
    if r == 0.0:
        return t
    return -np.expm1(-t * np.log1p(r)) / r


@dataclass(frozen=True)
class OwnVsRent:
    """The model's inputs: owning `accelerators` vs renting the accelerator-hours the load needs."""

    accelerators: float
    capex_usd: float
    fixed_usd_per_month: float  # F: colocation, staff, licences, maintenance, insurance
    energy_usd_per_month_at_load_0: float  # E0
    energy_usd_per_month_per_load: float  # E1
    rent_usd_per_accel_hour: float  # p x (1 + rework); 0 when there is no price to rent
    rent_all_hours_usd_per_month: float  # reference: the rented pool's accelerators, every hour
    resale_fraction: Callable[[float], float]  # fraction of capex the hardware fetches at an age in months
    discount_rate_annual: float
    horizon_months: int

    @property
    def rent_usd_per_month_per_load(self) -> float:
        """R: renting all N accelerators' hours for a month (renting at load u costs R u)."""
        return self.rent_usd_per_accel_hour * self.accelerators * HOURS_PER_MONTH

    def _months(self) -> np.ndarray:
        return np.arange(1, self.horizon_months + 1, dtype=float)

    def own_at_load_0_usd(self, t: np.ndarray) -> np.ndarray:
        """own(t, 0) = K (1 - f(t) v(t)) + (F + E0) a(t)."""
        resale = np.array([self.resale_fraction(float(m)) for m in np.atleast_1d(t)])
        d = self.discount_rate_annual
        running = self.fixed_usd_per_month + self.energy_usd_per_month_at_load_0
        return self.capex_usd * (1.0 - resale * discount_factor(t, d)) + running * annuity_factor(t, d)

    def own_per_load_usd(self, t: np.ndarray) -> np.ndarray:
        """d own / d u = E1 a(t)."""
        return self.energy_usd_per_month_per_load * annuity_factor(t, self.discount_rate_annual)

    def rent_per_load_usd(self, t: np.ndarray) -> np.ndarray:
        """rent(t, u) / u = R a(t)."""
        return self.rent_usd_per_month_per_load * annuity_factor(t, self.discount_rate_annual)

    def npv_own_usd(self, t: float, u: float) -> float:
        """Present value of owning for t months at load u, selling at month t."""
        ts = np.array([float(t)])
        return float(self.own_at_load_0_usd(ts)[0] + self.own_per_load_usd(ts)[0] * u)

    def npv_rent_usd(self, t: float, u: float) -> float:
        """Present value of renting, for t months, the accelerator-hours load u needs."""
        return float(self.rent_per_load_usd(np.array([float(t)]))[0] * u)

    def rent_all_hours_npv_usd(self) -> float:
        """Reference only: the same accelerators rented every hour over the horizon."""
        return float(self.rent_all_hours_usd_per_month * annuity_factor(self.horizon_months, self.discount_rate_annual))

    def running_usd_per_month(self, u: float) -> float:
        """What owning costs each month after the purchase, at load u."""
        return self.fixed_usd_per_month + self.energy_usd_per_month_at_load_0 + self.energy_usd_per_month_per_load * u


@dataclass(frozen=True)
class Decision:
    """Own vs rent at one load over the horizon; every figure from the same A(t) - B(t) u."""

    load: float
    horizon_months: int
    discount_rate_annual: float
    own_npv_usd: float
    rent_npv_usd: float
    rent_all_hours_npv_usd: float
    own_cheaper: bool  # owning no dearer than renting what the load needs, at the horizon
    break_even_load: float | None
    break_even_month: int | None
    own_npv_usd_at_load_0: float
    own_npv_usd_per_load: float
    rent_npv_usd_per_load: float
    running_usd_per_month: float


def break_even_load(a_usd: float, b_usd: float) -> float | None:
    """u* with A - B u* = 0, where D(u) = A - B u is owning minus renting at the horizon. None when owning is never
    cheaper for u in [0, 1]. (A >= 0 always: resale is at most the purchase and costs are not negative.)"""
    if b_usd > 0.0:
        u = max(a_usd / b_usd, 0.0)
        return u if u <= 1.0 else None
    return 0.0 if (a_usd <= 0.0 and b_usd == 0.0) else None  # free to own and to rent: equal at any load


def decide(m: OwnVsRent, load: float) -> Decision:
    """The three answers at one load, from one set of arrays over months 1..H (the load is clipped to [0, 1]:
    an owned fleet serves at most all its accelerator-hours)."""
    u = min(1.0, max(0.0, load))
    t = m._months()
    a0 = m.own_at_load_0_usd(t)
    own_slope = m.own_per_load_usd(t)
    rent_slope = m.rent_per_load_usd(t)
    a_arr, b_arr = a0, rent_slope - own_slope
    d = a_arr - b_arr * u  # owning minus renting, selling at month t
    no_dearer = d <= 0.0  # (a non-finite input gives NaN: never "no dearer", so all three answers say rent)
    dearer = np.nonzero(~no_dearer)[0]
    if not no_dearer[-1]:
        month = None
    else:
        month = int(t[dearer[-1] + 1]) if len(dearer) else int(t[0])
    return Decision(
        load=u,
        horizon_months=m.horizon_months,
        discount_rate_annual=m.discount_rate_annual,
        own_npv_usd=float(a0[-1] + own_slope[-1] * u),
        rent_npv_usd=float(rent_slope[-1] * u),
        rent_all_hours_npv_usd=m.rent_all_hours_npv_usd(),
        own_cheaper=bool(no_dearer[-1]),
        break_even_load=break_even_load(float(a_arr[-1]), float(b_arr[-1])),
        break_even_month=month,
        own_npv_usd_at_load_0=float(a0[-1]),
        own_npv_usd_per_load=float(own_slope[-1]),
        rent_npv_usd_per_load=float(rent_slope[-1]),
        running_usd_per_month=m.running_usd_per_month(u),
    )


def levelized_own_cost(m: OwnVsRent) -> tuple[float, float]:
    """(c0, slope): owning one accelerator for the horizon costs c0 + slope x u per accelerator-hour, levelized
    (present value over present-value hours). Renting levelizes to its price, so the curves cross at u*."""
    h = np.array([float(m.horizon_months)])
    hours_pv = m.accelerators * HOURS_PER_MONTH * float(annuity_factor(h, m.discount_rate_annual)[0])
    if hours_pv <= 0:
        return 0.0, 0.0
    return float(m.own_at_load_0_usd(h)[0]) / hours_pv, float(m.own_per_load_usd(h)[0]) / hours_pv


def rent_usd_per_accel_hour(c: CloudInputs) -> float:
    """The rented price per accelerator-hour the load needs, with the licences of the engine it runs (owning pays
    them too) and a spot pool's rework surcharge."""
    rate = c.usd_per_accel_hour + c.software_usd_per_accel_year / HOURS_PER_YEAR
    return rate * (1.0 + c.interruptions_per_hour * c.lost_s_per_interruption / 3600.0)


def own_vs_rent(x: OnPremInputs, rented: CloudInputs | None, years: float, discount_rate_annual: float) -> OwnVsRent:
    """The model from the priced pools: owning `x` (its accelerators, purchase, running costs, resale curve) vs
    renting at `rented`'s price (None: no price to rent; the rent side is then 0). The reference line bills all
    of `rented`'s accelerators every hour (an autoscaled cloud pool: what it provisioned on average)."""
    at0 = on_prem_cost_per_hour(replace(x, utilization=0.0))
    at1 = on_prem_cost_per_hour(replace(x, utilization=1.0))
    fixed_h = at0.hosting_usd + at0.staff_usd + at0.software_usd + at0.maintenance_usd + at0.insurance_usd
    capex = x.capex_usd
    return OwnVsRent(
        accelerators=x.accelerators,
        capex_usd=capex,
        fixed_usd_per_month=fixed_h * HOURS_PER_MONTH,
        energy_usd_per_month_at_load_0=at0.energy_usd * HOURS_PER_MONTH,
        energy_usd_per_month_per_load=(at1.energy_usd - at0.energy_usd) * HOURS_PER_MONTH,
        rent_usd_per_accel_hour=0.0 if rented is None else rent_usd_per_accel_hour(rented),
        rent_all_hours_usd_per_month=0.0 if rented is None else cloud_cost_per_hour(rented).total_usd * HOURS_PER_MONTH,
        resale_fraction=(lambda months: residual_value_usd(x, months / 12.0) / capex if capex > 0 else 0.0),
        discount_rate_annual=discount_rate_annual,
        horizon_months=horizon_months(years),
    )


def rent_all_hours_npv_usd(c: CloudInputs, years: float, discount_rate_annual: float) -> float:
    """A cloud pool as provisioned: every accelerator-hour billed over the horizon, present value."""
    months = horizon_months(years)
    return float(cloud_cost_per_hour(c).total_usd * HOURS_PER_MONTH * annuity_factor(months, discount_rate_annual))


def verdict(dec: Decision, currency: str = "USD") -> str:
    """One sentence, from the same numbers as the table: which is cheaper, at what load against what break-even,
    and from which month."""
    h = dec.horizon_months
    pv = f"over {h} months (present value at {dec.discount_rate_annual:.1%}/year)"
    elastic = "renting only the accelerator-hours the load needs"
    at = f"at load {dec.load:.2f}"
    if dec.break_even_load is not None:
        at += f" ({'at or above' if dec.own_cheaper else 'below'} the break-even load {dec.break_even_load:.2f})"
    else:
        at += " (owning is dearer at any load up to 1.00)"
    own, rent = f"{currency} {dec.own_npv_usd:,.0f}", f"{currency} {dec.rent_npv_usd:,.0f}"
    if dec.own_cheaper:
        return (f"Owning is cheaper: {at}, owning costs {own} {pv} against {rent} {elastic}; it breaks even in "
                f"month {dec.break_even_month}.")
    return (f"Renting is cheaper: {at}, {elastic} costs {rent} {pv} against {own} owning; owning does not break "
            f"even within {h} months.")
