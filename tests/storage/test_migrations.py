"""The schema: what a fresh file holds, what it refuses, and how it is migrated."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import MEMORY_TABLES
from processes.common import PROCESSES, ROOT, UUID7
from sqlite_utils import Database

from datasette_claude_mem.storage.database import connect, migrate
from datasette_claude_mem.storage.kinds import ObservationType
from datasette_claude_mem.storage.migrations import OBSERVATION_TYPES, migrations
from datasette_claude_mem.storage.models import new_id
from datasette_claude_mem.storage.staleness import stale_ids
from datasette_claude_mem.storage.store import Store

MIGRATIONS_FILE = ROOT / "datasette_claude_mem" / "storage" / "migrations.py"
SQLITE_UTILS = Path(sys.executable).parent / "sqlite-utils"
TS_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"

TABLES = MEMORY_TABLES | {"observations_fts", "learnings_fts", "tombstones"}
SEED_INDEXES = {
    "idx_obs_session",
    "idx_fn_file",
    "idx_fn_session",
    "idx_fn_change",
    "idx_cg_caller",
    "idx_cg_callee",
    "idx_queue_status",
    "idx_log_session",
    "idx_log_type",
    "idx_log_time",
}
OTHER_INDEXES = {
    "idx_sessions_project",
    "idx_obs_project",
    "idx_learn_project",
    "idx_queue_project",
    "idx_queue_session",
    "idx_queue_lease",
    "idx_cg_session",
    "idx_cg_caller_name",
    "idx_cg_callee_name",
    "idx_obs_agent",
    "idx_fn_name",
    "idx_fn_changed",
    # m013: forgetting a project, and the rows that point at what a forget deletes.
    "idx_tombstones_time",
    "idx_obs_queue_item",
    "idx_learn_session",
    "idx_entries_project",
    "idx_entries_session",
    "idx_log_project",
    "idx_obs_type",
}
TRIGGERS = {
    "observations_ai",
    "observations_ad",
    "observations_au",
    "learnings_ai",
    "learnings_ad",
    "learnings_au",
    "observations_count_insert",
    "observations_count_delete",
    "observations_project",
    "pending_queue_project",
    "function_map_project",
    "call_graph_project",
    "learnings_updated_at",
}


def names(conn: sqlite3.Connection, kind: str) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ?", [kind])
    return {r[0] for r in rows}


def schema(path: Path) -> set[tuple]:
    conn = sqlite3.connect(path)
    try:
        return set(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        conn.close()


@pytest.fixture
def conn(store: Store) -> sqlite3.Connection:
    """The store's own connection, with one session to hang rows on."""
    store.conn.execute(
        "INSERT INTO sessions (id, project, project_dir) VALUES ('s1', 'proj', '/tmp/proj')"
    )
    return store.conn


def test_fresh_file_has_every_table(store: Store) -> None:
    assert TABLES - names(store.conn, "table") == set()


def test_fresh_file_has_the_seed_indexes_and_the_project_ones(store: Store) -> None:
    assert (SEED_INDEXES | OTHER_INDEXES) - names(store.conn, "index") == set()


def test_seed_indexes_lead_with_the_columns_their_queries_filter_on(store: Store) -> None:
    """An index whose first column is not the one filtered on is never used."""
    leading = {
        name: store.conn.execute(f"PRAGMA index_info({name})").fetchone()[2]
        for name in SEED_INDEXES
    }
    assert leading == {
        "idx_obs_session": "session_id",
        "idx_fn_file": "project",
        "idx_fn_session": "session_id",
        "idx_fn_change": "project",
        "idx_cg_caller": "project",
        "idx_cg_callee": "project",
        "idx_queue_status": "status",
        "idx_log_session": "session_id",
        "idx_log_type": "event_type",
        "idx_log_time": "created_at",
    }


def test_fresh_file_has_the_triggers(store: Store) -> None:
    assert TRIGGERS - names(store.conn, "trigger") == set()


def test_migrations_are_recorded_in_order(store: Store) -> None:
    rows = store.conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()
    assert [r[0] for r in rows][:2] == ["m001_enable_wal", "m002_create_tables"]


def test_wal_is_on_for_every_later_connection(store: Store, config) -> None:
    """WAL is a property of the file, so a plain connection (Datasette's) sees it too."""
    plain = sqlite3.connect(config.db_path)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_incremental_auto_vacuum_is_on_for_every_later_connection(store: Store, config) -> None:
    """m014: freed pages can go back to the file system, so retention shrinks the file."""
    plain = sqlite3.connect(config.db_path)
    try:
        assert plain.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    finally:
        plain.close()
    rows = store.conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()
    assert rows[-1][0] == "m014_enable_retention"


