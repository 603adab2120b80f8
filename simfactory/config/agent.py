"""Agent workloads: a multi-step task as a tree of typed steps (the schema is the documentation).

Leaf steps: `llm` (a request to a model role), `tool`, `retrieval`, `human`, `wait`, `compress` (shrink the
carried context, at the price of a summarising LLM call or a fixed latency).
Control flow: `sequence`, `parallel` (fan-out with join all / first k), `branch` (probabilistic),
`loop` (continue probability with a mandatory iteration cap, ReAct style) and `retry` (re-run its
steps on failure, with exponential backoff and a cap). A cycle is only expressible as a capped loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from simfactory.config.base import StrictModel
from simfactory.config.cache import KeyedCache
from simfactory.config.distributions import Distribution, FanOut, Fixed, OptionalTokenCounts, TokenCounts
from simfactory.config.limits import (
    MAX_BACKOFF_FACTOR, MAX_FAN_OUT, MAX_LOOP_ITERATIONS, MAX_RETRY_ATTEMPTS, MAX_SIMULATED_S, MAX_STEPS_PER_TASK,
    MAX_TOKENS,
)
ContextTokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
from simfactory.config.profile import AsOf
from simfactory.config.quality import StepQuality

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(StrictModel):
    pass


class LlmStep(_Strict):
    """One LLM call: prompt = carried task context (if include_context) + new input tokens."""

    type: Literal["llm"] = Field(default="llm", description="selects an LLM call")
    name: Name = Field(description="step name: the step column of the requests it makes (letters, digits, . _ -)")
    model: str = Field(description="model role; the scenario maps roles to deployments (traffic.classes[].targets)")
    input_tokens: TokenCounts = Field(description="new prompt tokens of this step (instructions, user text)")
    output_tokens: TokenCounts = Field(description="answer tokens of the call (whole counts >= 1)")
    include_context: bool = Field(default=True, description="prompt includes the task context so far")
    carry_output: bool = Field(default=True, description="this step's output joins the task context")
    carry_input: bool = Field(
        default=False,
        description="this step's new input tokens join the task context too (a chat turn's user message, which the "
                    "next turn's prompt repeats); default false: instructions used once")
    fail_p: Probability = Field(
        default=0.0, description="probability a validator rejects the answer (step fails); with quality: on the "
        "quality reference (model, dtype), mapped to the (model, dtype) that answers")
    quality: StepQuality | None = Field(
        default=None, description="tie fail_p to the answering model's benchmark score (quality/scores.yaml); "
        "unset: fail_p whatever the model")
    timeout_s: PositiveFloat | None = Field(default=None, description="give up (abort the request) after this long")


class ToolStep(_Strict):
    """A call to a tool service: queues for the service's concurrency, then takes its latency."""

    type: Literal["tool"] = Field(default="tool", description="selects a tool call")
    name: Name = Field(description="step name, for readers (letters, digits, . _ -)")
    service: str = Field(description="a name under the workload's tools:")
    latency_s: Distribution = Field(description="seconds the call takes once it has a slot of the tool's concurrency")
    fail_p: Probability = Field(default=0.0, description="probability (0-1) the call fails (the step fails)")
    result_tokens: OptionalTokenCounts = Field(default=Fixed(value=0), description="tokens of the result fed to later LLM steps")
    timeout_s: PositiveFloat | None = Field(
        default=None, description="give up after this many seconds from the call, the gateway hop and waiting for a "
        "slot included (the step fails); unset: never")


