#!/usr/bin/env python3
"""Sustained fill: N random 16-byte keys with 100-byte values, single puts, timed from the first put to the
last, for byrondbm (under one or more option sets) and (when installed) LevelDB through plyvel, each in its
own process, one after the other. Reports puts/s overall and per tenth of the fill (where compaction cost
shows), the CPU seconds of the writing process and of byrondbm's workers, byrondbm's write amplification and
files per level, the peak RSS of the writing process and of byrondbm's worker processes, and random gets
of written keys right after the fill (the state the fill left: more sorted runs cost more probes).

    python scripts/sustained_fill.py --n 2000000
    python scripts/sustained_fill.py --n 200000 --engines byrondbm   # a short run
    python scripts/sustained_fill.py --engines byrondbm,plyvel \\
        --config leveled='{"compaction_style": "leveled"}' --config tiered='{"compaction_style": "tiered"}'

Each ``--config NAME=JSON`` is one byrondbm run with those options (``--engines byrondbm`` alone runs the
defaults, named "byrondbm").
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
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc); 0.0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


def _stream(n: int) -> tuple[list[bytes], Iterator[bytes]]:
    """The fill's 1024 values and its ``n`` keys (generated lazily: a list would be the writer's RSS)."""
    rnd = random.Random(2024)
    values = [rnd.randbytes(100) for _ in range(1024)]
    return values, (b"%016d" % rnd.randrange(10**16) for _ in range(n))


def child(engine: str, n: int, path: str, options: dict, gets: int) -> dict:
    """Runs in the measuring process: fill, then random gets, then the figures as a dict."""
    values, keys = _stream(n)
    if engine == "byrondbm":
        sys.path.insert(0, ROOT)
        import byrondbm

        db = byrondbm.open(path, "c", **options)
        put, get = db.__setitem__, db.__getitem__
    else:
        import plyvel  # type: ignore[import-untyped]

        db = plyvel.DB(path, create_if_missing=True)
        put, get = db.put, db.get
    tenth = max(1, n // 10)
    rates = []
    cpu0 = time.process_time()
    start = last = time.perf_counter()
    for i, key in enumerate(keys, 1):
        put(key, values[i & 1023])
        if i % tenth == 0:
            now = time.perf_counter()
            rates.append(round(tenth / (now - last)))
            last = now
    seconds = time.perf_counter() - start
    result = {"engine": engine, "options": options, "n": n, "seconds": round(seconds, 2),
              "puts_per_s": round(n / seconds), "per_tenth_puts_per_s": rates,
              "writer_cpu_s": round(time.process_time() - cpu0, 1)}
    step = max(1, n // gets) if gets else 1
    probe = [key for i, key in enumerate(_stream(n)[1]) if i % step == 0][:gets]
    random.Random(7).shuffle(probe)
    cpu0 = time.process_time()
    start = time.perf_counter()
    for key in probe:
        get(key)
    if gets:
        result["gets_per_s_after_fill"] = round(gets / (time.perf_counter() - start))
        result["get_cpu_us"] = round((time.process_time() - cpu0) / gets * 1e6, 1)
    if engine == "byrondbm":
        stats = db.stats()
        result["write_amplification"] = stats["write_amplification"]
        from byrondbm.bench.workloads import worker_peak_rss_mib

        result["worker_peak_rss_mib"] = worker_peak_rss_mib(stats["workers"])
        result["worker_cpu_s"] = round(sum(map(_cpu_seconds, stats["workers"])), 1)
        result["levels_files"] = [level["files"] for level in stats["levels"]]
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    db.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--engines", default="byrondbm,plyvel")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=JSON",
                        help="a byrondbm run with these options (repeatable)")
    parser.add_argument("--gets", type=int, default=100_000, help="random gets of written keys after the fill")
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "PATH", "OPTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.n, args.child[1], json.loads(args.child[2]), args.gets)))
        return 0
    runs: list[tuple[str, str, dict]] = []
    for engine in args.engines.split(","):
        if engine == "byrondbm" and args.config:
            for config in args.config:
                name, _, text = config.partition("=")
                runs.append((name, engine, json.loads(text)))
        else:
            runs.append((engine, engine, {}))
    results = {}
    for name, engine, options in runs:
        work = tempfile.mkdtemp(prefix="byrondbm-sustained-")
        try:
            out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--gets", str(args.gets), "--child",
                                  engine, os.path.join(work, "db"), json.dumps(options)], capture_output=True, text=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if out.returncode != 0:
            print(f"{name}: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        results[name] = json.loads(out.stdout)
        print(name, out.stdout.strip(), flush=True)
    if "plyvel" in results:
        for name, r in results.items():
            if r["engine"] == "byrondbm":
                print(f"{name} / plyvel, puts/s: {r['puts_per_s'] / results['plyvel']['puts_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
