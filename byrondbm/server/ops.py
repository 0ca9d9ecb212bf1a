"""What each request does to the database, shared by the unary handlers and the session stream, and which
requests may block (those run in the thread pool; the others run inline on the event loop).

A point read is a lock-free lookup: on the development machine (loaded) a cached `get` costs about 20 us of
CPU inline and 190 us through the pool, the hand-off to a worker thread and back to the loop costing far more
than the lookup (and buying no parallelism under the GIL); at worst it does one `pread` of a block the
operating system most likely holds in its page cache. So point reads, and `get_many` of up to `INLINE_KEYS`
keys, run inline. Writes may wait for an fsync, for log rotation or for the compactor (backpressure), `len`
may resolve counts under the engine's state lock, and a longer `get_many` would hold the loop (and every
other client) for milliseconds: those go to the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server.status import details_for, status_for

INLINE_KEYS = 256
"""Largest `get_many` run inline. Beyond it the pool hand-off adds under 4 % to the lookups, and inline they
would stall the loop for more than a few milliseconds."""

_BLOCKING_OPS = frozenset({"put", "delete", "batch", "len"})


def may_block(request: pb.Request) -> bool:
    """True if `request` may wait on a lock, an fsync or the compactor, so it must not run on the loop."""
    op = request.WhichOneof("op")
    return op in _BLOCKING_OPS or (op == "get_many" and len(request.get_many.keys) > INLINE_KEYS)


def apply_batch(db: Any, mutations: Sequence[pb.Mutation]) -> None:
    """Applies the mutations as one atomic batch; a mutation without a kind raises (nothing applied)."""
    with db.batch() as batch:
        for index, mutation in enumerate(mutations):
            if mutation.kind == pb.Mutation.PUT:
                batch.put(mutation.key, mutation.value)
            elif mutation.kind == pb.Mutation.DELETE:
                batch.delete(mutation.key)
            else:
                raise TypeError(f"mutation {index} has no kind (PUT or DELETE)")


def values_reply(db: Any, keys: Sequence[bytes]) -> pb.ValuesReply:
    """`db.get_many(keys)` on the wire: the values in order, absent ones empty and listed by index."""
    values = db.get_many(keys)
    absent = [i for i, value in enumerate(values) if value is None]
    if absent:
        values = [b"" if value is None else value for value in values]
    return pb.ValuesReply(values=values, absent=absent)


def execute(db: Any, request: pb.Request) -> pb.Reply:
    """Runs one session request and returns its reply; a database exception becomes an error reply.

    Anything else is a bug and propagates (the session logs it and answers UNKNOWN).
    """
    op = request.WhichOneof("op")
    try:
        if op == "get":
            value = db.get(request.get.key)
            if value is None:
                raise KeyError(request.get.key)
            return pb.Reply(id=request.id, value=value)
        if op == "contains":
            return pb.Reply(id=request.id, found=request.contains.key in db)
        if op == "get_many":
            return pb.Reply(id=request.id, values=values_reply(db, request.get_many.keys))
        if op == "put":
            db[request.put.key] = request.put.value
        elif op == "delete":
            del db[request.delete.key]
        elif op == "batch":
            apply_batch(db, request.batch.mutations)
        elif op == "len":
            return pb.Reply(id=request.id, count=len(db))
        else:
            raise TypeError(f"request {request.id} has no operation")
        return pb.Reply(id=request.id, done=pb.Empty())
    except Exception as exc:
        mapped = status_for(exc)
        if mapped is None:
            raise
        code, kind = mapped
        return error_reply(request.id, code.value[0], details_for(exc), kind)


def execute_all(db: Any, requests: Sequence[pb.Request]) -> list[pb.Reply]:
    """`execute` for each request, except that two or more puts are written as one atomic batch: one log
    record and, in 's' mode, one fsync. They come from callers waiting at the same time, so any order and
    grouping of them is one the callers could have seen; if the batch fails, each put gets its error."""
    puts = [r for r in requests if r.WhichOneof("op") == "put"]
    if len(puts) < 2:
        return [execute(db, request) for request in requests]
    replies = [execute(db, request) for request in requests if request.WhichOneof("op") != "put"]
    try:
        with db.batch() as batch:
            for request in puts:
                batch.put(request.put.key, request.put.value)
    except Exception as exc:
        mapped = status_for(exc)
        if mapped is None:
            raise
        code, kind = mapped
        replies.extend(error_reply(r.id, code.value[0], details_for(exc), kind) for r in puts)
    else:
        replies.extend(pb.Reply(id=r.id, done=pb.Empty()) for r in puts)
    return replies


def error_reply(request_id: int, code: int, details: str, kind: str) -> pb.Reply:
    return pb.Reply(id=request_id, error=pb.Status(code=code, details=details, kind=kind))
