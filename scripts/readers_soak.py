#!/usr/bin/env python3
"""Readers beside a writer: one writer process and several reader processes on one database, checked
against the writer's own record of what it acknowledged; then the costs a reader pays.

The writer applies a seeded stream of operations (puts, overwrites, deletes, small batches) with tiny
memtables and a tiny manifest limit, so flushes, compactions and manifest switches happen all the time.
Operation ``i`` is a pure function of ``(seed, i)``; every value written names its key and ``i``. After each
call returns the writer stores ``i`` in shared memory (the acknowledgement). Each reader process, in a loop:
opens (now and then anew), reads the acknowledgement ``n``, refreshes, scans everything and reads the
acknowledgement ``a`` again, and checks that

- the scan is sorted and never repeats a key, and equals the state after some operation ``m`` with
  ``n <= m <= a + 1`` (every write acknowledged before the refresh is seen; nothing torn; nothing invented;
  ``a + 1``: the one call in flight);
- ``len()`` equals the scan's length (exact count);
- point gets of random keys return a value some operation in that window wrote for that key, or none when
  the key's state in the window allows it;
- a scan interrupted by refreshes, and a snapshot taken before several refreshes, keep their point in time.

Half the readers use ``refresh_interval`` instead of calling ``refresh()``. ``--kill`` kills the writer
(and its compaction workers) with SIGKILL halfway through: the readers keep reading, a new writer recovers
(re-applying the one call that may have been in flight: every operation is idempotent) and the readers
refresh onto its state.

Usage::

    python scripts/readers_soak.py --seconds 60           # soak, then the measurements
    python scripts/readers_soak.py --seconds 20 --kill --no-measure

Exit status 0 when every check passed; a JSON summary is printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import byrondbm  # noqa: E402
from byrondbm.engine.manifest import read_current  # noqa: E402

SMALL_OPTIONS = dict(memtable_size=4096, target_file_size=4096, level1_size=16384, block_size=512,
                     l0_compaction_trigger=2, l0_slowdown_trigger=4, l0_stop_trigger=6)
MANIFEST_LIMIT = 8192  # bytes: the writer switches manifests every few dozen edits
KEYS = 400
INTERVAL = 0.002  # refresh_interval of the readers that do not call refresh()
Op = list[tuple[bytes, Optional[bytes]]]


def operation(seed: int, i: int) -> Op:
    """Operation ``i`` (from 1) of the stream: one put or delete, or a batch of 2-5 of them."""
    r = random.Random(seed * 1_000_003 + i)
    keys = [b"k%04d" % k for k in r.sample(range(KEYS), 1 if r.random() < 0.9 else r.randint(2, 5))]
    return [(k, None if r.random() < 0.25 else k + b"=%d." % i + b"v" * r.randrange(60)) for k in keys]


def apply(state: dict[bytes, bytes], op: Op) -> None:
    for k, v in op:
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v


# ---------------------------------------------------------------------------------------------- writer


def writer(path: str, seed: int, ack: Any, stop: Any, first: int) -> None:
    """Apply operations ``first``, ``first + 1``, ... until ``stop`` is set, acknowledging each. Runs in a
    process group of its own, so killing the group kills its compaction workers with it."""
    import byrondbm.engine.versionset as versionset

    os.setpgrp()
    parent = os.getppid()

    versionset.MANIFEST_ROTATE = MANIFEST_LIMIT
    db = byrondbm.open(path, "c", timeout=30, **SMALL_OPTIONS)
    i = first
    while not stop.value and os.getppid() == parent:  # an orphan (the soak was killed) stops too
        op = operation(seed, i)
        if len(op) == 1:
            k, v = op[0]
            if v is None:
                db.pop(k, None)
            else:
                db[k] = v
        else:
            with db.batch() as b:
                for k, v in op:
                    if v is None:
                        b.delete(k)
                    else:
                        b.put(k, v)
        ack.value = i
        i += 1
    db.close()


# ---------------------------------------------------------------------------------------------- readers


class Model:
    """The writer's stream as a reader reconstructs it: the state after operation ``base`` and the
    operations after it, up to the highest acknowledgement seen plus one."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.base = 0
        self.state: dict[bytes, bytes] = {}
        self.ops: list[Op] = []  # operations base+1, base+2, ...

    def advance(self, n: int) -> None:
        """Move ``base`` up to ``n`` (acknowledgements only grow)."""
        while self.base < n:
            op = self.ops.pop(0) if self.ops else operation(self.seed, self.base + 1)
            apply(self.state, op)
            self.base += 1

    def window(self, a: int) -> list[Op]:
        """Operations base+1 .. a+1."""
        while self.base + len(self.ops) < a + 1:
            self.ops.append(operation(self.seed, self.base + len(self.ops) + 1))
        return self.ops[: a + 1 - self.base]

    def matches_prefix(self, seen: dict[bytes, bytes], a: int) -> bool:
        """True when ``seen`` is the state after some operation in ``base .. a + 1``."""
        state = dict(self.state)
        bad = {k for k in state.keys() | seen.keys() if state.get(k) != seen.get(k)}
        nothing: Op = []
        for op in [nothing] + self.window(a):
            apply(state, op)
            for k, _ in op:
                if state.get(k) == seen.get(k):
                    bad.discard(k)
                else:
                    bad.add(k)
            if not bad:
                return True
        return False

    def allowed(self, key: bytes, a: int) -> set[Optional[bytes]]:
        """Every state ``key`` may be in after some operation in ``base .. a + 1``."""
        values = {self.state.get(key)}
        for op in self.window(a):
            values.update(v for k, v in op if k == key)
        return values


