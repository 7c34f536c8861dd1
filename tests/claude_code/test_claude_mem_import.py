"""Beside claude-mem: its database recognised, never written, and imported once.

The claude-mem database here is built from claude-mem's published table definitions (its
base tables and the columns its later migrations add to them), written out for these tests.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from datasette.cli import cli
from helpers import db_rows

from datasette_claude_mem.claude_code import claude_mem_import as importer
from datasette_claude_mem.storage.database import ForeignDatabase
from datasette_claude_mem.storage.project import project_key
from datasette_claude_mem.storage.store import Store

DDL = [
    """CREATE TABLE sdk_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        content_session_id TEXT NOT NULL,
        memory_session_id TEXT UNIQUE,
        project TEXT NOT NULL,
        platform_source TEXT NOT NULL DEFAULT 'claude',
        user_prompt TEXT,
        started_at TEXT NOT NULL,
        started_at_epoch INTEGER NOT NULL,
        completed_at TEXT,
        completed_at_epoch INTEGER,
        status TEXT NOT NULL DEFAULT 'active'
            CHECK (status IN ('active', 'completed', 'failed')),
        worker_port INTEGER,
        prompt_counter INTEGER DEFAULT 0,
        custom_title TEXT
    )""",
    """CREATE TABLE observations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        memory_session_id TEXT NOT NULL
            REFERENCES sdk_sessions(memory_session_id) ON DELETE CASCADE ON UPDATE CASCADE,
        project TEXT NOT NULL,
        text TEXT,
        type TEXT NOT NULL,
        title TEXT,
        subtitle TEXT,
        facts TEXT,
        narrative TEXT,
        concepts TEXT,
        files_read TEXT,
        files_modified TEXT,
        prompt_number INTEGER,
        discovery_tokens INTEGER DEFAULT 0,
        content_hash TEXT,
        agent_type TEXT,
        agent_id TEXT,
        created_at TEXT NOT NULL,
        created_at_epoch INTEGER NOT NULL
    )""",
    """CREATE TABLE session_summaries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        memory_session_id TEXT NOT NULL
            REFERENCES sdk_sessions(memory_session_id) ON DELETE CASCADE ON UPDATE CASCADE,
        project TEXT NOT NULL,
        request TEXT,
        investigated TEXT,
        learned TEXT,
        completed TEXT,
        next_steps TEXT,
        files_read TEXT,
        files_edited TEXT,
        notes TEXT,
        prompt_number INTEGER,
        discovery_tokens INTEGER DEFAULT 0,
        created_at TEXT NOT NULL,
        created_at_epoch INTEGER NOT NULL
    )""",
    """CREATE TABLE user_prompts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_db_id INTEGER REFERENCES sdk_sessions(id) ON DELETE CASCADE,
        content_session_id TEXT NOT NULL,
        prompt_number INTEGER NOT NULL,
        prompt_text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_at_epoch INTEGER NOT NULL
    )""",
    "CREATE TABLE schema_versions (id INTEGER PRIMARY KEY, version INTEGER UNIQUE NOT NULL, "
    "applied_at TEXT NOT NULL)",
]

# 2026-03-01T10:00:00Z and later, in milliseconds.
T0 = 1772359200000


def iso(epoch_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    return conn.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values())
    ).lastrowid


def make_claude_mem_db(path: Path, shop_dir: Path, *, wal: bool = False) -> Path:
    """claude-mem's database with two projects: `shop` (a folder that exists, at shop_dir)
    and `gone` (a folder deleted since). Two sessions of shop, one of gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for statement in DDL:
        conn.execute(statement)
    sessions = [
        ("cc-shop-1", "mem-shop-1", "shop", "completed", 0),
        ("cc-shop-2", "mem-shop-2", "shop", "failed", 3_600_000),
        ("cc-gone-1", "mem-gone-1", "gone", "active", 7_200_000),
    ]
    for content_id, memory_id, project, status, offset in sessions:
        db_id = insert(
            conn,
            "sdk_sessions",
            {
                "content_session_id": content_id,
                "memory_session_id": memory_id,
                "project": project,
                "user_prompt": f"work on {project}",
                "started_at": iso(T0 + offset),
                "started_at_epoch": T0 + offset,
                "completed_at": iso(T0 + offset + 600_000) if status != "active" else None,
                "completed_at_epoch": T0 + offset + 600_000 if status != "active" else None,
                "status": status,
            },
        )
        for number in (1, 2):
            insert(
                conn,
                "user_prompts",
                {
                    "session_db_id": db_id,
                    "content_session_id": content_id,
                    "prompt_number": number,
                    "prompt_text": f"{project} prompt {number}",
                    "created_at": iso(T0 + offset + number * 1000),
                    "created_at_epoch": T0 + offset + number * 1000,
                },
            )
    insert(
        conn,
        "observations",
        {
            "memory_session_id": "mem-shop-1",
            "project": "shop",
            "text": "The cart total ignored discounts",
            "type": "bugfix",
            "title": "Cart total now applies discounts",
            "subtitle": "cart.total() subtracts each line's discount",
            "facts": json.dumps(["total() lives in shop/cart.py", "discounts are per line"]),
            "narrative": "Found while testing checkout.",
            "concepts": json.dumps(["problem-solution"]),
            "files_read": json.dumps([str(shop_dir / "cart.py")]),
            "files_modified": json.dumps([str(shop_dir / "cart.py")]),
            "prompt_number": 1,
            "created_at": iso(T0 + 5000),
            "created_at_epoch": T0 + 5000,
        },
    )
    insert(
        conn,
        "observations",
        {
            "memory_session_id": "mem-shop-2",
            "project": "shop",
            "text": "Explored the pricing module",
            "type": "discovery",
            "title": "Pricing reads rates from rates.toml",
            "subtitle": "with ANTHROPIC_API_KEY=sk-ant-api03-" + "Z" * 86 + "AA in the env",
            "agent_type": "Explore",
            "agent_id": "a0123456789abcdef",
            "created_at": iso(T0 + 3_600_000 + 5000),
            "created_at_epoch": T0 + 3_600_000 + 5000,
        },
    )
    insert(
        conn,
        "observations",
        {
            "memory_session_id": "mem-gone-1",
            "project": "gone",
            "text": "An old note",
            "type": "change",
            "created_at": iso(T0 + 7_200_000 + 5000),
            "created_at_epoch": T0 + 7_200_000 + 5000,
        },
    )
    for number, completed in ((1, "first pass"), (2, "Discounts applied; tests pass")):
        insert(
            conn,
            "session_summaries",
            {
                "memory_session_id": "mem-shop-1",
                "project": "shop",
                "request": "Fix the cart total",
                "completed": completed,
                "learned": "Discounts are per line",
                "next_steps": "Check refunds",
                "prompt_number": number,
                "created_at": iso(T0 + 500_000 + number),
                "created_at_epoch": T0 + 500_000 + number,
            },
        )
    conn.commit()
    conn.close()
    return path


