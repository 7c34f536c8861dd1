"""How store writes meet transactions: whole or nothing, nested in a caller's, patient with locks.

Datasette runs the store on its own write connection inside a transaction it already opened;
hooks run it on a plain file next to other processes. Both must keep a write atomic.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.database import connect
from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import ObservationCreate, Session, SessionStart
from datasette_claude_mem.storage.store import Store


def obs(session_id: str, title: str = "t") -> ObservationCreate:
    return ObservationCreate(session_id=session_id, tool_name="Edit", title=title, summary="s")


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM observations").fetchone()[0]


def test_store_on_a_connection_it_does_not_own(config: Config) -> None:
    """Closing such a store leaves the owner's connection open."""
    conn = connect(config.db_path)
    store = Store(conn)
    session = store.create_session(SessionStart(project_dir="/p")).row
    store.create_observation(obs(session.id))
    store.close()
    assert count(conn) == 1  # still usable
    conn.close()


def test_writes_inside_a_callers_transaction_roll_back_with_it(config: Config) -> None:
    conn = connect(config.db_path)
    store = Store(conn)
    session = store.create_session(SessionStart(project_dir="/p")).row
    conn.execute("BEGIN IMMEDIATE")
    store.create_observation(obs(session.id, "a"))
    store.create_observation(obs(session.id, "b"))
    assert conn.in_transaction  # the store did not commit the caller's transaction
    conn.execute("ROLLBACK")
    assert count(conn) == 0
    assert store.get_session(session.id).observation_count == 0
    conn.close()


def test_a_failed_write_inside_a_callers_transaction_undoes_only_itself(config: Config) -> None:
    conn = connect(config.db_path)
    store = Store(conn)
    session = store.create_session(SessionStart(project_dir="/p")).row
    conn.execute("BEGIN IMMEDIATE")
    store.create_observation(obs(session.id, "kept"))
    with pytest.raises(NotFound):
        store.create_observation(obs("no-such-session"))
    assert conn.in_transaction
    conn.execute("COMMIT")
    assert [o.title for o in store.list_observations(session.id)] == ["kept"]
    conn.close()


def test_a_failed_write_leaves_no_transaction_open(store: Store, session: Session) -> None:
    with pytest.raises(NotFound):
        store.create_observation(obs("no-such-session"))
    assert not store.conn.in_transaction
    assert store.create_observation(obs(session.id)).created


def test_a_write_waits_for_another_writer_instead_of_failing(
    config: Config, session: Session
) -> None:
    """Even with a tiny busy timeout, the store retries until the lock is free."""
    impatient = Store(config.db_path, busy_timeout_ms=1)
    blocker = connect(config.db_path)
    blocker.execute("BEGIN IMMEDIATE")
    holding = threading.Event()

    def release_later() -> None:
        holding.set()
        time.sleep(0.2)
        blocker.execute("COMMIT")

    thread = threading.Thread(target=release_later)
    thread.start()
    holding.wait()
    try:
        saved = impatient.create_observation(obs(session.id))
    finally:
        thread.join()
        blocker.close()
    assert saved.created
    assert count(impatient.conn) == 1
    impatient.close()


def test_a_readers_snapshot_is_unaffected_by_a_concurrent_write(
    config: Config, store: Store, session: Session
) -> None:
    """WAL: a reader in a transaction keeps its view while another connection commits."""
    store.create_observation(obs(session.id, "before"))
    reader = Store(config.db_path)
    reader.conn.execute("BEGIN")
    assert [o.title for o in reader.list_observations(session.id)] == ["before"]
    store.create_observation(obs(session.id, "during"))  # does not wait for the reader
    assert [o.title for o in reader.list_observations(session.id)] == ["before"]
    reader.conn.execute("COMMIT")
    assert [o.title for o in reader.list_observations(session.id)] == ["before", "during"]
    reader.close()


def test_threads_with_their_own_stores_lose_no_writes(config: Config, session: Session) -> None:
    """Ten threads, one store (connection) each, writing at once: every row lands."""
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with Store(config.db_path) as mine:
                for i in range(20):
                    mine.create_observation(obs(session.id, f"thread {n} row {i}"))
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(config.db_path) as check:
        assert count(check.conn) == 200
        assert check.get_session(session.id).observation_count == 200
