"""Hash index: every key finds its block (or a collision marker), empty buckets prove absence."""

from __future__ import annotations

import random

import pytest

from byrondbm.engine.sstable.bloom import key_hashes
from byrondbm.engine.sstable.hash_index import (
    ABSENT,
    COLLISION,
    HashIndex,
    build_hash_index,
)
from byrondbm.errors import CorruptionError


def test_each_key_maps_to_its_block_or_collision() -> None:
    rng = random.Random(3)
    keys = [b"key-%06d" % i for i in range(5000)]
    blocks = [i // 40 for i in range(len(keys))]
    h2s = [key_hashes(k)[1] for k in keys]
    index = HashIndex(build_hash_index(h2s, blocks, blocks[-1] + 1), blocks[-1] + 1, "t.sst")
    outcomes = [index.lookup(h) for h in h2s]
    assert all(found in (block, COLLISION) for found, block in zip(outcomes, blocks))
    assert outcomes.count(COLLISION) < len(keys) * 0.7  # most keys are found directly
    absent = [index.lookup(key_hashes(rng.randbytes(12))[1]) for _ in range(5000)]
    assert ABSENT in absent  # ~1 bucket a key leaves about a third empty


def test_forced_collisions() -> None:
    # Four keys, four buckets: hashes 0 and 4 share bucket 0 (blocks 1 and 2: collision),
    # 1 and 5 share bucket 1 (same block 3: no collision), bucket 2 and 3 stay empty.
    contents = build_hash_index([0, 4, 1, 5], [1, 2, 3, 3], 4)
    index = HashIndex(contents, 4, "t.sst")
    assert index.lookup(8) == COLLISION
    assert index.lookup(9) == 3
    assert index.lookup(2) == ABSENT
    assert index.lookup(7) == ABSENT
    # A third key in a collided bucket keeps it collided.
    contents = build_hash_index([0, 4, 8], [1, 2, 1], 3)
    assert HashIndex(contents, 3, "t.sst").lookup(0) == COLLISION


def test_width_grows_past_65533_blocks() -> None:
    narrow = build_hash_index([0, 1], [0, 65532], 65533)
    assert narrow[0] == 2
    assert HashIndex(narrow, 65533, "t.sst").lookup(1) == 65532
    wide = build_hash_index([0, 1], [0, 70000], 70001)
    assert wide[0] == 4
    index = HashIndex(wide, 70001, "t.sst")
    assert index.lookup(1) == 70000 and index.lookup(0) == 0


def test_single_key() -> None:
    index = HashIndex(build_hash_index([12345], [0], 1), 1, "t.sst")
    assert index.lookup(99) == 0  # one bucket: every hash lands on it


@pytest.mark.parametrize(
    "contents",
    [b"", b"\x03\x00\x00\x00\x00", b"\x02\x02\x00\x00", b"\x02\x00" + b"\x00" * 4, b"\x02\x30" + b"\x00" * 2],
)
def test_malformed_blocks(contents: bytes) -> None:
    with pytest.raises(CorruptionError):
        HashIndex(contents, 1, "t.sst")


def test_narrow_index_for_too_many_blocks_is_corrupt() -> None:
    with pytest.raises(CorruptionError):
        HashIndex(build_hash_index([0], [0], 1), 70000, "t.sst")


def test_out_of_range_block_number_is_corruption() -> None:
    index = HashIndex(build_hash_index([0, 1], [0, 9], 10), 5, "t.sst")
    assert index.lookup(0) == 0
    with pytest.raises(CorruptionError):
        index.lookup(1)
