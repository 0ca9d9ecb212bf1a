"""The client: a remote database that is the same `MutableMapping` as `byrondbm.Database`.

`connect("host:port", token=None, *, tls_ca=None)` returns a `Client`. Code written for `byrondbm.open()` runs
unchanged: `[]`, `get`, `get_many`, `in`, `del`, `len`, iteration in key order, `keys()` (a list), `scan(...)`,
`batch()`, `stats()`, `sync()`, `close()`, `with`. Keys and values may be bytes, bytearray, memoryview or str
(UTF-8); reads return bytes, so `shelve.Shelf(connect(...))` works.

Cost: point calls, `get_many`, `len` and `batch()` travel on one long-lived `Session` stream that every thread
of the client shares (see `multiplex`): no unary round trip each, and requests waiting at the same moment go
in one message. A request over `REQUEST_PACK_BYTES` (a large value or batch) goes as its own unary call, so
an oversized one fails alone. A scan (and iterating `keys()`, `items()`, `values()`) is one streamed call,
entries arriving in chunks; `stats()` and `sync()` are unary calls. The mix-ins built from several calls
(`pop`, `setdefault`, `popitem`, `update`, `clear`) are not atomic against other clients; use `batch()`.

Errors come back as the embedded database raises them (see `status`): NOT_FOUND -> KeyError,
INVALID_ARGUMENT -> TypeError, INTERNAL with corruption -> CorruptionError, every other status (closed or
read-only database, refused token, oversized message, server gone) -> `byrondbm.error`, chained to the
`grpc.RpcError` whose `code()` says which. When the stream breaks, the calls waiting on it raise
`byrondbm.error` and the next call opens a new stream. A Client may be shared by threads.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from types import TracebackType
from typing import Any, Optional

import grpc
from typing_extensions import Self

from byrondbm.mapping import Batch, Key, ScanViews, to_bytes
from byrondbm.errors import error
from byrondbm.server import AUTH_METADATA_KEY, MAX_MESSAGE_BYTES
from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server import byrondbm_pb2_grpc as pb_grpc
from byrondbm.server.multiplex import REQUEST_PACK_BYTES, SessionStream
from byrondbm.server.status import raise_for

_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


class Client(ScanViews, MutableMapping):  # type: ignore[type-arg,misc]  # keys/values in: Key; out: bytes
    """A database served by `byrondbm serve`, as a mapping of bytes to bytes. Made by `connect()`."""

    def __init__(self, channel: grpc.Channel, target: str, token: str | None) -> None:
        self._channel = channel
        self._stub = pb_grpc.ByronDBMStub(channel)
        self._target = target
        self._metadata = ((AUTH_METADATA_KEY, f"Bearer {token}"),) if token is not None else None
        self._closed = False
        self._stream: SessionStream | None = None
        self._stream_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<byrondbm.server.Client {self._target} ({state})>"

    def _check_open(self) -> None:
        if self._closed:
            raise error(f"client for {self._target} is closed")

    def _call(self, method: Callable[..., Any], request: Any, key: object = None) -> Any:
        """One unary call."""
        self._check_open()
        try:
            return method(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise_for(exc, key)

    def _session(self) -> SessionStream:
        """The open session stream, a new one if there is none or it broke."""
        stream = self._stream
        if stream is None or stream.failure is not None:
            with self._stream_lock:
                self._check_open()
                stream = self._stream
                if stream is None or stream.failure is not None:
                    stream = self._stream = SessionStream(self._stub, self._metadata)
        return stream

    def _request(self, request: pb.Request, size: int, key: object = None) -> pb.Reply:
        """One request on the session stream."""
        self._check_open()
        try:
            return self._session().call(request, size)
        except grpc.RpcError as exc:
            raise_for(exc, key)

    # The mapping

    def __getitem__(self, key: Key) -> bytes:
        k = key if type(key) is bytes else to_bytes(key)
        value: bytes = self._request(pb.Request(get=pb.KeyRequest(key=k)), len(k), key).value
        return value

    def get_many(self, keys: Iterable[Key]) -> list[Optional[bytes]]:
        """The values of `keys`, in their order, `None` for an absent key: one request for all of them."""
        wanted = [k if type(k) is bytes else to_bytes(k) for k in keys]
        size = sum(map(len, wanted))
        if size > REQUEST_PACK_BYTES:
            reply = self._call(self._stub.GetMany, pb.KeysRequest(keys=wanted))
        else:
            reply = self._request(pb.Request(get_many=pb.KeysRequest(keys=wanted)), size).values
        values: list[Optional[bytes]] = list(reply.values)
        for index in reply.absent:
            values[index] = None
        return values

    def __setitem__(self, key: Key, value: Key) -> None:
        put = pb.PutRequest(key=to_bytes(key), value=to_bytes(value, "value"))
        size = len(put.key) + len(put.value)
        if size > REQUEST_PACK_BYTES:
            self._call(self._stub.Put, put)
        else:
            self._request(pb.Request(put=put), size)

    def __delitem__(self, key: Key) -> None:
        k = to_bytes(key)
        self._request(pb.Request(delete=pb.KeyRequest(key=k)), len(k), key)

    def __contains__(self, key: object) -> bool:
        k = to_bytes(key)
        return self._request(pb.Request(contains=pb.KeyRequest(key=k)), len(k)).found

    def __len__(self) -> int:
        return int(self._request(pb.Request(len=pb.Empty()), 0).count)

    def clear(self) -> None:
        """Deletes every key seen by one scan, in batches of 1024 (not atomic: keys written meanwhile stay)."""
        keys = self.scan(keys_only=True)
        while True:
            chunk: list[tuple[bytes, bytes | None]] = [(k, None) for k, _ in zip(keys, range(1024))]
            if not chunk:
                return
            self._send_batch(chunk)

    # Beyond dbm

    def scan(
        self,
        start: Key | None = None,
        stop: Key | None = None,
        *,
        prefix: Key | None = None,
        reverse: bool = False,
        keys_only: bool = False,
        limit: int | None = None,
    ) -> Iterator[Any]:
        """`(key, value)` pairs (keys with `keys_only`) of [start, stop) with `prefix`, in key order (descending
        with `reverse`), at most `limit` of them. As `Database.scan`: it sees the database as it was when
        `scan()` was called (this waits for the server to take its snapshot); later writes are not seen.
        Abandoning the iterator cancels the stream."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        request = pb.ScanRequest(reverse=reverse, keys_only=keys_only, limit=limit or 0)
        for name, bound in (("start", start), ("stop", stop), ("prefix", prefix)):
            if bound is not None:
                setattr(request, name, to_bytes(bound, name))
        self._check_open()
        if limit == 0:
            return iter(())
        call = self._stub.Scan(request, metadata=self._metadata)
        call.initial_metadata()  # returns once the snapshot is taken (or the call failed)
        if call.done() and call.code() is not grpc.StatusCode.OK:
            call.cancel()
            raise_for(call)  # type: ignore[arg-type]  # the finished call is the RpcError
        return _stream(call, keys_only)

    def batch(self) -> Batch:
        """`with client.batch() as b: b[k] = v; del b[k2]` - sent as one atomic call when the block exits
        without an exception; nothing is sent otherwise. Deleting an absent key is not an error."""
        return Batch(self._send_batch)

    def _send_batch(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        if not ops:
            return
        mutations = [
            pb.Mutation(kind=pb.Mutation.DELETE, key=k) if v is None else pb.Mutation(kind=pb.Mutation.PUT, key=k, value=v)
            for k, v in ops
        ]
        batch = pb.BatchRequest(mutations=mutations)
        size = sum(len(k) + (0 if v is None else len(v)) for k, v in ops)
        if size > REQUEST_PACK_BYTES:
            self._call(self._stub.Batch, batch)
        else:
            self._request(pb.Request(batch=batch), size)

    def stats(self) -> dict[str, Any]:
        """The server's `db.stats()`."""
        result: dict[str, Any] = json.loads(self._call(self._stub.Stats, pb.Empty()).json)
        return result

    def sync(self) -> None:
        """Everything written so far is durable on the server's disk when this returns."""
        self._call(self._stub.Sync, pb.Empty())

    def close(self) -> None:
        """Closes the connection (idempotent); the server and its database keep running."""
        with self._stream_lock:
            if self._closed:
                return
            self._closed = True
            if self._stream is not None:
                self._stream.close()
        self._channel.close()

    def __del__(self) -> None:
        # Dropped without close(): the stream's threads would otherwise keep the channel, and themselves, alive.
        if not getattr(self, "_closed", True):
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _stream(call: Any, keys_only: bool) -> Iterator[Any]:
    try:
        for reply in call:
            if keys_only:
                yield from [entry.key for entry in reply.entries]
            else:
                yield from [(entry.key, entry.value) for entry in reply.entries]
    except grpc.RpcError as exc:
        raise_for(exc)
    finally:
        call.cancel()  # a no-op once the stream ended; frees the server when the scan is abandoned


def connect(
    target: str,
    token: str | None = None,
    *,
    timeout: float = 10.0,
    tls_ca: str | bytes | os.PathLike[str] | None = None,
) -> Client:
    """Connects to a `byrondbm serve` at `target` ("host:port"), waiting up to `timeout` seconds for it to
    answer; raises `byrondbm.error` if it does not. `token` is the server's token, if it has one.

    `tls_ca` is the path of a PEM file of the certificate authorities to trust (the server's own certificate,
    if self-signed): the connection is then TLS and the server's certificate must match the host in `target`.
    """
    if tls_ca is None:
        channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    else:
        try:
            with open(tls_ca, "rb") as f:
                roots = f.read()
        except OSError as exc:
            raise error(exc.errno, f"cannot read the TLS certificate authorities: {exc.strerror}", tls_ca) from None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        channel = grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise error(f"cannot connect to {target}: no server answered within {timeout:g} s") from None
    return Client(channel, target, token)