class RetrievalStep(_Strict):
    """Vector / keyword search; a cache hit costs cache_latency_s instead of latency_s."""

    type: Literal["retrieval"] = Field(default="retrieval", description="selects a retrieval (vector / keyword search)")
    name: Name = Field(description="step name, for readers (letters, digits, . _ -)")
    latency_s: Distribution = Field(description="seconds a lookup that misses the agent-side cache takes")
    hit_tokens: OptionalTokenCounts = Field(description="tokens of the retrieved passages added to the context")
    cache_hit_ratio: Probability = Field(
        default=0.0, description="probability (0-1) a lookup is answered by the agent-side cache")
    cache_latency_s: Distribution = Field(
        default=Fixed(value=0.0), description="seconds a cache hit takes (default: fixed 0)")
    usd_per_query: NonNegativeFloat = Field(default=0.0, description="USD per lookup that misses the cache")
    region: str | None = Field(default=None, description="where the index runs; default: the caller's region")
    cache: KeyedCache | None = Field(
        default=None, description="a keyed retrieval cache (Zipf keys, TTL, content changes, sensitivity partitions) "
        "shared by every task of the workload, instead of cache_hit_ratio")
    stale_fail_p: Probability = Field(
        default=0.0, description="probability (0-1) that passages from a stale cache entry (its content changed since "
        "it was written) make the step fail, as a wrong answer caught downstream would; needs cache")

    @model_validator(mode="after")
    def _one_cache_model(self) -> "RetrievalStep":
        if self.cache is not None and self.cache_hit_ratio > 0:
            raise ValueError("give cache_hit_ratio (a fixed hit probability) or cache (a keyed cache), not both")
        if self.stale_fail_p > 0 and self.cache is None:
            raise ValueError("stale_fail_p needs a keyed cache (cache:): only its entries can go stale")
        return self


class HumanStep(_Strict):
    """Escalation to a human reviewer with probability p (the task is then marked escalated)."""

    type: Literal["human"] = Field(default="human", description="selects an escalation to a human reviewer")
    name: Name = Field(description="step name, for readers (letters, digits, . _ -)")
    p: Probability = Field(description="probability (0-1) the task escalates here; otherwise the step is skipped")
    pool: str = Field(description="a name under the workload's humans:")
    handling_time_s: Distribution = Field(
        description="seconds a reviewer spends on the task once one is free (queueing comes first)")


class WaitStep(_Strict):
    """A fixed or random pause (think time, an external system)."""

    type: Literal["wait"] = Field(default="wait", description="selects a pause")
    name: Name = Field(description="step name, for readers (letters, digits, . _ -)")
    duration_s: Distribution = Field(description="seconds of the pause")


class CompressAction(_Strict):
    """Shrink the task's carried history (the context past the system prompt) to keep_fraction of it and/or to
    at most max_tokens. The price: an LLM call on `model` (prompt: the whole context; answer: the summary, as
    many tokens as the history keeps), or a fixed `latency_s` and `usd_per_call`."""

    keep_fraction: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] | None = Field(
        default=None, description="share (0-1] of the history kept (as a summary)")
    max_tokens: ContextTokens | None = Field(
        default=None, description="cap on the history after compression, tokens")
    model: str | None = Field(
        default=None, description="model role that writes the summary (an LLM call); unset: latency_s instead")
    latency_s: Distribution | None = Field(
        default=None, description="seconds a compression takes without a model (e.g. truncation, a local summariser)")
    usd_per_call: NonNegativeFloat = Field(default=0.0, description="USD per compression without a model")

    @model_validator(mode="after")
    def _shape(self) -> "CompressAction":
        if self.keep_fraction is None and self.max_tokens is None:
            raise ValueError("give keep_fraction and/or max_tokens (how much of the history is kept)")
        if (self.model is None) == (self.latency_s is None):
            raise ValueError("give model (a summarising LLM call) or latency_s (a fixed cost), one of them")
        if self.model is not None and self.usd_per_call:
            raise ValueError("usd_per_call prices a compression without a model (an LLM call is priced by its replica)")
        return self

    def kept_tokens(self, history_tokens: float) -> float:
        """History tokens left after compression."""
        kept = history_tokens * (self.keep_fraction if self.keep_fraction is not None else 1.0)
        return min(kept, float(self.max_tokens)) if self.max_tokens is not None else kept


class CompressStep(CompressAction):
    """A compress-context action at this point of the task (later steps carry the smaller context)."""

    type: Literal["compress"] = Field(default="compress", description="selects a context compression")
    name: Name = Field(description="step name: the step column of its LLM request, if any (letters, digits, . _ -)")


