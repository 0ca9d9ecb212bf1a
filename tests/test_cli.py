"""The command line, run as a real subprocess (`python -m byrondbm ...`) on real databases in tmp_path.

The checkout root is put on PYTHONPATH and each command runs from another directory, so the tests do not
depend on the current directory or on an installed copy.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import byrondbm
from byrondbm.cli import main
from byrondbm.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
CORE_SUBCOMMANDS = [
    "get", "put", "delete", "scan", "dump", "load", "stats", "compact", "check", "repair", "whichdb", "backup",
]  # fmt: skip

BINARY_ITEMS = {
    b"": b"empty key",
    b"\x00": b"\x00\x00",
    b"\x00tail": b"",
    b"a\x00b": b"\xff\xfe\xfd invalid utf-8",
    b"\xff": b"\xc3\x28",
    b"line\nbreak\ttab": b'quote " backslash \\ newline \n',
    "ключ".encode(): "значение ✓".encode(),
    b"big": bytes(range(256)) * 40,
}


def run(
    *args: object, cwd: Path, stdin: bytes | None = None, stderr: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "byrondbm", *map(str, args)],
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[bytes], *words: str) -> str:
    """Exit 1 and exactly one line `byrondbm: error: ...` on stderr (no traceback, no `[Errno N]`); returns
    that line."""
    text = result.stderr.decode()
    assert result.returncode == 1, text
    assert text.startswith("byrondbm: error: ") and text.count("\n") == 1, text
    assert "[Errno" not in text, text  # the message, not the OSError's repr-style prefix
    for word in words:
        assert word in text.lower(), text
    return text


def make_db(path: Path, items: dict[bytes, bytes], *, batched: bool = True, **options: int) -> Path:
    """A database holding `items`, written in one batch, or one put at a time so that tables get flushed."""
    with byrondbm.open(str(path), "c", **options) as db:
        if batched:
            with db.batch() as batch:
                for key, value in items.items():
                    batch[key] = value
        else:
            for key, value in items.items():
                db[key] = value
    return path


def read_db(path: Path) -> dict[bytes, bytes]:
    with byrondbm.open(str(path), "r") as db:
        return dict(db.items())


# --------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", CORE_SUBCOMMANDS)
def test_every_subcommand_has_help(tmp_path: Path, name: str) -> None:
    result = run(name, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: byrondbm {name}".encode())
    assert b"PATH" in result.stdout


def test_top_level_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in [*CORE_SUBCOMMANDS, "bench", "serve"]:
        assert f"\n    {name} ".encode() in result.stdout, name


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


@pytest.mark.parametrize("name, module", [("bench", "byrondbm.bench"), ("serve", "byrondbm.server.command")])
def test_plugged_in_subcommand_has_help(tmp_path: Path, name: str, module: str) -> None:
    if not _importable(module):
        pytest.skip(f"{module} is not written yet")
    result = run(name, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: byrondbm {name}".encode())


def test_serve_without_grpc_says_which_extra_to_install(tmp_path: Path) -> None:
    block_grpc = "import sys; sys.modules['grpc'] = None; from byrondbm.cli import main; raise SystemExit(main())"
    result = subprocess.run(
        [sys.executable, "-c", block_grpc, "serve", str(tmp_path / "db"), "--port", "0"],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.count(b"\n") == 1 and b"pip install 'byrondbm[server]'" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate", "db"],
        ["get", "db"],
        ["put", "db", "k"],
        ["scan", "db", "--limit", "-1"],
        ["get", "db", "k", "--bogus"],
        ["get", "--hex", "--base64", "db", "00"],
        ["load", "db", "--batch-size", "0"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """In process (`main` returns the status); test_badly_encoded_argument... covers exit 2 of a real process."""
    assert main(args) == 2
    assert "usage: byrondbm" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["get", "--hex", "db", "0g"], ["put", "--base64", "db", "k", "!!!"]])
def test_badly_encoded_argument_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    make_db(tmp_path / "db", {b"k": b"v"})
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert b"is not valid" in result.stderr
    assert read_db(tmp_path / "db") == {b"k": b"v"}


def test_main_returns_the_exit_status_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["whichdb", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("byrondbm: error: no such file or directory")
    assert main(["get", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: byrondbm get")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"byrondbm {byrondbm.__version__}\n"
    assert main(["get"]) == 2


# ---------------------------------------------------------------------------------- point operations


def test_put_creates_the_database_then_get_and_delete(tmp_path: Path) -> None:
    db = tmp_path / "fresh"
    assert run("put", db, "greeting", "hello, wörld", cwd=tmp_path).returncode == 0
    result = run("get", db, "greeting", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "hello, wörld\n".encode())
    assert run("delete", db, "greeting", cwd=tmp_path).returncode == 0
    assert_one_line_error(run("get", db, "greeting", cwd=tmp_path), "key not found", "greeting")
    assert_one_line_error(run("delete", db, "greeting", cwd=tmp_path), "key not found")
    assert read_db(db) == {}


def test_hex_and_base64_arguments_are_exact_bytes(tmp_path: Path) -> None:
    db = tmp_path / "db"
    assert run("put", "--hex", db, "00ff", "0001fe", cwd=tmp_path).returncode == 0
    assert read_db(db) == {b"\x00\xff": b"\x00\x01\xfe"}
    result = run("get", "--base64", db, base64.b64encode(b"\x00\xff").decode(), cwd=tmp_path)
    assert result.stdout == base64.b64encode(b"\x00\x01\xfe") + b"\n"
    assert run("get", "--hex", db, "00ff", cwd=tmp_path).stdout == b"0001fe\n"


def test_text_output_escapes_invalid_utf8(tmp_path: Path) -> None:
    make_db(tmp_path / "db", {b"k": b"ok \xff\xfe end"})
    result = run("get", tmp_path / "db", "k", cwd=tmp_path)
    assert result.stdout == b"ok \\xff\\xfe end\n"


def test_scan_options(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    db = make_db(tmp_path / "db", {k.encode(): k.upper().encode() for k in ["a", "b", "ba", "bb", "c", "d"]})
    assert run("scan", db, cwd=tmp_path).stdout.decode().splitlines() == [
        "a\tA", "b\tB", "ba\tBA", "bb\tBB", "c\tC", "d\tD",
    ]  # fmt: skip

    def scan(*options: str) -> list[str]:
        """The options in process: `main` writes to the captured stdout as the process does."""
        assert main(["scan", str(db), *options]) == 0
        return capsysbinary.readouterr().out.decode().splitlines()

    assert scan("--start", "b", "--stop", "c", "--keys-only") == ["b", "ba", "bb"]
    assert scan("--prefix", "b", "--reverse") == ["bb\tBB", "ba\tBA", "b\tB"]
    assert scan("--limit", "2", "--keys-only") == ["a", "b"]
    assert scan("--hex", "--start", "63") == ["63\t43", "64\t44"]
    assert scan("--prefix", "zzz") == []


# -------------------------------------------------------------------------------------------- dump / load


@pytest.mark.parametrize("encoding", ["base64", "hex"])
def test_dump_load_round_trip_binary(tmp_path: Path, encoding: str) -> None:
    source = make_db(tmp_path / "source", BINARY_ITEMS)
    dump_file = tmp_path / "dump.jsonl"
    result = run("dump", source, "-o", dump_file, "--encoding", encoding, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    lines = dump_file.read_bytes().splitlines()
    assert json.loads(lines[0]) == {"byrondbm": 1, "encoding": encoding, "records": len(BINARY_ITEMS)}
    assert len(lines) == 1 + len(BINARY_ITEMS)
    result = run("load", tmp_path / "copy", "-i", dump_file, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert read_db(tmp_path / "copy") == BINARY_ITEMS


def test_dump_to_stdout_piped_into_load_from_stdin(tmp_path: Path) -> None:
    """stdout → stdin through a pipe (not seekable), with batches smaller than the data."""
    items = {**BINARY_ITEMS, **{f"k{i:05d}".encode(): os.urandom(20) for i in range(2500)}}
    source = make_db(tmp_path / "source", items)
    dumped = run("dump", source, cwd=tmp_path)
    assert dumped.returncode == 0
    loaded = run("load", tmp_path / "copy", "--batch-size", "700", cwd=tmp_path, stdin=dumped.stdout)
    assert (loaded.returncode, loaded.stderr) == (0, b"")
    assert read_db(tmp_path / "copy") == items
    # The dump is in key order, so a re-dump of the copy is the same file.
    assert run("dump", tmp_path / "copy", cwd=tmp_path).stdout == dumped.stdout


def test_load_adds_to_an_existing_database(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", {b"keep": b"1", b"over": b"old"})
    dump = b'{"byrondbm": 1, "encoding": "utf-8"}\n{"key": "over", "value": "new"}\n\n'
    dump += b'{"key": "add", "value": "\\u0000"}\n'  # a JSON escape for NUL
    assert run("load", db, cwd=tmp_path, stdin=dump).returncode == 0
    assert read_db(db) == {b"keep": b"1", b"over": b"new", b"add": b"\x00"}


def test_dump_utf8_is_readable_and_refuses_binary(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", {"ключ".encode(): b"v"})
    result = run("dump", db, "--encoding", "utf-8", cwd=tmp_path)
    assert result.stdout.decode().splitlines()[1] == '{"key": "ключ", "value": "v"}'
    binary = make_db(tmp_path / "binary", {b"a": b"ok", b"b": b"\xff"})
    assert_one_line_error(run("dump", binary, "--encoding", "utf-8", cwd=tmp_path), "record 2", "base64")


GOOD_LINE = b'{"key": "YQ==", "value": "Yg=="}'


@pytest.mark.parametrize(
    "lines, bad_line",
    [
        ([b"", GOOD_LINE], 1),
        ([b"not json", GOOD_LINE], 1),
        ([b'{"byrondbm": 2, "encoding": "base64"}', GOOD_LINE], 1),
        ([b'{"byrondbm": 1, "encoding": "rot13"}', GOOD_LINE], 1),
        ([b'{"byrondbm": 1, "encoding": "base64"}', GOOD_LINE, GOOD_LINE, b'{"key": "YQ==", "value": ', GOOD_LINE], 4),
        ([b'{"byrondbm": 1, "encoding": "base64"}', GOOD_LINE, b'{"key": "YQ=="}'], 3),
        ([b'{"byrondbm": 1, "encoding": "base64"}', GOOD_LINE, b'{"key": "YQ==", "value": 5}'], 3),
        ([b'{"byrondbm": 1, "encoding": "base64"}', b'{"key": "not base64!", "value": ""}'], 2),
        ([b'{"byrondbm": 1, "encoding": "hex"}', b'{"key": "0", "value": ""}'], 2),
        ([b'{"byrondbm": 1, "encoding": "utf-8"}', b'{"key": "\\ud800", "value": ""}'], 2),
        ([b'{"byrondbm": 1, "encoding": "base64"}', b'{"key": "\xff", "value": ""}'], 2),
        ([b'{"byrondbm": 1, "encoding": "base64", "records": 3}', GOOD_LINE, GOOD_LINE], 3),
    ],
)
def test_malformed_dump_loads_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[bytes], bad_line: int
) -> None:
    """In process for speed; test_malformed_dump_does_not_create_the_database runs a real process."""
    dump_file = tmp_path / "bad.jsonl"
    dump_file.write_bytes(b"\n".join(lines) + b"\n")
    existing = make_db(tmp_path / "existing", {b"x": b"y"})
    assert main(["load", str(existing), "-i", str(dump_file)]) == 1
    message = capsys.readouterr().err
    assert message.startswith(f"byrondbm: error: {dump_file} line {bad_line}: ") and message.count("\n") == 1
    assert message.endswith("; nothing was loaded\n")
    assert read_db(existing) == {b"x": b"y"}


def test_malformed_dump_does_not_create_the_database(tmp_path: Path) -> None:
    """Validation comes first, so a malformed file does not even create the database."""
    bad = b'{"byrondbm": 1, "encoding": "base64"}\n' + GOOD_LINE + b"\n{oops\n"
    result = run("load", tmp_path / "new", cwd=tmp_path, stdin=bad)
    assert "<stdin> line 3:" in assert_one_line_error(result, "nothing was loaded")
    assert not (tmp_path / "new").exists()


def test_load_missing_input_file(tmp_path: Path) -> None:
    assert_one_line_error(run("load", tmp_path / "db", "-i", tmp_path / "nope.jsonl", cwd=tmp_path), "nope.jsonl")


# ---------------------------------------------------------------------------------------- maintenance


def test_stats_table_and_json(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", {f"{i:05d}".encode(): b"v" * 50 for i in range(3000)}, memtable_size=4096)
    result = run("stats", db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert text.splitlines()[0].split() == ["level", "files", "bytes", "size", "keys"]
    assert "\nL0 " in text and "\ntotal " in text
    assert "write amplification" in text and "live keys" in text
    stats = json.loads(run("stats", db, "--json", cwd=tmp_path).stdout)
    assert stats["live_keys"] == 3000
    total_line = next(line for line in text.splitlines() if line.startswith("total"))
    assert total_line.split()[1] == str(sum(level["files"] for level in stats["levels"]))


def test_compact_keeps_the_data(tmp_path: Path) -> None:
    items = {f"{i:05d}".encode(): os.urandom(30) for i in range(2000)}
    db = make_db(tmp_path / "db", items, memtable_size=4096)
    with byrondbm.open(str(db), "w") as handle:
        for key in list(items)[::2]:
            del handle[key]
            del items[key]
    result = run("compact", db, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert read_db(db) == items


def _flip_middle_of_largest_table(db: Path) -> Path:
    table = max(db.glob("*.sst"), key=lambda p: p.stat().st_size)
    data = bytearray(table.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    table.write_bytes(bytes(data))
    return table


def test_check_and_repair_a_damaged_table(tmp_path: Path) -> None:
    items = {f"key{i:05d}".encode(): f"value {i} ".encode() * 8 for i in range(3000)}
    db = make_db(tmp_path / "db", items, batched=False, memtable_size=4096)
    healthy = run("check", db, cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith(f"{db}: ok".encode())

    table = _flip_middle_of_largest_table(db)
    damaged = run("check", db, cwd=tmp_path)
    assert damaged.returncode == 1
    assert damaged.stdout.startswith(f"{db}: DAMAGED".encode())
    assert table.name.encode() in damaged.stdout
    report = json.loads(run("check", db, "--json", cwd=tmp_path).stdout)
    assert report["ok"] is False and report["problems"]

    assert report["damaged_entries"] > 0 and report["damaged_ranges"]
    assert f"damaged: {table.name}: ".encode() in damaged.stdout

    repaired = run("repair", db, "--json", cwd=tmp_path)
    assert repaired.returncode == 3, repaired.stderr  # consistent again, but records were lost
    result = json.loads(repaired.stdout)
    kept, lost = result["kept_records"], result["lost"]
    assert 0 < kept < len(items) and result["ok"] and result["changed"]
    assert lost["records"] == len(items) - kept and lost["records_exact"]  # one version of each key: exact
    assert [r["source"] for r in lost["ranges"]] == [table.name]
    assert run("check", db, cwd=tmp_path).returncode == 0
    survivors = read_db(db)
    assert len(survivors) == kept
    assert all(items[key] == value for key, value in survivors.items())
    low, high = bytes.fromhex(lost["ranges"][0]["low"]), bytes.fromhex(lost["ranges"][0]["high"])
    assert all(low < key <= high for key in set(items) - set(survivors))

    again = run("repair", db, cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.startswith(f"{db}: no damage found, nothing changed, {kept:,} records kept".encode())


def test_repair_text_names_what_was_lost(tmp_path: Path) -> None:
    items = {f"key{i:05d}".encode(): b"v" * 40 for i in range(3000)}
    db = make_db(tmp_path / "db", items, block_size=1024)
    with byrondbm.open(str(db), "w") as handle:
        handle.compact()
    _flip_middle_of_largest_table(db)
    result = run("repair", db, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    gone = sorted(set(items) - set(read_db(db)))
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"{db}: repaired, {len(items) - len(gone):,} records kept, {len(gone):,} lost"
    lost_lines = [line for line in lines if line.startswith("  lost: ")]
    assert len(lost_lines) == 1 and f"{len(gone):,} entries" in lost_lines[0]
    assert f"through '{gone[-1].decode()}'" in lost_lines[0]


def test_whichdb(tmp_path: Path) -> None:
    import dbm.dumb

    make_db(tmp_path / "ours", {b"k": b"v"})
    with dbm.dumb.open(str(tmp_path / "dumb"), "c") as other:
        other[b"k"] = b"v"
    (tmp_path / "empty").write_bytes(b"")
    assert run("whichdb", tmp_path / "ours", cwd=tmp_path).stdout == b"byrondbm\n"
    assert run("whichdb", tmp_path / "dumb", cwd=tmp_path).stdout == b"dbm.dumb\n"
    unknown = run("whichdb", tmp_path / "empty", cwd=tmp_path)
    assert (unknown.returncode, unknown.stdout) == (1, b"unknown\n")
    assert_one_line_error(run("whichdb", tmp_path / "missing", cwd=tmp_path), "no such file")


# ----------------------------------------------------------------------------- expected errors, no traceback


@pytest.mark.parametrize("args", [["compact"], ["put", "k", "v"]])
def test_locked_database_is_one_line_error(tmp_path: Path, args: list[str]) -> None:
    path = make_db(tmp_path / "db", {b"k": b"v"})
    with byrondbm.open(str(path), "w"):
        result = run(args[0], path, *args[1:], cwd=tmp_path)
    assert_one_line_error(result, "locked")


@pytest.mark.parametrize("args", [["get", "k"], ["dump"], ["check"], ["stats"], ["scan"]])
def test_read_only_subcommands_work_beside_a_writer(tmp_path: Path, args: list[str]) -> None:
    path = make_db(tmp_path / "db", {b"k": b"v"})
    with byrondbm.open(str(path), "w") as db:
        db[b"written-by-the-writer"] = b"w"
        result = run(args[0], path, *args[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_load_into_a_locked_database_says_nothing_was_loaded(tmp_path: Path) -> None:
    path = make_db(tmp_path / "db", {b"k": b"v"})
    dump = b'{"byrondbm": 1, "encoding": "base64"}\n' + GOOD_LINE + b"\n"
    with byrondbm.open(str(path), "w"):
        result = run("load", path, cwd=tmp_path, stdin=dump)
    assert_one_line_error(result, "locked", "0 of 1 records were loaded")
    assert read_db(path) == {b"k": b"v"}


@pytest.mark.parametrize("args", [["get", "k"], ["stats"], ["check"], ["delete", "k"], ["repair"]])
def test_missing_database_is_one_line_error(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing"
    line = assert_one_line_error(run(args[0], missing, *args[1:], cwd=tmp_path))
    assert str(missing) in line
    assert not missing.exists()


def test_damaged_database_is_one_line_error(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", {b"k": b"v"})
    (db / "CURRENT").write_bytes(b"MANIFEST-999999\n")
    for args in (["get", db, "k"], ["scan", db], ["stats", db], ["put", db, "k", "v"]):
        assert_one_line_error(run(*args, cwd=tmp_path))


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", {f"{i:06d}".encode(): b"x" * 100 for i in range(20000)})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    producer = subprocess.Popen(
        [sys.executable, "-m", "byrondbm", "scan", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert producer.stdout is not None and producer.stderr is not None
    producer.stdout.readline()
    producer.stdout.close()
    assert producer.wait(timeout=120) == 141
    assert producer.stderr.read() == b""


# ---------------------------------------------------------------------------------------------- progress


def test_progress_line_with_total() -> None:
    progress = Progress("dump", 200, unit=" records", enabled=False)
    progress.advance(50)
    line = progress.line(now=progress._start + 2.0)
    assert line.startswith("dump  50/200 records   25% [#####...............]")
    assert line.endswith("25 records/s  ETA 0:00:06")


def test_progress_line_without_total() -> None:
    progress = Progress("scan", unit="B", enabled=False)
    assert progress.line(now=progress._start + 61) == "scan  working...  0:01:01"
    progress.advance(3_000_000)
    assert progress.line(now=progress._start + 2) == "scan  3.0MB  1.5MB/s  0:00:02"


def test_progress_draws_only_when_enabled() -> None:
    shown, hidden = io.StringIO(), io.StringIO()
    for stream, enabled in ((shown, True), (hidden, False)):
        with Progress("load", 10, enabled=enabled, stream=stream) as progress:
            progress.advance(10)
    assert hidden.getvalue() == ""
    assert shown.getvalue().startswith("\rload  ") and shown.getvalue().endswith("ETA 0:00:00\x1b[K\n")


def test_progress_ticker_redraws_while_work_goes_on() -> None:
    """Nothing calls advance: the ticker alone shows the time going on, then close() says done."""
    stream = io.StringIO()
    with Progress("compact", enabled=True, stream=stream, interval=0.01).ticking():
        for _ in range(1000):  # a bound so that a broken ticker fails instead of hanging
            if "compact  working...  0:00:01" in stream.getvalue():
                break
            time.sleep(0.01)
        assert "\rcompact  working...  0:00:01\x1b[K" in stream.getvalue()
    assert re.search(r"\rcompact  done  0:00:0\d\x1b\[K\n\Z", stream.getvalue())


def _stderr_on_terminal(*args: object, cwd: Path) -> bytes:
    """Run with stderr on a pseudo-terminal; returns what the terminal received."""
    master, slave = pty.openpty()
    try:
        result = run(*args, cwd=cwd, stderr=slave)
    finally:
        os.close(slave)
    try:
        assert result.returncode == 0
        received = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed and everything was read
                break
            if not chunk:
                break
            received += chunk
        return received
    finally:
        os.close(master)


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", {f"{i:05d}".encode(): b"v" for i in range(500)})
    on_terminal = _stderr_on_terminal("dump", db, "-o", tmp_path / "d.jsonl", cwd=tmp_path)
    assert b"\rdump  500/500 records  100% [####################]" in on_terminal
    assert b"records/s" in on_terminal and b"ETA" in on_terminal
    assert _stderr_on_terminal("dump", db, "-o", tmp_path / "d.jsonl", "--quiet", cwd=tmp_path) == b""
    assert run("dump", db, "-o", tmp_path / "d.jsonl", cwd=tmp_path).stderr == b""
    loaded = _stderr_on_terminal("load", tmp_path / "copy", "-i", tmp_path / "d.jsonl", cwd=tmp_path)
    assert b"\rcheck input  " in loaded and b"\rload  500/500 records" in loaded
