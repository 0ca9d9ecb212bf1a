"""Data blocks and the index block: their layout, point lookups inside a block, and decoding (the writer builds them).

Data block contents (integers little-endian; varint = LEB128, as records.encode_varint)::

    entry* | restart offsets: u32 × n | n: u32
    entry = shared: varint | unshared: varint | value_len: varint | key[shared:] (unshared bytes) |
            tag: u64 | value (value_len bytes)
    tag   = seq << 2 | kind      kind 0 tombstone (value_len 0), 1 inline value,
                                 2 large value: value = run offset u64 | value length u64 (value_len 16)

Keys are delta-encoded against the previous entry's key (``shared`` bytes in common); every
RESTART_INTERVAL-th entry is a restart point with ``shared = 0``, whose offset is listed in the trailer.
Entries are in entry order: key ascending, then newest (highest seq) first; one key may have many versions,
and they may continue into the next block.

Index block contents (one row per data block, in file order)::

    n: u32 | offsets: u64 × n | sizes: u32 × n | key lengths: u32 × n | last keys, concatenated

Both are framed as every block is (type byte + CRC32 trailer, see format.py).
"""

from __future__ import annotations

import struct
from itertools import accumulate, pairwise
from typing import NamedTuple

from ...errors import CorruptionError
from ..records import decode_varint

RESTART_SHIFT = 2
RESTART_INTERVAL = 1 << RESTART_SHIFT
RESTART_MASK = RESTART_INTERVAL - 1
KIND_TOMBSTONE = 0
KIND_VALUE = 1
KIND_LARGE = 2

_U32 = struct.Struct("<I")
TAG = struct.Struct("<Q")
_unpack_u32 = _U32.unpack_from
_unpack_tag = TAG.unpack_from
LARGE_REF = struct.Struct("<QQ")


class LargeValue(NamedTuple):
    """Where a value stored out of line lives: the offset of its chunk run and the value's length."""

    offset: int
    length: int


StoredValue = bytes | LargeValue | None
BlockEntry = tuple[bytes, int, StoredValue]
DecodedBlock = tuple[list[BlockEntry], bool]
"""``(entries, has_large)``: the entries in order and whether any value is a `LargeValue` the reader must
resolve. The block cache holds these for blocks iterators read (point lookups bisect the entries)."""


def decode_block(raw: bytes, size: int, path: str, from_key: bytes | None = None) -> DecodedBlock:
    """Decode the data block held in ``raw[:size]`` (already CRC-checked); with ``from_key``, only from
    the last restart point below it (every entry ``>= (from_key,)`` included), as a seek needs.

    Cost: O(entries) Python steps, one slice per key suffix and value, no copy of the whole block.
    Lengths that do not fit raise `CorruptionError`, never `IndexError`/`struct.error`.
    """
    try:
        if size < 4:
            raise CorruptionError("data block shorter than its restart count", path)
        (num_restarts,) = _U32.unpack_from(raw, size - 4)
        limit = size - 4 - 4 * num_restarts
        if num_restarts == 0 or limit <= 0:
            raise CorruptionError("data block restart array does not fit", path)
        pos = 0
        if from_key is not None:
            restart = _search_restarts(raw, limit, num_restarts, from_key, path)
            (pos,) = _unpack_u32(raw, limit + 4 * restart)
        entries: list[BlockEntry] = []
        append = entries.append
        unpack_tag = TAG.unpack_from
        has_large = False
        prev = b""
        while pos < limit:
            shared = raw[pos]
            unshared = raw[pos + 1]
            vlen = raw[pos + 2]
            if (shared | unshared | vlen) < 0x80:
                pos += 3
            elif (shared | unshared) < 0x80 and raw[pos + 3] < 0x80:  # a value of 128 bytes to 16 KiB
                vlen = (vlen & 0x7F) | raw[pos + 3] << 7
                pos += 4
            else:
                shared, pos = decode_varint(raw, pos)
                unshared, pos = decode_varint(raw, pos)
                vlen, pos = decode_varint(raw, pos)
            kend = pos + unshared
            if shared:
                if shared > len(prev):
                    raise CorruptionError("data block key shares more bytes than its predecessor has", path)
                key = prev[:shared] + raw[pos:kend]
            else:
                key = raw[pos:kend]
            (tag,) = unpack_tag(raw, kend)
            pos = kend + 8 + vlen
            kind = tag & 3
            entry: BlockEntry
            if kind == KIND_VALUE:
                entry = (key, -(tag >> 2), raw[kend + 8 : pos])
            elif kind == KIND_TOMBSTONE and vlen == 0:
                entry = (key, -(tag >> 2), None)
            elif kind == KIND_LARGE and vlen == 16:
                entry = (key, -(tag >> 2), LargeValue(*LARGE_REF.unpack_from(raw, kend + 8)))
                has_large = True
            else:
                raise CorruptionError(f"data block entry has kind {kind} with a {vlen}-byte value", path)
            append(entry)
            prev = key
        if pos != limit:
            raise CorruptionError("data block entries overrun the restart array", path)
    except (IndexError, ValueError, struct.error):
        raise CorruptionError("data block entry truncated", path) from None
    return entries, has_large


NEXT_BLOCK = True
"""`find_in_block` result: the block ends inside the key's versions, none visible yet; look in the next block."""


