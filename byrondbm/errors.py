"""The exception types of the contract, shared by the engine and the mapping layer.

`error` subclasses `OSError` so that `except dbm.error:` catches it, as for every `dbm` module.
"""

from __future__ import annotations

import os


class error(OSError):  # noqa: N801 - the dbm modules all call it `error`
    """Any byrondbm failure: missing or locked database, closed handle, write to a read-only one."""


class CorruptionError(error):
    """A checksum, length or format check failed: the bytes on disk cannot be trusted.

    Wrong data is never returned silently; this is raised instead, naming the file.
    """

    def __init__(self, message: str, filename: str | os.PathLike[str] | None = None) -> None:
        if filename is not None:
            super().__init__(0, message, os.fspath(filename))
            self.args = (f"{message}: {os.fspath(filename)}",)
        else:
            super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "corruption"
