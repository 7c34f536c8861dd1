"""GET /-/claude-mem/export: the same JSON lines as the command, for whoever may view the
memory, and clear errors for bad requests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import API, assert_error, bearer, dump, fill

from datasette_claude_mem.api.export import LINES_PER_CHUNK
from datasette_claude_mem.storage import portable
from datasette_claude_mem.storage.store import Store


@pytest.fixture
def projects(ds: Datasette, memory_path: Path, tmp_path: Path) -> list[str]:
    with Store(memory_path) as store:
        return [fill(store, tmp_path / "repos", name) for name in ("alpha", "beta")]


@pytest.mark.asyncio
async def test_the_download_imports_into_an_equal_memory(
    ds: Datasette, auth: dict, projects: list[str], memory_path: Path, tmp_path: Path
):
    response = await ds.client.get(f"{API}/export?with_queue=1", headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    with Store(tmp_path / "other" / "claude-mem.db") as target:
        portable.import_lines(target, io.BytesIO(response.content))
        assert dump(tmp_path / "other" / "claude-mem.db") == dump(memory_path)


@pytest.mark.asyncio
async def test_one_project_is_downloaded_alone(
    ds: Datasette, auth: dict, projects: list[str], memory_path: Path
):
    alpha, beta = projects
    response = await ds.client.get(f"{API}/export", params={"project": alpha}, headers=auth)
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["project"] == alpha
    assert lines[-1]["type"] == "end"
    rows = [line["row"] for line in lines if line["type"] == "row"]
    assert rows and all(row.get("project", alpha) == alpha for row in rows)
    assert beta not in response.text
    # Without the flag the raw tool outputs stay behind.
    assert {line["table"] for line in lines if line["type"] == "row"} == set(portable.MEMORY_TABLES)


@pytest.mark.asyncio
async def test_a_large_memory_streams_in_many_chunks(
    ds: Datasette, auth: dict, memory_path: Path, tmp_path: Path
):
    from datasette_claude_mem.storage.models import LearningCreate

    with Store(memory_path) as store, store.write():
        for i in range(LINES_PER_CHUNK * 2 + 7):
            store.create_learning(LearningCreate(category="pattern", content=f"learning {i}"))
    # Straight through the ASGI app, to see each piece of the body as the server sends it.
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": f"{API}/export",
        "raw_path": f"{API}/export".encode(),
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"authorization", auth["Authorization"].encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("localhost", 80),
        "scheme": "http",
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await ds.app()(scope, receive, send)
    assert sent[0]["status"] == 200
    chunks = [m["body"] for m in sent[1:] if m["body"]]
    body = b"".join(chunks)
    assert len(chunks) >= 3
    end = json.loads(body.splitlines()[-1])
    assert end["rows"]["learnings"] == LINES_PER_CHUNK * 2 + 7


@pytest.mark.asyncio
async def test_export_needs_the_view_permission(
    ds: Datasette, projects: list[str], other_token: str
):
    assert_error(await ds.client.get(f"{API}/export"), 401, "token")
    response = await ds.client.get(f"{API}/export", headers=bearer(other_token))
    assert_error(response, 403, "view-database")
    # The signed-in root user may download it too.
    response = await ds.client.get(
        f"{API}/export", cookies={"ds_actor": ds.client.actor_cookie({"id": "root"})}
    )
    assert response.status_code == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "status", "mention"),
    [
        ("?project=", 400, "project"),
        ("?project=nope", 404, "No project 'nope'"),
        ("?with_queue=maybe", 400, "with_queue"),
    ],
)
async def test_bad_requests_get_json_errors(
    ds: Datasette, auth: dict, projects: list[str], query: str, status: int, mention: str
):
    response = await ds.client.get(f"{API}/export{query}", headers=auth)
    assert_error(response, status, mention, case=query)


@pytest.mark.asyncio
async def test_other_methods_are_405(ds: Datasette, auth: dict):
    response = await ds.client.post(f"{API}/export", headers=auth)
    assert_error(response, 405, "GET")
    assert response.headers["allow"] == "GET"
