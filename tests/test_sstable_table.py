"""Whole tables: writer + reader against a sorted-list model, large values, corruption, lifetime."""

from __future__ import annotations

import gc
import itertools
import os
import random
import struct
import threading
import zlib
from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byrondbm.engine.sstable import (
    BlockCache,
    TablePoints,
    TableProperties,
    TableReader,
    TableWriter,
    key_hashes,
)
from byrondbm.engine.sstable.cache import decoded_charge, point_charge, raw_charge
from byrondbm.engine.sstable.format import FOOTER_SIZE, MAGIC
from byrondbm.engine.sstable.hash_index import ABSENT
from byrondbm.engine.sstable.reader import GATHER_GROUP
from byrondbm.errors import CorruptionError, error
from byrondbm.options import Options

Entry = tuple  # (key, negseq, value | None)
LATEST = -((1 << 62) - 1)


def write_table(path: Path, entries: list[Entry], **options: int) -> TableProperties:
    writer = TableWriter(str(path), Options(**options))
    for entry in entries:
        writer.add(*entry)
    return writer.finish()


def model_get(entries: list[Entry], key: bytes, read_negseq: int) -> Entry | None:
    i = bisect_left(entries, (key, read_negseq))
    return entries[i] if i < len(entries) and entries[i][0] == key else None


def model_range(entries: list[Entry], start: bytes | None, stop: bytes | None) -> list[Entry]:
    return [e for e in entries if (start is None or e[0] >= start) and (stop is None or e[0] < stop)]


def random_entries(rng: random.Random, count: int) -> list[Entry]:
    """``count`` entries over fewer keys: several versions a key, ~10 % tombstones, edge keys included."""
    keys = [b"", b"\x00", b"\xff" * 100] + [rng.randbytes(rng.randint(1, 20)) for _ in range(count // 3)]
    seqs = rng.sample(range(1, count * 10), count)
    entries = set()
    for seq in seqs:
        value = None if rng.random() < 0.1 else rng.randbytes(rng.randint(0, 120))
        entries.add((rng.choice(keys), -seq, value))
    return sorted(entries, key=lambda e: (e[0], e[1]))


@pytest.fixture(scope="module")
def big_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Entry], TableProperties]:
    rng = random.Random(20)
    entries = random_entries(rng, 20_000)
    path = tmp_path_factory.mktemp("big") / "000001.sst"
    props = write_table(path, entries, block_size=1024)
    return path, entries, props


def test_properties(big_table: tuple[Path, list[Entry], TableProperties]) -> None:
    path, entries, props = big_table
    assert props.num_entries == len(entries)
    assert props.num_deletions == sum(e[2] is None for e in entries)
    assert props.smallest_key == entries[0][0] == b""
    assert props.largest_key == entries[-1][0]
    assert props.min_seq == min(-e[1] for e in entries)
    assert props.max_seq == max(-e[1] for e in entries)
    assert props.file_size == path.stat().st_size
    assert 0 < props.data_size < props.file_size
    assert props.num_data_blocks > 100
    reader = TableReader(str(path), 1, BlockCache(1 << 20))
    assert reader.properties == props
    assert (reader.smallest, reader.largest) == (props.smallest_key, props.largest_key)
    assert reader.number == 1 and reader.path == str(path)
    reader.close()


