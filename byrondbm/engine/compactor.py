"""The compactor: decides what background work to run, runs it as jobs (jobs.py) in worker processes
(workers.py) or in this process, and installs the results (rename, manifest edit, new version).

Two background threads, as RocksDB separates flushes from compactions, so a long compaction never keeps
a full memtable from its flush: the *flusher* writes immutable memtables to L0, oldest first, one at a
time (so the tables are exactly the state below the memtable being flushed: what its key count is
resolved against); the *compaction thread* runs one compaction at a time, picked by compaction.py's
scores. Both threads spend their time waiting on a worker's pipe, which releases the GIL: the writer
keeps its interpreter. With ``workers=0`` the same jobs run in the threads themselves.

Installing takes the version set's lock for a few microseconds plus one manifest fsync; a flush installed
while a compaction runs only adds an L0 table, which the compaction's install keeps.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from ..errors import error
from ..options import Options
from . import filenames
from .compaction import Compaction, pick
from .fileio import sync_dir
from .jobs import CompactionJob, FlushJob, JobResult, flush_entries, run_job, temp_path
from .memtable import Memtable
from .sstable import TableReader
from .version import MAX_LEVELS, Version
from .versionset import VersionSet, meta_of
from .workers import WorkerPool

__all__ = ["Compactor"]

_BACKOFF_MAX = 2.0


class Compactor:
    """Background work of one writable database.

    ``smallest_snapshot()`` gives the oldest sequence number a reader has pinned (or the last one);
    ``changed()`` is called after every install, so waiting writers re-check their room."""

    def __init__(
        self,
        versions: VersionSet,
        options: Options,
        mode: int,
        smallest_snapshot: Callable[[], int],
        changed: Callable[[], None],
    ) -> None:
        self._vs = versions
        self._options = options
        self._mode = mode
        self._smallest_snapshot = smallest_snapshot
        self._changed = changed
        self._pool = WorkerPool(options.workers) if options.workers > 0 else None
        self._flush_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._jobs = itertools.count(1)
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._wake = {"flush": threading.Event(), "compact": threading.Event()}
        self.error: Optional[BaseException] = None
        """The last background failure, cleared by the next success (a full disk may drain)."""

    # ------------------------------------------------------------------ threads

    def start(self) -> None:
        """Start the flusher and the compaction thread (background_compaction=True)."""
        for name, step in (("flush", self._flush_step), ("compact", self._compact_step)):
            t = threading.Thread(target=self._loop, args=(name, step), name=f"byrondbm-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.wake()

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def _loop(self, name: str, step: Callable[[], bool]) -> None:
        wake = self._wake[name]
        backoff = 0.05
        while not self._stopping:
            wake.wait(1.0)
            wake.clear()
            try:
                while not self._stopping and step():
                    self._changed()
                self.error = None
                backoff = 0.05
            except Exception as e:  # retried: a full disk may drain
                if self._stopping:
                    return
                self.error = e
                self._vs.counters["background_errors"] += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                wake.set()
            self._changed()

    def stop(self) -> None:
        """Stop the threads. Jobs running in workers are killed: their outputs are temp files, removed at
        the next open, and a memtable whose flush dies stays in its log (and the image close saves of it),
        so the next session flushes it again."""
        self._stopping = True
        self.wake()
        if self._pool is not None:
            self._pool.close()
        for t in self._threads:
            t.join()
        self._threads = []

    def worker_pids(self) -> list[int]:
        return [] if self._pool is None else self._pool.pids()

    @property
    def worker_restarts(self) -> int:
        return 0 if self._pool is None else self._pool.restarts

    # ------------------------------------------------------------------ work, in the caller's thread

    def work_inline(self) -> None:
        """Flush every immutable memtable, then compact until no level is over its target (the writer's
        own thread with background_compaction=False, or a writer that found the background failed)."""
        while self._flush_step() or self._compact_step():
            pass

    def flush_all(self) -> None:
        """Flush every memtable immutable now (the oldest first). Those a writer fills meanwhile are left
        to the flusher: chasing them could go on as long as the writer does."""
        for _ in range(len(self._vs.current.imms)):
            if not self._flush_step():  # the flusher thread took the rest
                break

    def _run(self, job: Any) -> JobResult:
        """Run ``job`` in a worker (or here, with workers=0). A worker that died is a background error."""
        pool = self._pool
        if pool is None:
            return run_job(job, lambda: self._stopping)
        restarts = pool.restarts
        try:
            result: JobResult = pool.run(job)
        finally:
            self._vs.counters["background_errors"] += pool.restarts - restarts
        return result

    # ------------------------------------------------------------------ flushes

    def _flush_step(self) -> bool:
        """Flush the oldest immutable memtable; False when there is none."""
        with self._flush_lock:
            v = self._vs.current
            if not v.imms:
                return False
            mem = v.imms[-1]
            job = next(self._jobs)
            below = self._below(v)
            if self._pool is None:
                keys = list(mem.sorted_keys())
                result = flush_entries(mem.sorted_entries(), keys, mem.live, below, self._smallest_snapshot(),
                                       self._options, self._mode, temp_path(self._vs.directory, job), mem.one_version)
            else:
                with self._vs.lock:  # no compaction may retire a table of `below` before it is held
                    below = self._below(self._vs.current)
                    held = self._vs.hold(t for level in below for t in level)
                try:
                    result = self._run(FlushJob(
                        self._vs.directory, job, mem.log_number, self._vs.state.last_seq, self._smallest_snapshot(),
                        [[t.number for t in level] for level in below], self._options, self._mode,
                    ))
                finally:
                    self._vs.release(held)
            self._install_flush(mem, result)
            return True

    @staticmethod
    def _below(v: Version) -> list[list[TableReader]]:
        """The tables under the memtables of ``v``: L0 newest first, then each non-empty sorted level."""
        return [list(v.levels[0])] + [list(v.levels[k]) for k in range(1, MAX_LEVELS) if v.levels[k]]

    def _install_flush(self, mem: Memtable, result: JobResult) -> None:
        vs = self._vs
        outputs = self._rename(result)

        def build(cur: Version) -> Version:
            imms = tuple(m for m in cur.imms if m is not mem)
            return Version(cur.mem, imms, (tuple(outputs) + cur.levels[0],) + cur.levels[1:], cur.published)

        with vs.lock:
            cur = vs.current
            floor = min([m.log_number for m in cur.imms if m is not mem] + [cur.mem.log_number])
            edit: dict[str, Any] = {"count": vs.state.count + result.count_delta, "log_floor": floor,
                                    "last_seq": max(mem.max_seq, vs.state.last_seq)}
            if outputs:
                edit["add"] = [meta_of(outputs[0]).encode(0)]
            vs.counters["flushes"] += 1
            try:
                vs.log_and_apply(edit, build)
            except BaseException:
                vs.counters["flushes"] -= 1
                vs.retire(outputs)
                raise
        vs.unlink(filenames.log_name(mem.log_number))
        vs.unlink(filenames.image_name(mem.log_number))

    def _rename(self, result: JobResult) -> list[TableReader]:
        """Give each output of a job its table number and open it; the directory is fsync'ed before the
        tables are recorded. On failure the outputs are removed."""
        vs = self._vs
        readers: list[TableReader] = []
        try:
            for temp, props in result.outputs:
                number = vs.new_number()
                final = vs.path(filenames.table_name(number))
                if os.path.exists(final):
                    raise error(f"refusing to overwrite existing table {final}")
                os.replace(temp, final)
                vs.counters["table_bytes_written"] += props.file_size
                readers.append(vs.open_table(number))
            if readers:
                sync_dir(vs.directory)
        except BaseException:
            for temp, _ in result.outputs:
                vs.unlink(os.path.basename(temp))
            vs.retire(readers)
            raise
        return readers

    # ------------------------------------------------------------------ compactions

    def _compact_step(self) -> bool:
        """Run the most urgent compaction; False when every level is within its target."""
        with self._compact_lock:
            vs = self._vs
            c = pick(vs.current, self._options, vs.pointers)
            if c is None:
                return False
            if c.trivial_move:
                self._move(c)
            else:
                self._merge(c)
            return True

    def _move(self, c: Compaction) -> None:
        """A lone table with nothing to merge with changes level by a manifest edit alone."""
        vs = self._vs
        t = c.inputs[0]
        with vs.lock:
            vs.log_and_apply({"del": [[c.level, t.number]], "add": [meta_of(t).encode(c.output_level)],
                              "pointer": [c.level, t.largest]}, lambda cur: _replace(cur, {t.number}, c.output_level, [t]))
            vs.pointers[c.level] = t.largest
            vs.counters["trivial_moves"] += 1

    def _merge(self, c: Compaction) -> None:
        runs = [[t.number for t in tables] for tables in c.runs]
        base = [([t.smallest for t in ts], [t.largest for t in ts]) for ts in c.base]
        self.run_compaction(runs, base, c.all_inputs(), c.output_level, c.level, c.pointer, c.split)

    def run_compaction(
        self,
        runs: list[list[int]],
        base: list[tuple[list[bytes], list[bytes]]],
        inputs: list[TableReader],
        output_level: int,
        level: Optional[int] = None,
        pointer: Optional[bytes] = None,
        split: bool = True,
    ) -> None:
        """Merge ``runs`` (newest first) into ``output_level``, replacing ``inputs``; ``base`` are the key
        ranges of the runs below the output. Under the compaction lock (the background thread's or
        `compact_everything`'s)."""
        vs = self._vs
        held = vs.hold(inputs)
        try:
            result = self._run(CompactionJob(vs.directory, next(self._jobs), runs, self._smallest_snapshot(),
                                             base, self._options, self._mode, split))
        finally:
            vs.release(held)
        outputs = self._rename(result)
        levels_of = {t.number: k for k, ts in enumerate(vs.current.levels) for t in ts}
        edit: dict[str, Any] = {
            "del": [[levels_of[t.number], t.number] for t in inputs],
            "add": [meta_of(t).encode(output_level) for t in outputs],
        }
        if level is not None and pointer is not None:
            edit["pointer"] = [level, pointer]
        gone = {t.number for t in inputs}
        with vs.lock:
            vs.counters["compactions"] += 1
            try:
                vs.log_and_apply(edit, lambda cur: _replace(cur, gone, output_level, outputs))
            except BaseException:
                vs.counters["compactions"] -= 1
                vs.retire(outputs)
                raise
            if level is not None and pointer is not None:
                vs.pointers[level] = pointer
        vs.retire(inputs)

    def compact_everything(self) -> None:
        """Merge every table into the deepest non-empty level (at least L1), dropping every version and
        tombstone no pinned reader needs. The caller flushed the memtables first."""
        with self._compact_lock:
            v = self._vs.current
            tables = v.tables()
            if not tables:
                return
            runs = [[t.number] for t in v.levels[0]]
            runs += [[t.number for t in v.levels[k]] for k in range(1, MAX_LEVELS) if v.levels[k]]
            self.run_compaction(runs, [], tables, max(1, v.deepest_nonempty()))


def _replace(cur: Version, gone: set[int], output_level: int, outputs: list[TableReader]) -> Version:
    """``cur`` without the tables numbered in ``gone`` and with ``outputs`` in ``output_level``: by key in
    a sorted level; in L0 newest first, by largest sequence number, as recovery orders L0 (the runs of a
    tiered merge are adjacent in age, so its output falls between the tables newer and older than them)."""
    levels = [[t for t in level if t.number not in gone] for level in cur.levels]
    if output_level == 0:
        levels[0] = sorted(levels[0] + outputs, key=lambda t: -t.properties.max_seq)
    else:
        levels[output_level] = sorted(levels[output_level] + outputs, key=lambda t: t.smallest)
    return Version(cur.mem, cur.imms, levels, cur.published)
