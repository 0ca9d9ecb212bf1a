"""Readers beside a writer: a reader sees the database as of its open, `refresh()` (or `refresh_interval`)
brings it to the writer's latest state, its scans and snapshots keep their point in time, it writes nothing
and never needs write permission, and a database replaced under it gives an error or the new state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import byrondbm
import byrondbm.engine.follower as follower_module
import byrondbm.engine.versionset as versionset
from byrondbm.engine.framing import frame
from byrondbm.engine.manifest import read_current
from byrondbm.engine.wal import PUT

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))

import readers_soak  # noqa: E402


def fill(db, start, stop, tag=b"v"):
    for i in range(start, stop):
        db[b"k%05d" % (i % 900)] = tag + b"%d" % i
        if i % 5 == 0:
            db.pop(b"k%05d" % ((i * 7) % 900), None)


# ------------------------------------------------------------------ processes, as users run them


def test_writer_and_four_reader_processes():
    summary = readers_soak.soak(seconds=12, readers=4, seed=3)
    assert summary["writes"] > 500 and summary["scans"] > 20 and summary["snapshots"] > 0
    assert summary["refreshes"] > 0 and summary["opens"] >= 4


def test_writer_killed_under_readers_then_recovered():
    summary = readers_soak.soak(seconds=10, readers=3, seed=5, kill=True)
    assert summary["writer_kills"] == 1 and summary["scans"] > 10


def test_reader_needs_no_write_permission(tmp_path):
    """A reader on a directory it may not write to (run as an unprivileged user when we are root)."""
    if os.geteuid() == 0:
        nobody = 65534
    elif os.access(str(tmp_path), os.W_OK):
        pytest.skip("needs root (to drop to an unprivileged user) to make a directory truly unwritable to the reader")
    parent = tempfile.mkdtemp(prefix="readers-ro-")
    try:
        os.chmod(parent, 0o755)
        path = os.path.join(parent, "db")
        w = byrondbm.open(path, "c", **readers_soak.SMALL_OPTIONS)
        fill(w, 0, 500)
        os.chmod(path, 0o555)
        code = (
            "import os, sys, byrondbm\n"
            f"os.setgid({nobody}); os.setuid({nobody})\n"
            f"db = byrondbm.open({path!r}, 'r')\n"
            "print(len(db), flush=True)\n"
            "sys.stdin.readline()\n"  # the writer writes more meanwhile
            "db.refresh()\n"
            "print(len(db), db[b'late'].decode(), flush=True)\n"
            "db.close()\n"
        )
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) as p:
            try:
                first = p.stdout.readline()
                w[b"late"] = b"arrived"
                fill(w, 500, 1500)
                p.stdin.write("go\n")
                p.stdin.flush()
                out, err = p.communicate(timeout=60)
            finally:
                if p.poll() is None:
                    p.kill()
        assert p.returncode == 0, err
        assert int(first) > 0
        count, late = out.split()
        assert int(count) == len(w) and late == "arrived"
        w.close()
    finally:
        os.chmod(parent, 0o755)
        if os.path.exists(os.path.join(parent, "db")):
            os.chmod(os.path.join(parent, "db"), 0o755)
        shutil.rmtree(parent, ignore_errors=True)


# ------------------------------------------------------------------ what a refresh brings


def test_open_sees_acknowledged_writes_refresh_sees_later_ones(path, small):
    w = byrondbm.open(path, "c", **small)
    fill(w, 0, 1000)
    r = byrondbm.open(path, "r")
    assert dict(r.items()) == dict(w.items()) and len(r) == len(w)
    fill(w, 1000, 3000)
    assert dict(r.items()) != dict(w.items())  # no refresh: still as of its open
    r.refresh()
    assert dict(r.items()) == dict(w.items()) and len(r) == len(w)
    w.close()
    r.refresh()
    assert dict(r.items()) == dict(byrondbm.open(path, "r").items())
    r.close()


def test_manifest_switched_many_times_between_refreshes(path, small, monkeypatch):
    monkeypatch.setattr(versionset, "MANIFEST_ROTATE", 2048)
    w = byrondbm.open(path, "c", **small)
    fill(w, 0, 300)
    r = byrondbm.open(path, "r")
    for round_ in range(4):
        names = {read_current(path)}
        for start in range(0, 2000, 100):
            fill(w, 3000 * round_ + start, 3000 * round_ + start + 100)
            names.add(read_current(path))
        assert len(names) > 2  # switched more than once since the last refresh
        r.refresh()
        assert dict(r.items()) == dict(w.items()) and len(r) == len(w)
    w.close()
    r.close()


def test_unchanged_refresh_reads_nothing_and_a_new_write_reads_only_its_bytes(path, monkeypatch):
    w = byrondbm.open(path, "c")  # one memtable: no background work changes files meanwhile
    fill(w, 0, 200)
    r = byrondbm.open(path, "r")
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(follower_module.os, "pread", lambda fd, n, off: reads.append(n) or real_pread(fd, n, off))
    for _ in range(10):
        r.refresh()
    assert reads == []
    w[b"one more"] = b"x"
    r.refresh()
    assert r[b"one more"] == b"x"
    assert len(reads) == 1 and reads[0] < 100  # the new log record alone
    w.close()
    r.close()


def test_record_still_being_written_is_not_there_yet(path):
    w = byrondbm.open(path, "c")
    w[b"a"] = b"1"
    seq = w._engine.last_sequence
    log = w._engine._wal.path
    w.close()
    r = byrondbm.open(path, "r")
    key, value = b"half", b"written" * 10
    record = frame(PUT, (seq + 1).to_bytes(8, "little") + len(key).to_bytes(4, "little") + key + value)
    with open(log, "ab") as f:  # the writer is mid-append: only part of the record is there
        f.write(record[:20])
    r.refresh()
    assert b"half" not in r and r[b"a"] == b"1"
    with open(log, "ab") as f:
        f.write(record[20:])
    r.refresh()
    assert r[b"half"] == value and len(r) == 2
    r.close()


def test_table_gone_between_manifest_and_open_is_followed(path, small, monkeypatch):
    w = byrondbm.open(path, "c", **small)
    fill(w, 0, 2000)
    r = byrondbm.open(path, "r")
    fill(w, 2000, 4000)
    real_open = follower_module.open_table
    compacted = []

    def open_after_compaction(*args, **kwargs):
        if not compacted:
            compacted.append(True)
            w.compact()  # every table the reader just read about is retired
        return real_open(*args, **kwargs)

    monkeypatch.setattr(follower_module, "open_table", open_after_compaction)
    r.refresh()
    assert compacted and dict(r.items()) == dict(w.items()) and len(r) == len(w)
    w.close()
    r.close()


def test_scans_and_snapshots_keep_their_point_across_refreshes(path, small):
    w = byrondbm.open(path, "c", **small)
    fill(w, 0, 1500)
    r = byrondbm.open(path, "r")
    then = dict(w.items())
    snap = r.snapshot()
    scan = r.items().__iter__()
    first = [next(scan) for _ in range(10)]
    for start in range(1500, 9000, 500):
        fill(w, start, start + 500, tag=b"new")
        w.compact()
        r.refresh()
    assert dict(first + list(scan)) == then
    assert dict(snap.items()) == then and len(snap) == len(then)
    assert all(snap[k] == v for k, v in then.items())
    snap.close()
    assert dict(r.items()) == dict(w.items()) and len(r) == len(w)
    w.close()
    r.close()


def test_snapshot_keeps_a_value_overwritten_in_the_log_it_tails(path):
    w = byrondbm.open(path, "c")  # one big memtable: the overwrite lands in the log the reader tails
    w[b"k"] = b"old"
    r = byrondbm.open(path, "r")
    snap = r.snapshot()
    scan = r.scan()
    w[b"k"] = b"new"
    r.refresh()
    assert snap[b"k"] == b"old" and list(scan) == [(b"k", b"old")] and r[b"k"] == b"new"
    snap.close()
    w.close()
    r.close()


def test_refresh_interval(path):
    w = byrondbm.open(path, "c")
    w[b"a"] = b"1"
    manual = byrondbm.open(path, "r")
    auto = byrondbm.open(path, "r", refresh_interval=0)
    w[b"b"] = b"2"
    assert b"b" not in manual and auto.get(b"b") == b"2"
    w[b"c"] = b"3"
    assert len(auto) == 3 and list(auto.keys()) == [b"a", b"b", b"c"] and b"c" in auto
    manual.refresh()
    assert len(manual) == 3
    for db in (w, manual, auto):
        db.close()
    with pytest.raises(ValueError, match="refresh_interval"):
        byrondbm.open(path, "r", refresh_interval=-1)
    with pytest.raises(TypeError, match="refresh_interval"):
        byrondbm.open(path, "r", refresh_interval="1")


def test_two_readers_in_one_process_beside_its_writer(path, small):
    w = byrondbm.open(path, "c", **small)
    r1 = byrondbm.open(path, "r")
    fill(w, 0, 1000)
    r2 = byrondbm.open(path, "r")
    assert len(r1) == 0 and dict(r2.items()) == dict(w.items())
    fill(w, 1000, 2000)
    r1.refresh()
    r2.refresh()
    assert dict(r1.items()) == dict(r2.items()) == dict(w.items())
    w.refresh()  # a writer is always current: nothing to do
    for db in (w, r1, r2):
        db.close()


def test_replaced_under_a_reader_gives_an_error_or_the_new_state(path, small):
    w = byrondbm.open(path, "c", **small)
    fill(w, 0, 2000)
    w.close()
    r = byrondbm.open(path, "r")
    n = byrondbm.open(path, "n", **small)
    fill(n, 0, 300, tag=b"replacement")
    try:
        r.refresh()
    except byrondbm.error as e:
        assert "replaced" in str(e)
    else:
        assert dict(r.items()) == dict(n.items())
    n.close()
    r.close()


def test_repaired_under_a_reader_gives_an_error_or_the_new_state(path, small):
    w = byrondbm.open(path, "c", **small)
    fill(w, 0, 2000)
    expected = dict(w.items())
    w.close()
    r = byrondbm.open(path, "r")
    byrondbm.repair(path)
    try:
        r.refresh()
    except byrondbm.error as e:
        assert "replaced" in str(e)
    else:
        assert dict(r.items()) == expected and len(r) == len(expected)
    r.close()
