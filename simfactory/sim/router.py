"""Routing: which deployment serves a request (routes: tiers, weights, fallback) and which replica
(load balancing), plus the admission controls in front of them (token buckets).

Route policies:
- cheapest_capable: the smallest tier whose capability covers the request's difficulty
- cascade: the smallest tier, always (confidence-threshold routing)
- weighted: split by weight; sticky sessions hash their session id onto the weights
After an answer, a tiered route's validator rejects it with p(tier, difficulty) and the request is
escalated to the next tier (see FleetModel).

Cache-aware load balancing (routing.cache_aware holds the thresholds):
- prefix_affinity: each request has a home replica, the highest-random-weight (rendezvous) choice for its leading
  prefix key (Thaler & Ravishankar, "Using name-based mappings to increase hit rates", IEEE/ACM ToN 1998;
  https://en.wikipedia.org/wiki/Rendezvous_hashing): removing or adding a replica moves only the keys homed on it. A home holding
  more than the balance thresholds above the least-loaded replica is passed over for least_outstanding, as SGLang's
  cache-aware router does (https://github.com/sgl-project/sglang/blob/083d601378d0baaef6191e7f2d40fb70d06518af/
  sgl-router/py_src/sglang_router/router_args.py, as_of 2025-10) and like llm-d's prefix-cache scorer weighed against
  its load scorers (https://llm-d.ai/docs/guide/Installation/precise-prefix-cache-aware, as_of 2025-10).
- kv_aware: peek at every eligible replica's prefix cache (read-only) and take the one holding the longest prefix of
  the prompt among those not overloaded; below cache_threshold of the prompt, least_outstanding. SGLang's router
  guesses the caches from a radix tree of what it sent where; NVIDIA Dynamo's KV router reads the engines' KV-cache
  events (https://docs.nvidia.com/dynamo/latest/router/README.html, as_of 2025-10) and so, like this model, sees
  the real cache state (evictions included). Dynamo then scores overlap against load in one cost; this keeps
  SGLang's two thresholds. Below the threshold SGLang picks the replica with the smallest tree; here the least loaded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from simfactory.config.routing import CacheAware
from simfactory.resolve import ResolvedRoute
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.prefix_cache import request_prefixes
from simfactory.sim.queue import WaitingQueue

_MASK64 = (1 << 64) - 1


class TokenBucket:
    """`burst` tokens, refilled continuously at `rate_per_s`; each admitted request takes one."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last_s = 0.0

    def try_take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_per_s)
        self.last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def first_tier(route: ResolvedRoute, difficulty: float) -> int:
    """Index of the tier a route starts a request at."""
    if route.config.policy == "cheapest_capable":
        for i, (_, tier) in enumerate(route.tiers):
            if difficulty <= tier.capability:
                return i
        return len(route.tiers) - 1
    return 0


def rejection_p(route: ResolvedRoute, tier_index: int, difficulty: float) -> float:
    """Probability the validator rejects an answer of this tier to a request of this difficulty."""
    tier = route.tiers[tier_index][1]
    return tier.fail_p if difficulty <= tier.capability else tier.fail_p_incapable


def weighted_choice(route: ResolvedRoute, u: float) -> int:
    """Deployment index for a uniform draw u in [0, 1) over the route's weights."""
    total = sum(w for _, w in route.weights)
    acc = 0.0
    for dep, w in route.weights:
        acc += w / total
        if u < acc:
            return dep
    return route.weights[-1][0]


def session_uniform(session: int) -> float:
    """A stable number in [0, 1) for a session id (sticky weighted routing)."""
    return (zlib.crc32(session.to_bytes(8, "little", signed=True)) % 1_000_003) / 1_000_003