@pytest.mark.parametrize("cache_size", [0, 1 << 16, 1 << 26])
def test_get_at_various_sequence_numbers(big_table: tuple, cache_size: int) -> None:
    path, entries, props = big_table
    rng = random.Random(cache_size)
    reader = TableReader(str(path), 1, BlockCache(cache_size))
    keys = sorted({e[0] for e in entries})
    for _ in range(3000):
        key = rng.choice(keys) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 20))
        read_negseq = rng.choice([LATEST, -rng.randint(0, props.max_seq + 5)])
        assert reader.get(key, key_hashes(key), read_negseq) == model_get(entries, key, read_negseq)
    for entry in entries[:: max(1, len(entries) // 2000)]:  # every stored version is reachable exactly
        assert reader.get(entry[0], key_hashes(entry[0]), entry[1]) == entry
    assert reader.bloom_checks >= 3000
    assert reader.bloom_negatives > 0
    reader.close()


def test_iter_random_bounds_forward_and_reverse(big_table: tuple) -> None:
    path, entries, _ = big_table
    rng = random.Random(5)
    reader = TableReader(str(path), 1, BlockCache(1 << 22))
    assert list(reader.iter()) == entries
    assert list(reader.iter(reverse=True)) == entries[::-1]
    keys = [e[0] for e in entries]
    for _ in range(150):
        bounds = [rng.choice(keys) if rng.random() < 0.6 else rng.randbytes(rng.randint(0, 3)) for _ in range(2)]
        start, stop = (None if rng.random() < 0.15 else b for b in sorted(bounds))
        if rng.random() < 0.1:
            start, stop = stop, start  # empty or unbounded ranges too
        lo = 0 if start is None else bisect_left(keys, start)
        hi = len(keys) if stop is None else bisect_left(keys, stop)
        expected = entries[lo:hi] if lo < hi else []
        assert list(reader.iter(start, stop)) == expected
        assert list(reader.iter(start, stop, reverse=True)) == expected[::-1]
    reader.close()


def test_many_versions_of_one_key_span_blocks(tmp_path: Path) -> None:
    entries = [(b"a", -1, b"x")] + [(b"k", -s, b"v%04d" % s) for s in range(400, 0, -1)] + [(b"z", -1, None)]
    entries.sort(key=lambda e: (e[0], e[1]))
    props = write_table(tmp_path / "t.sst", entries, block_size=256)
    assert props.num_data_blocks > 5
    reader = TableReader(str(tmp_path / "t.sst"), 7, BlockCache(1 << 20))
    h = key_hashes(b"k")
    for seq in range(502):
        assert reader.get(b"k", h, -seq) == model_get(entries, b"k", -seq)
    assert reader.get(b"k", h, -250) == (b"k", -250, b"v0250")
    assert reader.get(b"k", h, 0) is None
    assert reader.get(b"z", key_hashes(b"z"), LATEST) == (b"z", -1, None)  # tombstones are returned
    assert list(reader.iter(b"k", b"l")) == entries[1:-1]
    assert list(reader.iter(b"k", b"l", reverse=True)) == entries[1:-1][::-1]
    assert list(reader.iter(b"b", reverse=True)) == entries[1:][::-1]
    assert reader.check() == len(entries)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.lists(
        st.tuples(st.binary(max_size=6), st.integers(1, 60), st.one_of(st.none(), st.binary(max_size=200))),
        min_size=1,
        max_size=150,
        unique_by=lambda e: (e[0], e[1]),
    ),
    block_size=st.sampled_from([256, 700, 4096]),
)
def test_random_tables_match_the_model(tmp_path: Path, raw: list, block_size: int) -> None:
    """Tiny blocks, many versions, values on both sides of a 64-byte large-value threshold."""
    entries = sorted((k, -s, v) for k, s, v in raw)
    path = tmp_path / f"h{random.random()}.sst"
    write_table(path, entries, block_size=block_size, large_value_threshold=64)
    reader = TableReader(str(path), 1, BlockCache(1 << 16))
    try:
        assert reader.check() == len(entries)
        assert list(reader.iter()) == entries
        assert list(reader.iter(reverse=True)) == entries[::-1]
        for key in {e[0] for e in entries} | {b"", b"\x00", b"zz"}:
            for read_negseq in (LATEST, -30, -1, 0):
                assert reader.get(key, key_hashes(key), read_negseq) == model_get(entries, key, read_negseq)
        assert list(reader.iter(b"\x01", b"\x80")) == model_range(entries, b"\x01", b"\x80")
        assert list(reader.iter(b"\x01", b"\x80", reverse=True)) == model_range(entries, b"\x01", b"\x80")[::-1]
    finally:
        reader.close()
        path.unlink()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.lists(
        st.tuples(st.binary(min_size=1, max_size=3), st.integers(1, 60), st.one_of(st.none(), st.binary(max_size=90))),
        min_size=1,
        max_size=400,
        unique_by=lambda e: (e[0], e[1]),
    ),
)
def test_gets_agree_over_uncached_byte_cached_and_decoded_blocks(tmp_path: Path, raw: list) -> None:
    """Point lookups decode part of a block (from the hash index's restart point, or after binary searches
    when the bucket names another key's block) or use a decoded block an iterator cached: every path gives
    the model's answer, with versions spanning blocks and tombstones."""
    entries = sorted((k, -s, v) for k, s, v in raw)
    path = tmp_path / f"c{random.random()}.sst"
    write_table(path, entries, block_size=256)
    keys = {e[0] for e in entries} | {b"", b"\x00", b"\xff\xff\xff\xff"}
    probes = [(key, read_negseq) for key in keys for read_negseq in (LATEST, -45, -30, -2, 0)]
    uncached = TableReader(str(path), 1, BlockCache(0))
    cached = TableReader(str(path), 2, BlockCache(1 << 22))
    try:
        for state in ("none", "bytes", "decoded"):
            if state == "decoded":
                assert list(cached.iter()) == entries  # caches every block decoded, replacing its bytes
            for key, read_negseq in probes:
                expected = model_get(entries, key, read_negseq)
                assert uncached.get(key, key_hashes(key), read_negseq) == expected, state
                assert cached.get(key, key_hashes(key), read_negseq) == expected, state
    finally:
        uncached.close()
        cached.close()
        path.unlink()


