"""Compressed data blocks: both codecs round-trip, blocks that do not pay stay raw, mixed tables share a
cache, damage is CorruptionError, and format-3 tables (written before compression) still read."""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from pathlib import Path

import pytest

import byrondbm
from byrondbm.engine.verify import TableBlocks
from byrondbm.engine.sstable import BlockCache, TablePoints, TableProperties, TableReader, TableWriter, key_hashes
from byrondbm.engine.sstable.codec import CODEC_NONE, CODEC_SHIFT, CODEC_ZLIB, MAX_SKIP, BlockCompressor
from byrondbm.engine.sstable.format import BLOCK_DATA, FOOTER_SIZE, TRAILER_SIZE
from byrondbm.errors import CorruptionError
from byrondbm.options import Options

LATEST = -((1 << 62) - 1)
FIXTURE = Path(__file__).parent / "data" / "format3.sst"


def json_value(rng: random.Random, i: int) -> bytes:
    return json.dumps({"id": i, "name": f"user {i}", "email": f"user{i}@example.com", "score": rng.randint(0, 999)}).encode()


def entries_of(values: list[bytes]) -> list[tuple[bytes, int, bytes | None]]:
    """One version a key (``user:%08d``), every 10th a tombstone."""
    return [(b"user:%08d" % i, -(i + 1), None if i % 10 == 7 else v) for i, v in enumerate(values)]


def write(path: Path, entries: list, **options: object) -> TableProperties:
    writer = TableWriter(str(path), Options(**options))  # type: ignore[arg-type]
    writer.add_many(entries)
    return writer.finish()


def block_types(path: Path) -> list[int]:
    """The trailer type byte of every data block of the table at ``path``."""
    reader = TableReader(str(path), 1, BlockCache(0))
    data = path.read_bytes()
    types = [data[offset + size] for offset, size in zip(reader._offsets, reader._sizes)]
    reader.close()
    return types


def assert_reads(path: Path, entries: list, cache: BlockCache, number: int = 1) -> None:
    """Every way of reading the table finds exactly ``entries`` (a lookup, each key's newest)."""
    reader = TableReader(str(path), number, cache)
    newest = {}
    for entry in entries:
        newest.setdefault(entry[0], entry)
    for key, entry in newest.items():
        assert reader.get(key, key_hashes(key), LATEST) == entry
    assert list(reader.iter()) == entries
    assert list(reader.iter(reverse=True)) == entries[::-1]
    assert reader.check() == len(entries)
    reader.close()


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    rng = random.Random(1)
    entries = entries_of([json_value(rng, i) for i in range(3000)])
    entries.append((b"z-large", -5000, json_value(rng, 0) * 100))  # a large value's run stays raw
    path = tmp_path / "t.sst"
    props = write(path, entries, compression=compression)
    for cache in (BlockCache(0), BlockCache(1 << 20)):
        assert_reads(path, entries, cache)
        assert_reads(path, entries, cache)  # the second time from the cache
    codec = CODEC_ZLIB if compression == "zlib" else CODEC_NONE
    assert set(block_types(path)) == {BLOCK_DATA | codec << CODEC_SHIFT}
    reader = TableReader(str(path), 1, BlockCache(0))
    assert reader.properties == props
    assert props.stored_data_bytes == sum(reader._sizes)
    reader.close()
    if compression == "zlib":
        assert props.stored_data_bytes < 0.4 * props.raw_data_bytes
    else:
        assert props.stored_data_bytes == props.raw_data_bytes


def test_incompressible_blocks_stay_raw(tmp_path: Path) -> None:
    rng = random.Random(2)
    entries = entries_of([rng.randbytes(100) for _ in range(2000)])
    props = write(tmp_path / "z.sst", entries)
    write(tmp_path / "n.sst", entries, compression="none")
    assert set(block_types(tmp_path / "z.sst")) == {BLOCK_DATA}
    assert (tmp_path / "z.sst").read_bytes() == (tmp_path / "n.sst").read_bytes()
    assert props.stored_data_bytes == props.raw_data_bytes
    assert_reads(tmp_path / "z.sst", entries, BlockCache(1 << 20))


def test_a_table_mixes_raw_and_compressed_blocks(tmp_path: Path) -> None:
    rng = random.Random(3)
    values = [rng.randbytes(100) for _ in range(1000)] + [json_value(rng, i) for i in range(1000)]
    entries = entries_of(values)
    path = tmp_path / "t.sst"
    write(path, entries)
    types = block_types(path)
    assert types[0] == BLOCK_DATA and types[-1] == BLOCK_DATA | CODEC_ZLIB << CODEC_SHIFT
    assert_reads(path, entries, BlockCache(1 << 20))


