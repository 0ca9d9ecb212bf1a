"""One iterator protocol for every layer, and the functions that combine its streams.

A *source* (`Source`: a memtable, a table, a level of tables) gives the entries ``(key, negseq, value)`` of
a key range as *runs*: lists of entries in entry order (key ascending, newest first). A forward stream's
runs follow one another upwards; a reverse stream's runs follow one another downwards, each still in
entry order. So every stage bisects, slices and sorts runs one way, whatever the direction, and C does
that work a run at a time.

A source may also answer for a reader at one sequence number (``read_negseq`` given): then, in place of a
run it knows to be *clean* for that reader (no tombstone, one version a key, none newer than the reader:
a table's block whose decoded summary says so), it gives a `Clean` run, the ``(keys, values)`` columns of
those entries, which `newest` turns into pairs with ``zip`` and no Python step per pair.

- `merge_runs`: several sources' runs -> one stream of sorted runs (forward or reverse).
- `newest`: a stream of runs -> lists (or zips) of the visible ``(key, value)`` pairs in scan order:
  of each key the newest version at the reader's sequence number, tombstones hidden (docs/design.md,
  invariant 5). Its state carries a key's versions across runs.
- `concat`: the runs of non-overlapping sources (a level's tables), each opened when reached.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Optional, Protocol, Tuple, TypeVar, Union, cast, overload

from .records import Entry

C = TypeVar("C")
Run = list[Entry]
"""Entries in entry order (the consumer must not change it: it may be a cached block's list)."""
Clean = Tuple[Sequence[bytes], Sequence[bytes]]
"""The keys and values of a clean run: every entry visible to the reader, none a tombstone, one a key."""
Pair = Tuple[bytes, bytes]


class Source(Protocol):
    """What memtables, tables and levels provide: their entries of ``[start, stop)`` as runs, forward or
    reverse (see the module docstring), lazily. With ``read_negseq`` a run may come as `Clean`."""

    @overload
    def chunks(
        self, start: Optional[bytes] = None, stop: Optional[bytes] = None, reverse: bool = False,
        read_negseq: None = None,
    ) -> Iterator[Run]: ...

    @overload
    def chunks(
        self, start: Optional[bytes], stop: Optional[bytes], reverse: bool, read_negseq: int
    ) -> Iterator[Union[Run, Clean]]: ...


def concat(openers: Iterable[Callable[[], Iterator[C]]]) -> Iterator[C]:
    """Chain the runs of non-overlapping sources (in the stream's order), opening each only when reached,
    so a short scan touches only the tables it needs."""
    for open_runs in openers:
        yield from open_runs()


def merge_runs(sources: Sequence[Iterable[Run]], reverse: bool = False) -> Iterator[Run]:
    """Merge sources of runs into one stream of sorted runs, in the direction of the sources' streams.

    Each round takes, of the sources' current runs, the end nearest the stream's start as a bound
    (forward: the smallest last entry; reverse: the largest first entry): every entry on the near side of
    it, from every source, has then been read. Those entries are cut out with `bisect` and sorted together
    (the C sort merges the runs); at least one source's run is used up each round. Once one source is
    left its runs pass through untouched.
    Cost: O(k) Python steps a round for k sources, O(log k) C comparisons an entry. Sequence numbers are
    unique, so no two entries compare equal and values are never compared.
    """
    live: list[list] = [[None, 0, 0, iter(source)] for source in sources]  # [run, lo, hi, iterator]
    while True:
        # Refill the sources whose run the last round used up; only now, so a scan that stops after a
        # round never reads further.
        for x in live:
            if x[0] is None:
                run = next((r for r in x[3] if r), None)
                x[0], x[1], x[2] = run, 0, 0 if run is None else len(run)
        live = [x for x in live if x[0] is not None]
        if len(live) < 2:
            break
        batch: Run = []
        if reverse:
            bound = max([x[0][x[1]] for x in live])
            for x in live:
                run, lo, hi, _ = x
                cut = bisect_left(run, bound, lo, hi)
                batch += run[cut:hi] if cut or hi < len(run) else run
                if cut == lo:
                    x[0] = None
                else:
                    x[2] = cut
        else:
            bound = min([x[0][x[2] - 1] for x in live])
            for x in live:
                run, lo, hi, _ = x
                cut = bisect_right(run, bound, lo, hi)
                batch += run[lo:cut] if lo or cut < len(run) else run
                if cut == hi:
                    x[0] = None
                else:
                    x[1] = cut
        batch.sort()
        yield batch
    if live:
        run, lo, hi, it = live[0]
        yield run[lo:hi] if lo or hi < len(run) else run
        yield from it


def newest(runs: Iterable[Union[Run, Clean]], read_negseq: int, reverse: bool = False) -> Iterator[Iterable[Pair]]:
    """The visible pairs of a stream of runs (forward or reverse), in scan order, a list (or a zip) a run.

    ``read_negseq`` is minus the reader's sequence number: entries with a smaller negseq are newer than the
    reader and ignored. A key's versions may continue from one run into the next: forward, the key whose
    newest visible version was decided last is remembered (its older versions are skipped); reverse, the
    versions arrive oldest first, so the smallest key of a run stays pending until a run starting below it
    shows it has no newer version. A `Clean` run costs no Python step a pair.
    """
    keys: Sequence[bytes]
    values: Sequence[bytes]
    if not reverse:
        prev: Optional[bytes] = None
        for run in runs:
            if run.__class__ is tuple:
                keys, values = cast(Clean, run)
                if keys[0] == prev:  # the older versions of a decided key end where this run starts
                    keys, values = keys[1:], values[1:]
                    if not keys:
                        continue
                prev = keys[-1]
                yield zip(keys, values)
                continue
            out: list[Pair] = []
            add = out.append
            for key, negseq, value in cast(Run, run):
                if negseq < read_negseq or key == prev:
                    continue
                prev = key
                if value is not None:
                    add((key, value))
            if out:
                yield out
        return
    cur = b""  # the pending key, and its newest visible value so far (None: none yet, or none pending)
    cur_value: Optional[bytes] = None
    for run in runs:
        if run.__class__ is tuple:
            keys, values = cast(Clean, run)
            hi = len(keys)
            if keys[hi - 1] == cur:  # a newer, visible version of the pending key
                cur_value = values[hi - 1]
                hi -= 1
            if hi:
                if cur_value is not None:
                    yield ((cur, cur_value),)
                if hi > 1:
                    yield zip(keys[hi - 1 : 0 : -1], values[hi - 1 : 0 : -1])
                cur, cur_value = keys[0], values[0]
            continue
        out = []
        add = out.append
        for key, negseq, value in reversed(cast(Run, run)):
            if key != cur:
                if cur_value is not None:
                    add((cur, cur_value))
                cur, cur_value = key, None
            if negseq >= read_negseq:
                cur_value = value
        if out:
            yield out
    if cur_value is not None:
        yield ((cur, cur_value),)


def visible(entries: Iterable[Entry], read_negseq: int, reverse: bool = False) -> Iterator[Pair]:
    """`newest` of one flat stream of entries (in entry order, or exactly reversed): its ``(key, value)``
    pairs one by one."""
    run = list(entries)
    if reverse:
        run.reverse()
    return chain.from_iterable(newest([run], read_negseq, reverse))


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