class AutoCompress(CompressAction):
    """Compress before any LLM step whose carried context exceeds above_tokens."""

    name: Name = Field(default="auto-compress", description="step name of the compressions it triggers")
    above_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = Field(
        description="compress when the carried context (system prompt included) exceeds this many tokens")


class SequenceStep(_Strict):
    type: Literal["sequence"] = Field(default="sequence", description="selects steps run in order")
    name: Name = Field(default="sequence", description="step name, for readers (letters, digits, . _ -)")
    steps: list["Step"] = Field(min_length=1, description="the steps, run one after another")


class ParallelStep(_Strict):
    """Fan-out: the listed branches, or `fan_out` copies of `steps`; join when all (or the first k) finish.
    The context of finished branches is merged back; unfinished branches are cancelled at a first-k join."""

    type: Literal["parallel"] = Field(default="parallel", description="selects a fan-out")
    name: Name = Field(default="parallel", description="step name, for readers (letters, digits, . _ -)")
    branches: list[list["Step"]] | None = Field(
        default=None, description="lists of steps run at once, one list per branch; or steps with fan_out")
    steps: list["Step"] | None = Field(default=None, description="the body copied fan_out times")
    fan_out: FanOut | None = Field(
        default=None, description=f"number of copies of steps: whole, >= 1, from a bounded distribution, at most {MAX_FAN_OUT:,}")
    join: Literal["all", "first_k"] = Field(
        default="all", description="all: continue when every branch finishes; first_k: when k do (the rest are "
        "cancelled)")
    k: PositiveInt | None = Field(
        default=None, le=MAX_FAN_OUT, description="first_k: branches (or copies) that must finish")

    @model_validator(mode="after")
    def _shape(self) -> "ParallelStep":
        if (self.branches is None) == (self.steps is None):
            raise ValueError("give either branches, or steps with fan_out")
        if self.steps is not None and self.fan_out is None:
            raise ValueError("steps needs fan_out (how many copies run in parallel)")
        if self.branches is not None and (len(self.branches) == 0 or any(len(b) == 0 for b in self.branches)):
            raise ValueError("branches must be non-empty lists of steps")
        if self.join == "first_k" and self.k is None:
            raise ValueError("join: first_k needs k")
        if self.join == "all" and self.k is not None:
            raise ValueError("k is only used with join: first_k")
        if self.branches is not None and self.k is not None and self.k > len(self.branches):
            raise ValueError(f"k ({self.k}) exceeds the number of branches ({len(self.branches)})")
        if self.fan_out is not None and self.k is not None and self.k > self.fan_out.smallest():
            raise ValueError(f"k: {self.k} exceeds the smallest fan-out ({self.fan_out.smallest():g}): such a join "
                             "could never be decided")
        return self


class BranchOption(_Strict):
    p: Probability = Field(description="probability (0-1) this option is taken; a branch's options sum to 1")
    steps: list["Step"] = Field(default_factory=list, description="steps run when the option is taken (empty: nothing)")


class BranchStep(_Strict):
    """Take one option with its probability (probabilities must sum to 1)."""

    type: Literal["branch"] = Field(default="branch", description="selects a probabilistic branch")
    name: Name = Field(default="branch", description="step name, for readers (letters, digits, . _ -)")
    options: list[BranchOption] = Field(min_length=1, description="the options, one taken per run")

    @model_validator(mode="after")
    def _sums_to_one(self) -> "BranchStep":
        total = sum(o.p for o in self.options)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"option probabilities sum to {total:g}, not 1")
        return self


class LoopStep(_Strict):
    """Run steps, then go round again with probability continue_p, at most max_iterations times."""

    type: Literal["loop"] = Field(default="loop", description="selects a capped loop")
    name: Name = Field(default="loop", description="step name, for readers (letters, digits, . _ -)")
    continue_p: Probability = Field(description="probability (0-1) of another iteration after each one")
    max_iterations: PositiveInt = Field(
        le=MAX_LOOP_ITERATIONS, description="cap on iterations; required: an uncapped cycle is rejected")
    steps: list["Step"] = Field(min_length=1, description="the loop body")


