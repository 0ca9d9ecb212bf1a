"""The block cache: data blocks shared by every table of a database, evicted least recently used first
once their total charge exceeds the capacity. A block is cached uncompressed, either as its verified bytes
(what a point lookup reads: ~1.05 × its size in memory) or decoded (what an iterator reads: 1.1–6 × its
size); each is charged an estimate of the memory it really holds, so the capacity bounds the cache's
share of the RSS.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

BLOCK_BITS = 32
"""A block's cache key is ``table number << BLOCK_BITS | block number``: one int, cheap to hash."""
ENTRY_OVERHEAD = 240
"""Bytes a cached item costs beyond its payload: the map's node, key, (block, charge) tuple, bytes header."""
DECODED_ENTRY = 130
"""Bytes a decoded entry costs beyond its share of the block: tuple, key and value objects, list slot
(measured with tracemalloc: 69 for tombstones, 125–130 for 8- to 1000-byte values)."""


def raw_charge(size: int) -> int:
    """Charge of a cached block held as ``size`` bytes."""
    return size + ENTRY_OVERHEAD


def decoded_charge(size: int, entries: int) -> int:
    """Charge of a cached block of ``size`` bytes on disk held as ``entries`` decoded entries."""
    return size + ENTRY_OVERHEAD + DECODED_ENTRY * entries


class BlockCache:
    """Thread-safe LRU map ``table number << BLOCK_BITS | block number -> (block, charge)``, bounded by total
    charge.

    `get` (lock-free) and `put` are O(1); `evict_table` is O(entries cached). A block whose charge alone exceeds the
    capacity is not cached; capacity 0 caches nothing. ``hits``/``misses`` count `get` outcomes (and `hit`s).

    A point lookup that may not need a block at all uses the C-level `peek` (neither counted nor made
    recent) and, once it has used the block, `hit`, so a cached lookup runs one short Python frame here.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.hits = 0
        self.misses = 0
        self._charge = 0
        self._map: OrderedDict[int, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.peek = self._map.get
        """``peek(key)``: ``(block, charge)``, or None; neither counted nor made the most recently used."""
        self._touch = self._map.move_to_end

    @property
    def charge(self) -> int:
        """Total charge of the blocks held now."""
        return self._charge

    def __len__(self) -> int:
        return len(self._map)

    def get(self, key: int) -> object | None:
        """The block, or None; counted as a hit or a miss, and made the most recently used."""
        item = self.peek(key)
        if item is None:
            self.misses += 1
            return None
        self.hit(key)
        return item[0]

    def hit(self, key: int) -> None:
        """Count a use of the block `peek` returned for ``key`` and make it the most recently used."""
        # No lock: OrderedDict.get and move_to_end are each atomic (C code, GIL or per-object lock),
        # and a block evicted between the two simply stays evicted. The counters are statistics only.
        self.hits += 1
        try:
            self._touch(key)
        except KeyError:
            pass

    def put(self, key: int, block: object, charge: int) -> None:
        if charge > self.capacity:
            return
        with self._lock:
            old = self._map.pop(key, None)
            if old is not None:
                self._charge -= old[1]
            self._map[key] = (block, charge)
            self._charge += charge
            while self._charge > self.capacity:
                _, (_, evicted) = self._map.popitem(last=False)
                self._charge -= evicted

    def evict_table(self, number: int) -> None:
        """Drop every block of table ``number`` (deleted by a compaction)."""
        with self._lock:
            for key in [k for k in self._map if k >> BLOCK_BITS == number]:
                self._charge -= self._map.pop(key)[1]

    def _check(self) -> None:
        """Assert the total charge is the sum of the blocks' and within the capacity."""
        with self._lock:
            assert self._charge == sum(charge for _, charge in self._map.values()) <= max(self.capacity, 0)
