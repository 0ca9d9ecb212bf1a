"""`db.stats()`: every contract key, and each number agreeing with what was done and with the disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import byrondbm

# Inline work (no compactor thread) so the tables on disk cannot change between stats() and listdir().
SMALL = dict(memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512, background_compaction=False)
CONTRACT_KEYS = {
    "levels": list, "memtable_bytes": int, "immutable_memtables": int, "flushes": int, "compactions": int,
    "user_bytes_written": int, "engine_bytes_written": int, "write_amplification": float, "bloom_checks": int,
    "bloom_negatives": int, "block_cache_hits": int, "block_cache_misses": int, "live_keys": int,
    "sequence": int, "table_bytes": int,
}  # fmt: skip


@pytest.fixture
def db(tmp_path: Path):  # noqa: ANN201
    with byrondbm.open(tmp_path / "db", "c", **SMALL) as d:
        yield d


def _sst_bytes(d: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".sst"))


def test_fresh_database(db: byrondbm.Database) -> None:
    s = db.stats()
    for key, kind in CONTRACT_KEYS.items():
        assert isinstance(s[key], kind), key
    assert json.loads(json.dumps(s)) == s
    assert [lv["level"] for lv in s["levels"]] == list(range(len(s["levels"])))
    assert all(set(lv) == {"level", "files", "bytes", "keys"} and lv["files"] == 0 for lv in s["levels"])
    assert (s["sequence"], s["live_keys"], s["user_bytes_written"], s["table_bytes"]) == (0, 0, 0, 0)
    assert s["write_amplification"] == 0.0


def test_counts_follow_the_work(db: byrondbm.Database, tmp_path: Path) -> None:
    user = 0
    for i in range(3000):
        k, v = b"k%05d" % i, b"v" * (i % 50)
        db[k] = v
        user += len(k) + len(v)
    with db.batch() as b:
        for i in range(0, 3000, 3):
            b.delete(b"k%05d" % i)
            user += 6
    s = db.stats()
    assert s["sequence"] == 4000
    assert s["live_keys"] == len(db) == 2000
    assert s["user_bytes_written"] == user
    assert s["flushes"] > 10 and s["compactions"] > 0  # 4 KiB memtables, tiny levels
    assert s["memtable_bytes"] > 0
    assert s["engine_bytes_written"] > s["user_bytes_written"]
    assert s["write_amplification"] == round(s["engine_bytes_written"] / s["user_bytes_written"], 3)
    assert s["table_bytes"] == sum(lv["bytes"] for lv in s["levels"]) == _sst_bytes(tmp_path / "db")
    assert sum(lv["files"] for lv in s["levels"]) == sum(f.endswith(".sst") for f in os.listdir(tmp_path / "db"))
    assert sum(lv["keys"] for lv in s["levels"]) >= 2000

    db.compact()
    after = db.stats()
    assert after["compactions"] == s["compactions"] + 1 and after["flushes"] == s["flushes"] + 1
    assert after["memtable_bytes"] == 0 and after["immutable_memtables"] == 0
    assert after["levels"][0]["files"] == 0
    assert sum(lv["keys"] for lv in after["levels"]) == 2000  # one version per live key, no tombstones left
    assert after["table_bytes"] == _sst_bytes(tmp_path / "db")
    assert after["engine_bytes_written"] > s["engine_bytes_written"]  # compaction rewrote the tables
    assert after["user_bytes_written"] == user


def test_bloom_filter_saves_reads_of_absent_keys(tmp_path: Path) -> None:
    # No block cache, so no table points: a gathered block answers an absent key of its own range with no
    # filter asked, and the blocks a filter's false positive reads would gather their whole group.
    with byrondbm.open(tmp_path / "db", "c", **dict(SMALL, block_cache_size=0)) as db:
        for i in range(2000):
            db[b"k%05d" % i] = b"v"
        db.compact()
        s = db.stats()
        for i in range(2000):
            assert db.get(b"k%05d+" % i) is None  # inside a table's key range, so its filter is asked
        after = db.stats()
    checks = after["bloom_checks"] - s["bloom_checks"]
    negatives = after["bloom_negatives"] - s["bloom_negatives"]
    assert checks >= 1900  # all but keys falling between two tables of a level
    reads = after["block_cache_hits"] + after["block_cache_misses"] - s["block_cache_hits"] - s["block_cache_misses"]
    # The filter turns most away; an empty hash bucket some of those its first probe let pass. These tables
    # have fewer than TRUSTED_HINT_BLOCKS blocks, so a hash bucket naming a block whose range holds the key
    # does not skip the filter's other probes (it would here: 52 reads instead of 14).
    assert negatives >= 0.8 * checks
    assert reads <= 0.015 * checks  # ~1 % false positives at 10 bits a key
    assert reads <= checks - negatives


def test_block_cache_hits_and_misses(tmp_path: Path) -> None:
    for cache, hits_expected in ((8 * 1024 * 1024, True), (0, False)):
        with byrondbm.open(tmp_path / str(cache), "c", block_cache_size=cache, **SMALL) as db:
            for i in range(500):
                db[b"k%05d" % i] = b"v" * 30
            db.compact()
            s = db.stats()
            for _ in range(3):
                assert db[b"k00100"] == b"v" * 30
            after = db.stats()
            misses = after["block_cache_misses"] - s["block_cache_misses"]
            hits = after["block_cache_hits"] - s["block_cache_hits"]
            assert (misses, hits) == ((1, 2) if hits_expected else (3, 0))


def test_read_only_and_closed(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c") as db:
        db[b"k"] = b"v"
    with byrondbm.open(tmp_path / "db", "r") as ro:
        s = ro.stats()
        assert s["live_keys"] == 1 and s["sequence"] == 1
    with pytest.raises(byrondbm.error):
        ro.stats()


@pytest.mark.parametrize("workers", [0, 1])
def test_counters_survive_a_reopen(tmp_path: Path, workers: int) -> None:
    """flushes, compactions and the bytes written are kept for the database's whole life: a reopen goes
    on from what the last session reported, whatever was still in its memtable."""
    path = tmp_path / "db"
    with byrondbm.open(path, "c", **dict(SMALL, background_compaction=True, workers=workers)) as db:
        for i in range(3000):
            db[b"k%05d" % i] = b"v" * 40
        before = db.stats()
        assert before["flushes"] > 0
    with byrondbm.open(path, "r") as db:
        after = db.stats()
    assert after["user_bytes_written"] == before["user_bytes_written"]
    for name in ("compactions", "trivial_moves", "flushes"):  # one may end between the stats and the close
        assert before[name] <= after[name] <= before[name] + 1, name
    assert after["engine_bytes_written"] >= before["engine_bytes_written"]
    with byrondbm.open(path, "w", **SMALL) as db:
        db[b"more"] = b"x"
        assert db.stats()["user_bytes_written"] == before["user_bytes_written"] + 5
