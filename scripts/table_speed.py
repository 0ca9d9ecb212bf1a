"""Micro-benchmark of one sorted table: write, decode, point lookups, seeks, iteration.

    python scripts/table_speed.py [--src DIR] [--n 20000] [--repeat 5]

``--src`` imports byrondbm from another checkout (e.g. a `git worktree` of an older commit), so two table
formats can be measured side by side in one session. Reports the median of ``--repeat`` runs of each
operation in CPU time (`time.process_time`), which a busy machine disturbs less than the wall clock.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.src))
    from byrondbm.engine.sstable.block import decode_block
    from byrondbm.engine.sstable.bloom import key_hashes
    from byrondbm.engine.sstable.cache import BlockCache
    from byrondbm.engine.sstable.format import FORMAT_VERSION
    from byrondbm.engine.sstable.reader import TableReader
    from byrondbm.engine.sstable.writer import TableWriter
    from byrondbm.options import Options

    rnd = random.Random(5)
    keys = sorted({rnd.randbytes(8).hex().encode()[:16] for _ in range(args.n)})
    entries = [(k, -(i + 1), rnd.randbytes(100)) for i, k in enumerate(keys)]
    probes = rnd.sample(keys, min(len(keys), 5000))
    hashes = [key_hashes(k) for k in probes]
    tmp = tempfile.mkdtemp()
    results: dict[str, list[float]] = {}

    def timed(name: str, ops: int, fn: Callable[[], object]) -> None:
        start = time.process_time()
        fn()
        results.setdefault(name, []).append((time.process_time() - start) / ops * 1e6)

    for r in range(args.repeat):
        path = os.path.join(tmp, f"{r}.sst")

        def write() -> None:
            w = TableWriter(path, Options())
            w.add_many(entries)
            w.finish()

        timed("write: add_many + finish, µs an entry", len(entries), write)
        cold = TableReader(path, 1, BlockCache(0))
        raws = [cold._read(o, s, 1) for o, s in zip(cold._offsets, cold._sizes)]
        sizes = list(cold._sizes)
        def decode_all() -> None:
            for raw, size in zip(raws, sizes):
                decode_block(raw, size, path)  # dropped at once, as a one-pass scan does

        timed("decode a data block, µs an entry", len(entries), decode_all)
        timed("get, block not cached, µs", len(probes), lambda: [cold.get(k, h, -(1 << 62)) for k, h in zip(probes, hashes)])
        warm = TableReader(path, 2, BlockCache(256 << 20))
        for k, h in zip(probes, hashes):
            warm.get(k, h, -(1 << 62))
        timed("get, block cached as bytes, µs", len(probes), lambda: [warm.get(k, h, -(1 << 62)) for k, h in zip(probes, hashes)])
        seeks = probes[:1000]
        timed("seek + 100 entries, no cache, µs", len(seeks), lambda: [list(islice(cold.iter(k), 100)) for k in seeks])
        timed("iterate all, no cache, µs an entry", len(entries), lambda: sum(1 for _ in cold.iter()))
        results.setdefault("file bytes an entry", []).append(os.path.getsize(path) / len(entries))
        cold.close()
        warm.close()
        os.unlink(path)
    print(f"table format {FORMAT_VERSION}, {len(entries)} entries (16-byte keys, 100-byte values), median of {args.repeat}")
    for name, values in results.items():
        print(f"  {name:40} {statistics.median(values):8.2f}")


if __name__ == "__main__":
    main()
