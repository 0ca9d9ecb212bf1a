"""Every tunable of a database, validated once at open, with defaults like LevelDB's.

`Options.from_kwargs(**kw)` is the only way options enter: an unknown name raises `TypeError`, a value of
the wrong type `TypeError`, an out-of-range value `ValueError`, each message naming the option.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

KiB = 1024
MiB = 1024 * KiB


@dataclasses.dataclass(frozen=True)
class Options:
    memtable_size: int = 8 * MiB
    """Bytes of keys+values (plus 48 bytes an entry) a memtable holds before it is flushed to L0."""
    block_size: int = 4 * KiB
    """Target uncompressed size of an SSTable data block."""
    compression: str = "zlib"
    """How data blocks are stored: "zlib" (compressed when that saves at least 1/8 of a block, else raw)
    or "none". Tables of either kind read alike whatever this says."""
    bloom_bits_per_key: int = 10
    """Bloom filter bits per key (10 gives ~1% false positives); 0 writes no filter."""
    block_cache_size: int = 64 * MiB
    """Bytes of memory (measured, not on-disk size) the shared block cache may hold (second-chance eviction, see sstable/cache.py); 0 disables it."""
    compaction_style: str = "tiered"
    """How tables are merged in the background (byrondbm/engine/compaction.py): "tiered" (RocksDB's universal
    compaction: sorted runs of similar size merged together, fewer bytes rewritten per byte written, more
    runs to probe; the default, chosen on a sustained fill: 1.24x the puts/s, write amplification 5.1
    against 6.3, gets after the fill as fast) or "leveled" (LevelDB's: L1..L6 each ``level_ratio`` times the
    last, fewest runs for a read to probe). Either style opens a database the other wrote; switching only
    changes what is merged next."""
    target_file_size: int = 4 * MiB
    """Size at which a compaction starts a new output table."""
    level_ratio: int = 10
    """Level k+1 may hold `level_ratio` times the bytes of level k."""
    level1_size: int = 64 * MiB
    """Target size of level 1; level k's is ``level1_size * level_ratio ** (k - 1)``."""
    l0_compaction_trigger: int = 4
    """Number of L0 files that starts an L0 → L1 compaction (tiered: number of sorted runs, L0 tables and
    non-empty levels, that starts a merge)."""
    l0_slowdown_trigger: int = 8
    """Number of L0 files at which each write is delayed ~1 ms (backpressure)."""
    l0_stop_trigger: int = 12
    """Number of L0 files at which writes wait for the compactor."""
    max_immutable_memtables: int = 2
    """Full memtables waiting to be flushed before writes wait for the flush."""
    large_value_threshold: int = 4 * KiB
    """Values longer than this are stored outside data blocks, in their own run of blocks."""
    background_compaction: bool = True
    """Flush and compact in background threads; False does that work in the writing thread."""
    workers: int = 1
    """Worker processes that run flushes and compactions (started when first needed, stopped at close);
    0 runs them in this process (tests, tiny databases)."""
    refresh_interval: Optional[float] = None
    """Seconds: a reader (flag 'r') refreshes before a read when this long has passed since its last
    refresh (None: only when `refresh()` is called). Writers ignore it."""

    def __post_init__(self) -> None:
        interval = self.refresh_interval
        if interval is not None:
            if isinstance(interval, bool) or not isinstance(interval, (int, float)):
                raise TypeError(
                    f"option 'refresh_interval' must be a number of seconds or None, not {type(interval).__name__}")
            if not interval >= 0:
                raise ValueError(f"option 'refresh_interval' must be >= 0 seconds or None, got {interval!r}")
        for f in dataclasses.fields(self):
            if f.name == "refresh_interval":
                continue
            value = getattr(self, f.name)
            kind, low, high = _RULES[f.name]
            if kind is str:
                if not isinstance(value, str):
                    raise TypeError(f"option {f.name!r} must be a str, not {type(value).__name__}")
                if value not in _CHOICES[f.name]:
                    choices = " or ".join(map(repr, _CHOICES[f.name]))
                    raise ValueError(f"option {f.name!r} must be {choices}, got {value!r}")
                continue
            if kind is bool:
                if not isinstance(value, bool):
                    raise TypeError(f"option {f.name!r} must be a bool, not {type(value).__name__}")
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"option {f.name!r} must be an int, not {type(value).__name__}")
            if not low <= value <= high:
                raise ValueError(f"option {f.name!r} must be between {low} and {high}, got {value}")
        if not self.l0_compaction_trigger <= self.l0_slowdown_trigger <= self.l0_stop_trigger:
            raise ValueError(
                "options 'l0_compaction_trigger' <= 'l0_slowdown_trigger' <= 'l0_stop_trigger' must hold"
            )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Options":
        names = {f.name for f in dataclasses.fields(cls)}
        for name in kwargs:
            if name not in names:
                raise TypeError(f"unknown option {name!r} (known: {', '.join(sorted(names))})")
        return cls(**kwargs)


_RULES: dict[str, tuple[type, int, int]] = {
    "memtable_size": (int, 1 * KiB, 1024 * MiB),
    "block_size": (int, 256, 4 * MiB),
    "compression": (str, 0, 0),
    "bloom_bits_per_key": (int, 0, 64),
    "block_cache_size": (int, 0, 64 * 1024 * MiB),
    "compaction_style": (str, 0, 0),
    "target_file_size": (int, 1 * KiB, 4096 * MiB),
    "level_ratio": (int, 2, 1000),
    "level1_size": (int, 1 * KiB, 1 << 40),
    "l0_compaction_trigger": (int, 1, 1000),
    "l0_slowdown_trigger": (int, 1, 1000),
    "l0_stop_trigger": (int, 1, 1000),
    "max_immutable_memtables": (int, 1, 64),
    "large_value_threshold": (int, 64, (1 << 31) - 1),
    "background_compaction": (bool, 0, 1),
    "workers": (int, 0, 64),
}
_CHOICES = {"compression": ("zlib", "none"), "compaction_style": ("tiered", "leveled")}
"""The values a str option may take (the first is the default)."""
