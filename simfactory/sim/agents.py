"""Agent tasks as SimPy processes walking their step tree; every LLM step is a request to the fleet.

Each task keeps a *log* of what it spent time on: leaf intervals (category, start, end) and parallel
nodes holding one sub-log per branch plus the branch that decided the join. The critical-path
breakdown is read from the log, clipped at the task's end time (sim/task_breakdown.py books finished tasks' LLM
calls at the end of the run), so the components of a task always add up to its end-to-end latency, whether it
completed, failed or hit its deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from math import isnan
from typing import Any

import numpy as np
import simpy

from simfactory.config.agent import (
    AgentWorkload,
    BranchStep,
    CompressAction,
    CompressStep,
    HumanStep,
    LlmStep,
    LoopStep,
    ParallelStep,
    RetrievalStep,
    RetryStep,
    SequenceStep,
    Step,
    ToolStep,
    WaitStep,
)
from simfactory.config.limits import MAX_TOKENS
from simfactory.quality import mapped_fail_p
from simfactory.sim.agent_controls import FAILURES, TIMEOUTS, GatewayModel, compressed_context, tally
from simfactory.sim.fleet_view import AgentFleet, Call
from simfactory.sim.outcomes import CACHE_HIT_CODE, COMPLETED_CODE, TaskRecord

CATEGORIES = ("network", "front_end", "cache", "queue", "prefill", "decode", "tool", "retrieval", "human", "backoff", "wait")

TASK_OUTCOMES = ("completed", "degraded", "failed", "timed_out", "budget_stopped", "unfinished")
SUCCESS = ("completed", "degraded")


class StepFailed(Exception):
    """A step failed (tool error, validator rejection, timeout): caught by an enclosing retry."""


class BudgetHit(Exception):
    """The task's token or dollar budget was reached before an LLM step."""


class Cancelled(Exception):
    """The branch was cancelled (first-k join already decided, or the task deadline passed)."""


# ---- the time log --------------------------------------------------------------------------------
@dataclass(slots=True)
class Leaf:
    category: str
    start_s: float
    end_s: float | None = None
    rids: list[int] | None = None  # LLM steps: the call's attempts; phases come from the request table


@dataclass
class Fork:
    branches: list[list[Any]]
    chosen: int | None = None


def leaves(log: list[Any]) -> Iterator[Leaf]:
    """Every leaf of a task's time log, forks' branches included (in no particular order across branches)."""
    stack: list[list[Any]] = [log]
    while stack:
        for entry in stack.pop():
            if isinstance(entry, Fork):
                stack.extend(entry.branches)
                continue
            assert isinstance(entry, Leaf)
            yield entry


