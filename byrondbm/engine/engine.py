"""Engine: the database object. Opens the directory (lock, recovery), runs the write path, answers
reads and pins, keeps the exact key count, and reports stats; it speaks bytes only. Background work is the
compactor's (compactor.py), the set of live files the version set's (versionset.py). docs/design.md
describes the whole.

Locks, always taken in this order:

- ``_write_lock``: one writer at a time: sequence numbers, log appends, memtable inserts, rotation, pins.
- the version set's ``lock``: the manifest, the current `Version`, the table-level key count.

Readers take no lock for point lookups: they read the current version (one reference) and use it.

A database opened ``'r'`` is a *reader* beside a possible writer elsewhere: its state comes from a
`Follower` (follower.py), which `refresh` brings up to date; its reads go through the reader-only methods
at the end of this class, so the writer's hot path never pays for them.
"""

from __future__ import annotations

import collections
import errno
import os
import threading
import time
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, Optional

from ..errors import CorruptionError, error
from ..options import Options
from . import directory as dirs
from . import filenames, memimage, readpath
from .backup import backup as backup_to
from .compactor import Compactor
from .fileio import sync_dir
from .follower import Follower
from .iterators import prefix_bounds
from .manifest import ManifestState
from .memtable import Memtable
from .recovery import recover
from .records import MAX_SEQ, Op, encode_batch
from .sstable import BlockCache
from .version import MAX_LEVELS, Version
from .versionset import VersionSet
from .wal import BUFFERED, OS, SYNC, LogWriter

__all__ = ["Engine", "BUFFERED", "OS", "SYNC"]

NEWEST = -MAX_SEQ  # read_negseq that sees every entry


