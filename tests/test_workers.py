"""Background work in worker processes: a worker killed mid-job loses nothing (it is replaced and the job
runs again), and a writer killed with SIGKILL leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import byrondbm
from conftest import ROOT

TINY = dict(memtable_size=16 * 1024, target_file_size=16 * 1024, level1_size=64 * 1024, block_size=1024,
            l0_compaction_trigger=2)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_start_when_needed_and_stop_at_close(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c", **TINY)
    assert db.stats()["workers"] == []  # nothing to flush yet: no process started
    for i in range(3000):
        db[b"k%05d" % i] = b"v" * 50
    db.compact()
    pids = db.stats()["workers"]
    assert len(pids) == 1 and _alive(pids[0])
    db.close()
    assert not _alive(pids[0])


def test_a_worker_killed_mid_job_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db"
    model: dict[bytes, bytes] = {}
    kills = 0
    with byrondbm.open(path, "c", **TINY) as db:
        for i in range(40_000):
            k = b"k%05d" % (i * 7919 % 20_000)
            model[k] = db[k] = b"%d" % i * 8
            if i % 2000 == 999:
                for pid in db.stats()["workers"]:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
        db.compact()
        stats = db.stats()
        assert kills and stats["worker_restarts"] >= 1 and stats["background_errors"] >= stats["worker_restarts"]
        assert dict(db.items()) == model and len(db) == len(model)
        db._check()
    with byrondbm.open(path, "w") as db:  # the killed jobs' temp files are removed at the next open
        assert not [n for n in os.listdir(path) if n.endswith(".tmp")]
        assert dict(db.items()) == model


def test_a_killed_writer_leaves_no_worker_behind(tmp_path: Path) -> None:
    code = (
        "import sys, byrondbm\n"
        "db = byrondbm.open(sys.argv[1], 'c', memtable_size=16384, target_file_size=16384, level1_size=65536)\n"
        "i = 0\n"
        "while not db.stats()['workers']:\n"
        "    db[b'%08d' % i] = b'v' * 100\n"
        "    i += 1\n"
        "print(*db.stats()['workers'], flush=True)\n"
        "while True:\n"
        "    db[b'%08d' % i] = b'v' * 100\n"
        "    i += 1\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "db")], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert writer.stdout is not None
        pids = [int(p) for p in writer.stdout.readline().split()]
        assert pids and all(_alive(p) for p in pids)
        time.sleep(0.5)  # let it write and flush a while
    finally:
        writer.kill()
        writer.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a worker outlived its killed writer"
    with byrondbm.open(tmp_path / "db", "w") as db:  # and the database recovers
        assert len(db) > 0
        db._check()
