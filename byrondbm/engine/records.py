"""The key-value module: entries, sequence numbers, tombstones, and the batch encoding.

An *entry* is the tuple ``(key, negseq, value)`` used by every layer (memtable, tables, merges):

- ``key``: the user key, ``bytes``.
- ``negseq``: minus the sequence number. Tuples then sort by key ascending and, for one key,
  newest first, so ``heapq.merge`` of sources yields the newest version of a key first.
  Sequence numbers are unique, so two entries never compare on their values.
- ``value``: ``bytes``, or ``None`` for a tombstone (a deletion).

Batch payload (one WAL record per batch, so a batch is applied all or nothing)::

    first_seq: u64 LE | count: u32 LE | count × op
    op = kind: u8 (0 delete, 1 put) | key_len: u32 LE | key | [value_len: u32 LE | value]  (put only)

Operation ``i`` of the batch has sequence number ``first_seq + i``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Optional, Tuple

from ..errors import CorruptionError

Entry = Tuple[bytes, int, Optional[bytes]]
"""(key, -sequence_number, value or None for a tombstone)."""

Op = Tuple[bytes, Optional[bytes]]
"""(key, value or None for a deletion): one operation of a batch."""

MAX_SEQ = (1 << 63) - 1
KIND_DELETE = 0
KIND_PUT = 1

_BATCH_HEADER = struct.Struct("<QI")
_OP_HEADER = struct.Struct("<BI")
_U32 = struct.Struct("<I")
_PUT_ONE = struct.Struct("<QIBI")  # batch header + op header of a single put/delete


def encode_batch(first_seq: int, ops: Sequence[Op]) -> bytes:
    """Encode ``ops`` as one batch payload. Cost: O(total bytes), one ``bytes.join``."""
    if len(ops) == 1:
        key, value = ops[0]
        if value is None:
            return _PUT_ONE.pack(first_seq, 1, KIND_DELETE, len(key)) + key
        return b"".join((_PUT_ONE.pack(first_seq, 1, KIND_PUT, len(key)), key, _U32.pack(len(value)), value))
    parts = [_BATCH_HEADER.pack(first_seq, len(ops))]
    append = parts.append
    for key, value in ops:
        if value is None:
            append(_OP_HEADER.pack(KIND_DELETE, len(key)))
            append(key)
        else:
            append(_OP_HEADER.pack(KIND_PUT, len(key)))
            append(key)
            append(_U32.pack(len(value)))
            append(value)
    return b"".join(parts)


def decode_batch(payload: bytes, filename: str = "") -> tuple[int, list[Op]]:
    """Decode a batch payload; any length or kind that does not fit raises `CorruptionError`."""
    size = len(payload)
    if size < _BATCH_HEADER.size:
        raise CorruptionError("batch record shorter than its header", filename)
    first_seq, count = _BATCH_HEADER.unpack_from(payload, 0)
    pos = _BATCH_HEADER.size
    ops: list[Op] = []
    for _ in range(count):
        if pos + _OP_HEADER.size > size:
            raise CorruptionError("batch record truncated", filename)
        kind, klen = _OP_HEADER.unpack_from(payload, pos)
        pos += _OP_HEADER.size
        if pos + klen > size:
            raise CorruptionError("batch key runs past the record", filename)
        key = payload[pos : pos + klen]
        pos += klen
        if kind == KIND_PUT:
            if pos + 4 > size:
                raise CorruptionError("batch record truncated", filename)
            (vlen,) = _U32.unpack_from(payload, pos)
            pos += 4
            if pos + vlen > size:
                raise CorruptionError("batch value runs past the record", filename)
            ops.append((key, payload[pos : pos + vlen]))
            pos += vlen
        elif kind == KIND_DELETE:
            ops.append((key, None))
        else:
            raise CorruptionError(f"unknown operation kind {kind} in batch", filename)
    if pos != size:
        raise CorruptionError("trailing bytes after batch operations", filename)
    return first_seq, ops


def encode_varint(value: int) -> bytes:
    """LEB128 unsigned varint (7 bits a byte, low first), as LevelDB's ``coding.h``."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Return ``(value, next_pos)``. Raises `IndexError` past the end, `ValueError` if over 10 bytes:
    callers turn both into `CorruptionError` naming their file."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
