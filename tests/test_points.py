"""Table points (`TablePoints`): each key's newest value gathered block by block as lookups read the
blocks; who may use them (a reader that sees the whole table; an older one reads the blocks), keys whose
versions continue across blocks, a lookup's group of blocks gathered by one read, and the cache's
second-chance eviction and growth headroom that decide how much is held so."""

from __future__ import annotations

import random
from bisect import bisect_left
from itertools import islice
from pathlib import Path

import pytest

import byrondbm
from byrondbm.engine.sstable import BlockCache, TablePoints, TableProperties, TableReader, TableWriter, key_hashes
from byrondbm.engine.sstable.block import KIND_LARGE, KIND_TOMBSTONE, KIND_VALUE, encode_block, point_pairs
from byrondbm.options import Options

LATEST = -((1 << 62) - 1)


def table_of(tmp_path: Path, entries: list[tuple], **options: str) -> tuple[TableReader, TableProperties, BlockCache]:
    """A table of ``entries`` (entry order) in 512-byte blocks, open with a cache of its own."""
    path = tmp_path / "000001.sst"
    writer = TableWriter(str(path), Options(block_size=512, **options))  # type: ignore[arg-type]
    for e in entries:
        writer.add(*e)
    props = writer.finish()
    cache = BlockCache(1 << 24)
    return TableReader(str(path), 1, cache), props, cache


def test_point_pairs_of_a_block_leave_the_newest_value_of_each_key() -> None:
    entries = [(b"a", 9, b"new"), (b"a", 3, b"old"), (b"b", 7, None), (b"b", 2, b"gone"), (b"c", 1, b"c1")]
    kinds = bytearray(KIND_TOMBSTONE if v is None else KIND_VALUE for _, _, v in entries)
    raw = encode_block([k for k, _, _ in entries], [v or b"" for _, _, v in entries], [s for _, s, _ in entries], kinds)
    assert dict(point_pairs(raw, len(raw), "t", None)) == {b"a": b"new", b"b": None, b"c": b"c1"}  # type: ignore[arg-type]
    assert dict(point_pairs(raw, len(raw), "t", b"a")) == {b"b": None, b"c": b"c1"}  # type: ignore[arg-type]
    assert dict(point_pairs(raw, len(raw), "t", b"b")) == {b"a": b"new", b"b": None, b"c": b"c1"}  # type: ignore[arg-type]
    clean = encode_block([b"x", b"y"], [b"1", b"2"], [5, 6], bytearray([KIND_VALUE] * 2))
    assert dict(point_pairs(clean, len(clean), "t", None)) == {b"x": b"1", b"y": b"2"}  # type: ignore[arg-type]
    assert dict(point_pairs(clean, len(clean), "t", b"x")) == {b"y": b"2"}  # type: ignore[arg-type]
    large = encode_block([b"x"], [bytes(16)], [5], bytearray([KIND_LARGE]))
    assert point_pairs(large, len(large), "t", None) is None  # a large value is read by the general path


def test_gathering_marks_blocks_after_their_keys() -> None:
    points = TablePoints(3)
    points.gather([1], iter([(b"m", b"1")]))  # block 1, its continued key "k" left out by point_pairs
    assert points == {b"m": b"1"} and points.missing == 2 and bytes(points.loaded) == b"\0\1\0"
    points.gather([0, 2], iter([(b"a", b"0"), (b"k", b"newest"), (b"z", None)]))
    assert points == {b"a": b"0", b"k": b"newest", b"m": b"1", b"z": None} and points.missing == 0
    points._check()


