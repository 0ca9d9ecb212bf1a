"""The `serve` subcommand: `byrondbm serve PATH [--host H] [--port N] [--token-file F] [--tls-cert C --tls-key K] ...`.

`add_arguments` fills the subcommand's parser (PATH included); `run` serves until SIGINT/SIGTERM and returns
the exit status: 0 after a graceful stop, 1 when the database cannot be opened or the address bound,
2 for a usage error (a non-loopback host without a token, an unreadable or empty token file, an unreadable
TLS file or only one of the two). Every failure is one line `byrondbm serve: error: MESSAGE` on stderr; gRPC's
own log lines stay off stderr unless `--verbose`. grpc is imported only inside `run`, so the rest of the
command line works without it.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain: serve TLS only (with --tls-key)")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument("--verbose", action="store_true", help="let gRPC's own log lines through to stderr")


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def _read_tls(cert: str | None, key: str | None) -> tuple[bytes | None, bytes | None]:
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        return None, None
    with open(cert, "rb") as c, open(key, "rb") as k:
        return c.read(), k.read()


def _fail(message: object) -> None:
    print(f"byrondbm serve: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if not args.verbose:
        # gRPC's C core reads this when it loads; its log lines (a failed bind, say) would otherwise reach
        # stderr beside our own one-line message. A value already in the environment wins.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        from byrondbm.server import service
    except ImportError as exc:
        _fail(f"the server needs the 'server' extra: pip install 'byrondbm[server]' ({exc})")
        return 1  # an expected error, not a usage error
    from byrondbm.cli import describe_error  # the one-line form every subcommand prints

    try:
        token = _read_token(args.token_file) if args.token_file is not None else None
        tls_cert, tls_key = _read_tls(args.tls_cert, args.tls_key)
        service.check_exposure(args.host, token)
        service.check_tls(tls_cert, tls_key)
    except OSError as exc:
        _fail(describe_error(exc))
        return 2
    except ValueError as exc:
        _fail(exc)
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
            tls_cert=tls_cert,
            tls_key=tls_key,
            ready=ready,
        )
    except error as exc:
        _fail(describe_error(exc))
        return 1
    print(f"byrondbm serve: stopped, {args.path} closed", file=sys.stderr)
    return 0
