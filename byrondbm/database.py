"""`Database`: the `dbm` mapping over the engine, plus the gdbm and bsddb surfaces, scans, batches and
snapshots. Knows flags and `str` keys; knows nothing of blocks or levels (the engine's business).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from types import TracebackType
from typing import Any, Optional, Union

from .engine.engine import BUFFERED, OS, SYNC, Engine
from .errors import error
from .mapping import Batch, Key, ScanViews, to_bytes
from .options import Options


open_flags = "rwcnfsu"
_CLEAR_BATCH = 10_000


def _bound(value: Optional[Key], what: str) -> Optional[bytes]:
    return None if value is None else to_bytes(value, what)


def parse_flag(flag: str) -> tuple[str, str, bool]:
    """``(kind, durability, lock)`` from a dbm flag string such as ``"c"``, ``"cs"``, ``"ru"``."""
    if not isinstance(flag, str) or not flag:
        raise error(f"flag must be a non-empty string such as 'c', not {flag!r}")
    kind, modifiers = flag[0], flag[1:]
    if kind not in "rwcn":
        raise error(f"flag {flag!r}: the first character must be one of 'r', 'w', 'c', 'n'")
    for m in modifiers:
        if m not in "fsu":
            raise error(f"flag {flag!r}: unknown modifier {m!r} (supported: 'f', 's', 'u')")
    if "f" in modifiers and "s" in modifiers:
        raise error(f"flag {flag!r}: 'f' (fast) and 's' (synchronous) contradict each other")
    durability = BUFFERED if "f" in modifiers else SYNC if "s" in modifiers else OS
    return kind, durability, "u" not in modifiers


class _Scan:
    """Shared by `Database` and `Snapshot`: the argument handling of ``scan``."""

    _engine: Engine

    def _read_seq(self) -> Optional[int]:
        return None

    def scan(
        self,
        start: Optional[Key] = None,
        stop: Optional[Key] = None,
        *,
        prefix: Optional[Key] = None,
        reverse: bool = False,
        keys_only: bool = False,
    ) -> Iterator[Any]:
        """Lazy ``(key, value)`` pairs (keys with ``keys_only``) of ``[start, stop)`` in key order, as of the call.

        Writes, flushes and compactions while it runs never make it raise, skip or repeat a key.
        Cost: O(log k) C comparisons per pair for k sources, blocks read as reached (engine/readpath.py).
        """
        return self._engine.iterate(
            _bound(start, "start"), _bound(stop, "stop"), bool(reverse), self._read_seq(), _bound(prefix, "prefix"),
            bool(keys_only),
        )


class Database(_Scan, ScanViews, MutableMapping[bytes, bytes]):  # type: ignore[misc]  # keys() is a list (dbm)
    """A persistent, sorted mapping of bytes to bytes in one directory. Thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._read_only = engine.read_only
        self._cursor: Optional[bytes] = None
        self._cursor_lock = threading.Lock()

    # -- the dbm mapping

    def __getitem__(self, key: Key) -> bytes:
        value = self._engine.get(key if type(key) is bytes else to_bytes(key))
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: Key, default: Any = None) -> Any:  # type: ignore[override]
        value = self._engine.get(key if type(key) is bytes else to_bytes(key))
        return default if value is None else value

    def get_many(self, keys: Iterable[Key]) -> list[Optional[bytes]]:
        """The values of ``keys``, in their order, ``None`` for an absent key (keys coerced as by `get`).

        All are read as of one moment (the last write published when the call starts). The keys are
        looked up in ascending order, each table once for the keys its range holds, so each data block is
        read once however many of the keys it holds. Cost: a sort, then per key a point lookup's work less
        the block fetches it shares with the key before it.
        """
        return self._engine.get_many([k if type(k) is bytes else to_bytes(k) for k in keys])

    def _require_writable(self) -> None:
        """Every write refuses a read-only database first, before looking at its key (as `dbm.gnu` does):
        so ``del db[k]`` says "read-only" whether or not ``k`` exists. A closed database says "closed"."""
        if self._engine.closed:
            raise error("database is closed")
        if self._read_only:
            raise error(f"database is open read-only: {self._engine.directory}")

    def __setitem__(self, key: Key, value: Key) -> None:
        if self._read_only:  # the engine refuses a closed database; this branch keeps the hot path one test
            self._require_writable()
        if type(key) is not bytes:
            key = to_bytes(key)
        if type(value) is not bytes:
            value = to_bytes(value, "value")
        self._engine.put(key, value)

    def __delitem__(self, key: Key) -> None:
        self._require_writable()
        k = to_bytes(key)
        if self._engine.get(k) is None:
            raise KeyError(key)
        self._engine.put(k, None)

    def __contains__(self, key: object) -> bool:
        return self._engine.get(key if type(key) is bytes else to_bytes(key)) is not None

    def __len__(self) -> int:
        """Exact; O(1) except right after writes (see Engine.count)."""
        return self._engine.count()

    def pop(self, key: Key, *default: Any) -> Any:  # type: ignore[override]
        self._require_writable()
        return super().pop(key, *default)  # type: ignore[arg-type]

    def popitem(self) -> tuple[bytes, bytes]:
        self._require_writable()
        return super().popitem()

    def setdefault(self, key: Key, default: Any = None) -> Any:  # type: ignore[override]
        """``db[key]``; if absent, set it to ``default`` (a write: refused on a read-only database)."""
        value = self.get(key)
        if value is not None:
            return value
        self[key] = default
        return default

    def update(self, other: Any = (), /, **kwds: Key) -> None:
        self._require_writable()
        super().update(other, **kwds)

    def clear(self) -> None:
        """Delete every key, in batches of 10,000 (each batch atomic)."""
        self._require_writable()
        while True:
            keys = [k for k, _ in zip(self.scan(keys_only=True), range(_CLEAR_BATCH))]
            if not keys:
                return
            self._engine.write([(k, None) for k in keys])

    def sync(self) -> None:
        """Everything written so far is durable on disk when this returns."""
        self._engine.sync()

    def refresh(self) -> None:
        """A reader (flag ``'r'``) catches up with the writer: every write acknowledged before this call
        is seen after it; scans and snapshots already taken keep their point in time. Costs a few ``stat``
        calls when nothing changed. Does nothing in a writer (always current)."""
        self._engine.refresh()

    def close(self) -> None:
        """Close (idempotent). Iterators still running raise `byrondbm.error` once they have
        handed out the run of pairs they had already read."""
        self._engine.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            try:
                engine.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._engine.closed else ("read-only" if self._engine.read_only else "open")
        return f"<byrondbm.Database {self._engine.directory!r} {state}>"

    # -- beyond dbm

    def batch(self) -> "Batch":
        """``with db.batch() as b:`` collects puts and deletes, applied all or nothing on a clean exit."""
        self._require_writable()
        return Batch(self._engine.write)

    def snapshot(self) -> "Snapshot":
        """A read-only mapping frozen now; release it with ``with`` or `Snapshot.close`."""
        return Snapshot(self._engine)

    def compact(self) -> None:
        """Full compaction now: reclaims the space of deleted and overwritten data."""
        self._require_writable()
        self._engine.compact()

    reorganize = compact  # dbm.gnu's name

    def backup(self, dest: Union[str, bytes, "os.PathLike[Any]"]) -> dict[str, Any]:
        """Write at ``dest`` (a missing path or an empty directory) a database holding exactly this one's
        state at one instant between the call and the return; writes from other threads go on meanwhile.
        Tables are hard-linked where ``dest`` is on the same file system (copied otherwise), so it costs
        about one table build of the memtables. Works read-only too. Returns a small report (``keys``,
        ``sequence``, ``tables``, ``linked``, ``copied``, ``rewritten``). Raises `byrondbm.error` when
        ``dest`` is anything else (left untouched) or the backup fails (``dest`` left without a database)."""
        return self._engine.backup(os.fsdecode(os.fspath(dest)))

    def stats(self) -> dict[str, Any]:
        return self._engine.stats()

    def check(self) -> dict[str, Any]:
        """Verify every checksum of every table; a report dict (``ok``, ``problems``, counts)."""
        return self._engine.check()

    def _check(self) -> None:
        """Assert the engine's structural invariants (tests and the crash harness call it)."""
        self._engine.check_invariants()

    # -- dbm.gnu's key walk

    def firstkey(self) -> Optional[bytes]:
        return next(self.scan(keys_only=True), None)

    def nextkey(self, key: Key) -> Optional[bytes]:
        return next(self.scan(_after(to_bytes(key)), keys_only=True), None)

    # -- the bsddb cursor (what shelve.BsdDbShelf calls)

    def _move(self, found: Optional[tuple[bytes, bytes]], what: str) -> tuple[bytes, bytes]:
        if found is None:
            raise KeyError(what)
        with self._cursor_lock:
            self._cursor = found[0]
        return found

    def first(self) -> tuple[bytes, bytes]:
        return self._move(next(self.scan(), None), "database is empty")

    def last(self) -> tuple[bytes, bytes]:
        return self._move(next(self.scan(reverse=True), None), "database is empty")

    def next(self) -> tuple[bytes, bytes]:
        """The pair after the cursor (the first pair if the cursor is unset)."""
        cursor = self._cursor
        start = None if cursor is None else _after(cursor)
        return self._move(next(self.scan(start), None), "no key after the cursor")

    __next__ = next

    def previous(self) -> tuple[bytes, bytes]:
        """The pair before the cursor (the last pair if the cursor is unset)."""
        cursor = self._cursor
        return self._move(next(self.scan(None, cursor, reverse=True), None), "no key before the cursor")

    def set_location(self, key: Key) -> tuple[bytes, bytes]:
        """Move to the smallest key >= ``key``."""
        return self._move(next(self.scan(to_bytes(key)), None), f"no key at or after {key!r}")