def test_cache_holds_points_or_bytes_for_lookups_and_decoded_blocks_for_scans_and_seeks(tmp_path: Path) -> None:
    entries = [(b"%05d" % i, -1, b"v" * 50) for i in range(2000)]
    write_table(tmp_path / "t.sst", entries)
    roomy = BlockCache(1 << 24)  # a lookup gathers its block's group into the table's points while there is room
    reader = TableReader(str(tmp_path / "t.sst"), 1, roomy)
    assert reader.get(b"00100", key_hashes(b"00100"), LATEST) == entries[100]
    ((key, (points, charge)),) = roomy._map.items()
    points_key, _, _ = reader.point_parts()
    assert key == points_key and isinstance(points, TablePoints) and charge == roomy.charge
    assert points[b"00100"] == b"v" * 50 and points.missing == reader.properties.num_data_blocks - GATHER_GROUP
    assert charge > point_charge(sum(len(k) + len(v) for k, v in points.items()), len(points))  # the contents and more
    reader.close()
    cache = BlockCache(raw_charge(4200))  # room for a block's bytes, not for its values
    reader = TableReader(str(tmp_path / "t.sst"), 1, cache)
    assert reader.get(b"00100", key_hashes(b"00100"), LATEST) == entries[100]
    assert reader.get(b"00101", key_hashes(b"00101"), LATEST) == entries[101]  # a second use: no room to gather
    assert len(cache) == 1
    ((key, (raw, charge)),) = cache._map.items()
    assert isinstance(raw, bytes) and charge == cache.charge == raw_charge(len(raw))
    cache = BlockCache(1 << 24)
    reader = TableReader(str(tmp_path / "t.sst"), 1, cache)
    assert list(reader.iter(b"00100", b"00101")) == [entries[100]]  # a seek caches the block decoded
    decoded, charge = cache._map[key]
    assert isinstance(decoded, tuple) and charge == decoded_charge(len(raw) - 5, len(decoded[0]))
    assert list(reader.iter(None, b"00101")) == entries[:101]  # a scan from the start reads it from the cache
    assert cache._map[key][0] is decoded
    assert reader.get(b"00100", key_hashes(b"00100"), LATEST) == entries[100]  # lookups bisect decoded blocks
    held = len(cache)
    assert list(reader.iter(b"00100", b"00101", fill_cache=False)) == [entries[100]]
    last = reader._num_blocks - 1  # a one-pass read (compaction) caches nothing it reads
    assert list(reader.iter(reader.last_keys[last], fill_cache=False)) == entries[-1:]
    assert len(cache) == held
    reader.close()


