"""A million keys with 100-byte values, default options, written by one process and read back by another."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

WRITER = r"""
import sys, time, byrondbm
n = int(sys.argv[2])
t = time.perf_counter()
with byrondbm.open(sys.argv[1], "c") as db:
    for i in range(n):
        db[b"%016d" % ((i * 7919) % n)] = (b"%08d" % i) * 12 + b"valu"
    stats = db.stats()
print(n / (time.perf_counter() - t), stats["flushes"], stats["compactions"])
"""

READER = r"""
import sys, time, byrondbm
n = int(sys.argv[2])
t = time.perf_counter()
bad = 0
with byrondbm.open(sys.argv[1], "r") as db:
    assert len(db) == n, len(db)
    for i in range(n):
        if db[b"%016d" % ((i * 7919) % n)] != (b"%08d" % i) * 12 + b"valu":
            bad += 1
    rate = n / (time.perf_counter() - t)
    count = 0
    prev = None
    for k, v in db.scan():
        assert prev is None or k > prev
        prev = k
        count += 1
print(rate, bad, count)
"""


@pytest.mark.slow
def test_million_keys_survive_another_process(tmp_path):
    n = int(os.environ.get("BYRONDBM_MILLION", "1000000"))
    env = {**os.environ, "PYTHONPATH": ROOT}
    path = str(tmp_path / "db")
    w = subprocess.run([sys.executable, "-c", WRITER, path, str(n)], capture_output=True, text=True, env=env,
                       timeout=900)
    assert w.returncode == 0, w.stderr
    r = subprocess.run([sys.executable, "-c", READER, path, str(n)], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    write_rate, flushes, compactions = w.stdout.split()
    read_rate, bad, count = r.stdout.split()
    assert int(bad) == 0 and int(count) == n
    print(f"\n{n} keys: write {float(write_rate):,.0f} puts/s ({flushes} flushes, {compactions} compactions), "
          f"read {float(read_rate):,.0f} gets/s")
