"""POST /-/claude-mem/events: the event log."""

from __future__ import annotations

import json

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows


@pytest.mark.asyncio
async def test_log_event(ds: Datasette, token: str, session_id: str):
    body = {
        "event_type": "UserPromptSubmit",
        "session_id": session_id,
        "project": "/repo",
        "data": {"prompt": "fix the parser", "n": [1, 2]},
        "duration_ms": 12,
        "tokens_in": 30,
        "tokens_out": 0,
    }
    response = await api_call(ds, "POST", "/events", body, token=token)
    assert response.status_code == 201, response.text
    row = response.json()["row"]
    for name, value in body.items():
        assert row[name] == value
    stored = await query_rows(ds, "SELECT * FROM event_log")
    assert len(stored) == 1
    assert stored[0]["id"] == row["id"]
    assert json.loads(stored[0]["data"]) == body["data"]
    assert stored[0]["duration_ms"] == 12
    assert stored[0]["created_at"] == row["created_at"]

    # Events are not idempotent: the same one again is a second event.
    again = await api_call(ds, "POST", "/events", body, token=token)
    assert again.status_code == 201
    assert again.json()["row"]["id"] != row["id"]
    assert await query_rows(ds, "SELECT count(*) AS n FROM event_log") == [{"n": 2}]


@pytest.mark.asyncio
async def test_minimal_event(ds: Datasette, token: str):
    response = await api_call(ds, "POST", "/events", {"event_type": "Stop"}, token=token)
    assert response.status_code == 201, response.text
    row = response.json()["row"]
    assert row["data"] == {} and row["session_id"] is None and row["duration_ms"] is None


@pytest.mark.asyncio
async def test_event_appears_in_the_session_timeline(ds: Datasette, token: str, session_id: str):
    body = {"event_type": "UserPromptSubmit", "session_id": session_id, "data": {"prompt": "hi"}}
    await api_call(ds, "POST", "/events", body, token=token)
    response = await ds.client.get(
        f"/claude-mem/session_timeline.json?session_id={session_id}", actor={"id": "root"}
    )
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert [(r["kind"], r["name"], r["detail"]) for r in rows] == [
        ("prompt", "UserPromptSubmit", "hi")
    ]


INVALID_EVENTS = [
    ({}, ["event_type"]),
    ({"event_type": ""}, ["event_type"]),
    ({"event_type": "x", "data": [1, 2]}, ["data"]),
    ({"event_type": "x", "data": "text"}, ["data"]),
    ({"event_type": "x", "duration_ms": -1}, ["duration_ms"]),
    ({"event_type": "x", "tokens_in": 1.5}, ["tokens_in"]),
    ({"event_type": "x", "session_id": 3}, ["session_id"]),
    (
        {"event_type": None, "tokens_out": -2, "level": "info"},
        ["event_type", "tokens_out", "level"],
    ),
]


@pytest.mark.asyncio
async def test_invalid_event_names_each_field(ds: Datasette, token: str):
    for body, fields in INVALID_EVENTS:
        response = await api_call(ds, "POST", "/events", body, token=token)
        assert_error(response, 400, *fields, case=body)
    assert await query_rows(ds, "SELECT count(*) AS n FROM event_log") == [{"n": 0}]


@pytest.mark.asyncio
async def test_events_405(ds: Datasette, token: str):
    response = await api_call(ds, "GET", "/events", token=token)
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