def test_compressor_pauses_after_a_failed_try_and_resumes() -> None:
    """After blocks that do not compress, the untried pause grows to at most MAX_SKIP blocks, and the first
    compressible block after it ends the pause."""
    rng = random.Random(4)
    compress = BlockCompressor("zlib")
    codecs = [compress(rng.randbytes(4096))[1] for _ in range(300)]
    assert codecs == [CODEC_NONE] * 300
    text = b"the same words again and again " * 130
    resumed = [compress(text)[1] for _ in range(MAX_SKIP + 2)]
    assert CODEC_ZLIB in resumed and resumed[-1] == CODEC_ZLIB
    packed, codec = compress(text)
    assert codec == CODEC_ZLIB and zlib.decompress(packed) == text
    # The 1/8 rule: half random bytes, half zeros saves ~half and is compressed; 95 % random bytes save
    # ~4 % and stay raw.
    assert BlockCompressor("zlib")(rng.randbytes(2048) + bytes(2048))[1] == CODEC_ZLIB
    assert BlockCompressor("zlib")(rng.randbytes(3900) + bytes(196))[1] == CODEC_NONE
    assert BlockCompressor("none")(text) == (text, CODEC_NONE)


def test_mixed_tables_share_one_cache(tmp_path: Path) -> None:
    rng = random.Random(5)
    cache = BlockCache(1 << 20)
    tables = []
    for number, compression in enumerate(["zlib", "none", "zlib"], start=1):
        entries = entries_of([json_value(rng, i) + b"%d" % number for i in range(500)])
        write(tmp_path / f"{number}.sst", entries, compression=compression)
        tables.append((TableReader(str(tmp_path / f"{number}.sst"), number, cache), entries))
    for _ in range(2):  # the second round reads what the first cached
        for i in range(0, 500, 7):
            for reader, entries in tables:
                key = entries[i][0]
                assert reader.get(key, key_hashes(key), LATEST) == entries[i]
    for reader, entries in tables:
        assert list(reader.iter()) == entries
    # Cached blocks are held uncompressed: a lookup's block (with room in the cache) is gathered as values.
    reader, entries = tables[0]
    key = entries[0][0]
    cache.evict_table(1)
    reader.get(key, key_hashes(key), LATEST)
    held = cache.get(reader.point_parts()[0])
    assert isinstance(held, TablePoints) and sum(len(v or b"") for v in held.values()) > reader._sizes[0]
    assert all(held[k] == v for k, _, v in entries if k in held) and key in held
    for reader, _ in tables:
        reader.close()


def _rewrite_block(path: Path, b: int, contents: bytes | None = None, block_type: int | None = None, flip: int | None = None) -> None:
    """Replace data block ``b``'s stored contents and/or type byte (same length), with a valid CRC unless
    ``flip`` names a byte to damage after the CRC is made."""
    reader = TableReader(str(path), 1, BlockCache(0))
    offset, size = reader._offsets[b], reader._sizes[b]
    reader.close()
    data = bytearray(path.read_bytes())
    old = bytes(data[offset : offset + size])
    contents = old if contents is None else contents
    assert len(contents) == size
    block_type = data[offset + size] if block_type is None else block_type
    block = contents + bytes((block_type,))
    data[offset : offset + size + TRAILER_SIZE] = block + struct.pack("<I", zlib.crc32(block))
    if flip is not None:
        data[offset + flip] ^= 0x40
    path.write_bytes(bytes(data))


def _fails_every_read(path: Path, entries: list, match: str) -> None:
    """Reading block 0 raises CorruptionError naming the file, by lookup, iteration and check."""
    key = entries[0][0]
    for reader in (TableReader(str(path), 1, BlockCache(1 << 20)), TableReader(str(path), 2, BlockCache(0))):
        with pytest.raises(CorruptionError, match=match) as info:
            reader.get(key, key_hashes(key), LATEST)
        assert str(path) in str(info.value)
        with pytest.raises(CorruptionError, match=match):
            list(reader.iter())
        with pytest.raises(CorruptionError, match=match):
            reader.check()
        reader.close()


@pytest.fixture
def compressed(tmp_path: Path) -> tuple[Path, list]:
    rng = random.Random(6)
    entries = entries_of([json_value(rng, i) for i in range(400)])
    path = tmp_path / "t.sst"
    write(path, entries)
    assert block_types(path)[0] == BLOCK_DATA | CODEC_ZLIB << CODEC_SHIFT
    return path, entries


def test_damaged_compressed_block_fails_its_checksum(compressed: tuple[Path, list]) -> None:
    path, entries = compressed
    _rewrite_block(path, 0, flip=20)
    _fails_every_read(path, entries, "checksum")


