"""What the MCP endpoint refuses: callers without the permission a tool needs, bad
arguments (tool errors, never server errors), and requests the Host and Origin guard stops.
None of them changes the memory."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import assert_error, bearer, db_rows, mcp_client

from datasette_claude_mem.names import MCP_PATH
from datasette_claude_mem.storage.models import SessionStart
from datasette_claude_mem.storage.store import Store

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest_asyncio.fixture
async def session(ds: Datasette, memory_path: Path, tmp_path: Path) -> str:
    with Store(memory_path) as store:
        store.create_session(SessionStart(id="s1", project_dir=str(tmp_path / "repo")))
    return "s1"


def counts(path: Path) -> dict[str, int]:
    tables = ("learnings", "memory_entries", "observations", "sessions")
    return {t: db_rows(path, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


async def post(ds: Datasette, body: Any = INITIALIZE, **headers: str):
    return await ds.client.post(MCP_PATH, json=body, headers={**ACCEPT, **headers})


@pytest.mark.asyncio
async def test_anonymous_and_bad_tokens_are_refused(ds: Datasette, other_token: str) -> None:
    response = await post(ds)
    assert_error(response, 401, "token is required")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(await post(ds, **bearer("dstok_not-a-real-token")), 401, "token")
    assert_error(await post(ds, **bearer(other_token)), 403, "Permission denied")


@pytest.mark.asyncio
async def test_a_token_restricted_to_tables_cannot_read_the_memory(
    ds: Datasette, restricted_token: str
) -> None:
    assert_error(await post(ds, **bearer(restricted_token)), 403, "view-database")


@pytest.mark.asyncio
async def test_a_reader_may_search_but_not_remember_or_forget(
    make_ds, memory_path: Path, serve_config: dict, session: str
) -> None:
    config = copy.deepcopy(serve_config)
    config["databases"]["claude-mem"]["allow"]["id"].append("reader")
    reader_ds = await make_ds(memory_path, config=config)
    reader = await reader_ds.create_token("reader")
    before = counts(memory_path)
    async with mcp_client(reader_ds, reader) as client:
        found = await client.call_tool("search", {"query": "anything", "session_id": session})
        assert not found.is_error, found.content[0].text
        for tool, arguments in (
            ("remember", {"text": "a note", "session_id": session}),
            ("forget", {"id": "whatever", "reason": "because", "session_id": session}),
        ):
            result = await client.call_tool(tool, arguments)
            assert result.is_error and "claude-mem-write" in result.content[0].text, tool
    assert counts(memory_path) == before


BAD_CALLS = [
    ("search", {}, "query"),
    ("search", {"query": ""}, "query"),
    ("search", {"query": "x", "session_id": "s1", "limit": "many"}, "limit"),
    ("search", {"query": "x", "session_id": "s1", "limit": 0}, "limit"),
    ("search", {"query": "x", "session_id": "s1", "kinds": ["bogus"]}, "kinds"),
    ("search", {"query": "x", "session_id": "s1", "since": "last week"}, "since"),
    ("timeline", {"session_id": None}, "Pass id"),
    ("timeline", {"id": "no-such-row", "session_id": "s1"}, "No row"),
    ("get", {"ids": [], "session_id": "s1"}, "ids"),
    ("get", {"ids": [str(i) for i in range(21)], "session_id": "s1"}, "ids"),
    ("about", {"session_id": "s1"}, "Pass path or function"),
    ("remember", {"text": "x", "namespace": "project:a/b", "session_id": "s1"}, "together"),
    ("remember", {"text": "   ", "kind": "note", "session_id": "s1"}, "value"),
    ("remember", {"text": "x", "kind": "secret", "session_id": "s1"}, "kind"),
    ("remember", {"text": "x", "kind": "learning", "category": "lore", "session_id": "s1"},
     "category"),
    ("remember", {"text": "x", "confidence": 2, "session_id": "s1"}, "confidence"),
    ("remember", {"text": "x", "namespace": "project:elsewhere/d", "key": "k",
                  "session_id": "s1"}, "not under"),
    ("forget", {"id": "no-such-row", "reason": "x", "session_id": "s1"}, "No learning"),
    ("forget", {"id": "s1", "reason": "x", "session_id": "s1"}, "No learning"),
    ("forget", {"id": "x", "reason": "", "session_id": "s1"}, "reason"),
    ("context", {"session_id": "missing"}, "No session"),
]  # fmt: skip


@pytest.mark.asyncio
async def test_bad_arguments_are_tool_errors_that_change_nothing(
    ds: Datasette, token: str, memory_path: Path, session: str
) -> None:
    before = counts(memory_path)
    async with mcp_client(ds, token) as client:
        for tool, arguments, mention in BAD_CALLS:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments, result.content[0].text)
            assert mention in result.content[0].text, (tool, arguments, result.content[0].text)
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error and "no_such_tool" in unknown.content[0].text
        assert not (await client.call_tool("search", {"query": "x", "session_id": "s1"})).is_error
    assert counts(memory_path) == before


@pytest.mark.asyncio
async def test_broken_protocol_messages_are_client_errors(ds: Datasette, token: str) -> None:
    auth = bearer(token)
    broken = await ds.client.post(MCP_PATH, content=b"{not json", headers={**ACCEPT, **auth,
                                  "Content-Type": "application/json"})  # fmt: skip
    assert 400 <= broken.status_code < 500, broken.text
    wrong_accept = await ds.client.post(MCP_PATH, json=INITIALIZE, headers={
        **auth, "Accept": "text/html"})  # fmt: skip
    assert 400 <= wrong_accept.status_code < 500, wrong_accept.text
    not_rpc = await post(ds, {"hello": "world"}, **auth)
    assert 400 <= not_rpc.status_code < 500, not_rpc.text
    fine = await post(ds, **auth)
    assert fine.status_code == 200 and fine.json()["result"]["serverInfo"]["name"] == "claude-mem"


@pytest.mark.asyncio
async def test_the_host_and_origin_guard_covers_the_endpoint(ds: Datasette, token: str) -> None:
    auth = bearer(token)
    assert_error(await post(ds, **auth, Host="evil.example"), 400, "evil.example")
    refused = await post(ds, **auth, Origin="http://evil.example")
    assert_error(refused, 403, "Cross-site")