def digest(path: Path) -> dict[str, str]:
    """The bytes of the database and of any WAL beside it."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.glob(path.name + "*"))
    }


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The folder claude-mem named `shop`: a git repository's subdirectory, still there."""
    root = tmp_path / "work" / "shop-repo"
    (root / ".git").mkdir(parents=True)
    folder = root / "shop"
    folder.mkdir()
    (folder / "cart.py").write_text("def total():\n    return 0\n")
    return folder


@pytest.fixture
def claude_mem_db(tmp_path: Path, shop: Path) -> Path:
    return make_claude_mem_db(tmp_path / "cm" / ".claude-mem" / "claude-mem.db", shop)


@pytest.fixture
def target(tmp_path: Path) -> Store:
    store = Store(tmp_path / "mem" / "claude-mem.db")
    yield store
    store.close()


def counts(store: Store) -> dict[str, int]:
    return {
        table: store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("sessions", "observations", "event_log")
    }


# Recognising it


def test_a_claude_mem_database_is_recognised_and_counted(claude_mem_db: Path) -> None:
    found = importer.inspect(claude_mem_db)
    assert found is not None
    assert (found.sessions, found.observations) == (3, 3)


def test_a_memory_of_ours_and_other_files_are_not_claude_mem(tmp_path: Path, target: Store) -> None:
    assert (
        importer.inspect(Path(target.db.conn.execute("PRAGMA database_list").fetchone()[2])) is None
    )
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    assert importer.inspect(text) is None
    assert importer.inspect(tmp_path / "missing.db") is None


