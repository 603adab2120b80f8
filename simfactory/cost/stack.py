"""The cost stack beyond the accelerators: storage, networking, orchestration, support, data replication and SLA
penalties, each a line over the measurement window, and the value of latency beside them. Pure functions of
quantities (GB, tokens, hours, violations) and prices; knows nothing of SimPy.

Every line is either priced (an amount, possibly 0 when there is nothing to price) or "not priced (no input)":
an absent input is never read as 0. Money over the window scales to a month by HOURS_PER_MONTH / window hours
(the window taken as representative of steady state) and to 1M tokens by the tokens answered in the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

from simfactory.cost.pool_cost import HOURS_PER_MONTH

PRICED = "priced"
NOT_PRICED = "not priced (no input)"
BYTES_PER_GB = 1e9  # decimal GB, as providers bill transfer and storage

# allocation bases of the unit-economics breakdown (simfactory/metrics/unit_economics.py)
BY_GPU_S = "gpu_s"  # compute: each pool's cost by GPU-seconds on it
BY_COMPUTE = "compute_usd"  # in proportion to the compute each group was allocated
BY_TOKENS = "tokens"  # network and storage: by tokens answered
BY_SUPPORT_BASE = "support_base"  # by each group's share of the bill support is charged on
BY_VIOLATIONS = "violations"  # SLA penalties: by the group's SLO violations
DIRECT = "direct"  # measured per request or per task (cross-region egress, agent tools)


@dataclass(frozen=True)
class Line:
    """One line of the cost stack over the measurement window."""

    key: str  # stable identifier, e.g. "storage_weights"
    category: str  # compute | agent | storage | network | orchestration | support | replication | sla
    item: str  # what a reader sees
    usd: float | None  # None: not priced
    quantity: float | None = None
    quantity_unit: str = ""
    basis: str = ""  # the formula with its numbers, or why nothing is charged
    missing: str = ""  # the input that would price it (not priced lines)
    allocated_by: str = BY_TOKENS

    @property
    def status(self) -> str:
        return PRICED if self.usd is not None else NOT_PRICED

    def row(self, window_h: float, tokens: float) -> dict[str, Any]:
        """The line as summary.json writes it, with its per-month and per-1M-token figures."""
        out = plain_dict(self)
        out["status"] = self.status
        out["usd_per_month"] = per_month(self.usd, window_h)
        out["usd_per_1m_tokens"] = self.usd * 1e6 / tokens if self.usd is not None and tokens else None
        return out


def plain_dict(obj: Any) -> dict[str, Any]:
    """dataclasses.asdict for a dataclass whose fields are plain values (numbers, strings, None): the same dict without
    asdict's recursive deep copy, which a sweep point's summary paid ~50 times (cost lines and assumptions)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def fmt(x: float) -> str:
    """A number in a line's basis: 4 significant digits, thousands separators, never scientific notation (a month's
    share of a 90-second window is 0.00002854, not 2.854e-05)."""
    if not x or not math.isfinite(x):
        return f"{x:g}"
    digits = min(12, max(0, 3 - math.floor(math.log10(abs(x)))))
    text = f"{x:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def not_priced(key: str, category: str, item: str, missing: str, quantity: float | None = None,
               quantity_unit: str = "", allocated_by: str = BY_TOKENS) -> Line:
    return Line(key, category, item, None, quantity, quantity_unit, "", missing, allocated_by)


def window_months(window_h: float) -> float:
    return window_h / HOURS_PER_MONTH


def per_month(usd: float | None, window_h: float) -> float | None:
    """A window's amount as a month's (the window taken as representative)."""
    return usd / window_months(window_h) if usd is not None and window_h > 0 else None


def gb_month_usd(gb: float, usd_per_gb_month: float, months: float) -> float:
    """Storage held for `months`: GB x price x months."""
    return gb * usd_per_gb_month * months


def log_storage_usd(requests: float, bytes_per_request: float, retention_months: float,
                    usd_per_gb_month: float) -> float:
    """What the window's logs cost over their retention: requests x bytes / 1e9 x retention months x price. At
    steady state this is also a window's share of the monthly bill (each month's logs are held `retention` months)."""
    return requests * bytes_per_request / BYTES_PER_GB * retention_months * usd_per_gb_month


def transfer_usd(tokens: float, bytes_per_token: float, usd_per_gb: float) -> float:
    """Data sent: tokens x bytes per token / 1e9 x price per GB."""
    return tokens * bytes_per_token / BYTES_PER_GB * usd_per_gb


def control_plane_usd(clusters: int, usd_per_cluster_hour: float, hours: float) -> float:
    """Managed Kubernetes control planes: clusters x price per cluster-hour x hours."""
    return clusters * usd_per_cluster_hour * hours


def tiered_usd(monthly_spend_usd: float, bounds: Sequence[float | None], fractions: Sequence[float],
               minimum_usd: float) -> float:
    """A support plan's monthly price: max(minimum, sum over bands of fraction x spend within the band), the bands
    cumulative like tax brackets (AWS: 10% of the first $10K + 7% of $10K-80K + 5% of $80K-250K + 3% above,
    at least $100; https://aws.amazon.com/premiumsupport/pricing/). `bounds[-1]` is None (no upper bound)."""
    charged, lower = 0.0, 0.0
    for upper, fraction in zip(bounds, fractions):
        top = monthly_spend_usd if upper is None else min(monthly_spend_usd, upper)
        if top > lower:
            charged += (top - lower) * fraction
        if upper is None or monthly_spend_usd <= upper:
            break
        lower = upper
    return max(minimum_usd, charged)


def replication_usd(gb: float, copies: int, usd_per_gb_month: float, months: float, written_gb: float,
                    inter_region_usd_per_gb: float) -> float:
    """Extra copies held (GB x copies x storage price x months) plus the window's new data sent to each copy
    (written GB x copies x transfer price)."""
    return gb * copies * usd_per_gb_month * months + written_gb * copies * inter_region_usd_per_gb


def sla_penalty_usd(violations: int, usd_per_violation: float | None, attainment: float | None,
                    target: float | None, usd_per_point_per_month: float | None, months: float) -> float:
    """violations x penalty per violation + max(0, target - attainment) x 100 points x penalty per point per month x
    months (the window's share of a monthly credit); either part only when its inputs are given."""
    usd = violations * usd_per_violation if usd_per_violation is not None else 0.0
    if target is not None and usd_per_point_per_month is not None and attainment is not None:
        usd += max(0.0, target - attainment) * 100.0 * usd_per_point_per_month * months
    return usd


def latency_value_usd(saved_s: float, revenue_usd_per_s_saved: float) -> float:
    """Revenue per second saved x the seconds saved against the reference, summed over the answered units
    (negative: slower than the reference, an opportunity cost)."""
    return saved_s * revenue_usd_per_s_saved


def stack_totals(lines: list[Line], window_h: float, tokens: float, successful_requests: int,
                 successful_tasks: int) -> dict[str, Any]:
    """The priced lines added up (those not priced are named, not counted as 0), per month, per 1M tokens, per
    successful request and task."""
    total = sum(x.usd for x in lines if x.usd is not None)
    return {
        "total_usd": total,
        "total_usd_per_month": per_month(total, window_h),
        "usd_per_1m_tokens": total * 1e6 / tokens if tokens else None,
        "usd_per_successful_request": total / successful_requests if successful_requests else None,
        "usd_per_successful_task": total / successful_tasks if successful_tasks else None,
        "not_priced": [x.item for x in lines if x.usd is None],
    }
