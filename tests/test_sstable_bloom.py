"""Bloom filter: no false negatives, a measured false-positive rate, probe counts, damage detection."""

from __future__ import annotations

import random

import mmh3
import pytest

from byrondbm.engine.sstable.bloom import (
    BloomFilter,
    build_filter,
    key_hashes,
    probe_count,
)
from byrondbm.errors import CorruptionError


def make_filter(keys: list[bytes], bits_per_key: int) -> BloomFilter:
    hashes = [key_hashes(k) for k in keys]
    return BloomFilter(build_filter([h[0] for h in hashes], [h[1] for h in hashes], bits_per_key), "f.sst")


def test_key_hashes_is_unsigned_mmh3_x64() -> None:
    h1, h2 = key_hashes(b"hello")
    assert (h1, h2) == mmh3.hash64(b"hello", signed=False)
    assert 0 <= h1 < 1 << 64 and 0 <= h2 < 1 << 64
    assert key_hashes(b"") == key_hashes(b"")


def test_probe_count_formula() -> None:
    assert probe_count(10) == 5
    assert probe_count(1) == 1
    assert probe_count(5) == 3
    assert probe_count(64) == 30


def test_no_false_negatives_and_false_positive_rate() -> None:
    rng = random.Random(7)
    present = [rng.randbytes(rng.randint(1, 24)) for _ in range(20_000)]
    bloom = make_filter(present, 10)
    assert bloom.probes == 5
    assert all(bloom.may_contain(key_hashes(k)) for k in present)
    present_set = set(present)
    absent = [k for k in (b"absent-%d" % i for i in range(100_000)) if k not in present_set]
    false_positives = sum(bloom.may_contain(key_hashes(k)) for k in absent)
    rate = false_positives / len(absent)
    assert rate <= 0.02, rate
    assert rate > 0  # a 10-bit filter is not perfect; zero would mean it answers "absent" blindly


def test_fewer_bits_more_false_positives() -> None:
    keys = [b"k%d" % i for i in range(5000)]
    absent = [b"x%d" % i for i in range(20_000)]
    rates = []
    for bits in (2, 6, 14):
        bloom = make_filter(keys, bits)
        assert all(bloom.may_contain(key_hashes(k)) for k in keys)
        rates.append(sum(bloom.may_contain(key_hashes(k)) for k in absent))
    assert rates[0] > rates[1] > rates[2]


def test_zero_bits_per_key_means_always_maybe() -> None:
    contents = build_filter([1, 2], [3, 4], 0)
    assert contents == b"\x00"
    bloom = BloomFilter(contents, "f.sst")
    assert bloom.probes == 0
    assert all(bloom.may_contain(key_hashes(b"%d" % i)) for i in range(1000))


def test_single_key_filter() -> None:
    bloom = make_filter([b""], 10)
    assert bloom.may_contain(key_hashes(b""))
    assert sum(bloom.may_contain(key_hashes(b"%d" % i)) for i in range(1000)) < 100


@pytest.mark.parametrize("contents", [b"", b"\x1f" + b"\xff" * 8, b"\x00\xff", b"\x07"])
def test_malformed_filter_blocks(contents: bytes) -> None:
    with pytest.raises(CorruptionError):
        BloomFilter(contents, "f.sst")
