"""The `byrondbm` command line (also `python -m byrondbm`): look inside, fill, move and mend a database.

Subcommands: get, put, delete, scan, dump, load, stats, compact, check, repair, whichdb, plus bench and
serve, which live in their own modules (`byrondbm.bench`, `byrondbm.server.command`) and plug into this parser
through their ``add_arguments(parser)`` and ``run(args) -> int`` functions.

Exit codes: 0 ok; 1 key not found, check failed, or an expected error (missing, locked or damaged
database, unreadable input), reported as one line ``byrondbm: error: <message>`` on stderr, never a
traceback; 2 usage error (argparse's convention); 3 repair lost records; 130 interrupted (Ctrl-C), after one
line saying what was done.

Dump file (JSON lines, UTF-8, one JSON object a line)::

    {"byrondbm": 1, "encoding": "base64", "records": 2}      header: format version, encoding, record count
    {"key": "YQ==", "value": "AAH/"}                          one line a record, in ascending key order
    {"key": "Yg==", "value": ""}

``encoding`` says how keys and values (arbitrary bytes) are written as JSON strings: "base64" (the default
of `dump`, binary safe and compact), "hex", or "utf-8" (readable, for data that is all valid UTF-8).
``records`` is optional for hand-written files; when present, `load` refuses a file that holds another
number of records (a truncated dump). `load` validates the whole file before it writes anything, so a
malformed file loads nothing at all.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dbm
import functools
import importlib
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, BinaryIO, NamedTuple

import byrondbm

from .engine.verify import LostRange
from .progress import Progress

PROG = "byrondbm"
DUMP_VERSION = 1
LOAD_BATCH_SIZE = 1000
SERVER_EXTRA_HINT = "the server needs the 'server' extra: pip install 'byrondbm[server]'"
EXIT_LOST = 3
"""`repair` made the database consistent but could not salvage every record (distinct from 1: still damaged)."""


class CommandError(Exception):
    """An expected failure of a subcommand: printed as one line, exit code 1."""


class Interrupted(Exception):
    """Ctrl-C stopped a subcommand: printed as one line saying what was done, exit code 130."""


class StopRequest:
    """While active, a first SIGINT only sets `requested`, for a loop to check between steps, so that no step
    (a batch being written) is cut in half and the count of steps done is exact; a second SIGINT interrupts
    at once (KeyboardInterrupt). Outside the main thread (no signal handler can be set) it never triggers."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Codec(NamedTuple):
    """How bytes are written as text (`encode`) and read back (`decode`, raises ValueError on bad input)."""

    encode: Callable[[bytes], str]
    decode: Callable[[str], bytes]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _utf8decode(text: str) -> bytes:
    return text.encode("utf-8")


def _utf8encode(data: bytes) -> str:
    return data.decode("utf-8")


DUMP_CODECS: dict[str, Codec] = {
    "base64": Codec(_b64encode, _b64decode),
    "hex": Codec(bytes.hex, bytes.fromhex),
    "utf-8": Codec(_utf8encode, _utf8decode),
}
"""The encodings a dump file may declare; each round-trips every byte string it accepts, exactly."""

# Command-line text: arguments come back as the exact bytes typed (argv is decoded with surrogateescape),
# and output shows invalid UTF-8 as \xNN escapes rather than failing (use --hex/--base64 to be exact).
TEXT_CODEC = Codec(
    lambda data: data.decode("utf-8", "backslashreplace"),
    lambda text: text.encode("utf-8", "surrogateescape"),
)

_JSON = json.JSONEncoder(ensure_ascii=False)
_JSON_DECODER = json.JSONDecoder()


# ---------------------------------------------------------------------------------------------- helpers


def _arg_codec(args: argparse.Namespace) -> Codec:
    return DUMP_CODECS[args.codec] if args.codec else TEXT_CODEC


def _arg_bytes(args: argparse.Namespace, text: str, what: str) -> bytes:
    """Decode a KEY/VALUE argument with the chosen codec; a bad one is a usage error (exit 2)."""
    try:
        return _arg_codec(args).decode(text)
    except ValueError as exc:
        parser: argparse.ArgumentParser = args.parser
        parser.error(f"{what} {text!r} is not valid {args.codec}: {exc}")


