"""TablePoints: the newest value of each key of one table, gathered block by block as point lookups read
the blocks, so that a lookup in a table whose blocks it has read is one dict probe: no bisection of the
index, no cache probe per block, no search of a block (the bisection and the cache probe cost more than
the search, in memory latency: ~0.5 µs for a table of 1,600 blocks).

It lives in the block cache (one item per table, at `points_key`, charged as the sum of its blocks'
`point_charge`, plus 16 bytes a key for the order), so the cache's capacity bounds it and its eviction
drops it whole; it grows only while the cache has room to grow into (`BlockCache.grow`). It keeps no
sequence numbers: it answers only a reader that sees every entry of the table (`TableReader.point_parts`;
and a scan of a complete table with no tombstone, `TableReader.chunks`); an older reader reads the blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from .cache import BLOCK_BITS

POINTS_SLOT = (1 << BLOCK_BITS) - 1
"""The block number no table reaches (the hash index caps a table's slots below 2**32): a table's
`TablePoints` is cached at ``table number << BLOCK_BITS | POINTS_SLOT``."""


def points_key(table_number: int) -> int:
    """Cache key of table ``table_number``'s `TablePoints` (evicted with its blocks by `evict_table`)."""
    return table_number << BLOCK_BITS | POINTS_SLOT


class TablePoints(dict[bytes, "bytes | None"]):
    """Key -> newest value (None: a tombstone) for the keys of the data blocks gathered so far; ``loaded``
    marks those blocks (one byte a block) and ``missing`` counts the others. A key absent from the dict is
    absent from the table when ``missing`` is 0 or its block (by the index) is marked; else unknown.

    Gathering block ``b`` leaves out a key that continues from block ``b - 1`` (the key of its first
    entries when it equals block ``b - 1``'s last key, `point_pairs`): its newest value is in the block
    where it starts, and until that block is gathered the key is unknown, not wrong."""

    __slots__ = ("loaded", "missing", "order")

    def __init__(self, num_blocks: int) -> None:
        super().__init__()
        self.loaded = bytearray(num_blocks)
        self.missing = num_blocks
        self.order: tuple[list[bytes], list[bytes | None]] | None = None
        """The keys in ascending order and their values, as two columns, once every block is gathered and a
        scan has asked for them (`TableReader.chunks` then serves a scan that sees the whole table from
        here by slicing them: no block read, no dict probe a key)."""

    def gather(self, blocks: list[int], pairs: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Add ``pairs``, the `point_pairs` of data blocks ``blocks`` (none gathered yet: the caller holds
        the table's gather lock and checked), then mark the blocks: the dict is updated first, so a
        concurrent lookup never takes a mark for a key still missing. Cost: one dict update, in C."""
        self.update(pairs)
        loaded = self.loaded
        for b in blocks:
            assert not loaded[b], "a block is gathered once"
            loaded[b] = 1
            self.missing -= 1

    def _check(self) -> None:
        unmarked = self.loaded.count(0)
        assert unmarked <= self.missing <= unmarked + 1  # (+1: a gather between its mark and its count)
        if self.order is not None:
            keys, values = self.order
            assert self.missing == 0 and keys == sorted(self) and values == list(map(self.__getitem__, keys))
