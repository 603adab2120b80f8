"""Derive the scenarios a sharded run (simfactory/fleet) simulates: each shard is the whole fleet at 1/k scale.

Every deployment keeps its place in each shard (1/k of its replicas, of its pool, of every arrival rate), so
routes that couple deployments (cascades, tiers, weighted splits, nearest-region failover, fallbacks) stay inside
each shard: the coupled group is sharded together. Dividing a Poisson stream's rate by k is exact thinning (each
arrival sent to one of k shards at random gives k independent Poisson streams of rate/k; Cinlar, Introduction to
Stochastic Processes, 1975, sec. 4.1), and a random balancer over a shard's replicas then sends every request to
each of the fleet's replicas with probability 1/replicas, as the whole fleet's would. Round-robin and
least-outstanding balancers see only their shard's replicas: an approximation whose error shrinks with shard size
(benchmarks/fleet_validation.py measures it).

What cannot be split is refused with a message naming the field and why: counts that do not divide by k, traces
(timestamps from a file), agent workloads (tool services and reviewers shared across the fleet), training jobs,
rolling restarts (one replica of the whole pool at a time) and tenant rate limits (one bucket for the fleet).
Absolute queue thresholds (a route's or fallback's max_waiting, a deployment's max_waiting, tenant quotas) are
divided by k with the rest, so each shard applies the same threshold per replica."""

from __future__ import annotations

from typing import Any

import numpy as np

from simfactory.config.loader import validate
from simfactory.config.scenario import Scenario, scenario_document
from simfactory.errors import InputError
from simfactory.resolve.resolved import ResolvedClass

RATE_FIELDS = {"poisson": "rate_per_s", "constant": "rate_per_s", "gamma": "rate_per_s", "weibull": "rate_per_s",
               "diurnal": "mean_rate_per_s"}
SHARD_SEED_KEY = 0x5A4D  # spawn-key prefix: shard seeds never coincide with sweep seeds of the same base


def shard_seed(base: int, shard: int) -> int:
    """Shard `shard`'s seed from the scenario seed and its index alone: independent of executor and job count."""
    return int(np.random.SeedSequence(base, spawn_key=(SHARD_SEED_KEY, shard)).generate_state(1)[0])


class _Split:
    """Divides a scenario document's counts by k (times `parts`), refusing counts that do not divide evenly."""

    def __init__(self, file: str, shards: int, parts: int) -> None:
        self.file, self.k, self.parts = file, shards, parts

    def count(self, value: int | None, where: str, what: str) -> int | None:
        if value is None:
            return None
        if value % self.k:
            raise InputError(self.file, where, f"{value} {what} do not split into {self.k} equal shards "
                                               f"(sharding.shards); choose shards that divide every count")
        return value // self.k * self.parts

    def rate(self, value: float) -> float:
        return value * self.parts / self.k

    def arrival(self, a: dict[str, Any], where: str) -> dict[str, Any]:
        a = dict(a)
        process = a["process"]
        if process in RATE_FIELDS:
            a[RATE_FIELDS[process]] = self.rate(a[RATE_FIELDS[process]])
        elif process == "schedule":
            a["rates_per_s"] = [self.rate(r) for r in a["rates_per_s"]]
        elif process == "mmpp":
            a["states"] = [{**s, "rate_per_s": self.rate(s["rate_per_s"])} for s in a["states"]]
        elif process == "closed":
            a["concurrency"] = self.count(a["concurrency"], f"{where}.concurrency", "closed-loop clients")
            a["requests"] = self.count(a.get("requests"), f"{where}.requests", "requests of the clients' count")
        return a


def refuse_unshardable(sc: Scenario, classes: list[ResolvedClass], file: str, field: str = "sharding.shards") -> None:
    """Refuse what couples the whole fleet in a way equal shards cannot reproduce (one message saying why)."""
    why = None
    for i, c in enumerate(classes):
        if c.config.trace is not None:
            why = f"traffic.classes[{i}] replays a trace: its timestamps come from one file and cannot be thinned"
        elif c.agent is not None:
            why = (f"traffic.classes[{i}] runs agent tasks: their tool services and human reviewers are shared by "
                   "the whole fleet, so shards would not be independent")
        elif c.config.arrival == "workload":
            why = f"traffic.classes[{i}] takes its arrivals from its workload file; give the process inline to shard"
        if why:
            break
    if why is None and sc.training:
        why = "training jobs occupy whole pools and are not split across shards; simulate them without sharding"
    if why is None and sc.faults.rolling_restarts:
        why = ("faults.rolling_restarts restart one replica of the whole pool at a time; in k shards k would "
               "restart at once")
    if why is None and any(t.rate_limit is not None for t in sc.tenants):
        why = "a tenant's rate_limit is one token bucket for the whole fleet; shards cannot share it"
    if why is not None:
        raise InputError(file, field, f"this scenario cannot be sharded: {why}")


