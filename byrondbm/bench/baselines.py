"""The engines `byrondbm bench` drives: byrondbm and the baselines it is compared with, behind one interface.

Every engine is an `Engine` whose `open()` returns a `Handle`: a record of the cheapest callables that
engine offers for each operation (bound methods wherever the engine has one, so a timed loop pays no
wrapper frame the engine's own users would not pay). An operation an engine lacks is `None` in its
handle and the bench reports it as "n/a". Third-party baselines (semidbm, lmdb, plyvel, rocksdict) are
imported only when asked for and are never dependencies: `Engine.unavailable()` says why one is skipped.

Durability is matched where the engine lets us: every baseline's plain writes reach the operating system
before they return (byrondbm's default mode), and `open(path, sync=True)` asks for an fsync per write
(byrondbm's `'s'` mode). The sqlite3 mapping commits (and so fsyncs) every write whatever is asked,
exactly as CPython 3.13's `dbm.sqlite3` does.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import closing, suppress
from typing import Any, ClassVar

Pair = tuple[bytes, bytes]
BATCH_SIZE = 1000
"""Writes per batch in `fillbatch` (as the issue asks) and in untimed bulk loads."""


@dataclasses.dataclass
class Handle:
    """One open store. Each operation is a plain callable; `None` marks one the engine lacks."""

    put: Callable[[bytes, bytes], Any]
    get: Callable[[bytes], bytes | None]
    """Returns the value, or None for an absent key."""
    delete: Callable[[bytes], Any]
    items: Callable[[], Iterable[Pair]]
    """Every (key, value) pair; in ascending key order when `ordered`, else in the engine's own order."""
    ordered: bool
    seek: Callable[[bytes], Iterator[Pair]] | None
    """Pairs from the first key >= the argument on, in key order (lazy)."""
    batch: Callable[[list[Pair]], Any] | None
    """Applies a list of puts at once, atomically where the engine supports that."""
    compact: Callable[[], Any] | None
    count: Callable[[], int]
    close: Callable[[], Any]
    stats: Callable[[], dict[str, Any]] | None = None
    reverse_items: Callable[[], Iterable[Pair]] | None = None
    """Every pair in descending key order (engines that scan backwards)."""
    bulk: Callable[[list[Pair]], Any] | None = None
    """Fastest way to write a list of pairs, for untimed preloads only; `batch` when None."""

    def load(self, pairs: Iterable[Pair]) -> None:
        """Untimed bulk load: `bulk` or `batch` in chunks of BATCH_SIZE, else single puts."""
        bulk = self.bulk or self.batch
        if bulk is None:
            put = self.put
            for k, v in pairs:
                put(k, v)
            return
        chunk: list[Pair] = []
        for pair in pairs:
            chunk.append(pair)
            if len(chunk) == BATCH_SIZE:
                bulk(chunk)
                chunk = []
        if chunk:
            bulk(chunk)


class Engine:
    """A store the bench can open. Subclasses set the class attributes and implement `_open`."""

    name: ClassVar[str]
    module: ClassVar[str]
    """Module imported to use the engine (checked by `unavailable`)."""
    thread_safe: ClassVar[bool] = False
    """One handle may be shared by writer threads (needed for `fillsync` with 8 threads)."""
    has_sync: ClassVar[bool] = True
    """`open(path, sync=True)` gives an fsync per write."""
    caps: ClassVar[dict[str, int]] = {}
    """Workload name -> most operations timed for it, for baselines too slow to run at full size."""
    notes: ClassVar[dict[str, str]] = {}
    """Workload name -> how this engine runs it, where that differs from the obvious."""

    def unavailable(self) -> str | None:
        """None when the engine can run here, else why not."""
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            return f"not installed ({exc})"
        return None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.module)
        except importlib.metadata.PackageNotFoundError:
            return str(getattr(importlib.import_module(self.module), "__version__", "") or "")

    def open(self, path: str, sync: bool = False) -> Handle:
        """Creates a new, empty store at `path` (which must not exist), or opens the one a previous
        `open` of this engine made there (the `reopen` workload)."""
        return self._open(path, sync)

    def _open(self, path: str, sync: bool) -> Handle:
        raise NotImplementedError


