"""How every failure of a request becomes Datasette's JSON error: one table, looked up by
the exception's class (its nearest listed base wins), so a new error is one row here."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from datasette.utils.asgi import PayloadTooLarge, Response
from pydantic import ValidationError

from datasette_claude_mem.storage.errors import (
    LeaseLost,
    NotFound,
    StoreError,
    WriteFailed,
    write_fault,
)


class ApiError(Exception):
    """A request the API refuses, with the status and the messages the client gets."""

    def __init__(self, status: int, messages: str | list[str]) -> None:
        super().__init__(messages)
        self.status = status
        self.messages = [messages] if isinstance(messages, str) else messages


def validation_messages(error: ValidationError) -> list[str]:
    """One message per invalid field, naming it."""
    messages = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "body"
        messages.append(f"{where}: {item['msg']}")
    return messages


def _api(error: ApiError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return Response.error(error.messages, error.status, headers=headers)


def _status(status: int, prefix: str = "") -> Callable[[Exception], Response]:
    return lambda error: Response.error(f"{prefix}{error}", status)


# Seconds a client is told to wait before it tries a write again that the disk refused.
RETRY_AFTER_SECONDS = 5


def _unavailable(error: WriteFailed) -> Response:
    """The disk's fault, not the client's: 503, the cause and the file, try again later."""
    return Response.error(str(error), 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _operational(error: sqlite3.OperationalError) -> Response | None:
    fault = write_fault(error, None)
    if fault is not None:
        return _unavailable(fault)
    return None  # a fault that is not the client's: Datasette's own 500


def _unusable(error: ValueError) -> Response | None:
    # A NUL where SQLite or the file system takes text, or JSON too deep for the encoder.
    if "null" in str(error) or "depth" in str(error) or "recursion" in str(error).lower():
        return Response.error(f"A value in the body cannot be used: {error}", 400)
    return None


# Valid JSON the database cannot hold: an integer over 64 bits, a float over float32 in an
# embedding, a lone surrogate in free-form data, nesting too deep to encode.
_UNSTORABLE = "A value in the body cannot be stored: "

HANDLERS: dict[type[BaseException], Callable[[BaseException], Response | None]] = {
    ApiError: _api,
    PayloadTooLarge: _status(413),
    ValidationError: lambda error: Response.error(validation_messages(error), 400),
    NotFound: _status(404),
    LeaseLost: _status(409),
    WriteFailed: _unavailable,
    StoreError: _status(400),
    sqlite3.IntegrityError: _status(400, "Refused by the database: "),
    sqlite3.OperationalError: _operational,
    OverflowError: _status(400, _UNSTORABLE),
    UnicodeEncodeError: _status(400, _UNSTORABLE),
    RecursionError: _status(400, _UNSTORABLE),
    ValueError: _unusable,
}


def error_response(error: BaseException) -> Response | None:
    """The answer for an exception, or None when it is no fault of the request."""
    for cls in type(error).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            return handler(error)
    return None
