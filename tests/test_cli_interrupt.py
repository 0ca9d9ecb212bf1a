"""Ctrl-C on the long subcommands: a real `python -m byrondbm` process sent SIGINT part way prints one line
saying what was done, exits 130, and leaves the database consistent (and a load's count exact)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import byrondbm

ROOT = Path(__file__).resolve().parents[1]
RECORDS = 60_000
_POLL_LIMIT = 6000  # polls of 10 ms: a bound so that a broken command fails the test instead of hanging it


def _start(*args: object, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # Its own process group, so that SIGINT reaches it and any worker processes it starts, as Ctrl-C does;
    # SIGINT at its default even when the test runner inherited it ignored (a shell's background job does).
    return subprocess.Popen([sys.executable, "-m", "byrondbm", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> tuple[int, str]:
    """Send SIGINT to the process group once ``ready()`` (the command is part way), as Ctrl-C in a terminal
    does, then wait: (exit status, stderr)."""
    for _ in range(_POLL_LIMIT):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if ready():
            break
        time.sleep(0.01)
    else:
        proc.kill()
        pytest.fail("the command never reached the point to interrupt")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode()


def _one_line(err: str) -> str:
    assert err.startswith("byrondbm: interrupted: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database of RECORDS records spread over several tables, and its dump."""
    path = tmp_path_factory.mktemp("interrupt") / "source.db"
    with byrondbm.open(str(path), "c", memtable_size=1 << 20) as db:
        for start in range(0, RECORDS, 5000):
            with db.batch() as batch:
                for i in range(start, start + 5000):
                    batch[b"key%08d" % i] = b"value %d " % i * 8
    return path


def _dump_file(source: Path, where: Path) -> Path:
    dump = where / "all.jsonl"
    if not dump.exists():
        with byrondbm.open(str(source), "r") as db:
            lines = [json.dumps({"byrondbm": 1, "encoding": "hex", "records": len(db)})]
            lines += [json.dumps({"key": k.hex(), "value": v.hex()}) for k, v in db.items()]
        dump.write_text("\n".join(lines) + "\n")
    return dump


def _temp_file_in(path: Path) -> Callable[[], bool]:
    """True while a table is being written (compaction, repair): its temp file exists."""
    return lambda: any(name.endswith(".tmp") for name in os.listdir(path))


def test_load_says_how_many_records_it_loaded_and_that_rerunning_is_safe(source: Path, tmp_path: Path) -> None:
    dump = _dump_file(source, tmp_path)
    target = tmp_path / "target.db"
    proc = _start("load", target, "-i", dump, "--batch-size", "100", cwd=tmp_path)
    status, err = _interrupt_when(proc, lambda: (target / "CURRENT").exists())
    assert status == 130
    match = re.search(r"load stopped: ([\d,]+) of ([\d,]+) records were loaded; rerunning the load is safe",
                      _one_line(err))
    assert match, err
    loaded = int(match[1].replace(",", ""))
    assert int(match[2].replace(",", "")) == RECORDS and 0 < loaded < RECORDS
    with byrondbm.open(str(target), "r") as db:
        assert len(db) == loaded  # whole batches only: the count is exact

    rerun = subprocess.run([sys.executable, "-m", "byrondbm", "load", str(target), "-i", str(dump)], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with byrondbm.open(str(target), "r") as db, byrondbm.open(str(source), "r") as src:
        assert len(db) == RECORDS and db[b"key00000007"] == src[b"key00000007"]


def test_dump_to_a_file_removes_the_partial_file(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial.jsonl"
    proc = _start("dump", source, "-o", out, cwd=tmp_path)
    status, err = _interrupt_when(proc, lambda: out.exists() and out.stat().st_size > 4096)
    assert status == 130
    assert re.search(rf"dump stopped after [\d,]+ of {RECORDS:,} records; the partial file {re.escape(str(out))} "
                     r"was removed", _one_line(err)), err
    assert not out.exists()


def test_compact_stops_leaving_the_same_records(source: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    shutil.copytree(source, db)
    proc = _start("compact", db, cwd=tmp_path)
    status, err = _interrupt_when(proc, _temp_file_in(db))
    assert status == 130
    assert "compaction stopped" in _one_line(err) and "run compact again" in err
    assert byrondbm.check(str(db))["ok"]
    with byrondbm.open(str(db), "r") as handle:
        assert len(handle) == RECORDS and sum(1 for _ in handle.scan(keys_only=True)) == RECORDS


def test_repair_stops_leaving_the_database_as_it_was_or_repaired(source: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    shutil.copytree(source, db)
    table = max(db.glob("*.sst"), key=lambda p: p.stat().st_size)
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    proc = _start("repair", db, cwd=tmp_path)
    status, err = _interrupt_when(proc, _temp_file_in(db))
    assert status == 130
    assert "repair stopped" in _one_line(err) and "run repair again" in err
    rerun = subprocess.run([sys.executable, "-m", "byrondbm", "repair", "--json", str(db)], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=600)
    assert rerun.returncode in (0, 3), rerun.stderr  # lost records are reported again if it was as it was
    assert byrondbm.check(str(db))["ok"]
