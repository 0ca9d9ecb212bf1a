"""`db.batch()`: all or nothing, one log record, invisible before it exits, nothing applied on an exception,
and after a SIGKILL mid-batch each batch is wholly there or wholly absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import byrondbm
from byrondbm.engine import filenames
from byrondbm.engine.wal import read_log

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path: Path):  # noqa: ANN201
    with byrondbm.open(tmp_path / "db", "c") as d:
        yield d


def test_applies_puts_and_deletes_in_order(db: byrondbm.Database) -> None:
    db.update({b"gone": b"1", b"kept": b"2"})
    with db.batch() as b:
        b[b"a"] = b"1"
        b.put("é", bytearray(b"2"))
        b.put(memoryview(b"tmp"), b"x")
        del b[b"tmp"]  # a delete after a put of the same key wins
        b.delete(b"gone")
        b.delete(b"never there")  # not an error
        b[b"twice"] = b"first"
        b[b"twice"] = b"second"
        assert len(b) == 8
    assert dict(db.items()) == {b"a": b"1", "é".encode(): b"2", b"kept": b"2", b"twice": b"second"}
    assert len(db) == 4


def test_invisible_until_the_block_exits(db: byrondbm.Database) -> None:
    db[b"k"] = b"old"
    with db.batch() as b:
        b[b"k"] = b"new"
        b[b"n"] = b"1"
        assert db[b"k"] == b"old" and b"n" not in db and len(db) == 1
    assert db[b"k"] == b"new" and db[b"n"] == b"1"


def test_exception_inside_the_block_applies_nothing(db: byrondbm.Database) -> None:
    db[b"k"] = b"old"
    with pytest.raises(ZeroDivisionError):
        with db.batch() as b:
            b[b"k"] = b"new"
            b[b"other"] = b"1"
            1 / 0
    assert dict(db.items()) == {b"k": b"old"}
    with pytest.raises(byrondbm.error):
        b[b"late"] = b"1"  # the discarded batch is finished
    with pytest.raises(TypeError):
        with db.batch() as b:
            b[b"x"] = b"1"
            b[b"y"] = 2  # type: ignore[assignment]
    assert b"x" not in db


def test_one_log_record(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c") as db:
        db[b"before"] = b"1"
        with db.batch() as b:
            for i in range(500):
                b[b"%03d" % i] = b"v"
            b.delete(b"before")
        logs = [n for n in os.listdir(tmp_path / "db") if (filenames.parse(n) or ("",))[0] == "log"]
        assert len(logs) == 1
        batches, _, _ = read_log(str(tmp_path / "db" / logs[0]))
        assert [len(ops) for _, ops in batches] == [1, 501]
        assert batches[1][1][-1] == (b"before", None)


def test_commit_once_and_error_cases(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c")
    b = db.batch()
    b[b"k"] = b"v"
    b.commit()
    assert db[b"k"] == b"v"
    with pytest.raises(byrondbm.error):
        b.commit()
    with pytest.raises(byrondbm.error):
        b.put(b"k2", b"v")
    with db.batch():
        pass  # an empty batch writes nothing and is no error
    pending = db.batch()
    pending[b"late"] = b"1"
    db.close()
    with pytest.raises(byrondbm.error):
        pending.commit()
    with pytest.raises(byrondbm.error):
        db.batch()
    with byrondbm.open(tmp_path / "db", "r") as ro:
        assert dict(ro.items()) == {b"k": b"v"}
        with pytest.raises(byrondbm.error):
            ro.batch()


def test_scans_see_all_of_a_concurrent_batch_or_none(db: byrondbm.Database) -> None:
    keys = [b"s%02d" % j for j in range(50)]
    with db.batch() as b:
        for k in keys:
            b[k] = b"0"
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with db.batch() as b:
                for k in keys:
                    b[k] = b"%d" % i

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(50):
            values = {v for _, v in db.scan(prefix=b"s")}
            assert len(values) == 1, values
            with db.snapshot() as snap:
                assert len({snap[k] for k in keys}) == 1
    finally:
        stop.set()
        t.join()


def test_point_reads_never_see_half_a_batch(db: byrondbm.Database) -> None:
    """``ba`` is written first and ``bb`` last in every batch; reading ``ba`` then ``bb`` must never find
    ``bb`` older than ``ba``. A tiny switch interval makes the interleaving frequent."""
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            written[0] = i
            with db.batch() as b:
                b[b"ba"] = b"%d" % i
                for j in range(50):
                    b[b"bz%d" % j] = b"x"
                b[b"bb"] = b"%d" % i

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=writer)
    t.start()
    torn = []
    try:
        while written[0] < 2000:
            a = int(db.get(b"ba", b"0"))
            b_ = int(db.get(b"bb", b"0"))
            if b_ < a:
                torn.append((a, b_))
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    assert torn == []


CHILD = textwrap.dedent(
    """
    import sys, byrondbm
    path, flag, slots = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = byrondbm.open(path, flag, memtable_size=256 * 1024)
    i = int(db.get(b"last", b"0"))
    pad = b"p" * 300
    while True:
        i += 1
        with db.batch() as b:
            for j in range(slots):
                b[b"slot%04d" % j] = b"%d:" % i + pad
            b[b"batch%06d" % i] = b"%d" % slots
            b[b"last"] = b"%d" % i
        sys.stdout.write("%d\\n" % i)
        sys.stdout.flush()
    """
)


@pytest.mark.parametrize("flag", ["c", "cf"], ids=["default", "fast"])
def test_sigkill_mid_batch_leaves_each_batch_whole_or_absent(tmp_path: Path, flag: str) -> None:
    """A child writes 201-key batches in a loop and reports each acknowledged one on a pipe; the parent
    kills it with SIGKILL after a varying number of acknowledgements, three times over one database.

    By default every acknowledged batch must survive; with ``'f'`` (buffered) the newest ones may be lost,
    and the log may end in a torn record, but every batch is still wholly there or wholly absent.
    """
    path = tmp_path / "db"
    slots = 200
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    last = 0
    for kill_after in (3, 17, 40):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), flag, str(slots)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert child.stdout is not None
        acked: list[int] = []
        for line in child.stdout:
            acked.append(int(line))
            if len(acked) == kill_after:
                child.send_signal(signal.SIGKILL)
                break
        acked += [int(line) for line in child.stdout]  # acknowledged before the kill landed
        assert child.wait() == -signal.SIGKILL
        assert acked[0] == last + 1
        with byrondbm.open(path, "r") as db:
            db._check()
            recovered = int(db[b"last"])
            if flag == "c":
                assert recovered in (acked[-1], acked[-1] + 1), (recovered, acked[-3:])
            else:
                assert last <= recovered <= acked[-1] + 1, (last, recovered, acked[-3:])
            # the newest batch present is whole: every slot carries its number ...
            assert {db[b"slot%04d" % j] for j in range(slots)} == {b"%d:" % recovered + b"p" * 300}
            # ... and no later batch left anything behind
            assert next(db.scan(prefix=b"batch", reverse=True, keys_only=True)) == b"batch%06d" % recovered
        last = recovered
