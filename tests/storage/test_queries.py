"""The stored queries at /claude-mem/NAME.json, over a memory seeded through the Store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import bearer

from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    LearningUpdate,
    ObservationCreate,
    QueueItemCreate,
    SessionStart,
)
from datasette_claude_mem.storage.queries import QUERIES
from datasette_claude_mem.storage.store import Store

A = "/proj/a"
B = "/proj/b"
QUERY_NAMES = [
    "active_learnings",
    "changed_functions",
    "callers",
    "callees",
    "queue_stats",
    "recent_sessions",
    "session_timeline",
    "search_memory",
]


def seed(store: Store) -> dict[str, Any]:
    """A small, known memory: two projects, three sessions, a bit of everything."""
    for session_id, project, started in (
        ("sa1", A, "2024-01-01T10:00:00.000Z"),
        ("sa2", A, "2024-01-02T10:00:00.000Z"),
        ("sb1", B, "2024-01-03T10:00:00.000Z"),
    ):
        store.create_session(SessionStart(id=session_id, project_dir=project, project=project))
        store.conn.execute("UPDATE sessions SET started_at = ? WHERE id = ?", [started, session_id])

    learnings = {}
    for key, project, category, content, confidence in (
        ("a_gotcha", A, "gotcha", "The parser chokes on tabs", 0.9),
        ("a_convention", A, "convention", "Tests live beside the code", 0.4),
        ("global", None, "pattern", "Prefer small parser functions", 0.7),
        ("b_gotcha", B, "gotcha", "B deploys on Fridays", 0.8),
        ("a_retired", A, "gotcha", "An old parser belief", 0.95),
    ):
        learnings[key] = store.create_learning(
            LearningCreate(category=category, content=content, confidence=confidence,
                           project=project)
        ).row.id  # fmt: skip
    store.update_learning(learnings["a_retired"], LearningUpdate(is_active=False))

    def functions(session_id: str, file_path: str, *specs: tuple[str, str]) -> None:
        store.upsert_functions(
            FunctionMapUpsert(
                session_id=session_id,
                file_path=file_path,
                functions=[
                    FunctionInput(qualified_name=name, kind="function", body_hash=body)
                    for name, body in specs
                ],
            )
        )

    functions("sa1", "app.py", ("main", "h1"), ("helper", "h1"), ("gone", "h1"))
    functions("sa2", "app.py", ("main", "h2"), ("helper", "h1"))  # modified, unchanged, deleted
    functions("sb1", "b.py", ("b_main", "h1"))

    def edges(session_id: str, *specs: tuple[str, str, str, str]) -> None:
        store.add_edges(
            EdgesAdd(
                session_id=session_id,
                edges=[
                    EdgeInput(caller_file=cf, caller_function=c, callee_file=tf,
                              callee_function=t, resolution="direct")
                    for cf, c, tf, t in specs
                ],
            )
        )  # fmt: skip

    edges(
        "sa1",
        ("app.py", "main", "lib.py", "load"),
        ("app.py", "main", "lib.py", "save"),
        ("app.py", "App.run", "lib.py", "load"),
        ("app.py", "main", "app.py", "App.run"),
        ("cli.py", "cli", "other.py", "load"),
    )
    edges("sb1", ("b.py", "b_main", "lib.py", "load"))

    # The queue of project A: two waiting, one claimed, one done, one failed, one dead.
    items = {}
    for tool_use_id, max_attempts in (
        ("w1", 3), ("w2", 3), ("claimed", 3), ("done", 3), ("failed", 3), ("dead", 1),
    ):  # fmt: skip
        items[tool_use_id] = store.enqueue(
            QueueItemCreate(session_id="sa1", tool_use_id=tool_use_id, tool_name="Read",
                            raw_output="x", files_touched=["app.py"], max_attempts=max_attempts)
        ).row.id  # fmt: skip
    store.conn.execute(
        "UPDATE pending_queue SET available_at = '2000-01-01T00:00:00.000Z', "
        "created_at = '2000-01-01T00:00:00.000Z' WHERE tool_use_id IN ('claimed','done',"
        "'failed','dead')"
    )
    claimed = store.claim(4, worker="seed")
    assert {i.tool_use_id for i in claimed} == {"claimed", "done", "failed", "dead"}
    store.complete(items["done"], "seed")
    store.fail(items["failed"], "seed", "boom")
    store.fail(items["dead"], "seed", "boom")
    store.enqueue(QueueItemCreate(session_id="sb1", tool_use_id="bw", tool_name="Read"))

    observations = {}
    for key, session_id, title, summary in (
        ("a1", "sa1", "Parsed config", "The parser reads config.toml"),
        ("a2", "sa2", "Fixed tabs", "Tabs no longer break it"),
        ("b1", "sb1", "Parser in B", "B has a parser too"),
    ):
        observations[key] = store.create_observation(
            ObservationCreate(session_id=session_id, tool_name="Edit", title=title,
                              summary=summary)
        ).row.id  # fmt: skip
    store.log_event("UserPromptSubmit", {"prompt": "make the parser faster"}, session_id="sa1")
    store.log_event("Stop", {}, session_id="sa1")
    return {"learnings": learnings, "items": items, "observations": observations}


@pytest_asyncio.fixture
async def seeded(ds: Datasette, memory_path: Path) -> dict[str, Any]:
    """The ds instance's memory, seeded through a Store on its own connection to the file."""
    with Store(memory_path) as store:
        return seed(store)


