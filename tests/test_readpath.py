"""The scan pipeline (engine/readpath.py): a lone source passed through with clean blocks as zips, the
same answers as the merge both ways, seeks that read only what they reach."""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path

import pytest

import byrondbm
from byrondbm.engine import readpath
from byrondbm.engine.iterators import merge_runs, newest
from byrondbm.engine.sstable import BlockCache, TablePoints, TableReader, TableWriter
from byrondbm.options import Options

SMALL = dict(memtable_size=8192, target_file_size=8192, block_size=512, background_compaction=False)


def _fill(db: byrondbm.Database, n: int, tag: bytes = b"v") -> None:
    with db.batch() as b:
        for i in range(n):
            b[b"%06d" % i] = tag + b"%d" % i


def test_a_compacted_store_is_one_source_whose_clean_blocks_come_as_zips(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c", **SMALL)
    _fill(db, 3000)
    db.compact()
    engine = db._engine
    v = engine.version
    assert len(readpath.sources(v, None, None)) == 1
    seq = engine.last_sequence
    want = [(b"%06d" % i, b"v%d" % i) for i in range(3000)]
    for reverse in (False, True):
        parts = list(readpath.pairs(v, None, None, reverse, -seq))
        assert all(type(p) is not list for p in parts)  # zips (and a pending pair when reverse): no Python step a pair
        assert [p for part in parts for p in part] == (want[::-1] if reverse else want)
    assert list(db.scan(b"000100", b"000200")) == want[100:200]
    assert list(db.scan(b"000100", b"000200", reverse=True)) == want[100:200][::-1]
    db.close()


@pytest.mark.parametrize("reverse", [False, True])
def test_blocks_newer_than_a_snapshot_or_holding_tombstones_are_filtered(tmp_path: Path, reverse: bool) -> None:
    """After the snapshot: new keys, overwrites and deletes, all compacted into one level. Blocks holding
    versions newer than the snapshot must not be taken whole; the scan at the snapshot sees its own state,
    the scan now sees the new one."""
    db = byrondbm.open(tmp_path / "db", "c", **SMALL)
    _fill(db, 2000)
    db.compact()
    snap = db.snapshot()
    old = [(b"%06d" % i, b"v%d" % i) for i in range(2000)]
    with db.batch() as b:
        for i in range(2000, 2600):
            b[b"%06d" % i] = b"new%d" % i
        for i in range(0, 2000, 7):
            b[b"%06d" % i] = b"over%d" % i
        for i in range(3, 2000, 11):
            del b[b"%06d" % i]
    db.compact()
    assert len(readpath.sources(db._engine.version, None, None)) == 1
    now = dict(old)
    now.update((b"%06d" % i, b"new%d" % i) for i in range(2000, 2600))
    now.update((b"%06d" % i, b"over%d" % i) for i in range(0, 2000, 7))
    for i in range(3, 2000, 11):
        del now[b"%06d" % i]
    expected_now = sorted(now.items(), reverse=reverse)
    assert list(snap.scan(reverse=reverse)) == sorted(old, reverse=reverse)
    assert list(db.scan(reverse=reverse)) == expected_now
    assert list(db.scan(b"000500", b"002100", reverse=reverse)) == [p for p in expected_now if b"000500" <= p[0] < b"002100"]
    snap.close()
    db.close()


def test_a_seek_reads_one_block_of_one_table_of_a_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = byrondbm.open(tmp_path / "db", "c", **SMALL)
    _fill(db, 20000)
    db.compact()
    v = db._engine.version
    level = next(lv for lv in v.levels[1:] if lv)
    assert len(level) > 10
    reads: list[tuple[int, int]] = []
    real = TableReader._block

    def counted(self: TableReader, b: int, fill: bool = True):  # noqa: ANN202
        reads.append((self.number, b))
        return real(self, b, fill)

    monkeypatch.setattr(TableReader, "_block", counted)
    assert next(db.scan(b"012345")) == (b"012345", b"v12345")
    assert len(reads) == 1
    reads.clear()
    got = list(islice(db.scan(b"012345", reverse=False), 100))
    assert got == [(b"%06d" % i, b"v%d" % i) for i in range(12345, 12445)]
    assert len({t for t, _ in reads}) <= 2 and len(reads) <= 1 + 100 * 30 // 512 + 1
    db.close()


def test_keys_only_scans_give_the_keys_of_the_pairs(tmp_path: Path) -> None:
    db = byrondbm.open(tmp_path / "db", "c", **SMALL)
    _fill(db, 1500)
    db.compact()
    for i in range(0, 1500, 3):
        db[b"%06d" % i] = b"mem"
    for reverse in (False, True):
        assert list(db.scan(keys_only=True, reverse=reverse)) == [k for k, _ in db.scan(reverse=reverse)]
    db.close()


def test_scans_beside_tables_gathered_for_lookups(tmp_path: Path) -> None:
    """Tables whose blocks lookups gathered into their points (no sequence numbers) are scanned from their
    blocks: merged scans both ways, seeks, and snapshots older than a table give the right pairs, and the
    points stay cached for the lookups."""
    db = byrondbm.open(tmp_path / "db", "c", **dict(SMALL, memtable_size=1 << 20))
    _fill(db, 1500)
    db._engine.flush()
    snap = db.snapshot()
    with db.batch() as b:
        for i in range(0, 1500, 5):
            b[b"%06d" % i] = b"tmp%d" % i
    between = db.snapshot()  # keeps the tmp versions: the next table holds two versions of those keys
    with db.batch() as b:
        for i in range(0, 1500, 5):
            b[b"%06d" % i] = b"new%d" % i
        for i in range(1, 1500, 97):
            del b[b"%06d" % i]
    db._engine.flush()
    with db.batch() as b:
        for i in range(3, 1500, 50):
            b[b"%06d" % i] = b"mem%d" % i
    old = {b"%06d" % i: b"v%d" % i for i in range(1500)}
    now = dict(old)
    now.update({b"%06d" % i: b"new%d" % i for i in range(0, 1500, 5)})
    for i in range(1, 1500, 97):
        del now[b"%06d" % i]
    now.update({b"%06d" % i: b"mem%d" % i for i in range(3, 1500, 50)})
    for i in range(1500):
        assert db.get(b"%06d" % i) == now.get(b"%06d" % i)
    tables = [t for level in db._engine.version.levels for t in level]
    assert len(tables) == 2

    def points() -> list:
        return [(cache.peek(key) or (None,))[0] for key, _, cache in (t.point_parts() for t in tables)]

    held = points()
    assert all(isinstance(p, TablePoints) and p.missing == 0 for p in held)
    for reverse in (False, True):
        assert list(db.scan(reverse=reverse)) == sorted(now.items(), reverse=reverse)
        want = sorted((p for p in now.items() if p[0] >= b"000700"), reverse=reverse)[:50]
        assert list(islice(db.scan(b"000700", reverse=reverse), 50)) == want
    assert all(a is b for a, b in zip(points(), held))  # still cached for lookups
    tmp = dict(old)
    tmp.update({b"%06d" % i: b"tmp%d" % i for i in range(0, 1500, 5)})
    for reverse in (False, True):
        assert list(snap.scan(reverse=reverse)) == sorted(old.items(), reverse=reverse)
        assert list(between.scan(reverse=reverse)) == sorted(tmp.items(), reverse=reverse)
    between.close()
    snap.close()
    db.close()


def test_a_merge_round_that_sorts_entries_reads_those_of_clean_blocks_served_as_columns(tmp_path: Path) -> None:
    """A table with two versions of some keys (so some blocks clean, some not), merged with a newer source
    whose runs are not clean (a tombstone): the rounds that sort entries slice the clean blocks' entries
    they were served without, and the pairs are the newest visible ones."""
    rng = random.Random(3)
    entries = []
    for i in range(600):
        key = b"k%04d" % i
        entries.append((key, -(10_000 + i), b"new%d" % i))
        if rng.random() < 0.3:
            entries.append((key, -i, b"old%d" % i))  # an older version, right after the newest
    entries.sort()
    path = tmp_path / "000001.sst"
    writer = TableWriter(str(path), Options(block_size=256))
    for e in entries:
        writer.add(*e)
    writer.finish()
    reader = TableReader(str(path), 1, BlockCache(1 << 24))
    newer = [(b"k%04d" % i, -20_000 - i, None if i % 3 else b"mem%d" % i) for i in range(0, 600, 7)]
    read = -30_000
    merged = merge_runs([iter([newer[:40], newer[40:]]), reader.chunks(None, None, False, read, merged=True)])
    got = [p for part in newest(merged, read) for p in part]
    want = {e[0]: e[2] for e in reversed(entries)}  # each key's newest version in the table
    want.update((k, v) for k, _, v in newer)
    assert got == [(k, v) for k, v in sorted(want.items()) if v is not None]
    reader.close()
