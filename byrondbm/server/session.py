"""The server side of the `Session` stream: many tagged requests on one call, answered in any order.

One task reads messages; each request that cannot block (see `ops.may_block`) is answered on the spot, the
others of one message go to the thread pool together (one hand-off per message, not per request). Replies
are written by whoever produced them (the reader, or the task awaiting a pool job) unless a write is already
under way, in which case that writer sends them too: every reply waiting goes in one message, so under load
each message carries many replies and gRPC's per-message cost is shared, and no task switch stands between a
reply and its write. A request's failure is an error reply; the stream goes on.

Stopping: when the server's `stopping` event is set, the session stops reading, waits for the requests it
has read, sends their replies and ends the call with UNAVAILABLE, so a graceful stop neither waits out its
grace period on idle sessions nor drops a reply to a write that was applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server.ops import error_reply, execute_all, may_block

REPLY_PACK_BYTES = 1024 * 1024
"""A reply message holds the replies waiting up to about this many bytes (one larger reply goes alone)."""

_log = logging.getLogger("byrondbm.server")


def _size(reply: pb.Reply) -> int:
    result = reply.WhichOneof("result")
    if result == "value":
        return len(reply.value)
    if result == "values":
        return sum(map(len, reply.values.values))
    return 0


def _answer(db: Any, requests: Sequence[pb.Request]) -> list[pb.Reply]:
    """`ops.execute_all`, with a bug (an unexpected exception) logged and answered UNKNOWN."""
    try:
        return execute_all(db, requests)
    except Exception as exc:  # noqa: BLE001  # a bug: the unary path lets gRPC log it; here we do
        _log.exception("session requests failed")
        return [error_reply(r.id, grpc.StatusCode.UNKNOWN.value[0], repr(exc), "bug") for r in requests]


class Session:
    """One `Session` call: reads requests, runs them, writes the replies. `run()` serves it to its end."""

    def __init__(
        self, db: Any, pool: ThreadPoolExecutor, stopping: asyncio.Event, context: grpc.aio.ServicerContext
    ) -> None:
        self._db = db
        self._pool = pool
        self._stopping = stopping
        self._context = context
        self._outbox: list[pb.Reply] = []
        self._writing = False
        self._over = False  # the call has ended (or its handler was cancelled): nothing more is written
        self._in_read = False  # the reader waits for a message (so cancelling it loses nothing read)
        self._stop_reading = False
        self._in_pool: set[asyncio.Future[None]] = set()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait((reader, stop), return_when=asyncio.FIRST_COMPLETED)
            stopping = stop.done()
            # Requests not yet read are not answered (the client raises for them); a reader busy writing
            # replies finishes that first.
            self._stop_reading = True
            if self._in_read:
                reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if self._in_pool:
                await asyncio.wait(self._in_pool)  # their replies are written as they finish
            await self._flush()  # the reader may have been cancelled with replies waiting
        finally:
            self._over = True  # pool jobs still running after a cancellation must not write
            stop.cancel()
            reader.cancel()
        if stopping:
            await self._context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")

    async def _read(self) -> None:
        read = self._context.read
        while not self._stop_reading:
            self._in_read = True
            try:
                message = await read()
            finally:
                self._in_read = False
            if message is grpc.aio.EOF:  # the client closed its side: finish what was asked
                return
            inline: list[pb.Request] = []
            blocking: list[pb.Request] = []
            for request in message.requests:
                (blocking if may_block(request) else inline).append(request)
            if inline:
                self._outbox.extend(_answer(self._db, inline))
            if blocking:
                self._run_in_pool(blocking)
            await self._flush()

    def _run_in_pool(self, requests: list[pb.Request]) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._pool, _answer, self._db, requests)
        done = asyncio.ensure_future(self._deliver(future))
        self._in_pool.add(done)
        done.add_done_callback(self._in_pool.discard)

    async def _deliver(self, replies: asyncio.Future[list[pb.Reply]]) -> None:
        done = await replies  # before touching the outbox, which a writer may swap meanwhile
        self._outbox.extend(done)
        await self._flush()

    async def _flush(self) -> None:
        """Writes every reply waiting, unless another task is writing (it will send them)."""
        if self._writing or self._over:
            return
        self._writing = True
        try:
            while self._outbox:
                await self._context.write(pb.SessionReply(replies=self._take()))
        except Exception:
            if not (self._over or self._context.cancelled() or self._context.done()):
                raise
            self._outbox = []  # the client cancelled or went away: nobody is left to answer
        finally:
            self._writing = False

    def _take(self) -> list[pb.Reply]:
        """The replies waiting, up to about `REPLY_PACK_BYTES` of them (always at least one)."""
        outbox = self._outbox
        size = 0
        for count, reply in enumerate(outbox, 1):
            size += _size(reply)
            if size >= REPLY_PACK_BYTES:
                break
        else:
            self._outbox = []
            return outbox
        self._outbox = outbox[count:]
        return outbox[:count]
