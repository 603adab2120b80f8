"""A preempted request's KV blocks kept as evictable cache until other allocations reuse them.

vLLM V1 caches every full KV block by its content hash (automatic prefix caching, on by default). Preemption by
recompute frees the request's blocks without forgetting them: they go to the tail of the free queue, its own tail
blocks first ("We free the blocks in reverse order so that the tail blocks are evicted first",
KVCacheManager.free), and a block loses its cached content only when an allocation takes it from the head of that
queue (BlockPool.get_new_blocks). When the request is admitted again, the leading blocks still cached are a prefix
hit: it recomputes only what was overwritten. Without this, a long prompt preempted near the end of its prefill
would start from zero every time, which the engine does not do.

The free queue is first in, first out: allocations take from its head, frees join its tail. So the free blocks in
front of a kept request's blocks only shrink, the blocks freed after them stay behind them, and while any of its
blocks survive, `free blocks - blocks behind` is exactly the free blocks ahead of them plus the survivors. The
survivors are therefore min(blocks kept, free blocks - blocks freed since) at any moment, from two counters, with no
per-block bookkeeping; blocks taken out of the queue behind them (another kept request admitted again) are
subtracted from `behind`, and blocks taken straight back as they are freed (an agent task's pin) are not counted
as freed.
"""

from __future__ import annotations


class KeptBlocks:
    """One preempted request's cached blocks in the free queue."""

    __slots__ = ("blocks", "freed_at", "order", "taken_behind")

    def __init__(self, blocks: int, freed_at: int, order: int) -> None:
        self.blocks = blocks  # full blocks it had computed (its leading ones; a partial block is not cached)
        self.freed_at = freed_at  # the replica's freed-blocks count once its own blocks were freed
        self.order = order  # preemption order: earlier ones sit ahead of it in the free queue
        self.taken_behind = 0  # blocks freed after it, since taken out of the queue without an allocation


class PreemptedKV:
    """A replica's kept blocks of preempted requests, by request."""

    def __init__(self, prompt_only: bool = False) -> None:
        self.prompt_only = prompt_only  # keep a request's prompt only (SGLang), not the answer it had decoded too
        self.kept: dict[int, KeptBlocks] = {}
        self._order = 0

    def surviving(self, rid: int, free_blocks: int, freed_blocks: int) -> int:
        """Blocks of the request still cached: free_blocks and freed_blocks are the replica's free-block count and
        its count of blocks ever freed, now."""
        k = self.kept.get(rid)
        if k is None:
            return 0
        behind = freed_blocks - k.freed_at - k.taken_behind
        return max(0, min(k.blocks, free_blocks - behind))

    def keep(self, rid: int, blocks: int, free_blocks: int, freed_blocks: int) -> None:
        """The request was just preempted (its blocks freed): keep its full blocks; forget those overwritten."""
        for other in [r for r in self.kept if not self.surviving(r, free_blocks, freed_blocks)]:
            del self.kept[other]
        if blocks > 0:
            self._order += 1
            self.kept[rid] = KeptBlocks(blocks, freed_blocks, self._order)

    def revive(self, rid: int, blocks: int) -> None:
        """The request is admitted again with `blocks` of its kept blocks as its cached prefix: they leave the free
        queue (behind every request preempted before it). The rest of them stay free, no longer anyone's."""
        k = self.kept.pop(rid, None)
        if k is None or not blocks:
            return
        for other in self.kept.values():
            if other.order < k.order:
                other.taken_behind += blocks

    def forget(self, rid: int) -> None:
        self.kept.pop(rid, None)

    def clear(self) -> None:
        self.kept.clear()
