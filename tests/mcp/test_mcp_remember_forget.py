"""remember and forget through the MCP endpoint: learnings, notes and versioned entries;
what is forgotten leaves search and the context at once, and the row says who, when, why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import db_rows, mcp_client

from datasette_claude_mem.storage.models import ObservationCreate, SessionStart
from datasette_claude_mem.storage.store import Store

SAVED = re.compile(r"(?:Saved|Already saved:|Already known:) \w+ ([0-9a-f-]{36})")


@pytest_asyncio.fixture
async def project(ds: Datasette, memory_path: Path, tmp_path: Path) -> str:
    with Store(memory_path) as store:
        made = store.create_session(SessionStart(id="s1", project_dir=str(tmp_path / "repo")))
        store.create_observation(ObservationCreate(session_id="s1", tool_name="Bash",
            title="Migrations run at startup", summary="the plugin migrates on boot"))  # fmt: skip
        return made.row.project


async def call(ds: Datasette, token: str, tool: str, **arguments) -> tuple[str, bool]:
    async with mcp_client(ds, token) as client:
        result = await client.call_tool(tool, arguments)
    return result.content[0].text, bool(result.is_error)


def saved_id(answer: str) -> str:
    found = SAVED.search(answer)
    assert found, answer
    return found.group(1)


@pytest.mark.asyncio
async def test_remember_a_learning_and_a_note(
    ds: Datasette, token: str, project: str, memory_path: Path
) -> None:
    answer, error = await call(ds, token, "remember", text="Always run ruff format",
                               kind="learning", category="convention", confidence=0.9,
                               session_id="s1")  # fmt: skip
    assert not error, answer
    learning = saved_id(answer)
    rows = db_rows(memory_path, "SELECT project, category, confidence, source_session_id "
                   "FROM learnings WHERE id = ?", [learning])  # fmt: skip
    assert rows == [{"project": project, "category": "convention", "confidence": 0.9,
                     "source_session_id": "s1"}]  # fmt: skip
    again, _ = await call(ds, token, "remember", text="Always run ruff format",
                          kind="learning", category="convention", session_id="s1")  # fmt: skip
    assert again.startswith("Already known:") and saved_id(again) == learning

    answer, error = await call(ds, token, "remember", text="The demo is on Friday",
                               session_id="s1")  # fmt: skip
    note = saved_id(answer)
    assert not error and f"project:{project}/notes" in answer
    found, _ = await call(ds, token, "search", query="demo friday", session_id="s1")
    assert note in found and "note" in found
    context, _ = await call(ds, token, "context", session_id="s1")
    assert "Always run ruff format" in context


@pytest.mark.asyncio
async def test_a_key_saved_again_is_a_new_version_that_supersedes(
    ds: Datasette, token: str, project: str, memory_path: Path
) -> None:
    namespace = f"project:{project}/decisions"
    first = saved_id(
        (
            await call(
                ds,
                token,
                "remember",
                text="Store vectors in LanceDB",
                namespace=namespace,
                key="vectors",
                session_id="s1",
            )
        )[0]
    )
    second_answer, _ = await call(
        ds,
        token,
        "remember",
        text="Store vectors as BLOBs",
        namespace=namespace,
        key="vectors",
        session_id="s1",
    )
    second = saved_id(second_answer)
    assert second != first and "#vectors v2" in second_answer
    same, _ = await call(ds, token, "remember", text="Store vectors as BLOBs",
                         namespace=namespace, key="vectors", session_id="s1")  # fmt: skip
    assert same.startswith("Already saved:") and saved_id(same) == second

    rows = db_rows(memory_path, "SELECT id, version, value, superseded_at IS NOT NULL AS old "
                   "FROM memory_entries WHERE key = 'vectors' ORDER BY version")  # fmt: skip
    assert [(r["id"], r["version"], r["old"]) for r in rows] == [(first, 1, 1), (second, 2, 0)]
    found, _ = await call(ds, token, "search", query="vectors", session_id="s1")
    assert second in found and first not in found  # the history is kept, not searched
    record, _ = await call(ds, token, "get", ids=[first], session_id="s1")
    assert "LanceDB" in record and "superseded_at" in record  # ...but can be read


@pytest.mark.asyncio
async def test_forget_leaves_search_and_context_at_once(
    ds: Datasette, token: str, project: str, memory_path: Path
) -> None:
    learning = saved_id(
        (
            await call(
                ds,
                token,
                "remember",
                text="Migrations need a lock file",
                kind="learning",
                category="gotcha",
                session_id="s1",
            )
        )[0]
    )
    note = saved_id((await call(ds, token, "remember", text="Migrations are slow on NFS",
                                namespace=f"project:{project}/ops", key="nfs",
                                session_id="s1"))[0])  # fmt: skip
    (observation,) = [r["id"] for r in db_rows(memory_path, "SELECT id FROM observations")]
    before, _ = await call(ds, token, "search", query="migrations", session_id="s1")
    assert {learning, note, observation} <= set(re.findall(r"[0-9a-f-]{36}", before))
    context, _ = await call(ds, token, "context", session_id="s1")
    assert "lock file" in context and "Migrations run at startup" in context

    for row_id in (learning, note, observation):
        answer, error = await call(ds, token, "forget", id=row_id, reason="wrong: it was a "
                                   "stale lock", session_id="s1")  # fmt: skip
        assert not error and answer.startswith("Forgot"), answer

    after, _ = await call(ds, token, "search", query="migrations", session_id="s1")
    assert not {learning, note, observation} & set(re.findall(r"[0-9a-f-]{36}", after))
    context, _ = await call(ds, token, "context", session_id="s1")
    assert "lock file" not in context and "Migrations run at startup" not in context
    for table in ("learnings", "memory_entries", "observations"):
        rows = db_rows(
            memory_path,
            f"SELECT forgotten_by, forgotten_reason, forgotten_at "
            f"FROM {table} WHERE id IN (?, ?, ?)",
            [learning, note, observation],
        )
        assert [(r["forgotten_by"], r["forgotten_reason"]) for r in rows] == [
            ("claude-mem", "wrong: it was a stale lock")
        ], table
        assert rows[0]["forgotten_at"]
    record, _ = await call(ds, token, "get", ids=[observation], session_id="s1")
    assert "FORGOTTEN" in record and "stale lock" in record
    response = await ds.client.get(
        "/claude-mem/search_memory.json",
        params={"q": "migrations", "project": project, "_shape": "array"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == []  # the stored search query leaves them out too
