"""Rows added by hand with the sqlite-utils CLI: defaults filled in, bad values refused."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from processes.common import ROOT, UUID7

from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.models import Session
from datasette_claude_mem.storage.store import Store

SQLITE_UTILS = Path(sys.executable).parent / "sqlite-utils"
MIGRATIONS_FILE = ROOT / "datasette_claude_mem" / "storage" / "migrations.py"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def cli(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SQLITE_UTILS), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def insert(db: Path, table: str, rows: list[dict]) -> subprocess.CompletedProcess:
    return cli("insert", db, table, "-", stdin=json.dumps(rows))


def dump(db: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()


def test_migrate_builds_a_fresh_file_and_is_a_no_op_after(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    result = cli("migrate", db, MIGRATIONS_FILE)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        applied = conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    finally:
        conn.close()
    assert {"sessions", "observations", "pending_queue", "learnings", "observations_fts"} <= tables
    again = cli("migrate", db, MIGRATIONS_FILE)
    assert again.returncode == 0, again.stderr
    assert len(dump(db, "_sqlite_migrations")) == applied
    listed = cli("migrate", db, MIGRATIONS_FILE, "--list")
    assert "m002_create_tables" in listed.stdout
    assert re.search(r"Pending:\s+\(none\)", listed.stdout)


def test_heterogeneous_learnings_get_their_defaults(config: Config, store: Store) -> None:
    """Rows with different keys: sqlite-utils sends NULL for the missing ones."""
    result = insert(
        config.db_path,
        "learnings",
        [
            {"category": "gotcha", "content": "naive datetimes break reports"},
            {"category": "pattern", "content": "repository objects", "confidence": 0.9},
            {"category": "convention", "content": "snake case", "project": "proj", "is_active": 1},
        ],
    )
    assert result.returncode == 0, result.stderr
    rows = {x.content: x for x in store.active_learnings("proj")}
    assert set(rows) == {"naive datetimes break reports", "repository objects", "snake case"}
    assert rows["naive datetimes break reports"].confidence == 0.5
    assert rows["repository objects"].confidence == 0.9
    assert rows["snake case"].project == "proj"
    assert rows["naive datetimes break reports"].project is None  # global
    raw = store.conn.execute("SELECT id, is_active, created_at, updated_at FROM learnings")
    for row_id, active, created, updated in raw:
        assert UUID7.match(row_id)
        assert active == 1
        assert TS_RE.match(created) and TS_RE.match(updated)
    assert [h.title for h in store.search("proj", "datetimes")] == ["gotcha"]


def test_heterogeneous_observations_get_defaults_and_the_sessions_project(
    config: Config, store: Store, session: Session
) -> None:
    result = insert(
        config.db_path,
        "observations",
        [
            {
                "session_id": session.id,
                "tool_name": "Edit",
                "title": "added retry loop",
                "summary": "wrapped the call",
                "files_touched": ["src/net.py", "src/retry.py"],
            },
            {
                "session_id": session.id,
                "tool_name": "Bash",
                "title": "ran the suite",
                "summary": "all green",
                "detail": "142 passed",
                "functions_changed": ["retry"],
                "tokens_raw": 900,
            },
        ],
    )
    assert result.returncode == 0, result.stderr
    by_title = {o.title: o for o in store.list_observations(session.id)}
    first, second = by_title["added retry loop"], by_title["ran the suite"]
    assert first.files_touched == ["src/net.py", "src/retry.py"]
    assert first.functions_changed == []
    assert (first.tokens_raw, first.tokens_compressed) == (0, 0)
    assert second.files_touched == []
    assert second.functions_changed == ["retry"]
    assert second.tokens_raw == 900
    for obs in (first, second):
        assert obs.project == session.project
        assert UUID7.match(obs.id)
        assert obs.embedding is None
    assert store.get_session(session.id).observation_count == 2
    assert [h.title for h in store.search(session.project, "retry loop")] == ["added retry loop"]


def test_queue_rows_added_by_hand_are_claimable(
    config: Config, store: Store, session: Session
) -> None:
    result = insert(
        config.db_path,
        "pending_queue",
        [{"session_id": session.id, "tool_name": "Bash", "files_touched": ["a.py"]}],
    )
    assert result.returncode == 0, result.stderr
    (item,) = store.claim(5, worker="w")
    assert item.project == session.project
    assert item.files_touched == ["a.py"]
    assert UUID7.match(item.tool_use_id)
    assert item.attempts == 1


BAD = [
    ("learnings", {"category": "trivia", "content": "x"}, "category IN"),
    ("learnings", {"category": "gotcha", "content": "x", "confidence": 7}, "confidence"),
    ("learnings", {"category": "gotcha", "content": "x", "is_active": 5}, "is_active"),
    ("observations", {"tool_name": "E", "title": "t", "summary": "s", "files_touched": "a.py"},
     "json_valid(files_touched)"),
    ("observations", {"tool_name": "E", "title": "t", "summary": "s", "files_touched": {"a": 1}},
     "json_type(files_touched)"),
    ("observations", {"tool_name": "E", "title": "t"}, "NOT NULL constraint failed"),
    ("pending_queue", {"tool_name": "Bash", "status": "queued"}, "status IN"),
    ("sessions", {"project": "p", "project_dir": "/p", "status": "paused"}, "status IN"),
    ("event_log", {"event_type": "e", "data": [1, 2]}, "json_type(data)"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "bad_row", "message"), BAD)
def test_a_bad_row_is_refused_and_the_table_is_unchanged(
    config: Config, store: Store, session: Session, table: str, bad_row: dict, message: str
) -> None:
    """One bad row in a file refuses the whole file, with a message naming the rule."""
    if table in ("observations", "pending_queue"):
        bad_row = {"session_id": session.id, **bad_row}
    good = {
        "learnings": {"category": "gotcha", "content": "fine"},
        "observations": {"session_id": session.id, "tool_name": "E", "title": "ok", "summary": "s"},
        "pending_queue": {"session_id": session.id, "tool_name": "Bash"},
        "sessions": {"project": "p", "project_dir": "/p"},
        "event_log": {"event_type": "fine"},
    }[table]
    before = dump(config.db_path, table)
    sessions_before = dump(config.db_path, "sessions")
    result = insert(config.db_path, table, [good, bad_row])
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert dump(config.db_path, table) == before
    assert dump(config.db_path, "sessions") == sessions_before  # counts untouched


def test_a_row_naming_an_unknown_session_is_refused(
    config: Config, store: Store, session: Session
) -> None:
    """A typo in session_id must not make an orphan that no session or project lists."""
    result = insert(
        config.db_path,
        "observations",
        [{"session_id": "no-such-session", "tool_name": "E", "title": "t", "summary": "s"}],
    )
    assert result.returncode != 0
    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 0
