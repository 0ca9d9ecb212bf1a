"""`byrondbm bench`: db_bench-style workloads on byrondbm and on the baselines, in one run.

`add_arguments(parser)` and `run(args)` are what the command line's `bench` subcommand calls (and
`python -m byrondbm.bench`). See the README's Performance section for the workloads, the baselines and measured results.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
from typing import Any

from byrondbm.bench import report
from byrondbm.bench.baselines import ENGINES
from byrondbm.bench.workloads import (
    KEY_SIZE,
    OPTIONAL_WORKLOADS,
    WORKLOADS,
    Context,
    EngineRun,
    KeySpace,
    rows_for,
    run_engine,
    run_scale,
)

SCALE_KEYS = 10_000_000
SCALE_SMALL = 200_000


def _names(known: tuple[str, ...]) -> Any:
    """An argparse type for a comma-separated subset of `known`."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(known)} (got {text!r})")
        return names

    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_positive, default=200_000, help="keys per workload (default 200,000)")
    parser.add_argument("--value-size", type=int, default=100, help="value bytes (default 100); keys are 16")
    parser.add_argument("--benchmarks", type=_names(WORKLOADS + OPTIONAL_WORKLOADS), default=list(WORKLOADS),
                        help=f"comma-separated workloads (default all: {','.join(WORKLOADS)}; "
                        f"also: {','.join(OPTIONAL_WORKLOADS)})")
    parser.add_argument("--engines", type=_names(tuple(ENGINES)), default=list(ENGINES),
                        help=f"comma-separated engines (default every importable one: {','.join(ENGINES)})")
    parser.add_argument("--repeat", type=_positive, default=3, help="runs per workload; the median is reported")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement to FILE as JSON")
    parser.add_argument("--dir", help="where to create the databases (default: the system temp directory)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on a terminal")
    parser.add_argument("--seed", type=int, default=301, help="seed of keys orders and values")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile byrondbm's timed loops into FILE and print the top functions "
                             "(its numbers are then not comparable)")
    parser.add_argument("--scale", nargs="?", type=_positive, const=SCALE_KEYS, metavar="N",
                        help=f"instead: byrondbm alone at N keys (default {SCALE_KEYS:,}) vs {SCALE_SMALL:,}: "
                             "peak RSS, write and space amplification, readrandom")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="with --scale: stop each fill after this many seconds and measure what was written")


def run(args: argparse.Namespace) -> int:
    if args.value_size < 0:
        print("byrondbm bench: --value-size must be >= 0", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="byrondbm-bench-", dir=args.dir)
    ctx = Context(KeySpace(args.value_size, args.seed), args.n, workdir, sys.stderr.isatty() and not args.quiet)
    try:
        return _scale(ctx, args) if args.scale else _compare(ctx, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _command() -> str:
    """How this process was started, as a user would type it again."""
    launcher = sys.argv[0].replace(os.sep, "/")
    if launcher.endswith("bench/__main__.py"):
        launcher = "python -m byrondbm.bench"
    elif launcher.endswith("byrondbm/__main__.py"):
        launcher = "python -m byrondbm"
    return " ".join([os.path.basename(launcher) if "/" in launcher else launcher, *sys.argv[1:]])


def _meta(args: argparse.Namespace, n: int) -> dict[str, Any]:
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": _command(),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "n": n, "key_size": KEY_SIZE, "value_size": args.value_size, "seed": args.seed,
        "load_average_at_start": os.getloadavg(),  # other work on the machine skews the numbers
    }
    if not args.scale:
        meta.update(repeat=args.repeat, benchmarks=args.benchmarks, profiled=bool(args.profile))
    return meta


def _compare(ctx: Context, args: argparse.Namespace) -> int:
    """Every selected engine, every selected workload, `--repeat` times (interleaved so drift hits all)."""
    chosen = [name for name in ENGINES if name in args.engines]  # byrondbm first, as the tables read
    skipped = {name: why for name in chosen if (why := ENGINES[name].unavailable())}
    engines = {name: ENGINES[name] for name in chosen if name not in skipped}
    if args.profile:
        ctx.profiler = cProfile.Profile()
    meta = _meta(args, ctx.n)
    runs: dict[str, list[EngineRun]] = {name: [] for name in engines}
    rows = rows_for(args.benchmarks)
    for _ in range(args.repeat):
        for name, engine in engines.items():
            runs[name].append(run_engine(ctx, engine, args.benchmarks))
            if args.json:  # a checkpoint, so a run cut short keeps what it measured
                _write_json(args.json, _document(meta, runs, rows, engines, skipped, done=False))
    meta["load_average_at_end"] = os.getloadavg()
    results = {name: report.summarize(r, rows) for name, r in runs.items()}
    print(report.render(results, rows, engines, skipped, meta))
    if args.json:
        _write_json(args.json, _document(meta, runs, rows, engines, skipped, done=True))
    if ctx.profiler is not None:
        ctx.profiler.dump_stats(args.profile)
        pstats.Stats(ctx.profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return 1 if any(r.status == "error" for rows_ in results.values() for r in rows_.values()) else 0


def _document(
    meta: dict[str, Any], runs: dict[str, list[EngineRun]], rows: list[str], engines: dict[str, Any],
    skipped: dict[str, str], done: bool,
) -> dict[str, Any]:
    """The --json document of the runs so far (`complete` False while repeats remain)."""
    ran = {name: r for name, r in runs.items() if r}
    results = {name: report.summarize(r, rows) for name, r in ran.items()}
    facts = {name: [run.facts for run in r] for name, r in ran.items()}
    doc = report.document(meta, results, facts, {name: engines[name] for name in ran}, skipped)
    doc["complete"] = done
    return doc


def _scale(ctx: Context, args: argparse.Namespace) -> int:
    engine = ENGINES["byrondbm"]
    why = engine.unavailable()
    if why:
        print(f"byrondbm bench --scale: byrondbm is not usable: {why}", file=sys.stderr)
        return 1
    meta = _meta(args, args.scale)

    def checkpoint(result: dict[str, Any]) -> None:
        if args.json:
            _write_json(args.json, {"meta": meta, "scale": result})

    # The large store first, so the peak RSS of the process (getrusage) is its peak.
    sizes = {"large": args.scale, "small": min(SCALE_SMALL, args.scale)}
    result = run_scale(ctx, engine, sizes, SCALE_SMALL, args.time_limit or float("inf"), checkpoint)
    checkpoint(result)
    print(f"byrondbm bench --scale — {meta['date']} — {meta['command']}")
    print(report.render_scale(result))
    return 0


def _write_json(path: str, doc: dict[str, Any]) -> None:
    """Written whole to a temporary name, then renamed, so a reader never sees half a document."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)
