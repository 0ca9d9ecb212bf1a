"""The file layout of a sorted table: block framing, footer, properties, and checked reads.

Byte layout of a table file (all integers little-endian)::

    [large-value run]* [data block]   ... repeated, in key order   (the "data area", data_size bytes)
    filter block                       bloom filter over the distinct keys        (see bloom.py)
    hash index block                   hash of key -> data block, entry           (see hash_index.py)
    index block                        last key of each data block -> handle      (see block.py)
    properties block                   the TableProperties fields                 (below)
    footer                             FOOTER_SIZE = 64 bytes                     (below)

Every block, whatever its kind, is its contents followed by a 5-byte trailer::

    contents | type: u8 | crc: u32      crc = zlib.crc32(contents + type byte)
    type = kind (low 4 bits: the BLOCK_* numbers below) | codec << 4

The codec (codec.py) is 0, contents stored as they are, for every block but compressed data blocks.

A *handle* ``(offset: u64, size: u32)`` locates a block: ``size`` counts the contents only, so the block
occupies ``[offset, offset + size + 5)``. The filter, hash index, index and properties blocks follow each
other with no gap, and the properties block ends where the footer starts; a reader checks this tiling.

A large value (longer than ``Options.large_value_threshold``) is written, just before the data block that
refers to it, as a run of chunk blocks (type CHUNK) of at most CHUNK_SIZE bytes of contents each; its data
entry holds ``(run offset: u64, value length: u64)``. The run occupies ``length + 5 * ceil(length / CHUNK_SIZE)``
bytes.

Properties block contents (format 3 has neither raw_data_bytes nor stored_data_bytes)::

    num_entries u64 | num_deletions u64 | min_seq u64 | max_seq u64 | file_size u64 | data_size u64 |
    num_data_blocks u64 | raw_data_bytes u64 | stored_data_bytes u64 |
    smallest_len u32 | smallest_key | largest_len u32 | largest_key

Footer (64 bytes)::

    index handle (u64, u32) | filter handle (u64, u32) | hash index handle (u64, u32) |
    properties handle (u64, u32) | format version u32 (4; 3 is read) | magic u64 |
    crc32 of the preceding 60 bytes u32
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

from ...errors import CorruptionError

FORMAT_VERSION = 4
"""4: data blocks may be compressed, the properties count their bytes raw and stored (3: data blocks
stored as columns, the hash index names entries; 2: delta-encoded rows with restart points every 4, the
hash index named restart points; 1: it named blocks, restarts every 16)."""
READABLE_VERSIONS = (3, 4)
MAGIC = int.from_bytes(b"BYRONSST", "little")

BLOCK_DATA = 1
BLOCK_CHUNK = 2
BLOCK_FILTER = 3
BLOCK_HASH_INDEX = 4
BLOCK_INDEX = 5
BLOCK_PROPERTIES = 6

TRAILER_SIZE = 5
CHUNK_SIZE = 256 * 1024
MAX_BLOCK_SIZE = (1 << 32) - 1
MAX_STORED_SEQ = (1 << 62) - 1
"""The largest sequence number a table accepts. The u64 column could hold more; the limit is the one
formats 1 and 2 had (they packed ``seq << 2 | kind`` in 8 bytes), kept so every table reads alike."""

TRAILER = struct.Struct("<BI")
_U32 = struct.Struct("<I")
_FOOTER_BODY = struct.Struct("<QIQIQIQIIQ")
FOOTER_SIZE = _FOOTER_BODY.size + 4
_PROPS_FIXED = struct.Struct("<9Q")
_PROPS_FIXED_3 = struct.Struct("<7Q")


class Handle(NamedTuple):
    offset: int
    size: int
    """Bytes of contents, the 5-byte trailer excluded."""

    @property
    def end(self) -> int:
        return self.offset + self.size + TRAILER_SIZE


class Footer(NamedTuple):
    index: Handle  # type: ignore[assignment]  # shadows tuple.index, harmlessly
    filter: Handle
    hash_index: Handle
    properties: Handle
    version: int = FORMAT_VERSION


@dataclass(frozen=True)
class TableProperties:
    """Summary of one table, stored in its properties block and kept in memory by its reader."""

    num_entries: int
    num_deletions: int
    smallest_key: bytes
    largest_key: bytes
    min_seq: int
    max_seq: int
    file_size: int
    """Total bytes of the file."""
    data_size: int
    """Bytes of data blocks and large-value runs (trailers included)."""
    num_data_blocks: int
    raw_data_bytes: int
    """Bytes of the data blocks' contents, uncompressed (trailers and large-value runs excluded)."""
    stored_data_bytes: int
    """Bytes of the data blocks' contents as stored on disk, compressed or not (trailers and large-value
    runs excluded); ``raw_data_bytes / stored_data_bytes`` is the compression ratio. A format-3 table
    has both equal to the sum of its data blocks' sizes."""


def block_trailer(contents: bytes | bytearray | memoryview, block_type: int) -> bytes:
    """The 5 bytes that follow ``contents`` on disk. Cost: one CRC pass over the contents."""
    return TRAILER.pack(block_type, zlib.crc32(bytes((block_type,)), zlib.crc32(contents)))


