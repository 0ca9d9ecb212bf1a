"""The memtable: recent writes, in memory, backed by one write-ahead log.

A dict maps each key to its newest entry, or — while a snapshot or scan is pinned — to the list of its
entries, oldest first (the older ones are what pinned readers may still need). Point lookups are a dict
lookup (O(1)), and so is a put: keys are *sorted lazily*. A new key is only appended to ``new_keys``
(first-insertion order); a scan or a flush first folds the keys added since the last fold into a
`SortedList` (one C sort when many are pending, an O(log n) insertion each when few are). So a stream of
puts never pays for ordering (~2 µs a new key with an eager sorted insert), and a scan after k new keys
pays O(k log n) once. A range scan re-seeks every run of keys (at most `CHUNK`), so writes may go on between
runs without disturbing it (it filters by sequence number).

Threads: puts run under the engine's write lock; scans and flushes may run concurrently with them and with
each other. Only a fold changes the `SortedList`, and folds and chunk reads hold the memtable's own lock,
so a scan never blocks writers. Reading the dict and ``new_keys`` while a put changes them is safe (each
read is one atomic operation under the GIL).

Scans that read it often while it does not change (a read-mostly memtable, an immutable one) make it
build *columns*: its keys in order, their values and entries, as lists (24 bytes a key), so that a run is
two slices instead of a bisection of the `SortedList`, a dict probe a key and checks; a write makes them
stale (`_columns_if_due`).

It also carries what an exact, cheap ``len()`` needs: ``live`` counts its keys whose newest entry is a
value, and ``new_keys`` lists its keys in first-insertion order; the engine resolves, once per key, whether
the key was live in the state below this memtable (``prior_live``). The state below a memtable never
changes (flushes and compactions keep its meaning), so each resolution stays true.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import List, Tuple, Union, overload

from sortedcontainers import SortedList

from .iterators import Clean, column_runs
from .records import Entry

CHUNK = 512
FIRST_CHUNK = 32
COLUMNS_AFTER = 0.25
"""`Memtable._columns_if_due`: scans build the columns once their runs have read this share of the keys."""
ENTRY_OVERHEAD = 48  # bytes charged per entry on top of key and value, so tiny entries still fill it

Versions = Union[Entry, list]
Columns = Tuple[int, List[bytes], List[bytes], List[Entry], int]
"""A memtable's keys in order, their values and their entries, built when ``entries`` had the first
value, and the smallest negseq of those entries (its newest)."""
_NEGSEQ = itemgetter(1)
_VALUE = itemgetter(2)


def _between(entries: List[Entry], i: int, j: int) -> List[Entry]:
    return entries[i:j]


class Memtable:
    """Sorted in-memory entries of one log (number ``log_number``)."""

    def __init__(self, log_number: int) -> None:
        self.log_number = log_number
        self._map: dict[bytes, Versions] = {}
        self.slot = self._map.get
        """``slot(key)``: the key's one entry, or the list of its versions (oldest first), or None; what
        `Version`'s lookup inlines of `get` (a dict probe, no Python frame)."""
        self._keys = SortedList()  # new_keys[:_folded], sorted
        self._folded = 0
        self._fold_lock = threading.Lock()
        self.size = 0  # bytes charged
        self.live = 0
        self.new_keys: list[bytes] = []
        self.resolved = 0  # new_keys[:resolved] have their prior liveness summed in prior_live
        self.prior_live = 0
        self.entries = 0
        self.max_seq = 0
        """Highest sequence number written here: set when the memtable stops changing (rotation, replay)."""
        self.one_version = True  # no key holds a list of versions (nothing for a flush to drop)
        self._columns: Columns | None = None
        self._scanned = [-1, 0]  # [entries when counting began, keys scans read since by the general path]

    def __len__(self) -> int:
        """Number of distinct keys."""
        return len(self._map)

    @property
    def payload_bytes(self) -> int:
        """Bytes of keys and values written into this memtable (what the user wrote)."""
        return self.size - self.entries * ENTRY_OVERHEAD

    def put(self, entry: Entry, keep_old: bool) -> None:
        """Add ``entry`` (newer than any entry of its key here). Keep older versions if ``keep_old``.

        Cost: O(1) (a new key is sorted later, by the first scan or flush that needs it). The hot path of
        every write: a new key is one dict store, one list append and three counter updates.
        """
        key, _, value = entry
        m = self._map
        old = m.get(key)
        if old is None:
            m[key] = entry
            self.new_keys.append(key)
            if value is None:
                self.size += len(key) + ENTRY_OVERHEAD
            else:
                self.live += 1
                self.size += len(key) + len(value) + ENTRY_OVERHEAD
            self.entries += 1  # last, here and below: `_columns_if_due` relies on it
            return
        if type(old) is list:
            was_live = old[-1][2] is not None
            if keep_old:
                old.append(entry)
            else:
                m[key] = entry
        else:
            was_live = old[2] is not None
            if keep_old:
                self.one_version = False  # before the list is seen: `chunks` reads the flag after the map
                m[key] = [old, entry]
            else:
                m[key] = entry
        self.live += (value is not None) - was_live
        self.size += len(key) + (len(value) if value is not None else 0) + ENTRY_OVERHEAD
        self.entries += 1

    def get(self, key: bytes, read_negseq: int) -> Entry | None:
        """Newest entry of ``key`` with ``negseq >= read_negseq`` (seq at or below the reader's), or None."""
        e = self._map.get(key)
        if e is None:
            return None
        if type(e) is list:
            for x in reversed(e):
                if x[1] >= read_negseq:
                    return x  # type: ignore[no-any-return]
            return None
        return e if e[1] >= read_negseq else None  # type: ignore[return-value]

    def newest(self, key: bytes) -> Entry | None:
        """Newest entry of ``key`` whatever its sequence number."""
        e = self._map.get(key)
        if type(e) is list:
            return e[-1]  # type: ignore[no-any-return]
        return e  # type: ignore[return-value]

    def _fold(self) -> SortedList:
        """Sort the keys added since the last fold into the key list; call with ``_fold_lock`` held.
        Cost: O(k log n) for k new keys (a single sort of everything when k is large)."""
        new_keys = self.new_keys
        n = len(new_keys)  # puts may append meanwhile: they are left for the next fold
        if self._folded < n:
            self._keys.update(new_keys[self._folded : n])
            self._folded = n
        return self._keys

    def iter(self, start: bytes | None = None, stop: bytes | None = None, reverse: bool = False) -> Iterator[Entry]:
        """Every entry with ``start <= key < stop`` in entry order (or its exact reverse), one by one."""
        if not reverse:
            return chain.from_iterable(self.chunks(start, stop))
        return chain.from_iterable(map(reversed, self.chunks(start, stop, True)))

    @overload
    def chunks(
        self, start: bytes | None = None, stop: bytes | None = None, reverse: bool = False,
        read_negseq: None = None, *, merged: bool = False,
    ) -> Iterator[list[Entry]]: ...

    @overload
    def chunks(
        self, start: bytes | None, stop: bytes | None, reverse: bool, read_negseq: int, *, merged: bool = False
    ) -> Iterator[list[Entry] | Clean]: ...

    def chunks(
        self, start: bytes | None = None, stop: bytes | None = None, reverse: bool = False,
        read_negseq: int | None = None, *, merged: bool = False,
    ) -> Iterator[list[Entry] | Clean]:
        """The entries with ``start <= key < stop`` as runs (iterators.py's protocol): lists of the entries
        of up to `FIRST_CHUNK` keys, then of four times more each run up to `CHUNK` (a short scan copies
        little, a long one re-seeks seldom); each run in entry order, the runs upwards, or downwards when
        ``reverse``. With ``read_negseq``, a run of keys with one entry each, none a tombstone and none newer
        than that reader, comes as `Clean` ``(keys, values, entries)`` (checked by two C passes); and once the
        memtable has current columns (`_columns_if_due`) that the reader sees whole, every run comes sliced
        from them (`column_runs`). ``merged`` is accepted for the protocol (the runs are the same).

        Safe while writers insert: each run's keys are read after a fold, under the memtable's lock;
        every key written before the first run is seen, later ones may or may not be, so callers filter
        by sequence number. Cost: O(log n) a run to re-seek, then a C-level pass a key.
        """
        if read_negseq is not None:
            columns = self._columns
            if columns is None or columns[0] != self.entries:
                columns = self._columns_if_due()
            if columns is not None and read_negseq <= columns[4]:
                yield from column_runs(
                    columns[1], columns[2], partial(_between, columns[3]), start, stop, reverse, FIRST_CHUNK, CHUNK
                )
                return
        get = self._map.get
        scanned = self._scanned
        lo, lo_inclusive, hi = start, True, stop  # the keys not read yet: from lo up to hi (excluded)
        size = FIRST_CHUNK
        while True:
            with self._fold_lock:
                ordered = self._fold()
                i = 0 if lo is None else ordered.bisect_left(lo) if lo_inclusive else ordered.bisect_right(lo)
                j = len(ordered) if hi is None else ordered.bisect_left(hi)
                keys = ordered[max(i, j - size) : j] if reverse else ordered[i : min(j, i + size)]
                found = list(map(get, keys))
            # A put makes `one_version` False before it stores a list, so True here means none was read.
            if not self.one_version and list in map(type, found):  # (a put may turn an entry into a list)
                run: list[Entry] = []
                for e in found:
                    if type(e) is list:
                        run += reversed(e)  # type: ignore[arg-type]  # newest first
                    else:
                        run.append(e)  # type: ignore[arg-type]
                found = run  # type: ignore[assignment]
            elif found and read_negseq is not None:
                if scanned[0] == self.entries:
                    scanned[1] += len(found)
                values = list(map(_VALUE, found))  # type: ignore[arg-type]
                if None not in values and min(map(_NEGSEQ, found)) >= read_negseq:  # type: ignore[arg-type]
                    yield keys, values, found  # type: ignore[misc]
                    found = []
            if found:
                yield found  # type: ignore[misc]
            if len(keys) < size:
                return
            if reverse:
                hi = keys[0]
            else:
                lo, lo_inclusive = keys[-1], False
            size = min(4 * size, CHUNK)

    def _columns_if_due(self) -> Columns | None:
        """The memtable as columns for scans (`Columns`), built once scans have read `COLUMNS_AFTER` times
        its keys run by run since its last write (the build, a few C passes over the keys, then costs less
        than the scanning that asked for it; a later scan's run is two slices, with no dict probe), and
        only when every key has one entry and none is a tombstone; else None (and the count starts again).

        They stay right while ``entries`` is unchanged: `put` counts a write after storing it, so a write
        counted after the count is read here (before the build) leaves them stale, and a write counted
        before it was stored before the build read the map. A scan takes them only if its reader sees
        every entry in them; a write after the scan's pin is newer than its reader anyway."""
        self._columns = None  # stale: what it holds would otherwise outlive the writes that replaced it
        entries = self.entries
        scanned = self._scanned
        if scanned[0] != entries:
            scanned[0], scanned[1] = entries, 0
            return None
        if scanned[1] < COLUMNS_AFTER * len(self._map):
            return None
        scanned[1] = 0
        if not self.one_version or self.live != len(self._map):  # versions kept, or a tombstone: none built
            return None
        with self._fold_lock:
            keys = list(self._fold())
        found = list(map(self._map.get, keys))
        if list in map(type, found):
            return None
        values = list(map(_VALUE, found))  # type: ignore[arg-type]
        if None in values or self.entries != entries:
            return None
        columns = self._columns = (entries, keys, values, found, min(map(_NEGSEQ, found), default=0))  # type: ignore[arg-type, assignment]
        return columns  # type: ignore[return-value]

    def sorted_keys(self) -> SortedList:
        """Every key, sorted (for a flush: the memtable no longer changes then). Cost: one fold."""
        with self._fold_lock:
            return self._fold()

    def sorted_entries(self) -> Iterator[Entry]:
        """All entries in entry order, for a flush (the memtable no longer changes then).
        Cost: one sort of the keys not yet folded, then O(1) an entry (in C when every key has one version)."""
        with self._fold_lock:
            keys = self._fold()
        if self.one_version:
            return map(self._map.__getitem__, keys)  # type: ignore[arg-type]
        return self._all_versions(keys)

    def _all_versions(self, keys: Iterable[bytes]) -> Iterator[Entry]:
        get = self._map.get
        for key in keys:
            e = get(key)
            if type(e) is list:
                yield from reversed(e)
            else:
                yield e  # type: ignore[misc]

    def newest_entries(self) -> list[Entry]:
        """The newest entry of every key, in first-insertion order (``new_keys``): what an image saves.
        Cost: O(keys), in C when every key has one version."""
        get = self._map.__getitem__
        if self.one_version:
            return list(map(get, self.new_keys))  # type: ignore[arg-type]
        return [e[-1] if type(e) is list else e for e in map(get, self.new_keys)]  # type: ignore[misc]

    @classmethod
    def restore(
        cls,
        log_number: int,
        keys: Sequence[bytes],
        entries: list[Entry],
        live: int,
        size: int,
        writes: int,
        resolved: int,
        prior_live: int,
    ) -> "Memtable | None":
        """A memtable holding ``entries`` (one per key, first-insertion order; ``keys`` their keys, ``live``
        how many are values) and the bookkeeping saved with them (memimage.py), or None if they cannot be
        one (a key twice, counts out of range). Cost: O(entries), in C."""
        mem = cls(log_number)
        mem._map.update(zip(keys, entries))  # (the same dict: `slot` is bound to it)
        n = len(entries)
        if len(mem._map) != n or not 0 <= resolved <= n or not 0 <= prior_live <= resolved or writes < n:
            return None
        mem.new_keys = list(keys)
        mem.live = live
        mem.size = size
        mem.entries = writes
        mem.resolved = resolved
        mem.prior_live = prior_live
        return mem

    def _check(self) -> None:
        """Assert the invariants: sorted keys, entries of a key newest last, counts right."""
        with self._fold_lock:
            keys = self._fold()
            keys._check()
            assert len(keys) == len(self._map) and all(k in self._map for k in keys)
        live = 0
        for key, e in self._map.items():
            versions = e if type(e) is list else [e]
            assert all(v[0] == key for v in versions)
            assert all(versions[i][1] > versions[i + 1][1] for i in range(len(versions) - 1))
            live += versions[-1][2] is not None
        assert live == self.live, (live, self.live)
        assert len(self.new_keys) == len(self._map)
        assert 0 <= self.resolved <= len(self.new_keys)
        if self.one_version:
            assert not any(type(e) is list for e in self._map.values())
        columns = self._columns
        if columns is not None and columns[0] == self.entries:  # current: exactly the map, in order
            entries, keys, values, found, newest_negseq = columns
            assert keys == list(self._keys) and found == [self._map[k] for k in keys]
            assert values == [e[2] for e in found] and None not in values
            assert newest_negseq == min((e[1] for e in found), default=0)
