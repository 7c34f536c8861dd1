"""POST /-/claude-mem/sessions and /sessions/{id}/close, and how any route reads its body."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows


def repo(tmp_path: Path, name: str = "repo") -> Path:
    path = tmp_path / name
    (path / ".git").mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.asyncio
async def test_start_session_creates_then_resumes(ds: Datasette, token: str, tmp_path: Path):
    project_dir = repo(tmp_path) / "src"
    project_dir.mkdir()
    body = {"id": "s-1", "project_dir": str(project_dir), "summary": "first"}
    first = await api_call(ds, "POST", "/sessions", body, token=token)
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["ok"] is True and answer["created"] is True
    row = answer["row"]
    assert row["id"] == "s-1"
    assert row["project"] == str((tmp_path / "repo").resolve())  # the repository's key
    assert row["project_dir"] == str(project_dir)
    assert row["status"] == "active"
    assert row["summary"] == "first"
    assert row["ended_at"] is None
    assert row["observation_count"] == 0
    assert row["started_at"].endswith("Z")

    stored = await query_rows(ds, "SELECT * FROM sessions WHERE id = ?", ["s-1"])
    assert len(stored) == 1
    assert stored[0]["project"] == row["project"]
    assert stored[0]["started_at"] == row["started_at"]
    assert stored[0]["summary"] == "first"

    # Starting the same session again (a resume) changes nothing and answers 200.
    again = await api_call(ds, "POST", "/sessions", {**body, "summary": "second"}, token=token)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["row"] == row
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 1}]


@pytest.mark.asyncio
async def test_start_session_without_id_makes_one(ds: Datasette, token: str, tmp_path: Path):
    response = await api_call(
        ds, "POST", "/sessions", {"project_dir": str(repo(tmp_path))}, token=token
    )
    assert response.status_code == 201
    session_id = response.json()["row"]["id"]
    assert len(session_id) == 36  # a UUID
    assert await query_rows(ds, "SELECT id FROM sessions") == [{"id": session_id}]


@pytest.mark.asyncio
async def test_start_session_with_explicit_project(ds: Datasette, token: str, tmp_path: Path):
    body = {"project_dir": str(repo(tmp_path)), "project": "my-key"}
    response = await api_call(ds, "POST", "/sessions", body, token=token)
    assert response.status_code == 201
    assert response.json()["row"]["project"] == "my-key"


INVALID_STARTS = [
    ({}, ["project_dir"]),
    ({"project_dir": ""}, ["project_dir"]),
    ({"project_dir": 3}, ["project_dir"]),
    ({"project_dir": "/x", "id": ""}, ["id"]),
    ({"project_dir": "/x", "project": ""}, ["project"]),
    ({"project_dir": "/x", "bogus": 1}, ["bogus"]),
    ({"project_dir": None, "summary": 5, "colour": "red"}, ["project_dir", "summary", "colour"]),
]


@pytest.mark.asyncio
async def test_start_session_names_each_invalid_field(ds: Datasette, token: str):
    for body, fields in INVALID_STARTS:
        response = await api_call(ds, "POST", "/sessions", body, token=token)
        answer = assert_error(response, 400, *fields, case=body)
        assert len(answer["errors"]) == len(fields), body
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_unknown_fields_are_an_error_not_ignored(ds: Datasette, token: str):
    response = await api_call(
        ds, "POST", "/sessions", {"project_dir": "/x", "projectdir": "/y"}, token=token
    )
    assert_error(response, 400, "projectdir", "Extra inputs")


NOT_A_JSON_OBJECT = [
    (b"{not json", "not valid JSON"),
    (b'{"project_dir": "/x",}', "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"project_dir": "/x"} trailing', "not valid JSON"),
    (b"[]", "JSON object"),
    (b'["project_dir"]', "JSON object"),
    (b'"project_dir"', "JSON object"),
    (b"42", "JSON object"),
    (b"null", "JSON object"),
    (b"true", "JSON object"),
    (b"", "body is required"),
    (b"   \n", "body is required"),
]


@pytest.mark.asyncio
async def test_bodies_that_are_not_a_json_object(ds: Datasette, token: str):
    for content, says in NOT_A_JSON_OBJECT:
        response = await api_call(ds, "POST", "/sessions", token=token, content=content)
        assert_error(response, 400, says, case=content)
    assert await query_rows(ds, "SELECT count(*) AS n FROM sessions") == [{"n": 0}]


@pytest.mark.asyncio
async def test_close_session(ds: Datasette, token: str, session_id: str):
    response = await api_call(
        ds, "POST", f"/sessions/{session_id}/close", {"summary": "did things"}, token=token
    )
    assert response.status_code == 200, response.text
    row = response.json()["row"]
    assert row["id"] == session_id
    assert row["status"] == "closed"
    assert row["summary"] == "did things"
    assert row["ended_at"] is not None
    stored = (await query_rows(ds, "SELECT * FROM sessions WHERE id = ?", [session_id]))[0]
    assert stored["status"] == "closed"
    assert stored["ended_at"] == row["ended_at"]
    assert stored["summary"] == "did things"

    # Closing again keeps the first end time and the summary when none is given.
    again = await api_call(ds, "POST", f"/sessions/{session_id}/close", {}, token=token)
    assert again.status_code == 200
    assert again.json()["row"]["ended_at"] == row["ended_at"]
    assert again.json()["row"]["summary"] == "did things"


@pytest.mark.asyncio
async def test_close_session_with_no_body_and_an_error_status(
    ds: Datasette, token: str, session_id: str
):
    empty = await api_call(ds, "POST", f"/sessions/{session_id}/close", token=token, content=b"")
    assert empty.status_code == 200, empty.text
    errored = await api_call(
        ds, "POST", f"/sessions/{session_id}/close", {"status": "error"}, token=token
    )
    assert errored.status_code == 200
    assert errored.json()["row"]["status"] == "error"


@pytest.mark.asyncio
async def test_close_session_invalid_body(ds: Datasette, token: str, session_id: str):
    response = await api_call(
        ds,
        "POST",
        f"/sessions/{session_id}/close",
        {"status": "finished", "summary": ["x"], "extra": 1},
        token=token,
    )
    assert_error(response, 400, "status", "summary", "extra")
    stored = await query_rows(ds, "SELECT status FROM sessions WHERE id = ?", [session_id])
    assert stored == [{"status": "active"}]


@pytest.mark.asyncio
async def test_close_unknown_session_is_404(ds: Datasette, token: str):
    response = await api_call(ds, "POST", "/sessions/nope/close", {}, token=token)
    assert_error(response, 404, "nope")


@pytest.mark.asyncio
async def test_wrong_method_is_405_with_allow(ds: Datasette, token: str):
    for path in ("/sessions", "/sessions/x/close"):
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            response = await api_call(ds, method, path, token=token)
            assert_error(response, 405, method, case=(method, path))
            assert response.headers["allow"] == "POST"


@pytest.mark.asyncio
async def test_resumed_session_counts_its_observations(ds: Datasette, token: str, session_id: str):
    observation = {
        "session_id": session_id,
        "tool_name": "Edit",
        "title": "t",
        "summary": "s",
    }
    assert (await api_call(ds, "POST", "/observations", observation, token=token)).status_code
    response = await api_call(
        ds, "POST", "/sessions", {"id": session_id, "project_dir": "/elsewhere"}, token=token
    )
    assert response.status_code == 200
    assert response.json()["row"]["observation_count"] == 1
