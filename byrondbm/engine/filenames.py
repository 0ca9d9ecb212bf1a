"""Every name byrondbm gives a file in its directory lives here (as LevelDB's ``db/filename.h``).

    CURRENT            one line: the name of the live manifest, then "\\n"
    LOCK               held by the writer with an exclusive fcntl.flock; readers take no lock
    MANIFEST-NNNNNN    version edits (framed records, see manifest.py)
    NNNNNN.log         write-ahead log (framed records, see wal.py)
    NNNNNN.img         image of log NNNNNN's memtable, saved at close (see memimage.py)
    NNNNNN.sst         a sorted table (see sstable/format.py)
    *.tmp              a file being written; never referenced, removed on open
    job-J-K.sst.tmp    output K of background job J, renamed to NNNNNN.sst when installed
    lost/              what `repair` could not use, moved aside for inspection (removed by flag 'n')

File numbers come from one counter kept in the manifest, so no two files share a number.
"""

from __future__ import annotations

import os
import re

CURRENT = "CURRENT"
LOCK = "LOCK"
TEMP_SUFFIX = ".tmp"
LOST = "lost"
MANIFEST_PREFIX = "MANIFEST-"

_NUMBERED = re.compile(r"^(\d{6,})\.(log|sst|img)$")
_MANIFEST = re.compile(r"^MANIFEST-(\d{6,})$")


def log_name(number: int) -> str:
    return f"{number:06d}.log"


def table_name(number: int) -> str:
    return f"{number:06d}.sst"


def image_name(log_number: int) -> str:
    return f"{log_number:06d}.img"


def manifest_name(number: int) -> str:
    return f"{MANIFEST_PREFIX}{number:06d}"


def temp_name(name: str) -> str:
    return name + TEMP_SUFFIX


def job_output(job: int, k: int) -> str:
    return temp_name(f"job-{job:06d}-{k}.sst")


def parse(name: str) -> tuple[str, int] | None:
    """``("log" | "sst" | "img" | "manifest", number)`` for a numbered file, else None."""
    m = _NUMBERED.match(name)
    if m:
        return m.group(2), int(m.group(1))
    m = _MANIFEST.match(name)
    if m:
        return "manifest", int(m.group(1))
    return None


def is_ours(name: str) -> bool:
    """True for every name byrondbm may create in its directory."""
    return name in (CURRENT, LOCK, LOST) or name.endswith(TEMP_SUFFIX) or parse(name) is not None


def path(directory: str, name: str) -> str:
    return os.path.join(directory, name)
