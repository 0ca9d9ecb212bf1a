"""The workloads of `byrondbm bench`, named as in LevelDB's db_bench, and the code that times them.

Keys are 16 bytes: key i is the number 2*i in 16 decimal digits, so present keys sort as their numbers do
and `missing_key(i)` (2*i + 1) sorts strictly between two present keys. A value is a slice of a seeded
random pool picked by the key number and a generation (incompressible, so engines that compress gain
nothing; and every read can be checked against the exact bytes that must come back).

Random orders are affine permutations j -> (a*j + b) mod n with gcd(a, n) = 1: every key exactly once,
scattered over the key range, computed lazily (no n-sized list, which matters at 10M keys).

Timing: one `perf_counter` region covers the whole loop of a workload's operations. The keys and values it
uses are built before the clock starts when they fit (PRECOMPUTE_LIMIT); beyond that they are built in
chunks inside the clock (memory stays flat, the figure is conservative). Verification runs after the clock
stops and raises `VerificationError`: a bench that reads wrong data fails instead of reporting a number.
"""

from __future__ import annotations

import cProfile
import dataclasses
import gc
import math
import os
import random
import resource
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar, Union

from byrondbm.bench.baselines import BATCH_SIZE, Engine, Handle
from byrondbm.progress import Progress

KEY_SIZE = 16
CHUNK = 10_000
"""Operations per chunk: the unit of lazy key generation and of progress updates."""
PRECOMPUTE_LIMIT = 2_000_000
"""Workloads of at most this many operations build all their keys before the clock starts."""
SEEK_OPS = 20_000
"""Most seeks timed by `seekrandom` (each reads 100 pairs)."""
SEEK_LENGTH = 100
SYNC_OPS = 10_000
"""Most writes timed by `fillsync` (each waits for an fsync, ~4k/s on this machine's disk)."""
SYNC_THREADS = 8
VERIFY_SAMPLE = 1_000
_POOL = 1 << 20

WORKLOADS = (
    "fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "readseq", "seekrandom",
    "deleterandom", "fillbatch", "fillsync", "reopen",
)
OPTIONAL_WORKLOADS = ("readreverse",)
"""Workloads run only when named in ``--benchmarks`` (readreverse: a full scan in descending key order)."""
ROWS: dict[str, tuple[str, ...]] = {
    **{w: (w,) for w in WORKLOADS + OPTIONAL_WORKLOADS},
    "readrandom": ("readrandom", "readrandom_compacted"),
    "fillsync": ("fillsync_1t", "fillsync_8t"),
}
"""Workload -> the result rows it produces (readrandom is measured before and after compaction)."""

C = TypeVar("C")


class VerificationError(AssertionError):
    """An engine returned wrong data (or the wrong number of keys) during a workload."""


