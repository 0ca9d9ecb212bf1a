"""The gRPC service: one open `byrondbm.Database` served on `grpc.aio`.

Database calls that may block (writes, `len`, scans, stats, sync) run in a thread pool (the Database is
thread-safe), so a slow scan or a compaction stall in one call does not hold up the others; point reads run
inline on the event loop, where they cost less than the hand-off (see `ops`). A scan streams chunks of at most
`SCAN_CHUNK_ENTRIES` entries or about `SCAN_CHUNK_BYTES` bytes per message, each chunk read in the pool, so
its memory is bounded whatever the range. The `Session` stream is served by `session.Session`.

Errors become status codes as `status` maps them (trailing metadata "byrondbm-error: corruption" for a
CorruptionError). Anything else is a bug: gRPC logs it and the caller gets UNKNOWN.

Embedding:
- `serve(path, ...)` binds the port, then opens the database, serves it until SIGINT/SIGTERM, stops
  gracefully and closes it.
- `await start_server(db, ...)` serves an already open database from a running event loop and returns a
  `Server` to `stop()`; the caller keeps owning (and closes) the database.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

import grpc

from byrondbm.database import open_database
from byrondbm.errors import error
from byrondbm.server import (
    AUTH_METADATA_KEY,
    DEFAULT_GRACE,
    DEFAULT_WORKERS,
    ERROR_KIND_METADATA_KEY,
    MAX_MESSAGE_BYTES,
    format_address,
    is_loopback,
)
from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server import byrondbm_pb2_grpc as pb_grpc
from byrondbm.server.ops import INLINE_KEYS, apply_batch, values_reply
from byrondbm.server.session import Session
from byrondbm.server.status import details_for, status_for

SCAN_CHUNK_ENTRIES = 1024
SCAN_CHUNK_BYTES = 1024 * 1024

_CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Without this, Linux lets a second server bind the same port and steal half the connections.
    ("grpc.so_reuseport", 0),
)

T = TypeVar("T")


def _take(entries: Iterator[Any], keys_only: bool) -> tuple[list[pb.Entry], bool]:
    """The next chunk of a scan, and whether the scan is exhausted. Runs in the pool."""
    chunk: list[pb.Entry] = []
    size = 0
    for item in entries:
        if keys_only:
            chunk.append(pb.Entry(key=item))
            size += len(item)
        else:
            key, value = item
            chunk.append(pb.Entry(key=key, value=value))
            size += len(key) + len(value)
        if len(chunk) >= SCAN_CHUNK_ENTRIES or size >= SCAN_CHUNK_BYTES:
            return chunk, False
    return chunk, True


class _Servicer(pb_grpc.ByronDBMServicer):
    """Translates each RPC into Database calls: point reads inline, the rest in the pool (see `ops`)."""

    def __init__(self, db: Any, pool: ThreadPoolExecutor) -> None:
        self._db = db
        self._pool = pool
        self.stopping = asyncio.Event()
        """Set by `Server.stop`: sessions then finish what they have read and end."""

    async def _run(self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except Exception as exc:
            await _abort_for(context, exc)

    async def Get(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.ValueReply:
        try:
            return pb.ValueReply(value=self._db[request.key])
        except Exception as exc:
            await _abort_for(context, exc)

    async def Put(self, request: pb.PutRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, self._db.__setitem__, request.key, request.value)
        return pb.Empty()

    async def Delete(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, self._db.__delitem__, request.key)
        return pb.Empty()

    async def Contains(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.BoolReply:
        try:
            return pb.BoolReply(value=request.key in self._db)
        except Exception as exc:
            await _abort_for(context, exc)

    async def GetMany(self, request: pb.KeysRequest, context: grpc.aio.ServicerContext) -> pb.ValuesReply:
        if len(request.keys) > INLINE_KEYS:
            return await self._run(context, values_reply, self._db, request.keys)
        try:
            return values_reply(self._db, request.keys)
        except Exception as exc:
            await _abort_for(context, exc)

    async def Scan(self, request: pb.ScanRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ScanReply]:
        def bound(name: str) -> bytes | None:
            return getattr(request, name) if request.HasField(name) else None

        def open_scan() -> Iterator[Any]:
            entries = self._db.scan(
                bound("start"),
                bound("stop"),
                prefix=bound("prefix"),
                reverse=request.reverse,
                keys_only=request.keys_only,
            )
            return itertools.islice(entries, request.limit) if request.limit else entries

        entries = await self._run(context, open_scan)
        # The scan's snapshot is taken: tell the client, whose scan() returns only now.
        await context.send_initial_metadata(())
        done = False
        while not done:
            chunk, done = await self._run(context, _take, entries, request.keys_only)
            if chunk:
                yield pb.ScanReply(entries=chunk)

    async def Batch(self, request: pb.BatchRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, apply_batch, self._db, request.mutations)
        return pb.Empty()

    async def Len(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.CountReply:
        return pb.CountReply(count=await self._run(context, len, self._db))

    async def Stats(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.StatsReply:
        text = await self._run(context, lambda: json.dumps(self._db.stats()))
        return pb.StatsReply(json=text)

    async def Sync(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, self._db.sync)
        return pb.Empty()

    async def Session(
        self, request_iterator: AsyncIterator[pb.SessionRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await Session(self._db, self._pool, self.stopping, context).run()


async def _abort_for(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    """Ends the call with the status `exc` travels as; re-raises an unexpected exception (gRPC logs it)."""
    mapped = status_for(exc)
    if mapped is None:
        raise exc
    code, kind = mapped
    await context.abort(code, details_for(exc), trailing_metadata=((ERROR_KIND_METADATA_KEY, kind),))
    raise AssertionError("context.abort returned")  # it always raises


class _TokenCheck(grpc.aio.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call whose metadata lacks ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.unary_stream_rpc_method_handler(deny)
        self._deny_bidi = grpc.stream_stream_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTH_METADATA_KEY:
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return handler
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED
            return None
        if handler.request_streaming:
            return self._deny_bidi
        return self._deny_stream if handler.response_streaming else self._deny_unary


def check_exposure(host: str, token: str | None) -> None:
    """Raises ValueError unless the server may start: a bad token, or a non-loopback host without one."""
    if token is not None and not (token and token.isascii() and token.isprintable() and " " not in token):
        raise ValueError("the token must be non-empty printable ASCII without spaces")
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host!r} without a token: it is not a loopback address, so anyone who "
            "can reach it could read and write the database (give a token with --token-file)"
        )


def check_tls(tls_cert: bytes | None, tls_key: bytes | None) -> None:
    """Raises ValueError unless both or neither are given and each looks like its PEM kind (whether the
    key matches the certificate shows only when the port is bound)."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate chain and its private key")
    if tls_cert is not None and b"-----BEGIN CERTIFICATE-----" not in tls_cert:
        raise ValueError("the TLS certificate is not PEM (no BEGIN CERTIFICATE line)")
    if tls_key is not None and b"PRIVATE KEY-----" not in tls_key:
        raise ValueError("the TLS key is not a PEM private key (no BEGIN ... PRIVATE KEY line)")


