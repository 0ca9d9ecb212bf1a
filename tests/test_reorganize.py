"""`reorganize()` (dbm.gnu's name for `compact()`): a full compaction that gives back the disk space of
deleted and overwritten data, measured as the bytes of every file in the database directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import byrondbm

OPTIONS = dict(memtable_size=64 * 1024, target_file_size=64 * 1024, level1_size=256 * 1024, block_size=1024)


def _dir_bytes(path: Path) -> int:
    """Bytes of every file in the directory; a log or table the background thread deletes meanwhile counts 0."""
    total = 0
    for name in os.listdir(path):
        try:
            total += os.path.getsize(path / name)
        except FileNotFoundError:
            pass
    return total


def _fill(db: byrondbm.Database, n: int, tag: bytes) -> None:
    for s in range(0, n, 1000):
        with db.batch() as b:
            for i in range(s, min(s + 1000, n)):
                b[b"key%06d" % i] = tag * 100


def test_deleting_90_percent_then_reorganize_shrinks_disk_use(tmp_path: Path) -> None:
    path = tmp_path / "db"
    n = 20_000
    with byrondbm.open(path, "c", **OPTIONS) as db:
        _fill(db, n, b"v")
        db.reorganize()
        full = _dir_bytes(path)
        for i in range(n):
            if i % 10:
                del db[b"key%06d" % i]
        assert _dir_bytes(path) > 0.9 * full  # deleting only adds tombstones
        db.reorganize()
        after = _dir_bytes(path)
        assert after < 0.15 * full, (full, after)  # ~10 % of the data is left
        assert after > 0.05 * full
        assert len(db) == n // 10 and db.keys() == [b"key%06d" % i for i in range(0, n, 10)]
    closed = _dir_bytes(path)
    with byrondbm.open(path, "r") as db:
        db._check()
        assert db[b"key000010"] == b"v" * 100 and b"key000011" not in db
        assert _dir_bytes(path) == closed  # a read-only open writes nothing


def test_reorganize_reclaims_overwritten_values(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with byrondbm.open(path, "c", **OPTIONS) as db:
        _fill(db, 5000, b"a")
        db.reorganize()
        one_copy = _dir_bytes(path)
        with db.snapshot() as snap:  # keeps the "a" versions alive whatever the compactor does meanwhile
            for tag in (b"b", b"c", b"d", b"e"):
                _fill(db, 5000, tag)
            assert _dir_bytes(path) > 1.5 * one_copy
            assert snap[b"key000000"] == b"a" * 100
        db.reorganize()
        assert _dir_bytes(path) < 1.1 * one_copy
        assert set(db.values()) == {b"e" * 100}


def test_reorganize_keeps_everything_live(tmp_path: Path) -> None:
    """Data in the memtable, L0 and deeper levels, with tombstones over older versions, comes out equal."""
    model: dict[bytes, bytes] = {}
    with byrondbm.open(tmp_path / "db", "c", memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512) as db:
        for i in range(4000):
            k = b"k%04d" % (i * 7 % 1500)
            if i % 5 == 0:
                db.pop(k, None)
                model.pop(k, None)
            else:
                db[k] = model[k] = b"%d" % i
        db.reorganize()
        assert dict(db.items()) == model and len(db) == len(model)
        db._check()
        db.reorganize()  # again, with nothing to reclaim
        assert dict(db.items()) == model


def test_reorganize_empty_and_read_only(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c") as db:
        db.reorganize()
        assert len(db) == 0
        db[b"k"] = b"v"
    with byrondbm.open(tmp_path / "db", "r") as ro:
        with pytest.raises(byrondbm.error):
            ro.reorganize()
        with pytest.raises(byrondbm.error):
            ro.compact()
    with pytest.raises(byrondbm.error):
        ro.reorganize()
