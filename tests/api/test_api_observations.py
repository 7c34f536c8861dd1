"""POST /-/claude-mem/observations."""

from __future__ import annotations

import json
import struct

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows


def observation(session_id: str, **fields) -> dict:
    return {
        "session_id": session_id,
        "tool_name": "Edit",
        "title": "Renamed the parser",
        "summary": "parse() is now parse_file(); callers updated",
        "detail": "three call sites",
        "files_touched": ["src/parse.py", "src/cli.py"],
        "functions_changed": ["parse_file"],
        "tokens_raw": 1200,
        "tokens_compressed": 90,
        **fields,
    }


@pytest.mark.asyncio
async def test_create_observation_then_repeat_is_idempotent(
    ds: Datasette, token: str, session_id: str
):
    body = observation(session_id)
    first = await api_call(ds, "POST", "/observations", body, token=token)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    row = first.json()["row"]
    for name in ("session_id", "tool_name", "title", "summary", "detail", "tokens_raw"):
        assert row[name] == body[name]
    assert row["files_touched"] == body["files_touched"]
    assert row["functions_changed"] == ["parse_file"]
    session = (await query_rows(ds, "SELECT * FROM sessions WHERE id = ?", [session_id]))[0]
    assert row["project"] == session["project"]
    assert row["embedding"] is None
    assert len(row["content_hash"]) == 64

    stored = await query_rows(ds, "SELECT * FROM observations")
    assert len(stored) == 1
    assert stored[0]["id"] == row["id"]
    assert json.loads(stored[0]["files_touched"]) == body["files_touched"]
    assert stored[0]["created_at"] == row["created_at"]
    assert session["observation_count"] == 1

    again = await api_call(ds, "POST", "/observations", body, token=token)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["row"] == row
    assert await query_rows(ds, "SELECT count(*) AS n FROM observations") == [{"n": 1}]

    different = await api_call(
        ds, "POST", "/observations", observation(session_id, title="Another"), token=token
    )
    assert different.status_code == 201
    assert different.json()["row"]["id"] != row["id"]


@pytest.mark.asyncio
async def test_minimal_observation_takes_defaults(ds: Datasette, token: str, session_id: str):
    body = {"session_id": session_id, "tool_name": "Bash", "title": "ran tests", "summary": ""}
    response = await api_call(ds, "POST", "/observations", body, token=token)
    assert response.status_code == 201, response.text
    row = response.json()["row"]
    assert row["files_touched"] == [] and row["functions_changed"] == []
    assert row["tokens_raw"] == 0 and row["detail"] is None


@pytest.mark.asyncio
async def test_observation_embedding_is_stored_as_float32_blob(
    ds: Datasette, token: str, session_id: str
):
    body = observation(
        session_id, embedding=[0.5, -1.0, 2.25], embedding_model="m", embedding_version="1"
    )
    response = await api_call(ds, "POST", "/observations", body, token=token)
    assert response.status_code == 201, response.text
    assert response.json()["row"]["embedding"] == [0.5, -1.0, 2.25]
    stored = (await query_rows(ds, "SELECT embedding, embedding_model FROM observations"))[0]
    assert stored["embedding"] == struct.pack("<3f", 0.5, -1.0, 2.25)
    assert stored["embedding_model"] == "m"


@pytest.mark.asyncio
async def test_observation_is_searchable(ds: Datasette, token: str, session_id: str):
    await api_call(ds, "POST", "/observations", observation(session_id), token=token)
    found = await query_rows(
        ds,
        "SELECT o.title FROM observations_fts JOIN observations o "
        "ON o.rowid = observations_fts.rowid WHERE observations_fts MATCH 'callers'",
    )
    assert found == [{"title": "Renamed the parser"}]


@pytest.mark.asyncio
async def test_observation_for_unknown_session_is_404(ds: Datasette, token: str):
    response = await api_call(ds, "POST", "/observations", observation("ghost"), token=token)
    assert_error(response, 404, "ghost")
    assert await query_rows(ds, "SELECT count(*) AS n FROM observations") == [{"n": 0}]


INVALID = [
    ({"title": None}, ["title"]),
    ({"title": ""}, ["title"]),
    ({"summary": 7}, ["summary"]),
    ({"session_id": ""}, ["session_id"]),
    ({"tokens_raw": -1}, ["tokens_raw"]),
    ({"tokens_compressed": "many"}, ["tokens_compressed"]),
    ({"files_touched": "a.py"}, ["files_touched"]),
    ({"functions_changed": [1, {}]}, ["functions_changed.0", "functions_changed.1"]),
    ({"embedding": [1.0, 2.0]}, ["embedding_model"]),
    ({"embedding": ["x"], "embedding_model": "m"}, ["embedding.0"]),
    ({"unknown": True}, ["unknown"]),
    (
        {"title": "", "tokens_raw": -5, "files_touched": 3, "colour": 1},
        ["title", "tokens_raw", "files_touched", "colour"],
    ),
]


@pytest.mark.asyncio
async def test_invalid_observation_names_each_field(ds: Datasette, token: str, session_id: str):
    for change, fields in INVALID:
        body = {**observation(session_id), **change}
        response = await api_call(ds, "POST", "/observations", body, token=token)
        assert_error(response, 400, *fields, case=change)
    assert await query_rows(ds, "SELECT count(*) AS n FROM observations") == [{"n": 0}]


@pytest.mark.asyncio
async def test_missing_required_fields_are_each_named(ds: Datasette, token: str):
    response = await api_call(ds, "POST", "/observations", {}, token=token)
    body = assert_error(response, 400, "session_id", "tool_name", "title", "summary")
    assert len(body["errors"]) == 4


@pytest.mark.asyncio
async def test_observation_405(ds: Datasette, token: str):
    response = await api_call(ds, "GET", "/observations", token=token)
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
