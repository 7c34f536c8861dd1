"""The event log: a queryable record of what happened, that never breaks what it records."""

from __future__ import annotations

import pytest

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


def test_log_event_on_a_closed_connection_reports_but_never_raises(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store.close()
    assert store.log_event("after-close", {"x": 1}) is None
    assert "after-close" in capsys.readouterr().err


def test_log_event_with_unserialisable_data_never_raises(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert store.log_event("odd", {"thing": object()}) is None
    assert "odd" in capsys.readouterr().err
    assert store.query_events() == []
    assert not store.conn.in_transaction
    assert store.log_event("fine") is not None


def test_log_event_while_the_database_is_locked_never_raises(
    store: Store, config, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another writer holding the lock past the timeout costs the event, not the caller."""
    import datasette_claude_mem.storage.store as store_module

    blocker = Store(config.db_path)
    blocker.conn.execute("BEGIN IMMEDIATE")
    quick = Store(config.db_path, busy_timeout_ms=10)
    original = store_module.WRITE_RETRY_SECONDS
    store_module.WRITE_RETRY_SECONDS = 0.05
    try:
        assert quick.log_event("blocked") is None
    finally:
        store_module.WRITE_RETRY_SECONDS = original
        blocker.conn.execute("ROLLBACK")
        blocker.close()
        quick.close()
    assert "blocked" in capsys.readouterr().err
    assert store.query_events(event_type="blocked") == []


def test_events_survive_reopen(store: Store, config) -> None:
    store.log_event("before-restart", {"k": "v"})
    store.close()
    with Store(config.db_path) as reopened:
        assert reopened.query_events()[0].data == {"k": "v"}
