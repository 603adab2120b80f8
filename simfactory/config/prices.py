"""The price book (hardware_profiles/prices.yaml): every price and cost assumption the TCO model uses,
each with its source and date, so a finance reader can audit the figures and a scenario can replace them.

Cloud prices are one entry per (provider, region, SKU, pricing model); on-prem assumptions are sourced
numbers; accelerator purchase prices are per SKU. Unknown providers, negative or non-finite numbers and
figures without a source are rejected when the file is read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.profile import AsOf

Pricing = Literal["on_demand", "reserved_1y", "reserved_3y", "spot"]
PRICINGS: tuple[str, ...] = ("on_demand", "reserved_1y", "reserved_3y", "spot")


class _Strict(StrictModel):
    pass


class SourcedNumber(_Strict):
    value: float = Field(ge=0, allow_inf_nan=False)
    unit: str
    source: str = Field(min_length=1)
    as_of: AsOf
    confidence: Literal["high", "medium", "low"] = "medium"


class CloudPrice(_Strict):
    """One cloud price: a provider's rate for one accelerator-hour of a SKU under one pricing model."""

    provider: str
    region: str = Field(default="any", description="provider region, or `any` when the rate is not regional")
    sku: str
    pricing: Pricing
    usd_per_accel_hour: float = Field(ge=0, allow_inf_nan=False)
    interruptions_per_hour: NonNegativeFloat | None = Field(
        default=None, description="spot only: reclamations per instance-hour"
    )
    includes_licences: list[str] = Field(
        default_factory=list, description="software licences (engines.yaml `licence.name`) this rate already "
                                          "includes, e.g. a marketplace image with NVIDIA AI Enterprise; others are "
                                          "charged on top")
    source: str = Field(min_length=1)
    as_of: AsOf
    confidence: Literal["high", "medium", "low"] = "medium"

    @model_validator(mode="after")
    def _spot_rate(self) -> "CloudPrice":
        if self.pricing == "spot" and self.interruptions_per_hour is None:
            raise ValueError("a spot price needs interruptions_per_hour")
        if self.pricing != "spot" and self.interruptions_per_hour is not None:
            raise ValueError("interruptions_per_hour applies to spot prices only")
        return self


class _SourcedEntry(_Strict):
    source: str = Field(min_length=1)
    as_of: AsOf
    confidence: Literal["high", "medium", "low"] = "medium"


class ServerPrice(_SourcedEntry):
    """Purchase price of one accelerator of a SKU (the rest of the server is in on_prem.*_usd_per_node)."""

    sku: str
    accelerator_usd: float = Field(ge=0, allow_inf_nan=False)


class IdlePower(_SourcedEntry):
    sku: str
    idle_w: float = Field(ge=0, allow_inf_nan=False)


class ResaleCurve(_SourcedEntry):
    """What owned accelerators fetch on the second-hand market, as a fraction of their purchase price, by age.
    The TCO over a horizon credits this market value at its end; depreciation (the per-hour capex) stays
    straight-line to `residual_value_fraction`, an accounting convention."""

    months: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(min_length=1)
    fraction: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> "ResaleCurve":
        if len(self.months) != len(self.fraction):
            raise ValueError("months and fraction need one value each per point")
        if any(b <= a for a, b in zip(self.months, self.months[1:])):
            raise ValueError("months: must increase")
        if self.months[0] != 0:
            raise ValueError("months: the curve starts at 0 (new hardware, usually fraction 1.0)")
        return self


class OnPremPrices(_Strict):
    depreciation_years: SourcedNumber
    residual_value_fraction: SourcedNumber
    resale_value: ResaleCurve | None = Field(
        default=None, description="market value by age for the TCO horizon; without it the book value is credited")
    usd_per_kwh: SourcedNumber
    pue: SourcedNumber
    colocation_usd_per_kw_month: SourcedNumber
    staff_usd_per_year: SourcedNumber
    nodes_per_staff: SourcedNumber
    accelerators_per_node: SourcedNumber
    host_usd_per_node: SourcedNumber
    network_usd_per_node: SourcedNumber
    storage_usd_per_node: SourcedNumber
    host_power_w_per_node: SourcedNumber
    maintenance_fraction_per_year: SourcedNumber | None = Field(
        default=None, description="hardware support / maintenance contract, a fraction of the purchase price per year; "
                                  "absent: not charged (recorded as such)")
    insurance_fraction_per_year: SourcedNumber | None = Field(
        default=None, description="property / equipment insurance, a fraction of the purchase price per year; absent: "
                                  "not charged (recorded as such)")

    @model_validator(mode="before")
    @classmethod
    def _no_book_licence(cls, data: object) -> object:
        for name in ("software_usd_per_accel_year", "software_vendors"):
            if isinstance(data, dict) and name in data:
                raise ValueError(f"{name}: licences follow the serving engine now (hardware_profiles/engines.yaml "
                                 "`licence`), on cloud and owned pools alike; remove this row, or set "
                                 "pools[].software_usd_per_accel_year in a scenario")
        return data

    @model_validator(mode="after")
    def _ranges(self) -> "OnPremPrices":
        if self.pue.value < 1.0:
            raise ValueError("pue.value: must be >= 1 (facility power over IT power)")
        if self.residual_value_fraction.value > 1.0:
            raise ValueError("residual_value_fraction.value: must be <= 1")
        for name in ("maintenance_fraction_per_year", "insurance_fraction_per_year"):
            n = getattr(self, name)
            if n is not None and n.value > 1.0:
                raise ValueError(f"{name}.value: must be <= 1 (a fraction of the purchase price per year)")
        for name in ("depreciation_years", "nodes_per_staff", "accelerators_per_node"):
            if getattr(self, name).value <= 0:
                raise ValueError(f"{name}.value: must be > 0")
        return self


