"""The store's exceptions, declared together: the request's faults (StoreError) and the
disk's (WriteFailed), and the one test for a busy database."""

from __future__ import annotations

import sqlite3


class StoreError(Exception):
    """A request the store cannot carry out; the message is meant for the caller."""


class NotFound(StoreError):
    """The row the request names does not exist."""


class LeaseLost(StoreError):
    """The item is no longer held by this worker: its lease expired and it went back."""


def is_busy(error: BaseException) -> bool:
    """Another connection holds the lock SQLite needed: waiting, not failing, is the answer."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    message = str(error).lower()
    return "locked" in message or "busy" in message


class WriteFailed(Exception):
    """The memory file could not take a write, through no fault of the request: the write
    changed nothing, and the same request may succeed later (once the cause is gone)."""

    cause = "the write failed"

    def __init__(self, path: str | None, detail: str = "", *, cause: str | None = None) -> None:
        self.path = path
        self.detail = detail
        self.cause = cause or self.cause
        where = f" ({path})" if path else ""
        said = f": {detail}" if detail else ""
        super().__init__(f"The memory could not be written: {self.cause}{where}{said}")


class ReadOnly(WriteFailed):
    cause = "the database file or its directory is read-only"


class DiskFull(WriteFailed):
    cause = "the disk is full"


class DiskError(WriteFailed):
    cause = "the disk reported an I/O error"


class LockTimeout(WriteFailed):
    cause = "another program held the write lock past the deadline"


# SQLite's primary result codes (the low byte of an extended code) for each fault.
_FAULTS: dict[int, type[WriteFailed]] = {
    sqlite3.SQLITE_READONLY: ReadOnly,
    sqlite3.SQLITE_FULL: DiskFull,
    sqlite3.SQLITE_IOERR: DiskError,
    sqlite3.SQLITE_CANTOPEN: ReadOnly,
    sqlite3.SQLITE_BUSY: LockTimeout,
    sqlite3.SQLITE_LOCKED: LockTimeout,
}


def write_fault(error: BaseException, path: str | None) -> WriteFailed | None:
    """The fault a failed write met, naming the file; None when the error is something else
    (a constraint, bad SQL), which is the request's or the code's, not the disk's."""
    if isinstance(error, WriteFailed):
        return error
    if isinstance(error, OSError) and error.errno is not None:
        import errno

        kind = {errno.ENOSPC: DiskFull, errno.EROFS: ReadOnly, errno.EIO: DiskError}.get(
            error.errno
        )
        return kind(path, error.strerror or str(error)) if kind else None
    if not isinstance(error, sqlite3.OperationalError | sqlite3.DatabaseError):
        return None
    if isinstance(error, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    kind = _FAULTS.get(code & 0xFF) if isinstance(code, int) else None
    if kind is None:
        message = str(error).lower()
        if "readonly" in message or "read-only" in message:
            kind = ReadOnly
        elif "disk is full" in message or "disk full" in message:
            kind = DiskFull
        elif "disk i/o" in message:
            kind = DiskError
        elif is_busy(error):
            kind = LockTimeout
    return kind(path, str(error)) if kind else None
