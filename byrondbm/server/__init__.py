"""byrondbm over the network: a gRPC server (`grpc.aio`) and a client that is the same mapping.

This is the optional extra `byrondbm[server]` (grpcio, protobuf). Importing this package does not import
grpc: `serve`, `start_server`, `Server`, `connect` and `Client` are loaded on first use, so the command
line's `--help` works on a machine without the extra.

- `serve(path, host="127.0.0.1", port=0, *, token=None, tls_cert=None, tls_key=None, ...)` serves a
  database until SIGINT/SIGTERM.
- `start_server(db, ...)` (async) embeds a server for an open database in a running event loop.
- `connect("host:port", token=None, *, tls_ca=None)` returns a `Client`, a `MutableMapping` with `get_many`,
  `scan`, `batch`, `stats`, `sync` and `close` like `byrondbm.Database`, whose point requests share one
  session stream.

The constants below are the wire conventions both sides share.
"""

from __future__ import annotations

import ipaddress
from typing import Any

MAX_MESSAGE_BYTES = 65 * 1024 * 1024
"""Largest message either side sends or accepts: a 64 MiB value plus 1 MiB for its key and framing.
A larger request is refused with RESOURCE_EXHAUSTED and the server keeps running."""

AUTH_METADATA_KEY = "authorization"
"""Metadata key carrying ``Bearer <token>`` on every call when the server has a token."""

ERROR_KIND_METADATA_KEY = "byrondbm-error"
"""Trailing metadata naming the exception class behind a failed call (``corruption`` or ``error``),
so the client can raise `CorruptionError` rather than a plain `error`."""

DEFAULT_PORT = 50051
"""Port of the command line's `serve` when --port is not given (the customary gRPC port)."""

DEFAULT_GRACE = 5.0
"""Seconds calls in flight may run on after a stop is asked for, before they are cancelled."""

DEFAULT_WORKERS = 8
"""Threads running database calls for the server."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1); False for names and 0.0.0.0."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets as gRPC targets want it."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


_LAZY = {
    "serve": "byrondbm.server.service",
    "start_server": "byrondbm.server.service",
    "Server": "byrondbm.server.service",
    "connect": "byrondbm.server.client",
    "Client": "byrondbm.server.client",
}


def __getattr__(name: str) -> Any:
    # PEP 562: import grpc only when the server or the client is actually used.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AUTH_METADATA_KEY",
    "DEFAULT_GRACE",
    "DEFAULT_PORT",
    "DEFAULT_WORKERS",
    "ERROR_KIND_METADATA_KEY",
    "MAX_MESSAGE_BYTES",
    "Client",
    "Server",
    "connect",
    "format_address",
    "is_loopback",
    "serve",
    "start_server",
]