@pytest.mark.parametrize("wal", [False, True])
def test_opening_it_as_a_memory_is_refused_and_changes_nothing(
    tmp_path: Path, shop: Path, wal: bool
) -> None:
    path = make_claude_mem_db(tmp_path / "cm.db", shop, wal=wal)
    before = digest(path)
    with pytest.raises(ForeignDatabase, match="sdk_sessions"):
        Store(path)
    assert digest(path) == before


# Importing it


def test_import_brings_sessions_prompts_observations_and_summaries(
    claude_mem_db: Path, target: Store, shop: Path
) -> None:
    report = importer.import_claude_mem(target, claude_mem_db)
    assert (report.sessions, report.prompts, report.observations, report.summaries) == (3, 6, 3, 1)
    first = target.get_session("cc-shop-1")
    assert first is not None and first.status == "closed"
    assert first.started_at.isoformat().startswith("2026-03-01T10:00:00")
    assert first.ended_at is not None and first.ended_at.isoformat().startswith("2026-03-01T10:10")
    # The session's latest summary, every part of it labelled.
    assert first.summary is not None
    assert "Completed: Discounts applied; tests pass" in first.summary
    assert "Request: Fix the cart total" in first.summary and "first pass" not in first.summary
    assert target.get_session("cc-shop-2").status == "error"
    prompts = [e.data["prompt"] for e in target.query_events("UserPromptSubmit", "cc-shop-1")]
    assert sorted(prompts) == ["shop prompt 1", "shop prompt 2"]
    assert target.first_prompt("cc-shop-1") == "shop prompt 1"
    [fix] = target.list_observations("cc-shop-1")
    assert fix.title == "Cart total now applies discounts"
    assert fix.summary == "cart.total() subtracts each line's discount"
    assert "total() lives in shop/cart.py" in fix.detail
    assert fix.files_touched == [str(shop / "cart.py")]
    assert (fix.tool_name, fix.type) == ("claude-mem:bugfix", "bugfix")
    assert fix.created_at.isoformat().startswith("2026-03-01T10:00:05")
    [explore] = target.list_observations("cc-shop-2")
    assert (explore.agent_type, explore.agent_id) == ("Explore", "a0123456789abcdef")
    assert explore.type == "discovery"


def test_project_names_map_to_repository_keys_where_the_folder_exists(
    claude_mem_db: Path, target: Store, shop: Path
) -> None:
    report = importer.import_claude_mem(target, claude_mem_db)
    assert report.projects == {"shop": project_key(shop), "gone": "gone"}
    assert project_key(shop) == str(shop.parent)  # the repository, not the folder
    assert target.get_session("cc-shop-1").project == str(shop.parent)
    assert target.get_session("cc-gone-1").project == "gone"
    assert {o.project for o in target.list_observations("cc-shop-1")} == {str(shop.parent)}


def test_secrets_are_redacted_on_the_way_in(claude_mem_db: Path, target: Store) -> None:
    importer.import_claude_mem(target, claude_mem_db)
    [explore] = target.list_observations("cc-shop-2")
    assert "sk-ant-api03-" + "Z" * 86 not in explore.summary


def test_importing_twice_adds_nothing(claude_mem_db: Path, target: Store) -> None:
    importer.import_claude_mem(target, claude_mem_db)
    before = counts(target)
    again = importer.import_claude_mem(target, claude_mem_db)
    assert (again.sessions, again.prompts, again.observations, again.summaries) == (0, 0, 0, 0)
    assert counts(target) == before


