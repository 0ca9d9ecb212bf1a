"""A reader's catch-up with the files a writer (another process, or this one) keeps changing.

A reader (flag ``'r'``) takes no lock and writes nothing in the directory. It keeps what it has read: the
manifest CURRENT names (open, its size, the offset after its last whole edit), the tables that
manifest lists (open), and for each live log an open descriptor, the offset after its last whole record
and a memtable. `Follower.catch_up` brings all of it to the files' present state:

1. CURRENT unchanged (one ``stat``), the manifest neither grown nor unlinked (one ``fstat``) and no log
   grown (one ``fstat`` each): nothing is read. The manifest grown: only its new bytes are read and their
   edits folded into the state. CURRENT naming another manifest (rotated once or many times, or a writer
   reopened): that manifest is read whole. It starts with a snapshot of the whole state, so no edit is ever missed however often the
   writer switched manifests between two catch-ups (RocksDB's secondary instances lost edits when a
   manifest switched twice between catch-ups; following CURRENT, never a guessed successor, avoids that).
2. Tables: those the state lists and we lack are opened; those it no longer lists are dropped (a version
   still held by a scan or snapshot keeps them open: the descriptor closes with the last reference).
3. Logs: retired ones are dropped; the new bytes of each live log are read, oldest log first, and put into
   its memtable (a log read for the first time starts from its image, memimage.py, when one matches). A record still being written at the end is "not there yet": it is read again next time.

The writer records an edit before it unlinks what the edit retires, so a table or log missing when we open
it means the manifest moved on: it is read again (never an error). A manifest that does not extend the one
we followed (a lower sequence number or file counter, a table number with other contents, a log with
another inode) means the database was replaced or repaired under us: `byrondbm.error`, never wrong data.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import Optional

from ..errors import CorruptionError, error
from . import filenames, memimage
from .manifest import ManifestState, apply_edits, read_current
from .memtable import Memtable
from .recovery import apply_batches, arrange, table_metas
from .sstable import BlockCache, TableReader
from .version import Version
from .versionset import open_table
from .wal import parse_log

__all__ = ["Follower"]

_ATTEMPTS = 100
"""Catch-up attempts when files keep moving under it; each attempt reads what moved, so this bounds only
a writer that retires files faster than a reader can open them."""
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class _Moved(Exception):
    """A file the manifest listed is gone: the manifest moved on and must be read again."""


@dataclasses.dataclass
class _Log:
    """One live log as far as we have read it."""

    path: str
    fd: int
    inode: int
    mem: Memtable
    offset: int = 0  # just past the last whole record applied to ``mem``
    size: int = 0  # the file's size when we last read it


class Follower:
    """What a reader has read of the directory, and how to read what is new. Not thread-safe: the engine
    calls it under its write lock. `state`, `version` and `last_seq` describe the result of the last
    successful `catch_up`."""

    def __init__(self, directory: str, cache: BlockCache) -> None:
        self.directory = directory
        self._cache = cache
        self._current = filenames.path(directory, filenames.CURRENT)
        self._current_id: tuple[int, int, int] = (-1, -1, -1)  # CURRENT's inode, mtime, size
        self._manifest = ""  # path of the manifest followed
        self._manifest_fd = -1  # kept open: fstat tells its growth, and its unlinking (a switch), cheaply
        self._manifest_size = -1
        self._manifest_end = 0  # just past its last whole edit
        self.state = ManifestState()
        self._tables: dict[int, TableReader] = {}
        self._logs: dict[int, _Log] = {}
        self._empty = Memtable(0)  # the active memtable when no log is live (after a repair)
        self.last_seq = 0
        self.version: Optional[Version] = None
        self._stale = True  # the state, tables or logs changed since `version` was built
        self._unfinished = False  # a catch-up raised: the next one must not trust `unchanged`

    # ------------------------------------------------------------------ catching up

    def catch_up(self, keep_old: bool) -> bool:
        """Read what changed since the last call; return whether anything did. ``keep_old`` keeps in the
        memtables the versions new log records overwrite (needed once anyone may read at an older sequence
        number). Cost: `unchanged`'s stat calls when nothing changed; else the new manifest edits and log
        bytes, and the opening of new tables. Raises `byrondbm.error` for a database replaced or repaired
        under us, `CorruptionError` for damage."""
        if self.version is not None and not self._unfinished and self.unchanged():
            return False
        self._unfinished = True  # until this call succeeds: what it read is not in `version` yet
        for _ in range(_ATTEMPTS):
            try:
                self._follow_manifest()
                self._sync_tables()
                self._sync_logs()
                self._tail_logs(keep_old)
                break
            except _Moved:
                continue
        else:
            raise error(errno.ENOENT, f"database files kept disappearing while read ({_ATTEMPTS} attempts): "
                        "was it removed?", self.directory)
        if self._stale:
            mems = [self._logs[n].mem for n in sorted(self._logs)]
            self.version = Version(mems[-1] if mems else self._empty, tuple(reversed(mems[:-1])),
                                   arrange(self.state, self._tables))
            self._stale = False
        self._unfinished = False
        return True

    def unchanged(self) -> bool:
        """True when CURRENT, the manifest and every live log are as we last read them. Cost: one ``stat``
        and one ``fstat`` plus one ``fstat`` a live log; no read."""
        if self._manifest_moved():
            return False
        return all(os.fstat(log.fd).st_size == log.size for log in self._logs.values())

    def _manifest_moved(self) -> bool:
        """True when CURRENT changed, or the manifest grew or was unlinked, since we read them."""
        if self._current_moved(self._current_id):
            return True
        try:
            m = os.fstat(self._manifest_fd)
        except OSError:
            return True
        return m.st_size != self._manifest_size or not m.st_nlink

    def _current_moved(self, current_id: tuple[int, int, int]) -> bool:
        try:
            c = os.stat(self._current)
        except OSError:
            return True
        return (c.st_ino, c.st_mtime_ns, c.st_size) != current_id

    def _follow_manifest(self) -> None:
        """Fold the manifest's new edits in, or switch to the manifest CURRENT names now."""
        try:
            c = os.stat(self._current)
        except FileNotFoundError:
            raise _Moved from None
        current_id = (c.st_ino, c.st_mtime_ns, c.st_size)
        fd = self._manifest_fd
        st = None if fd < 0 else os.fstat(fd)
        if st is None or current_id != self._current_id or not st.st_nlink:  # unlinked: rotated away
            try:
                path = filenames.path(self.directory, read_current(self.directory))
            except CorruptionError:
                if not os.path.exists(self._current):
                    raise _Moved from None
                raise
            try:
                new_fd = os.open(path, _READ_FLAGS)
            except FileNotFoundError as e:
                if self._current_moved(current_id):
                    raise _Moved from None  # rotated again since CURRENT was read
                raise CorruptionError(f"cannot read manifest ({e.strerror})", path) from None
            new = os.fstat(new_fd)
            if st is not None and path == self._manifest and new.st_ino == st.st_ino:
                os.close(new_fd)  # still the same manifest
            else:
                try:
                    self._switch_manifest(path, new_fd, new.st_size)
                except BaseException:
                    os.close(new_fd)
                    raise
                self._current_id = current_id
                return
        assert st is not None
        if st.st_size != self._manifest_size:
            if st.st_size < self._manifest_end:
                raise error(errno.ESTALE, "database was replaced (its manifest shrank) while open for reading; "
                            "reopen it", self._manifest)
            data = os.pread(fd, st.st_size - self._manifest_end, self._manifest_end)
            self._manifest_end += apply_edits(self.state, data, self._manifest)
            self._manifest_size = st.st_size
            self._stale = True
        self._current_id = current_id

    def _switch_manifest(self, path: str, fd: int, size: int) -> None:
        """Follow manifest ``path`` (open as ``fd``) from now on: read it whole, check that it continues
        the history we followed, and replace the state with its own."""
        state = ManifestState()
        end = apply_edits(state, os.pread(fd, size, 0), path)
        if not end:
            raise CorruptionError("manifest holds no valid edit", path)
        self._check_extends(state, path)
        if self._manifest_fd >= 0:
            os.close(self._manifest_fd)
        self.state = state
        self._manifest, self._manifest_fd, self._manifest_size, self._manifest_end = path, fd, size, end
        self._stale = True

    def _check_extends(self, new: ManifestState, path: str) -> None:
        """Raise `error` unless ``new`` (another manifest) continues the history we followed."""
        if not self._manifest:
            return  # the first manifest read
        old = self.state
        old_tables = {meta.number: meta for meta in table_metas(old, self._manifest)}
        replaced = new.last_seq < old.last_seq or new.next_file < old.next_file or any(
            meta != old_tables.get(meta.number, meta) for meta in table_metas(new, path))
        for n in new.logs:
            log = self._logs.get(n)
            try:
                replaced = replaced or (log is not None and os.stat(log.path).st_ino != log.inode)
            except FileNotFoundError:
                pass  # retired since: the next step reads the manifest again
        if replaced:
            raise error(errno.ESTALE, "database was replaced or repaired while open for reading; reopen it",
                        self.directory)

    def _sync_tables(self) -> None:
        """Open the tables the state lists that we lack; drop the ones it no longer lists."""
        wanted = {meta.number: meta for meta in table_metas(self.state, self._manifest)}
        for n in [n for n in self._tables if n not in wanted]:
            del self._tables[n]
            self._cache.evict_table(n)
            self._stale = True
        for n, meta in wanted.items():
            if n not in self._tables:
                try:
                    self._tables[n] = open_table(self.directory, n, self._cache, meta.file_size)
                except CorruptionError:
                    if self._manifest_moved():
                        raise _Moved from None  # compacted away meanwhile
                    raise
                self._stale = True

    def _sync_logs(self) -> None:
        """Open the logs the state lists that we lack; close the retired ones (their data is in tables)."""
        live = set(self.state.logs)
        for n in [n for n in self._logs if n not in live]:
            os.close(self._logs.pop(n).fd)
            self._stale = True
        for n in self.state.logs:
            if n not in self._logs:
                path = filenames.path(self.directory, filenames.log_name(n))
                try:
                    fd = os.open(path, _READ_FLAGS)
                except FileNotFoundError:
                    if self._manifest_moved():
                        raise _Moved from None  # flushed and retired meanwhile
                    raise CorruptionError("log listed in the manifest is missing", path) from None
                self._logs[n] = _Log(path, fd, os.fstat(fd).st_ino, Memtable(n))
                self._stale = True

    def _tail_logs(self, keep_old: bool) -> None:
        """Apply every log's whole records past what we read, oldest log first (sequence order)."""
        last = max(self.last_seq, self.state.last_seq)
        for n in sorted(self._logs):
            log = self._logs[n]
            size = os.fstat(log.fd).st_size
            if size < log.offset:
                raise error(errno.ESTALE, "database was replaced (a log shrank) while open for reading; reopen it",
                            log.path)
            if size != log.size:
                if not log.offset:
                    last = self._load_image(log, size, last)
                batches, end = parse_log(os.pread(log.fd, size - log.offset, log.offset), log.path)
                last = apply_batches(batches, log.mem, last, log.path, keep_old)
                log.mem.max_seq = self.last_seq = last
                log.offset += end
                log.size = size
        self.last_seq = last

    def _load_image(self, log: _Log, size: int, last: int) -> int:
        """Start a log we have not read from its image (memimage.py) when the image matches the log's
        first bytes, as a writer's open does; return the new last sequence number. The image holds only
        each key's newest version: enough, since no scan or snapshot of ours can see this log yet."""
        data = os.pread(log.fd, size, 0)
        n = log.mem.log_number
        loaded = memimage.load(filenames.path(self.directory, filenames.image_name(n)), n, data, last)
        if loaded is None:
            return last
        log.mem, log.offset, image_last = loaded
        log.mem.max_seq = image_last
        return image_last

    def close(self) -> None:
        """Close the manifest's and the logs' descriptors (tables close with the last version holding
        them). Idempotent."""
        for log in self._logs.values():
            os.close(log.fd)
        self._logs.clear()
        if self._manifest_fd >= 0:
            os.close(self._manifest_fd)
            self._manifest_fd = -1
