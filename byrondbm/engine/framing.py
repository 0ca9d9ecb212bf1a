"""CRC framing of records, shared by the write-ahead log and the manifest (one reader, one writer).

Byte layout of a framed file: a sequence of records, each::

    crc32: u32 LE | length: u32 LE | type: u8 | payload (length bytes)

``crc32`` is ``zlib.crc32`` over the 5 header bytes after it (length and type) and then the payload, so a
damaged length or type is caught too. ``type`` tells the owner what the payload is (see wal.py / manifest.py);
``0`` is never written, so a zeroed region is never a valid record.

Recovery rule (LevelDB's "truncated trailing record is ignored", made strict): a record that fails its
checks is a *torn tail* — dropped — only when no valid record follows it in the file (a crash cut the last
write). A bad record followed by a good one is damage in the middle and raises `CorruptionError`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from ..errors import CorruptionError

HEADER = struct.Struct("<IIB")
_LENTYPE = struct.Struct("<IB")
_CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size  # 9
MAX_RECORD = (1 << 32) - 1


def frame(rtype: int, payload: bytes) -> bytes:
    """One framed record. Cost: one pass of crc32 over the payload, one copy."""
    lentype = _LENTYPE.pack(len(payload), rtype)
    return b"".join((_CRC.pack(zlib.crc32(payload, zlib.crc32(lentype))), lentype, payload))


def _valid_at(data: bytes | memoryview, pos: int, size: int) -> int:
    """End offset of a valid record starting at ``pos``, or -1."""
    if pos + HEADER_SIZE > size:
        return -1
    crc, length, rtype = HEADER.unpack_from(data, pos)
    end = pos + HEADER_SIZE + length
    if rtype == 0 or end > size:
        return -1
    if zlib.crc32(data[pos + HEADER_SIZE : end], zlib.crc32(data[pos + 4 : pos + HEADER_SIZE])) != crc:
        return -1
    return end


def read_records(data: bytes, filename: str) -> tuple[list[tuple[int, bytes]], int]:
    """Parse a whole framed file held in ``data``.

    Returns ``(records, valid_end)``: the ``(type, payload)`` of every valid record and the offset just past
    the last one (a torn tail starts there). Raises `CorruptionError` for damage before the tail.
    Cost: O(size) normally; a bad record costs a scan of the rest of the file for a later valid record.
    """
    records: list[tuple[int, bytes]] = []
    append = records.append
    size = len(data)
    view = memoryview(data)
    unpack = HEADER.unpack_from
    pos = 0
    while pos + HEADER_SIZE <= size:  # _valid_at, inlined: this loop replays every log record
        crc, length, rtype = unpack(view, pos)
        start = pos + HEADER_SIZE
        end = start + length
        if not rtype or end > size or zlib.crc32(view[start:end], zlib.crc32(view[pos + 4 : start])) != crc:
            break
        append((rtype, data[start:end]))
        pos = end
    if pos < size and any(_valid_at(view, p, size) >= 0 for p in range(pos + 1, size - HEADER_SIZE + 1)):
        raise CorruptionError(f"damaged record at offset {pos} followed by valid records", filename)
    return records, pos


def iter_valid(data: bytes, filename: str) -> Iterator[tuple[int, int, bytes]]:
    """Salvage: every valid record anywhere in ``data`` as ``(offset, type, payload)``, skipping damage.

    Used by repair only; it resynchronises byte by byte after a bad record, so it may be slow on big damage.
    """
    size = len(data)
    view = memoryview(data)
    pos = 0
    while pos < size:
        end = _valid_at(view, pos, size)
        if end < 0:
            pos += 1
            continue
        yield pos, data[pos + 8], data[pos + HEADER_SIZE : end]
        pos = end