def _get_or_none(getitem: Callable[[bytes], bytes]) -> Callable[[bytes], bytes | None]:
    """A `get` for mappings that only raise KeyError (one extra Python frame per call)."""

    def get(key: bytes) -> bytes | None:
        try:
            return getitem(key)
        except KeyError:
            return None

    return get


class Byrondbm(Engine):
    name = "byrondbm"
    module = "byrondbm"
    thread_safe = True

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason is None and not hasattr(importlib.import_module("byrondbm"), "open"):
            reason = "byrondbm.open() does not exist yet"
        return reason

    def version(self) -> str:
        import byrondbm

        return str(getattr(byrondbm, "__version__", "") or "dev")

    def _open(self, path: str, sync: bool) -> Handle:
        import byrondbm

        db = byrondbm.open(path, "cs" if sync else "c")

        def batch(pairs: list[Pair]) -> None:
            with db.batch() as b:
                put = b.put
                for k, v in pairs:
                    put(k, v)

        return Handle(
            put=db.__setitem__, get=db.get, delete=db.__delitem__, items=db.scan, ordered=True,
            seek=db.scan, batch=batch, compact=db.compact, count=db.__len__, close=db.close,
            reverse_items=lambda: db.scan(reverse=True),
            stats=db.stats,
        )


class DbmDumb(Engine):
    name = "dbm.dumb"
    module = "dbm.dumb"
    has_sync = False
    caps = {"deleterandom": 100}
    notes = {
        "deleterandom": "each delete rewrites dbm.dumb's whole index file (O(n)), so at most 100 are timed",
        "readseq": "dbm.dumb has no ordered scan: iterates items() in its hash order",
        "readrandom_compacted": "dbm.dumb has no compaction: the same store read again",
    }

    def version(self) -> str:
        return "stdlib"

    def _open(self, path: str, sync: bool) -> Handle:
        import dbm.dumb

        os.makedirs(path, exist_ok=True)
        db = dbm.dumb.open(os.path.join(path, "db"), "c")
        return Handle(
            put=db.__setitem__, get=db.get, delete=db.__delitem__, items=db.items, ordered=False,  # type: ignore[arg-type]
            seek=None, batch=None, compact=None, count=db.__len__, close=db.close,
        )


# The table and statements of CPython 3.13's Lib/dbm/sqlite3.py (REPLACE INTO is INSERT OR REPLACE).
_BUILD_TABLE = "CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)"
_GET_SIZE = "SELECT COUNT (key) FROM Dict"
_LOOKUP_KEY = "SELECT value FROM Dict WHERE key = CAST(? AS BLOB)"
_STORE_KV = "REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))"
_DELETE_KEY = "DELETE FROM Dict WHERE key = CAST(? AS BLOB)"
_ITER_KEYS = "SELECT key FROM Dict"


class SqliteMapping(MutableMapping):  # type: ignore[type-arg]
    """What `dbm.sqlite3.open(path, "c")` returns on Python 3.13+, for the Pythons that lack it.

    Same table, same statements, same costs: the connection is in autocommit mode, so every write is
    its own transaction, committed (and fsync'ed, journal in WAL mode) before it returns; every
    statement goes through one `_execute` and a closed cursor, as in the standard library.
    """

    def __init__(self, path: str) -> None:
        self._cx = sqlite3.connect(path, isolation_level=None)
        with suppress(sqlite3.OperationalError):
            self._cx.execute("PRAGMA journal_mode = wal")
        with closing(self._execute(_BUILD_TABLE)):
            pass

    def _execute(self, *args: Any) -> sqlite3.Cursor:
        return self._cx.execute(*args)

    def __len__(self) -> int:
        with closing(self._execute(_GET_SIZE)) as cu:
            return int(cu.fetchone()[0])

    def __getitem__(self, key: bytes) -> bytes:
        with closing(self._execute(_LOOKUP_KEY, (key,))) as cu:
            row = cu.fetchone()
        if not row:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with closing(self._execute(_STORE_KV, (key, value))):
            pass

    def __delitem__(self, key: bytes) -> None:
        with closing(self._execute(_DELETE_KEY, (key,))) as cu:
            if not cu.rowcount:
                raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        with closing(self._execute(_ITER_KEYS)) as cu:
            for row in cu:
                yield row[0]

    def close(self) -> None:
        self._cx.close()