def _optional_bytes(args: argparse.Namespace, text: str | None, what: str) -> bytes | None:
    return None if text is None else _arg_bytes(args, text, what)


def _emit(line: str) -> None:
    """Write one line to stdout as UTF-8, whatever the locale."""
    sys.stdout.buffer.write(line.encode("utf-8") + b"\n")


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def describe_error(exc: OSError) -> str:
    """One line naming the problem (and the path when the exception carries one)."""
    if isinstance(exc, byrondbm.CorruptionError) or exc.strerror is None:
        text = str(exc)
    elif exc.filename is not None:
        text = f"{exc.strerror}: {os.fsdecode(exc.filename)}"
    else:
        text = exc.strerror
    return " ".join(text.split())


_LISTED = 10  # items of a list shown in a report field; --json shows them all


def _format_value(value: Any) -> str:
    """Numbers with thousands separators, lists and dicts as short comma-separated text."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{name.replace('_', ' ')} {_format_value(item)}" for name, item in value.items())
    if isinstance(value, list):
        shown = ", ".join(_format_value(item) for item in value[:_LISTED]) or "none"
        return shown + (f", ... ({len(value) - _LISTED} more)" if len(value) > _LISTED else "")
    return str(value)


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _print_fields(fields: dict[str, Any], indent: str = "") -> None:
    """`name  value` lines, names with spaces for underscores, byte counts (`*bytes*`) also in KiB/MiB."""
    if not fields:
        return
    width = max(len(name) for name in fields) + 2
    for name, value in fields.items():
        text = _format_value(value)
        if isinstance(value, int) and not isinstance(value, bool) and "bytes" in name:
            text += f"  ({_human_bytes(value)})"
        _emit(f"{indent}{name.replace('_', ' '):<{width}}{text}")


def _print_report(title: str, fields: dict[str, Any], ranges: list[dict[str, Any]], label: str) -> None:
    """A check/repair report: a title line, each problem and each lost key range (`LostRange.as_json`) on its
    own line, then the other fields."""
    _emit(title)
    for problem in fields.get("problems", []):
        _emit(f"  problem: {problem}")
    for item in ranges:
        _emit(f"  {label}: {LostRange.from_json(item).describe()}")
    _print_fields({k: v for k, v in fields.items() if k not in ("ok", "problems")}, indent="  ")


# ------------------------------------------------------------------------------------ point operations


def cmd_get(args: argparse.Namespace) -> int:
    key = _arg_bytes(args, args.key, "KEY")
    with byrondbm.open(args.path, "r") as db:
        value = db.get(key)
    if value is None:
        raise CommandError(f"key not found: {_arg_codec(args).encode(key)!r}")
    _emit(_arg_codec(args).encode(value))
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    key = _arg_bytes(args, args.key, "KEY")
    value = _arg_bytes(args, args.value, "VALUE")
    with byrondbm.open(args.path, "c") as db:
        db[key] = value
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    key = _arg_bytes(args, args.key, "KEY")
    with byrondbm.open(args.path, "w") as db:
        try:
            del db[key]
        except KeyError:
            raise CommandError(f"key not found: {_arg_codec(args).encode(key)!r}") from None
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    codec = _arg_codec(args)
    start = _optional_bytes(args, args.start, "--start")
    stop = _optional_bytes(args, args.stop, "--stop")
    prefix = _optional_bytes(args, args.prefix, "--prefix")
    with byrondbm.open(args.path, "r") as db:
        items = db.scan(start, stop, prefix=prefix, reverse=args.reverse, keys_only=args.keys_only)
        for item in itertools.islice(items, args.limit):
            if args.keys_only:
                _emit(codec.encode(item))
            else:
                _emit(f"{codec.encode(item[0])}\t{codec.encode(item[1])}")
    return 0


# -------------------------------------------------------------------------------------------- dump / load


def cmd_dump(args: argparse.Namespace) -> int:
    encode = DUMP_CODECS[args.encoding].encode
    written = total = 0
    try:
        with contextlib.ExitStack() as stack:
            db = stack.enter_context(byrondbm.open(args.path, "r"))
            out = stack.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
            total = len(db)
            header = {"byrondbm": DUMP_VERSION, "encoding": args.encoding, "records": total}
            out.write(_JSON.encode(header).encode("utf-8") + b"\n")
            progress = stack.enter_context(Progress("dump", total, unit=" records", enabled=_show_progress(args)))
            for key, value in db.scan():
                try:
                    record = {"key": encode(key), "value": encode(value)}
                except UnicodeDecodeError:
                    raise CommandError(
                        f"record {written + 1} is not valid UTF-8; dump with --encoding base64 or hex"
                    ) from None
                out.write(_JSON.encode(record).encode("utf-8") + b"\n")
                written += 1
                progress.advance()
            out.flush()
    except KeyboardInterrupt:
        if args.output:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.output)
            raise Interrupted(f"dump stopped after {written:,} of {total:,} records; the partial file "
                              f"{args.output} was removed") from None
        raise Interrupted(f"dump stopped after {written:,} of {total:,} records; the output is incomplete "
                          f"(its header promises {total:,} records, so load refuses it)") from None
    if written != total:
        raise CommandError(f"the database holds {total} keys but the scan returned {written}; the dump is inconsistent")
    return 0


class DumpFormatError(Exception):
    """A line of a dump file that cannot be loaded: its 1-based line number and why."""

    def __init__(self, line_number: int, reason: str) -> None:
        super().__init__(f"line {line_number}: {reason}")


def _json_line(line_number: int, line: bytes) -> Any:
    try:
        return _JSON_DECODER.decode(line.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both subclass ValueError
        raise DumpFormatError(line_number, f"not valid JSON ({exc})") from None


def _parse_header(line: bytes) -> tuple[Codec, int | None]:
    header = _json_line(1, line)
    if not isinstance(header, dict) or header.get("byrondbm") != DUMP_VERSION:
        raise DumpFormatError(1, f'expected a header like {{"byrondbm": {DUMP_VERSION}, "encoding": "base64"}}')
    encoding = header.get("encoding")
    if encoding not in DUMP_CODECS:
        raise DumpFormatError(1, f"encoding {encoding!r} is not one of {', '.join(DUMP_CODECS)}")
    records = header.get("records")
    if records is not None and (isinstance(records, bool) or not isinstance(records, int) or records < 0):
        raise DumpFormatError(1, f"records {records!r} is not a count")
    return DUMP_CODECS[encoding], records


def read_dump(lines: Iterator[bytes]) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield ``(line_number, key, value)`` for each record of a dump file's lines; blank lines are skipped.

    Raises `DumpFormatError` at the first line that is not a valid header or record, and at the end when
    the header's record count disagrees with the records read. Streams: O(1) memory whatever the file size.
    """
    first = next(lines, b"")
    if not first.strip():
        raise DumpFormatError(1, "expected the header line, found nothing")
    codec, expected = _parse_header(first)
    count = 0
    line_number = 1
    for line_number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        record = _json_line(line_number, line)
        # The decoder makes exact dicts and strs, so exact type checks suffice (and are cheap per line).
        if not (
            type(record) is dict
            and len(record) == 2
            and type(record.get("key")) is str
            and type(record.get("value")) is str
        ):
            raise DumpFormatError(line_number, 'expected {"key": "...", "value": "..."}')
        try:
            key = codec.decode(record["key"])
            value = codec.decode(record["value"])
        except ValueError as exc:
            raise DumpFormatError(line_number, f"not valid for the file's encoding ({exc})") from None
        count += 1
        yield line_number, key, value
    if expected is not None and count != expected:
        raise DumpFormatError(line_number, f"the header promises {expected} records, the file holds {count}")


