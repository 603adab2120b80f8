"""The whole cost stack (issue #31): every line beyond compute equals its hand computation on a small case; absent
inputs leave a line "not priced (no input)", never 0; the unit economics by application, tenant, tier and workflow
path add up to the stack's total; every new input refuses hostile values in one line naming its field; every
shipped figure the stack reads is sourced."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import agent_doc, scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.config.loader import load_model_file
from simfactory.config.prices import PriceBook
from simfactory.cost import stack as cs
from simfactory.cost.pool_cost import HOURS_PER_MONTH
from simfactory.hardware.memory import weight_bytes
from simfactory.paths import PROFILES_DIR, SCENARIOS_DIR
from simfactory.report.finance import finance_tables
from simfactory.resolve import load_and_resolve

runner = CliRunner()
URL = re.compile(r"https?://\S+")
BOOK = load_model_file(PriceBook, PROFILES_DIR / "prices.yaml")
WARMUP_S, HORIZON_S = 10.0, 100.0
WINDOW_H = (HORIZON_S - WARMUP_S) / 3600.0
MONTHS = WINDOW_H / HOURS_PER_MONTH
FULL = {
    "storage": {"log_bytes_per_request": 50_000, "log_retention_months": 2, "provisioned_iops": 4000,
                "usd_per_iops_month": 0.005},
    "orchestration": {"clusters": 2, "platform_fee_fraction": 0.1},
    "support": {"cloud_fraction": 0.05},
    "replication": {"copies": 2},
    "sla": {"usd_per_violation": 0.01, "target_attainment": 0.999, "usd_per_point_below_per_month": 300},
    "latency_value": {"revenue_usd_per_s_saved": 0.001, "reference_latency_s": 2.0},
}


def small_case(root: Path, cost_stack: dict[str, Any] | None = None, **deployment: Any) -> dict[str, Any]:
    """2 test GPUs ($2/h each) in us-east serving callers in eu-west across a priced link, a prefix cache with an SSD
    tier, and an e2e SLO some requests miss."""
    doc = scenario_doc(replicas=2, rate=3.0, horizon_s=HORIZON_S, warmup_s=WARMUP_S, seed=5,
                       input_tokens={"kind": "uniform", "low": 50, "high": 400},
                       output_tokens={"kind": "uniform", "low": 5, "high": 60}, max_num_seqs=4,
                       prefix_cache_tokens=10_000, prefix_cache_ssd_tokens=50_000, **deployment)
    doc["pools"][0]["region"] = "us-east"
    doc["traffic"]["classes"][0].update(region="eu-west", service_class="web")
    doc["service_classes"] = [{"name": "web", "slo": {"e2e_s": 0.6}}]
    doc["network"] = {"links": [{"a": "eu-west", "b": "us-east", "latency_s": 0.01, "usd_per_gb": 0.02}]}
    if cost_stack is not None:
        doc["finance"] = {"cost_stack": cost_stack}
    return doc


def simulate_case(root: Path, doc: dict[str, Any]) -> tuple[Any, Any]:
    rs = load_and_resolve(write_case(root, copy.deepcopy(doc)))
    return rs, run(rs)


def lines_of(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["key"]: x for x in summary["finance"]["cost_stack"]["lines"]}


# ---- the arithmetic --------------------------------------------------------------------------------------------
def test_the_support_plan_schedule_reproduces_the_providers_own_examples():
    tiers = BOOK.cost_stack.cloud_support
    bounds, fractions = [t.up_to_usd_per_month for t in tiers.tiers], [t.fraction for t in tiers.tiers]
    # AWS's worked example: $85,000 of monthly usage -> $1,000 + $4,900 + $250 = $6,150
    assert cs.tiered_usd(85_000, bounds, fractions, tiers.minimum_usd_per_month) == pytest.approx(6_150)
    assert cs.tiered_usd(500, bounds, fractions, tiers.minimum_usd_per_month) == 100  # the monthly minimum
    assert cs.tiered_usd(300_000, bounds, fractions, 100) == pytest.approx(1_000 + 4_900 + 8_500 + 1_500)


def test_each_line_equals_its_hand_computation(tmp_path):
    rs, r = simulate_case(tmp_path, small_case(tmp_path, FULL))
    s, req, lreq = r.summary, r.requests, r.logical
    got = lines_of(s)
    n = int(req["measured"].sum())  # no escalations or retries: one attempt per logical request
    done = req[req["measured"] & req["outcome"].isin(("completed", "cache_hit"))]
    compute = 2 * 2.0 * WINDOW_H
    assert got["compute"]["usd"] == pytest.approx(compute)
    d = rs.deployments[0]
    weights_gb = weight_bytes(d.arch, "bf16") / 1e9
    assert got["storage_weights"]["usd"] == pytest.approx(weights_gb * 0.023 * MONTHS)
    ssd_gb = 2 * 50_000 * d.memory.kv_bytes_per_token / 1e9
    assert got["storage_kv_tiers"]["usd"] == pytest.approx(ssd_gb * 0.08 * MONTHS)
    written_gb = n * 50_000 / 1e9
    assert got["storage_logs"]["usd"] == pytest.approx(written_gb * 2 * 0.023)
    assert got["storage_iops"]["usd"] == pytest.approx(4000 * 0.005 * MONTHS)
    internet = done["output_tokens"].sum() * 4 / 1e9 * 0.09 + done["input_tokens"].sum() * 4 / 1e9 * 0.0
    assert got["network_internet"]["usd"] == pytest.approx(internet)
    measured = req[req["measured"]]
    cross = (measured["input_tokens"] + measured["output_tokens"]).sum() * 4 / 1e9 * 0.02
    assert got["network_cross_region"]["usd"] == pytest.approx(cross) == pytest.approx(s["network"]["egress_usd"])
    plane = 2 * 0.10 * WINDOW_H
    assert got["orchestration_control_plane"]["usd"] == pytest.approx(plane)
    assert got["orchestration_platform_fee"]["usd"] == pytest.approx(0.1 * compute)
    storage = sum(got[k]["usd"] for k in ("storage_weights", "storage_kv_tiers", "storage_logs", "storage_iops"))
    assert got["support"]["usd"] == pytest.approx(0.05 * (compute + storage + internet + cross + plane))
    held_gb = written_gb / MONTHS * 2
    assert got["replication"]["usd"] == pytest.approx((weights_gb + held_gb) * 2 * 0.023 * MONTHS
                                                      + written_gb * 2 * 0.02)
    m = lreq[lreq["measured"]]
    violations = int((~m["slo_met"]).sum())
    assert 0 < violations < len(m), "the case should miss its SLO sometimes"
    attainment = s["service"]["slo_attainment"]
    assert attainment == pytest.approx(1 - violations / len(m))
    assert got["sla"]["usd"] == pytest.approx(violations * 0.01 + max(0, 0.999 - attainment) * 100 * 300 * MONTHS)
    answered = m[m["outcome"].isin(("completed", "cache_hit"))]
    stack = s["finance"]["cost_stack"]
    value = stack["latency_value_saved"]
    assert value["net_usd"] == pytest.approx(0.001 * (2.0 - answered["e2e_s"]).sum())
    total = sum(x["usd"] for x in got.values())
    assert stack["total_usd"] == pytest.approx(total) and not stack["not_priced"]
    assert stack["net_cost_usd_less_latency_value"] == pytest.approx(total - value["net_usd"])
    assert stack["total_usd_per_month"] == pytest.approx(total / MONTHS)
    tokens = (done["input_tokens"] + done["output_tokens"]).sum()
    assert stack["usd_per_1m_tokens"] == pytest.approx(total * 1e6 / tokens)
    assert got["sla"]["usd_per_month"] == pytest.approx(got["sla"]["usd"] / MONTHS)


def test_the_price_book_support_plan_prices_the_monthly_cloud_bill(tmp_path):
    _, r = simulate_case(tmp_path, small_case(tmp_path, {"support": {"cloud_plan": "price_book"}}))
    got = lines_of(r.summary)
    bill = sum(got[k]["usd"] for k in ("compute", "storage_weights", "storage_kv_tiers", "network_internet",
                                       "network_cross_region"))
    monthly = bill / MONTHS  # ~$2,900 of GPUs a month: 10% of it, above the $100 minimum
    assert got["support"]["usd"] == pytest.approx(max(100.0, 0.10 * monthly) * MONTHS)
    names = {a["name"] for a in r.summary["finance"]["assumptions"]}
    assert "cost stack: support plan" in names


# ---- absent inputs ------------------------------------------------------------------------------------------------
def test_a_missing_input_is_reported_as_not_priced_never_as_zero(tmp_path):
    _, r = simulate_case(tmp_path, small_case(tmp_path))
    stack = r.summary["finance"]["cost_stack"]
    got = lines_of(r.summary)
    unpriced = {"storage_logs", "storage_iops", "orchestration_control_plane", "orchestration_platform_fee", "support",
                "replication", "sla"}
    for key in unpriced:
        assert got[key]["status"] == cs.NOT_PRICED and got[key]["usd"] is None, key
        assert got[key]["usd_per_month"] is None and got[key]["missing"].startswith("finance.cost_stack."), key
    assert {got[k]["item"] for k in unpriced} == set(stack["not_priced"])
    # the sourced lines are priced from the book without any input
    for key in ("compute", "storage_weights", "storage_kv_tiers", "network_internet", "network_cross_region"):
        assert got[key]["status"] == cs.PRICED and got[key]["usd"] > 0, key
    assert stack["total_usd"] == pytest.approx(sum(x["usd"] for x in got.values() if x["usd"] is not None))
    assert stack["latency_value_saved"]["status"] == cs.NOT_PRICED and stack["latency_value_saved"]["net_usd"] is None
    assert stack["net_cost_usd_less_latency_value"] is None
    by = r.summary["finance"]["unit_economics"]["by_application"]["c"]
    assert by["latency_value_saved_net_usd"] is None and "sla_usd" not in by
    inputs = {a["name"]: a for a in r.summary["finance"]["assumptions"]}
    assert inputs["cost stack: clusters"]["value"] == "not given"
    assert "user input, no default" in inputs["cost stack: clusters"]["source"]


def test_regions_no_network_price_covers_leave_cross_region_traffic_not_priced(tmp_path):
    doc = small_case(tmp_path)
    del doc["network"]
    _, r = simulate_case(tmp_path, doc)
    line = lines_of(r.summary)["network_cross_region"]
    assert line["status"] == cs.NOT_PRICED and line["quantity"] > 0
    doc["traffic"]["classes"][0]["region"] = "us-east"  # nothing crosses: a real 0, priced
    _, r = simulate_case(tmp_path / "same", doc)
    line = lines_of(r.summary)["network_cross_region"]
    assert line["status"] == cs.PRICED and line["usd"] == 0.0 and line["quantity"] == 0.0


def test_a_price_book_without_the_cost_stack_section_leaves_its_lines_not_priced(tmp_path):
    book = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    del book["cost_stack"]
    doc = small_case(tmp_path, {"orchestration": {"clusters": 1}, "support": {"cloud_plan": "price_book"}})
    path = write_case(tmp_path, doc)
    (path.parent.parent / "hardware_profiles" / "prices.yaml").write_text(yaml.safe_dump(book))
    got = lines_of(run(load_and_resolve(path)).summary)
    for key in ("storage_kv_tiers", "network_internet", "orchestration_control_plane", "support"):
        assert got[key]["status"] == cs.NOT_PRICED, key
    assert got["storage_weights"]["status"] == cs.PRICED  # object storage is the book's network section


# ---- unit economics ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _full_stack() -> dict[str, Any]:
    return run(SCENARIOS_DIR / "tco-full-stack.yaml").summary


def test_the_shipped_scenario_prices_every_line_and_the_value_of_latency():
    stack = _full_stack()["finance"]["cost_stack"]
    assert not stack["not_priced"]
    assert all(x["usd"] > 0 for x in stack["lines"]), [x["key"] for x in stack["lines"] if not x["usd"]]
    assert {x["category"] for x in stack["lines"]} == {"compute", "agent", "storage", "network", "orchestration",
                                                      "support", "replication", "sla"}
    assert stack["latency_value_saved"]["status"] == cs.PRICED


def test_every_breakdown_adds_up_to_the_total_line_by_line():
    s = _full_stack()
    stack, ue = s["finance"]["cost_stack"], s["finance"]["unit_economics"]
    categories = {x["category"] for x in stack["lines"]}
    for dim in ("by_application", "by_tenant", "by_tier", "by_workflow_path"):
        groups = ue[dim]
        assert len(groups) >= 2, dim
        assert sum(g["total_usd"] for g in groups.values()) == pytest.approx(stack["total_usd"], rel=1e-9), dim
        for cat in categories:
            line_sum = sum(x["usd"] for x in stack["lines"] if x["category"] == cat)
            assert sum(g[f"{cat}_usd"] for g in groups.values()) == pytest.approx(line_sum, rel=1e-9, abs=1e-12)
        assert sum(g["tokens"] for g in groups.values()) == pytest.approx(stack["tokens"])
        assert sum(g["successful_tasks"] for g in groups.values()) == stack["successful_tasks"]
        value = sum(g["latency_value_saved_net_usd"] for g in groups.values())
        assert value == pytest.approx(stack["latency_value_saved"]["net_usd"])
    assert set(ue["by_tenant"]) == {"acme", "globex"}
    assert set(ue["by_application"]) == {"chat-us", "chat-eu", "research"}
    assert {"llama8b", "llama70b"} <= set(ue["by_tier"])
    paths = [p for p in ue["by_workflow_path"] if p != "(single requests)"]
    assert paths and all(p.startswith("plan > extract") and "synthesize" in p for p in paths), paths


def test_compute_follows_gpu_seconds_and_egress_follows_the_requests_that_crossed():
    ue = _full_stack()["finance"]["unit_economics"]
    apps = ue["by_application"]
    usd_per_gpu_s = {k: g["compute_usd"] / g["gpu_s"] for k, g in apps.items()}
    assert max(usd_per_gpu_s.values()) == pytest.approx(min(usd_per_gpu_s.values()))  # one pool: one rate
    # chat-eu crosses the Atlantic, chat-us does not: its egress share is larger though it sends half the traffic
    assert apps["chat-eu"]["network_usd"] > apps["chat-us"]["network_usd"]


def test_agent_costs_follow_their_tasks(tmp_path):
    steps = [{"type": "llm", "name": "ask", "model": "m", "input_tokens": {"kind": "fixed", "value": 20},
              "output_tokens": {"kind": "fixed", "value": 5}},
             {"type": "tool", "name": "t", "service": "api", "latency_s": {"kind": "fixed", "value": 0.01}}]
    workloads = {"agent": agent_doc(steps, tools=[{"name": "api", "usd_per_call": 0.25}])}
    doc = scenario_doc(rate=1.0, horizon_s=40.0, warmup_s=5.0)
    doc["traffic"]["classes"] = [{"name": "task", "workload": "agent", "target": "dep"},
                                 {"name": "plain", "target": "dep", "input_tokens": {"kind": "fixed", "value": 5},
                                  "output_tokens": {"kind": "fixed", "value": 5}}]
    s = run(load_and_resolve(write_case(tmp_path, doc, workloads=workloads))).summary
    stack, ue = s["finance"]["cost_stack"], s["finance"]["unit_economics"]
    agent = lines_of(s)["agent_external"]
    tasks = ue["by_application"]["task"]["tasks"]
    assert agent["usd"] == pytest.approx(0.25 * tasks)
    assert ue["by_application"]["task"]["agent_usd"] == pytest.approx(agent["usd"])
    assert ue["by_application"]["plain"]["agent_usd"] == 0.0
    assert ue["by_tier"]["(agent tools, retrieval, reviewers)"]["agent_usd"] == pytest.approx(agent["usd"])
    assert set(ue["by_workflow_path"]) == {"(single requests)", "ask: completed"}
    assert sum(g["total_usd"] for g in ue["by_workflow_path"].values()) == pytest.approx(stack["total_usd"])


def test_the_report_tables_carry_the_stack_and_the_breakdown(tmp_path):
    s = _full_stack()
    tables = {t.key: t for t in finance_tables(s)}
    stack = tables["cost_stack"].frame
    assert list(stack["item"][:len(s["finance"]["cost_stack"]["lines"])]) == [
        x["item"] for x in s["finance"]["cost_stack"]["lines"]]
    assert "total of the priced lines" in set(stack["item"])
    groups = tables["unit_econ_groups"].frame
    assert set(groups["dimension"]) == {"application", "tenant", "tier (deployment)", "workflow path"}
    old = json.loads(json.dumps(s))
    del old["finance"]["cost_stack"]  # a summary written before the cost stack still reports
    assert "cost_stack" not in {t.key for t in finance_tables(old)}


def test_the_cli_writes_the_tables_to_markdown_and_the_workbook(tmp_path):
    doc = small_case(tmp_path, FULL)
    path = write_case(tmp_path, doc)
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(path), "--quiet", "--no-plots", "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "summary.md").read_text()
    assert "The whole cost stack" in md and "Unit economics by application, tenant, tier and workflow path" in md
    from openpyxl import load_workbook

    assert {"cost_stack", "unit_econ_groups"} <= set(load_workbook(out / "finance.xlsx").sheetnames)


# ---- sources and hostile values -----------------------------------------------------------------------------------
def test_every_figure_the_stack_reads_from_the_book_is_sourced_and_dated():
    doc = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    rows = {f"cost_stack.{k}": v for k, v in doc["cost_stack"].items()}
    rows.update({f"network.{k}": v for k, v in doc["network"].items()})
    for where, row in rows.items():
        assert URL.search(str(row["source"])), where
        assert str(row["as_of"]).strip() and row["confidence"] in ("high", "medium", "low"), where
        assert "value" in row and row.get("unit") or "tiers" in row, where


def refused(root: Path, doc: dict[str, Any], field: str, commands: tuple[str, ...] = ("validate",)) -> str:
    path = write_case(root, copy.deepcopy(doc))
    out = root / "out"
    for cmd in commands:
        extra = ["--out", str(out), "--quiet", "--no-plots"] if cmd == "run" else []
        res = runner.invoke(app, [cmd, str(path), *extra])
        assert "Traceback" not in res.output and res.exit_code == 2, (cmd, res.exit_code, res.output)
        lines = [x for x in res.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}: "), (field, res.output)
        assert not out.exists()
    return lines[0]


HOSTILE = [
    ({"storage": {"usd_per_gb_month": -0.01}}, "storage.usd_per_gb_month", "greater than or equal"),
    ({"storage": {"usd_per_gb_month": float("inf")}}, "storage.usd_per_gb_month", "finite"),
    ({"storage": {"block_usd_per_gb_month": 1e300}}, "storage.block_usd_per_gb_month", "beyond"),
    ({"storage": {"log_bytes_per_request": "20 KB", "log_retention_months": 1}}, "storage.log_bytes_per_request",
     "valid number"),
    ({"storage": {"log_bytes_per_request": 100}}, "storage.log_retention_months", "needed with"),
    ({"storage": {"log_bytes_per_request": 100, "log_retention_months": 0}}, "storage.log_retention_months",
     "greater than 0"),
    ({"storage": {"provisioned_iops": True, "usd_per_iops_month": 1}}, "storage.provisioned_iops", "valid number"),
    ({"storage": {"provisioned_iops": 100}}, "storage.usd_per_iops_month", "needed with"),
    ({"storage": {"provisioned_iops": 100, "usd_per_iops_month": float("nan")}}, "storage.usd_per_iops_month",
     "finite"),
    ({"storage": {"bytes": 1}}, "storage.bytes", "unknown field"),
    ({"network": {"egress_usd_per_gb": -1}}, "network.egress_usd_per_gb", "greater than or equal"),
    ({"orchestration": {"clusters": 2.5}}, "orchestration.clusters", "valid integer"),
    ({"orchestration": {"clusters": 10**6}}, "orchestration.clusters", "less than or equal"),
    ({"orchestration": {"clusters": 1, "usd_per_cluster_hour": -0.1}}, "orchestration.usd_per_cluster_hour",
     "greater than or equal"),
    ({"orchestration": {"platform_fee_fraction": 1.5}}, "orchestration.platform_fee_fraction", "less than or equal"),
    ({"support": {"cloud_plan": "gold"}}, "support.cloud_plan", "price_book"),
    ({"support": {"cloud_fraction": 2}}, "support.cloud_fraction", "less than or equal"),
    ({"support": {"cloud_plan": "price_book", "cloud_fraction": 0.1}}, "support.cloud_fraction", "not both"),
    ({"replication": {"copies": -1}}, "replication.copies", "greater than or equal"),
    ({"replication": {"copies": 1000}}, "replication.copies", "less than or equal"),
    ({"replication": {"copies": 1, "gb": float("inf")}}, "replication.gb", "finite"),
    ({"sla": {"usd_per_violation": -1}}, "sla.usd_per_violation", "greater than or equal"),
    ({"sla": {"target_attainment": 1.01, "usd_per_point_below_per_month": 1}}, "sla.target_attainment",
     "less than or equal"),
    ({"sla": {"usd_per_point_below_per_month": 5}}, "sla.target_attainment", "go together"),
    ({"latency_value": {"revenue_usd_per_s_saved": -1, "reference_latency_s": 1}},
     "latency_value.revenue_usd_per_s_saved", "greater than or equal"),
    ({"latency_value": {"revenue_usd_per_s_saved": 1e15, "reference_latency_s": 1}},
     "latency_value.revenue_usd_per_s_saved", "less than or equal"),
    ({"latency_value": {"revenue_usd_per_s_saved": 1}}, "latency_value.reference_latency_s", "go together"),
    ({"latency_value": {"revenue_usd_per_s_saved": 1, "reference_latency_s": "10"}},
     "latency_value.reference_latency_s", "valid number"),
    ({"latency_value": {"metric": "p99"}}, "latency_value.metric", "'e2e' or 'ttft'"),
]


@pytest.mark.parametrize("section, field, reason", HOSTILE, ids=[f"{h[1]}-{i}" for i, h in enumerate(HOSTILE)])
def test_hostile_cost_stack_inputs_are_refused_naming_the_field(tmp_path, section, field, reason):
    doc = scenario_doc()
    doc["finance"] = {"cost_stack": section}
    line = refused(tmp_path, doc, f"finance.cost_stack.{field}")
    assert reason in line, line


def test_a_hostile_input_is_refused_by_run_too_and_nothing_is_written(tmp_path):
    doc = scenario_doc()
    doc["finance"] = {"cost_stack": {"sla": {"usd_per_violation": float("inf")}}}
    refused(tmp_path, doc, "finance.cost_stack.sla.usd_per_violation", commands=("validate", "run"))


@pytest.mark.parametrize("change, field", [
    (lambda b: b["cost_stack"]["cloud_support"]["tiers"].reverse(), "cost_stack.cloud_support.tiers"),
    (lambda b: b["cost_stack"]["cloud_support"]["tiers"][1].update(fraction=1.5),
     "cost_stack.cloud_support.tiers[1].fraction"),
    (lambda b: b["cost_stack"]["bytes_per_token"].pop("source"), "cost_stack.bytes_per_token.source"),
    (lambda b: b["cost_stack"]["cluster_usd_per_hour"].update(value=-1), "cost_stack.cluster_usd_per_hour.value"),
    (lambda b: b["network"]["storage_usd_per_gb_month"].update(value=float("inf")),
     "network.storage_usd_per_gb_month.value"),
])
def test_a_hostile_price_book_cost_stack_is_refused_naming_the_book_and_the_field(tmp_path, change, field):
    book = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    change(book)
    doc = scenario_doc()
    doc["finance"] = {"price_book": "mine.yaml"}
    path = write_case(tmp_path, doc)
    mine = path.parent / "mine.yaml"
    mine.write_text(yaml.safe_dump(book))
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {mine}: {field}: "), res.output


def test_plain_dict_is_asdict_for_cost_lines_and_assumptions():
    """Cost lines and assumptions are written with plain_dict (asdict without the deep copy): the same dicts, keys in
    the same order, for every field type they hold (numbers, strings, None)."""
    import dataclasses

    from simfactory.cost.fleet import Assumption

    for obj in (cs.Line("k", "compute", "GPUs", 12.5, 3.0, "GPU-h", "3 x 4.17", "", cs.BY_GPU_S),
                cs.Line("k2", "storage", "weights", None), Assumption("rate", 0.08, "1/yr", "https://example.org", "2026"),
                Assumption("name", "not given", "", "")):
        assert list(cs.plain_dict(obj).items()) == list(dataclasses.asdict(obj).items())
