"""The per-tenant table and fairness note, from summary.json's `tenants` section (summary.md and report.html)."""

from __future__ import annotations

from typing import Any


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.3f} s"


def tenant_rows(tenants: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and one row per tenant."""
    header = ["tenant", "weight", "requests", "completed", "queue wait mean / p50 / p99", "TTFT p50 / p99",
              "E2E p50 / p99", "E2E CV", "preemptions / request", "tokens/s", "token share", "GPU time share"]
    rows = []
    for name, b in tenants["by_tenant"].items():
        q, ttft, e2e = b["queue_s"], b["ttft_s"], b["e2e_s"]
        rows.append([
            name, f"{b['weight']:g}", f"{b['requests']:,}", f"{b['completed']:,}",
            f"{_s(q['mean'])} / {_s(q['p50'])} / {_s(q['p99'])}", f"{_s(ttft['p50'])} / {_s(ttft['p99'])}",
            f"{_s(e2e['p50'])} / {_s(e2e['p99'])}", _num(b["e2e_cv"]), _num(b["preemptions_per_request"]),
            _num(b["tokens_per_s"], 0), _num(b["token_share"]), _num(b["gpu_time_share"]),
        ])
    return header, rows


def fairness_note(tenants: dict[str, Any]) -> str:
    return (f"Jain's fairness index: {_num(tenants['jain_index_weighted'])} over tokens served per unit of weight, "
            f"{_num(tenants['jain_index_max_min'])} over tokens served relative to each tenant's weighted max-min "
            "fair share of what it asked for (1 = fair). Queue wait: arrival at the deployment to the first "
            "scheduled step (the tenant gate and the engine's queue); latencies of requests that arrived in the "
            "window; tokens (prompt + output) and GPU time of the requests completed in it.")
