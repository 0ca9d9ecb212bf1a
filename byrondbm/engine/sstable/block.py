"""Data blocks and the index block: their layout, point lookups inside a block, and decoding.

Data block contents (integers little-endian), columns rather than rows, so that decoding a block is a few
C-level passes (`struct`, slicing through `map`) instead of a Python step per field of each entry::

    keys (whole, concatenated) | values (concatenated) |
    key_ends: W × n | value_ends: W × n | seqs: u64 × n | kinds: u8 × n | n: u32 | W: u8 (2 or 4)

Entry ``i`` has key ``block[key_ends[i-1] : key_ends[i]]`` (the keys start at 0), value
``block[value_ends[i-1] : value_ends[i]]`` (the values start at ``key_ends[n-1]``), sequence number
``seqs[i]`` and kind ``kinds[i]``: 0 tombstone (empty value), 1 inline value, 2 large value (the value is
``run offset: u64 | value length: u64``, 16 bytes). ``W`` is 2 when every offset fits in 16 bits, else 4.
Entries are in entry order: key ascending, then newest (highest seq) first; one key may have many versions,
and they may continue into the next block. Keys are stored whole (no prefix compression): it costs ~8 %
more bytes on 16-byte keys and 100-byte values, and buys a decode ~2× faster and O(1) access to entry ``i``,
which the hash index uses (it names the entry where a key starts). Compressing the whole block (codec.py)
wins shared key prefixes back where the block compresses by 1/8 or more.

Index block contents (one row per data block, in file order)::

    n: u32 | offsets: u64 × n | sizes: u32 × n | key lengths: u32 × n | last keys, concatenated

Both are framed as every block is (type byte + CRC32 trailer, see format.py); a data block's contents may be
stored compressed (codec.py), and the functions here see them uncompressed.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import accumulate, pairwise
from operator import neg
from typing import NamedTuple

from ...errors import CorruptionError

KIND_TOMBSTONE = 0
KIND_VALUE = 1
KIND_LARGE = 2

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TAIL = struct.Struct("<IB")  # n, W
TAIL_SIZE = _TAIL.size
ENTRY_OVERHEAD_2 = 2 + 2 + 8 + 1
"""Bytes per entry beyond its key and value, with W = 2."""
ENTRY_OVERHEAD_4 = 4 + 4 + 8 + 1
_WIDTHS = {2: "H", 4: "I"}
_PAIR = {2: struct.Struct("<2H"), 4: struct.Struct("<2I")}
_TRIPLE = {2: struct.Struct("<3H"), 4: struct.Struct("<3I")}
_FIRST = {"H": struct.Struct("<H"), "I": struct.Struct("<I")}
LARGE_REF = struct.Struct("<QQ")


class LargeValue(NamedTuple):
    """Where a value stored out of line lives: the offset of its chunk run and the value's length."""

    offset: int
    length: int


StoredValue = bytes | LargeValue | None
BlockEntry = tuple[bytes, int, StoredValue]
NOT_CLEAN = 1 << 64
"""`DecodedBlock`'s ``clean_seq`` of a block that is clean for no reader (above every sequence number)."""
DecodedBlock = tuple[list[BlockEntry], bool, Sequence[bytes], Sequence[StoredValue], int]
"""``(entries, has_large, keys, values, clean_seq)``: the entries in order; whether any value is a
`LargeValue` the reader must resolve; the entries' keys and values as columns; and ``clean_seq``, the
highest sequence number of the block when it holds no tombstone, no large value and one version a key
(else `NOT_CLEAN`): a scan at sequence number ``clean_seq`` or later takes its pairs as
``zip(keys, values)``, with no Python step a pair. The block cache holds these for blocks iterators read
(point lookups bisect the entries)."""


