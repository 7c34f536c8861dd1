"""The five truths the storage layer promises, proven with real processes on a real file.

1. Several processes write and read at once without corruption or loss.
2. A process killed mid-write leaves no partial records and a sound file.
3. What one process wrote, a later process reads back intact (rows and search).
4. Project A never sees project B, through any read or search of the store.
5. Every observation row holds its text, a nullable embedding and the embedding's model.
Plus the queue's promise: a worker killed holding a batch loses nothing and doubles nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from processes.common import EMBEDDING_MODEL, PROCESSES, check_observation, observation_fields

from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    ObservationCreate,
    QueueItemCreate,
    QueueStatus,
    Session,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store


def spawn(python: str, script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [python, str(PROCESSES / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for a child; it must succeed and say nothing on stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert err == "", err
    return out


def fts_ok(conn: sqlite3.Connection) -> None:
    for fts in ("observations_fts", "learnings_fts"):
        conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
        conn.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")


def integrity_ok(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    fts_ok(conn)


# 1. Concurrency


def test_three_writers_and_a_reader_at_once(
    config: Config, store: Store, session: Session, tmp_path: Path, python: str
) -> None:
    """3 processes x 100 writes: exactly 300 whole rows; the reader never sees a torn one."""
    tags = ["w0", "w1", "w2"]
    sessions = {
        tag: store.create_session(SessionStart(project_dir=session.project_dir)).row.id
        for tag in tags
    }
    go, stop = tmp_path / "go", tmp_path / "stop"
    reader = spawn(
        python,
        "reader.py",
        config.db_path,
        session.project,
        go,
        stop,
        *(f"{tag}={sid}" for tag, sid in sessions.items()),
    )
    writers = [spawn(python, "writer.py", config.db_path, sessions[t], t, 100, go) for t in tags]
    time.sleep(0.3)  # all processes reach the start line
    go.touch()
    for writer in writers:
        finish(writer)
    stop.touch()
    report = json.loads(finish(reader))
    assert report["errors"] == []
    assert report["passes"] >= 2
    assert report["max_seen"] == 300  # its last pass, after the writers, saw every row

    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 300
    for tag, session_id in sessions.items():
        rows = store.list_observations(session_id, limit=1000, with_embeddings=True)
        assert [o.title for o in rows] == [f"{tag} write {i}" for i in range(100)]
        for row in rows:
            assert check_observation(row.model_dump(), sessions, session.project) is None
        assert store.get_session(session_id).observation_count == 100
    integrity_ok(store.conn)


# 2. Crash recovery


def test_a_process_killed_mid_transaction_leaves_no_partial_rows(
    config: Config, store: Store, session: Session, python: str
) -> None:
    child = spawn(python, "crasher.py", config.db_path, session.id, 5, 200)
    assert child.stdout is not None
    committed = child.stdout.readline().split()
    ready = child.stdout.readline().split()
    assert committed[0] == "committed" and ready[0] == "ready", child.stderr.read()
    # The open transaction had spilled pages into the WAL before it died.
    assert int(ready[1]) > int(committed[1])
    # While it holds the write lock, others read the committed state only.
    assert [o.title for o in store.list_observations(session.id)] == [
        f"committed write {i}" for i in range(5)
    ]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    child.stdout.close()
    child.stderr.close()
    store.close()

    with Store(config.db_path) as after:
        titles = [o.title for o in after.list_observations(session.id, limit=1000)]
        assert titles == [f"committed write {i}" for i in range(5)]
        assert after.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 5
        assert after.get_session(session.id).observation_count == 5
        assert after.search(session.project, "uncommitted") == []
        assert len(after.search(session.project, "committed")) == 5
        integrity_ok(after.conn)
        # The dead process's lock is gone: writing works at once.
        made = after.create_observation(
            ObservationCreate(session_id=session.id, **observation_fields("after", 0))
        )
        assert made.created
        assert after.get_session(session.id).observation_count == 6


# 3. Persistence


def test_rows_and_search_survive_the_writing_process(
    config: Config, store: Store, session: Session, tmp_path: Path, python: str
) -> None:
    """Written by one process that then exits; read back whole by a fresh store."""
    go = tmp_path / "go"
    go.touch()
    finish(spawn(python, "writer.py", config.db_path, session.id, "p0", 20, go))
    store.close()
    with Store(config.db_path) as fresh:
        rows = fresh.list_observations(session.id, with_embeddings=True)
        assert len(rows) == 20
        for row in rows:
            assert check_observation(row.model_dump(), {"p0": session.id}, session.project) is None
        assert fresh.get_session(session.id).observation_count == 20
        assert {h.title for h in fresh.search(session.project, "p0 write 7")} == {"p0 write 7"}
        fts_ok(fresh.conn)


# 4. Project isolation


@pytest.fixture
def two_projects(store: Store, tmp_path: Path) -> tuple[Session, Session]:
    """Projects A and B with the same words, files and functions, so no filter can hide."""
    made = []
    for name in ("A", "B"):
        directory = tmp_path / f"project-{name}"
        (directory / ".git").mkdir(parents=True)
        session = store.create_session(SessionStart(project_dir=str(directory))).row
        made.append(session)
        store.create_observation(
            ObservationCreate(
                session_id=session.id,
                tool_name="Edit",
                title=f"shared words {name}",
                summary=f"tokenizer change in {name}",
                files_touched=["src/app.py"],
            )
        )
        store.create_learning(
            LearningCreate(
                category="gotcha", content=f"tokenizer gotcha {name}", project=session.project
            )
        )
        store.upsert_functions(
            FunctionMapUpsert(
                session_id=session.id,
                file_path="src/app.py",
                functions=[FunctionInput(qualified_name="main", kind="function", body_hash=name)],
            )
        )
        store.add_edges(
            EdgesAdd(
                session_id=session.id,
                edges=[
                    EdgeInput(
                        caller_file="src/app.py",
                        caller_function="main",
                        callee_file="src/lib.py",
                        callee_function="parse",
                        resolution="direct",
                    )
                ],
            )
        )
        store.enqueue(QueueItemCreate(session_id=session.id, tool_use_id="tu-1", tool_name="Bash"))
        store.log_event("hook", {"project": name}, session_id=session.id, project=session.project)
    return made[0], made[1]


def test_project_a_never_sees_project_b(store: Store, two_projects) -> None:
    a, b = two_projects
    for mine, theirs in ((a, b), (b, a)):
        project = mine.project
        seen: list[tuple[str, str | None]] = []
        seen += [("session", s.project) for s in store.list_sessions(project=project)]
        seen += [("recent", o.project) for o in store.recent_observations(project)]
        seen += [("search", h.project) for h in store.search(project, "tokenizer")]
        seen += [("search", h.project) for h in store.search(project, "shared words")]
        seen += [("learning", x.project) for x in store.active_learnings(project)]
        seen += [("function", f.project) for f in store.latest_functions(project, "src/app.py")]
        seen += [("changed", f.project) for f in store.changed_functions(project)]
        seen += [("callers", e.project) for e in store.callers(project, "parse")]
        seen += [("callees", e.project) for e in store.callees(project, "main")]
        seen += [("event", e.project) for e in store.query_events(project=project)]
        seen += [("queue", i.project) for i in store.claim(10, project=project)]
        kinds = {kind for kind, _ in seen}
        assert kinds == {
            "session",
            "recent",
            "search",
            "learning",
            "function",
            "changed",
            "callers",
            "callees",
            "event",
            "queue",
        }, "every read returned something of the project's own"
        assert [kind for kind, owner in seen if owner != project] == []
        assert store.latest_functions(project, "src/app.py")[0].body_hash == mine.project[-1]
        assert store.queue_stats(project=project).processing == 1
        assert theirs.id not in {o.session_id for o in store.recent_observations(project)}
    # Nothing at all for a third project, and no project-less hits leak in either.
    for read in (
        lambda: store.list_sessions(project="C"),
        lambda: store.recent_observations("C"),
        lambda: store.search("C", "tokenizer"),
        lambda: store.active_learnings("C"),
        lambda: store.latest_functions("C", "src/app.py"),
        lambda: store.changed_functions("C"),
        lambda: store.callers("C", "parse"),
        lambda: store.callees("C", "main"),
        lambda: store.query_events(project="C"),
        lambda: store.claim(10, project="C"),
    ):
        assert read() == []


# 5. Schema completeness


def test_every_observation_row_holds_text_embedding_and_model(store: Store, session: Session):
    with_vector = store.create_observation(
        ObservationCreate(session_id=session.id, **observation_fields("e", 1))
    ).row
    without = store.create_observation(
        ObservationCreate(session_id=session.id, tool_name="Read", title="plain", summary="text")
    ).row
    got = store.get_observation(with_vector.id)
    assert got.embedding == [1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75]
    assert (got.embedding_model, got.embedding_version) == (EMBEDDING_MODEL, "1")
    assert got.detail == observation_fields("e", 1)["detail"]
    plain = store.get_observation(without.id)
    assert (plain.embedding, plain.embedding_model, plain.embedding_version) == (None, None, None)
    assert (plain.title, plain.summary) == ("plain", "text")


# The queue under a crash


@pytest.mark.parametrize("max_attempts", [3, 1])
def test_a_worker_killed_holding_a_batch_loses_and_doubles_nothing(
    config: Config, store: Store, session: Session, tmp_path: Path, python: str, max_attempts: int
) -> None:
    """Its items come back when the lease runs out; two live workers finish everything once.

    With attempts left, every item ends done with exactly one observation; with none left,
    the dead worker's items end as dead letters and the rest are done.
    """
    items = [
        store.enqueue(
            QueueItemCreate(
                session_id=session.id,
                tool_use_id=f"tu-{i}",
                tool_name="Bash",
                raw_output=f"output {i}",
                max_attempts=max_attempts,
            )
        ).row.id
        for i in range(20)
    ]
    doomed = spawn(python, "worker.py", config.db_path, "doomed", "die", 0.3, 5)
    held = json.loads(doomed.stdout.readline())["claimed"]
    assert held == items[:5]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    doomed.stdout.close()
    doomed.stderr.close()

    go = tmp_path / "go"
    survivors = [
        spawn(python, "worker.py", config.db_path, name, "work", 30, 3, go)
        for name in ("alive-1", "alive-2")
    ]
    time.sleep(0.2)
    go.touch()
    reports = [json.loads(finish(w)) for w in survivors]
    completed = [i for r in reports for i in r["completed"]]
    assert sorted(completed) == sorted(set(completed))  # nobody completed an item twice

    per_item = dict(
        store.conn.execute(
            "SELECT q.id, count(o.id) FROM pending_queue q "
            "LEFT JOIN observations o ON o.queue_item_id = q.id GROUP BY q.id"
        ).fetchall()
    )
    for index, item_id in enumerate(items):
        item = store.get_queue_item(item_id)
        if item_id in held and max_attempts == 1:
            assert item.status == QueueStatus.ERROR, item
            assert item.last_error == "lease of doomed expired"
            assert per_item[item_id] == 0
        else:
            assert item.status == QueueStatus.DONE, item
            assert per_item[item_id] == 1
            (obs,) = [
                o for o in store.list_observations(session.id, 100) if o.queue_item_id == item_id
            ]
            assert obs.title == f"observation of tu-{index}"
            assert item.attempts == (2 if item_id in held else 1)
    stats = store.queue_stats()
    assert stats.waiting == stats.processing == 0
    assert stats.dead_letters == (5 if max_attempts == 1 else 0)
    assert stats.done == 20 - stats.dead_letters
    assert store.get_session(session.id).observation_count == stats.done
    assert not os.path.exists(str(config.db_path) + "-journal")
    integrity_ok(store.conn)