def find_in_block(
    raw: bytes, size: int, key: bytes, read_negseq: int, restart: int, path: str
) -> BlockEntry | bool | None:
    """The first entry at or after ``(key, read_negseq)`` in the data block ``raw[:size]`` (CRC-checked),
    if its key is ``key``; None if there is none; `NEXT_BLOCK` if the block ends among ``key``'s versions.

    A point lookup decodes only from restart point ``restart`` on, which must not lie after the key's
    first entry; ``restart < 0`` means "find it": a binary search over the restart points, whose keys are
    stored whole (``shared = 0``). Cost: O(log restarts) + the entries from that restart to the key
    (at most RESTART_INTERVAL when the restart is right), each a few Python steps and no allocation
    beyond the key. Lengths that do not fit raise `CorruptionError` naming ``path``.
    """
    try:
        (num_restarts,) = _unpack_u32(raw, size - 4 if size >= 4 else len(raw))
        limit = size - 4 - 4 * num_restarts
        if num_restarts == 0 or limit <= 0:
            raise CorruptionError("data block restart array does not fit", path)
        if restart < 0:
            restart = _search_restarts(raw, limit, num_restarts, key, path)
        elif restart >= num_restarts:
            raise CorruptionError(f"restart point {restart} of a block with {num_restarts}", path)
        (pos,) = _unpack_u32(raw, limit + 4 * restart)
        prev = b""
        while pos < limit:
            shared = raw[pos]
            unshared = raw[pos + 1]
            vlen = raw[pos + 2]
            if (shared | unshared | vlen) < 0x80:
                pos += 3
            elif (shared | unshared) < 0x80 and raw[pos + 3] < 0x80:
                vlen = (vlen & 0x7F) | raw[pos + 3] << 7
                pos += 4
            else:
                shared, pos = decode_varint(raw, pos)
                unshared, pos = decode_varint(raw, pos)
                vlen, pos = decode_varint(raw, pos)
            kend = pos + unshared
            if shared:
                if shared > len(prev):
                    raise CorruptionError("data block key shares more bytes than its predecessor has", path)
                prev = prev[:shared] + raw[pos:kend]
            else:
                prev = raw[pos:kend]
            pos = kend + 8 + vlen
            if prev < key:
                continue
            if prev != key:
                return None
            (tag,) = _unpack_tag(raw, kend)
            if -(tag >> 2) >= read_negseq:
                if pos > limit:
                    break
                if tag & 3 == KIND_VALUE:
                    return (key, -(tag >> 2), raw[kend + 8 : pos])
                return _entry(key, tag, raw, kend + 8, vlen, path)
        if pos != limit:
            raise CorruptionError("data block entries overrun the restart array", path)
    except (IndexError, ValueError, struct.error):
        raise CorruptionError("data block entry truncated", path) from None
    return NEXT_BLOCK if prev == key else None


def _search_restarts(raw: bytes, limit: int, num_restarts: int, key: bytes, path: str) -> int:
    """The last restart point whose key is below ``key`` (0 if none): the key's first entry is in its run."""
    offsets = _unpack_u32
    lo, hi = 0, num_restarts
    while lo < hi:
        mid = (lo + hi) >> 1
        (pos,) = offsets(raw, limit + 4 * mid)
        if raw[pos]:
            raise CorruptionError("data block restart point has a shared key prefix", path)
        unshared = raw[pos + 1]
        if unshared < 0x80 and raw[pos + 2] < 0x80:
            pos += 3
        elif unshared < 0x80 and raw[pos + 3] < 0x80:
            pos += 4
        else:
            unshared, pos = decode_varint(raw, pos + 1)
            _, pos = decode_varint(raw, pos)
        if raw[pos : pos + unshared] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1 if lo else 0


def _entry(key: bytes, tag: int, raw: bytes, start: int, vlen: int, path: str) -> BlockEntry:
    kind = tag & 3
    if kind == KIND_VALUE:
        return (key, -(tag >> 2), raw[start : start + vlen])
    if kind == KIND_TOMBSTONE and vlen == 0:
        return (key, -(tag >> 2), None)
    if kind == KIND_LARGE and vlen == 16:
        return (key, -(tag >> 2), LargeValue(*LARGE_REF.unpack_from(raw, start)))
    raise CorruptionError(f"data block entry has kind {kind} with a {vlen}-byte value", path)


def restart_offsets(raw: bytes, size: int) -> list[int]:
    """The restart array of a block `decode_block` accepted (for `TableReader.check`)."""
    (n,) = _U32.unpack_from(raw, size - 4)
    return list(struct.unpack_from(f"<{n}I", raw, size - 4 - 4 * n))


def encode_index(last_keys: list[bytes], offsets: list[int], sizes: list[int]) -> bytes:
    n = len(last_keys)
    return b"".join(
        (
            _U32.pack(n),
            struct.pack(f"<{n}Q", *offsets),
            struct.pack(f"<{n}I", *sizes),
            struct.pack(f"<{n}I", *map(len, last_keys)),
            *last_keys,
        )
    )


def decode_index(raw: bytes, size: int, path: str) -> tuple[list[bytes], list[int], list[int]]:
    """``(last_keys, offsets, sizes)`` of the data blocks. Cost: O(blocks), mostly in C."""
    try:
        (n,) = _U32.unpack_from(raw, 0)
        head = 4 + 16 * n
        if head > size:
            raise CorruptionError("index block count does not fit the block", path)
        offsets = list(struct.unpack_from(f"<{n}Q", raw, 4))
        sizes = list(struct.unpack_from(f"<{n}I", raw, 4 + 8 * n))
        ends = list(accumulate(struct.unpack_from(f"<{n}I", raw, 4 + 12 * n), initial=head))
    except struct.error:
        raise CorruptionError("index block truncated", path) from None
    if ends[-1] != size:
        raise CorruptionError("index block keys do not fill the block", path)
    keys = [raw[a:b] for a, b in pairwise(ends)]
    return keys, offsets, sizes

