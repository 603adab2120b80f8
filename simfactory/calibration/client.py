"""An OpenAI-compatible streaming load generator (httpx, asyncio): Poisson load at several rates, or a
replayed schedule, against `vllm serve` / SGLang / TRT-LLM / NIM; one request-table row per request.

TTFT is the time to the first chunk carrying text; E2E the time to the last one. Output tokens come from the
server's `usage` (requested with `stream_options.include_usage`), else from the count of text chunks.
Prompts are synthetic text of about the requested length; the server's tokenizer decides the real count and
its `usage.prompt_tokens`, when returned, is what gets recorded. `ignore_eos` (vLLM, SGLang) makes the
server generate exactly `max_tokens`. A failed request (HTTP error, timeout, broken stream) is a row with
ok = False and the error: nothing is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from simfactory.calibration.measurements import request_row
from simfactory.inputs import parse_json

WORDS_PER_TOKEN = 0.75  # English text: about 3/4 of a word per token (OpenAI tokenizer guidance)


@dataclass(frozen=True)
class PlannedRequest:
    send_s: float  # from the start of its rate block
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Endpoint:
    url: str  # base URL, e.g. http://localhost:8000 or http://localhost:8000/v1
    model: str  # the served model name
    chat: bool = False  # /v1/chat/completions instead of /v1/completions
    api_key: str | None = None
    timeout_s: float = 600.0
    ignore_eos: bool = True
    headers: tuple[tuple[str, str], ...] = ()  # extra request headers (name, value)
    tokenizer: Any = None  # a Hugging Face tokenizer: prompts of exactly input_tokens tokens (else ~0.75 words each)

    @property
    def request_url(self) -> str:
        return endpoint_url(self.url, self.chat)

    def request_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


def endpoint_url(base: str, chat: bool) -> str:
    """The completions URL under a base given with or without its /v1 (and trailing slashes): both
    http://h:8000 and http://h:8000/v1/ become http://h:8000/v1/completions."""
    root = base.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + ("/v1/chat/completions" if chat else "/v1/completions")


@dataclass
class Session:
    """What one measurement learns as it goes, shared by its concurrent requests: whether the server takes
    ignore_eos (a server that refuses it with HTTP 400/422 is asked again without it, once, and the run notes
    it), and the raw per-request records (chunk arrival times) written beside the request table."""

    ignore_eos: bool
    notes: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class Ramp:
    """A rate that climbs over a block, as `vllm bench serve --ramp-up-strategy` does: request i of n is sent at
    start + (end - start) * i / (n - 1) req/s (linear) or start * (end / start) ** (i / (n - 1)) (exponential)."""

    strategy: str  # linear | exponential
    start_rps: float
    end_rps: float

    def rates(self, n: int) -> np.ndarray:
        progress = np.arange(n) / max(n - 1, 1)
        if self.strategy == "exponential":
            return self.start_rps * (self.end_rps / self.start_rps) ** progress
        return self.start_rps + (self.end_rps - self.start_rps) * progress

    @property
    def label(self) -> str:
        return f"ramp {self.start_rps:g}-{self.end_rps:g}"


