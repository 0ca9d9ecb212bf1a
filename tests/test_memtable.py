from __future__ import annotations

import random
from itertools import chain

from byrondbm.engine.iterators import newest
from byrondbm.engine.memtable import CHUNK, Memtable
from byrondbm.engine.records import MAX_SEQ


def test_put_get_versions_and_counts():
    m = Memtable(1)
    m.put((b"a", -1, b"x"), False)
    m.put((b"b", -2, None), False)
    m.put((b"a", -3, b"y"), True)  # a pinned reader may need the old version
    assert m.get(b"a", -MAX_SEQ) == (b"a", -3, b"y")
    assert m.get(b"a", -2) == (b"a", -1, b"x")
    assert m.get(b"a", 0) is None
    assert m.live == 1 and m.new_keys == [b"a", b"b"] and len(m) == 2
    m.put((b"a", -4, None), False)
    assert m.live == 0 and m.get(b"a", -MAX_SEQ)[2] is None
    assert m.payload_bytes == 6  # a+x, b, a+y, a: keys and values, tombstones carry no value
    m._check()


def test_iter_matches_sorted_entries_in_both_directions_across_chunks():
    rnd = random.Random(3)
    m = Memtable(1)
    seq = 0
    for _ in range(CHUNK * 5):
        seq += 1
        m.put((rnd.randbytes(2), -seq, rnd.choice([None, b"v"])), rnd.random() < 0.3)
    everything = list(m.sorted_entries())
    assert everything == sorted(everything)
    assert list(m.iter()) == everything
    assert list(m.iter(reverse=True)) == everything[::-1]
    lo, hi = sorted([rnd.randbytes(2), rnd.randbytes(2)])
    assert list(m.iter(lo, hi)) == [e for e in everything if lo <= e[0] < hi]
    assert list(m.iter(lo, hi, reverse=True)) == [e for e in everything if lo <= e[0] < hi][::-1]
    m._check()


def test_iter_survives_inserts_between_chunks():
    m = Memtable(1)
    for i in range(CHUNK * 3):
        m.put((b"%05d" % (2 * i), -(i + 1), b"v"), False)
    seen = []
    for n, e in enumerate(m.iter()):
        seen.append(e[0])
        if n % 50 == 0:
            m.put((b"%05d" % (2 * n + 1), -(10_000 + n), b"new"), False)
    assert seen == sorted(set(seen))  # never repeats or goes backwards
    assert {b"%05d" % (2 * i) for i in range(CHUNK * 3)} <= set(seen)


def test_lazy_sort_interleaved_with_scans_and_flush_order():
    """Keys are sorted only when a scan or flush needs them: interleave puts with scans of every kind and
    check each against a model, then the flush order."""
    rnd = random.Random(11)
    m = Memtable(1)
    model: dict[bytes, tuple] = {}
    seq = 0
    for round_ in range(60):
        for _ in range(rnd.choice([0, 1, 7, 300])):  # few pending keys (insertions) or many (one sort)
            seq += 1
            e = (rnd.randbytes(3), -seq, b"v%d" % seq)
            m.put(e, False)
            model[e[0]] = e
        want = [model[k] for k in sorted(model)]
        if round_ % 3 == 0:
            assert list(m.iter()) == want
        elif round_ % 3 == 1:
            assert list(m.iter(reverse=True)) == want[::-1]
        else:
            lo = rnd.randbytes(3)
            assert list(m.iter(lo)) == [e for e in want if e[0] >= lo]
        m._check()
    assert list(m.sorted_entries()) == [model[k] for k in sorted(model)]


def test_scans_from_threads_while_a_writer_inserts():
    import threading

    m = Memtable(1)
    for i in range(2000):
        m.put((b"%06d" % (2 * i), -(i + 1), b"v"), False)
    stop = threading.Event()
    errors: list[BaseException] = []

    def scanner() -> None:
        try:
            while not stop.is_set():
                keys = [e[0] for e in m.iter()]
                assert keys == sorted(set(keys))
                assert {b"%06d" % (2 * i) for i in range(2000)} <= set(keys)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scanner) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(20000):
        m.put((b"%06d" % (2 * (i % 4000) + 1), -(3000 + i), b"w"), False)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    m._check()


