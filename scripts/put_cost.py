#!/usr/bin/env python3
"""What one put costs the writing thread, layer by layer: `db[k] = v`, `Engine.put`, the log append alone
and the memtable store alone, with a memtable too large to fill (so no flush runs). Thread CPU time
(`time.thread_time()`), the minimum over repeats of N random 16-byte keys with 100-byte values.

    python scripts/put_cost.py
    PYTHONPATH=/path/to/other/checkout python scripts/put_cost.py --layers db   # compare two trees
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable

if "byrondbm" not in sys.modules and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import byrondbm  # noqa: E402


def layer_call(db: byrondbm.Database, layer: str) -> Callable[[bytes, bytes], object]:
    """The callable that performs one put at ``layer`` (white-box: it reaches under the mapping)."""
    engine = db._engine
    if layer == "db":
        return db.__setitem__
    if layer == "engine":
        return engine.put
    if layer == "log":
        log = engine._wal
        return lambda key, value: log.add_put(1, key, value)
    if layer == "memtable":
        mem = engine._mem
        return lambda key, value: mem.put((key, -1, value), False)
    raise ValueError(f"unknown layer {layer!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--layers", default="db,engine,log,memtable")
    args = parser.parse_args()
    rnd = random.Random(1)
    keys = [b"%016d" % rnd.randrange(10**16) for _ in range(args.n)]
    value = rnd.randbytes(100)
    print(f"byrondbm from {os.path.dirname(byrondbm.__file__)}")
    for layer in args.layers.split(","):
        best = float("inf")
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as work:
                with byrondbm.open(os.path.join(work, "db"), "c", memtable_size=1 << 30) as db:
                    put = layer_call(db, layer)
                    start = time.thread_time()
                    for key in keys:
                        put(key, value)
                    best = min(best, (time.thread_time() - start) / args.n * 1e6)
        print(f"{layer:>9}: {best:.2f} µs a put (thread CPU, min of {args.repeat} × {args.n:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