SQLITE_WRITE_CAP = 20_000
"""Most writes timed per workload on the sqlite3 mapping (a commit and an fsync each: ~4k/s here)."""
_SQLITE_CAPPED = ("fillseq", "fillrandom", "overwrite", "deleterandom", "reopen")


class Sqlite3Dbm(Engine):
    name = "sqlite3"
    module = "sqlite3"
    has_sync = True  # every write is already committed and synced
    caps = dict.fromkeys(_SQLITE_CAPPED, SQLITE_WRITE_CAP)
    notes = {
        **dict.fromkeys(_SQLITE_CAPPED, f"a commit per write: at most {SQLITE_WRITE_CAP:,} timed"),
        "readseq": "dbm.sqlite3 has no ordered scan: iterates items() in table order",
        "readrandom_compacted": "no compaction in dbm.sqlite3: the same store read again",
        "fillsync_1t": "the same commit per write as its other fills",
    }

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}" + (" dbm.sqlite3" if _stdlib_dbm_sqlite3() else " 3.13 twin")

    def _open(self, path: str, sync: bool) -> Handle:
        os.makedirs(path, exist_ok=True)
        file = os.path.join(path, "db.sqlite3")
        stdlib = _stdlib_dbm_sqlite3()
        db = stdlib.open(file, "c") if stdlib is not None else SqliteMapping(file)
        cx: sqlite3.Connection = db._cx

        def bulk_put(pairs: list[Pair]) -> None:
            # Untimed preloads only: the dbm.sqlite3 surface has no batch.
            cx.execute("BEGIN")
            cx.executemany(_STORE_KV, pairs)
            cx.execute("COMMIT")

        return Handle(
            put=db.__setitem__, get=db.get, delete=db.__delitem__, items=db.items, ordered=False,
            seek=None, batch=None, compact=None, count=db.__len__, close=db.close, bulk=bulk_put,
        )


def _stdlib_dbm_sqlite3() -> Any:
    """The standard `dbm.sqlite3` module (Python 3.13+), or None."""
    try:
        return importlib.import_module("dbm.sqlite3")
    except ImportError:
        return None


class Semidbm(Engine):
    name = "semidbm"
    module = "semidbm"
    has_sync = False
    notes = {
        "readseq": "semidbm has no ordered scan: iterates its keys in its own order",
        "readrandom_compacted": "after semidbm's compact() (rewrites its data file)",
    }

    def _open(self, path: str, sync: bool) -> Handle:
        import semidbm  # type: ignore[import-untyped]

        db = semidbm.open(path, "c")  # "n" would make compact() wipe the data (semidbm 0.5.1)
        getitem = db.__getitem__

        def items() -> Iterator[Pair]:
            for key in list(db.keys()):
                yield key, getitem(key)

        return Handle(
            put=db.__setitem__, get=_get_or_none(getitem), delete=db.__delitem__, items=items,
            ordered=False, seek=None, batch=None, compact=db.compact, count=lambda: len(db.keys()), close=db.close,
        )


