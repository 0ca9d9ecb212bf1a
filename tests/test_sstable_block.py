"""Data block and index block encoding: round trips on edge keys, the column layout, point lookups from
any hint, and damage detection."""

from __future__ import annotations

import struct
from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byrondbm.engine.sstable.block import (
    KIND_LARGE,
    KIND_TOMBSTONE,
    KIND_VALUE,
    LARGE_REF,
    NEXT_BLOCK,
    LargeValue,
    decode_block,
    decode_index,
    encode_block,
    encode_index,
    encoded_size,
    find_in_block,
)
from byrondbm.engine.sstable.cache import BlockCache
from byrondbm.engine.sstable.codec import read_data_block
from byrondbm.engine.sstable.format import TRAILER_SIZE
from byrondbm.engine.sstable.reader import TableReader
from byrondbm.engine.sstable.writer import TableWriter
from byrondbm.errors import CorruptionError
from byrondbm.options import Options

TRAILER = b"\x01\x00\x00\x00\x00"  # a block as the reader holds it: contents, then its 5-byte trailer


def build(entries: list[tuple[bytes, int, object]]) -> bytes:
    """Encode (key, negseq, value | None | LargeValue) entries as the layout says, plainly, one entry at a
    time (the oracle `encode_block` and the writer are checked against)."""
    fields, kinds, seqs = [], [], []
    for _key, negseq, value in entries:
        if value is None:
            kind, field = KIND_TOMBSTONE, b""
        elif isinstance(value, LargeValue):
            kind, field = KIND_LARGE, LARGE_REF.pack(*value)
        else:
            kind, field = KIND_VALUE, value
        fields.append(field)
        kinds.append(kind)
        seqs.append(-negseq)
    key_ends, pos = [], 0
    for key, _, _ in entries:
        pos += len(key)
        key_ends.append(pos)
    value_ends = []
    for field in fields:
        pos += len(field)
        value_ends.append(pos)
    width, code = (2, "H") if pos < 1 << 16 else (4, "I")
    out = b"".join(e[0] for e in entries) + b"".join(fields)
    for end in key_ends + value_ends:
        out += struct.pack("<" + code, end)
    for seq in seqs:
        out += struct.pack("<Q", seq)
    return out + bytes(kinds) + struct.pack("<I", len(entries)) + bytes((width,))


def roundtrip(entries: list) -> tuple[list, bool]:
    contents = build(entries)
    return decode_block(contents + TRAILER, len(contents), "blk")


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


@pytest.mark.parametrize("value_len", [0, 1, 65_000, 65_535, 65_536, 70_000])
def test_offset_width_switches_at_64_kib(value_len: int) -> None:
    entries = [(b"a", -2, b"x" * value_len), (b"ab", -(1 << 61), b"")]
    contents = build(entries)
    assert contents[-1] == (2 if value_len + 3 < 1 << 16 else 4)
    assert roundtrip(entries)[0] == entries
    assert len(contents) == encoded_size([e[0] for e in entries], [e[2] for e in entries])


def test_empty_key_versions_and_empty_value() -> None:
    entries = [(b"", -3, b""), (b"", -2, None), (b"", -1, b"x"), (b"\x00", -4, b"")]
    assert roundtrip(entries)[0] == entries
    only_empty = [(b"", -1, None)]  # no key or value bytes at all: the columns start at offset 0
    assert roundtrip(only_empty)[0] == only_empty


entry_lists = st.lists(
    st.tuples(
        st.binary(max_size=40),
        st.integers(0, (1 << 62) - 1),
        st.one_of(st.none(), st.binary(max_size=300), st.builds(LargeValue, st.integers(0, 1 << 40), st.integers(0, 1 << 30))),
    ),
    min_size=1,
    max_size=80,
    unique_by=lambda e: (e[0], e[1]),
)


@settings(max_examples=60, deadline=None)
@given(entry_lists)
def test_random_blocks_roundtrip_and_encode_block_matches_the_oracle(raw_entries: list) -> None:
    entries = sorted((k, -s, v) for k, s, v in raw_entries)
    assert roundtrip(entries)[0] == entries
    kinds = bytearray(KIND_TOMBSTONE if v is None else KIND_LARGE if isinstance(v, LargeValue) else KIND_VALUE for _, _, v in entries)
    values = [b"" if v is None else LARGE_REF.pack(*v) if isinstance(v, LargeValue) else v for _, _, v in entries]
    keys = [e[0] for e in entries]
    contents = encode_block(keys, values, [-e[1] for e in entries], kinds)
    assert contents == build(entries)
    assert encoded_size(keys, values) == len(contents)


