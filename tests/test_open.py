"""The contract's "Opening" section: flags, modifiers, creation rules, locking, read-only opens."""

from __future__ import annotations

import os
import threading
import time
import pathlib
import stat
import subprocess
import sys

import pytest

import byrondbm
from conftest import ROOT


def test_open_flags():
    assert byrondbm.open_flags == "rwcnfsu"


@pytest.mark.parametrize("flag", ["r", "w"])
def test_missing_database_names_the_path(path, flag):
    with pytest.raises(byrondbm.error) as info:
        byrondbm.open(path, flag)
    assert info.value.filename == path
    assert path in str(info.value)
    assert not os.path.exists(path)


@pytest.mark.parametrize("flag", ["x", "cz", "cfs", "", "C"])
def test_bad_flags(path, flag):
    with pytest.raises(byrondbm.error):
        byrondbm.open(path, flag)


def test_flag_must_be_str(path):
    with pytest.raises(byrondbm.error):
        byrondbm.open(path, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["c", "cf", "cs", "cu", "n", "nf", "ns"])
def test_each_creating_flag_round_trips(path, flag):
    with byrondbm.open(path, flag) as db:
        db[b"a"] = b"1"
    with byrondbm.open(path, "r") as db:
        assert db[b"a"] == b"1"


def test_path_types(tmp_path):
    for i, p in enumerate([str(tmp_path / "a"), os.fsencode(str(tmp_path / "b")), tmp_path / "c"]):
        with byrondbm.open(p, "c") as db:
            db[b"k"] = b"%d" % i
        with byrondbm.open(p) as db:
            assert db[b"k"] == b"%d" % i
    assert byrondbm.whichdb(tmp_path / "c") == "byrondbm"
    assert byrondbm.whichdb(os.fsencode(str(tmp_path / "a"))) == "byrondbm"


def test_n_replaces_database_and_empty_file(path):
    with byrondbm.open(path, "c") as db:
        db[b"old"] = b"x"
    with byrondbm.open(path, "n") as db:
        assert len(db) == 0 and db.keys() == []
    pathlib.Path(path + "f").touch()
    with byrondbm.open(path + "f", "n") as db:
        db[b"k"] = b"v"
    assert os.path.isdir(path + "f")


def test_c_over_empty_directory_and_empty_file(tmp_path):
    (tmp_path / "d").mkdir()
    with byrondbm.open(tmp_path / "d", "c") as db:
        db[b"k"] = b"v"
    (tmp_path / "f").touch()
    with byrondbm.open(tmp_path / "f", "c") as db:
        assert len(db) == 0


@pytest.mark.parametrize("flag", ["c", "n", "w"])
def test_foreign_directory_is_refused_and_untouched(tmp_path, flag):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(byrondbm.error):
        byrondbm.open(d, flag)
    assert sorted(os.listdir(d)) == ["holiday.jpg"]
    assert (d / "holiday.jpg").read_bytes() == b"precious"


@pytest.mark.parametrize("flag", ["c", "n", "w", "r"])
def test_file_with_content_is_refused_and_untouched(tmp_path, flag):
    f = tmp_path / "notes.txt"
    f.write_bytes(b"keep me")
    with pytest.raises(byrondbm.error):
        byrondbm.open(f, flag)
    assert f.read_bytes() == b"keep me"


def test_mode_applies_to_created_files(path):
    old = os.umask(0o022)
    try:
        with byrondbm.open(path, "c", 0o640) as db:
            db[b"k"] = b"v"
            db.compact()
    finally:
        os.umask(old)
    for name in os.listdir(path):
        assert stat.S_IMODE(os.stat(os.path.join(path, name)).st_mode) == 0o640, name
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750


def test_second_writer_in_same_process_is_refused_readers_are_not(path):
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
        for flag in ["w", "c", "n"]:
            with pytest.raises(byrondbm.error, match="locked"):
                byrondbm.open(path, flag)
        with byrondbm.open(path, "r") as r1, byrondbm.open(path, "r") as r2:
            assert r1[b"k"] == r2[b"k"] == b"v"
    with byrondbm.open(path, "w"):  # released on close
        pass


def test_timeout_waits_for_the_writer_then_fails(path):
    byrondbm.open(path, "c").close()
    holder = byrondbm.open(path, "w")
    start = time.monotonic()
    with pytest.raises(byrondbm.error, match="locked"):
        byrondbm.open(path, "w", timeout=0.3)
    assert time.monotonic() - start >= 0.3
    threading.Timer(0.2, holder.close).start()
    with byrondbm.open(path, "w", timeout=10) as db:  # the first writer closes while this one waits
        db[b"k"] = b"v"
    with pytest.raises(ValueError, match="timeout"):
        byrondbm.open(path, "w", timeout=-1)


