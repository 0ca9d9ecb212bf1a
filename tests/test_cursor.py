"""dbm.gnu's key walk (`firstkey`/`nextkey`) and the bsddb cursor (`first`, `last`, `next`, `previous`,
`set_location`) over data spread across the memtable and several levels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import byrondbm

SMALL = dict(memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512)
KEYS = [b"", b"\x00", b"a", b"a\x00", b"ab"] + [b"k%04d" % i for i in range(0, 2000, 2)] + [b"\xff", b"\xff\xff"]


@pytest.fixture
def db(tmp_path: Path):  # noqa: ANN201
    """KEYS with values key+b"=", half compacted into levels, the rest in L0 and the memtable."""
    with byrondbm.open(tmp_path / "db", "c", **SMALL) as d:
        for k in KEYS[::2]:
            d[k] = k + b"="
        d.compact()
        for k in KEYS[1::2]:
            d[k] = k + b"="
        yield d


def test_firstkey_nextkey_walk(db: byrondbm.Database) -> None:
    walked = []
    k = db.firstkey()
    while k is not None:
        walked.append(k)
        k = db.nextkey(k)
    assert walked == KEYS
    assert db.nextkey(KEYS[-1]) is None
    assert db.nextkey(b"k0001") == b"k0002"  # a key not in the database: the next one after it
    assert db.nextkey("a") == b"a\x00"


def test_walk_while_deleting_every_key(db: byrondbm.Database) -> None:
    """The classic gdbm loop that deletes as it walks."""
    k = db.firstkey()
    seen = []
    while k is not None:
        nk = db.nextkey(k)
        seen.append(k)
        del db[k]
        k = nk
    assert seen == KEYS and len(db) == 0 and db.firstkey() is None


def test_empty_database(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c") as db:
        assert db.firstkey() is None
        for move in (db.first, db.last, db.next, db.previous):
            with pytest.raises(KeyError):
                move()
        with pytest.raises(KeyError):
            db.set_location(b"")


def test_forward_and_backward_walks(db: byrondbm.Database) -> None:
    pairs = [(k, k + b"=") for k in KEYS]
    forward = [db.first()]
    while True:
        try:
            forward.append(db.next())
        except KeyError:
            break
    assert forward == pairs
    with pytest.raises(KeyError):
        db.next()  # still past the end
    assert db.previous() == pairs[-2]  # a failed move leaves the cursor on the last key
    backward = [db.last()]
    while True:
        try:
            backward.append(db.previous())
        except KeyError:
            break
    assert backward == pairs[::-1]
    assert next(db) == pairs[1]  # how shelve.BsdDbShelf.next calls it


def test_set_location(db: byrondbm.Database) -> None:
    assert db.set_location(b"k0010") == (b"k0010", b"k0010=")  # present
    assert db.next() == (b"k0012", b"k0012=")
    assert db.set_location(b"k0011") == (b"k0012", b"k0012=")  # absent: the smallest key >= it
    assert db.previous() == (b"k0010", b"k0010=")
    assert db.set_location(b"") == (b"", b"=")
    assert db.set_location("a") == (b"a", b"a=")  # str keys are UTF-8
    assert db.set_location(b"\xfe") == (b"\xff", b"\xff=")
    with pytest.raises(KeyError):
        db.set_location(b"\xff\xff\x00")  # after the last key
    assert db.next() == (b"\xff\xff", b"\xff\xff=")  # the cursor stayed at b"\xff"
    with pytest.raises(TypeError):
        db.set_location(5)  # type: ignore[arg-type]


def test_cursor_moves_past_a_deleted_current_key(db: byrondbm.Database) -> None:
    db.set_location(b"k0100")
    del db[b"k0100"]
    del db[b"k0102"]
    assert db.next() == (b"k0104", b"k0104=")
    db.set_location(b"k0200")
    del db[b"k0200"]
    assert db.previous() == (b"k0198", b"k0198=")
    db[b"k0199"] = b"new"
    assert db.next() == (b"k0199", b"new")  # moves see the database as it is now


def test_closed_database(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c")
    db[b"k"] = b"v"
    db.close()
    for call in (db.firstkey, db.first, db.last, db.next, db.previous, lambda: db.nextkey(b"k"), lambda: db.set_location(b"k")):
        with pytest.raises(byrondbm.error):
            call()
