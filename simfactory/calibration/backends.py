"""Engines a microbenchmark can time, one design point at a time. Each returns wall seconds per repetition of
one engine iteration with exactly the point's batch.

- vllm: the real engine (offline `LLMEngine`, random weights via `load_format="dummy"`, no tokenizer), stepped
  by hand so each `step()` is one scheduler iteration; in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so the
  timing has no inter-process hop.
- torch-eager: `transformers` `AutoModelForCausalLM.from_config` with random bf16 weights and a static KV cache,
  for GPUs where vLLM is not available; it times prefill and decode forwards (eager, no batching of the two).

Both are imported lazily: the core package never needs torch or vllm.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import time
from pathlib import Path
from typing import Any, Protocol

from simfactory.calibration.design import DesignPoint


class Backend(Protocol):
    engine: str  # the `engine` a profile it measures is written for
    kinds: tuple[str, ...]  # step kinds it can time

    def version(self) -> str: ...

    def time_point(self, point: DesignPoint, repetitions: int, warmup: int) -> list[float]: ...


def _random_ids(n: int, vocab: int, salt: int) -> list[int]:
    """Deterministic token ids (no tokenizer needed); different salts keep prompts distinct (no prefix reuse)."""
    return [(salt * 7919 + k * 104729) % (vocab - 10) + 5 for k in range(n)]


class VllmBackend:
    engine = "vllm"
    kinds = ("prefill", "decode", "mixed")

    def __init__(self, config_dir: Path, dtype: str, tp: int, max_num_seqs: int = 256,
                 max_num_batched_tokens: int = 8192, max_model_len: int = 16384, vocab: int = 32000) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import vllm

        self._vllm = vllm
        self.vocab = vocab
        self.llm = vllm.LLM(
            model=str(config_dir), load_format="dummy", skip_tokenizer_init=True, tensor_parallel_size=tp,
            dtype="bfloat16", quantization="fp8" if dtype == "fp8" else None, max_model_len=max_model_len,
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, enable_prefix_caching=False,
            gpu_memory_utilization=0.9, seed=0,
        )
        self.engine_core = self.llm.llm_engine
        self.max_model_len = max_model_len
        self._ids = itertools.count()

    def version(self) -> str:
        return str(self._vllm.__version__)

    def _add(self, prompt_tokens: int) -> str:
        """A request that keeps decoding (no EOS) until it is aborted or reaches max_model_len."""
        rid = f"cal-{next(self._ids)}"
        max_tokens = max(self.max_model_len - prompt_tokens - 1, 1)
        params = self._vllm.SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, detokenize=False)
        self.engine_core.add_request(rid, {"prompt_token_ids": _random_ids(prompt_tokens, self.vocab, int(rid[4:]))}, params)
        return rid

    def _step_s(self) -> float:
        t0 = time.perf_counter()
        self.engine_core.step()
        return time.perf_counter() - t0

    def _drain(self, rids: list[str]) -> None:
        self.engine_core.abort_request(rids)
        while self.engine_core.has_unfinished_requests():
            self.engine_core.step()

    def _until_first_token(self, rids: list[str]) -> None:
        """Step until every request has produced a token (its prompt is in the KV cache, chunked if long)."""
        waiting = set(rids)
        while waiting:
            for out in self.engine_core.step():
                if out.outputs and out.outputs[0].token_ids:
                    waiting.discard(out.request_id)

    def time_point(self, point: DesignPoint, repetitions: int, warmup: int) -> list[float]:
        """The decode batch is prefilled once; then each repetition times one iteration (decode: the batch's
        next token; prefill/mixed: fresh prompts beside it, aborted afterwards). The context grows by one token
        per repetition, negligible next to the design's context lengths."""
        decoders = [self._add(point.context_tokens) for _ in range(point.decode_seqs)]
        self._until_first_token(decoders)
        times: list[float] = []
        for rep in range(warmup + repetitions):
            if point.kind == "decode":
                dt = self._step_s()
            else:
                prompts = [self._add(point.prefill_tokens) for _ in range(point.prefill_seqs)]
                dt = self._step_s()  # one iteration: the prompts' prefill (and one token for each decoder)
                self.engine_core.abort_request(prompts)
            if rep >= warmup:
                times.append(dt)
        self._drain(decoders)
        return times


class TorchBackend:
    engine = "torch-eager"
    kinds = ("prefill", "decode")

    def __init__(self, config_dir: Path, dtype: str, tp: int, device: str = "cuda") -> None:
        if tp != 1:
            raise ValueError("the torch backend runs on one GPU (tp 1); use --backend vllm for tensor parallelism")
        if dtype not in ("bf16", "fp16"):
            raise ValueError(f"the torch backend times bf16/fp16 weights, not {dtype}; use --backend vllm")
        import torch
        import transformers

        self.torch = torch
        self.transformers = transformers
        self.device = device
        self.config = transformers.AutoConfig.from_pretrained(str(config_dir))
        self.dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
        with torch.device(device):
            self.model = transformers.AutoModelForCausalLM.from_config(self.config, torch_dtype=self.dtype)
        self.model.eval()

    def version(self) -> str:
        return f"torch {self.torch.__version__}, transformers {self.transformers.__version__}"

    def _cache(self, batch: int, length: int) -> Any:
        from transformers import StaticCache

        try:
            return StaticCache(config=self.config, max_batch_size=batch, max_cache_len=length, device=self.device,
                               dtype=self.dtype)
        except TypeError:  # newer transformers size the batch lazily
            return StaticCache(config=self.config, max_cache_len=length)

    def _timed(self, fn: Any) -> float:
        self.torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        self.torch.cuda.synchronize()
        return time.perf_counter() - t0

    def time_point(self, point: DesignPoint, repetitions: int, warmup: int) -> list[float]:
        torch = self.torch
        vocab = int(self.config.vocab_size)
        times: list[float] = []
        with torch.inference_mode():
            if point.kind == "prefill":
                b, p = point.prefill_seqs, point.prefill_tokens
                ids = torch.randint(5, vocab - 5, (b, p), device=self.device)
                cache = self._cache(b, p)

                def run() -> None:
                    cache.reset()
                    self.model(input_ids=ids, past_key_values=cache, use_cache=True,
                               cache_position=torch.arange(p, device=self.device))
            elif point.kind == "decode":
                b, c = point.decode_seqs, point.context_tokens
                ids = torch.randint(5, vocab - 5, (b, 1), device=self.device)
                cache = self._cache(b, c + 1)  # a static cache attends over its whole length: c + 1 positions
                position = torch.tensor([c], device=self.device)

                def run() -> None:
                    self.model(input_ids=ids, past_key_values=cache, use_cache=True, cache_position=position)
            else:
                raise ValueError(f"the torch backend cannot time {point.kind} steps")
            for rep in range(warmup + repetitions):
                dt = self._timed(run)
                if rep >= warmup:
                    times.append(dt)
        torch.cuda.empty_cache()
        return times


def make_backend(name: str, config_dir: Path, dtype: str, tp: int, **engine_args: Any) -> Backend:
    if name == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RuntimeError("the vllm backend needs vLLM: pip install 'simfactory[calibrate]'")
        return VllmBackend(config_dir, dtype, tp, **engine_args)
    if name == "torch":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            raise RuntimeError("the torch backend needs torch and transformers: pip install torch transformers")
        return TorchBackend(config_dir, dtype, tp)
    raise ValueError(f"unknown backend {name!r} (vllm, torch)")
