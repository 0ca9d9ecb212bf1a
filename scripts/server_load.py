#!/usr/bin/env python
"""Throughput and latency of `byrondbm serve` through `connect()`, beside redis-server through redis-py.

    python scripts/server_load.py [--seconds 2] [--repeats 3] [--threads 4] [--keys 5000] [--value-size 100]

Loads `--keys` keys into a fresh database in a temporary directory, serves it with `python -m byrondbm.server`
(a subprocess on 127.0.0.1), and runs each workload from one client process whose `--threads` threads share
one client, for `--seconds`, `--repeats` times. When `redis-server` and the `redis` package are both present
(neither is a dependency) it also starts its own redis-server on a free loopback port, with no persistence,
loads the same keys, runs the same workloads with redis-py from the same number of threads, and stops it.
A third system, `byrondbm-unary`, runs `get` as one unary gRPC call each (the transport before sessions).

Workloads, each counted in keys: `get` (one random key; redis GET), `put` (one random key; SET),
`get_many` (100 random keys in one call; MGET), `batch` (100 random puts in one atomic batch; a pipeline of
100 SETs, not a transaction). Prints a Markdown table of the medians over the repeats: keys per second,
p50 and p99 latency of one call, and byrondbm's throughput as a ratio of redis's measured in the same repeat.
Nothing is timed inside a test; this reports numbers only. Loopback only; every loop is bounded by time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import byrondbm

WORKLOADS = ("get", "put", "get_many", "batch")
MANY = 100
"""Keys per get_many / MGET and puts per batch / pipeline."""


def _key(n: int) -> bytes:
    return b"key%08d" % n


def _byrondbm_op(client: Any, workload: str, rng: random.Random, keys: int, value: bytes) -> Callable[[], int]:
    """One call of `workload` on a byrondbm client; returns the keys it counts for."""
    if workload == "get":
        return lambda: len(client[_key(rng.randrange(keys))]) and 1
    if workload == "put":

        def put() -> int:
            client[_key(rng.randrange(keys))] = value
            return 1

        return put
    if workload == "get_many":
        return lambda: len(client.get_many([_key(rng.randrange(keys)) for _ in range(MANY)]))

    def batch() -> int:
        with client.batch() as b:
            for _ in range(MANY):
                b[_key(rng.randrange(keys))] = value
        return MANY

    return batch


def _unary_op(stub: Any, workload: str, rng: random.Random, keys: int, value: bytes) -> Callable[[], int]:
    from byrondbm.server import byrondbm_pb2 as pb

    assert workload == "get"
    return lambda: len(stub.Get(pb.KeyRequest(key=_key(rng.randrange(keys)))).value) and 1


def _redis_op(client: Any, workload: str, rng: random.Random, keys: int, value: bytes) -> Callable[[], int]:
    if workload == "get":
        return lambda: len(client.get(_key(rng.randrange(keys)))) and 1
    if workload == "put":
        return lambda: client.set(_key(rng.randrange(keys)), value) and 1
    if workload == "get_many":
        return lambda: len(client.mget([_key(rng.randrange(keys)) for _ in range(MANY)]))

    def pipeline() -> int:
        pipe = client.pipeline(transaction=False)
        for _ in range(MANY):
            pipe.set(_key(rng.randrange(keys)), value)
        pipe.execute()
        return MANY

    return pipeline


def _open(system: str, target: str) -> tuple[Any, Callable[..., Callable[[], int]], Callable[[], None]]:
    """A client of `system` shared by the threads, the maker of its operations, and how to close it."""
    if system == "redis":
        import redis

        host, port = target.rsplit(":", 1)
        redis_client = redis.Redis(host=host, port=int(port))
        return redis_client, _redis_op, redis_client.close
    if system == "byrondbm-unary":
        import grpc

        from byrondbm.server import byrondbm_pb2_grpc as pb_grpc

        channel = grpc.insecure_channel(target)
        return pb_grpc.ByronDBMStub(channel), _unary_op, channel.close
    from byrondbm.server.client import connect

    client = connect(target)
    return client, _byrondbm_op, client.close


def _client_process(
    system: str, target: str, workload: str, threads: int, seconds: float, keys: int, value: bytes, results: Any
) -> None:
    """Runs `workload` from `threads` threads sharing one client; puts (keys done, elapsed, latencies)."""
    client, make_op, close = _open(system, target)
    barrier = threading.Barrier(threads)
    done = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    elapsed = [0.0] * threads

    def run(index: int) -> None:
        op = make_op(client, workload, random.Random(index), keys, value)
        op()  # warm up: the first call opens the stream
        lat = latencies[index]
        barrier.wait()
        start = time.perf_counter()
        deadline = start + seconds
        now = start
        while now < deadline:
            done[index] += op()
            then, now = now, time.perf_counter()
            lat.append(now - then)
        elapsed[index] = now - start

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    close()
    results.put((sum(done), max(elapsed), sorted(x for lat in latencies for x in lat)))


def _measure(system: str, target: str, workload: str, args: argparse.Namespace, value: bytes) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")  # no fork after grpc has threads
    results = ctx.Queue()
    proc = ctx.Process(
        target=_client_process,
        args=(system, target, workload, args.threads, args.seconds, args.keys, value, results),
    )
    proc.start()
    try:
        done, elapsed, lat = results.get(timeout=args.seconds + 120)
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    return {
        "rate": done / elapsed,
        "p50": lat[len(lat) // 2] * 1e3,
        "p99": lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1e3,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Subprocess:
    """A server process, stopped with SIGTERM (then killed) on `stop()`."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start_byrondbm(path: Path) -> tuple[_Subprocess, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    server = _Subprocess([sys.executable, "-m", "byrondbm.server", str(path), "--port", "0"], env)
    assert server.proc.stdout is not None
    line = server.proc.stdout.readline()  # "serving PATH on 127.0.0.1:PORT"
    if not line:
        server.stop()
        raise SystemExit(f"byrondbm server did not start (exit status {server.proc.returncode})")
    return server, line.split()[-1]


