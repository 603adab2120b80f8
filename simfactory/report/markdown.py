"""summary.md: the run's numbers as Markdown tables, with definitions and cost assumptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simfactory.fidelity_record import forecast_sides
from simfactory.metrics.summary import PERCENTILES, RunMetrics
from simfactory.report.agent_controls import render_agent_controls, render_caches
from simfactory.report.finance import finance_tables, markdown_section
from simfactory.report.money import format_usd
from simfactory.report.tenants import fairness_note, tenant_rows


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


def render_tasks(tasks: dict[str, Any]) -> list[str]:
    cats = list(next(iter(tasks.values()))["breakdown_mean_s"])
    out = ["## Agent tasks (tasks started in the window)", ""]
    out += [
        table(
            ["class", "tasks", "completed", "degraded", "failed", "timed out", "budget stopped", "unfinished", "escalated"],
            [
                [name, f"{t['tasks']:,}"]
                + [f"{t['outcome_rates'][o]:.1%}" for o in ("completed", "degraded", "failed", "timed_out", "budget_stopped", "unfinished")]
                + [f"{t['escalation_rate']:.1%}"]
                for name, t in tasks.items()
            ],
        ),
        "",
        "Compound latency of completed tasks:",
        "",
        table(
            ["class", "n", "mean", "p50", "p90", "p95", "p99"],
            [[name, str(t["latency_s"]["count"])] + [fmt(t["latency_s"][k], " s", 2) for k in ("mean", "p50", "p90", "p95", "p99")]
             for name, t in tasks.items()],
        ),
        "",
        "Critical-path breakdown (mean seconds per completed task; the components add up to the mean latency):",
        "",
        table(
            ["class", *cats],
            [[name] + [fmt(t["breakdown_mean_s"][c], "", 3) for c in cats] for name, t in tasks.items()],
        ),
        "",
        table(
            ["class", "steps/task", "LLM calls/task", "tokens in/task", "tokens out/task", "retries/task",
             "tool success", "cache hit ratio"],
            [
                [name] + [fmt(t["per_task_mean"][k], "", 2) for k in ("steps", "llm_calls", "tokens_in", "tokens_out", "retries")]
                + [fmt(t["tool_success_rate"], "", 3), fmt(t["cache_hit_ratio"], "", 3)]
                for name, t in tasks.items()
            ],
        ),
        "",
        table(
            ["class", "USD per task (attributed)", "USD per successful task (attributed)",
             "USD per successful task (fully loaded)", "LLM", "tools", "retrieval", "human", "network"],
            [
                [name] + [format_usd(t["cost_usd"][k]) for k in ("per_task_attributed", "per_successful_task_attributed",
                                                               "per_successful_task_fully_loaded")]
                + [format_usd(t["cost_usd"][k]) for k in ("llm", "tools", "retrieval", "human", "network")]
                for name, t in tasks.items()
            ],
        ),
        "",
        "Attributed cost: each LLM request's share of replica time (a step's time split over the tokens of its "
        "batch) x what a replica-second of its pool costs, plus tool, retrieval, reviewer and cross-region egress "
        "costs (LLM, tools, ... columns are totals over the window's tasks). Fully loaded: "
        "the window's whole fleet cost spread over classes by replica time, plus their tool, retrieval and reviewer "
        "costs, per successful (completed or degraded) task.",
        "",
    ]
    retaining = {name: t["kv_retention"] for name, t in tasks.items() if t.get("kv_retention")}
    if retaining:
        out += render_kv_retention(retaining)
    return out


def render_quality(q: dict[str, Any]) -> list[str]:
    """Step acceptance per answering deployment, and cost per successful task taken apart."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    return [
        "## Answer quality",
        "",
        f"LLM steps with a quality: block map their fail_p to the answering (model, dtype) by benchmark score "
        f"(`{q['table']}`). Accepted: answers the validator kept; mapped: the probability the mapping gave.",
        "",
        table(
            ["class", "step", "deployment", "model", "dtype", "benchmark", "score", "answers", "accepted",
             "95% CI", "mapped"],
            [[r["class"], r["step"], str(r["deployment"]), str(r["model"]), str(r["dtype"]), str(r["benchmark"] or "-"),
              fmt(r["score"], "", 3), str(r["answers"]), pct(r["success_rate"]),
              f"{pct(r['success_rate_ci95'][0])}-{pct(r['success_rate_ci95'][1])}", pct(r["mapped_success_p"])]
             for r in q["steps"]],
        ),
        "",
        "Cost per successful task (fully loaded) = cost per task / task success rate, split by what successful "
        "tasks cost and what failed tasks added; rejected answers: LLM calls the validator refused (in either).",
        "",
        table(
            ["class", "task success", "USD per task", "USD per successful task", "on successful tasks",
             "on failed tasks", "rejected answers"],
            [[name, pct(d["task_success_rate"])] + [format_usd(d[k]) for k in (
                "usd_per_task_fully_loaded", "usd_per_successful_task_fully_loaded",
                "on_successful_tasks_usd_per_success", "on_failed_tasks_usd_per_success",
                "rejected_answers_usd_per_success")]
             for name, d in q["decomposition"].items()],
        ),
        "",
    ]