def _scan(db: Any, reader: int, what: str, refresh_every: int = 0) -> dict[bytes, bytes]:
    """Everything the scan yields, checked sorted and unrepeated; refreshes every ``refresh_every`` keys."""
    seen: dict[bytes, bytes] = {}
    last = None
    for j, (k, v) in enumerate(db.items()):
        if last is not None and k <= last:
            raise AssertionError(f"reader {reader}: {what} not sorted or repeated: {last!r} then {k!r}")
        last = k
        seen[k] = v
        if refresh_every and j % refresh_every == 0:
            db.refresh()
    return seen


def reader(path: str, seed: int, index: int, ack: Any, stop: Any, results: Any) -> None:
    """One reader process: loop over open / refresh / scan / get / snapshot until ``stop``; put a summary
    (or the first failure) on ``results``."""
    rng = random.Random(index)
    model = Model(seed)
    counts = dict(refreshes=0, scans=0, gets=0, snapshots=0, opens=0, window_max=0)
    options: dict[str, Any] = dict(refresh_interval=INTERVAL) if index % 2 else {}
    explicit = not options
    parent = os.getppid()
    try:
        db = None
        while not stop.value and os.getppid() == parent:  # an orphan (the soak was killed) stops too
            if db is None or rng.random() < 0.05:
                if db is not None:
                    db.close()
                n = ack.value
                db = byrondbm.open(path, "r", **options)
                counts["opens"] += 1
            else:
                n = ack.value
                if explicit:
                    db.refresh()
                    counts["refreshes"] += 1
                else:
                    time.sleep(INTERVAL)  # the scan below refreshes first: it sees operation n
            model.advance(n)
            seen = _scan(db, index, "scan")
            size = len(db)
            a = ack.value
            counts["scans"] += 1
            counts["window_max"] = max(counts["window_max"], a + 1 - n)
            if not model.matches_prefix(seen, a):
                raise AssertionError(f"reader {index}: scan is no state between operations {n} and {a + 1}")
            if explicit and size != len(seen):
                raise AssertionError(f"reader {index}: len() is {size}, the scan holds {len(seen)}")
            for _ in range(20):
                key = b"k%04d" % rng.randrange(KEYS)
                got = db.get(key)
                counts["gets"] += 1
                if got not in model.allowed(key, ack.value):
                    raise AssertionError(f"reader {index}: get({key!r}) returned {got!r}, never its state "
                                         f"between operations {n} and {ack.value + 1}")
            if explicit and rng.random() < 0.3:  # a scan and a snapshot keep their point across refreshes
                n = ack.value
                db.refresh()
                snap = db.snapshot()
                a = ack.value
                model.advance(n)
                interrupted = _scan(db, index, "interrupted scan", refresh_every=37)
                time.sleep(0.002)
                db.refresh()
                frozen = _scan(snap, index, "snapshot scan")
                gets = {k: snap.get(k) for k in list(frozen)[:20]}
                snap.close()
                counts["snapshots"] += 1
                if not model.matches_prefix(frozen, a) or any(frozen[k] != v for k, v in gets.items()):
                    raise AssertionError(f"reader {index}: snapshot left its point in time")
                if not model.matches_prefix(interrupted, ack.value):
                    raise AssertionError(f"reader {index}: scan interrupted by refreshes is no single state")
        if db is not None:
            db.close()
        results.put(("ok", index, counts))
    except BaseException as e:  # reported to the parent, which fails the run
        results.put(("failed", index, f"{type(e).__name__}: {e}"))


