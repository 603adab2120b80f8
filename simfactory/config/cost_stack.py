"""finance.cost_stack: the inputs of the cost lines beyond compute (simfactory/cost/stack.py).

Every figure here is either an override of a sourced price-book figure (the price book's `network` and
`cost_stack` sections) or a user input with no default: a line whose input is absent is reported as
"not priced (no input)", never as 0. Set a figure to 0 to say "we pay none of this"."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, model_validator

from simfactory.config.base import StrictModel

Fraction = Annotated[float, Field(ge=0, le=1)]
# revenue per second of latency saved, per request or task: $1,000/s is beyond any business case, and a figure far
# beyond it (1e15) times a run's seconds overflows the monthly value into nonsense
MAX_REVENUE_USD_PER_S = 1e3


class _Strict(StrictModel):
    pass


class StorageInputs(_Strict):
    """Storage beyond the accelerators: model weights and the prefix cache's SSD tier are priced from the price book;
    logs and provisioned IOPS only when you give their figures."""

    usd_per_gb_month: NonNegativeFloat | None = Field(
        default=None, description="object-storage price, USD per GB-month (weights, logs, replicas); overrides the "
        "price book's network.storage_usd_per_gb_month")
    block_usd_per_gb_month: NonNegativeFloat | None = Field(
        default=None, description="block (SSD volume) price, USD per GB-month, for the prefix cache's SSD tier; "
        "overrides the price book's cost_stack.block_storage_usd_per_gb_month")
    log_bytes_per_request: NonNegativeFloat | None = Field(
        default=None, description="user input, no default: bytes of request/response logs kept per request (with "
        "log_retention_months); absent: logs are not priced")
    log_retention_months: PositiveFloat | None = Field(
        default=None, description="user input, no default: months a request's logs are kept (with "
        "log_bytes_per_request)")
    provisioned_iops: NonNegativeFloat | None = Field(
        default=None, description="user input, no default: I/O operations per second provisioned beyond what the "
        "volumes include (with usd_per_iops_month); absent: IOPS are not priced")
    usd_per_iops_month: NonNegativeFloat | None = Field(
        default=None, description="user input, no default: price of one provisioned IOPS for a month, USD (with "
        "provisioned_iops)")

    @model_validator(mode="after")
    def _pairs(self) -> "StorageInputs":
        for a, b in (("log_bytes_per_request", "log_retention_months"), ("provisioned_iops", "usd_per_iops_month")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                given, missing = (a, b) if getattr(self, a) is not None else (b, a)
                raise ValueError(f"{missing}: needed with {given} (the two price one line together)")
        return self


class NetworkInputs(_Strict):
    """Internet egress of the answers plain requests send back to their callers."""

    egress_usd_per_gb: NonNegativeFloat | None = Field(
        default=None, description="internet egress price, USD per GB; overrides the price book's "
        "network.egress_usd_per_gb (0: egress included in your contract)")


class OrchestrationInputs(_Strict):
    """A managed platform's fees: a control plane per cluster-hour, and/or a fee on the compute it runs."""

    clusters: NonNegativeInt | None = Field(
        default=None, le=10_000, description="user input, no default: managed Kubernetes clusters the fleet runs "
        "in, each paying the control-plane fee; absent: the control plane is not priced")
    usd_per_cluster_hour: NonNegativeFloat | None = Field(
        default=None, description="control-plane fee, USD per cluster-hour; overrides the price book's "
        "cost_stack.cluster_usd_per_hour")
    platform_fee_fraction: Fraction | None = Field(
        default=None, description="user input, no default: a managed platform's fee as a fraction (0-1) of the "
        "compute cost; absent: not priced")


class SupportInputs(_Strict):
    """A support contract on the cloud bill (owned hardware's support is its pool's maintenance contract, already in
    compute: pools[].on_prem.maintenance_fraction_per_year)."""

    cloud_plan: Literal["price_book"] | None = Field(
        default=None, description="price_book: the price book's published plan (cost_stack.cloud_support, tiered "
        "on the monthly cloud bill); absent with no cloud_fraction: support is not priced")
    cloud_fraction: Fraction | None = Field(
        default=None, description="user input, no default: your contract's fraction (0-1) of the cloud bill "
        "(cloud compute, storage, network, control plane)")

    @model_validator(mode="after")
    def _one(self) -> "SupportInputs":
        if self.cloud_plan is not None and self.cloud_fraction is not None:
            raise ValueError("cloud_fraction: give cloud_plan or cloud_fraction, not both (one contract)")
        return self