class Lmdb(Engine):
    name = "lmdb"
    module = "lmdb"
    thread_safe = True
    notes = {
        "readrandom_compacted": "LMDB is a B-tree with nothing to compact: the same store read again",
        "fillbatch": "one write transaction per batch",
    }

    def _open(self, path: str, sync: bool) -> Handle:
        import lmdb

        # sync=False still writes every commit to the OS (writemap is off), like byrondbm's default.
        env = lmdb.open(path, map_size=1 << 36, sync=sync, metasync=sync)
        begin = env.begin

        def put(key: bytes, value: bytes) -> None:
            with begin(write=True) as txn:
                txn.put(key, value)

        def get(key: bytes) -> bytes | None:
            with begin() as txn:
                return txn.get(key)

        def delete(key: bytes) -> None:
            with begin(write=True) as txn:
                txn.delete(key)

        def items() -> Iterator[Pair]:
            with begin() as txn:
                yield from txn.cursor().iternext()

        def seek(key: bytes) -> Iterator[Pair]:
            with begin() as txn:
                cursor = txn.cursor()
                if cursor.set_range(key):
                    yield from cursor.iternext()

        def reverse_items() -> Iterator[Pair]:
            with begin() as txn:
                cursor = txn.cursor()
                if cursor.last():
                    yield from cursor.iterprev()

        def batch(pairs: list[Pair]) -> None:
            with begin(write=True) as txn:
                txn.cursor().putmulti(pairs)

        return Handle(
            put=put, get=get, delete=delete, items=items, ordered=True, seek=seek, batch=batch,
            compact=None, count=lambda: int(env.stat()["entries"]), close=env.close, reverse_items=reverse_items,
        )


class Plyvel(Engine):
    name = "plyvel"
    module = "plyvel"
    thread_safe = True
    notes = {"*": "LevelDB with plyvel's defaults (no bloom filter, 8 MiB block cache, snappy)"}

    def _open(self, path: str, sync: bool) -> Handle:
        import plyvel  # type: ignore[import-untyped]

        db = plyvel.DB(path, create_if_missing=True)

        def batch(pairs: list[Pair]) -> None:
            with db.write_batch() as wb:
                put = wb.put
                for k, v in pairs:
                    put(k, v)

        return Handle(
            put=functools.partial(db.put, sync=True) if sync else db.put, get=db.get, delete=db.delete,
            items=db.iterator, ordered=True, seek=lambda key: db.iterator(start=key), batch=batch,
            compact=db.compact_range, count=lambda: sum(1 for _ in db.iterator(include_value=False)),
            close=db.close, reverse_items=lambda: db.iterator(reverse=True),
        )


class Rocksdict(Engine):
    name = "rocksdict"
    module = "rocksdict"
    thread_safe = True
    notes = {"*": "RocksDB with rocksdict's defaults, raw (bytes) mode"}

    def _open(self, path: str, sync: bool) -> Handle:
        import rocksdict

        db = rocksdict.Rdict(path, rocksdict.Options(raw_mode=True))
        if sync:
            options = rocksdict.WriteOptions()
            options.sync = True
            db.set_write_options(options)

        def batch(pairs: list[Pair]) -> None:
            wb = rocksdict.WriteBatch(raw_mode=True)
            put = wb.put
            for k, v in pairs:
                put(k, v)
            db.write(wb)

        return Handle(
            put=db.put, get=db.get, delete=db.delete, items=db.items, ordered=True,  # type: ignore[arg-type]
            seek=lambda key: db.items(from_key=key), batch=batch,  # type: ignore[arg-type,return-value]
            compact=lambda: db.compact_range(None, None), count=lambda: sum(1 for _ in db.keys()),
            close=db.close, reverse_items=lambda: db.items(backwards=True),  # type: ignore[arg-type,return-value]
        )


ENGINES: dict[str, Engine] = {
    e.name: e for e in (Byrondbm(), DbmDumb(), Sqlite3Dbm(), Semidbm(), Lmdb(), Plyvel(), Rocksdict())
}
"""Every engine the bench knows, in the order its tables list them; byrondbm first."""
