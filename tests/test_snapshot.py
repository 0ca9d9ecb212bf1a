"""`db.snapshot()`: a read-only mapping frozen when taken, whose old versions and tombstones survive flushes
and compactions until it is released; then compaction reclaims them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

import byrondbm

SMALL = dict(memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512)


@pytest.fixture
def db(tmp_path: Path):  # noqa: ANN201
    with byrondbm.open(tmp_path / "db", "c", **SMALL) as d:
        yield d


def _fill(db: byrondbm.Database, n: int, value: bytes) -> dict[bytes, bytes]:
    with db.batch() as b:
        for i in range(n):
            b[b"k%05d" % i] = value + b"%d" % i
    return {b"k%05d" % i: value + b"%d" % i for i in range(n)}


def test_is_a_frozen_read_only_mapping(db: byrondbm.Database) -> None:
    old = _fill(db, 300, b"old")
    with db.snapshot() as snap:
        for i in range(0, 300, 3):
            db[b"k%05d" % i] = b"new"
        for i in range(1, 300, 3):
            del db[b"k%05d" % i]
        db[b"added"] = b"x"
        assert snap[b"k00000"] == b"old0" and snap.get(b"k00001") == b"old1"
        assert b"k00001" in snap and b"added" not in snap and snap.get(b"added", 7) == 7
        with pytest.raises(KeyError):
            snap[b"added"]
        assert len(snap) == 300 and list(snap) == sorted(old) == snap.keys()
        assert dict(snap.items()) == old and sorted(snap.values()) == sorted(old.values())
        assert list(snap.scan(b"k00100", b"k00103", reverse=True)) == [(b"k%05d" % i, b"old%d" % i) for i in (102, 101, 100)]
        assert list(snap.scan(prefix=b"k0029", keys_only=True)) == [b"k%05d" % i for i in range(290, 300)]
        assert snap == old
        with pytest.raises(TypeError):
            snap[b"k"] = b"v"  # type: ignore[index]
        with pytest.raises(TypeError):
            del snap[b"k00000"]  # type: ignore[attr-defined]
        assert db[b"k00000"] == b"new" and len(db) == 201
    for use in (lambda: snap[b"k00000"], lambda: b"k" in snap, lambda: len(snap), lambda: list(snap),
                lambda: snap.keys(), lambda: snap.scan(), lambda: snap.get(b"k")):  # fmt: skip
        with pytest.raises(byrondbm.error):
            use()
    snap.close()  # idempotent


def test_survives_compaction(db: byrondbm.Database) -> None:
    """Take a snapshot, overwrite or delete everything, compact fully: the snapshot still reads old values."""
    old = _fill(db, 3000, b"old")
    db.compact()
    snap = db.snapshot()
    for i in range(3000):
        if i % 2:
            del db[b"k%05d" % i]
        else:
            db[b"k%05d" % i] = b"new"
    db.compact()
    assert db.stats()["levels"][0]["files"] == 0 and db.stats()["memtable_bytes"] == 0
    assert dict(snap.items()) == old
    assert all(snap[k] == v for k, v in old.items())  # point lookups find the old versions in the tables
    assert len(db) == 1500 and set(db.values()) == {b"new"}
    snap.close()


def test_release_lets_compaction_reclaim(tmp_path: Path) -> None:
    """While pinned, compaction keeps the overwritten versions; released, the next compaction drops them."""
    with byrondbm.open(tmp_path / "db", "c", **SMALL) as db:
        _fill(db, 2000, b"o" * 200)
        db.compact()
        one_copy = db.stats()["table_bytes"]
        snap = db.snapshot()
        _fill(db, 2000, b"n" * 200)
        db.compact()
        pinned = db.stats()["table_bytes"]
        assert pinned > 1.8 * one_copy  # both versions of every key kept
        snap.close()
        db.compact()
        released = db.stats()["table_bytes"]
        assert released < 1.1 * one_copy
        assert db[b"k00007"] == b"n" * 200 + b"7"


def test_abandoned_scans_release_their_pin(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c", **SMALL) as db:
        _fill(db, 2000, b"o" * 200)
        db.compact()
        one_copy = db.stats()["table_bytes"]
        for _ in range(3):
            it = db.scan()
            next(it)
            del it  # never finished
        db.firstkey()
        db.first()
        _fill(db, 2000, b"n" * 200)
        db.compact()
        assert db.stats()["table_bytes"] < 1.1 * one_copy


def test_several_snapshots_each_see_their_moment(db: byrondbm.Database) -> None:
    snaps = []
    for round_ in range(4):
        for i in range(200):
            db[b"k%03d" % i] = b"%d" % round_
        if round_ == 2:
            db.compact()
        snaps.append(db.snapshot())
    db.clear()
    db.compact()
    for round_, snap in enumerate(snaps):
        assert set(snap.values()) == {b"%d" % round_} and len(snap) == 200
        snap.close()
    assert len(db) == 0


def test_unusable_after_the_database_closes(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c")
    db[b"k"] = b"v"
    snap = db.snapshot()
    db.close()
    with pytest.raises(byrondbm.error):
        snap[b"k"]
    with pytest.raises(byrondbm.error):
        list(snap.scan())
    snap.close()
    with pytest.raises(byrondbm.error):
        db.snapshot()


class SnapshotMachine(RuleBasedStateMachine):
    """Writes, deletes, compactions and snapshots at random; every open snapshot keeps matching the copy of
    the model taken with it."""

    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.db = byrondbm.open(os.path.join(self.tmp.name, "db"), "c", **SMALL)
        self.model: dict[bytes, bytes] = {}
        self.live: list[tuple[byrondbm.Snapshot, dict[bytes, bytes]]] = []

    keys = st.sampled_from([b"", b"\xff"] + [b"k%02d" % i for i in range(30)])

    @rule(key=keys, value=st.binary(max_size=200))
    def put(self, key: bytes, value: bytes) -> None:
        self.db[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.db.pop(key, None)
        self.model.pop(key, None)

    @rule(n=st.integers(1, 60), value=st.binary(max_size=100))
    def bulk(self, n: int, value: bytes) -> None:
        with self.db.batch() as b:
            for i in range(n):
                b[b"k%02d" % (i % 30)] = value
                self.model[b"k%02d" % (i % 30)] = value

    @rule()
    def compact(self) -> None:
        self.db.compact()

    @rule(target=snapshots)
    def take(self) -> tuple[byrondbm.Snapshot, dict[bytes, bytes]]:
        pair = (self.db.snapshot(), dict(self.model))
        self.live.append(pair)
        return pair

    @rule(pair=consumes(snapshots))
    def release(self, pair: tuple[byrondbm.Snapshot, dict[bytes, bytes]]) -> None:
        pair[0].close()
        self.live = [p for p in self.live if p[0] is not pair[0]]  # by identity: equal snapshots compare equal

    @invariant()
    def snapshots_frozen(self) -> None:
        for snap, frozen in self.live:
            assert list(snap.scan()) == sorted(frozen.items())
            assert list(snap.scan(reverse=True, keys_only=True)) == sorted(frozen, reverse=True)
            for k in (b"", b"k00", b"k29", b"\xff"):
                assert snap.get(k) == frozen.get(k)
        assert list(self.db.scan()) == sorted(self.model.items())

    def teardown(self) -> None:
        for snap, _ in self.live:
            snap.close()
        self.db.close()
        self.tmp.cleanup()


TestSnapshotMachine = SnapshotMachine.TestCase
TestSnapshotMachine.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
