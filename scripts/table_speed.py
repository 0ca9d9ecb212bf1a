"""Micro-benchmark of one sorted table: write, decode, point lookups, seeks, iteration, and size.

    python scripts/table_speed.py [--src DIR] [--n 20000] [--repeat 5] [--keys hex|user]
                                  [--values random,json,pickle,text] [--compression zlib,none]

``--src`` imports byrondbm from another checkout (e.g. a `git worktree` of an older commit), so two table
formats can be measured side by side in one session (a checkout without the ``compression`` option runs
its one way, shown as ``-``). Each round writes and reads one table per value kind and codec, the codecs
alternating, and the report gives the median over ``--repeat`` rounds of each operation in CPU time
(`time.process_time`), which a busy machine disturbs less than the wall clock. ``table/raw`` is the file's
size over the bytes of the keys and values it holds.

Keys: ``hex`` is 16 random hex digits, ``user`` is ``user:%08d``. Values (~100 bytes): ``random`` bytes
(incompressible), ``json`` records, ``pickle`` of small dicts (what `shelve` stores), English-like ``text``;
``small`` is 8 random bytes (counters, ids: the keys are most of the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice

WORDS = "the of and to in is was for on that with as by at from his her it an be this are which or had not".split()


def make_values(kind: str, n: int, rnd: random.Random) -> list[bytes]:
    if kind == "random":
        return [rnd.randbytes(100) for _ in range(n)]
    if kind == "json":
        return [
            json.dumps({"id": i, "name": f"user {i}", "email": f"user{i}@example.com", "age": rnd.randint(18, 90),
                        "active": rnd.random() < 0.5}).encode()
            for i in range(n)
        ]
    if kind == "pickle":
        return [pickle.dumps({"id": i, "name": f"user {i}", "score": rnd.randint(0, 10**6), "tags": ["a", "b"]}) for i in range(n)]
    if kind == "small":
        return [rnd.randbytes(8) for _ in range(n)]
    if kind == "text":
        return [" ".join(rnd.choices(WORDS, k=25)).encode()[:100] for _ in range(n)]
    raise SystemExit(f"unknown value kind {kind!r}")


def make_keys(kind: str, n: int, rnd: random.Random) -> list[bytes]:
    if kind == "hex":
        return sorted({rnd.randbytes(8).hex().encode()[:16] for _ in range(n)})
    if kind == "user":
        return [b"user:%08d" % i for i in range(n)]
    raise SystemExit(f"unknown key kind {kind!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keys", default="hex")
    ap.add_argument("--values", default="random")  # comma-separated kinds
    ap.add_argument("--compression", default="zlib,none")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.src))
    from byrondbm.engine.sstable.block import decode_block
    from byrondbm.engine.sstable.bloom import key_hashes
    from byrondbm.engine.sstable.cache import BlockCache
    from byrondbm.engine.sstable.format import FORMAT_VERSION, TRAILER_SIZE
    from byrondbm.engine.sstable.reader import TableReader
    from byrondbm.engine.sstable.writer import TableWriter
    from byrondbm.options import Options

    has_codecs = "compression" in {f.name for f in dataclasses.fields(Options)}
    codecs = args.compression.split(",") if has_codecs else ["-"]
    rnd = random.Random(5)
    keys = make_keys(args.keys, args.n, rnd)
    datasets = {}
    for kind in args.values.split(","):
        entries = [(k, -(i + 1), v) for i, (k, v) in enumerate(zip(keys, make_values(kind, len(keys), rnd)))]
        datasets[kind] = (entries, sum(len(k) + len(v) for k, _, v in entries))
    probes = rnd.sample(keys, min(len(keys), 5000))
    hashes = [key_hashes(k) for k in probes]
    tmp = tempfile.mkdtemp()
    results: dict[tuple[str, str], dict[str, list[float]]] = {}

    def run(kind: str, codec: str, r: int) -> None:
        entries, raw_bytes = datasets[kind]
        result = results.setdefault((kind, codec), {})
        path = os.path.join(tmp, f"{r}.sst")
        options = Options() if codec == "-" else Options(compression=codec)

        def timed(name: str, ops: int, fn: Callable[[], object]) -> None:
            start = time.process_time()
            fn()
            result.setdefault(name, []).append((time.process_time() - start) / ops * 1e6)

        def write() -> None:
            w = TableWriter(path, options)
            w.add_many(entries)
            w.finish()

        timed("write: add_many + finish, µs an entry", len(entries), write)
        cold = TableReader(path, 1, BlockCache(0))
        if hasattr(cold, "_read_data"):  # a block in memory: its contents, uncompressed, + TRAILER_SIZE bytes
            blocks = [cold._read_data(b) for b in range(len(cold._sizes))]
            sizes = [len(raw) - TRAILER_SIZE for raw in blocks]
        else:
            blocks = [cold._read(o, s, 1) for o, s in zip(cold._offsets, cold._sizes)]
            sizes = list(cold._sizes)

        def decode_all() -> None:
            for raw, size in zip(blocks, sizes):
                decode_block(raw, size, path)  # dropped at once, as a one-pass scan does

        timed("decode a data block, µs an entry", len(entries), decode_all)
        timed("get, block not cached, µs", len(probes), lambda: [cold.get(k, h, -(1 << 62)) for k, h in zip(probes, hashes)])
        warm = TableReader(path, 2, BlockCache(256 << 20))
        for k, h in zip(probes, hashes):
            warm.get(k, h, -(1 << 62))
        timed("get, block cached, µs", len(probes), lambda: [warm.get(k, h, -(1 << 62)) for k, h in zip(probes, hashes)])
        seeks = probes[:1000]
        timed("seek + 100 entries, no cache, µs", len(seeks), lambda: [list(islice(cold.iter(k), 100)) for k in seeks])
        timed("iterate all, no cache, µs an entry", len(entries), lambda: sum(1 for _ in cold.iter()))
        size = os.path.getsize(path)
        result.setdefault("file bytes an entry", []).append(size / len(entries))
        result.setdefault("table/raw (file over keys + values)", []).append(size / raw_bytes)
        cold.close()
        warm.close()
        os.unlink(path)

    for r in range(args.repeat):
        for kind in datasets:
            for codec in codecs if r % 2 == 0 else codecs[::-1]:  # alternate, so drift hurts neither
                run(kind, codec, r)
    print(f"table format {FORMAT_VERSION}, {len(keys)} entries, keys {args.keys}, median of {args.repeat} rounds")
    columns = list(results)
    print(f"  {'':40}" + "".join(f"{kind + '/' + codec:>15}" for kind, codec in columns))
    for name in results[columns[0]]:
        print(f"  {name:40}" + "".join(f"{statistics.median(results[c][name]):15.3f}" for c in columns))


if __name__ == "__main__":
    main()
