"""Data block and index block encoding: round trips on edge keys, restart points, and damage detection."""

from __future__ import annotations

import struct
from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byrondbm.engine.records import encode_varint
from byrondbm.engine.sstable.block import (
    KIND_LARGE,
    KIND_TOMBSTONE,
    KIND_VALUE,
    LARGE_REF,
    NEXT_BLOCK,
    RESTART_INTERVAL,
    LargeValue,
    decode_block,
    decode_index,
    encode_index,
    find_in_block,
    restart_offsets,
)
from byrondbm.engine.sstable.cache import BlockCache
from byrondbm.engine.sstable.format import BLOCK_DATA, read_block
from byrondbm.engine.sstable.reader import TableReader
from byrondbm.engine.sstable.writer import TableWriter
from byrondbm.errors import CorruptionError
from byrondbm.options import Options


def build(entries: list[tuple[bytes, int, object]]) -> bytes:
    """Encode (key, negseq, value | None | LargeValue) entries as the layout says, plainly (the oracle the
    writer's fast loop is checked against in test_writer_blocks_match_the_layout)."""
    parts, restarts, prev = [], [], b""
    for i, (key, negseq, value) in enumerate(entries):
        if i % RESTART_INTERVAL:
            shared = next((j for j, (x, y) in enumerate(zip(prev, key)) if x != y), min(len(prev), len(key)))
        else:
            shared = 0
            restarts.append(sum(map(len, parts)))
        if value is None:
            kind, field = KIND_TOMBSTONE, b""
        elif isinstance(value, LargeValue):
            kind, field = KIND_LARGE, LARGE_REF.pack(*value)
        else:
            kind, field = KIND_VALUE, value
        header = encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(field))
        parts += [header, key[shared:], struct.pack("<Q", -negseq << 2 | kind), field]
        prev = key
    return b"".join(parts) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))


def roundtrip(entries: list) -> tuple[list, bool]:
    contents = build(entries)
    return decode_block(contents + b"\x01\x00\x00\x00\x00", len(contents), "blk")


EDGE_KEYS = sorted(
    [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"\x7f" * 200,
        b"\x80",
        b"\xff" * 100,
        b"\xff" * 101,
        b"prefix" * 40 + b"a",
        b"prefix" * 40 + b"b",
        b"prefix" * 40 + b"b\x00",
    ]
)


def test_edge_keys_roundtrip() -> None:
    entries = [(k, -(i + 1), k[::-1]) for i, k in enumerate(EDGE_KEYS)]
    decoded, has_large = roundtrip(entries)
    assert decoded == entries
    assert not has_large


@pytest.mark.parametrize("count", [1, 15, 16, 17, 31, 32, 33])
def test_restart_boundaries(count: int) -> None:
    # Long shared prefixes make every non-restart entry delta-encoded.
    entries = [(b"common-prefix-" * 10 + b"%05d" % i, -7, b"v%d" % i) for i in range(count)]
    contents = build(entries)
    raw = contents + b"\x01\x00\x00\x00\x00"
    assert decode_block(raw, len(contents), "blk")[0] == entries
    restarts = restart_offsets(raw, len(contents))
    assert len(restarts) == (count + RESTART_INTERVAL - 1) // RESTART_INTERVAL
    assert restarts[0] == 0
    # A restart entry starts with shared = 0 and the full key.
    for r in restarts:
        assert contents[r] == 0


def test_versions_tombstones_and_large_refs() -> None:
    entries = [
        (b"a", -9, b"new"),
        (b"a", -5, None),
        (b"a", -1, b"old"),
        (b"b", -8, LargeValue(12345, 1 << 26)),
        (b"b", -2, b""),
        (b"c", -3, None),
    ]
    decoded, has_large = roundtrip(entries)
    assert decoded == entries
    assert has_large


def test_varint_lengths_over_127() -> None:
    entries = [(b"k" * 300, -1, b"v" * 200), (b"k" * 300 + b"x" * 150, -(1 << 61), b"w" * 20000)]
    assert roundtrip(entries)[0] == entries