# ---------------------------------------------------------------------------------------------- the run


def soak(seconds: float, readers: int = 4, seed: int = 1, kill: bool = False) -> dict[str, Any]:
    """Run one writer and ``readers`` reader processes for ``seconds``; with ``kill``, SIGKILL the writer
    halfway and start another. Returns a summary; raises AssertionError on the first failed check.
    Every process started here is gone when it returns."""
    ctx = multiprocessing.get_context("spawn")
    directory = tempfile.mkdtemp(prefix="readers-soak-")
    db_path = os.path.join(directory, "db")
    ack = ctx.Value("q", 0, lock=False)
    stop_writer = ctx.Value("b", 0, lock=False)
    stop_readers = ctx.Value("b", 0, lock=False)
    results = ctx.Queue()
    procs: list[Any] = []
    writers: list[Any] = []
    try:
        w = ctx.Process(target=writer, args=(db_path, seed, ack, stop_writer, 1))
        w.start()
        procs.append(w)
        writers.append(w)
        while ack.value < 50:  # the database exists and holds something
            if not w.is_alive():
                raise AssertionError(f"writer exited with {w.exitcode}")
            time.sleep(0.01)
        for index in range(readers):
            p = ctx.Process(target=reader, args=(db_path, seed, index, ack, stop_readers, results))
            p.start()
            procs.append(p)
        start = time.monotonic()
        kills = 0
        manifests = set()  # the manifests CURRENT named, polled: a lower bound of the writer's switches
        while time.monotonic() - start < seconds:
            if kill and not kills and time.monotonic() - start > seconds / 2:
                os.killpg(w.pid, signal.SIGKILL)  # the writer and its workers, at once
                w.join()
                kills += 1
                time.sleep(min(1.0, seconds / 10))  # readers read beside no writer
                w = ctx.Process(target=writer, args=(db_path, seed, ack, stop_writer, ack.value + 1))
                w.start()
                procs.append(w)
                writers.append(w)
            try:
                manifests.add(read_current(db_path))
            except byrondbm.error:
                pass
            time.sleep(0.01)
        stop_readers.value = 1
        summaries = []
        for _ in range(readers):
            status, index, detail = results.get(timeout=120)
            if status != "ok":
                raise AssertionError(detail)
            summaries.append(detail)
        stop_writer.value = 1
        w.join(60)
        if w.exitcode != 0:
            raise AssertionError(f"writer exited with {w.exitcode}")
        final = byrondbm.open(db_path, "r")
        model = Model(seed)
        model.advance(ack.value)
        if dict(final.items()) != model.state:
            raise AssertionError("the final state is not the state after the last acknowledged operation")
        final.close()
        total = {k: sum(s[k] for s in summaries) for k in summaries[0] if k != "window_max"}
        return dict(seconds=seconds, readers=readers, writes=ack.value, writer_kills=kills,
                    manifests_seen=len(manifests),
                    window_max=max(s["window_max"] for s in summaries), **total)
    finally:
        stop_readers.value = stop_writer.value = 1
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        for p in writers:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # a worker left by a killed writer
            except ProcessLookupError:
                pass
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- costs