def shard_scenario(sc: Scenario, file: str, shards: int, parts: int = 1) -> Scenario:
    """The scenario of `parts` of `shards` equal shards (parts=1: one shard; parts=m: the m shards a sampled run
    simulates, as one fleet, for pricing and merging), without its sharding block."""
    split = _Split(file, shards, parts)
    doc = scenario_document(sc)
    doc["sharding"] = None
    for i, p in enumerate(doc["pools"]):
        p["count"] = split.count(p["count"], f"pools[{i}].count", "accelerators")
    for i, d in enumerate(doc["deployments"]):
        at = f"deployments[{i}]"
        d["replicas"] = split.count(d["replicas"], f"{at}.replicas", "replicas")
        d["max_waiting"] = split.count(d["max_waiting"], f"{at}.max_waiting", "waiting requests")
        if d.get("autoscaling"):
            a = d["autoscaling"]
            a["min_replicas"] = split.count(a["min_replicas"], f"{at}.autoscaling.min_replicas", "replicas")
            a["max_replicas"] = split.count(a["max_replicas"], f"{at}.autoscaling.max_replicas", "replicas")
        if d.get("disaggregated"):
            g = d["disaggregated"]
            g["prefill_replicas"] = split.count(g["prefill_replicas"], f"{at}.disaggregated.prefill_replicas",
                                                "prefill replicas")
        for j, r in enumerate(d.get("reserved") or []):
            r["replicas"] = split.count(r["replicas"], f"{at}.reserved[{j}].replicas", "reserved replicas")
    traffic = doc["traffic"]
    if traffic.get("arrival"):
        traffic["arrival"] = split.arrival(traffic["arrival"], "traffic.arrival")
    for i, c in enumerate(traffic["classes"]):
        if isinstance(c.get("arrival"), dict):
            c["arrival"] = split.arrival(c["arrival"], f"traffic.classes[{i}].arrival")
        c["sessions"] = split.count(c.get("sessions"), f"traffic.classes[{i}].sessions", "sessions")
    for i, r in enumerate(doc["routing"]["routes"]):
        r["max_waiting"] = split.count(r.get("max_waiting"), f"routing.routes[{i}].max_waiting", "waiting requests")
        if r.get("fallback"):
            r["fallback"]["max_waiting"] = split.count(r["fallback"].get("max_waiting"),
                                                       f"routing.routes[{i}].fallback.max_waiting", "waiting requests")
    for i, t in enumerate(doc["tenants"]):
        t["max_concurrency"] = split.count(t.get("max_concurrency"), f"tenants[{i}].max_concurrency", "requests")
        t["max_waiting"] = split.count(t.get("max_waiting"), f"tenants[{i}].max_waiting", "requests")
    return validate(Scenario, doc, file)


def refuse_unwindowable(sc: Scenario, file: str) -> None:
    """Time windows shift time-of-day inputs by their start; refuse those that cannot be shifted."""
    arrivals = [sc.traffic.arrival, *(c.arrival for c in sc.traffic.classes if not isinstance(c.arrival, str))]
    for arr in arrivals:
        why = None
        if getattr(arr, "process", None) == "schedule":
            why = "a rate schedule's window index is not shifted with the time window"
        elif getattr(arr, "weekday_multipliers", None) is not None:
            why = "weekday_multipliers count days from t = 0, which a later window does not start at"
        elif getattr(arr, "requests", None) is not None:
            why = "a closed loop's request count is one benchmark from a cold start, not a rate a window can repeat"
        elif getattr(arr, "ramp_up_s", 0.0) > (sc.sharding.window_overlap_s if sc.sharding else 0.0):
            why = ("its clients ramp in over ramp_up_s, longer than sharding.window_overlap_s: every window would "
                   "ramp them in again inside its measured span")
        if why:
            raise InputError(file, "sharding.windows", f"this scenario cannot be split into time windows: {why}")


