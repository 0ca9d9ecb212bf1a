"""Model tests: the database against a dict, through hundreds of flushes, many compactions and reopens."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import byrondbm

MODEL_OPTIONS = dict(memtable_size=64 * 1024, target_file_size=32 * 1024, level1_size=128 * 1024,
                     block_size=1024)


@pytest.mark.slow
def test_200k_operations_against_a_dict(path):
    """200,000 random put/overwrite/delete/get, reopening every 10,000; prints the flush/compaction counts."""
    rnd = random.Random(20261121)
    model: dict[bytes, bytes] = {}
    db = byrondbm.open(path, "c", **MODEL_OPTIONS)
    for i in range(200_000):
        k = b"key%06d" % rnd.randrange(30_000)
        r = rnd.random()
        if r < 0.45:
            v = rnd.randbytes(rnd.randrange(0, 120))
            db[k] = v
            model[k] = v
        elif r < 0.65:
            if k in model:
                del db[k]
                del model[k]
            else:
                with pytest.raises(KeyError):
                    del db[k]
        else:
            assert db.get(k) == model.get(k)
        if i % 10_000 == 9_999:
            assert len(db) == len(model)
            db._check()
            db.close()
            db = byrondbm.open(path, "w", **MODEL_OPTIONS)
    assert len(db) == len(model)
    assert dict(db.items()) == model
    db._check()
    s = db.stats()  # totals over every session (they persist in the manifest)
    flushes, compactions = s["flushes"], s["compactions"]
    db.close()
    print(f"\nmodel test: {flushes} flushes, {compactions} compactions, {len(model)} live keys")
    assert flushes >= 100 and compactions >= 20


class DatabaseMachine(RuleBasedStateMachine):
    """Hypothesis drives puts, deletes, reads, scans, batches, snapshots, compactions and reopens."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.path = self.dir + "/db"
        self.opts = dict(memtable_size=2048, target_file_size=2048, level1_size=8192, block_size=256,
                         l0_compaction_trigger=2, l0_slowdown_trigger=3, l0_stop_trigger=4,
                         background_compaction=False)
        self.db = byrondbm.open(self.path, "c", **self.opts)
        self.model: dict[bytes, bytes] = {}

    keys = st.binary(min_size=0, max_size=6)
    values = st.binary(min_size=0, max_size=300)

    @rule(k=keys, v=values)
    def put(self, k, v):
        self.db[k] = v
        self.model[k] = v

    @rule(k=keys)
    def delete(self, k):
        if k in self.model:
            del self.db[k]
            del self.model[k]

    @rule(k=keys)
    def get(self, k):
        assert self.db.get(k) == self.model.get(k)

    @rule(ops=st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=20))
    def batch(self, ops):
        with self.db.batch() as b:
            for k, v in ops:
                if v is None:
                    b.delete(k)
                    self.model.pop(k, None)
                else:
                    b[k] = v
                    self.model[k] = v

    @rule(lo=keys, hi=keys, reverse=st.booleans())
    def scan(self, lo, hi, reverse):
        expect = sorted((k, v) for k, v in self.model.items() if lo <= k < hi)
        if reverse:
            expect.reverse()
        assert list(self.db.scan(lo, hi, reverse=reverse)) == expect

    @rule(k=keys, v=values)
    def snapshot_isolated(self, k, v):
        with self.db.snapshot() as snap:
            before = self.model.get(k)
            self.db[k] = v
            self.model[k] = v
            assert snap.get(k) == before

    @rule()
    def compact(self):
        self.db.compact()

    @rule()
    def reopen(self):
        self.db.close()
        self.db = byrondbm.open(self.path, "w", **self.opts)

    @invariant()
    def same_length(self):
        assert len(self.db) == len(self.model)

    @precondition(lambda self: len(self.model) > 0)
    @invariant()
    def structure(self):
        self.db._check()

    def teardown(self):
        try:
            assert dict(self.db.items()) == self.model
        finally:
            self.db.close()
            import shutil
            shutil.rmtree(self.dir, ignore_errors=True)


TestDatabaseMachine = DatabaseMachine.TestCase
TestDatabaseMachine.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
