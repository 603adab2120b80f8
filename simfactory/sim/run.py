"""Build the SimPy model of a resolved scenario, run it, and return the raw results.

Arrivals -> (admission check) -> [tenant gate] -> replica balancer -> replica engines -> completion. An
arrival is a plain request (generated up front) or an agent task (a process that submits LLM requests as it
walks its steps). A monitor samples timelines (queue depth, running sequences, KV use, busy fraction,
requests in system) at the scenario's resolution. Every request and task ends with an outcome.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import simpy

from simfactory.config.scenario import ClosedArrivals
from simfactory.cost.fleet import pool_cost
from simfactory.errors import InputError
from simfactory.resolve import ResolvedDeployment, ResolvedRoute, ResolvedScenario, Target
from simfactory.gc_pause import gc_paused
from simfactory.hardware.step_time import rank_chunk_tokens
from simfactory.sim.agent_controls import GatewayModel
from simfactory.sim.agents import AgentTask, Brownouts, ToolServiceModel, breakdown
from simfactory.sim.task_breakdown import TaskBreakdowns
from simfactory.sim.keyed_cache import CacheRegistry, CacheStats
from simfactory.sim.autoscale import AutoscaleLog, Autoscaler
from simfactory.sim.clients import ClosedLoop
from simfactory.sim.clock import FloatEnvironment
from simfactory.sim.engine import ReplicaEngine
from simfactory.sim.faults import FaultLog, outage, replica_failures, rolling_restart, spot_reclamation
from simfactory.sim.fleet_view import Call, ReplicaInfo
from simfactory.sim.front_end import FrontEndServer
from simfactory.sim.kv_retention import RetentionLedger, TaskRetention
from simfactory.sim.network import NetworkModel
from simfactory.sim.outcomes import PENDING_CODE, Outcome, TaskRecord
from simfactory.sim.prefix_cache import BLOCK_KEY_OFFSET, Prefixes
from simfactory.sim.queue import WaitingQueue
from simfactory.sim.requests import RequestTable
from simfactory.sim.router import (
    ReplicaBalancer,
    TokenBucket,
    first_tier,
    mix64,
    rejection_p,
    session_uniform,
    weighted_choice,
)
from simfactory.sim.streams import RandomStreams
from simfactory.sim.tenancy import TenantGate, TenantQuota
from simfactory.sim.traffic import add_plain_requests, arrival_schedule, process_classes

ProgressFn = Callable[[float, float], None]  # (simulated seconds done, seconds expected)
DEFAULT_KEEP_LOGS = 50  # tasks whose step logs are kept for the trace file


TASK_KEY_OFFSET = 1 << 62  # affinity / prefix keys of agent tasks, apart from session ids
WORKLOAD_KEY_OFFSET = 1 << 61  # prefix keys of agent workloads' system prompts


@dataclass
class Timelines:
    """Sampled every `resolution_s`: arrays of shape (samples,) or (samples, replicas)."""

    time_s: list[float] = field(default_factory=list)
    in_system: list[int] = field(default_factory=list)
    tasks_in_system: list[int] = field(default_factory=list)
    deployment_queue: list[list[int]] = field(default_factory=list)
    gated: list[list[int]] = field(default_factory=list)  # per deployment, at the tenant gate (only with a gate)
    waiting: list[list[int]] = field(default_factory=list)
    running: list[list[int]] = field(default_factory=list)
    kv_used_frac: list[list[float]] = field(default_factory=list)
    busy_frac: list[list[float]] = field(default_factory=list)


@dataclass
class SimResult:
    resolved: ResolvedScenario
    seed: int
    table: RequestTable
    tasks: list[TaskRecord]
    step_names: list[str]
    replicas: list[ReplicaInfo]
    replica_busy_s: np.ndarray
    busy_at_warmup_s: np.ndarray  # each replica's busy time when the measurement window opens...
    busy_at_horizon_s: np.ndarray  # ...and when it closes: window busy fraction = difference / window
    replica_steps: np.ndarray
    timelines: Timelines
    end_s: float
    events: int
    autoscale: dict[str, AutoscaleLog] = field(default_factory=dict)  # deployment -> provisioned intervals
    faults: FaultLog | None = None
    kv_retention: dict[int, TaskRetention] | None = None  # task id -> its pins (only when some class retains KV)
    caches: list[CacheStats] = field(default_factory=list)  # keyed caches' per-partition counts (none: no keyed cache)
    # deployments whose front end is modelled: (CPU-seconds done, core-seconds there were) when the window opens and
    # when it closes
    front_end_busy_at_warmup_s: dict[str, tuple[float, float]] = field(default_factory=dict)
    front_end_busy_at_horizon_s: dict[str, tuple[float, float]] = field(default_factory=dict)


KEYED_BALANCERS = frozenset({"session_affinity", "prefix_affinity"})  # the balancers _balance_key has a key for


class FleetModel:
    """The whole fleet as SimPy processes; `run()` advances it to the end of the scenario."""

    # the arrival chain until _start_arrivals sets it (reassigned there, never changed in place)
    _lagged_arrival_s: np.ndarray = np.zeros(0)
    _lagged_taken = 0
    _due: tuple[float, int, int, bool] | None = None
    _arrival_iter: Iterator[tuple[float, int, int, bool]] = iter(())

    def __init__(self, rs: ResolvedScenario, seed: int, keep_logs: int = DEFAULT_KEEP_LOGS,
                 warm_prompts: Sequence[Prefixes] = ()) -> None:
        self.rs = rs
        self.seed = seed
        self.keep_logs = keep_logs
        self.env = FloatEnvironment()
        self.autoscalers: dict[str, Autoscaler] = {}
        self.pending_retries = 0
        self.streams = RandomStreams(seed)
        self.table = RequestTable()
        self.arrival_s, self.arrival_class, trace_row = arrival_schedule(rs, self.streams)
        self.arrival_rid = add_plain_requests(
            rs, self.streams, self.arrival_s, self.arrival_class, self.table, trace_row
        )
        self.n_finished = 0
        self.n_arrived = 0
        closed = rs.scenario.traffic.arrival
        self.closed = closed if isinstance(closed, ClosedArrivals) and process_classes(rs) else None
        self.sources_open = 1 + (self.closed.concurrency if self.closed else 0)  # scheduled arrivals + each client
        self.arrivals_done = False
        self.all_finished = self.env.event()
        self.calls: dict[int, Call] = {}  # request id of a call's current attempt -> the call
        self.abort_outcome: dict[int, Outcome] = {}
        self.validator_rng = self.streams.get("routing/validator")
        self.route_rng = self.streams.get("routing/weights")
        self.buckets = [
            TokenBucket(t.rate_limit.rate_per_s, t.rate_limit.burst) if t.rate_limit is not None else None
            for t in rs.scenario.tenants
        ]
        self.max_queue_s = [sc.max_queue_s for sc in rs.scenario.service_classes]
        self.cache_rng = self.streams.get("routing/semantic_cache")
        self.caches = CacheRegistry(self.streams, rs.scenario.sim.warmup_s, rs.scenario.sim.horizon_s)
        self.network = NetworkModel(rs.scenario.network, self.streams.get("network/jitter"))
        self.class_region = [c.config.region for c in rs.classes]
        self.dep_region = [d.pool.region for d in rs.deployments]
        self.tasks: list[TaskRecord] = []
        self.task_breakdowns = TaskBreakdowns()  # finished tasks' LLM phases, booked at the end of the run
        self.tasks_open = 0
        self.step_names: list[str] = []
        self._step_index: dict[str, int] = {}
        self.engines: list[ReplicaEngine] = []
        self.replicas: list[ReplicaInfo] = []
        self.balancers: list[ReplicaBalancer] = []
        self.prefill_balancers: list[ReplicaBalancer | None] = []
        self.kv_transfer_s_per_token: list[float] = []
        self.max_tokens: list[int] = []
        self.dep_engines: list[list[ReplicaEngine]] = []
        self.usd_per_replica_s: list[float] = []
        self.front_ends: list[FrontEndServer | None] = []  # per deployment: its API servers' shared CPU, if modelled
        self.retention = RetentionLedger.for_classes(self.table, [c.kv_retention for c in rs.classes])
        for d in rs.deployments:
            self._build_deployment(d)
        for e in self.engines:  # a server that has served before: what its prefix cache already holds
            if e.prefix_cache is not None:
                for blocks in warm_prompts:
                    e.prefix_cache.insert_blocks(blocks)
        self.any_front_end = any(fe is not None for fe in self.front_ends)
        self.gate = self._build_gate()
        self._build_agent_services()
        self.fault_log = FaultLog()
        self.retries_by_origin: dict[int, int] = {}
        self.first_attempts = 0
        self.replica_balancer = {id(e): b for b in self.balancers for e in b.engines}
        self._start_faults()
        self._start_arrivals()
        if self.closed is not None:
            ClosedLoop(self, self.closed, process_classes(rs))
        self.timelines = Timelines()
        self.env.process(self._monitor(rs.scenario.sim.timeline_resolution_s))
        self.busy_at_warmup, self.front_end_busy_at_warmup = np.zeros(len(self.engines)), self.front_end_busy_now()
        if rs.scenario.sim.warmup_s > 0:
            self.env.process(self._snapshot_warmup(rs.scenario.sim.warmup_s))

    # ---- construction ----
    def _start_faults(self) -> None:
        """The scenario's fault processes: replica failures, rolling restarts, outages, spot reclamations."""
        faults = self.rs.scenario.faults
        for spec in faults.replica_failures:
            for info in self.replicas:
                if info.pool == spec.pool:
                    self.env.process(replica_failures(self, spec, info.replica_id, self.streams.get(
                        f"faults/replica/{info.replica_id}"), self.fault_log))
        for rr in faults.rolling_restarts:
            self.env.process(rolling_restart(self, rr, [i.replica_id for i in self.replicas if i.pool == rr.pool],
                                             self.fault_log))
        for o in faults.outages:
            self.env.process(outage(self, o, [i.replica_id for i in self.replicas if i.pool == o.pool], self.fault_log))
        for sp in faults.spot_reclamations:
            for info in self.replicas:
                if info.pool == sp.pool:
                    self.env.process(spot_reclamation(self, sp, info.replica_id, self.streams.get(
                        f"faults/spot/{info.replica_id}"), self.fault_log))

    def _engine(self, d: ResolvedDeployment, shared: WaitingQueue | None, k: int, v: int, role: str) -> ReplicaEngine:
        cfg = d.config
        rid = len(self.engines)
        eng = ReplicaEngine(
            self.env,
            rid,
            shared if shared is not None else WaitingQueue(self.env),
            self.table,
            d.step_time,
            max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            block_size=cfg.block_size,
            kv_blocks=d.kv_blocks,
            enable_chunked_prefill=cfg.enable_chunked_prefill,
            max_num_partial_prefills=cfg.max_num_partial_prefills,
            attention_ranks=cfg.dp_attention,
            full_sequence_admission=cfg.kv_admission == "full_sequence",
            schedule=cfg.schedule,
            overlap_schedule=cfg.overlap_schedule,
            delayed_first_token=cfg.delayed_first_token and cfg.overlap_schedule and role == "mixed",
            eager_launch=d.eager_launch_overlap() if role == "mixed" else (False, False),  # disaggregated: not read
            preemptive_priority=cfg.preemptive_priority,
            prefix_cache_tokens=cfg.prefix_cache_tokens,
            role=role,
            swap=cfg.preemption_mode == "swap",
            host_link_s_per_token=d.memory.kv_bytes_per_token / (cfg.host_link_gb_s * 1e9),
            prefix_cache_host_tokens=cfg.prefix_cache_host_tokens,
            prefix_cache_ssd_tokens=cfg.prefix_cache_ssd_tokens,
            ssd_s_per_token=d.memory.kv_bytes_per_token / (cfg.ssd_gb_s * 1e9),
            reuse_preempted_kv=cfg.reuse_preempted_kv,
            on_prefilled=self._on_prefilled,
            on_complete=self._on_complete,
            on_abort=self._on_abort,
            exact=self.rs.scenario.sim.exact,
        )
        self.engines.append(eng)
        if d.front_end_work() is not None:
            eng.on_first_token = self._on_first_token
        if self.retention is not None:
            eng.retention = self.retention
            self.retention.add_engine(eng, cfg.tp, d.kv_blocks)
        self.replicas.append(ReplicaInfo(rid, cfg.name, cfg.pool, k, cfg.tp, d.kv_blocks, cfg.block_size, v, role))
        return eng

    def _affinity_key(self, rid: int) -> int:
        """What session affinity keeps together: the request's session, else its agent task (-1: none)."""
        t = self.table
        session, task = int(t.session[rid]), int(t.task_id[rid])
        return session if session >= 0 else (TASK_KEY_OFFSET + task if task >= 0 else -1)

    def _prefix_home_key(self, rid: int) -> int:
        """What prefix_affinity homes a request by: its agent task's context, else its session, else the leading
        hash blocks of its trace prompt, else its shared prefix (system prompt); -1 when it has no prefix."""
        t = self.table
        if t.context_key[rid] >= 0 and t.context_tokens[rid] > 0:
            return int(t.context_key[rid])
        if t.session[rid] >= 0:
            return int(t.session[rid])
        named = t.block_hashes.get(rid)
        if named is not None and named[1]:
            key = BLOCK_KEY_OFFSET
            for h in named[1][: self.rs.scenario.routing.cache_aware.prefix_blocks]:
                key = mix64(key ^ h)
            return key
        if t.prefix_key[rid] >= 0 and t.prefix_tokens[rid] > 0:
            return int(t.prefix_key[rid])
        return -1

    def _balance_key(self, policy: str, rid: int) -> int:
        """The key a keyed balancer reads (session_affinity, prefix_affinity); -1 for the others, which ignore it."""
        if policy == "session_affinity":
            return self._affinity_key(rid)
        return self._prefix_home_key(rid) if policy == "prefix_affinity" else -1

    def _on_prefilled(self, rid: int) -> None:
        """Disaggregation: the prefill replica is done; the KV cache travels to a decode replica."""
        t = self.table
        d = int(t.deployment_id[rid])
        t.dispatched[rid] = 0
        transfer = float(t.input_tokens[rid]) * self.kv_transfer_s_per_token[d] + self.rs.deployments[d].kv_link_latency_s
        t.kv_transfer_s[rid] += transfer
        self.env.timeout(transfer).callbacks.append(lambda _ev, rid=rid, d=d: self._to_decode(rid, d))

    def _to_decode(self, rid: int, deployment: int) -> None:
        t = self.table
        if t.outcome[rid] != PENDING_CODE:
            return  # the caller gave up during the transfer
        t.kv_ready[rid] = 1
        balancer = self.balancers[deployment]
        key = self._balance_key(balancer.policy, rid)
        balancer.dispatch(rid, int(t.priority[rid]), int(t.service_class[rid]), key)
        t.dispatched[rid] = 1

    def _build_deployment(self, d: ResolvedDeployment) -> None:
        cfg = d.config
        policy = self.rs.scenario.routing.load_balancer
        shared = WaitingQueue(self.env) if policy == "pull" else None
        disagg = cfg.disaggregated
        # A pipeline-parallel replica keeps pp micro-batches in flight: pp engines, each a full pass per step
        # (stage times add up) with 1/pp of the replica's KV cache and of its devices' time.
        n_replicas = cfg.autoscaling.max_replicas if cfg.autoscaling is not None else cfg.replicas
        engines: list[ReplicaEngine] = [
            self._engine(d, shared, k, v, "decode" if disagg is not None else "mixed")
            for k in range(n_replicas)
            for v in range(cfg.pp)
        ]
        for e in engines:
            e.owns_queue = shared is None
        prefill_engines = (
            [self._engine(d.prefill, None, cfg.replicas + k, 0, "prefill") for k in range(disagg.prefill_replicas)]
            if disagg is not None and d.prefill is not None
            else []
        )
        self.prefill_balancers.append(
            ReplicaBalancer(policy, prefill_engines, self.streams.get(f"balancer/{cfg.name}/prefill"),
                            cache_aware=self.rs.scenario.routing.cache_aware)
            if prefill_engines
            else None
        )
        # every input token's KV (all layers; an MLA latent once) crosses the link once, prefill -> decode
        self.kv_transfer_s_per_token.append(
            d.memory.kv_bytes_per_token / d.kv_link_bytes_per_s if disagg is not None else 0.0
        )
        self.dep_engines.append(engines)
        sc_index = {sc.name: i for i, sc in enumerate(self.rs.scenario.service_classes)}
        reserved_for: list[int] = []
        for res in cfg.reserved:
            reserved_for += [sc_index[res.service_class]] * res.replicas
        reserved_for = [r for r in reserved_for for _ in range(cfg.pp)]
        reserved_for += [-1] * (n_replicas * cfg.pp - len(reserved_for))
        self.balancers.append(
            ReplicaBalancer(policy, engines, self.streams.get(f"balancer/{cfg.name}"), reserved_for,
                            self.rs.scenario.routing.cache_aware)
        )
        self.front_ends.append(self._front_end(d, self.balancers[-1]))
        if cfg.autoscaling is not None:
            scaler = Autoscaler(self.env, cfg.autoscaling, cfg.name, cfg.tp, d.memory.weight_bytes_per_device * cfg.tp,
                                engines, self.balancers[-1], cfg.replicas)
            self.autoscalers[cfg.name] = scaler
            self.env.process(scaler.run())
        # The longest request a replica can ever hold: it must fit the context window and the KV cache
        # (and, without chunked prefill, one step's token budget, as vLLM requires: an attention rank's share of it).
        limit = min(d.max_model_len, d.kv_blocks * cfg.block_size + 1)
        if d.prefill is not None:  # disaggregated: the prefill replicas hold it first (conservative: whole request)
            limit = min(limit, d.prefill.kv_blocks * d.prefill.config.block_size + 1)
        if not cfg.enable_chunked_prefill:
            limit = min(limit, rank_chunk_tokens(cfg.max_num_batched_tokens, cfg.dp_attention))
        self.max_tokens.append(limit)
        # Running estimate of what a replica-second costs (pool cost at full utilization), for $ budgets.
        pool = d.pool
        per_hour = pool_cost(self.rs, pool, 1.0).per_hour.total_usd
        self.usd_per_replica_s.append(per_hour / pool.count * cfg.tp / 3600.0)

    def _front_end(self, d: ResolvedDeployment, balancer: ReplicaBalancer) -> FrontEndServer | None:
        """The deployment's API servers as one shared CPU: a replica's cores for every replica taking requests."""
        work = d.front_end_work()
        if work is None:
            return None
        pp = d.config.pp

        def cores() -> float:
            active = balancer.active
            up = sum(balancer.healthy) if active is None else sum(1 for a, h in zip(active, balancer.healthy) if a and h)
            up /= pp
            return work.cores_per_replica * max(1.0, up)

        fe = FrontEndServer(self.env, cores, in_order=d.front_end_ingress() == "in_order")
        balancer.on_change.append(fe.capacity_changed)
        return fe

    def _build_gate(self) -> TenantGate | None:
        """The tenant gate (sim/tenancy.py), when something can hold requests back at it: fair share, or a
        tenant's max_concurrency or gpu_share. Without one, requests go straight to the balancers (as before)."""
        sc = self.rs.scenario
        fair = sc.admission.policy == "fair_share"
        shares = any(t.gpu_share is not None for t in sc.tenants)
        if not (fair or shares or any(t.max_concurrency is not None for t in sc.tenants)):
            return None
        inf = float("inf")
        quotas = [
            TenantQuota(t.weight, inf if t.max_concurrency is None else t.max_concurrency,
                        inf if t.gpu_share is None else t.gpu_share, inf if t.max_waiting is None else t.max_waiting)
            for t in sc.tenants
        ] + [TenantQuota()]  # requests of classes without a tenant: one more tenant, weight 1, no limits
        slots = [d.config.max_num_seqs for d in self.rs.deployments]
        gate = TenantGate(self.table, quotas, fair, fair or shares, self.balancers, slots, self._dispatch)
        for d, b in enumerate(self.balancers):
            b.on_change.append(lambda d=d: gate.capacity_changed(d))
        return gate

    def _build_agent_services(self) -> None:
        self.services: dict[str, dict[str, ToolServiceModel]] = {}
        self.humans: dict[str, dict[str, tuple[simpy.Resource, float]]] = {}
        for c in self.rs.classes:
            w = c.agent
            if w is None or w.name in self.services:
                continue
            self.services[w.name] = {
                t.name: ToolServiceModel(self.env, t.concurrency, t.rate_limit_per_s, t.usd_per_call, t.region)
                for t in w.tools
            }
            for t in w.tools:
                gw = t.gateway if t.gateway is not None else w.gateway
                if gw is not None:  # one stream per gateway: services behind the same gateway share its draws
                    self.services[w.name][t.name].gateway = GatewayModel(
                        gw, self.streams.get(f"agent/{w.name}/gateway/{gw.name}"))
            self.humans[w.name] = {h.name: (simpy.Resource(self.env, capacity=h.count), h.usd_per_hour) for h in w.humans}
        faults = self.rs.scenario.faults
        for b in faults.tool_brownouts:
            for services in self.services.values():
                if b.service in services:
                    services[b.service].brownouts.add(b.start_s, b.duration_s, b.error_rate, b.latency_multiplier,
                                                      self.streams.get(f"faults/brownout/{b.service}"))
        self.retrieval_brownouts: dict[str, Brownouts] = {name: Brownouts() for name in self.services}
        for b in faults.retrieval_brownouts:
            for name, windows in self.retrieval_brownouts.items():
                if b.workload is None or b.workload == name:
                    windows.add(b.start_s, b.duration_s, b.error_rate, b.latency_multiplier,
                                self.streams.get(f"faults/retrieval-brownout/{name}"))

    # ---- requests ----
    def step_id(self, name: str) -> int:
        index = self._step_index.get(name)
        if index is None:
            index = self._step_index[name] = len(self.step_names)
            self.step_names.append(name)
        return index

    def call(
        self, target: Target, input_tokens: int, output_tokens: int, class_id: int, task_id: int, step: str,
        difficulty: float = 0.0, system_tokens: int = 0, context_tokens: int = 0,
    ) -> "Call":
        """An LLM call from an agent task. Its `done` event fires when the call ends (after any escalations).
        The prompt starts with the workload's system prompt and the task's context (prefix-cacheable)."""
        c = self.rs.classes[class_id]
        rid = self.table.add(self.env._now, class_id, -1, input_tokens, output_tokens, task_id, self.step_id(step))
        t = self.table
        t.priority[rid] = c.priority
        t.service_class[rid] = c.service_class
        t.tenant[rid] = c.tenant
        t.difficulty[rid] = difficulty
        if system_tokens:
            t.prefix_key[rid] = WORKLOAD_KEY_OFFSET + class_id
            t.prefix_tokens[rid] = system_tokens
        if context_tokens:
            t.context_key[rid] = TASK_KEY_OFFSET + task_id
            t.context_tokens[rid] = context_tokens
        call = Call(rid, [rid], target, simpy.Event(self.env))  # not env.event(): its bound constructor is a call
        self.n_arrived += 1
        self._admit(rid, call)
        return call

    def submit(self, rid: int) -> simpy.Event:
        """A closed-loop client's request, admitted now: the event fires when it ends, whatever the outcome
        (after any retries and escalations; a completed answer once it is back at the caller)."""
        call = Call(rid, [rid], self.rs.classes[int(self.table.class_id[rid])].target, self.env.event())
        self.n_arrived += 1
        self._admit(rid, call)
        assert call.done is not None
        return call.done

    def _admit(self, rid: int, call: "Call | None") -> None:
        """A new request at the front door: rate limit, route, then the deployment's own checks."""
        t = self.table
        if call is not None:
            self.calls[rid] = call
        tenant = t.tenant[rid]
        if tenant >= 0 and self.buckets[tenant] is not None and not self.buckets[tenant].try_take(self.env.now):
            self._finish_request(rid, Outcome.REJECTED_RATE_LIMIT)
            return
        c = self.rs.classes[t.class_id[rid]]
        target = call.target if call is not None else c.target
        assert target is not None
        cache = c.config.semantic_cache
        if cache is not None and (
            self.caches.get("semantic", cache.shared_as or c.config.name, cache.keyed).lookup(
                self.env.now, c.config.sensitivity)[0]
            if cache.keyed is not None else self.cache_rng.random() < cache.hit_ratio  # type: ignore[operator]
        ):
            delay = float(cache.latency_s.sample(self.cache_rng, 1)[0])
            self.env.timeout(delay).callbacks.append(lambda _ev, rid=rid: self._cache_hit(rid))
            return
        self._send(rid, target, call)

    def _cache_hit(self, rid: int) -> None:
        t = self.table
        if t.outcome[rid] != PENDING_CODE:
            return  # the caller gave up first
        t.first_token_s[rid] = self.env.now
        t.completion_s[rid] = self.env.now
        t.generated[rid] = t.output_tokens[rid]
        self._finish_request(rid, Outcome.CACHE_HIT)

    def _send(self, rid: int, target: Target, call: "Call | None") -> None:
        """Resolve a target (route -> deployment, with overload fallback) and hand the request over."""
        t = self.table
        while target.kind == "route":
            route = self.rs.routes[target.index]
            if route.tiers:
                tier = first_tier(route, float(t.difficulty[rid]))
                dep = route.tiers[tier][0]
            elif route.candidates:
                tier = -1
                dep = self._nearest(route, self.class_region[int(t.class_id[rid])])
            else:
                tier = -1
                session = int(t.session[rid])
                u = session_uniform(session) if route.config.sticky and session >= 0 else self.route_rng.random()
                dep = weighted_choice(route, u)
            if (
                route.fallback is not None
                and route.fallback_max_waiting
                and self.balancers[dep].waiting() >= route.fallback_max_waiting
            ):
                target = route.fallback
                continue
            fb = route.config.fallback
            if route.fallback is not None and fb is not None and fb.timeout_s is not None:
                self.env.call_later(fb.timeout_s, self._fallback_if_waiting, rid, route.fallback, call)
            if call is None and route.tiers:
                call = Call(rid, [rid], target, None)
                self.calls[rid] = call
            if call is not None:
                call.route = route
                call.tier = tier
            t.route_id[rid] = route.index
            target = Target("deployment", dep)
        self._to_deployment(rid, target.index)

    def _nearest(self, route: ResolvedRoute, region: str) -> int:
        """Closest candidate with room; if all are at max_waiting, the closest."""
        order = sorted(route.candidates, key=lambda d: (self.network.base_latency_s(region, self.dep_region[d]), d))
        cap = route.config.max_waiting
        for d in order:
            if cap is None or self.balancers[d].waiting() < cap:
                return d
        return order[0]

    def _to_deployment(self, rid: int, deployment: int) -> None:
        """Send over the network from the caller's region; the deployment sees the request on arrival."""
        t = self.table
        t.deployment_id[rid] = deployment
        caller = self.class_region[t.class_id[rid]]
        there = self.dep_region[deployment]
        delay = t.front_end_s[rid] = float(self.rs.deployments[deployment].config.front_end_s)
        if caller != there:
            t.net_in_s[rid] = self.network.one_way_s(caller, there)
            t.net_out_s[rid] = self.network.one_way_s(there, caller)
            t.egress_usd[rid] = self.network.egress_usd(caller, there, float(t.input_tokens[rid])) + (
                self.network.egress_usd(there, caller, float(t.output_tokens[rid]))
            )
            delay += float(t.net_in_s[rid])
        if delay > 0:
            # straight to _arrive when no front end is modelled there (_ingress's first test, taken now)
            then = self._arrive if self.front_ends[deployment] is None else self._ingress
            if caller == there:  # the vLLM and SGLang presets' fixed front end, on every request: a delay that recurs
                self.env.call_later(delay, then, rid, deployment)
            else:  # a network hop's delay may be drawn (jitter): one delay line per value would pile up
                self.env.call_at(self.env._now + delay, lambda _ev: then(rid, deployment))
            return
        self._ingress(rid, deployment)

    def _ingress(self, rid: int, deployment: int) -> None:
        """The deployment's front end reads the request (its CPU time, and its wait for a share of the CPU, count as
        front end); then the deployment sees it."""
        fe = self.front_ends[deployment]
        t = self.table
        if fe is None or t.outcome[rid] != PENDING_CODE:
            self._arrive(rid, deployment)
            return
        work = self.rs.deployments[deployment].front_end_work()
        assert work is not None
        start = self.env.now

        def read() -> None:
            t.front_end_s[rid] += self.env.now - start
            self._arrive(rid, deployment)

        fe.ingress(rid, work.ingress_s(int(t.input_tokens[rid])), read)

    def _on_first_token(self, rid: int, eng: ReplicaEngine) -> None:
        """A request's first token, made by `eng`: the front end sends it (one token's work at the share of the CPU
        a new job gets now), then streams the rest as the engine makes them (every token's work, the first's too)."""
        d = int(self.table.deployment_id[rid])
        fe = self.front_ends[d] if d >= 0 else None
        if fe is None:
            return
        work = self.rs.deployments[d].front_end_work()
        assert work is not None
        t = self.table
        per_token = work.per_output_token_s
        if per_token > 0:
            t.first_token_s[rid] += fe.first_token_lag_s(per_token)
            out = int(t.output_tokens[rid])
            work_s = per_token * out
            # no faster than the engine: its work spread over the steps the engine takes for the later tokens
            cap = work_s / ((out - 1) * eng.decode_step_s(int(t.input_tokens[rid]) + 1)) if out > 1 else 1.0
            fe.egress(rid, work_s, cap, lambda: self._streamed(rid))

    def _streamed(self, rid: int) -> None:
        """The front end sent a request's last token, the engine being done with it: the client has the answer
        (not before its first token)."""
        t = self.table
        at_s = max(self.env.now, float(t.first_token_s[rid]))
        t.completion_s[rid] = at_s
        if at_s > self.env.now:
            self.env.call_at(at_s, lambda _ev: self._finish_request(rid, Outcome.COMPLETED))
        else:
            self._finish_request(rid, Outcome.COMPLETED)

    def _arrive(self, rid: int, deployment: int) -> None:
        t = self.table
        if t.outcome[rid] != PENDING_CODE:
            return  # the caller gave up while the request was on the wire
        cfg = self.rs.deployments[deployment].config
        balancer = self.balancers[deployment]
        if cfg.max_waiting is not None and balancer.waiting() >= cfg.max_waiting:
            self._finish_request(rid, Outcome.REJECTED_QUEUE_FULL)
            return
        if t.input_tokens[rid] + t.output_tokens[rid] > self.max_tokens[deployment]:
            self._finish_request(rid, Outcome.REJECTED_TOO_LONG)
            return
        if self.gate is None:
            self._dispatch(rid, deployment)
        elif not self.gate.offer(rid, deployment):  # it would wait behind its tenant's full queue
            self._finish_request(rid, Outcome.REJECTED_QUEUE_FULL)
            return
        sc = t.service_class[rid]
        if sc >= 0 and self.max_queue_s[sc] is not None:
            self.env.call_later(self.max_queue_s[sc], self._shed_if_waiting, rid)  # one heap entry at a time for all

    def _dispatch(self, rid: int, deployment: int) -> None:
        """Hand the request to the deployment's balancer (its prefill balancer when disaggregated)."""
        t = self.table
        first = self.prefill_balancers[deployment] or self.balancers[deployment]
        if self.retention is not None and self._to_pinned_replica(rid, first):
            t.dispatched[rid] = 1
            t.admitted_s[rid] = self.env.now
            return
        policy = first.policy  # kv_aware reads the request's prefixes from the table itself
        key = self._balance_key(policy, rid) if policy in KEYED_BALANCERS else -1
        first.dispatch(rid, t.priority[rid], t.service_class[rid], key)
        t.dispatched[rid] = 1
        t.admitted_s[rid] = self.env._now

    def _to_pinned_replica(self, rid: int, balancer: ReplicaBalancer) -> bool:
        """kv_retention: an agent task's step goes to the replica holding its pinned KV, when that replica belongs
        to this deployment and takes requests now (else the balancer chooses, and the pin waits out its ttl)."""
        assert self.retention is not None
        t = self.table
        replica = self.retention.replica_of(int(t.task_id[rid])) if t.task_id[rid] >= 0 else -1
        if replica < 0:
            return False
        return balancer.dispatch_to(rid, int(t.priority[rid]), int(t.service_class[rid]), self.engines[replica])

    def _fallback_if_waiting(self, rid: int, target: Target, call: "Call | None") -> None:
        """Timeout fallback: a request still waiting for its first step moves to the fallback target."""
        t = self.table
        if t.outcome[rid] != PENDING_CODE or not np.isnan(t.first_scheduled_s[rid]):
            return
        if self.gate is not None and self.gate.holds(rid):
            self.gate.leave(rid)  # still at the tenant gate: it leaves from there
        else:
            if not t.dispatched[rid]:
                return
            d = int(t.deployment_id[rid])
            balancer = self.balancers[d]
            removed = balancer.shared_queue.remove(rid) if balancer.shared_queue is not None else any(
                e.queue.remove(rid) for e in self.dep_engines[d]
            )
            if not removed:
                return
            if self.gate is not None:
                self.gate.leave(rid)
        t.dispatched[rid] = 0
        t.fallbacks[rid] += 1
        # the network legs and front end of the deployment it left
        t.net_in_s[rid] = t.net_out_s[rid] = t.egress_usd[rid] = t.front_end_s[rid] = 0.0
        self._send(rid, target, call)

    def _shed_if_waiting(self, rid: int) -> None:
        t = self.table
        if t.outcome[rid] == PENDING_CODE and np.isnan(t.first_scheduled_s[rid]):
            self.abort(rid, Outcome.SHED)

    def abort(self, rid: int, outcome: Outcome = Outcome.ABORTED) -> None:
        """The caller gave up on a request (or it waited too long): take it out of its queue or batch."""
        if self.table.outcome[rid] != PENDING_CODE:
            return
        self.abort_outcome[rid] = outcome
        d = int(self.table.deployment_id[rid])
        replica = int(self.table.replica[rid])
        fe = self.front_ends[d] if d >= 0 else None
        if fe is not None and fe.holds(rid) and (not self.table.dispatched[rid] or fe.engine_is_done(rid)):
            self._on_abort(rid)  # at its front end only: reading it, or streaming what the engine already made
            return
        if d < 0 or not self.table.dispatched[rid]:
            # still at the front door or on the wire (or a cache lookup): it never reaches a replica
            self._on_abort(rid)
            return
        if replica >= 0 and self.engines[replica].abort(rid):
            return
        balancer = self.balancers[d]
        if balancer.shared_queue is not None and balancer.shared_queue.remove(rid):
            self._on_abort(rid)
            return
        held = [p for p in balancer.pending if p[0] == rid]
        if held:  # held at zero replicas
            balancer.pending.remove(held[0])
            self._on_abort(rid)
            return
        prefill = self.prefill_balancers[d]
        for eng in self.dep_engines[d] + (prefill.engines if prefill is not None else []):
            if eng.abort(rid):
                return

    def _on_complete(self, rid: int) -> None:
        if not self.any_front_end:
            self._finish_request(rid, Outcome.COMPLETED)
            return
        d = int(self.table.deployment_id[rid])
        fe = self.front_ends[d] if d >= 0 else None
        if fe is None:
            self._finish_request(rid, Outcome.COMPLETED)
        elif not fe.engine_done(rid):  # else the front end finishes it once the last token is out
            self._streamed(rid)

    def _on_abort(self, rid: int) -> None:
        d = int(self.table.deployment_id[rid])
        fe = self.front_ends[d] if d >= 0 else None
        if fe is not None:
            fe.remove(rid)
        self._finish_request(rid, self.abort_outcome.pop(rid, Outcome.ABORTED))

    # ---- faults ----
    def fail_replica(self, replica: int) -> None:
        """A replica failed: everything it holds is lost (and may be retried)."""
        eng = self.engines[replica]
        held = list(eng.running) + list(eng.requeued.members) + (list(eng.queue.members) if eng.owns_queue else [])
        self._mark_lost(replica, held)
        eng.fail()

    def drop_waiting(self, replica: int) -> None:
        eng = self.engines[replica]
        held = list(eng.requeued.members) + (list(eng.queue.members) if eng.owns_queue else [])
        self._mark_lost(replica, held)
        eng.drop_waiting()

    def _mark_lost(self, replica: int, rids: list[int]) -> None:
        for rid in rids:
            if self.table.outcome[rid] == PENDING_CODE and rid not in self.abort_outcome:
                self.abort_outcome[rid] = Outcome.FAILED  # logged as lost when it leaves (see _finish_request)

    def set_replica_up(self, replica: int, up: bool) -> None:
        eng = self.engines[replica]
        b = self.replica_balancer[id(eng)]
        b.set_healthy(b.engines.index(eng), up)

    def _retry(self, rid: int, call: "Call | None") -> bool:
        """Send a lost request again after backoff, within the retry policy and budget."""
        policy = self.rs.scenario.faults.retry
        t = self.table
        origin = int(t.origin[rid]) if t.origin[rid] >= 0 else rid
        done = self.retries_by_origin.get(origin, 0)
        if done >= policy.max_retries:
            return False
        if policy.budget_ratio is not None and self.fault_log.retries + 1 > policy.budget_ratio * max(self.arrived(), 1):
            return False
        self.retries_by_origin[origin] = done + 1
        self.fault_log.retries += 1
        delay = policy.backoff_s * policy.backoff_multiplier ** done
        dep = int(t.deployment_id[rid])

        def resend(_ev: simpy.Event) -> None:
            if call is not None and call.abandoned:
                return  # its caller gave up during the backoff (an agent step's timeout, its task's deadline)
            nxt = t.add(self.env.now, int(t.class_id[rid]), dep, int(t.input_tokens[rid]), int(t.output_tokens[rid]),
                        int(t.task_id[rid]), int(t.step_id[rid]), like=rid)
            t.origin[nxt] = origin
            t.route_id[nxt] = t.route_id[rid]
            t.attempt[nxt] = t.attempt[rid] + 1
            if call is not None:
                call.rids.append(nxt)
                self.calls[nxt] = call
            self.n_arrived += 1
            self._to_deployment(nxt, dep)

        self.pending_retries += 1
        ev = self.env.timeout(delay)
        ev.callbacks.append(resend)
        ev.callbacks.append(lambda _ev: setattr(self, "pending_retries", self.pending_retries - 1))
        return True

    def _finish_request(self, rid: int, outcome: Outcome) -> None:
        t = self.table
        t.outcome[rid] = int(outcome)
        if self.gate is not None:
            self.gate.leave(rid)  # its tenant's place (queued or in flight) frees for the next
        if outcome != Outcome.COMPLETED:
            t.completion_s[rid] = self.env.now
        self.n_finished += 1
        if outcome == Outcome.FAILED:  # lost to a replica failure (a step in progress may still complete it)
            self.fault_log.lost.append((self.env.now, int(t.replica[rid]), rid))
            call = self.calls.get(rid)
            if self._retry(rid, call):
                self.calls.pop(rid, None)
                return
            self.fault_log.failed += 1
        call = self.calls.pop(rid, None) if self.calls else None
        # a caller that gave up (its abort came during the request's last step) gets no escalation
        given_up = self.abort_outcome.pop(rid, None) is not None if self.abort_outcome else False
        if call is not None and (given_up or not self._escalate(rid, call, outcome)):
            if call.done is not None:
                back = float(t.net_out_s[rid]) if outcome == Outcome.COMPLETED else 0.0
                if back > 0:
                    self.env.timeout(back).callbacks.append(lambda _ev, d=call.done, o=outcome: d.succeed(o))
                else:
                    call.done.succeed(outcome)
        if self.arrivals_done:
            self._check_all_finished()

    def _escalate(self, rid: int, call: "Call", outcome: Outcome) -> bool:
        """A tiered route's validator checks a completed answer; on rejection the request is sent again to
        the next tier (a new attempt, paid again). Returns True if it escalated."""
        route = call.route
        if outcome != Outcome.COMPLETED or route is None or not route.tiers or call.tier + 1 >= len(route.tiers):
            return False
        t = self.table
        if self.validator_rng.random() >= rejection_p(route, call.tier, float(t.difficulty[rid])):
            return False
        call.tier += 1
        dep = route.tiers[call.tier][0]
        nxt = t.add(self.env.now, int(t.class_id[rid]), dep, int(t.input_tokens[rid]), int(t.output_tokens[rid]),
                    int(t.task_id[rid]), int(t.step_id[rid]), like=rid)
        t.origin[nxt] = call.origin
        t.route_id[nxt] = t.route_id[rid]
        t.attempt[nxt] = t.attempt[rid] + 1
        call.rids.append(nxt)
        self.calls[nxt] = call
        self.n_arrived += 1
        self._to_deployment(nxt, dep)
        return True

    def call_usd_estimate(self, call: "Call") -> float:
        t = self.table
        return sum(float(t.replica_s[r]) * self.usd_per_replica_s[int(t.deployment_id[r])] for r in call.rids
                   if t.deployment_id[r] >= 0)

    # ---- tasks ----
    def start_task(self, class_id: int) -> simpy.Process:
        """Start an agent task now; the returned process ends when the task does."""
        c = self.rs.classes[class_id]
        assert c.agent is not None
        task = AgentTask(
            self, len(self.tasks), class_id, c.agent, c.roles, self.streams.get(f"agent/{c.config.name}"),
            self.services[c.agent.name], self.humans[c.agent.name], self.retrieval_brownouts[c.agent.name],
        )
        self.tasks.append(task.rec)
        self.tasks_open += 1
        return self.env.process(task.run())

    def context_rewritten(self, task_id: int) -> None:
        """The task compressed its context: KV it retains, and what prefix caches hold of its context, are no longer
        a prefix of what it sends next."""
        if self.retention is not None:
            self.retention.context_rewritten(task_id)
        for engine in self.engines:
            if engine.prefix_cache is not None:
                engine.prefix_cache.drop(TASK_KEY_OFFSET + task_id)

    def context_extended(self, rid: int, tokens: int) -> None:
        """An agent task's LLM call `rid` ended and its next prompts start with the first `tokens` of this call's
        sequence (context, new message, answer): the replica that ran it caches them as the task's prefix, as
        vLLM keeps a finished sequence's blocks, answer included, and a pin the task retains there counts as that
        much of its next prompt. Without this call only the context this call was sent with counts."""
        t = self.table
        replica, key = int(t.replica[rid]), TASK_KEY_OFFSET + int(t.task_id[rid])  # the key its next calls name
        prefilled_by = int(t.prefill_replica[rid])
        if prefilled_by >= 0 and self.engines[prefilled_by].prefix_cache is not None:
            # disaggregated: the prefill replica computed the prompt, not the answer (that stayed with decode)
            self.engines[prefilled_by].prefix_cache.insert(key, min(tokens, int(t.input_tokens[rid])))
        if replica < 0:
            return
        engine = self.engines[replica]
        if engine.prefix_cache is not None:
            engine.prefix_cache.insert(key, tokens)
        pin = engine.pins.get(int(t.task_id[rid])) if engine.pins else None
        if pin is not None:  # a retained step's KV is that much of the next prompt (its context alone otherwise)
            pin.prefix_tokens = min(tokens, pin.tokens)

    def finish_task(self, rec: TaskRecord) -> None:
        """An agent task ended (its process is about to return): close its record."""
        rec.end_s = self.env._now
        if self.retention is not None:
            self.retention.task_ended(rec.task_id)  # its pinned KV, if any, is freed
        self.task_breakdowns.collect(rec, rec.end_s)  # its LLM calls' phases are booked at the end of the run
        rec.breakdown["total"] = rec.end_s - rec.start_s
        if rec.task_id >= self.keep_logs:
            rec.log = []
        self.tasks_open -= 1
        self._check_all_finished()

    def _check_all_finished(self) -> None:
        if (
            self.arrivals_done
            and self.tasks_open == 0
            and self.n_finished == len(self.table)
            and self.pending_retries == 0
            and not self.all_finished.triggered
        ):
            self.all_finished.succeed()

    # ---- processes ----
    def _start_arrivals(self) -> None:
        """Arrivals as a chain of events at their exact times (a callback each, no process to resume); the
        chain starts at time zero the way a process would (an urgent event). A plain request that nothing at the
        front door can turn away or redirect (one deployment, no rate limit, no response cache, no network hop)
        is taken at its delivery to the deployment instead, arrival + the deployment's fixed front_end_s: the
        same time the request reaches it otherwise, without an event of its own in between (the vLLM and SGLang
        presets' front end, on every request). `lagged` flags those entries."""
        at, rids, classes = self.arrival_s, self.arrival_rid, self.arrival_class
        self._class_deployment = [c.deployment_index for c in self.rs.classes]
        self._fixed_front_end_s = [float(d.config.front_end_s) for d in self.rs.deployments]
        lag = self._front_door_lag_s()[classes] * (rids >= 0) if len(classes) else np.zeros(0)
        lagged = lag > 0
        self._lagged_arrival_s = np.sort(at[lagged])  # when each lagged request arrived (the in-system count)
        self._lagged_taken = 0
        if lagged.any():
            keys = at + lag  # the very sum _to_deployment forms: the same delivery times
            order = np.argsort(keys, kind="stable")
            at, rids, classes, lagged = keys[order], rids[order], classes[order], lagged[order]
        self._arrival_iter = zip(at.tolist(), rids.tolist(), classes.tolist(), lagged.tolist())
        self._due = None
        self.env.start(self._arrivals_due)

    def _front_door_lag_s(self) -> np.ndarray:
        """Per class: the fixed front end delay its plain requests take straight to their deployment, when nothing
        before it depends on the time of arrival (see _start_arrivals); 0 for the others."""
        lag = np.zeros(len(self.rs.classes))
        for c in self.rs.classes:
            dep = c.deployment_index
            if (c.agent is None and dep >= 0 and c.config.semantic_cache is None
                    and (c.tenant < 0 or self.buckets[c.tenant] is None)
                    and self.class_region[c.index] == self.dep_region[dep]):
                lag[c.index] = self._fixed_front_end_s[dep]
        return lag

    def arrived(self) -> int:
        """Requests that have arrived by now, those the arrival chain takes at their delivery included."""
        pending = bisect_right(self._lagged_arrival_s, self.env._now) - self._lagged_taken
        return self.n_arrived + pending

    def _lagged_sent(self, rid: int) -> int:
        """What _to_deployment records of a lagged request (its deployment, its fixed front end); the deployment."""
        t = self.table
        dep = self._class_deployment[t.class_id[rid]]
        t.deployment_id[rid] = dep
        t.front_end_s[rid] = self._fixed_front_end_s[dep]
        return dep

    def _take_lagged(self, rid: int) -> None:
        """A lagged arrival at its delivery: sent, then read by the deployment's front end."""
        self._ingress(rid, self._lagged_sent(rid))

    def _record_lagged_in_flight(self) -> None:
        """At the end of the run: lagged requests that had arrived but not yet reached their deployment are on the
        wire to it, as _to_deployment records them."""
        t, now = self.table, self.env._now
        item = self._due
        for item in ([item] if item is not None else []) + list(self._arrival_iter):
            _, rid, _, lagged = item
            if lagged and t.arrival_s[rid] <= now:
                self._lagged_sent(rid)
                self.n_arrived += 1

    def _arrivals_due(self, _event: object) -> None:
        """Admit every arrival due by now, then wait for the next one."""
        now = self.env.now
        item, self._due = self._due, None  # taken: _due holds only what waits (the end of a run reads it)
        while True:
            if item is not None:
                at_s, rid, class_id, lagged = item
                if at_s > now:
                    self._due = item
                    self.env.call_at(at_s, self._arrivals_due)
                    return
                if lagged:
                    self.n_arrived += 1
                    self._lagged_taken += 1
                    self._take_lagged(rid)
                elif rid >= 0:
                    self.n_arrived += 1
                    self._admit(rid, None)
                else:
                    self.start_task(class_id)
            item = next(self._arrival_iter, None)
            if item is None:
                break
        self.source_done()

    def source_done(self) -> None:
        """A source of arrivals stopped (the scheduled chain, a closed-loop client); once all have, the run
        ends when everything in flight has."""
        self.sources_open -= 1
        if self.sources_open == 0:
            self.arrivals_done = True
            self._check_all_finished()

    def busy_now(self) -> np.ndarray:
        return np.array([e.busy_until_now_s() for e in self.engines])

    def front_end_busy_now(self) -> dict[str, tuple[float, float]]:
        """(CPU-seconds done, core-seconds there were) of each modelled front end so far, by deployment."""
        return {d.config.name: fe.busy_until_now_s() for d, fe in zip(self.rs.deployments, self.front_ends)
                if fe is not None}

    def _snapshot_warmup(self, warmup_s: float) -> Generator[simpy.Event, None, None]:
        yield self.env.timeout(warmup_s)
        self.busy_at_warmup = self.busy_now()
        self.front_end_busy_at_warmup = self.front_end_busy_now()

    def _monitor(self, resolution_s: float) -> Generator[simpy.Event, None, None]:
        """Sample at k x resolution exactly (absolute times, so the grid does not drift)."""
        env = self.env
        tl = self.timelines
        prev_busy = [0.0] * len(self.engines)
        # a deployment's waiting requests: its (decode) replicas' queues and, when disaggregated, its prefill queue
        pairs = [
            (b, es + (pb.engines if pb is not None else []))
            for b, es, pb in zip(self.balancers, self.dep_engines, self.prefill_balancers)
        ]
        shared = {id(b.shared_queue) for b in self.balancers if b.shared_queue is not None}
        k = 0
        while True:
            busy = [e.busy_until_now_s() for e in self.engines]
            tl.time_s.append(env.now)
            tl.in_system.append(self.arrived() - self.n_finished)
            tl.tasks_in_system.append(self.tasks_open)
            tl.waiting.append([len(e.requeued) + (0 if id(e.queue) in shared else len(e.queue)) for e in self.engines])
            tl.deployment_queue.append(
                [
                    sum(len(e.requeued) + len(e.queue) for e in es) + b.gated
                    if b.shared_queue is None
                    else len(b.shared_queue) + sum(len(e.requeued) for e in es) + b.gated
                    for b, es in pairs
                ]
            )
            if self.gate is not None:
                tl.gated.append([b.gated for b in self.balancers])
            tl.running.append([len(e.running) for e in self.engines])
            tl.kv_used_frac.append([e.kv_used_blocks() / e.kv_blocks for e in self.engines])
            if env.now > 0:
                tl.busy_frac.append([(b - p) / resolution_s for b, p in zip(busy, prev_busy)])
            else:
                tl.busy_frac.append([0.0] * len(self.engines))
            prev_busy = busy
            k += 1
            yield env.timeout(max(k * resolution_s - env.now, 0.0))

    def run(self, progress: ProgressFn | None = None) -> SimResult:
        sim = self.rs.scenario.sim
        env = self.env
        horizon = sim.horizon_s
        steps = 100
        # a closed loop with a request count ends when its last request does, as the benchmark it stands for does
        counted = self.closed is not None and self.closed.requests is not None
        for k in range(1, steps + 1):
            if counted:  # stop at the chunk's end or when the last request ends, whichever comes first
                chunk_end = env.timeout(max(horizon * k / steps - env.now, 0.0))
                env.run(until=simpy.AnyOf(env, [self.all_finished, chunk_end]))
            else:
                env.run(until=horizon * k / steps)
            if progress:
                progress(env.now, horizon)
            if counted and self.all_finished.triggered:
                break
        busy_at_horizon, front_end_busy_at_horizon = self.busy_now(), self.front_end_busy_now()
        if sim.drain and not self.all_finished.triggered:
            limit = env.timeout(sim.max_drain_s)
            env.run(until=simpy.AnyOf(env, [self.all_finished, limit]))
        end = env.now
        if self.retention is not None:
            self.retention.close()
        for e in self.engines:
            e.flush()
        self._record_lagged_in_flight()
        t = self.table
        t.trim()
        self.task_breakdowns.apply(t)
        t.outcome[t.outcome == Outcome.PENDING] = Outcome.UNFINISHED
        for rec in self.tasks:
            if rec.outcome == "unfinished" and not rec.breakdown:
                rec.end_s = float("nan")
                rec.breakdown = breakdown(rec.log, end, t)
                rec.breakdown["total"] = end - rec.start_s
        return SimResult(
            resolved=self.rs,
            seed=self.seed,
            table=t,
            tasks=self.tasks,
            step_names=self.step_names,
            replicas=self.replicas,
            replica_busy_s=self.busy_now(),
            busy_at_warmup_s=self.busy_at_warmup,
            busy_at_horizon_s=busy_at_horizon,
            replica_steps=np.array([e.steps_run for e in self.engines]),
            timelines=self.timelines,
            end_s=end,
            events=next(env._eid),  # SimPy numbers every scheduled event; the next id is the count
            autoscale={name: a.log for name, a in self.autoscalers.items()},
            faults=self.fault_log,
            kv_retention=self.retention.results() if self.retention is not None else None,
            caches=self.caches.results(),
            front_end_busy_at_warmup_s=self.front_end_busy_at_warmup,
            front_end_busy_at_horizon_s=front_end_busy_at_horizon,
        )


def simulate(
    rs: ResolvedScenario, seed: int | None = None, progress: ProgressFn | None = None, keep_logs: int = DEFAULT_KEEP_LOGS,
    warm_prompts: Sequence[Prefixes] = (),
) -> SimResult:
    """Run a resolved scenario once; the seed defaults to the scenario's. `warm_prompts` (hash-block chains, least
    recently used first) start in every replica's prefix cache, as on a server that has served them before."""
    sh = rs.scenario.sharding
    if sh is not None and (sh.shards > 1 or sh.windows > 1):  # its work limits were checked per part, not whole
        raise InputError(rs.file or "scenario", "sharding", "a sharded scenario is simulated in parts: run it with "
                         "`simfactory run` (or `regress`, or simfactory.run()); this command simulates one run "
                         "whole: remove the sharding block for it")
    with gc_paused():  # see simfactory/gc_pause.py
        model = FleetModel(rs, rs.scenario.seed if seed is None else seed, keep_logs, warm_prompts)
        return model.run(progress)
