"""The write-ahead log: every write is appended here before it touches the memtable.

Byte layout: a framed file (see framing.py) of records, each one atomic write:

    type 1 WRITE   payload: a batch (see records.py), recovered whole or not at all
    type 2 PUT     payload: seq: u64 LE | key_len: u32 LE | key | value (the rest)
    type 3 DELETE  payload: seq: u64 LE | key (the rest)

A single put or delete (the dbm mapping's every write) is one PUT or DELETE record: no op list and no
batch encoder on the hot path.

Durability modes (the contract's flags):

- ``BUFFERED`` ('f'): records collect in the process and reach the OS every 64 KiB, on `sync()` and `close()`.
- ``OS`` (default): each record is handed to the OS (one ``os.write``) before the write returns, so
  killing the process loses nothing acknowledged.
- ``SYNC`` ('s'): as OS, then fsync before returning. Group commit: a writer that finds an fsync in progress
  waits for it and returns at once if that fsync covered its record, so concurrent writers share fsyncs.

Write errors (disk full, EIO): a failed append is cut back off the file (``ftruncate`` to the last whole
record), so the log never holds a torn record followed by good ones and the writer stays usable. A failed
fsync is different: the kernel may already have dropped the unwritten pages (PostgreSQL's "fsyncgate"), so
a later fsync could succeed over a hole. The writer is then *failed*: every later append raises
`byrondbm.error` until the database is reopened (recovery replays what reached the disk), as LevelDB's
sticky background error and RocksDB's read-only mode do.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
import threading
import time
from zlib import crc32

from ..errors import CorruptionError, error
from .fileio import sync_fd, write_all
from .framing import frame, read_records
from .records import Entry, Op, decode_batch

WRITE = 1
PUT = 2
DELETE = 3
_PUT_HEAD = struct.Struct("<QI")
_SEQ = struct.Struct("<Q")
# A single put's whole frame built in one pass (framing.py's layout: crc | length | type | payload):
_CRC = struct.Struct("<I")
_PUT_FRAME = struct.Struct("<IBQI")  # length, type, then the payload's seq and key_len
_DELETE_FRAME = struct.Struct("<IBQ")  # length, type, then the payload's seq
BUFFERED, OS, SYNC = "buffered", "os", "sync"
_BUFFER_LIMIT = 64 * 1024
_GATHER = 0.0001  # seconds a group-commit leader waits for concurrent writers (as PostgreSQL's commit_delay)


class LogWriter:
    """Appends framed batch records to one log file. ``add`` and ``flush`` are called under the engine's
    write lock; ``sync_to`` may be called by many threads at once (group commit)."""

    def __init__(self, path: str, number: int, durability: str, mode: int) -> None:
        self.path = path
        self.number = number
        self._durability = durability
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._written = os.fstat(self._fd).st_size  # bytes handed to the OS
        self._synced = self._written
        self._sync_cond = threading.Condition(threading.Lock())
        self._syncing = False  # a leader is in fsync (with the condition's lock released)
        self._records = 0  # records appended
        self._synced_records = 0
        self._group = 1  # records the last fsync covered: above 1, writers are concurrent
        self._failure: OSError | None = None
        self.closed = False
        self._direct = durability is not BUFFERED  # records go straight to os.write (until failed or closed)

    @property
    def size(self) -> int:
        return self._written + self._buffered

    def add(self, payload: bytes) -> int:
        """Append one record; return the log offset its durability is measured by. Cost: O(len(payload)).

        Raises `OSError` if the write fails (nothing of the record stays in the log) and `byrondbm.error`
        once the writer has failed."""
        return self._add(frame(WRITE, payload))

    def add_put(self, seq: int, key: bytes, value: bytes | None) -> int:
        """Append one PUT (or, for ``value`` None, DELETE) record; as `add` otherwise. The hot path of every
        dbm write: one header pack, a crc32 per part, one join and one ``os.write``."""
        if value is None:
            head = _DELETE_FRAME.pack(_SEQ.size + len(key), DELETE, seq)
            record = b"".join((_CRC.pack(crc32(key, crc32(head))), head, key))
        else:
            head = _PUT_FRAME.pack(_PUT_HEAD.size + len(key) + len(value), PUT, seq, len(key))
            record = b"".join((_CRC.pack(crc32(value, crc32(key, crc32(head)))), head, key, value))
        if not self._direct:
            return self._add(record)
        try:
            n = os.write(self._fd, record)
        except OSError:
            self._cut()
            raise
        if n != len(record):  # a short write: finish it as _append does
            self._cut_to_whole(record, n)
        self._written += n
        self._records += 1
        return self._written

    def _add(self, record: bytes) -> int:
        if self._failure is not None or self.closed:
            raise self._failed()
        if self._durability is BUFFERED:
            if self._buffered and self._buffered + len(record) > _BUFFER_LIMIT:
                self.flush()  # if this raises, the new record was never queued
            self._buffer.append(record)
            self._buffered += len(record)
            return self._written + self._buffered
        self._append(record)
        self._records += 1
        return self._written

    def _append(self, data: bytes) -> None:
        """Write ``data`` whole, or cut what reached the file back off and re-raise."""
        try:
            n = os.write(self._fd, data)  # one call in the usual case
            if n != len(data):
                write_all(self._fd, memoryview(data)[n:])
        except OSError:
            self._cut()
            raise
        self._written += len(data)

    def _cut_to_whole(self, data: bytes, n: int) -> None:
        """Write the rest of a record ``os.write`` took only ``n`` bytes of, or cut it off and re-raise."""
        try:
            write_all(self._fd, memoryview(data)[n:])
        except OSError:
            self._cut()
            raise
        self._written += len(data) - n

    def _cut(self) -> None:
        """Cut a failed append back off the file; if even that fails, the writer is failed."""
        try:
            os.ftruncate(self._fd, self._written)
        except OSError as e:
            self._failure = e
            self._direct = False

    def flush(self) -> None:
        """Hand buffered records to the OS (BUFFERED mode). On failure they stay queued for a retry."""
        if self._failure is not None:
            raise self._failed()
        if self._buffer:
            self._append(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0

    def sync_to(self, offset: int) -> None:
        """Return once every byte before ``offset`` is fsync'ed; one fsync serves every waiter it covers.

        Group commit: the first caller to find no fsync running becomes the leader and fsyncs everything
        written so far, *without* holding the lock; callers arriving meanwhile wait on the condition, and
        the leader's notify wakes them all at once: those covered return, one of the rest leads the next
        fsync. (Queuing on a mutex held during the fsync would hand it over one waiter at a time.)
        """
        if self._synced >= offset:
            return
        cond = self._sync_cond
        with cond:
            while self._synced < offset:
                if self._failure is not None:
                    raise self._failed()
                if self._syncing:
                    cond.wait()
                    continue
                self._syncing = True
                cond.release()
                try:
                    if self._group > 1:
                        time.sleep(_GATHER)  # other writers are active: let them join this fsync
                    target, records = self._written, self._records
                    if self.closed:
                        self._sync_closed()  # rotated away while this caller waited (a close without fsync)
                    else:
                        sync_fd(self._fd)
                except OSError as e:
                    self._failure = e
                    self._direct = False
                    raise
                finally:
                    cond.acquire()
                    self._syncing = False
                    cond.notify_all()
                self._synced = max(self._synced, target)
                self._group = records - self._synced_records
                self._synced_records = records

    def _sync_closed(self) -> None:
        """fsync a closed log through a new descriptor (fsync covers the file, whichever descriptor). A log
        already deleted was retired by a flush, whose table was fsync'ed first: nothing is left to sync."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            sync_fd(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Flush the buffer and fsync everything written so far."""
        self.flush()
        self.sync_to(self._written)

    def _failed(self) -> error:
        f = self._failure
        if f is None:
            return error("log is closed", self.path)
        return error(f.errno, f"log unusable after a failed write or fsync ({f.strerror}); reopen the database", self.path)

    def close(self, sync: bool) -> None:
        """Flush (and fsync if ``sync``) then close; the descriptor is closed even if that fails (the
        error is raised after). Idempotent."""
        if self.closed:
            return
        with self._sync_cond:
            while self._syncing:  # never close the descriptor under a running fsync
                self._sync_cond.wait()
            try:
                if self._failure is None:
                    self.flush()
                    if sync and self._synced < self._written:
                        sync_fd(self._fd)
                        self._synced = self._written
            except OSError as e:
                self._failure = e
                self._direct = False
                raise
            finally:
                self.closed = True
                self._direct = False
                os.close(self._fd)