def _other_process(path: str, flag: str) -> subprocess.CompletedProcess:
    code = ("import sys, byrondbm\n"
            "try:\n    byrondbm.open(sys.argv[1], sys.argv[2]).close()\n"
            "except byrondbm.error as e:\n    print(e); sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code, path, flag], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)


def test_other_process_writer_refused_readers_beside_it(path):
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
        for flag in ["w", "c"]:
            r = _other_process(path, flag)
            assert r.returncode == 3 and "locked" in r.stdout, r
        assert _other_process(path, "r").returncode == 0  # a reader beside the writer
    with byrondbm.open(path, "r"):
        assert _other_process(path, "r").returncode == 0  # beside another reader
        assert _other_process(path, "w").returncode == 0  # a reader never holds a writer back


def test_unlocked_modifier_skips_the_os_lock(path):
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
    with byrondbm.open(path, "ru"):
        assert _other_process(path, "w").returncode == 0


def test_read_only_open_writes_nothing(path):
    with byrondbm.open(path, "c", memtable_size=4096) as db:
        for i in range(300):
            db[b"%04d" % i] = b"x" * 50
    snapshot = {n: (os.stat(os.path.join(path, n)).st_size, os.stat(os.path.join(path, n)).st_mtime_ns)
                for n in os.listdir(path)}
    with byrondbm.open(path, "r") as db:
        assert len(db) == 300 and db[b"0299"] == b"x" * 50
        with pytest.raises(byrondbm.error):
            db[b"new"] = b"v"
        with pytest.raises(byrondbm.error):
            del db[b"0001"]
        with pytest.raises(byrondbm.error):
            db.compact()
        with pytest.raises(byrondbm.error):
            db.batch()
    after = {n: (os.stat(os.path.join(path, n)).st_size, os.stat(os.path.join(path, n)).st_mtime_ns)
             for n in os.listdir(path)}
    assert after == snapshot


def test_missing_current_is_corruption_whatever_the_flag(path):
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
    os.unlink(os.path.join(path, "CURRENT"))
    for flag in ["r", "w", "c"]:
        with pytest.raises(byrondbm.CorruptionError):
            byrondbm.open(path, flag)


def test_missing_table_is_corruption(path, small):
    with byrondbm.open(path, "c", **small) as db:
        for i in range(500):
            db[b"%04d" % i] = b"v" * 40
        db.compact()
    table = next(n for n in os.listdir(path) if n.endswith(".sst"))
    os.unlink(os.path.join(path, table))
    for flag in ["r", "c"]:
        with pytest.raises(byrondbm.CorruptionError, match=table):
            byrondbm.open(path, flag)


def test_whichdb(tmp_path):
    assert byrondbm.whichdb(tmp_path / "nothing") is None
    (tmp_path / "file").write_bytes(b"x")
    assert byrondbm.whichdb(tmp_path / "file") is None
    assert byrondbm.whichdb(tmp_path) is None
    with byrondbm.open(tmp_path / "db", "c"):
        pass
    assert byrondbm.whichdb(tmp_path / "db") == "byrondbm"


def test_error_types():
    assert issubclass(byrondbm.error, OSError)
    assert issubclass(byrondbm.CorruptionError, byrondbm.error)
    import dbm
    try:
        raise byrondbm.CorruptionError("bad block", "x.sst")
    except dbm.error as e:  # the idiom every dbm user writes
        assert "x.sst" in str(e)


def test_missing_parent_or_no_permission_is_a_byrondbm_error(tmp_path):
    with pytest.raises(byrondbm.error) as info:
        byrondbm.open(tmp_path / "no" / "such" / "parent", "c")
    assert "parent" in str(info.value)
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(byrondbm.error):
            byrondbm.open(locked / "db", "c")


def test_n_replaces_a_repaired_database_with_its_lost_folder(path, small):
    with byrondbm.open(path, "c", **small) as db:
        for i in range(400):
            db[b"%04d" % i] = b"v" * 40
    table = sorted(n for n in os.listdir(path) if n.endswith(".sst"))[0]
    with open(os.path.join(path, table), "r+b") as f:
        f.seek(20)
        f.write(b"\xff" * 8)
    byrondbm.repair(path)
    assert "lost" in os.listdir(path)
    with byrondbm.open(path, "c") as db:  # a repaired database opens as usual
        assert len(db) > 0
    with byrondbm.open(path, "n") as db:
        assert len(db) == 0
    assert "lost" not in os.listdir(path)
