"""Hash index: hash of a key -> the data block *and entry* where its newest version starts, so a point lookup
usually skips the binary searches of the index and of the block, and decodes only the entry it returns (an
empty bucket proves the key absent without reading a block).

Hash index block contents::

    width: u8 (2 or 4) | log2 of bucket count: u8 | stride: u32 | buckets: width-byte LE unsigned × 2**log2

A key's *home* bucket is ``h2 & (2**log2 - 1)`` and its *second* bucket ``(h2 >> 32) & (2**log2 - 1)``,
where ``(h1, h2) = key_hashes(key)``; there is one bucket per distinct key rounded up to a power of two.
A bucket holds EMPTY (all ones) or a *slot* ``block × stride + entry`` (``entry`` the index in the block
of a key's first entry; ``stride`` the largest number of entries of any data block). A key's home bucket
holds the slot of the first key (in table order) whose home it is: so EMPTY in a key's home bucket proves
the key absent. A bucket that is no key's home may hold the slot of a key whose home was taken and whose
second bucket it is (the first such key in table order). So a bucket is a hint, not a proof: when the key
is not found from either bucket's slot, the reader falls back to a search of the index's last keys and of
the block's keys. (First-come home buckets alone send 21–37 % of present keys to the fallback; the second
buckets bring back about half of those. Tables written before second buckets existed leave those buckets
EMPTY or naming other keys; a reader finds nothing there and falls back, so both read alike.)
Width 2 is used while ``blocks × stride`` is at most 65 534, 4 beyond.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence

from ...errors import CorruptionError

ABSENT = -1
"""`HashIndex.lookup` result: the key is certainly not in the table."""

MAX_U16_SLOTS = 65534
MAX_U32_SLOTS = (1 << 32) - 2
_TYPECODES = {2: "H", 4: "I"}
_HEADER = struct.Struct("<BBI")


def _empty_marker(width: int) -> int:
    return (1 << (8 * width)) - 1


def build_hash_index(h2s: Sequence[int], slots: Sequence[int], stride: int, num_blocks: int) -> bytes:
    """Hash index block contents for distinct keys, in table order, with second hash halves ``h2s[i]`` whose
    first entry is in slot ``slots[i]`` (``block × stride + entry``): home buckets first, then second
    buckets for the keys that lost theirs. Cost: O(keys) Python steps."""
    num_slots = num_blocks * stride
    if num_slots > MAX_U32_SLOTS:
        raise ValueError(f"table of {num_blocks} blocks of {stride} entries is too large")
    width = 2 if num_slots <= MAX_U16_SLOTS else 4
    empty = _empty_marker(width)
    log2 = max(0, (len(h2s) - 1).bit_length())
    mask = (1 << log2) - 1
    buckets = array(_TYPECODES[width], [empty]) * (1 << log2)
    homeless = []
    for h, slot in zip(h2s, slots):
        i = h & mask
        if buckets[i] == empty:
            buckets[i] = slot
        else:
            homeless.append((h, slot))
    homes = set(h & mask for h in h2s)
    for h, slot in homeless:  # in table order: the first key whose second bucket it is keeps it
        i = (h >> 32) & mask
        if i not in homes and buckets[i] == empty:
            buckets[i] = slot
    if sys.byteorder == "big":
        buckets.byteswap()
    return _HEADER.pack(width, log2, stride) + buckets.tobytes()


class HashIndex:
    """A decoded hash index block; `lookup` is O(1): one array read and a comparison."""

    __slots__ = ("_empty", "_path", "buckets", "mask", "num_slots", "stride")

    def __init__(self, contents: bytes, num_blocks: int, path: str) -> None:
        if len(contents) < _HEADER.size:
            raise CorruptionError("hash index block header is truncated", path)
        width, log2, stride = _HEADER.unpack_from(contents, 0)
        if width not in _TYPECODES or log2 > 40 or stride == 0:
            raise CorruptionError("hash index block header is invalid", path)
        if len(contents) != _HEADER.size + (width << log2):
            raise CorruptionError("hash index block has the wrong length", path)
        num_slots = num_blocks * stride
        if num_slots > (MAX_U16_SLOTS if width == 2 else MAX_U32_SLOTS):
            raise CorruptionError("hash index too narrow for the number of blocks", path)
        buckets = array(_TYPECODES[width])
        buckets.frombytes(contents[_HEADER.size :])
        if sys.byteorder == "big":
            buckets.byteswap()
        self.buckets = buckets
        """Read directly by `TableReader.get` (the fast path of `lookup`: a slot below ``num_slots``)."""
        self.mask = (1 << log2) - 1
        self.num_slots = num_slots
        self.stride: int = stride
        """Slots per data block: a slot is ``block × stride + entry``."""
        self._empty = _empty_marker(width)
        self._path = path

    def lookup(self, h2: int) -> int:
        """The slot hinted for a key with second hash half ``h2``, or ABSENT."""
        slot = self.buckets[h2 & self.mask]
        if slot < self.num_slots:
            return slot
        if slot == self._empty:
            return ABSENT
        raise CorruptionError(f"hash index names slot {slot} of {self.num_slots}", self._path)