@contextlib.contextmanager
def _seekable_input(name: str | None) -> Iterator[BinaryIO]:
    """The input file, or stdin; a pipe is first copied to a temporary file so it can be read twice."""
    with contextlib.ExitStack() as stack:
        source: BinaryIO = stack.enter_context(open(name, "rb")) if name else sys.stdin.buffer
        if not source.seekable():
            spool = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(source, spool)
            spool.seek(0)
            source = spool
        yield source


def _count_bytes(lines: BinaryIO, progress: Progress) -> Iterator[bytes]:
    for line in lines:
        progress.advance(len(line))
        yield line


def cmd_load(args: argparse.Namespace) -> int:
    show = _show_progress(args)
    where = args.input or "<stdin>"
    with _seekable_input(args.input) as source:
        # Pass 1 validates every line, so a malformed file loads nothing; pass 2 writes.
        start = source.tell()
        size = os.fstat(source.fileno()).st_size - start
        try:
            with Progress("check input", size, unit="B", enabled=show) as progress:
                records = sum(1 for _ in read_dump(_count_bytes(source, progress)))
        except DumpFormatError as exc:
            raise CommandError(f"{where} {exc}; nothing was loaded") from None
        except KeyboardInterrupt:
            raise Interrupted("load stopped while checking the input; nothing was loaded") from None
        source.seek(start)
        loaded = 0
        rerun = "rerunning the load is safe: it sets the same keys to the same values"
        try:
            with (
                StopRequest() as stop,
                byrondbm.open(args.path, "c") as db,
                Progress("load", records, unit=" records", enabled=show) as progress,
            ):
                pending: list[tuple[bytes, bytes]] = []
                for _, key, value in read_dump(iter(source)):
                    pending.append((key, value))
                    if len(pending) >= args.batch_size:
                        loaded += _write_batch(db, pending, progress)
                        if stop.requested:
                            break
                else:
                    loaded += _write_batch(db, pending, progress)
            if stop.requested and loaded < records:
                raise Interrupted(f"load stopped: {loaded:,} of {records:,} records were loaded; {rerun}")
        except KeyboardInterrupt:  # a second Ctrl-C: the batch being written may have been applied too
            raise Interrupted(
                f"load stopped: at least {loaded:,} of {records:,} records were loaded; {rerun}"
            ) from None
        except (OSError, DumpFormatError) as exc:
            detail = describe_error(exc) if isinstance(exc, OSError) else f"{where} {exc} (the file changed)"
            raise CommandError(f"{detail}; {loaded} of {records} records were loaded") from None
    return 0


