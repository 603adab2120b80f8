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


class _SourcedEntry(_Strict):
    source: str = Field(
        min_length=1, description="where the figure comes from: a URL or document (and when it was read), or "
        "'assumption: ...'")
    as_of: AsOf = Field(description="date or period the figure was collected, e.g. 2026-11")
    confidence: Literal["high", "medium", "low"] = Field(
        default="medium", description="how reliable the figure is judged to be (high, medium, low); for readers, no "
        "calculation reads it")


class SourcedNumber(_SourcedEntry):
    """A figure from the world (a price, a rate, a spec) with its unit, where it comes from and when."""

    value: float = Field(
        ge=0, allow_inf_nan=False, description="the figure, in `unit`: never converted, so it must be in the unit the "
        "field's name states")
    unit: str = Field(description="the figure's unit as text (USD/kWh, W, ratio, ...), shown in the assumptions table")


class CloudPrice(_Strict):
    """One cloud price: a provider's rate for one accelerator-hour of a SKU under one pricing model."""

    provider: str = Field(description="cloud provider, one of the book's providers")
    region: str = Field(default="any", description="provider region, or `any` when the rate is not regional")
    sku: str = Field(description="hardware profile SKU the rate is for (hardware_profiles/<sku>.yaml)")
    pricing: Pricing = Field(description="contract: on_demand, reserved_1y, reserved_3y or spot")
    usd_per_accel_hour: float = Field(
        ge=0, allow_inf_nan=False, description="USD per accelerator-hour (an instance's hourly rate / its "
        "accelerators); source and as_of cite it")
    interruptions_per_hour: NonNegativeFloat | None = Field(
        default=None, description="spot only: reclamations per instance-hour"
    )
    includes_licences: list[str] = Field(
        default_factory=list, description="software licences (engines.yaml `licence.name`) this rate already "
                                          "includes, e.g. a marketplace image with NVIDIA AI Enterprise; others are "
                                          "charged on top")
    source: str = Field(min_length=1, description="where the rate comes from: a URL or document, and when it was read")
    as_of: AsOf = Field(description="date or period the rate was read, e.g. 2026-11")
    confidence: Literal["high", "medium", "low"] = Field(
        default="medium", description="how reliable the figure is judged to be (high, medium, low); for readers, no "
        "calculation reads it")

    @model_validator(mode="after")
    def _spot_rate(self) -> "CloudPrice":
        if self.pricing == "spot" and self.interruptions_per_hour is None:
            raise ValueError("a spot price needs interruptions_per_hour")
        if self.pricing != "spot" and self.interruptions_per_hour is not None:
            raise ValueError("interruptions_per_hour applies to spot prices only")
        return self


class ServerPrice(_SourcedEntry):
    """Purchase price of one accelerator of a SKU (the rest of the server is in on_prem.*_usd_per_node)."""

    sku: str = Field(description="hardware profile SKU")
    accelerator_usd: float = Field(
        ge=0, allow_inf_nan=False, description="purchase price of one accelerator without its server, USD; source and "
        "as_of cite it")


class IdlePower(_SourcedEntry):
    sku: str = Field(description="hardware profile SKU")
    idle_w: float = Field(
        ge=0, allow_inf_nan=False, description="power of one idle accelerator, W, for profiles whose spec gives no "
        "idle_w; source and as_of cite it")


class Procurement(_SourcedEntry):
    """How soon, and how much, capacity of a SKU can be had ahead of demand (read by `simfactory plan-growth`):
    owned hardware from order to service, or a cloud reservation from signature to usable capacity."""

    sku: str = Field(description="hardware profile SKU; the book must price it (a servers or cloud row)")
    channel: Literal["own", "reserved"] = Field(
        description="own: buying the hardware (order to in service); reserved: a 1- or 3-year cloud reservation")
    provider: str | None = Field(
        default=None, description="reserved only: the provider the row is for; unset: any provider without its own "
                                  "row")
    lead_time_months: Annotated[int, Field(ge=0, le=60)] = Field(
        description="whole months from the decision to usable capacity (0: the month it is decided)")
    max_accelerators_per_month: Annotated[int, Field(ge=0, le=10_000_000)] | None = Field(
        default=None, description="accelerators that can come into service in one month (allocation, delivery and "
                                  "installation); unset: no stated limit")

    @model_validator(mode="after")
    def _provider_for_reserved(self) -> "Procurement":
        if self.channel == "own" and self.provider is not None:
            raise ValueError("provider: applies to reserved rows only (owned hardware has no cloud provider)")
        return self


