"""`Database.scan` against a sorted-dict model: random bounds, prefixes and directions over data spread across
the memtable, L0 and deeper levels; edge keys; laziness; one point in time under concurrent writes, flushes
and compactions; closing the database under a running scan.
"""

from __future__ import annotations

import os
import random
import threading
import time
from itertools import islice
from typing import Optional

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import byrondbm

# Tiny tables and levels so a few thousand keys reach L3; inline work keeps the layout deterministic and a
# high L0 trigger keeps flushed tables in L0.
LAYERED = dict(
    memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512, background_compaction=False,
    l0_compaction_trigger=40, l0_slowdown_trigger=40, l0_stop_trigger=40,
)  # fmt: skip
EDGE_KEYS = [b"", b"\x00", b"\x00\x00", b"\x7f", b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff" * 2, b"\xff" * 3, b"\xff" * 9]


def _model_scan(
    model: dict[bytes, bytes], start: Optional[bytes], stop: Optional[bytes], prefix: Optional[bytes], reverse: bool
) -> list[tuple[bytes, bytes]]:
    out = [
        (k, model[k])
        for k in sorted(model)
        if (start is None or k >= start) and (stop is None or k < stop) and (prefix is None or k.startswith(prefix))
    ]
    return out[::-1] if reverse else out


def _apply(db: byrondbm.Database, model: dict[bytes, bytes], rnd: random.Random, n: int, keyspace: list[bytes]) -> None:
    """``n`` random puts (80 %) and deletes (20 %) over ``keyspace``, mirrored in ``model``."""
    for _ in range(n):
        k = rnd.choice(keyspace)
        if rnd.random() < 0.2:
            db.pop(k, None)
            model.pop(k, None)
        else:
            v = rnd.randbytes(rnd.randint(0, 40))
            db[k] = v
            model[k] = v


def _keyspace() -> list[bytes]:
    families = [b"a", b"ab", b"abc", b"b\xff", b"k", b"k\x00"]
    keys = [f + b"%d" % i for f in families for i in range(60)]
    keys += [b"key%05d" % i for i in range(0, 3000, 3)]
    return keys + EDGE_KEYS + families


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A database with live data and tombstones in every layer (deeper levels, L0, memtable) and its model."""
    rnd = random.Random(20261121)
    keys = _keyspace()
    model: dict[bytes, bytes] = {}
    path = tmp_path_factory.mktemp("scan") / "db"
    with byrondbm.open(path, "c", **dict(LAYERED, l0_compaction_trigger=2)) as db:
        _apply(db, model, rnd, 6000, keys)  # L0 compacted often: the data sinks to L1..L3
    db = byrondbm.open(path, "w", **LAYERED)
    _apply(db, model, rnd, 1500, keys)  # these stay in L0
    _apply(db, model, rnd, 40, keys)  # and these in the memtable
    stats = db.stats()
    levels = {lv["level"]: lv["files"] for lv in stats["levels"]}
    assert levels[0] > 0 and sum(n > 0 for lv, n in levels.items() if lv >= 1) >= 2, levels
    assert stats["memtable_bytes"] > 0
    yield db, model
    db.close()


def test_full_scans_match_model(layered) -> None:  # noqa: ANN001
    db, model = layered
    assert list(db.scan()) == _model_scan(model, None, None, None, False)
    assert list(db.scan(reverse=True)) == _model_scan(model, None, None, None, True)
    assert list(db.scan(keys_only=True)) == sorted(model) == db.keys() == list(db)
    assert len(db) == len(model)


def _bound_strategy(keys: list[bytes]) -> st.SearchStrategy[Optional[bytes]]:
    present = st.sampled_from(keys)
    return st.one_of(
        st.none(),
        present,
        present.map(lambda k: k + b"\x00"),  # just after a key: never in the database
        present.map(lambda k: k[:-1]),
        st.binary(max_size=4),
        st.sampled_from(EDGE_KEYS),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_ranges_match_model(layered, data: st.DataObject) -> None:  # noqa: ANN001
    db, model = layered
    keys = sorted(model)
    bound = _bound_strategy(keys)
    start, stop = data.draw(bound, "start"), data.draw(bound, "stop")
    prefix = data.draw(st.one_of(st.none(), st.sampled_from(keys).map(lambda k: k[: len(k) // 2 + 1]), st.binary(max_size=2)), "prefix")
    reverse = data.draw(st.booleans(), "reverse")
    expected = _model_scan(model, start, stop, prefix, reverse)
    assert list(db.scan(start, stop, prefix=prefix, reverse=reverse)) == expected
    assert list(db.scan(start, stop, prefix=prefix, reverse=reverse, keys_only=True)) == [k for k, _ in expected]


def test_bounds_not_in_database_and_empty_ranges(layered) -> None:  # noqa: ANN001
    db, model = layered
    keys = sorted(model)
    a, b = keys[10], keys[11]
    between = a + b"\x00"
    assert a < between < b and between not in db
    assert list(db.scan(between, b, keys_only=True)) == []  # a non-empty interval holding no key
    assert list(db.scan(between, keys_only=True))[:1] == [b]
    assert list(db.scan(None, between, reverse=True, keys_only=True))[:1] == [a]
    for start, stop in [(b, b), (b, a), (b"zz", b"a"), (b"", b"")]:
        assert list(db.scan(start, stop)) == []
        assert list(db.scan(start, stop, reverse=True)) == []
    assert list(db.scan(prefix=b"no such prefix")) == []
    assert list(db.scan(b"\xff" * 20)) == []  # after every key


def test_edge_keys(tmp_path) -> None:  # noqa: ANN001
    with byrondbm.open(tmp_path / "db", "c", **LAYERED) as db:
        for k in EDGE_KEYS:
            db[k] = k + b"!"
        db.compact()
        db[b"\xff" * 4] = b"mem"
        model = {k: k + b"!" for k in EDGE_KEYS}
        model[b"\xff" * 4] = b"mem"
        assert list(db.scan()) == sorted(model.items())
        assert list(db.scan(b"")) == list(db.scan())  # b"" is the smallest key, not "no bound"
        assert list(db.scan(None, b"")) == []
        assert list(db.scan(None, b"\x00")) == [(b"", b"!")]
        ffs = [k for k in sorted(model) if k.startswith(b"\xff\xff")]
        assert list(db.scan(prefix=b"\xff\xff", keys_only=True)) == ffs  # a prefix with no successor
        assert list(db.scan(prefix=b"\xff", reverse=True, keys_only=True)) == sorted((k for k in model if k[:1] == b"\xff"), reverse=True)
        assert list(db.scan(b"\xff\x00", b"\xff\xff", prefix=b"\xff", keys_only=True)) == [b"\xff\x00"]
        assert list(db.scan(prefix=b"", keys_only=True)) == sorted(model)


def test_bound_types(tmp_path) -> None:  # noqa: ANN001
    with byrondbm.open(tmp_path / "db", "c") as db:
        db.update({"é": b"1", b"a": b"2"})
        assert list(db.scan("é", keys_only=True)) == ["é".encode()]
        assert list(db.scan(bytearray(b"a"), memoryview(b"b"), keys_only=True)) == [b"a"]
        with pytest.raises(TypeError):
            db.scan(1)
        with pytest.raises(TypeError):
            db.scan(prefix=3.0)


def test_scan_is_lazy(tmp_path) -> None:  # noqa: ANN001
    """Ten keys from the middle of a many-table database read about one block per source, not the tables."""
    with byrondbm.open(tmp_path / "db", "c", **LAYERED) as db:
        for i in range(0, 20000, 1000):
            with db.batch() as b:
                for j in range(i, i + 1000):
                    b[b"%06d" % j] = b"v" * 20
        db.compact()
        stats = db.stats()
        tables = sum(lv["files"] for lv in stats["levels"])
        assert tables > 50
        before = stats["block_cache_hits"] + stats["block_cache_misses"]
        assert list(islice(db.scan(b"010000"), 10)) == [(b"%06d" % j, b"v" * 20) for j in range(10000, 10010)]
        after = db.stats()
        assert after["block_cache_hits"] + after["block_cache_misses"] - before <= 3


@pytest.mark.parametrize("options", [{}, LAYERED], ids=["in-memtable", "layered"])
def test_scan_does_not_see_its_own_later_writes(tmp_path, options: dict[str, object]) -> None:  # noqa: ANN001
    with byrondbm.open(tmp_path / "db", "c", **options) as db:
        model = {b"%04d" % i: b"old" for i in range(0, 2000, 2)}
        db.update(model)
        seen = []
        for k, v in db.scan():
            seen.append((k, v))
            if len(seen) == 100:  # rewrite everything ahead of and behind the cursor, from this thread
                for i in range(2000):
                    key = b"%04d" % i
                    if i % 4 == 0:
                        db.pop(key, None)
                    else:
                        db[key] = b"new"
        assert seen == sorted(model.items())


def test_reverse_scan_sees_each_key_once(tmp_path) -> None:  # noqa: ANN001
    """Keys with several versions in several layers (and in the memtable under a pin) come out once, newest."""
    with byrondbm.open(tmp_path / "db", "c", **LAYERED) as db:
        for round_ in range(5):
            for i in range(300):
                db[b"%03d" % i] = b"%d" % round_
            if round_ == 2:
                db.compact()
        with db.snapshot():  # the memtable keeps every version while pinned
            for i in range(0, 300, 2):
                db[b"%03d" % i] = b"last"
            expected = [(b"%03d" % i, b"last" if i % 2 == 0 else b"4") for i in range(300)]
            assert list(db.scan(reverse=True)) == expected[::-1]
            assert list(db.scan()) == expected


class ScanMachine(RuleBasedStateMachine):
    """Random writes, deletes, batches, flushes and compactions; every scan shape equals the model's."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.db = byrondbm.open(os.path.join(self.tmp.name, "db"), "c", **LAYERED)
        self.model: dict[bytes, bytes] = {}

    keys = st.sampled_from([b"", b"a", b"a\x00", b"ab", b"b", b"ba", b"\xff", b"\xff\xff"] + [b"k%02d" % i for i in range(40)])

    @rule(key=keys, value=st.binary(max_size=300))
    def put(self, key: bytes, value: bytes) -> None:
        self.db[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.db.pop(key, None)
        self.model.pop(key, None)

    @rule(ops=st.lists(st.tuples(keys, st.one_of(st.none(), st.binary(max_size=50))), max_size=30))
    def batch(self, ops: list[tuple[bytes, Optional[bytes]]]) -> None:
        with self.db.batch() as b:
            for k, v in ops:
                if v is None:
                    b.delete(k)
                    self.model.pop(k, None)
                else:
                    b[k] = v
                    self.model[k] = v

    @rule()
    def compact(self) -> None:
        self.db.compact()

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def scan(self, data: st.DataObject) -> None:
        bound = st.one_of(st.none(), self.keys, st.binary(max_size=3))
        start, stop = data.draw(bound), data.draw(bound)
        prefix = data.draw(st.one_of(st.none(), st.binary(max_size=2)))
        reverse = data.draw(st.booleans())
        assert list(self.db.scan(start, stop, prefix=prefix, reverse=reverse)) == _model_scan(self.model, start, stop, prefix, reverse)

    @invariant()
    def agrees(self) -> None:
        assert len(self.db) == len(self.model)

    def teardown(self) -> None:
        self.db.close()
        self.tmp.cleanup()


TestScanMachine = ScanMachine.TestCase
TestScanMachine.settings = settings(max_examples=40, stateful_step_count=60, deadline=None)


def test_close_during_scan_raises_error(tmp_path) -> None:  # noqa: ANN001
    db = byrondbm.open(tmp_path / "db", "c", **LAYERED)
    with db.batch() as b:
        for i in range(5000):
            b[b"%05d" % i] = b"x" * 30
    db.compact()
    outcome: list[object] = []
    reached = threading.Event()
    resume = threading.Event()

    def scanner() -> None:
        n = 0
        try:
            for _ in db.scan():
                n += 1
                if n == 1000:
                    reached.set()
                    resume.wait()
            outcome.append(n)
        except BaseException as e:  # noqa: BLE001 - the test inspects whatever it was
            outcome.append(e)

    t = threading.Thread(target=scanner)
    t.start()
    reached.wait()
    db.close()
    resume.set()
    t.join()
    assert len(outcome) == 1 and isinstance(outcome[0], byrondbm.error), outcome
    with pytest.raises(byrondbm.error):
        db.scan()


def test_scan_taken_before_close_raises_on_first_step(tmp_path) -> None:  # noqa: ANN001
    db = byrondbm.open(tmp_path / "db", "c")
    db[b"k"] = b"v"
    it = db.scan()
    db.close()
    with pytest.raises(byrondbm.error):
        next(it)


@pytest.mark.slow
@pytest.mark.parametrize("n, reverse", [(100_000, False), (30_000, True)], ids=["forward-100k", "reverse-30k"])
def test_scan_of_100000_keys_under_concurrent_writes_flushes_and_compactions(tmp_path, n: int, reverse: bool) -> None:  # noqa: ANN001
    """The scan equals a snapshot taken at its start, while another thread overwrites, deletes, inserts,
    fills memtables (flushes) and runs full compactions that delete the tables the scan started on.

    The writer runs a round each time the scan has read another tenth of the keys (and the scan waits for
    it), so every kind of change provably happens mid-scan; a second thread writes and deletes all the
    while, interleaving with the scan's reads of memtables and tables at arbitrary points (and at least
    150 times at each round: the scan waits for them, so no scheduling can leave them out).
    """
    path = tmp_path / "db"
    db = byrondbm.open(path, "c", memtable_size=64 * 1024, target_file_size=64 * 1024, level1_size=256 * 1024, block_size=1024)
    for s in range(0, n, 10_000):
        with db.batch() as b:
            for i in range(s, min(s + 10_000, n)):
                b[b"key%07d" % (2 * i)] = b"v%d" % i
    in_mem = range(0, n, n // 400)  # 400 keys across the range stay in the active memtable the scan reads
    for i in in_mem:
        db[b"key%07d" % (2 * i)] = b"m%d" % i
    expected = [(b"key%07d" % (2 * i), b"m%d" % i if i in in_mem else b"v%d" % i) for i in range(n)]
    if reverse:
        expected.reverse()
    assert len(db._engine.version.mem) == 400  # (the batches' memtables may still be waiting to flush)
    snap = db.snapshot()
    scan = db.scan(reverse=reverse)
    tables_at_start = {f for f in os.listdir(path) if f.endswith(".sst")}
    go, done = threading.Event(), threading.Event()
    rounds = 9
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for r in range(rounds):
                go.wait()
                go.clear()
                with db.batch() as b:
                    for i in range(r, n, 40):
                        b[b"key%07d" % (2 * i)] = b"new%d" % r  # overwrite
                        b[b"key%07d" % (2 * i + 1)] = b"ins%d" % r  # insert between the scan's keys
                for i in range(r + 7, n, 400):
                    db.pop(b"key%07d" % (2 * i), None)
                if r in (1, 5):
                    db.compact()  # flush every memtable, then merge every table into new ones
                done.set()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)
            done.set()

    scanned = threading.Event()
    churned = [0]

    def churn() -> None:
        """Small writes and deletes all through the scan, interleaving with its reads at any point."""
        try:
            i = 0
            while not scanned.is_set():
                i += 1
                k = (i * 7919) % n
                if i % 5 == 0:
                    db.pop(b"key%07d" % (2 * k), None)
                else:
                    db[b"key%07d" % (2 * k + i % 2)] = b"churn%d" % i
                churned[0] = i
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=writer, daemon=True), threading.Thread(target=churn, daemon=True)]  # (a failed run exits)
    for t in threads:
        t.start()
    got = []
    for item in scan:
        got.append(item)
        if len(got) % (n // 10) == 0 and len(got) // (n // 10) <= rounds:
            go.set()
            done.wait()
            done.clear()
            target = churned[0] + 150  # the churn writes between these reads, however the threads are scheduled
            deadline = time.monotonic() + 120
            while churned[0] < target and not failures:
                assert time.monotonic() < deadline, "the churning thread made no progress"
                time.sleep(0.001)
            if failures:
                break
    scanned.set()
    for t in threads:
        t.join()
    assert not failures, failures
    assert churned[0] >= 150 * rounds
    assert got == expected
    assert list(snap.scan(reverse=reverse)) == expected
    assert tables_at_start - {f for f in os.listdir(path) if f.endswith(".sst")}, "no table was deleted under the scan"
    assert db.stats()["compactions"] >= 2
    snap.close()
    db.close()


def test_every_way_a_scan_ends_releases_its_pin(tmp_path) -> None:  # noqa: ANN001
    """A pin keeps old versions in memtables and tables, so each scan must release it: run to the end,
    abandoned half-way, never started, empty, reverse, raising on a closed database."""
    db = byrondbm.open(tmp_path / "db", "c", memtable_size=4096)
    for i in range(300):
        db[b"%03d" % i] = b"v"
    pins = db._engine._pins
    assert list(db.scan()) and not pins  # exhausted
    it = db.scan(start=b"100")
    next(it)
    assert pins
    del it  # abandoned half-way
    assert not pins
    it = db.scan()
    assert pins
    del it  # never started
    assert not pins
    assert list(db.scan(b"5", b"1")) == [] and not pins  # empty range
    assert len(list(db.scan(reverse=True))) == 300 and not pins
    it = db.scan()
    next(it)
    db.close()
    with pytest.raises(byrondbm.error):
        list(it)
    assert not pins
