#!/usr/bin/env python3
"""Where a get's time goes in a database larger than its block cache: fill KEYS random 16-byte keys with
random 100-byte values (atomic batches of 2,000, the fastest fill), reopen, time GETS random gets (CPU and wall
µs a get, the cache's hits and misses), then cProfile as many more and print the top functions.

    python scripts/profile_gets.py --keys 3000000            # ~3 minutes of fill on the 2-core machine
    python scripts/profile_gets.py --keys 3000000 --reuse    # the database of the last run, no fill
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import sys
import tempfile
import time

if "byrondbm" not in sys.modules and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout

import byrondbm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=3_000_000)
    parser.add_argument("--gets", type=int, default=50_000)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "byrondbm-profile-gets"))
    parser.add_argument("--reuse", action="store_true", help="read the database a previous run filled")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if not args.reuse:
        shutil.rmtree(args.dir, ignore_errors=True)
        order = list(range(args.keys))
        random.Random(1).shuffle(order)
        start = time.perf_counter()
        with byrondbm.open(args.dir, "c") as db:
            for s in range(0, args.keys, 2000):
                with db.batch() as b:
                    for i in order[s : s + 2000]:
                        b[b"%016d" % i] = os.urandom(100)  # incompressible, as the bench's
        print(f"filled {args.keys:,} keys in {time.perf_counter() - start:.0f} s")
    with byrondbm.open(args.dir, "w") as db:
        rnd = random.Random(2)  # (not the fill's: its first draws are the keys written last, in the memtable)
        keys = [b"%016d" % rnd.randrange(args.keys) for _ in range(2 * args.gets)]
        get = db.get
        cpu, wall = time.process_time(), time.perf_counter()
        for k in keys[: args.gets]:
            get(k)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stats = db.stats()
        print(f"{args.gets:,} gets: {cpu / args.gets * 1e6:.1f} µs CPU, {wall / args.gets * 1e6:.1f} µs wall a get; "
              f"block cache hits {stats['block_cache_hits']:,}, misses {stats['block_cache_misses']:,}")
        profile = cProfile.Profile()
        profile.enable()
        for k in keys[args.gets :]:
            get(k)
        profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