class RetryStep(_Strict):
    """Re-run steps when one of them fails (tool failure, validation failure, timeout), after a backoff
    of backoff_s x factor^(attempt-1), up to max_attempts; the task fails when the last attempt fails."""

    type: Literal["retry"] = Field(default="retry", description="selects a retry around steps")
    name: Name = Field(default="retry", description="step name, for readers (letters, digits, . _ -)")
    max_attempts: PositiveInt = Field(le=MAX_RETRY_ATTEMPTS, description="attempts in all, the first included")
    backoff_s: NonNegativeFloat = Field(default=0.0, description="wait before the second attempt, seconds")
    backoff_factor: Annotated[float, Field(ge=1.0, le=MAX_BACKOFF_FACTOR)] = Field(
        default=2.0, description="factor (1-10) on the wait for each later attempt")
    steps: list["Step"] = Field(min_length=1, description="the steps re-run together when one fails")


Step = Annotated[
    Union[
        LlmStep, ToolStep, RetrievalStep, HumanStep, WaitStep, SequenceStep, ParallelStep, BranchStep, LoopStep,
        RetryStep, CompressStep,
    ],
    Field(discriminator="type"),
]


class Gateway(_Strict):
    """A hop every call through it takes (an MCP gateway in front of tools, an A2A gateway in front of remote
    agents): extra latency, a price per call, and its own failures (the call then never reaches the tool)."""

    name: Name = Field(default="gateway", description="reported name of the gateway (letters, digits, . _ -)")
    latency_s: Distribution = Field(description="seconds the hop adds to each call through it")
    usd_per_call: NonNegativeFloat = Field(default=0.0, description="USD per call through it")
    fail_p: Probability = Field(default=0.0, description="probability (0-1) the gateway fails a call (the step fails)")


class ToolService(_Strict):
    name: Name = Field(description="tool name that tool steps' service refers to")
    concurrency: PositiveInt | None = Field(default=None, description="calls in flight at once; more wait")
    rate_limit_per_s: PositiveFloat | None = Field(default=None, description="calls started per second at most")
    usd_per_call: NonNegativeFloat = Field(default=0.0, description="USD per call")
    region: str | None = Field(default=None, description="where the service runs; default: the caller's region")
    gateway: Gateway | None = Field(
        default=None, description="a gateway every call to this service crosses (MCP / A2A); unset: the workload's "
        "gateway, if any")


class HumanPool(_Strict):
    """Reviewers a human step queues for. `pricing`: provisioned (the default: every seat paid for the whole
    measurement window, count x hours x usd_per_hour, as accelerators are paid per provisioned hour) or per_use
    (only the time spent handling tasks, e.g. an outsourced queue billed per handled minute)."""

    name: Name = Field(description="pool name that human steps' pool refers to")
    count: PositiveInt = Field(description="reviewers working at once; more tasks wait")
    usd_per_hour: NonNegativeFloat = Field(
        default=0.0, description="USD per reviewer-hour (provisioned: every seat for the whole window; per_use: "
        "handled time)")
    pricing: Literal["provisioned", "per_use"] = Field(
        default="provisioned", description="provisioned: seats x hours of the window x usd_per_hour; per_use: "
                                           "handled time x usd_per_hour")


class Budget(_Strict):
    """Stop (or switch to the fallback steps) before an LLM step once the task has used this much."""

    max_tokens: PositiveInt | None = Field(default=None, description="tokens (prompts + answers) one task may use")
    max_usd: PositiveFloat | None = Field(
        default=None, description="USD one task may spend (LLM calls at their replicas' estimated cost, tools, "
        "retrieval, reviewers, egress), checked before each LLM step on what was spent so far")
    max_tool_calls: Annotated[int, Field(ge=0, le=MAX_STEPS_PER_TASK)] | None = Field(
        default=None, description="tool calls one task may make; the next one hits the budget (checked before each "
        "tool call)")
    on_exceed: Literal["stop", "fallback"] = Field(
        default="stop", description="stop: the task ends budget_stopped; fallback: the fallback steps run instead "
        "(outcome degraded)")
    fallback: list["Step"] | None = Field(default=None, description="cheaper path run when the budget is hit")

    @model_validator(mode="after")
    def _fallback_given(self) -> "Budget":
        if self.on_exceed == "fallback" and not self.fallback:
            raise ValueError("on_exceed: fallback needs fallback steps")
        return self


