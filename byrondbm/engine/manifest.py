"""The manifest: the durable history of the set of live files, as version edits (LevelDB's MANIFEST).

Byte layout: a framed file (see framing.py) of records of type ``1`` (EDIT) whose payload is::

    json_len: u32 LE | JSON object (json_len bytes of UTF-8) | key area (the rest)

Keys are not put in the JSON (hex-encoding a 64 MiB key costs seconds): each appears there as
``{"b": [offset, length]}``, naming bytes of the key area. The JSON object has any of these fields::

    "next_file": int            next unused file number
    "last_seq": int             highest sequence number in the tables
    "count": int                live keys in the tables (exact; with the memtables it gives len())
    "logs": [int, ...]          logs created, still to be replayed until a flush retires them
    "log_floor": int            every log numbered below this is retired (its data is in a table)
    "add": [[level, number, file_size, smallest, largest, min_seq, max_seq, entries, deletions], ...]
    "del": [[level, number], ...]
    "pointer": [level, key] where the next compaction of that level starts (round robin)
    "pointers": [[level, key], ...]   every level's pointer (in a snapshot)
    "totals": {name: int}       running totals for stats (flushes, compactions, bytes written by the
                                user and by the engine), so write amplification spans every session

(``smallest``, ``largest`` and ``key`` are key references; a hex string is also accepted for them.)
The first record of a manifest is a full snapshot; later ones are deltas. CURRENT holds the manifest's
name plus a newline and is replaced atomically (write a temp file, fsync, rename, fsync the directory).
Appends are fsync'ed before the edit counts: a table or log is referenced only after it is durable, and a
log or input table is deleted only after the edit that retires it is durable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from typing import Any, Union

from ..errors import CorruptionError, error
from . import filenames
from .fileio import read_file, sync_dir, sync_fd, write_all, write_synced
from .framing import frame, read_records
from .sstable import TableProperties

EDIT = 1
_CURRENT_LIMIT = 256  # CURRENT holds one short name; more is damage


@dataclasses.dataclass(frozen=True)
class FileMeta:
    """What the manifest knows of a table without opening it."""

    number: int
    file_size: int
    smallest: bytes
    largest: bytes
    min_seq: int
    max_seq: int
    entries: int
    deletions: int

    @classmethod
    def of(cls, number: int, p: TableProperties) -> "FileMeta":
        """What the manifest records of table ``number`` with properties ``p``."""
        return cls(number, p.file_size, p.smallest_key, p.largest_key, p.min_seq, p.max_seq,
                   p.num_entries, p.num_deletions)

    def encode(self, level: int) -> list[Any]:
        """The ``add`` item of an edit (keys as bytes; `encode_edit` moves them to the key area)."""
        return [level, self.number, self.file_size, self.smallest, self.largest,
                self.min_seq, self.max_seq, self.entries, self.deletions]


@dataclasses.dataclass
class ManifestState:
    """The folded result of all edits: what a version is built from at open."""

    next_file: int = 2
    last_seq: int = 0
    count: int = 0
    logs: list[int] = dataclasses.field(default_factory=list)
    log_floor: int = 0
    levels: dict[int, dict[int, FileMeta]] = dataclasses.field(default_factory=dict)
    pointers: dict[int, bytes] = dataclasses.field(default_factory=dict)
    totals: dict[str, int] = dataclasses.field(default_factory=dict)

    def apply(self, edit: dict[str, Any]) -> None:
        """Fold one edit in. Raises KeyError/ValueError/TypeError on malformed edits (callers wrap)."""
        if "next_file" in edit:
            self.next_file = max(self.next_file, int(edit["next_file"]))
        if "last_seq" in edit:
            self.last_seq = max(self.last_seq, int(edit["last_seq"]))
        if "count" in edit:
            self.count = int(edit["count"])
        if "log_floor" in edit:
            self.log_floor = max(self.log_floor, int(edit["log_floor"]))
        for n in edit.get("logs", ()):
            if int(n) not in self.logs:
                self.logs.append(int(n))
        self.logs = sorted(n for n in self.logs if n >= self.log_floor)
        for level, number in edit.get("del", ()):
            self.levels.get(int(level), {}).pop(int(number), None)
        for item in edit.get("add", ()):
            level, number, size, lo, hi, min_seq, max_seq, entries, deletions = item
            meta = FileMeta(int(number), int(size), _key(lo), _key(hi),
                            int(min_seq), int(max_seq), int(entries), int(deletions))
            self.levels.setdefault(int(level), {})[meta.number] = meta
        if "totals" in edit:
            self.totals = {str(k): int(v) for k, v in edit["totals"].items()}
        pointers = list(edit.get("pointers", ()))
        if "pointer" in edit:
            pointers.append(edit["pointer"])
        for level, key in pointers:
            self.pointers[int(level)] = _key(key)

    def snapshot_edit(self) -> dict[str, Any]:
        """One edit that recreates this state from nothing."""
        return {
            "next_file": self.next_file,
            "last_seq": self.last_seq,
            "count": self.count,
            "logs": list(self.logs),
            "log_floor": self.log_floor,
            "totals": dict(self.totals),
            "add": [meta.encode(level) for level, files in sorted(self.levels.items()) for meta in files.values()],
            "pointers": [[level, key] for level, key in sorted(self.pointers.items())],
        }


def _key(value: Union[bytes, str]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return bytes.fromhex(value)
    raise TypeError(f"a key in an edit must be bytes or hex, not {type(value).__name__}")


_U32 = struct.Struct("<I")


def encode_edit(edit: dict[str, Any]) -> bytes:
    """One framed EDIT record; bytes anywhere in ``edit`` go to the key area. Cost: O(size), keys copied once."""
    keys: list[bytes] = []
    offset = 0

    def reference(value: object) -> dict[str, list[int]]:
        nonlocal offset
        if not isinstance(value, bytes):
            raise TypeError(f"cannot store {type(value).__name__} in a manifest edit")
        keys.append(value)
        ref = {"b": [offset, len(value)]}
        offset += len(value)
        return ref

    text = json.dumps(edit, separators=(",", ":"), default=reference).encode()
    return frame(EDIT, b"".join([_U32.pack(len(text)), text, *keys]))


def decode_edit(payload: bytes) -> dict[str, Any]:
    """The edit of an EDIT payload. Raises ValueError/TypeError when it is malformed (callers wrap)."""
    if len(payload) < 4:
        raise ValueError("edit shorter than its header")
    (json_len,) = _U32.unpack_from(payload, 0)
    if 4 + json_len > len(payload):
        raise ValueError("edit JSON runs past the record")
    area = memoryview(payload)[4 + json_len :]

    def resolve(obj: dict[str, Any]) -> Any:
        if set(obj) != {"b"}:
            return obj
        start, length = obj["b"]
        if not (isinstance(start, int) and isinstance(length, int) and 0 <= start <= start + length <= len(area)):
            raise ValueError("key reference outside the key area")
        return bytes(area[start : start + length])

    edit = json.loads(payload[4 : 4 + json_len], object_hook=resolve)
    if not isinstance(edit, dict):
        raise TypeError("edit is not a JSON object")
    return edit


def read_current(directory: str) -> str:
    """The manifest name CURRENT points at; CorruptionError if CURRENT is unreadable or malformed."""
    path = filenames.path(directory, filenames.CURRENT)
    try:
        data = read_file(path, _CURRENT_LIMIT)
    except OSError as e:
        raise CorruptionError(f"cannot read CURRENT ({e.strerror})", path) from None
    name = data.decode("ascii", "replace").strip()
    parsed = filenames.parse(name)
    if not data.endswith(b"\n") or parsed is None or parsed[0] != "manifest":
        raise CorruptionError("CURRENT does not name a manifest", path)
    return name


def load(directory: str) -> tuple[ManifestState, str]:
    """Read CURRENT and fold its manifest. Any damage raises `CorruptionError` naming the file.

    A torn last edit (a crash while appending it) is dropped: nothing it referenced was relied on yet.
    """
    name = read_current(directory)
    path = filenames.path(directory, name)
    try:
        data = read_file(path)
    except OSError as e:
        raise CorruptionError(f"cannot read manifest ({e.strerror})", path) from None
    state = ManifestState()
    if not apply_edits(state, data, path):
        raise CorruptionError("manifest holds no valid edit", path)
    return state, name


def apply_edits(state: ManifestState, data: bytes, path: str) -> int:
    """Fold the whole edits of ``data`` (a manifest, or the bytes after an edit boundary) into ``state``;
    return how many bytes they span (a torn or unfinished last edit is left out, for the caller to read
    again later). Damage raises `CorruptionError` naming ``path``."""
    records, valid_end = read_records(data, path)
    for rtype, payload in records:
        if rtype != EDIT:
            raise CorruptionError(f"unknown manifest record type {rtype}", path)
        try:
            state.apply(decode_edit(payload))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptionError(f"malformed manifest edit ({e})", path) from None
    return valid_end


class ManifestWriter:
    """Appends edits to a new manifest that starts with a full snapshot, then points CURRENT at it.

    If the constructor raises, CURRENT still names the previous manifest, which stays valid.

    A failed append is cut back off the file (and that cut fsync'ed), so an edit is either durably in
    the manifest or certainly not; if even the cut fails the writer is failed and every later append
    raises `byrondbm.error` (the edit's fate is unknown, so nothing may be built on it)."""

    def __init__(self, directory: str, number: int, state: ManifestState, mode: int) -> None:
        self.directory = directory
        self.name = filenames.manifest_name(number)
        self.path = filenames.path(directory, self.name)
        self._mode = mode
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, mode)
        self._failure: OSError | None = None
        self.size = 0
        self.bytes_written = 0
        current = filenames.path(directory, filenames.CURRENT)
        tmp = filenames.temp_name(current)
        try:
            self.append(state.snapshot_edit())
            sync_dir(directory)
            write_synced(tmp, (self.name + "\n").encode(), mode)
            os.replace(tmp, current)
        except BaseException:
            self.close()
            for leftover in (self.path, tmp):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            raise
        # CURRENT names this manifest now: a failure from here on cannot be undone, so it fails the writer
        try:
            sync_dir(directory)
        except OSError as e:
            self._failure = e

    def append(self, edit: dict[str, Any]) -> None:
        """Append one edit and fsync it: when this returns, the edit survives a power cut. When it raises
        `OSError`, the edit is not in the manifest."""
        if self._failure is not None:
            f = self._failure
            raise error(f.errno, f"manifest unusable after a failed write ({f.strerror}); reopen the database", self.path)
        record = encode_edit(edit)
        try:
            write_all(self._fd, record)
            sync_fd(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self.size)
                sync_fd(self._fd)
            except OSError as e:
                self._failure = e
            raise
        self.size += len(record)
        self.bytes_written += len(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
