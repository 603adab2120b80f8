"""summary.md sections for agent controls and keyed caches: the per-component fault table, budget hits,
compression and gateway figures, and cache hit / staleness ratios per partition."""

from __future__ import annotations

from typing import Any

from simfactory.report.money import format_usd


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def render_agent_controls(tasks: dict[str, Any]) -> list[str]:
    """Per-component faults of every agent class, then the controls of classes that use them."""
    out: list[str] = []
    rows = [[cls, key, f"{c['calls']:,}", f"{c['failures']:,}", f"{c['timeouts']:,}", _pct(c["failure_rate"]),
             _pct(c["timeout_rate"])]
            for cls, t in tasks.items() for key, c in t.get("components", {}).items()]
    if rows:
        out += ["### Faults and timeouts per component", "",
                "Calls made by tasks started in the window, per step type / service / model role (kind/name); a "
                "failed or timed-out call fails its step (a retry may still save the task).", ""]
        out += _table(["class", "component", "calls", "failures", "timeouts", "failure rate", "timeout rate"], rows)
    ctl = {cls: t["controls"] for cls, t in tasks.items() if "controls" in t}
    if ctl:
        out += ["### Agent controls", ""]
        out += _table(
            ["class", "budget hits (tokens / USD / tool calls)", "compressions/task", "tokens removed/task",
             "gateway calls/task", "gateway s/task", "gateway fees"],
            [[cls, " / ".join(str(c["budget_hits"][k]) for k in ("tokens", "usd", "tool_calls")),
              _num(c["compressions_per_task"]), _num(c["compressed_tokens_per_task"], 0),
              _num(c["gateway_calls_per_task"]), _num(c["gateway_s_per_task"], 3), format_usd(c["gateway_usd"])]
             for cls, c in ctl.items()])
    return out


def render_caches(caches: dict[str, Any]) -> list[str]:
    """Each keyed cache and its partitions: hit ratio, staleness (stale share of hits), effective hit ratio."""
    rows = []
    for name, c in caches.items():
        for part, p in [("all", c), *c["partitions"].items()]:
            rows.append([name, part, f"{p['lookups']:,}", _pct(p["hit_ratio"]), _pct(p["staleness_rate"]),
                         _pct(p["effective_hit_ratio"]), f"{p['evictions']:,}"])
    return (["## Keyed caches", "",
             "Lookups in the window. Staleness: share of hits answered from an entry whose content changed after it "
             "was written; effective hit ratio: fresh hits per lookup.", ""]
            + _table(["cache", "partition", "lookups", "hit ratio", "staleness", "effective hit ratio", "evictions"],
                     rows))