class KvRetention(_Strict):
    """What happens to a task's KV cache between its LLM steps (tool calls, waits, reviewers).

    evict (the default): the request leaves the engine and its blocks are freed; the next LLM step prefills its
    whole prompt again (less what a prefix cache still holds). retain: the blocks stay pinned on the replica that
    served the step, the task's next LLM step is routed there and prefills only the tokens past them. A pin ends
    when that step is admitted (a hit), after ttl_s (expired), when the task ends, when its replica fails, or under
    memory pressure: pins are evicted oldest first before a running request would be preempted for blocks, and
    when a waiting request could not otherwise start on an idle replica; a new request otherwise waits behind
    them (the cost of retaining)."""

    policy: Literal["evict", "retain"] = Field(
        default="evict", description="evict: free a task's KV cache after each LLM step; retain: keep it pinned on "
        "its replica until the task's next LLM step (within ttl_s)")
    ttl_s: Annotated[float, Field(ge=0.0, le=MAX_SIMULATED_S, allow_inf_nan=False)] | None = Field(
        default=None, description="retain: seconds a pin waits for the task's next LLM step before it is evicted "
        "(0: never pinned, the same as evict); unset: until the task ends")
    hold_slot: bool = Field(
        default=False, description="retain: a pinned task also keeps its batch slot (counts against max_num_seqs), "
        "as engines that keep the sequence resident do")

    @property
    def retains(self) -> bool:
        """True when steps pin their KV at all (retain with a positive or unset ttl)."""
        return self.policy == "retain" and (self.ttl_s is None or self.ttl_s > 0)


class AgentWorkload(_Strict):
    kind: Literal["agent"] = Field(default="agent", description="selects an agent workload")
    name: Name = Field(description="workload name: reports and faults.retrieval_brownouts[].workload refer to it")
    description: str = Field(default="", description="free text for readers; the simulation ignores it")
    system_prompt_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = Field(
        default=0, description="tokens every task's context starts with, the same for all tasks of the workload (a "
        "prefix-cacheable system prompt)")
    carry_over: Probability = Field(
        default=1.0,
        description="fraction of each carried output / input / tool result / retrieval hit kept in the context"
    )
    deadline_s: PositiveFloat | None = Field(
        default=None, description="seconds after its start a task still running is cancelled (outcome timed_out); "
        "unset: none")
    budget: Budget | None = Field(
        default=None, description="a cap on the tokens, USD or tool calls one task may use; unset: none")
    gateway: Gateway | None = Field(
        default=None, description="a gateway in front of every tool service that does not name its own (MCP / A2A)")
    kv_retention: KvRetention | None = Field(
        default=None, description="keep a task's KV cache on its replica between LLM steps (retain) or free it "
        "(evict, the default); a traffic class's kv_retention overrides it")
    auto_compress: AutoCompress | None = Field(
        default=None, description="compress the context automatically before an LLM step once it passes a threshold")
    tools: list[ToolService] = Field(
        default_factory=list, description="tool services the tool steps call (concurrency, rate limit, price, region)")
    humans: list[HumanPool] = Field(default_factory=list, description="reviewer pools the human steps queue for")
    steps: list[Step] = Field(min_length=1, description="the task: steps run in order")
    source: str = Field(
        min_length=1, description="where the task's shape and figures come from: a URL, a trace, or 'assumption: ...'")
    as_of: AsOf = Field(description="date or period of the source, e.g. 2026-11")

    @model_validator(mode="after")
    def _one_human_pricing(self) -> "AgentWorkload":
        if len({h.pricing for h in self.humans}) > 1:
            raise ValueError("humans: price every reviewer pool of a workload alike (all provisioned or all per_use): "
                             "a task's reviewer cost is not split by pool")
        return self

    @model_validator(mode="after")
    def _bounded_task(self) -> "AgentWorkload":
        worst = task_steps(self).worst
        if worst > MAX_STEPS_PER_TASK:
            raise ValueError(
                f"steps: one task may run up to {worst:.3g} steps (every loop at max_iterations, every retry at "
                f"max_attempts, every fan-out at its largest), more than the {MAX_STEPS_PER_TASK:,} a task may run; "
                "lower those caps")
        return self