def test_store_connection_settings(store: Store) -> None:
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA recursive_triggers").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.conn.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_foreign_keys_are_enforced(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute(
            "INSERT INTO observations (session_id, tool_name, title, summary) "
            "VALUES ('no-such-session', 'Edit', 't', 's')"
        )


def test_deleting_a_session_deletes_its_rows(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO observations (session_id, tool_name, title, summary) "
        "VALUES ('s1', 'Edit', 't', 's')"
    )
    conn.execute("INSERT INTO pending_queue (session_id, tool_name) VALUES ('s1', 'Edit')")
    conn.execute("DELETE FROM sessions WHERE id = 's1'")
    for table in ("observations", "pending_queue", "pending_payloads"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


BAD_ROWS = [
    # (table, valid columns, column, bad value)
    ("sessions", {"project": "p", "project_dir": "/p"}, "status", "paused"),
    ("observations", {"session_id": "s1", "tool_name": "t", "title": "t", "summary": "s"},
     "files_touched", "not json"),
    ("observations", {"session_id": "s1", "tool_name": "t", "title": "t", "summary": "s"},
     "files_touched", '{"a": 1}'),
    ("observations", {"session_id": "s1", "tool_name": "t", "title": "t", "summary": "s"},
     "functions_changed", '"a.py"'),
    ("observations", {"session_id": "s1", "tool_name": "t", "title": "t", "summary": "s"},
     "title", None),
    ("observations", {"session_id": "s1", "tool_name": "t", "title": "t", "summary": "s"},
     "summary", None),
    ("pending_queue", {"session_id": "s1", "tool_name": "t"}, "status", "queued"),
    ("pending_queue", {"session_id": "s1", "tool_name": "t"}, "truncated", 2),
    ("pending_queue", {"session_id": "s1", "tool_name": "t"}, "tool_name", None),
    ("pending_queue", {"session_id": "s1", "tool_name": "t"}, "failure", "crashed"),
    ("function_map", {"session_id": "s1", "file_path": "a.py", "qualified_name": "f",
                      "kind": "function", "body_hash": "h"}, "kind", "lambda"),
    ("function_map", {"session_id": "s1", "file_path": "a.py", "qualified_name": "f",
                      "kind": "function", "body_hash": "h"}, "change_type", "renamed"),
    ("function_map", {"session_id": "s1", "file_path": "a.py", "qualified_name": "f",
                      "kind": "function", "body_hash": "h"}, "decorators", "[oops"),
    ("function_map", {"session_id": "s1", "file_path": "a.py", "qualified_name": "f",
                      "kind": "function", "body_hash": "h"}, "body_hash", None),
    ("call_graph", {"session_id": "s1", "caller_file": "a.py", "caller_function": "f",
                    "callee_function": "g", "resolution": "direct"}, "resolution", "guess"),
    ("call_graph", {"session_id": "s1", "caller_file": "a.py", "caller_function": "f",
                    "callee_function": "g", "resolution": "direct"}, "source", "llm"),
    ("call_graph", {"session_id": "s1", "caller_file": "a.py", "caller_function": "f",
                    "callee_function": "g", "resolution": "direct"}, "confidence", 1.5),
    ("learnings", {"category": "gotcha", "content": "c"}, "category", "trivia"),
    ("learnings", {"category": "gotcha", "content": "c"}, "confidence", -0.1),
    ("learnings", {"category": "gotcha", "content": "c"}, "content", "   "),
    ("learnings", {"category": "gotcha", "content": "c"}, "content", None),
    ("learnings", {"category": "gotcha", "content": "c"}, "is_active", 2),
    ("observations", {"session_id": "s1", "tool_name": "Edit", "title": "t", "summary": "s",
                      "type": "bugfix"}, "type", "chore"),
    ("event_log", {"event_type": "e"}, "data", "[1, 2]"),
    ("event_log", {"event_type": "e"}, "data", "{bad"),
    ("event_log", {"event_type": "e"}, "event_type", None),
    ("pending_payloads", {"item_id": "q1"}, "tool_input", "[]"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "row", "column", "value"), BAD_ROWS)
def test_schema_refuses_bad_values(
    conn: sqlite3.Connection, table: str, row: dict, column: str, value: object
) -> None:
    """Whoever writes (store, sqlite-utils, Datasette's write API), the file stays valid."""
    conn.execute("INSERT INTO pending_queue (id, session_id, tool_name) VALUES ('q1', 's1', 't')")
    conn.execute("DELETE FROM pending_payloads")

    def insert(values: dict) -> None:
        conn.execute(
            f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )

    # The same row with a good value is accepted, so the refusal is the bad value's doing.
    conn.execute("SAVEPOINT good")
    insert(row)
    conn.execute("ROLLBACK TO good")
    conn.execute("RELEASE good")
    before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    expected = "NOT NULL constraint failed" if value is None else "CHECK constraint failed"
    with pytest.raises(sqlite3.IntegrityError, match=expected):
        insert({**row, column: value})
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == before


def test_schema_refuses_bad_values_on_update_too(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO observations (id, session_id, tool_name, title, summary) "
        "VALUES ('o1', 's1', 'Edit', 't', 's')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE observations SET files_touched = 'nope' WHERE id = 'o1'")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE sessions SET status = 'paused' WHERE id = 's1'")


def test_defaults_fill_a_row_that_names_only_what_it_must(conn: sqlite3.Connection) -> None:
    """A row added by hand gets an id, timestamps, empty lists, and its session's project."""
    conn.execute(
        "INSERT INTO observations (session_id, tool_name, title, summary) "
        "VALUES ('s1', 'Edit', 'title', 'summary')"
    )
    row = conn.execute(
        "SELECT id, project, files_touched, functions_changed, tokens_raw, tokens_compressed, "
        "created_at, embedding FROM observations"
    ).fetchone()
    assert UUID7.match(row[0])
    assert row[1:6] == ("proj", "[]", "[]", 0, 0)
    assert row[7] is None
    assert re.match(TS_RE, row[6])
    session = conn.execute(
        "SELECT started_at, status, observation_count FROM sessions WHERE id = 's1'"
    ).fetchone()
    assert re.match(TS_RE, session[0])
    assert session[1:] == ("active", 1)
    conn.execute("INSERT INTO learnings (category, content) VALUES ('gotcha', 'c')")
    assert conn.execute(
        "SELECT confidence, is_active, project, created_at = updated_at FROM learnings"
    ).fetchone() == (0.5, 1, None, 1)
    conn.execute("INSERT INTO pending_queue (session_id, tool_name) VALUES ('s1', 'Bash')")
    queue = conn.execute(
        "SELECT project, status, attempts, max_attempts, files_touched, tool_use_id "
        "FROM pending_queue"
    ).fetchone()
    assert queue[:5] == ("proj", "raw", 0, 3, "[]")
    assert UUID7.match(queue[5])
    conn.execute("INSERT INTO event_log (event_type) VALUES ('e')")
    assert conn.execute("SELECT data FROM event_log").fetchone()[0] == "{}"


def test_explicit_null_takes_the_default(conn: sqlite3.Connection) -> None:
    """sqlite-utils sends NULL for a key another row has: that must mean the default."""
    conn.execute(
        "INSERT INTO observations (id, session_id, tool_name, title, summary, files_touched, "
        "tokens_raw, created_at) VALUES (NULL, 's1', 'Edit', 't', 's', NULL, NULL, NULL)"
    )
    row = conn.execute("SELECT id, files_touched, tokens_raw, created_at FROM observations")
    found = row.fetchone()
    assert UUID7.match(found[0])
    assert found[1:3] == ("[]", 0)
    assert found[3] is not None


def test_rerunning_migrations_is_a_no_op(store: Store, config) -> None:
    before = store.conn.execute("SELECT * FROM _sqlite_migrations").fetchall()
    schema_before = schema(config.db_path)
    assert migrate(store.db) == []
    again = Store(config.db_path)
    again.close()
    assert store.conn.execute("SELECT * FROM _sqlite_migrations").fetchall() == before
    assert schema(config.db_path) == schema_before


def test_sqlite_utils_cli_migrate_builds_the_same_schema(tmp_path: Path) -> None:
    """`sqlite-utils migrate DB migrations.py` is a supported way to make a memory file."""
    by_store = tmp_path / "store.db"
    Store(by_store).close()
    by_cli = tmp_path / "cli.db"
    result = subprocess.run(
        [str(SQLITE_UTILS), "migrate", str(by_cli), str(MIGRATIONS_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert schema(by_cli) == schema(by_store)
    plain = sqlite3.connect(by_cli)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert plain.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        applied = plain.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()
    finally:
        plain.close()
    assert [r[0] for r in applied][:2] == ["m001_enable_wal", "m002_create_tables"]
    # The store opens the CLI's file as it is, adding no migration of its own.
    reopened = Store(by_cli)
    try:
        assert migrate(reopened.db) == []
        assert reopened.conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == (
            len(applied)
        )
    finally:
        reopened.close()


def test_several_processes_migrating_one_fresh_file_at_once(tmp_path: Path, python: str) -> None:
    db = tmp_path / "race.db"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [python, str(PROCESSES / "migrator.py"), str(db), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(0.3)  # let them all import and reach the start line
    go.touch()
    applied: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert err == ""
        applied.extend(json.loads(out))
    # Each step ran exactly once, in whichever process got there first.
    assert sorted(applied) == sorted(set(applied))
    conn = sqlite3.connect(db)
    try:
        recorded = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
        assert sorted(recorded) == sorted(applied)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    reference = tmp_path / "reference.db"
    Store(reference).close()
    assert schema(db) == schema(reference)


def test_database_default_ids_are_uuid7_and_sort_with_python_ids(
    conn: sqlite3.Connection,
) -> None:
    """Rows added by hand and by the store interleave in creation order."""
    earlier = new_id()
    time.sleep(0.002)  # ids order by millisecond; within one they need not
    conn.execute("INSERT INTO event_log (event_type) VALUES ('by-hand')")
    by_db = conn.execute("SELECT id FROM event_log").fetchone()[0]
    time.sleep(0.002)
    later = new_id()
    assert UUID7.match(by_db)
    assert uuid.UUID(by_db).version == 7
    assert earlier < by_db < later
    # The embedded time is the insert's own millisecond clock.
    embedded_ms = int(by_db.replace("-", "")[:12], 16)
    assert int(earlier.replace("-", "")[:12], 16) < embedded_ms
    assert embedded_ms < int(later.replace("-", "")[:12], 16)


def test_migrate_on_a_foreign_connection_applies_once(tmp_path: Path) -> None:
    """Datasette hands the store its own connection: migrate() works on that too."""
    database = Database(connect(tmp_path / "x.db"), execute_plugins=False)
    try:
        first = migrate(database)
        assert first[:2] == ["m001_enable_wal", "m002_create_tables"]
        assert migrate(database) == []
    finally:
        database.conn.close()


# Columns of each migration after the first tables


M006_COLUMNS = {
    "pending_queue": {
        "agent_id",
        "agent_type",
        "prompt_id",
        "duration_ms",
        "mcp_server",
        "failure",
    },
    "observations": {"agent_id", "agent_type"},
    "sessions": {"compact_summary", "context_at"},
}


@pytest.mark.parametrize("table", sorted(M006_COLUMNS))
def test_m006_adds_what_claude_code_sends_beyond_a_tool_use(store: Store, table: str) -> None:
    columns = {r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")}
    assert M006_COLUMNS[table] <= columns


def test_m006_upgrades_a_file_made_before_it_and_keeps_its_rows(tmp_path: Path) -> None:
    database = Database(connect(tmp_path / "old.db"), execute_plugins=False)
    try:
        migrations.apply(database, stop_before="m006_add_claude_code_fields")
        database.execute(
            "INSERT INTO sessions (id, project, project_dir) VALUES ('old', 'p', '/p')"
        )
        assert migrate(database)[0] == "m006_add_claude_code_fields"  # later steps follow
        row = database.execute("SELECT id, compact_summary, context_at FROM sessions").fetchall()
        assert row == [("old", None, None)]
    finally:
        database.conn.close()


def test_a_tool_use_that_succeeded_has_no_failure(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO pending_queue (session_id, tool_name) VALUES ('s1', 'Bash')")
    assert conn.execute("SELECT failure FROM pending_queue").fetchone() == (None,)


def test_an_edit_by_the_sqlite_utils_cli_moves_a_learnings_updated_at(store: Store, config) -> None:
    old = "2001-01-01T00:00:00.000Z"
    store.conn.execute(
        "INSERT INTO learnings (id, category, content, created_at, updated_at) "
        "VALUES ('l1', 'gotcha', 'warm the cache', ?, ?)",
        [old, old],
    )
    result = subprocess.run(
        [
            str(SQLITE_UTILS),
            "query",
            str(config.db_path),
            "UPDATE learnings SET confidence = 0.9 WHERE id = 'l1'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    row = store.conn.execute("SELECT confidence, updated_at FROM learnings").fetchone()
    assert row[0] == 0.9
    assert row[1] > old and re.match(TS_RE, row[1])


M011_COLUMNS = {"function_map": {"base_hash", "changed_at"}, "learnings": {"functions"}}


@pytest.mark.parametrize("table", sorted(M011_COLUMNS))
def test_m011_adds_what_change_tracking_needs(store: Store, table: str) -> None:
    columns = {r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")}
    assert M011_COLUMNS[table] <= columns


def test_m011_keeps_what_earlier_rows_knew_of_their_changes(tmp_path: Path) -> None:
    database = Database(connect(tmp_path / "old.db"), execute_plugins=False)
    try:
        migrations.apply(database, stop_before="m011_add_change_tracking")
        database.execute(
            "INSERT INTO sessions (id, project, project_dir, started_at) "
            "VALUES ('old', 'p', '/p', '2000-06-01T00:00:00.000Z')"
        )
        for name, change in (("a", "new"), ("b", "modified"), ("c", "unchanged")):
            database.execute(
                "INSERT INTO function_map (session_id, file_path, qualified_name, kind, "
                "body_hash, change_type, updated_at) VALUES ('old', 'm.py', ?, 'function', "
                "'h-' || ?, ?, '2001-01-01T00:00:00.000Z')",
                [name, name, change],
            )
        database.execute("INSERT INTO learnings (category, content) VALUES ('gotcha', 'c')")
        assert migrate(database)[0] == "m011_add_change_tracking"
        rows = database.execute(
            "SELECT qualified_name, base_hash, changed_at FROM function_map ORDER BY 1"
        ).fetchall()
        # A change is dated to the start of its session, not to the row's last update.
        assert rows == [
            ("a", None, "2000-06-01T00:00:00.000Z"),
            ("b", "h-b", "2000-06-01T00:00:00.000Z"),
            ("c", "h-c", None),
        ]
        assert database.execute("SELECT functions FROM learnings").fetchall() == [("[]",)]
    finally:
        database.conn.close()


def test_m011_leaves_a_session_unstale_by_its_own_changes(tmp_path: Path) -> None:
    """Before m011 the worker wrote an item's observation first and its function map rows
    after, and a later Read moved the rows' updated_at again: dated by updated_at, every edit
    recorded before the migration would read as stale by its own change."""
    database = Database(connect(tmp_path / "old.db"), execute_plugins=False)
    try:
        migrations.apply(database, stop_before="m011_add_change_tracking")
        for session, started in (("first", "2000-01"), ("second", "2000-02")):
            database.execute(
                "INSERT INTO sessions (id, project, project_dir, started_at) "
                "VALUES (?, 'p', '/p', ?)",
                [session, f"{started}-01T00:00:00.000Z"],
            )
        for obs, session, at in (("before", "first", "2000-01"), ("own", "second", "2000-02")):
            database.execute(
                "INSERT INTO observations (id, session_id, project, tool_name, title, summary, "
                "files_touched, created_at) VALUES (?, ?, 'p', 'Edit', 't', 's', '[\"m.py\"]', ?)",
                [obs, session, f"{at}-01T01:00:00.000Z"],
            )
        database.execute(
            "INSERT INTO function_map (session_id, project, file_path, qualified_name, kind, "
            "body_hash, change_type, updated_at) VALUES ('second', 'p', 'm.py', 'f', "
            "'function', 'h', 'modified', '2000-02-01T05:00:00.000Z')"
        )
        migrate(database)
        assert stale_ids(database.conn, "observation", ["before", "own"]) == {"before"}
    finally:
        database.conn.close()


def test_m012_allows_the_observation_types_the_models_know() -> None:
    """The migration spells the types out (it imports nothing); both lists must agree."""
    assert tuple(ObservationType) == OBSERVATION_TYPES


def test_m012_types_the_observations_made_before_it_by_their_tool(tmp_path: Path) -> None:
    database = Database(connect(tmp_path / "old.db"), execute_plugins=False)
    try:
        migrations.apply(database, stop_before="m012_add_observation_types")
        database.execute(
            "INSERT INTO sessions (id, project, project_dir) VALUES ('old', 'p', '/p')"
        )
        for n, tool in enumerate(("Read", "Edit", "TodoWrite", "Bash")):
            database.execute(
                "INSERT INTO observations (id, session_id, tool_name, title, summary) "
                "VALUES (?, 'old', ?, 't', 's')",
                [f"o{n}", tool],
            )
        assert migrate(database)[0] == "m012_add_observation_types"
        rows = database.execute("SELECT tool_name, type FROM observations ORDER BY id").fetchall()
        # A command says nothing of its purpose by its tool alone: it stays unknown.
        assert rows == [
            ("Read", "discovery"),
            ("Edit", "change"),
            ("TodoWrite", "decision"),
            ("Bash", None),
        ]
    finally:
        database.conn.close()