def run_size(length: int) -> int:
    """Bytes on disk of the chunk run holding a large value of ``length`` bytes."""
    return length + TRAILER_SIZE * (-(-length // CHUNK_SIZE))


def read_exact(fd: int, size: int, offset: int, path: str) -> bytes:
    """``size`` bytes at ``offset`` via ``os.pread`` (thread-safe); a short read is corruption (truncation)."""
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise CorruptionError(f"table truncated: wanted {size} bytes at offset {offset}, got {got}", path)
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def verify_trailer(raw: bytes, start: int, size: int, block_type: int, path: str) -> None:
    """Check the type byte and CRC of the block whose contents are ``raw[start:start + size]``."""
    end = start + size
    if len(raw) < end + TRAILER_SIZE:
        raise CorruptionError("block runs past the end of what was read", path)
    found_type, crc = TRAILER.unpack_from(raw, end)
    if found_type != block_type:
        raise CorruptionError(f"block at +{start} has type {found_type}, expected {block_type}", path)
    if zlib.crc32(memoryview(raw)[start : end + 1]) != crc:
        raise CorruptionError(f"block checksum mismatch (type {block_type})", path)


def read_block(fd: int, offset: int, size: int, block_type: int, path: str) -> bytes:
    """Read and verify the block with contents ``[offset, offset + size)``; returns its contents *followed
    by the trailer* (callers stop at ``size``), which saves a copy on the hot path. The caller has checked
    that the block lies inside the file."""
    raw = read_exact(fd, size + TRAILER_SIZE, offset, path)
    verify_trailer(raw, 0, size, block_type, path)
    return raw


def read_run(fd: int, offset: int, length: int, data_end: int, path: str) -> bytes:
    """Read, verify and join the chunk run of a large value of ``length`` bytes at ``offset``.

    The run must end by ``data_end`` (checked before anything is allocated). Cost: one pread and one
    join, O(length) in C.
    """
    total = run_size(length)
    if offset + total > data_end:
        raise CorruptionError("large value runs past the data area", path)
    raw = read_exact(fd, total, offset, path)
    view = memoryview(raw)
    parts = []
    pos = 0
    for start in range(0, length, CHUNK_SIZE):
        size = min(CHUNK_SIZE, length - start)
        verify_trailer(raw, pos, size, BLOCK_CHUNK, path)
        parts.append(view[pos : pos + size])
        pos += size + TRAILER_SIZE
    return b"".join(parts)


def encode_footer(footer: Footer) -> bytes:
    body = _FOOTER_BODY.pack(*footer.index, *footer.filter, *footer.hash_index, *footer.properties, footer.version, MAGIC)
    return body + _U32.pack(zlib.crc32(body))


def decode_footer(raw: bytes, file_size: int, path: str) -> Footer:
    """Decode and check the footer: CRC, magic, version, and that the meta blocks tile the file's end."""
    if len(raw) != FOOTER_SIZE:
        raise CorruptionError("table shorter than its footer", path)
    fields = _FOOTER_BODY.unpack_from(raw, 0)
    (crc,) = _U32.unpack_from(raw, _FOOTER_BODY.size)
    if fields[9] != MAGIC:
        raise CorruptionError("bad table magic number (not a byrondbm table)", path)
    if zlib.crc32(memoryview(raw)[: _FOOTER_BODY.size]) != crc:
        raise CorruptionError("table footer checksum mismatch", path)
    if fields[8] not in READABLE_VERSIONS:
        raise CorruptionError(f"unsupported table format version {fields[8]}", path)
    footer = Footer(Handle(*fields[0:2]), Handle(*fields[2:4]), Handle(*fields[4:6]), Handle(*fields[6:8]), fields[8])
    order = (footer.filter, footer.hash_index, footer.index, footer.properties)
    for before, after in pairwise(order):
        if before.end != after.offset:
            raise CorruptionError("table meta blocks do not follow each other", path)
    if footer.properties.end != file_size - FOOTER_SIZE:
        raise CorruptionError("table meta blocks do not end at the footer", path)
    return footer


def encode_properties(props: TableProperties) -> bytes:
    return b"".join(
        (
            _PROPS_FIXED.pack(
                props.num_entries,
                props.num_deletions,
                props.min_seq,
                props.max_seq,
                props.file_size,
                props.data_size,
                props.num_data_blocks,
                props.raw_data_bytes,
                props.stored_data_bytes,
            ),
            _U32.pack(len(props.smallest_key)),
            props.smallest_key,
            _U32.pack(len(props.largest_key)),
            props.largest_key,
        )
    )


def properties_size(smallest_key: bytes, largest_key: bytes) -> int:
    """Length of the encoded properties, known before ``file_size`` is (the writer needs it for that)."""
    return _PROPS_FIXED.size + 8 + len(smallest_key) + len(largest_key)


def decode_properties(raw: bytes, size: int, version: int, path: str) -> TableProperties:
    """The properties of a table of format ``version``; a format-3 table's raw and stored data bytes
    come back as -1, for the reader to take from the index."""
    layout = _PROPS_FIXED if version > 3 else _PROPS_FIXED_3
    try:
        fixed = layout.unpack_from(raw, 0)
        pos = layout.size
        (slen,) = _U32.unpack_from(raw, pos)
        pos += 4
        smallest = raw[pos : pos + slen]
        pos += slen
        (llen,) = _U32.unpack_from(raw, pos)
        pos += 4
        largest = raw[pos : pos + llen]
        pos += llen
    except struct.error:
        raise CorruptionError("table properties truncated", path) from None
    if pos != size:
        raise CorruptionError("table properties have the wrong length", path)
    if layout is _PROPS_FIXED_3:
        fixed += (-1, -1)
    entries, deletions, min_seq, max_seq, file_size, data_size, blocks, raw_bytes, stored_bytes = fixed
    return TableProperties(
        entries, deletions, smallest, largest, min_seq, max_seq, file_size, data_size, blocks, raw_bytes, stored_bytes
    )
