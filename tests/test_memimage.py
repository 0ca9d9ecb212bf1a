"""Memtable images (engine/memimage.py): a clean close saves each memtable, a reopen loads it instead of
replaying its log and appends to the same log; an image that does not match its log is never used."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import byrondbm
from byrondbm.engine import filenames, memimage
from byrondbm.engine.memtable import Memtable


def _files(path: str, kind: str) -> list[int]:
    return sorted(p[1] for p in map(filenames.parse, os.listdir(path)) if p is not None and p[0] == kind)


def _fill(path: str, n: int, **options: object) -> dict[bytes, bytes]:
    model = {}
    with byrondbm.open(path, "c", **options) as db:
        for i in range(n):
            k, v = b"k%06d" % (i * 7919 % n), b"v%d" % i * (1 + i % 5)
            db[k] = v
            model[k] = v
        for i in range(0, n, 3):
            k = b"k%06d" % i
            del db[k]
            del model[k]
        db[b""] = b""
        model[b""] = b""
    return model


def test_reopen_loads_the_image_and_appends_to_the_same_log(tmp_path):
    path = str(tmp_path / "db")
    model = _fill(path, 3000, memtable_size=1 << 20)
    logs = _files(path, "log")
    assert _files(path, "img") == logs  # one image a log
    with byrondbm.open(path, "w") as db:
        assert len(db) == len(model)
        assert dict(db.items()) == model
        db[b"new"] = b"1"
        model[b"new"] = b"1"
        assert _files(path, "log") == logs  # no fresh log: the last one is appended to
    with byrondbm.open(path, "r") as db:  # a reader replays the log, images aside
        assert dict(db.items()) == model
    with byrondbm.open(path, "w") as db:
        assert dict(db.items()) == model
        db._check()


def test_every_memtable_is_imaged_and_flushed_later(tmp_path):
    path = str(tmp_path / "db")
    model = _fill(path, 20000, memtable_size=64 << 10, background_compaction=False, max_immutable_memtables=4)
    with byrondbm.open(path, "w", memtable_size=64 << 10) as db:
        assert dict(db.items()) == model
        db.compact()
        assert _files(path, "img") == [] and len(_files(path, "log")) == 1
        assert dict(db.items()) == model


@pytest.mark.parametrize("where", ["image", "log"])
def test_a_damaged_image_or_log_is_never_trusted(tmp_path, where):
    path = str(tmp_path / "db")
    model = _fill(path, 2000)
    (number,) = _files(path, "log")
    name = filenames.image_name(number) if where == "image" else filenames.log_name(number)
    target = os.path.join(path, name)
    size = os.path.getsize(target)
    with open(target, "r+b") as f:  # a byte in the middle: the image fails its CRC, or no longer matches its log
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    if where == "image":
        with byrondbm.open(path, "w") as db:  # replayed from the log
            assert dict(db.items()) == model
    else:  # the log's own damage is reported as without an image
        with pytest.raises(byrondbm.CorruptionError):
            byrondbm.open(path, "w")


def test_a_log_that_grew_after_its_image_is_image_plus_tail(tmp_path):
    """A session appends to the resumed log and is killed: the next open takes the image and replays the
    records past it."""
    path = str(tmp_path / "db")
    model = _fill(path, 2000)
    script = textwrap.dedent(
        f"""
        import os, signal, byrondbm
        db = byrondbm.open({path!r}, "w")
        for i in range(500):
            db[b"tail%d" % i] = b"t" * i
        del db[b"k000001"]
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL
    model.update({b"tail%d" % i: b"t" * i for i in range(500)})
    model.pop(b"k000001", None)
    with byrondbm.open(path, "w") as db:
        assert len(db) == len(model)
        assert dict(db.items()) == model


def test_images_of_unknown_or_retired_logs_are_removed(tmp_path):
    path = str(tmp_path / "db")
    model = _fill(path, 100)
    stray = os.path.join(path, filenames.image_name(999999))
    with open(stray, "wb") as f:
        f.write(b"junk")
    with byrondbm.open(path, "w") as db:
        assert dict(db.items()) == model
    assert not os.path.exists(stray)


def _memtable(entries: list[tuple[bytes, bytes | None]], first_seq: int = 10) -> Memtable:
    mem = Memtable(7)
    for i, (k, v) in enumerate(entries):
        mem.put((k, -(first_seq + i), v), keep_old=False)
    return mem


def test_save_and_load_round_trip(tmp_path):
    entries = [(b"b", b"1"), (b"a", None), (b"ccc", b"x" * 300), (b"b", b"2"), (b"", b"")]
    mem = _memtable(entries)
    mem.resolved, mem.prior_live = 2, 1
    log = b"the log's bytes"
    memimage.save(str(tmp_path), mem, log, 0o644)
    path = str(tmp_path / filenames.image_name(7))
    loaded = memimage.load(path, 7, log + b"more", 9)
    assert loaded is not None
    got, covers, last = loaded
    assert covers == len(log) and last == 14
    assert got.newest_entries() == mem.newest_entries()
    assert (got.live, got.size, got.entries, got.resolved, got.prior_live) == (3, mem.size, 5, 2, 1)
    got._check()
    assert memimage.load(path, 8, log, 9) is None  # another log's image
    assert memimage.load(path, 7, b"X" + log[1:], 9) is None  # the log changed
    assert memimage.load(path, 7, log[:-1], 9) is None  # the log is shorter than the image says
    assert memimage.load(path, 7, log, 11) is None  # an entry (b"a", seq 11) already in a table
    assert memimage.load(str(tmp_path / "missing.img"), 7, log, 9) is None
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 1)
    assert memimage.load(path, 7, log, 9) is None


def test_a_reader_starts_from_the_images_too(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    model = _fill(path, 3000, memtable_size=1 << 20)
    used = []
    real = memimage.load

    def spy(*args: object) -> object:
        result = real(*args)  # type: ignore[arg-type]
        used.append(result is not None)
        return result

    monkeypatch.setattr(memimage, "load", spy)
    with byrondbm.open(path, "r") as db:
        assert dict(db.items()) == model and len(db) == len(model)
    assert used and all(used)


def test_close_during_background_flushes_loses_nothing(tmp_path):
    """close() kills the flush jobs running in the worker: their memtables stay in their logs and images,
    and the next session flushes them."""
    path = str(tmp_path / "db")
    options = dict(memtable_size=64 << 10, max_immutable_memtables=4, workers=1)
    model = _fill(path, 20000, **options)
    with byrondbm.open(path, "w", **options) as db:
        assert len(db) == len(model)
        assert dict(db.items()) == model
        db.compact()
        assert _files(path, "img") == []  # each flushed log's image went with it
    assert not [n for n in os.listdir(path) if n.endswith(filenames.TEMP_SUFFIX)]


def test_a_reader_follows_a_writer_that_resumes_its_log(tmp_path):
    path = str(tmp_path / "db")
    model = _fill(path, 2000)
    with byrondbm.open(path, "r") as reader:
        assert dict(reader.items()) == model
        with byrondbm.open(path, "w") as db:  # appends to the log the reader has read to its end
            db[b"after"] = b"reopen"
            del db[b"k000002"]
            reader.refresh()
            assert reader[b"after"] == b"reopen" and b"k000002" not in reader
        reader.refresh()
        model[b"after"] = b"reopen"
        del model[b"k000002"]
        assert dict(reader.items()) == model and len(reader) == len(model)
