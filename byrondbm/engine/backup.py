"""Online backup: a consistent copy of a database that is being written (RocksDB's checkpoint).

Writes no format of its own: the copy is a normal database directory (tables, a manifest, CURRENT; no
log), laid out as filenames.py says, so it opens with `byrondbm.open` and passes `byrondbm.check`.

The copy holds the state of one instant, taken under the engine's write lock (no write in between): the
last sequence number (pinned, so the active memtable keeps the versions it sees), the exact key count, and
the current version's tables (held, so the compactor's deletions wait). The lock is then let go: writes,
flushes and compactions go on while the copy is made from what the instant froze.

- Tables are immutable: each is hard-linked into the copy (one directory entry, no bytes copied), or
  copied where a link is impossible (another file system). A reader's table that its writer has deleted
  meanwhile is rewritten from the reader's open file.
- The memtables' entries at or below the pinned sequence (each key's newest, tombstones kept: they hide
  older values in the tables) become one level-0 table, so opening the copy replays nothing.
- Then the commit, in the durable order of docs/design.md invariant 3: every table fsync'ed, the directory
  fsync'ed, a fresh manifest (a snapshot of the copy's state) fsync'ed, CURRENT, the directory again.

Until CURRENT exists the copy cannot open: a crash leaves tables without CURRENT, which `open` reports as
damage (`CorruptionError`), never as an empty database; an error removes what was written. The source is
only read.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from ..errors import error
from ..options import Options
from . import directory as dirs
from . import filenames
from .builder import build_tables
from .compaction import drop_obsolete
from .fileio import sync_dir, sync_fd
from .iterators import merge_runs
from .manifest import FileMeta, ManifestState, ManifestWriter
from .records import Entry
from .sstable import BlockCache, TableReader
from .version import Version
from .versionset import VersionSet, meta_of

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["backup"]

_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
"""Why ``os.link`` may refuse where a copy works: another file system, or one without hard links."""
_COPY_BUFFER = 1 << 20


def backup(engine: Engine, versions: VersionSet, write_lock: threading.RLock, mode: int, dest: str) -> dict[str, Any]:
    """Write at ``dest`` (missing, or an empty directory) a database holding exactly ``engine``'s state at
    one instant between the call and the return; see the module's docstring.

    Returns ``{"keys", "sequence", "tables", "linked", "copied", "rewritten"}``. Raises `byrondbm.error`
    for a ``dest`` that is anything else (left untouched), and for any failure (what was written is
    removed; ``dest`` is left as it was found). Cost: one link (or copy) per table, plus a table build of
    the memtables' entries; writers wait only for the instant (a pin, the key count, a hold).
    """
    engine.check_open()
    created = _claim(dest, engine.directory, mode)
    try:
        report = _write(engine, versions, write_lock, mode, dest)
    except BaseException as e:
        _discard(dest, created)
        if isinstance(e, OSError) and not isinstance(e, error):
            raise error(e.errno, f"backup failed: {e.strerror}", e.filename or dest) from e
        raise
    return report


def _claim(dest: str, source: str, mode: int) -> bool:
    """Check that ``dest`` is missing or an empty directory outside the source, creating it when missing;
    True when it was created here."""
    inside = os.path.commonpath([os.path.realpath(dest), os.path.realpath(source)]) == os.path.realpath(source)
    if inside:
        raise error(errno.EINVAL, "backup destination is the database or inside it", dest)
    if os.path.lexists(dest):
        if not os.path.isdir(dest):
            raise error(errno.EEXIST, "backup destination exists and is not a directory", dest)
        if os.listdir(dest):
            raise error(errno.ENOTEMPTY, "backup destination is not empty", dest)
        return False
    try:
        dirs.prepare(dest, True, False, mode)
    except OSError as e:
        if isinstance(e, error):
            raise
        raise error(e.errno, f"cannot create the backup directory: {e.strerror}", dest) from e
    return True


def _discard(dest: str, created: bool) -> None:
    """Undo a failed backup: CURRENT first (so a crash here never leaves a half copy that opens), then
    every other file; the directory too if it was created here. Best effort: the error that got us here
    is the one reported."""
    try:
        os.unlink(filenames.path(dest, filenames.CURRENT))
    except OSError:
        pass
    try:
        dirs.destroy(dest)
        if created:
            os.rmdir(dest)
    except OSError:
        pass


def _write(engine: Engine, versions: VersionSet, write_lock: threading.RLock, mode: int, dest: str) -> dict[str, Any]:
    """Take the instant, put its tables and memtables into ``dest``, let the instant go, then commit."""
    with write_lock:  # the instant: no write between the count, the pin and the hold
        count = engine.count()  # counted, then pinned: the lock keeps both at one state
        seq, _ = engine.pin()
        try:
            with versions.lock:  # a table of the current version is not retired before it is held
                v = versions.current
                held = versions.hold(v.tables())
        except BaseException:
            engine.unpin(seq)
            raise
    try:
        try:
            metas, how = _place_tables(v, dest, engine.options, mode)
        finally:
            versions.release(held)  # linked or copied: the compactor may delete them now
        number = 1 + max((t.number for t in v.tables()), default=0)
        mem_meta = _write_memtables(v, seq, dest, number, engine.options, mode)
    finally:
        engine.unpin(seq)
    if mem_meta is not None:
        metas.setdefault(0, []).insert(0, mem_meta)
    sync_dir(dest)
    state = ManifestState(next_file=number + 2, last_seq=seq, count=count,
                          levels={level: {m.number: m for m in ms} for level, ms in metas.items()})
    ManifestWriter(dest, number + 1, state, mode).close()  # writes the manifest, then CURRENT
    sync_dir(dest)
    return {"keys": count, "sequence": seq, "tables": sum(map(len, metas.values())), **how}


def _place_tables(
    v: Version, dest: str, options: Options, mode: int
) -> tuple[dict[int, list[FileMeta]], dict[str, int]]:
    """Put every table of ``v`` into ``dest``: (their metas by level, how many went each way)."""
    metas: dict[int, list[FileMeta]] = {}
    how = {"linked": 0, "copied": 0, "rewritten": 0}
    for level, tables in enumerate(v.levels):
        for t in tables:
            meta, way = _place_table(t, dest, options, mode)
            metas.setdefault(level, []).append(meta)
            how[way] += 1
    return metas, how


def _place_table(t: TableReader, dest: str, options: Options, mode: int) -> tuple[FileMeta, str]:
    """Put table ``t`` into ``dest`` under its own name: linked, else copied, else (its file is gone: a
    reader's writer retired it) rewritten from ``t``'s open file. Returns its meta and which way it went."""
    target = filenames.path(dest, filenames.table_name(t.number))
    try:
        try:
            os.link(t.path, target)
            way = "linked"
        except OSError as e:
            if e.errno not in _NO_LINK:
                raise
            _copy(t.path, target, mode)
            way = "copied"
    except FileNotFoundError:
        if os.path.lexists(target):
            raise
        return _rewrite(t, target, options, mode), "rewritten"
    size = os.path.getsize(target)
    if size != t.properties.file_size:  # the name now holds another file (the database was replaced)
        raise error(errno.ESTALE, f"table is {size} bytes, the database read {t.properties.file_size}", t.path)
    return meta_of(t), way


def _copy(source: str, target: str, mode: int) -> None:
    """Copy ``source`` to a new file ``target``, fsync'ed."""
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with open(fd, "wb") as out:
            shutil.copyfileobj(src, out, _COPY_BUFFER)
            out.flush()
            sync_fd(out.fileno())


def _rewrite(t: TableReader, target: str, options: Options, mode: int) -> FileMeta:
    """Write ``t``'s entries, all of them, as a new table at ``target``."""
    meta = _build(chain.from_iterable(t.chunks(fill_cache=False)), target, t.number, options, mode)
    assert meta is not None  # a table holds at least one entry
    return meta


def _write_memtables(v: Version, seq: int, dest: str, number: int, options: Options, mode: int) -> FileMeta | None:
    """Write what ``v``'s memtables hold at ``seq`` as table ``number`` of ``dest``; None when nothing.
    Entries above ``seq`` (written after the instant) are skipped; of the rest each key keeps its newest."""
    target = filenames.path(dest, filenames.table_name(number))
    return _build(_visible_at(v, seq), target, number, options, mode)


def _visible_at(v: Version, seq: int) -> Iterator[Entry]:
    """The memtables' entries in entry order: of each key the newest at or below ``seq``, tombstones kept.
    The pin keeps every version a write after the instant replaced."""
    floor = -seq
    merged = chain.from_iterable(merge_runs([m.chunks() for m in v.memtables]))
    return drop_obsolete((e for e in merged if e[1] >= floor), seq, lambda key: False)


def _build(entries: Iterator[Entry], target: str, number: int, options: Options, mode: int) -> FileMeta | None:
    """Build ``entries`` into one table, renamed to ``target`` (table ``number``); None when empty."""
    outputs = build_tables(entries, options, mode, lambda k: filenames.temp_name(target), split=False)
    if not outputs:
        return None
    os.replace(outputs[0][0], target)
    table = TableReader(target, number, BlockCache(0))
    try:
        return meta_of(table)
    finally:
        table.close()