def _write_batch(db: byrondbm.Database, pending: list[tuple[bytes, bytes]], progress: Progress) -> int:
    """Apply `pending` as one atomic batch, empty it, and return how many records it held."""
    with db.batch() as batch:
        for key, value in pending:
            batch[key] = value
    count = len(pending)
    pending.clear()
    progress.advance(count)
    return count


# ------------------------------------------------------------------------------------------ maintenance


def cmd_stats(args: argparse.Namespace) -> int:
    with byrondbm.open(args.path, "r") as db:
        stats = db.stats()
    if args.json:
        _emit(json.dumps(stats, indent=2))
        return 0
    levels = stats["levels"]
    # Empty levels below the deepest one in use are noise: show L0 down to the last level holding files.
    shown = 1 + max((i for i, lv in enumerate(levels) if lv["files"]), default=0)
    rows = [(f"L{lv['level']}", lv["files"], lv["bytes"], lv["keys"]) for lv in levels[:shown]]
    rows.append(("total", *(sum(lv[field] for lv in levels) for field in ("files", "bytes", "keys"))))
    _emit(f"{'level':<6}{'files':>8}{'bytes':>16}{'size':>12}{'keys':>14}")
    for name, files, size, keys in rows:
        _emit(f"{name:<6}{files:>8,}{size:>16,}{_human_bytes(size):>12}{keys:>14,}")
    _emit("")
    _print_fields({name: value for name, value in stats.items() if name != "levels"})
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    try:
        with byrondbm.open(args.path, "w") as db, Progress("compact", enabled=_show_progress(args)).ticking():
            db.compact()
    except KeyboardInterrupt:
        raise Interrupted("compaction stopped; the tables it was writing were removed and the database holds "
                          "the same records as before; run compact again to finish") from None
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    with Progress("check", enabled=_show_progress(args)).ticking():
        report = byrondbm.check(args.path)
    if args.json:
        _emit(json.dumps(report, indent=2))
    else:
        fields = {k: v for k, v in report.items() if k != "damaged_ranges"}
        title = f"{args.path}: {'ok' if report['ok'] else 'DAMAGED'}"
        _print_report(title, fields, report["damaged_ranges"], "damaged")
    return 0 if report["ok"] else 1


