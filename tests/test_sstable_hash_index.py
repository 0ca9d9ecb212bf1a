"""Hash index: every key's bucket names its own slot or an earlier key's, empty buckets prove absence."""

from __future__ import annotations

import random

import pytest

from byrondbm.engine.sstable.bloom import key_hashes
from byrondbm.engine.sstable.hash_index import ABSENT, HashIndex, build_hash_index
from byrondbm.errors import CorruptionError


def test_each_key_maps_to_its_slot_or_an_earlier_one() -> None:
    rng = random.Random(3)
    keys = [b"key-%06d" % i for i in range(5000)]
    stride = 10
    slots = [(i // 40) * stride + (i % 40) // 4 for i in range(len(keys))]
    h2s = [key_hashes(k)[1] for k in keys]
    num_blocks = slots[-1] // stride + 1
    index = HashIndex(build_hash_index(h2s, slots, stride, num_blocks), num_blocks, "t.sst")
    assert index.stride == stride
    outcomes = [index.lookup(h) for h in h2s]
    assert all(0 <= found <= slot for found, slot in zip(outcomes, slots))
    exact = sum(found == slot for found, slot in zip(outcomes, slots))
    assert exact > len(keys) * 0.6  # first-come buckets: ~3/4 of the keys find their own slot
    absent = [index.lookup(key_hashes(rng.randbytes(12))[1]) for _ in range(5000)]
    assert ABSENT in absent  # ~1 bucket a key leaves about a third empty


def test_first_key_keeps_a_shared_bucket() -> None:
    # Four keys, four buckets: hashes 0 and 4 share bucket 0, 1 and 5 share bucket 1, 2 and 3 stay empty.
    index = HashIndex(build_hash_index([0, 4, 1, 5], [1, 2, 3, 3], 1, 4), 4, "t.sst")
    assert index.lookup(8) == 1
    assert index.lookup(9) == 3
    assert index.lookup(2) == ABSENT
    assert index.lookup(7) == ABSENT


def test_width_grows_past_65534_slots() -> None:
    narrow = build_hash_index([0, 1], [0, 65533], 1, 65534)
    assert narrow[0] == 2
    assert HashIndex(narrow, 65534, "t.sst").lookup(1) == 65533
    wide = build_hash_index([0, 1], [0, 70000], 7, 10001)
    assert wide[0] == 4
    index = HashIndex(wide, 10001, "t.sst")
    assert index.lookup(1) == 70000 and index.lookup(0) == 0


def test_single_key() -> None:
    index = HashIndex(build_hash_index([12345], [2], 3, 1), 1, "t.sst")
    assert index.lookup(99) == 2  # one bucket: every hash lands on it


@pytest.mark.parametrize(
    "contents",
    [
        b"",
        b"\x02\x00\x01\x00",  # truncated header
        b"\x03\x00\x01\x00\x00\x00\x00\x00",  # width 3
        b"\x02\x00\x00\x00\x00\x00\x00\x00",  # stride 0
        b"\x02\x02\x01\x00\x00\x00\x00\x00",  # 4 buckets, 1 present
        b"\x02\x30\x01\x00\x00\x00" + b"\x00" * 2,  # log2 48
    ],
)
def test_malformed_blocks(contents: bytes) -> None:
    with pytest.raises(CorruptionError):
        HashIndex(contents, 1, "t.sst")


def test_narrow_index_for_too_many_slots_is_corrupt() -> None:
    with pytest.raises(CorruptionError):
        HashIndex(build_hash_index([0], [0], 2, 1), 40000, "t.sst")


def test_out_of_range_slot_is_corruption() -> None:
    index = HashIndex(build_hash_index([0, 1], [0, 9], 1, 10), 5, "t.sst")
    assert index.lookup(0) == 0
    with pytest.raises(CorruptionError):
        index.lookup(1)
