"""Block-by-block reading of one table that survives damage: what `check` counts and `repair` salvages.

`TableReader` refuses a whole table at its first bad block; this module reads every data block on its own
so that a flipped byte costs only the block it is in, and says what that block held: its key range, from
the index (each block's last key bounds it), and its entry count, exact from the table's properties (or
the manifest's record of the table) when the index gives one block per damage, else estimated from bytes.

Blocks are found through the index when the footer and index verify, else by walking the file from its
start, block after block, until a block fails (the footer is at the end, so a damaged one hides nothing
the walk cannot find). Cost: every block read and CRC-checked once, bypassing the block cache.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Iterator
from typing import Any, Optional

from ..errors import CorruptionError
from .manifest import FileMeta
from .records import Entry
from .sstable.block import LargeValue, decode_block, decode_index
from .sstable.codec import DATA_BLOCK_TYPES, read_data_block
from .sstable.format import (BLOCK_CHUNK, BLOCK_FILTER, BLOCK_INDEX, BLOCK_PROPERTIES, CHUNK_SIZE,
                             FOOTER_SIZE, TRAILER_SIZE, TableProperties, decode_footer, decode_properties,
                             read_block, read_exact, run_size, verify_trailer)


@dataclasses.dataclass
class LostRange:
    """Records a damaged block (or file) held: keys above ``low`` (or from it, when ``low_inclusive``;
    unbounded when None) through ``high`` (unbounded when None), ``entries`` of them (``exact`` or an
    estimate), in ``source`` (a file name)."""

    source: str
    low: Optional[bytes]
    low_inclusive: bool
    high: Optional[bytes]
    entries: int
    exact: bool
    size: int = 0  # damaged bytes, which an estimate is made from

    def as_json(self) -> dict[str, Any]:
        """Keys as hex: exact for any bytes."""
        return {"source": self.source, "low": None if self.low is None else self.low.hex(),
                "low_inclusive": self.low_inclusive, "high": None if self.high is None else self.high.hex(),
                "entries": self.entries, "exact": self.exact}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LostRange:
        """The inverse of `as_json` (for a report read back, as the command line does)."""
        def key(text: Optional[str]) -> Optional[bytes]:
            return None if text is None else bytes.fromhex(text)

        return cls(d["source"], key(d["low"]), d["low_inclusive"], key(d["high"]), d["entries"], d["exact"])

    def describe(self) -> str:
        """``'a'``-style text for people: bytes that are not UTF-8 as ``\\xNN`` escapes."""
        def show(key: bytes) -> str:
            return repr(key.decode("utf-8", "backslashreplace"))

        low = "" if self.low is None else f"{'from' if self.low_inclusive else 'after'} {show(self.low)} "
        high = "to the end" if self.high is None else f"through {show(self.high)}"
        count = f"{self.entries:,}" if self.exact else f"about {self.entries:,}"
        keys = "keys unknown" if self.low is None and self.high is None else f"keys {low}{high}"
        return f"{self.source}: {count} entries, {keys}"


class TableBlocks:
    """One pass over the data blocks of the table at ``path``; `entries()` yields every entry that verifies
    and records what does not in `problems`, `lost` (block ranges), `lost_values` (keys of large values that
    did not verify) and `counts`. ``meta``, the manifest's record of the table, gives the entry count and
    key range when the table's own properties are unreadable."""

    def __init__(self, path: str, meta: Optional[FileMeta] = None) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.meta = meta
        self.read = 0  # entries in blocks that verified
        self.bytes_read = 0  # and their bytes, which estimates of what others held are made from
        self.problems: list[str] = []
        self.lost: list[LostRange] = []
        self.lost_values: list[bytes] = []
        self.counts = {"table_blocks": 0, "large_values": 0, "tables_unreadable": 0}

    def entries(self) -> Iterator[Entry]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            self._unreadable(f"cannot open table ({e.strerror}): {self.path}", 0)
            return
        try:
            yield from self._entries(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def losses(self) -> list[LostRange]:
        """Every lost block range, then one range per lost large value (its key, one record)."""
        return self.lost + [LostRange(self.name, key, True, key, 1, True) for key in self.lost_values]

    def _entries(self, fd: int, size: int) -> Iterator[Entry]:
        layout = _layout(fd, size, self.path)
        if layout is None:
            handles, complete = _walk(read_exact(fd, size, 0, self.path))
            self._note("tables_unreadable",
                       f"table footer or index damaged, {len(handles)} blocks found by walking: {self.path}")
            props, keys = None, None
        else:
            handles, keys, props = layout
            complete = True
        bad: list[int] = []  # indexes into handles
        last_read: Optional[bytes] = None
        previous: Optional[tuple[bytes, int]] = None
        for b, (offset, block_size) in enumerate(handles):
            try:
                entries = _data_block(fd, offset, block_size, size, self.path)
                if previous is not None and entries[0][:2] <= previous:
                    raise CorruptionError("block out of order with the previous one", self.path)
            except CorruptionError as e:
                self._note("table_blocks", f"data block at offset {offset} lost ({e})")
                bad.append(b)
                continue
            previous = entries[-1][:2]
            last_read = entries[-1][0]
            self.read += len(entries)
            self.bytes_read += block_size
            for key, negseq, value in entries:
                if value.__class__ is LargeValue:
                    try:
                        value = _large_value(fd, value, size, self.path)  # type: ignore[arg-type]
                    except CorruptionError as e:
                        self._note("large_values", f"large value lost ({e})")
                        if not self.lost_values or self.lost_values[-1] != key:
                            self.lost_values.append(key)
                        continue
                yield key, negseq, value  # type: ignore[misc]
        expected = props.num_entries if props is not None else self.meta.entries if self.meta else None
        if keys is not None:
            self._blocks_lost(bad, handles, keys, expected, props)
        elif bad or not complete:
            # Walked: damage cannot be placed between index keys. An incomplete walk lost everything after
            # the last block read; a block that failed inside the walk could hold any key of the table.
            meta = self.meta
            low: Optional[bytes]
            if not bad and last_read is not None:
                low, inclusive = last_read, False
            else:
                low, inclusive = (meta.smallest, True) if meta else (None, True)
            end = handles[-1][0] + handles[-1][1] + TRAILER_SIZE if handles else 0
            unread = sum(handles[b][1] for b in bad) + (0 if complete else max(0, size - end - FOOTER_SIZE))
            missing = None if expected is None else max(0, expected - self.read)
            self._add_range(low, inclusive, meta.largest if meta else None, missing, unread)

    def _blocks_lost(self, bad: list[int], handles: list[tuple[int, int]], keys: list[bytes],
                     expected: Optional[int], props: Optional[TableProperties]) -> None:
        """One range per run of consecutive lost blocks; the table's entry count, less what was read, is
        their exact total, shared out by bytes when more than one run lost entries."""
        runs: list[list[int]] = []
        for b in bad:
            if runs and runs[-1][-1] == b - 1:
                runs[-1].append(b)
            else:
                runs.append([b])
        missing = None if expected is None else max(0, expected - self.read)
        sizes = [sum(handles[b][1] for b in run) for run in runs]
        for run, run_bytes in zip(runs, sizes):
            first = run[0]
            low: Optional[bytes]
            if first:
                low, inclusive = keys[first - 1], False  # the newest version of that key was read before
            else:
                low, inclusive = (props.smallest_key if props else self.meta.smallest if self.meta else None), True
            share = None if missing is None else round(missing * run_bytes / max(1, sum(sizes)))
            self._add_range(low, inclusive, keys[run[-1]], share, run_bytes, exact=len(runs) == 1)

    def _add_range(self, low: Optional[bytes], inclusive: bool, high: Optional[bytes], entries: Optional[int],
                   size: int, exact: bool = True) -> None:
        """``entries=None``: unknown, estimated later from ``size`` (see `estimate`)."""
        if entries == 0 and exact:
            return
        self.lost.append(LostRange(self.name, low, inclusive, high, entries or 0, exact and entries is not None, size))

    def _unreadable(self, problem: str, size: int) -> None:
        self._note("tables_unreadable", problem)
        meta = self.meta
        if meta is not None:
            self._add_range(meta.smallest, True, meta.largest, meta.entries, meta.file_size)
        else:
            self._add_range(None, True, None, None, size)

    def _note(self, kind: str, problem: str) -> None:
        self.counts[kind] += 1
        self.problems.append(problem)


def missing_table(name: str, meta: FileMeta) -> LostRange:
    """What a table the manifest lists but the directory lacks held: the manifest records it exactly."""
    return LostRange(name, meta.smallest, True, meta.largest, meta.entries, True, meta.file_size)


def estimate(ranges: list[LostRange], entries_read: int, bytes_read: int) -> None:
    """Fill the entry counts of ranges nobody could count (``exact=False``, ``entries=0``) from ``size`` at
    the mean bytes per entry of what was read (one entry per 64 bytes when nothing was)."""
    per_entry = bytes_read / entries_read if entries_read and bytes_read else 64.0
    for r in ranges:
        if not r.exact and r.entries == 0 and r.size:
            r.entries = max(1, round(r.size / per_entry))


# ---------------------------------------------------------------- layout

_Layout = tuple[list[tuple[int, int]], list[bytes], Optional[TableProperties]]


def _layout(fd: int, size: int, path: str) -> Optional[_Layout]:
    """``(handles, last keys, properties or None)`` from the footer and index; None if either fails."""
    try:
        if size < FOOTER_SIZE:
            raise CorruptionError("table shorter than its footer", path)
        footer = decode_footer(read_exact(fd, FOOTER_SIZE, size - FOOTER_SIZE, path), size, path)
        h = footer.index
        keys, offsets, sizes = decode_index(read_block(fd, h.offset, h.size, BLOCK_INDEX, path), h.size, path)
    except CorruptionError:
        return None
    try:
        h = footer.properties
        props: Optional[TableProperties] = decode_properties(
            read_block(fd, h.offset, h.size, BLOCK_PROPERTIES, path), h.size, footer.version, path)
    except CorruptionError:
        props = None
    return list(zip(offsets, sizes)), keys, props


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


# ---------------------------------------------------------------- the walk

_WALK_WINDOW = 4 * 1024 * 1024 + CHUNK_SIZE  # the longest block the walk looks for
_WALK_TYPES = DATA_BLOCK_TYPES | {BLOCK_CHUNK, BLOCK_FILTER}


def _walk(data: bytes) -> tuple[list[tuple[int, int]], bool]:
    """Data blocks found by walking the file from offset 0, and whether the walk reached the filter block
    that follows the data area (then no data block was missed). Each block ends where a type byte is
    followed by the CRC of everything since the previous block."""
    handles: list[tuple[int, int]] = []
    pos = 0
    while True:
        found = _block_end(data, pos)
        if found is None:
            return handles, False
        end, block_type = found
        if block_type == BLOCK_FILTER:
            return handles, True
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
    if block_type not in _WALK_TYPES:
        return False
    return zlib.crc32(view[end : end + 1], crc_of_contents) == int.from_bytes(view[end + 1 : end + 5], "little")


__all__ = ["LostRange", "TableBlocks", "estimate", "missing_table"]