def cmd_repair(args: argparse.Namespace) -> int:
    try:
        with Progress("repair", enabled=_show_progress(args)).ticking():
            report = byrondbm.repair(args.path)
    except KeyboardInterrupt:
        raise Interrupted("repair stopped; the database is either as it was or repaired (switching to the new "
                          "manifest is one atomic step); run repair again to finish") from None
    lost = report["lost"]["records"]
    if args.json:
        _emit(json.dumps(report, indent=2))
    else:
        if not report["changed"]:
            outcome = "no damage found, nothing changed"
        elif not report["ok"]:
            outcome = "STILL DAMAGED after repair"
        else:
            outcome = "repaired"
        counted = "" if report["lost"]["records_exact"] else "about "
        # The ranges as lines of text; the hex keys of lost large values only in --json (they are ranges too).
        fields = {**report, "lost": {k: v for k, v in report["lost"].items() if k not in ("ranges", "keys")}}
        _print_report(f"{args.path}: {outcome}, {report['kept_records']:,} records kept, {counted}{lost:,} lost",
                      fields, report["lost"]["ranges"], "lost")
    if not report["ok"]:
        return 1
    return EXIT_LOST if lost else 0


def cmd_whichdb(args: argparse.Namespace) -> int:
    kind = byrondbm.whichdb(args.path) or dbm.whichdb(args.path)
    if kind:
        _emit(kind)
        return 0
    if not os.path.lexists(args.path):
        raise CommandError(f"no such file or directory: {args.path}")
    _emit("unknown")
    return 1


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy PATH, as of one instant, to DEST; PATH is opened read-only, so its writer may go on writing."""
    with byrondbm.open(args.path, "r") as db, Progress("backup", enabled=_show_progress(args)).ticking():
        report = db.backup(args.dest)
    _emit(f"{args.dest}: {report['keys']:,} keys at sequence {report['sequence']:,}, {report['tables']:,} tables "
          f"({report['linked']:,} linked, {report['copied']:,} copied, {report['rewritten']:,} rewritten)")
    return 0


# ------------------------------------------------------------------------- plug-ins: bench and serve


def _is_missing_extra(exc: ImportError) -> bool:
    """True when `exc` is the server extra's dependencies (grpcio, protobuf) not being installed."""
    return (exc.name or "").split(".")[0] in ("grpc", "google")


def _run_plugin(module: ModuleType, args: argparse.Namespace) -> int:
    try:
        return int(module.run(args))
    except ImportError as exc:
        if _is_missing_extra(exc):
            raise CommandError(SERVER_EXTRA_HINT) from None
        raise


def _unavailable(message: str, args: argparse.Namespace) -> int:
    raise CommandError(message)


