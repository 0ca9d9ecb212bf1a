"""What every byrondbm mapping shares, embedded (`byrondbm.Database`, `Snapshot`) or remote (the server's
`Client`): key coercion, the scan-backed views, and the batch that collects writes for one atomic apply.

Knows nothing of engines or networks: each class is handed the one callable (``scan``, ``apply``) it needs.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, ValuesView
from types import TracebackType
from typing import Any, Optional, Protocol, Union

from .errors import error

Key = Union[bytes, bytearray, memoryview, str]
"""What a key or value may be given as; reads always return bytes."""


class Scannable(Protocol):
    """Anything with the mappings' ``scan(start, stop, *, prefix, reverse, keys_only)``."""

    def scan(self, *args: Any, **kwargs: Any) -> Iterator[Any]: ...


def to_bytes(value: object, what: str = "key") -> bytes:
    """Coerce a key or value: bytes as is, str as UTF-8, any other buffer copied; else `TypeError`."""
    if type(value) is bytes:
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, bytearray, memoryview or str, not {type(value).__name__}")


class ScanViews:
    """``__iter__``, ``keys()``, ``items()`` and ``values()`` of any mapping with a ``scan()`` (Database,
    Snapshot, the server's client): each is one streamed scan, never a lookup per key."""

    scan: Callable[..., Iterator[Any]]  # provided by the class it is mixed into

    def __iter__(self) -> Iterator[bytes]:
        return self.scan(keys_only=True)

    def keys(self) -> list[bytes]:
        """A sorted list, as every dbm module returns."""
        return list(self.scan(keys_only=True))

    def items(self) -> ItemsView[bytes, bytes]:
        return ScanItems(self)  # type: ignore[arg-type]

    def values(self) -> ValuesView[bytes]:
        return ScanValues(self)  # type: ignore[arg-type]


class ScanItems(ItemsView[bytes, bytes]):
    """``items()`` of any mapping with a ``scan()`` (Database, Snapshot, the server's client): one scan, not
    a lookup per key."""

    _mapping: Scannable  # type: ignore[assignment]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self._mapping.scan()


class ScanValues(ValuesView[bytes]):
    """``values()`` of any mapping with a ``scan()``."""

    _mapping: Scannable  # type: ignore[assignment]

    def __iter__(self) -> Iterator[bytes]:
        return (v for _, v in self._mapping.scan())


class Batch:
    """Puts and deletes collected in memory and handed, all together, to ``apply`` by `commit` (the engine's
    atomic write: one log record; or the server client's one Batch call). Leaving a ``with`` block by an
    exception applies nothing."""

    def __init__(self, apply: Callable[[list[tuple[bytes, Optional[bytes]]]], None]) -> None:
        self._apply = apply
        self._ops: list[tuple[bytes, Optional[bytes]]] = []
        self._done = False

    def put(self, key: Key, value: Key) -> None:
        self._check()
        self._ops.append((to_bytes(key), to_bytes(value, "value")))

    def delete(self, key: Key) -> None:
        """Delete ``key`` when the batch applies; an absent key is not an error."""
        self._check()
        self._ops.append((to_bytes(key), None))

    __setitem__ = put
    __delitem__ = delete

    def __len__(self) -> int:
        return len(self._ops)

    def _check(self) -> None:
        if self._done:
            raise error("batch already applied or discarded")

    def commit(self) -> None:
        self._check()
        self._done = True
        self._apply(self._ops)

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if exc_type is None:
            self.commit()
        else:
            self._done = True  # an exception inside the block applies nothing