def breakdown(log: list[Any], end_s: float, table: Any) -> dict[str, float]:
    """Critical-path time per category, with open intervals clipped at end_s."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    _accumulate(log, end_s, table, out)
    return out


def critical_leaves(log: list[Any], end_s: float) -> Iterator[tuple[Leaf, float, float]]:
    """The leaves on a task's critical path, each with its interval clipped at end_s (empty ones left out): a fork
    contributes its deciding branch, or while still running the branch that reaches furthest."""
    for entry in log:
        if isinstance(entry, Fork):
            if entry.chosen is not None:
                branch = entry.branches[entry.chosen]
            else:  # still running at end_s: the branch that reaches furthest
                branch = max(entry.branches, key=lambda b: reach(b, end_s))
            yield from critical_leaves(branch, end_s)
            continue
        start = entry.start_s
        stop = min(entry.end_s if entry.end_s is not None else end_s, end_s)
        if stop > start:
            yield entry, start, stop


def _accumulate(log: list[Any], end_s: float, table: Any, out: dict[str, float]) -> None:
    for entry, start, stop in critical_leaves(log, end_s):
        if entry.rids:
            # attempts follow each other (an escalation is sent when the previous answer is rejected);
            # each crosses the network to its deployment, and the last answer crosses back
            n_attempts = len(entry.rids)
            prev_end = start  # where the attempt before ended (a lost request's retry waits out its backoff)
            for j, rid in enumerate(entry.rids):
                a0 = max(start, float(table.arrival_s[rid]))
                if j and min(a0, stop) > prev_end:
                    out["backoff"] += min(a0, stop) - prev_end
                last = j == n_attempts - 1
                done = float(table.completion_s[rid])  # Python floats from here on (numpy scalars are slow)
                a1 = stop if last or isnan(done) else min(done, stop)
                prev_end = max(start, a1)
                if a1 <= a0:
                    continue
                if table.outcome[rid] == CACHE_HIT_CODE:
                    out["cache"] += a1 - a0
                    continue
                on_wire = min(a0 + float(table.net_in_s[rid]), a1)
                arrive = min(on_wire + float(table.front_end_s[rid]), a1)  # the serving front end, then the engine
                back = a1
                if last and not isnan(done):
                    back = min(max(done, arrive), a1)
                sched = float(table.first_scheduled_s[rid])
                first = float(table.first_token_s[rid])
                t1 = back if isnan(sched) else min(max(sched, arrive), back)
                t2 = back if isnan(first) else min(max(first, t1), back)
                out["network"] += (on_wire - a0) + (a1 - back)
                out["front_end"] += arrive - on_wire
                out["queue"] += t1 - arrive
                out["prefill"] += t2 - t1
                out["decode"] += back - t2
        else:
            out[entry.category] += stop - start


def reach(log: list[Any], end_s: float) -> float:
    last = 0.0
    for entry in log:
        if isinstance(entry, Fork):
            branches = [entry.branches[entry.chosen]] if entry.chosen is not None else entry.branches
            last = max(last, max((reach(b, end_s) for b in branches), default=0.0))
        else:
            last = max(last, entry.end_s if entry.end_s is not None else end_s)
    return last


# ---- cancellation scopes ----------------------------------------------------------------------------
class Scope:
    """A branch of a task: its in-flight LLM requests and child branches, cancelled together."""

    def __init__(self, parent: "Scope | None") -> None:
        self.parent = parent
        self.children: list[Scope] = []
        self.calls: list[Call] = []  # LLM calls in flight (their current attempt is the last request id)
        self.process: simpy.Process | None = None  # the process walking this branch
        self.cancelled = False
        if parent is not None:
            parent.children.append(self)

    def is_cancelled(self) -> bool:
        s: Scope | None = self
        while s is not None:
            if s.cancelled:
                return True
            s = s.parent
        return False

    def cancel(self, abort: Callable[[int], None]) -> None:
        """Abort the branch's LLM calls and interrupt its process, so tool slots and reviewers are freed
        and its open intervals close now."""
        if self.cancelled:
            return
        self.cancelled = True
        for call in list(self.calls):
            call.abandoned = True
            abort(call.rids[-1])
        for c in self.children:
            c.cancel(abort)
        if self.process is not None and self.process.is_alive:
            self.process.interrupt("cancelled")


# ---- shared services ------------------------------------------------------------------------------------
class Brownouts:
    """Degradation windows of one service (a tool, or a workload's retrieval), with their own random stream so
    the draws they add do not shift any other stream."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, float, float, float]] = []  # (start, end, error rate, latency x)
        self.rng: np.random.Generator | None = None

    def add(self, start_s: float, duration_s: float, error_rate: float, latency_multiplier: float,
            rng: np.random.Generator) -> None:
        self.windows.append((start_s, start_s + duration_s, error_rate, latency_multiplier))
        self.rng = rng

    def apply(self, now_s: float, latency_s: float, failed: bool = False) -> tuple[float, bool]:
        """(latency, failed) for a call starting now: slowed and possibly failed inside a window (no draw when the
        call has already failed for another reason)."""
        for a, b, err, mult in self.windows:
            if a <= now_s < b:
                assert self.rng is not None
                return latency_s * mult, failed or (err > 0 and self.rng.random() < err)
        return latency_s, failed


class ToolServiceModel:
    """A tool as a queue: a concurrency limit (SimPy Resource) and a start-rate limit (spacing calls)."""

    def __init__(
        self, env: simpy.Environment, concurrency: int | None, rate_per_s: float | None, usd: float,
        region: str | None = None,
    ) -> None:
        self.env = env
        self.region = region
        self.slots = simpy.Resource(env, capacity=concurrency) if concurrency else None
        self.interval_s = 1.0 / rate_per_s if rate_per_s else 0.0
        self.next_start_s = 0.0
        self.usd_per_call = usd
        self.brownouts = Brownouts()
        self.gateway: GatewayModel | None = None  # an MCP / A2A gateway every call crosses

    def start_delay(self) -> float:
        """Leaky-bucket rate limit: calls start at least interval_s apart."""
        if not self.interval_s:
            return 0.0
        start = max(self.env.now, self.next_start_s)
        self.next_start_s = start + self.interval_s
        return start - self.env.now


class AgentTask:
    """One task walking its workload's steps. `run()` is its SimPy process."""

    def __init__(
        self,
        fleet: AgentFleet,
        task_id: int,
        class_id: int,
        workload: AgentWorkload,
        roles: dict[str, Any],
        rng: np.random.Generator,
        services: dict[str, ToolServiceModel],
        humans: dict[str, tuple[simpy.Resource, float]],
        retrieval_brownouts: Brownouts | None = None,
    ) -> None:
        self.fleet = fleet
        self.env = fleet.env
        self.w = workload
        self.roles = roles
        self.rng = rng
        self.services = services
        self.humans = humans
        self.retrieval_brownouts = retrieval_brownouts
        self.rec = TaskRecord(task_id, class_id, self.env._now)
        self.difficulty_dist = fleet.rs.classes[class_id].config.difficulty
        self.region = fleet.rs.classes[class_id].config.region
        self.root = Scope(None)
        self.transcript: list[float] = []  # the task's own context (set when it starts): see _llm
        self.budget_checks = workload.budget is not None
        self.timed_out = False  # the deadline fired before the task finished
        self.quality = fleet.rs.quality  # benchmark scores when some LLM step maps its fail_p by quality

    # -- helpers --
    def difficulty(self) -> float:
        d = self.difficulty_dist
        return 0.0 if d is None else min(max(self.draw(d), 0.0), 1.0)

    def draw(self, dist: Any) -> float:
        return float(dist.draw(self.rng))

    def draw_tokens(self, dist: Any) -> int:
        """A whole count in [1, MAX_TOKENS], like sample_tokens (the upper clip only cuts an unbounded tail)."""
        return min(max(int(round(self.draw(dist))), 1), MAX_TOKENS)

    def _check_cancel(self, scope: Scope) -> None:
        if scope.is_cancelled():
            raise Cancelled()

    # -- process --
    def run(self) -> Generator[simpy.Event, Any, None]:
        rec = self.rec
        self.root.process = self.env.active_process  # the task walks its steps in its own process
        if self.w.deadline_s is not None:  # a timer, not a second process: it cancels the task if still running
            self.env.call_later(self.w.deadline_s, self._deadline)  # one heap entry for all the workload's tasks
        outcome = yield from self._body()
        rec.outcome = "timed_out" if self.timed_out else outcome
        self.fleet.finish_task(rec)

    def _deadline(self) -> None:
        if isnan(self.rec.end_s) and not self.timed_out:  # end_s is set when the task finishes
            self.timed_out = True
            self.root.cancel(self.fleet.abort)

    def _body(self) -> Generator[simpy.Event, Any, str]:
        context = float(self.w.system_prompt_tokens)
        self.transcript = [context]  # the task's own context; retries and branches grow copies of it
        try:
            yield from self._steps(self.w.steps, self.root, self.rec.log, self.transcript)
            return "completed"
        except (StepFailed, Cancelled, simpy.Interrupt):
            return "failed"
        except BudgetHit:
            b = self.w.budget
            assert b is not None
            if b.on_exceed == "stop" or not b.fallback:
                return "budget_stopped"
            self.budget_checks = False
            self.transcript = [context]  # the fallback starts a new transcript: what is cached is not its prefix
            self.fleet.context_rewritten(self.rec.task_id)
            try:
                yield from self._steps(b.fallback, self.root, self.rec.log, self.transcript)
            except (StepFailed, Cancelled, simpy.Interrupt):
                return "failed"
            return "degraded"

    # The context is a one-element list so branches can grow their own copy and report what they added.
    def _steps(self, steps: list[Step], scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        for step in steps:
            self._check_cancel(scope)
            yield from self._step(step, scope, log, ctx)

    def _step(self, step: Step, scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        # the kinds are disjoint: the most common first (one isinstance call for each kind tested before a step's)
        if isinstance(step, LlmStep):
            yield from self._llm(step, scope, log, ctx)
        elif isinstance(step, ToolStep):
            yield from self._tool(step, scope, log, ctx)
        elif isinstance(step, RetrievalStep):
            yield from self._retrieval(step, scope, log, ctx)
        elif isinstance(step, RetryStep):
            yield from self._retry(step, scope, log, ctx)
        elif isinstance(step, HumanStep):
            yield from self._human(step, scope, log)
        elif isinstance(step, WaitStep):
            yield from self._timed(log, "wait", self.draw(step.duration_s), scope)
            self.rec.steps += 1
        elif isinstance(step, SequenceStep):
            yield from self._steps(step.steps, scope, log, ctx)
        elif isinstance(step, ParallelStep):
            yield from self._parallel(step, scope, log, ctx)
        elif isinstance(step, BranchStep):
            u = self.rng.random()
            acc = 0.0
            for opt in step.options:
                acc += opt.p
                if u < acc:
                    yield from self._steps(opt.steps, scope, log, ctx)
                    break
        elif isinstance(step, LoopStep):
            for i in range(step.max_iterations):
                self.rec.loop_iterations += 1
                yield from self._steps(step.steps, scope, log, ctx)
                if i + 1 == step.max_iterations or self.rng.random() >= step.continue_p:
                    break
        elif isinstance(step, CompressStep):
            yield from self._compress(step, step.name, scope, log, ctx)
        else:  # pragma: no cover - the schema admits only the types above
            raise TypeError(step)

    def _timed(self, log: list[Any], category: str, duration_s: float, scope: Scope) -> Generator[simpy.Event, Any, None]:
        leaf = Leaf(category, self.env._now)  # _now: SimPy's now is a property, a call each read
        log.append(leaf)
        try:
            yield self.env.timeout(duration_s)
        finally:
            leaf.end_s = self.env._now
        self._check_cancel(scope)

    # -- leaves --
    def _llm(self, step: LlmStep, scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        rec = self.rec
        auto = self.w.auto_compress
        if auto is not None and step.include_context and ctx[0] > auto.above_tokens:
            yield from self._compress(auto, auto.name, scope, log, ctx)
        new = self.draw_tokens(step.input_tokens)
        # a context past any model's window is rejected as too long either way; the clip keeps int64 columns exact
        prompt = min(new + (int(round(ctx[0])) if step.include_context else 0), MAX_TOKENS)
        out = self.draw_tokens(step.output_tokens)
        if self.budget_checks:  # _check_llm_budget's first test, before the call (most workloads have no budget)
            self._check_llm_budget(prompt, out)
        context = min(int(round(ctx[0])), MAX_TOKENS) if step.include_context else 0
        difficulty = 0.0 if self.difficulty_dist is None else self.difficulty()  # its first test, before the call
        call = self.fleet.call(self.roles[step.model], prompt, out, rec.class_id, rec.task_id, step.name,
                               difficulty, min(self.w.system_prompt_tokens, context), context)
        rec.llm_calls += 1
        tally(rec, "llm", step.model)
        rec.steps += 1
        rec.tokens_in += prompt
        rec.tokens_out += out
        call_index = len(rec.rids)  # its place in rec.rids (parallel branches append theirs meanwhile)
        rec.rids.append(call.rids)  # the call's attempts (escalations append to the same list)
        leaf = Leaf("llm", self.env._now, rids=call.rids)  # _now: SimPy's now is a property, a call each read
        log.append(leaf)
        scope.calls.append(call)
        try:
            if step.timeout_s is None:
                yield call.done  # no AnyOf condition (and its extra event) when nothing races the call
            else:
                yield simpy.AnyOf(self.env, [call.done, self.env.timeout(step.timeout_s)])
        finally:  # also when the branch is cancelled (its scope already aborted the call)
            scope.calls.remove(call)
            leaf.end_s = self.env._now
        if not call.done.triggered:  # timed out: give up on the request
            call.abandoned = True
            self.fleet.abort(call.rids[-1])
            tally(rec, "llm", step.model, TIMEOUTS)
            raise StepFailed()
        outcome = self.fleet.table.outcome[call.rids[-1]]
        self._check_cancel(scope)
        if outcome not in (COMPLETED_CODE, CACHE_HIT_CODE):
            tally(rec, "llm", step.model, FAILURES)
            raise StepFailed()
        rec.usd_llm_estimate += self.fleet.call_usd_estimate(call)
        # the task's transcript goes on verbatim ([context][message][answer]): this call's sequence is the next
        # prompt's prefix, once its answer is accepted (below); not a retry's trial or a parallel branch's, whose
        # context the task may throw away or join with others
        extends = ctx is self.transcript and step.include_context and self.w.carry_over == 1.0 and step.carry_input
        if step.carry_output:
            ctx[0] += out * self.w.carry_over
        if step.carry_input:
            ctx[0] += new * self.w.carry_over
        p = step.fail_p if step.quality is None else self._quality_fail_p(step, call.rids[-1])
        rejected = bool(p) and self.rng.random() < p  # no draw at 0, as before quality existed
        if self.quality is not None:
            rec.judged.append((step.name, call_index, p, not rejected))
        if rejected:
            tally(rec, "llm", step.model, FAILURES)
            raise StepFailed()
        if extends:
            self.fleet.context_extended(call.rids[-1], min(prompt + (out if step.carry_output else 0), MAX_TOKENS))

    def _quality_fail_p(self, step: LlmStep, rid: int) -> float:
        """The step's fail_p mapped from its quality reference to the deployment that answered (a semantic-cache
        hit, answered by no deployment, keeps the reference's fail_p)."""
        q, rq = step.quality, self.quality
        assert q is not None and rq is not None
        dep = int(self.fleet.table.deployment_id[rid])
        if dep < 0:
            return step.fail_p
        return mapped_fail_p(step.fail_p, rq.deployment_scores[dep][q.benchmark], rq.reference_score(step), q.mapping,
                             q.logit_per_point)

    def _network(self, region: str | None, result_tokens: float, scope: Scope, log: list[Any]) -> Generator[simpy.Event, Any, None]:
        """A call to a service in another region: the round trip, and the result's egress."""
        if region is None or region == self.region:
            return
        net = self.fleet.network
        rtt = net.one_way_s(self.region, region) + net.one_way_s(region, self.region)
        self.rec.usd_network += net.egress_usd(region, self.region, result_tokens)
        if rtt > 0:
            yield from self._timed(log, "network", rtt, scope)

    def _tool(self, step: ToolStep, scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        svc = self.services[step.service]
        rec = self.rec
        b = self.w.budget
        if self.budget_checks and b is not None and b.max_tool_calls is not None and rec.tool_calls >= b.max_tool_calls:
            rec.budget_limit = "tool_calls"
            raise BudgetHit()
        result = self.draw(step.result_tokens)
        yield from self._network(svc.region, result, scope, log)
        # the caller's timeout runs from the call: the gateway hop, the wait for a slot and the tool itself
        deadline = self.env.now + step.timeout_s if step.timeout_s is not None else None
        if svc.gateway is not None:  # the hop to the gateway comes first; a failed hop never reaches the tool
            hop_s, hop_failed = svc.gateway.hop(rec)
            if deadline is not None and hop_s > step.timeout_s:  # timed out at the gateway: the tool is not reached
                rec.gateway_s += step.timeout_s  # the caller gave up at the gateway, its whole timeout spent there
                yield from self._timed(log, "tool", step.timeout_s, scope)
                # a gateway timeout, not a tool failure: tool_calls and tool_failures count calls that reached the tool
                tally(rec, "gateway", svc.gateway.spec.name, TIMEOUTS)
                raise StepFailed()
            yield from self._timed(log, "tool", hop_s, scope)
            rec.gateway_s += hop_s
            if hop_failed:
                raise StepFailed()
        rec.steps += 1
        rec.tool_calls += 1
        tally(rec, "tool", step.service)
        rec.usd_tools += svc.usd_per_call
        leaf = Leaf("tool", self.env._now)  # _now: SimPy's now is a property
        log.append(leaf)
        latency = self.draw(step.latency_s)
        failed = step.fail_p > 0 and self.rng.random() < step.fail_p
        if svc.brownouts.windows:
            latency, failed = svc.brownouts.apply(self.env.now, latency, failed)
        req = svc.slots.request() if svc.slots is not None else None
        try:
            if req is not None:
                if deadline is None:
                    yield req
                else:
                    yield simpy.AnyOf(self.env, [req, self.env.timeout(max(deadline - self.env.now, 0))])
                    if not req.triggered:
                        leaf.end_s = self.env.now
                        rec.tool_failures += 1
                        tally(rec, "tool", step.service, TIMEOUTS)
                        raise StepFailed()
            delay = svc.start_delay() + latency
            if deadline is not None and self.env.now + delay > deadline:
                yield self.env.timeout(max(deadline - self.env.now, 0))
                leaf.end_s = self.env.now
                rec.tool_failures += 1
                tally(rec, "tool", step.service, TIMEOUTS)
                raise StepFailed()
            yield self.env.timeout(delay)
        finally:  # also when the branch is cancelled: the slot goes back, the interval closes
            leaf.end_s = self.env._now
            if req is not None:
                if req.triggered:
                    svc.slots.release(req)
                else:
                    req.cancel()
        self._check_cancel(scope)
        if failed:
            rec.tool_failures += 1
            tally(rec, "tool", step.service, FAILURES)
            raise StepFailed()
        ctx[0] += result * self.w.carry_over

    def _retrieval(self, step: RetrievalStep, scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        rec = self.rec
        rec.steps += 1
        rec.retrieval_calls += 1
        tally(rec, "retrieval", step.name)
        if step.cache is not None:  # a keyed cache shared by the workload's tasks, partitioned by sensitivity
            cache = self.fleet.caches.get("retrieval", f"{self.w.name}/{step.name}", step.cache)
            hit, stale = cache.lookup(self.env.now, self.fleet.rs.classes[rec.class_id].config.sensitivity)
        else:
            hit, stale = step.cache_hit_ratio > 0 and self.rng.random() < step.cache_hit_ratio, False
        if hit:
            rec.cache_hits += 1
        else:
            rec.usd_retrieval += step.usd_per_query
        latency = self.draw(step.cache_latency_s if hit else step.latency_s)
        tokens = self.draw(step.hit_tokens)
        failed = stale and step.stale_fail_p > 0 and self.rng.random() < step.stale_fail_p  # outdated passages
        if not hit:  # a cache next to the agent answers locally; the store itself may be browned out
            b = self.retrieval_brownouts
            if b is not None and b.windows:
                latency, failed = b.apply(self.env.now, latency)
            yield from self._network(step.region, tokens, scope, log)
        yield from self._timed(log, "retrieval", latency, scope)
        if failed:
            tally(rec, "retrieval", step.name, FAILURES)
            raise StepFailed()
        ctx[0] += tokens * self.w.carry_over

    def _human(self, step: HumanStep, scope: Scope, log: list[Any]) -> Generator[simpy.Event, Any, None]:
        if not (step.p > 0 and self.rng.random() < step.p):
            return
        rec = self.rec
        rec.steps += 1
        rec.escalated = True
        tally(rec, "human", step.pool)
        pool, usd_per_hour = self.humans[step.pool]
        leaf = Leaf("human", self.env.now)
        log.append(leaf)
        handling = self.draw(step.handling_time_s)
        try:
            with pool.request() as req:  # released (or withdrawn from the queue) on interrupt too
                yield req
                started = self.env.now
                yield self.env.timeout(handling)
        finally:
            leaf.end_s = self.env.now
            if "started" in locals():
                rec.usd_human += usd_per_hour * (self.env.now - started) / 3600.0
        self._check_cancel(scope)

    # -- control flow --
    def _retry(self, step: RetryStep, scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        for attempt in range(1, step.max_attempts + 1):
            trial = [ctx[0]]
            try:
                yield from self._steps(step.steps, scope, log, trial)
                ctx[0] = trial[0]
                return
            except StepFailed:
                if attempt == step.max_attempts:
                    raise
                self.rec.retries += 1
                backoff = step.backoff_s * step.backoff_factor ** (attempt - 1)
                if backoff > 0:
                    yield from self._timed(log, "backoff", backoff, scope)

    def _parallel(self, step: ParallelStep, scope: Scope, log: list[Any], ctx: list[float]) -> Generator[simpy.Event, Any, None]:
        if step.branches is not None:
            bodies = step.branches
        else:
            assert step.steps is not None and step.fan_out is not None
            bodies = [step.steps] * self.draw_tokens(step.fan_out)
        n = len(bodies)
        need = n if step.join == "all" else min(step.k or n, n)
        fork = Fork([[] for _ in range(n)])
        log.append(fork)
        scopes = [Scope(scope) for _ in range(n)]
        added = [0.0] * n
        procs = []
        for i, body in enumerate(bodies):
            proc = self.env.process(self._branch(body, scopes[i], fork.branches[i], ctx[0], added, i))
            scopes[i].process = proc
            procs.append(proc)
        pending = set(range(n))
        ok: list[int] = []
        failed: list[int] = []
        budget_hit = False
        while len(ok) < need and len(failed) <= n - need and not budget_hit:
            yield simpy.AnyOf(self.env, [procs[i] for i in pending])
            for i in sorted(pending):
                if procs[i].triggered:
                    pending.discard(i)
                    result = procs[i].value
                    budget_hit |= result == "budget"
                    (ok if result == "ok" else failed).append(i)
        for i in pending:  # first-k decided, or the join failed: cancel the rest
            scopes[i].cancel(self.fleet.abort)
        if budget_hit:
            fork.chosen = failed[-1]
            raise BudgetHit()
        if len(ok) >= need:
            fork.chosen = ok[need - 1]
            ctx[0] += sum(added[i] for i in ok)
            self._check_cancel(scope)
            return
        fork.chosen = failed[-1]
        raise StepFailed()

    def _branch(
        self, body: list[Step], scope: Scope, log: list[Any], ctx0: float, added: list[float], i: int
    ) -> Generator[simpy.Event, Any, str]:
        ctx = [ctx0]
        try:
            yield from self._steps(body, scope, log, ctx)
        except (StepFailed, Cancelled, simpy.Interrupt):
            return "failed"
        except BudgetHit:
            return "budget"
        added[i] = ctx[0] - ctx0
        return "ok"

    def _check_llm_budget(self, prompt: int, out: int) -> None:
        """Before any LLM call (a step's or a compression's): tokens: the call is not made if it would pass the cap;
        dollars: checked on what was spent so far."""
        rec, b = self.rec, self.w.budget
        if not self.budget_checks or b is None:
            return
        if b.max_tokens is not None and rec.tokens_in + rec.tokens_out + prompt + out > b.max_tokens:
            rec.budget_limit = "tokens"
            raise BudgetHit()
        if b.max_usd is not None and self._usd_so_far() >= b.max_usd:
            rec.budget_limit = "usd"
            raise BudgetHit()

    def _compress(self, action: CompressAction, name: str, scope: Scope, log: list[Any], ctx: list[float]
                  ) -> Generator[simpy.Event, Any, None]:
        """Shrink the carried context: a summarising LLM call (prompt: the context; answer: the kept history) or a
        fixed latency and fee. Later steps carry the smaller context; a failed call fails the step."""
        rec = self.rec
        system = float(self.w.system_prompt_tokens)
        after = compressed_context(action, ctx[0], system)
        prompt = min(max(int(round(ctx[0])), 1), MAX_TOKENS)
        out = min(max(int(round(after - min(ctx[0], system))), 1), MAX_TOKENS)
        if action.model is not None:
            self._check_llm_budget(prompt, out)  # a summarising call spends tokens and dollars like any other
        tally(rec, "compress", name)
        rec.steps += 1
        if action.model is None:
            assert action.latency_s is not None
            rec.usd_tools += action.usd_per_call
            yield from self._timed(log, "wait", max(self.draw(action.latency_s), 0.0), scope)
        else:
            call = self.fleet.call(self.roles[action.model], prompt, out, rec.class_id, rec.task_id, name,
                                   self.difficulty(), min(self.w.system_prompt_tokens, prompt), prompt)
            rec.llm_calls += 1
            rec.tokens_in += prompt
            rec.tokens_out += out
            rec.rids.append(call.rids)
            leaf = Leaf("llm", self.env.now, rids=call.rids)
            log.append(leaf)
            scope.calls.append(call)
            try:
                yield call.done
            finally:
                scope.calls.remove(call)
                leaf.end_s = self.env.now
            self._check_cancel(scope)
            if self.fleet.table.outcome[call.rids[-1]] not in (COMPLETED_CODE, CACHE_HIT_CODE):
                tally(rec, "compress", name, FAILURES)
                raise StepFailed()
            rec.usd_llm_estimate += self.fleet.call_usd_estimate(call)
        rec.compressions += 1
        rec.compressed_tokens += ctx[0] - after
        ctx[0] = after
        self.fleet.context_rewritten(rec.task_id)  # retained KV holds the old context: not a prefix any more

    def _usd_so_far(self) -> float:
        r = self.rec
        return r.usd_llm_estimate + r.usd_tools + r.usd_retrieval + r.usd_human + r.usd_network