class NetworkPrices(_Strict):
    egress_usd_per_gb: SourcedNumber
    storage_usd_per_gb_month: SourcedNumber


class ScorecardDefaults(_Strict):
    """Qualitative 0-10 ratings (10 = best) used by the compare scorecard when a scenario gives none."""

    operational_simplicity: dict[Literal["cloud", "on_prem", "hybrid"], Annotated[float, Field(ge=0, le=10)]]
    lock_in_freedom: dict[Literal["gpu", "asic"], Annotated[float, Field(ge=0, le=10)]]
    source: str = Field(min_length=1)
    as_of: AsOf


class FinanceDefaults(_Strict):
    """Money-over-time assumptions of the own-vs-rent decision model (simfactory/cost/decision.py)."""

    discount_rate_annual: SourcedNumber | None = Field(
        default=None, description="annual discount rate (cost of capital) for the present value of monthly cash flows; "
                                  "absent: cash flows are not discounted (recorded as such); finance.discount_rate_annual "
                                  "in a scenario replaces it")

    @model_validator(mode="after")
    def _rate(self) -> "FinanceDefaults":
        if self.discount_rate_annual is not None and self.discount_rate_annual.value > 1.0:
            raise ValueError("discount_rate_annual.value: must be <= 1 (a fraction per year: 0.08 is 8%)")
        return self


class PriceBook(_Strict):
    currency: Literal["USD"] = "USD"
    providers: list[str] = Field(min_length=1, description="cloud providers this book prices; others are rejected")
    cloud: list[CloudPrice] = Field(default_factory=list)
    servers: list[ServerPrice] = Field(default_factory=list)
    idle_power: list[IdlePower] = Field(default_factory=list)
    on_prem: OnPremPrices
    network: NetworkPrices
    scorecard: ScorecardDefaults
    finance: FinanceDefaults = Field(default_factory=FinanceDefaults)

    @model_validator(mode="after")
    def _known_providers(self) -> "PriceBook":
        known = set(self.providers)
        for i, c in enumerate(self.cloud):
            if c.provider not in known:
                raise ValueError(
                    f"cloud[{i}].provider: unknown provider {c.provider!r} (known: {', '.join(self.providers)})"
                )
        return self

    def cloud_price(self, provider: str, sku: str, pricing: str, region: str | None) -> CloudPrice | None:
        """The entry for this provider/SKU/pricing, preferring the pool's region, else one not tied to a region,
        else the first listed."""
        hits = [c for c in self.cloud if c.provider == provider and c.sku == sku and c.pricing == pricing]
        for pick in (lambda c: c.region == region, lambda c: c.region == "any", lambda c: True):
            for c in hits:
                if pick(c):
                    return c
        return None

    def on_demand_offers(self, sku: str) -> list[CloudPrice]:
        """This SKU's on-demand rows, cheapest first (the first row listed per provider: the one it is priced at)."""
        firsts: dict[str, CloudPrice] = {}
        for c in self.cloud:
            if c.sku == sku and c.pricing == "on_demand":
                firsts.setdefault(c.provider, c)
        return sorted(firsts.values(), key=lambda c: c.usd_per_accel_hour)

    def row_priced_at(self, sku: str, usd_per_accel_hour: float) -> CloudPrice | None:
        """The on-demand row a profile's default cloud price comes from (same SKU and rate), if the book has it:
        names the provider of the price a pool that names none gets."""
        return next((c for c in self.on_demand_offers(sku) if abs(c.usd_per_accel_hour - usd_per_accel_hour) < 5e-4),
                    None)

    def server_price(self, sku: str) -> ServerPrice | None:
        return next((s for s in self.servers if s.sku == sku), None)

    def idle_w(self, sku: str) -> IdlePower | None:
        return next((p for p in self.idle_power if p.sku == sku), None)


class OnPremOverrides(_Strict):
    """A scenario's own on-prem assumptions; each replaces the price book's figure (recorded as source: scenario)."""

    depreciation_years: PositiveFloat | None = None
    residual_value_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    usd_per_kwh: NonNegativeFloat | None = None
    pue: Annotated[float, Field(ge=1.0, le=3.0)] | None = None
    colocation_usd_per_kw_month: NonNegativeFloat | None = None
    staff_usd_per_year: NonNegativeFloat | None = None
    nodes_per_staff: PositiveFloat | None = None
    accelerators_per_node: PositiveFloat | None = None
    software_usd_per_accel_year: NonNegativeFloat | None = Field(
        default=None, description="as pools[].software_usd_per_accel_year (kept for older scenarios)")
    host_usd_per_node: NonNegativeFloat | None = None
    network_usd_per_node: NonNegativeFloat | None = None
    storage_usd_per_node: NonNegativeFloat | None = None
    host_power_w_per_node: NonNegativeFloat | None = None
    maintenance_fraction_per_year: Annotated[float, Field(ge=0, le=1)] | None = None
    insurance_fraction_per_year: Annotated[float, Field(ge=0, le=1)] | None = None