@pytest.mark.parametrize("wal", [False, True])
def test_the_claude_mem_file_is_never_written(
    tmp_path: Path, shop: Path, target: Store, wal: bool
) -> None:
    """Nor is anything made beside it: not even the -wal and -shm of a WAL database."""
    path = make_claude_mem_db(tmp_path / "cm" / "claude-mem.db", shop, wal=wal)
    before = digest(path)
    assert importer.inspect(path) is not None
    importer.import_claude_mem(target, path)
    assert digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["claude-mem.db"]


def test_a_session_already_in_this_memory_keeps_its_rows_and_gains_a_summary(
    claude_mem_db: Path, target: Store, shop: Path
) -> None:
    from datasette_claude_mem.storage.models import SessionStart

    target.create_session(SessionStart(id="cc-shop-1", project_dir=str(shop)))
    report = importer.import_claude_mem(target, claude_mem_db)
    assert report.sessions == 2 and report.summaries == 1
    assert "Discounts applied" in target.get_session("cc-shop-1").summary


# The commands


def run(*args: str):
    return CliRunner().invoke(cli, ["claude-mem", *args], catch_exceptions=False)


def test_the_import_command_reports_and_a_second_run_adds_nothing(
    claude_mem_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "mem"))
    first = run("import-claude-mem", str(claude_mem_db))
    assert first.exit_code == 0, first.output
    assert "3 sessions, 6 prompts, 3 observations and 1 session summaries added" in first.output
    assert "project shop -> " in first.output
    second = run("import-claude-mem", str(claude_mem_db))
    assert second.exit_code == 0, second.output
    assert "0 sessions, 0 prompts, 0 observations and 0 session summaries added" in second.output
    rows = db_rows(tmp_path / "mem" / "claude-mem.db", "SELECT count(*) AS n FROM sessions")
    assert rows == [{"n": 3}]


def test_the_import_command_defaults_to_claude_mems_own_path(
    claude_mem_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "cm"))
    monkeypatch.delenv("CLAUDE_MEM_DIR", raising=False)
    done = run("import-claude-mem")
    assert done.exit_code == 0, done.output
    assert str(claude_mem_db) in done.output
    assert (tmp_path / "cm" / ".datasette-claude-mem" / "claude-mem.db").exists()


def test_the_import_command_refuses_what_is_not_claude_mem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "mem"))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (t TEXT)").connection.commit()
    done = run("import-claude-mem", str(other))
    assert done.exit_code != 0
    assert "is not a claude-mem database" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "mem" / "claude-mem.db").exists()


def test_serve_on_claude_mems_database_says_what_it_found_and_changes_nothing(
    claude_mem_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(tmp_path / "mem"))
    before = digest(claude_mem_db)
    done = run("serve", "--db", str(claude_mem_db))
    assert done.exit_code != 0
    assert "claude-mem's database (3 sessions, 3 observations)" in done.output
    assert "left untouched" in done.output
    assert f"import-claude-mem {claude_mem_db}" in done.output
    assert "Traceback" not in done.output and "already exists" not in done.output
    assert digest(claude_mem_db) == before


def test_serve_beside_claude_mem_serves_its_own_file_and_mentions_the_import(
    claude_mem_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "cm"))
    monkeypatch.delenv("CLAUDE_MEM_DIR", raising=False)
    monkeypatch.setenv("CLAUDE_MEM_WORKER", "0")
    before = digest(claude_mem_db)
    done = CliRunner().invoke(
        cli, ["claude-mem", "serve", "--", "--get", "/-/claude-mem/openapi.json"]
    )
    assert done.exit_code == 0, done.output
    assert '"openapi"' in done.output
    assert "Found claude-mem's database at" in done.output
    assert "datasette claude-mem import-claude-mem" in done.output
    memory = tmp_path / "cm" / ".datasette-claude-mem" / "claude-mem.db"
    assert db_rows(memory, "SELECT count(*) AS n FROM _sqlite_migrations")[0]["n"] >= 6
    assert digest(claude_mem_db) == before
