"""Named random streams derived from the scenario seed.

Each stream's generator comes from SeedSequence(seed, spawn_key=(crc32(name),)), so a stream's draws
depend only on the seed and its name: adding a stream never shifts another's draws.
"""

from __future__ import annotations

import zlib

import numpy as np


class RandomStreams:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        if name not in self._streams:
            key = zlib.crc32(name.encode("utf-8"))
            self._streams[name] = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(key,)))
        return self._streams[name]
