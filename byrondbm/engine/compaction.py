"""Leveled compaction: which tables to merge next, and the merge that drops what no reader needs.

L0 holds flushed memtables (overlapping). When it has ``l0_compaction_trigger`` files they are merged, with
the L1 tables they overlap, into L1. Level k >= 1 may hold ``level1_size * level_ratio ** (k-1)`` bytes.
The level most over its limit goes first (`pick`); a level k >= 1 gives one table (round robin through
the level, as LevelDB's compact pointer) to merge with the tables it overlaps one level down. A single table with nothing to merge with is
moved by a manifest edit alone. Outputs are cut near ``target_file_size``, only between keys, so tables of
one level never share a key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

from ..options import Options
from .records import Entry
from .sstable import TableReader
from .version import MAX_LEVELS, Version


@dataclasses.dataclass
class Compaction:
    level: int
    output_level: int
    inputs: list[TableReader]
    lower: list[TableReader]  # tables of output_level that overlap the inputs

    @property
    def trivial_move(self) -> bool:
        return len(self.inputs) == 1 and not self.lower

    def all_inputs(self) -> list[TableReader]:
        return self.inputs + self.lower


def level_target(options: Options, level: int) -> float:
    """Bytes level ``level`` (>= 1) may hold before it is compacted; the last level has no limit."""
    if level >= MAX_LEVELS - 1:
        return float("inf")
    return float(options.level1_size * options.level_ratio ** (level - 1))


def pick(version: Version, options: Options, pointers: dict[int, bytes]) -> Compaction | None:
    """The most urgent compaction, or None when every level is within its target. O(tables).

    As LevelDB's ``VersionSet::Finalize``: L0 scores ``files / l0_compaction_trigger``, level k >= 1 scores
    ``bytes / target``, and the highest score of at least 1 runs. (Always serving L0 first would let L1 grow
    without bound under a steady write load, each L0 merge rewriting all of it.)
    """
    l0 = version.levels[0]
    scores = [(len(l0) / options.l0_compaction_trigger, 0)]
    scores += [(version.level_bytes(k) / level_target(options, k), k) for k in range(1, MAX_LEVELS - 1)]
    score, best = max(scores, key=lambda s: (s[0], -s[1]))  # a tie goes to the upper level
    if score < 1:
        return None
    if best == 0:
        lo = min(t.smallest for t in l0)
        hi = max(t.largest for t in l0)
        return Compaction(0, 1, list(l0), version.overlapping(1, lo, hi))
    tables = version.levels[best]
    pointer = pointers.get(best)
    chosen = next((t for t in tables if pointer is None or t.largest > pointer), tables[0])
    return Compaction(best, best + 1, [chosen], version.overlapping(best + 1, chosen.smallest, chosen.largest))


def drop_obsolete(entries: Iterable[Entry], smallest_snapshot: int, is_base: Callable[[bytes], bool]) -> Iterator[Entry]:
    """Drop versions no reader can see (LevelDB's rule, docs/design.md invariant 5).

    An entry is dropped when a newer entry of its key is itself visible to the oldest pinned reader
    (``smallest_snapshot``), and a tombstone is dropped when every reader sees it and no deeper level may
    hold an older version of its key (``is_base``).
    """
    snap_negseq = -smallest_snapshot
    prev_key: bytes | None = None
    prev_negseq = 0
    for entry in entries:
        key, negseq, value = entry
        if key != prev_key:
            prev_key = key
            shadowed = False
        else:
            shadowed = prev_negseq >= snap_negseq
        prev_negseq = negseq
        if shadowed:
            continue
        if value is None and negseq >= snap_negseq and is_base(key):
            continue
        yield entry


def is_base_for(version: Version, output_level: int) -> Callable[[bytes], bool]:
    """A predicate: no level below ``output_level`` has a table whose range holds the key."""
    deeper = [level for level in range(output_level + 1, MAX_LEVELS) if version.levels[level]]

    def is_base(key: bytes) -> bool:
        return all(version.table_for(level, key) is None for level in deeper)

    return is_base