@pytest.mark.parametrize("size", [1 << 20, 20 << 20])
def test_large_values_roundtrip(tmp_path: Path, size: int) -> None:
    rng = random.Random(size)
    big = rng.randbytes(size)
    threshold = 4096
    entries = [
        (b"at-threshold", -1, b"t" * threshold),
        (b"big", -3, big),
        (b"big", -2, None),
        (b"just-over", -4, b"j" * (threshold + 1)),
        (b"small", -5, b"s"),
    ]
    props = write_table(tmp_path / "t.sst", entries, large_value_threshold=threshold)
    assert props.data_size > size
    reader = TableReader(str(tmp_path / "t.sst"), 1, BlockCache(1 << 20))
    assert reader.get(b"big", key_hashes(b"big"), LATEST) == (b"big", -3, big)
    assert reader.get(b"big", key_hashes(b"big"), -2) == (b"big", -2, None)
    assert list(reader.iter()) == entries
    assert list(reader.iter(reverse=True)) == entries[::-1]
    assert reader.check() == len(entries)


@pytest.mark.slow
def test_64_mib_value(tmp_path: Path) -> None:
    big = os.urandom(64 << 20)
    write_table(tmp_path / "t.sst", [(b"k", -1, big)])
    reader = TableReader(str(tmp_path / "t.sst"), 1, BlockCache(1 << 20))
    assert reader.get(b"k", key_hashes(b"k"), LATEST)[2] == big
    assert reader.check() == 1


def test_get_applies_the_same_bloom_filter_as_check(big_table: tuple) -> None:
    """Keys past the table's last (so no hash bucket can send them to a block) whose home bucket is not
    empty (an empty one turns a key away first): each is turned away by the filter's own probes."""
    path, _, props = big_table
    reader = TableReader(str(path), 1, BlockCache(1 << 20))
    candidates = (props.largest_key + b"absent-%d" % i for i in range(10_000))
    probes = [key for key in candidates if reader._hash_index.lookup(key_hashes(key)[1]) != ABSENT][:3000]
    for key in probes:
        assert reader.get(key, key_hashes(key), LATEST) is None
    expected = sum(not reader._bloom.may_contain(key_hashes(key)) for key in probes)
    assert reader.bloom_negatives == expected > 2900
    assert reader.bloom_checks == len(probes)


def test_no_bloom_filter(tmp_path: Path) -> None:
    entries = [(b"%05d" % i, -1, b"v") for i in range(2000)]
    write_table(tmp_path / "t.sst", entries, bloom_bits_per_key=0)
    reader = TableReader(str(tmp_path / "t.sst"), 1, BlockCache(1 << 20))
    for i in range(0, 4000, 7):
        key = b"%05d" % i
        assert reader.get(key, key_hashes(key), LATEST) == model_get(entries, key, LATEST)
    assert reader.bloom_negatives == 0 and reader.bloom_checks > 0
    assert reader.check() == len(entries)


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "t.sst"
    writer = TableWriter(str(path), Options())
    with pytest.raises(ValueError):
        writer.finish()  # empty
    writer.add(b"b", -5, b"v")
    for bad in ((b"a", -9, b"v"), (b"b", -5, b"w"), (b"b", -6, b"w"), (b"c", 1, b"v"), (b"c", -(1 << 62), b"v")):
        with pytest.raises(ValueError):
            writer.add(*bad)
    writer.add(b"b", -4, None)
    assert writer.num_entries == 2
    writer.abandon()
    writer.abandon()
    assert not path.exists()
    path.write_bytes(b"")
    with pytest.raises(FileExistsError):
        TableWriter(str(path), Options())


