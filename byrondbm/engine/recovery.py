"""Recovery: rebuild a database's state from CURRENT, the manifest, the tables it lists and its logs
(LevelDB's ``DBImpl::Recover``).

Each live log becomes a memtable of its own (oldest first): loaded from its image when a clean close saved
one (memimage.py, in C), else replayed record by record. A writer appends to the last log again when its
memtable came whole from its image; every other log's memtable becomes immutable and the flusher writes it
to L0 in the background. So opening costs the replay of what no image covers, and nothing more.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

from ..errors import CorruptionError
from . import filenames
from .manifest import FileMeta, ManifestState, load as load_manifest
from . import memimage
from .memtable import Memtable
from .records import Op
from .sstable import BlockCache, TableReader
from .version import MAX_LEVELS
from .versionset import open_table
from .wal import parse_log

__all__ = ["Recovered", "apply_batches", "arrange", "recover", "table_metas"]


@dataclasses.dataclass
class Recovered:
    state: ManifestState
    manifest_name: str
    levels: list[list[TableReader]]
    memtables: list[Memtable]
    """One per live log, oldest first (empty logs included)."""
    last_seq: int
    whole_images: dict[int, int]
    """Log number -> its length, for the logs whose memtable came whole from the log's image (a clean
    close): their images still hold; a writer may append to the last such log."""


def recover(directory: str, cache: BlockCache) -> Recovered:
    """Read the manifest, open its tables, replay its logs. Damage raises `CorruptionError` naming the file;
    a torn last log record or manifest edit (a crash mid-append) is dropped."""
    state, manifest_name = load_manifest(directory)
    names = [n[: -len(filenames.TEMP_SUFFIX)] if n.endswith(filenames.TEMP_SUFFIX) else n for n in os.listdir(directory)]
    used = [p[1] for p in map(filenames.parse, names) if p is not None]  # a crashed temp file holds its number
    state.next_file = max([state.next_file] + [n + 1 for n in used])  # never reuse a number on disk
    tables: dict[int, TableReader] = {}
    try:
        for meta in table_metas(state, filenames.path(directory, manifest_name)):
            tables[meta.number] = open_table(directory, meta.number, cache, meta.file_size)
    except BaseException:
        for t in tables.values():
            t.close()
        raise
    last = state.last_seq
    memtables = []
    whole_images: dict[int, int] = {}
    for number in state.logs:
        mem, last, whole = _recover_log(directory, number, last)
        mem.max_seq = last
        memtables.append(mem)
        if whole >= 0:
            whole_images[number] = whole
    return Recovered(state, manifest_name, arrange(state, tables), memtables, last, whole_images)


def _recover_log(directory: str, number: int, last_seq: int) -> tuple[Memtable, int, int]:
    """Log ``number``'s memtable, the new last sequence number, and the log's length if the memtable came
    whole from the log's image (memimage.py: loaded in C, nothing past it in the log), else -1: the log
    was replayed, past its image's end if the image matches its start, else whole."""
    path = filenames.path(directory, filenames.log_name(number))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CorruptionError("log listed in the manifest is missing", path) from None
    loaded = memimage.load(filenames.path(directory, filenames.image_name(number)), number, data, last_seq)
    if loaded is None:
        mem, start = Memtable(number), 0
    else:
        mem, start, last_seq = loaded
    batches, _valid_end = parse_log(data[start:], path)  # a torn tail is dropped
    last_seq = apply_batches(batches, mem, last_seq, path, keep_old=False)
    return mem, last_seq, start if loaded is not None and start == len(data) else -1


def table_metas(state: ManifestState, manifest_path: str) -> list[FileMeta]:
    """Every table ``state`` lists; a level out of range is damage of the manifest."""
    for level in state.levels:
        if not 0 <= level < MAX_LEVELS:
            raise CorruptionError(f"manifest names level {level}", manifest_path)
    return [meta for files in state.levels.values() for meta in files.values()]


def arrange(state: ManifestState, tables: Mapping[int, TableReader]) -> list[list[TableReader]]:
    """The open ``tables`` placed as ``state`` lists them: L0 newest first, sorted levels by key."""
    levels: list[list[TableReader]] = [[] for _ in range(MAX_LEVELS)]
    for level, files in state.levels.items():
        levels[level] += [tables[n] for n in files]
    levels[0].sort(key=lambda t: -t.properties.max_seq)
    for level in range(1, MAX_LEVELS):
        levels[level].sort(key=lambda t: t.smallest)
    return levels


def apply_batches(
    batches: Iterable[tuple[int, list[Op]]], mem: Memtable, last_seq: int, path: str, keep_old: bool
) -> int:
    """Put the log records ``batches`` above ``last_seq`` into ``mem``, in order; return the new last sequence
    number. ``keep_old`` keeps the versions they overwrite (needed while anyone may read ``mem`` at an older
    sequence number: a reader tailing a log under its own scans and snapshots). Cost: one store an op."""
    put = mem.put
    for first_seq, ops in batches:
        if first_seq + len(ops) - 1 <= last_seq:
            continue  # already in a table
        if first_seq <= last_seq:
            raise CorruptionError(f"log batch at sequence {first_seq} overlaps sequence {last_seq}", path)
        for i, (key, value) in enumerate(ops):
            put((key, -(first_seq + i), value), keep_old)
        last_seq = first_seq + len(ops) - 1
    return last_seq
