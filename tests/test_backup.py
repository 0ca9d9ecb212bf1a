"""Online backups: `db.backup(dest)` and `byrondbm backup` hold exactly the state of one instant while writes,
flushes and compactions go on; a bad destination is refused untouched; a crash or an error never leaves a
backup that opens half."""

from __future__ import annotations

import errno
import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import byrondbm
from byrondbm import cli
from byrondbm.engine import backup as backup_module


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512,
             l0_compaction_trigger=2, l0_slowdown_trigger=4, l0_stop_trigger=6)


def _key(i: int) -> bytes:
    return b"k%08d" % i


def _ops(n: int) -> list[tuple[bytes, bytes | None]]:
    """A write stream: a put of each new key; after every third a delete, after every seventh an overwrite."""
    ops: list[tuple[bytes, bytes | None]] = []
    for i in range(n):
        ops.append((_key(i), b"v%d" % i))
        if i % 3 == 2:
            ops.append((_key(i - 2), None))
        if i % 7 == 6:
            ops.append((_key(i - 5), b"again%d" % i))
    return ops


def _is_a_prefix_state(got: dict[bytes, bytes], ops: list[tuple[bytes, bytes | None]], lo: int, hi: int) -> bool:
    """True when ``got`` is the mapping after the first n of ``ops`` for some n in lo..hi."""
    state: dict[bytes, bytes] = {}
    for n in range(hi + 1):
        if n >= lo and got == state:
            return True
        if n < len(ops):
            _apply(state, [ops[n]])
    return False


