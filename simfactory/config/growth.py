"""A growth plan file (scenarios/growth/*.yaml, schema `growth`): a base scenario whose fleet serves the demand, a
demand forecast over months with its uncertainty, and the ways capacity may be held (owned, reserved 1y / 3y, on
demand, spot), for `simfactory plan-growth` (simfactory/plan/growth.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.scenario import Name

MAX_HORIZON_MONTHS = 120  # ten years: past that a forecast (and a price book) says nothing
MAX_DEMAND_SAMPLES = 1000  # futures drawn: the optimizer's size grows with futures x months
# monthly growth of the request rate: -50% to +100% a month (a halving or a doubling each month for years is a
# unit slip, e.g. 8 meant as 8%)
MIN_MONTHLY_GROWTH = -0.5
MAX_MONTHLY_GROWTH = 1.0
MonthlyGrowth = Annotated[float, Field(ge=MIN_MONTHLY_GROWTH, le=MAX_MONTHLY_GROWTH)]


class PlanCapacity(StrictModel):
    """Measure the capacity once: `simfactory plan` of the base scenario at one rate and these SLOs."""

    rate_per_s: PositiveFloat = Field(
        description="requests (or tasks) per second to size the base scenario's deployment for; the replicas it "
        "needs give the rate one replica sustains at the SLOs")
    slo: str = Field(min_length=1, description='targets as `plan --slo` takes them, e.g. "ttft_p99<1s,e2e_p99<30s"')
    replications: Annotated[int, Field(ge=1, le=20)] = Field(
        default=2, description="runs per replica count (1-20; a confidence interval needs 2 or more)")


class Capacity(StrictModel):
    """What one replica of the base deployment serves at the SLOs: planned (`plan`) or stated
    (`requests_per_s_per_replica` with its `source`)."""

    plan: PlanCapacity | None = Field(
        default=None, description="measure it: the fewest replicas meeting the SLOs at a rate (one `simfactory plan`)")
    requests_per_s_per_replica: PositiveFloat | None = Field(
        default=None, description="state it: requests per second one replica sustains at your SLOs (instead of plan)")
    source: str | None = Field(
        default=None, description="where a stated requests_per_s_per_replica comes from (a plan you ran, a benchmark)")

    @model_validator(mode="after")
    def _one_way(self) -> "Capacity":
        if (self.plan is None) == (self.requests_per_s_per_replica is None):
            raise ValueError("give either plan (measure it) or requests_per_s_per_replica (state it), not both")
        if self.requests_per_s_per_replica is not None and not (self.source or "").strip():
            raise ValueError("source: say where requests_per_s_per_replica comes from")
        return self


class LognormalGrowth(StrictModel):
    """Growth as a distribution: each future draws its own trend, ln(1 + g) ~ Normal(ln(1 + median_monthly),
    sigma_monthly), kept every month, plus month-to-month noise of standard deviation noise_monthly (in ln)."""

    distribution: Literal["lognormal"] = Field(description="lognormal: a distribution of monthly growth rates")
    median_monthly: MonthlyGrowth = Field(
        description="median growth of the request rate per month, a fraction (0.06: +6% a month, about 2x a year); "
        "-0.5 to 1")
    sigma_monthly: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.0, description="how unsure the trend is: standard deviation of ln(1 + monthly growth) across "
        "futures (0-0.5)")
    noise_monthly: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.0, description="month-to-month wobble around a future's trend: standard deviation of ln(rate) "
        "change, independent each month (0-0.5)")
    samples: Annotated[int, Field(ge=1, le=MAX_DEMAND_SAMPLES)] = Field(
        default=100, description=f"futures drawn (1-{MAX_DEMAND_SAMPLES}), equally likely")


class GrowthScenario(StrictModel):
    name: Name = Field(description="the future's name (letters, digits, . _ -)")
    probability: Annotated[float, Field(gt=0, le=1)] = Field(description="its probability; all sum to 1")
    monthly: MonthlyGrowth = Field(description="growth of the request rate per month, a fraction (-0.5 to 1)")


class ScenarioGrowth(StrictModel):
    """Growth as named futures with probabilities, each a steady monthly growth rate."""

    distribution: Literal["scenarios"] = Field(description="scenarios: named futures with probabilities")
    scenarios: list[GrowthScenario] = Field(
        min_length=1, max_length=MAX_DEMAND_SAMPLES, description="the futures; their probabilities sum to 1")

    @model_validator(mode="after")
    def _probabilities(self) -> "ScenarioGrowth":
        total = sum(s.probability for s in self.scenarios)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"scenarios: the probabilities sum to {total:g}, not 1")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError("scenarios: each name once")
        return self


class Demand(StrictModel):
    start_rate_per_s: Annotated[float, Field(ge=0)] = Field(
        description="requests (or tasks) per second in month 1, the mean of the base scenario's arrival shape (a "
        "diurnal scenario's daily mean)")
    growth: Annotated[LognormalGrowth | ScenarioGrowth, Field(discriminator="distribution")] = Field(
        description="how the rate grows month by month, with its uncertainty")


class Cloud(StrictModel):
    provider: str | None = Field(
        default=None, description="the price book's provider for on-demand, reserved and spot rows; unset: the base "
        "pool's provider")
    region: str | None = Field(default=None, description="its region (picks the price-book row); unset: the base "
                                                         "pool's")


class Options(StrictModel):
    """The ways capacity may be held. Renting on demand is always allowed: it covers what is not committed."""

    own: bool = Field(default=True, description="buy accelerators (the price book's purchase and on-prem costs, "
                                                "procurement lead time and availability)")
    reserved_1y: bool = Field(default=True, description="1-year cloud reservations (the price book's reserved_1y row)")
    reserved_3y: bool = Field(default=True, description="3-year cloud reservations (the price book's reserved_3y row)")
    spot_max_share: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="the largest share (0-1) of a month's demand spot may serve (0: no spot)")
    commit_unit_accelerators: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=8, description="commitments come in units of this many accelerators (8: an HGX node or an 8-GPU "
        "instance)")


class GrowthPlanFile(StrictModel):
    name: Name = Field(description="the plan's name (letters, digits, . _ -)")
    description: str = Field(default="", description="what the plan is for")
    scenario: str = Field(min_length=1, description="the base scenario, relative to this file: its fleet, traffic "
                          "shape, SLO behaviour and prices")
    deployment: str | None = Field(default=None, description="the deployment that serves the demand (default: the "
                                                             "first)")
    horizon_months: Annotated[int, Field(ge=1, le=MAX_HORIZON_MONTHS)] = Field(
        description=f"months to plan (1-{MAX_HORIZON_MONTHS})")
    seed: Annotated[int, Field(ge=0)] = Field(default=0, description="seed of the demand futures drawn")
    capacity: Capacity = Field(description="the rate one replica sustains at the SLOs")
    demand: Demand = Field(description="the demand forecast: month-1 rate and growth with its uncertainty")
    cloud: Cloud = Field(default_factory=Cloud, description="where cloud capacity is rented or reserved")
    options: Options = Field(default_factory=Options, description="the ways capacity may be held")
    solver_time_limit_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=120.0, description="seconds the optimizer may search (it reports a gap if it stops early)")
