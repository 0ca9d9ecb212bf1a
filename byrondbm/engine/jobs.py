"""Background jobs: flushes and compactions as functions from files to files.

A job names only files and plain values, so it runs the same in a worker process (workers.py) or in the
database's own process. Its outputs are finished, fsync'ed tables under temporary names; the database
installs them (rename, manifest edit, new version: compactor.py). A job that dies leaves only temp files,
which the next writable open removes (docs/design.md, "Background work").

- flush: a rotated log -> one L0 table, plus the change the log makes to the exact key count (its keys
  that are live after it, minus those of them live in the tables below, looked up in those tables).
- compaction: sorted runs of tables -> tables cut near ``target_file_size`` (or one table), dropping versions
  no reader can see and tombstones over nothing (``base`` names the key ranges of the runs below the output).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from operator import itemgetter
from typing import Optional

from ..options import Options
from . import filenames
from .builder import build_tables
from .compaction import drop_obsolete
from .iterators import concat, merge_runs
from .records import MAX_SEQ, Entry
from .sstable import BlockCache, TableProperties, TableReader
from .version import MAX_LEVELS, Version
from .wal import read_entries

__all__ = ["FlushJob", "CompactionJob", "JobResult", "run_job", "flush_entries"]

_JOB_CACHE = 8 * 1024 * 1024  # block cache of a job's count lookups
NEWEST = -MAX_SEQ  # read_negseq that sees every entry


@dataclasses.dataclass(frozen=True)
class FlushJob:
    directory: str
    job: int
    log_number: int
    after_seq: int
    """Records at or below this sequence number are already in tables (skipped, as recovery does)."""
    smallest_snapshot: int
    below: list[list[int]]
    """Table numbers of the version below the log: L0 newest first, then each level >= 1 in key order."""
    options: Options
    mode: int


@dataclasses.dataclass(frozen=True)
class CompactionJob:
    directory: str
    job: int
    runs: list[list[int]]
    """Sorted runs of table numbers, newest first: an L0 table alone, or a level's tables in key order."""
    smallest_snapshot: int
    base: Optional[list[tuple[list[bytes], list[bytes]]]]
    """(smallest keys, largest keys) of each sorted run below the output; None: no run below holds anything."""
    options: Options
    mode: int
    split: bool = True
    """Cut outputs near ``target_file_size``; False: one table (a tiered merge's output in L0)."""


@dataclasses.dataclass(frozen=True)
class JobResult:
    outputs: list[tuple[str, TableProperties]]
    """Finished tables under temporary names, in key order."""
    count_delta: int = 0
    """A flush's change to the number of live keys."""


def temp_path(directory: str, job: int) -> Callable[[int], str]:
    return lambda k: filenames.path(directory, filenames.job_output(job, k))


def run_job(job: FlushJob | CompactionJob, stop: Optional[Callable[[], bool]] = None) -> JobResult:
    """Run ``job`` here (what a worker process calls). ``stop`` is polled during long builds."""
    if isinstance(job, FlushJob):
        return _flush_log(job)
    return _compact(job, stop)


def _open(directory: str, numbers: Iterable[int], cache: BlockCache) -> list[TableReader]:
    return [TableReader(filenames.path(directory, filenames.table_name(n)), n, cache) for n in numbers]


def _flush_log(job: FlushJob) -> JobResult:
    """Replay the log into the newest entry of each key (older ones aside, rarely any), then
    `flush_entries`. Cost: one pass over the records, one C sort of the keys."""
    newest: dict[bytes, Entry] = {}
    older: dict[bytes, list[Entry]] = {}  # key -> its older entries, oldest first
    path = filenames.path(job.directory, filenames.log_name(job.log_number))
    for entry in read_entries(path, job.after_seq):
        key = entry[0]
        prev = newest.get(key)
        if prev is not None:
            older.setdefault(key, []).append(prev)
        newest[key] = entry
    keys = sorted(newest)
    entries: Iterable[Entry]
    if older:
        entries = chain.from_iterable([newest[k], *reversed(older[k])] if k in older else (newest[k],) for k in keys)
    else:
        entries = map(newest.__getitem__, keys)
    live = len(newest) - list(map(itemgetter(2), newest.values())).count(None)
    cache = BlockCache(_JOB_CACHE)
    below = [_open(job.directory, numbers, cache) for numbers in job.below]
    try:
        return flush_entries(entries, keys, live, below, job.smallest_snapshot, job.options, job.mode,
                             temp_path(job.directory, job.job), not older)
    finally:
        for level in below:
            for t in level:
                t.close()


def flush_entries(
    entries: Iterable[Entry],
    keys: list[bytes],
    live: int,
    below: list[list[TableReader]],
    smallest_snapshot: int,
    options: Options,
    mode: int,
    temp: Callable[[int], str],
    one_version: bool,
) -> JobResult:
    """Write one memtable's entries (entry order) as one table. ``keys`` are all its keys (sorted), ``live``
    how many of them it leaves live; ``below`` the tables under it (L0 newest first, then the sorted
    levels). The result's ``count_delta`` is ``live`` minus how many of ``keys`` were live in ``below``.
    ``one_version`` (each key holds one entry) skips dropping obsolete versions. Cost: the table build plus
    one table lookup per key (sorted, so each block is read once)."""
    if not one_version:
        entries = drop_obsolete(entries, smallest_snapshot, lambda key: False)  # a flush keeps tombstones
    outputs = build_tables(entries, options, mode, temp, split=False)
    version = Version(None, (), below + [[] for _ in range(MAX_LEVELS - len(below))])  # type: ignore[arg-type]
    find = version.find
    prior = 0
    if version.has_tables:
        for key in keys:
            if find(key, NEWEST) is not None:
                prior += 1
    return JobResult(outputs, live - prior)


def _compact(job: CompactionJob, stop: Optional[Callable[[], bool]]) -> JobResult:
    """Merge the runs, drop what no reader needs, write tables cut near ``target_file_size``."""
    cache = BlockCache(0)
    runs = [_open(job.directory, numbers, cache) for numbers in job.runs]
    sources: list[Iterator[list[Entry]]] = []
    for tables in runs:
        if len(tables) == 1:
            sources.append(tables[0].chunks(fill_cache=False))
        else:
            sources.append(concat([_chunks_of(t) for t in tables]))
    entries = drop_obsolete(chain.from_iterable(merge_runs(sources)), job.smallest_snapshot, _is_base(job.base))
    try:
        outputs = build_tables(entries, job.options, job.mode, temp_path(job.directory, job.job), job.split, stop)
    finally:
        for tables in runs:
            for t in tables:
                t.close()
    return JobResult(outputs)


def _chunks_of(t: TableReader) -> Callable[[], Iterator[list[Entry]]]:
    return lambda: t.chunks(fill_cache=False)


def _is_base(base: Optional[list[tuple[list[bytes], list[bytes]]]]) -> Callable[[bytes], bool]:
    """A predicate: no run below the output has a table whose range holds the key."""
    if not base:
        return lambda key: True

    def is_base(key: bytes) -> bool:
        for smallest, largest in base:
            i = bisect_left(largest, key)
            if i < len(largest) and smallest[i] <= key:
                return False
        return True

    return is_base
