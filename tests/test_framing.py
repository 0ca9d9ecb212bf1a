"""framing.py: records round-trip; a torn tail is dropped; damage before valid records is an error;
salvage skips damage; every single-byte flip of a framed file is detected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byrondbm import CorruptionError
from byrondbm.engine import framing

payloads = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=300)), max_size=8)


@given(payloads)
def test_round_trip(records: list[tuple[int, bytes]]) -> None:
    data = b"".join(framing.frame(t, p) for t, p in records)
    got, end = framing.read_records(data, "f")
    assert got == records
    assert end == len(data)


@given(payloads.filter(bool), st.data())
def test_any_truncation_is_a_torn_tail(records: list[tuple[int, bytes]], data: st.DataObject) -> None:
    frames = [framing.frame(t, p) for t, p in records]
    whole = b"".join(frames)
    cut = data.draw(st.integers(0, len(whole) - 1))
    got, end = framing.read_records(whole[:cut], "f")
    # exactly the records that fit entirely before the cut survive
    fit, pos = 0, 0
    for f in frames:
        if pos + len(f) <= cut:
            fit += 1
            pos += len(f)
        else:
            break
    assert got == records[:fit]
    assert end == pos


def test_zeroed_tail_is_torn_not_a_record() -> None:
    data = framing.frame(1, b"abc") + bytes(64)
    got, end = framing.read_records(data, "f")
    assert got == [(1, b"abc")]
    assert end == framing.HEADER_SIZE + 3


def test_damage_followed_by_a_valid_record_raises_naming_the_file() -> None:
    a, b, c = framing.frame(1, b"first"), framing.frame(1, b"second"), framing.frame(1, b"third")
    damaged = bytearray(a + b + c)
    damaged[len(a) + framing.HEADER_SIZE + 1] ^= 0xFF  # inside "second"'s payload
    with pytest.raises(CorruptionError) as info:
        framing.read_records(bytes(damaged), "/x/000001.log")
    assert "/x/000001.log" in str(info.value)
    assert info.value.filename == "/x/000001.log"


def test_every_byte_flip_is_detected_or_torn() -> None:
    """Flip each byte of a 3-record file: the result is an error, or exactly a prefix of the records
    (a flip in the last record makes it a torn tail). Never a changed record."""
    records = [(1, b"alpha" * 3), (1, b""), (2, b"gamma" * 5)]
    data = b"".join(framing.frame(t, p) for t, p in records)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x5A
        try:
            got, _ = framing.read_records(bytes(damaged), "f")
        except CorruptionError:
            continue
        assert got == records[: len(got)], i


def test_length_beyond_the_file_is_not_trusted() -> None:
    bad = bytearray(framing.frame(1, b"x"))
    bad[4:8] = (2**32 - 1).to_bytes(4, "little")
    assert framing.read_records(bytes(bad), "f") == ([], 0)


def test_iter_valid_salvages_around_damage() -> None:
    a, b, c = framing.frame(1, b"first"), framing.frame(1, b"second"), framing.frame(3, b"third")
    damaged = bytearray(a + b + c)
    damaged[len(a) + 2] ^= 0xFF  # b's CRC
    got = [(t, p) for _, t, p in framing.iter_valid(bytes(damaged) + b"\x00garbage", "f")]
    assert got == [(1, b"first"), (3, b"third")]
