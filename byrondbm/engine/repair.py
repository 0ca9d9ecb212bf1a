"""`check` and `repair`: verify a database offline, and salvage what is readable from a damaged one.

Repair works as LevelDB's ``RepairDB`` does, in the database directory itself, holding its exclusive lock:

1. Choose the sources. If CURRENT and its manifest are readable, the tables it lists and the logs it
   lists; otherwise every ``*.sst`` and ``*.log`` file found (then a key deleted long ago may reappear from
   an obsolete table that had not been removed yet: the report says so).
2. Salvage. Every log record whose CRC holds, wherever it is in the file (`framing.iter_valid` skips
   damage); every table data block whose CRC holds, located through the table's index when the footer and
   index are readable, else by walking the blocks from the start of the file; every large value whose chunk
   run verifies.
3. Merge: for each key, the entry with the highest sequence number wins; deleted keys stay deleted.
4. Write the winners as new tables (numbered above every file present, so nothing is overwritten) and a
   new manifest that lists only them. Pointing CURRENT at that manifest is the commit point: a crash before
   it leaves the damaged database as it was (repair can run again), a crash after it leaves the repaired one.
5. Move every file the new manifest does not use into ``lost/`` inside the directory, for inspection.

This module writes no byte layout of its own: tables and the manifest are written by their modules.
"""

from __future__ import annotations

import errno
import heapq
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Optional

from ..errors import CorruptionError, error
from ..options import Options
from . import filenames, framing
from .directory import DirLock
from .engine import Engine
from .fileio import read_file, sync_dir
from .manifest import FileMeta, ManifestState, ManifestWriter, load as load_manifest
from .records import Entry
from .sstable import TableWriter
from .sstable.block import LargeValue, decode_block, decode_index
from .sstable.codec import DATA_BLOCK_TYPES, read_data_block
from .sstable.format import (BLOCK_CHUNK, BLOCK_INDEX, CHUNK_SIZE, FOOTER_SIZE, TRAILER_SIZE,
                             decode_footer, read_block, read_exact, run_size, verify_trailer)
from .version import MAX_LEVELS
from .wal import decode_record

LOST_DIR = filenames.LOST
_MAX_LISTED = 100  # keys and problems listed by name in a report; the counts are always complete


def check_database(directory: str) -> dict[str, Any]:
    """Open read-only and verify every file: the manifest, every log record, every block of every table.

    Damage never raises: the report has ``ok: False`` and says what is wrong in ``problems``. A missing or
    locked database raises `byrondbm.error`, as `open` does. A torn record at the end of a log (a write cut
    off by a crash) is normal and is reported under ``torn_log_bytes``, not as a problem.
    """
    _require_directory(directory)
    report: dict[str, Any] = {"ok": False, "problems": [], "tables": 0, "entries": 0, "logs": 0,
                              "log_records": 0, "torn_log_bytes": 0}
    problems: list[str] = report["problems"]
    try:
        engine = Engine(directory, Options(), read_only=True)
    except CorruptionError as e:
        problems.append(str(e))
        return report
    try:
        tables = engine.check()
        report["tables"], report["entries"] = tables["tables"], tables["entries"]
        problems += tables["problems"]
        state, _ = load_manifest(directory)
        for number in state.logs:
            path = filenames.path(directory, filenames.log_name(number))
            data = read_file(path)
            records, valid_end = framing.read_records(data, path)
            report["logs"] += 1
            report["log_records"] += len(records)
            report["torn_log_bytes"] += len(data) - valid_end
    except CorruptionError as e:
        problems.append(str(e))
    except Exception as e:  # a reader bug must not hide the rest of the report
        problems.append(f"internal error while checking: {type(e).__name__}: {e}")
    finally:
        engine.close()
    report["ok"] = not problems
    return report