def test_add_many_cuts_tables_between_keys_at_the_limit(tmp_path: Path) -> None:
    """What the engine's table splitting relies on: add_many returns the first entry of a new key once
    the table has reached the limit, so the next table starts there and no key spans two tables."""
    rng = random.Random(11)
    entries = random_entries(rng, 3000)
    source = iter(entries)
    tables: list[list[Entry]] = []
    carry = next(source)
    while carry is not None:
        path = tmp_path / f"{len(tables)}.sst"
        writer = TableWriter(str(path), Options(block_size=512))
        writer.add(*carry)
        carry = writer.add_many(source, 20_000)
        if carry is not None:
            assert writer.file_size >= 20_000 and carry[0] != writer._last_key
        writer.finish()
        reader = TableReader(str(path), len(tables), BlockCache(0))
        tables.append(list(reader.iter()))
        reader.close()
    assert len(tables) > 3
    assert [e for t in tables for e in t] == entries
    assert all(a[-1][0] < b[0][0] for a, b in itertools.pairwise(tables))


def test_add_and_add_many_mix(tmp_path: Path) -> None:
    entries = random_entries(random.Random(12), 500)
    writer = TableWriter(str(tmp_path / "t.sst"), Options(block_size=256))
    for i in range(0, len(entries), 70):
        chunk = entries[i : i + 70]
        if i % 140:
            assert writer.add_many(chunk) is None
        else:
            for entry in chunk:
                writer.add(*entry)
        assert writer.num_entries == min(i + 70, len(entries))
    with pytest.raises(ValueError):
        writer.add_many([entries[0]])  # out of order after the pending ones
    with pytest.raises(ValueError):
        writer.add(*entries[-1])
    props = writer.finish()
    assert props.num_entries == len(entries)
    reader = TableReader(str(tmp_path / "t.sst"), 1, BlockCache(0))
    assert list(reader.iter()) == entries and reader.check() == len(entries)
    reader.close()


def test_writer_file_size_and_mode(tmp_path: Path) -> None:
    """Stored raw, the size only grows (compressed, a block shrinks below its raw estimate once cut:
    test_compression.py)."""
    path = tmp_path / "t.sst"
    writer = TableWriter(str(path), Options(compression="none"), mode=0o600)
    sizes = []
    for i in range(5000):
        writer.add(b"%06d" % i, -1, b"x" * 50)
        sizes.append(writer.file_size)
    assert sizes == sorted(sizes) and sizes[0] > 0
    assert sizes[-1] >= 5000 * 50
    props = writer.finish()
    assert writer.file_size == props.file_size == path.stat().st_size >= sizes[-1]
    assert path.stat().st_mode & 0o777 == 0o600 & ~_umask()
    with pytest.raises(error):
        writer.add(b"zzz", -1, b"x")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_lookups_count_and_share_the_cache(tmp_path: Path) -> None:
    write_table(tmp_path / "a.sst", [(b"k%03d" % i, -1, b"a") for i in range(100)])
    write_table(tmp_path / "b.sst", [(b"k%03d" % i, -1, b"b") for i in range(100)])
    cache = BlockCache(1 << 20)
    a = TableReader(str(tmp_path / "a.sst"), 1, cache)
    b = TableReader(str(tmp_path / "b.sst"), 2, cache)
    h = key_hashes(b"k005")
    assert a.get(b"k005", h, LATEST)[2] == b"a" and b.get(b"k005", h, LATEST)[2] == b"b"
    assert (cache.hits, cache.misses) == (0, 2)
    assert len(cache) == 2  # each table's points (what Version's lookup asks first)
    # `get` itself reads blocks, not points (they keep no sequence numbers): a block already gathered is
    # read again and then cached as its bytes too, for the readers the points cannot answer.
    assert a.get(b"k005", h, LATEST)[2] == b"a"
    assert (cache.hits, cache.misses) == (0, 3) and len(cache) == 3
    assert a.get(b"k005", h, LATEST)[2] == b"a"
    assert (cache.hits, cache.misses) == (1, 3)
    assert a.bloom_checks == 3
    cache.evict_table(1)
    assert len(cache) == 1