def _start_redis(directory: Path, keys: int, value: bytes) -> tuple[_Subprocess, str] | None:
    """A loaded redis-server on a free loopback port, or None when redis-server or redis-py is missing."""
    binary = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        return None
    if binary is None:
        return None
    port = _free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning"]  # fmt: skip
    server = _Subprocess(argv)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):  # up to ~10 s to come up
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    else:
        server.stop()
        raise SystemExit("redis-server did not start")
    for start in range(0, keys, 1000):
        client.mset({_key(n): value for n in range(start, min(start + 1000, keys))})
    client.close()
    return server, f"127.0.0.1:{port}"


def _report(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each measurement (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each cell; medians shown (default 3)")
    parser.add_argument("--threads", type=int, default=4, help="client threads sharing one client (default 4)")
    parser.add_argument("--keys", type=int, default=5000, help="keys loaded first (default 5000)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    parser.add_argument("--no-redis", action="store_true", help="skip the redis comparison")
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    value = os.urandom(args.value_size)
    # samples[(system, workload)] -> one dict per repeat
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}

    with tempfile.TemporaryDirectory(prefix="byrondbm-load-") as tmp:
        path = Path(tmp) / "db"
        with byrondbm.open(path, "c") as db:
            for start in range(0, args.keys, 1000):
                with db.batch() as b:
                    for n in range(start, min(start + 1000, args.keys)):
                        b[_key(n)] = value
        servers: dict[str, tuple[_Subprocess, str]] = {}
        try:
            servers["byrondbm"] = _start_byrondbm(path)
            servers["byrondbm-unary"] = servers["byrondbm"]
            redis_server = None if args.no_redis else _start_redis(Path(tmp), args.keys, value)
            if redis_server is not None:
                servers["redis"] = redis_server
            else:
                _report("redis comparison skipped (redis-server or the redis package missing, or --no-redis)")
            for repeat in range(args.repeats):
                for workload in workloads:
                    for system, (_, target) in servers.items():
                        if system == "byrondbm-unary" and workload != "get":
                            continue
                        sample = _measure(system, target, workload, args, value)
                        samples.setdefault((system, workload), []).append(sample)
                        _report(
                            f"repeat {repeat + 1} {system} {workload}: {sample['rate']:,.0f} keys/s, "
                            f"p50 {sample['p50']:.3f} ms, p99 {sample['p99']:.3f} ms"
                        )
        finally:
            for server, _ in {id(s): s for s in servers.values()}.values():
                server.stop()

    print(
        f"{args.keys} keys, {args.value_size}-byte values, one client process of {args.threads} threads sharing "
        f"one client, {args.seconds:g} s per cell, median of {args.repeats}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}\n"
    )
    print("| workload | system | keys/s | p50 ms | p99 ms | byrondbm / redis |")
    print("|---|---|---|---|---|---|")
    for workload in workloads:
        for system in servers:
            cell = samples.get((system, workload))
            if not cell:
                continue
            rate, p50, p99 = (statistics.median(s[name] for s in cell) for name in ("rate", "p50", "p99"))
            ratio = ""
            if system != "redis" and ("redis", workload) in samples:
                ratios = [s["rate"] / r["rate"] for s, r in zip(cell, samples[("redis", workload)])]
                ratio = f"{statistics.median(ratios):.2f}"
            print(f"| {workload} | {system} | {rate:,.0f} | {p50:.3f} | {p99:.3f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
