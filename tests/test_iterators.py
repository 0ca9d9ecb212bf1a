from __future__ import annotations

import random

import pytest

from byrondbm.engine.iterators import merge_runs, newest, prefix_bounds


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


def _reference(sources: list, read: int) -> list:
    """The visible pairs at sequence number ``read``: of each key the newest version at or below it."""
    expect = {}
    for key, negseq, value in sorted(e for s in sources for e in s):
        if -negseq <= read and key not in expect:
            expect[key] = value
    return [(k, v) for k, v in sorted(expect.items()) if v is not None]


def _as_runs(rnd: random.Random, entries: list, read: int | None, reverse: bool) -> list:
    """``entries`` cut into runs in the stream's order (downwards when ``reverse``); with ``read``, the runs
    clean for that reader (no tombstone, one version a key, none newer) come as `Clean` columns."""
    runs = _chunked(rnd, entries)
    if reverse:
        runs.reverse()
    out = []
    for run in runs:
        keys = [e[0] for e in run]
        clean = (
            read is not None and run and all(e[2] is not None and -e[1] <= read for e in run)
            and len(set(keys)) == len(keys)
        )
        out.append((keys, [e[2] for e in run]) if clean else run)
    return out


@pytest.mark.parametrize("seed", range(60))
def test_newest_of_merged_runs_equals_reference_both_ways(seed):
    rnd = random.Random(seed)
    sources, top = _sources(rnd, rnd.randrange(1, 6))
    for read in [0, top // 2, top]:
        want = _reference(sources, read)
        for reverse in (False, True):
            merged = merge_runs([iter(_as_runs(rnd, s, None, reverse)) for s in sources], reverse)
            got = [p for part in newest(merged, -read, reverse) for p in part]
            assert got == (want[::-1] if reverse else want), (read, reverse)
        flat = sorted(e for s in sources for e in s)  # one run (in entry order, read backwards in reverse)
        assert [p for part in newest([flat], -read) for p in part] == want
        assert [p for part in newest([flat], -read, True) for p in part] == want[::-1]


@pytest.mark.parametrize("seed", range(80))
def test_newest_of_one_source_with_clean_runs_equals_reference_both_ways(seed):
    """A lone source passed through: runs and clean columns mixed, a key's versions cut across runs."""
    rnd = random.Random(seed)
    sources, top = _sources(rnd, 1)
    (entries,) = sources
    if rnd.random() < 0.5:  # mostly one version a key and no tombstones: many runs are clean
        entries = sorted({e[0]: (e[0], e[1], e[2] or b"v") for e in reversed(entries)}.values())
        entries += [(e[0], e[1] - top - 1, b"old") for e in entries if rnd.random() < 0.2]
        entries.sort()
    for read in [0, top // 2, top, top * 3]:
        want = _reference([entries], read)
        for reverse in (False, True):
            got = [p for part in newest(_as_runs(rnd, entries, read, reverse), -read, reverse) for p in part]
            assert got == (want[::-1] if reverse else want), (read, reverse)


@pytest.mark.parametrize("seed", range(30))
def test_merge_runs_reverse_is_a_descending_sort_of_every_entry(seed):
    rnd = random.Random(seed)
    sources, _ = _sources(rnd, rnd.randrange(0, 7))
    merged = list(merge_runs([iter(_as_runs(rnd, s, None, True)) for s in sources], reverse=True))
    assert all(run == sorted(run) for run in merged)
    assert [e for run in reversed(merged) for e in run] == sorted(e for s in sources for e in s)


def test_merge_runs_reads_a_source_no_further_than_the_round_needs():
    reads = []

    def source(name: str, runs: list):
        for run in runs:
            reads.append(name)
            yield run

    a = source("a", [[(b"a", -1, b"1")], [(b"c", -3, b"3")]])
    b = source("b", [[(b"b", -2, b"2")], [(b"d", -4, b"4")]])
    merged = merge_runs([a, b])
    assert next(merged) == [(b"a", -1, b"1")]
    assert reads == ["a", "b"]  # a's run is used up, but its next one is not read until the next round


def test_prefix_bounds():
    assert prefix_bounds(b"ab", None, None) == (b"ab", b"ac")
    assert prefix_bounds(b"a\xff", None, None) == (b"a\xff", b"b")
    assert prefix_bounds(b"\xff\xff", None, None) == (b"\xff\xff", None)
    assert prefix_bounds(b"ab", b"abc", b"abd") == (b"abc", b"abd")
    assert prefix_bounds(b"ab", b"a", b"z") == (b"ab", b"ac")


@pytest.mark.parametrize("seed", range(60))
def test_merge_runs_is_a_sort_of_every_entry(seed):
    """Any number of sources, cut into chunks anywhere (empty chunks too), with versions of one key
    spread over sources: the merged chunks concatenate to the sorted union."""
    rnd = random.Random(seed)
    sources, _ = _sources(rnd, rnd.randrange(0, 7))
    merged = list(merge_runs([iter(_chunked(rnd, s)) for s in sources]))
    assert [e for chunk in merged for e in chunk] == sorted(e for s in sources for e in s)


def _as_clean_runs(rnd: random.Random, entries: list, read: int, reverse: bool = False) -> list:
    """``entries`` cut into runs in the stream's order, those clean for ``read`` as `Clean` ``(keys, values,
    entries)`` (the entries sometimes as a callable, as a table gives them), the others as lists. Reverse,
    a run whose first key continues from the run below is not clean (what `merge_runs` asks of sources)."""
    out = []
    below: list = []
    for run in _chunked(rnd, entries):
        keys = [e[0] for e in run]
        clean = run and all(e[2] is not None and -e[1] <= read for e in run) and len(set(keys)) == len(keys)
        if reverse and run and below and below[-1][0] == run[0][0]:
            clean = False
        below = run or below
        if not clean:
            out.append(run)
        else:
            out.append((keys, [e[2] for e in run], run if rnd.random() < 0.5 else (lambda run=run: run)))
    return out[::-1] if reverse else out


@pytest.mark.parametrize("seed", range(80))
def test_merge_of_clean_runs_resolves_rounds_to_the_reference_both_ways(seed):
    """Sources newest first, each source's versions older than those of every source before it (the LSM
    invariant), some runs clean: merged rounds come out as resolved columns or sorted entries, and
    `newest` of them equals the reference, a key's versions cut across runs and sources included."""
    rnd = random.Random(seed)
    n = rnd.randrange(1, 6)
    key_space = [bytes([c]) for c in range(rnd.choice([4, 30, 200]))]
    sources: list[list] = [[] for _ in range(n)]
    seq = 0
    for i in reversed(range(n)):  # the oldest source first: it gets the smallest sequence numbers
        for key in rnd.sample(key_space, rnd.randrange(len(key_space) + 1)):
            for _ in range(1 if rnd.random() < 0.8 else rnd.randrange(2, 4)):
                seq += 1
                value = None if rnd.random() < 0.05 else b"%d" % seq
                sources[i].append((key, -seq, value))
        sources[i].sort()
    resolved = 0
    for read in [seq // 3, seq]:
        want = _reference(sources, read)
        for reverse in (False, True):
            merged = list(merge_runs([iter(_as_clean_runs(rnd, s, read, reverse)) for s in sources], reverse))
            resolved += sum(type(r) is tuple for r in merged)
            got = [p for part in newest(merged, -read, reverse) for p in part]
            assert got == (want[::-1] if reverse else want), (read, reverse)
    if seed == 0:
        assert resolved  # the resolved path is exercised
