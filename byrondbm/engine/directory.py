"""The database directory: the writer's lock, what is ours in it, creating and replacing it.

As LevelDB's ``LockFile``/``DestroyDB``: one writer process at a time holds ``LOCK`` with an exclusive
``flock`` (docs/design.md, "Files and locks"). Readers take no lock at all, so they never make the writer
wait and never write in the directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time

from ..errors import CorruptionError, error
from . import filenames
from .fileio import sync_dir

__all__ = ["DirLock", "destroy", "is_database", "our_files", "prepare"]

_registry_lock = threading.Lock()
_open_dirs: set[str] = set()
_RETRY = 0.05  # seconds between tries of a lock held elsewhere, while a timeout lasts


def is_database(directory: str) -> bool:
    """True when ``directory`` holds a CURRENT file naming a manifest (cheap; reads one small file)."""
    try:
        from .manifest import read_current

        read_current(directory)
        return True
    except (OSError, CorruptionError):
        return False


def our_files(directory: str) -> tuple[list[str], list[str]]:
    """(names byrondbm may own, foreign names) in ``directory``."""
    names = os.listdir(directory)
    ours = [n for n in names if filenames.is_ours(n)]
    return ours, [n for n in names if not filenames.is_ours(n)]


def has_data_files(directory: str) -> bool:
    """True when byrondbm files other than LOCK and temp files remain (a database without CURRENT is damage)."""
    ours, _ = our_files(directory)
    return any(n != filenames.LOCK and not n.endswith(filenames.TEMP_SUFFIX) for n in ours)


def destroy(directory: str) -> None:
    """Remove every byrondbm file of ``directory`` (not LOCK, which the caller holds). Refuses foreign files."""
    ours, foreign = our_files(directory)
    if foreign:
        raise error(f"refusing to replace {directory!r}: it holds files that are not byrondbm's ({foreign[0]!r})")
    for name in ours:
        if name == filenames.LOST:
            shutil.rmtree(filenames.path(directory, name))
        elif name != filenames.LOCK:
            os.unlink(filenames.path(directory, name))
    sync_dir(directory)


def prepare(directory: str, create: bool, replace: bool, mode: int) -> None:
    """Make sure ``directory`` may hold a database: create it if asked, refuse foreign content."""
    d = directory
    if os.path.isdir(d):
        if replace or not os.path.exists(filenames.path(d, filenames.CURRENT)):
            _, foreign = our_files(d)
            if foreign:
                raise error(errno.EEXIST, f"not a byrondbm database and not empty (holds {foreign[0]!r})", d)
        return
    if os.path.lexists(d):
        if not (create or replace) or not os.path.isfile(d) or os.path.getsize(d) != 0:
            raise error(errno.EEXIST, "exists and is not a byrondbm database directory", d)
        os.unlink(d)  # an empty file: nothing to lose (as 'n' over an empty file in dbm)
    elif not create:
        raise error(errno.ENOENT, "no such byrondbm database", d)
    os.mkdir(d, mode | ((mode & 0o444) >> 2))
    sync_dir(os.path.dirname(os.path.abspath(d)))


class DirLock:
    """The writer's lock: ``LOCK`` held with an exclusive flock, plus an in-process registry (flock alone
    lets one process take a directory twice: the lock belongs to the process, which the contract forbids).

    ``os_lock=False`` (the ``'u'`` flag) takes only the in-process registry. ``timeout`` seconds are spent
    retrying a lock held elsewhere before `byrondbm.error` says it is locked (as sqlite3's timeout).
    Release with `release` (idempotent); closing the descriptor drops the flock, so a killed writer's lock
    goes with it.
    """

    def __init__(self, directory: str, os_lock: bool = True, mode: int = 0o666, timeout: float = 0.0) -> None:
        self._key = os.path.realpath(directory)
        self._fd = -1
        self._registered = False
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    self._try(directory, os_lock, mode)
                    return
                except error as e:
                    if e.errno != errno.EAGAIN or time.monotonic() >= deadline:
                        raise
                time.sleep(_RETRY)
        except BaseException:
            self.release()
            raise

    def _try(self, directory: str, os_lock: bool, mode: int) -> None:
        with _registry_lock:
            if not self._registered:
                if self._key in _open_dirs:
                    raise error(errno.EAGAIN, "database is locked (already open for writing in this process)", directory)
                _open_dirs.add(self._key)
                self._registered = True
        if not os_lock or self._fd >= 0:
            return
        import fcntl

        self._fd = os.open(filenames.path(directory, filenames.LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = -1
            raise error(errno.EAGAIN, "database is locked by another process", directory) from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1
        if self._registered:
            with _registry_lock:
                _open_dirs.discard(self._key)
            self._registered = False
