"""`shelve` backed by byrondbm: ``from byrondbm import shelve; shelve.open(filename)``.

Mirrors the standard library's `shelve.open` (same arguments, same pickling, ``writeback`` cache, ``with``
support), but the shelf is a `shelve.BsdDbShelf` over a byrondbm database, so keys iterate in sorted order
(of their UTF-8 bytes) and the bsddb cursor methods ``first``, ``last``, ``next``, ``previous`` and
``set_location`` work. Values are pickled as in the standard shelve; keys are `str`.
"""

from __future__ import annotations

import os
import shelve as _std
from typing import Any, Optional, Union

from .database import Database, open_database

__all__ = ["open", "Shelf", "BsdDbShelf", "ByrondbmShelf"]

Shelf = _std.Shelf
BsdDbShelf = _std.BsdDbShelf


class ByrondbmShelf(_std.BsdDbShelf):
    """A `shelve.BsdDbShelf` that opens (and owns) a byrondbm database at ``filename``."""

    def __init__(
        self,
        filename: Union[str, bytes, "os.PathLike[Any]"],
        flag: str = "c",
        protocol: Optional[int] = None,
        writeback: bool = False,
    ) -> None:
        super().__init__(open_database(filename, flag), protocol, writeback)

    def reorganize(self) -> None:
        """Write back the cache, then reclaim the space of deleted and overwritten values (dbm.gnu's name)."""
        self.sync()
        db = self.dict  # type: ignore[attr-defined]  # shelve.Shelf sets it; typeshed does not declare it
        if not isinstance(db, Database):  # shelve swaps in a _ClosedDict on close
            raise ValueError("invalid operation on closed shelf")
        db.reorganize()


def open(  # noqa: A001 - mirrors shelve.open
    filename: Union[str, bytes, "os.PathLike[Any]"],
    flag: str = "c",
    protocol: Optional[int] = None,
    writeback: bool = False,
) -> ByrondbmShelf:
    """Open a persistent dictionary backed by the byrondbm database (a directory) at ``filename``.

    ``flag`` is a byrondbm flag (``'r'``, ``'w'``, ``'c'``, ``'n'`` and modifiers ``'f'``, ``'s'``, ``'u'``);
    ``protocol`` is the pickle protocol; with ``writeback`` the entries read are cached and written back on
    `sync` and `close`, as in the standard shelve.
    """
    return ByrondbmShelf(filename, flag, protocol, writeback)
