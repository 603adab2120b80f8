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
import inspect
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
        # transformers 4.56 renamed `torch_dtype` to `dtype` (5.x warns on the old name)
        dtype_kw = "dtype" if _version_tuple(transformers.__version__) >= (4, 56) else "torch_dtype"
        with torch.device(device):
            self.model = transformers.AutoModelForCausalLM.from_config(self.config, **{dtype_kw: self.dtype})
        self.model.eval()
        forward = inspect.signature(self.model.forward).parameters
        # 4.x places new keys at `cache_position`; 5.x appends at the cache's own length and reads positions only
        self._cache_position = "cache_position" in forward
        # serving engines compute logits for each sequence's last token only; so should the prefill timing
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}

    def version(self) -> str:
        attn = getattr(self.model.config, "_attn_implementation", None) or "default"
        return f"torch {self.torch.__version__}, transformers {self.transformers.__version__}, attention {attn}"

    def _cache(self, batch: int, length: int) -> Any:
        from transformers import StaticCache

        if "max_batch_size" in inspect.signature(StaticCache.__init__).parameters:  # 4.x: sized up front
            return StaticCache(config=self.config, max_batch_size=batch, max_cache_len=length, device=self.device,
                               dtype=self.dtype)
        return StaticCache(config=self.config, max_cache_len=length)  # 5.x: sized at the first update

    def _forward(self, ids: Any, cache: Any, first_position: int, **extra: Any) -> None:
        positions = self.torch.arange(first_position, first_position + ids.shape[1], device=self.device)
        where = {"cache_position": positions} if self._cache_position else {"position_ids": positions.unsqueeze(0)}
        self.model(input_ids=ids, past_key_values=cache, use_cache=True, **where, **extra)

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def _timed(self, fn: Any, prepare: Any) -> float:
        prepare()  # untimed: emptying a static cache writes all of it
        self._sync()
        t0 = time.perf_counter()
        fn()
        self._sync()
        return time.perf_counter() - t0

    def time_point(self, point: DesignPoint, repetitions: int, warmup: int) -> list[float]:
        """Prefill: fresh prompts into an emptied static cache. Decode: one token per sequence against a static
        cache of context + 1 positions; the attention reads the whole static length, as a paged kernel reads a
        context of that length (the cache's contents are zeros: timing, not text, is measured)."""
        torch = self.torch
        vocab = int(self.config.vocab_size)
        if point.kind == "prefill":
            batch, new_tokens, cache_len, first = point.prefill_seqs, point.prefill_tokens, point.prefill_tokens, 0
            extra = self._last_logits
        elif point.kind == "decode":
            batch, new_tokens, cache_len, first = point.decode_seqs, 1, point.context_tokens + 1, point.context_tokens
            extra = {}
        else:
            raise ValueError(f"the torch backend cannot time {point.kind} steps")
        times: list[float] = []
        with torch.inference_mode():
            ids = torch.randint(5, vocab - 5, (batch, new_tokens), device=self.device)
            cache = self._cache(batch, cache_len)
            for rep in range(warmup + repetitions):
                # emptied before each repetition (untimed): 5.x appends at the cache's length
                dt = self._timed(lambda: self._forward(ids, cache, first, **extra), cache.reset)
                if rep >= warmup:
                    times.append(dt)
        cache = None  # free the static cache before returning its memory to the driver
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        return times


def _version_tuple(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as '4.57.1' or '5.0.0rc1'."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        parts.append(int(digits or 0))
    return tuple(parts)


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
