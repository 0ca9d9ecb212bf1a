"""Versions: an immutable view of every source of data at one moment.

A `Version` holds the active memtable, the immutable memtables (newest first) and the tables of each level
(L0 newest first, possibly overlapping; L1+ sorted by key and non-overlapping). The engine swaps in a new
Version on every rotation, flush or compaction; readers take a reference to the current one and keep using
it, so they never see a half-applied change. Python's reference counting keeps every table reader of a
version alive (and its file descriptor open) while any reader holds the version; a table file is unlinked
once it has left the current version and no running job holds it (`VersionSet.hold`), which POSIX allows
while descriptors on it are still being read.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from .memtable import Memtable
from .sstable import BlockCache, TablePoints, TableReader, key_hashes

MAX_LEVELS = 7


Lookup = Callable[..., "bytes | None"]
"""``lookup(key, read_negseq=None)``: the value of the newest entry of ``key`` visible at ``read_negseq``
(by default the writer's last published sequence number, the version's ``published`` cell); None when that
entry is a tombstone or there is none."""


_ABSENT = object()


def _lookup(
    mems: tuple[Memtable, ...], levels: tuple[tuple[TableReader, ...], ...], published: list[int] | None
) -> Lookup:
    """The point lookup of a version, built once when the version is: a closure over the memtables' and
    tables' bound lookups and each run's key bounds, so a lookup runs one Python frame of its own, with
    no attribute lookups, and calls a Python function only where the cheap answer fails. With no
    ``read_negseq`` it reads at ``published[0]``, the writer's last published sequence number (negated):
    the writer's engine points its `get` at the current version's lookup, so a get runs no engine frame.

    Order: the memtables, newest first (a dict probe each; `Memtable.get` only for a key with several
    versions or a newer one); then the tables whose range holds the key, newest first: each L0 table
    (its bounds compared directly; L0 is bounded by the compaction trigger), then the one table of each
    sorted level whose range may hold it, found by bisecting the level's largest keys. A table is asked
    first through its `TablePoints` in the block cache (`TableReader.point_parts`): for a reader that
    sees the whole table, one dict probe answers a key found there, and a key not found once every block
    is gathered, with no bloom filter; else `TableReader.get` (bloom filter, hash index, block), with the
    key's hashes computed once. (While blocks are missing, a key not found takes `get` rather than a
    bisection of the index to tell whether its block was gathered: in a database larger than the cache
    the points stay partial, and the bloom filter's first probe, which turns most absent keys away,
    costs less than that bisection over cold memory.)
    """
    mem_slots = tuple((m.slot, m.get) for m in mems)
    table_parts = {t: t.point_parts() for level in levels for t in level}
    parts = {t: (points_key, negmax, t.get) for t, (points_key, negmax, _) in table_parts.items()}
    # An L0 table is its own run: its bounds and parts, checked with no bisection; a sorted level is the
    # list of its tables' largest keys, smallest keys and parts.
    runs: tuple[tuple[Any, Any, Any], ...] = tuple((t.largest, t.smallest, parts[t]) for t in levels[0]) + tuple(
        ([t.largest for t in level], [t.smallest for t in level], [parts[t] for t in level])
        for level in levels[1:]
        if level
    )
    caches = {id(cache): cache for _, _, cache in table_parts.values()}
    assert len(caches) <= 1, "the tables of a version share one block cache"
    cache = next(iter(caches.values())) if caches else BlockCache(0)
    peek, mark, counts = cache.peek, cache.mark, cache.counts

    def lookup(key: bytes, read_negseq: int | None = None) -> bytes | None:
        if read_negseq is None:
            read_negseq = published[0]  # type: ignore[index]  # (a version with no cell is always given one)
        for slot, mem_get in mem_slots:
            e = slot(key)
            if e is not None:
                if e.__class__ is tuple and e[1] >= read_negseq:  # its one version, visible
                    return e[2]  # type: ignore[no-any-return]
                e = mem_get(key, read_negseq)
                if e is not None:
                    return e[2]
        hashes = None
        for largest, smallest, table in runs:
            if table.__class__ is list:  # a sorted level: the one table whose range may hold the key
                i = bisect_left(largest, key)
                if i == len(table) or smallest[i] > key:
                    continue
                table = table[i]
            elif key > largest or smallest > key:
                continue
            points_key, negmax, get = table
            if read_negseq <= negmax:
                item = peek(points_key)
                if item is not None:
                    points: TablePoints = item[0]  # type: ignore[assignment]
                    value = points.get(key, _ABSENT)
                    if value is not _ABSENT:
                        mark(points_key)  # BlockCache.hit, inlined
                        counts[0] += 1
                        return value  # type: ignore[return-value]
                    if not points.missing:
                        continue  # absent: as a bloom filter's "no", not counted as a use
            if hashes is None:
                hashes = key_hashes(key)
            e = get(key, hashes, read_negseq)
            if e is not None:
                return e[2]
        return None

    return lookup


class Version:
    """Immutable once built. Cost of a build: O(total tables)."""

    __slots__ = ("mem", "imms", "memtables", "levels", "published", "_largest", "_smallest", "has_tables", "get",
                 "find")

    def __init__(
        self,
        mem: Memtable,
        imms: tuple[Memtable, ...],
        levels: Sequence[Sequence[TableReader]],
        published: list[int] | None = None,
    ) -> None:
        self.mem = mem
        self.imms = imms
        self.memtables: tuple[Memtable, ...] = (mem,) + imms if mem is not None else imms  # None: a job's
        """The active memtable, then the immutable ones, newest first."""
        self.levels: tuple[tuple[TableReader, ...], ...] = tuple(tuple(level) for level in levels)
        self._largest = [[t.largest for t in level] for level in self.levels]
        self._smallest = [[t.smallest for t in level] for level in self.levels]
        self.has_tables = any(self.levels)
        self.published = published
        """The writer's one-item list of its last published sequence number, negated (the default of `get`);
        None for a version of a job or a reader, whose callers always give one."""
        self.get: Lookup = _lookup(self.memtables, self.levels, published)
        """``get(key, read_negseq=None)``: the value of the newest entry of ``key`` visible at ``read_negseq`` in
        the active memtable, the immutable ones (newest first), then the tables (None: a tombstone, or no
        entry). The body of every point read, writer's and reader's. Cost: one dict probe a memtable; then
        per table whose range holds the key two dict probes when its block is gathered in the table's
        `TablePoints`, or else `TableReader.get` (bloom filter, hash index, block)."""
        self.find: Lookup = _lookup((), self.levels, published)
        """``find(key, read_negseq)``: `get` in the tables only (the memtables are the caller's)."""

    def get_many(self, keys: list[bytes], read_negseq: int) -> list[bytes | None]:
        """`get` of each of ``keys`` (ascending): the memtables key by key, then each table once, with the
        keys still unanswered that its range holds (`TableReader.get_many`: its points first, then each of
        its blocks read once). Cost: `get`'s per key, less a block fetch per key that shares a block with
        the key before it."""
        out: list[object] = [_ABSENT] * len(keys)
        pending: list[int] = []
        for i, key in enumerate(keys):
            for m in self.memtables:
                e = m.get(key, read_negseq)
                if e is not None:
                    out[i] = e[2]
                    break
            else:
                pending.append(i)
        for level, tables in enumerate(self.levels):
            if not pending:
                break
            pkeys = [keys[i] for i in pending]
            for t in tables if level == 0 else self.overlapping(level, pkeys[0], pkeys[-1]):
                lo, hi = bisect_left(pkeys, t.smallest), bisect_right(pkeys, t.largest)
                if level == 0:
                    which = [i for i in pending[lo:hi] if out[i] is _ABSENT]  # not answered by a newer L0 table
                else:
                    which = pending[lo:hi]
                if which:
                    for j, value in t.get_many([keys[i] for i in which], read_negseq).items():
                        out[which[j]] = value
            pending = [i for i in pending if out[i] is _ABSENT]
        return [None if v is _ABSENT else v for v in out]  # type: ignore[misc]

    def with_memtables(self, mem: Memtable, imms: tuple[Memtable, ...]) -> "Version":
        return Version(mem, imms, self.levels, self.published)

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
