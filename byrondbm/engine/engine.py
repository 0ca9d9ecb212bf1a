"""Engine: ties the log, memtables, tables, manifest and compactor together. The only class the mapping
layer (database.py) talks to; it speaks bytes only.

Locks, always taken in this order:

- ``_write_lock``: one writer at a time: sequence numbers, log appends, memtable inserts, rotation, pins.
- ``_work_lock``: one flush or compaction at a time (the background thread, `compact()`, inline work).
- ``_state_lock``: installing a new `Version`, the table-level key count, resolving memtable counts.
- the manifest writer is only used under ``_state_lock``.

Readers take no lock for point lookups: they read ``self._version`` (one reference) and use it.
"""

from __future__ import annotations

import collections
from bisect import bisect_left
import errno
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any, Optional

from ..errors import CorruptionError, error
from ..options import Options
from . import compaction as compaction_mod
from . import filenames
from .compaction import Compaction
from .fileio import sync_dir
from .iterators import concat, merge, merge_chunks, merge_visible, prefix_bounds, visible
from .manifest import FileMeta, ManifestState, ManifestWriter, load as load_manifest
from .memtable import Memtable
from .records import MAX_SEQ, Entry, Op, encode_batch
from .sstable import BlockCache, TableProperties, TableReader, TableWriter, key_hashes
from .version import MAX_LEVELS, Version
from .wal import BUFFERED, OS, SYNC, LogWriter, read_log

__all__ = ["Engine", "BUFFERED", "OS", "SYNC", "destroy", "is_database"]

NEWEST = -MAX_SEQ  # read_negseq that sees every entry
_MANIFEST_ROTATE = 4 * 1024 * 1024
_TOTALS = ("flushes", "compactions", "trivial_moves", "user_bytes_written", "log_bytes_written",
           "table_bytes_written")  # counters kept in the manifest across sessions

_registry_lock = threading.Lock()
_open_dirs: set[str] = set()


def is_database(directory: str) -> bool:
    """True when ``directory`` holds a CURRENT file naming a manifest (cheap; reads one small file)."""
    try:
        from .manifest import read_current

        read_current(directory)
        return True
    except (OSError, CorruptionError):
        return False


def _our_files(directory: str) -> tuple[list[str], list[str]]:
    """(names byrondbm may own, foreign names) in ``directory``."""
    names = os.listdir(directory)
    ours = [n for n in names if filenames.is_ours(n)]
    return ours, [n for n in names if not filenames.is_ours(n)]


def destroy(directory: str) -> None:
    """Remove every byrondbm file of ``directory`` (not LOCK, which the caller holds). Refuses foreign files."""
    ours, foreign = _our_files(directory)
    if foreign:
        raise error(f"refusing to replace {directory!r}: it holds files that are not byrondbm's ({foreign[0]!r})")
    for name in ours:
        if name == filenames.LOST:
            shutil.rmtree(filenames.path(directory, name))
        elif name != filenames.LOCK:
            os.unlink(filenames.path(directory, name))
    sync_dir(directory)


class _DirLock:
    """The LOCK file held with flock, plus an in-process registry: flock alone lets one process open a
    directory twice (the lock belongs to the process), which the contract forbids."""

    def __init__(self, directory: str, exclusive: bool, os_lock: bool, mode: int) -> None:
        self._key = os.path.realpath(directory)
        self._fd = -1
        with _registry_lock:
            if self._key in _open_dirs:
                raise error(errno.EAGAIN, "database is locked (already open in this process)", directory)
            _open_dirs.add(self._key)
        if not os_lock:
            return
        try:
            import fcntl

            path = filenames.path(directory, filenames.LOCK)
            if exclusive:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
            else:
                try:
                    self._fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    return  # read-only opens create nothing; an unlocked copy is readable
            try:
                fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise error(errno.EAGAIN, "database is locked by another process", directory) from None
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1
        with _registry_lock:
            _open_dirs.discard(self._key)


