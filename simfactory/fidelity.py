"""Fidelity: simulate published measurements and report predicted vs measured, per point and per suite.

A suite (calibrate/fidelity/*.yaml) lists points: hardware, model, precision, TP, workload and the
measured metric. Offline points submit every request at once (trtllm-bench / vllm bench throughput /
MLPerf Offline style) and measure output tokens per second from the first arrival to the last completion.
Concurrency points (AIPerf / genai-perf sweeps) are a true closed loop (traffic.arrival process: closed): C
clients start together and each sends its next request the moment the previous one ends, as AIPerf does. TTFT
counts from the send, so waiting behind the engine's batch or KV-cache limit is in it; ITL is the mean time per
output token after the first; throughput is C x mean output / mean end-to-end latency (Little's law on the
loop). They are measured over the requests sent after the first third of the run (the ramp, as a benchmark's
warm-up) and early enough not to see the loop drain; a suite whose benchmark sent a request count
(`requests_per_client`, AIPerf's --request-count) runs that count from a cold start and measures every request, as
the benchmark did (throughput: output tokens over first send to last completion). Rate points (`rate_per_s` with
`requests`: a benchmark's request rate or QPS) are an open loop of Poisson arrivals, every request measured. The
engine's per-step token budget (`max_num_batched_tokens`, TensorRT-LLM's max_num_tokens) decides how many
co-arriving prompts one step can prefill, and so how long a wave of them keeps clients in step: suites set it where
their engine's is known or assumed. Batch-latency points (`vllm bench latency`) run one batch of max_num_seqs
requests and measure first arrival to last completion.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Literal, get_args

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError,
                      model_validator)

from simfactory.bench_serving import MAX_PROMPT_TOKENS, MAX_PROMPTS, MAX_SEED, RandomRun, warm_prompts
from simfactory.config.distributions import TokenCounts
from simfactory.config.loader import load_model_file
from simfactory.config.profile import AsOf, DType, RooflineStepTime
from simfactory.config.scenario import NO_API_SERVER, Deployment, Scenario
from simfactory.errors import InputError
from simfactory.fidelity_record import (kind_engine_key, kind_key, kind_metric_key, kind_model_key, kind_tp_key,
                                        source_kind)
from simfactory.hardware.step_time import RooflineModel, StepTimeModel
from simfactory.paths import CALIBRATE_DIR
from simfactory.resolve import ResolvedScenario, resolve
from simfactory.sim.prefix_cache import Prefixes
from simfactory.sim.run import simulate
from simfactory.traces.replay import ReplayRows

FIDELITY_DIR = CALIBRATE_DIR / "fidelity"
OFFLINE_RATE_PER_S = 1e5  # "all at once": arrivals 10 microseconds apart


POINT_DEPLOYMENT_FIELDS = {"name", "model", "pool", "replicas", "tp", "dtype", "engine", "max_num_seqs",
                           "max_num_batched_tokens", "step_time_source"}


# The point's figure. ttft_s and itl_s are means over requests (bench_serving's and vllm bench serve's "Mean TTFT" and
# "Mean TPOT": per request, time after the first token over the tokens after it); ttft_median_s and itl_median_s are
# the medians of the same per-request figures ("Median TTFT", "Median TPOT"), which a few requests' outliers (a cold
# start's first burst) do not move.
LatencyMetric = Literal["ttft_s", "itl_s", "ttft_median_s", "itl_median_s"]
LATENCY_METRICS: tuple[str, ...] = get_args(LatencyMetric)
Metric = Literal["output_tokens_per_s", LatencyMetric, "batch_latency_s"]


MAX_BENCH_PROMPTS = 1_000_000  # a replayed benchmark run's requests are simulated one by one
MAX_BENCH_TOKENS = 2_000_000  # past any model's context here, within what the hash blocks can name
# prompt tokens a point may replay, its own run and the `after` runs together (num_prompts x input_len bounds each):
# every 64 of them are a hash id held in memory; the largest published run replayed here has 1.3M
MAX_BENCH_REPLAY_TOKENS = 100_000_000
assert MAX_BENCH_PROMPTS <= MAX_PROMPTS and MAX_BENCH_TOKENS <= MAX_PROMPT_TOKENS


class BenchServingRun(BaseModel):
    """The arguments of a `sglang.bench_serving --dataset-name random` run that fix its requests (see
    simfactory/bench_serving.py)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_len: PositiveInt = Field(le=MAX_BENCH_TOKENS, description="--random-input-len")
    output_len: NonNegativeInt = Field(le=MAX_BENCH_TOKENS, description="--random-output-len")
    num_prompts: PositiveInt = Field(le=MAX_BENCH_PROMPTS, description="--num-prompts")
    range_ratio: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False,
                               description="--random-range-ratio (bench_serving's default: 0.0)")
    seed: NonNegativeInt = Field(default=1, le=MAX_SEED, description="--seed (bench_serving's default: 1)")

    def run(self) -> RandomRun:
        return RandomRun(self.input_len, self.output_len, self.num_prompts, self.range_ratio, self.seed)

    @property
    def most_prompt_tokens(self) -> int:
        """Its prompts' tokens at most (every prompt at --random-input-len)."""
        return self.num_prompts * self.input_len


