"""The client: a remote database that is the same `MutableMapping` as `byrondbm.Database`.

`connect("host:port", token=None)` returns a `Client`. Code written for `byrondbm.open()` runs unchanged:
`[]`, `get`, `in`, `del`, `len`, iteration in key order, `keys()` (a list), `scan(...)`, `batch()`,
`stats()`, `sync()`, `close()`, `with`. Keys and values may be bytes, bytearray, memoryview or str (UTF-8);
reads return bytes, so `shelve.Shelf(connect(...))` works.

Cost: each mapping call is one round trip; `batch()` is one round trip for all its mutations; a scan (and
iterating `keys()`, `items()`, `values()`) is one streamed call, entries arriving in chunks. The mix-ins built
from several calls (`pop`, `setdefault`, `popitem`, `update`, `clear`) are not atomic against other clients;
use `batch()` for that.

Errors come back as the embedded database raises them: NOT_FOUND -> KeyError, INVALID_ARGUMENT -> TypeError,
INTERNAL with corruption -> CorruptionError, every other status (closed or read-only database, refused token,
oversized message, server gone) -> `byrondbm.error`, chained to the `grpc.RpcError` whose `code()` says which.
A Client may be shared by threads (gRPC channels are thread-safe).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from types import TracebackType
from typing import Any, NoReturn

import grpc
from typing_extensions import Self

from byrondbm.mapping import Batch, Key, ScanViews, to_bytes
from byrondbm.errors import CorruptionError, error
from byrondbm.server import (
    AUTH_METADATA_KEY,
    ERROR_KIND_METADATA_KEY,
    MAX_MESSAGE_BYTES,
)
from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server import byrondbm_pb2_grpc as pb_grpc

_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


def exception_for(exc: grpc.RpcError, key: object = None) -> Exception:
    """The exception the embedded database would have raised for a failed call (see the module doc).

    `key` is the key of a point operation, as the caller gave it: NOT_FOUND then becomes `KeyError(key)`.
    """
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or code.name
    if code is grpc.StatusCode.NOT_FOUND:
        return KeyError(key) if key is not None else KeyError(details)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return TypeError(details)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return error(details)
    trailing = dict(exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else {}
    if code is grpc.StatusCode.INTERNAL and trailing.get(ERROR_KIND_METADATA_KEY) == "corruption":
        return CorruptionError(details)
    return error(f"{code.name}: {details}")


def _raise(exc: grpc.RpcError, key: object = None) -> NoReturn:
    mapped = exception_for(exc, key)
    if isinstance(mapped, KeyError):
        raise mapped from None  # the missing key says it all
    raise mapped from exc


class Client(ScanViews, MutableMapping):  # type: ignore[type-arg,misc]  # keys/values in: Key; out: bytes
    """A database served by `byrondbm serve`, as a mapping of bytes to bytes. Made by `connect()`."""

    def __init__(self, channel: grpc.Channel, target: str, token: str | None) -> None:
        self._channel = channel
        self._stub = pb_grpc.ByronDBMStub(channel)
        self._target = target
        self._metadata = ((AUTH_METADATA_KEY, f"Bearer {token}"),) if token is not None else None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<byrondbm.server.Client {self._target} ({state})>"

    def _call(self, method: Callable[..., Any], request: Any, key: object = None) -> Any:
        if self._closed:
            raise error(f"client for {self._target} is closed")
        try:
            return method(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            _raise(exc, key)

    # The mapping

    def __getitem__(self, key: Key) -> bytes:
        return self._call(self._stub.Get, pb.KeyRequest(key=to_bytes(key)), key).value

    def __setitem__(self, key: Key, value: Key) -> None:
        request = pb.PutRequest(key=to_bytes(key), value=to_bytes(value, "value"))
        self._call(self._stub.Put, request)

    def __delitem__(self, key: Key) -> None:
        self._call(self._stub.Delete, pb.KeyRequest(key=to_bytes(key)), key)

    def __contains__(self, key: object) -> bool:
        return bool(self._call(self._stub.Contains, pb.KeyRequest(key=to_bytes(key))).value)

    def __len__(self) -> int:
        return int(self._call(self._stub.Len, pb.Empty()).count)

    def clear(self) -> None:
        """Deletes every key seen by one scan, in batches of 1024 (not atomic: keys written meanwhile stay)."""
        keys = self.scan(keys_only=True)
        while True:
            chunk = [pb.Mutation(kind=pb.Mutation.DELETE, key=k) for k, _ in zip(keys, range(1024))]
            if not chunk:
                return
            self._call(self._stub.Batch, pb.BatchRequest(mutations=chunk))

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
        if self._closed:
            raise error(f"client for {self._target} is closed")
        if limit == 0:
            return iter(())
        call = self._stub.Scan(request, metadata=self._metadata)
        call.initial_metadata()  # returns once the snapshot is taken (or the call failed)
        if call.done() and call.code() is not grpc.StatusCode.OK:
            call.cancel()
            _raise(call)  # type: ignore[arg-type]  # the finished call is the RpcError
        return _stream(call, keys_only)

    def batch(self) -> Batch:
        """`with client.batch() as b: b[k] = v; del b[k2]` - sent as one atomic call when the block exits
        without an exception; nothing is sent otherwise. Deleting an absent key is not an error."""
        return Batch(self._send_batch)

    def _send_batch(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        if ops:
            mutations = [pb.Mutation(kind=pb.Mutation.DELETE, key=k) if v is None
                         else pb.Mutation(kind=pb.Mutation.PUT, key=k, value=v) for k, v in ops]
            self._call(self._stub.Batch, pb.BatchRequest(mutations=mutations))

    def stats(self) -> dict[str, Any]:
        """The server's `db.stats()`."""
        result: dict[str, Any] = json.loads(self._call(self._stub.Stats, pb.Empty()).json)
        return result

    def sync(self) -> None:
        """Everything written so far is durable on the server's disk when this returns."""
        self._call(self._stub.Sync, pb.Empty())

    def close(self) -> None:
        """Closes the connection (idempotent); the server and its database keep running."""
        if not self._closed:
            self._closed = True
            self._channel.close()

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
        _raise(exc)
    finally:
        call.cancel()  # a no-op once the stream ended; frees the server when the scan is abandoned


def connect(target: str, token: str | None = None, *, timeout: float = 10.0) -> Client:
    """Connects to a `byrondbm serve` at `target` ("host:port"), waiting up to `timeout` seconds for it to
    answer; raises `byrondbm.error` if it does not. `token` is the server's token, if it has one."""
    channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise error(f"cannot connect to {target}: no server answered within {timeout:g} s") from None
    return Client(channel, target, token)
