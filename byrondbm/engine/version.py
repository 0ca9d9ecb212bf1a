"""Versions: an immutable view of every source of data at one moment.

A `Version` holds the active memtable, the immutable memtables (newest first) and the tables of each level
(L0 newest first, possibly overlapping; L1+ sorted by key and non-overlapping). The engine swaps in a new
Version on every rotation, flush or compaction; readers take a reference to the current one and keep using
it, so they never see a half-applied change. Python's reference counting keeps every table reader of a
version alive (and its file descriptor open) while any reader holds the version; a table file is unlinked
when it leaves the current version, which POSIX allows while descriptors on it are still being read.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from .memtable import Memtable
from .records import Entry
from .sstable import TableReader, key_hashes

MAX_LEVELS = 7


class Version:
    """Immutable once built. Cost of a build: O(total tables)."""

    __slots__ = ("mem", "imms", "levels", "_largest", "_smallest", "sorted_levels", "has_tables")

    def __init__(self, mem: Memtable, imms: tuple[Memtable, ...], levels: Sequence[Sequence[TableReader]]) -> None:
        self.mem = mem
        self.imms = imms
        self.levels: tuple[tuple[TableReader, ...], ...] = tuple(tuple(level) for level in levels)
        self._largest = [[t.largest for t in level] for level in self.levels]
        self._smallest = [[t.smallest for t in level] for level in self.levels]
        self.sorted_levels = [(self._largest[k], self.levels[k]) for k in range(1, len(self.levels)) if self.levels[k]]
        """(largest keys, tables) of each non-empty level >= 1, top down: what a point lookup walks."""
        self.has_tables = any(self.levels)

    def get(self, key: bytes, read_negseq: int) -> Entry | None:
        """Newest entry of ``key`` visible at ``read_negseq``: the active memtable, the immutable ones
        (newest first), then the tables (`find`). The body of every point read, writer's and reader's."""
        e = self.mem.get(key, read_negseq)
        if e is None:
            for m in self.imms:
                e = m.get(key, read_negseq)
                if e is not None:
                    return e
            return self.find(key, read_negseq)
        return e

    def find(self, key: bytes, read_negseq: int) -> Entry | None:
        """Newest entry of ``key`` visible at ``read_negseq`` in the tables (memtables are the caller's):
        L0 newest first, then one table a sorted level, found by bisecting its largest keys.
        Cost: one hash of the key, then per table whose range holds it a bloom probe and, on a hit, a
        cached-block lookup."""
        if not self.has_tables:
            return None
        hashes = key_hashes(key)
        for t in self.levels[0]:
            if t.smallest <= key <= t.largest:
                e = t.get(key, hashes, read_negseq)
                if e is not None:
                    return e
        for largest, tables in self.sorted_levels:
            i = bisect_left(largest, key)
            if i < len(largest):
                t = tables[i]
                if t.smallest <= key:
                    e = t.get(key, hashes, read_negseq)
                    if e is not None:
                        return e
        return None

    def with_memtables(self, mem: Memtable, imms: tuple[Memtable, ...]) -> "Version":
        return Version(mem, imms, self.levels)

    def table_for(self, level: int, key: bytes) -> TableReader | None:
        """The one table of sorted level ``level`` (>= 1) whose range holds ``key``. O(log tables)."""
        largest = self._largest[level]
        i = bisect_left(largest, key)
        if i < len(largest):
            t = self.levels[level][i]
            if t.smallest <= key:
                return t
        return None

    def overlapping(self, level: int, lo: bytes, hi: bytes) -> list[TableReader]:
        """Tables of ``level`` whose key range meets ``[lo, hi]`` (both inclusive)."""
        if level == 0:
            return [t for t in self.levels[0] if not (t.largest < lo or t.smallest > hi)]
        i = bisect_left(self._largest[level], lo)
        j = bisect_right(self._smallest[level], hi)
        return list(self.levels[level][i:j])

    def level_range(self, level: int, start: bytes | None, stop: bytes | None) -> list[TableReader]:
        """Tables of sorted level ``level`` that may hold keys in ``[start, stop)``, in key order."""
        tables = self.levels[level]
        i = 0 if start is None else bisect_left(self._largest[level], start)
        j = len(tables) if stop is None else bisect_left(self._smallest[level], stop)
        return list(tables[i:j])

    def level_bytes(self, level: int) -> int:
        return sum(t.properties.file_size for t in self.levels[level])

    def deepest_nonempty(self) -> int:
        for level in range(len(self.levels) - 1, -1, -1):
            if self.levels[level]:
                return level
        return 0

    def tables(self) -> list[TableReader]:
        return [t for level in self.levels for t in level]

    def _check(self) -> None:
        """Assert docs/design.md invariant 6: L1+ sorted and non-overlapping; every table's range well-formed."""
        assert len(self.levels) == MAX_LEVELS
        for level, tables in enumerate(self.levels):
            for t in tables:
                assert t.smallest <= t.largest, (level, t.number)
            if level >= 1:
                for a, b in zip(tables, tables[1:]):
                    assert a.largest < b.smallest, (level, a.number, b.number)
        numbers = [t.number for t in self.tables()]
        assert len(numbers) == len(set(numbers)), "a table is listed twice"
        self.mem._check()
        for m in self.imms:
            m._check()
