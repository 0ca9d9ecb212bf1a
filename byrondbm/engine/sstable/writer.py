"""TableWriter: streams entries (in entry order) into a new table file; see format.py for the layout.

Writes go through a 1 MiB buffer; a large value goes out as its chunk run when its entry is encoded (at
once in `add_many`, with the next batch of `_BATCH` entries in `add`), so it lands before the data block
that refers to it. Each data block is compressed or not as `BlockCompressor`
(codec.py) decides, in the writer's process. Memory: one data block, the buffer, and 24 bytes per
distinct key (hashes, block and entry numbers for the filter and the hash index, built in `finish`).
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterable
from itertools import repeat

from mmh3 import hash64

from ...errors import error
from ...options import Options
from ..records import Entry
from .block import (
    ENTRY_OVERHEAD_4,
    KIND_LARGE,
    KIND_TOMBSTONE,
    KIND_VALUE,
    LARGE_REF,
    encode_block,
    encode_index,
    encoded_size,
)
from .bloom import build_filter
from .codec import CODEC_SHIFT, BlockCompressor
from .format import (
    BLOCK_CHUNK,
    BLOCK_DATA,
    BLOCK_FILTER,
    BLOCK_HASH_INDEX,
    BLOCK_INDEX,
    BLOCK_PROPERTIES,
    CHUNK_SIZE,
    FOOTER_SIZE,
    MAX_BLOCK_SIZE,
    MAX_STORED_SEQ,
    TRAILER_SIZE,
    Footer,
    Handle,
    TableProperties,
    block_trailer,
    encode_footer,
    encode_properties,
    properties_size,
)
from .hash_index import build_hash_index

_FLUSH_BYTES = 1 << 20
_U32 = struct.Struct("<I")
_BATCH = 64


class TableWriter:
    """Writes one table. Use: `add` entries in order, then `finish` (or `abandon` after any error)."""

    def __init__(self, path: str, options: Options, mode: int = 0o666) -> None:
        self.path = path
        self._block_size = options.block_size
        self._bits_per_key = options.bloom_bits_per_key
        self._large_threshold = options.large_value_threshold
        self._compress = BlockCompressor(options.compression)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        self._buf = bytearray()
        self._written = 0
        # The data block being built, as its columns, and its size if written with 4-byte offsets.
        self._keys: list[bytes] = []
        self._values: list[bytes] = []
        self._seqs: list[int] = []
        self._kinds = bytearray()
        self._size = 0
        self._index_keys: list[bytes] = []
        self._index_offsets: list[int] = []
        self._index_sizes: list[int] = []
        self._h1s = array("Q")
        self._h2s = array("Q")
        self._key_blocks = array("I")
        self._key_entries = array("I")
        self._block_keys: list[bytes] = []  # distinct keys starting in the current block, hashed at its end
        self._block_key_entries: list[int] = []  # the index of each one's first entry in the block
        self._stride = 1  # the most entries of any block so far
        self._last_key: bytes | None = None
        self._last_negseq = 0
        self._smallest = b""
        self._num_entries = 0
        self._num_deletions = 0
        self._min_seq = MAX_STORED_SEQ
        self._max_seq = 0
        self._raw_data_bytes = 0
        self._stored_data_bytes = 0
        self._finished = False
        self._pending: list[Entry] = []  # entries `add` accepted, encoded by `_encode` in batches
        self._tail: tuple[bytes, int] | None = None  # (key, negseq) of the last entry accepted

    @property
    def file_size(self) -> int:
        """Bytes written and buffered so far, the unfinished data block included (as if stored raw)."""
        if self._pending:
            self._drain()
        return self._written + len(self._buf) + (encoded_size(self._keys, self._values) if self._keys else 0)

    @property
    def num_entries(self) -> int:
        return self._num_entries + len(self._keys) + len(self._pending)

    def add(self, key: bytes, negseq: int, value: bytes | None) -> None:
        """Append one entry; it must come strictly after the previous one in entry order (else ValueError,
        the entry not added). Entries are checked here and encoded in batches of _BATCH (a call of
        `_encode` per entry would cost ~1 µs of setup each)."""
        if self._finished:
            raise error(f"table writer for {self.path} is finished")
        if not 0 <= -negseq <= MAX_STORED_SEQ:
            raise ValueError(f"sequence number {-negseq} out of the storable range")
        tail = self._tail
        if tail is not None and (key, negseq) <= tail:
            raise ValueError(f"table entries out of order: {key!r} seq {-negseq} after {tail[0]!r} seq {-tail[1]}")
        self._tail = (key, negseq)
        pending = self._pending
        pending.append((key, negseq, value))
        if len(pending) >= _BATCH:
            self._drain()

    def add_many(self, entries: Iterable[Entry], limit: int = -1) -> Entry | None:
        """Append ``entries`` in order, as `add` would (ValueError on disorder, the entry not added).

        With ``limit >= 0``, stop at the first entry of a new key once `file_size` has reached ``limit``
        and return it, not added (so a caller can start the next table there); else return None once
        every entry is in. Cost: ~1 µs an entry (16-byte keys, 100-byte values), plus ~1 µs a distinct
        key in `finish` for the filter and the hash index: the loop keeps the block in local variables and
        appends to its columns; the block is laid out by `encode_block` in C-level passes.
        """
        if self._pending:
            self._drain()
        try:
            return self._encode(entries, limit)
        finally:
            self._tail = None if self._last_key is None else (self._last_key, self._last_negseq)

    def _drain(self) -> None:
        pending = self._pending
        self._pending = []
        self._encode(pending, -1)

    def _encode(self, entries: Iterable[Entry], limit: int) -> Entry | None:
        """The loop of `add_many`: checks entries and appends them to the block's columns, cutting blocks
        as they fill."""
        if self._finished:
            raise error(f"table writer for {self.path} is finished")
        if limit < 0:
            limit = 1 << 63
        max_seq_allowed = MAX_STORED_SEQ
        block_size = self._block_size
        large = self._large_threshold
        keys, values, seqs, kinds = self._keys, self._values, self._seqs, self._kinds
        block_keys = self._block_keys
        block_key_entries = self._block_key_entries
        size = self._size
        last = self._last_key
        last_negseq = self._last_negseq
        base = self._offset()  # bytes before the current block
        try:
            for key, negseq, value in entries:
                seq = -negseq
                if not 0 <= seq <= max_seq_allowed:
                    raise ValueError(f"sequence number {seq} out of the storable range")
                if key == last:
                    if negseq <= last_negseq:
                        raise ValueError(f"table entries out of order: {key!r} seq {seq} after seq {-last_negseq}")
                else:
                    if last is None:
                        self._smallest = key
                    elif key < last:  # type: ignore[operator]
                        raise ValueError(f"table entries out of order: key {key!r} after {last!r}")
                    elif base + size >= limit:
                        return (key, negseq, value)
                    block_keys.append(key)
                    block_key_entries.append(len(keys))
                    last = key
                last_negseq = negseq
                if value is None:
                    kinds.append(KIND_TOMBSTONE)
                    value = b""
                elif len(value) > large:
                    kinds.append(KIND_LARGE)
                    value = LARGE_REF.pack(self._write_run(value), len(value))
                    base = self._offset()
                else:
                    kinds.append(KIND_VALUE)
                keys.append(key)
                values.append(value)
                seqs.append(seq)
                size += len(key) + len(value) + ENTRY_OVERHEAD_4
                if size >= block_size:
                    self._last_key = last
                    self._finish_block()
                    keys, values, seqs, kinds = self._keys, self._values, self._seqs, self._kinds
                    block_keys, block_key_entries = self._block_keys, self._block_key_entries
                    size = 0
                    base = self._offset()
        finally:  # the state after the last entry added
            self._size = size
            self._last_key = last
            self._last_negseq = last_negseq
        return None

    def finish(self) -> TableProperties:
        """Write the remaining blocks and the footer, fsync and close. ValueError if no entry was added."""
        if self._pending:
            self._drain()
        if self._last_key is None:
            raise ValueError(f"table {self.path} has no entries")
        if self._keys:
            self._finish_block()
        data_size = self._offset()
        num_blocks = len(self._index_keys)
        filter_handle = self._write_block(build_filter(self._h1s, self._h2s, self._bits_per_key), BLOCK_FILTER)
        stride = self._stride
        slots = [b * stride + i for b, i in zip(self._key_blocks, self._key_entries)]
        hash_handle = self._write_block(build_hash_index(self._h2s, slots, stride, num_blocks), BLOCK_HASH_INDEX)
        index = encode_index(self._index_keys, self._index_offsets, self._index_sizes)
        index_handle = self._write_block(index, BLOCK_INDEX)
        largest = self._last_key
        props_offset = self._offset()
        file_size = props_offset + properties_size(self._smallest, largest) + TRAILER_SIZE + FOOTER_SIZE
        props = TableProperties(
            num_entries=self._num_entries,
            num_deletions=self._num_deletions,
            smallest_key=self._smallest,
            largest_key=largest,
            min_seq=self._min_seq,
            max_seq=self._max_seq,
            file_size=file_size,
            data_size=data_size,
            num_data_blocks=num_blocks,
            raw_data_bytes=self._raw_data_bytes,
            stored_data_bytes=self._stored_data_bytes,
        )
        props_handle = self._write_block(encode_properties(props), BLOCK_PROPERTIES)
        self._emit(encode_footer(Footer(index_handle, filter_handle, hash_handle, props_handle)))
        self._flush()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._last_key = None
        self._finished = True
        return props

    def abandon(self) -> None:
        """Close and unlink the partial file; safe to call after any error, and more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._finished = True
        self._last_key = None
        self._pending = []
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _offset(self) -> int:
        return self._written + len(self._buf)

    def _finish_block(self) -> None:
        """Write the block being built (ending with ``_last_key``), account for its entries and start the next."""
        keys = self._block_keys
        hashes = [hash64(key, signed=False) for key in keys]
        self._h1s.extend([h[0] for h in hashes])
        self._h2s.extend([h[1] for h in hashes])
        self._key_blocks.extend(repeat(len(self._index_keys), len(keys)))
        self._key_entries.extend(self._block_key_entries)
        seqs = self._seqs
        n = len(seqs)
        self._stride = max(self._stride, n)
        self._num_entries += n
        self._num_deletions += n - self._kinds.count(KIND_VALUE) - self._kinds.count(KIND_LARGE)
        self._min_seq = min(self._min_seq, min(seqs))
        self._max_seq = max(self._max_seq, max(seqs))
        self._index_keys.append(self._last_key)  # type: ignore[arg-type]
        contents = encode_block(self._keys, self._values, seqs, self._kinds)
        stored, codec = self._compress(contents)
        self._raw_data_bytes += len(contents)
        self._stored_data_bytes += len(stored)
        handle = self._write_block(stored, BLOCK_DATA | codec << CODEC_SHIFT)
        self._index_offsets.append(handle.offset)
        self._index_sizes.append(handle.size)
        self._keys, self._values, self._seqs, self._kinds = [], [], [], bytearray()
        self._block_keys = []
        self._block_key_entries = []
        self._size = 0

    def _write_block(self, contents: bytes, block_type: int) -> Handle:
        if len(contents) > MAX_BLOCK_SIZE:
            raise ValueError(f"block of {len(contents)} bytes is too large for a table")
        handle = Handle(self._offset(), len(contents))
        self._emit(contents)
        self._emit(block_trailer(contents, block_type))
        return handle

    def _write_run(self, value: bytes) -> int:
        """Write a large value as its chunk run; returns the run's offset."""
        offset = self._offset()
        view = memoryview(value)
        for start in range(0, len(view), CHUNK_SIZE):
            chunk = view[start : start + CHUNK_SIZE]
            self._emit(chunk)
            self._emit(block_trailer(chunk, BLOCK_CHUNK))
        return offset

    def _emit(self, data: bytes | memoryview) -> None:
        self._buf += data
        if len(self._buf) >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        buf = self._buf
        done = 0
        with memoryview(buf) as view:
            while done < len(buf):
                done += os.write(self._fd, view[done:])
        self._written += done
        buf.clear()