class BenchServing(BenchServingRun):
    """A concurrency point measured by sglang.bench_serving's random dataset, replayed request by request: its
    seeded lengths in send order, its warm-up request, and the prompts earlier runs left in the server's radix
    cache (`after`); the replica's prefix cache is its KV pool less what the run's requests hold (radix_cache_tokens)."""
    extra_output_tokens: NonNegativeInt = Field(
        default=0, le=1, description="tokens each request generated beyond its drawn --random-output-len (1 where the "
                                     "page's 'Total generated tokens' is the drawn total plus one a request)")
    after: list[BenchServingRun] = Field(
        default_factory=list, description="earlier runs on the same server, in the order they ran, whose prompts its "
                                          "radix cache held when this run began (only where the page's figures show it)")

    @model_validator(mode="after")
    def _replay_fits(self) -> "BenchServing":
        total = self.most_prompt_tokens + sum(a.most_prompt_tokens for a in self.after)
        if total > MAX_BENCH_REPLAY_TOKENS:
            raise ValueError(f"num_prompts x input_len, over the run and its `after` runs, is {total:,} prompt tokens; "
                             f"a replay holds at most {MAX_BENCH_REPLAY_TOKENS:,}")
        return self

    def cached_at_start(self) -> list[Prefixes]:
        """The prompts the radix cache holds as the run starts measuring, least recently used first."""
        return warm_prompts(self.run(), [a.run() for a in self.after])


class FidelityPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    sku: str
    model: str
    dtype: DType
    tp: PositiveInt = 1
    input_tokens: PositiveInt = Field(description="tokens per prompt; with input_distribution, that distribution's mean")
    output_tokens: PositiveInt = Field(description="tokens per answer; with output_distribution, its mean")
    input_distribution: TokenCounts | None = Field(
        default=None, description="prompt lengths drawn from this distribution (e.g. a dataset's histogram); none: "
                                  "every prompt has input_tokens")
    output_distribution: TokenCounts | None = Field(
        default=None, description="answer lengths drawn from this distribution; none: every answer has output_tokens")
    concurrency: PositiveInt | None = Field(
        default=None, description="closed loop of this many clients (concurrency suites); none: offline"
    )
    max_num_seqs: PositiveInt | None = Field(default=None, description="the engine's batch limit (default: the suite's)")
    max_num_batched_tokens: PositiveInt | None = Field(
        default=None, description="the engine's token budget per step (default: the suite's)")
    requests: PositiveInt | None = Field(
        default=None, description="offline: the requests the benchmark sent (default: the runner's --requests); "
                                  "with rate_per_s: the requests its open loop sent; with concurrency: its request "
                                  "count (--num-prompts), run from a cold start and every request measured (default: "
                                  "the suite's requests_per_client x concurrency, else a steady state)")
    rate_per_s: PositiveFloat | None = Field(
        default=None, allow_inf_nan=False,
        description="open loop: `requests` requests arriving at this mean rate (Poisson; a benchmark's request rate or "
                    "QPS), every one measured; none: offline or a closed loop")
    metric: Metric
    measured: PositiveFloat
    deployment: dict[str, Any] = Field(
        default_factory=dict, description="more deployment fields of the measured setup (ep, dp_attention, eplb, "
                                          "kv_dtype, speculative, gpu_memory_utilization, ...), as a scenario gives them")
    bench_serving: BenchServing | None = Field(
        default=None, description="a concurrency point measured by sglang.bench_serving's random dataset: its "
                                  "requests replayed as the benchmark drew them (lengths in order, shared prefixes, "
                                  "warm radix cache) instead of drawn from input/output_distribution")

    @model_validator(mode="after")
    def _deployment_fields(self) -> "FidelityPoint":
        own = set(self.deployment) & POINT_DEPLOYMENT_FIELDS
        if own:
            raise ValueError(f"deployment: {', '.join(sorted(own))} are the point's own fields; set them there")
        Deployment.model_validate({"name": "d", "model": self.model, "pool": "p", "replicas": 1, "tp": self.tp,
                                   "dtype": self.dtype, **self.deployment})
        return self

    @model_validator(mode="after")
    def _means_match(self) -> "FidelityPoint":
        for name, dist, mean in (("input", self.input_distribution, self.input_tokens),
                                 ("output", self.output_distribution, self.output_tokens)):
            if dist is not None and abs(dist.mean() - mean) > max(1.0, 0.01 * mean):
                raise ValueError(f"{name}_distribution has mean {dist.mean():.1f}; {name}_tokens ({mean}) must state "
                                 "it (within 1%)")
        return self

    @model_validator(mode="after")
    def _replay_matches(self) -> "FidelityPoint":
        b = self.bench_serving
        if b is None:
            return self
        if self.concurrency is None or self.requests != b.num_prompts:
            raise ValueError("bench_serving replays a concurrency run: give concurrency and requests = its num_prompts")
        if self.input_distribution is not None or self.output_distribution is not None:
            raise ValueError("bench_serving gives the lengths: leave out input_distribution and output_distribution")
        inp, out = b.run().sent_lengths(b.extra_output_tokens)  # lengths alone: hash ids are built when it runs
        for name, drawn, stated in (("input", inp, self.input_tokens), ("output", out, self.output_tokens)):
            if abs(drawn.mean() - stated) > 0.5:
                raise ValueError(f"bench_serving draws {name} lengths of mean {drawn.mean():.2f}; {name}_tokens "
                                 f"({stated}) must state it (rounded)")
        return self

    @model_validator(mode="after")
    def _metric_fits_mode(self) -> "FidelityPoint":
        if self.rate_per_s is not None:
            if self.concurrency is not None or self.requests is None or self.metric == "batch_latency_s":
                raise ValueError("rate_per_s is an open loop: give requests (how many it sent), no concurrency, and "
                                 f"measure output_tokens_per_s or one of {', '.join(LATENCY_METRICS)}")
            return self
        if self.metric == "batch_latency_s":
            if self.concurrency is not None or self.max_num_seqs is None:
                raise ValueError("batch_latency_s is one offline batch: give max_num_seqs (the batch), no concurrency")
        elif self.concurrency is None and self.metric != "output_tokens_per_s":
            raise ValueError(f"{self.metric} needs a concurrency or a rate_per_s (offline points measure "
                             "output_tokens_per_s)")
        if self.requests is not None and self.metric == "batch_latency_s":
            raise ValueError("requests is for throughput, rate and concurrency points (a batch is its own size)")
        return self


