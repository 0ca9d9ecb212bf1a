"""One iterator protocol for every layer, and the functions that combine its streams.

A *source* (`Source`: a memtable, a table, a level of tables) gives the entries ``(key, negseq, value)`` of
a key range as *runs*: lists of entries in entry order (key ascending, newest first). A forward stream's
runs follow one another upwards; a reverse stream's runs follow one another downwards, each still in
entry order. So every stage bisects, slices and sorts runs one way, whatever the direction, and C does
that work a run at a time.

A source may also answer for a reader at one sequence number (``read_negseq`` given): then, in place of a
run it knows to be *clean* for that reader (no tombstone, one version a key, none newer than the reader:
a table's block whose decoded summary says so, a memtable run checked in C), it gives a `Clean` run,
``(keys, values, entries)``: the run's entries and their keys and values as columns. A lone source's clean
runs become pairs with ``zip``, and a merge round whose runs are all clean resolves them with a dict and
a sort, with no Python step a pair either way.

- `merge_runs`: several sources' runs -> one stream of sorted runs (forward or reverse), or of `Columns`
  (resolved pairs) for the rounds whose runs are all clean.
- `column_runs`: the `Clean` runs of a source held as sorted columns (a table's points, a memtable's).
- `newest`: a stream of runs -> lists (or zips) of the visible ``(key, value)`` pairs in scan order:
  of each key the newest version at the reader's sequence number, tombstones hidden (docs/design.md,
  invariant 5). Its state carries a key's versions across runs.
- `concat`: the runs of non-overlapping sources (a level's tables), each opened when reached.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Optional, Protocol, Tuple, TypeVar, Union, cast, overload

from .records import Entry

C = TypeVar("C")
Run = list[Entry]
"""Entries in entry order (the consumer must not change it: it may be a cached block's list)."""
Columns = Tuple[Sequence[bytes], Sequence[bytes]]
"""Keys (ascending, one a key) and their values: pairs visible to the reader, with nothing to filter."""
Clean = Tuple[Sequence[bytes], Sequence[bytes], Union[Run, Callable[[], Run]]]
"""A clean run, ``(keys, values, entries)``: every entry visible to the reader, none a tombstone, one a
key, as columns and as the entries themselves (which a merge round with unclean runs sorts), or a
callable that makes them (a table's clean run sliced or joined only if a round needs it); never empty.
`newest` reads only its first two items, so it also takes `Columns`."""
Pair = Tuple[bytes, bytes]


class Source(Protocol):
    """What memtables, tables and levels provide: their entries of ``[start, stop)`` as runs, forward or
    reverse (see the module docstring), lazily. With ``read_negseq`` a run may come as `Clean`; ``merged``
    says the runs feed `merge_runs`, where longer runs mean fewer rounds (a lone source's clean runs are
    best short: they cost nothing a pair, and a seek reads no further than it needs)."""

    @overload
    def chunks(
        self, start: Optional[bytes] = None, stop: Optional[bytes] = None, reverse: bool = False,
        read_negseq: None = None, *, merged: bool = False,
    ) -> Iterator[Run]: ...

    @overload
    def chunks(
        self, start: Optional[bytes], stop: Optional[bytes], reverse: bool, read_negseq: int, *, merged: bool = False
    ) -> Iterator[Union[Run, Clean]]: ...


def column_runs(
    keys: Sequence[bytes], values: Sequence[bytes], entries: Callable[[int, int], Run], start: Optional[bytes],
    stop: Optional[bytes], reverse: bool, first: int, longest: int,
) -> Iterator[Clean]:
    """The `Clean` runs of ``[start, stop)`` of a source held as columns: ``keys`` ascending, one version a
    key, ``values[i]`` the value of ``keys[i]``, all visible to the reader and none a tombstone (the
    caller's to know); ``entries(i, j)`` makes the entries of ``keys[i:j]`` for a merge round that sorts
    them. The first run holds ``first`` keys, each later one twice as many as the one before, up to
    ``longest``. Cost: one bisection an end, then two slices a run, in C."""
    lo = 0 if start is None else bisect_left(keys, start)
    hi = len(keys) if stop is None else bisect_left(keys, stop)
    size = first
    while lo < hi:
        if reverse:
            i, j = max(lo, hi - size), hi
            hi = i
        else:
            i, j = lo, min(hi, lo + size)
            lo = j
        yield keys[i:j], values[i:j], partial(entries, i, j)
        size = min(2 * size, longest)


def concat(openers: Iterable[Callable[[], Iterator[C]]]) -> Iterator[C]:
    """Chain the runs of non-overlapping sources (in the stream's order), opening each only when reached,
    so a short scan touches only the tables it needs."""
    for open_runs in openers:
        yield from open_runs()


@overload
def merge_runs(sources: Sequence[Iterable[Run]], reverse: bool = False) -> Iterator[Run]: ...


@overload
def merge_runs(
    sources: Sequence[Iterable[Union[Run, Clean]]], reverse: bool = False
) -> Iterator[Union[Run, Clean, Columns]]: ...


def merge_runs(
    sources: Sequence[Iterable[Union[Run, Clean]]], reverse: bool = False
) -> Iterator[Union[Run, Clean, Columns]]:
    """Merge sources of runs into one stream of sorted runs, in the direction of the sources' streams.

    Each round takes, of the sources' current runs, the end nearest the stream's start as a bound
    (forward: the smallest last entry; reverse: the largest first entry): every entry on the near side of
    it, from every source, has then been read. Those entries are cut out with `bisect` and sorted together
    (the C sort merges the runs); at least one source's run is used up each round. Once one source is
    left its runs pass through untouched.

    A round whose runs are all `Clean` is resolved instead of sorted: its bound is a key, so every version
    of a key it holds, from every source's current run, is in the round; a dict fed from the oldest source
    to the newest keeps each key's newest version (a newer source holds newer versions: the LSM
    invariant), and the round comes out as `Columns` (a single contributing run as its slices, with no
    dict). Forward, a key may still continue into a later run of the same source (older versions in a
    table's next block): `newest` drops it there. Reverse, a later run would bring *newer* versions, which
    `newest` would take over the round's choice, possibly another source's newer still: so a source's
    clean run, in a reverse stream, must hold every version of its lowest key that the source's next
    runs would (`TableReader.chunks` does not call clean a block part whose first key continues from the
    block below). Sources must be given newest first.
    Cost: O(k) Python steps a round for k sources, O(log k) C comparisons an entry. Sequence numbers are
    unique, so no two entries compare equal and values are never compared.
    """
    live: list[list] = [[None, 0, 0, iter(source), None] for source in sources]  # [entries, lo, hi, iterator, Clean]
    while True:
        # Refill the sources whose run the last round used up; only now, so a scan that stops after a
        # round never reads further.
        for x in live:
            if x[0] is None:
                run = next(filter(None, x[3]), None)  # the next non-empty run
                if run.__class__ is tuple:
                    x[0], x[1], x[2], x[4] = run[2], 0, len(run[0]), run  # type: ignore[index]
                else:
                    x[0], x[1], x[2], x[4] = run, 0, 0 if run is None else len(run), None  # type: ignore[arg-type]
        live = [x for x in live if x[0] is not None]
        if len(live) < 2:
            break
        if all([x[4] is not None for x in live]):
            yield _resolved_round(live, reverse)
            continue
        for x in live:
            if x[0].__class__ is not list:  # a clean run's entries not read yet
                x[0] = x[0]()
        runs = [x[0] for x in live]
        batch: Run = []
        for run, (i, j) in zip(runs, _cut(live, runs, reverse)):
            batch += run[i:j] if i or j < len(run) else run
        batch.sort()
        yield batch
    if live:
        run, lo, hi, it, clean = live[0]
        if clean:
            yield (clean[0][lo:hi], clean[1][lo:hi]) if lo or hi < len(clean[0]) else clean
        else:
            yield run[lo:hi] if lo or hi < len(run) else run
        yield from it


def _cut(live: list[list], items: list[Sequence], reverse: bool) -> list[tuple[int, int]]:
    """One round's cut of the sources' current runs (``items[k]``: source k's entries, or its keys, from
    ``live[k]``'s lo to hi): the bound is the end nearest the stream's start (forward: the smallest last
    item; reverse: the largest first one), and each source gives the slice ``(i, j)`` on the near side of
    it. What is left stays for the next round; a run used up is marked (None) for a refill."""
    if reverse:
        bound = max([s[x[1]] for x, s in zip(live, items)])
    else:
        bound = min([s[x[2] - 1] for x, s in zip(live, items)])
    cut_at = bisect_left if reverse else bisect_right
    taken = []
    for x, s in zip(live, items):
        lo, hi = x[1], x[2]
        cut = cut_at(s, bound, lo, hi)
        taken.append((cut, hi) if reverse else (lo, cut))
        if cut == (lo if reverse else hi):
            x[0] = None
        else:
            x[2 if reverse else 1] = cut
    return taken


def _resolved_round(live: list[list], reverse: bool) -> Columns:
    """One round of `merge_runs` over clean runs only (``live`` newest source first), cut by key: the pairs
    on the near side of the bound, each key's from its newest source. Cost: C passes (bisect, slices,
    ``dict.update``, one sort of the keys)."""
    columns = [x[4] for x in live]
    taken = _cut(live, [c[0] for c in columns], reverse)
    parts = [(k[i:j], v[i:j]) if i or j < len(k) else (k, v) for (k, v, _), (i, j) in zip(columns, taken) if i < j]
    if len(parts) == 1:
        return parts[0]
    merged: dict[bytes, bytes] = {}
    for keys, values in reversed(parts):  # oldest source first: a newer source's version overwrites
        merged.update(zip(keys, values))
    out = sorted(merged)
    return out, list(map(merged.__getitem__, out))


def newest(
    runs: Iterable[Union[Run, Clean, Columns]], read_negseq: int, reverse: bool = False
) -> Iterator[Iterable[Pair]]:
    """The visible pairs of a stream of runs (forward or reverse), in scan order, a list (or a zip) a run.

    ``read_negseq`` is minus the reader's sequence number: entries with a smaller negseq are newer than the
    reader and ignored. A key's versions may continue from one run into the next: forward, the key whose
    newest visible version was decided last is remembered (its older versions are skipped); reverse, the
    versions arrive oldest first, so the smallest key of a run stays pending until a run starting below it
    shows it has no newer version. A `Clean` run (or `Columns`) costs no Python step a pair.
    """
    keys: Sequence[bytes]
    values: Sequence[bytes]
    if not reverse:
        prev: Optional[bytes] = None
        for run in runs:
            if run.__class__ is tuple:
                keys, values = run[0], run[1]  # type: ignore[index]
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
            keys, values = run[0], run[1]  # type: ignore[index]
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