def repair_database(directory: str, options: Optional[Options] = None) -> dict[str, Any]:
    """Salvage every readable record of the database in ``directory`` into a consistent database there.

    Returns a report: ``ok`` (the repaired database passes `check_database`), ``problems`` (the damage
    found), ``kept_records`` (live keys in the repaired database), ``lost`` (counts of what could not be
    salvaged, and up to 100 keys whose newest version was lost), ``moved_to_lost`` (file names).
    Raises `byrondbm.error` if the directory is missing or the database is open elsewhere.
    """
    _require_directory(directory)
    names = os.listdir(directory)
    if filenames.CURRENT not in names and not any(filenames.parse(n) for n in names):
        raise error(errno.ENOENT, "no byrondbm database here (no CURRENT, manifest, log or table)", directory)
    options = options or Options()
    mode = _file_mode(directory)
    lock = DirLock(directory, mode=mode)
    try:
        salvage = _Salvage(directory)
        salvage.choose_sources()
        kept, metas, max_seq, next_number = salvage.write_tables(options, mode)
        state = ManifestState(next_file=next_number + 1, last_seq=max_seq, count=kept, log_floor=next_number)
        level = _level_for(sum(m.file_size for m in metas), options)
        state.levels = {level: {m.number: m for m in metas}} if metas else {}
        ManifestWriter(directory, next_number, state, mode).close()  # the commit point
        used = {filenames.table_name(m.number) for m in metas} | {filenames.manifest_name(next_number)}
        moved = _move_to_lost(directory, used)
        report: dict[str, Any] = {
            "ok": False,
            "problems": salvage.problems[:_MAX_LISTED],
            "kept_records": kept,
            "salvaged_entries": salvage.entries,
            "tables_written": len(metas),
            "lost": salvage.lost_report(),
            "moved_to_lost": moved,
        }
    finally:
        lock.release()
    after = check_database(directory)
    report["ok"] = after["ok"]
    if not after["ok"]:
        report["problems"] += [f"after repair: {p}" for p in after["problems"]]
    return report


def _require_directory(directory: str) -> None:
    if not os.path.isdir(directory):
        raise error(errno.ENOENT, "no byrondbm database here", directory)


def _file_mode(directory: str) -> int:
    """Permission bits for new files: those of CURRENT if it exists (so repair keeps the owner's choice)."""
    try:
        return os.stat(filenames.path(directory, filenames.CURRENT)).st_mode & 0o777
    except OSError:
        return 0o666


def _level_for(total: int, options: Options) -> int:
    """The shallowest level below L0 whose target size holds ``total`` bytes (the tables don't overlap)."""
    level, capacity = 1, options.level1_size
    while capacity < total and level < MAX_LEVELS - 1:
        level += 1
        capacity *= options.level_ratio
    return level


