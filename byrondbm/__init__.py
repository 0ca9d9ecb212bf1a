"""byrondbm: a persistent, sorted key-value store (an LSM tree) that is a drop-in `dbm` module.

    import byrondbm
    with byrondbm.open("data.db", "c") as db:
        db[b"key"] = b"value"

See the README for the contract: flags, errors, the mapping, scans, batches, snapshots and durability.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from .database import Batch, Database, Snapshot, open_database as open, open_flags  # noqa: A001
from .engine.directory import is_database
from .errors import CorruptionError, error

__all__ = [
    "open", "open_flags", "error", "CorruptionError", "Database", "Batch", "Snapshot",
    "whichdb", "check", "repair", "connect",
]
__version__ = "0.1.0"


def whichdb(path: Union[str, bytes, "os.PathLike[Any]"]) -> Optional[str]:
    """``"byrondbm"`` if ``path`` is a byrondbm database directory, else None."""
    return "byrondbm" if is_database(os.fsdecode(os.fspath(path))) else None


def check(path: Union[str, bytes, "os.PathLike[Any]"]) -> dict[str, Any]:
    """Open read-only and verify every checksum (logs, manifest, every table block); a report dict with
    ``ok`` and ``problems``. A database too damaged to open gives ``ok: False`` with the reason."""
    from .engine.repair import check_database

    return check_database(os.fsdecode(os.fspath(path)))


def repair(path: Union[str, bytes, "os.PathLike[Any]"]) -> dict[str, Any]:
    """Salvage every readable record of a damaged database into a consistent one; a report dict."""
    from .engine.repair import repair_database

    return repair_database(os.fsdecode(os.fspath(path)))


def connect(target: str, token: Optional[str] = None, *, timeout: float = 10.0) -> Any:
    """A client of ``byrondbm serve`` with the mapping, ``scan`` and ``batch`` interface (extra ``server``);
    ``timeout`` bounds each call, in seconds."""
    try:
        from .server import client
    except ImportError as e:  # grpcio missing
        raise error(f"byrondbm.connect needs the 'server' extra: pip install 'byrondbm[server]' ({e})") from None
    return client.connect(target, token=token, timeout=timeout)
