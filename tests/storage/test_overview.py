"""The pages' reads (storage/overview.py): the rows they return from a real memory file, read
through a store on a read-only connection like Datasette's read connections."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from datasette_claude_mem.storage import overview
from datasette_claude_mem.storage.models import (
    LearningCreate,
    ObservationCreate,
    QueueItemCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

ALPHA = "/src/alpha"
BETA = "/src/beta"
# Every row's time is set to one of these days, so no count depends on today's date.
DAY = "2025-01-10"
EARLIER = "2025-01-07"
OUTPUT = "héllo wörld " * 10  # not ASCII: bytes and characters differ


def set_time(store: Store, table: str, column: str, row_id: str, value: str) -> None:
    with store.write() as conn:
        conn.execute(f"UPDATE [{table}] SET [{column}] = ? WHERE id = ?", [value, row_id])


def enqueue(store: Store, session_id: str, tool_use_id: str, when: str, **fields):
    values = {"tool_name": "Bash", "raw_output": f"output of {tool_use_id}", **fields}
    item = store.enqueue(
        QueueItemCreate(session_id=session_id, tool_use_id=tool_use_id, **values)
    ).row
    set_time(store, "pending_queue", "created_at", item.id, when)
    return item


@pytest.fixture
def memory(tmp_path: Path) -> dict[str, str]:
    """A memory with two projects. Alpha: session a1 (two prompts, a PostToolUse, a done item
    with its observation, a dead letter, a learning) and a2 (later, no prompt, a waiting
    item); beta: b1 three days earlier with one observation. A global learning, a retired
    one, an older and a newer worker batch."""
    path = tmp_path / "memory.db"
    ids: dict[str, str] = {"path": str(path)}
    with Store(path) as store:
        a1 = store.create_session(SessionStart(id="a1", project_dir=ALPHA, project=ALPHA)).row
        set_time(store, "sessions", "started_at", "a1", f"{DAY}T10:00:00.000Z")
        for n, prompt in enumerate(("first question", "second question")):
            event = store.log_event(
                "UserPromptSubmit", {"prompt": prompt}, session_id=a1.id, project=ALPHA
            )
            set_time(store, "event_log", "created_at", event.id, f"{DAY}T10:0{n + 1}:00.000Z")
        tool = store.log_event("PostToolUse", {"tool_name": "Edit"}, session_id=a1.id)
        set_time(store, "event_log", "created_at", tool.id, f"{DAY}T10:03:00.000Z")
        done = enqueue(store, a1.id, "tu-done", f"{DAY}T10:03:00.000Z", tool_name="Edit",
                       raw_output=OUTPUT)  # fmt: skip
        ids["done"] = done.id
        store.claim(1, worker="w")
        _, observation = store.complete(
            done.id,
            "w",
            ObservationCreate(session_id=a1.id, tool_name="Edit", title="Edited", summary="ok"),
        )
        ids["obs"] = observation.id
        set_time(store, "observations", "created_at", observation.id, f"{DAY}T10:04:00.000Z")
        dead = enqueue(store, a1.id, "tu-dead", f"{DAY}T10:05:00.000Z", max_attempts=1)
        ids["dead"] = dead.id
        store.claim(1, worker="w")
        store.fail(dead.id, "w", "gave up")
        learning = store.create_learning(
            LearningCreate(category="gotcha", content="alpha fact", confidence=0.9,
                           project=ALPHA, source_session_id=a1.id)
        ).row  # fmt: skip
        ids["learning"] = learning.id
        store.close_session(a1.id, summary="done with alpha")

        store.create_session(SessionStart(id="a2", project_dir=ALPHA, project=ALPHA))
        set_time(store, "sessions", "started_at", "a2", f"{DAY}T11:00:00.000Z")
        ids["waiting"] = enqueue(store, "a2", "tu-wait", f"{DAY}T11:01:00.000Z").id

        store.create_session(SessionStart(id="b1", project_dir=BETA, project=BETA))
        set_time(store, "sessions", "started_at", "b1", f"{EARLIER}T09:00:00.000Z")
        beta = store.create_observation(
            ObservationCreate(session_id="b1", tool_name="Read", title="Read", summary="beta")
        ).row
        set_time(store, "observations", "created_at", beta.id, f"{EARLIER}T09:01:00.000Z")

        ids["global"] = store.create_learning(
            LearningCreate(category="convention", content="global fact", confidence=0.5)
        ).row.id
        retired = store.create_learning(
            LearningCreate(category="architecture", content="retired", project=BETA)
        ).row
        store.soft_delete_learning(retired.id)

        for when, data, took in (("T12:00", {"items": 2, "done": 1}, 7), ("T08:00", {}, 5)):
            batch = store.log_event("worker_batch", data, duration_ms=took)
            set_time(store, "event_log", "created_at", batch.id, f"{DAY}{when}:00.000Z")
    return ids


@pytest.fixture
def reader(memory: dict[str, str]) -> Iterator[Store]:
    conn = sqlite3.connect(f"file:{memory['path']}?mode=ro", uri=True, check_same_thread=False)
    try:
        yield Store(conn, migrate_schema=False)
    finally:
        conn.close()


def test_projects_most_recently_active_first_with_their_counts(reader: Store) -> None:
    found = overview.projects(reader)
    assert [p["project"] for p in found] == [ALPHA, BETA]
    alpha, beta = found
    assert (alpha["sessions"], alpha["observations"], alpha["learnings"]) == (2, 1, 1)
    assert (beta["sessions"], beta["observations"], beta["learnings"]) == (1, 1, 0)
    assert (alpha["last_started"], beta["last_started"]) == (
        f"{DAY}T11:00:00.000Z", f"{EARLIER}T09:00:00.000Z",
    )  # fmt: skip
    assert None not in [p["project"] for p in found], "global learnings are no project"


def test_activity_counts_each_kind_by_day(reader: Store) -> None:
    counts = overview.activity(reader, EARLIER)
    assert set(counts) == set(overview.ACTIVITY_KINDS)
    assert counts["tool_uses"] == {DAY: 3}
    assert counts["prompts"] == {DAY: 2}, "only prompts, not other events"
    assert counts["observations"] == {DAY: 1, EARLIER: 1}
    assert counts["sessions"] == {DAY: 2, EARLIER: 1}
    later = overview.activity(reader, DAY)
    assert later["observations"] == {DAY: 1} and later["sessions"] == {DAY: 2}


def test_queue_state_counts_and_the_last_batch(reader: Store) -> None:
    state = overview.queue_state(reader)
    stats = reader.queue_stats()
    assert (state["waiting"], state["done"], state["failed"], state["dead_letters"]) == (
        stats.waiting, stats.done, stats.failed, stats.dead_letters,
    ) == (1, 1, 0, 1)  # fmt: skip
    assert state["oldest_waiting_seconds"] > 0, "the waiting item was queued in the past"
    assert "oldest_waiting_age_seconds" not in state
    assert state["last_batch"]["data"] == {"items": 2, "done": 1}
    assert state["last_batch"]["duration_ms"] == 7


def test_queue_state_of_an_empty_memory(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.db") as store:
        state = overview.queue_state(store)
    assert (state["waiting"], state["dead_letters"], state["oldest_waiting_seconds"]) == (
        0,
        0,
        None,
    )
    assert state["last_batch"] is None


def test_table_counts(reader: Store) -> None:
    counts = overview.table_counts(reader, ["sessions", "pending_queue", "learnings"])
    assert counts == {"sessions": 3, "pending_queue": 3, "learnings": 3}
    assert list(counts) == ["sessions", "pending_queue", "learnings"]


def test_recent_sessions_newest_first_with_their_first_prompt(reader: Store) -> None:
    sessions = overview.recent_sessions(reader, limit=12)
    assert [s["id"] for s in sessions] == ["a2", "a1", "b1"]
    by_id = {s["id"]: s for s in sessions}
    assert by_id["a1"]["first_prompt"] == "first question"
    assert by_id["a1"]["summary"] == "done with alpha"
    assert by_id["a2"]["first_prompt"] is None
    assert [s["id"] for s in overview.recent_sessions(reader, limit=2)] == ["a2", "a1"]


def test_top_learnings_are_active_and_most_confident_first(
    reader: Store, memory: dict[str, str]
) -> None:
    learnings = overview.top_learnings(reader, limit=15)
    assert [row["id"] for row in learnings] == [memory["learning"], memory["global"]]
    assert overview.top_learnings(reader, limit=1)[0]["content"] == "alpha fact"
    assert overview.active_learning_count(reader) == 2


def test_session_rows(reader: Store, memory: dict[str, str]) -> None:
    rows = overview.session_rows(reader, "a1", limit=100)
    assert rows is not None
    assert rows["session"]["status"] == "closed"
    assert [e["event_type"] for e in rows["events"]] == ["UserPromptSubmit", "UserPromptSubmit"]
    assert [t["id"] for t in rows["tool_uses"]] == [memory["done"], memory["dead"]]
    assert [o["id"] for o in rows["observations"]] == [memory["obs"]]
    assert [item["id"] for item in rows["learnings"]] == [memory["learning"]]
    assert rows["functions"] == []
    assert rows["totals"] == {"prompts": 2, "events": 2, "tool_uses": 2, "observations": 1}


def test_session_rows_are_capped_but_counted_in_full(reader: Store) -> None:
    rows = overview.session_rows(reader, "a1", limit=1)
    assert rows is not None
    assert [len(rows[k]) for k in ("events", "tool_uses", "observations")] == [1, 1, 1]
    assert rows["events"][0]["data"] == '{"prompt":"first question"}', "oldest first"
    assert rows["totals"]["tool_uses"] == 2 and rows["totals"]["prompts"] == 2
    assert overview.session_rows(reader, "no such session", limit=10) is None


def test_an_observation_with_its_session_and_queue_item(
    reader: Store, memory: dict[str, str]
) -> None:
    found = overview.row_with_relations(reader, "observations", memory["obs"])
    assert found is not None
    assert found["row"]["title"] == "Edited"
    assert found["session"]["id"] == "a1" and set(found["session"]) == {
        "id", "status", "started_at",
    }  # fmt: skip
    assert found["queue_item"] == {"id": memory["done"], "status": "done", "tool_name": "Edit"}


def test_a_queue_item_with_its_observations_and_payload(
    reader: Store, memory: dict[str, str]
) -> None:
    found = overview.row_with_relations(reader, "pending_queue", memory["done"], payload_chars=5)
    assert found is not None
    assert found["row"]["tool_use_id"] == "tu-done"
    assert found["observations"] == [{"id": memory["obs"], "title": "Edited"}]
    assert found["payload"]["raw_output"] == OUTPUT[:5]
    assert found["payload"]["raw_output_bytes"] == len(OUTPUT.encode("utf-8"))
    hidden = overview.row_with_relations(reader, "pending_queue", memory["done"])
    assert hidden is not None and "payload" not in hidden


def test_a_learning_and_a_session_row(reader: Store, memory: dict[str, str]) -> None:
    learning = overview.row_with_relations(reader, "learnings", memory["learning"])
    assert learning is not None and learning["session"]["id"] == "a1"
    alone = overview.row_with_relations(reader, "learnings", memory["global"])
    assert alone == {"row": alone["row"]} and alone["row"]["content"] == "global fact"
    session = overview.row_with_relations(reader, "sessions", "b1")
    assert session == {"row": session["row"]} and session["row"]["project"] == BETA


def test_rows_that_are_not_there(reader: Store) -> None:
    assert overview.row_with_relations(reader, "observations", "missing") is None
    assert overview.row_with_relations(reader, "event_log", "anything") is None
    assert overview.row_with_relations(reader, "sessions; DROP TABLE sessions", "a1") is None
    assert overview.table_counts(reader, ["sessions"]) == {"sessions": 3}


def test_tokens_spent_counts_settled_calls_and_open_reservations(tmp_path: Path) -> None:
    with Store(tmp_path / "budget.db") as store:
        settled = store.log_event("reserve", {"estimate": 500})
        store.log_event("spend", {"reservation": settled.id}, tokens_in=100, tokens_out=20)
        store.log_event("reserve", {"estimate": 300})  # a call still under way
        store.log_event("spend", {}, tokens_in=7)  # no tokens out reported
        old = store.log_event("spend", {}, tokens_in=1000, tokens_out=1000)
        set_time(store, "event_log", "created_at", old.id, f"{EARLIER}T09:00:00.000Z")
        assert store.tokens_spent("spend", "reserve", DAY) == 100 + 20 + 300 + 7
        assert store.tokens_spent("spend", "reserve", EARLIER) == 100 + 20 + 300 + 7 + 2000
        assert store.tokens_spent("other", "nothing", DAY) == 0
