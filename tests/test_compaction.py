"""Compaction: the drop rule, picking, and outputs that are sorted and never overlap within a level."""

from __future__ import annotations

import random

import byrondbm
from byrondbm.engine import compaction


def E(key: bytes, seq: int, value: bytes | None):  # noqa: N802 - an entry literal
    return (key, -seq, value)


def _view(entries: list, reader: int) -> dict:
    """What a reader at sequence number ``reader`` sees of ``entries``: each key's newest value at or below it."""
    seen: dict = {}
    for key, negseq, value in sorted(entries):
        if -negseq <= reader and key not in seen:
            seen[key] = value
    return {k: v for k, v in seen.items() if v is not None}


def test_drop_keeps_newest_and_what_the_oldest_snapshot_sees():
    entries = [E(b"a", 9, b"a9"), E(b"a", 7, b"a7"), E(b"a", 3, b"a3"), E(b"a", 1, b"a1")]
    # a reader pinned at 5 needs a3; nothing needs a1 (shadowed by a3, which the oldest pin sees)
    assert list(compaction.drop_obsolete(entries, 5, lambda k: True)) == entries[:3]
    # no pins: only the newest survives
    assert list(compaction.drop_obsolete(entries, 9, lambda k: True)) == entries[:1]


def test_tombstones_dropped_only_at_the_base_and_when_every_reader_sees_them():
    entries = [E(b"k", 5, None), E(b"k", 2, b"old")]
    assert list(compaction.drop_obsolete(entries, 9, lambda k: True)) == []
    assert list(compaction.drop_obsolete(entries, 9, lambda k: False)) == entries[:1]  # deeper data may exist
    assert list(compaction.drop_obsolete(entries, 3, lambda k: True)) == entries  # a reader at 3 sees "old"


def test_drop_preserves_every_snapshot_view():
    rnd = random.Random(1)
    entries = []
    seq = 1000
    for k in sorted({rnd.randbytes(2) for _ in range(300)}):
        for _ in range(rnd.randrange(1, 5)):
            entries.append(E(k, seq, None if rnd.random() < 0.3 else rnd.randbytes(3)))
            seq -= 1
    entries.sort()
    for snap in [0, 500, 700, 900, 1000]:
        kept = list(compaction.drop_obsolete(entries, snap, lambda k: True))
        for reader in range(snap, 1001, 37):
            assert _view(kept, reader) == _view(entries, reader), (snap, reader)


def test_level_targets_grow_by_the_ratio():
    from byrondbm.options import Options

    o = Options(level1_size=1024, level_ratio=10)
    assert compaction.level_target(o, 1) == 1024 and compaction.level_target(o, 3) == 102_400
    assert compaction.level_target(o, 6) == float("inf")


def test_compaction_outputs_sorted_and_non_overlapping(path):
    opts = dict(memtable_size=8192, target_file_size=4096, level1_size=16384, block_size=512,
                background_compaction=False)
    rnd = random.Random(7)
    model = {}
    with byrondbm.open(path, "c", **opts) as db:
        for i in range(6000):
            k = b"%05d" % rnd.randrange(4000)
            model[k] = rnd.randbytes(rnd.randrange(60))
            db[k] = model[k]
        v = db._engine.version
        deep = [level for level in range(1, len(v.levels)) if len(v.levels[level]) > 1]
        assert deep, [len(x) for x in v.levels]
        for level in deep:
            tables = v.levels[level]
            for t in tables:
                keys = [e[0] for e in t.iter()]
                assert keys == sorted(keys) and keys[0] == t.smallest and keys[-1] == t.largest
            for a, b in zip(tables, tables[1:]):
                assert a.largest < b.smallest
        assert db.stats()["compactions"] > 0
        db._check()
        db.compact()
        levels = db.stats()["levels"]
        assert levels[0]["files"] == 0 and sum(1 for lv in levels if lv["files"]) == 1
        assert dict(db.items()) == model
        db._check()


def test_full_compaction_reclaims_deleted_space(path):
    import os

    with byrondbm.open(path, "c", memtable_size=65536, background_compaction=False) as db:
        for i in range(20000):
            db[b"%06d" % i] = b"v" * 100
        db.compact()
        before = sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".sst"))
        for i in range(20000):
            if i % 10:
                del db[b"%06d" % i]
        db.compact()
        after = sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".sst"))
        assert len(db) == 2000
    assert after < before * 0.15, (before, after)


def test_pick_serves_the_level_most_over_its_target():
    """A steady stream of L0 files must not starve an oversized L1 (it would grow without bound)."""
    from types import SimpleNamespace

    from byrondbm.engine.version import MAX_LEVELS
    from byrondbm.options import Options

    def table(lo: bytes, hi: bytes, size: int):
        return SimpleNamespace(smallest=lo, largest=hi, number=id(lo), properties=SimpleNamespace(file_size=size))

    class FakeVersion:
        def __init__(self, levels):
            self.levels = levels

        def level_bytes(self, level):
            return sum(t.properties.file_size for t in self.levels[level])

        def overlapping(self, level, lo, hi):
            return [t for t in self.levels[level] if not (t.largest < lo or t.smallest > hi)]

    o = Options(level1_size=1024 * 1024, l0_compaction_trigger=4, compaction_style="leveled")
    l0 = [table(b"a", b"z", 100) for _ in range(4)]  # score 1.0
    l1 = [table(bytes([c]), bytes([c]) + b"\xff", 1024 * 1024) for c in b"bdfhjl"]  # score 6.0
    levels = [l0, l1] + [[] for _ in range(MAX_LEVELS - 2)]
    c = compaction.pick(FakeVersion(levels), o, {})
    assert c is not None and c.level == 1 and c.output_level == 2
    levels[1] = [table(b"b", b"b\xff", 512 * 1024)]  # L1 back under its target: L0 is next
    c = compaction.pick(FakeVersion(levels), o, {})
    assert c is not None and c.level == 0 and len(c.inputs) == 4
    levels[0] = l0[:3]
    assert compaction.pick(FakeVersion(levels), o, {}) is None
