"""The tiered compaction style: the picker's rules, and a tiered database kept equal to a dict model through
overwrites, deletes, snapshots, reopens, style switches and a reader process following the manifest."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

import byrondbm
from byrondbm.engine import compaction
from byrondbm.engine.version import MAX_LEVELS
from byrondbm.options import Options

TIERED = dict(compaction_style="tiered", memtable_size=4096, target_file_size=4096, block_size=512,
              l0_compaction_trigger=3, l0_slowdown_trigger=6, l0_stop_trigger=8)

_seq = itertools.count(1)


def _table(size: int, lo: bytes = b"a", hi: bytes = b"z") -> SimpleNamespace:
    return SimpleNamespace(number=next(_seq), smallest=lo, largest=hi,
                           properties=SimpleNamespace(file_size=size, max_seq=next(_seq)))


class _FakeVersion:
    def __init__(self, l0: list, **levels: list) -> None:
        self.levels = [l0] + [levels.get(f"l{k}", []) for k in range(1, MAX_LEVELS)]


O = Options(compaction_style="tiered", l0_compaction_trigger=4)


def test_fewer_runs_than_the_trigger_merge_nothing() -> None:
    assert compaction.pick(_FakeVersion([_table(100) for _ in range(3)]), O, {}) is None


def test_equal_runs_merge_into_the_deepest_free_level() -> None:
    l0 = [_table(100) for _ in range(4)]
    c = compaction.pick(_FakeVersion(l0), O, {})
    assert c is not None and [r[0] for r in c.runs] == l0 and c.output_level == MAX_LEVELS - 1 and c.split
    assert c.base == []


def test_merge_lands_above_the_next_older_run_or_in_l0() -> None:
    l0 = [_table(100) for _ in range(3)]
    old = [_table(100_000, b"a", b"m"), _table(100_000, b"n", b"z")]
    c = compaction.pick(_FakeVersion(l0, l4=old), O, {})
    assert c is not None and c.inputs == l0 and c.output_level == 3 and c.base == [old]
    c = compaction.pick(_FakeVersion(l0, l1=old), O, {})  # no free level above: one table in L0
    assert c is not None and c.inputs == l0 and c.output_level == 0 and not c.split


def test_merge_of_newer_l0_tables_stays_in_l0_above_the_older_ones() -> None:
    l0 = [_table(100), _table(100), _table(5000), _table(20_000)]
    c = compaction.pick(_FakeVersion(l0), O, {})
    assert c is not None and c.inputs == l0[:2] and c.output_level == 0 and not c.split
    assert c.base == [[l0[2]], [l0[3]]]  # a tombstone is dropped only over none of these


def test_a_merge_including_a_level_writes_to_that_level() -> None:
    l0 = [_table(100) for _ in range(3)]
    l2 = [_table(150), _table(150)]
    l5 = [_table(10_000)]
    c = compaction.pick(_FakeVersion(l0, l2=l2, l5=l5), O, {})
    assert c is not None and c.runs == [[t] for t in l0] + [l2] and c.output_level == 2 and c.base == [l5]


def test_size_amplification_merges_everything() -> None:
    l0 = [_table(100), _table(300), _table(900)]
    c = compaction.pick(_FakeVersion(l0, l6=[_table(600)]), O, {})
    assert c is not None and len(c.runs) == 4 and c.output_level == MAX_LEVELS - 1


def test_too_many_dissimilar_runs_merge_the_newest() -> None:
    l0 = [_table(10 ** k) for k in range(1, 6)]
    c = compaction.pick(_FakeVersion(l0, l6=[_table(10 ** 9)]), O, {})
    assert c is not None and c.inputs == l0[:3] and c.output_level == 0


def _check_structure(db: byrondbm.Database) -> None:
    v = db._engine.version
    l0_seqs = [t.properties.max_seq for t in v.levels[0]]
    assert l0_seqs == sorted(l0_seqs, reverse=True)  # newest first: the order reads search
    db._check()


def _drive(db: byrondbm.Database, model: dict, rnd: random.Random, ops: int) -> None:
    for _ in range(ops):
        k = b"%04d" % rnd.randrange(1500)
        r = rnd.random()
        if r < 0.2:
            db.pop(k, None)
            model.pop(k, None)
        elif r < 0.25:
            with db.batch() as b:
                for j in range(20):
                    key = b"b%04d" % rnd.randrange(300)
                    b[key] = model[key] = b"%d" % j
        else:
            model[k] = db[k] = rnd.randbytes(rnd.randrange(80))


@pytest.mark.parametrize("workers", [0, 1])
def test_model_through_reopens_and_style_switches(path: str, workers: int) -> None:
    rnd = random.Random(workers)
    model: dict[bytes, bytes] = {}
    styles = ["tiered", "tiered", "leveled", "tiered"]
    for round_, style in enumerate(styles):
        opts = dict(TIERED, compaction_style=style, workers=workers, level1_size=16384,
                    background_compaction=round_ % 2 == 0)
        with byrondbm.open(path, "c", **opts) as db:
            _drive(db, model, rnd, 700)
            assert len(db) == len(model)
            assert dict(db.items()) == model
            assert all(db.get(k) == v for k, v in list(model.items())[::7])
            _check_structure(db)
            assert db.stats()["compactions"] > 0
    with byrondbm.open(path, "r") as r:
        assert dict(r.items()) == model


def test_tiered_keeps_runs_near_the_trigger_and_reclaims_deletes(path: str) -> None:
    opts = dict(TIERED, background_compaction=False, workers=0)
    with byrondbm.open(path, "c", **opts) as db:
        for i in range(2500):
            db[b"%05d" % i] = b"v" * 50
        v = db._engine.version
        runs = compaction.sorted_runs(v)
        assert 1 < len(runs) < TIERED["l0_compaction_trigger"] + 2, [len(t) for _, t in runs]
        assert any(level > 0 for level, _ in runs)
        for i in range(2500):
            del db[b"%05d" % i]
        db[b"last"] = b"x"
        db.compact()
        assert dict(db.items()) == {b"last": b"x"}
        assert sum(lv["keys"] for lv in db.stats()["levels"]) == 1
        _check_structure(db)


def test_snapshot_keeps_its_view_through_tiered_merges(path: str) -> None:
    with byrondbm.open(path, "c", **dict(TIERED, workers=0, background_compaction=False)) as db:
        old = {b"k%04d" % i: b"old%d" % i for i in range(800)}
        for k, v in old.items():
            db[k] = v
        with db.snapshot() as snap:
            for i in range(800):
                if i % 2:
                    del db[b"k%04d" % i]
                else:
                    db[b"k%04d" % i] = b"new" * 30
            for i in range(3000):
                db[b"x%05d" % i] = b"y" * 40
            assert db.stats()["compactions"] > 0
            assert dict(snap.items()) == old
            _check_structure(db)
        db[b"after"] = b"1"
        db.compact()
        assert len(db) == 400 + 3000 + 1


def test_reader_process_follows_a_tiered_writer(path: str) -> None:
    model: dict[bytes, bytes] = {}
    rnd = random.Random(5)
    with byrondbm.open(path, "c", **dict(TIERED, workers=1)) as db:
        reader = byrondbm.open(path, "r")
        try:
            for _ in range(3):
                _drive(db, model, rnd, 500)
                db.sync()
                reader.refresh()
                assert dict(reader.items()) == model
        finally:
            reader.close()