def test_lookups_gather_a_table_and_older_readers_still_see_old_versions(tmp_path: Path) -> None:
    rng = random.Random(7)
    entries = sorted(
        {(b"k%04d" % rng.randrange(300), -rng.randrange(1, 10_000), rng.choice([None, b"v" * rng.randrange(30)]))
         for _ in range(2500)},
        key=lambda e: (e[0], e[1]),
    )
    entries += [(b"zz", -s, b"%d" % s) for s in range(400, 0, -1)]  # one key over several blocks
    reader, props, cache = table_of(tmp_path, entries)
    points_key, negmax, shared = reader.point_parts()
    last_keys = reader.last_keys
    assert shared is cache and negmax == -props.max_seq and len(last_keys) == props.num_data_blocks > 20

    def model(key: bytes, read_negseq: int) -> tuple | None:
        found = [e for e in entries if e[0] == key and e[1] >= read_negseq]
        return found[0] if found else None

    keys = sorted({e[0] for e in entries})
    for key in keys:
        assert reader.get(key, key_hashes(key), LATEST) == model(key, LATEST)
    points = cache.peek(points_key)[0]  # type: ignore[index]
    assert isinstance(points, TablePoints) and 0 < points.missing < len(last_keys)
    # every block was read but those holding only older versions of "zz" (a lookup stops at its newest)
    assert all(last_keys[b] == last_keys[b - 1] == b"zz" for b in range(len(last_keys)) if not points.loaded[b])
    points._check()
    assert points == {k: model(k, LATEST)[2] for k in keys}  # type: ignore[index]
    for key in keys + [b"k", b"k0000x", b"zzz"]:
        for read_negseq in (-1, -3000, -6000, -9999, LATEST):  # older readers: from the blocks, exactly
            assert reader.get(key, key_hashes(key), read_negseq) == model(key, read_negseq)
    reader.close()


def test_gets_at_every_snapshot_while_tables_are_gathered(tmp_path: Path, small: dict) -> None:
    """Snapshots older than the tables their keys were overwritten into read the old values (and keep
    versions that continue across blocks); the current reader reads the new ones from the points once
    gathered; get_many agrees."""
    rng = random.Random(3)
    with byrondbm.open(tmp_path / "db", "c", block_cache_size=1 << 24, **small) as db:
        model: dict[bytes, bytes | None] = {}
        snaps: list[tuple[byrondbm.Snapshot, dict[bytes, bytes | None]]] = []
        keys = [b"k%04d" % i for i in range(600)]
        for round_ in range(6):
            for _ in range(700):
                k = rng.choice(keys[:50] if rng.random() < 0.3 else keys)  # a few keys with many versions
                if rng.random() < 0.2:
                    db.pop(k, None)
                    model[k] = None
                else:
                    model[k] = db[k] = b"%d.%d" % (round_, rng.randrange(10**6)) * rng.choice([1, 20])
            for _ in range(2):
                assert [db.get(k) for k in keys] == [model.get(k) for k in keys]
            snaps.append((db.snapshot(), dict(model)))
        db.compact()
        for _ in range(2):
            assert [db.get(k) for k in keys] == [model.get(k) for k in keys]
        assert db.get_many(keys) == [model.get(k) for k in keys]
        assert db.stats()["block_cache_hits"] > 0
        for snap, seen in snaps:
            assert [snap.get(k) for k in keys] == [seen.get(k) for k in keys]
            assert snap.get_many(keys) == [seen.get(k) for k in keys]
            snap.close()


def test_clock_eviction_gives_used_blocks_a_second_chance() -> None:
    cache = BlockCache(400)
    for key in (1, 2, 3, 4):
        cache.put(key, "b%d" % key, 100)
    assert cache.get(1) == "b1" and cache.get(3) == "b3"  # marked used
    cache.put(5, "b5", 100)  # 1 is oldest but used: it moves to the end, its mark cleared; 2 goes
    assert cache.peek(2) is None and cache.peek(1) is not None
    cache.put(6, "b6", 100)  # 3 used: second chance; 4 goes
    assert cache.peek(4) is None and cache.peek(3) is not None
    cache.put(7, "b7", 200)  # 5 and 1 (mark cleared) go, oldest first
    assert cache.peek(5) is None and cache.peek(1) is None and cache.charge == 400
    for key in (3, 6, 7):
        cache.hit(key)
    cache.put(8, "b8", 400)  # every block used: one pass clears the marks, the next evicts them all
    assert len(cache) == 1 and cache.peek(8) == ("b8", 400)
    cache.hit(99)  # a block evicted between peek and use: its mark is dropped by the next put
    cache.put(9, "b9", 400)
    assert len(cache) == 1 and cache.peek(9) is not None
    cache.discard(9)
    assert len(cache) == 0 and cache.charge == 0
    cache._check()


