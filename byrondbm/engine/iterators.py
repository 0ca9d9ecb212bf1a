"""One iterator protocol for every layer: an iterator of entries ``(key, negseq, value)`` in entry order
(key ascending, newest first) or its exact reverse. Memtables, tables and levels all produce it; these
functions combine them. DESIGN invariant 5 (newest wins) is `visible`'s job.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Optional, Tuple

from ..errors import error
from .records import Entry


def merge(sources: Sequence[Iterable[Entry]], reverse: bool = False) -> Iterator[Entry]:
    """Merge sorted sources into one sorted stream. Cost: O(log k) per entry for k sources (heapq)."""
    if len(sources) == 1:
        return iter(sources[0])
    return heapq.merge(*sources, reverse=reverse)


def concat(open_table_iters: Sequence[Callable[[], Iterator[Entry]]]) -> Iterator[Entry]:
    """Chain the iterators of non-overlapping tables of one level, opening each only when reached,
    so a short scan touches only the tables it needs."""
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


def merge_visible(
    sources: Sequence[Iterable[Entry]], read_negseq: int, alive: list[bool]
) -> Iterator[Tuple[bytes, bytes]]:
    """`visible` of the forward `merge` of ``sources``, fused into one loop (the scan hot path).

    Run-based: the source holding the smallest entry is drained while its entries stay below the smallest
    head of the others, so a range held mostly by one source costs one comparison per entry, not a heap
    operation. Raises `error` once ``alive[0]`` is False (the database was closed).
    Cost: O(1) per entry within a run, O(log k) per switch between k sources.
    """
    its = [iter(s) for s in sources]
    heads: list[tuple[Entry, int]] = []
    for i, it in enumerate(its):
        for e in it:
            heads.append((e, i))
            break
    heapq.heapify(heads)
    prev: Optional[bytes] = None
    while heads:
        head, i = heads[0]
        n = len(heads)
        bound = None if n == 1 else heads[1][0] if n == 2 or heads[1][0] < heads[2][0] else heads[2][0]
        for e in chain((head,), its[i]):
            if bound is not None and not e < bound:
                heapq.heapreplace(heads, (e, i))
                break
            key, negseq, value = e
            if negseq < read_negseq or key == prev:
                continue
            prev = key
            if value is not None:
                if not alive[0]:
                    raise error("database was closed during iteration")
                yield key, value
        else:
            heapq.heappop(heads)


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
