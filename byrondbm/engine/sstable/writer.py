"""TableWriter: streams entries (in entry order) into a new table file; see format.py for the layout.

Writes go through a 1 MiB buffer; a large value goes out as its chunk run as soon as it is added, so it
lands before the data block that refers to it. Memory: one data block, the buffer, and 24 bytes per
distinct key (hashes, block and restart numbers for the filter and the hash index, built in `finish`).
"""

from __future__ import annotations

import os
from array import array
from itertools import repeat

from mmh3 import hash64

from ...errors import error
from ...options import Options
from .block import (
    KIND_LARGE,
    KIND_TOMBSTONE,
    KIND_VALUE,
    LARGE_REF,
    RESTART_SHIFT,
    BlockBuilder,
    encode_index,
)
from .bloom import build_filter
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


class TableWriter:
    """Writes one table. Use: `add` entries in order, then `finish` (or `abandon` after any error)."""

    def __init__(self, path: str, options: Options, mode: int = 0o666) -> None:
        self.path = path
        self._block_size = options.block_size
        self._bits_per_key = options.bloom_bits_per_key
        self._large_threshold = options.large_value_threshold
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        self._buf = bytearray()
        self._written = 0
        self._block = BlockBuilder()
        self._index_keys: list[bytes] = []
        self._index_offsets: list[int] = []
        self._index_sizes: list[int] = []
        self._h1s = array("Q")
        self._h2s = array("Q")
        self._key_blocks = array("I")
        self._key_restarts = array("I")
        self._block_keys: list[bytes] = []  # distinct keys starting in the current block, hashed at its end
        self._block_key_restarts: list[int] = []
        self._stride = 1  # the most restart points of any block so far
        self._last_key: bytes | None = None
        self._last_negseq = 0
        self._smallest = b""
        self._num_entries = 0
        self._num_deletions = 0
        self._min_seq = MAX_STORED_SEQ
        self._max_seq = 0
        self._finished = False

    @property
    def file_size(self) -> int:
        """Bytes written and buffered so far, the unfinished data block included."""
        return self._written + len(self._buf) + self._block.estimated_size()

    @property
    def num_entries(self) -> int:
        return self._num_entries

    def add(self, key: bytes, negseq: int, value: bytes | None) -> None:
        """Append one entry; it must come strictly after the previous one in entry order (else ValueError)."""
        seq = -negseq
        if not 0 <= seq <= MAX_STORED_SEQ:
            raise ValueError(f"sequence number {seq} out of the storable range")
        last_key = self._last_key
        if key != last_key:
            if last_key is None:
                if self._finished:
                    raise error(f"table writer for {self.path} is finished")
                self._smallest = key
            elif key < last_key:
                raise ValueError(f"table entries out of order: key {key!r} after {last_key!r}")
            self._block_keys.append(key)
            self._block_key_restarts.append(len(self._block) >> RESTART_SHIFT)
            self._last_key = key
        elif negseq <= self._last_negseq:
            raise ValueError(f"table entries out of order: {key!r} seq {-negseq} after seq {-self._last_negseq}")
        self._last_negseq = negseq
        if value is None:
            tag = seq << 2 | KIND_TOMBSTONE
            field = b""
            self._num_deletions += 1
        elif len(value) > self._large_threshold:
            tag = seq << 2 | KIND_LARGE
            field = LARGE_REF.pack(self._write_run(value), len(value))
        else:
            tag = seq << 2 | KIND_VALUE
            field = value
        block = self._block
        block.add(key, tag, field)
        self._num_entries += 1
        if seq < self._min_seq:  # noqa: PLR1730 - cheaper than min() on the hot path
            self._min_seq = seq
        if seq > self._max_seq:  # noqa: PLR1730
            self._max_seq = seq
        if block.size >= self._block_size:
            self._finish_block()

    def finish(self) -> TableProperties:
        """Write the remaining blocks and the footer, fsync and close. ValueError if no entry was added."""
        if self._last_key is None:
            raise ValueError(f"table {self.path} has no entries")
        if len(self._block):
            self._finish_block()
        data_size = self._offset()
        num_blocks = len(self._index_keys)
        filter_handle = self._write_block(build_filter(self._h1s, self._h2s, self._bits_per_key), BLOCK_FILTER)
        stride = self._stride
        slots = [b * stride + r for b, r in zip(self._key_blocks, self._key_restarts)]
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
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _offset(self) -> int:
        return self._written + len(self._buf)

    def _finish_block(self) -> None:
        keys = self._block_keys
        hashes = [hash64(key, signed=False) for key in keys]
        self._h1s.extend([h[0] for h in hashes])
        self._h2s.extend([h[1] for h in hashes])
        self._key_blocks.extend(repeat(len(self._index_keys), len(keys)))
        self._key_restarts.extend(self._block_key_restarts)
        self._block_keys = []
        self._block_key_restarts = []
        restarts = -(-len(self._block) >> RESTART_SHIFT)
        if restarts > self._stride:  # noqa: PLR1730
            self._stride = restarts
        self._index_keys.append(self._block.last_key)
        handle = self._write_block(self._block.finish(), BLOCK_DATA)
        self._index_offsets.append(handle.offset)
        self._index_sizes.append(handle.size)

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
