"""What every standard dbm module does (CPython's Lib/test/test_dbm.py AnyDBMTestCase), run against byrondbm."""

from __future__ import annotations

import dbm
import os
import pathlib

import pytest

import byrondbm

DATA = {"a": b"Python:", "b": b"Programming", "c": b"the", "d": b"way", "f": b"Guido", "g": b"intended"}


@pytest.fixture
def fname(tmp_path):
    return str(tmp_path / "test_dbm")


def init_db(fname):
    f = byrondbm.open(fname, "n")
    for k in DATA:
        f[k.encode("ascii")] = DATA[k]
    f.close()


def read_helper(f, data):
    assert sorted(k.decode("ascii") for k in f.keys()) == sorted(data)
    for key in data:
        assert f[key.encode("ascii")] == data[key]


def test_error_is_oserror():
    assert issubclass(byrondbm.error, OSError)


def test_not_existing(fname):
    with pytest.raises(dbm.error):
        byrondbm.open(fname)


def test_creation(fname):
    f = byrondbm.open(fname, "c")
    assert list(f.keys()) == []
    for key in DATA:
        f[key.encode("ascii")] = DATA[key]
    read_helper(f, DATA)
    f.close()


def test_creation_n_file_exists_with_invalid_contents(fname):
    pathlib.Path(fname).touch()
    with byrondbm.open(fname, "n") as f:
        assert len(f) == 0


def test_modification(fname):
    init_db(fname)
    data = dict(DATA)
    f = byrondbm.open(fname, "c")
    data["g"] = f[b"g"] = b"indented"
    read_helper(f, data)
    assert f.setdefault(b"xxx", b"foo") == b"foo"
    assert f[b"xxx"] == b"foo"
    f.close()


def test_read(fname):
    init_db(fname)
    f = byrondbm.open(fname, "r")
    read_helper(f, DATA)
    assert f.get(b"a") == DATA["a"]
    assert f.get(b"xxx", b"foo") == b"foo"
    assert f.get(b"xxx") is None
    with pytest.raises(KeyError):
        f[b"xxx"]
    f.close()


def test_keys_read_only(fname):
    init_db(fname)
    with byrondbm.open(fname, "r") as f:
        assert sorted(k.decode() for k in f.keys()) == sorted(DATA)


def test_empty_value(fname):
    f = byrondbm.open(fname, "c")
    assert f.keys() == []
    f[b"empty"] = b""
    assert f.keys() == [b"empty"]
    assert b"empty" in f
    assert f[b"empty"] == b""
    assert f.get(b"empty") == b""
    assert f.setdefault(b"empty") == b""
    f.close()


def test_access(fname):
    init_db(fname)
    f = byrondbm.open(fname, "r")
    assert b"a" in f
    assert f[b"a"] == b"Python:"
    f.close()


def test_open_with_bytes(fname):
    byrondbm.open(os.fsencode(fname), "c").close()


def test_open_with_pathlib_path(fname):
    byrondbm.open(pathlib.Path(fname), "c").close()


class FakePath:
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


def test_open_with_pathlike_bytes(fname):
    byrondbm.open(FakePath(os.fsencode(fname)), "c").close()
    assert byrondbm.whichdb(FakePath(os.fsencode(fname))) == "byrondbm"


def test_keys(fname):
    with byrondbm.open(fname, "c") as d:
        assert d.keys() == []
        a = [(b"a", b"b"), (b"12345678910", b"019237410982340912840198242")]
        for k, v in a:
            d[k] = v
        assert sorted(d.keys()) == sorted(k for (k, v) in a)
        for k, v in a:
            assert k in d
            assert d[k] == v
        assert b"xxx" not in d
        with pytest.raises(KeyError):
            d[b"xxx"]


def test_whichdb_empty_then_with_a_key(fname):
    for path in [fname, FakePath(fname), os.fsencode(fname), FakePath(os.fsencode(fname))]:
        with byrondbm.open(fname, "c"):
            pass
        assert byrondbm.whichdb(path) == "byrondbm"
    with byrondbm.open(fname, "w") as f:
        f[b"1"] = b"1"
        assert b"1" in f
        assert f[b"1"] == b"1"
    assert byrondbm.whichdb(fname) == "byrondbm"


def test_str_keys_and_values_are_utf8(fname):
    with byrondbm.open(fname, "c") as f:
        f["\u00fc"] = "\u00e9"
        assert f["\u00fc".encode()] == "\u00e9".encode()
        assert "\u00fc" in f


def test_write_to_read_only_raises_dbm_error(fname):
    init_db(fname)
    with byrondbm.open(fname, "r") as f:
        with pytest.raises(dbm.error):
            f[b"a"] = b"b"
        with pytest.raises(dbm.error):
            del f[b"a"]


def test_closed_handle_raises_dbm_error(fname):
    f = byrondbm.open(fname, "c")
    f.close()
    with pytest.raises(dbm.error):
        f[b"a"]
    with pytest.raises(dbm.error):
        f.keys()


def test_iteration_order_is_byte_order(fname):
    with byrondbm.open(fname, "c") as f:
        for k in [b"b", b"a", b"\x00", b"", b"\xff", b"ab"]:
            f[k] = k
        assert list(f) == [b"", b"\x00", b"a", b"ab", b"b", b"\xff"]
