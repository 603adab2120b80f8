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
    """Device tier (LRU) and an optional host tier that takes what the device tier evicts."""

    def __init__(self, capacity_tokens: int, host_capacity_tokens: int = 0) -> None:
        self.device = _Lru(capacity_tokens)
        self.host = _Lru(host_capacity_tokens) if host_capacity_tokens > 0 else None
        self.lookups = 0
        self.hits = 0
        self.hit_tokens = 0

    def lookup(self, keys: tuple[tuple[int, int], ...]) -> tuple[int, int]:
        """(cached tokens, of which loaded from the host tier) for a request with (key, prefix length) pairs."""
        self.lookups += 1
        best, from_host = 0, 0
        for key, length in keys:
            cached = self.device.entries.get(key)
            if cached is not None:
                self.device.entries.move_to_end(key)
                if min(cached, length) > best:
                    best, from_host = min(cached, length), 0
            elif self.host is not None and key in self.host.entries:
                cached = self.host.entries[key]
                self.host.entries.move_to_end(key)
                if min(cached, length) > best:
                    best = from_host = min(cached, length)
        if best:
            self.hits += 1
            self.hit_tokens += best
        return best, from_host

    def insert(self, key: int, length: int) -> None:
        for k, n in self.device.insert(key, length):
            if self.host is not None:
                self.host.insert(k, n)