def test_growth_keeps_an_eighth_of_the_cache_free() -> None:
    cache = BlockCache(800)
    assert cache.growth_limit == 700
    points = TablePoints(4)
    assert not cache.add_if_room(1, points, 701) and cache.add_if_room(1, points, 300)
    assert not cache.add_if_room(1, points, 1)  # only where nothing is cached
    assert not cache.grow(1, points, 401)  # 701 > 700
    assert cache.grow(1, points, 400) and cache.charge == 700 and cache.peek(1) == (points, 700)
    assert not cache.grow(1, TablePoints(4), 0)  # only the object cached there
    assert not cache.grow(2, points, 0)  # only a key still cached
    cache.put(3, b"z", 100)  # a put may fill the cache to its capacity; growth then waits
    assert cache.charge == 800 and not cache.has_room(1) and cache.has_room(-100)
    cache._check()


def test_scans_of_a_complete_table_without_tombstones_come_from_its_points(tmp_path: Path) -> None:
    entries = [(b"k%05d" % i, -(i % 97 + 1), b"v%d" % i) for i in range(3000)]
    entries.insert(1000, (b"k00999", -5, b"older"))  # an older version (seq 5 < 30), after the newest
    reader, props, cache = table_of(tmp_path, entries)
    newest = {e[0]: e[2] for e in reversed(entries)}
    want = sorted(newest.items())
    read = -props.max_seq
    for key in newest:
        reader.get(key, key_hashes(key), LATEST)
    points_key, _, _ = reader.point_parts()
    points = cache.peek(points_key)[0]  # type: ignore[index]
    assert points.missing == 0 and points.order is None
    blocks_cached = len(cache)
    for start, stop, reverse, merged in [(None, None, False, False), (b"k01000", b"k02000", True, False),
                                          (b"k00999", None, False, True), (None, b"k00003", True, True)]:
        runs = list(reader.chunks(start, stop, reverse, read, merged=merged))
        assert all(run.__class__ is tuple and len(run) == 3 for run in runs)  # all Clean
        got = [p for run in runs for p in (zip(run[0], run[1]))]  # type: ignore[misc]
        expect = [p for p in want if (start is None or p[0] >= start) and (stop is None or p[0] < stop)]
        if reverse:  # runs come downwards, each ascending
            got = [p for run in runs for p in reversed(list(zip(run[0], run[1])))]  # type: ignore[misc]
            expect.reverse()
        assert got == expect
        entries_of_first = runs[0][2]()  # type: ignore[index, operator]
        assert [(k, v) for k, _, v in entries_of_first] == list(zip(runs[0][0], runs[0][1]))  # type: ignore[index]
        assert {s for _, s, _ in entries_of_first} == {read}  # the table's largest sequence number
    assert points.order == (sorted(newest), [newest[k] for k in sorted(newest)])
    assert len(cache) == blocks_cached  # no block read
    points._check()
    # An older reader reads the blocks: every version is there (`newest` then filters by sequence number).
    older = [p for run in reader.chunks(b"k00999", b"k01000", False, -20) for p in run]
    assert older == [(b"k00999", -30, b"v999"), (b"k00999", -5, b"older")]
    reader.close()


def test_merged_scans_over_tables_served_from_points_match_a_model(tmp_path: Path, small: dict) -> None:
    """Scans (both ways, seeks, snapshots) over tables whose points are complete, merged with memtables and
    newer tables holding tombstones and overwrites, so rounds sort entries the points made."""
    rng = random.Random(11)
    with byrondbm.open(tmp_path / "db", "c", block_cache_size=1 << 24, **dict(small, memtable_size=1 << 16)) as db:
        model: dict[bytes, bytes] = {}
        for i in range(4000):
            model[b"k%05d" % i] = db[b"k%05d" % i] = b"v%d" % i
        db.compact()
        for k in model:
            assert db[k] == model[k]  # gathers every table
        snap = db.snapshot()
        before = dict(model)
        for i in range(600):  # tombstones and overwrites, in newer tables and the memtable
            k = b"k%05d" % rng.randrange(4200)
            if rng.random() < 0.4:
                db.pop(k, None)
                model.pop(k, None)
            else:
                model[k] = db[k] = b"new%d" % i
        for reverse in (False, True):
            assert list(db.scan(reverse=reverse)) == sorted(model.items(), reverse=reverse)
            assert list(snap.scan(reverse=reverse)) == sorted(before.items(), reverse=reverse)
            for _ in range(20):  # seeks: forward from a key, reverse from below one
                bound = b"k%05d" % rng.randrange(4200)
                scan = db.scan(stop=bound, reverse=True) if reverse else db.scan(bound)
                expect = sorted(((k, v) for k, v in model.items() if (k < bound) == reverse), reverse=reverse)
                assert list(islice(scan, 50)) == expect[:50]
        snap.close()


