"""Forgetting through the JSON API: DELETE a session, an observation, a learning (hard) or a
note, and POST /forget for a project or everything before a date."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, fill, query_rows

from datasette_claude_mem.storage.models import MemoryEntrySave
from datasette_claude_mem.storage.store import Store

MARKER = "qqzapiforgetmarker"


@pytest.fixture
def projects(ds: Datasette, memory_path: Path, tmp_path: Path) -> dict[str, str]:
    """Two filled projects in the served memory, and a note with the marker."""
    with Store(memory_path) as store:
        first, second = fill(store, tmp_path, "alpha"), fill(store, tmp_path, "beta")
        note = store.save_entry(MemoryEntrySave(namespace="ns", key="k", value=MARKER)).row
    return {"first": first, "second": second, "note": note.id}


async def one(ds: Datasette, sql: str, params: list | None = None):
    return (await query_rows(ds, sql, params))[0]


async def counts(ds: Datasette) -> dict[str, int]:
    tables = ("sessions", "observations", "pending_queue", "pending_payloads", "learnings",
              "memory_entries", "event_log", "function_map", "call_graph")  # fmt: skip
    return {t: (await one(ds, f"SELECT count(*) AS n FROM {t}"))["n"] for t in tables}


@pytest.mark.asyncio
async def test_delete_a_session_forgets_it_and_what_was_recorded_in_it(
    ds: Datasette, token: str, projects
):
    sid = (await one(ds, "SELECT id FROM sessions WHERE project = ?", [projects["first"]]))["id"]
    response = await api_call(ds, "DELETE", f"/sessions/{sid}", {"reason": "oops"}, token=token)
    assert response.status_code == 200, response.text
    tomb = response.json()["row"]
    assert tomb["kind"] == "session" and tomb["forgotten_by"] == "claude-mem"
    assert tomb["reason"] == "oops" and tomb["counts"]["observations"] == 2
    for table in ("observations", "pending_queue", "event_log", "function_map"):
        left = await one(ds, f"SELECT count(*) AS n FROM {table} WHERE session_id = ?", [sid])
        assert left["n"] == 0, table
    [row] = await query_rows(ds, "SELECT kind, count, forgotten_by FROM tombstones")
    assert row == {"kind": "session", "count": tomb["count"], "forgotten_by": "claude-mem"}
    # The session's page and the DELETE share a path: the page still answers GET.
    cookie = {"ds_actor": ds.client.actor_cookie({"id": "root"})}
    assert (await ds.client.get(f"/-/claude-mem/sessions/{sid}", cookies=cookie)).status_code == 404
    other = (await one(ds, "SELECT id FROM sessions"))["id"]
    assert (
        await ds.client.get(f"/-/claude-mem/sessions/{other}", cookies=cookie)
    ).status_code == 200


@pytest.mark.asyncio
async def test_delete_an_observation_then_again_is_404(ds: Datasette, token: str, projects):
    obs = (await one(ds, "SELECT id FROM observations WHERE queue_item_id IS NOT NULL"))["id"]
    first = await api_call(ds, "DELETE", f"/observations/{obs}", token=token)
    assert first.status_code == 200, first.text
    assert first.json()["row"]["counts"]["pending_payloads"] == 1
    again = await api_call(ds, "DELETE", f"/observations/{obs}", token=token)
    assert_error(again, 404, obs)
    assert len(await query_rows(ds, "SELECT * FROM tombstones")) == 1


@pytest.mark.asyncio
async def test_a_learning_is_retired_by_default_and_deleted_when_hard(
    ds: Datasette, token: str, projects
):
    lid = (await one(ds, "SELECT id FROM learnings LIMIT 1"))["id"]
    soft = await api_call(ds, "DELETE", f"/learnings/{lid}", token=token)
    assert soft.status_code == 200 and soft.json()["row"]["is_active"] is False
    assert (await one(ds, "SELECT count(*) AS n FROM learnings WHERE id = ?", [lid]))["n"] == 1
    hard = await api_call(ds, "DELETE", f"/learnings/{lid}", {"hard": True}, token=token)
    assert hard.status_code == 200, hard.text
    assert hard.json()["row"]["kind"] == "learning"
    assert (await one(ds, "SELECT count(*) AS n FROM learnings WHERE id = ?", [lid]))["n"] == 0


@pytest.mark.asyncio
async def test_delete_a_note_takes_every_version(ds: Datasette, token: str, projects):
    response = await api_call(ds, "DELETE", f"/notes/{projects['note']}", token=token)
    assert response.status_code == 200, response.text
    assert await query_rows(ds, "SELECT * FROM memory_entries WHERE namespace = 'ns'") == []


@pytest.mark.asyncio
async def test_post_forget_a_project(ds: Datasette, token: str, projects, memory_path: Path):
    before = await counts(ds)
    response = await api_call(
        ds, "POST", "/forget", {"project": projects["first"], "reason": "gone"}, token=token
    )
    assert response.status_code == 200, response.text
    tomb = response.json()["row"]
    assert tomb["kind"] == "project"
    after = await counts(ds)
    assert after["sessions"] == before["sessions"] - 1
    assert after["learnings"] == before["learnings"] - 1
    assert after["memory_entries"] == before["memory_entries"] - 2  # the global note stays
    left = await query_rows(
        ds, "SELECT count(*) AS n FROM observations WHERE project = ?", [projects["first"]]
    )
    assert left[0]["n"] == 0
    raw = memory_path.read_bytes() + Path(f"{memory_path}-wal").read_bytes()
    assert b"tokenizer gotcha alpha" not in raw and b"tokenizer gotcha beta" in raw


@pytest.mark.asyncio
async def test_post_forget_before_a_date_of_some_kinds(ds: Datasette, token: str, projects):
    before = await counts(ds)
    body = {"before": "2999-01-01", "kinds": ["note"], "reason": "old notes"}
    response = await api_call(ds, "POST", "/forget", body, token=token)
    assert response.status_code == 200, response.text
    assert response.json()["row"]["counts"] == {"memory_entries": 5}
    after = await counts(ds)
    assert after == {**before, "memory_entries": 0}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body, mention",
    [
        ({}, "say what to forget"),
        ({"project": "/p", "kinds": ["everything"]}, "kinds"),
        ({"before": "yesterday"}, "before"),
        ({"kind": "session"}, "id"),
        ({"project": "/p", "extra": 1}, "extra"),
    ],
)
async def test_bad_input_is_400_and_changes_nothing(
    ds: Datasette, token: str, projects, body: dict, mention: str
):
    before = await counts(ds)
    assert_error(await api_call(ds, "POST", "/forget", body, token=token), 400, mention)
    assert await counts(ds) == before
    assert await query_rows(ds, "SELECT * FROM tombstones") == []


@pytest.mark.asyncio
async def test_forgetting_needs_the_write_permission(
    ds: Datasette, projects, other_token: str, restricted_token: str
):
    before = await counts(ds)
    sid = (await one(ds, "SELECT id FROM sessions"))["id"]
    for method, path, body in (
        ("DELETE", f"/sessions/{sid}", None),
        ("POST", "/forget", {"project": projects["first"]}),
    ):
        assert_error(await api_call(ds, method, path, body), 401)
        assert_error(await api_call(ds, method, path, body, token=other_token), 403)
        assert_error(await api_call(ds, method, path, body, token=restricted_token), 403)
    assert await counts(ds) == before


@pytest.mark.asyncio
async def test_a_session_path_takes_get_and_delete_only(ds: Datasette, token: str, projects):
    response = await api_call(ds, "PUT", "/sessions/x", {}, token=token)
    assert_error(response, 405)
    assert response.headers["allow"] == "DELETE, GET"


@pytest.mark.asyncio
async def test_the_openapi_document_lists_the_forgets(ds: Datasette):
    paths = (await api_call(ds, "GET", "/openapi.json")).json()["paths"]
    assert "delete" in paths["/-/claude-mem/sessions/{session_id}"]
    assert "delete" in paths["/-/claude-mem/observations/{observation_id}"]
    assert "delete" in paths["/-/claude-mem/notes/{note_id}"]
    assert "post" in paths["/-/claude-mem/forget"]


def test_a_running_server_wipes_what_it_forgets_from_the_file(mem_server, tmp_path: Path):
    """A real `serve`: its own connections delete securely and checkpoint, so the marker
    leaves the database and WAL bytes while the server keeps running and reading."""
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    keep_dir = tmp_path / "keep"
    (keep_dir / ".git").mkdir(parents=True)
    for sid, where in (("gone", project_dir), ("kept", keep_dir)):
        made = mem_server.request(
            "POST", "/-/claude-mem/sessions", json={"id": sid, "project_dir": str(where)}
        )
        assert made.status_code == 201, made.text
        for n in range(20):
            body = {"session_id": sid, "tool_name": "Bash", "title": f"{sid} {MARKER} {n}",
                    "summary": f"{sid} summary {MARKER} " * 20}  # fmt: skip
            assert mem_server.request("POST", "/-/claude-mem/observations", json=body).is_success
    search = mem_server.request("GET", "/-/claude-mem/search", params={"q": MARKER})
    assert search.status_code == 200 and search.json()["hits"]
    files = [mem_server.db_path, Path(f"{mem_server.db_path}-wal")]

    def raw() -> bytes:
        return b"".join(f.read_bytes() for f in files if f.exists())

    assert b"gone summary" in raw()

    response = mem_server.request("DELETE", "/-/claude-mem/sessions/gone")

    assert response.status_code == 200, response.text
    assert response.json()["row"]["counts"]["observations"] == 20
    assert b"gone summary" not in raw() and b"gone " + MARKER.encode() not in raw()
    assert b"kept summary" in raw()
    hits = mem_server.request("GET", "/-/claude-mem/search", params={"q": MARKER}).json()["hits"]
    assert hits and {h["session_id"] for h in hits} == {"kept"}