def spread_lengths(tokens: int, n: int, range_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """n lengths uniform on [tokens (1 - r), tokens (1 + r)] (integers, at least 1), as `vllm bench serve
    --random-range-ratio` draws them; r = 0 gives `tokens` every time."""
    if range_ratio <= 0:
        return np.full(n, tokens, dtype=int)
    low = max(int(math.floor(tokens * (1 - range_ratio))), 1)
    high = max(int(math.ceil(tokens * (1 + range_ratio))), low)
    return rng.integers(low, high + 1, n)


def poisson_schedule(rate_rps: float, n: int, input_tokens: int, output_tokens: int, seed: int,
                     burstiness: float = 1.0, range_ratio: float = 0.0, ramp: Ramp | None = None) -> list[PlannedRequest]:
    """n requests at rate_rps (seeded), or at a ramp's climbing rate. Gaps are exponential (Poisson arrivals) at
    burstiness 1, else gamma with shape = burstiness and the same mean, as `vllm bench serve --burstiness` draws
    them: below 1 burstier, above 1 more even. With a range ratio, prompt and answer lengths are drawn uniformly
    around the asked ones (their own stream: the send times do not change)."""
    rng = np.random.default_rng(seed)
    rates = ramp.rates(n) if ramp is not None else np.full(n, rate_rps)
    if burstiness == 1.0:
        gaps = rng.exponential(1.0 / rates)
    else:
        gaps = rng.gamma(burstiness, 1.0 / (rates * burstiness))
    sends = np.cumsum(gaps) - gaps[0]
    lengths_rng = np.random.default_rng([seed, 1])
    inputs = spread_lengths(input_tokens, n, range_ratio, lengths_rng)
    outputs = spread_lengths(output_tokens, n, range_ratio, lengths_rng)
    return [PlannedRequest(float(s), int(i), int(o)) for s, i, o in zip(sends, inputs, outputs)]


def exact_prompt(tokenizer: Any, tokens: int, salt: int) -> str:
    """Text the tokenizer encodes to `tokens` tokens (without special tokens): the synthetic prompt, cut at that
    many tokens and decoded; at most a few tokens off where a cut merges differently on re-encoding."""
    text = synthetic_prompt(tokens * 2 + 8, salt)
    ids = tokenizer.encode(text, add_special_tokens=False)[:tokens]
    return tokenizer.decode(ids)


def synthetic_prompt(tokens: int, salt: int) -> str:
    """About `tokens` tokens of text; the salt keeps prompts distinct (no accidental prefix-cache hits)."""
    words = max(int(tokens * WORDS_PER_TOKEN), 1)
    vocab = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
    return f"{salt} " + " ".join(vocab[(salt + k * 7) % len(vocab)] for k in range(words - 1))


def _body(ep: Endpoint, req: PlannedRequest, salt: int, ignore_eos: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": ep.model, "max_tokens": req.output_tokens, "stream": True,
                            "stream_options": {"include_usage": True}, "temperature": 0.0}
    if ignore_eos:
        body["ignore_eos"] = True
    prompt = exact_prompt(ep.tokenizer, req.input_tokens, salt) if ep.tokenizer is not None \
        else synthetic_prompt(req.input_tokens, salt)
    if ep.chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def _text_of(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    return c.get("text") or (c.get("delta") or {}).get("content") or ""


REFUSED_FIELD_STATUSES = (400, 422)  # how OpenAI-compatible servers answer a request field they do not take


async def _stream(client: httpx.AsyncClient, ep: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed completion: HTTP status, the server's message when it failed, chunk arrival times
    (perf_counter) of the chunks that carry text, and the usage block."""
    got: dict[str, Any] = {"status": 0, "message": "", "chunks": [], "usage": {}}
    async with client.stream("POST", ep.request_url, json=body, headers=ep.request_headers(),
                             timeout=ep.timeout_s) as resp:
        got["status"] = resp.status_code
        if resp.status_code != 200:
            got["message"] = " ".join((await resp.aread()).decode(errors="replace").split())[:300]
            return got
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = parse_json(data, ep.url, "stream")
            if chunk.get("usage"):
                got["usage"] = chunk["usage"]
            if _text_of(chunk):
                got["chunks"].append(time.perf_counter())
    return got


async def send_one(client: httpx.AsyncClient, ep: Endpoint, req: PlannedRequest, salt: int, t0: float,
                   rid: str, rate: float, session: Session | None = None) -> dict[str, Any]:
    """One streamed request; returns its request-table row (ok or not) and keeps its raw record in the session."""
    session = session if session is not None else Session(ep.ignore_eos)
    start = time.perf_counter()
    error = ""
    got: dict[str, Any] = {"status": 0, "message": "", "chunks": [], "usage": {}}
    try:
        with_eos = session.ignore_eos
        got = await _stream(client, ep, _body(ep, req, salt, with_eos))
        if with_eos and got["status"] in REFUSED_FIELD_STATUSES:
            retry = await _stream(client, ep, _body(ep, req, salt, False))
            if retry["status"] == 200:
                session.ignore_eos = False
                session.note(f"the server refused ignore_eos (HTTP {got['status']}: {got['message'][:160]}); "
                             "measured without it, so answers may stop before max_tokens (output_tokens records "
                             "what each returned)")
                got = retry
        if got["status"] != 200:
            error = f"HTTP {got['status']} from {ep.request_url}: {got['message'] or '(no message)'}"
    except (httpx.HTTPError, json.JSONDecodeError, asyncio.TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    chunks = got["chunks"]
    first = chunks[0] if chunks else None
    ok = not error and first is not None
    if not error and first is None:
        error = "no tokens in the stream"
    usage = got["usage"]
    out = int(usage.get("completion_tokens") or len(chunks))
    inp = int(usage.get("prompt_tokens") or req.input_tokens)
    ttft = (first - start) if ok else float("nan")
    e2e = (chunks[-1] - start) if ok else float("nan")
    session.raw.append({"request_id": rid, "send_s": start - t0, "status": got["status"], "error": error,
                        "input_tokens": inp, "output_tokens": out if ok else 0,
                        "chunk_s": [round(c - start, 6) for c in chunks]})
    return request_row(rid, start - t0, inp, out if ok else 0, ttft, e2e, ok, error, rate)


async def run_schedule(ep: Endpoint, plan: list[PlannedRequest], rate: float, concurrency: int | None,
                       first_salt: int = 0, block: int = 0, session: Session | None = None) -> list[dict[str, Any]]:
    """Send each planned request at its time (open loop), at most `concurrency` in flight; wait for all. Request
    ids are block-rate-index, unique across the blocks of one measurement."""
    session = session if session is not None else Session(ep.ignore_eos)
    limits = httpx.Limits(max_connections=concurrency or 1000, max_keepalive_connections=concurrency or 1000)
    gate = asyncio.Semaphore(concurrency) if concurrency else None
    async with httpx.AsyncClient(limits=limits, timeout=ep.timeout_s) as client:
        t0 = time.perf_counter()

        async def fire(i: int, req: PlannedRequest) -> dict[str, Any]:
            delay = req.send_s - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            rid = f"{block}-{rate:g}-{i}"
            if gate is None:
                return await send_one(client, ep, req, first_salt + i, t0, rid, rate, session)
            async with gate:
                return await send_one(client, ep, req, first_salt + i, t0, rid, rate, session)

        return list(await asyncio.gather(*(fire(i, r) for i, r in enumerate(plan))))


def warm_up(ep: Endpoint, n: int, input_tokens: int, output_tokens: int, session: Session) -> list[float]:
    """n requests one after another before measuring (model load, CUDA graphs, caches: a cold server's first
    request can take seconds); kept out of the table. Returns their TTFTs (NaN where one failed)."""
    plan = [PlannedRequest(0.0, input_tokens, output_tokens)]
    ttfts = []
    for k in range(n):
        raw_before = len(session.raw)
        row = asyncio.run(run_schedule(ep, plan, float("nan"), 1, first_salt=-1_000_000 - k, block=-1, session=session))[0]
        del session.raw[raw_before:]  # warm-up records stay out of the raw file too
        ttfts.append(row["ttft_s"])
    return ttfts


@dataclass(frozen=True)
class Load:
    """How each block's sends are drawn: gap shape, length spread, a climbing rate, and how many times the whole
    design is run (repeats: fresh draws each time, interleaved so that drift spreads over every block)."""

    burstiness: float = 1.0
    range_ratio: float = 0.0
    ramp: Ramp | None = None
    repeats: int = 1


@dataclass(frozen=True)
class PlannedBlock:
    rate: float  # NaN for a trace or a ramp
    label: str  # the block's name, the same in every repeat (a fit holds out all repeats of a block together)
    repeat: int
    plan: list[PlannedRequest]


def plan_blocks(rates: list[float], requests_per_rate: int, lengths: list[int], output_tokens: int, seed: int,
                load: Load, schedule: list[PlannedRequest] | None = None) -> list[PlannedBlock]:
    """Every (prompt length, rate) block of the design, or one ramp per prompt length, or the replayed schedule;
    the whole design once per repeat. Block k of repeat j draws from seed + j * blocks + k."""
    if schedule is not None:
        design: list[tuple[float, str, int]] = [(float("nan"), "trace", 0)]
    elif load.ramp is not None:
        design = [(float("nan"), load.ramp.label if len(lengths) == 1 else f"{load.ramp.label} @ {n} tok", n)
                  for n in lengths]
    else:
        design = [(r, f"{r:g}" if len(lengths) == 1 else f"{r:g} @ {n} tok", n) for n in lengths for r in rates]
    out = []
    for j in range(load.repeats):
        for k, (rate, label, n) in enumerate(design):
            plan = schedule if schedule is not None else poisson_schedule(
                rate, requests_per_rate, n, output_tokens, seed + j * len(design) + k, load.burstiness,
                load.range_ratio, load.ramp)
            out.append(PlannedBlock(rate, label, j, plan))
    return out


def measure_endpoint(ep: Endpoint, rates: list[float], requests_per_rate: int, input_tokens: int | list[int],
                     output_tokens: int, seed: int = 0, concurrency: int | None = None,
                     schedule: list[PlannedRequest] | None = None, session: Session | None = None,
                     warmup: int = 0, load: Load | None = None, max_duration_s: float | None = None,
                     on_block: Callable[[int, int, str, pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Poisson load at each rate in turn, at each prompt length (or one replayed schedule); send_s is relative to
    each block's start, and each row names its block (`block`: the rate, with the prompt length when several are
    measured), the unit a fit holds out, and its `repeat`. `warmup` requests go first and are not recorded; the
    session (when given) collects notes and raw records."""
    session = session if session is not None else Session(ep.ignore_eos)
    load = load if load is not None else Load()
    lengths = [input_tokens] if isinstance(input_tokens, int) else list(input_tokens)
    blocks = plan_blocks(rates, requests_per_rate, lengths, output_tokens, seed, load, schedule)
    if max_duration_s is not None:  # each block sends for at most this long; what it did not send is noted
        cut = [dataclasses.replace(b, plan=[p for p in b.plan if p.send_s <= max_duration_s]) for b in blocks]
        unsent = sum(len(b.plan) - len(c.plan) for b, c in zip(blocks, cut))
        if unsent:
            session.note(f"--max-duration {max_duration_s:g} s: {unsent} planned request(s) past it were not sent")
        blocks = cut
    if warmup:
        ttfts = warm_up(ep, warmup, lengths[0], output_tokens, session)
        shown = ", ".join("failed" if v != v else f"{v:.3g} s" for v in ttfts)
        session.note(f"{warmup} warm-up request(s) not recorded (TTFT: {shown})")
    rows: list[dict[str, Any]] = []
    for k, b in enumerate(blocks):
        done = asyncio.run(run_schedule(ep, b.plan, b.rate, concurrency, first_salt=k * 1_000_000, block=k,
                                        session=session))
        rows += [{**row, "block": b.label, "repeat": b.repeat} for row in done]
        if on_block is not None:
            on_block(k + 1, len(blocks), b.label if load.repeats == 1 else f"{b.label} (repeat {b.repeat + 1})",
                     pd.DataFrame(done))
    return pd.DataFrame(rows)  # raw: the caller saves it before checking (a measurement is never lost)


def failure_causes(table: pd.DataFrame, limit: int = 3) -> list[str]:
    """The distinct reasons requests failed, most frequent first, each with its count and, for the usual
    mistakes, what to check: a 404 (the URL or the endpoint), a 401/403 (the API key or headers), a refused
    connection (the server is not up at that address)."""
    failed = table[~table["ok"].astype(bool)]
    counts = failed["error"].astype(str).value_counts()
    out = []
    for reason, n in counts.head(limit).items():
        hint = ""
        if reason.startswith("HTTP 404"):
            hint = " (check --url: the server's base URL, with or without /v1, and --endpoint)"
        elif reason.startswith(("HTTP 401", "HTTP 403")):
            hint = " (check --api-key and --header)"
        elif "ConnectError" in reason or "Connection refused" in reason:
            hint = " (is the server up at that address?)"
        elif reason.startswith(("HTTP 400", "HTTP 422")):
            hint = " (the server refused the request body: check --served-model and --endpoint)"
        out.append(f"{n} x {reason}{hint}")
    if len(counts) > limit:
        out.append(f"... and {len(counts) - limit} other reason(s) (requests.csv, column error)")
    return out