def test_reverse_merges_of_clean_blocks_keep_a_key_continued_across_blocks_whole(tmp_path: Path) -> None:
    """A key whose versions continue from one block into the next, in an older table, with a newer version
    in a memtable: a reverse merge that resolves clean runs by key must still give the memtable's."""
    from itertools import chain

    from byrondbm.engine.iterators import merge_runs, newest
    from byrondbm.engine.memtable import Memtable

    rng = random.Random(4)
    entries = []
    for i in range(400):
        key = b"k%04d" % i
        versions = 2 if rng.random() < 0.3 else 1
        entries += [(key, -(1000 + 2 * i + v), b"v" * rng.randrange(20, 200)) for v in range(versions)]
    entries.sort()
    reader, props, _ = table_of(tmp_path, entries)
    mem = Memtable(2)
    newer = {}
    for n, key in enumerate(sorted({e[0] for e in entries if rng.random() < 0.3})):
        newer[key] = b"new%d" % n
        mem.put((key, -(5000 + n), newer[key]), False)
    model = {e[0]: e[2] for e in reversed(entries)}  # the newest version of each key in the table
    model.update(newer)
    read = -6000
    last_keys = reader.last_keys
    continued = sum(1 for a, b in zip(last_keys, last_keys[1:]) if a in newer)
    for start, stop in [(None, None), (b"k0100", b"k0300")]:
        runs = [mem.chunks(start, stop, True, read, merged=True), reader.chunks(start, stop, True, read, merged=True)]
        got = list(chain.from_iterable(newest(merge_runs(runs, True), read, True)))
        want = [(k, v) for k, v in sorted(model.items(), reverse=True)
                if (start is None or k >= start) and (stop is None or k < stop)]
        assert got == want
    assert continued, "no block boundary splits a key the memtable holds: the test did not test it"
    reader.close()


def test_a_lookup_gathers_its_group_and_leaves_a_damaged_neighbour_to_its_own_read(tmp_path: Path) -> None:
    from byrondbm.engine.sstable.reader import GATHER_GROUP
    from byrondbm.errors import CorruptionError

    rng = random.Random(6)
    entries = [(b"k%05d" % i, -1, rng.randbytes(40)) for i in range(1000)]
    reader, props, cache = table_of(tmp_path, entries, compression="none")  # values findable in the file
    points_key, _, _ = reader.point_parts()
    last_keys = reader.last_keys
    assert props.num_data_blocks > 2 * GATHER_GROUP
    group = [e for e in entries if e[0] <= last_keys[GATHER_GROUP - 1]]  # the entries of blocks 0..15
    victim = group[len(group) // 2]  # a block in the middle of the group gets damaged
    path = tmp_path / "000001.sst"
    data = bytearray(path.read_bytes())
    data[data.index(victim[2]) + 3] ^= 0x40
    path.write_bytes(data)
    damaged = bisect_left(last_keys, victim[0])
    first = group[0][0]
    assert reader.get(first, key_hashes(first), LATEST) == entries[0]
    points = cache.peek(points_key)[0]  # type: ignore[index]
    assert [b for b in range(props.num_data_blocks) if points.loaded[b]] == [
        b for b in range(GATHER_GROUP) if b != damaged
    ]  # one read gathered the group, all but the damaged block
    assert {k: points[k] for k, _, _ in group if bisect_left(last_keys, k) != damaged} == {
        k: v for k, _, v in group if bisect_left(last_keys, k) != damaged
    }
    with pytest.raises(CorruptionError):
        reader.get(victim[0], key_hashes(victim[0]), LATEST)
    points._check()
    reader.close()


def test_a_table_of_large_values_caches_no_empty_points(tmp_path: Path) -> None:
    entries = [(b"k%03d" % i, -1, bytes([i]) * 300) for i in range(40)]  # every value stored out of line
    reader, _, cache = table_of(tmp_path, entries, large_value_threshold=100)  # type: ignore[arg-type]
    points_key, _, _ = reader.point_parts()
    for key, negseq, value in entries:
        assert reader.get(key, key_hashes(key), LATEST) == (key, negseq, value)
    assert cache.peek(points_key) is None  # nothing gathered: the blocks are cached as bytes
    assert len(cache) > 0
