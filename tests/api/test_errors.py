"""The one table from exception class to answer: the nearest listed base wins, and what is
not the client's fault is left to Datasette (a 500), never dressed up as a 400."""

from __future__ import annotations

import json
import sqlite3

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error

from datasette_claude_mem.api.errors import ApiError, error_response
from datasette_claude_mem.storage.errors import LeaseLost, NotFound, StoreError
from datasette_claude_mem.storage.store import Store


def body(response) -> dict:
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ApiError(401, "no token"), 401),
        (NotFound("gone"), 404),
        (LeaseLost("lost"), 409),
        (StoreError("refused"), 400),
        (sqlite3.IntegrityError("CHECK constraint failed"), 400),
        (sqlite3.OperationalError("database is locked"), 503),
        (sqlite3.OperationalError("disk I/O error"), 503),
        (sqlite3.OperationalError("attempt to write a readonly database"), 503),
        (sqlite3.OperationalError("database or disk is full"), 503),
        (OverflowError("int too big"), 400),
    ],
)
def test_each_error_class_has_its_status(error: Exception, status: int) -> None:
    response = error_response(error)
    assert response.status == status
    assert body(response)["ok"] is False and body(response)["status"] == status


def test_a_subclass_takes_its_nearest_listed_base() -> None:
    class Expired(LeaseLost):
        pass

    assert error_response(Expired("expired")).status == 409


@pytest.mark.parametrize(
    "error",
    [sqlite3.OperationalError("no such table: x"), ValueError("something else"), KeyError("k")],
)
def test_what_is_not_the_clients_fault_is_not_answered_here(error: Exception) -> None:
    assert error_response(error) is None


@pytest.mark.asyncio
async def test_a_storage_failure_is_not_reported_as_the_clients_fault(
    ds: Datasette, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event that could not be stored was a 400 "could not be stored"; a fault of the
    disk is now a 503 that names it and the file."""

    def failing(self: Store, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "log_event", failing)
    response = await api_call(ds, "POST", "/events", {"event_type": "e"}, token=token)
    assert_error(response, 503, "I/O error", "claude-mem.db")
    assert response.headers["retry-after"]


@pytest.mark.asyncio
async def test_a_nul_in_a_project_directory_is_a_400_naming_the_field(
    ds: Datasette, token: str
) -> None:
    response = await api_call(ds, "POST", "/sessions", {"project_dir": "/tmp/a\x00b"}, token=token)
    assert_error(response, 400, "project_dir", "NUL")
