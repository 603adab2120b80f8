"""SGLang's `bench_serving --dataset-name random` runs, reproduced request by request.

A published bench_serving run is fully determined by its arguments: it seeds Python's and numpy's generators with
`--seed` (default 1), draws every prompt's length with `np.random.randint(max(int(input_len * range_ratio), 1),
input_len + 1, size=num_prompts)` and every answer's with `np.random.randint(int(output_len * range_ratio),
output_len + 1, size=num_prompts)` (`--random-range-ratio` defaults to 0.0: lengths uniform from 1), then fills
prompt i with the tokens of ShareGPT conversation i (after a seeded shuffle), repeated or cut to its length
(sglang/bench_serving.py, sample_random_requests). So the lengths, their order, and which prompts share a prefix
follow from the arguments alone: prompt i of every run with the same seed starts with the same tokens, so two runs'
prompt i share their first min(length, length') tokens. A published run's printed totals ("Total input tokens",
"Total generated tokens") check the reproduction.

What the server's radix cache holds when a run starts follows too: bench_serving sends one warm-up request first,
the run's prompt 0 (with at most 32 output tokens), and flushes the cache only when asked (`--flush-cache`) or in
SGLang's CI; so the run begins with its prompt 0 cached, plus whatever earlier runs on the same server left there.
Prompts are named here as chains of hash blocks (the form a replayed trace's `hash_ids` take), keyed by seed,
prompt index and block, so the replica prefix cache finds exactly the shared prefixes.

Source: https://github.com/sgl-project/sglang/blob/main/python/sglang/bench_serving.py (sample_random_requests,
benchmark: warm-up and flush), read 2026-12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simfactory.sim.prefix_cache import Prefixes, hash_blocks
from simfactory.traces.replay import ReplayRows

BLOCK_TOKENS = 64  # hash-block size: a cached partial block matches token-exactly, so this only sets LRU granularity
# hash id = seed | prompt index | block index, under the 2^60 where the prefix cache's other key spaces begin
_SEED_BITS, _PROMPT_BITS, _BLOCK_BITS = 25, 20, 15
MAX_SEED, MAX_PROMPTS, MAX_PROMPT_TOKENS = (1 << _SEED_BITS) - 1, 1 << _PROMPT_BITS, BLOCK_TOKENS << _BLOCK_BITS


@dataclass(frozen=True)
class RandomRun:
    """The arguments of one `bench_serving --dataset-name random` run that fix its requests."""

    input_len: int  # --random-input-len
    output_len: int  # --random-output-len
    num_prompts: int  # --num-prompts
    range_ratio: float = 0.0  # --random-range-ratio
    seed: int = 1  # --seed

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(prompt lengths, drawn answer lengths) in send order, as bench_serving draws them."""
        rng = np.random.RandomState(self.seed)  # numpy's legacy global generator, which np.random.seed() seeds
        inp = rng.randint(max(int(self.input_len * self.range_ratio), 1), self.input_len + 1, size=self.num_prompts)
        out = rng.randint(int(self.output_len * self.range_ratio), self.output_len + 1, size=self.num_prompts)
        return inp.astype(np.int64), out.astype(np.int64)

    def sent_lengths(self, extra_output_tokens: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(prompt lengths, answer lengths) of the requests as served: each answer its drawn length plus
        `extra_output_tokens` (some SGLang releases generate one token more than asked), at least one."""
        inp, out = self.lengths()
        return inp, np.maximum(out + extra_output_tokens, 1)

    def hash_ids(self, index: int, tokens: int) -> tuple[int, ...]:
        """Block hashes of prompt `index` (`tokens` long): the same for every run with this seed."""
        if not (0 <= self.seed <= MAX_SEED and 0 <= index < MAX_PROMPTS and 0 < tokens <= MAX_PROMPT_TOKENS):
            raise ValueError(f"prompt {index} of {tokens} tokens, seed {self.seed}: past what the hash ids can name")
        base = (self.seed << (_PROMPT_BITS + _BLOCK_BITS)) | (index << _BLOCK_BITS)
        return tuple(base | j for j in range(math.ceil(tokens / BLOCK_TOKENS)))

    def prompt_blocks(self, index: int, tokens: int) -> Prefixes:
        """Prompt `index` as (cache key, tokens) hash blocks, ready for a prefix cache."""
        return hash_blocks(BLOCK_TOKENS, self.hash_ids(index, tokens), tokens)

    def replay_rows(self, extra_output_tokens: int = 0) -> ReplayRows:
        """The run's requests in send order (sent_lengths), for a class to replay (untimed: the clients send them)."""
        inp, out = self.sent_lengths(extra_output_tokens)
        hashes = [self.hash_ids(i, int(n)) for i, n in enumerate(inp)]
        return ReplayRows(None, inp, out, 1.0, hashes, BLOCK_TOKENS)

    def cached_prompts(self) -> list[Prefixes]:
        """What this run leaves in a radix cache large enough to hold it: its warm-up prompt, then every prompt, in
        send order (the least recently used first)."""
        inp, _ = self.lengths()
        return [self.prompt_blocks(0, int(inp[0]))] + [self.prompt_blocks(i, int(n)) for i, n in enumerate(inp)]


def warm_prompts(run: RandomRun, earlier: list[RandomRun]) -> list[Prefixes]:
    """The prompts a server's radix cache holds as `run` starts measuring, the least recently used first: what the
    `earlier` runs on the same server left (in the order they ran), then the run's own warm-up prompt."""
    inp, _ = run.lengths()
    return [b for e in earlier for b in e.cached_prompts()] + [run.prompt_blocks(0, int(inp[0]))]
