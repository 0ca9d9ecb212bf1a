"""The client side of the `Session` stream: many threads' requests in flight on one call.

Why: a unary call pays gRPC's whole per-call machinery (about 0.5 ms of CPU on each side here); a message on
an open stream costs a fraction of that, and whatever requests are waiting when the stream is free to send
go together in one message, so several threads share each message's cost.

How: a caller tags its request with an id, queues it and blocks on a lock of its own; gRPC's request thread
drains the queue into messages of up to `REQUEST_PACK_BYTES`; a reader thread hands each reply to the waiter
with its id. Sending each request at once would put one request in most messages (the sender is faster than
the server), so the sender holds the next message until the previous one is answered, for at most
`HOLD_SECONDS`, and the requests arriving meanwhile go together (under load from four threads: about three
requests a message rather than 1.5). The bound keeps a slow request (a write waiting on an fsync or the
compactor) from holding up the others for longer; a lone thread never waits, its previous request being
answered before it asks again. Then, as the threads just answered ask again a moment later, the sender
waits up to `GATHER_SECONDS` for as many requests as the previous message carried (so it adapts to the
number of threads asking; scripts/server_load.py measured 10-40 % more gets and puts a second with it).

When the stream breaks (server gone or stopping, token refused), every waiter is woken with the
`grpc.RpcError` that ended it and the stream refuses further requests (`failure` is set): its owner starts a
new one. No thread ever waits on a stream that has ended.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server.status import RemoteError

REQUEST_PACK_BYTES = 1024 * 1024
"""A request message holds the requests waiting up to about this many bytes of keys and values."""

_PACK_COUNT = 1024
"""At most this many requests in one message, so one message never takes long to build or answer."""

HOLD_SECONDS = 0.002
"""Longest the sender holds a message for the previous one's replies: a few round trips of a loaded server."""

GATHER_SECONDS = 0.0002
"""Longest the sender waits for each further request it expects: a fraction of a round trip (~1 ms)."""


class _Waiter:
    """One request's reply slot: the caller blocks on a held lock that the reader releases."""

    __slots__ = ("_lock", "reply", "failure")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.reply: pb.Reply | None = None
        self.failure: grpc.RpcError | None = None

    def resolve(self, reply: pb.Reply | None, failure: grpc.RpcError | None) -> None:
        self.reply = reply
        self.failure = failure
        self._lock.release()

    def wait(self) -> pb.Reply:
        self._lock.acquire()
        if self.failure is not None:
            raise self.failure
        assert self.reply is not None
        return self.reply


class SessionStream:
    """One `Session` call shared by threads. `call()` sends a request and returns its reply."""

    def __init__(self, stub: Any, metadata: Sequence[tuple[str, str]] | None) -> None:
        self._outgoing: queue.SimpleQueue[tuple[pb.Request, int] | None] = queue.SimpleQueue()
        self._waiters: dict[int, _Waiter] = {}
        self._lock = threading.Lock()  # orders registering a waiter against the stream breaking
        self._ids = itertools.count(1)
        self.failure: grpc.RpcError | None = None
        """What ended the stream; None while it runs."""
        self._unanswered: set[int] = set()  # ids of the last message's requests not yet answered
        self._answered = threading.Event()  # set when _unanswered is empty: the next message may go
        self._answered.set()
        self._call = stub.Session(self._messages(), metadata=metadata)
        threading.Thread(target=self._read, name="byrondbm-session-reader", daemon=True).start()

    def call(self, request: pb.Request, size: int) -> pb.Reply:
        """Sends `request` (`size`: bytes of its keys and values) and waits for its reply.

        Raises `RemoteError` when the server answered with an error, and `failure`, the `grpc.RpcError` that
        ended the stream, when it ended before answering: the request may or may not have run.
        """
        waiter = _Waiter()
        with self._lock:
            if self.failure is not None:
                raise self.failure
            request.id = request_id = next(self._ids)
            self._waiters[request_id] = waiter
        self._outgoing.put((request, size))
        reply = waiter.wait()
        if reply.WhichOneof("result") == "error":
            status = reply.error
            raise RemoteError(status.code, status.details, status.kind)
        return reply

    def close(self) -> None:
        """Ends the request side: the server answers what it has, then ends the call."""
        self._outgoing.put(None)

    def _messages(self) -> Iterator[pb.SessionRequest]:
        """What gRPC's request thread sends: every request waiting, packed (ends at `None`)."""
        get, get_nowait = self._outgoing.get, self._outgoing.get_nowait
        expected = 1  # requests in the previous message: about as many threads as are asking
        while True:
            item = get()
            if item is None:
                return
            self._answered.wait(HOLD_SECONDS)
            request, size = item
            requests = [request]
            while size < REQUEST_PACK_BYTES and len(requests) < _PACK_COUNT:
                try:
                    item = get_nowait() if len(requests) >= expected else get(timeout=GATHER_SECONDS)
                except queue.Empty:
                    break
                if item is None:
                    yield pb.SessionRequest(requests=requests)
                    return
                requests.append(item[0])
                size += item[1]
            expected = len(requests)
            self._answered.clear()
            self._unanswered = {r.id for r in requests}
            yield pb.SessionRequest(requests=requests)

    def _read(self) -> None:
        # An end without an error status still leaves requests unanswered (a server that stops says so).
        failure: grpc.RpcError = RemoteError(grpc.StatusCode.UNAVAILABLE.value[0], "the server ended the session", "")
        waiters = self._waiters
        try:
            for message in self._call:
                unanswered = self._unanswered
                for reply in message.replies:
                    waiter = waiters.pop(reply.id, None)
                    if waiter is not None:
                        waiter.resolve(reply, None)
                    if reply.id in unanswered:
                        unanswered.discard(reply.id)
                        if not unanswered and unanswered is self._unanswered:
                            self._answered.set()
        except grpc.RpcError as exc:
            failure = exc
        with self._lock:
            self.failure = failure
            left, self._waiters = self._waiters, {}
        self._outgoing.put(None)  # ends gRPC's request thread, blocked in _messages
        self._answered.set()
        for waiter in left.values():
            waiter.resolve(None, failure)