@pytest_asyncio.fixture
async def headers(token: str) -> dict[str, str]:
    return bearer(token)


async def rows(ds: Datasette, headers: dict[str, str], name: str, **params: str) -> list[dict]:
    query = f"?{urlencode(params)}" if params else ""
    response = await ds.client.get(f"/claude-mem/{name}.json{query}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True, body
    return body["rows"]


@pytest.mark.asyncio
async def test_every_query_is_published_with_its_metadata(ds: Datasette):
    assert [q.name for q in QUERIES] == QUERY_NAMES
    for query in QUERIES:
        stored = await ds.get_query("claude-mem", query.name)
        assert stored is not None, query.name
        assert stored.title == query.title and stored.title
        assert stored.description == query.description and stored.description
        assert stored.source == "datasette-claude-mem"
        assert stored.is_trusted and not stored.is_write
        assert list(stored.parameters) == list(query.parameters)
        assert stored.sql == query.sql


@pytest.mark.asyncio
async def test_anonymous_is_refused_and_the_token_actor_may_read(
    ds: Datasette, seeded: dict, headers: dict[str, str], other_token: str
):
    for name in QUERY_NAMES:
        anonymous = await ds.client.get(f"/claude-mem/{name}.json")
        assert anonymous.status_code == 403, (name, anonymous.text)
        stranger = await ds.client.get(f"/claude-mem/{name}.json", headers=bearer(other_token))
        assert stranger.status_code == 403, name
        allowed = await ds.client.get(f"/claude-mem/{name}.json", headers=headers)
        assert allowed.status_code == 200, (name, allowed.text)
        as_root = await ds.client.get(f"/claude-mem/{name}.json", actor={"id": "root"})
        assert as_root.status_code == 200, name


@pytest.mark.asyncio
async def test_every_query_answers_with_no_parameters(ds: Datasette, headers: dict[str, str]):
    """On an empty memory too: a missing parameter means "any", never an SQL error."""
    for name in QUERY_NAMES:
        assert isinstance(await rows(ds, headers, name), list)


@pytest.mark.asyncio
async def test_active_learnings(ds: Datasette, seeded: dict, headers: dict[str, str]):
    everything = await rows(ds, headers, "active_learnings")
    assert [r["content"] for r in everything] == [
        "The parser chokes on tabs",
        "B deploys on Fridays",
        "Prefer small parser functions",
        "Tests live beside the code",
    ]
    first = everything[0]
    assert first["id"] == seeded["learnings"]["a_gotcha"]
    assert first["project"] == A and first["category"] == "gotcha"
    assert first["confidence"] == 0.9
    glob = next(r for r in everything if r["category"] == "pattern")
    assert glob["project"] == "(global)"

    of_a = await rows(ds, headers, "active_learnings", project=A)
    assert [r["project"] for r in of_a] == [A, "(global)", A]
    gotchas = await rows(ds, headers, "active_learnings", project=A, category="gotcha")
    assert [r["content"] for r in gotchas] == ["The parser chokes on tabs"]
    confident = await rows(ds, headers, "active_learnings", min_confidence="0.75")
    assert [r["confidence"] for r in confident] == [0.9, 0.8]
    assert await rows(ds, headers, "active_learnings", project="/nowhere", category="x") == []
    assert await rows(ds, headers, "active_learnings", min_confidence="not-a-number") is not None


@pytest.mark.asyncio
async def test_changed_functions(ds: Datasette, seeded: dict, headers: dict[str, str]):
    everything = await rows(ds, headers, "changed_functions")
    changes = {(r["session_id"], r["qualified_name"]): r["change_type"] for r in everything}
    assert changes == {
        ("sa1", "main"): "new",
        ("sa1", "helper"): "new",
        ("sa1", "gone"): "new",
        ("sa2", "main"): "modified",
        ("sa2", "gone"): "deleted",
        ("sb1", "b_main"): "new",
    }
    of_sa2 = await rows(ds, headers, "changed_functions", session_id="sa2")
    assert {(r["qualified_name"], r["change_type"]) for r in of_sa2} == {
        ("main", "modified"),
        ("gone", "deleted"),
    }
    of_b = await rows(ds, headers, "changed_functions", project=B)
    assert [(r["file_path"], r["qualified_name"]) for r in of_b] == [("b.py", "b_main")]
    assert await rows(ds, headers, "changed_functions", project=B, session_id="sa2") == []


@pytest.mark.asyncio
async def test_callers(ds: Datasette, seeded: dict, headers: dict[str, str]):
    load = await rows(ds, headers, "callers", function="load")
    assert {(r["project"], r["caller_file"], r["caller_function"]) for r in load} == {
        (A, "app.py", "App.run"),
        (A, "app.py", "main"),
        (A, "cli.py", "cli"),
        (B, "b.py", "b_main"),
    }
    of_a = await rows(ds, headers, "callers", function="load", project=A)
    assert {r["caller_function"] for r in of_a} == {"App.run", "main", "cli"}
    in_lib = await rows(ds, headers, "callers", function="load", project=A, file="lib.py")
    assert {r["caller_function"] for r in in_lib} == {"App.run", "main"}
    # A bare name also finds the method of that name.
    run = await rows(ds, headers, "callers", function="run")
    assert [(r["caller_function"], r["callee_function"]) for r in run] == [("main", "App.run")]
    assert await rows(ds, headers, "callers", function="nothing") == []
    assert await rows(ds, headers, "callers") == []


@pytest.mark.asyncio
async def test_callees(ds: Datasette, seeded: dict, headers: dict[str, str]):
    main = await rows(ds, headers, "callees", function="main")
    assert [(r["callee_file"], r["callee_function"]) for r in main] == [
        ("app.py", "App.run"),
        ("lib.py", "load"),
        ("lib.py", "save"),
    ]
    assert main[0]["resolution"] == "direct" and main[0]["source"] == "ast"
    run = await rows(ds, headers, "callees", function="run", file="app.py")
    assert [r["callee_function"] for r in run] == ["load"]
    assert await rows(ds, headers, "callees", function="main", file="other.py") == []
    assert await rows(ds, headers, "callees", function="b_main", project=A) == []


@pytest.mark.asyncio
async def test_queue_stats(ds: Datasette, seeded: dict, headers: dict[str, str]):
    (everything,) = await rows(ds, headers, "queue_stats")
    assert {k: v for k, v in everything.items() if k != "oldest_waiting_age_seconds"} == {
        "waiting": 3,
        "in_progress": 1,
        "done": 1,
        "failed": 1,
        "dead_letters": 1,
        "retries": 0,
    }
    assert everything["oldest_waiting_age_seconds"] >= 0
    (of_b,) = await rows(ds, headers, "queue_stats", project=B)
    assert of_b["waiting"] == 1 and of_b["in_progress"] == 0 and of_b["done"] == 0
    (nothing,) = await rows(ds, headers, "queue_stats", project="/nowhere")
    assert nothing["waiting"] == 0 and nothing["oldest_waiting_age_seconds"] is None


@pytest.mark.asyncio
async def test_recent_sessions(ds: Datasette, seeded: dict, headers: dict[str, str]):
    everything = await rows(ds, headers, "recent_sessions")
    assert [r["id"] for r in everything] == ["sb1", "sa2", "sa1"]
    assert [r["observation_count"] for r in everything] == [1, 1, 1]
    assert everything[0]["project"] == B and everything[0]["status"] == "active"
    assert [r["id"] for r in await rows(ds, headers, "recent_sessions", project=A)] == [
        "sa2",
        "sa1",
    ]
    assert [r["id"] for r in await rows(ds, headers, "recent_sessions", limit="1")] == ["sb1"]
    limited = await rows(ds, headers, "recent_sessions", project=A, limit="1")
    assert [r["id"] for r in limited] == ["sa2"]


@pytest.mark.asyncio
async def test_session_timeline(ds: Datasette, seeded: dict, headers: dict[str, str]):
    timeline = await rows(ds, headers, "session_timeline", session_id="sa1")
    kinds = [r["kind"] for r in timeline]
    assert kinds.count("tool_use") == 6
    assert kinds.count("observation") == 1
    assert kinds.count("prompt") == 1 and kinds.count("event") == 1
    prompt = next(r for r in timeline if r["kind"] == "prompt")
    assert prompt["name"] == "UserPromptSubmit"
    assert prompt["detail"] == "make the parser faster"
    observation = next(r for r in timeline if r["kind"] == "observation")
    assert observation["name"] == "Parsed config"
    assert observation["id"] == seeded["observations"]["a1"]
    assert [r["at"] for r in timeline] == sorted(r["at"] for r in timeline)
    other = await rows(ds, headers, "session_timeline", session_id="sb1")
    assert {r["kind"] for r in other} == {"tool_use", "observation"}
    assert await rows(ds, headers, "session_timeline", session_id="nope") == []


@pytest.mark.asyncio
async def test_search_memory(ds: Datasette, seeded: dict, headers: dict[str, str]):
    hits = await rows(ds, headers, "search_memory", q="parser")
    found = {(r["kind"], r["title"]) for r in hits}
    assert found == {
        ("observation", "Parsed config"),
        ("observation", "Parser in B"),
        ("learning", "gotcha"),  # The parser chokes on tabs (the retired one is not found)
        ("learning", "pattern"),  # global
        ("prompt", "make the parser faster"),
    }
    assert all("[" in r["snippet"] for r in hits)
    of_a = await rows(ds, headers, "search_memory", q="parser", project=A)
    assert {(r["kind"], r["project"]) for r in of_a} == {
        ("observation", A),
        ("learning", A),
        ("learning", None),
    }
    both_words = await rows(ds, headers, "search_memory", q="parser config")
    assert [r["title"] for r in both_words] == ["Parsed config"]
    assert await rows(ds, headers, "search_memory", q="zebra") == []
    assert await rows(ds, headers, "search_memory") == []


@pytest.mark.asyncio
async def test_search_with_punctuation_and_quotes_does_not_error(
    ds: Datasette, seeded: dict, headers: dict[str, str]
):
    for q in (
        '"parser',
        "parser's",
        "parser\"'",
        "(parser",
        "parser AND OR NOT",
        "NEAR(parser config)",
        "parser*",
        "*",
        "-parser",
        "title:parser",
        "^parser",
        "parser; DROP TABLE observations; --",
        "'''",
        '""',
        "   ",
        "ünïcödé 漢字 😀",
        "\\",
        "%_",
    ):
        result = await rows(ds, headers, "search_memory", q=q)
        # Punctuation is not syntax: what is left of "(parser" or "parser*" is the word.
        if re.fullmatch(r"\W*parser\W*", q):
            assert any(r["title"] == "Parsed config" for r in result), q
    quoted = await rows(ds, headers, "search_memory", q='"parser config"')
    assert [r["title"] for r in quoted] == ["Parsed config"]