def test_compressed_block_that_does_not_decompress_is_corruption(compressed: tuple[Path, list]) -> None:
    """Damage the checksum does not catch (the CRC made over the damage) is still CorruptionError, never
    a zlib.error or wrong data: garbage, a cut stream, and a flipped bit the adler32 catches."""
    path, entries = compressed
    reader = TableReader(str(path), 1, BlockCache(0))
    size = reader._sizes[0]
    reader.close()
    good = path.read_bytes()
    stream = good[reader._offsets[0] : reader._offsets[0] + size]
    for contents in (
        bytes(size),
        random.Random(7).randbytes(size),
        stream[: size // 2] + bytes(size - size // 2),
        stream[:-1] + bytes((stream[-1] ^ 1,)),
    ):
        path.write_bytes(good)
        _rewrite_block(path, 0, contents=contents)
        _fails_every_read(path, entries, "decompress")


def test_unknown_codec_is_corruption(compressed: tuple[Path, list]) -> None:
    path, entries = compressed
    _rewrite_block(path, 0, block_type=BLOCK_DATA | 2 << CODEC_SHIFT)
    _fails_every_read(path, entries, "unknown compression codec 2")


def test_format3_table_still_reads() -> None:
    """tests/data/format3.sst was written by the code before compression (format 3): 200 keys, some with
    a tombstone over a value, a large value, 512-byte blocks."""
    entries = []
    for i in range(200):
        key = b"user:%08d" % i
        if i % 17 == 0:
            entries.append((key, -(1000 + i), None))
        entries.append((key, -(i + 1), b'{"id": %d, "name": "user %d", "active": true}' % (i, i)))
    entries.append((b"zz-large", -500, bytes(range(256)) * 20))
    data = FIXTURE.read_bytes()
    assert struct.unpack_from("<I", data, len(data) - FOOTER_SIZE + 48)[0] == 3  # the footer's version
    assert_reads(FIXTURE, entries, BlockCache(1 << 20))
    reader = TableReader(str(FIXTURE), 1, BlockCache(0))
    props = reader.properties
    assert props.num_entries == len(entries) and props.num_data_blocks == 29
    assert props.raw_data_bytes == props.stored_data_bytes == sum(reader._sizes)
    reader.close()


def test_writer_file_size_counts_blocks_as_stored(tmp_path: Path) -> None:
    """Before `finish` the unfinished block counts raw, the finished ones as stored; at the end the file."""
    rng = random.Random(8)
    writer = TableWriter(str(tmp_path / "t.sst"), Options())
    raw = 0
    for key, negseq, value in entries_of([json_value(rng, i) for i in range(3000)]):
        writer.add(key, negseq, value)
        raw += len(key) + len(value or b"")
    assert writer.file_size < 0.4 * raw
    props = writer.finish()
    assert writer.file_size == props.file_size == os.path.getsize(tmp_path / "t.sst")


def test_option_is_validated() -> None:
    assert Options().compression == "zlib"
    with pytest.raises(ValueError, match="'compression'"):
        Options.from_kwargs(compression="snappy")
    with pytest.raises(TypeError, match="'compression'"):
        Options.from_kwargs(compression=1)


def test_database_reads_tables_of_either_codec(tmp_path: Path) -> None:
    """A database written with one codec, then more with the other, reads everything back after a full
    compaction rewrites it all with the second."""
    path = tmp_path / "db"
    rng = random.Random(9)
    expected = {}
    for compression in ("none", "zlib"):
        with byrondbm.open(path, "c", compression=compression, memtable_size=32 << 10, background_compaction=False) as db:
            for i in range(1500):
                key = b"%s:%06d" % (compression.encode(), i)
                db[key] = expected[key] = json_value(rng, i)
            assert dict(db.items()) == expected
    with byrondbm.open(path, "w", compression="zlib", background_compaction=False) as db:
        db.compact()
        assert dict(db.items()) == expected


def test_repair_salvages_compressed_blocks(compressed: tuple[Path, list]) -> None:
    """With the footer gone, repair walks the file and still finds and decompresses every block."""
    path, entries = compressed
    data = path.read_bytes()
    path.write_bytes(data[:-FOOTER_SIZE] + bytes(FOOTER_SIZE))
    table = TableBlocks(str(path))
    assert list(table.entries()) == entries
    assert table.counts == {"table_blocks": 0, "large_values": 0, "tables_unreadable": 1}


def test_stats_report_stored_and_uncompressed_data_bytes(tmp_path: Path) -> None:
    records = {b"user:%06d" % i: json.dumps({"id": i, "name": "user %d" % i, "tags": ["a", "b"]}).encode()
               for i in range(3000)}
    for compression, shrinks in (("zlib", True), ("none", False)):
        with byrondbm.open(tmp_path / compression, "c", compression=compression) as db:
            db.update(records)
            db.compact()
            stats = db.stats()
        raw, stored = stats["data_bytes_uncompressed"], stats["data_bytes_stored"]
        assert raw > sum(len(k) + len(v) for k, v in records.items())
        assert (stored < 0.5 * raw) if shrinks else (stored == raw)
