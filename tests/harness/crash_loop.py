"""Crash loop: kill a writing process with SIGKILL at random moments and check that nothing acknowledged
is lost (the way LevelDB's and RocksDB's crash tests do it).

A child process opens the database with small options (so flushes and compactions run all the time) and
applies a seeded stream of puts, overwrites, deletes and batches, writing each operation's number to a pipe
once the call has returned (the acknowledgement). The parent kills it with SIGKILL at a random moment —
sometimes while it is still opening (recovering) — reads every acknowledgement that reached the pipe,
reopens the database (read-only first, then writable) and checks:

- default and ``'s'`` modes: the contents equal exactly the state after the last acknowledged operation,
  or after the one more operation that was in flight (nothing acknowledged lost, nothing torn);
- ``'f'`` mode: the contents equal the state after some prefix of the operations, no shorter than the last
  acknowledged ``sync()`` (prefix-consistent, untorn);
- ``db._check()`` (structural invariants) and ``db.check()`` (every checksum) pass, and the database takes
  a write and a delete.

The next trial continues the stream from the recovered state, so damage would accumulate if any slipped
through. Usage (the long run in the README's Reliability section)::

    python scripts/crash_loop.py --mode s --trials 300 --seed 1
    python scripts/crash_loop.py --mode default --minutes 10

Exit status 0 when every trial passed; a JSON summary is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

import byrondbm

SMALL_OPTIONS = dict(
    memtable_size=8 * 1024,
    block_size=512,
    target_file_size=8 * 1024,
    level1_size=32 * 1024,
    level_ratio=2,
    l0_compaction_trigger=2,
    l0_slowdown_trigger=3,
    l0_stop_trigger=5,
    large_value_threshold=600,
    block_cache_size=64 * 1024,
)
"""Options that make a few hundred writes flush, compact and store large values."""

FLAGS = {"default": "", "s": "s", "f": "f"}

Op = tuple  # ("put", key, value) | ("del", key) | ("batch", [(key, value or None), ...]) | ("sync",)


# ---------------------------------------------------------------- the workload and its model


def key_of(n: int) -> bytes:
    return b"k%05d" % n


def make_op(seed: int, i: int, keys: int, sync_every: int = 0) -> Op:
    """Operation ``i`` of the stream ``seed``: deterministic, so the parent regenerates what the child did."""
    rng = random.Random(seed * 1_000_003 + i)
    if sync_every and i % sync_every == sync_every - 1:
        return ("sync",)
    r = rng.random()
    if r < 0.6:
        return ("put", key_of(rng.randrange(keys)), value_of(rng, i))
    if r < 0.8:
        return ("del", key_of(rng.randrange(keys)))
    ops = []
    for j in range(rng.randrange(2, 9)):
        k = key_of(rng.randrange(keys))
        ops.append((k, None) if rng.random() < 0.25 else (k, value_of(rng, i, j)))
    return ("batch", ops)


def value_of(rng: random.Random, i: int, j: int = 0) -> bytes:
    """A value that names its operation (so a torn or misplaced value is recognisable) of varied length:
    empty, small, around a block, and large (stored out of line with SMALL_OPTIONS)."""
    length = rng.choice((0, 8, 40, 300, 700, 3000))
    head = b"%d.%d:" % (i, j)
    return (head + rng.randbytes(length))[: max(length, len(head))] if length else b""


def apply(model: dict[bytes, bytes], op: Op) -> None:
    kind = op[0]
    if kind == "put":
        model[op[1]] = op[2]
    elif kind == "del":
        model.pop(op[1], None)
    elif kind == "batch":
        for k, v in op[1]:
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v


def perform(db: byrondbm.Database, op: Op) -> None:
    kind = op[0]
    if kind == "put":
        db[op[1]] = op[2]
    elif kind == "del":
        try:
            del db[op[1]]
        except KeyError:
            pass
    elif kind == "batch":
        with db.batch() as b:
            for k, v in op[1]:
                if v is None:
                    b.delete(k)
                else:
                    b.put(k, v)
    else:
        db.sync()


class Stream:
    """The operation stream and the model state after each prefix of it (kept incrementally)."""

    def __init__(self, seed: int, keys: int, sync_every: int = 0) -> None:
        self.seed, self.keys, self.sync_every = seed, keys, sync_every
        self.done = 0  # operations the model has applied
        self.model: dict[bytes, bytes] = {}

    def op(self, i: int) -> Op:
        return make_op(self.seed, i, self.keys, self.sync_every)

    def advance(self, to: int) -> None:
        while self.done < to:
            apply(self.model, self.op(self.done))
            self.done += 1

    def match(self, contents: dict[bytes, bytes], low: int, high: int) -> Optional[int]:
        """Advance the model from ``low`` (>= done) towards ``high`` and return the first prefix length whose
        state equals ``contents``, or None (the model is then left at ``high``)."""
        self.advance(low)
        while True:
            if self.model == contents:
                return self.done
            if self.done >= high:
                return None
            self.advance(self.done + 1)


def diff(expected: dict[bytes, bytes], got: dict[bytes, bytes], limit: int = 5) -> str:
    lines = []
    for k in sorted(set(expected) | set(got)):
        if expected.get(k) != got.get(k):
            lines.append(f"{k!r}: expected {_short(expected.get(k))}, got {_short(got.get(k))}")
            if len(lines) >= limit:
                break
    return "; ".join(lines)


def _short(v: Optional[bytes]) -> str:
    return "absent" if v is None else repr(v[:24]) + (f"...({len(v)} bytes)" if len(v) > 24 else "")


def read_all(db: byrondbm.Database) -> dict[bytes, bytes]:
    """Contents by scan, cross-checked by point lookups and len()."""
    contents = dict(db.items())
    for k, v in contents.items():
        assert db[k] == v, f"get({k!r}) disagrees with the scan"
    assert len(db) == len(contents), f"len() is {len(db)}, the scan saw {len(contents)}"
    return contents


def verify_usable(db: byrondbm.Database) -> None:
    """The recovered database passes its checks and takes a write and a delete (then is as it was)."""
    db._check()
    report = db.check()
    assert report["ok"], report
    db[b"~probe"] = b"probe"
    assert db[b"~probe"] == b"probe"
    del db[b"~probe"]


# ---------------------------------------------------------------- the child


def child(path: str, flag: str, seed: int, keys: int, start: int, sync_every: int, ack_fd: int) -> None:
    """Open, say ready, then perform operations from ``start`` on, acknowledging each, until killed."""
    db = byrondbm.open(path, "c" + flag, **SMALL_OPTIONS)
    os.write(ack_fd, (0xFFFFFFFF).to_bytes(4, "little"))  # ready
    i = start
    while True:
        perform(db, make_op(seed, i, keys, sync_every))
        i += 1
        os.write(ack_fd, i.to_bytes(4, "little"))


# ---------------------------------------------------------------- the parent


def run_trial(path: str, mode: str, stream: Stream, rng: random.Random, max_run: float) -> dict:
    """One kill and check. Returns what was checked; raises AssertionError on any violation."""
    flag = FLAGS[mode]
    start = stream.done
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", __spec__.name, "--child", path, flag, str(stream.seed), str(stream.keys),
         str(start), str(stream.sync_every), str(write_fd)],
        pass_fds=(write_fd,),
        env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    os.close(write_fd)
    early = rng.random() < 0.2  # kill while the child may still be opening (recovering)
    if not early:
        _wait_ready(read_fd, proc)
    time.sleep(rng.uniform(0, max_run))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    acked = start
    last_sync = start
    for n in _acks(read_fd):
        if n != 0xFFFFFFFF:
            acked = n
            if stream.sync_every and n % stream.sync_every == 0:
                last_sync = n  # operation n - 1 was a sync
    os.close(read_fd)
    if not os.path.exists(os.path.join(path, "CURRENT")):
        assert acked == start, "operations acknowledged but no database"
        return {"acked": 0, "recovered_to": start}

    with byrondbm.open(path, "r") as db:
        contents = read_all(db)
    if mode == "f":
        low, high = last_sync, acked + 1
    else:
        low, high = acked, acked + 1
    if stream.done > low:
        raise AssertionError(f"recovered state older than the model ({stream.done} > {low})")
    stream.advance(low)
    expected_low = dict(stream.model)
    at = stream.match(contents, low, high)
    if at is None:
        raise AssertionError(
            f"mode {mode}: state after reopen is not the state after {low}..{high} operations "
            f"(acknowledged {acked}, started at {start}): {diff(expected_low, contents)}"
        )
    with byrondbm.open(path, "w", **SMALL_OPTIONS) as db:
        assert read_all(db) == contents, "a writable reopen sees other data than the read-only one"
        verify_usable(db)
    return {"acked": acked - start, "recovered_to": at}


def _wait_ready(fd: int, proc: subprocess.Popen) -> None:
    buf = b""
    while len(buf) < 4:
        chunk = os.read(fd, 4 - len(buf))
        if not chunk:
            raise AssertionError(f"child exited before it was ready (status {proc.wait()})")
        buf += chunk


def _acks(fd: int) -> Iterator[int]:
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    usable = len(data) - len(data) % 4
    for pos in range(0, usable, 4):
        yield int.from_bytes(data[pos : pos + 4], "little")


def crash_loop(path: str, mode: str, trials: int, seed: int, keys: int = 300, max_run: float = 0.4,
               minutes: float = 0.0, log: bool = False) -> dict:
    """Run ``trials`` kill-and-check rounds (or as many as fit in ``minutes``) on one database directory."""
    rng = random.Random(seed)
    stream = Stream(seed, keys, sync_every=50 if mode == "f" else 0)
    summary = {"mode": mode, "seed": seed, "trials": 0, "acknowledged_ops_checked": 0, "final_ops": 0}
    deadline = time.monotonic() + minutes * 60 if minutes else None
    while (summary["trials"] < trials) if deadline is None else (time.monotonic() < deadline):
        result = run_trial(path, mode, stream, rng, max_run)
        summary["trials"] += 1
        summary["acknowledged_ops_checked"] += result["acked"]
        summary["final_ops"] = stream.done
        if log:
            print(json.dumps({"trial": summary["trials"], **result}), flush=True)
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        path, flag, seed, keys, start, sync_every, fd = argv[1:]
        child(path, flag, int(seed), int(keys), int(start), int(sync_every), int(fd))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=sorted(FLAGS), default="default")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--minutes", type=float, default=0.0, help="run for this long instead of --trials")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keys", type=int, default=300)
    p.add_argument("--max-run", type=float, default=0.4, help="longest time a child writes before the kill (s)")
    p.add_argument("--dir", help="database directory (default: a fresh temporary one, removed on success)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    tmp = None if args.dir else tempfile.mkdtemp(prefix="byrondbm-crash-")
    path = args.dir or os.path.join(tmp, "db")
    started = time.monotonic()
    try:
        summary = crash_loop(path, args.mode, args.trials, args.seed, args.keys, args.max_run, args.minutes,
                             args.verbose)
    except AssertionError as e:
        print(json.dumps({"mode": args.mode, "seed": args.seed, "failed": str(e), "kept": path}))
        return 1
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary))
    if tmp:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