class ResaleCurve(_SourcedEntry):
    """What owned accelerators fetch on the second-hand market, as a fraction of their purchase price, by age.
    The TCO over a horizon credits this market value at its end; depreciation (the per-hour capex) stays
    straight-line to `residual_value_fraction`, an accounting convention."""

    months: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        min_length=1, description="ages in months, increasing from 0")
    fraction: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        min_length=1, description="market value at each age, a fraction (0-1) of the purchase price; source / as_of "
        "cite the curve")

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
    """Owned-hardware assumptions: each a sourced figure (value, unit, source, as_of); a pool's `on_prem` may replace
    any of them."""

    depreciation_years: SourcedNumber = Field(description="straight-line depreciation period of owned hardware, years")
    residual_value_fraction: SourcedNumber = Field(
        description="book value left at the end of depreciation, a fraction (0-1) of the purchase price")
    resale_value: ResaleCurve | None = Field(
        default=None, description="market value by age for the TCO horizon; without it the book value is credited")
    usd_per_kwh: SourcedNumber = Field(description="electricity price, USD per kWh")
    pue: SourcedNumber = Field(
        description="power usage effectiveness, facility power / IT power (>= 1): multiplies the energy bill")
    colocation_usd_per_kw_month: SourcedNumber = Field(
        description="hosting price, USD per provisioned kW (accelerator TDP + host power) per month")
    staff_usd_per_year: SourcedNumber = Field(description="cost of one operations engineer, USD per year")
    nodes_per_staff: SourcedNumber = Field(
        description="nodes one engineer runs: staff cost = nodes / this x staff_usd_per_year")
    accelerators_per_node: SourcedNumber = Field(
        description="accelerators per server node: node costs, host power and staff are shared pro rata")
    host_usd_per_node: SourcedNumber = Field(
        description="the server without its accelerators (CPUs, memory, NICs, chassis), USD per node; added to "
        "servers[].accelerator_usd (an all-in server_usd_per_accel includes it)")
    network_usd_per_node: SourcedNumber = Field(
        description="a node's share of the switch fabric, USD per node (as host_usd_per_node)")
    storage_usd_per_node: SourcedNumber = Field(
        description="a node's share of shared storage, USD per node (as host_usd_per_node)")
    host_power_w_per_node: SourcedNumber = Field(description="power of a node besides its accelerators, W")
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
    """Reference network and storage prices, each a sourced figure (value, unit, source, as_of)."""

    egress_usd_per_gb: SourcedNumber = Field(
        description="internet egress price, USD per GB: the cost stack's internet egress line (answers sent to "
        "callers); traffic between regions is priced by the scenario's network section")
    storage_usd_per_gb_month: SourcedNumber = Field(
        description="object-storage price, USD per GB-month: the cost stack's model weights, logs and replicas")


class SupportTier(_Strict):
    """One band of a tiered support price: this fraction of the monthly cloud bill between the previous band's
    upper bound and this one's."""

    up_to_usd_per_month: NonNegativeFloat | None = Field(
        description="upper bound of the band, USD of monthly cloud spend; null: no bound (the last band)")
    fraction: Annotated[float, Field(ge=0, le=1)] = Field(description="fraction (0-1) of the spend in this band")


