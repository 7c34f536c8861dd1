"""The store's exceptions, declared together, and the one test for a busy database."""

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
