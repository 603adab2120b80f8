"""Engines a microbenchmark can time, one design point at a time. Each returns wall seconds per repetition of
one engine iteration with exactly the point's batch.

- vllm: the real engine (offline `LLMEngine`, random weights via `load_format="dummy"`, no tokenizer), stepped
  by hand so each `step()` is one scheduler iteration: in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0) and
  synchronous (async_scheduling=False), each timed step checked to have given every sequence of the point a
  token; points whose batch exceeds the engine's sequences, token budget or KV blocks are not timed.
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
from simfactory.inputs import MAX_SUMMARY_BYTES, parse_json, read_input_text


class StepShapeNotTimed(RuntimeError):
    """The engine could not run a point's batch as one iteration; the point is skipped, the run goes on."""


class Backend(Protocol):
    engine: str  # the `engine` a profile it measures is written for
    kinds: tuple[str, ...]  # step kinds it can time

    def version(self) -> str: ...

    def time_point(self, point: DesignPoint, repetitions: int, warmup: int) -> list[float]: ...


def fitting_points(backend: Any, points: list[DesignPoint]) -> tuple[list[DesignPoint], list[DesignPoint]]:
    """(points the backend can time in one iteration, points it cannot); a backend without `fits` takes all."""
    fits = getattr(backend, "fits", None)
    usable = [p for p in points if p.kind in backend.kinds]
    if fits is None:
        return usable, []
    return [p for p in usable if fits(p)], [p for p in usable if not fits(p)]


def _random_ids(n: int, vocab: int, salt: int) -> list[int]:
    """Deterministic token ids (no tokenizer needed); different salts keep prompts distinct (no prefix reuse)."""
    return [(salt * 7919 + k * 104729) % (vocab - 10) + 5 for k in range(n)]