def _scan(m: Memtable, read_seq: int, reverse: bool = False, start: bytes | None = None, stop: bytes | None = None,
          merged: bool = False) -> tuple[list[tuple[bytes, bytes]], list[object]]:
    """The visible pairs of a scan of ``m`` at ``read_seq`` and its runs' entries parts (list or callable)."""
    runs = list(m.chunks(start, stop, reverse, -read_seq, merged=merged))
    pairs = list(chain.from_iterable(newest(runs, -read_seq, reverse)))
    return pairs, [run[2] for run in runs if run.__class__ is tuple]


def test_columns_serve_scans_once_built_and_a_write_makes_them_stale():
    m = Memtable(1)
    keys = [b"%05d" % i for i in range(0, 3000, 3)]
    for seq, key in enumerate(random.Random(5).sample(keys, len(keys)), 1):
        m.put((key, -seq, b"v" + key), False)
    model = {k: b"v" + k for k in keys}
    pairs, parts = _scan(m, 1000)  # read run by run: enough to make building the columns worth it
    assert pairs == sorted(model.items()) and all(p.__class__ is list for p in parts)
    for reverse, start, stop, merged in [(False, None, None, False), (True, None, None, True),
                                         (False, b"00100", b"01000", True), (True, b"00100", b"01000", False)]:
        pairs, parts = _scan(m, 1000, reverse, start, stop, merged)
        want = [p for p in sorted(model.items()) if (start is None or p[0] >= start) and (stop is None or p[0] < stop)]
        assert pairs == (want[::-1] if reverse else want)
        assert parts and all(callable(p) for p in parts)  # from the columns: sliced, no dict probe a key
        first = parts[0]()  # type: ignore[operator]  # the first run yielded: the top of the range in reverse
        assert first == [(k, -_seq_of(m, k), v) for k, v in (want[-len(first):] if reverse else want[: len(first)])]
    m._check()
    # A reader older than some entry of the columns reads the map, and filters by sequence number.
    older = _scan(m, 500)[0]
    assert older == sorted((k, v) for k, v in model.items() if _seq_of(m, k) <= 500)
    # A write leaves the columns stale: the next scan reads the map, and sees it.
    m.put((b"00001", -1001, b"new"), False)
    model[b"00001"] = b"new"
    pairs, parts = _scan(m, 1001)
    assert pairs == sorted(model.items()) and all(p.__class__ is list for p in parts)
    # A tombstone keeps them from being built at all; scans stay right.
    m.put((b"00003", -1002, None), False)
    del model[b"00003"]
    for _ in range(3):
        pairs, parts = _scan(m, 1002)
        assert pairs == sorted(model.items()) and not any(callable(p) for p in parts)
    m._check()


def _seq_of(m: Memtable, key: bytes) -> int:
    e = m.newest(key)
    assert e is not None
    return -e[1]


def test_scans_at_their_sequence_number_while_writes_come_in_bursts():
    """Columns are built in the pauses between bursts and go stale in the middle of scans: every scan must
    see exactly the keys written up to its sequence number."""
    import threading
    import time

    m = Memtable(1)
    written: list[bytes] = []  # key of sequence number i + 1
    for i in range(1500):
        written.append(b"%06d" % (7 * i % 10007))
        m.put((written[-1], -(i + 1), b"v%d" % i), False)
    published = [len(written)]
    stop = threading.Event()
    errors: list[BaseException] = []
    built = [0]

    def scanner(reverse: bool) -> None:
        try:
            while not stop.is_set():
                seq = published[0]
                pairs, parts = _scan(m, seq, reverse, merged=reverse)
                want = sorted((written[i], b"v%d" % i) for i in range(seq))
                assert pairs == (want[::-1] if reverse else want), seq
                built[0] += any(callable(p) for p in parts)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scanner, args=(r,)) for r in (False, True, False)]
    for t in threads:
        t.start()
    rnd = random.Random(9)
    for burst in range(60):
        for _ in range(rnd.randrange(1, 40)):
            i = len(written)
            written.append(b"%06d" % (7 * i % 10007))
            m.put((written[-1], -(i + 1), b"v%d" % i), False)
            published[0] = i + 1  # as the engine: a write is published once stored
        time.sleep(rnd.choice([0, 0.001, 0.01]))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert built[0], "no scan used the columns: the test did not test them"
    m._check()