def render_kv_retention(blocks: dict[str, Any]) -> list[str]:
    """Classes whose tasks keep their KV cache between LLM steps: how the pins ended, what they held and saved."""
    return [
        "KV cache kept between a task's LLM steps (kv_retention: retain):",
        "",
        table(
            ["class", "pins", "hits", "expired", "pressure evictions", "freed at task end", "prefill tokens saved/task",
             "KV token-s held/task", "accelerator-s held/task", "slot-s held"],
            [
                [name, f"{b['pins']:,}", f"{b['pins_ended']['hit']:,}", f"{b['pins_ended']['expired']:,}",
                 f"{b['pins_ended']['pressure']:,}", f"{b['pins_ended']['task_end']:,}",
                 fmt(b["prefill_tokens_saved_per_task"], "", 0), fmt(b["kv_token_s_per_task"], "", 0),
                 fmt(b["accelerator_s_per_task"], "", 2), fmt(b["slot_s"], "", 1)]
                for name, b in blocks.items()
            ],
        ),
        "",
        "A pin is a finished step's KV blocks kept on its replica for the task's next LLM step; accelerator-s is the "
        "pinned share of the replica's KV memory x its accelerators x seconds held. Task latency saved, and the cost "
        "to other requests, show against the same scenario with policy evict (`simfactory compare`).",
        "",
    ]


def render(m: RunMetrics, plots: list[str]) -> str:
    """summary.md: one renderer per section, in the order readers scan a run (what ran, what came out, cost)."""
    s = m.summary
    out = render_header(s)
    if s.get("sharding"):
        out += render_sharding(s["sharding"])
    out += render_outcomes(s["outcomes"])
    out += render_latency(s["latency_s"], s["classes"])
    out += render_throughput(s["throughput"])
    out += render_deployments(s["deployments"])
    out += render_forecast_accuracy(s["deployments"])
    out += render_replicas(s["replicas"])
    out += render_front_ends(s["front_end"])
    if s["tasks"]:
        out += render_tasks(s["tasks"])
        out += render_agent_controls(s["tasks"])
    if s.get("caches"):
        out += render_caches(s["caches"])
    if s.get("quality"):
        out += render_quality(s["quality"])
    if s.get("resilience"):
        out += render_resilience(s["resilience"])
    if s.get("autoscaling"):
        out += render_autoscaling(s["autoscaling"])
    if s.get("tenants"):
        out += render_tenants(s["tenants"])
    out += ["## Cost and finance", ""] + markdown_section(finance_tables(s))
    out += render_definitions()
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def render_header(s: dict[str, Any]) -> list[str]:
    """Title, description and the run's identity: scenario file, seed, version, arrivals, window."""
    w = s["window"]
    out = [f"# simfactory run: {s['scenario']}", ""]
    desc = s.get("description")
    if desc:
        out += [desc, ""]
    return out + [
        f"Scenario file `{s['scenario_file']}`, seed {s['seed']}, simfactory {s['simfactory_version']}."
        + (f" Arrivals: {s['arrival_process']}." if s.get("arrival_process") else ""),
        f"Measurement window {w['warmup_s']:g}-{w['horizon_s']:g} s (warm-up and drain excluded); "
        f"{w['measured_requests']:,} of {w['total_requests']:,} requests measured; simulation ended at {w['end_s']:.1f} s.",
        "",
    ]