class Server:
    """A running server for one open database. Made by `start_server`; stop it with `stop()`."""

    def __init__(self, server: grpc.aio.Server, servicer: _Servicer, pool: ThreadPoolExecutor, port: int) -> None:
        self._server = server
        self._servicer = servicer
        self._pool = pool
        self.port = port
        """The TCP port bound (useful when asked for port 0)."""

    async def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """Stops accepting calls, ends the sessions once the requests they have read are answered, lets
        other calls in flight finish for `grace` seconds, cancels the rest, then waits for database calls
        still running in the pool. The database stays open (its owner closes it)."""
        self._servicer.stopping.set()
        await self._server.stop(grace)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


def _listen(
    host: str, port: int, token: str | None, tls_cert: bytes | None, tls_key: bytes | None
) -> tuple[grpc.aio.Server, int]:
    """A gRPC server (not started) bound to host:port, and the port bound; `byrondbm.error` if it cannot be."""
    check_exposure(host, token)
    check_tls(tls_cert, tls_key)
    interceptors = [_TokenCheck(token)] if token is not None else []
    server = grpc.aio.server(interceptors=interceptors, options=_CHANNEL_OPTIONS)
    address = format_address(host, port)
    try:
        if tls_cert is not None and tls_key is not None:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls_key, tls_cert)]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.5x raises; older versions returned 0
        bound = 0
    if bound == 0:
        why = "address in use or not available"
        if tls_cert is not None:
            why += ", or the TLS key does not match the certificate"
        raise error(f"cannot bind {address}: {why}")
    return server, bound


async def _start(server: grpc.aio.Server, port: int, db: Any, workers: int) -> Server:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="byrondbm-serve")
    servicer = _Servicer(db, pool)
    pb_grpc.add_ByronDBMServicer_to_server(servicer, server)
    await server.start()
    return Server(server, servicer, pool, port)


async def start_server(
    db: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    workers: int = DEFAULT_WORKERS,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
) -> Server:
    """Serves the open database `db` on host:port (0 picks a free port) from the running event loop.

    With `tls_cert` (a PEM certificate chain) and `tls_key` (its PEM private key) the port speaks TLS only.
    Raises ValueError for a non-loopback host without a token (see `check_exposure`) or malformed TLS
    material (see `check_tls`), and `byrondbm.error` when the address cannot be bound.
    """
    server, bound = _listen(host, port, token, tls_cert, tls_key)
    return await _start(server, bound, db, workers)


def serve(
    path: str | bytes | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    flag: str = "c",
    grace: float = DEFAULT_GRACE,
    workers: int = DEFAULT_WORKERS,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
    ready: Callable[[int], None] | None = None,
    **options: Any,
) -> None:
    """Binds host:port, then opens the database at `path` (`byrondbm.open(path, flag, **options)`) and
    serves it until SIGINT or SIGTERM, then stops gracefully (see `Server.stop`) and closes the database.

    `ready(port)` is called once serving. Handles signals, so call it from the main thread. Raises
    ValueError for a non-loopback host without a token or malformed TLS material, and `byrondbm.error` for a
    port that cannot be bound, in every case before touching the database.
    """
    check_exposure(host, token)
    check_tls(tls_cert, tls_key)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() installs signal handlers: call it from the main thread, or use start_server()")
    asyncio.run(_serve_until_signal(path, flag, options, host, port, token, tls_cert, tls_key, grace, workers, ready))


async def _serve_until_signal(
    path: str | bytes | os.PathLike[str],
    flag: str,
    options: dict[str, Any],
    host: str,
    port: int,
    token: str | None,
    tls_cert: bytes | None,
    tls_key: bytes | None,
    grace: float,
    workers: int,
    ready: Callable[[int], None] | None,
) -> None:
    listener, bound = _listen(host, port, token, tls_cert, tls_key)
    try:
        db = open_database(path, flag, **options)
    except BaseException:
        await listener.stop(None)  # frees the port
        raise
    try:
        server = await _start(listener, bound, db, workers)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, stopping.set)
        try:
            if ready is not None:
                ready(server.port)
            await stopping.wait()
        finally:
            # Repeated signals during the grace period are ignored; the period is bounded.
            await server.stop(grace)
            for signum in signals:
                loop.remove_signal_handler(signum)
    finally:
        db.close()
