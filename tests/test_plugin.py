"""The plugin's wiring: startup migrations, which database is the memory, connection pragmas."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette
from datasette.utils import StartupError
from helpers import MEMORY_TABLES, api_call, assert_error, empty_sqlite_file, query_rows

from datasette_claude_mem.storage.queries import QUERIES


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def other_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.asyncio
async def test_startup_migrates_a_fresh_file(make_ds, memory_path: Path):
    assert memory_path.stat().st_size == 0
    ds = await make_ds(memory_path)
    assert tables(memory_path) >= MEMORY_TABLES
    assert "observations_fts" in tables(memory_path)
    assert journal_mode(memory_path) == "wal"
    applied = await query_rows(ds, "SELECT name FROM _sqlite_migrations")
    assert applied and all(r["name"] for r in applied)
    # Datasette sees the tables it was started over (its schema cache was refreshed).
    response = await ds.client.get("/claude-mem.json", actor={"id": "root"})
    assert response.status_code == 200, response.text
    listed = {t["name"] for t in response.json()["tables"]}
    assert listed >= MEMORY_TABLES


@pytest.mark.asyncio
async def test_startup_twice_is_a_no_op(make_ds, memory_path: Path):
    await make_ds(memory_path)
    first = tables(memory_path)
    ds = await make_ds(memory_path)
    assert tables(memory_path) == first
    assert len(await query_rows(ds, "SELECT name FROM _sqlite_migrations")) >= 1


@pytest.mark.asyncio
async def test_stored_queries_are_published(make_ds, memory_path: Path):
    ds = await make_ds(memory_path)
    for query in QUERIES:
        stored = await ds.get_query("claude-mem", query.name)
        assert stored is not None and stored.source == "datasette-claude-mem"


@pytest.mark.asyncio
async def test_a_conflicting_file_stops_startup_with_a_clear_error(make_ds, tmp_path: Path):
    path = tmp_path / "claude-mem.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sessions (who TEXT, seat INTEGER)")
    conn.execute("INSERT INTO sessions VALUES ('ada', 1)")
    conn.commit()
    conn.close()
    ds = await make_ds(path, start=False)
    with pytest.raises(StartupError) as raised:
        await ds.invoke_startup()
    message = str(raised.value)
    assert str(path) in message
    assert "not a claude-mem memory database" in message
    assert "sessions" in message  # the cause: the table that is in the way
    # Nothing was added and the table is as it was.
    assert tables(path) == {"sessions"}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT * FROM sessions").fetchall() == [("ada", 1)]
    conn.close()


@pytest.mark.asyncio
async def test_a_refused_file_keeps_its_journal_mode(make_ds, tmp_path: Path):
    path = tmp_path / "claude-mem.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sessions (who TEXT)")
    conn.commit()
    conn.close()
    ds = await make_ds(path, start=False)
    with pytest.raises(StartupError):
        await ds.invoke_startup()
    ds.close()
    assert journal_mode(path) == "delete"


@pytest.mark.asyncio
async def test_an_immutable_memory_stops_startup(make_ds, serve_config, memory_path: Path):
    from datasette_claude_mem.storage.store import Store

    Store(memory_path).close()
    ds = Datasette(immutables=[str(memory_path)], config=serve_config)
    try:
        with pytest.raises(StartupError, match="immutable"):
            await ds.invoke_startup()
    finally:
        ds.close()


@pytest.mark.asyncio
async def test_other_databases_are_left_alone(make_ds, memory_path: Path, tmp_path: Path):
    other = other_database(tmp_path / "other.db")
    empty = empty_sqlite_file(tmp_path / "empty.db")
    ds = await make_ds(memory_path, other, empty)
    assert set(ds.databases) >= {"claude-mem", "other", "empty"}
    assert tables(other) == {"notes"}
    assert tables(empty) == set()
    assert journal_mode(other) == "delete"
    assert await query_rows(ds, "SELECT body FROM notes", database="other") == [{"body": "keep me"}]
    # The plugin's pragmas are for the memory's connections only.
    other_db = ds.get_database("other")
    assert (await other_db.execute("PRAGMA recursive_triggers")).first()[0] == 0
    assert (await ds.get_query("other", "active_learnings")) is None


@pytest.mark.asyncio
async def test_database_option_chooses_another_name(make_ds, tmp_path: Path):
    memory = empty_sqlite_file(tmp_path / "memory.db")
    bystander = empty_sqlite_file(tmp_path / "claude-mem.db")
    config: dict[str, Any] = {
        "plugins": {"datasette-claude-mem": {"database": "memory"}},
        "databases": {
            "memory": {"permissions": {"claude-mem-write": {"id": ["claude-mem"]}}},
        },
    }
    ds = await make_ds(memory, bystander, config=config)
    assert tables(memory) >= MEMORY_TABLES
    assert tables(bystander) == set()
    assert (await ds.get_query("memory", "recent_sessions")) is not None
    assert (await ds.get_query("claude-mem", "recent_sessions")) is None

    token = await ds.create_token("claude-mem")
    response = await api_call(ds, "POST", "/sessions", {"project_dir": "/p"}, token=token)
    assert response.status_code == 201, response.text
    assert await query_rows(ds, "SELECT project FROM sessions", database="memory") == [
        {"project": "/p"}
    ]
    listed = await ds.client.get("/memory/recent_sessions.json", actor={"id": "root"})
    assert listed.status_code == 200
    assert [r["project"] for r in listed.json()["rows"]] == ["/p"]


@pytest.mark.asyncio
async def test_without_a_memory_database_the_api_says_so(make_ds, tmp_path: Path):
    other = other_database(tmp_path / "other.db")
    ds = await make_ds(other)
    assert tables(other) == {"notes"}
    token = await ds.create_token("claude-mem")
    response = await api_call(ds, "POST", "/sessions", {"project_dir": "/p"}, token=token)
    assert_error(response, 404, "claude-mem")


async def pragma(ds: Datasette, name: str) -> Any:
    db = ds.get_database("claude-mem")
    return (await db.execute(f"PRAGMA {name}")).first()[0]


async def write_connection_pragma(ds: Datasette, name: str) -> Any:
    db = ds.get_database("claude-mem")
    return await db.execute_write_fn(
        lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0], transaction=False
    )


@pytest.mark.asyncio
async def test_memory_connections_get_the_store_pragmas(ds: Datasette):
    for read in (pragma, write_connection_pragma):
        assert await read(ds, "busy_timeout") == 5000, read
        assert await read(ds, "foreign_keys") == 1, read
        assert await read(ds, "recursive_triggers") == 1, read
        assert await read(ds, "synchronous") == 1, read  # NORMAL
    assert await write_connection_pragma(ds, "journal_mode") == "wal"


@pytest.mark.asyncio
async def test_full_synchronous_from_the_environment(
    make_ds, memory_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CLAUDE_MEM_SYNCHRONOUS", "FULL")
    ds = await make_ds(memory_path)
    assert await pragma(ds, "synchronous") == 2
    assert await write_connection_pragma(ds, "synchronous") == 2


@pytest.mark.asyncio
async def test_the_fts_helper_is_on_memory_connections(ds: Datasette):
    db = ds.get_database("claude-mem")
    result = await db.execute("SELECT claude_mem_fts_query(?) AS q", ['say "hi" (now)'])
    assert result.first()[0] == '"say" "hi" "now"'
    result = await db.execute("SELECT claude_mem_fts_query('') AS q")
    assert result.first()[0] == '""'


@pytest.mark.asyncio
async def test_the_write_action_is_registered(ds: Datasette):
    action = ds.actions.get("claude-mem-write")
    assert action is not None
    assert action.description


@pytest.mark.asyncio
async def test_anonymous_cannot_read_the_memory_under_the_serve_configuration(ds: Datasette):
    for path in ("/claude-mem", "/claude-mem.json", "/claude-mem/sessions.json"):
        anonymous = await ds.client.get(path)
        assert anonymous.status_code == 403, path
        root = await ds.client.get(path, actor={"id": "root"})
        assert root.status_code == 200, path
    sql = await ds.client.get("/claude-mem/-/query.json", params={"sql": "select 1"})
    assert sql.status_code == 403


@pytest.mark.asyncio
async def test_a_write_sets_no_pragma_on_the_write_connection(
    ds: Datasette, token: str, session_id: str
):
    """Setting a pragma such as recursive_triggers expires every prepared statement on the
    connection, so a write that set it again would recompile its statements every time."""
    db = ds.get_database("claude-mem")
    seen: list[str] = []
    await db.execute_write_fn(lambda conn: conn.set_trace_callback(seen.append), transaction=False)
    try:
        body = {"session_id": session_id, "tool_name": "Edit", "title": "t", "summary": "s"}
        response = await api_call(ds, "POST", "/observations", body, token=token)
        assert response.status_code == 201, response.text
    finally:
        await db.execute_write_fn(lambda conn: conn.set_trace_callback(None), transaction=False)
    assert any("INSERT INTO observations" in sql for sql in seen), seen
    settings = [sql for sql in seen if sql.lstrip().upper().startswith("PRAGMA") and "=" in sql]
    assert settings == []
    assert await write_connection_pragma(ds, "recursive_triggers") == 1
