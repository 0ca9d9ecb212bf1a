"""TableReader: point lookups, range iteration and verification of one table file (layout: format.py).

Opening reads and checks the footer, properties, index, filter and hash index and keeps them in memory
(the last keys + ~12 bytes a block, bits_per_key/8 + 2..8 bytes a key). Data blocks are read with
`os.pread` on demand, CRC-checked and decompressed if stored compressed (codec.py); a point lookup
gathers the block, with the other blocks of its group of 16 (one pread), into the table's `TablePoints`
(points.py) while the cache has room, else caches the block's bytes, uncompressed (so a cached read pays
no decompression), and decodes only the entry it returns (the hash index names its position in the
block); an iterator decodes whole blocks and caches them decoded. A block's bytes in memory are its
uncompressed contents followed by `TRAILER_SIZE` bytes (the trailer of a block stored raw, which so needs
no copy): the contents' length is ``len(block) - TRAILER_SIZE``.

The file descriptor lives as long as the reader: `close()` or, failing that, garbage collection closes it
(`weakref.finalize`). The engine may unlink the file earlier; POSIX keeps it readable while open.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import threading
import weakref
from typing import Union, cast, overload
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from operator import getitem
from itertools import chain, pairwise, repeat
from zlib import crc32

from ...errors import CorruptionError, error
from ..iterators import Clean, column_runs
from ..records import Entry
from .block import (
    MISSED_HINT,
    NEXT_BLOCK,
    BlockEntry,
    DecodedBlock,
    LargeValue,
    decode,
    decode_block,
    decode_index,
    entry_count,
    find_in_block,
    point_pairs,
)
from .bloom import BloomFilter, key_hashes
from .cache import BLOCK_BITS, BlockCache, decoded_charge, point_charge, raw_charge
from .codec import read_data_block, unpack_data_block
from .format import (
    BLOCK_DATA,
    BLOCK_FILTER,
    BLOCK_HASH_INDEX,
    BLOCK_INDEX,
    BLOCK_PROPERTIES,
    FOOTER_SIZE,
    TRAILER_SIZE,
    TableProperties,
    decode_footer,
    decode_properties,
    read_block,
    read_exact,
    read_run,
    run_size,
)
from .hash_index import ABSENT, HashIndex
from .points import TablePoints, points_key

_U32 = struct.Struct("<I")
RUN = 1024
"""Most entries a run of `TableReader.chunks` joins from its blocks."""
MERGED_FIRST_RUN = 32
"""Fewest entries the first run of a table has when it feeds a merge (if the table has them): a seek's
first block part alone (half a block on average) would end the first round early, and a round costs
more than reading a cached block."""


GATHER_GROUP = 16
"""Data blocks `TableReader._group` reads and gathers together (aligned: blocks 16k to 16k + 15)."""
GATHER_BYTES = 1 << 17
"""Most bytes one such read takes (16 blocks of the default 4 KiB take ~66 KiB); past it, one block."""

TRUSTED_HINT_BLOCKS = 128
"""`TableReader.get` reads the block a hash bucket names, when that block's key range holds the key, with
no bloom probe past the first, in a table of this many blocks or more. A present key so skips four probes
(in cold memory each ~0.4 µs, in a database larger than its cache: ~2 µs a get at 3M keys); an absent
key that passed the first probe reads a block in vain only when one of its two buckets names a block
whose range holds it, ~2 lookups in as many as the table has blocks: at 128 blocks ~1.5 %, near the
filter's own false positives."""

_ABSENT = object()

Entries = Union[list[Entry], Callable[[], list[Entry]]]
"""A block part's entries, or a callable that slices them (``partial(getitem, entries, slice(i, j))``)."""


def _joined(parts: list, columns: list[tuple[Sequence[bytes], Sequence[bytes]]], reverse: bool) -> list[Entry] | Clean:
    """One run of block parts that follow one another in a stream (downwards when ``reverse``): `Clean`
    when ``columns`` (the parts' keys and values) are given, else the entries. A clean run's entries are
    a callable (unless it is one whole block): a merge asks for them only in a round with unclean runs,
    and most scans never do."""
    if reverse:
        parts.reverse()
        columns.reverse()
    if not columns:
        return parts[0] if len(parts) == 1 else list(chain.from_iterable(parts))
    if len(parts) == 1:
        return columns[0][0], columns[0][1], parts[0]
    entries = partial(_entries_of, parts)  # joined only if a merge round sorts them
    keys = list(chain.from_iterable([c[0] for c in columns]))
    return keys, list(chain.from_iterable([c[1] for c in columns])), entries  # type: ignore[return-value]


