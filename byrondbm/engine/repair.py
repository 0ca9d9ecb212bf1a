"""`check` and `repair`: verify a database offline, and salvage what is readable from a damaged one.

Repair first runs `check_database`: a database that passes it is left exactly as it is. Otherwise repair works
as LevelDB's ``RepairDB`` does, in the database directory itself, holding its exclusive lock:

1. Choose the sources. If CURRENT and its manifest are readable, the tables it lists and the logs it
   lists; otherwise every ``*.sst`` and ``*.log`` file found (then a key deleted long ago may reappear from
   an obsolete table that had not been removed yet: the report says so).
2. Salvage. Every log record whose CRC holds, wherever it is in the file (`framing.iter_valid` skips
   damage); every table data block whose CRC holds and every large value whose chunk run verifies
   (`verify.TableBlocks`, which also says what each lost block held: its key range and entry count).
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
from collections.abc import Iterator
from typing import Any, Optional

from ..errors import CorruptionError, error
from ..options import Options
from . import filenames, framing
from .builder import build_tables
from .directory import DirLock
from .engine import Engine
from .fileio import read_file, sync_dir
from .manifest import FileMeta, ManifestState, ManifestWriter, load as load_manifest
from .records import Entry
from .sstable import BlockCache, TableReader
from .verify import LostRange, TableBlocks, estimate, missing_table
from .version import MAX_LEVELS
from .wal import decode_record

LOST_DIR = filenames.LOST
_MAX_LISTED = 100  # keys and problems listed by name in a report; the counts are always complete


def check_database(directory: str) -> dict[str, Any]:
    """Open read-only and verify every file: the manifest, every log record, every block of every table.

    Damage never raises: the report has ``ok: False`` and says what is wrong in ``problems``. ``entries``
    counts the table entries that are readable; ``damaged_entries`` those the damaged blocks held (exact
    when ``damaged_entries_exact``, else estimated from their size) and ``damaged_ranges`` their key ranges
    (`LostRange.as_json`); ``live_keys`` the number of keys when the tables are intact (else None). A missing
    database raises `byrondbm.error`, as `open` does; a writer may have it open meanwhile. A torn record at the end of a log (a write cut
    off by a crash) is normal: ``torn_log_bytes``, not a problem. A database that does not open (a damaged
    footer, a missing table) still has each table the manifest lists counted.
    Cost: every block of every table and every log read once (a healthy table in one `TableReader.check`).
    """
    _require_directory(directory)
    report: dict[str, Any] = {"ok": False, "problems": [], "tables": 0, "entries": 0, "damaged_entries": 0,
                              "damaged_entries_exact": True, "damaged_ranges": [], "live_keys": None,
                              "logs": 0, "log_records": 0, "torn_log_bytes": 0}
    problems: list[str] = report["problems"]
    engine: Optional[Engine] = None
    try:
        engine = Engine(directory, Options(), read_only=True)
    except CorruptionError as e:  # still count what each table the manifest lists holds
        problems.append(str(e))
    lost: list[LostRange] = []
    try:
        state, _ = load_manifest(directory)
        metas = {n: m for files in state.levels.values() for n, m in files.items()}
        report["tables"] = len(metas)
        readable = bytes_read = 0
        for number, meta in sorted(metas.items()):
            count, size = _check_table(filenames.path(directory, filenames.table_name(number)), number, meta,
                                       problems, lost)
            readable += count
            bytes_read += size
        estimate(lost, readable, bytes_read)
        report["entries"] = readable
        report["damaged_entries"] = sum(r.entries for r in lost)
        report["damaged_entries_exact"] = all(r.exact for r in lost)
        report["damaged_ranges"] = [r.as_json() for r in lost[:_MAX_LISTED]]
        if engine is not None and not problems:  # the count the engine keeps is only true of an intact database
            report["live_keys"] = engine.count()
        for number in state.logs:
            path = filenames.path(directory, filenames.log_name(number))
            data = read_file(path)
            records, valid_end = framing.read_records(data, path)
            report["logs"] += 1
            report["log_records"] += len(records)
            report["torn_log_bytes"] += len(data) - valid_end
    except CorruptionError as e:
        if str(e) not in problems:  # a manifest or log the engine already failed on
            problems.append(str(e))
    except OSError as e:  # a log the manifest lists is missing or unreadable
        problems.append(f"cannot read log ({e.strerror}): {e.filename}")
    except Exception as e:  # a reader bug must not hide the rest of the report
        problems.append(f"internal error while checking: {type(e).__name__}: {e}")
    finally:
        if engine is not None:
            engine.close()
    report["ok"] = not problems
    return report


_CHECK_CACHE_BYTES = 1 << 20  # check bypasses the cache; this only satisfies the reader's constructor


def _check_table(path: str, number: int, meta: FileMeta, problems: list[str], lost: list[LostRange]) -> tuple[int, int]:
    """Verify one table; ``(entries readable, bytes of the file)``. A table that fails `TableReader.check`
    is read again block by block, to count what is readable and say what the damaged blocks held."""
    try:
        reader = TableReader(path, number, BlockCache(_CHECK_CACHE_BYTES))
        try:
            return reader.check(), meta.file_size
        finally:
            reader.close()
    except CorruptionError as e:
        failure = str(e)
    if not os.path.exists(path):
        problems.append(failure)
        lost.append(missing_table(os.path.basename(path), meta))
        return 0, 0
    blocks = TableBlocks(path, meta)
    for _ in blocks.entries():
        pass
    problems += blocks.problems or [failure]
    lost += blocks.losses()
    return blocks.read - len(blocks.lost_values), blocks.bytes_read


def repair_database(directory: str, options: Optional[Options] = None) -> dict[str, Any]:
    """Salvage every readable record of the database in ``directory`` into a consistent database there.

    A database that passes `check_database` is left exactly as it is (no file written, moved or touched):
    the report says ``changed: False``.

    Returns a report: ``ok`` (the database passes `check_database` now), ``changed``, ``problems`` (the damage
    found), ``kept_records`` (live keys in the repaired database), ``lost`` and ``moved_to_lost`` (file
    names). ``lost`` says what could not be salvaged: ``records`` (table entries and log operations;
    ``records_exact`` False when part of it is estimated from the damaged bytes), ``ranges`` (the key range
    of every lost block, file or large value, `LostRange.as_json`, up to 100), ``keys`` (up to 100 keys whose
    large value was lost, hex), and counts of damaged log bytes, table blocks, large values, unreadable
    tables and missing files. Raises `byrondbm.error` if the directory is missing or the database is open
    elsewhere. Cost: a check of every file; when damaged, a rewrite of every record.
    """
    _require_directory(directory)
    names = os.listdir(directory)
    if filenames.CURRENT not in names and not any(filenames.parse(n) for n in names):
        raise error(errno.ENOENT, "no byrondbm database here (no CURRENT, manifest, log or table)", directory)
    options = options or Options()
    mode = _file_mode(directory)
    lock = DirLock(directory, mode=mode)  # the writer's lock: no writer may start while we decide
    try:
        before = check_database(directory)  # a reader: takes no lock
        if before["ok"]:
            return {"ok": True, "changed": False, "problems": [], "kept_records": before["live_keys"],
                    "lost": _Salvage(directory).lost_report(), "moved_to_lost": []}
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
            "changed": True,
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
        self.metas: dict[int, FileMeta] = {}  # what the manifest says of each table, when it is readable
        self.entries = 0
        self.counts = {"log_records": 0, "log_bytes": 0, "torn_log_bytes": 0, "table_blocks": 0,
                       "tables_unreadable": 0, "large_values": 0, "files_missing": 0}
        self.lost: list[LostRange] = []
        self.readers: list[TableBlocks] = []
        self.lost_keys: list[bytes] = []
        self.highest_number = 0

    def choose_sources(self) -> None:
        on_disk: dict[str, list[int]] = {"log": [], "sst": [], "manifest": []}
        for name in os.listdir(self.directory):
            parsed = filenames.parse(name)
            if parsed is not None and parsed[0] in on_disk:  # not an image: its log is the truth
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
        self.metas = {n: m for files in state.levels.values() for n, m in files.items()}
        self.tables = sorted(self.metas)
        self.logs = list(state.logs)
        for kind, numbers in (("sst", self.tables), ("log", self.logs)):
            for n in numbers:
                if n not in on_disk[kind]:
                    self.counts["files_missing"] += 1
                    self.problems.append(f"{kind} file {n:06d} listed in the manifest is missing")
                    if kind == "sst":
                        self.lost.append(missing_table(filenames.table_name(n), self.metas[n]))

    def _sources(self) -> list[Iterator[Entry]]:
        sources: list[Iterator[Entry]] = []
        for n in self.logs:
            path = filenames.path(self.directory, filenames.log_name(n))
            if os.path.exists(path):
                sources.append(iter(sorted(self._log_entries(path), key=_order)))
        for n in self.tables:
            path = filenames.path(self.directory, filenames.table_name(n))
            if os.path.exists(path):
                table = TableBlocks(path, self.metas.get(n))
                self.readers.append(table)
                sources.append(table.entries())
        return sources

    def _log_entries(self, path: str) -> list[Entry]:
        """Every operation of every record that verifies. Bytes skipped between valid records are damage
        (their operations counted at the log's mean bytes per operation, an estimate); bytes after the
        last valid record are a write torn by a crash, never acknowledged, so not a loss."""
        try:
            data = read_file(path)
        except OSError as e:
            self.problems.append(f"cannot read log ({e.strerror}): {path}")
            return []
        entries: list[Entry] = []
        damaged = end = 0
        for pos, rtype, payload in framing.iter_valid(data, path):
            damaged += pos - end
            end = pos + framing.HEADER_SIZE + len(payload)
            try:
                first_seq, ops = decode_record(rtype, payload, path)
            except CorruptionError as e:
                self.counts["log_records"] += 1
                self.problems.append(str(e))
                damaged += end - pos
                continue
            entries += [(key, -(first_seq + i), value) for i, (key, value) in enumerate(ops)]
        torn = len(data) - end
        self.counts["torn_log_bytes"] += torn
        if damaged:
            self.counts["log_bytes"] += damaged
            self.problems.append(f"{damaged} bytes of damaged log records skipped: {path}")
            per_op = (end - damaged) / len(entries) if entries else 0
            self.lost.append(LostRange(os.path.basename(path), None, True, None,
                                       max(1, round(damaged / per_op)) if per_op else 0, False, damaged))
        return entries

    def write_tables(self, options: Options, mode: int) -> tuple[int, list[FileMeta], int, int]:
        """Merge every source, newest version of each key first, and write the live keys as tables (through
        the engine's table builder, cut near ``target_file_size``).

        Returns ``(live keys, metas of the tables, highest sequence seen, first unused file number)``.
        """
        seen = {"kept": 0, "max_seq": 0}

        def live() -> Iterator[Entry]:
            previous: Optional[bytes] = None
            for key, negseq, value in heapq.merge(*self._sources(), key=_order):
                self.entries += 1
                seen["max_seq"] = max(seen["max_seq"], -negseq)
                if key == previous:
                    continue  # an older version of a key already decided
                previous = key
                if value is None:
                    continue  # deleted: every older version is in the merge, so the tombstone can go
                seen["kept"] += 1
                yield key, negseq, value

        first = self.highest_number + 1

        def table_path(k: int, final: bool = False) -> str:
            name = filenames.table_name(first + k)
            return filenames.path(self.directory, name if final else filenames.temp_name(name))

        outputs = build_tables(live(), options, mode, table_path, split=True)
        metas = []
        for k, (temp, props) in enumerate(outputs):
            os.replace(temp, table_path(k, final=True))
            metas.append(FileMeta.of(first + k, props))
        sync_dir(self.directory)
        self._fold_tables()
        return seen["kept"], metas, seen["max_seq"], first + len(outputs)

    def _fold_tables(self) -> None:
        """Add what each table's reader lost to the totals, once every source has been read."""
        for table in self.readers:
            self.problems += table.problems
            for kind, n in table.counts.items():
                self.counts[kind] += n
            self.lost += table.losses()
            self.lost_keys += table.lost_values
        estimate(self.lost, sum(t.read for t in self.readers), sum(t.bytes_read for t in self.readers))
        self.readers = []

    def lost_report(self) -> dict[str, Any]:
        """The report's ``lost``: see `repair_database`."""
        return {"records": sum(r.entries for r in self.lost), "records_exact": all(r.exact for r in self.lost),
                "ranges": [r.as_json() for r in self.lost[:_MAX_LISTED]],
                "keys": [k.hex() for k in self.lost_keys[:_MAX_LISTED]], **self.counts}


def _order(entry: Entry) -> tuple[bytes, int]:
    return entry[0], entry[1]


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


__all__ = ["check_database", "repair_database", "LOST_DIR"]
