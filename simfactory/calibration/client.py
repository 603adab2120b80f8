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
import json
import time
from dataclasses import dataclass
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
    url: str  # base URL, e.g. http://localhost:8000
    model: str  # the served model name
    chat: bool = False  # /v1/chat/completions instead of /v1/completions
    api_key: str | None = None
    timeout_s: float = 600.0
    ignore_eos: bool = True


def poisson_schedule(rate_rps: float, n: int, input_tokens: int, output_tokens: int, seed: int) -> list[PlannedRequest]:
    """n requests with exponential gaps at rate_rps (seeded), fixed lengths."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, n)
    sends = np.cumsum(gaps) - gaps[0]
    return [PlannedRequest(float(s), input_tokens, output_tokens) for s in sends]


def synthetic_prompt(tokens: int, salt: int) -> str:
    """About `tokens` tokens of text; the salt keeps prompts distinct (no accidental prefix-cache hits)."""
    words = max(int(tokens * WORDS_PER_TOKEN), 1)
    vocab = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
    return f"{salt} " + " ".join(vocab[(salt + k * 7) % len(vocab)] for k in range(words - 1))


def _body(ep: Endpoint, req: PlannedRequest, salt: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": ep.model, "max_tokens": req.output_tokens, "stream": True,
                            "stream_options": {"include_usage": True}, "temperature": 0.0}
    if ep.ignore_eos:
        body["ignore_eos"] = True
    prompt = synthetic_prompt(req.input_tokens, salt)
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


async def send_one(client: httpx.AsyncClient, ep: Endpoint, req: PlannedRequest, salt: int, t0: float,
                   rid: str, rate: float) -> dict[str, Any]:
    """One streamed request; returns its request-table row (ok or not)."""
    path = "/v1/chat/completions" if ep.chat else "/v1/completions"
    headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else {}
    start = time.perf_counter()
    first = last = None
    chunks = 0
    usage: dict[str, Any] = {}
    error = ""
    try:
        async with client.stream("POST", ep.url.rstrip("/") + path, json=_body(ep, req, salt), headers=headers,
                                 timeout=ep.timeout_s) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")[:200]
                error = f"HTTP {resp.status_code}: {text}"
            else:
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = parse_json(data, ep.url, "stream")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    if _text_of(chunk):
                        now = time.perf_counter()
                        first = now if first is None else first
                        last = now
                        chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError, asyncio.TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    ok = not error and first is not None
    if not error and first is None:
        error = "no tokens in the stream"
    out = int(usage.get("completion_tokens") or chunks)
    inp = int(usage.get("prompt_tokens") or req.input_tokens)
    ttft = (first - start) if ok else float("nan")
    e2e = (last - start) if ok else float("nan")
    return request_row(rid, start - t0, inp, out if ok else 0, ttft, e2e, ok, error, rate)


async def run_schedule(ep: Endpoint, plan: list[PlannedRequest], rate: float, concurrency: int | None,
                       first_salt: int = 0, block: int = 0) -> list[dict[str, Any]]:
    """Send each planned request at its time (open loop), at most `concurrency` in flight; wait for all. Request
    ids are block-rate-index, unique across the blocks of one measurement."""
    limits = httpx.Limits(max_connections=concurrency or 1000, max_keepalive_connections=concurrency or 1000)
    gate = asyncio.Semaphore(concurrency) if concurrency else None
    async with httpx.AsyncClient(limits=limits, timeout=ep.timeout_s) as client:
        t0 = time.perf_counter()

        async def fire(i: int, req: PlannedRequest) -> dict[str, Any]:
            delay = req.send_s - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            if gate is None:
                return await send_one(client, ep, req, first_salt + i, t0, f"{block}-{rate:g}-{i}", rate)
            async with gate:
                return await send_one(client, ep, req, first_salt + i, t0, f"{block}-{rate:g}-{i}", rate)

        return list(await asyncio.gather(*(fire(i, r) for i, r in enumerate(plan))))


def measure_endpoint(ep: Endpoint, rates: list[float], requests_per_rate: int, input_tokens: int,
                     output_tokens: int, seed: int = 0, concurrency: int | None = None,
                     schedule: list[PlannedRequest] | None = None) -> pd.DataFrame:
    """Poisson load at each rate in turn (or one replayed schedule); send_s is relative to each block's start."""
    blocks: list[tuple[float, list[PlannedRequest]]]
    if schedule is not None:
        blocks = [(float("nan"), schedule)]
    else:
        blocks = [(r, poisson_schedule(r, requests_per_rate, input_tokens, output_tokens, seed + k))
                  for k, r in enumerate(rates)]
    rows: list[dict[str, Any]] = []
    for k, (rate, plan) in enumerate(blocks):
        rows += asyncio.run(run_schedule(ep, plan, rate, concurrency, first_salt=k * 1_000_000, block=k))
    return pd.DataFrame(rows)  # raw: the caller saves it before checking (a measurement is never lost)
