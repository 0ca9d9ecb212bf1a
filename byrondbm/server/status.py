"""How a database exception travels: as a gRPC status on a unary call, as a `Status` reply on a session.

Both sides use this module, so the two transports raise the same exceptions: the server maps an exception
to a code and a kind (`status_for`), the client maps them back (`exception_for`):
KeyError <-> NOT_FOUND, TypeError/ValueError <-> INVALID_ARGUMENT, CorruptionError <-> INTERNAL with kind
"corruption", any other byrondbm.error <-> FAILED_PRECONDITION, another OSError -> INTERNAL; every other
code (UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNAVAILABLE...) becomes a plain `byrondbm.error`.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from byrondbm.errors import CorruptionError, error
from byrondbm.server import ERROR_KIND_METADATA_KEY

_CODES = {code.value[0]: code for code in grpc.StatusCode}


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


def details_for(exc: BaseException) -> str:
    """The status details of a database exception: its message (a KeyError's names the key)."""
    if isinstance(exc, KeyError) and exc.args:
        return f"no such key: {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


class RemoteError(grpc.RpcError):
    """One request's failure inside a session, with the `code()` and `details()` a failed unary call has,
    so the exception the client raises is chained to the same kind of cause whichever way it travelled."""

    def __init__(self, code: int, details: str, kind: str) -> None:
        super().__init__(details)
        self._code = _CODES.get(code, grpc.StatusCode.UNKNOWN)
        self._details = details
        self.kind = kind

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def exception_for(exc: grpc.RpcError, key: object = None) -> Exception:
    """The exception the embedded database would have raised for a failed call or request.

    `key` is the key of a point operation, as the caller gave it: NOT_FOUND then becomes `KeyError(key)`.
    """
    kind: str | None = None
    if isinstance(exc, RemoteError):
        code, text, kind = exc.code(), exc.details(), exc.kind
    elif isinstance(exc, grpc.Call):
        code, text = exc.code(), exc.details()
        kind = dict(exc.trailing_metadata() or ()).get(ERROR_KIND_METADATA_KEY)
    else:
        code, text = grpc.StatusCode.UNKNOWN, None
    details: str = text or code.name
    if code is grpc.StatusCode.NOT_FOUND:
        return KeyError(key) if key is not None else KeyError(details)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return TypeError(details)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return error(details)
    if code is grpc.StatusCode.INTERNAL and kind == "corruption":
        return CorruptionError(details)
    return error(f"{code.name}: {details}")


def raise_for(exc: grpc.RpcError, key: object = None) -> NoReturn:
    """Raises `exception_for(exc, key)`, chained to `exc` (a KeyError is not: the missing key says it all)."""
    mapped = exception_for(exc, key)
    if isinstance(mapped, KeyError):
        raise mapped from None
    raise mapped from exc