def _after(key: bytes) -> bytes:
    """The smallest key greater than ``key``."""
    return key + b"\x00"


class Snapshot(_Scan, ScanViews, Mapping[bytes, bytes]):  # type: ignore[misc]  # keys() is a list
    """A read-only mapping frozen at the moment it was taken. Assignment raises `TypeError`; use after
    `close` raises `byrondbm.error`. ``len`` costs one scan, then is remembered."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._seq, _ = engine.pin()
        self._open = True
        self._len: Optional[int] = None

    def _read_seq(self) -> Optional[int]:
        if not self._open:
            raise error("snapshot is released")
        return self._seq

    def __getitem__(self, key: Key) -> bytes:
        value = self._engine.get(to_bytes(key), -self._read_seq())  # type: ignore[operator]
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self._engine.get(to_bytes(key), -self._read_seq()) is not None  # type: ignore[operator]

    def get_many(self, keys: Iterable[Key]) -> list[Optional[bytes]]:
        """`Database.get_many` as of the snapshot."""
        return self._engine.get_many([to_bytes(k) for k in keys], -self._read_seq())  # type: ignore[operator]

    def __len__(self) -> int:
        self._read_seq()  # a released snapshot raises, even with its length remembered
        if self._len is None:
            self._len = sum(1 for _ in self.scan(keys_only=True))
        return self._len

    def close(self) -> None:
        """Release the snapshot (idempotent): compactions may drop the old versions it kept."""
        if self._open:
            self._open = False
            self._engine.unpin(self._seq)

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_open", False):
            self.close()


def open_database(file: Union[str, bytes, os.PathLike[Any]], flag: str = "r", mode: int = 0o666, **options: Any) -> Database:
    """`byrondbm.open`: see the contract's "Opening" section."""
    kind, durability, lock = parse_flag(flag)
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int, not {type(mode).__name__}")
    timeout = options.pop("timeout", 0.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
    opts = Options.from_kwargs(**options)
    directory = os.fsdecode(os.fspath(file))
    engine = Engine(
        directory,
        opts,
        create=kind in "cn",
        replace=kind == "n",
        read_only=kind == "r",
        durability=durability,
        lock=lock,
        mode=mode,
        timeout=float(timeout),
    )
    return Database(engine)