def writer_blocks(path: Path, entries: list, block_size: int = 4096) -> list[bytes]:
    """The contents of the data blocks a TableWriter makes of ``entries``."""
    writer = TableWriter(str(path), Options(block_size=block_size, large_value_threshold=1 << 20))
    for entry in entries:
        writer.add(*entry)
    props = writer.finish()
    reader = TableReader(str(path), 1, BlockCache(0))
    blocks = [read_data_block(reader._fd, offset, size, "t.sst")[:-TRAILER_SIZE] for offset, size in zip(reader._offsets, reader._sizes)]
    reader.close()
    assert len(blocks) == props.num_data_blocks
    return blocks


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
def test_point_lookup_agrees_with_full_decode_from_any_hint(raw_entries: list, other: bytes) -> None:
    """With the right hint, a wrong one (any other entry, even a later version of the same key), none, or
    one past the block, a point lookup answers what the fully decoded block says, versions and tombstones
    included."""
    entries = sorted((k, -s, v) for k, s, v in raw_entries)
    contents = build(entries)
    raw = contents + TRAILER
    assert decode_block(raw, len(contents), "blk")[0] == entries
    for key in {*(e[0] for e in entries), other}:
        for read_negseq in (-100, -20, -1, 0):
            expected = model_find(entries, key, read_negseq)
            for hint in range(-1, len(entries) + 2):
                assert find_in_block(raw, len(contents), key, read_negseq, hint, "blk") == expected


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
        decoded = decode_block(contents + TRAILER, len(contents), "t.sst")[0]
        assert decoded == entries[seen : seen + len(decoded)]
        assert contents == build(decoded)
        seen += len(decoded)
    assert seen == len(entries)


def _damaged(contents: bytes, size: int | None = None, lookup: bool = True) -> None:
    """Both a full decode and a point lookup of the first key raise CorruptionError naming the file."""
    size = len(contents) if size is None else size
    with pytest.raises(CorruptionError) as info:
        decode_block(contents + TRAILER, size, "bad.sst")
    assert "bad.sst" in str(info.value)
    if lookup:
        with pytest.raises(CorruptionError):
            find_in_block(contents + TRAILER, size, b"apple", -2, 0, "bad.sst")


@pytest.mark.parametrize("value_width", [0, 1, 16, 100, 3000])
def test_blocks_of_one_key_length_and_one_value_length_decode_as_any_other(value_width: int) -> None:
    """Keys of one length and values of another are cut by one `struct` unpack after a compare of the
    offsets; values as long as a large reference, empty (tombstones) or past 64 KiB in all (4-byte
    offsets) included, and a block one byte off that shape takes the general path."""
    n = 40
    value = (lambda i: None) if value_width == 0 else (lambda i: bytes([i]) * value_width)
    entries = [(b"key%05d" % i, -(i + 1), value(i)) for i in range(n)]
    if value_width == 16:
        entries[3] = (entries[3][0], entries[3][1], LargeValue(7, 1 << 20))
    assert decode_block(build(entries) + TRAILER, len(build(entries)), "t.sst") == (entries, value_width == 16)
    ragged = entries[:-1] + [(b"key%05dx" % n, -(n + 1), value(n))]
    assert decode_block(build(ragged) + TRAILER, len(build(ragged)), "t.sst")[0] == ragged


def test_decode_rejects_inconsistent_blocks() -> None:
    entries = [(b"apple", -2, b"red"), (b"apricot", -1, b"orange")]
    good = build(entries)
    n_at = len(good) - 5
    columns = len(b"appleapricotredorange")
    _damaged(good, 3)  # shorter than its entry count
    _damaged(good[:n_at] + struct.pack("<IB", 0, 2))  # no entries
    _damaged(good[:n_at] + struct.pack("<IB", 10_000, 2))  # columns larger than the block
    _damaged(good[:n_at] + struct.pack("<IB", 2, 3))  # unknown offset width
    # A value end past the columns (the apple's value would run into them).
    _damaged(good[: columns + 4] + struct.pack("<H", columns + 40) + good[columns + 6 :])
    # Key ends out of order.
    _damaged(good[:columns] + struct.pack("<HH", 12, 5) + good[columns + 4 :], lookup=False)
    kinds_at = n_at - 2
    _damaged(good[:kinds_at] + bytes((3, 1)) + good[kinds_at + 2 :])  # unknown kind
    _damaged(good[:kinds_at] + bytes((KIND_TOMBSTONE, 1)) + good[kinds_at + 2 :])  # a tombstone with a value
    _damaged(good[:kinds_at] + bytes((KIND_LARGE, 1)) + good[kinds_at + 2 :])  # a 3-byte large reference


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