def test_iteration_is_lazy(tmp_path: Path) -> None:
    entries = [(b"%06d" % i, -1, b"v" * 100) for i in range(3000)]
    props = write_table(tmp_path / "t.sst", entries)
    cache = BlockCache(1 << 24)
    reader = TableReader(str(tmp_path / "t.sst"), 1, cache)
    it = reader.iter(b"001000")
    assert next(it) == entries[1000]
    assert cache.misses == 1
    rest = list(it)
    assert rest == entries[1001:]
    assert cache.misses < props.num_data_blocks


def test_one_pass_iteration_leaves_the_cache_alone(tmp_path: Path) -> None:
    entries = [(b"%06d" % i, -1, b"v" * 100) for i in range(3000)]
    props = write_table(tmp_path / "t.sst", entries)
    cache = BlockCache(1 << 24)
    reader = TableReader(str(tmp_path / "t.sst"), 1, cache)
    assert reader.get(b"000007", key_hashes(b"000007"), LATEST) == entries[7]
    assert len(cache) == 1
    assert list(reader.iter(fill_cache=False)) == entries
    assert list(reader.iter(b"000100", reverse=True, fill_cache=False)) == entries[100:][::-1]
    assert len(cache) == 1  # the table's points still, no block added
    assert list(reader.iter()) == entries
    assert len(cache) == props.num_data_blocks + 1


def test_concurrent_readers_share_a_small_cache(big_table: tuple) -> None:
    path, entries, _ = big_table
    cache = BlockCache(64 * 1024)  # far smaller than the table: constant eviction
    reader = TableReader(str(path), 1, cache)
    keys = sorted({e[0] for e in entries})
    failures: list[object] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(400):
                key = rng.choice(keys)
                assert reader.get(key, key_hashes(key), LATEST) == model_get(entries, key, LATEST)
            start = rng.choice(keys)
            expected = entries[bisect_left(entries, (start,)) :][:500]
            assert list(itertools.islice(reader.iter(start), 500)) == expected
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert cache.charge <= 64 * 1024


# --- lifetime -----------------------------------------------------------------------------------------


def small_table(tmp_path: Path) -> tuple[Path, list[Entry]]:
    """Two data blocks, a large-value run, tombstones: every block kind in about 2 KiB."""
    entries = [(b"k%03d" % i, -(i + 1), None if i % 7 == 3 else b"value-%d" % i) for i in range(40)]
    entries.insert(10, (b"k009x", -100, bytes(range(256)) * 2))
    path = tmp_path / "000009.sst"
    props = write_table(path, entries, block_size=512, large_value_threshold=256)
    assert props.num_data_blocks >= 2
    return path, entries


def test_closed_reader_raises(tmp_path: Path) -> None:
    path, entries = small_table(tmp_path)
    reader = TableReader(str(path), 9, BlockCache(1 << 20))
    list(reader.iter())  # every block cached: closing must still stop the reader
    it = reader.iter()
    assert next(it) == entries[0]
    reader.close()
    reader.close()
    for call in (
        lambda: reader.get(b"k001", key_hashes(b"k001"), LATEST),
        lambda: reader.iter(),
        reader.check,
        lambda: list(it),
    ):
        with pytest.raises(error, match="closed"):
            call()


def test_unlinked_file_stays_readable_and_gc_closes_the_fd(tmp_path: Path) -> None:
    path, entries = small_table(tmp_path)
    reader = TableReader(str(path), 9, BlockCache(0))
    it = reader.iter()
    os.unlink(path)
    assert list(it) == entries
    fd = reader._fd
    os.fstat(fd)
    del reader, it
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_failed_open_closes_the_fd(tmp_path: Path) -> None:
    path = tmp_path / "junk.sst"
    path.write_bytes(b"\x00" * 500)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        with pytest.raises(CorruptionError):
            TableReader(str(path), 1, BlockCache(0))
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before