class SupportPlan(_SourcedEntry):
    """A cloud provider's published support plan priced on the monthly bill: the greater of a minimum and the sum
    of each band's fraction of the spend in it (a tax-bracket schedule)."""

    name: str = Field(min_length=1, description="the plan, e.g. AWS Business Support")
    minimum_usd_per_month: NonNegativeFloat = Field(description="the plan's monthly minimum, USD")
    tiers: list[SupportTier] = Field(min_length=1, description="the bands, increasing; the last has no upper bound")

    @model_validator(mode="after")
    def _bands(self) -> "SupportPlan":
        bounds = [t.up_to_usd_per_month for t in self.tiers]
        if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
            raise ValueError("tiers: every band but the last needs up_to_usd_per_month; the last has none")
        if any(b <= a for a, b in zip(bounds[:-2], bounds[1:-1])):  # type: ignore[operator]
            raise ValueError("tiers: up_to_usd_per_month must increase")
        return self


class CostStackPrices(_Strict):
    """The sourced defaults of the cost stack beyond compute (simfactory/cost/stack.py): each a figure a scenario's
    finance.cost_stack may replace."""

    bytes_per_token: SourcedNumber = Field(
        description="bytes of text one token carries over the wire, for egress volume (unless the scenario sets "
        "network.bytes_per_token)")
    ingress_usd_per_gb: SourcedNumber = Field(
        description="price of data sent into the cloud from the internet (the prompts), USD per GB")
    inter_region_usd_per_gb: SourcedNumber = Field(
        description="transfer between a provider's regions, USD per GB: what replicating newly written data costs")
    block_storage_usd_per_gb_month: SourcedNumber = Field(
        description="block (SSD volume) storage, USD per GB-month: the prefix cache's SSD tier")
    cluster_usd_per_hour: SourcedNumber = Field(
        description="managed Kubernetes control plane, USD per cluster-hour (the orchestration line with "
        "finance.cost_stack.orchestration.clusters)")
    cloud_support: SupportPlan | None = Field(
        default=None, description="a published cloud support plan (finance.cost_stack.support.cloud_plan: "
        "price_book); absent: only a scenario's own fraction prices support")


