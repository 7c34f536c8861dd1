"""Sessions: start, resume, update, list and close, as the hooks and the worker use them."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import (
    ObservationCreate,
    Session,
    SessionStart,
    SessionStatus,
    SessionUpdate,
)
from datasette_claude_mem.storage.store import Store


def start(store: Store, project_dir: Path, **kw) -> Session:
    return store.create_session(SessionStart(project_dir=str(project_dir), **kw)).row


def test_create_then_get_returns_the_same_session(store: Store, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    saved = store.create_session(SessionStart(project_dir=str(repo / "src"), summary="hello"))
    assert saved.created
    got = store.get_session(saved.row.id)
    assert got == saved.row
    assert got.project == str(repo.resolve())  # the repository, not the subdirectory
    assert got.project_dir == str(repo / "src")
    assert got.status == SessionStatus.ACTIVE
    assert got.summary == "hello"
    assert got.observation_count == 0
    assert got.ended_at is None
    assert got.started_at.tzinfo is not None
    assert abs(datetime.now(UTC) - got.started_at) < timedelta(minutes=5)


def test_starting_a_known_session_again_resumes_it_unchanged(store: Store, tmp_path: Path) -> None:
    first = store.create_session(SessionStart(id="abc", project_dir=str(tmp_path), summary="1"))
    again = store.create_session(SessionStart(id="abc", project_dir="/elsewhere", summary="2"))
    assert first.created and not again.created
    assert again.row == first.row
    assert store.conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


def test_explicit_project_overrides_the_directory(store: Store, tmp_path: Path) -> None:
    assert start(store, tmp_path, project="my-project").project == "my-project"


def test_get_unknown_session_is_none(store: Store) -> None:
    assert store.get_session("nope") is None


def test_update_status_summary_and_end(store: Store, session: Session) -> None:
    ended = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    updated = store.update_session(
        session.id,
        SessionUpdate(status=SessionStatus.ERROR, summary="went wrong", ended_at=ended),
    )
    assert updated.status == SessionStatus.ERROR
    assert updated.summary == "went wrong"
    assert updated.ended_at == ended
    assert store.get_session(session.id) == updated
    # Stored as the same ISO text the database writes, so it sorts with its own timestamps.
    raw = store.conn.execute("SELECT ended_at FROM sessions WHERE id = ?", [session.id])
    assert raw.fetchone()[0] == "2030-01-02T03:04:05.678Z"


def test_update_leaves_fields_not_given_alone(store: Store, session: Session) -> None:
    store.update_session(session.id, SessionUpdate(summary="first"))
    updated = store.update_session(session.id, SessionUpdate(status=SessionStatus.CLOSED))
    assert updated.summary == "first"
    assert updated.status == SessionStatus.CLOSED


def test_update_unknown_session_raises(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_session("nope", SessionUpdate(summary="x"))


def test_update_refuses_unknown_fields_and_statuses() -> None:
    with pytest.raises(ValidationError):
        SessionUpdate(staus="closed")
    with pytest.raises(ValidationError):
        SessionUpdate(status="paused")


def test_list_newest_first_and_filtered(store: Store, tmp_path: Path) -> None:
    a = [start(store, tmp_path / "a", project="A") for _ in range(3)]
    b = start(store, tmp_path / "b", project="B")
    store.close_session(a[1].id)
    listed = store.list_sessions()
    assert [s.id for s in listed] == [b.id, a[2].id, a[1].id, a[0].id]
    assert [s.id for s in store.list_sessions(project="A")] == [a[2].id, a[1].id, a[0].id]
    assert [s.id for s in store.list_sessions(status="closed")] == [a[1].id]
    assert [s.id for s in store.list_sessions(project="A", status=SessionStatus.ACTIVE)] == [
        a[2].id,
        a[0].id,
    ]
    assert [s.id for s in store.list_sessions(limit=2)] == [b.id, a[2].id]


def test_list_orders_by_start_time_not_by_insertion(store: Store, tmp_path: Path) -> None:
    late = start(store, tmp_path, id="late")
    early = start(store, tmp_path, id="early")
    store.conn.execute(
        "UPDATE sessions SET started_at = '2020-01-01T00:00:00.000Z' WHERE id = 'early'"
    )
    assert [s.id for s in store.list_sessions()] == [late.id, early.id]
    store.conn.execute(
        "UPDATE sessions SET started_at = '2099-01-01T00:00:00.000Z' WHERE id = 'early'"
    )
    assert [s.id for s in store.list_sessions()] == [early.id, late.id]


def test_close_session_ends_it_and_empties_the_wal(store: Store, session: Session, config) -> None:
    for i in range(20):
        store.create_observation(
            ObservationCreate(session_id=session.id, tool_name="Edit", title=f"t{i}", summary="s")
        )
    wal = Path(str(config.db_path) + "-wal")
    assert wal.stat().st_size > 0
    closed = store.close_session(session.id, summary="done")
    assert closed.status == SessionStatus.CLOSED
    assert closed.summary == "done"
    assert closed.ended_at is not None
    assert closed.observation_count == 20
    assert os.path.getsize(wal) == 0


def test_closing_twice_keeps_the_first_end_and_summary(store: Store, session: Session) -> None:
    first = store.close_session(session.id, summary="done", checkpoint=False)
    again = store.close_session(session.id, checkpoint=False)
    assert again.ended_at == first.ended_at
    assert again.summary == "done"


def test_close_unknown_session_raises(store: Store) -> None:
    with pytest.raises(NotFound):
        store.close_session("nope")


def test_sessions_survive_reopen(store: Store, session: Session, config) -> None:
    store.close()
    with Store(config.db_path) as reopened:
        assert reopened.get_session(session.id) == session


def test_closing_a_session_does_not_wait_for_readers(config, session: Session) -> None:
    """The session-end hook must not stall while someone browses the memory."""
    writer = Store(config.db_path, busy_timeout_ms=30_000)
    reader = Store(config.db_path)
    writer.create_observation(
        ObservationCreate(session_id=session.id, tool_name="Edit", title="a", summary="s")
    )
    reader.conn.execute("BEGIN")
    reader.list_observations(session.id)  # the reader now holds a snapshot
    writer.create_observation(
        ObservationCreate(session_id=session.id, tool_name="Edit", title="b", summary="s")
    )
    closed = threading.Event()

    def close() -> None:
        writer.close_session(session.id)
        closed.set()

    thread = threading.Thread(target=close)
    thread.start()
    returned_while_reader_open = closed.wait(timeout=2)  # far below the 30 s it would block
    reader.conn.execute("COMMIT")
    thread.join()
    reader.close()
    assert writer.get_session(session.id).status == SessionStatus.CLOSED
    writer.close()
    assert returned_while_reader_open
