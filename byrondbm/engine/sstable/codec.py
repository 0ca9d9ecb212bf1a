"""Data block compression: the writer's choice of how to store each block, and the reader's way back.

Byte layout: a block's codec is the high nibble of its trailer's type byte (the framing is format.py's), so
every block names its own and tables of either kind, or mixed, read alike::

    type byte = kind | codec << 4
    codec 0: the contents as they are (every block of a format-3 table)
    codec 1: the contents as one zlib stream (RFC 1950: 2-byte header, deflate, adler32 of the contents)

Only data blocks are compressed: the filter and the hash index are hashes (incompressible), the index and
properties are small, and a large value's chunk run stays raw (its size on disk follows from the value's
length, which its reference records). A block is stored compressed only when that saves at least 1/8 of
its bytes, LevelDB's rule: below that, the CPU every uncached read spends buys too little disk.
"""

from __future__ import annotations

import zlib

from ...errors import CorruptionError
from .format import BLOCK_DATA, TRAILER, TRAILER_SIZE, read_exact

CODEC_SHIFT = 4
KIND_MASK = (1 << CODEC_SHIFT) - 1
CODEC_NONE = 0
CODEC_ZLIB = 1
CODECS = {"none": CODEC_NONE, "zlib": CODEC_ZLIB}
"""`Options.compression` name -> codec number."""
DATA_BLOCK_TYPES = frozenset(BLOCK_DATA | codec << CODEC_SHIFT for codec in CODECS.values())
"""The trailer type bytes a data block may have (what a repair walking a damaged file looks for)."""
ZLIB_LEVEL = 1
"""Measured on tables of JSON records, pickles and text (docs/format-sstable.md): level 6 writes 15–45 %
slower for 2–8 % smaller tables; decompression costs the same at every level."""
MAX_SKIP = 64
"""The most blocks stored raw without a try after a block did not compress (see `BlockCompressor`)."""


class BlockCompressor:
    """Chooses, block by block, whether a table writer stores a data block compressed.

    A failed try costs as much as compressing (zlib level 1 on 4 KiB of random bytes: 120–160 µs, about
    what the writer spends building the block), so after a block that did not compress enough the next
    1, 2, 4, … up to `MAX_SKIP` blocks are stored raw untried, and a block that compresses ends the
    pause. A table of random values so tries ~1 block in `MAX_SKIP` (+3 % writer time, measured); data
    that turns compressible inside a table loses at most `MAX_SKIP` blocks' compression.
    """

    def __init__(self, compression: str) -> None:
        self._codec = CODECS[compression]
        self._skip = 0  # blocks still to store raw untried
        self._pause = 0  # the skip after the next failed try

    def __call__(self, contents: bytes) -> tuple[bytes, int]:
        """``(bytes to store, codec)`` for a data block's ``contents``."""
        if self._codec == CODEC_NONE:
            return contents, CODEC_NONE
        if self._skip:
            self._skip -= 1
            return contents, CODEC_NONE
        packed = zlib.compress(contents, ZLIB_LEVEL)
        if len(packed) < len(contents) - (len(contents) >> 3):
            self._pause = 0
            return packed, CODEC_ZLIB
        self._pause = self._skip = min(2 * self._pause or 1, MAX_SKIP)
        return contents, CODEC_NONE


def unpack_data_block(raw: bytes, size: int, path: str) -> bytes:
    """Verify data block ``raw`` (``size`` bytes as stored, then the trailer: one pread of its handle)
    and return it in memory form: its contents, uncompressed, followed by `TRAILER_SIZE` bytes.

    A block stored raw is returned as it is (no copy; its trailer is the tail), a compressed one
    decompressed (~15 µs for 4 KiB of contents) with the trailer appended, so callers find the contents'
    length as ``len(block) - TRAILER_SIZE`` either way. Damage, a wrong kind or an unknown codec raise
    `CorruptionError`, never a `zlib.error`.
    """
    if len(raw) != size + TRAILER_SIZE:
        raise CorruptionError(f"data block truncated: {len(raw)} bytes where {size + TRAILER_SIZE} were expected", path)
    block_type, crc = TRAILER.unpack_from(raw, size)
    if zlib.crc32(memoryview(raw)[: size + 1]) != crc:
        raise CorruptionError(f"block checksum mismatch (type {block_type})", path)
    if block_type == BLOCK_DATA:
        return raw
    if block_type & KIND_MASK != BLOCK_DATA:
        raise CorruptionError(f"block has type {block_type & KIND_MASK}, expected {BLOCK_DATA}", path)
    if block_type >> CODEC_SHIFT != CODEC_ZLIB:
        raise CorruptionError(f"data block has unknown compression codec {block_type >> CODEC_SHIFT}", path)
    try:
        contents = zlib.decompress(memoryview(raw)[:size])
    except zlib.error as exc:
        raise CorruptionError(f"compressed data block does not decompress ({exc})", path) from None
    return contents + raw[size:]


def read_data_block(fd: int, offset: int, size: int, path: str) -> bytes:
    """Read data block ``(offset, size)`` (a handle the caller has checked lies inside the file) and
    return it in memory form (`unpack_data_block`)."""
    return unpack_data_block(read_exact(fd, size + TRAILER_SIZE, offset, path), size, path)