def render_sharding(sh: dict[str, Any]) -> list[str]:
    """How a sharded run was simulated (simfactory/fleet) and, when shards or time windows were sampled, the 95%
    intervals."""
    if "simulated_windows" in sh:  # a sample of time windows, every replica in each
        head = (f"{len(sh['simulated_windows']):,} of {sh['windows']:,} time windows of {sh['window_s']:g} s simulated "
                f"with every replica ({sh['stands_for']}: totals scaled by {sh['scale']:g}; windows "
                f"{', '.join(str(w) for w in sh['simulated_windows'])}; {sh['window_overlap_s']:g} s overlaps)")
        part = "simulated windows"
    else:
        head = (f"{sh['simulated_shards']:,} of {sh['shards']:,} shards simulated"
                + (f" ({sh['stands_for']}: counts and costs scaled by {sh['scale']:g})" if sh.get("sampled") else "")
                + (f", each in {sh['windows']} time windows ({sh['window_overlap_s']:g} s overlaps)"
                   if sh["windows"] > 1 else ""))
        part = "simulated shards"
    out = ["## Sharding", "", f"{head}; {sh['simulations']} simulations.", ""]
    if sh.get("ci95"):
        g = "{:.4g}".format  # figures of every scale: seconds, req/s, USD
        rows = [[k, g(v["estimate"]), g(v["ci95"]),
                 ", ".join(g(x) for x in v.get("shard_values", v.get("window_values", [])))]
                for k, v in sh["ci95"].items()]
        out += [table(["figure", "estimate", "± 95% CI", part], rows), ""]
    return out


def render_outcomes(outcomes: dict[str, int]) -> list[str]:
    return [
        "## Outcomes (all requests)",
        "",
        table(["outcome", "requests"], [[k, f"{v:,}"] for k, v in outcomes.items()]),
        "",
    ]


def render_latency(latency: dict[str, Any], classes: dict[str, Any]) -> list[str]:
    """Latency of all measured requests, then per class when there is more than one."""
    header = ["metric", "n", "mean"] + [f"p{p}" for p in PERCENTILES]
    out = ["## Latency (measured requests)", "", table(header, latency_rows(latency)), ""]
    if len(classes) > 1:
        for name, c in classes.items():
            out += [f"### Class `{name}` ({c['requests']:,} requests)", ""]
            out += [table(header, latency_rows(c["latency_s"])), ""]
    return out


def render_throughput(t: dict[str, Any]) -> list[str]:
    return [
        "## Throughput (completions in the window)",
        "",
        table(
            ["offered req/s", "completed req/s", "output tokens/s", "input tokens/s"],
            [[fmt(t["offered_requests_per_s"]), fmt(t["requests_per_s"]), fmt(t["output_tokens_per_s"], digits=1),
              fmt(t["input_tokens_per_s"], digits=1)]],
        ),
        "",
    ]


def render_deployments(deployments: list[dict[str, Any]]) -> list[str]:
    return [
        "## Deployments",
        "",
        table(
            ["deployment", "model", "SKU", "replicas x TP", "dtype", "KV capacity (tokens/replica)", "queue depth mean / max",
             "step-time model"],
            [
                [d["name"], d["model"], d["sku"], f"{d['replicas']} x {d['tp']}", d["dtype"], f"{d['kv_capacity_tokens']:,}",
                 f"{fmt(d['queue_depth_mean'], digits=2)} / {fmt(d['queue_depth_max'])}", d["step_time_source"]]
                for d in deployments
            ],
        ),
        "",
    ]


ACCURACY_HEADER = ["deployment", "checked against", "points", "MAPE", "bias",
                   "its kind at its TP (every preset); its model's points"]
ACCURACY_NOTE = ("How far forecasts of this kind (step-time source and engine preset) have been from published "
                 "measurements that simfactory's fidelity suites replay (`simfactory fidelity`; latencies and "
                 "throughput of every suite pooled). Bias > 0 is optimistic: forecasts ran faster than measured, so a "
                 "plan built on them buys too little. Where a suite measured the deployment's model, its points are "
                 "named too (on the deployment's preset where a suite ran it there, else every preset's), with the "
                 "presets, TPs and hardware they pool: a record of the model, read beside the kind's figure (a plan's "
                 "margin advice takes the model's own points on its preset where there are some).")


def accuracy_rows(deployments: list[dict[str, Any]]) -> list[list[str]]:
    """Each deployment's forecast evidence (summary.json deployments[].forecast_accuracy, and its prefill side's)
    as table cells: what it was checked against, points, MAPE, bias and which way it leaned."""
    rows = []
    for d in deployments:
        if "forecast_accuracy" not in d:  # a summary written before runs cited their evidence
            rows.append([d["name"], "not recorded in this summary (run the scenario again)", "", "", "", ""])
            continue
        if d.get("forecast_accuracy_unavailable"):
            rows.append([d["name"], f"unknown: {d['forecast_accuracy_unavailable']}", "", "", "", ""])
            continue
        for name, a in forecast_sides(d):
            rows.append([name, "not checked by the shipped suites (a calibrated or user profile: see its fit error)",
                         "", "", "", ""] if a is None else
                        [name, a["basis"], f"{a['points']:,}", f"{a['mape']:.1%}", bias_text(a),
                         _at_tp_text(a.get("at_tp")) + _model_text(a.get("of_model"))])
    return rows


