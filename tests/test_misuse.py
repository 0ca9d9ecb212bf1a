"""Misuse and bad input: wrong types for every argument of every public function, use after close, double
close, reopen while open, a second writer process, 8 threads of mixed calls checked against their own
models, keys and values of 64 MiB, and hypothesis-fuzzed call sequences (tests/harness/fuzz_calls.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pytest

import byrondbm

from tests.harness import fuzz_calls

WRONG = [None, 1, 2.5, True, [b"a"], (b"a",), {b"a": b"b"}, object()]


@pytest.fixture
def db(tmp_path):
    d = byrondbm.open(str(tmp_path / "db"), "c")
    d[b"a"] = b"1"
    yield d
    d.close()


def _calls_with(db: byrondbm.Database, bad: Any) -> dict[str, Callable[[], Any]]:
    """Every public call of a database, with ``bad`` as one argument."""
    return {
        "getitem": lambda: db[bad],
        "setitem key": lambda: db.__setitem__(bad, b"v"),
        "setitem value": lambda: db.__setitem__(b"k", bad),
        "delitem": lambda: db.__delitem__(bad),
        "contains": lambda: bad in db,
        "get": lambda: db.get(bad),
        "setdefault key": lambda: db.setdefault(bad, b"v"),
        "setdefault value": lambda: db.setdefault(b"new", bad),
        "pop": lambda: db.pop(bad, None),
        "update": lambda: db.update({bad: b"v"}),
        "scan start": lambda: db.scan(bad if bad is not None else 1),
        "scan stop": lambda: db.scan(None, bad if bad is not None else 1),
        "scan prefix": lambda: db.scan(prefix=bad if bad is not None else 1),
        "nextkey": lambda: db.nextkey(bad),
        "set_location": lambda: db.set_location(bad),
        "batch put key": lambda: db.batch().put(bad, b"v"),
        "batch put value": lambda: db.batch().put(b"k", bad),
        "batch delete": lambda: db.batch().delete(bad),
        "snapshot get": lambda: db.snapshot().get(bad),
    }


@pytest.mark.parametrize("bad", WRONG, ids=lambda b: type(b).__name__)
def test_wrong_types_raise_type_error_and_change_nothing(db, bad: Any) -> None:
    for name, call in _calls_with(db, bad).items():
        with pytest.raises(TypeError):
            call()
            pytest.fail(name)
    assert dict(db.items()) == {b"a": b"1"}


def test_wrong_open_arguments(tmp_path) -> None:
    path = str(tmp_path / "db")
    for bad in (None, 1, 2.5, [path]):
        with pytest.raises(TypeError):
            byrondbm.open(bad, "c")
    for flag in (None, 1, "", "x", "cz", "cfs", "fc"):
        with pytest.raises(byrondbm.error):
            byrondbm.open(path, flag)
    for mode in ("0o666", 1.5, None, True):
        with pytest.raises(TypeError):
            byrondbm.open(path, "c", mode)
    with pytest.raises(TypeError, match="no_such_option"):
        byrondbm.open(path, "c", no_such_option=1)
    with pytest.raises(TypeError, match="memtable_size"):
        byrondbm.open(path, "c", memtable_size="big")
    with pytest.raises(ValueError, match="block_size"):
        byrondbm.open(path, "c", block_size=-1)
    assert not os.path.exists(path)  # nothing was created by a refused open
    for fn in (byrondbm.check, byrondbm.repair, byrondbm.whichdb):
        with pytest.raises(TypeError):
            fn(1)


def test_use_after_close(db) -> None:
    it = db.scan()
    snap = db.snapshot()
    db.close()
    db.close()  # idempotent
    for call in [lambda: db[b"a"], lambda: db.__setitem__(b"a", b"b"), lambda: db.__delitem__(b"a"),
                 lambda: b"a" in db, lambda: len(db), lambda: db.keys(), lambda: list(db.items()),
                 lambda: db.scan(), lambda: db.batch(), lambda: db.snapshot(), lambda: db.sync(),
                 lambda: db.compact(), lambda: db.stats(), lambda: db.check(), lambda: db.firstkey(),
                 lambda: db.first(), lambda: db.get(b"a"), lambda: next(it), lambda: snap[b"a"]]:
        with pytest.raises(byrondbm.error):
            call()


READ_ONLY_WRITES: dict[str, Callable[[Any, Any], Any]] = {
    "__setitem__": lambda ro, k: ro.__setitem__(k, b"v"),
    "__delitem__": lambda ro, k: ro.__delitem__(k),
    "pop": lambda ro, k: ro.pop(k),
    "pop with a default": lambda ro, k: ro.pop(k, b"default"),
    "popitem": lambda ro, k: ro.popitem(),
    "update": lambda ro, k: ro.update({k: b"v"}),
    "update with keywords": lambda ro, k: ro.update(x=b"v"),
    "clear": lambda ro, k: ro.clear(),
    "batch": lambda ro, k: ro.batch(),
    "compact": lambda ro, k: ro.compact(),
    "reorganize": lambda ro, k: ro.reorganize(),
}


@pytest.mark.parametrize("call", READ_ONLY_WRITES.values(), ids=READ_ONLY_WRITES.keys())
@pytest.mark.parametrize("key", [b"a", b"absent", None], ids=["present key", "absent key", "key of a wrong type"])
def test_read_only_refuses_every_write_before_looking_at_the_key(tmp_path, call, key) -> None:
    """As dbm.gnu: byrondbm.error, never KeyError or TypeError, and nothing changes."""
    path = str(tmp_path / "db")
    with byrondbm.open(path, "c") as db:
        db[b"a"] = b"1"
    with byrondbm.open(path, "r") as ro:
        with pytest.raises(byrondbm.error, match="read-only"):
            call(ro, key)
        assert dict(ro.items()) == {b"a": b"1"}


def test_read_only_setdefault_reads_a_present_key_and_refuses_to_add_one(tmp_path) -> None:
    path = str(tmp_path / "db")
    with byrondbm.open(path, "c") as db:
        db[b"a"] = b"1"
    with byrondbm.open(path, "r") as ro:
        assert ro.setdefault(b"a", b"2") == b"1"
        with pytest.raises(byrondbm.error, match="read-only"):
            ro.setdefault(b"absent", b"2")
        assert b"absent" not in ro


def test_reopen_while_open_is_refused(db, tmp_path) -> None:
    path = str(tmp_path / "db")
    for flag in ("w", "c", "n", "cu"):
        with pytest.raises(byrondbm.error, match="locked"):
            byrondbm.open(path, flag)
    assert db[b"a"] == b"1"  # the refused opens did not disturb the open one
    with byrondbm.open(path, "r") as reader, byrondbm.open(path, "r") as second:  # readers never conflict
        assert reader[b"a"] == second[b"a"] == b"1"


def test_second_writer_process_is_refused(db, tmp_path) -> None:
    code = (
        "import byrondbm, sys\n"
        "try:\n"
        "    byrondbm.open(sys.argv[1], sys.argv[2])\n"
        "except byrondbm.error as e:\n"
        "    print('refused', 'locked' in str(e))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(byrondbm.__file__)))}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "db"), "w"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.stdout.strip() == "refused True", out.stderr


def test_eight_threads_of_mixed_calls(tmp_path) -> None:
    """Each thread owns a key prefix (so it can check its own reads exactly) and scans everything (every value
    it sees must name its own key: nothing torn or misplaced). Runs for a fixed 2 seconds."""
    path = str(tmp_path / "db")
    db = byrondbm.open(path, "c", memtable_size=16 * 1024, l0_compaction_trigger=2)
    models: list[dict[bytes, bytes]] = [{} for _ in range(8)]
    errors: list[BaseException] = []
    stop = time.monotonic() + 2.0

    def worker(t: int) -> None:
        model = models[t]
        prefix = b"t%d/" % t
        n = 0
        try:
            while time.monotonic() < stop:
                n += 1
                k = prefix + b"%03d" % (n % 200)
                r = n % 10
                if r < 5:
                    v = k + b"=%d" % n
                    db[k] = v
                    model[k] = v
                elif r < 7:
                    if db.pop(k, None) != model.pop(k, None):
                        raise AssertionError("pop disagrees with the thread's model")
                elif r < 9:
                    if db.get(k) != model.get(k):
                        raise AssertionError(f"get({k!r}) disagrees with the thread's model")
                else:
                    mine = dict(db.scan(prefix=prefix))
                    if mine != model:
                        raise AssertionError("prefix scan disagrees with the thread's model")
                    last = b""
                    for key, value in db.scan():
                        if not value.startswith(key + b"=") or key <= last and last:
                            raise AssertionError(f"torn, misplaced or unordered entry {key!r}")
                        last = key
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    expected = {k: v for m in models for k, v in m.items()}
    assert dict(db.items()) == expected and len(db) == len(expected)
    db._check()
    db.close()
    with byrondbm.open(path, "r") as again:
        assert dict(again.items()) == expected


@pytest.mark.slow
def test_64_mib_keys_and_values(tmp_path) -> None:
    path = str(tmp_path / "db")
    big = 64 * 1024 * 1024
    key = b"K" * big
    value = bytes(range(256)) * (big // 256)
    with byrondbm.open(path, "c") as db:
        db[key] = b"small"
        db[b"small"] = value
        assert db[key] == b"small" and db[b"small"] == value
    with byrondbm.open(path, "w") as db:  # replayed from the log into a table
        assert db[key] == b"small" and db[b"small"] == value
        db.compact()
        assert db.check()["ok"]
    with byrondbm.open(path, "r") as db:
        assert db[key] == b"small" and db[b"small"] == value
        assert sorted(len(k) for k in db.keys()) == [5, big]


@pytest.mark.slow
def test_fuzzed_calls() -> None:
    result = fuzz_calls.run(examples=40, steps=30)
    assert result["calls"] > 300