def refuse_unsampleable(sc: Scenario, file: str) -> None:
    """A sample of windows stands for the others, so nothing may happen at a set time that a sampled window could
    miss or repeat: scheduled outages and flash events are refused (random faults and autoscaling are fine)."""
    arrivals = [sc.traffic.arrival, *(c.arrival for c in sc.traffic.classes if not isinstance(c.arrival, str))]
    why = None
    if sc.faults.outages:
        why = "faults.outages happen at set times, which the sampled windows would miss or stand for several times"
    elif any(getattr(a, "events", None) for a in arrivals):
        why = "a flash event happens at a set time, which the sampled windows would miss or stand for several times"
    if why:
        raise InputError(file, "sharding.sample_windows", f"simulate every window (unset sample_windows): {why}")


def windows_start_s(sc: Scenario) -> float:
    """Where the windows start: 0, or the end of the warm-up when only a sample of them is simulated (a sample
    estimates the measured span, and each window is warm-started by its overlap instead)."""
    sh = sc.sharding
    return sc.sim.warmup_s if sh is not None and sh.sample_windows is not None and sh.sample_windows < sh.windows \
        else 0.0


def _whole_samples(seconds: float, resolution_s: float) -> bool:
    steps = seconds / resolution_s
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, steps)


def window_length_s(sc: Scenario, windows: int, file: str) -> float:
    """Each window's length: a whole number of timeline samples, so busy time splits exactly at its edges."""
    start = windows_start_s(sc)
    resolution = sc.sim.timeline_resolution_s
    if not _whole_samples(start, resolution):
        raise InputError(file, "sim.warmup_s", f"sampled windows start where the warm-up ends ({start:g} s), which "
                         f"is not a whole number of timeline samples ({resolution:g} s); pick a warm-up that is")
    length = (sc.sim.horizon_s - start) / windows
    if not _whole_samples(length, resolution) or round(length / resolution) < 1:
        span = "horizon_s" if start == 0 else "(horizon_s - warmup_s)"
        raise InputError(file, "sharding.windows", f"a window of {length:g} s ({span} / windows) is not a whole "
                         f"number of timeline samples ({resolution:g} s); pick windows that divide it")
    return length


# balancers that read the replicas' load: over a shard's replicas they balance like a pool of that size, not the
# fleet's (benchmarks/jsq_phase.py; README "Fleet scale")
LOAD_AWARE_BALANCERS = ("least_outstanding", "least_kv", "power_of_two", "pull", "prefix_affinity", "kv_aware")


def check_sharding(sc: Scenario, classes: list[ResolvedClass], file: str, errors: list[InputError],
                   warnings: list[str] | None = None) -> None:
    """Resolve-time checks of a sharding block: what cannot be split is refused before anything runs; a load-aware
    balancer over shards is run but said (its TTFT is that of a smaller pool: optimistic)."""
    sh = sc.sharding
    if sh is None:
        return
    balancer = sc.routing.load_balancer
    if warnings is not None and sh.shards > 1 and balancer in LOAD_AWARE_BALANCERS:
        per = ", ".join(f"{d.name} ({d.replicas / sh.shards:g})" for d in sc.deployments)
        warnings.append(f"{file}: sharding.shards: {balancer} balances each shard's replicas only ({per} a shard), "
                        "like a pool of that size: its TTFT is not the fleet's but a smaller pool's, optimistic "
                        "(least_outstanding TTFT p50 against one pool of 256: -9.5% in shards of 16, -2.4% in shards "
                        "of 128; larger pools wait longer still; README 'Fleet scale'); TPOT, E2E and cost were within "
                        "2%. To keep the whole pool, sample time windows instead (shards: 1, windows: W, "
                        "sample_windows: m: within 2% at 256 replicas)")
    try:
        if sh.shards > 1:
            refuse_unshardable(sc, classes, file)
            shard_scenario(sc, file, sh.shards)
        if sh.windows > 1:
            refuse_unshardable(sc, classes, file, "sharding.windows")
            refuse_unwindowable(sc, file)
            window_length_s(sc, sh.windows, file)
            if sh.sample_windows is not None and sh.sample_windows < sh.windows:
                refuse_unsampleable(sc, file)
    except InputError as e:
        errors.append(e)
