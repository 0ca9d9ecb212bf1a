"""The gRPC service: one open `byrondbm.Database` served on `grpc.aio`.

Every database call runs in a thread pool (the Database is thread-safe), never on the event loop, so a slow
scan or a compaction stall in one call does not hold up the others. A scan streams chunks of at most
`SCAN_CHUNK_ENTRIES` entries or about `SCAN_CHUNK_BYTES` bytes per message, each chunk read in the pool, so
its memory is bounded whatever the range.

Errors become status codes (see byrondbm.proto): KeyError -> NOT_FOUND, TypeError/ValueError ->
INVALID_ARGUMENT, CorruptionError -> INTERNAL (trailing metadata "byrondbm-error: corruption"), any other
byrondbm.error (closed, read-only, locked) -> FAILED_PRECONDITION, another OSError -> INTERNAL. Anything
else is a bug: gRPC logs it and the caller gets UNKNOWN.

Embedding:
- `serve(path, ...)` opens the database, serves it until SIGINT/SIGTERM, stops gracefully, closes it.
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

from byrondbm.errors import CorruptionError, error
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

SCAN_CHUNK_ENTRIES = 1024
SCAN_CHUNK_BYTES = 1024 * 1024

_CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Without this, Linux lets a second server bind the same port and steal half the connections.
    ("grpc.so_reuseport", 0),
)

T = TypeVar("T")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status code and error kind a database exception travels as; None for an unexpected one."""
    if isinstance(exc, CorruptionError):
        return grpc.StatusCode.INTERNAL, "corruption"
    if isinstance(exc, error):
        return grpc.StatusCode.FAILED_PRECONDITION, "error"
    if isinstance(exc, KeyError):
        return grpc.StatusCode.NOT_FOUND, "key"
    if isinstance(exc, (TypeError, ValueError)):
        return grpc.StatusCode.INVALID_ARGUMENT, "type"
    if isinstance(exc, OSError):
        return grpc.StatusCode.INTERNAL, "error"
    return None


def _details(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return f"no such key: {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


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


def _apply_batch(db: Any, mutations: Sequence[pb.Mutation]) -> None:
    """Applies the mutations as one atomic batch; a mutation without a kind raises (nothing applied)."""
    with db.batch() as batch:
        for index, mutation in enumerate(mutations):
            if mutation.kind == pb.Mutation.PUT:
                batch.put(mutation.key, mutation.value)
            elif mutation.kind == pb.Mutation.DELETE:
                batch.delete(mutation.key)
            else:
                raise TypeError(f"mutation {index} has no kind (PUT or DELETE)")


class _Servicer(pb_grpc.ByronDBMServicer):
    """Translates each RPC into one Database call run in the pool."""

    def __init__(self, db: Any, pool: ThreadPoolExecutor) -> None:
        self._db = db
        self._pool = pool

    async def _run(self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except Exception as exc:
            mapped = status_for(exc)
            if mapped is None:
                raise
            await _abort(context, mapped, _details(exc))

    async def Get(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.ValueReply:
        return pb.ValueReply(value=await self._run(context, self._db.__getitem__, request.key))

    async def Put(self, request: pb.PutRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, self._db.__setitem__, request.key, request.value)
        return pb.Empty()

    async def Delete(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, self._db.__delitem__, request.key)
        return pb.Empty()

    async def Contains(self, request: pb.KeyRequest, context: grpc.aio.ServicerContext) -> pb.BoolReply:
        return pb.BoolReply(value=await self._run(context, self._db.__contains__, request.key))

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
        await self._run(context, _apply_batch, self._db, request.mutations)
        return pb.Empty()

    async def Len(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.CountReply:
        return pb.CountReply(count=await self._run(context, len, self._db))

    async def Stats(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.StatsReply:
        text = await self._run(context, lambda: json.dumps(self._db.stats()))
        return pb.StatsReply(json=text)

    async def Sync(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Empty:
        await self._run(context, self._db.sync)
        return pb.Empty()


async def _abort(context: grpc.aio.ServicerContext, mapped: tuple[grpc.StatusCode, str], details: str) -> NoReturn:
    code, kind = mapped
    await context.abort(code, details, trailing_metadata=((ERROR_KIND_METADATA_KEY, kind),))
    raise AssertionError("context.abort returned")  # it always raises


class _TokenCheck(grpc.aio.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call whose metadata lacks ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.unary_stream_rpc_method_handler(deny)

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


class Server:
    """A running server for one open database. Made by `start_server`; stop it with `stop()`."""

    def __init__(self, server: grpc.aio.Server, pool: ThreadPoolExecutor, port: int) -> None:
        self._server = server
        self._pool = pool
        self.port = port
        """The TCP port bound (useful when asked for port 0)."""

    async def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """Stops accepting calls, lets calls in flight finish for `grace` seconds, cancels the rest, then
        waits for database calls still running in the pool. The database stays open (its owner closes it)."""
        await self._server.stop(grace)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def start_server(
    db: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Server:
    """Serves the open database `db` on host:port (0 picks a free port) from the running event loop.

    Raises ValueError for a non-loopback host without a token (see `check_exposure`) and
    `byrondbm.error` when the address cannot be bound.
    """
    check_exposure(host, token)
    interceptors = [_TokenCheck(token)] if token is not None else []
    server = grpc.aio.server(interceptors=interceptors, options=_CHANNEL_OPTIONS)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="byrondbm-serve")
    pb_grpc.add_ByronDBMServicer_to_server(_Servicer(db, pool), server)
    address = format_address(host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.5x raises; older versions returned 0
        bound = 0
    if bound == 0:
        pool.shutdown()
        raise error(f"cannot bind {address}: address in use or not available")
    await server.start()
    return Server(server, pool, bound)


def serve(
    path: str | bytes | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    flag: str = "c",
    grace: float = DEFAULT_GRACE,
    workers: int = DEFAULT_WORKERS,
    ready: Callable[[int], None] | None = None,
    **options: Any,
) -> None:
    """Opens the database at `path` (`byrondbm.open(path, flag, **options)`) and serves it until SIGINT or
    SIGTERM, then stops gracefully (see `Server.stop`) and closes the database.

    `ready(port)` is called once the port is bound. Handles signals, so call it from the main thread.
    Raises ValueError for a non-loopback host without a token, before touching the database.
    """
    check_exposure(host, token)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() installs signal handlers: call it from the main thread, or use start_server()")
    import byrondbm

    db = byrondbm.open(path, flag, **options)
    try:
        asyncio.run(_serve_until_signal(db, host, port, token, grace, workers, ready))
    finally:
        db.close()


async def _serve_until_signal(
    db: Any,
    host: str,
    port: int,
    token: str | None,
    grace: float,
    workers: int,
    ready: Callable[[int], None] | None,
) -> None:
    server = await start_server(db, host, port, token=token, workers=workers)
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
