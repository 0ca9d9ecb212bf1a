"""Disk full and I/O errors (ENOSPC, EFBIG, EIO) injected into os.write / os.fsync at chosen points:
the failing call raises `byrondbm.error`, nothing acknowledged earlier is lost, a failed flush, compaction
or manifest write leaves the database consistent and is retried, and the database reopens."""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any, Optional

import pytest

import byrondbm

# workers=0: flushes and compactions run in this process, where the injected faults are (the job code is
# the same one a worker process runs)
SMALL = dict(memtable_size=4096, block_size=512, target_file_size=4096, level1_size=16 * 1024,
             l0_compaction_trigger=2, l0_slowdown_trigger=3, l0_stop_trigger=4, workers=0)


class Faults:
    """Wraps os.open/write/fsync/close: a rule makes `write` or `fsync` on files whose name contains
    ``match`` raise ``OSError(err)``, ``times`` times (None: until `clear`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real = {n: getattr(os, n) for n in ("open", "write", "fsync", "close")}
        self._paths: dict[int, str] = {}
        self._rules: list[list[Any]] = []
        self._lock = threading.Lock()
        self.hits = 0
        for name in self._real:
            monkeypatch.setattr(os, name, getattr(self, "_" + name))

    def fail(self, call: str, match: str, err: int = errno.ENOSPC, times: Optional[int] = None) -> None:
        with self._lock:
            self._rules.append([call, match, err, times])

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _check(self, call: str, fd: int) -> None:
        name = os.path.basename(self._paths.get(fd, ""))
        with self._lock:
            for rule in self._rules:
                if rule[0] == call and rule[1] in name and (rule[3] is None or rule[3] > 0):
                    if rule[3] is not None:
                        rule[3] -= 1
                    self.hits += 1
                    raise OSError(rule[2], os.strerror(rule[2]), self._paths[fd])

    def _open(self, path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        fd = self._real["open"](path, flags, mode, **kw)
        self._paths[fd] = os.fsdecode(path)
        return fd

    def _close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        self._real["close"](fd)

    def _write(self, fd: int, data: Any) -> int:
        self._check("write", fd)
        return self._real["write"](fd, data)

    def _fsync(self, fd: int) -> None:
        self._check("fsync", fd)
        self._real["fsync"](fd)


def _fill(db: byrondbm.Database, prefix: bytes, n: int, acked: dict[bytes, bytes]) -> list[Exception]:
    """Write n keys; record the acknowledged ones; return the errors (each must be byrondbm.error)."""
    errors: list[Exception] = []
    for i in range(n):
        k, v = prefix + b"%04d" % i, prefix * 20 + b"%d" % i
        try:
            db[k] = v
        except byrondbm.error as e:
            errors.append(e)
            continue
        acked[k] = v
    return errors


def _assert_holds(path: str, acked: dict[bytes, bytes], **opts: Any) -> None:
    with byrondbm.open(path, "w", **opts) as db:
        for k, v in acked.items():
            assert db[k] == v
        db._check()
        assert db.check()["ok"]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EFBIG, errno.EIO])
@pytest.mark.parametrize("flag", ["c", "cs"])
def test_failed_log_write_raises_and_loses_nothing(tmp_path, monkeypatch, flag: str, err: int) -> None:
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    faults = Faults(monkeypatch)
    with byrondbm.open(path, flag) as db:
        assert not _fill(db, b"a", 50, acked)
        faults.fail("write", ".log", err, times=1)
        with pytest.raises(byrondbm.error) as info:
            db[b"failed"] = b"x"
        assert info.value.errno == err
        assert b"failed" not in db
        faults.clear()
        assert not _fill(db, b"b", 50, acked)  # the disk has room again: writes go on
    monkeypatch.undo()
    _assert_holds(path, acked)
    with byrondbm.open(path, "r") as db:
        assert b"failed" not in db


def test_failed_batch_applies_nothing(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "db")
    faults = Faults(monkeypatch)
    with byrondbm.open(path, "c") as db:
        db[b"keep"] = b"1"
        faults.fail("write", ".log", times=1)
        with pytest.raises(byrondbm.error):
            with db.batch() as b:
                b[b"x"] = b"1"
                del b[b"keep"]
        assert dict(db.items()) == {b"keep": b"1"}


def test_fast_mode_sync_failure_is_reported_and_retried(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    faults = Faults(monkeypatch)
    with byrondbm.open(path, "cf") as db:
        assert not _fill(db, b"a", 30, acked)
        faults.fail("write", ".log", times=1)
        with pytest.raises(byrondbm.error):
            db.sync()
        faults.clear()
        db.sync()  # the buffered records were kept and reach the log now
    monkeypatch.undo()
    _assert_holds(path, acked)


def test_failed_fsync_in_s_mode_stops_writes_until_reopen(tmp_path, monkeypatch) -> None:
    """After a failed fsync the kernel may have dropped the unwritten pages, so writing on could leave a
    hole under later acknowledged writes: the database refuses writes until it is reopened."""
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    faults = Faults(monkeypatch)
    db = byrondbm.open(path, "cs")
    assert not _fill(db, b"a", 30, acked)
    faults.fail("fsync", ".log", errno.EIO, times=1)
    with pytest.raises(byrondbm.error):
        db[b"unsure"] = b"x"
    with pytest.raises(byrondbm.error, match="reopen"):
        db[b"refused"] = b"x"
    assert db[b"a0001"] == acked[b"a0001"]  # reads go on
    db.close()
    monkeypatch.undo()
    _assert_holds(path, acked)
    with byrondbm.open(path, "r") as db:
        assert b"refused" not in db


@pytest.mark.parametrize("match,call", [(".sst", "write"), (".sst", "fsync"), ("MANIFEST", "fsync"),
                                        ("MANIFEST", "write")])
def test_inline_flush_failure_is_retried(tmp_path, monkeypatch, match: str, call: str) -> None:
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    faults = Faults(monkeypatch)
    db = byrondbm.open(path, "c", background_compaction=False, **SMALL)
    assert not _fill(db, b"a", 100, acked)
    faults.fail(call, match, times=1)
    errors = _fill(db, b"b", 300, acked)  # at most the write that had to rotate fails, and is not applied
    assert faults.hits == 1 and len(errors) <= 1
    assert all(db.get(b"b%04d" % i) is None for i in range(300) if b"b%04d" % i not in acked)
    db._check()
    faults.fail(call, match)  # the disk stays full: writes stop with a clean error once memtables fill
    errors = _fill(db, b"c", 400, acked)
    assert errors and all(isinstance(e, byrondbm.error) for e in errors)
    faults.clear()
    errors = _fill(db, b"d", 200, acked)
    if errors:  # the manifest's own cut could not be fsync'ed: it cannot be trusted until a reopen
        assert call == "fsync" and all("reopen" in str(e) for e in errors)
        db.close()
        db = byrondbm.open(path, "w", background_compaction=False, **SMALL)
        assert not _fill(db, b"e", 200, acked)
    db._check()
    for k, v in acked.items():
        assert db[k] == v
    db.close()
    monkeypatch.undo()
    _assert_holds(path, acked)


@pytest.mark.parametrize("match", [".sst", "MANIFEST"])
def test_background_failures_are_retried(tmp_path, monkeypatch, match: str) -> None:
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    faults = Faults(monkeypatch)
    with byrondbm.open(path, "c", **SMALL) as db:
        assert not _fill(db, b"a", 100, acked)
        faults.fail("write", match)
        _fill(db, b"b", 300, acked)  # may stop with "writes stopped" once memtables pile up
        faults.clear()
        for i in range(300):  # writes fail fast until the compactor's next retry (capped backoff) succeeds
            for _ in range(600):
                if not _fill(db, b"c%d" % i, 1, acked):
                    break
                time.sleep(0.01)
        assert db.stats()["background_errors"] > 0
        db.compact()
        db._check()
        for k, v in acked.items():
            assert db[k] == v
    monkeypatch.undo()
    _assert_holds(path, acked)


@pytest.mark.parametrize("call,match,err", [("fsync", "", errno.EIO), ("write", "MANIFEST", errno.ENOSPC)])
def test_reopen_on_a_full_disk_fails_cleanly_then_works(tmp_path, monkeypatch, call: str, match: str, err: int) -> None:
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    with byrondbm.open(path, "c") as db:
        _fill(db, b"a", 50, acked)  # stays in the log: reopening replays it and writes a new manifest
    faults = Faults(monkeypatch)
    faults.fail(call, match, err)
    with pytest.raises(byrondbm.error):
        byrondbm.open(path, "w")
    with byrondbm.open(path, "r") as db:  # a read-only open writes nothing, so it works
        assert dict(db.items()) == acked
    faults.clear()
    monkeypatch.undo()
    _assert_holds(path, acked)


def test_the_next_write_after_space_is_back_succeeds(tmp_path, monkeypatch) -> None:
    """Writes stop with a clean error while the background cannot write tables; once space is back, the
    very next write goes through: a writer that finds the background failed runs the work itself."""
    path = str(tmp_path / "db")
    acked: dict[bytes, bytes] = {}
    faults = Faults(monkeypatch)
    with byrondbm.open(path, "c", **SMALL) as db:
        assert not _fill(db, b"a", 100, acked)
        faults.fail("write", ".sst")
        errors: list[Exception] = []
        for i in range(2000):
            errors = _fill(db, b"b%d" % i, 1, acked)
            if errors:
                break
        assert errors and "writes stopped" in str(errors[0])
        faults.clear()
        assert not _fill(db, b"c", 1, acked)  # at once, not after the background's next retry
        assert not _fill(db, b"d", 300, acked)
        db._check()
    monkeypatch.undo()
    _assert_holds(path, acked)
