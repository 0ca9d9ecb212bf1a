"""The `serve` subcommand: `byrondbm serve PATH [--host H] [--port N] [--token-file F] ...`.

`add_arguments` fills the subcommand's parser (PATH included); `run` serves until SIGINT/SIGTERM and returns
the exit status: 0 after a graceful stop, 1 when the database cannot be opened or the address bound,
2 for a usage error (a non-loopback host without a token, an unreadable or empty token file, a missing
`server` extra). grpc is imported only inside `run`, so the rest of the command line works without it.
"""

from __future__ import annotations

import argparse
import sys

from byrondbm.errors import error
from byrondbm.server import DEFAULT_GRACE, DEFAULT_PORT, DEFAULT_WORKERS, format_address


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", metavar="PATH", help="the database directory (created if missing, unless --flag says otherwise)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any non-loopback address requires --token-file)",
    )
    parser.add_argument(
        "--port",
        metavar="N",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the token every client must send (as 'authorization: Bearer TOKEN')",
    )
    parser.add_argument(
        "--flag", default="c", help="byrondbm.open flag: r, w, c (default) or n, plus modifiers f, s, u"
    )
    parser.add_argument(
        "--grace",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_GRACE,
        help=f"seconds calls in flight may run on after SIGINT/SIGTERM (default {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"threads running database calls (default {DEFAULT_WORKERS})",
    )


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def run(args: argparse.Namespace) -> int:
    try:
        from byrondbm.server import service
    except ImportError as exc:
        print(
            f"byrondbm: error: the server needs the 'server' extra: pip install 'byrondbm[server]' ({exc})",
            file=sys.stderr,
        )
        return 1  # an expected error, not a usage error
    try:
        token = _read_token(args.token_file) if args.token_file is not None else None
        service.check_exposure(args.host, token)
    except (OSError, ValueError) as exc:
        print(f"byrondbm serve: {exc}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"serving {args.path} on {format_address(args.host, port)}", flush=True)

    try:
        service.serve(
            args.path,
            args.host,
            args.port,
            token=token,
            flag=args.flag,
            grace=args.grace,
            workers=args.workers,
            ready=ready,
        )
    except error as exc:
        print(f"byrondbm serve: {exc}", file=sys.stderr)
        return 1
    print(f"byrondbm serve: stopped, {args.path} closed", file=sys.stderr)
    return 0