def _add_plugin(subparsers: Any, name: str, module_name: str, summary: str) -> None:
    """Register `name` from `module_name`; if it cannot be imported the subcommand says why when run."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = SERVER_EXTRA_HINT if _is_missing_extra(exc) else f"{name} is unavailable: {exc}"
        sub = subparsers.add_parser(name, help=f"{summary} (unavailable)", description=message)
        sub.set_defaults(handler=functools.partial(_unavailable, message), accepts_extra_args=True)
        return
    sub = subparsers.add_parser(name, help=summary, description=summary)
    module.add_arguments(sub)
    sub.set_defaults(handler=functools.partial(_run_plugin, module))


# ------------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect, load, dump, check and repair byrondbm databases (a database is a directory).",
        epilog="Exit status: 0 ok, 1 not found / check failed / error, 2 usage error, 3 repair lost records, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {byrondbm.__version__}")
    parser.set_defaults(handler=None)
    subparsers = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    codec = argparse.ArgumentParser(add_help=False)
    group = codec.add_argument_group("encoding of keys and values (default: UTF-8 text)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--hex", dest="codec", action="store_const", const="hex", help="hexadecimal")
    choice.add_argument("--base64", dest="codec", action="store_const", const="base64", help="base64")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress bar on a terminal")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the result as JSON")

    def add(name: str, handler: Callable[[argparse.Namespace], int], summary: str, *parents: Any) -> Any:
        sub = subparsers.add_parser(name, help=summary, description=summary, parents=list(parents))
        sub.add_argument("path", metavar="PATH", help="the database directory")
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    sub = add("get", cmd_get, "print the value of KEY (exit 1 if absent)", codec)
    sub.add_argument("key", metavar="KEY")
    sub = add("put", cmd_put, "set KEY to VALUE (creates the database if missing)", codec)
    sub.add_argument("key", metavar="KEY")
    sub.add_argument("value", metavar="VALUE")
    sub = add("delete", cmd_delete, "delete KEY (exit 1 if absent)", codec)
    sub.add_argument("key", metavar="KEY")

    sub = add("scan", cmd_scan, "print keys and values in key order, tab-separated, one pair a line", codec)
    sub.add_argument("--start", metavar="KEY", help="first key (inclusive)")
    sub.add_argument("--stop", metavar="KEY", help="end key (exclusive)")
    sub.add_argument("--prefix", metavar="P", help="only keys starting with P")
    sub.add_argument("--reverse", action="store_true", help="descending key order")
    sub.add_argument("--limit", metavar="N", type=_int_at_least(0), help="print at most N records")
    sub.add_argument("--keys-only", action="store_true", help="print keys only")

    sub = add("dump", cmd_dump, "write every record as JSON lines (binary safe)", quiet)
    sub.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    sub.add_argument("--encoding", choices=list(DUMP_CODECS), default="base64", help="how keys and values are written")
    sub = add("load", cmd_load, "add the records of a dump; validates it all first (creates the database)", quiet)
    sub.add_argument("-i", "--input", metavar="FILE", help="read FILE (default: stdin)")
    sub.add_argument(
        "--batch-size", metavar="N", type=_int_at_least(1), default=LOAD_BATCH_SIZE, help="records per atomic batch"
    )

    add("stats", cmd_stats, "levels, files, sizes, key counts, write amplification", as_json)
    add("compact", cmd_compact, "run a full compaction now", quiet)
    add("check", cmd_check, "verify every checksum (exit 1 on damage)", quiet, as_json)
    add("repair", cmd_repair, "salvage what is readable from a damaged database", quiet, as_json)
    add("whichdb", cmd_whichdb, "name the dbm format at PATH (exit 1 if unknown)")
    sub = add("backup", cmd_backup, "copy the database, as of one instant, to DEST (new or empty)", quiet)
    sub.add_argument("dest", metavar="DEST", help="the backup's directory: missing or empty")

    _add_plugin(subparsers, "bench", "byrondbm.bench", "measure throughput (db_bench-style workloads)")
    _add_plugin(subparsers, "serve", "byrondbm.server.command", "serve a database over gRPC")
    return parser


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type` for integers >= `minimum`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


# -------------------------------------------------------------------------------------------------- main


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "accepts_extra_args", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        handler: Callable[[argparse.Namespace], int] | None = args.handler
        if handler is None:
            parser.print_help(sys.stderr)
            return 2
        status = handler(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at interpreter exit
        return status
    except SystemExit as exit_:  # argparse: --help (0) and usage errors (2)
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CommandError as exc:
        return _fail(str(exc))
    except Interrupted as exc:
        print(f"{PROG}: interrupted: {exc}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`byrondbm scan db | head`): stop quietly, as a program killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # byrondbm.error (missing, locked, damaged database) and file errors
        return _fail(describe_error(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
