from __future__ import annotations

import random

import pytest

from byrondbm.engine.iterators import merge, merge_chunks, merge_visible, prefix_bounds, visible


def _sources(rnd: random.Random, n: int):
    seq = 0
    out = []
    for _ in range(n):
        entries = set()
        for _ in range(rnd.randrange(0, 60)):
            seq += 1
            entries.add((rnd.randbytes(1), -seq, None if rnd.random() < 0.25 else b"%d" % seq))
        out.append(sorted(entries))
    return out, seq


def _chunked(rnd: random.Random, entries: list) -> list[list]:
    """``entries`` cut at random places into chunks, empty ones included (a source may yield them)."""
    cuts = sorted(rnd.randrange(len(entries) + 1) for _ in range(rnd.randrange(0, 6)))
    return [entries[a:b] for a, b in zip([0, *cuts], [*cuts, len(entries)])]


@pytest.mark.parametrize("seed", range(40))
def test_merge_visible_equals_reference(seed):
    rnd = random.Random(seed)
    sources, top = _sources(rnd, rnd.randrange(1, 6))
    for read in [0, top // 2, top]:
        expect = {}
        for key, negseq, value in sorted(e for s in sources for e in s):
            if -negseq <= read and key not in expect:
                expect[key] = value
        want = [(k, v) for k, v in sorted(expect.items()) if v is not None]
        chunked = [_chunked(rnd, s) for s in sources]
        assert list(merge_visible(chunked, -read, [True])) == want
        assert list(visible(merge(sources), -read)) == want
        assert list(visible(merge([s[::-1] for s in sources], reverse=True), -read, reverse=True)) == want[::-1]


def test_merge_visible_stops_when_closed():
    from byrondbm import error

    alive = [True]
    it = merge_visible([[[(b"a", -1, b"1"), (b"b", -2, b"2")]]], -5, alive)
    assert next(it) == (b"a", b"1")
    alive[0] = False
    with pytest.raises(error):
        next(it)


def test_prefix_bounds():
    assert prefix_bounds(b"ab", None, None) == (b"ab", b"ac")
    assert prefix_bounds(b"a\xff", None, None) == (b"a\xff", b"b")
    assert prefix_bounds(b"\xff\xff", None, None) == (b"\xff\xff", None)
    assert prefix_bounds(b"ab", b"abc", b"abd") == (b"abc", b"abd")
    assert prefix_bounds(b"ab", b"a", b"z") == (b"ab", b"ac")


@pytest.mark.parametrize("seed", range(60))
def test_merge_chunks_is_a_sort_of_every_entry(seed):
    """Any number of sources, cut into chunks anywhere (empty chunks too), with versions of one key
    spread over sources: the merged chunks concatenate to the sorted union."""
    rnd = random.Random(seed)
    sources, _ = _sources(rnd, rnd.randrange(0, 7))
    merged = list(merge_chunks([iter(_chunked(rnd, s)) for s in sources]))
    assert [e for chunk in merged for e in chunk] == sorted(e for s in sources for e in s)