def mix64(x: int) -> int:
    """SplitMix64's output function (Steele, Lea & Flood, OOPSLA 2014; https://prng.di.unimi.it/splitmix64.c): a
    64-bit integer scrambled so that nearby keys give unrelated weights (Python's hash() of an int is the int)."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def rendezvous(key: int, slots: list[int]) -> int:
    """The slot with the highest random weight w(key, slot) (rendezvous hashing): every caller agrees on it without
    shared state, and dropping a slot moves only the keys that chose it."""
    k = mix64(key & _MASK64)
    return max(slots, key=lambda s: (mix64(k ^ mix64(s)), s))


class ReplicaBalancer:
    """Picks a replica of one deployment for each request (or, for `pull`, holds one shared queue)."""

    def __init__(
        self,
        policy: str,
        engines: list[ReplicaEngine],
        rng: np.random.Generator,
        reserved_for: list[int] | None = None,
        cache_aware: CacheAware | None = None,
    ) -> None:
        self.policy = policy
        self.cache_aware = cache_aware or CacheAware()
        self.engines = engines
        self.slot_of = {id(e): i for i, e in enumerate(engines)}  # engine -> its index here
        self.rng = rng
        self._next = 0
        self.shared_queue: WaitingQueue | None = engines[0].queue if policy == "pull" else None
        # service class each replica is reserved for (-1: serves everyone)
        self.reserved_for = reserved_for or [-1] * len(engines)
        self._eligible: dict[int, list[int]] = {}
        self.affinity: dict[int, int] = {}
        self.active: list[bool] | None = None  # autoscaling: replicas taking new requests (None: all)
        self.healthy = [True] * len(engines)  # faults: replicas the health check sees up
        self.pending: list[tuple[int, int, int, int]] = []  # requests held while no replica is active
        self.gated = 0  # requests for this deployment waiting at the tenant gate (sim/tenancy.py), not yet here
        self.dispatched = 0  # requests dispatched to this deployment so far
        self.on_change: list[Callable[[], None]] = []  # told when replicas start, stop, fail or recover
        # requests each replica holds (running, preempted, own queue), kept by the engines as they change, so
        # least_outstanding is a C-level min over a list instead of a Python pass over the replicas
        self.held = [0] * len(engines)
        if self.shared_queue is None:
            for slot, e in enumerate(engines):
                e.held_counts, e.held_slot = self.held, slot

    def set_active(self, active: list[bool]) -> None:
        """Autoscaling changed which replicas take requests; requests held at zero replicas go out now."""
        self.active = list(active)
        self._eligible.clear()
        if any(active) and self.pending:
            held, self.pending = self.pending, []
            for rid, priority, sc, key in held:
                self.dispatch(rid, priority, sc, key)
        for told in self.on_change:
            told()

    def set_healthy(self, i: int, up: bool) -> None:
        self.healthy[i] = up
        self._eligible.clear()
        if up and self.pending:
            held, self.pending = self.pending, []
            for rid, priority, sc, key in held:
                self.dispatch(rid, priority, sc, key)
        for told in self.on_change:
            told()

    def pending_count(self) -> int:
        """Requests for this deployment that no replica holds yet: held at zero replicas, or at the tenant gate."""
        return len(self.pending) + self.gated

    def eligible(self, service_class: int) -> list[int]:
        if service_class not in self._eligible:
            self._eligible[service_class] = [
                i for i, r in enumerate(self.reserved_for)
                if (r == -1 or r == service_class) and (self.active is None or self.active[i]) and self.healthy[i]
            ]
        return self._eligible[service_class]

    def waiting(self) -> int:
        """Requests waiting for this deployment: in its queues, held at zero replicas, or at the tenant gate."""
        if self.shared_queue is not None:
            return len(self.shared_queue) + self.gated
        return sum(len(e.queue) for e in self.engines) + len(self.pending) + self.gated

    def dispatch(self, rid: int, priority: int = 0, service_class: int = -1, key: int = -1) -> int:
        """Queue the request; returns the replica index (-1 for the shared queue)."""
        self.dispatched += 1  # the autoscaler's rps signal reads the count's growth per interval
        if self.shared_queue is not None:
            self.shared_queue.put(rid, priority)
            return -1
        eligible = self.eligible(service_class)
        if not eligible:  # scaled to zero: wait for a replica to start
            self.pending.append((rid, priority, service_class, key))
            return -1
        i = self._least_outstanding(eligible) if self.policy == "least_outstanding" else self.choose(eligible, key, rid)
        self.held[i] += 1
        self.engines[i].queue.put(rid, priority)
        return i

    def dispatch_to(self, rid: int, priority: int, service_class: int, engine: ReplicaEngine) -> bool:
        """Queue the request at this engine (an agent task's pinned KV is there) if it is one of this balancer's and
        takes the request now; False otherwise (another deployment's, a shared pull queue, or the replica stopped,
        failed or reserved for another class)."""
        i = self.slot_of.get(id(engine), -1)
        if i < 0 or self.shared_queue is not None or i not in self.eligible(service_class):
            return False
        self.dispatched += 1
        self.held[i] += 1
        self.engines[i].queue.put(rid, priority)
        return True

    def choose(self, eligible: list[int], key: int = -1, rid: int = -1) -> int:
        n = len(eligible)
        if self.policy == "round_robin":
            i = eligible[self._next % n]
            self._next += 1
            return i
        if self.policy == "random":
            return eligible[int(self.rng.integers(n))]
        if self.policy == "power_of_two":
            if n == 1:
                return eligible[0]
            a, b = self.rng.choice(n, size=2, replace=False)
            ea, eb = eligible[int(a)], eligible[int(b)]
            return ea if self.engines[ea].outstanding() <= self.engines[eb].outstanding() else eb
        if self.policy == "least_kv":
            return self._least(eligible, lambda e: (e.kv_used_blocks() / e.kv_blocks, e.outstanding()))
        if self.policy == "session_affinity" and key >= 0:
            chosen = self.affinity.get(key)
            if chosen is None or chosen not in eligible:
                chosen = self._least(eligible, lambda e: (e.outstanding(),))
                self.affinity[key] = chosen
            return chosen
        if self.policy == "prefix_affinity" and key >= 0:
            return self._prefix_affinity(eligible, key)
        if self.policy == "kv_aware" and rid >= 0:
            return self._kv_aware(eligible, rid)
        # least_outstanding (and session_affinity / prefix_affinity for requests without a key)
        return self._least_outstanding(eligible)

    def _overloaded(self, i: int, low: int) -> bool:
        """SGLang's imbalance test of one replica against the least loaded: above both thresholds."""
        held, ca = self.held[i], self.cache_aware
        return held - low > ca.balance_abs_threshold and held > low * ca.balance_rel_threshold

    def _prefix_affinity(self, eligible: list[int], key: int) -> int:
        """The key's rendezvous home, unless it is overloaded (then least_outstanding)."""
        home = rendezvous(key, eligible)
        if self._overloaded(home, min(self.held[i] for i in eligible)):
            return self._least_outstanding(eligible)
        return home

    def _kv_aware(self, eligible: list[int], rid: int) -> int:
        """The replica not overloaded whose cache holds the longest prefix of the request (ties: fewer held, then
        round-robin); least_outstanding when that prefix is under cache_threshold of the prompt."""
        table = self.engines[0].table
        keys, blocks = request_prefixes(table, rid)
        if not keys and not blocks:
            return self._least_outstanding(eligible)
        held = self.held
        low = min(held[i] for i in eligible)
        n = len(eligible)
        start = self._next % n
        best, best_tokens, best_held = -1, 0, 0
        for k in range(n):
            i = eligible[(start + k) % n]
            cache = self.engines[i].prefix_cache
            if cache is None or self._overloaded(i, low):
                continue
            tokens = cache.peek(keys, blocks)[0]
            if tokens > best_tokens or (tokens == best_tokens and tokens and held[i] < best_held):
                best, best_tokens, best_held = i, tokens, held[i]
        if best < 0 or best_tokens < self.cache_aware.cache_threshold * int(table.input_tokens[rid]):
            return self._least_outstanding(eligible)
        self._next = start + 1  # the next call's ties start one replica on
        return best

    def _least_outstanding(self, eligible: list[int]) -> int:
        """_least on outstanding() alone (held counts), ties round-robin: it runs on every arrival."""
        n = len(eligible)
        start = self._next % n
        held = self.held
        if n == len(held):  # every replica eligible: eligible[k] == k
            low = min(held)
            try:
                best = held.index(low, start)
            except ValueError:
                best = held.index(low)
            self._next = start + (best - start) % n + 1  # as the rotated pass below counts it
            return best
        order = eligible[start:] + eligible[:start]
        counts = [held[i] for i in order]
        best = counts.index(min(counts))
        self._next = start + best + 1
        return order[best]

    def _least(self, eligible: list[int], key) -> int:  # type: ignore[no-untyped-def]
        """The eligible replica with the smallest key; ties go round-robin so an idle fleet is used evenly."""
        n = len(eligible)
        start = self._next % n
        best = min(range(n), key=lambda k: (*key(self.engines[eligible[(start + k) % n]]), k))
        self._next = start + best + 1
        return eligible[(start + best) % n]
