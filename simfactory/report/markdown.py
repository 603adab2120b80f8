"""summary.md: the run's numbers as Markdown tables, with definitions and cost assumptions."""

from __future__ import annotations

from typing import Any

from simfactory.metrics.summary import PERCENTILES, RunMetrics


def fmt(x: Any, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if unit == "ms":
            return f"{x * 1000:.{max(digits - 2, 1)}f} ms"
        return f"{x:,.{digits}f}{unit}"
    return f"{x:,}{unit}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def latency_rows(lat: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"), ("queue", "queueing")):
        s = lat[name]
        rows.append([label, str(s["count"])] + [fmt(s[k], "ms") for k in ["mean"] + [f"p{p}" for p in PERCENTILES]])
    return rows


def render(m: RunMetrics, plots: list[str]) -> str:
    s = m.summary
    w = s["window"]
    out = [f"# simfactory run: {s['scenario']}", ""]
    desc = m.summary.get("description")
    if desc:
        out += [desc, ""]
    out += [
        f"Scenario file `{s['scenario_file']}`, seed {s['seed']}, simfactory {s['simfactory_version']}.",
        f"Measurement window {w['warmup_s']:g}-{w['horizon_s']:g} s (warm-up and drain excluded); "
        f"{w['measured_requests']:,} of {w['total_requests']:,} requests measured; simulation ended at {w['end_s']:.1f} s.",
        "",
        "## Outcomes (all requests)",
        "",
        table(["outcome", "requests"], [[k, f"{v:,}"] for k, v in s["outcomes"].items()]),
        "",
        "## Latency (measured requests)",
        "",
        table(["metric", "n", "mean"] + [f"p{p}" for p in PERCENTILES], latency_rows(s["latency_s"])),
        "",
    ]
    if len(s["classes"]) > 1:
        for name, c in s["classes"].items():
            out += [f"### Class `{name}` ({c['requests']:,} requests)", ""]
            out += [table(["metric", "n", "mean"] + [f"p{p}" for p in PERCENTILES], latency_rows(c["latency_s"])), ""]
    t = s["throughput"]
    out += [
        "## Throughput (completions in the window)",
        "",
        table(
            ["offered req/s", "completed req/s", "output tokens/s", "input tokens/s"],
            [[fmt(t["offered_requests_per_s"]), fmt(t["requests_per_s"]), fmt(t["output_tokens_per_s"], digits=1),
              fmt(t["input_tokens_per_s"], digits=1)]],
        ),
        "",
        "## Deployments",
        "",
        table(
            ["deployment", "model", "SKU", "replicas x TP", "dtype", "KV capacity (tokens/replica)", "queue depth mean / max",
             "step-time model"],
            [
                [d["name"], d["model"], d["sku"], f"{d['replicas']} x {d['tp']}", d["dtype"], f"{d['kv_capacity_tokens']:,}",
                 f"{fmt(d['queue_depth_mean'], digits=2)} / {fmt(d['queue_depth_max'])}", d["step_time_source"]]
                for d in s["deployments"]
            ],
        ),
        "",
        "## Replicas",
        "",
        table(
            ["replica", "deployment", "busy fraction", "KV used mean", "KV used max", "preemptions", "steps"],
            [
                [str(r["replica"]), r["deployment"], fmt(r["busy_frac"]), fmt(r["kv_used_frac_mean"]),
                 fmt(r["kv_used_frac_max"]), f"{r['preemptions']:,}", f"{r['steps']:,}"]
                for r in s["replicas"]
            ],
        ),
        "",
    ]
    c = s["cost"]
    out += [
        "## Cost",
        "",
        table(
            ["pool", "SKU", "location", "accelerators", "utilization", "USD/hour", "cloud", "capex", "energy", "hosting"],
            [
                [p["pool"], p["sku"], p["location"], str(p["accelerators"]), fmt(p["utilization"]), fmt(p["usd_per_hour"], digits=2)]
                + [fmt(p["breakdown_usd_per_hour"][k], digits=2) for k in ("cloud", "capex", "energy", "hosting")]
                for p in c["pools"]
            ],
        ),
        "",
        table(
            ["USD/hour (fleet)", "USD per 1M output tokens", "USD per 1M tokens (in+out)", "USD per request"],
            [[fmt(c["usd_per_hour"], digits=2), fmt(c["usd_per_1m_output_tokens"], digits=4),
              fmt(c["usd_per_1m_tokens"], digits=4), fmt(c["usd_per_request"], digits=6)]],
        ),
        "",
        "Assumptions (per pool):",
        "",
    ]
    for p in c["pools"]:
        items = ", ".join(f"{k}={v}" for k, v in p["assumptions"].items() if k != "price_source")
        out += [f"- `{p['pool']}`: {items}. Price source: {p['assumptions'].get('price_source')}"]
    out += [
        "",
        "Cloud pools pay for every provisioned accelerator-hour. On-prem pools pay capex / amortization years, "
        "energy = accelerators x (idle + (TDP - idle) x utilization) x PUE x USD/kWh, and hosting = provisioned kW "
        "(TDP) x USD/kW-month. Unit costs divide the window's cost by the window's completed work.",
        "",
        "## Definitions",
        "",
        "- TTFT = first token time - arrival (includes queueing); TPOT = (completion - first token) / (output tokens - 1); "
        "E2E = completion - arrival; queueing = first scheduled step - arrival.",
        "- Latency covers requests that arrived in the window; throughput counts completions in the window.",
        "- Busy fraction = share of time the replica executes engine steps (any batch size).",
        "",
    ]
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)
