"""The standard library's own `test.test_shelve` run with byrondbm as the backend.

Two ways in, each run against the stdlib's tests:

- the standard `shelve.open` with byrondbm as `dbm`'s default module (what `dbm.open(..., "c")` uses for a
  new file), as `test_shelve` itself does for each `dbm` module (``dbm._defaultmod = self.dbm_mod``);
- `byrondbm.shelve.open`, a drop-in for `shelve.open`.

The stdlib's ``TestCase`` (open/close, protocols 0-2, str/bytes/PathLike file names, writeback, ``with``)
and its ``mapping_tests.BasicTestMappingProtocol`` suites for every pickle protocol are reused unchanged;
only the file they open changes. If this Python ships without its ``test`` package, those are skipped (and
say so); the explicit tests below still run.
"""

from __future__ import annotations

import dbm
import os
import pickle
import shelve as std_shelve
from pathlib import Path
from typing import Any

import pytest

import byrondbm
from byrondbm import shelve

try:
    from test import mapping_tests, test_shelve as stdlib_test_shelve
except ImportError:  # a Python without its test suite
    stdlib_test_shelve = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdlib tests create ``os_helper.TESTFN`` in the current directory: keep it in tmp_path."""
    monkeypatch.chdir(tmp_path)


class _FakePath:
    """An os.PathLike that returns whatever it was given (str or bytes), as test.support's FakePath."""

    def __init__(self, path: Any) -> None:
        self.path = path

    def __fspath__(self) -> Any:
        return self.path


@pytest.mark.parametrize("protocol", [None, 0, 1, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("kind", ["str", "bytes", "pathlike-str", "pathlike-bytes"])
def test_open_template(tmp_path: Path, protocol: Any, kind: str) -> None:
    """test_shelve.TestCase.test_open_template for byrondbm.shelve, every file-name type and protocol."""
    fn = str(tmp_path / "shelftemp.db")
    name: Any = {"str": fn, "bytes": os.fsencode(fn), "pathlike-str": _FakePath(fn), "pathlike-bytes": _FakePath(os.fsencode(fn))}[kind]
    s = shelve.open(filename=name, protocol=protocol)
    try:
        s["key1"] = (1, 2, 3, 4)
        assert s["key1"] == (1, 2, 3, 4)
    finally:
        s.close()
    assert byrondbm.whichdb(fn) == "byrondbm"


def test_close_and_with(tmp_path: Path) -> None:
    """test_shelve.TestCase.test_close and test_with: a closed shelf raises ValueError."""
    s = shelve.open(tmp_path / "a", protocol=2, writeback=False)
    s["key1"] = [1, 2, 3, 4]
    assert s["key1"] == [1, 2, 3, 4] and len(s) == 1
    s.close()
    with pytest.raises(ValueError):
        len(s)
    with pytest.raises(ValueError):
        s["key1"]
    with shelve.open(tmp_path / "b", protocol=2) as s:
        s["key1"] = [1, 2, 3, 4]
    with pytest.raises(ValueError):
        len(s)


def test_mutable_entry(tmp_path: Path) -> None:
    """test_shelve.TestCase.test_mutable_entry on disk."""
    with shelve.open(tmp_path / "a", protocol=2, writeback=False) as s:
        s["key1"] = [1, 2, 3, 4]
        s["key1"].append(5)
        assert s["key1"] == [1, 2, 3, 4]
    with shelve.open(tmp_path / "b", protocol=2, writeback=True) as s:
        s["key1"] = [1, 2, 3, 4]
        s["key1"].append(5)
        assert s["key1"] == [1, 2, 3, 4, 5]
    with shelve.open(tmp_path / "b", "r") as s:
        assert s["key1"] == [1, 2, 3, 4, 5] and len(s) == 1


def test_keyencoding_and_writeback_writes_immediately(tmp_path: Path) -> None:
    """test_keyencoding and test_writeback_also_writes_immediately with a byrondbm Database as the dict
    (a Shelf closes its dict, so each shelf opens the database anew)."""
    path = tmp_path / "db"
    key = "Pöp"
    for encoding in ("utf-8", "latin-1"):
        with std_shelve.Shelf(byrondbm.open(path, "c"), keyencoding=encoding) as s:
            s[key] = [1]
    with std_shelve.Shelf(byrondbm.open(path, "w"), keyencoding="ascii") as s:
        with pytest.raises(UnicodeEncodeError):
            s[key] = [1]
    with std_shelve.Shelf(byrondbm.open(path, "w"), writeback=True) as s:
        s["key"] = [1]
        p1 = s.dict[b"key"]  # the store is written at once, not only on sync
        s["key"].append(2)
    with byrondbm.open(path, "r") as db:
        assert key.encode("utf-8") in db and key.encode("latin-1") in db and len(db) == 3
        assert db[b"key"] != p1 and pickle.loads(db[b"key"]) == [1, 2]


def test_default_protocol(tmp_path: Path) -> None:
    with shelve.open(tmp_path / "a") as s:
        assert s._protocol == pickle.DEFAULT_PROTOCOL


def test_stdlib_shelve_uses_byrondbm_as_default_dbm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The setup the generated classes below rely on really puts the data in a byrondbm database."""
    monkeypatch.setattr(dbm, "_defaultmod", byrondbm)
    with std_shelve.open(str(tmp_path / "s")) as s:
        s["k"] = {"v": 1}
    assert byrondbm.whichdb(tmp_path / "s") == "byrondbm"
    with byrondbm.open(tmp_path / "s", "r") as db:
        assert pickle.loads(db[b"k"]) == {"v": 1}


def test_stdlib_test_package_available() -> None:
    if stdlib_test_shelve is None:
        pytest.skip("this Python has no test.test_shelve: the stdlib's own shelve tests were not run")


if stdlib_test_shelve is not None:

    class TestStdlibTestCase(stdlib_test_shelve.TestCase):
        """The stdlib's TestCase, whose file tests call shelve.open -> dbm.open(new file) -> byrondbm."""

        def setUp(self) -> None:
            super().setUp()
            self.addCleanup(setattr, dbm, "_defaultmod", dbm._defaultmod)
            dbm._defaultmod = byrondbm

    class _ByrondbmShelveFileBase(stdlib_test_shelve.TestShelveFileBase):
        """TestShelveFileBase opening each mapping with byrondbm.shelve.open instead of shelve.open."""

        def _empty_mapping(self) -> Any:
            self.counter += 1
            x = shelve.open(self.base_path + str(self.counter), **self._args)
            self.addCleanup(x.close)
            return x

    for _proto in range(pickle.HIGHEST_PROTOCOL + 1):
        for _base, _label in ((stdlib_test_shelve.TestShelveFileBase, "StdlibOpen"), (_ByrondbmShelveFileBase, "ByrondbmOpen")):
            _name = f"TestProto{_proto}File_byrondbm{_label}Shelve"
            globals()[_name] = type(
                _name, (_base, mapping_tests.BasicTestMappingProtocol), {"dbm_mod": byrondbm, "_args": {"protocol": _proto}}
            )
