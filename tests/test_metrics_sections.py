"""The summary's section functions, each on a small hand-built frame: known inputs, known numbers.

compute_metrics is a composition of these; the end-to-end tests cover the composition, these pin what each
section computes without a simulation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simfactory.metrics.summary import (
    PERCENTILES,
    class_window_usd,
    latency_block,
    little_law_section,
    outcome_counts,
    prefix_cache_section,
    stats,
    throughput_section,
)
from simfactory.sim.outcomes import Outcome


def test_stats_of_1_to_100_gives_linear_percentiles_and_drops_nan() -> None:
    values = np.append(np.arange(1.0, 101.0), [np.nan, np.nan])
    s = stats(values)
    assert s["count"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert s["max"] == 100.0
    # numpy's linear interpolation over 1..100: p = 1 + 99 * q
    for p in PERCENTILES:
        assert s[f"p{p}"] == pytest.approx(1 + 99 * p / 100)


def test_stats_of_nothing_is_all_none() -> None:
    s = stats(np.array([np.nan]))
    assert s["count"] == 0
    assert all(s[k] is None for k in s if k != "count")


def test_latency_block_covers_only_answered_requests() -> None:
    df = pd.DataFrame(
        {
            "outcome": ["completed", "completed", "cache_hit", "shed", "failed"],
            "ttft_s": [0.1, 0.3, 0.2, 9.0, 9.0],
            "tpot_s": [0.01, 0.03, np.nan, np.nan, np.nan],
            "e2e_s": [1.0, 3.0, 0.2, 9.0, 9.0],
            "queue_s": [0.0, 0.2, np.nan, 9.0, 9.0],
        }
    )
    block = latency_block(df)
    assert set(block) == {"ttft", "tpot", "e2e", "queue"}
    assert block["ttft"]["count"] == 3
    assert block["ttft"]["mean"] == pytest.approx(0.2)
    assert block["ttft"]["max"] == pytest.approx(0.3)  # the shed and failed requests' 9 s are not latency
    assert block["tpot"]["count"] == 2  # a cache hit streams no tokens
    assert block["e2e"]["p50"] == pytest.approx(1.0)


def test_outcome_counts_list_every_final_outcome_and_add_up_to_the_requests() -> None:
    labels = ["completed"] * 5 + ["rejected_queue_full"] * 2 + ["cache_hit", "failed", "unfinished"]
    counts = outcome_counts(pd.DataFrame({"outcome": labels}))
    assert sum(counts.values()) == len(labels)
    assert counts["completed"] == 5
    assert counts["rejected_queue_full"] == 2
    assert counts["shed"] == 0  # listed although none ended so
    assert list(counts) == [o.label for o in Outcome if o != Outcome.PENDING]


def test_throughput_section_divides_by_the_window() -> None:
    completed = pd.DataFrame({"output_tokens": [100, 300, 200], "input_tokens": [1000, 1000, 2000]})
    answered = completed.iloc[:2]  # say the third was an escalation's first tier
    t = throughput_section(completed, answered, offered_requests=8, window_s=2.0)
    assert t == {
        "requests_per_s": 1.5,
        "output_tokens_per_s": 300.0,
        "input_tokens_per_s": 2000.0,
        "offered_requests_per_s": 4.0,
        "answered_requests_per_s": 1.0,
    }


def test_little_law_section_counts_requests_still_in_the_system_until_the_end() -> None:
    w_stl = pd.DataFrame({"in_system": [1.0, 2.0, 3.0]})
    measured = pd.DataFrame({"arrival_s": [10.0, 20.0], "departure_s": [14.0, np.nan]})
    law = little_law_section(w_stl, measured, window_s=10.0, sim_end_s=30.0)
    assert law["mean_in_system"] == pytest.approx(2.0)
    assert law["arrival_rate_per_s"] == pytest.approx(0.2)
    assert law["mean_time_in_system_s"] == pytest.approx((4.0 + 10.0) / 2)


def test_prefix_cache_section_counts_admitted_requests_of_its_deployment() -> None:
    req = pd.DataFrame(
        {
            "deployment": ["a", "a", "a", "b"],
            "first_scheduled_s": [1.0, 2.0, np.nan, 1.0],  # the third was never admitted
            "cached_tokens": [0, 300, 500, 900],
            "input_tokens": [400, 600, 500, 1000],
        }
    )
    cache = prefix_cache_section(req, "a", capacity_tokens=10_000)
    assert cache == {
        "capacity_tokens": 10_000,
        "request_hit_ratio": 0.5,  # requests with any hit, not tokens
        "hit_ratio": 0.5,
        "prefill_tokens_saved": 300,
        "saved_fraction_of_prompt_tokens": 0.3,
    }
    assert prefix_cache_section(req, "a", capacity_tokens=0) is None


def test_class_window_usd_splits_the_window_cost_by_replica_time() -> None:
    measured = pd.DataFrame({"class": ["chat", "chat", "batch"], "replica_s": [1.0, 2.0, 1.0]})
    by_class = class_window_usd(measured, window_usd=8.0)
    assert by_class == pytest.approx({"chat": 6.0, "batch": 2.0})
    assert sum(by_class.values()) == pytest.approx(8.0)
    assert class_window_usd(measured.assign(replica_s=0.0), window_usd=8.0) == {}