def _apply(mapping, ops: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in ops:
        if value is None:
            mapping.pop(key, None)
        else:
            mapping[key] = value


def _content(path: str) -> dict[bytes, bytes]:
    with byrondbm.open(path, "r") as db:
        items = dict(db.items())
        assert len(db) == len(items)
        db._check()
        engine = db._engine  # nothing above the last sequence: a writer of the copy would reuse it
        assert all(t.properties.max_seq <= engine.last_sequence for t in engine.version.tables())
    return items


def _fill(path: str, n: int = 3000, **options) -> dict[bytes, bytes]:
    """Write ``_ops(n)`` into a new database at ``path``; the mapping it then holds."""
    expected: dict[bytes, bytes] = {}
    _apply(expected, _ops(n))
    with byrondbm.open(path, "c", **options) as db:
        _apply(db, _ops(n))
    return expected


def test_round_trip(tmp_path) -> None:
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    with byrondbm.open(src, "c", **SMALL) as db:
        _apply(db, _ops(2000))
        db[b""] = b""  # the empty key and value
        expected = dict(db.items())
        assert sum(level["files"] for level in db.stats()["levels"]) and len(db._engine.version.mem)  # tables and a memtable
        report = db.backup(dest)
    assert report["keys"] == len(expected)
    assert report["linked"] == report["tables"] - 1  # every table linked, plus the memtables' table
    assert _content(dest) == expected
    assert byrondbm.check(dest)["ok"]
    assert byrondbm.whichdb(dest) == "byrondbm"
    with byrondbm.open(dest, "w") as db:  # a normal database: writable, and independent of its source
        db[b"new"] = b"1"
        del db[_key(1)]
    assert _content(src) == expected


def test_empty_database_and_empty_directory(tmp_path) -> None:
    src, dest = str(tmp_path / "src"), tmp_path / "dest"
    dest.mkdir()
    with byrondbm.open(src, "c") as db:
        assert db.backup(dest)["tables"] == 0  # an os.PathLike, an existing empty directory
    assert _content(str(dest)) == {}


def test_backup_is_one_instant_of_concurrent_writes(tmp_path) -> None:
    """Each backup equals the state after some prefix of the writes, holding every write acknowledged before
    the call and none begun after it returned; tiny memtables keep flushes and compactions running."""
    src = str(tmp_path / "src")
    ops = _ops(40_000)
    acked = [0]
    stop = threading.Event()
    db = byrondbm.open(src, "c", **SMALL)

    def writer() -> None:
        for n, (key, value) in enumerate(ops):
            if stop.is_set():
                return
            _apply(db, [(key, value)])
            acked[0] = n + 1

    t = threading.Thread(target=writer)
    t.start()
    windows = []
    try:
        for b in range(4):
            while acked[0] < 2000 * (b + 1) and t.is_alive():
                time.sleep(0.005)
            before = acked[0]
            db.backup(str(tmp_path / f"b{b}"))
            windows.append((before, acked[0] + 1))  # the write in flight at the return may be in it
    finally:
        stop.set()
        t.join()
        stats = db.stats()
        db.close()
    assert stats["flushes"] and stats["compactions"] + stats["trivial_moves"]
    for b, (lo, hi) in enumerate(windows):
        got = _content(str(tmp_path / f"b{b}"))
        assert _is_a_prefix_state(got, ops, lo, hi), (b, lo, hi, len(got))
        assert byrondbm.check(str(tmp_path / f"b{b}"))["ok"]


def test_writes_and_compactions_inside_the_backup(tmp_path, monkeypatch) -> None:
    """Writes, a flush and a full compaction run after the instant, while the tables are being linked (the
    compaction retires every table the backup is linking): the backup still holds exactly the instant."""
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    db = byrondbm.open(src, "c", background_compaction=False, **SMALL)
    _apply(db, _ops(1500))
    db.compact()
    dead, live = db.keys()[:2]
    db[b"in the memtable"] = b"old"
    del db[dead]
    expected = dict(db.items())
    place = backup_module._place_table
    meddled = []

    def meddle(*args, **kwargs):
        if not meddled:
            meddled.append(True)
            db[b"in the memtable"] = b"new"  # a newer version in the memtable being copied
            db[b"after"] = b"x"
            del db[live]
            db[dead] = b"back"
            db.compact()  # flushes the memtable, retires every table of the instant
        return place(*args, **kwargs)

    monkeypatch.setattr(backup_module, "_place_table", meddle)
    try:
        report = db.backup(dest)
    finally:
        db.close()
    assert meddled and report["linked"] == report["tables"] - 1
    assert _content(dest) == expected
    assert byrondbm.check(dest)["ok"]
    with byrondbm.open(dest, "w") as copy:  # a writer of the copy continues its sequence cleanly
        copy[b"in the memtable"] = b"newest"
        assert copy[b"in the memtable"] == b"newest" and dead not in copy


def test_backup_while_a_full_compaction_runs(tmp_path) -> None:
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    expected = _fill(src, 4000, **SMALL)
    with byrondbm.open(src, "w", **SMALL) as db:
        compaction = threading.Thread(target=db.compact)
        compaction.start()
        db.backup(dest)
        compaction.join()
        assert db.stats()["levels"][0]["files"] == 0
    assert _content(dest) == expected
    assert byrondbm.check(dest)["ok"]


def test_read_only_source_beside_a_writer(tmp_path) -> None:
    """A reader's backup is the reader's state, even after the writer compacted away tables the reader holds
    (those are rewritten from the reader's open files)."""
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    expected = _fill(src, 3000, **SMALL)
    with byrondbm.open(src, "r") as reader, byrondbm.open(src, "w", **SMALL) as writer:
        for key in list(expected)[::2]:
            del writer[key]
        writer.compact()
        report = reader.backup(dest)
        assert report["rewritten"] > 0
        assert report["keys"] == len(expected)
    assert _content(dest) == expected
    assert byrondbm.check(dest)["ok"]


def test_copies_across_file_systems(tmp_path, monkeypatch) -> None:
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    expected = _fill(src, 2000, **SMALL)

    def cross_device(a: str, b: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(backup_module.os, "link", cross_device)
    with byrondbm.open(src, "r") as db:
        report = db.backup(dest)
    assert report["copied"] > 0 and report["linked"] == 0
    assert _content(dest) == expected


@pytest.mark.parametrize("kind", ["file", "empty file", "foreign", "database", "inside"])
def test_bad_destination_is_refused_untouched(tmp_path, kind: str) -> None:
    src = str(tmp_path / "src")
    _fill(src, 200)
    dest = tmp_path / "dest"
    if kind == "file":
        dest.write_bytes(b"data")
    elif kind == "empty file":
        dest.write_bytes(b"")
    elif kind == "foreign":
        dest.mkdir()
        (dest / "notes.txt").write_bytes(b"mine")
    elif kind == "database":
        _fill(str(dest), 10)
    else:
        dest = tmp_path / "src" / "inside"
    before = _listing(tmp_path)
    with byrondbm.open(src, "r") as db, pytest.raises(byrondbm.error):
        db.backup(dest)
    assert _listing(tmp_path) == before


def _listing(root) -> dict[str, bytes]:
    found = {}
    for dirpath, dirnames, names in os.walk(root):
        for d in dirnames:
            found[os.path.join(dirpath, d)] = b"<dir>"
        for name in names:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                found[p] = f.read()
    return found


@pytest.mark.parametrize("existing", [False, True])
def test_failed_backup_leaves_dest_as_found(tmp_path, monkeypatch, existing: bool) -> None:
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    expected = _fill(src, 2000, **SMALL)
    if existing:
        os.mkdir(dest)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", dest)

    monkeypatch.setattr(backup_module, "ManifestWriter", full_disk)
    with byrondbm.open(src, "w", background_compaction=False, **SMALL) as db:  # no job holds a table
        with pytest.raises(byrondbm.error, match="backup failed"):
            db.backup(dest)
        assert not db._engine._pins and not db._engine._vs._held  # the instant is let go
        db[b"after"] = b"1"
    if existing:
        assert os.listdir(dest) == []
    else:
        assert not os.path.exists(dest)
    with pytest.raises(byrondbm.error):
        byrondbm.open(dest, "r")
    expected[b"after"] = b"1"
    assert _content(src) == expected


def test_closed_database(tmp_path) -> None:
    db = byrondbm.open(str(tmp_path / "src"), "c")
    db.close()
    with pytest.raises(byrondbm.error):
        db.backup(str(tmp_path / "dest"))
    assert not os.path.exists(tmp_path / "dest")


_CHILD = textwrap.dedent(
    """
    import sys, time
    import byrondbm
    from byrondbm.engine import backup
    src, dest, hang = sys.argv[1], sys.argv[2], sys.argv[3] == "hang"
    if hang:  # stop just before the commit: tables written, no manifest, no CURRENT
        def stall(*args, **kwargs):
            print("ready", flush=True)
            time.sleep(60)
        backup.ManifestWriter = stall
    with byrondbm.open(src, "w") as db:
        db[b"memtable"] = b"only in the log"
        print("ready", flush=True)
        for i in range(10**6):
            db.backup(f"{dest}{i}")
    """
)


def _child(src: str, dest: str, how: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", _CHILD, src, dest, how], stdout=subprocess.PIPE, env=env)


def test_kill_before_commit_leaves_dest_unopenable(tmp_path) -> None:
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    expected = _fill(src, 3000, **SMALL)
    child = _child(src, dest, "hang")
    try:
        assert child.stdout.readline() == b"ready\n"  # the source is open
        assert child.stdout.readline() == b"ready\n"  # the backup is at its commit
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    partial = dest + "0"
    assert any(n.endswith(".sst") for n in os.listdir(partial)) and "CURRENT" not in os.listdir(partial)
    for flag in "rwc":
        with pytest.raises(byrondbm.error):
            byrondbm.open(partial, flag)
    assert byrondbm.whichdb(partial) is None
    expected[b"memtable"] = b"only in the log"
    assert _content(src) == expected
    assert byrondbm.check(src)["ok"]


def test_kill_at_random_moments(tmp_path) -> None:
    """Backups cut by SIGKILL anywhere: each is the whole source or does not open, never a part."""
    src, dest = str(tmp_path / "src"), str(tmp_path / "d")
    expected = _fill(src, 3000, **SMALL)
    expected[b"memtable"] = b"only in the log"
    for delay in (0.0, 0.01, 0.03, 0.08):
        child = _child(src, dest, "loop")
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()
        for name in os.listdir(tmp_path):
            if not name.startswith("d"):
                continue
            path = str(tmp_path / name)
            if "CURRENT" in os.listdir(path):
                assert _content(path) == expected
            else:
                with pytest.raises(byrondbm.error):
                    byrondbm.open(path, "r")
            subprocess.run(["rm", "-rf", path], check=True)
        assert _content(src) == expected


def test_command_line(tmp_path, capsys) -> None:
    src, dest = str(tmp_path / "src"), str(tmp_path / "dest")
    expected = _fill(src, 1500, **SMALL)
    with byrondbm.open(src, "w") as db:  # the command line reads beside a writer
        db[b"fresh"] = b"x"
        db.sync()
        assert cli.main(["backup", src, dest]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{dest}: {len(expected) + 1:,} keys at sequence ") and out.count("\n") == 1
    expected[b"fresh"] = b"x"
    assert _content(dest) == expected
    assert cli.main(["check", dest]) == 0
    capsys.readouterr()

    assert cli.main(["backup", src, dest]) == 1  # not empty any more
    err = capsys.readouterr().err
    assert err.startswith("byrondbm: error: backup destination is not empty") and err.count("\n") == 1
    assert cli.main(["backup", str(tmp_path / "missing"), str(tmp_path / "other")]) == 1
    assert not os.path.exists(tmp_path / "other")
    capsys.readouterr()
    assert cli.main(["backup", src]) == 2


def test_command_line_progress_on_a_terminal_only(tmp_path) -> None:
    src = str(tmp_path / "src")
    _fill(src, 500)
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "byrondbm", "backup", src]
    master, slave = pty.openpty()
    try:
        done = subprocess.run([*command, str(tmp_path / "a")], stdout=subprocess.PIPE, stderr=slave, env=env)
    finally:
        os.close(slave)
    drawn = b""
    try:
        while chunk := os.read(master, 4096):
            drawn += chunk
    except OSError:  # EIO: the other side closed and everything was read
        pass
    finally:
        os.close(master)
    assert done.returncode == 0
    assert re.search(rb"\rbackup  done  0:00:0\d\x1b\[K\r?\n", drawn), drawn
    quiet = subprocess.run([*command, str(tmp_path / "b")], capture_output=True, env=env)
    assert quiet.returncode == 0 and quiet.stderr == b""