class FidelitySuite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    source: str = Field(min_length=1)
    as_of: AsOf
    engine: str = "vllm"
    engine_version: str | None = Field(default=None, description="the engine release measured, e.g. 0.5.3 or 1.0")
    mode: Literal["offline", "concurrency", "rate"] = "offline"  # informational: each point says how it runs
    max_num_seqs: PositiveInt | None = Field(
        default=256, description="every point's batch limit unless the point sets its own; null: the engine preset's "
                                 "default for the point's device (concurrency and rate points only)")
    max_num_batched_tokens: PositiveInt | None = Field(
        default=None, description="every point's per-step token budget unless the point sets its own; absent: the "
                                  "engine preset's default for the point's device")
    repeat_of: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="another suite, in a file of that name (.yaml) beside this one, whose points measured some of "
                    "this suite's setups again (same engine, GPUs, model, client and conditions): the fidelity report "
                    "shows how far the two measurements differ, a floor under any forecast's error")
    requests_per_client: PositiveInt | None = Field(
        default=None,
        description="concurrency points run as the benchmark ran them: the C clients start together, send "
                    "requests_per_client x C requests in all (AIPerf --request-count) and every request is measured "
                    "(TTFT and ITL means; throughput: output tokens over first send to last completion, AIPerf's "
                    "benchmark duration). None: a steady state past a ramp (a long or warmed-up run)")
    deployment: dict[str, Any] = Field(
        default_factory=dict, description="deployment fields every point's measured setup shares (e.g. the serving "
                                          "front end's front_end_s), under each point's own `deployment`")
    points: list[FidelityPoint] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shared_deployment(cls, data: Any) -> Any:
        """Each point gets the suite's deployment fields, its own winning (validated with the point). Points given as
        mappings (a suite file); a suite built from FidelityPoint objects with a shared deployment is refused."""
        if not isinstance(data, dict) or not isinstance(data.get("deployment"), dict) \
                or not isinstance(data.get("points"), list):
            return data
        shared = data["deployment"]
        if shared and any(isinstance(p, FidelityPoint) for p in data["points"]):
            raise ValueError("deployment: give the points as mappings to share deployment fields with them")
        points = [{**p, "deployment": {**shared, **p.get("deployment", {})}}
                  if isinstance(p, dict) and isinstance(p.get("deployment", {}), dict) else p for p in data["points"]]
        return {**data, "points": points}


@dataclasses.dataclass(frozen=True)
class PointResult:
    suite: str
    id: str
    metric: str
    measured: float
    predicted: float
    step_time_source: str
    tp: int = 1
    batch: int = 1  # requests in flight the point measures: its concurrency, batch, or offline batch limit
    engine: str = ""  # the engine preset and the version its suite names
    preset: str = ""  # the engine preset alone
    sku: str = ""  # the hardware the point was measured on
    model: str = ""  # the model it served

    @property
    def error(self) -> float:
        """Signed relative error of the prediction: negative is optimistic for a latency, positive for a
        throughput."""
        return self.predicted / self.measured - 1.0

    @property
    def optimism(self) -> float:
        """The error signed so that > 0 always means too optimistic (latency too low, throughput too high):
        an optimistic planner buys too little, the costly mistake."""
        return self.error if self.metric == "output_tokens_per_s" else -self.error

    @property
    def regime(self) -> str:
        return regime(self.batch)


