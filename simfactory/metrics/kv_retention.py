"""Agent tasks that keep their KV cache between LLM steps (kv_retention: retain): per class, over the tasks started
in the measurement window, how their pins ended, the prefill they spared and what they held while the task was
away (KV block-, token-, accelerator- and slot-seconds). What retaining saves in task latency, and what it costs
other requests, shows in the pair of runs (retain against evict), not in one run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from simfactory.sim.kv_retention import RELEASE_REASONS
from simfactory.sim.run import SimResult


def kv_retention_summary(result: SimResult, tasks: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Class name -> its retention block, for the classes whose tasks retain their KV (empty for the others)."""
    ledger = result.kv_retention
    if ledger is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    measured = tasks[tasks["measured"]]
    for c in result.resolved.classes:
        policy = c.kv_retention
        if policy is None:
            continue
        ids = measured.loc[measured["class"] == c.config.name, "task_id"].tolist()
        recs = [ledger[i] for i in ids if i in ledger]
        ended = {r: sum(rec.ended[r] for rec in recs) for r in RELEASE_REASONS}
        pins = sum(ended.values())
        n = len(ids)
        totals = {k: float(sum(getattr(rec, k) for rec in recs))
                  for k in ("kv_block_s", "kv_token_s", "accelerator_s", "slot_s")}
        saved = int(sum(rec.prefill_tokens_saved for rec in recs))
        out[c.config.name] = {
            "policy": {"ttl_s": policy.ttl_s, "hold_slot": policy.hold_slot},
            "tasks": n,
            "pins": pins,
            "pins_ended": ended,
            "hit_ratio": ended["hit"] / pins if pins else None,
            "prefill_tokens_saved": saved,
            "prefill_tokens_saved_per_task": saved / n if n else None,
            **totals,
            "accelerator_s_per_task": totals["accelerator_s"] / n if n else None,
            "kv_token_s_per_task": totals["kv_token_s"] / n if n else None,
        }
    return out