def point_pairs(
    raw: bytes, size: int, path: str, skip: bytes | None
) -> Iterator[tuple[bytes, bytes | None]] | None:
    """The ``(key, value)`` pairs of the data block ``raw[:size]`` (CRC-checked) that `TablePoints` gathers,
    in an order that leaves each key's newest value (None for a tombstone) in a dict they update; the
    leading entries of key ``skip`` (the last key of the block before, whose newest value is there) left
    out. None when a value is stored out of line (a lookup then resolves it by the general path). Cost:
    `_columns` (no entry tuples, no sequence numbers); the pairs are zipped, in C, as they are consumed."""
    keys, values, has_large, _, _ = _columns(raw, size, path)
    if has_large:
        return None
    if keys[0] == skip:
        i = 1
        while i < len(keys) and keys[i] == skip:
            i += 1
        keys, values = keys[i:], values[i:]
    # A key's first entry is its newest: fed from the end, the newest is the last one stored.
    return zip(reversed(keys), reversed(values))  # type: ignore[arg-type]  # no LargeValue


def entry_count(raw: bytes, size: int) -> int:
    """Entries of the data block ``raw[:size]`` by its tail (0 if it cannot hold one; `decode` says why)."""
    return _TAIL.unpack_from(raw, size - TAIL_SIZE)[0] if size >= TAIL_SIZE else 0


def encode_block(keys: list[bytes], values: list[bytes], seqs: list[int], kinds: bytearray) -> bytes:
    """Data block contents for entries already in entry order (a tombstone's value is ``b""``, a large
    value's its 16-byte reference). Cost: a few C-level passes over the entries."""
    n = len(keys)
    key_ends = list(accumulate(map(len, keys)))
    value_ends = list(accumulate(map(len, values), initial=key_ends[-1]))
    del value_ends[0]
    width = 2 if value_ends[-1] <= 0xFFFF else 4
    code = _WIDTHS[width]
    return b"".join(
        (
            *keys,
            *values,
            struct.pack(f"<{n}{code}", *key_ends),
            struct.pack(f"<{n}{code}", *value_ends),
            struct.pack(f"<{n}Q", *seqs),
            kinds,
            _TAIL.pack(n, width),
        )
    )


def encoded_size(keys: list[bytes], values: list[bytes]) -> int:
    """Bytes of the contents `encode_block` makes of these keys and values."""
    data = sum(map(len, keys)) + sum(map(len, values))
    return data + len(keys) * (ENTRY_OVERHEAD_2 if data <= 0xFFFF else ENTRY_OVERHEAD_4) + TAIL_SIZE


@lru_cache(maxsize=1024)
def _uniform(start: int, widths: tuple[int, ...], n: int, code: str) -> tuple[bytes, struct.Struct]:
    """For consecutive columns of ``n`` strings each from ``start``, every string of column ``k``
    ``widths[k]`` bytes long: their ends columns as stored, one after the other (`code` "H" or "I"), and
    the `struct.Struct` that cuts all their strings at ``start``. A block's columns take few shapes, so
    both are made once."""
    ends: list[int] = []
    for width in widths:
        at = ends[-1] if ends else start
        ends += range(at + width, at + width * n + 1, width) if width else [at] * n
    return struct.pack(f"<{len(ends)}{code}", *ends), struct.Struct("".join(f"{width}s" * n for width in widths))


def _strings(
    raw: bytes, start: int, ends_at: int, n: int, code: str, limit: int, path: str
) -> tuple[Sequence[bytes], int]:
    """The ``n`` byte strings of ``raw`` from ``start`` whose ends are the column of offsets (`code` "H" or
    "I") at ``ends_at``, all inside ``raw[:limit]``, and where the last one ends.

    When they all have one length the column is compared with the one that length makes (`_uniform`: a
    memcmp, no int made) and one `struct` unpack cuts the strings in C, ~3× faster than a slice each.
    Offsets out of order or past ``limit`` raise `CorruptionError`.
    """
    width = _FIRST[code].unpack_from(raw, ends_at)[0] - start
    end = start + width * n
    if width > 0 and end <= limit and (code == "I" or end <= 0xFFFF):
        column, cut = _uniform(start, (width,), n, code)
        if raw.startswith(column, ends_at):
            return cut.unpack_from(raw, start), end
    ends = struct.unpack_from(f"<{n}{code}", raw, ends_at)
    if ends[-1] > limit or width < 0 or list(ends) != sorted(ends):
        raise CorruptionError("data block offsets out of order or outside the block", path)
    get = raw.__getitem__
    return list(map(get, map(slice, (start,) + ends[:-1], ends))), ends[-1]