def read_log(path: str) -> tuple[list[tuple[int, list[Op]]], int, int]:
    """Recover a log: ``(batches, valid_end, file_size)``; each batch is ``(first_seq, ops)``.

    A torn tail (``valid_end < file_size``) is for the caller to drop; damage elsewhere raises
    `CorruptionError` naming the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    batches, valid_end = parse_log(data, path)
    return batches, valid_end, len(data)


def parse_log(data: bytes, path: str) -> tuple[list[tuple[int, list[Op]]], int]:
    """The records of log bytes ``data`` (a whole log, or its part from a record boundary) as batches
    ``(first_seq, ops)``, and the offset just past the last whole one: a torn tail is for the caller to
    drop or read again; damage before it raises `CorruptionError` naming ``path``."""
    records, valid_end = read_records(data, path)
    return [decode_record(rtype, payload, path) for rtype, payload in records], valid_end


def read_entries(path: str, after_seq: int) -> Iterator[Entry]:
    """Every write of the log at ``path`` numbered above ``after_seq``, as entries ``(key, -seq, value)`` in
    log order (a flush job's replay: a PUT record is decoded inline, the rest by `decode_record`). A torn
    tail is dropped; damage elsewhere raises `CorruptionError`."""
    with open(path, "rb") as f:
        data = f.read()
    records, _valid_end = read_records(data, path)
    size = _PUT_HEAD.size
    unpack = _PUT_HEAD.unpack_from
    for rtype, payload in records:
        if rtype == PUT and len(payload) >= size:
            seq, klen = unpack(payload)
            end = size + klen
            if end <= len(payload):
                if seq > after_seq:
                    yield payload[size:end], -seq, payload[end:]
                continue
        first_seq, ops = decode_record(rtype, payload, path)
        for i, (key, value) in enumerate(ops):
            if first_seq + i > after_seq:
                yield key, -(first_seq + i), value


def decode_record(rtype: int, payload: bytes, path: str) -> tuple[int, list[Op]]:
    """One record as ``(first_seq, ops)``; a length or type that does not fit raises `CorruptionError`."""
    if rtype == PUT:
        if len(payload) < _PUT_HEAD.size:
            raise CorruptionError("put record shorter than its header", path)
        seq, klen = _PUT_HEAD.unpack_from(payload)
        end = _PUT_HEAD.size + klen
        if end > len(payload):
            raise CorruptionError("put record key runs past the record", path)
        return seq, [(payload[_PUT_HEAD.size : end], payload[end:])]
    if rtype == DELETE:
        if len(payload) < _SEQ.size:
            raise CorruptionError("delete record shorter than its header", path)
        return _SEQ.unpack_from(payload)[0], [(payload[_SEQ.size :], None)]
    if rtype == WRITE:
        return decode_batch(payload, path)
    raise CorruptionError(f"unknown record type {rtype} in log", path)
