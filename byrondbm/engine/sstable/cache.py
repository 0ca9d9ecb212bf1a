"""The block cache: decoded data blocks shared by every table of a database, evicted least recently used
first once their total charge exceeds the capacity.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class BlockCache:
    """Thread-safe LRU map ``(table number, block offset) -> decoded block``, bounded by total charge.

    `get` (lock-free) and `put` are O(1); `evict_table` is O(entries cached). A block whose charge alone exceeds the
    capacity is not cached; capacity 0 caches nothing. ``hits``/``misses`` count `get` outcomes.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.hits = 0
        self.misses = 0
        self._charge = 0
        self._map: OrderedDict[tuple[int, int], tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._lookup = self._map.get
        self._touch = self._map.move_to_end

    @property
    def charge(self) -> int:
        """Total charge of the blocks held now."""
        return self._charge

    def __len__(self) -> int:
        return len(self._map)

    def get(self, key: tuple[int, int]) -> object | None:
        # No lock: OrderedDict.get and move_to_end are each atomic (C code, GIL or per-object lock),
        # and a block evicted between the two simply stays evicted. The counters are statistics only.
        item = self._lookup(key)
        if item is None:
            self.misses += 1
            return None
        try:
            self._touch(key)
        except KeyError:
            pass
        self.hits += 1
        return item[0]

    def put(self, key: tuple[int, int], block: object, charge: int) -> None:
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
            for key in [k for k in self._map if k[0] == number]:
                self._charge -= self._map.pop(key)[1]
