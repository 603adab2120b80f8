"""The vLLM backend's driving logic against a fake `vllm` with vLLM's V1 scheduling rules (read from vLLM 0.10-0.33
source): a running request decodes one token per step, a waiting one is admitted only while fewer than
max_num_seqs run and its prompt fits the token budget and the free KV blocks, an aborted one frees its blocks at
once. No GPU: this checks that each timed step is exactly the point's batch, not vLLM's speed."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from simfactory.calibration.backends import StepShapeNotTimed, VllmBackend, fitting_points
from simfactory.calibration.design import DesignPoint
from simfactory.calibration.microbench import measure

TINY = Path(__file__).parent / "fixtures" / "calibration" / "tiny-llama"  # vocab_size 1000


class FakeEngine:
    def __init__(self, kwargs: dict, kv_blocks: int, block: int = 16, honour_async_off: bool = True) -> None:
        self.max_seqs, self.budget = kwargs["max_num_seqs"], kwargs["max_num_batched_tokens"]
        self.vocab = 1000
        asynchronous = not (honour_async_off and kwargs.get("async_scheduling") is False)
        self.vllm_config = types.SimpleNamespace(
            scheduler_config=types.SimpleNamespace(async_scheduling=asynchronous),
            cache_config=types.SimpleNamespace(num_gpu_blocks=kv_blocks, block_size=block))
        self.engine_core = type("InprocClient", (), {})()
        self.block, self.free_blocks = block, kv_blocks
        self.requests: dict[str, dict] = {}  # rid -> {"prompt", "done", "tokens", "blocks", "running"}
        self.order: list[str] = []
        self.steps = 0

    def add_request(self, rid, prompt, params):
        ids = prompt["prompt_token_ids"]
        assert all(0 <= t < self.vocab for t in ids), "token id outside the model's vocabulary"
        assert params.kwargs["output_kind"] == "DELTA" and params.kwargs["ignore_eos"]
        self.requests[rid] = {"prompt": len(ids), "done": 0, "tokens": 0, "blocks": 0, "running": False}
        self.order.append(rid)

    def _grow(self, r, tokens: int) -> bool:
        need = -(-tokens // self.block) - r["blocks"]
        if need > self.free_blocks:
            return False
        self.free_blocks -= max(need, 0)
        r["blocks"] += max(need, 0)
        return True

    def step(self):
        self.steps += 1
        budget, produced = self.budget, []
        running = [rid for rid in self.order if self.requests[rid]["running"]]
        for rid in running:  # decodes (and unfinished chunked prefills) first
            r = self.requests[rid]
            todo = min(max(r["prompt"] - r["done"], 1), budget)
            if todo == 0 or not self._grow(r, r["done"] + todo + 1):
                continue  # (vLLM would preempt; the check in the backend must notice the missing token)
            budget -= todo
            r["done"] += todo
            if r["done"] >= r["prompt"]:
                r["tokens"] += 1
                produced.append(rid)
        for rid in [x for x in self.order if not self.requests[x]["running"]]:
            if sum(self.requests[x]["running"] for x in self.order) >= self.max_seqs or budget <= 0:
                break
            r = self.requests[rid]
            todo = min(r["prompt"], budget)
            if not self._grow(r, todo + 1):
                break
            r["running"], r["done"] = True, todo
            budget -= todo
            if todo == r["prompt"]:
                r["tokens"] += 1
                produced.append(rid)
        return [types.SimpleNamespace(request_id=rid, outputs=[types.SimpleNamespace(token_ids=[7])])
                for rid in produced]

    def abort_request(self, rids):
        for rid in rids:
            r = self.requests.pop(rid, None)
            if r is not None:
                self.free_blocks += r["blocks"]
                self.order.remove(rid)

    def has_unfinished_requests(self):
        return bool(self.requests)


def fake_vllm(monkeypatch, kv_blocks: int = 10_000, honour_async_off: bool = True) -> dict:
    made: dict = {}
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.0-fake"

    def llm(**kwargs):
        made["kwargs"] = kwargs
        made["engine"] = FakeEngine(kwargs, kv_blocks, honour_async_off=honour_async_off)
        return types.SimpleNamespace(llm_engine=made["engine"])

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    mod.LLM, mod.SamplingParams = llm, SamplingParams
    sp = types.ModuleType("vllm.sampling_params")
    sp.RequestOutputKind = types.SimpleNamespace(DELTA="DELTA")
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # a user's default: the backend must override it
    return made


def test_engine_is_built_synchronous_in_process_with_the_models_vocabulary(monkeypatch):
    import os

    made = fake_vllm(monkeypatch)
    backend = VllmBackend(TINY, "bf16", 1, max_num_seqs=8)
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    kw = made["kwargs"]
    assert kw["async_scheduling"] is False and kw["load_format"] == "dummy" and kw["skip_tokenizer_init"]
    assert kw["max_num_seqs"] == 8 and backend.vocab == 1000 and backend.kv_capacity_tokens == 160_000


def test_an_engine_that_keeps_async_scheduling_is_refused(monkeypatch):
    fake_vllm(monkeypatch, honour_async_off=False)
    with pytest.raises(RuntimeError, match="async scheduling"):
        VllmBackend(TINY, "bf16", 1)


def test_each_timed_step_is_the_points_batch_and_nothing_is_left_running(monkeypatch):
    made = fake_vllm(monkeypatch)
    backend = VllmBackend(TINY, "bf16", 1, max_num_seqs=16, max_num_batched_tokens=512)
    engine = made["engine"]
    for point in (DesignPoint("decode", decode_seqs=4, context_tokens=600),  # context prefilled in chunks first
                  DesignPoint("prefill", prefill_seqs=3, prefill_tokens=100),
                  DesignPoint("mixed", prefill_seqs=1, prefill_tokens=200, decode_seqs=8, context_tokens=64)):
        before = engine.steps
        times = backend.time_point(point, repetitions=4, warmup=1)
        assert len(times) == 4 and all(t >= 0 for t in times)
        assert not engine.has_unfinished_requests() and engine.free_blocks == 10_000
        assert engine.steps - before >= 5  # at least one step per repetition


def test_a_batch_over_max_num_seqs_is_not_timed_as_mixed(monkeypatch):
    """vLLM admits a prompt only while fewer than max_num_seqs run: 4 decoders + 1 prompt on a 4-sequence engine
    would time a decode-only step and call it mixed. fits() says no; timing it anyway raises, and measure()
    skips it and goes on."""
    fake_vllm(monkeypatch)
    backend = VllmBackend(TINY, "bf16", 1, max_num_seqs=4, max_num_batched_tokens=512)
    too_many = DesignPoint("mixed", prefill_seqs=1, prefill_tokens=64, decode_seqs=4, context_tokens=32)
    fine = DesignPoint("decode", decode_seqs=4, context_tokens=32)
    assert fitting_points(backend, [too_many, fine]) == ([fine], [too_many])
    with pytest.raises(StepShapeNotTimed, match="1 of the step's 5 sequences"):
        backend.time_point(too_many, repetitions=3, warmup=0)
    skipped = []
    steps = measure(backend, [too_many, fine], repetitions=3, warmup=0, on_skip=lambda p, why: skipped.append(p))
    assert skipped == [too_many] and list(steps["kind"]) == ["decode"]


def test_points_beyond_the_kv_cache_are_not_offered(monkeypatch):
    fake_vllm(monkeypatch, kv_blocks=100)  # 1,600 tokens
    backend = VllmBackend(TINY, "bf16", 1)
    assert backend.fits(DesignPoint("decode", decode_seqs=4, context_tokens=256))  # 4 x 20 blocks
    assert not backend.fits(DesignPoint("decode", decode_seqs=8, context_tokens=256))  # 8 x 20 blocks
