"""finance.cost_stack of summary.json: every cost line of the run (compute, agent tools, storage, networking,
orchestration, support, replication, SLA penalties), each priced from the price book or the scenario's
finance.cost_stack, or reported as not priced (never as 0); the value of latency beside them; and every input in
the assumptions table. The arithmetic is simfactory/cost/stack.py; the unit economics by application, tenant, tier
and workflow path are simfactory/metrics/unit_economics.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from simfactory.config.prices import SourcedNumber
from simfactory.cost import stack as cs
from simfactory.cost.stack import fmt, plain_dict
from simfactory.cost.fleet import Assumption, PoolCost
from simfactory.hardware.memory import weight_bytes
from simfactory.metrics import cost_units
from simfactory.metrics.unit_economics import breakdown
from simfactory.resolve import ResolvedScenario

FIELD = "finance.cost_stack"


@dataclass
class Ctx:
    """What every line reads: the run, its window, the counted units (cost_units.cells) and the notes it adds."""

    rs: ResolvedScenario
    costs: list[PoolCost]
    window_h: float
    cells: cost_units.Cells
    notes: list[Assumption]
    unallocated_agent_usd: float = 0.0  # reviewer seats of classes with no measured task

    @property
    def share(self) -> float:
        """The fleet share this run prices (ResolvedScenario.fleet_share): what the user gives for the whole fleet
        (clusters, IOPS, a monthly credit per SLA point, the support plan's tiers) is charged at this share."""
        return self.rs.fleet_share

    def of_share(self, basis: str) -> str:
        return basis if self.share == 1.0 else f"{basis}; these shards' share {fmt(self.share)} of the fleet's"

    @property
    def months(self) -> float:
        return cs.window_months(self.window_h)

    def total(self, column: str) -> float:
        return float(self.cells[column].sum()) if column in self.cells else 0.0

    def figure(self, name: str, override: float | None, field: str, book: SourcedNumber | None) -> float | None:
        """A price: the scenario's (finance.cost_stack.<field>), else the price book's sourced figure, else None."""
        if override is not None:
            self.notes.append(Assumption(f"cost stack: {name}", override, book.unit if book else "",
                                         f"scenario {FIELD}.{field}"))
            return override
        if book is None:
            self.notes.append(Assumption(f"cost stack: {name}", "not given", "", f"not in the price book; set "
                                         f"{FIELD}.{field}"))
            return None
        self.notes.append(Assumption(f"cost stack: {name}", book.value, book.unit, book.source, str(book.as_of)))
        return book.value

    def user(self, name: str, value: float | str | None, unit: str, field: str) -> None:
        """A user input with no default, recorded given or not."""
        self.notes.append(Assumption(f"cost stack: {name}", "not given" if value is None else value, unit,
                                     f"user input ({FIELD}.{field})" if value is not None
                                     else f"user input, no default ({FIELD}.{field}): its line is not priced"))


def compute_line(c: Ctx) -> cs.Line:
    """The serving accelerators over the window (the unit_economics.serving_window_usd figure)."""
    usd = sum(p.serving_usd_per_hour for p in c.costs) * c.window_h
    basis = "; ".join(f"{p.pool}: {fmt(p.serving_usd_per_hour)} USD/h x {fmt(c.window_h)} h" for p in c.costs)
    return cs.Line("compute", "compute", "compute: serving accelerators", usd, c.window_h, "hours", basis,
                   allocated_by=cs.BY_GPU_S)


def agent_line(c: Ctx) -> cs.Line | None:
    """Tools, retrieval and reviewers of the measured agent tasks (per use, plus idle provisioned seats)."""
    if not any(k.agent is not None for k in c.rs.classes):
        return None
    usd = c.total("agent_usd") + c.unallocated_agent_usd
    return cs.Line("agent_external", "agent", "agent tools, retrieval and reviewers", usd, c.total("tasks"), "tasks",
                   "per use as the workloads price them, plus provisioned reviewer seats beyond their handled time",
                   allocated_by=cs.DIRECT)


def weights_line(c: Ctx, price: float | None) -> tuple[cs.Line, float]:
    """One copy of each model's weights (per model and dtype) in object storage over the window."""
    models = {(d.config.model, d.config.dtype): weight_bytes(d.arch, d.config.dtype) for d in c.rs.deployments}
    share = c.share  # a sampled run's shards hold their share of the one copy (fleet/sampling.py scales it)
    gb = sum(models.values()) / cs.BYTES_PER_GB * share
    item = "storage: model weights"
    if price is None:
        return cs.not_priced("storage_weights", "storage", item, f"{FIELD}.storage.usd_per_gb_month", gb, "GB"), gb
    held = f"{fmt(gb)} GB ({len(models)} model(s))" if share == 1.0 else \
        f"{fmt(gb / share)} GB ({len(models)} model(s), one copy for the fleet; these shards' share {fmt(share)})"
    basis = f"{held} x {fmt(price)} USD/GB-month x {fmt(c.months)} months"
    return cs.Line("storage_weights", "storage", item, cs.gb_month_usd(gb, price, c.months), gb, "GB", basis), gb


def kv_tier_line(c: Ctx) -> cs.Line:
    """The prefix cache's SSD tier (prefix_cache_ssd_tokens x KV bytes per token) at the block-storage price, per
    replica (autoscaled: its maximum); the host-memory tier is in the accelerator's host (the instance or server
    price), counted but not charged again."""
    host_gb = ssd_gb = 0.0
    for d in c.rs.deployments:
        if not d.config.prefix_cache_tokens:
            continue  # without a device tier there is no prefix cache, so no lower tier either
        n = d.config.autoscaling.max_replicas if d.config.autoscaling is not None else d.config.replicas
        per_token = d.memory.kv_bytes_per_token / cs.BYTES_PER_GB
        host_gb += n * d.config.prefix_cache_host_tokens * per_token
        ssd_gb += n * d.config.prefix_cache_ssd_tokens * per_token
    item = "storage: KV cache host and SSD tiers"
    note = f"host-memory tier {fmt(host_gb)} GB: in the instance or server price, not charged again"
    if not ssd_gb:
        return cs.Line("storage_kv_tiers", "storage", item, 0.0, 0.0, "GB (SSD tier)", "no SSD tier; " + note)
    book = c.rs.price_book.cost_stack
    price = c.figure("block storage (prefix cache SSD tier)",
                     c.rs.scenario.finance.cost_stack.storage.block_usd_per_gb_month,
                     "storage.block_usd_per_gb_month", book.block_storage_usd_per_gb_month if book else None)
    if price is None:
        return cs.not_priced("storage_kv_tiers", "storage", item, f"{FIELD}.storage.block_usd_per_gb_month", ssd_gb,
                             "GB (SSD tier)")
    basis = f"SSD tier {fmt(ssd_gb)} GB x {fmt(price)} USD/GB-month x {fmt(c.months)} months; {note}"
    return cs.Line("storage_kv_tiers", "storage", item, cs.gb_month_usd(ssd_gb, price, c.months), ssd_gb,
                   "GB (SSD tier)", basis)


def log_line(c: Ctx, price: float | None) -> tuple[cs.Line, float, float]:
    """Logs of the window's requests, held for their retention: (line, GB written, GB held at steady state)."""
    s = c.rs.scenario.finance.cost_stack.storage
    c.user("log bytes per request", s.log_bytes_per_request, "bytes", "storage.log_bytes_per_request")
    c.user("log retention", s.log_retention_months, "months", "storage.log_retention_months")
    n = c.total("requests")
    item = "storage: request logs"
    if s.log_bytes_per_request is None or s.log_retention_months is None or price is None:
        missing = f"{FIELD}.storage.log_bytes_per_request and log_retention_months"
        return cs.not_priced("storage_logs", "storage", item, missing, n, "requests"), 0.0, 0.0
    written = n * s.log_bytes_per_request / cs.BYTES_PER_GB
    held = written / c.months * s.log_retention_months if c.months else 0.0
    usd = cs.log_storage_usd(n, s.log_bytes_per_request, s.log_retention_months, price)
    basis = (f"{fmt(n)} requests x {fmt(s.log_bytes_per_request)} B = {fmt(written)} GB x "
             f"{fmt(s.log_retention_months)} months kept x {fmt(price)} USD/GB-month")
    return cs.Line("storage_logs", "storage", item, usd, written, "GB written", basis), written, held


def iops_line(c: Ctx) -> cs.Line:
    s = c.rs.scenario.finance.cost_stack.storage
    c.user("provisioned IOPS", s.provisioned_iops, "IOPS", "storage.provisioned_iops")
    c.user("IOPS price", s.usd_per_iops_month, "USD/IOPS-month", "storage.usd_per_iops_month")
    item = "storage: provisioned IOPS"
    if s.provisioned_iops is None or s.usd_per_iops_month is None:
        return cs.not_priced("storage_iops", "storage", item,
                             f"{FIELD}.storage.provisioned_iops and usd_per_iops_month")
    usd = s.provisioned_iops * s.usd_per_iops_month * c.months * c.share
    basis = f"{fmt(s.provisioned_iops)} IOPS x {fmt(s.usd_per_iops_month)} USD/IOPS-month x {fmt(c.months)} months"
    return cs.Line("storage_iops", "storage", item, usd, s.provisioned_iops * c.share, "IOPS", c.of_share(basis))


def bytes_per_token(c: Ctx) -> float | None:
    net = c.rs.scenario.network
    if "bytes_per_token" in net.model_fields_set:
        c.notes.append(Assumption("cost stack: bytes per token", net.bytes_per_token, "bytes/token",
                                  "scenario network.bytes_per_token"))
        return net.bytes_per_token
    book = c.rs.price_book.cost_stack
    return c.figure("bytes per token", None, "(network.bytes_per_token)", book.bytes_per_token if book else None)


def internet_line(c: Ctx, bpt: float | None) -> cs.Line:
    """Answers sent back to callers (egress) and prompts received (ingress) by plain request classes; an agent's LLM
    calls travel between the agent runtime and the model inside the platform."""
    book = c.rs.price_book
    egress = c.figure("internet egress", c.rs.scenario.finance.cost_stack.network.egress_usd_per_gb,
                      "network.egress_usd_per_gb", book.network.egress_usd_per_gb)
    ingress = c.figure("internet ingress", None, "(price book cost_stack.ingress_usd_per_gb)",
                       book.cost_stack.ingress_usd_per_gb if book.cost_stack else None)
    out_tok, in_tok = c.total("internet_output_tokens"), c.total("internet_input_tokens")
    item = "network: internet egress and ingress"
    if bpt is None or egress is None or ingress is None:
        return cs.not_priced("network_internet", "network", item, "network.bytes_per_token and the price book's "
                             "cost_stack figures", (out_tok + in_tok) * (bpt or 0) / cs.BYTES_PER_GB, "GB")
    gb_out, gb_in = out_tok * bpt / cs.BYTES_PER_GB, in_tok * bpt / cs.BYTES_PER_GB
    usd = cs.transfer_usd(out_tok, bpt, egress) + cs.transfer_usd(in_tok, bpt, ingress)
    basis = (f"out {fmt(out_tok)} tokens x {fmt(bpt)} B = {fmt(gb_out)} GB x {fmt(egress)} USD/GB; in "
             f"{fmt(gb_in)} GB x {fmt(ingress)} USD/GB" if out_tok + in_tok
             else "no plain request class: an agent's LLM calls stay inside the platform")
    return cs.Line("network_internet", "network", item, usd, gb_out + gb_in, "GB", basis)


def cross_region_line(c: Ctx) -> cs.Line:
    """Traffic between regions as the scenario's network prices it (simulated per request and per tool result)."""
    net = c.rs.scenario.network
    crossing = c.total("crossing_tokens") * net.bytes_per_token / cs.BYTES_PER_GB
    usd = c.total("cross_region_usd")
    priced = net.default_usd_per_gb is not None or any("usd_per_gb" in x.model_fields_set for x in net.links)
    item = "network: cross-region traffic"
    if crossing and not priced and not usd:
        return cs.not_priced("network_cross_region", "network", item, "network.links[].usd_per_gb or "
                             "network.default_usd_per_gb", crossing, "GB", cs.DIRECT)
    basis = ("no request crossed regions" if not crossing else
             f"{fmt(crossing)} GB of prompts and answers at the scenario's network prices (simulated per request)")
    return cs.Line("network_cross_region", "network", item, usd, crossing, "GB", basis + "; tool and retrieval "
                   "results crossing regions as the workloads' steps send them", allocated_by=cs.DIRECT)


def orchestration_lines(c: Ctx, compute_usd: float) -> list[cs.Line]:
    o = c.rs.scenario.finance.cost_stack.orchestration
    c.user("clusters", o.clusters, "clusters", "orchestration.clusters")
    c.user("platform fee", o.platform_fee_fraction, "fraction of compute", "orchestration.platform_fee_fraction")
    item = "orchestration: control plane"
    if o.clusters is None:
        plane = cs.not_priced("orchestration_control_plane", "orchestration", item, f"{FIELD}.orchestration.clusters",
                              allocated_by=cs.BY_COMPUTE)
    else:
        book = c.rs.price_book.cost_stack
        price = c.figure("control plane", o.usd_per_cluster_hour, "orchestration.usd_per_cluster_hour",
                         book.cluster_usd_per_hour if book else None)
        plane = (cs.not_priced("orchestration_control_plane", "orchestration", item,
                               f"{FIELD}.orchestration.usd_per_cluster_hour", o.clusters, "clusters", cs.BY_COMPUTE)
                 if price is None else
                 cs.Line("orchestration_control_plane", "orchestration", item,
                         cs.control_plane_usd(o.clusters, price, c.window_h) * c.share, o.clusters * c.share,
                         "clusters", c.of_share(f"{o.clusters} cluster(s) x {fmt(price)} USD/cluster-hour x "
                                               f"{fmt(c.window_h)} h"), "", cs.BY_COMPUTE))
    item = "orchestration: platform fee"
    fee = (cs.not_priced("orchestration_platform_fee", "orchestration", item,
                         f"{FIELD}.orchestration.platform_fee_fraction", allocated_by=cs.BY_COMPUTE)
           if o.platform_fee_fraction is None else
           cs.Line("orchestration_platform_fee", "orchestration", item, o.platform_fee_fraction * compute_usd,
                   compute_usd, "USD of compute", f"{fmt(o.platform_fee_fraction)} x {fmt(compute_usd)} USD compute",
                   "", cs.BY_COMPUTE))
    return [plane, fee]


def cloud_bill_usd(c: Ctx, lines: list[cs.Line]) -> float:
    """What a cloud provider bills in the window: its rented accelerators, storage, network and control plane."""
    cloud = sum(p.serving_usd_per_hour for p in c.costs if p.location == "cloud") * c.window_h
    billed = [x.usd for x in lines
              if x.usd is not None and (x.category in ("storage", "network") or x.key == "orchestration_control_plane")]
    return cloud + sum(billed)


def support_line(c: Ctx, bill_usd: float) -> cs.Line:
    s = c.rs.scenario.finance.cost_stack.support
    if s.cloud_plan is None:
        c.user("support fraction of the cloud bill", s.cloud_fraction, "fraction", "support.cloud_fraction")
    item = "support: cloud support plan"
    plan = c.rs.price_book.cost_stack.cloud_support if c.rs.price_book.cost_stack else None
    if s.cloud_fraction is not None:
        return cs.Line("support", "support", item, s.cloud_fraction * bill_usd, bill_usd, "USD of cloud bill",
                       f"{fmt(s.cloud_fraction)} x {fmt(bill_usd)} USD cloud bill", "", cs.BY_SUPPORT_BASE)
    if s.cloud_plan is None or plan is None:
        return cs.not_priced("support", "support", item, f"{FIELD}.support.cloud_fraction or cloud_plan: price_book",
                             bill_usd, "USD of cloud bill", cs.BY_SUPPORT_BASE)
    c.notes.append(Assumption("cost stack: support plan", plan.name, "tiered on the monthly bill", plan.source,
                              str(plan.as_of)))
    if not bill_usd:
        return cs.Line("support", "support", item, 0.0, 0.0, "USD of cloud bill", "no cloud spend: owned hardware's "
                       "support is its maintenance contract (in compute)", "", cs.BY_SUPPORT_BASE)
    monthly = bill_usd / c.months / c.share  # the tiers apply to the whole fleet's bill
    fee = cs.tiered_usd(monthly, [t.up_to_usd_per_month for t in plan.tiers], [t.fraction for t in plan.tiers],
                        plan.minimum_usd_per_month)
    return cs.Line("support", "support", item, fee * c.months * c.share, bill_usd, "USD of cloud bill",
                   c.of_share(f"{plan.name} on {fmt(monthly)} USD/month = {fmt(fee)} USD/month x {fmt(c.months)} "
                              "months"), "", cs.BY_SUPPORT_BASE)


def replication_line(c: Ctx, stored_gb: float, written_gb: float, price: float | None) -> cs.Line:
    r = c.rs.scenario.finance.cost_stack.replication
    c.user("replica copies", r.copies, "copies", "replication.copies")
    item = "replication: extra copies of stored data"
    gb = r.gb * c.share if r.gb is not None else stored_gb  # a given GB is the fleet's; stored_gb is the run's
    book = c.rs.price_book.cost_stack
    transfer = book.inter_region_usd_per_gb if book else None
    if r.copies is None or price is None or (written_gb and transfer is None):
        return cs.not_priced("replication", "replication", item, f"{FIELD}.replication.copies", gb, "GB")
    t = c.figure("replication transfer", None, "(price book cost_stack.inter_region_usd_per_gb)", transfer) or 0.0
    usd = cs.replication_usd(gb, r.copies, price, c.months, written_gb, t)
    basis = (f"{fmt(gb)} GB x {r.copies} copies x {fmt(price)} USD/GB-month x {fmt(c.months)} months + "
             f"{fmt(written_gb)} GB written x {r.copies} x {fmt(t)} USD/GB")
    return cs.Line("replication", "replication", item, usd, gb, "GB", c.of_share(basis) if r.gb is not None else basis)


def sla_line(c: Ctx) -> cs.Line:
    s = c.rs.scenario.finance.cost_stack.sla
    c.user("SLA penalty per violation", s.usd_per_violation, "USD", "sla.usd_per_violation")
    c.user("SLA target attainment", s.target_attainment, "fraction", "sla.target_attainment")
    c.user("SLA penalty per point below", s.usd_per_point_below_per_month, "USD/point-month",
           "sla.usd_per_point_below_per_month")
    n, logical = c.total("violations"), c.total("logical_requests")
    attainment = 1.0 - n / logical if logical else None
    item = "SLA: penalties for SLO misses"
    if s.usd_per_violation is None and s.target_attainment is None:
        return cs.not_priced("sla", "sla", item, f"{FIELD}.sla.usd_per_violation or target_attainment",
                             n, "violations", cs.BY_VIOLATIONS)
    per_point = s.usd_per_point_below_per_month  # the fleet's monthly credit per point: this run's share of it
    usd = cs.sla_penalty_usd(int(n), s.usd_per_violation, attainment, s.target_attainment,
                             None if per_point is None else per_point * c.share, c.months)
    att = "n/a" if attainment is None else f"{attainment:.4%}"
    return cs.Line("sla", "sla", item, usd, n, "violations", f"{fmt(n)} of {fmt(logical)} requests missed the SLO "
                   f"(attainment {att})", "", cs.BY_VIOLATIONS)


def latency_value(c: Ctx) -> dict[str, Any]:
    """The value of latency against the reference (finance.cost_stack.latency_value_saved): net_usd > 0 is a
    benefit, < 0 an opportunity cost; beside the costs, never in their total. The names say "saved" and "net" so
    that regress reads a fall as the worse direction and a negative figure as expected."""
    v = c.rs.scenario.finance.cost_stack.latency_value
    c.user("revenue per second saved", v.revenue_usd_per_s_saved, "USD/s", "latency_value.revenue_usd_per_s_saved")
    c.user("reference latency", v.reference_latency_s, "s", "latency_value.reference_latency_s")
    units = c.total("latency_units")
    if v.revenue_usd_per_s_saved is None or v.reference_latency_s is None:
        return {"status": cs.NOT_PRICED, "net_usd": None, "net_monthly_usd": None,
                "missing": f"{FIELD}.latency_value.revenue_usd_per_s_saved and reference_latency_s"}
    saved = c.total("saved_s")
    usd = cs.latency_value_usd(saved, v.revenue_usd_per_s_saved)
    return {"status": cs.PRICED, "net_usd": usd, "net_monthly_usd": cs.per_month(usd, c.window_h),
            "metric": v.metric, "reference_latency_s": v.reference_latency_s, "net_seconds_saved": saved,
            "mean_net_s_saved": saved / units if units else None,
            "basis": f"{fmt(v.revenue_usd_per_s_saved)} USD/s x {fmt(saved)} s saved against "
                     f"{fmt(v.reference_latency_s)} s ({v.metric}) over {fmt(units)} answered plain requests and "
                     "successful tasks; positive: a benefit, negative: an opportunity cost; not in the total"}


def stack_lines(c: Ctx) -> list[cs.Line]:
    """Every line, in the order a reader meets them."""
    obj = c.figure("object storage", c.rs.scenario.finance.cost_stack.storage.usd_per_gb_month,
                   "storage.usd_per_gb_month", c.rs.price_book.network.storage_usd_per_gb_month)
    compute = compute_line(c)
    lines = [compute] + [x for x in (agent_line(c),) if x is not None]
    weights, weights_gb = weights_line(c, obj)
    logs, written_gb, held_gb = log_line(c, obj)
    lines += [weights, kv_tier_line(c), logs, iops_line(c), internet_line(c, bytes_per_token(c)), cross_region_line(c)]
    lines += orchestration_lines(c, compute.usd or 0.0)
    lines.append(support_line(c, cloud_bill_usd(c, lines)))
    lines.append(replication_line(c, weights_gb + held_gb, written_gb, obj))
    lines.append(sla_line(c))
    return lines


def cost_stack_section(rs: ResolvedScenario, req: pd.DataFrame, lreq: pd.DataFrame, tasks: pd.DataFrame,
                       costs: list[PoolCost], window_s: float,
                       idle_seats: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(finance.cost_stack, the unit-economics breakdowns, the assumptions the stack adds)."""
    v = rs.scenario.finance.cost_stack.latency_value
    latency = (v.reference_latency_s, v.metric) if v.reference_latency_s is not None else None
    paths = cost_units.task_paths(req, tasks)
    units = cost_units.cells(cost_units.request_units(rs, req, lreq, paths, latency),
                             cost_units.task_units(rs, req, tasks, paths, idle_seats, latency))
    c = Ctx(rs, costs, window_s / 3600.0, units, [], cost_units.unallocated_seats(idle_seats, tasks))
    lines = stack_lines(c)
    tokens = c.total("tokens")
    totals = cs.stack_totals(lines, c.window_h, tokens, int(c.total("successful_requests")),
                             int(c.total("successful_tasks")))
    section = {
        "window_h": c.window_h, "window_months": c.months, "tokens": tokens,
        "successful_requests": int(c.total("successful_requests")),
        "successful_tasks": int(c.total("successful_tasks")),
        "lines": [x.row(c.window_h, tokens) for x in lines], **totals,
    }
    value = latency_value(c)
    section["latency_value_saved"] = value
    section["net_cost_usd_less_latency_value"] = (totals["total_usd"] - value["net_usd"]
                                                  if value["net_usd"] is not None else None)
    by = breakdown(units, lines, costs, v.revenue_usd_per_s_saved)
    return section, by, [plain_dict(a) for a in c.notes]
