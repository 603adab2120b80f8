"""A replica's prefix (KV) cache: LRU over prompt prefixes, with a capacity in tokens.

A request names up to two prefixes of its prompt: a shared one (a class's or workload's system prompt)
and a private one (its agent task's context so far). When it is admitted, the longest cached prefix
is not prefilled again. After its prefill the prefixes it computed are cached, evicting the least
recently used ones to stay within capacity. The cache is modelled as its own memory (like vLLM's
evictable cached blocks): a hit saves prefill compute; the request still holds KV blocks for its
whole context while it runs.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self.used_tokens = 0
        self._entries: OrderedDict[int, int] = OrderedDict()  # prefix key -> cached length (tokens)
        self.lookups = 0
        self.hits = 0
        self.hit_tokens = 0

    def lookup(self, keys: tuple[tuple[int, int], ...]) -> int:
        """Cached tokens for a request with (key, prefix length) pairs: the longest usable prefix."""
        self.lookups += 1
        best = 0
        for key, length in keys:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                best = max(best, min(cached, length))
        if best:
            self.hits += 1
            self.hit_tokens += best
        return best

    def insert(self, key: int, length: int) -> None:
        if length <= 0 or length > self.capacity_tokens:
            return
        old = self._entries.pop(key, 0)
        self.used_tokens -= old
        length = max(length, old)
        while self.used_tokens + length > self.capacity_tokens and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.used_tokens -= evicted
        self._entries[key] = length
        self.used_tokens += length