@dataclasses.dataclass
class Measurement:
    ops: int
    seconds: float
    """Wall-clock time of the timed region."""
    cpu_seconds: float = 0.0
    """CPU time of the whole process (every thread, background work included) in the same region: unlike
    the wall clock it does not grow when other jobs share the machine, but it misses time spent waiting
    for the disk (fsync)."""

    @property
    def ops_per_sec(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu_seconds / self.ops * 1e6 if self.ops else 0.0


@dataclasses.dataclass
class Skipped:
    """A row that produced no number: `error` False for "n/a" (engine lacks the operation)."""

    reason: str
    error: bool = False


Outcome = Union[Measurement, Skipped]


class KeySpace:
    """Keys, values and key orders of one run (see the module docstring). Deterministic for a seed."""

    def __init__(self, value_size: int, seed: int = 301) -> None:
        self.value_size = value_size
        self.seed = seed
        self._pool = random.Random(seed).randbytes(_POOL + value_size)

    @staticmethod
    def key(i: int) -> bytes:
        return b"%016d" % (2 * i)

    @staticmethod
    def missing_key(i: int) -> bytes:
        return b"%016d" % (2 * i + 1)

    @staticmethod
    def index(key: bytes) -> int:
        """The i of `key(i)`; -1 for a key this space never writes."""
        if len(key) != KEY_SIZE or not key.isdigit() or key[-1] % 2:
            return -1
        return int(key) // 2

    def value(self, i: int, generation: int = 0) -> bytes:
        offset = (i * 0x9E3779B1 + generation * 0x632BE5AB) & (_POOL - 1)
        return self._pool[offset : offset + self.value_size]

    def shuffle(self, n: int, salt: str) -> Callable[[int], int]:
        """A bijection of range(n), fixed by the seed and `salt`, that scatters neighbours apart."""
        rng = random.Random(f"{self.seed}/{salt}")
        a = rng.randrange(n // 3, n) if n > 3 else 1
        while math.gcd(a, n) != 1:
            a += 1
        b = rng.randrange(n) if n else 0
        return lambda j: (a * j + b) % n

    def permutation(self, n: int, salt: str) -> Iterator[int]:
        """range(n) in the order of `shuffle(n, salt)`; O(1) memory."""
        return map(self.shuffle(n, salt), range(n))


@dataclasses.dataclass
class Context:
    """What every workload of a run shares."""

    space: KeySpace
    n: int
    workdir: str
    progress: bool
    """Draw progress lines on stderr (a terminal)."""
    profiler: cProfile.Profile | None = None
    """Enabled inside byrondbm's timed regions only (numbers measured under it are not comparable)."""

    def ops(self, engine: Engine, row: str) -> int:
        limit = {"seekrandom": SEEK_OPS, "fillsync_1t": SYNC_OPS, "fillsync_8t": SYNC_OPS}.get(row, self.n)
        return min(self.n, limit, engine.caps.get(row, self.n))

    def chunks(self, indexes: Iterable[int], build: Callable[[list[int]], C], total: int) -> Iterable[C]:
        """`build` applied to CHUNK-sized lists of `indexes`: a list if small enough, else lazily."""
        lazy = (build(part) for part in _batched(indexes, CHUNK))
        return list(lazy) if total <= PRECOMPUTE_LIMIT else lazy


def _batched(items: Iterable[int], size: int) -> Iterator[list[int]]:
    it = iter(items)
    while part := list(islice(it, size)):
        yield part


def clock(
    ctx: Context, label: str, total: int, chunks: Iterable[C], body: Callable[[C], tuple[int, int]],
    profile: bool = False,
) -> tuple[Measurement, int]:
    """Times `body` over every chunk in one region; body returns (operations, operations that were right)."""
    profiler = ctx.profiler if profile else None
    gc.collect()
    ops = good = 0
    with Progress(label, total, unit=" ops", enabled=ctx.progress) as bar:
        if profiler is not None:
            profiler.enable()
        cpu = time.process_time()
        start = time.perf_counter()
        for chunk in chunks:
            done, right = body(chunk)
            ops += done
            good += right
            bar.advance(done)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
    return Measurement(ops, seconds, cpu), good


def phase(ctx: Context, label: str) -> Progress:
    """A progress line for untimed work of unknown length (a load, a compaction); use with `with`."""
    return Progress(label, enabled=ctx.progress).ticking()


# -- the timed loops: locals only, one call per operation -----------------------------------------------


def _put_loop(put: Callable[[bytes, bytes], Any]) -> Callable[[tuple[list[bytes], list[bytes]]], tuple[int, int]]:
    def body(chunk: tuple[list[bytes], list[bytes]]) -> tuple[int, int]:
        keys, values = chunk
        for k, v in zip(keys, values):
            put(k, v)
        return len(keys), len(keys)

    return body


def _get_loop(get: Callable[[bytes], bytes | None]) -> Callable[[tuple[list[bytes], list[Any]]], tuple[int, int]]:
    """Counts the reads that returned exactly the expected value (None for an absent key)."""

    def body(chunk: tuple[list[bytes], list[Any]]) -> tuple[int, int]:
        keys, expected = chunk
        right = 0
        for k, v in zip(keys, expected):
            if get(k) == v:
                right += 1
        return len(keys), right

    return body


def _delete_loop(delete: Callable[[bytes], Any]) -> Callable[[list[bytes]], tuple[int, int]]:
    def body(keys: list[bytes]) -> tuple[int, int]:
        for k in keys:
            delete(k)
        return len(keys), len(keys)

    return body


def _seek_loop(seek: Callable[[bytes], Iterator[Any]]) -> Callable[[tuple[list[bytes], list[int]]], tuple[int, int]]:
    """Counts the seeks whose first pair has the sought key and that yielded the expected number of pairs."""

    def body(chunk: tuple[list[bytes], list[int]]) -> tuple[int, int]:
        keys, lengths = chunk
        right = 0
        for k, length in zip(keys, lengths):
            got = list(islice(seek(k), SEEK_LENGTH))
            if len(got) == length and got[0][0] == k:
                right += 1
        return len(keys), right

    return body


# -- workloads ------------------------------------------------------------------------------------------


def _pairs_builder(space: KeySpace, generation: int = 0) -> Callable[[list[int]], tuple[list[bytes], list[bytes]]]:
    key, value = space.key, space.value
    return lambda ix: ([key(i) for i in ix], [value(i, generation) for i in ix])


def _fill(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """fillseq / fillrandom (and fillsync_1t): single puts into a new store."""
    ops = ctx.ops(engine, row)
    order = range(ops) if row == "fillseq" else ctx.space.permutation(ops, row)  # fillsync_1t too
    chunks = ctx.chunks(order, _pairs_builder(ctx.space), ops)
    m, _ = clock(ctx, f"{engine.name} {row}", ops, chunks, _put_loop(h.put), engine.name == "byrondbm")
    verify_store(ctx.space, h, ops, row)
    return m


def _fillbatch(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Random order (db_bench's fillbatch is sequential) so it compares with fillrandom's single puts."""
    assert h.batch is not None
    batch, ops, space = h.batch, ctx.ops(engine, row), ctx.space

    def build(ix: list[int]) -> list[list[tuple[bytes, bytes]]]:
        pairs = [(space.key(i), space.value(i)) for i in ix]
        return [pairs[j : j + BATCH_SIZE] for j in range(0, len(pairs), BATCH_SIZE)]

    def body(batches: list[list[tuple[bytes, bytes]]]) -> tuple[int, int]:
        for b in batches:
            batch(b)
        done = sum(map(len, batches))
        return done, done

    chunks = ctx.chunks(space.permutation(ops, row), build, ops)
    m, _ = clock(ctx, f"{engine.name} {row}", ops, chunks, body, engine.name == "byrondbm")
    verify_store(space, h, ops, row)
    return m


def _fillsync(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Single puts on a store opened for synchronous writes: fillsync_1t from this thread, fillsync_8t
    from SYNC_THREADS threads sharing the handle, timed from their release to the last one's join."""
    ops, space = ctx.ops(engine, row), ctx.space
    if row == "fillsync_1t":
        return _fill(ctx, engine, h, row)
    threads = SYNC_THREADS
    order = list(space.permutation(ops, row))
    shares = [_pairs_builder(space)(order[t::threads]) for t in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def writer(share: tuple[list[bytes], list[bytes]]) -> None:
        barrier.wait()
        try:
            _put_loop(h.put)(share)
        except BaseException as exc:  # re-raised by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(share,), daemon=True) for share in shares]
    for w in workers:
        w.start()
    gc.collect()
    with phase(ctx, f"{engine.name} {row}: {ops:,} synced writes from {threads} threads"):
        barrier.wait()
        cpu = time.process_time()
        start = time.perf_counter()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    if errors:
        raise errors[0]
    verify_store(space, h, ops, row)
    return Measurement(ops, seconds, cpu)


def _readrandom(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """readrandom / readrandom_compacted: gets of present keys, each checked against its value."""
    ops = ctx.ops(engine, row)
    return timed_reads(ctx, f"{engine.name} {row}", h, islice(ctx.space.permutation(ctx.n, row), ops), ops,
                       engine.name == "byrondbm")


def timed_reads(ctx: Context, label: str, h: Handle, indexes: Iterable[int], ops: int, profile: bool) -> Measurement:
    """Gets of `key(i)` for `ops` present indexes; raises VerificationError unless each returned `value(i)`."""
    key, value = ctx.space.key, ctx.space.value
    chunks = ctx.chunks(indexes, lambda ix: ([key(i) for i in ix], [value(i) for i in ix]), ops)
    m, right = clock(ctx, label, ops, chunks, _get_loop(h.get), profile)
    if right != ops:
        raise VerificationError(f"{ops - right} of {ops} reads of present keys returned a wrong value or none")
    return m


def _readmissing(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Gets of absent keys that sort between present ones (so no range check can answer them)."""
    ops, missing = ctx.ops(engine, row), ctx.space.missing_key
    chunks = ctx.chunks(
        islice(ctx.space.permutation(ctx.n, row), ops), lambda ix: ([missing(i) for i in ix], [None] * len(ix)), ops
    )
    m, right = clock(ctx, f"{engine.name} {row}", ops, chunks, _get_loop(h.get), engine.name == "byrondbm")
    if right != ops:
        raise VerificationError(f"{ops - right} of {ops} absent keys were found")
    return m


def _readseq(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """One full scan (readreverse: in descending key order); then an untimed second pass checks every pair."""
    items = h.reverse_items if row == "readreverse" else h.items
    assert items is not None

    def body(_: None) -> tuple[int, int]:
        count = 0
        for _pair in items():
            count += 1
        return count, count

    m, _ = clock(ctx, f"{engine.name} {row}", ctx.n, [None], body, engine.name == "byrondbm")
    if m.ops != ctx.n:
        raise VerificationError(f"the scan yielded {m.ops} pairs, expected {ctx.n}")
    verify_items(ctx.space, h, ctx.n, reverse=row == "readreverse")
    return m


def _seekrandom(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Seeks of present keys, reading SEEK_LENGTH pairs from each; ops counts seeks."""
    assert h.seek is not None
    ops, n, space = ctx.ops(engine, row), ctx.n, ctx.space
    key = space.key
    chunks = ctx.chunks(
        islice(space.permutation(n, row), ops), lambda ix: ([key(i) for i in ix], [min(SEEK_LENGTH, n - i) for i in ix]),
        ops,
    )
    m, right = clock(ctx, f"{engine.name} {row}", ops, chunks, _seek_loop(h.seek), engine.name == "byrondbm")
    if right != ops:
        raise VerificationError(f"{ops - right} of {ops} seeks started at the wrong key or read the wrong count")
    for i in islice(space.permutation(n, row + "/verify"), 20):
        want = [(key(j), space.value(j)) for j in range(i, min(n, i + SEEK_LENGTH))]
        if list(islice(h.seek(key(i)), SEEK_LENGTH)) != want:
            raise VerificationError(f"seeking {key(i)!r} read wrong pairs")
    return m


def _overwrite(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Puts of a second generation of values over existing keys, in random order."""
    ops, space = ctx.ops(engine, row), ctx.space
    chunks = ctx.chunks(islice(space.permutation(ctx.n, row), ops), _pairs_builder(space, 1), ops)
    m, _ = clock(ctx, f"{engine.name} {row}", ops, chunks, _put_loop(h.put), engine.name == "byrondbm")
    _verify_count(h, ctx.n)
    _verify_values(space, h, islice(space.permutation(ctx.n, row), min(ops, VERIFY_SAMPLE)), 1)
    return m


def _deleterandom(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Deletes of present keys in random order."""
    ops, key = ctx.ops(engine, row), ctx.space.key
    chunks = ctx.chunks(islice(ctx.space.permutation(ctx.n, row), ops), lambda ix: [key(i) for i in ix], ops)
    m, _ = clock(ctx, f"{engine.name} {row}", ops, chunks, _delete_loop(h.delete), engine.name == "byrondbm")
    _verify_count(h, ctx.n - ops)
    for i in islice(ctx.space.permutation(ctx.n, row), min(ops, VERIFY_SAMPLE)):
        if h.get(key(i)) is not None:
            raise VerificationError(f"deleted key {key(i)!r} still reads back")
    return m


def _reopen(ctx: Context, engine: Engine, h: Handle, row: str) -> Measurement:
    """Single puts of n keys in random order (untimed), then close, open and one get, timed: what every
    command-line call on a store written a moment ago pays. One operation; its seconds are the figure."""
    ops, space = ctx.ops(engine, row), ctx.space
    order = list(space.permutation(ops, row))
    keys, values = _pairs_builder(space)(order)
    with phase(ctx, f"{engine.name} {row}: {ops:,} puts (untimed)"):
        _put_loop(h.put)((keys, values))
    path = os.path.join(ctx.workdir, f"{engine.name}-{row}")
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    h.close()
    reopened = engine.open(path)
    got = reopened.get(keys[-1])
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    h.close = reopened.close  # the caller closes what is open
    if got != values[-1]:
        raise VerificationError("the last key written read back wrong after reopening")
    return Measurement(1, seconds, cpu)


Step = Callable[[Context, Engine, Handle, str], Measurement]
FRESH_ROWS: dict[str, Step] = {
    "fillseq": _fill, "fillrandom": _fill, "fillbatch": _fillbatch, "fillsync_1t": _fillsync, "fillsync_8t": _fillsync,
    "reopen": _reopen,
}
"""Rows each timed on a new, empty store."""
SHARED_ROWS: dict[str, Step] = {
    "readrandom": _readrandom, "readmissing": _readmissing, "readseq": _readseq, "readreverse": _readseq,
    "seekrandom": _seekrandom,
    "readrandom_compacted": _readrandom, "overwrite": _overwrite, "deleterandom": _deleterandom,
}
"""Rows run in this order on one store loaded (untimed) with n keys; `compact()` runs before
readrandom_compacted, so the rows before it see the store with its background work still pending."""


# -- verification (untimed) -----------------------------------------------------------------------------


def _verify_count(h: Handle, expected: int) -> None:
    count = h.count()
    if count != expected:
        raise VerificationError(f"the store holds {count} keys, expected {expected}")


def _verify_values(space: KeySpace, h: Handle, indexes: Iterable[int], generation: int) -> None:
    for i in indexes:
        got = h.get(space.key(i))
        if got != space.value(i, generation):
            raise VerificationError(f"key {space.key(i)!r} read back {got!r:.60}, not the value written")


def verify_store(space: KeySpace, h: Handle, n: int, row: str) -> None:
    """After a fill of keys 0..n-1: the count, and a sample of values."""
    _verify_count(h, n)
    _verify_values(space, h, islice(space.permutation(n, row + "/verify"), VERIFY_SAMPLE), 0)


def verify_items(space: KeySpace, h: Handle, n: int, reverse: bool = False) -> None:
    """A full pass over `h.items()` (`h.reverse_items()` when ``reverse``): keys 0..n-1 each once (in order,
    descending when ``reverse``, if the engine is ordered), right values."""
    seen = bytearray(n)
    previous = n if reverse else -1
    pairs = h.reverse_items() if reverse and h.reverse_items is not None else h.items()
    for k, v in pairs:
        i = space.index(k)
        out_of_order = h.ordered and (i >= previous if reverse else i <= previous)
        if not 0 <= i < n or seen[i] or out_of_order or v != space.value(i):
            raise VerificationError(f"unexpected pair in the scan: {k!r} -> {v!r:.40}")
        seen[i] = 1
        previous = i
    if not all(seen):
        raise VerificationError(f"{n - sum(seen)} keys missing from the scan")


# -- running an engine ----------------------------------------------------------------------------------


@dataclasses.dataclass
class EngineRun:
    """One repeat of one engine: an outcome per row, plus facts about the shared store."""

    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)


def dir_bytes(path: str) -> int:
    """Bytes of the regular files under `path`."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = os.path.join(root, name)
            if not os.path.islink(file):
                total += os.path.getsize(file)
    return total


def _not_applicable(engine: Engine, h: Handle, row: str) -> str | None:
    if row.startswith("fillsync") and not engine.has_sync:
        return "no synchronous write mode"
    if row == "fillsync_8t" and not engine.thread_safe:
        return "a handle cannot be shared by threads"
    if row == "fillbatch" and h.batch is None:
        return "no batch API"
    if row == "seekrandom" and h.seek is None:
        return "no ordered seek"
    if row == "readreverse" and h.reverse_items is None:
        return "no reverse scan"
    return None


def _failure(exc: BaseException) -> Skipped:
    what = "verification failed" if isinstance(exc, VerificationError) else type(exc).__name__
    return Skipped(f"{what}: {exc}", error=True)


def rows_for(workloads: Iterable[str]) -> list[str]:
    """The result rows of the selected workloads, in the order they run."""
    chosen = {row for w in workloads for row in ROWS[w]}
    return [row for row in (*FRESH_ROWS, *SHARED_ROWS) if row in chosen]


def run_engine(ctx: Context, engine: Engine, workloads: Iterable[str]) -> EngineRun:
    """Runs the selected workloads on `engine`: FRESH_ROWS each on a new store, SHARED_ROWS on one store."""
    rows = rows_for(workloads)
    run = EngineRun()
    start = time.perf_counter()
    for row in (r for r in rows if r in FRESH_ROWS):
        path = _store_path(ctx, engine, row)
        try:
            h = engine.open(path, sync=row.startswith("fillsync"))
            try:
                reason = _not_applicable(engine, h, row)
                run.outcomes[row] = Skipped(reason) if reason else FRESH_ROWS[row](ctx, engine, h, row)
            finally:
                h.close()
        except Exception as exc:  # one failing row does not hide the others
            run.outcomes[row] = _failure(exc)
        shutil.rmtree(path, ignore_errors=True)
    shared = [r for r in rows if r in SHARED_ROWS]
    if shared:
        _run_shared(ctx, engine, shared, run)
    run.facts["wall_seconds"] = time.perf_counter() - start  # loads and verification included
    return run


def _store_path(ctx: Context, engine: Engine, label: str) -> str:
    path = os.path.join(ctx.workdir, f"{engine.name}-{label}")
    shutil.rmtree(path, ignore_errors=True)
    return path


def _run_shared(ctx: Context, engine: Engine, rows: list[str], run: EngineRun) -> None:
    """Loads n keys untimed, then runs `rows` in order; after a failure the rest are reported not run."""
    path = _store_path(ctx, engine, "shared")
    try:
        h = engine.open(path)
    except Exception as exc:
        run.outcomes.update((row, _failure(exc)) for row in rows)
        return
    failed: str | None = None
    try:
        key, value = ctx.space.key, ctx.space.value
        with phase(ctx, f"{engine.name} load {ctx.n:,} keys (untimed)"):
            h.load((key(i), value(i)) for i in ctx.space.permutation(ctx.n, "load"))
        run.facts["disk_bytes_after_load"] = dir_bytes(path)
        if h.stats is not None:
            run.facts["stats_after_load"] = h.stats()
        for row in rows:
            if failed is not None:
                run.outcomes[row] = Skipped(f"not run: {failed} failed before it", error=True)
                continue
            reason = _not_applicable(engine, h, row)
            if reason:
                run.outcomes[row] = Skipped(reason)
                continue
            try:
                if row == "readrandom_compacted":
                    _compact(ctx, engine, h, path, run)
                run.outcomes[row] = SHARED_ROWS[row](ctx, engine, h, row)
            except Exception as exc:
                failed = row
                run.outcomes[row] = _failure(exc)
    finally:
        h.close()
        shutil.rmtree(path, ignore_errors=True)


def _compact(ctx: Context, engine: Engine, h: Handle, path: str, run: EngineRun) -> None:
    """Full compaction before readrandom_compacted; records its time, the stats and the disk size."""
    if h.compact is None:
        return
    with phase(ctx, f"{engine.name} compact (untimed)"):
        start = time.perf_counter()
        h.compact()
        run.facts["compact_seconds"] = time.perf_counter() - start
    run.facts["disk_bytes_after_compact"] = dir_bytes(path)
    if h.stats is not None:
        run.facts["stats_after_compact"] = h.stats()


# -- --scale --------------------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    """Peak resident set size of this process since start or the last `_reset_peak_rss` (resource.getrusage;
    ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float | None:
    """Resident set size now (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return None


def worker_peak_rss_mib(pids: Iterable[int]) -> float | None:
    """The largest peak resident set size (VmHWM) among the live processes ``pids`` (byrondbm's worker
    processes); None when there are none or /proc cannot tell."""
    peaks = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                peaks += [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")]
        except (OSError, ValueError, IndexError):
            continue
    return max(peaks) if peaks else None


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS count (Linux >= 4.0: "5" into clear_refs), so each size's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _until(deadline: float, chunks: Iterable[C]) -> Iterator[C]:
    for chunk in chunks:
        if time.monotonic() >= deadline:
            return
        yield chunk


def run_scale(
    ctx: Context, engine: Engine, sizes: dict[str, int], reads: int, fill_limit: float,
    checkpoint: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """For each (label, n) of `sizes`, in order: fillrandom n keys (stopped after `fill_limit` seconds if
    still running), readrandom `reads` keys, compact(), readrandom again; with RSS, stats and disk size
    after each phase.

    `checkpoint(result)` is called after every phase, so a run killed by a time limit keeps what it measured.
    """
    space = ctx.space
    result: dict[str, Any] = {"engine": engine.name, "reads": reads}
    for label, n in sizes.items():
        part: dict[str, Any] = {"target_keys": n, "peak_rss_reset": _reset_peak_rss(), "rss_mib_at_start": _rss_mib()}
        result[label] = part
        path = _store_path(ctx, engine, f"scale-{label}")
        h = engine.open(path)
        try:
            fill_at = space.shuffle(n, "fillrandom")
            deadline = time.monotonic() + fill_limit
            chunks = _until(deadline, ctx.chunks(map(fill_at, range(n)), _pairs_builder(space), n))
            m, _ = clock(ctx, f"{engine.name} fillrandom {label}", n, chunks, _put_loop(h.put))
            written = m.ops
            part.update(keys=written, complete=written == n, fillrandom_ops_per_sec=m.ops_per_sec,
                        fill_seconds=m.seconds)
            _record(part, "after_fill", h, path, written * (KEY_SIZE + space.value_size))
            checkpoint(result)
            read_order = map(fill_at, space.permutation(written, "readrandom"))
            ops = min(reads, written)
            m = timed_reads(ctx, f"{engine.name} readrandom {label}", h, islice(read_order, ops), ops, False)
            part["readrandom_ops_per_sec"] = m.ops_per_sec
            checkpoint(result)
            if h.compact is not None:
                with phase(ctx, f"{engine.name} compact {written:,} keys"):
                    start = time.perf_counter()
                    h.compact()
                    part["compact_seconds"] = time.perf_counter() - start
                _record(part, "after_compact", h, path, written * (KEY_SIZE + space.value_size))
                checkpoint(result)
            read_order = map(fill_at, space.permutation(written, "readrandom_compacted"))
            m = timed_reads(ctx, f"{engine.name} readrandom_compacted {label}", h, islice(read_order, ops), ops, False)
            part["readrandom_compacted_ops_per_sec"] = m.ops_per_sec
            part["peak_rss_mib"] = _peak_rss_mib()
            checkpoint(result)
        finally:
            h.close()
            shutil.rmtree(path, ignore_errors=True)
    return result


def _record(part: dict[str, Any], phase: str, h: Handle, path: str, user_bytes: int) -> None:
    """Peak RSS, disk bytes, space amplification and the engine's stats at the end of a phase."""
    disk = dir_bytes(path)
    part[f"peak_rss_mib_{phase}"] = _peak_rss_mib()
    part[f"disk_bytes_{phase}"] = disk
    part[f"space_amplification_{phase}"] = disk / user_bytes if user_bytes else None
    if h.stats is not None:
        stats = h.stats()
        part[f"write_amplification_{phase}"] = stats.get("write_amplification")
        part[f"stats_{phase}"] = stats
        part[f"worker_peak_rss_mib_{phase}"] = worker_peak_rss_mib(stats.get("workers", ()))
