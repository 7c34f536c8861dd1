"""POST /-/claude-mem/learnings, PATCH and DELETE /learnings/{id}."""

from __future__ import annotations

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows


def learning(**fields) -> dict:
    return {
        "category": "gotcha",
        "content": "Datasette never enables WAL on user databases",
        "confidence": 0.8,
        "project": "/repo",
        **fields,
    }


async def create(ds: Datasette, token: str, **fields) -> dict:
    response = await api_call(ds, "POST", "/learnings", learning(**fields), token=token)
    assert response.status_code == 201, response.text
    return response.json()["row"]


@pytest.mark.asyncio
async def test_create_learning_then_repeat_is_idempotent(
    ds: Datasette, token: str, session_id: str
):
    body = learning(source_session_id=session_id)
    first = await api_call(ds, "POST", "/learnings", body, token=token)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    row = first.json()["row"]
    for name in ("category", "content", "confidence", "project", "source_session_id"):
        assert row[name] == body[name]
    assert row["is_active"] is True
    stored = await query_rows(ds, "SELECT * FROM learnings")
    assert len(stored) == 1
    assert stored[0]["id"] == row["id"]
    assert stored[0]["is_active"] == 1
    assert stored[0]["content"] == body["content"]

    again = await api_call(ds, "POST", "/learnings", body, token=token)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["row"]["id"] == row["id"]
    assert await query_rows(ds, "SELECT count(*) AS n FROM learnings") == [{"n": 1}]

    # The same words in another category, or another project, are another learning.
    other = await api_call(
        ds, "POST", "/learnings", {**body, "category": "convention"}, token=token
    )
    assert other.status_code == 201


@pytest.mark.asyncio
async def test_global_learning_has_no_project(ds: Datasette, token: str):
    body = {"category": "pattern", "content": "Prefer ON CONFLICT DO UPDATE"}
    response = await api_call(ds, "POST", "/learnings", body, token=token)
    assert response.status_code == 201, response.text
    row = response.json()["row"]
    assert row["project"] is None and row["confidence"] == 0.5
    assert await query_rows(ds, "SELECT project FROM learnings") == [{"project": None}]
    again = await api_call(ds, "POST", "/learnings", body, token=token)
    assert again.status_code == 200


@pytest.mark.asyncio
async def test_learning_from_unknown_session_is_404(ds: Datasette, token: str):
    response = await api_call(
        ds, "POST", "/learnings", learning(source_session_id="ghost"), token=token
    )
    assert_error(response, 404, "ghost")
    assert await query_rows(ds, "SELECT count(*) AS n FROM learnings") == [{"n": 0}]


INVALID_LEARNINGS = [
    ({"category": "trivia"}, ["category"]),
    ({"category": None}, ["category"]),
    ({"content": ""}, ["content"]),
    ({"confidence": 1.5}, ["confidence"]),
    ({"confidence": -0.01}, ["confidence"]),
    ({"confidence": "high"}, ["confidence"]),
    ({"project": 7}, ["project"]),
    ({"is_active": False}, ["is_active"]),
    (
        {"category": 1, "content": None, "confidence": 2, "why": "x"},
        ["category", "content", "confidence", "why"],
    ),
]


@pytest.mark.asyncio
async def test_invalid_learning_names_each_field(ds: Datasette, token: str):
    for change, fields in INVALID_LEARNINGS:
        response = await api_call(ds, "POST", "/learnings", learning(**change), token=token)
        assert_error(response, 400, *fields, case=change)
    assert await query_rows(ds, "SELECT count(*) AS n FROM learnings") == [{"n": 0}]


@pytest.mark.asyncio
async def test_update_learning(ds: Datasette, token: str):
    made = await create(ds, token)
    response = await api_call(
        ds,
        "PATCH",
        f"/learnings/{made['id']}",
        {"confidence": 0.95, "content": "Datasette leaves journal_mode alone"},
        token=token,
    )
    assert response.status_code == 200, response.text
    row = response.json()["row"]
    assert row["id"] == made["id"]
    assert row["confidence"] == 0.95
    assert row["content"] == "Datasette leaves journal_mode alone"
    assert row["category"] == made["category"]
    stored = (await query_rows(ds, "SELECT * FROM learnings WHERE id = ?", [made["id"]]))[0]
    assert stored["confidence"] == 0.95
    assert stored["content"] == "Datasette leaves journal_mode alone"
    assert stored["updated_at"] >= made["created_at"]