@pytest.mark.parametrize("value_len", [127, 128, 300, 16383, 16384, 70000])
def test_value_length_varints(value_len: int) -> None:
    entries = [(b"a", -2, b"x" * value_len), (b"ab", -1, b"y" * value_len), (b"b" * 130, -3, b"z" * value_len)]
    assert roundtrip(entries)[0] == entries
    header = bytes((0, 1)) + encode_varint(value_len)  # the canonical LEB128 encoding, whatever the path
    assert build(entries).startswith(header + b"a")


def test_empty_key_versions_and_empty_value() -> None:
    entries = [(b"", -3, b""), (b"", -2, None), (b"", -1, b"x"), (b"\x00", -4, b"")]
    assert roundtrip(entries)[0] == entries


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=40), st.integers(0, (1 << 62) - 1), st.one_of(st.none(), st.binary(max_size=300))),
        min_size=1,
        max_size=80,
        unique_by=lambda e: (e[0], e[1]),
    )
)
def test_random_blocks_roundtrip(raw_entries: list) -> None:
    entries = sorted((k, -s, v) for k, s, v in raw_entries)
    assert roundtrip(entries)[0] == entries


def writer_blocks(path: Path, entries: list, block_size: int = 4096) -> list[bytes]:
    """The contents of the data blocks a TableWriter makes of ``entries``."""
    writer = TableWriter(str(path), Options(block_size=block_size, large_value_threshold=1 << 20))
    for entry in entries:
        writer.add(*entry)
    props = writer.finish()
    reader = TableReader(str(path), 1, BlockCache(0))
    blocks = [read_block(reader._fd, offset, size, BLOCK_DATA, "t.sst")[:size] for offset, size in zip(reader._offsets, reader._sizes)]
    reader.close()
    assert len(blocks) == props.num_data_blocks
    return blocks


def test_writer_shared_prefix_matches_naive(tmp_path: Path) -> None:
    cases = [(b"", b"a"), (b"abc", b"abd"), (b"abc", b"abcd"), (b"\xff" * 9, b"\xff" * 8 + b"\xff\x00"), (b"ab", b"b")]
    for i, (a, b) in enumerate(cases):
        naive = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        (contents,) = writer_blocks(tmp_path / f"{i}.sst", [(a, -1, b""), (b, -1, b"")])
        assert contents[3 + len(a) + 8] == naive  # the second entry's header starts with its shared length


