"""The contract's "The mapping" and "Errors" sections."""

from __future__ import annotations

import threading
import time

import pytest

import byrondbm


@pytest.fixture
def db(path):
    d = byrondbm.open(path, "c")
    yield d
    d.close()


def test_key_and_value_types(db):
    db[b"b"] = b"1"
    db[bytearray(b"ba")] = bytearray(b"2")
    db[memoryview(b"bm")] = memoryview(b"3")
    db["s\u00e9"] = "\u20ac"
    assert db[b"b"] == b"1" and db["ba"] == b"2" and db[b"bm"] == b"3"
    assert db["s\u00e9"] == "\u20ac".encode() and db["s\u00e9".encode()] == "\u20ac".encode()
    assert all(type(k) is bytes for k in db.keys())
    assert all(type(v) is bytes for v in db.values())


@pytest.mark.parametrize("bad", [1, 1.5, None, object(), ["a"], ("a",)])
def test_wrong_types_raise_type_error(db, bad):
    with pytest.raises(TypeError):
        db[bad] = b"v"
    with pytest.raises(TypeError):
        db[b"k"] = bad
    with pytest.raises(TypeError):
        db[bad]
    with pytest.raises(TypeError):
        bad in db
    with pytest.raises(TypeError):
        del db[bad]
    assert len(db) == 0


def test_empty_and_nul(db):
    db[b""] = b""
    db[b"\x00"] = b"\x00\x00"
    db[b"a\x00b"] = b""
    db[b"\xff" * 100] = b"x"
    assert db[b""] == b"" and b"" in db and db.get(b"") == b""
    assert db.keys() == [b"", b"\x00", b"a\x00b", b"\xff" * 100]
    assert len(db) == 4


def test_dict_behaviour(db):
    assert db.get(b"x") is None and db.get(b"x", b"d") == b"d"
    assert db.setdefault(b"x", b"1") == b"1" and db.setdefault(b"x", b"2") == b"1"
    assert db.pop(b"x") == b"1" and db.pop(b"x", None) is None
    with pytest.raises(KeyError):
        db.pop(b"x")
    with pytest.raises(KeyError):
        db[b"x"]
    with pytest.raises(KeyError):
        del db[b"x"]
    db.update({b"b": b"2", b"a": b"1"}, c=b"3")
    assert db.keys() == [b"a", b"b", b"c"]
    assert list(db) == [b"a", b"b", b"c"]
    assert list(db.items()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert list(db.values()) == [b"1", b"2", b"3"]
    assert (b"a", b"1") in db.items() and len(db.items()) == 3
    k, v = db.popitem()
    assert (k, v) == (b"a", b"1") and len(db) == 2
    db.clear()
    assert len(db) == 0 and db.keys() == []
    with pytest.raises(KeyError):
        db.popitem()


def test_keys_is_sorted_list_and_len_exact_across_flushes(path, small):
    import random
    rnd = random.Random(5)
    model: dict[bytes, bytes] = {}
    with byrondbm.open(path, "c", **small) as db:
        for i in range(3000):
            k = rnd.randbytes(rnd.randrange(0, 4))
            if rnd.random() < 0.3:
                model.pop(k, None)
                db.pop(k, None)
            else:
                model[k] = b"%d" % i
                db[k] = model[k]
            if i % 97 == 0:
                assert len(db) == len(model)
        keys = db.keys()
        assert isinstance(keys, list) and keys == sorted(model)
        assert db.stats()["flushes"] > 5
    with byrondbm.open(path) as db:
        assert len(db) == len(model) and dict(db.items()) == model


def test_closed_database_raises(path):
    db = byrondbm.open(path, "c")
    db[b"k"] = b"v"
    db.close()
    db.close()  # idempotent
    for op in [lambda: db[b"k"], lambda: db.__setitem__(b"k", b"v"), lambda: len(db), lambda: db.keys(),
               lambda: b"k" in db, lambda: db.get(b"k"), lambda: list(db), lambda: db.sync(),
               lambda: db.compact(), lambda: db.stats(), lambda: db.__delitem__(b"k"), lambda: db.scan()]:
        with pytest.raises(byrondbm.error):
            op()


def test_context_manager_closes(path):
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
    with pytest.raises(byrondbm.error):
        db[b"k"]
    with byrondbm.open(path, "w") as db:  # lock released
        assert db[b"k"] == b"v"


def test_sync_then_read_back(path):
    with byrondbm.open(path, "cf") as db:
        db[b"k"] = b"v"
        db.sync()
        with open(f"{path}/CURRENT") as f:
            assert f.read().startswith("MANIFEST-")


def test_close_while_iterating_in_another_thread(path):
    db = byrondbm.open(path, "c")
    with db.batch() as b:
        for i in range(20000):
            b[b"%06d" % i] = b"v"
    seen: list[object] = []
    started = threading.Event()

    def reader():
        try:
            for i, _ in enumerate(db.scan()):
                if i == 10:
                    started.set()
                time.sleep(0.0001)
            seen.append("finished")
        except byrondbm.error as e:
            seen.append(e)

    t = threading.Thread(target=reader)
    t.start()
    started.wait(10)
    db.close()
    t.join(30)
    assert len(seen) == 1 and isinstance(seen[0], byrondbm.error), seen


def test_threads_share_one_database(path, small):
    db = byrondbm.open(path, "c", **small)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(1500):
                k = b"t%d-%05d" % (n, i)
                db[k] = k
                assert db[k] == k
                if i % 3 == 0:
                    del db[k]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(db) == 4 * 1000
    db._check()
    db.close()