@pytest.mark.asyncio
async def test_update_with_nothing_to_change(ds: Datasette, token: str):
    made = await create(ds, token)
    for content in (b"{}", b""):
        response = await api_call(
            ds, "PATCH", f"/learnings/{made['id']}", token=token, content=content
        )
        assert response.status_code == 200, response.text
        assert response.json()["row"]["content"] == made["content"]


INVALID_UPDATES = [
    ({"confidence": 3}, ["confidence"]),
    ({"category": "nope"}, ["category"]),
    ({"content": ""}, ["content"]),
    ({"is_active": "sometimes"}, ["is_active"]),
    ({"project": "/elsewhere"}, ["project"]),
    ({"confidence": None, "category": 5, "x": 1}, ["category", "x"]),
]


@pytest.mark.asyncio
async def test_invalid_update_names_each_field(ds: Datasette, token: str):
    made = await create(ds, token)
    for body, fields in INVALID_UPDATES:
        response = await api_call(ds, "PATCH", f"/learnings/{made['id']}", body, token=token)
        assert_error(response, 400, *fields, case=body)
    stored = await query_rows(ds, "SELECT confidence, category FROM learnings")
    assert stored == [{"confidence": 0.8, "category": "gotcha"}]


@pytest.mark.asyncio
async def test_delete_retires_the_learning(ds: Datasette, token: str):
    made = await create(ds, token)
    response = await api_call(ds, "DELETE", f"/learnings/{made['id']}", token=token)
    assert response.status_code == 200, response.text
    assert response.json()["row"]["is_active"] is False
    assert await query_rows(ds, "SELECT is_active FROM learnings") == [{"is_active": 0}]
    listed = await ds.client.get("/claude-mem/active_learnings.json", actor={"id": "root"})
    assert listed.status_code == 200
    assert listed.json()["rows"] == []
    # The same learning recorded again is a new one, since the old one was retired.
    again = await api_call(ds, "POST", "/learnings", learning(), token=token)
    assert again.status_code == 201
    assert again.json()["row"]["id"] != made["id"]


@pytest.mark.asyncio
async def test_reactivate_with_patch(ds: Datasette, token: str):
    made = await create(ds, token)
    await api_call(ds, "DELETE", f"/learnings/{made['id']}", token=token)
    response = await api_call(
        ds, "PATCH", f"/learnings/{made['id']}", {"is_active": True}, token=token
    )
    assert response.status_code == 200
    assert response.json()["row"]["is_active"] is True


@pytest.mark.asyncio
async def test_unknown_learning_is_404(ds: Datasette, token: str):
    for method, body in (("PATCH", {"confidence": 0.1}), ("DELETE", None)):
        response = await api_call(ds, method, "/learnings/nope", body, token=token)
        assert_error(response, 404, "nope", case=method)


@pytest.mark.asyncio
async def test_learning_routes_405(ds: Datasette, token: str):
    response = await api_call(ds, "GET", "/learnings", token=token)
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
    for method in ("GET", "POST", "PUT"):
        response = await api_call(ds, method, "/learnings/abc", token=token)
        assert_error(response, 405, method)
        assert response.headers["allow"] == "DELETE, PATCH"


OLD = "2001-01-01T00:00:00.000Z"


@pytest.mark.asyncio
async def test_an_edit_in_datasettes_row_editor_moves_updated_at(
    ds: Datasette, token: str, session_id: str
) -> None:
    """Datasette's row editor sets only the columns edited: updated_at follows by itself."""
    created = await api_call(
        ds,
        "POST",
        "/learnings",
        {
            "category": "gotcha",
            "content": "the cache needs a warm-up",
            "source_session_id": session_id,
        },
        token=token,
    )
    assert created.status_code == 201, created.text
    learning_id = created.json()["row"]["id"]
    # An update that sets updated_at itself keeps the value it sets.
    await ds.get_database("claude-mem").execute_write(
        "UPDATE learnings SET updated_at = :old WHERE id = :id", {"old": OLD, "id": learning_id}
    )
    kept = await query_rows(
        ds, "SELECT updated_at FROM learnings WHERE id = :id", {"id": learning_id}
    )
    assert kept == [{"updated_at": OLD}]
    ds.root_enabled = True
    root = await ds.create_token("root")
    edited = await ds.client.post(
        f"/claude-mem/learnings/{learning_id}/-/update",
        json={"update": {"content": "the cache needs two warm-ups"}},
        headers={"Authorization": f"Bearer {root}"},
    )
    assert edited.status_code == 200, edited.text
    rows = await query_rows(
        ds, "SELECT content, updated_at FROM learnings WHERE id = :id", {"id": learning_id}
    )
    assert rows[0]["content"] == "the cache needs two warm-ups"
    assert rows[0]["updated_at"] > OLD