@dataclass(frozen=True)
class StepCount:
    """Leaf steps a (sub)tree runs: `expected` (loops by continue_p, retries by their body's failure odds,
    fan-outs at their mean), `worst` (every cap reached), and `fail_p`, the odds the subtree fails (from the
    fail_p of its steps; an estimate: timeouts and rejected requests are not known before the run)."""

    expected: float
    worst: float
    fail_p: float


def _fail_all(parts: list[StepCount]) -> float:
    ok = 1.0
    for p in parts:
        ok *= 1.0 - p.fail_p
    return 1.0 - ok


def _sequence(steps: list["Step"]) -> StepCount:
    parts = [step_count(st) for st in steps]
    return StepCount(sum(p.expected for p in parts), sum(p.worst for p in parts), _fail_all(parts))


def step_count(step: "Step") -> StepCount:
    """How many leaf steps one run of `step` executes (see StepCount)."""
    if isinstance(step, (LlmStep, ToolStep)):
        return StepCount(1.0, 1.0, step.fail_p)
    if isinstance(step, HumanStep):
        return StepCount(step.p, 1.0, 0.0)
    if isinstance(step, (RetrievalStep, WaitStep, CompressStep)):
        return StepCount(1.0, 1.0, 0.0)
    if isinstance(step, SequenceStep):
        return _sequence(step.steps)
    if isinstance(step, ParallelStep):
        if step.branches is not None:
            parts = [_sequence(b) for b in step.branches]
            return StepCount(sum(p.expected for p in parts), sum(p.worst for p in parts), _fail_all(parts))
        assert step.steps is not None and step.fan_out is not None
        body = _sequence(step.steps)
        n_mean, n_max = step.fan_out.mean(), step.fan_out.largest()
        return StepCount(n_mean * body.expected, n_max * body.worst, 1.0 - (1.0 - body.fail_p) ** n_mean)
    if isinstance(step, BranchStep):
        parts = [_sequence(o.steps) if o.steps else StepCount(0.0, 0.0, 0.0) for o in step.options]
        return StepCount(sum(o.p * p.expected for o, p in zip(step.options, parts)),
                         max(p.worst for p in parts), sum(o.p * p.fail_p for o, p in zip(step.options, parts)))
    if isinstance(step, LoopStep):
        body = _sequence(step.steps)
        q, m = step.continue_p, step.max_iterations
        iterations = m if q >= 1.0 else (1.0 - q**m) / (1.0 - q)  # 1/(1-q) capped at m
        return StepCount(iterations * body.expected, m * body.worst, 1.0 - (1.0 - body.fail_p) ** iterations)
    if isinstance(step, RetryStep):
        body = _sequence(step.steps)
        f, m = body.fail_p, step.max_attempts
        attempts = m if f >= 1.0 else (1.0 - f**m) / (1.0 - f)
        return StepCount(attempts * body.expected, m * body.worst, f**m)
    raise TypeError(step)  # pragma: no cover - the schema admits only the types above


def task_steps(w: "AgentWorkload") -> StepCount:
    """Leaf steps one task runs, its budget's fallback included (once, at worst)."""
    main = _sequence(w.steps)
    if w.auto_compress is not None:  # at most one compression before each LLM step
        main = StepCount(main.expected, 2 * main.worst, main.fail_p)
    if w.budget is not None and w.budget.fallback:
        fb = _sequence(w.budget.fallback)
        return StepCount(main.expected + fb.expected, main.worst + fb.worst, main.fail_p)
    return main


for _m in (SequenceStep, ParallelStep, BranchOption, LoopStep, RetryStep, Budget, AgentWorkload):
    _m.model_rebuild()
