"""Point reads: the hash-index hint's proof of presence, the search of a block, the cache's uncounted
peek, and `get_many` (one moment, each table's blocks read once)."""

from __future__ import annotations

import random
from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import byrondbm
from byrondbm.engine.sstable.block import (
    KIND_TOMBSTONE,
    KIND_VALUE,
    MISSED_HINT,
    NEXT_BLOCK,
    encode_block,
    find_in_block,
)
from byrondbm.engine.sstable.cache import BlockCache
from byrondbm.engine.sstable.format import TRAILER_SIZE


def block_of(entries: list[tuple[bytes, int, bytes | None]]) -> bytes:
    """A data block (contents + a dummy trailer) of ``(key, negseq, value | None)`` in entry order."""
    kinds = bytearray(KIND_TOMBSTONE if v is None else KIND_VALUE for _, _, v in entries)
    contents = encode_block([k for k, _, _ in entries], [v or b"" for _, _, v in entries], [-n for _, n, _ in entries], kinds)
    return contents + b"\0" * TRAILER_SIZE


def model(entries: list, key: bytes, read_negseq: int) -> object:
    i = bisect_left(entries, (key, read_negseq))
    if i == len(entries):
        return NEXT_BLOCK if entries[-1][0] == key else None
    return entries[i] if entries[i][0] == key else None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"", b"a", b"aa", b"aab", b"ab", b"b", b"ba", b"bab"]) | st.binary(max_size=3),
                  st.integers(1, 9), st.none() | st.binary(max_size=5)),
        min_size=1, max_size=40, unique_by=lambda e: (e[0], e[1]),
    ),
    st.binary(max_size=3),
)
def test_hint_without_search_answers_only_from_the_keys_first_entry(raw_entries: list, other: bytes) -> None:
    """``search=False``: the model's answer from the entry where the key's versions start, `MISSED_HINT`
    from any other hint; the search (``hint=-1``) finds the key whatever its bytes straddle."""
    entries = sorted((k, -s, v) for k, s, v in raw_entries)
    raw = block_of(entries)
    size = len(raw) - TRAILER_SIZE
    for key in {*(e[0] for e in entries), other}:
        first = next((i for i, e in enumerate(entries) if e[0] == key), None)
        for read_negseq in (-10, -5, -1, 0):
            expected = model(entries, key, read_negseq)
            assert find_in_block(raw, size, key, read_negseq, -1, "blk") == expected
            for hint in range(-1, len(entries) + 1):
                got = find_in_block(raw, size, key, read_negseq, hint, "blk", False)
                assert got == (expected if hint == first else MISSED_HINT)


def test_search_skips_occurrences_across_key_boundaries() -> None:
    entries = [(b"aab", -1, b"x"), (b"ab", -2, b"y"), (b"ab", -1, b"z"), (b"b", -1, None)]
    raw = block_of(entries)
    size = len(raw) - TRAILER_SIZE
    assert raw.find(b"ab") == 1  # inside "aab": not a key
    assert find_in_block(raw, size, b"ab", -5, -1, "blk") == (b"ab", -2, b"y")
    assert find_in_block(raw, size, b"ab", -1, -1, "blk") == (b"ab", -1, b"z")
    assert find_in_block(raw, size, b"ba", -5, -1, "blk") is None  # "b" + ... never a key
    assert find_in_block(raw, size, b"b", -5, -1, "blk") == (b"b", -1, None)


def test_peek_neither_counts_nor_refreshes_and_hit_does_both() -> None:
    cache = BlockCache(3 * 300)
    for key in (1, 2, 3):
        cache.put(key, b"x" * 10, 300)
    assert cache.peek(1) == (b"x" * 10, 300) and cache.peek(9) is None
    assert (cache.hits, cache.misses) == (0, 0)
    cache.put(4, b"y", 300)  # evicts 1: peeking did not make it recent
    assert cache.peek(1) is None
    cache.hit(2)
    assert cache.hits == 1
    cache.put(5, b"z", 300)  # evicts 3, not 2, which the hit made recent
    assert cache.peek(2) is not None and cache.peek(3) is None
    cache.hit(3)  # evicted meanwhile: counted, nothing else
    assert cache.hits == 2
    cache._check()


