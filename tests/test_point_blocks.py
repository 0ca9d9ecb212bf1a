"""Blocks cached for point lookups (`PointBlock`): what they hold, when a table makes one, who may use one
(a reader that sees the whole table; an older one reads the block again), and the cache's second-chance
eviction and upgrade headroom that decide which blocks are held so."""

from __future__ import annotations

import random
from bisect import bisect_left
from pathlib import Path

import byrondbm
from byrondbm.engine.sstable import BlockCache, PointBlock, TableReader, TableWriter, key_hashes
from byrondbm.engine.sstable.block import KIND_LARGE, KIND_TOMBSTONE, KIND_VALUE, encode_block, point_block
from byrondbm.engine.sstable.format import TRAILER_SIZE
from byrondbm.options import Options

LATEST = -((1 << 62) - 1)


def test_point_block_maps_each_key_to_its_newest_value() -> None:
    entries = [(b"a", 9, b"new"), (b"a", 3, b"old"), (b"b", 7, None), (b"b", 2, b"gone"), (b"c", 1, b"c1")]
    kinds = bytearray(KIND_TOMBSTONE if v is None else KIND_VALUE for _, _, v in entries)
    raw = encode_block([k for k, _, _ in entries], [v or b"" for _, _, v in entries], [s for _, s, _ in entries], kinds)
    block = point_block(raw + b"\0" * TRAILER_SIZE, len(raw), "t")
    assert block == {b"a": b"new", b"b": None, b"c": b"c1"} and block.__class__ is PointBlock
    clean = encode_block([b"x", b"y"], [b"1", b"2"], [5, 6], bytearray([KIND_VALUE] * 2))
    assert point_block(clean, len(clean), "t") == {b"x": b"1", b"y": b"2"}
    large = encode_block([b"x"], [bytes(16)], [5], bytearray([KIND_LARGE]))
    assert point_block(large, len(large), "t") is None  # a large value is read by the general path


def test_a_table_caches_a_block_for_lookups_on_its_second_use_and_older_readers_still_see_old_versions(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    entries = sorted(
        {(b"k%04d" % rng.randrange(400), -rng.randrange(1, 10_000), rng.choice([None, b"v" * rng.randrange(30)]))
         for _ in range(1500)},
        key=lambda e: (e[0], e[1]),
    )
    path = tmp_path / "000001.sst"
    writer = TableWriter(str(path), Options(block_size=512))
    for e in entries:
        writer.add(*e)
    props = writer.finish()
    cache = BlockCache(1 << 24)
    reader = TableReader(str(path), 1, cache)
    last_keys, base, negmax, shared = reader.point_parts()
    assert shared is cache and negmax == -props.max_seq

    def model(key: bytes, read_negseq: int) -> tuple | None:
        i = bisect_left(entries, (key, read_negseq))
        return entries[i] if i < len(entries) and entries[i][0] == key else None

    keys = sorted({e[0] for e in entries})
    for key in keys:
        reader.get(key, key_hashes(key), LATEST)  # a miss caches the block's bytes, a hit upgrades it
    for key in keys:
        assert reader.get(key, key_hashes(key), LATEST) == model(key, LATEST)
    forms = {cache.peek(base + b)[0].__class__ for b in range(len(last_keys))}  # type: ignore[index]
    assert forms == {PointBlock}
    for key in keys + [b"k", b"k0000x", b"zzz"]:
        if key < last_keys[-1]:  # the newest visible value, from the dict
            block = cache.peek(base + bisect_left(last_keys, key))[0]  # type: ignore[index]
            newest = model(key, LATEST)
            assert block.get(key, "absent") == ("absent" if newest is None else newest[2])
        for read_negseq in (-1, -3000, -6000, -9999, LATEST):  # older readers: from the file, exactly
            assert reader.get(key, key_hashes(key), read_negseq) == model(key, read_negseq)
    reader.close()


def test_gets_at_every_snapshot_while_blocks_are_cached_for_lookups(tmp_path: Path, small: dict) -> None:
    """Snapshots older than the tables their keys were overwritten into read the old values; the current
    reader reads the new ones, from dicts once the blocks are upgraded; get_many agrees."""
    rng = random.Random(3)
    with byrondbm.open(tmp_path / "db", "c", block_cache_size=1 << 24, **small) as db:
        model: dict[bytes, bytes | None] = {}
        snaps: list[tuple[byrondbm.Snapshot, dict[bytes, bytes | None]]] = []
        keys = [b"k%04d" % i for i in range(600)]
        for round_ in range(6):
            for _ in range(700):
                k = rng.choice(keys)
                if rng.random() < 0.2:
                    db.pop(k, None)
                    model[k] = None
                else:
                    model[k] = db[k] = b"%d.%d" % (round_, rng.randrange(10**6))
            for _ in range(3):  # a second use upgrades a block
                for k in keys:
                    assert db.get(k) == model.get(k)
            snaps.append((db.snapshot(), dict(model)))
        db.compact()
        for _ in range(2):
            assert [db.get(k) for k in keys] == [model.get(k) for k in keys]
        assert db.get_many(keys) == [model.get(k) for k in keys]
        stats = db.stats()
        assert stats["block_cache_hits"] > 0
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
    cache._check()


def test_upgrade_keeps_an_eighth_of_the_cache_free() -> None:
    cache = BlockCache(800)
    cache.put(1, b"x", 300)
    cache.put(2, b"y", 300)
    assert cache.upgrade_limit == 700
    assert not cache.upgrade(1, "bigger", 401)  # 401 + 300 > 700
    assert cache.peek(1) == (b"x", 300)
    assert cache.upgrade(1, "bigger", 400) and cache.charge == 700 and cache.peek(1) == ("bigger", 400)
    assert not cache.upgrade(3, "absent", 1)  # only a block still cached is upgraded
    cache.put(3, b"z", 100)  # a put may fill the cache to its capacity; upgrades then wait
    assert cache.charge == 800 and len(cache) == 3 and not cache.has_room(1) and cache.has_room(-100)
    cache._check()