class Engine:
    """A log-structured merge tree in one directory.

    Costs: ``put`` one log append (one ``os.write``) and one dict store; ``get`` O(1) per memtable plus,
    per table searched, a dict probe of its points, else a bloom check, a hash-index bucket and a block
    lookup; ``iterate`` O(log k) per entry for k sources.
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
        timeout: float = 0.0,
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
        self._pins: collections.Counter[int] = collections.Counter()
        self._pin_lock = threading.Lock()  # guards _pins, _pinned and _pinned_versions; alone for the compactor
        self._pinned = False
        self._cache = BlockCache(options.block_cache_size)
        self._wal: Optional[LogWriter] = None
        self._compactor: Optional[Compactor] = None
        self._lock: Optional[dirs.DirLock] = None
        self._memtable_size = options.memtable_size
        self._limit = 0  # a put takes the slow path (_admit) once the memtable's size reaches this
        self._images: dict[int, int] = {}  # log number -> the log length its image on disk (memimage.py) covers
        self._follower: Optional[Follower] = None  # a reader's catch-up (None in a writer)
        self._pinned_versions: dict[int, Version] = {}  # a reader's pinned sequence number -> its version
        self._refresh_interval = options.refresh_interval
        self._next_refresh = 0.0  # monotonic time of a reader's next refresh by refresh_interval
        self._view: tuple[int, Version]  # a reader's (-sequence number, version), published together
        self._published = [0]  # `_last_seq`, negated: what a writer's versions read by default (Version)

        try:
            dirs.prepare(directory, create and not read_only, replace, mode)
            if not read_only:
                self._lock = dirs.DirLock(directory, os_lock=lock, mode=mode, timeout=timeout)
        except OSError as e:
            if isinstance(e, error):
                raise
            raise error(e.errno, f"cannot open the database directory: {e.strerror}", directory) from e
        try:
            if replace:
                dirs.destroy(directory)
            if os.path.exists(filenames.path(directory, filenames.CURRENT)):
                if read_only:
                    self._open_reader()
                else:
                    self._open_writer()
            elif dirs.has_data_files(directory):
                raise CorruptionError("CURRENT is missing but database files remain", filenames.path(directory, filenames.CURRENT))
            elif read_only or not create:
                raise error(errno.ENOENT, "no byrondbm database here", directory)
            else:
                self._create()
        except BaseException as e:
            self._release_lock()
            if isinstance(e, OSError) and not isinstance(e, error):  # e.g. a full disk while recovering
                raise error(e.errno, f"cannot open the database: {e.strerror}", e.filename or directory) from e
            raise
        self._closed = False
        self._alive[0] = True
        if not read_only:
            self._vs.on_install = self._installed
            self._installed(self._vs.current)
            self._compactor = Compactor(self._vs, options, mode, self._smallest_snapshot, self._on_change)
            if options.background_compaction:
                self._compactor.start()
        self._refresh_limit()

    @property
    def _last_seq(self) -> int:
        """The last published sequence number: the one state, kept negated in `_published`, the cell every
        version of a writer reads its default from."""
        return -self._published[0]

    @_last_seq.setter
    def _last_seq(self, seq: int) -> None:
        self._published[0] = -seq

    # ------------------------------------------------------------------ opening

    def _path(self, name: str) -> str:
        return filenames.path(self.directory, name)

    def _create(self) -> None:
        state = ManifestState(next_file=1)
        empty = Version(Memtable(0), (), [()] * MAX_LEVELS, self._published)
        self._vs = VersionSet(self.directory, state, empty, self._cache, self._mode)
        self._start_log([])
        self._last_seq = 0

    def _start_log(self, imms: list[Memtable]) -> None:
        """Start a fresh log and a fresh manifest listing it (and the logs of ``imms``, newest first)."""
        vs = self._vs
        number = vs.new_number()
        vs.state.logs = sorted([m.log_number for m in imms] + [number])
        self._wal = LogWriter(self._path(filenames.log_name(number)), number, self._durability, self._mode)
        sync_dir(self.directory)
        self._mem = Memtable(number)
        vs.current = Version(self._mem, tuple(imms), vs.current.levels, self._published)
        vs.start_manifest()

    def _open_writer(self) -> None:
        """Recover; after a clean close, go on appending to the last log (its memtable came whole from its
        image), else start a fresh log; keep every other log's memtable as immutable (the flusher writes
        them to L0); write a fresh manifest and remove every file it does not reference."""
        r = recover(self.directory, self._cache)
        self._vs = VersionSet(self.directory, r.state, Version(Memtable(0), (), r.levels, self._published), self._cache,
                              self._mode)
        self._images = r.whole_images
        resume = r.memtables[-1] if r.memtables and r.memtables[-1].log_number in r.whole_images else None
        if r.memtables and resume is None:  # the last log was the active one: its writes were never counted
            last = r.memtables[-1]
            self._vs.counters["user_bytes_written"] += last.payload_bytes
            self._vs.counters["log_bytes_written"] += os.path.getsize(self._path(filenames.log_name(last.log_number)))
        imms = [m for m in reversed(r.memtables) if len(m) and m is not resume]
        if resume is None:
            self._start_log(imms)
        else:
            self._resume_log(resume, imms)
        self._last_seq = r.last_seq
        self._vs.remove_obsolete_files()

    def _resume_log(self, mem: Memtable, imms: list[Memtable]) -> None:
        """Make ``mem`` the active memtable again and append to its log (which ends on a whole record: it
        is what a clean close left), as LevelDB's ``reuse_logs``; then write a fresh manifest."""
        vs = self._vs
        vs.state.logs = sorted([m.log_number for m in imms] + [mem.log_number])
        path = self._path(filenames.log_name(mem.log_number))
        self._wal = LogWriter(path, mem.log_number, self._durability, self._mode)
        self._mem = mem
        vs.current = Version(mem, tuple(imms), vs.current.levels, self._published)
        vs.start_manifest()

    def _open_reader(self) -> None:
        """Catch up from nothing, without a lock and without writing (follower.py): every write
        acknowledged before the open began is seen. A writer retiring files meanwhile is followed, never
        reported as damage. The reader's gets go through `_reader_get` (an instance attribute: the
        writer's `get` stays as it is)."""
        follower = Follower(self.directory, self._cache)
        try:
            follower.catch_up(keep_old=False)
        except BaseException:
            follower.close()
            raise
        assert follower.version is not None
        self._follower = follower
        self._vs = VersionSet(self.directory, follower.state, follower.version, self._cache, self._mode)
        self._publish()
        self.get = self._reader_get  # type: ignore[method-assign]
        if self._refresh_interval is not None:
            self._next_refresh = time.monotonic() + self._refresh_interval

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # ------------------------------------------------------------------ writing

    def check_open(self) -> None:
        if self._closed:
            raise error("database is closed")

    def check_writable(self) -> None:
        """Raise `byrondbm.error` unless this engine is open for writing."""
        self.check_open()
        if self.read_only:
            raise error("database is open read-only")

    def put(self, key: bytes, value: Optional[bytes]) -> None:
        """Write one key (``value`` None deletes it): one log record, one memtable store. The hot path of
        every dbm write. Returns when the record is as durable as the open's durability mode promises."""
        with self._write_lock:
            mem = self._mem
            if mem.size >= self._limit:
                mem = self._admit()
            seq = 1 - self._published[0]  # _last_seq + 1, without the property's call
            wal = self._wal
            try:
                end = wal.add_put(seq, key, value)  # type: ignore[union-attr]
            except OSError as e:
                raise error(e.errno, f"write to the log failed: {e.strerror}", wal.path) from e  # type: ignore[union-attr]
            # Published first: point reads (lock-free) read at the published sequence number and see either
            # the old entry or this one, a single dict store apart.
            self._published[0] = -seq
            mem.put((key, -seq, value), self._pinned)
        if self._durability is SYNC:
            self._sync_to(wal, end)  # type: ignore[arg-type]

    def write(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` atomically: one log record, consecutive sequence numbers, visible together.
        Cost: one log append plus one memtable store per op."""
        if not ops:
            self.check_writable()
            return
        with self._write_lock:
            mem = self._mem
            if mem.size >= self._limit:
                mem = self._admit()
            seq = 1 - self._published[0]
            wal = self._wal
            try:
                end = wal.add(encode_batch(seq, ops))  # type: ignore[union-attr]
            except OSError as e:
                raise error(e.errno, f"write to the log failed: {e.strerror}", wal.path) from e  # type: ignore[union-attr]
            put = mem.put
            # Published last, and old versions kept, so a point read never sees half of a batch.
            for key, value in ops:
                put((key, -seq, value), True)
                seq += 1
            self._published[0] = 1 - seq
        if self._durability is SYNC:
            self._sync_to(wal, end)  # type: ignore[arg-type]

    @staticmethod
    def _sync_to(wal: LogWriter, end: int) -> None:
        try:
            wal.sync_to(end)
        except OSError as e:
            raise error(e.errno, f"fsync of the log failed: {e.strerror}", wal.path) from e

    def _admit(self) -> Memtable:
        """The write path's slow branch, under the write lock: refuse a closed or read-only engine, slow
        down or wait while L0 or the flush queue is full (backpressure, docs/design.md invariant 6),
        rotate a full memtable. Returns the memtable to write into."""
        self.check_writable()
        opts = self.options
        c = self._compactor
        assert c is not None
        if c.running and len(self._vs.current.levels[0]) >= opts.l0_slowdown_trigger:
            self._cond.wait(0.001)  # let the compactor catch up before L0 stops writes
            self.check_writable()
        self._make_room()
        if self._mem.size >= self._memtable_size:
            try:
                self._rotate()
            except OSError as e:  # a transient failure (disk full) is retried by the next write, up to a bound
                self._vs.counters["background_errors"] += 1
                if self._mem.size >= 2 * self._memtable_size:
                    raise error(e.errno, f"writes stopped: cannot start a new log: {e.strerror}", e.filename) from e
        self._refresh_limit()
        return self._mem

    def _make_room(self) -> None:
        """Wait while too many memtables or L0 files are pending. A writer that finds the background
        failed (a full disk) runs the work itself at once, so writes resume as soon as space is back."""
        opts = self.options
        c = self._compactor
        assert c is not None
        while True:
            v = self._vs.current
            if len(v.imms) < opts.max_immutable_memtables and len(v.levels[0]) < opts.l0_stop_trigger:
                return
            if not c.running or c.error is not None:
                try:
                    c.work_inline()
                except OSError as e:
                    raise error(e.errno, f"writes stopped: flush or compaction failed: {e.strerror}", e.filename) from e
                continue
            self._cond.wait(0.05)
            self.check_writable()

    def _refresh_limit(self) -> None:
        """Set the size at which a put leaves the fast path: the memtable's limit, or 0 while the engine
        is closed or read-only, or L0 is slowing writes, or the flush queue is full."""
        v = self._vs.current
        opts = self.options
        slow = (
            self._closed
            or self.read_only
            or len(v.imms) >= opts.max_immutable_memtables
            or len(v.levels[0]) >= opts.l0_slowdown_trigger
        )
        self._limit = 0 if slow else self._memtable_size

    def _on_change(self) -> None:
        """The compactor installed a version: re-check the fast path, wake writers waiting for room."""
        self._refresh_limit()
        with self._cond:
            self._cond.notify_all()

    def _rotate(self) -> None:
        """Make the active memtable immutable and start a new log. Under the write lock.

        The new log is durable and listed in the manifest before it is used; if that fails it is removed and
        nothing changes. The old log is closed after the switch (fsync'ed in 's' mode); a failure there is
        reported to its waiting writers by the log itself, and recovery replays whatever reached the disk.
        """
        vs = self._vs
        old_wal = self._wal
        old = self._mem
        assert old_wal is not None
        number = vs.new_number()
        new_wal = LogWriter(self._path(filenames.log_name(number)), number, self._durability, self._mode)
        mem = Memtable(number)
        vs.counters["user_bytes_written"] += old.payload_bytes
        vs.counters["log_bytes_written"] += old_wal.size
        try:
            sync_dir(self.directory)
            vs.log_and_apply({"logs": [number]}, lambda cur: cur.with_memtables(mem, cur.memtables))
        except BaseException:
            vs.counters["user_bytes_written"] -= old.payload_bytes
            vs.counters["log_bytes_written"] -= old_wal.size
            new_wal.close(sync=False)
            vs.unlink(filenames.log_name(number))
            raise
        old.max_seq = self._last_seq
        self._wal = new_wal
        self._mem = mem
        try:
            old_wal.close(sync=self._durability is SYNC)
        except OSError:
            vs.counters["background_errors"] += 1
        c = self._compactor
        assert c is not None
        if c.running:
            c.wake()
            return
        try:
            c.work_inline()
        except OSError:  # the rotation stands; the flush is retried by _make_room or the next rotation
            vs.counters["background_errors"] += 1

    def flush(self) -> None:
        """Write every memtable to L0 now (used by `compact`)."""
        self.check_writable()
        with self._write_lock:
            if len(self._mem):
                self._rotate()
        assert self._compactor is not None
        self._compactor.flush_all()

    def compact(self) -> None:
        """Full compaction: flush, then merge every table into the deepest level, dropping every version
        and tombstone no pinned reader needs. Reclaims the space of deleted and overwritten data."""
        self.flush()
        assert self._compactor is not None
        self._compactor.compact_everything()
        self._refresh_limit()

    def backup(self, dest: str) -> dict[str, Any]:
        """Write at ``dest`` (missing or empty) a database holding exactly this one's state at one instant
        between the call and the return, while writes go on; see backup.py for how and what it costs."""
        return backup_to(self, self._vs, self._write_lock, self._mode, dest)

    # ------------------------------------------------------------------ reading

    def get(self, key: bytes, read_negseq: Optional[int] = None) -> Optional[bytes]:
        """The value of ``key`` as of ``-read_negseq`` (a snapshot's), by default the last published write.

        An open engine shadows this method with an instance attribute: a writer's is the current version's
        lookup itself (`_installed`; it reads the published sequence number from the cell every version of
        the writer shares), so a get runs no frame of the engine's (~0.3 µs of a ~2.5 µs get); a reader's is
        `_reader_get`. This method answers what those do, and serves a closed engine, which it refuses."""
        if self._closed:
            raise error("database is closed")
        if read_negseq is None:
            read_negseq = self._published[0]
        return self._vs.current.get(key, read_negseq)

    def _installed(self, v: Version) -> None:
        """`VersionSet.on_install` of a writer: point `get` at the lookup of ``v``, now the current version
        (not once closing has begun: `close` removes it, so gets raise)."""
        if not self._closed:
            self.get = v.get  # type: ignore[method-assign]

    def get_many(self, keys: list[bytes], read_negseq: Optional[int] = None) -> list[Optional[bytes]]:
        """The values of ``keys`` (any order) as of one moment, ``-read_negseq`` (a snapshot's) or by default
        the last published write; None for an absent key. The keys are looked up in ascending order
        (`Version.get_many`), so each table's blocks are read once. Cost: a sort, then `get`'s per key
        less the block fetches the keys share."""
        if self._closed:
            raise error("database is closed")
        if read_negseq is None:
            if self._follower is None:
                read_negseq, v = self._published[0], self._vs.current
            else:
                if self._refresh_interval is not None and time.monotonic() >= self._next_refresh:
                    self.refresh()
                read_negseq, v = self._view
        else:
            v = self._pinned_versions.get(-read_negseq) or self._vs.current
        order = sorted(range(len(keys)), key=keys.__getitem__)
        values: list[Optional[bytes]] = [None] * len(keys)
        for i, value in zip(order, v.get_many([keys[i] for i in order], read_negseq)):
            values[i] = value
        return values

    def _lookup(self, v: Version, key: bytes, skip_mems: int) -> Optional[bytes]:
        """The value of the newest entry of ``key`` below the ``skip_mems`` newest memtables of ``v`` (None:
        a tombstone, or no entry)."""
        for m in v.memtables[skip_mems:]:
            e = m.newest(key)
            if e is not None:
                return e[2]
        return v.find(key, NEWEST)

    def pin(self) -> tuple[int, Version]:
        """Pin the current sequence number (old versions it sees survive writes and compactions) and
        return it with the current version. Release with `unpin`."""
        with self._write_lock, self._pin_lock:  # the write lock: no put may miss _pinned once seq is read
            self.check_open()
            seq = self._last_seq
            self._pins[seq] += 1
            self._pinned = True
            if self._follower is None:
                return seq, self._vs.current
            # A reader's scans and snapshots read the version of their pin: the writer compacts without
            # knowing them, so a later version may lack what this sequence number sees.
            return seq, self._pinned_versions.setdefault(seq, self._vs.current)

    def unpin(self, seq: int) -> None:
        with self._write_lock, self._pin_lock:
            self._pins[seq] -= 1
            if self._pins[seq] <= 0:
                del self._pins[seq]
                self._pinned_versions.pop(seq, None)
            self._pinned = bool(self._pins)

    def _smallest_snapshot(self) -> int:
        """The oldest pinned sequence number, else the last one. Takes only the pin lock: the compactor
        calls it while a writer may hold the write lock and wait for that compactor."""
        with self._pin_lock:
            last = self._last_seq
            return min(self._pins) if self._pins else last

    def iterate(
        self,
        start: Optional[bytes] = None,
        stop: Optional[bytes] = None,
        reverse: bool = False,
        seq: Optional[int] = None,
        prefix: Optional[bytes] = None,
        keys_only: bool = False,
    ) -> Iterator[Any]:
        """Lazily yield ``(key, value)`` (or keys, with ``keys_only``) for keys in ``[start, stop)`` (and
        starting with ``prefix``) as of one point in time; the pipeline is readpath.py's.

        With ``seq`` None, that point is the call (the scan pins it); otherwise ``seq`` must already be
        pinned by the caller (a snapshot). Raises `error` if the database is closed while it runs.
        """
        if prefix is not None:
            start, stop = prefix_bounds(prefix, start, stop)
        if self._follower is not None:
            self._refresh_if_due()
        pinned, v = self.pin()
        read_seq = pinned if seq is None else seq
        if seq is not None and self._follower is not None:
            v = self._pinned_versions.get(seq, v)  # a reader's snapshot: the version pinned with it
        return readpath.scan(v, start, stop, reverse, read_seq, self._alive, partial(self.unpin, pinned), keys_only)

    def count(self) -> int:
        """Exact number of live keys. Cost: O(1) after the first call following writes, else one lookup
        per key written since (each key's earlier liveness is resolved once, then remembered)."""
        if self._follower is not None:
            self._refresh_if_due()
        with self._write_lock:
            self.check_open()
            with self._vs.lock:
                v = self._vs.current
                total = self._vs.state.count
                for i, m in enumerate(v.memtables):
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
            if lookup(v, key, skip) is not None:
                prior += 1
        mem.prior_live += prior
        mem.resolved = n

    @property
    def last_sequence(self) -> int:
        return self._last_seq

    @property
    def version(self) -> Version:
        """The current version (memtables and tables), for inspection; it never changes once read."""
        return self._vs.current

    # ------------------------------------------------------------------ durability and closing

    def sync(self) -> None:
        """Everything written so far survives a power cut when this returns."""
        self.check_open()
        if self.read_only:
            return
        wal = self._wal
        assert wal is not None
        try:
            with self._write_lock:
                wal.flush()
            wal.sync()
        except OSError as e:
            raise error(e.errno, f"fsync of the log failed: {e.strerror}", wal.path) from e

    def close(self) -> None:
        """Stop background work (running jobs are killed: their outputs are temp files), make the log
        durable, save an image of each memtable (memimage.py: the next open loads them in C, appends to the
        same log and flushes the immutable ones in the background), record the running totals, release the
        lock. Idempotent. Iterators still running raise `error` once they have handed out
        the run of pairs they had already read (readpath.py)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._alive[0] = False
            self._limit = 0
            self.__dict__.pop("get", None)  # gets now raise (`get`, the method)
        try:
            if self._compactor is not None:
                self._compactor.stop()
            self.__dict__.pop("get", None)  # (in case a job installed a version meanwhile)
            if self._wal is not None:
                self._wal.close(sync=True)
                self._save_images()
            if self._follower is not None:
                self._follower.close()
            if not self.read_only:
                self._vs.close()
        finally:
            self._release_lock()

    def _save_images(self) -> None:
        """Save the image of each non-empty memtable whose log its image on disk does not cover whole.
        An image is only a cache of its log: failing to write one costs the next open a replay."""
        v = self._vs.current
        for mem in v.memtables:
            number = mem.log_number
            path = self._path(filenames.log_name(number))
            try:
                if len(mem) and self._images.get(number) != os.path.getsize(path):
                    with open(path, "rb") as f:
                        memimage.save(self.directory, mem, f.read(), self._mode)
            except OSError:
                self._vs.counters["background_errors"] += 1
                self._vs.unlink(filenames.temp_name(filenames.image_name(number)))

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ inspection

    def stats(self) -> dict[str, Any]:
        """Levels, memtables, work done and the write amplification it cost, filter and cache efficiency."""
        self.check_open()
        vs = self._vs
        v = vs.current
        c = vs.counters
        tables = v.tables()
        wal_now = self._wal.size if self._wal is not None else self._log_size(v.mem.log_number)
        engine_bytes = c["log_bytes_written"] + wal_now + c["table_bytes_written"]
        user = c["user_bytes_written"] + v.mem.payload_bytes  # the active memtable (a reader: the last log)
        levels = [
            {"level": i, "files": len(ts), "bytes": sum(t.properties.file_size for t in ts),
             "keys": sum(t.properties.num_entries for t in ts)}
            for i, ts in enumerate(v.levels)
        ]
        compactor = self._compactor
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
            "data_bytes_uncompressed": sum(t.properties.raw_data_bytes for t in tables),
            "data_bytes_stored": sum(t.properties.stored_data_bytes for t in tables),
            "background_errors": c["background_errors"],
            "workers": [] if compactor is None else compactor.worker_pids(),
            "worker_restarts": 0 if compactor is None else compactor.worker_restarts,
        }

    def _log_size(self, number: int) -> int:
        """Bytes of log ``number`` (a reader's last log, which no rotation has counted yet), 0 if gone."""
        try:
            return os.path.getsize(self._path(filenames.log_name(number)))
        except OSError:
            return 0

    def check(self) -> dict[str, Any]:
        """Read and verify every table block of the current version; a report, never an exception for damage."""
        self.check_open()
        problems: list[str] = []
        entries = 0
        tables = self._vs.current.tables()
        for t in tables:
            try:
                entries += t.check()
            except CorruptionError as e:
                problems.append(str(e))
        return {"ok": not problems, "tables": len(tables), "entries": entries, "problems": problems}

    def check_invariants(self) -> None:
        """Assert every structural invariant (tests and the crash harness call it)."""
        with self._write_lock:
            vs = self._vs
            vs._check()
            self._cache._check()
            v = vs.current
            assert v.mem is self._mem
            for level in range(1, MAX_LEVELS):
                for t in v.levels[level]:
                    assert t.properties.max_seq <= self._last_seq

    # ------------------------------------------------------------------ a reader's own

    def refresh(self) -> None:
        """Bring a reader to the writer's latest state: every write acknowledged before the call began is
        seen when it returns. Scans and snapshots already taken keep their point in time. A writer is
        always at its latest state: nothing to do.

        Cost: a few ``stat`` calls when nothing changed; else the new manifest edits and log bytes are
        read and new tables opened (never what was read before). Raises `byrondbm.error` if the database
        was replaced or repaired under this reader, `CorruptionError` for damage."""
        self.check_open()
        follower = self._follower
        if follower is None:
            return
        with self._write_lock:
            if self._refresh_interval is not None:
                self._next_refresh = time.monotonic() + self._refresh_interval
            if follower.catch_up(keep_old=True):
                with self._vs.lock:
                    self._vs.state = follower.state
                    self._publish()

    def _publish(self) -> None:
        """Install the follower's version and sequence number (under the write lock, or at open)."""
        follower = self._follower
        assert follower is not None and follower.version is not None
        self._vs.current = follower.version
        self._mem = follower.version.mem
        self._last_seq = follower.last_seq
        # One store: a lock-free get reads the pair at once, never a version newer than its sequence number
        # (the writer may have compacted away entries an older sequence number needs).
        self._view = (-follower.last_seq, follower.version)

    def _refresh_if_due(self) -> None:
        if self._refresh_interval is not None and time.monotonic() >= self._next_refresh:
            self.refresh()

    def _reader_get(self, key: bytes, read_negseq: Optional[int] = None) -> Optional[bytes]:
        """A reader's `get`: refreshes first when ``refresh_interval`` has passed; reads the (sequence
        number, version) pair published together, or a snapshot's pinned version.
        Cost: `get`'s plus one call."""
        if self._closed:
            raise error("database is closed")
        if read_negseq is None:
            if self._refresh_interval is not None and time.monotonic() >= self._next_refresh:
                self.refresh()
            read_negseq, v = self._view
        else:
            v = self._pinned_versions.get(-read_negseq) or self._vs.current
        return v.get(key, read_negseq)

