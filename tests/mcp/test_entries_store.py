"""The store's side of remembering and forgetting (m009): versioned memory entries and
forgotten rows, on a real SQLite file, with sqlite-utils reading what was written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from datasette_claude_mem.claude_code.context import build_context
from datasette_claude_mem.storage.errors import NotFound, StoreError
from datasette_claude_mem.storage.models import (
    LearningCreate,
    MemoryEntrySave,
    ObservationCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store


def entry(value: str, **kw) -> MemoryEntrySave:
    return MemoryEntrySave(**{"namespace": "project:p/decisions", "key": "db", "value": value,
                              "project": "p", **kw})  # fmt: skip


def test_the_migration_adds_entries_and_forgetting_columns(store: Store) -> None:
    db = Database(store.conn)
    assert "memory_entries" in db.table_names() and "memory_entries_fts" in db.table_names()
    for table in ("observations", "learnings"):
        assert {"forgotten_at", "forgotten_by", "forgotten_reason"} <= set(db[table].columns_dict)
    names = [r["name"] for r in db["_sqlite_migrations"].rows]
    assert names[-1] == "m009_add_memory_entries"


def test_each_save_is_a_version_and_the_history_stays(store: Store) -> None:
    first = store.save_entry(entry("SQLite in WAL mode", created_by="agent")).row
    again = store.save_entry(entry("SQLite in WAL mode"))
    assert not again.created and again.row.id == first.id
    second = store.save_entry(entry("SQLite in WAL mode, synchronous NORMAL")).row
    assert (first.version, second.version) == (1, 2)
    history = store.entry_history("project:p/decisions", "db")
    assert [e.version for e in history] == [2, 1]
    assert history[0].superseded_at is None and history[1].superseded_at is not None
    assert history[1].value == "SQLite in WAL mode" and history[1].created_by == "agent"


def test_entries_are_redacted_and_refuse_empty_values(store: Store) -> None:
    saved = store.save_entry(entry("token ghp_" + "a" * 36 + " is the deploy key")).row
    assert "ghp_" + "a" * 36 not in saved.value
    with pytest.raises(sqlite3.IntegrityError):
        store.save_entry(entry("   "))
    assert len(store.entry_history("project:p/decisions", "db")) == 1


def test_forget_records_who_when_why_and_hides_the_row(store: Store, tmp_path: Path) -> None:
    session = store.create_session(SessionStart(project_dir=str(tmp_path / "r"))).row
    made = ObservationCreate(session_id=session.id, tool_name="Edit", title="Cache warmed",
                             summary="the cache is warmed at boot")  # fmt: skip
    observation = store.create_observation(made).row
    learning = store.create_learning(
        LearningCreate(
            category="gotcha", project=session.project, content="the cache must be warmed at boot"
        )
    ).row
    assert {h.id for h in store.search(session.project, "cache")} == {observation.id, learning.id}
    assert "Cache warmed" in build_context(store, session.project).markdown

    done = store.forget(observation.id, "it was a test run", by="agent-1")
    assert (done.kind, done.forgotten_by, done.forgotten_reason) == (
        "observation", "agent-1", "it was a test run")  # fmt: skip
    assert store.forget(learning.id, "wrong", by="agent-1").kind == "learning"
    assert store.search(session.project, "cache") == []
    assert store.recent_observations(session.project) == []
    assert store.active_learnings(session.project) == []
    assert "warmed" not in build_context(store, session.project).markdown
    assert store.get_observation(observation.id) is not None  # still on record

    saved = store.save_entry(entry("Postgres")).row
    newer = store.save_entry(entry("SQLite")).row
    assert store.forget(saved.id, "obsolete", by="me").kind == "entry"
    history = store.entry_history("project:p/decisions", "db")
    assert all(e.forgotten_by == "me" for e in history) and newer.id in {e.id for e in history}
    assert store.forget(newer.id, "asked twice", by="me").kind == "entry"
    assert {e.forgotten_reason for e in store.entry_history("project:p/decisions", "db")} == {
        "obsolete"
    }  # the first forgetting is the one on record


def test_forget_refuses_unknown_ids_and_empty_reasons(store: Store) -> None:
    with pytest.raises(NotFound):
        store.forget("no-such-id", "because", by="me")
    saved = store.save_entry(entry("kept")).row
    with pytest.raises(StoreError, match="reason"):
        store.forget(saved.id, "  ", by="me")
    assert store.get_entry(saved.id).forgotten_at is None
