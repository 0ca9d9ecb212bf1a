"""Compaction policies: which tables to merge next, and the merge that drops what no reader needs.

Leveled (``compaction_style="leveled"``, LevelDB's): L0 holds flushed memtables (overlapping). When it has
``l0_compaction_trigger`` files they are merged, with the L1 tables they overlap, into L1. Level k >= 1 may
hold ``level1_size * level_ratio ** (k-1)`` bytes. The level most over its limit goes first (`pick`); a
level k >= 1 gives one table (round robin through the level, as LevelDB's compact pointer) to merge with
the tables it overlaps one level down. A single table with nothing to merge with is moved by a manifest
edit alone. Outputs are cut near ``target_file_size``, only between keys, so tables of one level never
share a key.

Tiered (``compaction_style="tiered"``, RocksDB's universal compaction): the *sorted runs*, newest first,
are each L0 table and then each non-empty level (`sorted_runs`: the order reads already search, so no new
structure and no manifest change). When there are ``l0_compaction_trigger`` runs or more, adjacent runs
are merged into one (`pick_tiered`): all of them when the newer runs hold `TIERED_MAX_SIZE_AMP` % of the
oldest's bytes, else the first stretch of runs each at most `TIERED_SIZE_RATIO` % bigger than the runs
before it, else the newest runs down to ``l0_compaction_trigger``. The merged run takes the place of its
oldest input (a level, or the deepest empty level above the next older run, or L0), so newer data stays
above older (docs/design.md invariant 5); tombstones are dropped only where no older run may hold the key.
A byte is rewritten about once each time its run doubles instead of ~``level_ratio / 2`` times a level:
fewer bytes written, more runs for a read to probe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Optional

from ..options import Options
from .records import Entry
from .sstable import TableReader
from .version import MAX_LEVELS, Version


TIERED_SIZE_RATIO = 1
"""Tiered: a run joins the merge of the newer runs before it while its bytes exceed theirs by at most this
percentage (RocksDB's ``size_ratio``, same default): only runs of about equal size merge, so a byte is
rewritten about once per doubling. A larger ratio rewrites big runs more often (simulated: 4x the
bytes of the newer runs gave 1.9x the bytes written of 1 %, over 39 flushes with a trigger of 4)."""
TIERED_MAX_SIZE_AMP = 200
"""Tiered: when the runs newer than the oldest hold this percentage of its bytes, all runs are merged
(RocksDB's ``max_size_amplification_percent``), bounding space to ~3x the live data."""


@dataclasses.dataclass
class Compaction:
    level: int
    output_level: int
    inputs: list[TableReader]
    lower: list[TableReader]
    """Tables of output_level that overlap the inputs (leveled; tiered merges whole runs: none)."""
    runs: list[list[TableReader]]
    """The sorted runs merged, newest first: an L0 table alone, or a level's tables in key order."""
    base: list[list[TableReader]]
    """The sorted runs older than the output: a tombstone whose key none of them may hold is dropped."""
    split: bool = True
    """Cut outputs near ``target_file_size``; False writes one table (an L0 output must be one run)."""
    pointer: Optional[bytes] = None
    """Leveled: where the next compaction of ``level`` starts (recorded with the result)."""

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
    """The next compaction of ``options.compaction_style``, or None when there is nothing to do."""
    if options.compaction_style == "tiered":
        return pick_tiered(version, options)
    return pick_leveled(version, options, pointers)


def _deeper_runs(version: Version, output_level: int) -> list[list[TableReader]]:
    return [list(version.levels[k]) for k in range(output_level + 1, MAX_LEVELS) if version.levels[k]]


def pick_leveled(version: Version, options: Options, pointers: dict[int, bytes]) -> Compaction | None:
    """The most urgent leveled compaction, or None when every level is within its target. O(tables).

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
        lower = version.overlapping(1, lo, hi)
        runs = [[t] for t in l0] + ([lower] if lower else [])
        return Compaction(0, 1, list(l0), lower, runs, _deeper_runs(version, 1))
    tables = version.levels[best]
    pointer = pointers.get(best)
    chosen = next((t for t in tables if pointer is None or t.largest > pointer), tables[0])
    lower = version.overlapping(best + 1, chosen.smallest, chosen.largest)
    runs = [[chosen]] + ([lower] if lower else [])
    return Compaction(best, best + 1, [chosen], lower, runs, _deeper_runs(version, best + 1), pointer=chosen.largest)


def sorted_runs(version: Version) -> list[tuple[int, list[TableReader]]]:
    """(level, tables) of every sorted run, newest first: each L0 table, then each non-empty level."""
    runs = [(0, [t]) for t in version.levels[0]]
    return runs + [(k, list(version.levels[k])) for k in range(1, MAX_LEVELS) if version.levels[k]]


def pick_tiered(version: Version, options: Options) -> Compaction | None:
    """The next tiered merge of adjacent sorted runs (module docstring), or None while there are fewer
    than ``l0_compaction_trigger`` runs or no rule fires. O(tables)."""
    runs = sorted_runs(version)
    n = len(runs)
    trigger = options.l0_compaction_trigger
    if n < max(2, trigger):
        return None
    sizes = [sum(t.properties.file_size for t in tables) for _, tables in runs]
    chosen: Optional[tuple[int, int]] = None
    if sum(sizes[:-1]) * 100 >= TIERED_MAX_SIZE_AMP * sizes[-1]:
        chosen = (0, n)
    else:
        for first in range(n - 1):
            total, end = sizes[first], first + 1
            while end < n and sizes[end] * 100 <= total * (100 + TIERED_SIZE_RATIO):
                total += sizes[end]
                end += 1
            if end - first >= 2:
                chosen = (first, end)
                break
    if chosen is None:
        if n <= trigger:
            return None
        chosen = (0, n - trigger + 1)
    first, end = chosen
    oldest = runs[end - 1][0]
    if oldest == 0 and end == len(version.levels[0]):  # the oldest L0 table: may go down to a free level
        oldest = (runs[end][0] if end < n else MAX_LEVELS) - 1
    picked = [tables for _, tables in runs[first:end]]
    inputs = [t for tables in picked for t in tables]
    return Compaction(runs[first][0], oldest, inputs, [], picked, [tables for _, tables in runs[end:]],
                      split=oldest > 0)


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
