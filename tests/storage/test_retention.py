"""Retention: old raw payloads, dead letters and event rows go, prompts and observations stay,
and the space goes back to the file system. Rows are aged by setting their timestamps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import finished_long_ago

from datasette_claude_mem.storage.models import QueueItemCreate, Session, SessionStart
from datasette_claude_mem.storage.retention import (
    Policy,
    file_size,
    freeable,
    purge,
    purge_step,
    space,
    vacuum_step,
)
from datasette_claude_mem.storage.store import Store

OLD = "2000-01-01T00:00:00.000Z"
POLICY = Policy(payload_days=30, dead_letter_days=90, event_days=90)


def days_ago(store: Store, days: int) -> str:
    return store.conn.execute(
        "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)", [f"-{days} days"]
    ).fetchone()[0]


def queued(store: Store, session: Session, name: str, output: str = "x" * 1000) -> str:
    saved = store.enqueue(
        QueueItemCreate(
            session_id=session.id, tool_use_id=name, tool_name="Bash", raw_output=output
        )
    )
    return saved.row.id


def finish(store: Store, item_id: str, completed_at: str) -> None:
    store.conn.execute(
        "UPDATE pending_queue SET status = 'done', completed_at = ? WHERE id = ?",
        [completed_at, item_id],
    )


def dead_letter(store: Store, item_id: str, updated_at: str) -> None:
    store.conn.execute(
        "UPDATE pending_queue SET status = 'error', attempts = max_attempts, updated_at = ? "
        "WHERE id = ?",
        [updated_at, item_id],
    )


def payload_ids(store: Store) -> set[str]:
    return {r[0] for r in store.conn.execute("SELECT item_id FROM pending_payloads")}


def queue_ids(store: Store) -> set[str]:
    return {r[0] for r in store.conn.execute("SELECT id FROM pending_queue")}


def test_a_finished_payload_goes_after_retention_days_and_its_queue_row_stays(
    store: Store, session: Session
) -> None:
    old, recent, waiting = (queued(store, session, n) for n in ("old", "recent", "waiting"))
    finish(store, old, days_ago(store, 31))
    finish(store, recent, days_ago(store, 29))
    store.conn.execute("UPDATE pending_queue SET created_at = ? WHERE id = ?", [OLD, waiting])

    done = purge(store, POLICY)

    assert (done.payloads, done.dead_letters, done.events) == (1, 0, 0)
    assert payload_ids(store) == {recent, waiting}
    assert queue_ids(store) == {old, recent, waiting}
    item = store.get_queue_item(old)
    assert item.raw_output is None and item.status == "done"


def test_a_dead_letter_stays_past_retention_days_and_goes_after_its_own(
    store: Store, session: Session
) -> None:
    kept, gone, retrying = (queued(store, session, n) for n in ("kept", "gone", "retrying"))
    dead_letter(store, kept, days_ago(store, 60))
    dead_letter(store, gone, days_ago(store, 91))
    # A failure with attempts left is still work, however old.
    store.conn.execute(
        "UPDATE pending_queue SET status = 'error', attempts = 1, updated_at = ? WHERE id = ?",
        [OLD, retrying],
    )

    done = purge(store, POLICY)

    assert done.dead_letters == 1 and done.payloads == 0
    assert queue_ids(store) == {kept, retrying}
    assert payload_ids(store) == {kept, retrying}


def test_old_events_go_but_prompts_stay_searchable(store: Store, session: Session) -> None:
    store.log_event(
        "UserPromptSubmit",
        {"prompt": "why is the parser slow"},
        session_id=session.id,
        project=session.project,
    )
    store.log_event("SessionStart", {"source": "startup"}, session_id=session.id)
    store.log_event("Stop", {}, session_id=session.id)
    store.conn.execute("UPDATE event_log SET created_at = ?", [OLD])
    store.log_event("Stop", {"recent": True}, session_id=session.id)

    done = purge(store, POLICY)

    assert done.events == 2
    kinds = sorted(r[0] for r in store.conn.execute("SELECT event_type FROM event_log"))
    assert kinds == ["Stop", "UserPromptSubmit"]
    assert [h.kind for h in store.search(session.project, "parser slow")] == ["prompt"]


def test_zero_days_keeps_everything(store: Store, session: Session) -> None:
    item = queued(store, session, "a")
    finish(store, item, OLD)
    store.log_event("Stop", {}, session_id=session.id, created_at=OLD)

    done = purge(store, Policy(payload_days=0, dead_letter_days=0, event_days=0))

    assert done.total == 0
    assert payload_ids(store) == {item}


def test_a_step_removes_at_most_its_limit(store: Store, session: Session) -> None:
    items = [queued(store, session, f"t{i}") for i in range(5)]
    for item in items:
        finish(store, item, OLD)

    first = purge_step(store, POLICY, limit=2)

    assert first.payloads == 2 and len(payload_ids(store)) == 3
    assert purge(store, POLICY).payloads == 3


def test_freeable_says_what_purge_then_removes(store: Store, session: Session) -> None:
    item = queued(store, session, "big", "y" * 50_000)
    finish(store, item, OLD)
    queued(store, session, "waiting", "z" * 50_000)

    rows, nbytes = freeable(store.conn, POLICY)["payloads"]

    assert rows == 1 and 50_000 <= nbytes < 51_000
    assert purge(store, POLICY).payloads == 1
    assert freeable(store.conn, POLICY)["payloads"] == (0, 0)


def test_the_file_shrinks_once_the_vacuum_steps_have_run(
    store: Store, session: Session, config
) -> None:
    for i in range(40):
        finish(store, queued(store, session, f"t{i}", f"{i}" * 200_000), OLD)
    store.checkpoint()
    before = file_size(config.db_path)
    assert before > 8_000_000

    purge(store, POLICY)
    steps = []
    while freed := vacuum_step(store, 256):
        steps.append(freed)

    assert steps and max(steps) <= 256
    assert store.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert file_size(config.db_path) < before / 4
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_vacuum_step_inside_a_transaction_does_nothing(store: Store, session: Session) -> None:
    finish(store, queued(store, session, "a", "q" * 100_000), OLD)
    purge(store, POLICY)
    with store.write():
        assert vacuum_step(store, 10) == 0
    assert vacuum_step(store, 10) > 0


def test_space_says_what_holds_the_file_and_what_retention_frees(
    store: Store, session: Session, config
) -> None:
    finish(store, queued(store, session, "old", "o" * 300_000), OLD)
    store.log_event("Stop", {"note": "n" * 10_000}, session_id=session.id, created_at=OLD)

    found = space(store.conn, POLICY)

    assert Path(found.path) == config.db_path
    assert found.incremental
    assert (
        found.file_bytes
        == store.conn.execute(
            "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
        ).fetchone()[0]
    )
    tables = dict(found.tables)
    assert found.tables[0][0] == "pending_payloads"
    assert tables["pending_payloads"] >= 300_000
    # The rest is free pages and the page maps incremental vacuum keeps.
    assert 0 < found.file_bytes - sum(tables.values()) - found.free_bytes < 0.05 * found.file_bytes
    assert found.freeable["payloads"][0] == 1 and found.freeable["events"][0] == 1
    assert found.freeable_bytes >= 310_000


def test_a_memory_made_before_m014_takes_incremental_vacuum_when_migrated(
    tmp_path: Path,
) -> None:
    from sqlite_utils import Database

    from datasette_claude_mem.storage.migrations import migrations

    path = tmp_path / "old.db"
    db = Database(sqlite3.connect(path, isolation_level=None))
    migrations.apply(db, stop_before="m014_enable_retention")
    db.execute("INSERT INTO sessions (id, project, project_dir) VALUES ('s', 'p', '/p')")
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    db.conn.close()

    with Store(path) as store:
        assert store.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert store.conn.execute("SELECT id FROM sessions").fetchall() == [("s",)]
        applied = {r[0] for r in store.conn.execute("SELECT name FROM _sqlite_migrations")}
    assert "m014_enable_retention" in applied


@pytest.mark.parametrize("days", [-1, "30", True])
def test_retention_settings_refuse_what_is_not_a_number_of_days(days) -> None:
    from datasette_claude_mem.settings import Config, SettingsError

    with pytest.raises(SettingsError, match="retention_days"):
        Config.load({"retention_days": days}, environ={})


def test_a_big_memory_made_before_m014_gets_its_vacuum_after_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The VACUUM copies what is kept, not the raw outputs retention is about to remove."""
    from sqlite_utils import Database

    from datasette_claude_mem.storage import database
    from datasette_claude_mem.storage.migrations import migrations

    path = tmp_path / "old.db"
    db = Database(sqlite3.connect(path, isolation_level=None))
    migrations.apply(db, stop_before="m014_enable_retention")
    db.conn.close()
    monkeypatch.setattr(database, "MIGRATE_VACUUM_BYTES", 0)

    with Store(path) as store:
        assert store.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        session = store.create_session(SessionStart(project_dir=str(tmp_path))).row
        finished_long_ago(store, session.id, 20, 100_000)
        before = file_size(path)
        purge(store, POLICY)
        # The server's worker leaves a file over its bound alone; `purge` asks for no bound.
        assert vacuum_step(store, 256, vacuum_up_to=0) == 0
        assert store.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        while vacuum_step(store, 256, vacuum_up_to=None):
            pass
        assert store.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert file_size(path) < before / 4