ACCURACY_METRIC_HEADER = ["deployments", "kind", "metric", "points", "MAPE", "bias"]
ACCURACY_METRIC_NOTE = ("The same kinds per metric (every engine preset and TP pooled): read a forecast of one metric "
                        "against its own row, not against the pooled figure above, which lends every metric the "
                        "accuracy of the most measured one.")


def accuracy_metric_rows(deployments: list[dict[str, Any]]) -> list[list[str]]:
    """Each kind of forecast among the run's deployments per metric (forecast_accuracy.by_metric), one block of
    rows per kind: deployments sharing a kind share its rows."""
    kinds: dict[tuple[str, ...], tuple[dict[str, Any], list[str]]] = {}
    for d in deployments:
        for name, a in forecast_sides(d) if "forecast_accuracy" in d else []:
            if a and a.get("by_metric"):
                records = tuple(m["record"] for m in a["by_metric"].values())
                kinds.setdefault(records, (a["by_metric"], []))[1].append(name)
    return [[", ".join(names), _kind_words(m["record"]), m["label"], f"{m['points']:,}", f"{m['mape']:.1%}",
             f"{m['optimism']:+.1%} ({m['leaning']})"] for by_metric, names in kinds.values() for m in by_metric.values()]


def _kind_words(record_key: str) -> str:
    """'measured kernels' for a record key 'all suites [kernels] | ...' (the kind in its brackets)."""
    kind = record_key.split("[", 1)[-1].split("]", 1)[0]
    return "measured kernels" if kind == "kernels" else kind


def metric_text(a: dict[str, Any]) -> str:
    """'throughput 7.4% (+2.0%), TTFT mean 19.1% (+5.1%), ...': the kind's MAPE and bias per metric."""
    return ", ".join(f"{m['label']} {m['mape']:.1%} ({m['optimism']:+.1%})" for m in (a.get("by_metric") or {}).values())


def bias_text(a: dict[str, Any]) -> str:
    """'+0.2% (unbiased; presets -18.4% to +4.4%)': the bias, its leaning, and where evidence pooled over every
    preset hides presets leaning both ways, their range."""
    r = a.get("presets_optimism_range")
    spread = f"; presets {r[0]:+.1%} to {r[1]:+.1%}" if r else ""
    return f"{a['optimism']:+.1%} ({a['leaning']}{spread})"


def _at_tp_text(t: dict[str, Any] | None, basis: bool = False) -> str:
    """The evidence at the deployment's TP: 'TP 8: 283 points, MAPE 11.0%, bias +0.1%' (basis: named in full,
    'every engine preset on measured kernels at TP 8: ...')."""
    if not t:
        return "no points at this TP"
    where = t["basis"] if basis else "TP " + t["record"].rsplit("tp ", 1)[-1]
    return f"{where}: {t['points']:,} points, MAPE {t['mape']:.1%}, bias {t['optimism']:+.1%}"


def _model_text(m: dict[str, Any] | None) -> str:
    """'; gpt-oss-120b's published points on measured kernels (sglang-0.5; TP 8; b200): 4, MAPE 90.3%, bias -90.3%
    (pessimistic)' where a suite measured the deployment's model ('' where none did)."""
    if not m:
        return ""
    return (f"; {m['label']}: {m['points']:,}, MAPE {m['mape']:.1%}, bias {m['optimism']:+.1%} "
            f"({m['leaning']})")


def forecast_check_lines(named: list[tuple[str, dict[str, Any]]],
                         advice: Callable[[dict[str, Any]], str] | None = None) -> list[str]:
    """One sentence per kind of forecast among (deployment name, evidence) pairs: the terminal's and a plan's
    `forecast check` (deployments sharing a kind share a sentence). advice: what the kind's evidence means for a
    plan ('' for nothing), appended to its sentence."""
    kinds: dict[tuple[str, str, str], tuple[dict[str, Any], list[str]]] = {}
    for name, a in named:  # deployments share a sentence only where every figure and word of it is theirs too
        kinds.setdefault((a["basis"], (a.get("at_tp") or {}).get("basis", ""),
                          (a.get("of_model") or {}).get("label", "")), (a, []))[1].append(name)
    lines = []
    for a, names in kinds.values():
        line = (f"forecast check ({', '.join(names)}): {a['basis']}, {a['points']:,} published points: MAPE "
                f"{a['mape']:.1%}, bias {bias_text(a)}; {_at_tp_text(a.get('at_tp'), basis=True)}"
                f"{_model_text(a.get('of_model'))}")
        if a.get("by_metric"):
            line += f"; per metric, MAPE (bias): {metric_text(a)}"
        if advice is not None and (said := advice(a)):
            line += "; " + said
        lines.append(line)
    return lines