def _entries_of(parts: list) -> list[Entry]:
    return list(chain.from_iterable([p if p.__class__ is list else p() for p in parts]))


def _entries_between(keys: list[bytes], negseq: int, values: list[bytes], i: int, j: int) -> list[Entry]:
    return list(zip(keys[i:j], repeat(negseq), values[i:j]))


def _in_entries(entries: list[BlockEntry], key: bytes, read_negseq: int) -> BlockEntry | bool:
    """`find_in_block` on a decoded block: the entry, `NEXT_BLOCK`, or `MISSED_HINT` when ``key`` has no
    visible version here (absent from the block, or only newer versions followed by another key)."""
    i = bisect_left(entries, (key, read_negseq))
    if i == len(entries):
        return NEXT_BLOCK if entries[-1][0] == key else MISSED_HINT
    return entries[i] if entries[i][0] == key else MISSED_HINT


class TableReader:
    """Read access to one immutable table; safe to use from many threads at once."""

    def __init__(self, path: str, number: int, cache: BlockCache) -> None:
        self.path = path
        self.number = number
        self.bloom_checks = 0
        self.bloom_negatives = 0
        self._cache = cache
        self._cache_get = cache.get
        self._peek = cache.peek
        self._cache_hit = cache.hit
        self._closed = False
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise CorruptionError(f"cannot open table ({exc.strerror})", path) from exc
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)
        try:
            self._load_meta()
        except BaseException:
            self.close()
            raise

    def _load_meta(self) -> None:
        fd, path = self._fd, self.path
        size = os.fstat(fd).st_size
        if size < FOOTER_SIZE:
            raise CorruptionError(f"table of {size} bytes is shorter than a footer", path)
        footer = decode_footer(read_exact(fd, FOOTER_SIZE, size - FOOTER_SIZE, path), size, path)
        handle = footer.properties
        props = decode_properties(read_block(fd, *handle, BLOCK_PROPERTIES, path), handle.size, footer.version, path)
        if props.file_size != size or props.data_size != footer.filter.offset or props.num_entries <= 0:
            raise CorruptionError("table properties disagree with the file", path)
        handle = footer.index
        keys, offsets, sizes = decode_index(read_block(fd, *handle, BLOCK_INDEX, path), handle.size, path)
        if not keys or len(keys) != props.num_data_blocks or keys[-1] != props.largest_key:
            raise CorruptionError("table index disagrees with the properties", path)
        end = 0
        for offset, block_size in zip(offsets, sizes):
            if offset < end:
                raise CorruptionError("table index handles overlap", path)
            end = offset + block_size + TRAILER_SIZE
        if end != props.data_size:
            raise CorruptionError("table index does not end at the data area's end", path)
        if any(a > b for a, b in pairwise(keys)):
            raise CorruptionError("table index keys out of order", path)
        stored = sum(sizes)
        if props.stored_data_bytes < 0:  # format 3: every data block stored raw
            props = dataclasses.replace(props, raw_data_bytes=stored, stored_data_bytes=stored)
        elif props.stored_data_bytes != stored:
            raise CorruptionError("table properties disagree with the index on the data blocks' bytes", path)
        handle = footer.filter
        bloom = BloomFilter(read_block(fd, *handle, BLOCK_FILTER, path)[: handle.size], path)
        handle = footer.hash_index
        hash_index = HashIndex(read_block(fd, *handle, BLOCK_HASH_INDEX, path)[: handle.size], len(keys), path)

        self.properties: TableProperties = props
        self.smallest: bytes = props.smallest_key
        self.largest: bytes = props.largest_key
        self._bloom = bloom
        self._hash_index = hash_index
        # What `get` inlines of BloomFilter.may_contain: the first probe, then the others. With no filter,
        # one byte of set bits makes the first probe say "maybe" and there are no others.
        self._bloom_bits, self._bloom_m = (bloom.bits, bloom.m) if bloom.probes else (b"\xff", 8)
        self._bloom_rest = range(max(bloom.probes - 1, 0))
        self._lookup = hash_index.lookup
        self._buckets, self._bucket_mask, self._num_slots = hash_index.buckets, hash_index.mask, hash_index.num_slots
        self._stride = hash_index.stride
        self._last_keys = keys
        self._offsets = array("Q", offsets)  # ~12 bytes a block, where lists of ints take ~80
        self._sizes = array("I", sizes)
        self._num_blocks = len(keys)
        self._hints_trusted = self._num_blocks >= TRUSTED_HINT_BLOCKS
        self._cache_base = self.number << BLOCK_BITS  # block b's cache key is _cache_base + b
        self._points_key = points_key(self.number)
        self._gather_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TableReader {self.number} {self.path!r}{' closed' if self._closed else ''}>"

    def get(self, key: bytes, hashes: tuple[int, int], read_negseq: int) -> Entry | None:
        """The newest entry of ``key`` with ``negseq >= read_negseq``, a tombstone included, or None.

        Cost: the bloom filter's first probe (which turns away ~60 % of absent keys); then the key's home
        bucket (empty: the key is absent) and second bucket, one of which names the key's first entry for
        ~75 % of present keys: when that entry's block is cached, a check of the entry proves the key
        present and the visible version is decoded, with four `struct` unpacks and no Python frame but
        `find_in_block`'s and `BlockCache.hit`'s (and `_promote`'s when the cache has room to gather it).
        A bucket naming a block whose range holds the key sends the lookup to that block (from the cache,
        else `_load_raw`: one pread of its group, gathered into the points while the cache has room, else
        of the block, its bytes offered to `BlockCache.admit`), in a table of `TRUSTED_HINT_BLOCKS` blocks
        or more with no other bloom probe (`TRUSTED_HINT_BLOCKS` says why). Otherwise the other bloom
        probes, then the block by bisecting the index. The cache counts a hit or a miss only for a block a
        lookup used.
        """
        if self._closed:
            raise error(f"table {self.path} is closed")
        self.bloom_checks += 1
        # BloomFilter.may_contain, inlined (a call is ~10 % of a lookup): its first probe, which turns away
        # most absent keys, here; the others only if the hash index neither proves the key present nor, in
        # a table of TRUSTED_HINT_BLOCKS blocks or more, names the block whose range holds it.
        m = self._bloom_m
        bits = self._bloom_bits
        h = hashes[0] % m
        if not bits[h >> 3] & (1 << (h & 7)):
            self.bloom_negatives += 1
            return None
        h2 = hashes[1]
        keys = self._last_keys
        buckets = self._buckets
        mask = self._bucket_mask
        num_slots = self._num_slots
        slot = buckets[h2 & mask]  # the key's home bucket: EMPTY proves it absent
        entry: BlockEntry | bool | None = MISSED_HINT
        b = hint = -1
        if slot < num_slots:
            # Each bucket names the first entry of some key (hash_index.py): the key's, if it is in the
            # block where the key would start and checks out there.
            for s in (slot, buckets[(h2 >> 32) & mask]):
                if s >= num_slots:
                    break
                at, s_hint = divmod(s, self._stride)
                if key > keys[at] or (at and keys[at - 1] >= key):
                    continue  # that key starts in another block
                b, hint = at, s_hint
                item = self._peek(self._cache_base + b)
                if item is None:
                    break  # not cached: read with the hint (below; in a small table after the other probes)
                block = item[0]
                if block.__class__ is bytes:
                    entry = find_in_block(block, len(block) - TRAILER_SIZE, key, read_negseq, hint, self.path, False)  # type: ignore[arg-type]
                else:
                    entry = _in_entries(block[0], key, read_negseq)  # type: ignore[index]
                hint = -1
                if entry is not MISSED_HINT:
                    self._cache_hit(self._cache_base + b)
                    if block.__class__ is bytes and self._cache.charge < self._cache.growth_limit:
                        self._promote(b, block)  # type: ignore[arg-type]
                    break
        elif self._lookup(h2) == ABSENT:  # an empty home bucket (or damage: raises)
            return None
        if entry is MISSED_HINT and (b < 0 or not self._hints_trusted):  # the other bloom probes
            d = h2 % m
            for _ in self._bloom_rest:
                h = (h + d) % m
                if not bits[h >> 3] & (1 << (h & 7)):
                    self.bloom_negatives += 1
                    return None
            if b < 0:  # no bucket names a block whose range holds the key
                b = bisect_left(keys, key)
                if b == self._num_blocks:
                    return None
        while True:  # more than once only when the key's versions continue into the next block
            if entry is MISSED_HINT:
                block = self._cache_get(self._cache_base + b)
                if block is None:
                    block = self._load_raw(b)
                elif block.__class__ is bytes and self._cache.charge < self._cache.growth_limit:
                    self._promote(b, block)  # type: ignore[arg-type]
                entry = self._find(block, key, read_negseq, hint)
            if entry is not NEXT_BLOCK:
                break
            b += 1
            if b == self._num_blocks:
                return None
            entry = MISSED_HINT
            hint = 0
        if entry is None:
            return None
        if entry[2].__class__ is LargeValue:  # type: ignore[index]
            return (key, entry[1], self._read_large(entry[2]))  # type: ignore[index]
        return entry  # type: ignore[return-value]

    @property
    def last_keys(self) -> list[bytes]:
        """The last key of each data block, in block order (the index): block ``b`` holds the keys above
        ``last_keys[b - 1]`` up to ``last_keys[b]``. The list is the reader's own; do not change it."""
        return self._last_keys

    def point_parts(self) -> tuple[int, int, BlockCache]:
        """What `Version`'s lookup inlines to answer from the table's `TablePoints` before calling `get`:
        ``(the points' cache key, -largest sequence number, cache)``. A reader with ``read_negseq`` at or
        below the second sees every entry of the table, so the points answer it: a key found there, its
        value (None: a tombstone); a key not found, absent once every block is gathered; else `get` must
        tell."""
        return self._points_key, -self.properties.max_seq, self._cache

    def get_many(self, keys: list[bytes], read_negseq: int) -> dict[int, bytes | None]:
        """The value (None: a tombstone) of the newest entry visible at ``read_negseq`` of each of ``keys``
        (ascending) that has one here, by position in ``keys``. A reader that sees the whole table asks its
        `TablePoints` first (one dict probe a key, as `Version`'s lookup does); the keys they cannot answer
        take the bloom probes and a hash bucket, then a bisection of the index and a search of the block,
        each data block fetched at most once and held while the keys in it are looked up, whatever the
        cache keeps."""
        if self._closed:
            raise error(f"table {self.path} is closed")
        may_contain = self._bloom.may_contain
        last_keys = self._last_keys
        points: TablePoints | None = None
        if read_negseq <= -self.properties.max_seq:
            item = self._peek(self._points_key)
            if item is not None:
                points = cast(TablePoints, item[0])
        from_points = 0
        held_b = -1
        held: object = b""
        found: dict[int, bytes | None] = {}
        for j, key in enumerate(keys):
            if points is not None:
                value = points.get(key, _ABSENT)
                if value is not _ABSENT:
                    found[j] = value  # type: ignore[assignment]
                    from_points += 1
                    continue
                if not points.missing:
                    continue  # absent, as a bloom filter's "no"
            hs = key_hashes(key)
            self.bloom_checks += 1
            if not may_contain(hs):
                self.bloom_negatives += 1
                continue
            if self._lookup(hs[1]) == ABSENT:
                continue
            b = bisect_left(last_keys, key)
            entry: BlockEntry | bool | None = None
            hint = -1
            while b < self._num_blocks:
                if b != held_b:
                    held, held_b = self._cache_get(self._cache_base + b) or self._load_raw(b), b
                entry = self._find(held, key, read_negseq, hint)
                if entry is not NEXT_BLOCK:
                    break
                b += 1
                hint = 0
            if entry is not None and entry is not NEXT_BLOCK:
                stored = entry[2]  # type: ignore[index]
                if stored.__class__ is LargeValue:
                    stored = self._read_large(stored)  # type: ignore[arg-type]
                found[j] = stored  # type: ignore[assignment]
        if from_points:
            self._cache.mark(self._points_key)  # BlockCache.hit, once for the keys the points answered
            self._cache.counts[0] += from_points
        return found

    def _find(self, block: object, key: bytes, read_negseq: int, hint: int) -> BlockEntry | bool | None:
        """`find_in_block` on a data block in either of its cached forms (bytes, or `DecodedBlock`): the
        entry, None, or `NEXT_BLOCK`."""
        if block.__class__ is bytes:
            return find_in_block(block, len(block) - TRAILER_SIZE, key, read_negseq, hint, self.path)  # type: ignore[arg-type]
        entry = _in_entries(block[0], key, read_negseq)  # type: ignore[index, arg-type]
        return None if entry is MISSED_HINT else entry

    def iter(
        self, start: bytes | None = None, stop: bytes | None = None, reverse: bool = False, *, fill_cache: bool = True
    ) -> Iterator[Entry]:
        """Entries with ``start <= key < stop`` in entry order, or exactly reversed, one by one."""
        runs = self.chunks(start, stop, reverse, fill_cache=fill_cache)
        return chain.from_iterable(map(reversed, runs) if reverse else runs)  # type: ignore[arg-type]

    @overload
    def chunks(
        self, start: bytes | None = None, stop: bytes | None = None, reverse: bool = False,
        read_negseq: None = None, *, fill_cache: bool = True, merged: bool = False,
    ) -> Iterator[list[Entry]]: ...

    @overload
    def chunks(
        self, start: bytes | None, stop: bytes | None, reverse: bool, read_negseq: int, *, fill_cache: bool = True,
        merged: bool = False,
    ) -> Iterator[list[Entry] | Clean]: ...

    def chunks(
        self,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
        read_negseq: int | None = None,
        *,
        fill_cache: bool = True,
        merged: bool = False,
    ) -> Iterator[list[Entry] | Clean]:
        """The entries with ``start <= key < stop`` as runs (iterators.py's protocol), lazily: blocks are read
        as the consumer advances. The first run is the first block's part in range (a seek decodes one
        block; `MERGED_FIRST_RUN` entries or more when ``merged``), each later run joins blocks up to twice
        as many entries as the one before, up to `RUN` (fewer, longer runs: fewer rounds of a merge). Large
        values come back as bytes, in runs of one.

        With ``read_negseq``, a block clean for that reader (`DecodedBlock`) comes as a `Clean` run; with
        ``merged`` too (the runs feed a merge, whose rounds cost most), clean blocks are joined into `Clean`
        runs as above (never with unclean blocks, nor across a key whose versions continue into the next
        block).
        ``fill_cache=False`` (for compactions and other one-pass reads) still uses cached blocks but does not
        cache the blocks it reads, so it does not evict the blocks point lookups need.
        """
        if self._closed:
            raise error(f"table {self.path} is closed")
        if start is not None and stop is not None and start >= stop:
            return iter(())
        if read_negseq is not None and read_negseq <= -self.properties.max_seq and not self.properties.num_deletions:
            order = self._points_order()
            if order is not None:
                return self._point_runs(*order, start, stop, reverse, merged)
        return self._runs(start, stop, reverse, fill_cache, -1 if read_negseq is None else -read_negseq, merged)

    def _points_order(self) -> tuple[list[bytes], list[bytes]] | None:
        """The table's keys in order and their values (`TablePoints.order`), when every block is gathered
        (and, the first time, the cache has room for them: 16 bytes a key, one C sort and one C pass),
        else None. Only for a table with no tombstone: the values are then all bytes."""
        item = self._peek(self._points_key)
        if item is None:
            return None
        points = cast(TablePoints, item[0])
        order = points.order
        if order is None:
            if points.missing or not self._cache.grow(self._points_key, points, 16 * len(points)):
                return None
            keys = sorted(points)
            order = points.order = keys, list(map(points.__getitem__, keys))
        self._cache_hit(self._points_key)
        return order  # type: ignore[return-value]  # no tombstone: no None

    def _point_runs(
        self, order: list[bytes], ordered_values: list[bytes], start: bytes | None, stop: bytes | None,
        reverse: bool, merged: bool,
    ) -> Iterator[Clean]:
        """`chunks` for a reader that sees the whole table, from its complete points when the table holds no
        tombstone: every key's newest value is then exactly what such a reader sees, so each run is
        `Clean`, sliced from the keys in order and their values (`column_runs`), with no block read or
        decoded and no dict probe. Run sizes as `_runs`' (`MERGED_FIRST_RUN` first when ``merged``, else
        one block's worth, doubling up to `RUN`). A run's entries, for a merge round that sorts them, carry
        the table's largest sequence number: above every older source's, below every newer one's, which is
        all a merge compares."""
        first = MERGED_FIRST_RUN if merged else max(1, self.properties.num_entries // self._num_blocks)
        entries = partial(_entries_between, order, -self.properties.max_seq, ordered_values)
        return column_runs(order, ordered_values, entries, start, stop, reverse, first, RUN)

    def _runs(
        self, start: bytes | None, stop: bytes | None, reverse: bool, fill: bool, read_seq: int, merged: bool
    ) -> Iterator[list[Entry] | Clean]:
        parts: list[Entries] = []  # block parts joined into the next run, in the stream's order
        columns: list[tuple[Sequence[bytes], Sequence[bytes]]] = []  # their keys and values, if clean
        held = 0  # entries in parts
        target = MERGED_FIRST_RUN if merged else 0  # entries the next run reaches before it is yielded
        last_keys = self._last_keys
        for (entries, has_large, keys, values, clean_seq), b, i, j in self._spans(start, stop, reverse, fill):
            whole = i == 0 and j == len(keys)
            # Clean: values hold bytes alone. Reverse, not a part whose first key continues from the block
            # below (whose next run then brings newer versions of it: merge_runs).
            clean = clean_seq <= read_seq and not (reverse and i == 0 and b and last_keys[b - 1] == keys[0])
            # A run is clean or not as a whole, and a clean one holds one version a key: a key whose
            # versions continue from the last part starts a new run.
            if parts and (
                has_large
                or clean != bool(columns)
                or (clean and not merged)
                or (clean and columns[-1][0][0 if reverse else -1] == keys[j - 1 if reverse else i])
            ):
                yield _joined(parts, columns, reverse)
                parts, columns, held = [], [], 0
            if has_large:
                part = entries[i:j]  # type: ignore[index]
                yield from self._resolved(reversed(part) if reverse else part)
                continue
            if whole:
                parts.append(entries)  # type: ignore[arg-type]
            elif clean:  # its entries are sliced only if a merge round sorts them
                parts.append(partial(getitem, entries, slice(i, j)))  # type: ignore[arg-type]
            else:
                parts.append(entries[i:j])  # type: ignore[index, arg-type]  # no LargeValue here
            if clean:
                columns.append((keys, values) if whole else (keys[i:j], values[i:j]))  # type: ignore[arg-type]
            held += j - i
            if held >= target or (clean and not merged):
                yield _joined(parts, columns, reverse)
                target = min(2 * (target or held), RUN) if held >= target else target
                parts, columns, held = [], [], 0
        if parts:
            yield _joined(parts, columns, reverse)

    def _spans(
        self, start: bytes | None, stop: bytes | None, reverse: bool, fill: bool
    ) -> Iterator[tuple[DecodedBlock, int, int, int]]:
        """The data blocks that hold keys of ``[start, stop)``, in the stream's order, decoded, each with its
        number and the bounds ``i < j`` of its entries (keys) in range. Cost: one bisect of the index, then
        one of each end block."""
        last_keys, n = self._last_keys, self._num_blocks
        if not reverse:
            b = 0 if start is None else bisect_left(last_keys, start)
            while b < n:
                block = self._block(b, fill)
                keys = block[2]
                i = 0 if start is None else bisect_left(keys, start)
                j = len(keys) if stop is None or last_keys[b] < stop else bisect_left(keys, stop)
                if i < j:
                    yield block, b, i, j
                if j < len(keys):
                    return
                start = None
                b += 1
            return
        b = n - 1 if stop is None else min(bisect_left(last_keys, stop), n - 1)
        while b >= 0:
            block = self._block(b, fill)
            keys = block[2]
            i = 0 if start is None else bisect_left(keys, start)
            j = len(keys) if stop is None else bisect_left(keys, stop)
            if i < j:
                yield block, b, i, j
            if i > 0:
                return
            stop = None
            b -= 1

    def _resolved(self, entries: Iterable[BlockEntry]) -> Iterator[list[Entry]]:
        """``entries`` one a run, each large value read as its run is reached (a scan holds one)."""
        read_large = self._read_large
        for e in entries:
            yield [(e[0], e[1], read_large(e[2]))] if e[2].__class__ is LargeValue else [e]  # type: ignore[arg-type,list-item]

    def _block(self, b: int, fill: bool = True) -> DecodedBlock:
        """Data block ``b``, decoded: from the cache, else decoded from its cached bytes or from the file,
        and then (if ``fill``) cached decoded, replacing its bytes."""
        if self._closed:
            raise error(f"table {self.path} is closed")
        block = self._cache_get(self._cache_base + b)
        if block.__class__ is tuple:
            return block  # type: ignore[return-value]
        raw = self._read_data(b) if block is None else block
        size = len(raw) - TRAILER_SIZE  # type: ignore[arg-type]
        decoded = decode(raw, size, self.path)  # type: ignore[arg-type]
        if fill:
            self._cache.put(self._cache_base + b, decoded, decoded_charge(size, len(decoded[0])))
        return decoded

    def _promote(self, b: int, raw: bytes) -> None:
        """Gather data block ``b``, found cached as its bytes, into the table's `TablePoints` and drop its
        bytes, when the cache has room again: a block looked up again is likely to be again."""
        if self._gather({b: raw}, b):
            self._cache.discard(self._cache_base + b)

    def _gather(self, blocks: dict[int, bytes], b: int) -> bool:
        """Gather the data blocks ``blocks`` (number -> verified bytes) not gathered yet into the table's
        `TablePoints`, all at once if the cache has room for them (`BlockCache.grow`), leaving out any
        with a value stored out of line. True if block ``b`` was gathered now (False too when it was
        already: then a reader the points cannot answer, older than the table, is reading it, and its
        bytes are worth caching). Cost: `point_pairs` a block and one dict update, when there is room."""
        cache = self._cache
        if cache.charge >= cache.growth_limit:  # the common case of a cache under pressure, cheaply
            return False
        sizes = {c: len(raw) - TRAILER_SIZE for c, raw in blocks.items()}
        charges = {c: point_charge(size, entry_count(blocks[c], size)) for c, size in sizes.items()}
        if not cache.has_room(sum(charges.values())):
            return False
        last_keys, path = self._last_keys, self.path
        pairs = {}
        for c, raw in blocks.items():
            found = point_pairs(raw, sizes[c], path, last_keys[c - 1] if c else None)
            if found is not None:
                pairs[c] = found
        key = self._points_key
        with self._gather_lock:
            item = cache.peek(key)
            points = cast(TablePoints, item[0]) if item is not None else TablePoints(self._num_blocks)
            fresh = [c for c in pairs if not points.loaded[c]]
            if not fresh:  # (an empty `TablePoints` is not cached)
                return False
            charge = sum(map(charges.__getitem__, fresh))
            if not (cache.grow(key, points, charge) if item is not None else cache.add_if_room(key, points, charge)):
                return False
            points.gather(fresh, chain.from_iterable(map(pairs.__getitem__, fresh)))
        return b in fresh

    def _group(self, b: int) -> dict[int, bytes] | None:
        """Data block ``b`` verified (its damage raises `CorruptionError`), with the other blocks of its
        aligned group of `GATHER_GROUP` not gathered yet, each verified (a damaged one is left out, for
        a read that asks for it), all read by one pread: number -> bytes, for `_gather`. None, and ``b``
        is read alone, when the group takes more than `GATHER_BYTES` or the cache has no room for about
        twice its bytes. A table read at random is so gathered in a sixteenth of the slow lookups and
        preads: ~22 µs of `_load_raw` a block instead of ~47 (200,000 keys read at random after
        `compact()`)."""
        first = b - b % GATHER_GROUP
        end = min(first + GATHER_GROUP, self._num_blocks)
        offsets, sizes = self._offsets, self._sizes
        start = offsets[first]
        span = offsets[end - 1] + sizes[end - 1] + TRAILER_SIZE - start
        if span > GATHER_BYTES or not self._cache.has_room(2 * span):  # (gathered: ~1.7-1.9 x the bytes)
            return None
        data = os.pread(self._fd, span, start)
        if len(data) != span:
            return None  # a short read: `_read_data` tells it for block b
        item = self._peek(self._points_key)
        loaded = cast(TablePoints, item[0]).loaded if item is not None else bytes(self._num_blocks)
        blocks = {}
        for c in range(first, end):
            if c != b and loaded[c]:
                continue
            at, size = offsets[c] - start, sizes[c]
            try:
                blocks[c] = unpack_data_block(data[at : at + size + TRAILER_SIZE], size, self.path)
            except CorruptionError:
                if c == b:
                    raise
        return blocks

    def _load_raw(self, b: int) -> bytes:
        """Read and verify data block ``b`` (uncompressed contents + trailer) and cache it for point lookups:
        gathered into the table's `TablePoints` while the cache has room for it (with its group, `_group`),
        else as its bytes (~1.05 × the block in memory, where gathered it takes ~1.7 × and decoded entries
        1.1–6 ×; `_promote` gathers it on a later use if room appears) if the cache admits it
        (`BlockCache.admit`: a full cache takes a block read twice in a while). The common case of
        `read_data_block` inlined: a block stored raw, read whole by one pread. Returns the bytes."""
        if self._closed:
            raise error(f"table {self.path} is closed")
        cache = self._cache
        blocks = self._group(b) if cache.charge < cache.growth_limit else None
        if blocks is not None:
            raw = blocks[b]
        else:
            size = self._sizes[b]
            raw = os.pread(self._fd, size + TRAILER_SIZE, self._offsets[b])
            if (
                len(raw) != size + TRAILER_SIZE
                or raw[size] != BLOCK_DATA
                or crc32(memoryview(raw)[: size + 1]) != _U32.unpack_from(raw, size + 1)[0]
            ):  # compressed, damaged, or a short read
                raw = unpack_data_block(raw, size, self.path) if len(raw) == size + TRAILER_SIZE else self._read_data(b)
            blocks = {b: raw}
        if not self._gather(blocks, b):
            self._cache.admit(self._cache_base + b, raw, raw_charge(len(raw)))
        return raw

    def _read_data(self, b: int) -> bytes:
        """Data block ``b`` in memory form (`unpack_data_block`), bypassing the cache."""
        if self._closed:
            raise error(f"table {self.path} is closed")
        return read_data_block(self._fd, self._offsets[b], self._sizes[b], self.path)

    def _read_large(self, ref: LargeValue) -> bytes:
        if self._closed:
            raise error(f"table {self.path} is closed")
        return read_run(self._fd, ref.offset, ref.length, self.properties.data_size, self.path)

    def check(self) -> int:
        """Read and verify every block and large-value run (bypassing the cache), entry order, and that
        the filter, hash index, index and properties agree with the data. Returns the entries seen."""
        path = self.path
        props = self.properties
        prev: tuple[bytes, int] | None = None
        count = deletions = 0
        min_seq, max_seq = props.max_seq, props.min_seq
        pos = raw_bytes = 0
        for b in range(self._num_blocks):
            offset, size = self._offsets[b], self._sizes[b]
            raw = self._read_data(b)
            raw_bytes += len(raw) - TRAILER_SIZE
            entries = decode_block(raw, len(raw) - TRAILER_SIZE, path)[0]
            if len(entries) > self._stride:
                raise CorruptionError(f"data block {b} has more entries than the hash index allows", path)
            for i, (key, negseq, value) in enumerate(entries):
                if prev is not None and (key, negseq) <= prev:
                    raise CorruptionError(f"entries out of order in data block {b}", path)
                if prev is None and key != props.smallest_key:
                    raise CorruptionError("table smallest key disagrees with its entries", path)
                if prev is None or key != prev[0]:
                    hashes = key_hashes(key)
                    if not self._bloom.may_contain(hashes):
                        raise CorruptionError(f"bloom filter misses a key of data block {b}", path)
                    if not 0 <= self._hash_index.lookup(hashes[1]) <= b * self._stride + i:
                        raise CorruptionError(f"hash index misplaces a key of data block {b}", path)
                prev = (key, negseq)
                if value is None:
                    deletions += 1
                elif value.__class__ is LargeValue:
                    if value.offset != pos:  # type: ignore[union-attr]
                        raise CorruptionError(f"large value of data block {b} is not where expected", path)
                    self._read_large(value)  # type: ignore[arg-type]
                    pos += run_size(value.length)  # type: ignore[union-attr]
                min_seq = min(min_seq, -negseq)
                max_seq = max(max_seq, -negseq)
            count += len(entries)
            if offset != pos:
                raise CorruptionError(f"unexplained bytes before data block {b}", path)
            pos = offset + size + TRAILER_SIZE
            if entries[-1][0] != self._last_keys[b]:
                raise CorruptionError(f"index key of data block {b} is not its last key", path)
        if (count, deletions, min_seq, max_seq, raw_bytes) != (
            props.num_entries, props.num_deletions, props.min_seq, props.max_seq, props.raw_data_bytes
        ):
            raise CorruptionError("table properties disagree with its entries", path)
        return count

    def close(self) -> None:
        """Close the file descriptor; idempotent. Later reads raise `byrondbm.error`."""
        self._closed = True
        self._finalizer()