def regime(batch: int) -> str:
    """Batch regimes the fidelity breakdowns use: one request, small batches, large ones."""
    return "batch 1" if batch <= 1 else "batch 2-32" if batch <= 32 else "batch 33+"


def offline_scenario(p: FidelityPoint, engine: str, max_num_seqs: int, requests: int,
                     step_time_source: str = "auto", max_num_batched_tokens: int | None = None) -> Scenario:
    """An offline benchmark's point: requests handed to the engine in-process (vLLM's LLM class, trtllm-bench), so
    no API server in front unless the point's deployment names one."""
    offline = {**NO_API_SERVER, **p.deployment}
    return point_scenario(p.model_copy(update={"deployment": offline}), engine,
                          max_num_seqs, max_num_batched_tokens,
                          {"process": "constant", "rate_per_s": OFFLINE_RATE_PER_S}, requests / OFFLINE_RATE_PER_S,
                          step_time_source)


def point_scenario(p: FidelityPoint, engine: str, max_num_seqs: int | None, max_num_batched_tokens: int | None,
                   arrival: dict[str, Any], horizon_s: float, step_time_source: str = "auto") -> Scenario:
    """One replica of the point's deployment, one class of its lengths, this arrival process and horizon (a token
    budget of None: the engine preset's for the point's device). A point whose values no scenario can hold (a rate
    or length past simfactory's bounds) is an input error naming it."""
    doc = {
        "name": p.id,
        # a fidelity point measures time, not cost: no price needed (a SKU without a cloud price, GB200, runs too)
        "pools": [{"name": "p", "sku": p.sku, "count": p.tp, "location": "cloud", "cloud_usd_per_accel_hour": 0.0}],
        "deployments": [{"name": "d", "model": p.model, "pool": "p", "replicas": 1, "tp": p.tp, "dtype": p.dtype,
                         "engine": engine, **({} if max_num_seqs is None else {"max_num_seqs": max_num_seqs}),
                         **({} if max_num_batched_tokens is None else {"max_num_batched_tokens": max_num_batched_tokens}),
                         "step_time_source": step_time_source, **p.deployment}],
        "traffic": {"arrival": arrival,
                    "classes": [{"name": "c", "target": "d", "input_tokens": _tokens(p.input_distribution, p.input_tokens),
                                 "output_tokens": _tokens(p.output_distribution, p.output_tokens)}]},
        "sim": {"horizon_s": horizon_s, "timeline_resolution_s": 60.0},
    }
    try:
        return Scenario.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        raise InputError(f"fidelity point {p.id}", ".".join(map(str, first["loc"])),
                         str(first["msg"]).removeprefix("Value error, ")) from None


def _tokens(dist: Any, fixed: int) -> dict[str, Any]:
    """A point's token counts as a scenario distribution: its stated distribution, else a fixed count."""
    return dist.model_dump() if dist is not None else {"kind": "fixed", "value": fixed}


def offline_output_tokens_per_s(rs: ResolvedScenario) -> float:
    """Output tokens of completed requests per second, first arrival to last completion (nan if none)."""
    return offline_metrics(rs)["output_tokens_per_s"]


def offline_metrics(rs: ResolvedScenario) -> dict[str, float]:
    """Throughput (first arrival to last completion), mean TTFT from admission and mean ITL of the completed
    requests (nan if none)."""
    return table_metrics(simulate(rs, keep_logs=0).table, "first_scheduled_s")


NO_METRICS = ("output_tokens_per_s", *LATENCY_METRICS, "batch_latency_s")  # all nan when nothing completed


def table_metrics(t: Any, ttft_from: str) -> dict[str, float]:
    """Of a run's completed requests: output tokens over first arrival to last completion (that span is also the
    batch latency), mean TTFT counted from `ttft_from` (arrival_s, or first_scheduled_s for admission) and mean ITL;
    nan if none completed."""
    from simfactory.sim.outcomes import Outcome

    done = t.outcome == Outcome.COMPLETED
    if not done.any():
        return dict.fromkeys(NO_METRICS, float("nan"))
    out, first, end = t.output_tokens[done], t.first_token_s[done], t.completion_s[done]
    span = float(end.max() - t.arrival_s.min())
    return {"output_tokens_per_s": float(out.sum()) / span,
            **latency_metrics(getattr(t, ttft_from)[done], first, end, out), "batch_latency_s": span}