def render_forecast_accuracy(deployments: list[dict[str, Any]]) -> list[str]:
    """How far each deployment's kind of forecast has been from published measurements (fidelity_record), overall
    and per metric."""
    out = ["## Forecast accuracy", "", ACCURACY_NOTE, "", table(ACCURACY_HEADER, accuracy_rows(deployments)), ""]
    by_metric = accuracy_metric_rows(deployments)
    if by_metric:
        out += [ACCURACY_METRIC_NOTE, "", table(ACCURACY_METRIC_HEADER, by_metric), ""]
    return out


def render_front_ends(front_end: dict[str, Any]) -> list[str]:
    """Deployments whose API server is a shared CPU (front_end_work): how busy its cores were; none: nothing."""
    busy = front_end.get("busy_frac")
    if not busy:
        return []
    return ["## Front ends", "", "Share of the API servers' core time spent on requests (near 1: the front end, not "
            "the GPUs, sets the throughput).", "",
            table(["deployment", "front end busy fraction"], [[name, fmt(v)] for name, v in busy.items()]), ""]


def render_replicas(replicas: list[dict[str, Any]]) -> list[str]:
    return [
        "## Replicas",
        "",
        table(
            ["replica", "deployment", "busy fraction", "KV used mean", "KV used max", "preemptions", "steps"],
            [
                [str(r["replica"]), r["deployment"], fmt(r["busy_frac"]), fmt(r["kv_used_frac_mean"]),
                 fmt(r["kv_used_frac_max"]), f"{r['preemptions']:,}", f"{r['steps']:,}"]
                for r in replicas
            ],
        ),
        "",
    ]


def render_resilience(r: dict[str, Any]) -> list[str]:
    return ["## Resilience", "", table(
        ["failures", "availability (mean)", "requests lost", "retried", "failed (final)", "offered load factor",
         "tokens recomputed", "USD of lost work", "mean repair (s)", "SLO in fault windows", "SLO outside"],
        [[str(r["failures"]), fmt(r["availability_mean"]), str(r["requests_lost"]), str(r["retries"]),
          str(r["failed"]), fmt(r["offered_load_factor"]), str(r["tokens_recomputed"]), format_usd(r["usd_lost_work"]),
          fmt(r["mean_time_to_repair_s"]), fmt(r["slo_attainment_in_fault_windows"]), fmt(r["slo_attainment_outside"])]]),
        "", "Each attempt lost to a failure ends `failed` in the outcome counts; a retry is a new attempt. "
        "`failed (final)`: lost requests not retried (retries off, exhausted or over budget). Offered load factor: "
        "(first attempts + retries) / first attempts.", ""]


def render_autoscaling(autoscaling: dict[str, Any]) -> list[str]:
    return ["## Autoscaling", "", table(
        ["deployment", "replica-hours", "mean", "min", "max", "limit", "delay (s)", "scale-ups", "scale-downs",
         "TTFT p99 (s)", "TTFT p99 during ramps (s)"],
        [[name, fmt(a["provisioned_replica_hours"]), fmt(a["replicas_mean"]), str(a["replicas_min"]),
          str(a["replicas_max"]), str(a["max_replicas"]), fmt(a["scale_up_delay_s"]), str(a["scale_ups"]),
          str(a["scale_downs"]), fmt(a["ttft_p99_s"]), fmt(a["ttft_p99_during_ramps_s"])]
         for name, a in autoscaling.items()]), "",
        "Cloud pools with autoscaled deployments bill the provisioned accelerator-hours (from each boot decision "
        "to the release of the drained replica). Ramps: requests arriving while a replica was booting.", ""]


def render_tenants(tenants: dict[str, Any]) -> list[str]:
    header, rows = tenant_rows(tenants)
    return [f"## Tenants (admission policy `{tenants['policy']}`)", "", table(header, rows), "", fairness_note(tenants),
            ""]


def render_definitions() -> list[str]:
    return [
        "## Definitions",
        "",
        "- TTFT = first token time - arrival (includes queueing); TPOT = (completion - first token) / (output tokens - 1); "
        "E2E = completion - arrival; queueing = first scheduled step - arrival.",
        "- Latency covers requests that arrived in the window; throughput counts completions in the window.",
        "- Busy fraction = share of time the replica executes engine steps (any batch size).",
        "",
    ]
