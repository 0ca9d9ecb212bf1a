"""The version set: the manifest, the current `Version`, file numbers, compaction pointers, the running
totals, and which files are obsolete (LevelDB's ``VersionSet`` and ``DeleteObsoleteFiles``).

Every change of the set of live files goes through `log_and_apply`: the edit is appended to the manifest
and fsync'ed, folded into the state, then the new `Version` is swapped in, all under one lock, so the
manifest and the version never disagree (docs/design.md, invariant 3). A table leaves the disk only when it
has left the current version *and* no running job reads it (`hold`/`release`); readers of older versions
keep reading an unlinked table through their open descriptor (POSIX).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional

from ..errors import CorruptionError
from . import filenames
from .manifest import FileMeta, ManifestState, ManifestWriter
from .sstable import BlockCache, TableReader
from .version import Version

__all__ = ["VersionSet", "TOTALS", "meta_of", "open_table"]

MANIFEST_ROTATE = 4 * 1024 * 1024
TOTALS = ("flushes", "compactions", "trivial_moves", "user_bytes_written", "log_bytes_written",
          "table_bytes_written", "manifest_bytes_written", "background_errors")
"""Counters kept in the manifest, so stats span every session of the database."""


def open_table(directory: str, number: int, cache: BlockCache, expected_size: Optional[int] = None) -> TableReader:
    """Open table ``number``; a missing table, or one whose size is not the manifest's, is damage."""
    path = filenames.path(directory, filenames.table_name(number))
    if expected_size is not None:
        try:
            size = os.path.getsize(path)
        except OSError:
            raise CorruptionError("table listed in the manifest is missing", path) from None
        if size != expected_size:
            raise CorruptionError(f"table is {size} bytes, the manifest says {expected_size}", path)
    return TableReader(path, number, cache)


def meta_of(t: TableReader) -> FileMeta:
    """What the manifest records of table ``t``."""
    return FileMeta.of(t.number, t.properties)


