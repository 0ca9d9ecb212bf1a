"""Group commit in ``'s'`` mode: acknowledged writes per second with 1 writer thread and with several.

In ``'s'`` mode every write is fsync'ed before it returns; concurrent writers share one fsync (a writer
that finds an fsync in progress waits for it, and returns at once if it covered its record). Each thread
writes 100-byte values to its own keys for a fixed time; the report gives acknowledged writes per second,
the fsyncs issued, and writes per fsync.

Usage::

    python scripts/group_commit.py --threads 1 2 4 8 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Optional


import byrondbm
from byrondbm.engine import wal


def measure(threads: int, seconds: float, directory: Optional[str] = None) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="byrondbm-group-", dir=directory)
    fsyncs = [0]
    real_sync = wal.sync_fd

    def counting_sync(fd: int) -> None:
        fsyncs[0] += 1
        real_sync(fd)

    wal.sync_fd = counting_sync
    try:
        db = byrondbm.open(os.path.join(tmp, "db"), "cs")
        counts = [0] * threads
        stop = time.monotonic() + seconds
        value = b"v" * 100

        def writer(t: int) -> None:
            n = 0
            while time.monotonic() < stop:
                db[b"t%d-%08d" % (t, n)] = value
                n += 1
            counts[t] = n

        workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
        started = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
        db.close()
    finally:
        wal.sync_fd = real_sync
        shutil.rmtree(tmp)
    total = sum(counts)
    return {"threads": threads, "acknowledged_writes": total, "writes_per_second": round(total / elapsed),
            "fsyncs": fsyncs[0], "writes_per_fsync": round(total / max(fsyncs[0], 1), 2)}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--dir", help="where to put the database (the file system under test)")
    args = p.parse_args(argv)
    results = [measure(n, args.seconds, args.dir) for n in args.threads]
    base = results[0]["writes_per_second"]
    for r in results:
        r["speedup_vs_first"] = round(r["writes_per_second"] / base, 2) if base else None
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