class _Salvage:
    """What repair found: the sources chosen, the entries read from them, and what was lost."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.problems: list[str] = []
        self.tables: list[int] = []
        self.logs: list[int] = []
        self.entries = 0
        self.counts = {"log_records": 0, "log_bytes": 0, "table_blocks": 0, "tables_unreadable": 0,
                       "large_values": 0, "files_missing": 0}
        self.lost_keys: list[bytes] = []
        self.highest_number = 0

    def choose_sources(self) -> None:
        on_disk: dict[str, list[int]] = {"log": [], "sst": [], "manifest": []}
        for name in os.listdir(self.directory):
            parsed = filenames.parse(name)
            if parsed is not None:
                on_disk[parsed[0]].append(parsed[1])
                self.highest_number = max(self.highest_number, parsed[1])
        try:
            state, _ = load_manifest(self.directory)
        except CorruptionError as e:
            self.problems.append(str(e))
            self.problems.append("manifest unreadable: salvaging every table and log found "
                                 "(keys deleted long ago may reappear from obsolete tables)")
            self.tables, self.logs = sorted(on_disk["sst"]), sorted(on_disk["log"])
            return
        self.highest_number = max(self.highest_number, state.next_file)
        self.tables = sorted(n for files in state.levels.values() for n in files)
        self.logs = list(state.logs)
        for kind, numbers in (("sst", self.tables), ("log", self.logs)):
            for n in numbers:
                if n not in on_disk[kind]:
                    self.counts["files_missing"] += 1
                    self.problems.append(f"{kind} file {n:06d} listed in the manifest is missing")

    def _sources(self) -> list[Iterator[Entry]]:
        sources: list[Iterator[Entry]] = []
        for n in self.logs:
            path = filenames.path(self.directory, filenames.log_name(n))
            if os.path.exists(path):
                sources.append(iter(sorted(self._log_entries(path), key=_order)))
        for n in self.tables:
            path = filenames.path(self.directory, filenames.table_name(n))
            if os.path.exists(path):
                sources.append(salvage_table(path, self._table_loss))
        return sources

    def _log_entries(self, path: str) -> list[Entry]:
        try:
            data = read_file(path)
        except OSError as e:
            self.problems.append(f"cannot read log ({e.strerror}): {path}")
            return []
        entries: list[Entry] = []
        covered = 0
        for _, rtype, payload in framing.iter_valid(data, path):
            covered += framing.HEADER_SIZE + len(payload)
            try:
                first_seq, ops = decode_record(rtype, payload, path)
            except CorruptionError as e:
                self.counts["log_records"] += 1
                self.problems.append(str(e))
                continue
            entries += [(key, -(first_seq + i), value) for i, (key, value) in enumerate(ops)]
        skipped = len(data) - covered
        if skipped:
            self.counts["log_bytes"] += skipped
            self.problems.append(f"{skipped} bytes of damaged or torn records skipped: {path}")
        return entries

    def _table_loss(self, kind: str, problem: str, key: Optional[bytes]) -> None:
        """Called by `salvage_table` for each block, large value or whole table it cannot read."""
        self.counts[kind] += 1
        self.problems.append(problem)
        if key is not None and len(self.lost_keys) < _MAX_LISTED:
            self.lost_keys.append(key)

    def write_tables(self, options: Options, mode: int) -> tuple[int, list[FileMeta], int, int]:
        """Merge every source, newest version of each key first, and write the live keys as tables.

        Returns ``(live keys, metas of the tables, highest sequence seen, first unused file number)``.
        """
        number = self.highest_number
        metas: list[FileMeta] = []
        kept = max_seq = 0
        writer: Optional[TableWriter] = None
        tmp = ""
        previous: Optional[bytes] = None
        try:
            for key, negseq, value in heapq.merge(*self._sources(), key=_order):
                self.entries += 1
                max_seq = max(max_seq, -negseq)
                if key == previous:
                    continue  # an older version of a key already decided
                previous = key
                if value is None:
                    continue  # deleted: every older version is in the merge, so the tombstone can go
                if writer is None:
                    number += 1
                    tmp = filenames.path(self.directory, filenames.temp_name(filenames.table_name(number)))
                    writer = TableWriter(tmp, options, mode)
                writer.add(key, negseq, value)
                kept += 1
                if writer.file_size >= options.target_file_size:
                    metas.append(_finish(writer, tmp, number))
                    writer = None
            if writer is not None:
                metas.append(_finish(writer, tmp, number))
                writer = None
        finally:
            if writer is not None:
                writer.abandon()
        sync_dir(self.directory)
        return kept, metas, max_seq, number + 1

    def lost_report(self) -> dict[str, Any]:
        return {**self.counts, "keys": [k.hex() for k in self.lost_keys]}


def _order(entry: Entry) -> tuple[bytes, int]:
    return entry[0], entry[1]


def _finish(writer: TableWriter, tmp: str, number: int) -> FileMeta:
    p = writer.finish()
    final = filenames.path(os.path.dirname(tmp), filenames.table_name(number))
    os.replace(tmp, final)
    return FileMeta(number, p.file_size, p.smallest_key, p.largest_key, p.min_seq, p.max_seq,
                    p.num_entries, p.num_deletions)


def _move_to_lost(directory: str, used: set[str]) -> list[str]:
    """Move every byrondbm file the repaired database does not use into ``lost/``; temp files are removed."""
    lost = filenames.path(directory, LOST_DIR)
    moved: list[str] = []
    for name in sorted(os.listdir(directory)):
        if name in used or name in (filenames.CURRENT, filenames.LOCK, LOST_DIR) or not filenames.is_ours(name):
            continue
        source = filenames.path(directory, name)
        if name.endswith(filenames.TEMP_SUFFIX):
            os.unlink(source)
            continue
        os.makedirs(lost, exist_ok=True)
        target = filenames.path(lost, name)
        suffix = 1
        while os.path.exists(target):  # an earlier repair kept a file of that name
            target = filenames.path(lost, f"{name}.{suffix}")
            suffix += 1
        os.rename(source, target)
        moved.append(name)
    if moved:
        sync_dir(lost)
    sync_dir(directory)
    return moved


# ---------------------------------------------------------------- table salvage

_WALK_WINDOW = 4 * 1024 * 1024 + CHUNK_SIZE  # the longest block the walk looks for
LossCallback = Callable[[str, str, Optional[bytes]], None]


def salvage_table(path: str, loss: LossCallback) -> Iterator[Entry]:
    """Every entry of the table at ``path`` that verifies, in entry order; ``loss(kind, problem, key)`` is
    called for each data block (``"table_blocks"``), large value (``"large_values"``) or whole table
    (``"tables_unreadable"``) that does not. Blocks are found through the index when the footer and index
    verify, else by walking the file from its start, block after block, until a block fails."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        loss("tables_unreadable", f"cannot open table ({e.strerror}): {path}", None)
        return
    try:
        size = os.fstat(fd).st_size
        handles = _indexed_blocks(fd, size, path)
        if handles is None:
            handles = _walk_blocks(read_exact(fd, size, 0, path), path)
            loss("tables_unreadable", f"table footer or index damaged, {len(handles)} blocks found by walking: {path}", None)
        previous: Optional[tuple[bytes, int]] = None
        for offset, block_size in handles:
            try:
                entries = _data_block(fd, offset, block_size, size, path)
                if previous is not None and entries[0][:2] <= previous:
                    raise CorruptionError("block out of order with the previous one", path)
            except CorruptionError as e:
                loss("table_blocks", f"data block at offset {offset} lost ({e})", None)
                continue
            previous = entries[-1][:2]
            for key, negseq, value in entries:
                if value.__class__ is LargeValue:
                    try:
                        value = _large_value(fd, value, size, path)  # type: ignore[arg-type]
                    except CorruptionError as e:
                        loss("large_values", f"large value lost ({e})", key)
                        continue
                yield key, negseq, value  # type: ignore[misc]
    finally:
        os.close(fd)


