"""wal.py: records reach the log in every durability mode; a failed append leaves no torn record and the
writer usable; a failed fsync makes the writer refuse further appends (fsyncgate); group commit."""

from __future__ import annotations

import errno
import os
import threading

import pytest

import byrondbm
from byrondbm.engine import wal
from byrondbm.engine.records import encode_batch


def _batch(i: int) -> bytes:
    return encode_batch(i, [(b"k%d" % i, b"v" * i)])


@pytest.mark.parametrize("durability", [wal.BUFFERED, wal.OS, wal.SYNC])
def test_records_read_back_in_order(tmp_path, durability: str) -> None:
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, durability, 0o644)
    for i in range(1, 200):
        end = w.add(_batch(i))
        if durability is wal.SYNC:
            w.sync_to(end)
    w.close(sync=True)
    batches, valid_end, size = wal.read_log(path)
    assert [b[0] for b in batches] == list(range(1, 200))
    assert batches[5][1] == [(b"k6", b"v" * 6)]
    assert valid_end == size == w.size


def test_os_mode_hands_each_record_to_the_os(tmp_path) -> None:
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, wal.OS, 0o644)
    w.add(_batch(1))
    assert wal.read_log(path)[0] == [(1, [(b"k1", b"v")])]  # before close or sync
    w.close(sync=False)


def test_buffered_mode_reaches_the_os_on_flush(tmp_path) -> None:
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, wal.BUFFERED, 0o644)
    w.add(_batch(1))
    assert os.path.getsize(path) == 0
    w.flush()
    assert len(wal.read_log(path)[0]) == 1
    w.close(sync=False)


class _FailingWrite:
    """os.write that writes half the data and then raises, as a full disk does."""

    def __init__(self, err: int) -> None:
        self.err = err
        self.real = os.write
        self.armed = True

    def __call__(self, fd: int, data) -> int:
        if self.armed:
            self.armed = False
            self.real(fd, bytes(data)[: len(data) // 2])
            raise OSError(self.err, os.strerror(self.err))
        return self.real(fd, data)


@pytest.mark.parametrize("durability", [wal.OS, wal.BUFFERED])
def test_failed_append_is_cut_back_and_the_writer_goes_on(tmp_path, monkeypatch, durability: str) -> None:
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, durability, 0o644)
    w.add(_batch(1))
    w.flush()
    fail = _FailingWrite(errno.ENOSPC)
    monkeypatch.setattr(os, "write", fail)
    with pytest.raises(OSError):
        w.add(encode_batch(2, [(b"big", b"x" * 70000)]))
        w.flush()
    monkeypatch.undo()
    w.add(_batch(3))
    w.close(sync=True)
    batches, valid_end, size = wal.read_log(path)  # no CorruptionError: no torn record in the middle
    # the failed OS-mode append is gone; the buffered one stayed queued and was written by the retry
    assert [b[0] for b in batches] == ([1, 3] if durability is wal.OS else [1, 2, 3])
    assert valid_end == size


def test_failed_fsync_fails_the_writer(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, wal.SYNC, 0o644)
    w.sync_to(w.add(_batch(1)))

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(wal, "sync_fd", eio)
    end = w.add(_batch(2))
    with pytest.raises(OSError):
        w.sync_to(end)
    monkeypatch.undo()
    with pytest.raises(byrondbm.error, match="reopen"):
        w.add(_batch(3))
    with pytest.raises(byrondbm.error):
        w.sync_to(end)
    w.close(sync=True)  # closes without raising again
    assert [b[0] for b in wal.read_log(path)[0]] == [1, 2]


def test_group_commit_shares_fsyncs(tmp_path, monkeypatch) -> None:
    """While one fsync runs, two more writers append and wait: one fsync then covers both of them."""
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, wal.SYNC, 0o644)
    real = wal.sync_fd
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def slow_sync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            entered.set()
            release.wait(10)
        real(fd)

    monkeypatch.setattr(wal, "sync_fd", slow_sync)
    end1 = w.add(_batch(1))
    first = threading.Thread(target=w.sync_to, args=(end1,))
    first.start()
    assert entered.wait(10)  # the first fsync is in progress and covers record 1 only
    end2, end3 = w.add(_batch(2)), w.add(_batch(3))
    waiters = [threading.Thread(target=w.sync_to, args=(end,)) for end in (end2, end3)]
    for t in waiters:
        t.start()
    release.set()
    for t in [first, *waiters]:
        t.join()
    assert len(calls) == 2  # not 3: records 2 and 3 shared the second fsync
    assert w._synced >= end3
    w.close(sync=True)


def test_concurrent_sync_writers_are_all_covered(tmp_path) -> None:
    """8 threads appending and syncing: every write is covered by an fsync when its sync_to returns."""
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, wal.SYNC, 0o644)
    lock = threading.Lock()
    covered = []

    def writer(t: int) -> None:
        for i in range(50):
            with lock:  # the engine's write lock
                end = w.add(_batch(t * 1000 + i))
            w.sync_to(end)
            covered.append(w._synced >= end)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close(sync=True)
    assert all(covered) and len(covered) == 400
    assert len(wal.read_log(path)[0]) == 400


def test_sync_after_a_close_without_fsync_still_syncs(tmp_path, monkeypatch) -> None:
    """A writer whose log was rotated away (closed without fsync) before its sync_to ran gets an fsync."""
    path = str(tmp_path / "000001.log")
    w = wal.LogWriter(path, 1, wal.OS, 0o644)
    end = w.add(_batch(1))
    w.close(sync=False)
    calls = []
    monkeypatch.setattr(wal, "sync_fd", lambda fd: calls.append(fd))
    w.sync_to(end)
    assert len(calls) == 1
    os.unlink(path)  # retired by a flush: nothing left to sync, and no error
    w2 = wal.LogWriter(str(tmp_path / "000002.log"), 2, wal.OS, 0o644)
    end = w2.add(_batch(2))
    w2.close(sync=False)
    os.unlink(w2.path)
    w2.sync_to(end)
