"""The table builder: entries in entry order -> one or more finished table files under temporary names
(LevelDB's ``BuildTable``). Flushes, compactions (in worker processes or in-process) and `repair` all
write tables through `build_tables`; the caller renames the outputs into place and fsyncs the directory
before recording them (docs/design.md, invariant 3).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Optional

from ..errors import error
from ..options import Options
from .records import Entry
from .sstable import TableProperties, TableWriter

__all__ = ["build_tables"]


def build_tables(
    entries: Iterable[Entry],
    options: Options,
    mode: int,
    temp_path: Callable[[int], str],
    split: bool,
    stop: Optional[Callable[[], bool]] = None,
) -> list[tuple[str, TableProperties]]:
    """Write ``entries`` into one table, or with ``split`` into several cut near ``target_file_size``
    between keys (so tables of a level never share a key). Output ``k`` goes to ``temp_path(k)``, is
    fsync'ed and closed; ``[(path, properties), ...]`` is returned (empty for no entries). On any error every
    output is removed and the error re-raised. ``stop()`` is polled every 1024 entries; when true the build
    is abandoned with `byrondbm.error` (a closing database). Cost: one `TableWriter.add_many` per table."""
    outputs: list[tuple[str, TableProperties]] = []
    writer: Optional[TableWriter] = None
    limit = options.target_file_size if split else -1
    it = iter(entries)
    carry: Optional[Entry] = next(it, None)
    source = _stoppable(it, stop) if stop is not None else it
    try:
        while carry is not None:
            writer = TableWriter(temp_path(len(outputs)), options, mode)
            writer.add(*carry)
            carry = writer.add_many(source, limit)
            outputs.append((writer.path, writer.finish()))
            writer = None
    except BaseException:
        if writer is not None:
            writer.abandon()
        for path, _ in outputs:
            _remove(path)
        raise
    return outputs


def _stoppable(entries: Iterator[Entry], stop: Callable[[], bool]) -> Iterator[Entry]:
    for i, entry in enumerate(entries):
        if not i & 1023 and stop():
            raise error("table build interrupted: the database is closing")
        yield entry


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