class Engine:
    """A log-structured merge tree in one directory.

    Costs: ``put``/``write`` O(log n) in the memtable plus one log append; ``get`` O(1) per memtable plus,
    per table searched, a bloom check and a cached-block lookup; ``iterate`` O(log k) per entry for k sources.
    """

    def __init__(
        self,
        directory: str,
        options: Options,
        *,
        create: bool = False,
        replace: bool = False,
        read_only: bool = False,
        durability: str = OS,
        lock: bool = True,
        mode: int = 0o666,
    ) -> None:
        self.directory = directory
        self.options = options
        self.read_only = read_only
        self._durability = durability
        self._mode = mode
        self._closed = True
        self._alive = [False]  # what running iterators check: False once closed
        self._write_lock = threading.RLock()
        self._cond = threading.Condition(self._write_lock)
        self._work_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._pins: collections.Counter[int] = collections.Counter()
        self._pointers: dict[int, bytes] = {}
        self._cache = BlockCache(options.block_cache_size)
        self._wal: Optional[LogWriter] = None
        self._replayed: Optional[Memtable] = None
        self._manifest: Optional[ManifestWriter] = None
        self._bg_thread: Optional[threading.Thread] = None
        self._bg_wake = threading.Event()
        self._stopping = False
        self._bg_error: Optional[BaseException] = None
        self.counters: collections.Counter[str] = collections.Counter()  # flushes, compactions, bytes written, retired bloom counts
        self._max_imms = options.max_immutable_memtables
        self._l0_stop = options.l0_stop_trigger
        self._l0_slowdown = options.l0_slowdown_trigger
        self._memtable_size = options.memtable_size
        self._throttle = False  # set when a compactor thread runs: it is what a slowed writer waits for

        try:
            self._prepare_directory(create, replace)
            self._lock = _DirLock(directory, exclusive=not read_only, os_lock=lock, mode=mode)
        except OSError as e:
            if isinstance(e, error):
                raise
            raise error(e.errno, f"cannot open the database directory: {e.strerror}", directory) from e
        try:
            if replace:
                destroy(directory)
            if os.path.exists(filenames.path(directory, filenames.CURRENT)):
                self._recover()
            elif self._has_our_files():
                raise CorruptionError("CURRENT is missing but database files remain", filenames.path(directory, filenames.CURRENT))
            elif read_only or not create:
                raise error(errno.ENOENT, "no byrondbm database here", directory)
            else:
                self._create()
        except BaseException as e:
            self._lock.release()
            if isinstance(e, OSError) and not isinstance(e, error):  # e.g. a full disk while recovering
                raise error(e.errno, f"cannot open the database: {e.strerror}", e.filename or directory) from e
            raise
        self._closed = False
        self._alive[0] = True
        if not read_only and options.background_compaction:
            self._bg_thread = threading.Thread(target=self._background, name="byrondbm-compactor", daemon=True)
            self._bg_thread.start()
            self._throttle = True
            self._bg_wake.set()

    # ------------------------------------------------------------------ opening

    def _prepare_directory(self, create: bool, replace: bool) -> None:
        d = self.directory
        if os.path.isdir(d):
            if replace or not os.path.exists(filenames.path(d, filenames.CURRENT)):
                _, foreign = _our_files(d)
                if foreign:
                    raise error(errno.EEXIST, f"not a byrondbm database and not empty (holds {foreign[0]!r})", d)
            return
        if os.path.lexists(d):
            if not (create or replace) or not os.path.isfile(d) or os.path.getsize(d) != 0:
                raise error(errno.EEXIST, "exists and is not a byrondbm database directory", d)
            os.unlink(d)  # an empty file: nothing to lose (as 'n' over an empty file in dbm)
        elif not create:
            raise error(errno.ENOENT, "no such byrondbm database", d)
        os.mkdir(d, self._mode | ((self._mode & 0o444) >> 2))
        parent = os.path.dirname(os.path.abspath(d))
        sync_dir(parent)

    def _has_our_files(self) -> bool:
        ours, _ = _our_files(self.directory)
        return any(n != filenames.LOCK and not n.endswith(filenames.TEMP_SUFFIX) for n in ours)

    def _path(self, name: str) -> str:
        return filenames.path(self.directory, name)

    def _create(self) -> None:
        state = ManifestState(next_file=1)
        log_number = self._take_number(state)
        manifest_number = self._take_number(state)
        state.logs = [log_number]
        self._wal = LogWriter(self._path(filenames.log_name(log_number)), log_number, self._durability, self._mode)
        sync_dir(self.directory)
        self._manifest = ManifestWriter(self.directory, manifest_number, state, self._mode)
        self._state = state
        self._last_seq = 0
        self._table_count = 0
        self._version = Version(Memtable(log_number), (), [()] * MAX_LEVELS)

    @staticmethod
    def _take_number(state: ManifestState) -> int:
        n = state.next_file
        state.next_file += 1
        return n

    def _recover(self) -> None:
        """Rebuild the state from CURRENT, the manifest, the tables it lists and the logs it lists."""
        state, manifest_name = load_manifest(self.directory)
        names = [n[: -len(filenames.TEMP_SUFFIX)] if n.endswith(filenames.TEMP_SUFFIX) else n
                 for n in os.listdir(self.directory)]  # a temp file left by a crash holds its number too
        used = [p[1] for p in map(filenames.parse, names) if p is not None]
        state.next_file = max([state.next_file] + [n + 1 for n in used])  # never reuse a number on disk
        levels: list[list[TableReader]] = [[] for _ in range(MAX_LEVELS)]
        for level, files in state.levels.items():
            if not 0 <= level < MAX_LEVELS:
                raise CorruptionError(f"manifest names level {level}", self._path(manifest_name))
            for meta in files.values():
                levels[level].append(self._open_table(meta))
        levels[0].sort(key=lambda t: -t.properties.max_seq)
        for level in range(1, MAX_LEVELS):
            levels[level].sort(key=lambda t: t.smallest)
        self._pointers = dict(state.pointers)
        self.counters.update(state.totals)
        self._state = state
        self._last_seq = state.last_seq
        self._table_count = state.count
        mem = Memtable(state.logs[-1] if state.logs else 0)
        self._version = Version(mem, (), levels)
        for number in state.logs:
            self._replay(number, mem)
        if self.read_only:
            self._replayed = mem  # written in an earlier session: not this session's user bytes
            return
        self._reopen_for_writing()

    def _open_table(self, meta: FileMeta) -> TableReader:
        path = self._path(filenames.table_name(meta.number))
        try:
            size = os.path.getsize(path)
        except OSError:
            raise CorruptionError("table listed in the manifest is missing", path) from None
        if size != meta.file_size:
            raise CorruptionError(f"table is {size} bytes, the manifest says {meta.file_size}", path)
        return TableReader(path, meta.number, self._cache)

    def _replay(self, number: int, mem: Memtable) -> None:
        path = self._path(filenames.log_name(number))
        if not os.path.exists(path):
            raise CorruptionError("log listed in the manifest is missing", path)
        batches, _valid_end, _size = read_log(path)  # a torn tail is dropped with the log
        last = self._last_seq
        for first_seq, ops in batches:
            if first_seq + len(ops) - 1 <= last:
                continue  # already in a table
            if first_seq <= last:
                raise CorruptionError(f"log batch at sequence {first_seq} overlaps sequence {last}", path)
            for i, (key, value) in enumerate(ops):
                mem.put((key, -(first_seq + i), value), False)
            last = first_seq + len(ops) - 1
        self._last_seq = last

    def _reopen_for_writing(self) -> None:
        """Flush what the logs held into an L0 table, start a fresh log and a compacted manifest, and remove
        every file the new manifest does not reference."""
        state = self._state
        v = self._version
        mem = v.mem
        edit: dict[str, Any] = {}
        self.counters["user_bytes_written"] += mem.payload_bytes  # written in an earlier session, counted now
        for number in state.logs:
            self.counters["log_bytes_written"] += os.path.getsize(self._path(filenames.log_name(number)))
        if len(mem):
            self._resolve(mem, v, 1)
            number = self._take_number(state)
            reader = self._write_table(number, mem.sorted_entries(), split=False)[0]
            meta = self._meta(reader)
            edit["add"] = [meta.encode(0)]
            self._table_count += mem.live - mem.prior_live
            self.counters["flushes"] += 1
            levels = [(reader,) + v.levels[0]] + list(v.levels[1:])
        else:
            levels = list(v.levels)
        log_number = self._take_number(state)
        manifest_number = self._take_number(state)
        edit.update(last_seq=self._last_seq, count=self._table_count, log_floor=log_number, logs=[log_number],
                    totals={name: self.counters[name] for name in _TOTALS})
        state.apply(edit)
        self._wal = LogWriter(self._path(filenames.log_name(log_number)), log_number, self._durability, self._mode)
        sync_dir(self.directory)
        self._manifest = ManifestWriter(self.directory, manifest_number, state, self._mode)
        self._version = Version(Memtable(log_number), (), levels)
        self._remove_obsolete_files()

    def _remove_obsolete_files(self) -> None:
        live_tables = {t.number for t in self._version.tables()}
        live_logs = set(self._state.logs)
        for name in os.listdir(self.directory):
            parsed = filenames.parse(name)
            obsolete = name.endswith(filenames.TEMP_SUFFIX) or (
                parsed is not None
                and (
                    (parsed[0] == "sst" and parsed[1] not in live_tables)
                    or (parsed[0] == "log" and parsed[1] not in live_logs)
                    or (parsed[0] == "manifest" and self._manifest is not None and name != self._manifest.name)
                )
            )
            if obsolete:
                try:
                    os.unlink(self._path(name))
                except FileNotFoundError:
                    pass

    # ------------------------------------------------------------------ writing

    def _check_open(self) -> None:
        if self._closed:
            raise error("database is closed")

    def write(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` atomically: one log record, consecutive sequence numbers, visible together.

        Returns when the log record is as durable as the open's durability mode promises.
        Cost: one log append plus O(log n) per op in the memtable (the hot path: keep it lean).
        """
        if self._closed or self.read_only:
            self._check_writable()
        if not ops:
            return
        if self._throttle and len(self._version.levels[0]) >= self._l0_slowdown:
            time.sleep(0.001)  # let the compactor catch up before L0 stops writes
        with self._write_lock:
            if self._closed:
                raise error("database is closed")
            v = self._version
            if len(v.imms) >= self._max_imms or len(v.levels[0]) >= self._l0_stop:
                self._make_room()
                v = self._version
            if v.mem.size >= self._memtable_size:
                try:
                    self._rotate()
                except OSError as e:  # a transient failure (disk full) is retried by the next write, up to a bound
                    self.counters["background_errors"] += 1
                    if v.mem.size >= 2 * self._memtable_size:
                        raise error(e.errno, f"writes stopped: cannot start a new log: {e.strerror}", e.filename) from e
                v = self._version
            wal = self._wal
            seq = self._last_seq + 1
            try:
                end = wal.add(encode_batch(seq, ops))  # type: ignore[union-attr]
            except OSError as e:
                raise error(e.errno, f"write to the log failed: {e.strerror}", wal.path) from e  # type: ignore[union-attr]
            put = v.mem.put
            if len(ops) == 1:
                # Published first: point reads (lock-free) read at _last_seq and see either the old entry or
                # this one, a single dict store apart.
                self._last_seq = seq
                key, value = ops[0]
                put((key, -seq, value), bool(self._pins))
            else:
                # Published last, and old versions kept, so a point read never sees half of a batch.
                for key, value in ops:
                    put((key, -seq, value), True)
                    seq += 1
                self._last_seq = seq - 1
        if self._durability is SYNC:
            try:
                wal.sync_to(end)  # type: ignore[union-attr]
            except OSError as e:
                raise error(e.errno, f"fsync of the log failed: {e.strerror}", wal.path) from e  # type: ignore[union-attr]

    def _make_room(self) -> None:
        """Backpressure (DESIGN invariant 6): wait while too many memtables or L0 files are pending."""
        opts = self.options
        while True:
            v = self._version
            if len(v.imms) < opts.max_immutable_memtables and len(v.levels[0]) < opts.l0_stop_trigger:
                return
            if self._bg_thread is None:
                try:
                    self._do_work()
                except OSError as e:
                    raise error(e.errno, f"writes stopped: flush or compaction failed: {e.strerror}", e.filename) from e
                continue
            if self._bg_error is not None:
                raise error(f"writes stopped: background work failed: {self._bg_error}")
            if self._closed:
                raise error("database was closed while this write waited for the compactor")
            self._bg_wake.set()
            self._cond.wait(0.05)

    def _rotate(self) -> None:
        """Make the active memtable immutable and start a new log. Under the write lock.

        The new log is durable and listed in the manifest before it is used; if that fails it is removed and
        nothing changes. The old log is closed after the switch (fsync'ed in 's' mode); a failure there is
        reported to its waiting writers by the log itself, and recovery replays whatever reached the disk.
        """
        old_wal = self._wal
        assert old_wal is not None
        with self._state_lock:
            number = self._take_number(self._state)
            new_wal = LogWriter(self._path(filenames.log_name(number)), number, self._durability, self._mode)
            try:
                sync_dir(self.directory)
                self._manifest_append({"logs": [number]})
            except BaseException:
                new_wal.close(sync=False)
                self._unlink(filenames.log_name(number))
                raise
            self._wal = new_wal
            v = self._version
            self.counters["user_bytes_written"] += v.mem.payload_bytes
            self._version = v.with_memtables(Memtable(number), (v.mem,) + v.imms)
        try:
            old_wal.close(sync=self._durability is SYNC)
        except OSError:
            self.counters["background_errors"] += 1
        self.counters["log_bytes_written"] += old_wal.size
        if self._bg_thread is not None:
            self._bg_wake.set()
            return
        try:
            self._do_work()
        except OSError:  # the rotation stands; the flush is retried by _make_room or the next rotation
            self.counters["background_errors"] += 1

    def _manifest_append(self, edit: dict[str, Any]) -> None:
        """Record ``edit`` durably; start a fresh, compacted manifest when this one grows large."""
        assert self._manifest is not None
        edit["next_file"] = self._state.next_file  # numbers taken since the last edit stay taken after a reopen
        edit["totals"] = {name: self.counters[name] for name in _TOTALS}
        self._manifest.append(edit)  # raises with nothing recorded, so the state is only changed after
        self._state.apply(edit)
        if self._manifest.size > _MANIFEST_ROTATE:
            old = self._manifest
            number = self._take_number(self._state)
            try:
                self._manifest = ManifestWriter(self.directory, number, self._state, self._mode)
            except OSError:
                return  # CURRENT still names the old manifest, which holds every edit: rotate next time
            self.counters["manifest_bytes_written"] += old.bytes_written
            old.close()
            os.unlink(old.path)

    # ------------------------------------------------------------------ reading

    def get(self, key: bytes, read_negseq: Optional[int] = None) -> Optional[bytes]:
        """The value of ``key`` as of ``-read_negseq`` (a snapshot's), by default the last published write."""
        if self._closed:
            raise error("database is closed")
        if read_negseq is None:
            read_negseq = -self._last_seq
        v = self._version
        e = v.mem.get(key, read_negseq)  # the active memtable inline: the commonest hit of recent data
        if e is None:
            e = self._lookup(v, key, read_negseq, 1)
        return None if e is None else e[2]

    def _lookup(self, v: Version, key: bytes, read_negseq: int, skip_mems: int) -> Optional[Entry]:
        """Newest entry of ``key`` visible at ``read_negseq``, skipping the ``skip_mems`` newest memtables."""
        if skip_mems == 0:
            e = v.mem.get(key, read_negseq)
            if e is not None:
                return e
        for m in v.imms[skip_mems - 1 :] if skip_mems > 1 else v.imms:
            e = m.get(key, read_negseq)
            if e is not None:
                return e
        if not v.has_tables:
            return None
        hashes = key_hashes(key)
        for t in v.levels[0]:
            if t.smallest <= key <= t.largest:
                e = t.get(key, hashes, read_negseq)
                if e is not None:
                    return e
        for largest, tables in v.sorted_levels:
            i = bisect_left(largest, key)
            if i < len(largest):
                t = tables[i]
                if t.smallest <= key:
                    e = t.get(key, hashes, read_negseq)
                    if e is not None:
                        return e
        return None

    def pin(self) -> tuple[int, Version]:
        """Pin the current sequence number (old versions it sees survive writes and compactions) and
        return it with the current version. Release with `unpin`."""
        with self._write_lock:
            self._check_open()
            seq = self._last_seq
            self._pins[seq] += 1
            return seq, self._version

    def unpin(self, seq: int) -> None:
        with self._write_lock:
            self._pins[seq] -= 1
            if self._pins[seq] <= 0:
                del self._pins[seq]

    def iterate(
        self,
        start: Optional[bytes] = None,
        stop: Optional[bytes] = None,
        reverse: bool = False,
        seq: Optional[int] = None,
        prefix: Optional[bytes] = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Lazily yield ``(key, value)`` for keys in ``[start, stop)`` (and starting with ``prefix``) as of
        one point in time.

        With ``seq`` None, that point is the call (the scan pins it); otherwise ``seq`` must already be
        pinned by the caller (a snapshot). Raises `error` if the database is closed while it runs.
        """
        if prefix is not None:
            start, stop = prefix_bounds(prefix, start, stop)
        pinned, v = self.pin()
        read_seq = pinned if seq is None else seq
        holder: list[weakref.finalize] = []
        gen: Iterator[tuple[bytes, bytes]]
        if start is not None and stop is not None and start >= stop:
            gen = self._nothing(holder)
        elif reverse:
            gen = self._reverse(v, start, stop, read_seq, holder)
        else:
            try:
                sources = self._sources(v, start, stop, False)
            except BaseException:
                self.unpin(pinned)
                raise
            # The forward scan is merge_visible's own generator (no wrapper: one frame less a pair); it
            # calls the holder's unpin when it ends, and the finalizer unpins one never started or dropped.
            gen = merge_visible(sources, -read_seq, self._alive, holder)
        holder.append(weakref.finalize(gen, self.unpin, pinned))
        return gen

    def _sources(self, v: Version, start: Optional[bytes], stop: Optional[bytes], reverse: bool) -> list[Iterator[list[Entry]]]:
        """Chunked sources of ``[start, stop)``, newest first: memtables, L0 tables, then one per level."""
        sources: list[Iterator[list[Entry]]] = [v.mem.chunks(start, stop, reverse)]
        sources += [m.chunks(start, stop, reverse) for m in v.imms]
        sources += [t.chunks(start, stop, reverse) for t in v.levels[0]]
        for level in range(1, MAX_LEVELS):
            tables = v.level_range(level, start, stop)
            if reverse:
                tables.reverse()
            if tables:
                sources.append(concat([_opener(t, start, stop, reverse) for t in tables]))
        return sources

    @staticmethod
    def _nothing(unpin: list[weakref.finalize]) -> Iterator[tuple[bytes, bytes]]:
        unpin[0]()
        yield from ()

    def _reverse(
        self, v: Version, start: Optional[bytes], stop: Optional[bytes], read_seq: int, unpin: list[weakref.finalize]
    ) -> Iterator[tuple[bytes, bytes]]:
        """A reverse scan: a heap merge of the sources' reversed streams (visible keeps the newest version)."""
        try:
            flat = [chain.from_iterable(s) for s in self._sources(v, start, stop, True)]
            for item in visible(merge(flat, True), -read_seq, True):
                if self._closed:
                    raise error("database was closed during iteration")
                yield item
        finally:
            unpin[0]()

    def count(self) -> int:
        """Exact number of live keys. Cost: O(1) after the first call following writes, else one lookup
        per key written since (each key's earlier liveness is resolved once, then remembered)."""
        with self._write_lock:
            self._check_open()
            with self._state_lock:
                v = self._version
                total = self._table_count
                for i, m in enumerate((v.mem,) + v.imms):
                    self._resolve(m, v, i + 1)
                    total += m.live - m.prior_live
                return total

    def _resolve(self, mem: Memtable, v: Version, skip: int) -> None:
        """Resolve whether each newly written key of ``mem`` was live in the state below it."""
        keys = mem.new_keys
        n = len(keys)
        if mem.resolved >= n:
            return
        lookup = self._lookup
        prior = 0
        for key in keys[mem.resolved : n]:
            e = lookup(v, key, NEWEST, skip)
            if e is not None and e[2] is not None:
                prior += 1
        mem.prior_live += prior
        mem.resolved = n

    @property
    def last_sequence(self) -> int:
        return self._last_seq

    # ------------------------------------------------------------------ flush and compaction

    def _background(self) -> None:
        """The compactor thread: flush immutable memtables first, then compact while a level is over target."""
        backoff = 0.05
        while not self._stopping:
            self._bg_wake.wait(1.0)
            self._bg_wake.clear()
            if self._stopping:
                return
            try:
                self._do_work()
                self._bg_error = None
                backoff = 0.05
            except Exception as e:  # retried: a full disk may drain
                self._bg_error = e
                self.counters["background_errors"] += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._bg_wake.set()
            with self._cond:
                self._cond.notify_all()

    def _do_work(self) -> None:
        """Flush every immutable memtable, then run compactions until none is needed."""
        while not self._stopping:
            with self._work_lock:
                if self._version.imms:
                    self._flush_oldest()
                    continue
                c = compaction_mod.pick(self._version, self.options, self._pointers)
                if c is None:
                    return
                self._run_compaction(c)

    def _flush_oldest(self) -> None:
        """Write the oldest immutable memtable as an L0 table and retire its log. Under the work lock."""
        v = self._version
        mem = v.imms[-1]
        with self._state_lock:
            self._resolve(mem, self._version, len(self._version.imms) + 1)
        number = self._new_number()
        entries = mem.sorted_entries()
        if not mem.one_version:  # else every key has one entry, and a flush keeps tombstones: nothing to drop
            entries = compaction_mod.drop_obsolete(entries, self._smallest_snapshot(), lambda key: False)
        outputs = self._write_table(number, entries, split=False)
        with self._state_lock:
            cur = self._version
            imms = tuple(m for m in cur.imms if m is not mem)
            floor = min([m.log_number for m in imms] + [cur.mem.log_number])
            self._table_count += mem.live - mem.prior_live
            edit: dict[str, Any] = {"count": self._table_count, "log_floor": floor, "last_seq": max(mem.max_seq, self._state.last_seq)}
            if outputs:
                edit["add"] = [self._meta(outputs[0]).encode(0)]
            self._manifest_append(edit)
            l0 = tuple(outputs) + cur.levels[0]
            self._version = Version(cur.mem, imms, (l0,) + cur.levels[1:])
            self.counters["flushes"] += 1
        self._unlink(filenames.log_name(mem.log_number))

    def _new_number(self) -> int:
        with self._state_lock:
            return self._take_number(self._state)

    def _smallest_snapshot(self) -> int:
        pins = list(self._pins)
        return min(pins) if pins else self._last_seq

    def _run_compaction(self, c: Compaction) -> None:
        """Merge ``c``'s inputs into its output level (or move a lone table). Under the work lock."""
        v = self._version
        if c.trivial_move:
            t = c.inputs[0]
            with self._state_lock:
                meta = self._meta(t)
                self._manifest_append({"del": [[c.level, t.number]], "add": [meta.encode(c.output_level)],
                                       "pointer": [c.level, t.largest]})
                self._pointers[c.level] = t.largest
                self._install(c, [t])
                self.counters["trivial_moves"] += 1
            return
        sources = [t.chunks(fill_cache=False) for t in c.inputs]
        if c.lower:
            sources.append(concat([_opener(t, None, None, False, False) for t in c.lower]))
        entries = compaction_mod.drop_obsolete(
            chain.from_iterable(merge_chunks(sources)), self._smallest_snapshot(), compaction_mod.is_base_for(v, c.output_level)
        )
        outputs = self._write_table(None, entries, split=True)
        with self._state_lock:
            edit: dict[str, Any] = {
                "del": [[c.level, t.number] for t in c.inputs] + [[c.output_level, t.number] for t in c.lower],
                "add": [self._meta(t).encode(c.output_level) for t in outputs],
                "pointer": [c.level, max(t.largest for t in c.inputs)],
            }
            self._manifest_append(edit)
            self._pointers[c.level] = max(t.largest for t in c.inputs)
            self._install(c, outputs)
            self.counters["compactions"] += 1
        for t in c.all_inputs():
            self._retire_table(t)

    def _install(self, c: Compaction, outputs: list[TableReader]) -> None:
        """Swap in a version without ``c``'s inputs and with ``outputs`` in the output level."""
        cur = self._version
        gone = {t.number for t in c.all_inputs()}
        levels = [[t for t in level if t.number not in gone] for level in cur.levels]
        levels[c.output_level] = sorted(levels[c.output_level] + outputs, key=lambda t: t.smallest)
        self._version = Version(cur.mem, cur.imms, levels)

    def _retire_table(self, t: TableReader) -> None:
        """Unlink a table that left the current version; readers still holding it keep reading it."""
        self.counters["retired_bloom_checks"] += t.bloom_checks
        self.counters["retired_bloom_negatives"] += t.bloom_negatives
        self._cache.evict_table(t.number)
        self._unlink(filenames.table_name(t.number))

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def _write_table(self, number: Optional[int], entries: Iterator[Entry], split: bool) -> list[TableReader]:
        """Write ``entries`` into one table (``number``, or a new one), or with ``split`` into several cut
        near ``target_file_size`` between keys (so tables of a level never share a key). Each is written
        under a temp name, fsync'ed and renamed, and the directory fsync'ed before they are returned.
        Cost: one `TableWriter.add_many` per table (its loop checks the size at each new key)."""
        outputs: list[TableReader] = []
        writer: Optional[TableWriter] = None
        limit = self.options.target_file_size if split else -1
        it = iter(entries)
        carry: Optional[Entry] = next(it, None)
        source = self._interruptible(it) if split else it
        try:
            while carry is not None:
                n = number if number is not None and not outputs else self._new_number()
                writer = TableWriter(self._path(filenames.temp_name(filenames.table_name(n))), self.options, self._mode)
                writer.add(*carry)
                carry = writer.add_many(source, limit)
                outputs.append(self._finish_table(writer, n))
                writer = None
        except BaseException:
            if writer is not None:
                writer.abandon()
            for t in outputs:
                t.close()
                self._unlink(filenames.table_name(t.number))
            raise
        if outputs:
            sync_dir(self.directory)
        return outputs

    def _interruptible(self, entries: Iterator[Entry]) -> Iterator[Entry]:
        """``entries``, raising once close() has begun (checked every 1024 entries)."""
        for i, entry in enumerate(entries):
            if not i & 1023 and self._stopping:
                raise error("compaction interrupted by close")
            yield entry

    def _finish_table(self, writer: TableWriter, number: int) -> TableReader:
        props: TableProperties = writer.finish()
        final = self._path(filenames.table_name(number))
        if os.path.exists(final):
            raise error(f"refusing to overwrite existing table {final}")
        os.replace(self._path(filenames.temp_name(filenames.table_name(number))), final)
        self.counters["table_bytes_written"] += props.file_size
        return TableReader(final, number, self._cache)

    @staticmethod
    def _meta(t: TableReader) -> FileMeta:
        p = t.properties
        return FileMeta(t.number, p.file_size, p.smallest_key, p.largest_key, p.min_seq, p.max_seq,
                        p.num_entries, p.num_deletions)

    def flush(self) -> None:
        """Write every memtable to L0 now (used by `compact`)."""
        self._check_writable()
        with self._write_lock:
            if len(self._version.mem):
                self._rotate()
        while self._version.imms:
            with self._work_lock:
                if self._version.imms:
                    self._flush_oldest()

    def compact(self) -> None:
        """Full compaction: flush, then merge every table into the deepest level, dropping every version
        and tombstone no pinned reader needs. Reclaims the space of deleted and overwritten data."""
        self.flush()
        with self._work_lock:
            v = self._version
            tables = v.tables()
            if not tables:
                return
            out_level = max(1, v.deepest_nonempty())
            sources = [t.chunks(fill_cache=False) for t in v.levels[0]]
            for level in range(1, MAX_LEVELS):
                if v.levels[level]:
                    sources.append(concat([_opener(t, None, None, False, False) for t in v.levels[level]]))
            entries = compaction_mod.drop_obsolete(
                chain.from_iterable(merge_chunks(sources)), self._smallest_snapshot(), lambda key: True
            )
            outputs = self._write_table(None, entries, split=True)
            with self._state_lock:
                edit = {
                    "del": [[level, t.number] for level, ts in enumerate(v.levels) for t in ts],
                    "add": [self._meta(t).encode(out_level) for t in outputs],
                }
                self._manifest_append(edit)
                cur = self._version
                levels: list[Sequence[TableReader]] = [() for _ in range(MAX_LEVELS)]
                gone = {t.number for t in tables}
                levels[0] = [t for t in cur.levels[0] if t.number not in gone]  # flushed since we started
                levels[out_level] = outputs
                self._version = Version(cur.mem, cur.imms, levels)
                self.counters["compactions"] += 1
            for t in tables:
                self._retire_table(t)

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise error("database is open read-only")

    # ------------------------------------------------------------------ durability and closing

    def sync(self) -> None:
        """Everything written so far survives a power cut when this returns."""
        self._check_open()
        if self.read_only:
            return
        try:
            with self._write_lock:
                wal = self._wal
                assert wal is not None
                wal.flush()
            wal.sync()
        except OSError as e:
            raise error(e.errno, f"fsync of the log failed: {e.strerror}", wal.path if wal else None) from e

    def close(self) -> None:
        """Stop the compactor, make the log durable, release the lock. Idempotent. Iterators still running
        raise `error` at their next step."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._alive[0] = False
            self._stopping = True
        self._bg_wake.set()
        if self._bg_thread is not None:
            self._bg_thread.join()
        try:
            if self._wal is not None:
                self._wal.close(sync=True)
            if self._manifest is not None:
                self._manifest.close()
        finally:
            self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ inspection

    def stats(self) -> dict[str, Any]:
        """Levels, memtables, work done and the write amplification it cost, filter and cache efficiency."""
        self._check_open()
        v = self._version
        c = self.counters
        tables = v.tables()
        wal_now = self._wal.size if self._wal is not None else 0
        engine_bytes = c["log_bytes_written"] + wal_now + c["table_bytes_written"]
        user = c["user_bytes_written"] + (v.mem.payload_bytes if v.mem is not self._replayed else 0)
        levels = [
            {"level": i, "files": len(ts), "bytes": sum(t.properties.file_size for t in ts),
             "keys": sum(t.properties.num_entries for t in ts)}
            for i, ts in enumerate(v.levels)
        ]
        return {
            "levels": levels,
            "memtable_bytes": v.mem.size + sum(m.size for m in v.imms),
            "immutable_memtables": len(v.imms),
            "flushes": c["flushes"],
            "compactions": c["compactions"],
            "trivial_moves": c["trivial_moves"],
            "user_bytes_written": user,
            "engine_bytes_written": engine_bytes,
            "write_amplification": round(engine_bytes / user, 3) if user else 0.0,
            "bloom_checks": c["retired_bloom_checks"] + sum(t.bloom_checks for t in tables),
            "bloom_negatives": c["retired_bloom_negatives"] + sum(t.bloom_negatives for t in tables),
            "block_cache_hits": self._cache.hits,
            "block_cache_misses": self._cache.misses,
            "live_keys": self.count(),
            "sequence": self._last_seq,
            "table_bytes": sum(t.properties.file_size for t in tables),
            "background_errors": c["background_errors"],
        }

    def check(self) -> dict[str, Any]:
        """Read and verify every table block of the current version; a report, never an exception for damage."""
        self._check_open()
        problems: list[str] = []
        entries = 0
        tables = self._version.tables()
        for t in tables:
            try:
                entries += t.check()
            except CorruptionError as e:
                problems.append(str(e))
        return {"ok": not problems, "tables": len(tables), "entries": entries, "problems": problems}

    def _check(self) -> None:
        """Assert every structural invariant (tests and the crash harness call it)."""
        with self._write_lock, self._state_lock:
            v = self._version
            v._check()
            assert {t.number for t in v.tables()} == {m for files in self._state.levels.values() for m in files}
            for level in range(1, MAX_LEVELS):
                for t in v.levels[level]:
                    assert t.properties.max_seq <= self._last_seq


def _opener(
    t: TableReader, start: Optional[bytes], stop: Optional[bytes], reverse: bool, fill_cache: bool = True
) -> Callable[[], Iterator[list[Entry]]]:
    """Open ``t``'s chunks later (when `concat` reaches it). Compactions pass ``fill_cache=False`` so one
    merge does not evict every block point lookups use."""
    return lambda: t.chunks(start, stop, reverse, fill_cache=fill_cache)