def latency_metrics(sent: np.ndarray, first: np.ndarray, end: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Mean and median TTFT (first token less `sent`) and time per output token after the first (over the requests
    with more than one; nan if none) of some completed requests."""
    ttft = first - sent
    multi = out > 1
    tpot = (end[multi] - first[multi]) / (out[multi] - 1)
    none = float("nan")
    return {"ttft_s": float(ttft.mean()), "ttft_median_s": float(np.median(ttft)),
            "itl_s": float(tpot.mean()) if len(tpot) else none,
            "itl_median_s": float(np.median(tpot)) if len(tpot) else none}


def with_roofline_factors(rs: ResolvedScenario, factors: RooflineStepTime) -> ResolvedScenario:
    """The same scenario with other roofline factors (used to fit them): resolve it with step_time_source
    roofline (offline_scenario's argument), or there is no roofline to refit."""
    d = rs.deployments[0]
    if not isinstance(d.step_time, RooflineModel):
        raise TypeError(f"{rs.name}: step time is {d.step_time_source}, not a roofline")
    return with_step_time(rs, dataclasses.replace(d.step_time, factors=factors))


def with_rows(rs: ResolvedScenario, rows: ReplayRows) -> ResolvedScenario:
    """The same one-class scenario with its class replaying these rows (a benchmark's requests, in send order)."""
    (c,) = rs.classes
    return dataclasses.replace(rs, classes=[dataclasses.replace(c, trace=rows)])


def with_step_time(rs: ResolvedScenario, step_time: StepTimeModel | None) -> ResolvedScenario:
    """The same one-deployment scenario with another step-time model (a fit's candidate); None keeps its own."""
    if step_time is None:
        return rs
    return dataclasses.replace(rs, deployments=[dataclasses.replace(rs.deployments[0], step_time=step_time)])


CLOSED_LOOP_REQUESTS_PER_CLIENT = 8  # requests per client in a concurrency point (a steady state past the ramp)
CLOSED_LOOP_RAMP = 1 / 3  # share of a concurrency point's run left out as the ramp (a benchmark's warm-up)


def closed_loop_scenario(p: FidelityPoint, engine: str, max_num_seqs: int | None, max_num_batched_tokens: int | None,
                         horizon_s: float, requests: int | None = None) -> Scenario:
    """A concurrency point as a closed loop: p.concurrency clients, no think time, one replica; with `requests`,
    the clients stop once they have sent that many in all."""
    assert p.concurrency is not None
    arrival: dict[str, Any] = {"process": "closed", "concurrency": p.concurrency}
    if requests is not None:
        arrival["requests"] = requests
    return point_scenario(p, engine, max_num_seqs, max_num_batched_tokens, arrival, horizon_s)


def closed_loop_cycle_s(rs: ResolvedScenario, p: FidelityPoint) -> float:
    """A rough request lifetime for sizing the run: one prefill plus output_tokens decode steps at the batch the
    loop holds, stretched when the batch or KV-cache limit makes clients queue."""
    from simfactory.hardware.step_time import StepLoad

    assert p.concurrency is not None
    d = rs.deployments[0]
    seqs = d.config.max_num_seqs or p.concurrency
    n = min(p.concurrency, seqs)
    isl, osl = p.input_tokens, p.output_tokens
    prefill = d.step_time.step_s(StepLoad(isl, 0, 0.0, isl * (isl + 1) / 2))
    decode = d.step_time.step_s(StepLoad(0, n, float(n * (isl + osl / 2)), 0.0))
    queueing = max(1.0, p.concurrency * (isl + osl) / d.kv_capacity_tokens, p.concurrency / seqs)
    return (prefill + osl * decode) * queueing + d.config.front_end_s


def radix_cache_tokens(rs: ResolvedScenario, p: FidelityPoint) -> int:
    """What a radix cache (SGLang's; vLLM's prefix cache alike) can keep beside the point's requests: the KV pool
    less what its clients' requests hold when all are in flight (the cache and the running requests share the pool;
    simfactory's prefix cache is memory of its own)."""
    return max(0, int(rs.deployments[0].kv_capacity_tokens) - (p.concurrency or 1) * (p.input_tokens + p.output_tokens))


def closed_loop_metrics(p: FidelityPoint, engine: str, max_num_seqs: int | None, max_num_batched_tokens: int | None,
                        step_time: StepTimeModel | None = None,
                        requests: int | None = None) -> tuple[dict[str, float], str]:
    """Mean TTFT (from the send), mean ITL and throughput of a concurrency point run as a closed loop, and the
    step-time source. By default over the requests sent after the ramp and at least one request lifetime before
    the horizon (a steady state: the loop has not begun to drain). With `requests` N, as a benchmark with a request
    count runs it: the clients start together, N requests in all, every one measured, throughput over first send
    to last completion. NaN if none completed. `step_time` replaces the resolved one (a fit's candidate)."""
    from simfactory.sim.outcomes import Outcome

    probe = with_step_time(resolve(closed_loop_scenario(p, engine, max_num_seqs, max_num_batched_tokens, 1.0)),
                           step_time)
    cycle = closed_loop_cycle_s(probe, p)
    replay = p.bench_serving
    if replay is not None:  # built once, whatever horizon the run below needs
        rows, warm = replay.run().replay_rows(replay.extra_output_tokens), replay.cached_at_start()
        if "prefix_cache_tokens" not in p.deployment:
            p = p.model_copy(update={"deployment": {**p.deployment,
                                                    "prefix_cache_tokens": radix_cache_tokens(probe, p)}})
    clients = p.concurrency or 1
    counted = requests is not None
    # a request count ends the run itself; the horizon then only has to outlast it (every client's share of it)
    horizon = (2 * -(-requests // clients) if counted else CLOSED_LOOP_REQUESTS_PER_CLIENT) * cycle
    for _ in range(6):  # a count the clients could not send before the horizon: a longer run (at most 4^5 x)
        rs = with_step_time(resolve(closed_loop_scenario(p, engine, max_num_seqs, max_num_batched_tokens, horizon,
                                                         requests)), step_time)
        if replay is None:
            t = simulate(rs, keep_logs=0).table
        else:
            t = simulate(with_rows(rs, rows), keep_logs=0, warm_prompts=warm).table
        if not counted or len(t.arrival_s) >= requests:
            break
        horizon *= 4
    done = t.outcome == Outcome.COMPLETED
    sent, first, end, out = t.arrival_s[done], t.first_token_s[done], t.completion_s[done], t.output_tokens[done]
    if counted:
        window = np.ones(len(sent), dtype=bool)
    else:
        window = (sent >= CLOSED_LOOP_RAMP * horizon) & (sent <= horizon - cycle)
        if window.sum() < clients:
            window = sent >= CLOSED_LOOP_RAMP * horizon
    source = source_kind(rs.deployments[0].step_time_source)
    if not window.any():
        return dict.fromkeys(NO_METRICS, float("nan")), source
    sent, first, end, out = sent[window], first[window], end[window], out[window]
    if counted:  # AIPerf: output tokens over its benchmark duration, first request to last response
        throughput = float(out.sum() / (end.max() - sent.min()))
    else:  # Little's law on the loop
        throughput = float(clients * out.mean() / (end - sent).mean())
    return {"output_tokens_per_s": throughput, **latency_metrics(sent, first, end, out),
            "batch_latency_s": float("nan")}, source


def open_loop_scenario(p: FidelityPoint, engine: str, max_num_seqs: int | None,
                       max_num_batched_tokens: int | None) -> Scenario:
    """A rate point: Poisson arrivals at p.rate_per_s for as long as p.requests take on average, one replica."""
    assert p.rate_per_s is not None and p.requests is not None
    return point_scenario(p, engine, max_num_seqs, max_num_batched_tokens,
                          {"process": "poisson", "rate_per_s": p.rate_per_s}, p.requests / p.rate_per_s)


def open_loop_metrics(p: FidelityPoint, engine: str, max_num_seqs: int | None,
                      max_num_batched_tokens: int | None) -> tuple[dict[str, float], str]:
    """Mean TTFT (from arrival) and ITL of every request of a rate point, and its output tokens over first arrival
    to last completion (vllm bench serve's and AIPerf's duration); NaN if none completed. `in_flight`, the mean
    requests in flight (rate x mean latency, Little's law), places the point in a batch regime."""
    from simfactory.sim.outcomes import Outcome

    assert p.rate_per_s is not None
    rs = resolve(open_loop_scenario(p, engine, max_num_seqs, max_num_batched_tokens))
    t = simulate(rs, keep_logs=0).table
    metrics = table_metrics(t, "arrival_s")
    done = t.outcome == Outcome.COMPLETED
    if done.any():
        metrics["in_flight"] = float(p.rate_per_s * (t.completion_s[done] - t.arrival_s[done]).mean())
    return metrics, source_kind(rs.deployments[0].step_time_source)


def run_suite(suite: FidelitySuite, requests: int = 800,
              on_point: Callable[[int, int], None] | None = None) -> list[PointResult]:
    """Simulate each distinct setup once (points that differ only in the metric share a run). `requests` is for
    offline points that do not state how many requests their benchmark sent. on_point(done, total) after each
    point (progress displays)."""
    out = []
    runs: dict[tuple[Any, ...], tuple[dict[str, float], str]] = {}
    for p in suite.points:
        one_batch = p.metric == "batch_latency_s"
        key = setup_key(p)
        if key not in runs:
            tokens = p.max_num_batched_tokens or suite.max_num_batched_tokens
            if p.rate_per_s:
                runs[key] = open_loop_metrics(p, suite.engine, p.max_num_seqs or suite.max_num_seqs, tokens)
            elif p.concurrency:
                count = p.requests or (suite.requests_per_client and suite.requests_per_client * p.concurrency)
                runs[key] = closed_loop_metrics(p, suite.engine, p.max_num_seqs or suite.max_num_seqs, tokens,
                                                requests=count)
            else:
                seqs = p.max_num_seqs or suite.max_num_seqs
                if seqs is None:
                    raise InputError(f"fidelity suite {suite.name}", f"points.{p.id}.max_num_seqs",
                                     "an offline point needs a batch limit (the suite's max_num_seqs is null)")
                n = seqs if one_batch else p.requests or requests
                rs = resolve(offline_scenario(p, suite.engine, seqs, n, max_num_batched_tokens=tokens))
                metrics = offline_metrics(rs) if one_batch else {"output_tokens_per_s": offline_output_tokens_per_s(rs)}
                runs[key] = (metrics, source_kind(rs.deployments[0].step_time_source))
        metrics, source = runs[key]
        batch = p.concurrency or (max(1, round(metrics["in_flight"])) if "in_flight" in metrics else None) \
            or p.max_num_seqs or suite.max_num_seqs or 0
        engine = suite.engine + (f" {suite.engine_version}" if suite.engine_version else "")
        out.append(PointResult(suite.name, p.id, p.metric, p.measured, metrics[p.metric], source, p.tp, batch, engine,
                               suite.engine, p.sku, p.model))
        if on_point:
            on_point(len(out), len(suite.points))
    return out


def point_steps(suite: FidelitySuite, point_id: str) -> tuple[str, dict[str, Any]] | None:
    """What one engine step of the deployment a suite's point runs on costs at typical loads, sized from the
    point's limits and its own lengths, and of what (simfactory.api.step_tables), with the step-time label: where a
    point's error comes from (`simfactory fidelity SUITE --steps ID`). None if the suite has no such point."""
    from simfactory.api import step_tables

    point = next((p for p in suite.points if p.id == point_id), None)
    if point is None:
        return None
    scenario = point_scenario(point, suite.engine, point.max_num_seqs or suite.max_num_seqs,
                              point.max_num_batched_tokens or suite.max_num_batched_tokens,
                              {"process": "constant", "rate_per_s": 1.0}, 10.0)
    rs = resolve(scenario)
    return rs.deployments[0].step_time_source, step_tables(rs)[rs.deployments[0].config.name]


# the suite-level settings a point's simulation reads besides its own fields (setup_key): two suites' points repeat
# each other only when these agree too
SUITE_SETTINGS = ("engine", "engine_version", "max_num_seqs", "max_num_batched_tokens", "requests_per_client")


def setup_key(p: FidelityPoint) -> tuple[Any, ...]:
    """What a point's simulation depends on: points with equal keys share one run, and two suites' points with
    equal keys and metrics measured the same thing."""
    return (p.sku, p.model, p.dtype, p.tp, p.input_tokens, p.output_tokens, p.concurrency, p.rate_per_s,
            p.max_num_seqs, p.metric == "batch_latency_s", p.max_num_batched_tokens, p.requests,
            json.dumps(p.deployment, sort_keys=True), p.bench_serving and p.bench_serving.model_dump_json(),
            *(d and d.model_dump_json() for d in (p.input_distribution, p.output_distribution)))


def load_repeat(path: Path, suite: FidelitySuite) -> FidelitySuite | None:
    """The suite a suite names as its repeat_of, from the file of that name beside it (None: it names none)."""
    if suite.repeat_of is None:
        return None
    if suite.repeat_of == suite.name:
        raise InputError(str(path), "repeat_of", "names this suite itself: name the suite that measured it again")
    other_path = path.parent / f"{suite.repeat_of}.yaml"
    if not other_path.is_file():
        raise InputError(str(path), "repeat_of", f"no suite file {other_path.name} beside this one")
    other = load_suite(other_path)
    if other.name != suite.repeat_of:
        raise InputError(str(path), "repeat_of", f"{other_path.name} holds suite {other.name!r}, not "
                         f"{suite.repeat_of!r}")
    return other


def measurement_spread(suite: FidelitySuite, other: FidelitySuite, file: str = "") -> dict[str, Any]:
    """How far `other`'s measurements of this suite's setups are from this suite's: the MAPE and the optimism (mean
    error signed as PointResult.optimism) the other measurement would score as this suite's forecast, over the points
    both measured (same setup_key and metric), and per metric. No forecast can be expected to beat it by much."""
    where = file or f"fidelity suite {suite.name}"
    differ = [f for f in SUITE_SETTINGS if getattr(suite, f) != getattr(other, f)]
    if differ:
        raise InputError(where, "repeat_of", f"{other.name} was simulated with other settings ({', '.join(differ)}): "
                         "a repeat measures the same setup")
    theirs: dict[tuple[Any, ...], float] = {}
    for p in other.points:
        if (key := (setup_key(p), p.metric)) in theirs:
            raise InputError(where, "repeat_of", f"{other.name} measures one setup and metric twice ({p.id}): "
                             "which of its values repeats this suite's is ambiguous")
        theirs[key] = p.measured
    pairs: dict[str, list[PointResult]] = {}
    for p in suite.points:
        if (key := (setup_key(p), p.metric)) in theirs:
            pairs.setdefault(p.metric, []).append(PointResult(suite.name, p.id, p.metric, p.measured, theirs[key], ""))
    if not pairs:
        raise InputError(where, "repeat_of", f"no point of {other.name} measures a setup and metric of this suite")

    def stats(rs: list[PointResult]) -> dict[str, Any]:
        return {k: v for k, v in _stats(rs).items() if k in ("points", "mape", "optimism")}

    return {"repeat_of": other.name, **stats([r for rs in pairs.values() for r in rs]),
            "by_metric": {m: stats(rs) for m, rs in pairs.items()}}


def _stats(rs: list[PointResult]) -> dict[str, Any]:
    """MAPE, signed bias (mean error) and optimism (mean error signed so > 0 is optimistic) of some points."""
    n = len(rs)
    return {"points": n, "mape": sum(abs(r.error) for r in rs) / n, "bias": sum(r.error for r in rs) / n,
            "optimism": sum(r.optimism for r in rs) / n,
            "worst": max(rs, key=lambda r: abs(r.error)).id, "worst_error": max(abs(r.error) for r in rs)}


def _grouped(results: list[PointResult], key: Any) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[PointResult]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    return {k: _stats(rs) for k, rs in sorted(groups.items())}


def summarize(results: list[PointResult]) -> dict[str, Any]:
    """MAPE, bias and worst error per suite and profile source (roofline vs measured)."""
    return _grouped(results, lambda r: f"{r.suite} [{r.step_time_source}]")


def model_row_key(r: PointResult) -> str:
    """The record row of a point's source kind on its model (record_doc names the presets and TPs it pools)."""
    return kind_model_key(r.step_time_source, r.model or "model not stated")


def model_preset_row_key(r: PointResult) -> str:
    """The record row of a point's source kind on its model and engine preset (record_doc names its TPs)."""
    return kind_model_key(r.step_time_source, r.model or "model not stated", r.preset or "engine not stated")


# the breakdowns a run report cites as a deployment's evidence (fidelity_record.evidence): per source kind, with the
# engine preset, at one TP, on one metric, and on one model (every preset, and its own)
EVIDENCE_KEYS: tuple[Callable[[PointResult], str], ...] = (
    lambda r: kind_key(r.step_time_source),
    lambda r: kind_engine_key(r.step_time_source, r.preset or "engine not stated"),
    lambda r: kind_tp_key(r.step_time_source, r.tp),
    lambda r: kind_metric_key(r.step_time_source, r.metric),
    model_row_key,
    model_preset_row_key,
)


def breakdowns(results: list[PointResult]) -> dict[str, dict[str, Any]]:
    """The same statistics per suite and metric, per TP, per batch regime, per engine (with its version) and per
    step-time source kind (alone, with the engine preset, at one TP, on one metric): where the error lives, and which
    way it leans."""
    return {
        **_grouped(results, lambda r: f"{r.suite} | {r.metric}"),
        **_grouped(results, lambda r: f"all suites | tp {r.tp}"),
        **_grouped(results, lambda r: f"all suites | {r.regime}"),
        **_grouped(results, lambda r: f"all suites | {r.engine or 'engine not stated'}"),
        **{k: v for key in EVIDENCE_KEYS for k, v in _grouped(results, key).items()},
    }


def record_doc(results: list[PointResult], note: str) -> dict[str, Any]:
    """The record CI holds the suites to (calibrate/fidelity/recorded.json; `simfactory fidelity --record`): each
    suite's and breakdown's MAPE, optimism and points, rounded; the rows a report cites as evidence (per source
    kind, with the preset or the TP) also name the SKUs their points were measured on; and what changed (note)."""
    def rounded(s: dict[str, Any]) -> dict[str, Any]:
        return {"mape": round(s["mape"], 4), "optimism": round(s["optimism"], 4), "points": s["points"]}

    skus: dict[str, set[str]] = {}  # the cited rows' hardware
    pooled: dict[str, tuple[set[str], set[int]]] = {}  # a model row's presets and TPs (it pools every one)
    for r in results:
        for key in EVIDENCE_KEYS:
            skus.setdefault(key(r), set()).add(r.sku)
        for key in (model_row_key(r), model_preset_row_key(r)):
            presets, tps = pooled.setdefault(key, (set(), set()))
            presets.add(r.preset)
            tps.add(r.tp)
    rows = {k: {**rounded(v), **({"skus": sorted(skus[k] - {""})} if k in skus else {}),
                **({"presets": sorted(pooled[k][0] - {""}), "tps": sorted(pooled[k][1])} if k in pooled else {})}
            for k, v in sorted(breakdowns(results).items())}
    return {"breakdowns": rows, "note": note, "suites": {k: rounded(v) for k, v in sorted(summarize(results).items())}}


def summarize_by_source(results: list[PointResult]) -> dict[str, dict[str, Any]]:
    """MAPE and bias per profile source (roofline, published-fit, measured) over every suite."""
    return {k: {"points": v["points"], "mape": v["mape"], "bias": v["bias"], "optimism": v["optimism"]}
            for k, v in _grouped(results, lambda r: r.step_time_source).items()}


def load_suite(path: Path) -> FidelitySuite:
    return load_model_file(FidelitySuite, path)


def shipped_suites() -> list[Path]:
    return sorted(FIDELITY_DIR.glob("*.yaml"))
