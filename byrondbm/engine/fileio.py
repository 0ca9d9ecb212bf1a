"""Durable file operations: the fsync discipline of docs/design.md invariant 3 in one place.

macOS's fsync does not reach the platter; there ``F_FULLFSYNC`` is used, as LevelDB's env_posix does.
"""

from __future__ import annotations

import os

try:
    import fcntl

    _FULLFSYNC = getattr(fcntl, "F_FULLFSYNC", None)
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]
    _FULLFSYNC = None


def sync_fd(fd: int) -> None:
    """Make what was written to ``fd`` survive a power cut."""
    if _FULLFSYNC is not None:
        try:
            fcntl.fcntl(fd, _FULLFSYNC)
            return
        except OSError:
            pass
    os.fsync(fd)


def sync_dir(directory: str) -> None:
    """Make the directory's entries (creations, renames, unlinks) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        sync_fd(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a regular file may accept a short write)."""
    n = os.write(fd, data)
    if n == len(data):
        return  # the usual case: one call, no view
    view = memoryview(data)[n:]
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_synced(path: str, data: bytes, mode: int) -> None:
    """Create (or truncate) ``path`` holding ``data``, fsync'ed. On failure the file is removed and the
    error re-raised. The caller renames it into place and fsyncs the directory (atomic replacement)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            write_all(fd, data)
            sync_fd(fd)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def read_file(path: str, limit: int | None = None) -> bytes:
    """The whole file, or at most ``limit`` bytes of it (a length read from disk is bounded first)."""
    with open(path, "rb") as f:
        return f.read() if limit is None else f.read(limit)