def test_missing_file_is_corruption(tmp_path: Path) -> None:
    with pytest.raises(CorruptionError, match="missing.sst"):
        TableReader(str(tmp_path / "missing.sst"), 1, BlockCache(0))


# --- corruption ---------------------------------------------------------------------------------------


def read_everything(path: Path, entries: list[Entry]) -> None:
    """Open and read all the table can give; raise CorruptionError or match ``entries`` exactly."""
    reader = TableReader(str(path), 9, BlockCache(0))
    try:
        assert list(reader.iter()) == entries
        assert list(reader.iter(b"k005", b"k030", reverse=True)) == model_range(entries, b"k005", b"k030")[::-1]
        for key in {e[0] for e in entries} | {b"absent", b"k0095"}:
            assert reader.get(key, key_hashes(key), LATEST) == model_get(entries, key, LATEST)
    finally:
        reader.close()


def test_every_flipped_byte_is_caught(tmp_path: Path) -> None:
    path, entries = small_table(tmp_path)
    original = path.read_bytes()
    for pos in range(len(original)):
        damaged = bytearray(original)
        damaged[pos] ^= 0x40
        path.write_bytes(damaged)
        try:
            read_everything(path, entries)  # whatever it reads is right ...
        except CorruptionError as exc:
            assert str(path) in str(exc)
            continue
        with pytest.raises(CorruptionError):  # ... and check() notices the damage
            TableReader(str(path), 9, BlockCache(0)).check()


def test_truncation_is_caught(tmp_path: Path) -> None:
    path, _ = small_table(tmp_path)
    original = path.read_bytes()
    for size in [0, 1, FOOTER_SIZE - 1, FOOTER_SIZE, len(original) // 2, len(original) - FOOTER_SIZE, len(original) - 1]:
        path.write_bytes(original[:size])
        with pytest.raises(CorruptionError):
            TableReader(str(path), 9, BlockCache(0))
    path.write_bytes(original + b"\x00")
    with pytest.raises(CorruptionError):
        TableReader(str(path), 9, BlockCache(0))


def _rewrite_footer(path: Path, version: int | None = None, magic: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    body = struct.Struct("<QIQIQIQIIQ")
    start = len(data) - FOOTER_SIZE
    fields = list(body.unpack_from(data, start))
    fields[8] = fields[8] if version is None else version
    fields[9] = fields[9] if magic is None else magic
    packed = body.pack(*fields)
    data[start:] = packed + struct.pack("<I", zlib.crc32(packed))
    path.write_bytes(data)


def test_bad_version_and_magic(tmp_path: Path) -> None:
    path, _ = small_table(tmp_path)
    original = path.read_bytes()
    _rewrite_footer(path, version=1)  # the format before restart-point slots
    with pytest.raises(CorruptionError, match="version"):
        TableReader(str(path), 9, BlockCache(0))
    path.write_bytes(original)
    _rewrite_footer(path, magic=MAGIC ^ 1)
    with pytest.raises(CorruptionError, match="magic"):
        TableReader(str(path), 9, BlockCache(0))


def test_check_finds_damage_that_open_does_not_read(tmp_path: Path) -> None:
    path, entries = small_table(tmp_path)
    data = bytearray(path.read_bytes())
    data[20] ^= 1  # inside the first data block
    path.write_bytes(data)
    reader = TableReader(str(path), 9, BlockCache(0))
    assert reader.get(b"k039", key_hashes(b"k039"), LATEST) == model_get(entries, b"k039", LATEST)
    with pytest.raises(CorruptionError):
        reader.check()
    with pytest.raises(CorruptionError):
        list(reader.iter())