class ScorecardDefaults(_Strict):
    """Qualitative 0-10 ratings (10 = best) used by the compare scorecard when a scenario gives none."""

    operational_simplicity: dict[Literal["cloud", "on_prem", "hybrid"], Annotated[float, Field(ge=0, le=10)]] = Field(
        description="0-10 rating (10 best) by fleet mix: cloud, on_prem or hybrid")
    lock_in_freedom: dict[Literal["gpu", "asic"], Annotated[float, Field(ge=0, le=10)]] = Field(
        description="0-10 rating (10 best) by accelerator kind: gpu, or asic when any pool is an ASIC")
    source: str = Field(min_length=1, description="where the ratings come from (a judgement, not a measurement)")
    as_of: AsOf = Field(description="date or period of the ratings, e.g. 2026-11")


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
    currency: Literal["USD"] = Field(default="USD", description="currency of every price (USD only)")
    providers: list[str] = Field(min_length=1, description="cloud providers this book prices; others are rejected")
    cloud: list[CloudPrice] = Field(
        default_factory=list, description="cloud rates, one row per (provider, region, SKU, pricing); the first row "
        "listed for a combination wins")
    servers: list[ServerPrice] = Field(
        default_factory=list, description="accelerator purchase prices per SKU (the rest of a server is "
        "on_prem.*_usd_per_node)")
    idle_power: list[IdlePower] = Field(
        default_factory=list, description="idle power per SKU, for profiles whose spec gives no idle_w")
    on_prem: OnPremPrices = Field(
        description="owned-hardware assumptions: depreciation, energy, hosting, staff, node costs")
    network: NetworkPrices = Field(description="internet egress and object-storage prices (the cost stack)")
    scorecard: ScorecardDefaults = Field(description="default qualitative ratings of the compare scorecard")
    finance: FinanceDefaults = Field(
        default_factory=FinanceDefaults, description="money-over-time assumptions of the own-vs-rent model (discount "
        "rate)")
    procurement: list[Procurement] = Field(
        default_factory=list, description="lead time and availability of owned hardware and cloud reservations per "
        "SKU (growth plans)")
    cost_stack: CostStackPrices | None = Field(
        default=None, description="sourced defaults of the cost stack beyond compute (bytes per token, transfer, "
        "block storage, cluster fee, support plan); absent: the lines they price say so (not priced)")

    @model_validator(mode="after")
    def _known_providers(self) -> "PriceBook":
        known = set(self.providers)
        for i, c in enumerate(self.cloud):
            if c.provider not in known:
                raise ValueError(
                    f"cloud[{i}].provider: unknown provider {c.provider!r} (known: {', '.join(self.providers)})"
                )
        self._check_procurement()
        return self

    def _check_procurement(self) -> None:
        """Every procurement row names a SKU the book prices and a known provider, once per (SKU, channel,
        provider)."""
        priced = sorted({s.sku for s in self.servers} | {c.sku for c in self.cloud})
        seen: set[tuple[str, str, str | None]] = set()
        for i, r in enumerate(self.procurement):
            if r.sku not in priced:
                raise ValueError(f"procurement[{i}].sku: unknown SKU {r.sku!r}: the book prices no such SKU (priced: "
                                 f"{', '.join(priced)})")
            if r.provider is not None and r.provider not in self.providers:
                raise ValueError(f"procurement[{i}].provider: unknown provider {r.provider!r} (known: "
                                 f"{', '.join(self.providers)})")
            key = (r.sku, r.channel, r.provider)
            if key in seen:
                raise ValueError(f"procurement[{i}]: a second row for {r.sku} {r.channel}"
                                 f"{' ' + r.provider if r.provider else ''}; keep one")
            seen.add(key)

    def procurement_for(self, sku: str, channel: str, provider: str | None = None) -> Procurement | None:
        """The lead time / availability row for a SKU and channel: the provider's own row, else one for any provider."""
        rows = [r for r in self.procurement if r.sku == sku and r.channel == channel]
        return next((r for r in rows if r.provider == provider), None) or next(
            (r for r in rows if r.provider is None), None)

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

    depreciation_years: PositiveFloat | None = Field(
        default=None, description="straight-line depreciation period, years (the TCO then credits book value, not the "
        "resale curve); overrides the price book")
    residual_value_fraction: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="book value left after depreciation, a fraction (0-1) of the purchase price (the "
        "TCO then credits book value, not the resale curve); overrides the price book")
    usd_per_kwh: NonNegativeFloat | None = Field(
        default=None, description="electricity price, USD per kWh; overrides the price book")
    pue: Annotated[float, Field(ge=1.0, le=3.0)] | None = Field(
        default=None, description="power usage effectiveness, facility power / IT power (1-3); overrides the price "
        "book")
    colocation_usd_per_kw_month: NonNegativeFloat | None = Field(
        default=None, description="hosting, USD per provisioned kW per month; overrides the price book")
    staff_usd_per_year: NonNegativeFloat | None = Field(
        default=None, description="cost of one operations engineer, USD per year; overrides the price book")
    nodes_per_staff: PositiveFloat | None = Field(
        default=None, description="nodes one engineer runs; overrides the price book")
    accelerators_per_node: PositiveFloat | None = Field(
        default=None, description="accelerators per server node (node costs, host power and staff are shared pro "
        "rata); overrides the price book")
    software_usd_per_accel_year: NonNegativeFloat | None = Field(
        default=None, description="as pools[].software_usd_per_accel_year (kept for older scenarios)")
    host_usd_per_node: NonNegativeFloat | None = Field(
        default=None, description="the server without its accelerators, USD per node (only with the price book's "
        "accelerator price, not with server_usd_per_accel); overrides the price book")
    network_usd_per_node: NonNegativeFloat | None = Field(
        default=None, description="a node's share of the switch fabric, USD per node (as host_usd_per_node); "
        "overrides the price book")
    storage_usd_per_node: NonNegativeFloat | None = Field(
        default=None, description="a node's share of shared storage, USD per node (as host_usd_per_node); overrides "
        "the price book")
    host_power_w_per_node: NonNegativeFloat | None = Field(
        default=None, description="power of a node besides its accelerators, W; overrides the price book")
    maintenance_fraction_per_year: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="support / maintenance contract, a fraction (0-1) of the purchase price per year; "
        "overrides the price book")
    insurance_fraction_per_year: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="equipment insurance, a fraction (0-1) of the purchase price per year; overrides "
        "the price book")