def _indexed_blocks(fd: int, size: int, path: str) -> Optional[list[tuple[int, int]]]:
    """``(offset, size)`` of every data block, from the index; None if the footer or index fail."""
    try:
        if size < FOOTER_SIZE:
            raise CorruptionError("table shorter than its footer", path)
        footer = decode_footer(read_exact(fd, FOOTER_SIZE, size - FOOTER_SIZE, path), size, path)
        h = footer.index
        _, offsets, sizes = decode_index(read_block(fd, h.offset, h.size, BLOCK_INDEX, path), h.size, path)
    except CorruptionError:
        return None
    return list(zip(offsets, sizes))


def _data_block(fd: int, offset: int, block_size: int, size: int, path: str) -> list:
    if offset + block_size + TRAILER_SIZE > size:
        raise CorruptionError("block runs past the end of the file", path)
    raw = read_data_block(fd, offset, block_size, path)
    entries = decode_block(raw, len(raw) - TRAILER_SIZE, path)[0]
    if any(a[:2] >= b[:2] for a, b in zip(entries, entries[1:])):
        raise CorruptionError("entries out of order", path)
    return entries


def _large_value(fd: int, ref: LargeValue, size: int, path: str) -> bytes:
    total = run_size(ref.length)
    if ref.offset + total > size:
        raise CorruptionError("large value runs past the end of the file", path)
    raw = read_exact(fd, total, ref.offset, path)
    parts = []
    pos = 0
    for start in range(0, ref.length, CHUNK_SIZE):
        n = min(CHUNK_SIZE, ref.length - start)
        verify_trailer(raw, pos, n, BLOCK_CHUNK, path)
        parts.append(raw[pos : pos + n])
        pos += n + TRAILER_SIZE
    return b"".join(parts)


def _walk_blocks(data: bytes, path: str) -> list[tuple[int, int]]:
    """Data blocks found by walking the file from offset 0: each block ends where a type byte is followed
    by the CRC of everything since the previous block. Stops at the first place no block ends."""
    handles: list[tuple[int, int]] = []
    pos = 0
    while True:
        found = _block_end(data, pos)
        if found is None:
            return handles
        end, block_type = found
        if block_type in DATA_BLOCK_TYPES:
            handles.append((pos, end - pos))
        pos = end + TRAILER_SIZE


def _block_end(data: bytes, pos: int) -> Optional[tuple[int, int]]:
    """``(end of contents, type)`` of the block starting at ``pos``, or None. Tries a whole chunk first
    (large-value runs are made of them), then every length, extending the CRC one byte at a time."""
    view = memoryview(data)
    limit = min(len(data) - TRAILER_SIZE, pos + _WALK_WINDOW)
    candidates = [pos + CHUNK_SIZE] if pos + CHUNK_SIZE <= limit else []
    for end in candidates:
        if _trailer_ok(view, pos, end, zlib.crc32(view[pos:end])):
            return end, data[end]
    crc = 0
    for end in range(pos, limit + 1):
        if _trailer_ok(view, pos, end, crc):
            return end, data[end]
        crc = zlib.crc32(view[end : end + 1], crc)
    return None


def _trailer_ok(view: memoryview, pos: int, end: int, crc_of_contents: int) -> bool:
    block_type = view[end]
    if block_type not in DATA_BLOCK_TYPES and block_type != BLOCK_CHUNK:
        return False
    return zlib.crc32(view[end : end + 1], crc_of_contents) == int.from_bytes(view[end + 1 : end + 5], "little")


__all__ = ["check_database", "repair_database", "salvage_table", "LOST_DIR"]
