"""One iterator protocol for every layer: an iterator of entries ``(key, negseq, value)`` in entry order
(key ascending, newest first) or its exact reverse. Memtables, tables and levels all produce it; these
functions combine them. docs/design.md invariant 5 (newest wins) is `visible`'s job.

Every layer produces it *in chunks*: an iterator of lists of entries (a table's block, a run of memtable
keys) whose concatenation is the stream, so a merge can hand whole runs to C. ``chain.from_iterable`` of a
chunked source is the plain stream; `merge_chunks` merges chunked sources into sorted chunks.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Optional, Tuple, TypeVar

from ..errors import error
from .records import Entry

C = TypeVar("C")
Chunks = Iterable[list[Entry]]
"""A chunked source: lists of entries, each in entry order, continuing one another."""


def merge(sources: Sequence[Iterable[Entry]], reverse: bool = False) -> Iterator[Entry]:
    """Merge sorted sources into one sorted stream. Cost: O(log k) per entry for k sources (heapq)."""
    if len(sources) == 1:
        return iter(sources[0])
    return heapq.merge(*sources, reverse=reverse)


def concat(open_table_iters: Sequence[Callable[[], Iterator[C]]]) -> Iterator[C]:
    """Chain the iterators (of entries or of chunks) of non-overlapping tables of one level, opening each
    only when reached, so a short scan touches only the tables it needs."""
    for open_iter in open_table_iters:
        yield from open_iter()


def visible(entries: Iterable[Entry], read_negseq: int, reverse: bool = False) -> Iterator[Tuple[bytes, bytes]]:
    """``(key, value)`` of the newest version of each key at the reader's sequence number, tombstones hidden.

    ``read_negseq`` is minus the reader's sequence number: entries with a smaller negseq are newer than the
    reader and ignored. In reverse order a key's versions arrive oldest first, so the last visible wins.
    """
    if not reverse:
        prev: Optional[bytes] = None
        for key, negseq, value in entries:
            if negseq < read_negseq or key == prev:
                continue
            prev = key
            if value is not None:
                yield key, value
        return
    cur: Optional[bytes] = None
    cur_value: Optional[bytes] = None
    for key, negseq, value in entries:
        if key != cur:
            if cur_value is not None:
                yield cur, cur_value  # type: ignore[misc]
            cur, cur_value = key, None
        if negseq >= read_negseq:
            cur_value = value
    if cur_value is not None:
        yield cur, cur_value  # type: ignore[misc]


def merge_chunks(sources: Sequence[Chunks]) -> Iterator[list[Entry]]:
    """Merge chunked sources (forward entry order) into one chunked stream in entry order.

    Each round takes the smallest last entry of the sources' current chunks as a bound: every entry at or
    below it, from every source, has then been read. Those entries are cut out with `bisect` and sorted
    together (the C sort merges the runs), and the round yields them as one chunk; at least one source's
    chunk is used up each round. Once one source is left its chunks pass through untouched.
    Cost: O(k) Python steps a round for k sources, O(log k) C comparisons an entry — where a heap merge
    (`heapq.merge`) pays several Python steps an entry. Sequence numbers are unique, so no two entries
    compare equal and values are never compared.
    """
    live: list[list] = []  # [chunk, position in it, the source's iterator]
    for source in sources:
        it = iter(source)
        first = next((c for c in it if c), None)
        if first is not None:
            live.append([first, 0, it])
    while len(live) > 1:
        bound = min([x[0][-1] for x in live])
        batch: list[Entry] = []
        exhausted = False
        for x in live:
            chunk, pos, it = x
            end = bisect_right(chunk, bound, pos)
            batch += chunk[pos:end] if pos or end < len(chunk) else chunk
            if end == len(chunk):
                x[0] = next((c for c in it if c), None)
                x[1] = 0
                exhausted = exhausted or x[0] is None
            else:
                x[1] = end
        if exhausted:
            live = [x for x in live if x[0] is not None]
        batch.sort()
        yield batch
    if live:
        chunk, pos, it = live[0]
        yield chunk[pos:]
        yield from it


def merge_visible(
    sources: Sequence[Chunks], read_negseq: int, alive: list[bool], release: Sequence[Callable[[], object]] = ()
) -> Iterator[Tuple[bytes, bytes]]:
    """`visible` of the forward merge of chunked ``sources`` (`merge_chunks`): the scan hot path.

    Raises `error` once ``alive[0]`` is False (the database was closed), at the next pair it would yield.
    Calls each of ``release`` once it ends, however it ends (the engine's unpin).
    Cost: `merge_chunks`, plus a few Python steps an entry.
    """
    try:
        prev: Optional[bytes] = None
        for batch in merge_chunks(sources):
            for key, negseq, value in batch:
                if negseq < read_negseq or key == prev:
                    continue
                prev = key
                if value is not None:
                    if not alive[0]:
                        raise error("database was closed during iteration")
                    yield key, value
    finally:
        for done in release:
            done()


def prefix_bounds(prefix: bytes, start: bytes | None, stop: bytes | None) -> tuple[bytes | None, bytes | None]:
    """Narrow ``[start, stop)`` to the keys that begin with ``prefix``."""
    lo = prefix if start is None or start < prefix else start
    trimmed = prefix.rstrip(b"\xff")
    upper = trimmed[:-1] + bytes([trimmed[-1] + 1]) if trimmed else None  # first key after the prefix
    if upper is None:
        hi = stop
    else:
        hi = upper if stop is None or upper < stop else stop
    return lo, hi
