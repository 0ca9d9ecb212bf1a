#!/usr/bin/env python
"""Throughput of `byrondbm serve` for 1, 4 and 16 client processes, against the embedded database.

    python scripts/server_load.py [--seconds 3] [--clients 1,4,16] [--keys 20000] [--value-size 100]

Loads `--keys` keys into a fresh database in a temporary directory, runs each workload for `--seconds`
embedded (one thread, in this process), then serves the directory with `python -m byrondbm.server`
(a subprocess on 127.0.0.1) and runs the same workloads from N client processes at once, each with its
own connection. Prints a Markdown table of operations per second (entries per second for `scan`).

Workloads: `get` (random existing keys), `put` (random keys, overwrite), `batch` (100 random puts
per atomic batch, counted as 100 operations), `scan` (full scans of the key space, counted per entry).
Nothing is timed inside a test; this reports numbers only. It ends by itself (SIGTERM to the server).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import byrondbm

WORKLOADS = ("get", "put", "batch", "scan")
BATCH = 100


def _key(n: int) -> bytes:
    return b"key%08d" % n


def _step(db: Any, workload: str, rng: random.Random, keys: int, value: bytes) -> int:
    """One unit of `workload` on `db` (a Database or a Client); returns the operations it counts for."""
    if workload == "get":
        db[_key(rng.randrange(keys))]  # the read is the work
        return 1
    if workload == "put":
        db[_key(rng.randrange(keys))] = value
        return 1
    if workload == "batch":
        with db.batch() as b:
            for _ in range(BATCH):
                b[_key(rng.randrange(keys))] = value
        return BATCH
    return sum(1 for _ in db.scan())


def _run_for(db: Any, workload: str, seconds: float, keys: int, value: bytes, seed: int) -> tuple[int, float]:
    rng = random.Random(seed)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        done += _step(db, workload, rng, keys, value)
    return done, time.perf_counter() - start


def _client_process(
    target: str, workload: str, seconds: float, keys: int, value: bytes, seed: int, barrier: Any, results: Any
) -> None:
    from byrondbm.server.client import connect

    with connect(target) as client:
        barrier.wait()
        results.put(_run_for(client, workload, seconds, keys, value, seed))


def _measure_clients(target: str, workload: str, clients: int, args: argparse.Namespace, value: bytes) -> float:
    ctx = multiprocessing.get_context("spawn")  # no fork after grpc has threads
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client_process,
            args=(target, workload, args.seconds, args.keys, value, seed, barrier, results),
        )
        for seed in range(clients)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join(60)
    return sum(done for done, _ in outcomes) / max(elapsed for _, elapsed in outcomes)


class _ServerProcess:
    def __init__(self, path: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "byrondbm.server", str(path), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "serving PATH on 127.0.0.1:PORT"
        if not line:
            raise SystemExit(f"server did not start (exit status {self.proc.wait()})")
        self.target = line.split()[-1]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def _report(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    lines = ["| workload | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for workload, row in rows.items():
        lines.append(f"| {workload} | " + " | ".join(f"{row[c]:,.0f}" for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement (default 3)")
    parser.add_argument("--clients", default="1,4,16", help="client process counts (default 1,4,16)")
    parser.add_argument("--keys", type=int, default=20000, help="keys loaded first (default 20000)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    workloads = args.workloads.split(",")
    value = os.urandom(args.value_size)
    columns = ["embedded"] + [f"{n} client{'s' * (n > 1)}" for n in counts]
    rows: dict[str, dict[str, float]] = {w: {} for w in workloads}

    with tempfile.TemporaryDirectory(prefix="byrondbm-load-") as tmp:
        path = Path(tmp) / "db"
        with byrondbm.open(path, "c") as db:
            for start in range(0, args.keys, 1000):
                with db.batch() as b:
                    for n in range(start, min(start + 1000, args.keys)):
                        b[_key(n)] = value
            for workload in workloads:
                done, elapsed = _run_for(db, workload, args.seconds, args.keys, value, seed=0)
                rows[workload]["embedded"] = done / elapsed
                _report(f"embedded {workload}: {done / elapsed:,.0f}/s")
        server = _ServerProcess(path)
        try:
            for workload in workloads:
                for n, column in zip(counts, columns[1:]):
                    rows[workload][column] = _measure_clients(server.target, workload, n, args, value)
                    _report(f"{column} {workload}: {rows[workload][column]:,.0f}/s")
        finally:
            server.stop()

    print(
        f"{args.keys} keys, {args.value_size}-byte values, {args.seconds:g} s per cell, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; operations per second "
        f"(scan: entries per second; batch: puts per second in batches of {BATCH})\n"
    )
    print(_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
