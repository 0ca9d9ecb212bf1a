"""Recovery on open: torn log tails are dropped (and never end up in the middle of a log), a missing or
wrong-sized file the manifest lists is a CorruptionError whatever the flag, a read-only open writes nothing,
and a temp file left by a crash never has its number reused."""

from __future__ import annotations

import os

import pytest

import byrondbm


def _names(path: str, suffix: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(suffix))


def _snapshot(path: str) -> dict[str, tuple[int, int]]:
    return {n: (os.stat(os.path.join(path, n)).st_size, os.stat(os.path.join(path, n)).st_mtime_ns)
            for n in os.listdir(path)}


@pytest.fixture
def db_path(tmp_path) -> str:
    path = str(tmp_path / "db")
    with byrondbm.open(path, "c") as db:
        for i in range(20):
            db[b"k%02d" % i] = b"v%02d" % i
    return path


@pytest.mark.parametrize("tail", [b"\x00" * 100, b"\x17\x2a\x00\x00\x05\x00\x00\x00\x01abc"])
def test_torn_or_zeroed_tail_is_dropped_and_stays_at_the_end(db_path: str, tail: bytes) -> None:
    log = os.path.join(db_path, _names(db_path, ".log")[0])
    with open(log, "ab") as f:
        f.write(tail)
    with byrondbm.open(db_path, "w") as db:  # recovery must not append after the torn record
        assert len(db) == 20
        db[b"after"] = b"1"
    with byrondbm.open(db_path, "w") as db:
        assert len(db) == 21 and db[b"after"] == b"1"
        db._check()


def test_truncated_last_record_loses_only_that_write(db_path: str) -> None:
    log = os.path.join(db_path, _names(db_path, ".log")[0])
    os.truncate(log, os.path.getsize(log) - 1)
    with byrondbm.open(db_path, "r") as db:
        assert sorted(db.keys()) == [b"k%02d" % i for i in range(19)]


def test_read_only_open_writes_nothing(db_path: str) -> None:
    log = os.path.join(db_path, _names(db_path, ".log")[0])
    with open(log, "ab") as f:
        f.write(b"\x01\x02")  # a torn tail a writable open would clean up
    before = _snapshot(db_path)
    with byrondbm.open(db_path, "r") as db:
        assert len(db) == 20
    assert _snapshot(db_path) == before


@pytest.mark.parametrize("flag", ["r", "w", "c"])
@pytest.mark.parametrize("damage", ["missing_log", "missing_table", "short_table", "missing_current"])
def test_missing_or_wrong_files_are_corruption(tmp_path, flag: str, damage: str) -> None:
    path = str(tmp_path / "db")
    with byrondbm.open(path, "c", memtable_size=2048) as db:
        for i in range(200):
            db[b"k%03d" % i] = b"v" * 20
    if damage == "missing_log":
        os.unlink(os.path.join(path, _names(path, ".log")[-1]))
    elif damage == "missing_table":
        os.unlink(os.path.join(path, _names(path, ".sst")[0]))
    elif damage == "short_table":
        table = os.path.join(path, _names(path, ".sst")[0])
        os.truncate(table, os.path.getsize(table) - 1)
    else:
        os.unlink(os.path.join(path, "CURRENT"))
    before = sorted(os.listdir(path))
    with pytest.raises(byrondbm.CorruptionError):
        byrondbm.open(path, flag)
    assert sorted(os.listdir(path)) == before  # nothing started over the remains


def test_leftover_temp_table_number_is_not_reused(db_path: str) -> None:
    """A crash during a flush leaves NNNNNN.sst.tmp; its number must not be handed out again."""
    byrondbm.open(db_path, "w").close()
    next_number = 1 + max(int(name[-6:] if name.startswith("MANIFEST") else name[:6])
                          for name in os.listdir(db_path) if name[:6].isdigit() or name.startswith("MANIFEST"))
    for n in range(next_number, next_number + 4):
        with open(os.path.join(db_path, "%06d.sst.tmp" % n), "wb") as f:
            f.write(b"partial")
    with byrondbm.open(db_path, "w", memtable_size=1024) as db:
        for i in range(200):
            db[b"x%03d" % i] = b"y" * 30
        db.compact()
        assert len(db) == 220
    assert not _names(db_path, ".tmp")  # removed by the next writable open


def test_many_reopen_cycles_keep_everything(tmp_path) -> None:
    path = str(tmp_path / "db")
    model: dict[bytes, bytes] = {}
    for cycle in range(12):
        flag = "c" + ("s" if cycle % 3 == 0 else "f" if cycle % 3 == 1 else "")
        with byrondbm.open(path, flag, memtable_size=2048, l0_compaction_trigger=2) as db:
            assert dict(db.items()) == model
            for i in range(60):
                k = b"k%03d" % ((cycle * 60 + i) % 150)
                if i % 7 == 0:
                    model.pop(k, None)
                    db.pop(k, None)
                else:
                    model[k] = db[k] = b"%d.%d" % (cycle, i)
            db._check()
    with byrondbm.open(path, "r") as db:
        assert dict(db.items()) == model


def test_foreign_file_does_not_disturb_recovery(db_path: str) -> None:
    with open(os.path.join(db_path, "notes.txt"), "w") as f:
        f.write("mine")
    with byrondbm.open(db_path, "w") as db:
        assert len(db) == 20
    assert os.path.exists(os.path.join(db_path, "notes.txt"))
