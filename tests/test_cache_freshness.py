"""Keyed caches against their closed forms: TTL hit ratio 1 - e^(-lambda T) (sliding TTL) and lambda T / (1 + lambda T)
(TTL from the write) for Poisson lookups to one key, the Zipf sum over keys, LRU under uniform popularity (C / N),
staleness under Poisson content changes, purge vs serve-stale, and partitioning that can only lower the hit ratio;
then the same caches inside a run (semantic and retrieval), hostile values of every new field, and determinism."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import agent_doc, agent_scenario, scenario_doc, write_case
from typer.testing import CliRunner

from simfactory.api import run
from simfactory.cli import app
from simfactory.config.cache import KeyedCache
from simfactory.sim.keyed_cache import (
    KeyedCacheModel,
    ttl_hit_ratio,
    ttl_stale_fraction,
    zipf_probabilities,
    zipf_ttl_hit_ratio,
)

N_LOOKUPS = 40_000


def poisson_times(rate_per_s: float, n: int, seed: int = 0) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_per_s, n))


def replay(spec: dict[str, Any], times: np.ndarray, labels: list[str | None] | None = None, seed: int = 1):
    cache = KeyedCacheModel(KeyedCache.model_validate(spec), np.random.default_rng(seed), 0.0, math.inf)
    for i, t in enumerate(times.tolist()):
        cache.lookup(t, labels[i] if labels is not None else None)
    st = cache.stats()
    lookups = sum(p.lookups for p in st.values())
    hits = sum(p.hits for p in st.values())
    stale = sum(p.stale_hits for p in st.values())
    return hits / lookups, (stale / hits if hits else 0.0), st


def binomial_tol(p: float, n: int) -> float:
    """Five standard errors of a proportion (lookups are correlated through the entries: a loose bound)."""
    return 5 * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-3


# ---- closed forms -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("refresh", [True, False])
@pytest.mark.parametrize("lam_t", [0.3, 1.0, 3.0])
def test_one_key_ttl_hit_ratio_matches_the_closed_form(refresh, lam_t):
    lam, ttl = 2.0, lam_t / 2.0
    hit, _, _ = replay({"keys": 1, "ttl_s": ttl, "refresh_on_hit": refresh}, poisson_times(lam, N_LOOKUPS))
    expected = 1 - math.exp(-lam * ttl) if refresh else lam * ttl / (1 + lam * ttl)
    assert ttl_hit_ratio(lam, ttl, refresh) == pytest.approx(expected)
    assert hit == pytest.approx(expected, abs=binomial_tol(expected, N_LOOKUPS))


@pytest.mark.parametrize("refresh", [True, False])
def test_zipf_keys_hit_ratio_is_the_sum_over_keys(refresh):
    keys, s, lam, ttl = 200, 0.8, 50.0, 2.0
    hit, _, _ = replay({"keys": keys, "zipf_s": s, "ttl_s": ttl, "refresh_on_hit": refresh},
                       poisson_times(lam, N_LOOKUPS))
    p = zipf_probabilities(keys, s)
    per_key = 1 - np.exp(-p * lam * ttl) if refresh else p * lam * ttl / (1 + p * lam * ttl)
    expected = float((p * per_key).sum())
    assert zipf_ttl_hit_ratio(lam, keys, s, ttl, refresh) == pytest.approx(expected)
    # the warm-up (every key's first lookup misses) costs at most keys / lookups
    assert hit == pytest.approx(expected, abs=binomial_tol(expected, N_LOOKUPS) + keys / N_LOOKUPS)


def test_lru_under_uniform_popularity_hits_capacity_over_keys():
    keys, capacity = 100, 30
    hit, _, st = replay({"keys": keys, "zipf_s": 0.0, "capacity_entries": capacity}, poisson_times(10.0, N_LOOKUPS))
    assert hit == pytest.approx(capacity / keys, abs=binomial_tol(0.3, N_LOOKUPS) + capacity / N_LOOKUPS)
    assert st["shared"].evictions == st["shared"].lookups - st["shared"].hits - capacity  # every miss past the fill


@pytest.mark.parametrize("refresh", [True, False])
@pytest.mark.parametrize("mu", [0.1, 1.0])
def test_staleness_matches_its_closed_form_for_poisson_changes(refresh, mu):
    lam, ttl = 2.0, 1.5
    hit, stale, _ = replay({"keys": 1, "ttl_s": ttl, "refresh_on_hit": refresh, "invalidation": {"rate_per_s": mu}},
                           poisson_times(lam, N_LOOKUPS))
    if refresh:
        g = lam / (lam + mu) * (1 - math.exp(-(lam + mu) * ttl))
        p = 1 - math.exp(-lam * ttl)
        expected = 1 - (g / (1 - g)) / (p / (1 - p))
    else:
        expected = 1 - (1 - math.exp(-mu * ttl)) / (mu * ttl)
    assert ttl_stale_fraction(lam, mu, ttl, refresh) == pytest.approx(expected)
    assert stale == pytest.approx(expected, abs=binomial_tol(expected, int(hit * N_LOOKUPS)))
    # content changes do not change which lookups hit (the cache does not see them)
    assert hit == pytest.approx(ttl_hit_ratio(lam, ttl, refresh), abs=binomial_tol(0.5, N_LOOKUPS))


def test_purge_serves_nothing_stale_and_hits_less():
    spec = {"keys": 1, "ttl_s": 1.5, "invalidation": {"rate_per_s": 1.0}}
    times = poisson_times(2.0, N_LOOKUPS)
    hit_stale, stale, _ = replay(spec, times)
    spec["invalidation"]["on_change"] = "purge"
    hit_purge, stale_purge, _ = replay(spec, times)
    assert stale_purge == 0.0 and stale > 0
    assert hit_purge < hit_stale
    # a written entry lives min(T, time to the next change); the lookups in that window hit, the next one misses:
    # h = lambda E[min(T, C)] = lambda (1 - e^(-mu T)) / mu hits per miss
    h = 2.0 * (1 - math.exp(-1.0 * 1.5)) / 1.0
    assert hit_purge == pytest.approx(h / (1 + h), abs=binomial_tol(0.6, N_LOOKUPS))


def test_a_scheduled_change_makes_every_older_entry_stale():
    times = np.linspace(0.1, 100.0, 1000)
    hit, stale, _ = replay({"keys": 1, "invalidation": {"times_s": [50.0]}}, times)
    assert hit == pytest.approx(999 / 1000)  # no TTL: only the first lookup misses
    assert stale == pytest.approx(sum(t > 50.0 for t in times) / 999)  # every hit after the change is stale


@pytest.mark.parametrize("zipf_s", [0.0, 0.8])
def test_partitioning_can_only_lower_the_hit_ratio(zipf_s):
    times = poisson_times(20.0, N_LOOKUPS // 2)
    labels = np.random.default_rng(3).choice(["public", "internal", "pii"], size=len(times)).tolist()
    spec = {"keys": 500, "zipf_s": zipf_s, "ttl_s": 5.0}
    shared, _, _ = replay(spec, times, labels)
    split, _, parts = replay({**spec, "partition_by_sensitivity": True}, times, labels)
    assert set(parts) == {"public", "internal", "pii"}
    assert split < shared
    for name, p in parts.items():  # each partition behaves as a cache of its own share of the traffic
        share = labels.count(name) / len(labels)
        lam = 20.0 * share
        expected = zipf_ttl_hit_ratio(lam, 500, zipf_s, 5.0, False)
        assert p.hits / p.lookups == pytest.approx(expected, abs=binomial_tol(expected, p.lookups) + 500 / p.lookups)


def test_partition_overrides_apply_to_their_partition_only():
    times = poisson_times(5.0, 20_000)
    labels = np.random.default_rng(5).choice(["a", "b"], size=len(times)).tolist()  # thinned: Poisson at 2.5/s each
    _, _, parts = replay({"keys": 1, "ttl_s": 0.1, "partition_by_sensitivity": True,
                          "partitions": [{"sensitivity": "a", "ttl_s": 100.0}]}, times, labels)
    assert parts["a"].hits / parts["a"].lookups > 0.99
    assert parts["b"].hits / parts["b"].lookups == pytest.approx(ttl_hit_ratio(2.5, 0.1, False), abs=0.03)


# ---- inside a run ----------------------------------------------------------------------------------------------
def chat_case(rate: float, cache: dict[str, Any] | None, classes: int = 1, horizon_s: float = 100.0,
              seed: int = 1) -> dict[str, Any]:
    doc = scenario_doc(rate=rate, horizon_s=horizon_s, max_num_seqs=64, seed=seed)
    cls = doc["traffic"]["classes"][0]
    doc["traffic"]["classes"] = []
    for i, label in enumerate(["public", "pii", "internal"][:classes]):
        c = {**cls, "name": f"c{i}", "sensitivity": label}
        if cache is not None:
            c["semantic_cache"] = {"latency_s": {"kind": "fixed", "value": 0.01}, "keyed": copy.deepcopy(cache),
                                 "shared_as": "faq"}
        doc["traffic"]["classes"].append(c)
    return doc


def test_keyed_semantic_cache_in_a_run_matches_the_closed_form(case):
    lam, ttl = 8.0, 0.2
    r = run(case(chat_case(lam, {"keys": 1, "ttl_s": ttl, "refresh_on_hit": True}, horizon_s=150.0)))
    c = r.summary["caches"]["semantic/faq"]
    assert c["lookups"] == len(r.requests)  # every request looked the cache up once
    assert (r.requests["outcome"] == "cache_hit").sum() == c["hits"]
    expected = 1 - math.exp(-lam * ttl)
    assert c["hit_ratio"] == pytest.approx(expected, abs=binomial_tol(expected, c["lookups"]))
    assert c["effective_hit_ratio"] == c["hit_ratio"] and c["staleness_rate"] == 0.0


def test_partitioned_semantic_cache_hits_less_than_a_shared_one_in_a_run(case):
    spec = {"keys": 300, "zipf_s": 0.9, "ttl_s": 30.0}
    shared = run(case(chat_case(6.0, spec, classes=3))).summary["caches"]["semantic/faq"]
    split = run(case(chat_case(6.0, {**spec, "partition_by_sensitivity": True}, classes=3))).summary["caches"]["semantic/faq"]
    assert shared["lookups"] == split["lookups"]
    assert split["hit_ratio"] < shared["hit_ratio"]
    assert set(split["partitions"]) == {"public", "pii", "internal"} and set(shared["partitions"]) == {"shared"}
    assert sum(p["hits"] for p in split["partitions"].values()) == split["hits"]


def test_keyed_retrieval_cache_counts_match_the_tasks(case):
    steps = [{"type": "retrieval", "name": "kb", "latency_s": {"kind": "fixed", "value": 0.05},
              "hit_tokens": {"kind": "fixed", "value": 10}, "cache_latency_s": {"kind": "fixed", "value": 0.001},
              "cache": {"keys": 5, "zipf_s": 0.0, "ttl_s": 20.0, "invalidation": {"rate_per_s": 0.05}}}]
    r = run(case(agent_scenario(rate=2.0, horizon_s=60.0), None, {"agent": agent_doc(steps)}))
    c = r.summary["caches"]["retrieval/agent/kb"]
    t = r.tasks
    assert c["lookups"] == int(t["retrieval_calls"].sum()) and c["hits"] == int(t["cache_hits"].sum()) > 0
    assert 0 < c["stale_hits"] < c["hits"]
    hit = t["cache_hits"] == 1
    assert np.allclose(t.loc[hit, "retrieval"], 0.001) and np.allclose(t.loc[~hit, "retrieval"], 0.05)


@pytest.mark.parametrize("stale_fail_p", [1.0, 0.0])
def test_stale_passages_fail_their_step_at_the_stated_rate(case, stale_fail_p):
    """Every task makes one retrieval: with stale_fail_p 1 exactly the tasks that were served a stale entry fail (and
    are counted as retrieval failures); with 0 none does (the stale entry is served, as before)."""
    steps = [{"type": "retrieval", "name": "kb", "latency_s": {"kind": "fixed", "value": 0.05},
              "hit_tokens": {"kind": "fixed", "value": 10}, "stale_fail_p": stale_fail_p,
              "cache": {"keys": 5, "zipf_s": 0.0, "ttl_s": 20.0, "invalidation": {"rate_per_s": 0.05}}}]
    r = run(case(agent_scenario(rate=2.0, horizon_s=60.0), None, {"agent": agent_doc(steps)}))
    stale = r.summary["caches"]["retrieval/agent/kb"]["stale_hits"]
    failed = int((r.tasks["outcome"] == "failed").sum())
    assert stale > 5 and failed == (stale if stale_fail_p else 0)


def test_stale_fail_p_without_a_keyed_cache_is_refused(tmp_path):
    steps = [{"type": "retrieval", "name": "kb", "latency_s": {"kind": "fixed", "value": 0.05},
              "hit_tokens": {"kind": "fixed", "value": 10}, "cache_hit_ratio": 0.5, "stale_fail_p": 0.5}]
    path = write_case(tmp_path, agent_scenario(), workloads={"agent": agent_doc(steps)})
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "stale_fail_p needs a keyed cache" in res.output, res.output


def test_runs_without_keyed_caches_have_no_cache_section(case):
    r = run(case(chat_case(2.0, None)))
    assert "caches" not in r.summary


def test_same_seed_same_cache_figures(case):
    spec = {"keys": 100, "ttl_s": 5.0, "invalidation": {"rate_per_s": 0.2}, "partition_by_sensitivity": True}
    a = run(case(chat_case(5.0, spec, classes=2, horizon_s=40.0, seed=3))).summary["caches"]
    b = run(case(chat_case(5.0, spec, classes=2, horizon_s=40.0, seed=3))).summary["caches"]
    c = run(case(chat_case(5.0, spec, classes=2, horizon_s=40.0, seed=4))).summary["caches"]
    assert a == b and a != c


# ---- hostile values --------------------------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")
VALID = {"keys": 100, "ttl_s": 5.0, "capacity_entries": 50, "invalidation": {"rate_per_s": 0.1, "times_s": [1.0]},
         "partition_by_sensitivity": True, "partitions": [{"sensitivity": "pii", "ttl_s": 1.0, "capacity_entries": 5}]}
HOSTILE = (
    [("keys", v) for v in (0, -1, 10**8, NAN, "many", True)]
    + [("zipf_s", v) for v in (-0.1, 11, NAN, INF, "one")]
    + [("ttl_s", v) for v in (0, -1, 1e10, NAN, INF)]
    + [("refresh_on_hit", v) for v in (3, "yes")]
    + [("capacity_entries", v) for v in (0, -5, 10**9, 1.5)]
    + [("invalidation.rate_per_s", v) for v in (-1, NAN, INF, 1e300)]
    + [("invalidation.times_s", v) for v in ([-1.0], [NAN], [1e10], "soon")]
    + [("invalidation.on_change", v) for v in ("delete", 1)]
    + [("partition_by_sensitivity", v) for v in ("no", 2)]
    + [("partitions.0.ttl_s", v) for v in (0, NAN, -3)]
    + [("partitions.0.capacity_entries", v) for v in (0, 10**9)]
    + [("partitions.0.sensitivity", v) for v in ("", "a b", 5)]
)


def _set(doc: Any, dotted: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return doc


def _refused(path: Path, field: str) -> str:
    res = CliRunner().invoke(app, ["validate", str(path)])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and "Traceback" not in res.output and len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and f": {field}" in lines[0], (field, lines[0])
    return lines[0]


def _error_path(dotted: str) -> str:
    return re.sub(r"\.(\d+)", r"[\1]", dotted)


@pytest.mark.parametrize("dotted, value", HOSTILE)
def test_hostile_semantic_cache_values_are_refused_in_one_line(tmp_path, dotted, value):
    doc = chat_case(1.0, _set(VALID, dotted, value))
    path = write_case(tmp_path, doc)
    _refused(path, "traffic.classes[0].semantic_cache.keyed." + _error_path(dotted))


@pytest.mark.parametrize("dotted, value", HOSTILE[::3])
def test_hostile_retrieval_cache_values_are_refused_in_one_line(tmp_path, dotted, value):
    step = {"type": "retrieval", "name": "kb", "latency_s": {"kind": "fixed", "value": 0.05},
            "hit_tokens": {"kind": "fixed", "value": 10}, "cache": _set(VALID, dotted, value)}
    path = write_case(tmp_path, agent_scenario(), workloads={"agent": agent_doc([step])})
    _refused(path, "steps[0]")


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.update(hit_ratio=0.3), "one of them"),
    (lambda c: c.pop("keyed"), "one of them"),
    (lambda c: c["keyed"].update(partition_by_sensitivity=False), "partition_by_sensitivity"),
    (lambda c: c["keyed"]["partitions"].append(dict(c["keyed"]["partitions"][0])), "duplicate"),
    (lambda c: c.update(sensitivity="x"), "sensitivity"),
])
def test_inconsistent_semantic_cache_settings_are_refused(tmp_path, change, reason):
    doc = chat_case(1.0, copy.deepcopy(VALID))
    change(doc["traffic"]["classes"][0]["semantic_cache"])
    res = CliRunner().invoke(app, ["validate", str(write_case(tmp_path, doc))])
    assert res.exit_code == 2 and "Traceback" not in res.output and reason in res.output, res.output


def test_classes_sharing_a_cache_must_agree_on_it(tmp_path):
    doc = chat_case(1.0, copy.deepcopy(VALID), classes=2)
    doc["traffic"]["classes"][1]["semantic_cache"]["keyed"]["ttl_s"] = 99.0
    res = CliRunner().invoke(app, ["validate", str(write_case(tmp_path, doc))])
    assert res.exit_code == 2 and "classes sharing a cache" in res.output, res.output


def test_a_retrieval_step_takes_one_cache_model(tmp_path):
    step = {"type": "retrieval", "name": "kb", "latency_s": {"kind": "fixed", "value": 0.05},
            "hit_tokens": {"kind": "fixed", "value": 10}, "cache_hit_ratio": 0.5, "cache": VALID}
    path = write_case(tmp_path, agent_scenario(), workloads={"agent": agent_doc([step])})
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "not both" in res.output, res.output


@pytest.mark.parametrize("field, value", [
    ("sensitivity", 5), ("sensitivity", ""), ("sensitivity", "a b"), ("sensitivity", True),
    ("semantic_cache.shared_as", 5), ("semantic_cache.shared_as", "a/b"), ("semantic_cache.shared_as", "x" * 81),
])
def test_hostile_sensitivity_labels_and_cache_names_are_refused(tmp_path, field, value):
    doc = chat_case(1.0, copy.deepcopy(VALID))
    doc["traffic"]["classes"][0] = _set(doc["traffic"]["classes"][0], field, value)
    _refused(write_case(tmp_path, doc), f"traffic.classes[0].{field}")