def _reader_gets(path: str, keys: list[bytes], go: Any, out: Any) -> None:
    """A reader process timing one round of ``keys`` each time ``go`` says so (None: stop)."""
    db = byrondbm.open(path, "r")
    while go.get() is not None:
        out.put(_gets_per_call(db, keys))
    db.close()


def _gets_per_call(db: Any, keys: list[bytes]) -> float:
    """Microseconds a get, best of 3 passes over ``keys`` (after one warming pass: both sides warm)."""
    get = db.get
    for k in keys:
        get(k)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for k in keys:
            get(k)
        best = min(best, (time.perf_counter() - t) / len(keys))
    return best * 1e6


def measure(entries: int = 100_000, rounds: int = 5) -> dict[str, float]:
    """The reader's costs, in one run: gets in a reader process vs the same gets in the writer process
    (rounds alternate, so load on the machine hits both alike; best round each); a refresh when nothing
    changed; a refresh after 10,000 new writes vs reading the same 10,000 writes from a log as recovery
    does, and vs getting their 10,000 keys."""
    from byrondbm.engine.memtable import Memtable
    from byrondbm.engine.recovery import replay

    ctx = multiprocessing.get_context("spawn")
    directory = tempfile.mkdtemp(prefix="readers-measure-")
    path = os.path.join(directory, "db")
    p = None
    try:
        w = byrondbm.open(path, "c")
        for i in range(entries):
            w[b"key%09d" % i] = b"value" * 20
        w.compact()  # no background work left to disturb the timings
        rng = random.Random(7)
        keys = [b"key%09d" % rng.randrange(entries) for _ in range(20_000)]
        go, out = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=_reader_gets, args=(path, keys, go, out))
        p.start()
        writer_get, reader_get = [], []
        for _ in range(rounds):
            writer_get.append(_gets_per_call(w, keys))
            go.put(True)
            reader_get.append(out.get(timeout=600))
        go.put(None)
        p.join()

        r = byrondbm.open(path, "r")
        n = 20_000
        idle = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(n):
                r.refresh()
            idle = min(idle, (time.perf_counter() - t) / n * 1e6)
        new = [b"new%09d" % i for i in range(10_000)]
        for k in new:  # all in the active log (the default memtable holds them)
            w[k] = b"fresh" * 20
        t = time.perf_counter()
        r.refresh()
        refresh_10k = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        replay(w._engine._wal.path, Memtable(0), 0)  # type: ignore[union-attr]
        replay_10k = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        for k in new:
            assert r[k] == b"fresh" * 20
        get_10k = (time.perf_counter() - t) * 1e3
        r.close()
        w.close()
        return dict(writer_get_us=round(min(writer_get), 2), reader_get_us=round(min(reader_get), 2),
                    reader_vs_writer=round(min(reader_get) / min(writer_get), 3), idle_refresh_us=round(idle, 2),
                    refresh_after_10k_writes_ms=round(refresh_10k, 1), replay_10k_writes_ms=round(replay_10k, 1),
                    get_10k_keys_ms=round(get_10k, 1), load_average=round(os.getloadavg()[0], 1))
    finally:
        if p is not None and p.is_alive():
            p.kill()
            p.join()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kill", action="store_true", help="SIGKILL the writer halfway and start another")
    ap.add_argument("--no-measure", action="store_true", help="skip the cost measurements")
    args = ap.parse_args()
    report: dict[str, Any] = {}
    try:
        report["soak"] = soak(args.seconds, args.readers, args.seed, args.kill)
    except AssertionError as e:
        print(json.dumps({"failed": str(e)}))
        return 1
    if not args.no_measure:
        report["costs"] = measure()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