class VersionSet:
    """The live state of one writable (or read-only) database. Thread-safe: every method that changes
    the state takes ``lock``; `current` is one reference, read without a lock."""

    def __init__(self, directory: str, state: ManifestState, version: Version, cache: BlockCache, mode: int) -> None:
        self.directory = directory
        self.state = state
        self.on_install: Optional[Callable[[Version], None]] = None
        """Called with each version made current (the writer's engine points its `get` at its lookup)."""
        self._current = version
        self.cache = cache
        self.lock = threading.RLock()
        self.counters: collections.Counter[str] = collections.Counter(state.totals)
        self.pointers: dict[int, bytes] = dict(state.pointers)
        self._mode = mode
        self._manifest: Optional[ManifestWriter] = None
        self._held: collections.Counter[int] = collections.Counter()  # table number -> running jobs reading it
        self._doomed: set[int] = set()  # tables out of the version, unlinked when no job holds them

    @property
    def current(self) -> Version:
        return self._current

    @current.setter
    def current(self, version: Version) -> None:
        self._current = version
        if self.on_install is not None:
            self.on_install(version)

    # ------------------------------------------------------------------ files

    def path(self, name: str) -> str:
        return filenames.path(self.directory, name)

    def new_number(self) -> int:
        """A file number never used in this directory (the counter is recorded by the next edit)."""
        with self.lock:
            n = self.state.next_file
            self.state.next_file += 1
            return n

    def open_table(self, number: int) -> TableReader:
        return open_table(self.directory, number, self.cache)

    def unlink(self, name: str) -> None:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass

    def hold(self, tables: Iterable[TableReader]) -> list[int]:
        """Keep ``tables`` on disk until `release` (a job in a worker process reads them by name)."""
        numbers = [t.number for t in tables]
        with self.lock:
            self._held.update(numbers)
        return numbers

    def release(self, numbers: Iterable[int]) -> None:
        with self.lock:
            self._held.subtract(numbers)
            free = [n for n in self._doomed if self._held[n] <= 0]
            for n in free:
                self._doomed.discard(n)
            self._held = +self._held
        for n in free:
            self.unlink(filenames.table_name(n))

    def retire(self, tables: Iterable[TableReader]) -> None:
        """``tables`` left the current version: drop their cached blocks and unlink them (now, or when the
        last job reading them ends). Their bloom counters go to this session's counters (not persisted:
        not in `TOTALS`)."""
        later = []
        with self.lock:
            for t in tables:
                self.counters["retired_bloom_checks"] += t.bloom_checks
                self.counters["retired_bloom_negatives"] += t.bloom_negatives
                self.cache.evict_table(t.number)
                if self._held[t.number] > 0:
                    self._doomed.add(t.number)
                else:
                    later.append(t.number)
        for n in later:
            self.unlink(filenames.table_name(n))

    # ------------------------------------------------------------------ the manifest

    def start_manifest(self) -> None:
        """Write a fresh manifest holding the whole state and point CURRENT at it."""
        number = self.new_number()
        self.state.totals = {name: self.counters[name] for name in TOTALS}
        self._manifest = ManifestWriter(self.directory, number, self.state, self._mode)

    @property
    def manifest_name(self) -> Optional[str]:
        return None if self._manifest is None else self._manifest.name

    def log_and_apply(self, edit: dict[str, Any], build: Optional[Callable[[Version], Version]] = None) -> None:
        """Record ``edit`` durably, fold it into the state, then install ``build(current)`` as the current
        version. Raises `OSError` with nothing changed if the edit cannot be recorded. Starts a fresh,
        compacted manifest when this one grows past `MANIFEST_ROTATE`."""
        with self.lock:
            manifest = self._manifest
            assert manifest is not None
            edit["next_file"] = self.state.next_file  # numbers taken since the last edit stay taken
            edit["totals"] = {name: self.counters[name] for name in TOTALS}
            manifest.append(edit)
            self.state.apply(edit)
            if build is not None:
                self.current = build(self.current)
            if manifest.size > MANIFEST_ROTATE:
                self._rotate_manifest(manifest)

    def _rotate_manifest(self, old: ManifestWriter) -> None:
        try:
            self.start_manifest()
        except OSError:
            self._manifest = old  # CURRENT still names the old manifest, which holds every edit
            return
        self.counters["manifest_bytes_written"] += old.bytes_written
        old.close()
        os.unlink(old.path)

    def close(self) -> None:
        """Record the running totals and close the manifest (the totals survive the session). A manifest
        that cannot take the edit loses this session's last counts only: no data depends on them."""
        with self.lock:
            if self._manifest is None:
                return
            try:
                self.log_and_apply({})
            except OSError:
                pass
            finally:
                if self._manifest is not None:
                    self._manifest.close()
                    self._manifest = None

    def remove_obsolete_files(self) -> None:
        """Unlink every file the state does not reference: temp files of crashed writes or jobs, tables
        and logs (and their images) retired by edits whose unlink did not happen, older manifests. Writers only, at open."""
        live_tables = {t.number for t in self.current.tables()}
        live_logs = set(self.state.logs)
        for name in os.listdir(self.directory):
            parsed = filenames.parse(name)
            obsolete = name.endswith(filenames.TEMP_SUFFIX) or (
                parsed is not None
                and (
                    (parsed[0] == "sst" and parsed[1] not in live_tables)
                    or (parsed[0] in ("log", "img") and parsed[1] not in live_logs)
                    or (parsed[0] == "manifest" and name != self.manifest_name)
                )
            )
            if obsolete:
                self.unlink(name)

    def _check(self) -> None:
        """Assert that the state and the current version list the same tables, and that L0 is newest first
        with disjoint sequence ranges (the order recovery rebuilds from the tables' sequence numbers)."""
        with self.lock:
            v = self.current
            v._check()
            for newer, older in zip(v.levels[0], v.levels[0][1:]):
                assert newer.properties.min_seq > older.properties.max_seq, (newer.number, older.number)
            assert {t.number for t in v.tables()} == {m for files in self.state.levels.values() for m in files}
            assert not (self._doomed & {t.number for t in v.tables()})
