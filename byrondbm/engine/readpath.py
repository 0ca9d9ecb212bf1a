"""The read pipeline of scans: from a pinned version to the pairs a user iterates.

A scan reads one `Version` (memtables, L0 tables, sorted levels) at one sequence number, forward or
reverse, through one pipeline (iterators.py's protocol):

1. `sources`: the memtables holding keys, the L0 tables and the levels whose ranges meet ``[start, stop)``;
   nothing is read yet. A level is one source whose tables are opened one by one as the scan reaches them.
2. A source alone (after a compaction: one level) is passed through: its runs go straight to `newest`, and
   its clean runs come as columns that become pairs by ``zip`` alone. Several sources are merged
   (`merge_runs`) a round at a time: their clean runs (tables' clean blocks, checked memtable runs,
   columns) make rounds resolved in C, both ways; other rounds cut and sort entries.
3. `newest` keeps each key's newest version visible at the sequence number and drops tombstones; the
   pairs come out a list (or a zip) at a time, and ``itertools.chain`` hands them out one by one in C.

A scan pins its sequence number (old versions it needs survive writes, flushes and compactions) and must
release the pin exactly once, however it ends: run to the end, raising, abandoned, or never started.
`scan`'s generator releases it in its ``finally``, which it enters before the scan is handed out, so that
closing or collecting a scan never started runs it too. A database closed while a scan runs makes the scan raise `byrondbm.error` at
its next step that needs another run of pairs: the pairs already handed over are the scan's, correct as of
its call.

Cost: a seek opens each source's first run (a memtable's first keys, one block of each table through
the index and the block cache, or 32 entries or more when merged); a long scan pays O(log k) C comparisons
an entry for k sources, and a Python step an entry only where entries need filtering (blocks that are not
clean, or merge rounds holding such runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import Any, Optional, Union, overload

from ..errors import error
from .iterators import Clean, Pair, Run, Source, concat, merge_runs, newest
from .sstable import TableReader
from .version import MAX_LEVELS, Version

_KEY = itemgetter(0)


class Level:
    """The tables of one sorted level (L1 and below) that may hold keys of a range, in key order, as one
    `Source`: tables of one level never share a key, so their runs simply follow one another, and each
    table is opened (its first block read) only when the scan reaches it."""

    def __init__(self, tables: list[TableReader]) -> None:
        self.tables = tables

    @overload
    def chunks(
        self, start: Optional[bytes] = None, stop: Optional[bytes] = None, reverse: bool = False,
        read_negseq: None = None, *, merged: bool = False,
    ) -> Iterator[Run]: ...

    @overload
    def chunks(
        self, start: Optional[bytes], stop: Optional[bytes], reverse: bool, read_negseq: int, *, merged: bool = False
    ) -> Iterator[Union[Run, Clean]]: ...

    def chunks(
        self, start: Optional[bytes] = None, stop: Optional[bytes] = None, reverse: bool = False,
        read_negseq: Optional[int] = None, *, merged: bool = False,
    ) -> Iterator[Union[Run, Clean]]:
        tables = reversed(self.tables) if reverse else self.tables
        return concat(partial(t.chunks, start, stop, reverse, read_negseq, merged=merged) for t in tables)  # type: ignore[call-overload]


def sources(v: Version, start: Optional[bytes], stop: Optional[bytes]) -> list[Source]:
    """The sources of ``v`` that may hold keys of ``[start, stop)``, newest first: memtables, L0 tables,
    then one `Level` a sorted level. Cost: an emptiness test a memtable, a range test an L0 table, a
    bisect a level."""
    found: list[Source] = [m for m in (v.mem, *v.imms) if len(m)]
    found += [
        t for t in v.levels[0]
        if (start is None or t.largest >= start) and (stop is None or t.smallest < stop)
    ]
    for level in range(1, MAX_LEVELS):
        if v.levels[level]:
            tables = v.level_range(level, start, stop)
            if tables:
                found.append(Level(tables))
    return found


def pairs(
    v: Version, start: Optional[bytes], stop: Optional[bytes], reverse: bool, read_negseq: int
) -> Iterator[Iterable[Pair]]:
    """The visible pairs of ``[start, stop)`` in ``v`` at ``-read_negseq``, in scan order, a list (or a zip)
    at a time: a lone source passed through, several merged. Lazy: nothing is read until the first step."""
    found = sources(v, start, stop)
    if len(found) == 1:
        return newest(found[0].chunks(start, stop, reverse, read_negseq), read_negseq, reverse)
    runs = [s.chunks(start, stop, reverse, read_negseq, merged=True) for s in found]
    return newest(merge_runs(runs, reverse), read_negseq, reverse)


def scan(
    v: Version,
    start: Optional[bytes],
    stop: Optional[bytes],
    reverse: bool,
    read_seq: int,
    alive: list[bool],
    release: Callable[[], object],
    keys_only: bool = False,
) -> Iterator[Any]:
    """The user's iterator over ``[start, stop)`` of ``v`` at ``read_seq``: ``(key, value)`` pairs, or keys
    with ``keys_only``. ``release`` (the pin's) is called exactly once, however the scan ends; ``alive[0]``
    False (the database was closed) makes it raise `error` at its next step that needs more pairs."""
    try:
        parts = iter(()) if start is not None and stop is not None and start >= stop else pairs(v, start, stop, reverse, -read_seq)
    except BaseException:
        release()
        raise
    gen = _handed_out(parts, alive, release, keys_only)
    next(gen)  # into its try: from now on closing it, or collecting it, runs its finally
    return chain.from_iterable(gen)


def _handed_out(
    parts: Iterator[Iterable[Pair]], alive: list[bool], release: Callable[[], object], keys_only: bool
) -> Iterator[Iterable[Any]]:
    """``parts`` checked against ``alive`` before each, after a first empty part that `scan` takes at once;
    ``release`` is called when the scan ends: exhausted, raising, or closed (by ``close()`` or by the
    garbage collector, even before its first step)."""
    try:
        yield ()
        if not alive[0]:
            raise error("database was closed during iteration")
        for part in parts:
            if not alive[0]:
                raise error("database was closed during iteration")
            yield map(_KEY, part) if keys_only else part
    finally:
        release()
