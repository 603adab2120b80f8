"""A replica's prefix (KV) cache: LRU over prompt prefixes, with a capacity in tokens.

A request names up to two prefixes of its prompt: a shared one (a class's or workload's system prompt)
and a private one (its agent task's context so far). When it is admitted, the longest cached prefix
is not prefilled again. After its prefill the prefixes it computed are cached, evicting the least
recently used ones to stay within capacity. The cache is modelled as its own memory (like vLLM's
evictable cached blocks): a hit saves prefill compute; the request still holds KV blocks for its
whole context while it runs.

A replayed trace can instead name its prompt as a chain of block hashes (Mooncake/FAST'25 `hash_ids`,
one per 512-token block): the hit is the longest run of leading blocks found in the cache, and after
prefill every block is cached, the last block of the prompt first so that LRU evicts prompt tails before
the heads other prompts share (as vLLM frees a request's blocks tail first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from simfactory.sim.requests import RequestTable

Prefixes = tuple[tuple[int, int], ...]  # (cache key, tokens) pairs, or a chain of hash blocks
BLOCK_KEY_OFFSET = 1 << 60  # hash-block keys, apart from class (small), workload (2^61) and task (2^62) keys


def hash_blocks(block_tokens: int, hash_ids: Sequence[int], input_tokens: int) -> tuple[tuple[int, int], ...]:
    """(cache key, tokens) per block of a prompt of input_tokens named by hash_ids (blocks past the prompt
    are dropped, e.g. after length clipping; the last block may be partial)."""
    return tuple(
        (BLOCK_KEY_OFFSET + int(h), min(block_tokens, input_tokens - i * block_tokens))
        for i, h in enumerate(hash_ids)
        if i * block_tokens < input_tokens
    )


def request_blocks(table: RequestTable, rid: int) -> Prefixes:
    """A replayed trace request's prompt as (cache key, tokens) hash blocks; empty for the others."""
    named = table.block_hashes.get(rid)
    if named is None:
        return ()
    return hash_blocks(named[0], named[1], int(table.input_tokens[rid]))


def request_prefixes(table: RequestTable, rid: int) -> tuple[Prefixes, Prefixes]:
    """What a cache is asked about a request: (key, tokens) of its shared prefix (system prompt) and of its task's
    context so far, and its trace hash blocks. The engine looks them up at admission; kv_aware peeks at them."""
    keys = tuple(
        (int(k), int(n))
        for k, n in ((table.prefix_key[rid], table.prefix_tokens[rid]), (table.context_key[rid], table.context_tokens[rid]))
        if k >= 0 and n > 0
    )
    return keys, request_blocks(table, rid)


class _Lru:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self.used_tokens = 0
        self.entries: OrderedDict[int, int] = OrderedDict()  # prefix key -> cached length (tokens)

    def insert(self, key: int, length: int) -> list[tuple[int, int]]:
        """Insert; returns what was evicted to make room."""
        if length <= 0 or length > self.capacity_tokens:
            return []
        old = self.entries.pop(key, 0)
        self.used_tokens -= old
        length = max(length, old)
        evicted = []
        while self.used_tokens + length > self.capacity_tokens and self.entries:
            k, n = self.entries.popitem(last=False)
            self.used_tokens -= n
            evicted.append((k, n))
        self.entries[key] = length
        self.used_tokens += length
        return evicted


class PrefixCache:
    """Tiers of LRU caches: device memory first, then optional host-memory and SSD tiers, each taking what
    the tier above evicts. A hit in a lower tier must be loaded back (the engine charges the transfer)."""

    def __init__(self, capacity_tokens: int, host_capacity_tokens: int = 0, ssd_capacity_tokens: int = 0) -> None:
        self.tiers = [_Lru(capacity_tokens)] + [_Lru(c) for c in (host_capacity_tokens, ssd_capacity_tokens) if c > 0]
        self.tier_names = ["device"] + [n for n, c in (("host", host_capacity_tokens), ("ssd", ssd_capacity_tokens)) if c > 0]
        self.lookups = 0
        self.hits = 0
        self.hit_tokens = 0

    def lookup(
        self, keys: tuple[tuple[int, int], ...], blocks: tuple[tuple[int, int], ...] = ()
    ) -> tuple[int, str]:
        """(cached tokens, tier they come from) for a request with (key, prefix length) pairs and/or a chain
        of hash blocks: the longest usable prefix, preferring the fastest tier on ties. What it finds becomes
        the most recently used, and the hit counters count it."""
        self.lookups += 1
        best, tier = self._match(keys, blocks, True)
        if best:
            self.hits += 1
            self.hit_tokens += best
        return best, tier

    def peek(
        self, keys: tuple[tuple[int, int], ...], blocks: tuple[tuple[int, int], ...] = ()
    ) -> tuple[int, str]:
        """What lookup would return, leaving LRU order and hit counters alone: a router asking every replica
        "how much of this prompt do you hold?" must not make the asked prefixes recent everywhere."""
        return self._match(keys, blocks, False)

    def _match(
        self, keys: tuple[tuple[int, int], ...], blocks: tuple[tuple[int, int], ...], touch: bool
    ) -> tuple[int, str]:
        best, tier = self._chain(blocks, touch)
        for key, length in keys:
            for lru, name in zip(self.tiers, self.tier_names):
                cached = lru.entries.get(key)
                if cached is not None:
                    if touch:
                        lru.entries.move_to_end(key)
                    if min(cached, length) > best:
                        best, tier = min(cached, length), name
                    break
        return best, tier

    def _chain(self, blocks: tuple[tuple[int, int], ...], touch: bool = True) -> tuple[int, str]:
        """Tokens of the longest run of leading blocks held in some tier, and the slowest tier it touches
        (the whole run is charged at that tier's load rate). With `touch`, the run's blocks become most
        recent, head last."""
        tokens, slowest = 0, 0
        touched: list[tuple[_Lru, int]] = []
        for key, n in blocks:
            found = next(((i, lru) for i, lru in enumerate(self.tiers) if key in lru.entries), None)
            if found is None:
                break
            i, lru = found
            cached = min(lru.entries[key], n)
            tokens += cached
            slowest = max(slowest, i)
            touched.append((lru, key))
            if cached < n:
                break  # a partial block ends the run
        if touch:
            for lru, key in reversed(touched):
                lru.entries.move_to_end(key)
        return tokens, self.tier_names[slowest]

    def drop(self, key: int) -> None:
        """Forget a prefix in every tier (an agent task rewrote its context: what is cached is not its prefix)."""
        for lru in self.tiers:
            lru.used_tokens -= lru.entries.pop(key, 0)

    def insert_blocks(self, blocks: tuple[tuple[int, int], ...]) -> None:
        """Cache a prompt's hash blocks, tail first, so its head is the most recently used."""
        for key, n in reversed(blocks):
            self.insert(key, n)

    def insert(self, key: int, length: int) -> None:
        spill = [(key, length)]
        for lru in self.tiers:
            evicted: list[tuple[int, int]] = []
            for k, n in spill:
                evicted += lru.insert(k, n)
            spill = evicted
            if not spill:
                break