class ReplicationInputs(_Strict):
    """Copies of the stored data kept elsewhere (another region, a backup)."""

    copies: NonNegativeInt | None = Field(
        default=None, le=100, description="user input, no default: extra copies of the stored data; absent: "
        "replication is not priced")
    gb: NonNegativeFloat | None = Field(
        default=None, description="GB replicated; default: what the storage lines hold (model weights, plus the "
        "logs kept at steady state when logs are priced)")


class SlaInputs(_Strict):
    """What missing the SLO costs: credits or penalties per violation, and/or per point of attainment below a
    contracted target. A violation is a measured request that did not meet its service class's SLO (or, without
    latency targets, was not answered: rejected, shed, failed, aborted)."""

    usd_per_violation: NonNegativeFloat | None = Field(
        default=None, description="user input, no default: penalty per request that missed its SLO, USD")
    target_attainment: Fraction | None = Field(
        default=None, description="user input, no default: contracted SLO attainment (0-1), with "
        "usd_per_point_below_per_month")
    usd_per_point_below_per_month: NonNegativeFloat | None = Field(
        default=None, description="user input, no default: penalty per percentage point of attainment below "
        "target_attainment, USD per month (the simulated window taken as representative of the month)")

    @model_validator(mode="after")
    def _pair(self) -> "SlaInputs":
        if (self.target_attainment is None) != (self.usd_per_point_below_per_month is None):
            missing = "target_attainment" if self.target_attainment is None else "usd_per_point_below_per_month"
            raise ValueError(f"{missing}: target_attainment and usd_per_point_below_per_month go together")
        return self


class LatencyValueInputs(_Strict):
    """The value of speed: revenue per second of latency saved against a stated reference. Reported beside the
    costs (a benefit when faster than the reference, an opportunity cost when slower), never added to them."""

    revenue_usd_per_s_saved: float | None = Field(
        default=None, ge=0, le=MAX_REVENUE_USD_PER_S, description="user input, no default: revenue per second of latency saved, per answered "
        "request (per successful task for agent classes), USD; absent: not priced")
    reference_latency_s: NonNegativeFloat | None = Field(
        default=None, description="the latency the value is measured against, seconds (with "
        "revenue_usd_per_s_saved)")
    metric: Literal["e2e", "ttft"] = Field(
        default="e2e", description="which latency: e2e (request end to end; a task's end to end for agent "
        "classes) or ttft (time to first token; plain requests only)")

    @model_validator(mode="after")
    def _pair(self) -> "LatencyValueInputs":
        if (self.revenue_usd_per_s_saved is None) != (self.reference_latency_s is None):
            missing = "reference_latency_s" if self.revenue_usd_per_s_saved is not None else "revenue_usd_per_s_saved"
            raise ValueError(f"{missing}: revenue_usd_per_s_saved and reference_latency_s go together")
        return self


class CostStack(_Strict):
    """The whole cost stack beyond the accelerators: storage, networking, orchestration, support, replication,
    SLA penalties and the value of latency. Absent inputs leave their line "not priced (no input)"."""

    storage: StorageInputs = Field(default_factory=StorageInputs, description="weights, KV tiers, logs, IOPS")
    network: NetworkInputs = Field(default_factory=NetworkInputs, description="internet egress price")
    orchestration: OrchestrationInputs = Field(
        default_factory=OrchestrationInputs, description="control-plane clusters and a platform fee")
    support: SupportInputs = Field(default_factory=SupportInputs, description="a support contract on the cloud bill")
    replication: ReplicationInputs = Field(
        default_factory=ReplicationInputs, description="extra copies of the stored data")
    sla: SlaInputs = Field(default_factory=SlaInputs, description="penalties for SLO violations")
    latency_value: LatencyValueInputs = Field(
        default_factory=LatencyValueInputs, description="revenue per second saved against a reference latency")