def decode_block(raw: bytes, size: int, path: str) -> tuple[list[BlockEntry], bool]:
    """``(entries, has_large)`` of the data block held in ``raw[:size]``: `decode`'s first two items."""
    decoded = decode(raw, size, path)
    return decoded[0], decoded[1]


def decode(raw: bytes, size: int, path: str) -> DecodedBlock:
    """Decode the data block held in ``raw[:size]`` (already CRC-checked) into its entries and columns.

    Cost: `_columns`, one tuple per entry, and a set of the keys for ``clean_seq`` when no value is a
    tombstone or large. Anything that does not fit raises `CorruptionError`.
    """
    keys, values, has_large, clean, seqs_at = _columns(raw, size, path)
    n = len(keys)
    seqs = struct.unpack_from(f"<{n}Q", raw, seqs_at)
    clean_seq = max(seqs) if clean and len(set(keys)) == n else NOT_CLEAN
    return list(zip(keys, map(neg, seqs), values)), has_large, keys, values, clean_seq


def _columns(raw: bytes, size: int, path: str) -> tuple[Sequence[bytes], Sequence[StoredValue], bool, bool, int]:
    """``(keys, values, has_large, clean, seqs_at)`` of the data block in ``raw[:size]``: its key and value
    columns (a tombstone's value None, a large one's `LargeValue`), whether a value is large, whether every
    value is an inline one, and where the sequence numbers start. Cost: O(entries) in C (one `struct` cut
    when the keys have one length and the values another, else `_strings`), plus a Python step per
    tombstone or large value. Anything that does not fit raises `CorruptionError`."""
    if size < TAIL_SIZE:
        raise CorruptionError("data block shorter than its entry count", path)
    n, width = _TAIL.unpack_from(raw, size - TAIL_SIZE)
    code = _WIDTHS.get(width)
    kinds_at = size - TAIL_SIZE - n
    seqs_at = kinds_at - 8 * n
    columns_at = seqs_at - 2 * width * n
    if code is None or n == 0 or columns_at < 0:
        raise CorruptionError(f"data block of {size} bytes cannot hold {n} entries of width {width}", path)
    keys: Sequence[bytes]
    values: Sequence[StoredValue]
    # Keys of one length and values of one length (the common case): both ends columns compared with the
    # ones those lengths make, and every key and value cut by one `struct` unpack.
    key_width = _FIRST[code].unpack_from(raw, columns_at)[0]
    value_width, spare = divmod(columns_at - key_width * n, n)
    fields = None
    if key_width > 0 and value_width >= 0 and not spare and (code == "I" or columns_at <= 0xFFFF):
        both, cut = _uniform(0, (key_width, value_width), n, code)
        if raw.startswith(both, columns_at):
            fields = cut.unpack_from(raw, 0)
    if fields is not None:
        keys, values = fields[:n], fields[n:]
    else:
        keys, keys_end = _strings(raw, 0, columns_at, n, code, columns_at, path)
        values, values_end = _strings(raw, keys_end, columns_at + width * n, n, code, columns_at, path)
        if values_end != columns_at:
            raise CorruptionError("data block values do not end where its columns start", path)
    kinds = raw[kinds_at : kinds_at + n]
    has_large = False
    clean = kinds.count(KIND_VALUE) == n
    if not clean:
        values = list(values)
        for i, kind in enumerate(kinds):
            if kind == KIND_VALUE:
                continue
            vlen = len(values[i])  # type: ignore[arg-type]
            if kind == KIND_TOMBSTONE and vlen == 0:
                values[i] = None
            elif kind == KIND_LARGE and vlen == 16:
                values[i] = LargeValue(*LARGE_REF.unpack(values[i]))  # type: ignore[arg-type]
                has_large = True
            else:
                raise CorruptionError(f"data block entry has kind {kind} with a {vlen}-byte value", path)
    return keys, values, has_large, clean, seqs_at


NEXT_BLOCK = True
"""`find_in_block` result: the block ends inside the key's versions, none visible yet; look in the next block."""
MISSED_HINT = False
"""`find_in_block` result, with ``search=False`` only: the key's versions do not start at the hint."""


