from __future__ import annotations

import random

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
