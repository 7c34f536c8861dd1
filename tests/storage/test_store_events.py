"""The event log: a queryable record of what happened, that never breaks what it records."""

from __future__ import annotations

import sqlite3

import pytest

from datasette_claude_mem.storage.errors import is_busy
from datasette_claude_mem.storage.models import Session
from datasette_claude_mem.storage.store import Store


def test_log_and_read_back_every_field(store: Store, session: Session) -> None:
    entry = store.log_event(
        "compress",
        {"model": "haiku", "items": [1, 2], "ok": True},
        session_id=session.id,
        project=session.project,
        duration_ms=42,
        tokens_in=1200,
        tokens_out=80,
    )
    assert entry is not None
    (got,) = store.query_events()
    assert got == entry
    assert got.event_type == "compress"
    assert got.data == {"model": "haiku", "items": [1, 2], "ok": True}
    assert (got.session_id, got.project) == (session.id, session.project)
    assert (got.duration_ms, got.tokens_in, got.tokens_out) == (42, 1200, 80)
    assert got.created_at.tzinfo is not None


def test_query_by_type_session_and_project_newest_first(store: Store) -> None:
    store.log_event("hook", {"n": 1}, session_id="s1", project="A")
    store.log_event("compress", {"n": 2}, session_id="s1", project="A")
    store.log_event("hook", {"n": 3}, session_id="s2", project="B")
    store.log_event("hook", {"n": 4})

    def ns(**filters) -> list[int]:
        return [e.data["n"] for e in store.query_events(**filters)]

    assert ns() == [4, 3, 2, 1]
    assert ns(event_type="hook") == [4, 3, 1]
    assert ns(session_id="s1") == [2, 1]
    assert ns(event_type="hook", session_id="s1") == [1]
    assert ns(project="B") == [3]
    assert ns(event_type="missing") == []
    assert ns(limit=2) == [4, 3]


def test_event_without_data_stores_an_empty_object(store: Store) -> None:
    store.log_event("ping")
    assert store.conn.execute("SELECT data FROM event_log").fetchone()[0] == "{}"
    assert store.query_events()[0].data == {}


def test_log_event_on_a_closed_connection_raises(store: Store) -> None:
    """A failure to store is the caller's to answer (the API says 503 or 500), not hidden."""
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.log_event("after-close", {"x": 1})


def test_log_event_with_unserialisable_data_raises_and_stores_nothing(store: Store) -> None:
    with pytest.raises(TypeError):
        store.log_event("odd", {"thing": object()})
    assert store.query_events() == []
    assert not store.conn.in_transaction
    assert store.log_event("fine").event_type == "fine"


def test_log_event_while_the_database_is_locked_says_so(store: Store, config) -> None:
    """Another writer holding the lock past the deadline: the caller hears the database is
    busy (so the hook route answers 503 and the command hook spools)."""
    import datasette_claude_mem.storage.store as store_module

    blocker = Store(config.db_path)
    blocker.conn.execute("BEGIN IMMEDIATE")
    quick = Store(config.db_path, busy_timeout_ms=10)
    original = store_module.WRITE_RETRY_SECONDS
    store_module.WRITE_RETRY_SECONDS = 0.05
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            quick.log_event("blocked")
        assert is_busy(raised.value)
    finally:
        store_module.WRITE_RETRY_SECONDS = original
        blocker.conn.execute("ROLLBACK")
        blocker.close()
        quick.close()
    assert store.query_events(event_type="blocked") == []


def test_events_survive_reopen(store: Store, config) -> None:
    store.log_event("before-restart", {"k": "v"})
    store.close()
    with Store(config.db_path) as reopened:
        assert reopened.query_events()[0].data == {"k": "v"}