def find_in_block(
    raw: bytes, size: int, key: bytes, read_negseq: int, hint: int, path: str, search: bool = True
) -> BlockEntry | bool | None:
    """The first entry at or after ``(key, read_negseq)`` in the data block ``raw[:size]`` (CRC-checked),
    if its key is ``key``; None if there is none; `NEXT_BLOCK` if the block ends among ``key``'s versions.

    ``hint`` is the index of the entry where the key's versions start in this block, if known (from the
    hash index; ``-1`` or a wrong hint costs a search, `_first_index`). With ``search=False`` a wrong hint
    returns `MISSED_HINT` instead: a right one proves the key is in the block, which lets a table lookup
    skip its bloom filter. Cost with a right hint: four `struct` unpacks and two key slices; nothing
    decoded but the entry returned, whose offsets are checked.
    """
    if size < TAIL_SIZE:
        raise CorruptionError("data block shorter than its entry count", path)
    n, width = _TAIL.unpack_from(raw, size - TAIL_SIZE)
    pair = _PAIR.get(width)
    kinds_at = size - TAIL_SIZE - n
    seqs_at = kinds_at - 8 * n
    columns_at = seqs_at - 2 * width * n
    if pair is None or n == 0 or columns_at < 0:
        raise CorruptionError(f"data block of {size} bytes cannot hold {n} entries of width {width}", path)
    # The hint is right when the key at the hint is ``key`` and the key before it (if any) is not (else the
    # hint is inside the key's versions and would skip newer ones): one unpack of the three offsets.
    if 1 < hint < n:
        before, start, end = _TRIPLE[width].unpack_from(raw, columns_at + width * (hint - 2))
        right = raw[start:end] == key and raw[before:start] != key
    elif hint == 1 < n:
        start, end = pair.unpack_from(raw, columns_at)
        right = raw[start:end] == key and raw[:start] != key
    elif hint == 0:
        start = 0
        end = pair.unpack_from(raw, columns_at)[0]
        right = raw[:end] == key
    else:
        right = False
    if not right:
        if not search:
            return MISSED_HINT
        hint = _first_index(raw, key, n, width, columns_at)
        if hint < 0:
            return None
    values_at = columns_at + width * n
    i = hint
    while True:
        negseq = -_U64.unpack_from(raw, seqs_at + 8 * i)[0]
        if negseq >= read_negseq:
            # value i spans value_ends[i-1] (key_ends[n-1] for i = 0, the column just before) to value_ends[i]
            vstart, vend = pair.unpack_from(raw, values_at + width * (i - 1))
            kind = raw[kinds_at + i]
            if not vstart <= vend <= columns_at:
                raise CorruptionError("data block value offsets out of order or outside the block", path)
            if kind == KIND_VALUE:
                return (key, negseq, raw[vstart:vend])
            if kind == KIND_TOMBSTONE and vstart == vend:
                return (key, negseq, None)
            if kind == KIND_LARGE and vend - vstart == 16:
                return (key, negseq, LargeValue(*LARGE_REF.unpack_from(raw, vstart)))
            raise CorruptionError(f"data block entry has kind {kind} with a {vend - vstart}-byte value", path)
        i += 1
        if i == n:
            return NEXT_BLOCK  # the block ends among the key's versions
        start, end = pair.unpack_from(raw, columns_at + width * (i - 1))
        if raw[start:end] != key:
            return None


def _first_index(raw: bytes, key: bytes, n: int, width: int, columns_at: int) -> int:
    """Index of the entry where ``key``'s versions start in the block, or -1 if the key is not in it.

    The keys are stored whole and concatenated, so the key's first entry is the first occurrence of its
    bytes (`bytes.find`, in C) that starts and ends on key boundaries; an occurrence straddling two keys is
    skipped; one unpack of the key ends and a bisection tell which entry an occurrence is. Cost: O(bytes
    of keys) in C and a few Python steps, where a binary search of the keys takes ~6 Python-level probes.
    """
    klen = len(key)
    ends = struct.unpack_from(f"<{n}{_WIDTHS[width]}", raw, columns_at)
    if not klen:  # the empty key sorts first
        return 0 if ends[0] == 0 else -1
    keys_end = min(ends[-1], columns_at)
    p = raw.find(key, 0, keys_end)
    while p >= 0:
        i = bisect_left(ends, p + klen)
        if i < n and ends[i] == p + klen and (ends[i - 1] if i else 0) == p:
            return i
        p = raw.find(key, p + 1, keys_end)
    return -1


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