def test_gets_see_every_version_at_every_snapshot(tmp_path: Path, small: dict) -> None:
    """Many versions of one key, spread over several blocks by the snapshots that keep them; tombstones
    among them; big values; read by the hint path (cached blocks) and cold."""
    for cache in (1 << 22, 0):
        with byrondbm.open(tmp_path / str(cache), "c", block_cache_size=cache, **small) as db:
            for i in range(300):
                db[b"f%04d" % i] = b"filler" * 10
            snaps: list[byrondbm.Snapshot] = []
            seen: list[bytes | None] = []
            for v in range(60):
                if v % 7 == 3:
                    del db[b"key"]
                    seen.append(None)
                else:
                    db[b"key"] = b"%d" % v * (1 + 2000 * (v % 11 == 0))
                    seen.append(db[b"key"])
                snaps.append(db.snapshot())
            db.compact()
            for snap, value in zip(snaps, seen):
                assert snap.get(b"key") == value
                assert snap.get_many([b"key", b"f0001", b"nope"]) == [value, b"filler" * 10, None]
                snap.close()
            assert db.get(b"key") == seen[-1]


@pytest.mark.parametrize("cache", [1 << 22, 0])
def test_get_many_agrees_with_get_over_every_source(tmp_path: Path, cache: int, small: dict) -> None:
    rng = random.Random(cache)
    with byrondbm.open(tmp_path / "db", "c", block_cache_size=cache, **small) as db:
        model: dict[bytes, bytes] = {}
        for step in range(6000):  # memtables, L0 and sorted levels, overwrites and deletions
            k = b"k%05d" % rng.randrange(3000)
            if rng.random() < 0.15:
                db.pop(k, None)
                model.pop(k, None)
            else:
                model[k] = db[k] = b"%d" % step
        asked: list[bytes | str] = [b"k%05d" % rng.randrange(3200) for _ in range(2000)]
        asked += [b"k00010", b"k00010", "k00011", b""]
        want = [model.get(k.encode() if isinstance(k, str) else k) for k in asked]
        assert db.get_many(asked) == want == [db.get(k) for k in asked]
        with db.snapshot() as snap:
            for key in asked[:300]:
                db[key] = b"later"
            assert snap.get_many(asked) == want
        assert db.get_many([]) == []
        want = db.get_many(asked)
    with byrondbm.open(tmp_path / "db", "r") as reader:
        assert reader.get_many(asked) == want


def test_get_many_reads_each_block_once(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c", block_cache_size=0, block_size=1024) as db:
        for i in range(5000):
            db[b"k%05d" % i] = b"v" * 40
        db.compact()
        keys = [b"k%05d" % i for i in range(0, 5000, 3)]
        s = db.stats()
        assert db.get_many(keys[::-1]) == [b"v" * 40] * len(keys)
        after = db.stats()
        reads = after["block_cache_misses"] - s["block_cache_misses"]
        blocks = 5000 * 50 // 1024  # the table holds ~5000 × 50 bytes in 1 KiB blocks
        assert after["block_cache_hits"] == s["block_cache_hits"] and reads <= blocks * 1.3
        s = after
        for k in keys:
            assert db.get(k) == b"v" * 40
        assert db.stats()["block_cache_misses"] - s["block_cache_misses"] == len(keys)  # a get a block each


def test_get_many_answers_from_a_gathered_table_without_its_filter_or_blocks(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c", block_size=1024) as db:
        for i in range(5000):
            db[b"k%05d" % i] = b"v%d" % i
        db.compact()
        keys = [b"k%05d" % i for i in range(0, 5200, 3)]  # the last ones absent
        want = [db.get(k) for k in keys]  # gathers the table's blocks into its points
        s = db.stats()
        assert db.get_many(keys[::-1]) == want[::-1]
        after = db.stats()
        assert after["bloom_checks"] == s["bloom_checks"] and after["block_cache_misses"] == s["block_cache_misses"]
        assert after["block_cache_hits"] - s["block_cache_hits"] == sum(v is not None for v in want)
