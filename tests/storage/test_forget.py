"""Forgetting for good: what goes with each kind of forget, what stays, the tombstone, and
that the content is gone from the file's bytes (database and WAL), not only its tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import db_rows, dump, fill
from pydantic import ValidationError

from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.forget import ForgetRequest
from datasette_claude_mem.storage.models import (
    FunctionInput,
    FunctionMapUpsert,
    MemoryEntrySave,
    ObservationCreate,
    QueueItemCreate,
)
from datasette_claude_mem.storage.store import Store

MARKER = "zqxforgetmarker"


def add_vector(store: Store, kind: str, item_id: str) -> None:
    with store.write() as conn:
        conn.execute(
            "INSERT INTO embeddings (kind, item_id, model, version, dims, vector, text_hash) "
            "VALUES (?, ?, 'm', '1', 1, x'0000803f', 'h')",
            [kind, item_id],
        )


def session_of(store: Store, project: str) -> str:
    return store.conn.execute("SELECT id FROM sessions WHERE project = ?", [project]).fetchone()[0]


def count(store: Store, table: str, where: str = "1", params: list | tuple = ()) -> int:
    return store.conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]


def without_project(rows: dict[str, list[dict]], project: str, sessions: set[str]) -> dict:
    """Every row not of this project or its sessions (what a forget of it must leave)."""
    kept = {
        table: [
            r for r in found if r.get("project") != project and r.get("session_id") not in sessions
        ]
        for table, found in rows.items()
    }
    items = {r["id"] for r in kept["pending_queue"]}
    kept["pending_payloads"] = [r for r in kept["pending_payloads"] if r["item_id"] in items]
    return kept


@pytest.fixture
def two(store: Store, tmp_path: Path) -> tuple[str, str]:
    """Two projects with a row in every table; vectors and a prompt for the first."""
    first, second = fill(store, tmp_path, "alpha"), fill(store, tmp_path, "beta")
    sid = session_of(store, first)
    store.log_event("UserPromptSubmit", {"prompt": f"please {MARKER} now"}, session_id=sid,
                    project=first)  # fmt: skip
    for obs in store.conn.execute("SELECT id FROM observations WHERE project = ?", [first]):
        add_vector(store, "observation", obs[0])
    add_vector(store, "session", sid)
    return first, second


def test_forgetting_a_session_takes_everything_recorded_in_it(store: Store, two) -> None:
    first, second = two
    sid = session_of(store, first)
    other = session_of(store, second)
    tables = ("observations", "pending_queue", "event_log", "function_map", "call_graph")
    before = {t: count(store, t, "session_id = ?", [other]) for t in tables}

    tomb = store.erase(ForgetRequest(kind="session", id=sid, reason="private"), by="root")

    for table in ("observations", "pending_queue", "event_log", "prompts", "function_map",
                  "call_graph"):  # fmt: skip
        assert count(store, table, "session_id = ?", [sid]) == 0, table
    assert count(store, "sessions", "id = ?", [sid]) == 0
    assert count(store, "pending_payloads") == count(store, "pending_queue")
    assert count(store, "embeddings") == 0
    assert {t: count(store, t, "session_id = ?", [other]) for t in before} == before
    # Learnings and notes are memory of their own: they stay, their link to it cleared.
    assert count(store, "learnings", "project = ?", [first]) == 1
    assert count(store, "learnings", "source_session_id = ?", [sid]) == 0
    assert count(store, "memory_entries", "project = ?", [first]) == 2
    assert tomb.kind == "session" and tomb.forgotten_by == "root" and tomb.reason == "private"
    assert tomb.counts["observations"] == 2 and tomb.counts["pending_queue"] == 2
    assert tomb.counts["embeddings"] == 3 and tomb.counts["prompts"] == 1
    assert tomb.count == sum(tomb.counts.values())


def test_a_search_no_longer_finds_a_forgotten_session(store: Store, two) -> None:
    first, _ = two
    assert store.search(first, "tokenizer", kinds=["observation"])
    store.erase(ForgetRequest(kind="session", id=session_of(store, first)), by="root")
    assert store.search(first, "tokenizer", kinds=["observation"]) == []
    assert store.search(None, MARKER) == []


def test_forgetting_an_observation_takes_its_tool_use_and_what_only_it_saw(
    store: Store, session
) -> None:
    def tool_use(n: int, files: list[str]) -> str:
        item = store.enqueue(QueueItemCreate(session_id=session.id, tool_use_id=f"t{n}",
                                             tool_name="Edit", files_touched=files,
                                             raw_output=f"{MARKER} {n}")).row  # fmt: skip
        store.claim(1, worker="w")
        store.complete(item.id, "w", ObservationCreate(session_id=session.id, tool_name="Edit",
                                                       title=f"edit {n}", summary="s",
                                                       files_touched=files))  # fmt: skip
        return store.conn.execute(
            "SELECT id FROM observations WHERE queue_item_id = ?", [item.id]
        ).fetchone()[0]

    first = tool_use(1, [f"{session.project_dir}/a.py"])
    tool_use(2, ["b.py"])
    function = FunctionInput(qualified_name="f", kind="function", body_hash="h")
    for path in ("a.py", "b.py"):
        store.upsert_functions(
            FunctionMapUpsert(session_id=session.id, file_path=path, functions=[function])
        )
    add_vector(store, "observation", first)

    tomb = store.erase(ForgetRequest(kind="observation", id=first), by="me")

    assert count(store, "observations") == 1
    assert count(store, "pending_queue") == 1 and count(store, "pending_payloads") == 1
    assert [r[0] for r in store.conn.execute("SELECT file_path FROM function_map")] == ["b.py"]
    assert count(store, "embeddings") == 0
    assert store.get_session(session.id).observation_count == 1
    assert tomb.counts == {"observations": 1, "pending_queue": 1, "pending_payloads": 1,
                           "function_map": 1, "embeddings": 1}  # fmt: skip


def test_a_learning_is_deleted_and_a_note_with_every_version(store: Store, two) -> None:
    first, second = two
    learning = store.conn.execute("SELECT id FROM learnings WHERE project = ?", [first])
    learning_id = learning.fetchone()[0]
    add_vector(store, "learning", learning_id)
    store.erase(ForgetRequest(kind="learning", id=learning_id), by="me")
    assert count(store, "learnings", "id = ?", [learning_id]) == 0
    assert count(store, "embeddings", "kind = 'learning'") == 0

    note = store.save_entry(MemoryEntrySave(namespace="ns", key="k", value="one"))
    store.save_entry(MemoryEntrySave(namespace="ns", key="k", value="two"))
    tomb = store.erase(ForgetRequest(kind="note", id=note.row.id), by="me")
    assert tomb.counts["memory_entries"] == 2
    assert count(store, "memory_entries", "namespace = 'ns'") == 0
    assert count(store, "memory_entries") == 4  # the two projects' own notes


def test_forgetting_a_project_leaves_every_other_row_as_it_was(store: Store, two, config) -> None:
    first, second = two
    sessions = {session_of(store, first)}
    expected = without_project(dump(config.db_path), first, sessions)
    with store.write() as conn:
        conn.execute(
            "INSERT INTO documents (id, project, path, sha256) VALUES ('d1', ?, 'README.md', 'x')",
            [first],
        )
        conn.execute(
            "INSERT INTO doc_chunks (document_id, project, path, body, line_start, line_end) "
            "VALUES ('d1', ?, 'README.md', ?, 1, 2)",
            [first, MARKER],
        )

    tomb = store.erase(ForgetRequest(project=first, reason="done with it"), by="root")

    assert tomb.kind == "project"
    after = dump(config.db_path)
    assert without_project(after, first, sessions) == expected
    for table, rows in after.items():
        assert not [r for r in rows if r.get("project") == first], table
    assert count(store, "documents") == 0 and count(store, "doc_chunks") == 0
    # The other project's payloads are all still there.
    assert count(store, "pending_payloads") == count(store, "pending_queue", "project = ?",
                                                     [second])  # fmt: skip


def test_forgetting_before_a_date_takes_only_older_rows_of_the_kinds_asked(
    store: Store, two
) -> None:
    first, second = two
    with store.write() as conn:
        conn.execute("UPDATE learnings SET created_at = '2020-01-01T00:00:00.000Z' "
                     "WHERE project = ?", [first])  # fmt: skip
        conn.execute("UPDATE observations SET created_at = '2020-01-01T00:00:00.000Z' "
                     "WHERE project = ? AND tool_name = 'Read'", [second])  # fmt: skip
    sessions = count(store, "sessions")

    tomb = store.erase(ForgetRequest(before="2021-01-01", kinds="learning,observation"), by="root")

    assert tomb.kind == "before" and tomb.before == "2021-01-01T00:00:00.000Z"
    assert tomb.counts == {"learnings": 1, "observations": 1}
    assert count(store, "learnings") == 1 and count(store, "observations") == 3
    assert count(store, "sessions") == sessions


def test_before_a_date_in_one_project(store: Store, two) -> None:
    first, second = two
    tomb = store.erase(ForgetRequest(before="2999-01-01", project=second), by="root")
    assert count(store, "sessions") == 1 and session_of(store, first)
    assert count(store, "learnings", "project = ?", [second]) == 0
    assert count(store, "learnings", "project = ?", [first]) == 1
    assert tomb.counts["sessions"] == 1


def test_nothing_found_is_not_found_and_leaves_no_tombstone(store: Store, two) -> None:
    for kind in ("session", "observation", "learning", "note"):
        with pytest.raises(NotFound):
            store.erase(ForgetRequest(kind=kind, id="no-such-id"), by="me")
    assert store.tombstones() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kind": "session"},
        {"kind": "session", "id": "x", "project": "p"},
        {"kind": "project"},
        {"kind": "before"},
        {"project": "p", "id": "x"},
        {"project": "p", "kinds": ["sessions"]},
        {"before": "not a date"},
        {"kind": "project", "project": "p", "before": "2020-01-01"},
    ],
)
def test_a_request_that_does_not_say_what_to_forget_is_refused(body: dict) -> None:
    with pytest.raises(ValidationError):
        ForgetRequest.model_validate(body)


def test_the_tombstone_keeps_no_content_and_a_reason_is_redacted(store: Store, two) -> None:
    first, _ = two
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    store.erase(ForgetRequest(project=first, reason=f"leaked {secret}"), by="root")
    [row] = db_rows(Path(store.conn.execute("PRAGMA database_list").fetchone()[2]),
                    "SELECT * FROM tombstones")  # fmt: skip
    text = repr(row)
    assert secret not in text and first not in text and "tokenizer" not in text
    assert row["kind"] == "project" and row["count"] > 10


def test_every_connection_deletes_securely(store: Store) -> None:
    assert store.conn.execute("PRAGMA secure_delete").fetchone()[0] == 1


def file_bytes(path: Path) -> bytes:
    found = b""
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            found += name.read_bytes()
    return found


@pytest.mark.parametrize("how", ["session", "project", "before"])
def test_forgotten_content_is_gone_from_the_files_bytes(store: Store, config, session,
                                                         how: str) -> None:  # fmt: skip
    """The marker is in the database or its WAL before, in no byte of either after."""
    other = fill(store, config.db_path.parent, "keep")
    item = store.enqueue(QueueItemCreate(session_id=session.id, tool_use_id="t",
                                         tool_name="Bash", tool_input={"command": MARKER},
                                         raw_output=f"out {MARKER} " * 400)).row  # fmt: skip
    store.claim(1, worker="w", project=session.project)
    store.complete(item.id, "w", ObservationCreate(session_id=session.id, tool_name="Bash",
                                                   title=f"ran {MARKER}", summary=MARKER,
                                                   detail=MARKER * 50))  # fmt: skip
    store.log_event("UserPromptSubmit", {"prompt": MARKER}, session_id=session.id,
                    project=session.project)  # fmt: skip
    store.close_session(session.id, summary=f"summary {MARKER}", checkpoint=False)
    # Some of it in the file, some only in the WAL.
    store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    store.log_event("hook", {"note": MARKER}, session_id=session.id, project=session.project)
    assert MARKER.encode() in file_bytes(config.db_path)

    if how == "session":
        store.erase(ForgetRequest(kind="session", id=session.id), by="me")
    elif how == "project":
        store.erase(ForgetRequest(project=session.project), by="me")
    else:
        with store.write() as conn:
            conn.execute("UPDATE sessions SET started_at = '2000-01-01T00:00:00.000Z' "
                         "WHERE id = ?", [session.id])  # fmt: skip
        store.erase(ForgetRequest(before="2001-01-01"), by="me")

    raw = file_bytes(config.db_path)
    assert MARKER.encode() not in raw
    assert MARKER[:8].encode() not in raw  # not even a prefix the FTS index kept
    assert b"tokenizer change in keep" in raw  # the other project is still there
    assert count(store, "sessions", "project = ?", [other]) == 1


def test_a_file_made_before_forgetting_gains_the_table_and_keeps_its_rows(tmp_path) -> None:
    from datasette_claude_mem.storage.database import connect

    path = tmp_path / "old.db"
    with Store(path) as store:
        fill(store, tmp_path, "old")
        store.conn.execute("DROP TABLE tombstones")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm013_add_tombstones'")
        for index in ("idx_obs_queue_item", "idx_learn_session", "idx_entries_project",
                      "idx_entries_session", "idx_log_project"):  # fmt: skip
            store.conn.execute(f"DROP INDEX {index}")
    with Store(path) as store:
        assert count(store, "tombstones") == 0 and count(store, "observations") == 2
    conn = connect(path)
    try:
        plan = " ".join(
            str(r)
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT 1 FROM observations WHERE queue_item_id = 'x'"
            )
        )
    finally:
        conn.close()
    assert "idx_obs_queue_item" in plan


def test_a_forget_inside_a_callers_transaction_is_rolled_back_with_it(store: Store, two) -> None:
    first, _ = two
    with pytest.raises(RuntimeError), store.write():
        store.erase(ForgetRequest(project=first), by="me")
        raise RuntimeError("the caller fails")
    assert count(store, "sessions") == 2 and store.tombstones() == []


def test_tombstones_are_listed_newest_first(store: Store, two) -> None:
    first, second = two
    store.erase(ForgetRequest(project=first), by="a")
    store.erase(ForgetRequest(project=second), by="b")
    assert [t.forgotten_by for t in store.tombstones()] == ["b", "a"]
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO tombstones (kind, forgotten_by) VALUES ('everything', 'x')")


def test_a_call_edge_another_session_confirmed_stays_with_that_session(
    store: Store, tmp_path: Path
) -> None:
    from datasette_claude_mem.storage.models import EdgeInput, EdgesAdd, SessionStart

    project_dir = tmp_path / "shared"
    (project_dir / ".git").mkdir(parents=True)
    earlier, later = (
        store.create_session(SessionStart(project_dir=str(project_dir))).row for _ in range(2)
    )
    function = FunctionInput(qualified_name="main", kind="function", body_hash="h")
    edge = EdgeInput(caller_file="app.py", caller_function="main", callee_function="parse",
                     resolution="unresolved")  # fmt: skip
    only_later = EdgeInput(caller_file="new.py", caller_function="run", callee_function="go",
                           resolution="unresolved")  # fmt: skip
    for s in (earlier, later):
        store.upsert_functions(
            FunctionMapUpsert(session_id=s.id, file_path="app.py", functions=[function])
        )
        store.add_edges(EdgesAdd(session_id=s.id, edges=[edge]))
    store.add_edges(EdgesAdd(session_id=later.id, edges=[only_later]))

    store.erase(ForgetRequest(kind="session", id=later.id), by="me")

    [kept] = db_rows(Path(store.conn.execute("PRAGMA database_list").fetchone()[2]),
                     "SELECT caller_file, session_id, times_confirmed FROM call_graph")  # fmt: skip
    assert kept == {"caller_file": "app.py", "session_id": earlier.id, "times_confirmed": 0}


def test_a_tool_use_in_flight_when_its_session_is_forgotten_is_not_written_back(
    store: Store, session
) -> None:
    item = store.enqueue(
        QueueItemCreate(
            session_id=session.id, tool_use_id="t", tool_name="Bash", raw_output=MARKER
        )  # fmt: skip
    ).row
    [claimed] = store.claim(1, worker="w")
    store.erase(ForgetRequest(kind="session", id=session.id), by="me")
    with pytest.raises(NotFound):
        store.complete(
            claimed.id,
            "w",
            ObservationCreate(session_id=session.id, tool_name="Bash", title="t", summary="s"),
        )
    assert count(store, "observations") == 0 and count(store, "pending_queue") == 0
    assert item.id == claimed.id


def test_semantic_search_lets_go_of_the_vectors_of_what_was_forgotten(store: Store, two) -> None:
    np = pytest.importorskip("numpy")
    from datasette_claude_mem.storage import vectors

    class Fixed:
        name, version = "m", "1"

        def embed(self, texts):
            return np.ones((len(texts), 1), dtype=np.float32)

    first, _ = two
    index = vectors.SemanticSearch(Fixed()).index(store.conn)
    assert len(index.keys) == 3
    store.erase(ForgetRequest(project=first), by="me")
    assert vectors.SemanticSearch(Fixed()).index(store.conn).keys == []
