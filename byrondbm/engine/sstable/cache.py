"""The block cache: data blocks shared by every table of a database, evicted least recently used first
(approximately) once their total charge exceeds the capacity. A block is cached uncompressed: gathered
into its table's `TablePoints` (points.py; a dict of its keys' values: ~1.7 × its size in memory) when a
point lookup reads it and the cache has room, else as its verified bytes (~1.05 ×); or decoded (what an
iterator reads: 1.1–6 × its size). Each is charged an estimate of the memory it really holds, so the
capacity bounds the cache's share of the RSS. A full cache takes a block a lookup read from the file only
if it was refused recently (`BlockCache.admit`).
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

POINT_ENTRY = 98
"""Bytes a `TablePoints` holds per entry beyond the block's bytes: a bytes object for its key and one for
its value, and the dict's slot with its slack, less the offsets, sequence number and kind the block held
(measured with tracemalloc: a table of 200,000 entries, 16-byte keys and 100-byte values, gathered whole
holds 234.5 bytes an entry, its blocks 129)."""


GROWTH_HEADROOM = 8
"""`BlockCache.grow` and `BlockCache.add_if_room` leave 1/8 of the capacity free."""


def raw_charge(size: int) -> int:
    """Charge of a cached block held as ``size`` bytes."""
    return size + ENTRY_OVERHEAD


def point_charge(size: int, entries: int) -> int:
    """Charge of a block of ``size`` bytes and ``entries`` entries gathered into a `TablePoints`."""
    return size + ENTRY_OVERHEAD + POINT_ENTRY * entries


def decoded_charge(size: int, entries: int) -> int:
    """Charge of a cached block of ``size`` bytes on disk held as ``entries`` decoded entries."""
    return size + ENTRY_OVERHEAD + DECODED_ENTRY * entries


class BlockCache:
    """Thread-safe map ``table number << BLOCK_BITS | block number -> (block, charge)``, bounded by total
    charge, evicting the least recently used block first, approximately: blocks queue in the order they
    were cached, a use only marks the block, and eviction gives a marked block a second chance at the
    queue's end instead of evicting it (the CLOCK policy, as in PostgreSQL's buffer pool). A use is so one
    `set.add`, where moving the block to the newest end of an ordered dict costs a call and a relink.

    `get` (lock-free) and `put` are O(1), eviction amortized; `evict_table` is O(entries cached). A block
    whose charge alone exceeds the capacity is not cached; capacity 0 caches nothing. ``hits``/``misses``
    count `get` outcomes (and `hit`s).

    A point lookup that may not need a block at all uses the C-level `peek` (neither counted nor marked)
    and, once it has used the block, `hit`, or inlines `hit` as ``mark(key)`` and ``counts[0] += 1``.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.counts = [0, 0]
        """``[hits, misses]``: statistics only, so updated without the lock."""
        self.charge = 0
        """Total charge of the blocks held now."""
        self.growth_limit = capacity_bytes - capacity_bytes // GROWTH_HEADROOM
        """`grow` and `add_if_room` keep the total charge at or below this."""
        self._map: OrderedDict[int, tuple[object, int]] = OrderedDict()
        self._used: set[int] = set()
        self._refused: tuple[set[int], set[int]] = (set(), set())  # `admit`'s keys refused: newer, older
        self._lock = threading.Lock()
        self.peek = self._map.get
        """``peek(key)``: ``(block, charge)``, or None; neither counted nor marked used."""
        self.mark = self._used.add
        """``mark(key)``: mark the block at ``key`` used (it survives the next eviction pass)."""

    @property
    def hits(self) -> int:
        return self.counts[0]

    @property
    def misses(self) -> int:
        return self.counts[1]

    def __len__(self) -> int:
        return len(self._map)

    def get(self, key: int) -> object | None:
        """The block, or None; counted as a hit or a miss, and marked used."""
        item = self.peek(key)
        if item is None:
            self.counts[1] += 1
            return None
        self.counts[0] += 1
        self.mark(key)
        return item[0]

    def hit(self, key: int) -> None:
        """Count a use of the block `peek` returned for ``key`` and mark it used. No lock: a block evicted
        between the two is marked in vain (`put` drops such marks)."""
        self.counts[0] += 1
        self.mark(key)

    def put(self, key: int, block: object, charge: int) -> None:
        if charge > self.capacity:
            return
        with self._lock:
            cached = self._map
            used = self._used
            old = cached.pop(key, None)
            if old is not None:
                self.charge -= old[1]
            self.charge += charge
            while self.charge > self.capacity:  # make room first: the new block is not a candidate
                oldest, item = cached.popitem(last=False)
                if oldest in used:  # a second chance; every pass clears a mark, so this ends
                    used.discard(oldest)
                    cached[oldest] = item
                else:
                    self.charge -= item[1]
            cached[key] = (block, charge)
            if len(used) > len(cached):  # marks of blocks evicted while in use
                used.intersection_update(cached)

    def admit(self, key: int, block: object, charge: int) -> None:
        """`put` for a block a point lookup read from the file, which pays off only if the block is read
        again before it is evicted: cached at once while that evicts nothing; else only if its key was
        refused recently (the keys of the last one to two cachefuls of refused blocks are remembered, in two
        sets: filling the newer one retires the older), and otherwise just remembered. Under uniform random
        gets over a database many times the cache's size, where a block is read again seldom, caching every
        block read would trade an eviction for an insertion at each get (~5 µs of cold memory in Python)
        for hits that seldom come; a block read twice within that window is cached (TinyLFU's "doorkeeper",
        simplified). No lock: a refusal lost to a race costs one more read."""
        if self.charge + charge > self.capacity:
            newer, older = self._refused
            if key not in newer and key not in older:
                newer.add(key)
                if len(newer) > len(self._map):
                    self._refused = (set(), newer)
                return
        self.put(key, block, charge)

    def has_room(self, extra: int) -> bool:
        """Whether `grow` or `add_if_room` would take ``extra`` more (a hint: no lock)."""
        return self.charge + extra <= self.growth_limit

    def add_if_room(self, key: int, item: object, charge: int) -> bool:
        """Cache ``item`` at ``key`` (where nothing is) only if the cache keeps `GROWTH_HEADROOM` of its
        capacity free after. True if done."""
        with self._lock:
            if key in self._map or not self.has_room(charge):
                return False
            self._map[key] = (item, charge)
            self.charge += charge
            return True

    def grow(self, key: int, item: object, extra: int) -> bool:
        """Add ``extra`` to the charge of ``item``, cached at ``key``, whose owner is about to make it
        hold that much more, only if it is cached there still and the cache keeps `GROWTH_HEADROOM` of
        its capacity free after: under pressure more blocks in their cheaper form serve more lookups than
        fewer in the costlier one, and the headroom stops a cache that has filled from trading evictions
        for growth, each costing a decode. True if done (the owner may then add what it charged)."""
        with self._lock:
            cached = self._map.get(key)
            if cached is None or cached[0] is not item or not self.has_room(extra):
                return False
            self._map[key] = (item, cached[1] + extra)  # (an existing key keeps its place in the queue)
            self.charge += extra
            return True

    def discard(self, key: int) -> None:
        """Drop the block cached at ``key``, if any."""
        with self._lock:
            item = self._map.pop(key, None)
            if item is not None:
                self.charge -= item[1]
                self._used.discard(key)

    def evict_table(self, number: int) -> None:
        """Drop every block of table ``number`` (deleted by a compaction)."""
        with self._lock:
            for key in [k for k in self._map if k >> BLOCK_BITS == number]:
                self.charge -= self._map.pop(key)[1]
                self._used.discard(key)

    def _check(self) -> None:
        """Assert the total charge is the sum of the items' and within the capacity, and each item's own
        invariants where it has a `_check` (a table's points)."""
        with self._lock:
            assert self.charge == sum(charge for _, charge in self._map.values()) <= max(self.capacity, 0)
            items = [item for item, _ in self._map.values()]
        for item in items:
            check = getattr(item, "_check", None)
            if check is not None:
                check()