def model_find(entries: list, key: bytes, read_negseq: int) -> object:
    """What `find_in_block` must answer, from the decoded entries."""
    i = bisect_left(entries, (key, read_negseq))
    if i == len(entries):
        return NEXT_BLOCK if entries[-1][0] == key else None
    return entries[i] if entries[i][0] == key else None


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"", b"a", b"ab", b"abc", b"abd", b"b", b"\xff" * 130, b"\xff" * 131]) | st.binary(max_size=4),
            st.integers(1, 40),
            st.one_of(st.none(), st.binary(max_size=200), st.builds(LargeValue, st.integers(0, 1 << 40), st.integers(0, 1 << 30))),
        ),
        min_size=1,
        max_size=60,
        unique_by=lambda e: (e[0], e[1]),
    ),
    st.binary(max_size=4),
)
def test_partial_decode_agrees_with_full_decode(raw_entries: list, other: bytes) -> None:
    """From any restart point at or before a key's first entry, and from a binary search of the restart
    points, a point lookup answers what the fully decoded block says, versions and tombstones included;
    a seek's partial decode holds every entry from the key on."""
    entries = sorted((k, -s, v) for k, s, v in raw_entries)
    contents = build(entries)
    raw = contents + b"\x01\x00\x00\x00\x00"
    assert decode_block(raw, len(contents), "blk")[0] == entries
    keys = [e[0] for e in entries]
    for key in {*keys, other}:
        part = decode_block(raw, len(contents), "blk", key)[0]  # what a seek decodes
        assert part == entries[len(entries) - len(part) :]
        assert bisect_left(entries, (key,)) >= len(entries) - len(part)
        first = bisect_left(keys, key)
        for read_negseq in (-100, -20, -1, 0):
            expected = model_find(entries, key, read_negseq)
            assert find_in_block(raw, len(contents), key, read_negseq, -1, "blk") == expected
            for restart in range(first // RESTART_INTERVAL + 1 if first < len(keys) else 1):
                assert find_in_block(raw, len(contents), key, read_negseq, restart, "blk") == expected


def test_find_rejects_a_restart_point_past_the_block() -> None:
    contents = build([(b"a", -1, b"x")])
    with pytest.raises(CorruptionError, match="restart point 1"):
        find_in_block(contents + b"\x01\x00\x00\x00\x00", len(contents), b"a", -1, 1, "bad.sst")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=20), st.integers(0, (1 << 62) - 1), st.one_of(st.none(), st.binary(max_size=300))),
        min_size=1,
        max_size=120,
        unique_by=lambda e: (e[0], e[1]),
    ),
    st.sampled_from([256, 1024, 4096]),
)
def test_writer_blocks_match_the_layout(tmp_path_factory: pytest.TempPathFactory, raw_entries: list, block_size: int) -> None:
    """Every data block the writer's fast loop makes is byte for byte what the plain encoder makes of the
    same entries, and the blocks hold the entries in order."""
    entries = sorted((k, -s, v) for k, s, v in raw_entries)
    seen = 0
    for contents in writer_blocks(tmp_path_factory.mktemp("w") / "t.sst", entries, block_size):
        decoded = decode_block(contents + b"\x01\x00\x00\x00\x00", len(contents), "t.sst")[0]
        assert decoded == entries[seen : seen + len(decoded)]
        assert contents == build(decoded)
        seen += len(decoded)
    assert seen == len(entries)


def _damaged(contents: bytes, size: int | None = None) -> None:
    with pytest.raises(CorruptionError) as info:
        decode_block(contents + b"\x01\x00\x00\x00\x00", len(contents) if size is None else size, "bad.sst")
    assert "bad.sst" in str(info.value)


def test_decode_rejects_inconsistent_blocks() -> None:
    good = build([(b"apple", -2, b"red"), (b"apricot", -1, b"orange")])
    _damaged(good, 3)  # shorter than the restart count
    _damaged(good[:-4] + struct.pack("<I", 0))  # no restart point
    _damaged(good[:-4] + struct.pack("<I", 10_000))  # restart array larger than the block
    # Second entry claims more shared bytes than the first key has.
    second = good.index(b"ricot") - 3
    _damaged(good[:second] + bytes((50,)) + good[second + 1 :])
    # Value length running into the restart array.
    _damaged(good[:2] + bytes((120,)) + good[3:])
    # Unknown kind: rewrite the first tag.
    tag_at = 3 + len(b"apple")
    _damaged(good[:tag_at] + struct.pack("<Q", 2 << 2 | 3) + good[tag_at + 8 :])
    # A tombstone with a value.
    _damaged(good[:tag_at] + struct.pack("<Q", 2 << 2 | KIND_TOMBSTONE) + good[tag_at + 8 :])
    # Truncated in the middle of an entry (restart trailer moved up).
    _damaged(good[:10] + struct.pack("<II", 0, 1))


def test_index_roundtrip() -> None:
    keys = [b"", b"a", b"a", b"\xff" * 300]
    offsets = [0, 4096, 1 << 40, (1 << 64) - 1]
    sizes = [1, 2, 3, (1 << 32) - 1]
    contents = encode_index(keys, offsets, sizes)
    assert decode_index(contents, len(contents), "idx") == (keys, offsets, sizes)


def test_index_rejects_bad_lengths() -> None:
    contents = encode_index([b"abc", b"abd"], [0, 10], [5, 5])
    for bad in (contents[:-1], contents + b"x", struct.pack("<I", 1 << 30) + contents[4:], contents[:6]):
        with pytest.raises(CorruptionError):
            decode_index(bad, len(bad), "idx")
