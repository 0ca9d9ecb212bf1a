"""Hash index: hash of a key -> the data block holding its newest version, so a point lookup skips the
binary search of the index (and an empty bucket proves the key absent without reading a block).

Hash index block contents::

    width: u8 (2 or 4) | log2 of bucket count: u8 | buckets: width-byte LE unsigned × 2**log2

The bucket of a key is ``h2 & (2**log2 - 1)`` where ``(h1, h2) = key_hashes(key)``; there is one bucket
per distinct key rounded up to a power of two. A bucket holds the number of the first data block
containing the key, EMPTY (all ones: no key of the table hashes here) or COLLISION (all ones - 1: keys of
different blocks hash here; the reader falls back to a binary search of the index's last keys).
Width 2 is used while the table has at most 65 533 data blocks, width 4 beyond.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

from ...errors import CorruptionError

ABSENT = -1
"""`HashIndex.lookup` result: the key is certainly not in the table."""
COLLISION = -2
"""`HashIndex.lookup` result: search the index instead."""

MAX_U16_BLOCKS = 65533
_TYPECODES = {2: "H", 4: "I"}


def _empty_marker(width: int) -> int:
    return (1 << (8 * width)) - 1


def build_hash_index(h2s: Sequence[int], blocks: Sequence[int], num_blocks: int) -> bytes:
    """Hash index block contents for distinct keys with second hash halves ``h2s[i]`` whose first block
    is ``blocks[i]``. Cost: O(keys) Python steps."""
    width = 2 if num_blocks <= MAX_U16_BLOCKS else 4
    empty = _empty_marker(width)
    collision = empty - 1
    log2 = max(0, (len(h2s) - 1).bit_length())
    mask = (1 << log2) - 1
    buckets = array(_TYPECODES[width], [empty]) * (1 << log2)
    for h, block in zip(h2s, blocks):
        i = h & mask
        current = buckets[i]
        if current == empty:
            buckets[i] = block
        elif current != block:
            buckets[i] = collision
    if sys.byteorder == "big":
        buckets.byteswap()
    return bytes((width, log2)) + buckets.tobytes()


class HashIndex:
    """A decoded hash index block; `lookup` is O(1): one array read and two comparisons."""

    __slots__ = ("_buckets", "_collision", "_empty", "_mask", "_num_blocks", "_path")

    def __init__(self, contents: bytes, num_blocks: int, path: str) -> None:
        if len(contents) < 2 or contents[0] not in _TYPECODES or contents[1] > 40:
            raise CorruptionError("hash index block header is invalid", path)
        width, log2 = contents[0], contents[1]
        if len(contents) != 2 + (width << log2):
            raise CorruptionError("hash index block has the wrong length", path)
        if width == 2 and num_blocks > MAX_U16_BLOCKS:
            raise CorruptionError("hash index too narrow for the number of blocks", path)
        buckets = array(_TYPECODES[width])
        buckets.frombytes(contents[2:])
        if sys.byteorder == "big":
            buckets.byteswap()
        self._buckets = buckets
        self._mask = (1 << log2) - 1
        self._num_blocks = num_blocks
        self._empty = _empty_marker(width)
        self._collision = self._empty - 1
        self._path = path

    def lookup(self, h2: int) -> int:
        """The block number for a key with second hash half ``h2``, or ABSENT, or COLLISION."""
        block = self._buckets[h2 & self._mask]
        if block < self._num_blocks:
            return block
        if block == self._empty:
            return ABSENT
        if block == self._collision:
            return COLLISION
        raise CorruptionError(f"hash index names block {block} of {self._num_blocks}", self._path)