class VllmBackend:
    engine = "vllm"
    kinds = ("prefill", "decode", "mixed")

    def __init__(self, config_dir: Path, dtype: str, tp: int, max_num_seqs: int = 512,
                 max_num_batched_tokens: int = 8192, max_model_len: int = 16384) -> None:
        # in-process engine core: with the default (1) a separate process steps on its own and step() only
        # collects results, which would time nothing; forced, not defaulted, for the same reason
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        import vllm

        self._vllm = vllm
        config = parse_json(read_input_text(config_dir / "config.json", "--config-dir", MAX_SUMMARY_BYTES, "model config"),
                            str(config_dir / "config.json"), "--config-dir")
        vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
        if not vocab:
            raise RuntimeError(f"{config_dir / 'config.json'}: no vocab_size (nor text_config.vocab_size)")
        self.vocab = int(vocab)
        self.llm = vllm.LLM(
            model=str(config_dir), load_format="dummy", skip_tokenizer_init=True, tensor_parallel_size=tp,
            dtype="bfloat16", quantization="fp8" if dtype == "fp8" else None, max_model_len=max_model_len,
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, enable_prefix_caching=False,
            gpu_memory_utilization=0.9, seed=0,
            # synchronous steps: async scheduling (vLLM's default from about 0.12) keeps two batches in flight,
            # so step() would return while its batch runs and time the previous one
            async_scheduling=False,
        )
        self.engine_core = self.llm.llm_engine
        self._check_synchronous()
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        cache = getattr(getattr(self.engine_core, "vllm_config", None), "cache_config", None)
        blocks, block = getattr(cache, "num_gpu_blocks", None), getattr(cache, "block_size", None)
        self.block_tokens = int(block) if block else 16
        self.kv_capacity_tokens = int(blocks) * self.block_tokens if blocks else None
        self._ids = itertools.count()
        try:  # only each step's new token in its output (less output processing inside the timed step)
            from vllm.sampling_params import RequestOutputKind

            self._delta: dict[str, Any] = {"output_kind": RequestOutputKind.DELTA}
        except ImportError:
            self._delta = {}

    def _check_synchronous(self) -> None:
        """Refuse an engine whose step() would not be one whole iteration, before timing anything."""
        client = getattr(self.engine_core, "engine_core", None)
        if client is not None and "Inproc" not in type(client).__name__:
            raise RuntimeError(f"vLLM's engine core runs as {type(client).__name__}, not in-process: step() would "
                               "not time one iteration (VLLM_ENABLE_V1_MULTIPROCESSING must be 0)")
        sched = getattr(getattr(self.engine_core, "vllm_config", None), "scheduler_config", None)
        if getattr(sched, "async_scheduling", False):
            raise RuntimeError("vLLM kept async scheduling on: step() would time the previous batch")

    def version(self) -> str:
        return str(self._vllm.__version__)

    def fits(self, point: DesignPoint, extra_tokens: int = 64) -> bool:
        """Whether the point's batch fits one iteration of this engine: its sequences, its prompt tokens, and its
        KV blocks (the context plus `extra_tokens` for the repetitions), so nothing is preempted while timed."""
        if point.decode_seqs + point.prefill_seqs > self.max_num_seqs:
            return False
        if point.prefill_seqs * point.prefill_tokens + point.decode_seqs > self.max_num_batched_tokens:
            return False
        if self.kv_capacity_tokens is None:
            return True
        per_block = self.block_tokens

        def blocks(tokens: int) -> int:
            return -(-tokens // per_block)

        need = (point.decode_seqs * blocks(point.context_tokens + extra_tokens)
                + point.prefill_seqs * blocks(point.prefill_tokens + 1))
        return need * per_block <= self.kv_capacity_tokens

    def _add(self, prompt_tokens: int) -> str:
        """A request that keeps decoding (no EOS) until it is aborted or reaches max_model_len."""
        rid = f"cal-{next(self._ids)}"
        max_tokens = max(self.max_model_len - prompt_tokens - 1, 1)
        params = self._vllm.SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, detokenize=False,
                                           **self._delta)
        self.engine_core.add_request(rid, {"prompt_token_ids": _random_ids(prompt_tokens, self.vocab, int(rid[4:]))}, params)
        return rid

    def _timed_step(self, expected: list[str]) -> float:
        """One iteration, timed; every expected request must have got a token in it (else the batch did not
        fit one iteration: chunked, capped or preempted, and the time would belong to another shape)."""
        t0 = time.perf_counter()
        outputs = self.engine_core.step()
        dt = time.perf_counter() - t0
        got = {out.request_id for out in outputs if out.outputs and out.outputs[0].token_ids}
        missing = [rid for rid in expected if rid not in got]
        if missing:
            raise StepShapeNotTimed(f"vLLM did not give {len(missing)} of the step's {len(expected)} sequences a token in "
                               "one iteration (the batch exceeds max_num_seqs, the token budget or the KV cache)")
        return dt

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
        try:
            self._until_first_token(decoders)
            times: list[float] = []
            for rep in range(warmup + repetitions):
                prompts = [self._add(point.prefill_tokens) for _ in range(point.prefill_seqs)]
                try:
                    dt = self._timed_step(decoders + prompts)  # decode: the batch's next token; else + the prompts
                finally:
                    if prompts:
                        self.engine_core.abort_request(prompts)
                if rep >= warmup:
                    times.append(dt)
        finally:
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
        from packaging.version import Version  # a dependency of transformers

        dtype_kw = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
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


def make_backend(name: str, config_dir: Path, dtype: str, tp: int, **engine_args: Any) -> Backend:
    if name == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RuntimeError("the vllm backend needs vLLM: pip install 'simfactory[calibrate]'")
        return VllmBackend(config_dir, dtype, tp, **engine_args)
    if name == "torch":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            raise RuntimeError("the torch backend needs torch and transformers: pip install 'simfactory[calibrate-torch]'")
        return TorchBackend(config_dir, dtype, tp, device=engine_args.get("device", "cuda"))
    raise ValueError(f"unknown backend {name!r} (vllm, torch)")
