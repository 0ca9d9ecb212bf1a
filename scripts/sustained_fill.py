#!/usr/bin/env python3
"""Sustained fill: N random 16-byte keys with 100-byte values, single puts, timed from the first put to the
last, for byrondbm and (when installed) LevelDB through plyvel, each in its own process, one after the
other. Reports puts/s overall and per tenth of the fill (where compaction cost shows), byrondbm's write
amplification, and the peak RSS of the writing process and of byrondbm's worker processes.

    python scripts/sustained_fill.py --n 2000000
    python scripts/sustained_fill.py --n 200000 --engines byrondbm   # a short run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(engine: str, n: int, path: str) -> dict:
    """Runs in the measuring process: fill, then the figures as a dict."""
    rnd = random.Random(2024)
    values = [rnd.randbytes(100) for _ in range(1024)]
    keys = (b"%016d" % rnd.randrange(10**16) for _ in range(n))
    if engine == "byrondbm":
        sys.path.insert(0, ROOT)
        import byrondbm

        db = byrondbm.open(path, "c")
        put = db.__setitem__
    else:
        import plyvel  # type: ignore[import-untyped]

        db = plyvel.DB(path, create_if_missing=True)
        put = db.put
    tenth = max(1, n // 10)
    rates = []
    start = last = time.perf_counter()
    for i, key in enumerate(keys, 1):
        put(key, values[i & 1023])
        if i % tenth == 0:
            now = time.perf_counter()
            rates.append(round(tenth / (now - last)))
            last = now
    seconds = time.perf_counter() - start
    result = {"engine": engine, "n": n, "seconds": round(seconds, 2), "puts_per_s": round(n / seconds),
              "per_tenth_puts_per_s": rates}
    if engine == "byrondbm":
        stats = db.stats()
        result["write_amplification"] = stats["write_amplification"]
        from byrondbm.bench.workloads import worker_peak_rss_mib

        result["worker_peak_rss_mib"] = worker_peak_rss_mib(stats["workers"])
        result["levels_files"] = [level["files"] for level in stats["levels"]]
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    db.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--engines", default="byrondbm,plyvel")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.n, args.child[1])))
        return 0
    results = []
    for engine in args.engines.split(","):
        work = tempfile.mkdtemp(prefix="byrondbm-sustained-")
        try:
            out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--child", engine,
                                  os.path.join(work, "db")], capture_output=True, text=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if out.returncode != 0:
            print(f"{engine}: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout))
        print(out.stdout.strip(), flush=True)
    by = {r["engine"]: r for r in results}
    if "byrondbm" in by and "plyvel" in by:
        print(f"byrondbm / plyvel, puts/s: {by['byrondbm']['puts_per_s'] / by['plyvel']['puts_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
