"""`byrondbm.shelve.open` and `shelve.BsdDbShelf(byrondbm.open(...))`: pickled round trips, sorted keys, the
cursor methods, ``writeback``, flags and reorganize.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import shelve as std_shelve
from pathlib import Path

import pytest

import byrondbm
from byrondbm import shelve


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


OBJECTS = {
    "dict": {"a": 1, "nested": {"b": [1, 2, (3, 4)]}},
    "list": [1, "two", 3.0, None, b"bytes"],
    "set": {1, 2, 3},
    "point": Point(1, [2, 3]),
    "unicode ключ ✓": "значение",
    "": "the empty key",
    "big": list(range(20_000)),
}


def test_round_trip_and_sorted_keys(tmp_path: Path) -> None:
    path = tmp_path / "shelf"
    with shelve.open(path) as s:
        assert isinstance(s, std_shelve.BsdDbShelf)
        s.update(OBJECTS)
        assert s["point"] == Point(1, [2, 3]) and len(s) == len(OBJECTS)
    with shelve.open(str(path), "r") as s:
        assert dict(s) == OBJECTS
        expected = sorted(OBJECTS, key=lambda k: k.encode("utf-8"))
        assert list(s) == list(s.keys()) == expected
        assert [k for k, _ in s.items()] == expected
        assert "set" in s and "nope" not in s and s.get("nope", 5) == 5
        with pytest.raises(byrondbm.error):
            s["new"] = 1
    with shelve.open(path, "n") as s:  # 'n' starts over
        assert len(s) == 0


def test_cursor_methods_unpickle(tmp_path: Path) -> None:
    with shelve.open(tmp_path / "shelf") as s:
        for i in range(0, 50, 5):
            s["k%02d" % i] = {"i": i}
        assert s.first() == ("k00", {"i": 0})
        assert s.next() == ("k05", {"i": 5})
        assert s.last() == ("k45", {"i": 45})
        assert s.previous() == ("k40", {"i": 40})
        assert s.set_location("k11") == ("k15", {"i": 15})
        assert s.next() == ("k20", {"i": 20})
        s.last()
        with pytest.raises(KeyError):
            s.next()
        s.first()
        with pytest.raises(KeyError):
            s.previous()
        with pytest.raises(KeyError):
            s.set_location("z")
        walked = [s.first()]
        while True:
            try:
                walked.append(s.next())
            except KeyError:
                break
        assert walked == [("k%02d" % i, {"i": i}) for i in range(0, 50, 5)]


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_protocols(tmp_path: Path, protocol: int) -> None:
    with shelve.open(tmp_path / "shelf", protocol=protocol) as s:
        s["t"] = (1, [2], {"3": 4})
        raw = s.dict[b"t"]
    assert pickle.loads(raw) == (1, [2], {"3": 4})
    if protocol >= 2:
        assert raw[:2] == bytes([0x80, protocol])
    with shelve.open(tmp_path / "shelf") as s:
        assert s["t"] == (1, [2], {"3": 4})


def test_writeback(tmp_path: Path) -> None:
    path = tmp_path / "shelf"
    with shelve.open(path) as s:
        s["plain"] = [1]
        s["plain"].append(2)  # without writeback the change is lost, as in the standard shelve
        s["cached"] = [1]
    with shelve.open(path, writeback=True) as s:
        s["cached"].append(2)
        s["cached"].append(3)
        assert pickle.loads(s.dict[b"cached"]) == [1]  # only in the cache until sync or close
        s.sync()
        assert pickle.loads(s.dict[b"cached"]) == [1, 2, 3]
        s["cached"].append(4)
    with shelve.open(path, "r") as s:
        assert s["plain"] == [1] and s["cached"] == [1, 2, 3, 4]


def test_bsddbshelf_over_a_database(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c")
    with std_shelve.BsdDbShelf(db, writeback=True) as s:
        s.update(copy.deepcopy(OBJECTS))
        s["list"].append("more")
        assert s.first() == ("", "the empty key")
        assert s.set_location("p") == ("point", Point(1, [2, 3]))
        assert s.previous() == ("list", OBJECTS["list"])  # cursor methods read the database, not the cache
    with pytest.raises(byrondbm.error):
        db[b"list"]  # closing the shelf closed the database
    with std_shelve.BsdDbShelf(byrondbm.open(tmp_path / "db", "r")) as s2:
        assert s2["list"][-1] == "more" and s2.last() == ("unicode ключ ✓", "значение")


def test_reorganize_and_closed_shelf(tmp_path: Path) -> None:
    s = shelve.open(tmp_path / "shelf", writeback=True)
    for i in range(2000):
        s["k%04d" % i] = "x" * 200
    for i in range(2000):
        del s["k%04d" % i]
    s["kept"] = [1]
    s["kept"].append(2)
    s.reorganize()  # writes the cache back first
    assert pickle.loads(s.dict[b"kept"]) == [1, 2]
    assert s.dict.stats()["table_bytes"] < 2000
    s.close()
    for call in (lambda: s["kept"], lambda: len(s), s.reorganize):
        with pytest.raises(ValueError):
            call()
