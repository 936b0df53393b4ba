"""Automatic prefix caching over token blocks, as vLLM does it.

A sequence is cut into full blocks of ``block_size`` tokens; block ``i`` is named by a hash of
block ``i - 1``'s name and its own token ids, so a name stands for the whole prefix up to it. A
lookup walks the names from the start while they are cached; at most ``len(tokens) - 1`` tokens can
hit, because the engine must compute the last prompt token to sample from it. The cache keeps
``capacity`` names and evicts the least recently used; a sequence's blocks are touched from its
last to its first, so eviction eats a prefix from its tail and what is left still matches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

_ROOT = 0x1F_2E3D


def block_hashes(tokens: Sequence[int], block_size: int, limit: int | None = None) -> list[int]:
    """The chained names of the full blocks of ``tokens`` (of its first ``limit`` tokens)."""
    count = len(tokens) if limit is None else min(limit, len(tokens))
    names: list[int] = []
    parent = _ROOT
    for start in range(0, count - block_size + 1, block_size):
        parent = hash((parent, *tokens[start : start + block_size]))
        names.append(parent)
    return names


class PrefixCache:
    """The block names the engine still holds, least recently used first."""

    def __init__(self, block_size: int, capacity: int) -> None:
        self.block_size = block_size
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, prompt: Sequence[int]) -> int:
        """How many leading tokens of ``prompt`` are cached (a multiple of the block size)."""
        blocks = self._blocks
        hits: list[int] = []
        for name in block_hashes(prompt, self.block_size, limit=len(prompt) - 1):
            if name not in blocks:
                break
            hits.append(name)
        for name in reversed(hits):
            blocks.move_to_end(name)
        return len(hits) * self.block_size

    def insert(self, tokens: Sequence[int]) -> None:
        """Remember every full block of ``tokens`` (now computed), evicting the oldest."""
        if self.capacity <= 0:
            return
        blocks = self._blocks
        for name in reversed(block_hashes(tokens, self.block_size)):
            blocks[name] = None
            blocks.move_to_end(name)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)

    def clear(self) -> None:
        self._blocks.clear()
