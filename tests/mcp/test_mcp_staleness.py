"""Stale memories through the MCP endpoint: remember a learning about a function, change
the function, and search, get and about say the learning is stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import db_rows, mcp_client

from datasette_claude_mem.storage.models import FunctionInput, FunctionMapUpsert, SessionStart
from datasette_claude_mem.storage.store import Store

OLD = "2001-01-01T00:00:00.000Z"


async def call(ds: Datasette, token: str, tool: str, **arguments) -> str:
    async with mcp_client(ds, token) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return result.content[0].text


def record(memory_path: Path, session: str, body: str, root: Path) -> None:
    functions = [FunctionInput(qualified_name="apply_discount", kind="function", body_hash=body)]
    with Store(memory_path) as store:
        store.create_session(SessionStart(id=session, project_dir=str(root)))
        store.upsert_functions(
            FunctionMapUpsert(session_id=session, file_path="shop/pricing.py",
                              functions=functions, baseline=functions)
        )  # fmt: skip


@pytest.mark.asyncio
async def test_a_remembered_learning_goes_stale_when_its_function_changes(
    ds: Datasette, token: str, memory_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    record(memory_path, "s1", "d1", root)
    answer = await call(ds, token, "remember", text="apply_discount rounds half up",
                        kind="learning", category="gotcha", session_id="s1",
                        functions=["shop/pricing.py::apply_discount"])  # fmt: skip
    learning = re.search(r"learning ([0-9a-f-]{36})", answer).group(1)
    assert db_rows(memory_path, "SELECT functions FROM learnings") == [
        {"functions": '["shop/pricing.py::apply_discount"]'}
    ]
    assert "STALE" not in await call(ds, token, "search", query="rounds", session_id="s1")
    with Store(memory_path) as store:
        store.conn.execute("UPDATE learnings SET updated_at = ?", [OLD])
    # Session two finds the function changed (a pull, say) when it first reads the file.
    record(memory_path, "s2", "d2", root)
    found = await call(ds, token, "search", query="rounds", session_id="s1")
    assert learning in found and "STALE: its code changed since" in found
    got = await call(ds, token, "get", ids=[learning], session_id="s1")
    assert "STALE: the code it is about changed since" in got
    about = await call(ds, token, "about", function="apply_discount", session_id="s1")
    assert "STALE" in about
