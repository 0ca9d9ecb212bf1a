"""Power-loss emulation for ``'s'`` mode: build the directories a power cut could leave, check each one.

A child process opens the database with flag ``'ws'`` and small options, with ``os.open``, ``os.write``,
``os.fsync``, ``os.ftruncate``, ``os.close``, ``os.rename``/``os.replace`` and ``os.unlink``/``os.remove``
wrapped so that every call on the database directory is recorded, in order, in a journal — together with
an ``ack`` entry each time a write returns to the caller. The parent replays the journal into a model
file system that tracks, per file, the bytes written and the bytes fsync'ed, and per directory the
entries created/renamed/removed and the entries made durable by an fsync of the directory.

A power cut after any prefix of the journal leaves (variants, chosen at random for each cut):

- ``synced``: only durable directory entries, each file holding only its fsync'ed bytes;
- ``torn``: every directory operation persisted, each file its fsync'ed bytes plus a random part of what
  was appended after them (a write cut short);
- ``zeroed``: every directory operation persisted, files extended by a random number of zero bytes
  beyond their fsync'ed contents (the size reached the disk, the data did not: ext4 ``data=writeback``).

For each such directory the database must open (read-only, then writable), hold exactly the state after
the last acknowledged write or after the one write in flight, pass ``_check()``/``check()`` and take a
write. With ``--threads N``, N writer threads (each with its own keys) write at once, so their writes
share fsyncs (group commit), and each thread's keys are checked against that thread's acknowledgements. The file-system model assumes appends and renames are atomic per call and that a file's fsync'ed
bytes survive — what POSIX file systems in their default modes provide.

Usage::

    python scripts/powerloss.py --ops 2000 --cuts 1500 --seed 1
    python scripts/powerloss.py --ops 500 --cuts 400 --threads 4 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

import byrondbm
from .crash_loop import SMALL_OPTIONS, Stream, diff, make_op, perform, read_all, verify_usable

VARIANTS = ("synced", "torn", "zeroed")
# Flushes and compactions run in the recorded process (workers=0), so their file operations are in the
# journal too; a worker process runs the same job code and the same durable order (the crash loop
# exercises the worker processes with real SIGKILLs).
OPTIONS = dict(SMALL_OPTIONS, workers=0)


# ---------------------------------------------------------------- recording (in the child)


class Recorder:
    """Wraps the ``os`` functions the engine writes with, journaling every call on one directory."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.journal: list[tuple] = []
        self._lock = threading.RLock()  # the call and its journal entry happen together, in order
        self._fds: dict[int, str] = {}
        self._real: dict[str, Any] = {}

    def _rel(self, path: Any) -> Optional[str]:
        p = os.path.abspath(os.fsdecode(path))
        if p == self.root:
            return "."
        return os.path.basename(p) if os.path.dirname(p) == self.root else None

    def install(self) -> None:
        for name in ("open", "write", "fsync", "close", "ftruncate", "rename", "replace", "unlink", "remove"):
            self._real[name] = getattr(os, name)
            setattr(os, name, getattr(self, "_" + name))

    def uninstall(self) -> None:
        for name, fn in self._real.items():
            setattr(os, name, fn)

    def ack(self, thread: int, n: int) -> None:
        with self._lock:
            self.journal.append(("ack", thread, n))

    def _open(self, path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        rel = self._rel(path)
        with self._lock:
            fd = self._real["open"](path, flags, mode, **kw)
            if rel is not None:
                self._fds[fd] = rel
                if rel != ".":
                    self.journal.append(("open", fd, rel, flags))
            return fd

    def _write(self, fd: int, data: Any) -> int:
        with self._lock:
            n = self._real["write"](fd, data)
            if fd in self._fds:
                self.journal.append(("write", fd, bytes(memoryview(data)[:n])))
            return n

    def _fsync(self, fd: int) -> None:
        with self._lock:
            self._real["fsync"](fd)
            rel = self._fds.get(fd)
            if rel == ".":
                self.journal.append(("fsyncdir",))
            elif rel is not None:
                self.journal.append(("fsync", fd))

    def _close(self, fd: int) -> None:
        with self._lock:
            self._real["close"](fd)
            if self._fds.pop(fd, None) not in (None, "."):
                self.journal.append(("close", fd))

    def _ftruncate(self, fd: int, length: int) -> None:
        with self._lock:
            self._real["ftruncate"](fd, length)
            if fd in self._fds:
                self.journal.append(("truncate", fd, length))

    def _rename(self, src: Any, dst: Any, **kw: Any) -> None:
        self._move("rename", src, dst, **kw)

    def _replace(self, src: Any, dst: Any, **kw: Any) -> None:
        self._move("replace", src, dst, **kw)

    def _move(self, fn: str, src: Any, dst: Any, **kw: Any) -> None:
        with self._lock:
            self._real[fn](src, dst, **kw)
            a, b = self._rel(src), self._rel(dst)
            if a is not None and b is not None:
                self.journal.append(("rename", a, b))

    def _unlink(self, path: Any, **kw: Any) -> None:
        self._delete("unlink", path, **kw)

    def _remove(self, path: Any, **kw: Any) -> None:
        self._delete("remove", path, **kw)

    def _delete(self, fn: str, path: Any, **kw: Any) -> None:
        with self._lock:
            self._real[fn](path, **kw)
            rel = self._rel(path)
            if rel is not None:
                self.journal.append(("unlink", rel))


def prefixed(op: tuple, prefix: bytes) -> tuple:
    """``op`` on keys with ``prefix`` (each writer thread has its own key space)."""
    if op[0] == "batch":
        return ("batch", [(prefix + k, v) for k, v in op[1]])
    return (op[0], prefix + op[1], *op[2:])


def stream_seed(seed: int, thread: int) -> int:
    return seed * 1000 + thread


def record(path: str, seed: int, ops: int, keys: int, out: str, skip_log_fsync: bool = False,
           threads: int = 1) -> None:
    """Child: ``threads`` writer threads each perform ``ops`` operations on ``path`` in 's' mode (so
    concurrent writers share fsyncs: group commit), journaling the file system calls and acknowledgements.

    ``skip_log_fsync`` breaks the engine on purpose (the log is never fsync'ed), so the self-test can show
    that the emulation catches a database that acknowledges writes it has not made durable."""
    if skip_log_fsync:
        from byrondbm.engine import wal

        wal.sync_fd = lambda fd: None
    rec = Recorder(path)
    rec.install()
    try:
        db = byrondbm.open(path, "ws", **OPTIONS)

        def writer(t: int) -> None:
            for i in range(ops):
                perform(db, prefixed(make_op(stream_seed(seed, t), i, keys), b"%d/" % t))
                rec.ack(t, i + 1)

        workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        db.close()
    finally:
        rec.uninstall()
    with open(out, "wb") as f:
        pickle.dump(rec.journal, f, protocol=pickle.HIGHEST_PROTOCOL)


# ---------------------------------------------------------------- the model file system (in the parent)


class Inode:
    __slots__ = ("data", "durable")

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.durable = bytes(data)


class ModelFS:
    """One directory: current and durable entries, and per file its current and fsync'ed bytes."""

    def __init__(self, baseline: dict[str, bytes]) -> None:
        self.entries = {name: Inode(data) for name, data in baseline.items()}
        self.durable_entries = dict(self.entries)
        self.fds: dict[int, list] = {}
        self.acked: dict[int, int] = collections.defaultdict(int)  # writer thread -> operations acknowledged

    def apply(self, event: tuple) -> None:
        kind = event[0]
        if kind == "ack":
            self.acked[event[1]] = event[2]
        elif kind == "open":
            _, fd, name, flags = event
            inode = self.entries.get(name)
            if inode is None or flags & os.O_EXCL:
                inode = self.entries[name] = Inode()
            if flags & os.O_TRUNC:
                inode.data = bytearray()
            self.fds[fd] = [inode, 0, bool(flags & os.O_APPEND)]
        elif kind == "write":
            _, fd, data = event
            handle = self.fds[fd]
            inode = handle[0]
            pos = len(inode.data) if handle[2] else handle[1]
            if pos > len(inode.data):
                inode.data.extend(bytes(pos - len(inode.data)))
            inode.data[pos : pos + len(data)] = data
            handle[1] = pos + len(data)
        elif kind == "fsync":
            inode = self.fds[event[1]][0]
            inode.durable = bytes(inode.data)
        elif kind == "fsyncdir":
            self.durable_entries = dict(self.entries)
        elif kind == "close":
            del self.fds[event[1]]
        elif kind == "truncate":
            inode = self.fds[event[1]][0]
            del inode.data[event[2] :]
        elif kind == "rename":
            self.entries[event[2]] = self.entries.pop(event[1])
        elif kind == "unlink":
            del self.entries[event[1]]
        else:
            raise ValueError(f"unknown journal event {kind!r}")

    def crash_image(self, variant: str, rng: random.Random) -> dict[str, bytes]:
        """File name -> contents after a power cut now, per ``variant`` (see the module docstring)."""
        entries = self.durable_entries if variant == "synced" else self.entries
        image = {}
        for name, inode in entries.items():
            content = inode.durable
            extra = len(inode.data) - len(content)
            if extra > 0 and inode.data.startswith(content):
                cut = rng.randrange(extra + 1)
                if variant == "torn":
                    content = bytes(inode.data[: len(content) + cut])
                elif variant == "zeroed":
                    content = content + bytes(cut)
            image[name] = content
        return image


# ---------------------------------------------------------------- the parent


def powerloss(workdir: str, seed: int, ops: int, cuts: int, keys: int = 200, skip_log_fsync: bool = False,
              threads: int = 1) -> dict:
    """Record one run of ``ops`` writes by each of ``threads`` threads, then check ``cuts`` power cuts at
    random points of it."""
    rng = random.Random(seed)
    db_path = os.path.join(workdir, "db")
    byrondbm.open(db_path, "c", **OPTIONS).close()
    baseline = {}
    for name in os.listdir(db_path):
        with open(os.path.join(db_path, name), "rb") as f:
            baseline[name] = f.read()
    journal_path = os.path.join(workdir, "journal.pickle")
    subprocess.run(
        [sys.executable, "-m", __spec__.name, "--record", db_path, str(seed), str(ops), str(keys), journal_path,
         "1" if skip_log_fsync else "0", str(threads)],
        check=True,
        env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    with open(journal_path, "rb") as f:
        journal = pickle.load(f)
    points = sorted(rng.sample(range(len(journal) + 1), min(cuts, len(journal) + 1)))
    fs = ModelFS(baseline)
    streams = [Stream(stream_seed(seed, t), keys) for t in range(threads)]
    done = 0
    summary = {"seed": seed, "ops": ops * threads, "threads": threads, "journal_events": len(journal),
               "fsyncs": sum(1 for e in journal if e[0] in ("fsync", "fsyncdir")),
               "cuts": 0, "acknowledged_ops_checked": 0, "variants": dict.fromkeys(VARIANTS, 0)}
    for point in points:
        while done < point:
            fs.apply(journal[done])
            done += 1
        variant = rng.choice(VARIANTS)
        check_image(os.path.join(workdir, "cut"), fs.crash_image(variant, rng), streams, fs.acked, variant, point)
        summary["cuts"] += 1
        summary["acknowledged_ops_checked"] += sum(fs.acked.values())
        summary["variants"][variant] += 1
    return summary


def check_image(path: str, image: dict[str, bytes], streams: list[Stream], acked: dict[int, int], variant: str,
                point: int) -> None:
    """Write ``image`` as a directory and check that each writer's keys hold its acknowledged state (or one
    write more: the one it had in flight)."""
    if os.path.exists(path):
        shutil.rmtree(path)
    os.mkdir(path)
    for name, content in image.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(content)
    where = f"power cut ({variant}) after journal event {point}, writes acknowledged per thread {dict(acked)}"
    if "CURRENT" not in image:
        raise AssertionError(f"{where}: CURRENT is gone")
    try:
        with byrondbm.open(path, "r") as db:
            contents = read_all(db)
    except byrondbm.error as e:
        raise AssertionError(f"{where}: the database does not open: {e}") from e
    for t, stream in enumerate(streams):
        prefix = b"%d/" % t
        mine = {k[len(prefix) :]: v for k, v in contents.items() if k.startswith(prefix)}
        n = acked[t]
        stream.advance(n)
        expected = dict(stream.model)
        if stream.match(mine, n, n + 1) is None:
            raise AssertionError(f"{where}: thread {t}: {diff(expected, mine)}")
        stream.done, stream.model = n, expected  # later cuts start from the acknowledged state again
    prefixes = tuple(b"%d/" % t for t in range(len(streams)))
    stray = [k for k in contents if not k.startswith(prefixes)]
    if stray:
        raise AssertionError(f"{where}: keys no writer wrote: {stray[:3]!r}")
    with byrondbm.open(path, "w", **OPTIONS) as db:
        verify_usable(db)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--record":
        path, seed, ops, keys, out, skip, threads = argv[1:]
        record(path, int(seed), int(ops), int(keys), out, skip == "1", int(threads))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ops", type=int, default=1000)
    p.add_argument("--cuts", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=1, help="independent recorded runs (seeds seed, seed+1, ...)")
    p.add_argument("--threads", type=int, default=1, help="writer threads in each run (group commit)")
    args = p.parse_args(argv)
    totals: dict[str, Any] = {"runs": 0, "cuts": 0, "acknowledged_ops_checked": 0, "journal_events": 0, "fsyncs": 0}
    started = time.monotonic()
    for run in range(args.runs):
        workdir = tempfile.mkdtemp(prefix="byrondbm-powerloss-")
        try:
            summary = powerloss(workdir, args.seed + run, args.ops, args.cuts, threads=args.threads)
        except AssertionError as e:
            print(json.dumps({"seed": args.seed + run, "failed": str(e), "kept": workdir}))
            return 1
        shutil.rmtree(workdir)
        totals["runs"] += 1
        for k in ("cuts", "acknowledged_ops_checked", "journal_events", "fsyncs"):
            totals[k] += summary[k]
    totals["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
