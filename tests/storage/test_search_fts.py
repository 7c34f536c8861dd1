"""The search index as every client sees it: Datasette's search, the sqlite-utils CLI, the
store; its ranking; and files made before the index was declared so that clients find it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasette.app import Datasette
from sqlite_utils import Database

from datasette_claude_mem.storage.migrations import migrations
from datasette_claude_mem.storage.models import (
    LearningCreate,
    ObservationCreate,
    SessionStart,
    SessionUpdate,
)
from datasette_claude_mem.storage.store import Store

SQLITE_UTILS = str(Path(sys.executable).parent / "sqlite-utils")
PROJECT = "/src/shop"


def seed(store: Store) -> dict[str, str]:
    """A shop's memory: the discount bug fixed, read about, learned from and asked about."""
    session = store.create_session(SessionStart(id="s1", project_dir=PROJECT, project=PROJECT)).row
    ids = {}
    ids["read"] = store.create_observation(
        ObservationCreate(
            session_id=session.id,
            tool_name="Read",
            title="Read pricing notes",
            summary="notes on pricing",
            detail="discount discount discount: the discount table, discount codes",
            files_touched=["docs/pricing.md"],
        )
    ).row.id
    ids["edit"] = store.create_observation(
        ObservationCreate(
            session_id=session.id,
            tool_name="Edit",
            title="Fixed discount rounding",
            summary="round once, after the total",
            files_touched=["src/cart.py"],
        )
    ).row.id
    ids["other"] = store.create_observation(
        ObservationCreate(
            session_id=session.id,
            tool_name="Bash",
            title="Ran the test suite",
            summary="all green",
            files_touched=["tests/test_cart.py"],
        )
    ).row.id
    ids["learning"] = store.create_learning(
        LearningCreate(category="gotcha", content="Discounts apply before tax", project=PROJECT)
    ).row.id
    store.update_session(session.id, SessionUpdate(summary="Chased the discount rounding bug"))
    store.log_event(
        "UserPromptSubmit",
        {"prompt": "why is the discount wrong on big carts?"},
        session_id=session.id,
        project=PROJECT,
        event_id="prompt-1",
    )
    store.log_event("SessionStart", {"source": "discount"}, session_id=session.id, event_id="e2")
    return ids


@pytest.fixture
def seeded(memory_path: Path) -> dict[str, str]:
    with Store(memory_path) as store:
        return seed(store)


def sqlite_utils(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SQLITE_UTILS, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def table_json(ds: Datasette, auth: dict, table: str, **params: str) -> list[dict]:
    response = await ds.client.get(
        f"/claude-mem/{table}.json", params={"_shape": "objects", **params}, headers=auth
    )
    assert response.status_code == 200, response.text
    return response.json()["rows"]


@pytest.mark.asyncio
async def test_datasette_offers_search_on_every_searchable_table(
    ds: Datasette, auth: dict, seeded: dict[str, str]
) -> None:
    for table in ("observations", "learnings", "sessions", "prompts"):
        page = await ds.client.get(f"/claude-mem/{table}", headers=auth)
        assert page.status_code == 200
        assert 'name="_search"' in page.text, table
    for table in ("function_map", "event_log"):
        page = await ds.client.get(f"/claude-mem/{table}", headers=auth)
        assert 'name="_search"' not in page.text, table


@pytest.mark.asyncio
async def test_datasette_search_finds_only_matching_rows(
    ds: Datasette, auth: dict, seeded: dict[str, str]
) -> None:
    found = await table_json(ds, auth, "observations", _search="rounding")
    assert [r["id"] for r in found] == [seeded["edit"]]
    assert await table_json(ds, auth, "observations", _search="nonsense") == []
    # Files and tools are indexed too: a file name finds what touched it.
    by_file = await table_json(ds, auth, "observations", _search="cart")
    assert {r["id"] for r in by_file} == {seeded["edit"], seeded["other"]}  # cart.py, test_cart.py
    learned = await table_json(ds, auth, "learnings", _search="tax")
    assert [r["id"] for r in learned] == [seeded["learning"]]
    asked = await table_json(ds, auth, "prompts", _search="carts")  # stemmed: carts -> cart
    assert [r["id"] for r in asked] == ["prompt-1"]
    sessions = await table_json(ds, auth, "sessions", _search="chased")
    assert [r["id"] for r in sessions] == ["s1"]


@pytest.mark.asyncio
async def test_datasette_raw_search_mode_takes_fts_syntax(
    ds: Datasette, auth: dict, seeded: dict[str, str]
) -> None:
    by_title = await table_json(
        ds, auth, "observations", _search="title:discount", _searchmode="raw"
    )
    assert [r["id"] for r in by_title] == [seeded["edit"]]
    either = await table_json(
        ds, auth, "observations", _search="rounding OR green", _searchmode="raw"
    )
    assert {r["id"] for r in either} == {seeded["edit"], seeded["other"]}
    # Escaped (the default), the same text is words to find, not syntax.
    assert await table_json(ds, auth, "observations", _search="title:discount") == []


def test_sqlite_utils_search_and_rebuild_fts(memory_path: Path, seeded: dict[str, str]) -> None:
    found = sqlite_utils("search", str(memory_path), "observations", "rounding", "-c", "id")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == [{"id": seeded["edit"]}]
    prompts = sqlite_utils("search", str(memory_path), "prompts", "discount", "-c", "id")
    assert json.loads(prompts.stdout) == [{"id": "prompt-1"}]
    # Ordered by the index's rank, whose weights favour the title.
    ranked = sqlite_utils("search", str(memory_path), "observations", "discount", "-c", "id")
    assert [r["id"] for r in json.loads(ranked.stdout)] == [seeded["edit"], seeded["read"]]
    for table in ("observations", "learnings", "sessions", "prompts"):
        rebuilt = sqlite_utils("rebuild-fts", str(memory_path), table)
        assert rebuilt.returncode == 0, rebuilt.stderr
    again = sqlite_utils("search", str(memory_path), "learnings", "tax", "-c", "id")
    assert json.loads(again.stdout) == [{"id": seeded["learning"]}]
    with Store(memory_path) as store:
        for table in ("observations", "learnings", "sessions", "prompts"):
            fts = f"{table}_fts"
            store.conn.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")


def test_rows_added_by_the_sqlite_utils_cli_are_found(
    memory_path: Path, seeded: dict[str, str]
) -> None:
    inserted = subprocess.run(
        [SQLITE_UTILS, "insert", str(memory_path), "learnings", "-"],
        input=json.dumps([{"category": "convention", "content": "Money is kept in cents"}]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert inserted.returncode == 0, inserted.stderr
    with Store(memory_path) as store:
        assert [h.snippet for h in store.search(PROJECT, "cents")] == ["Money is kept in [cents]"]


def test_title_matches_and_changes_outrank_mentions(store: Store) -> None:
    ids = seed(store)
    found = store.search(PROJECT, "discount", kinds=["observation"])
    assert [h.id for h in found] == [ids["edit"], ids["read"]]
    edit = found[0]
    assert (edit.type, edit.file, edit.kind) == ("Edit", "src/cart.py", "observation")
    assert edit.score > found[1].score


def test_a_file_name_finds_what_touched_it_first(store: Store) -> None:
    ids = seed(store)
    found = store.search(PROJECT, "test_cart.py")
    assert found[0].id == ids["other"]


def test_every_kind_is_searched_and_kinds_narrow_it(store: Store) -> None:
    ids = seed(store)
    found = store.search(PROJECT, "discount")
    assert {(h.kind, h.id) for h in found} == {
        ("observation", ids["edit"]),
        ("observation", ids["read"]),
        ("learning", ids["learning"]),
        ("session", "s1"),
        ("prompt", "prompt-1"),
    }
    only = store.search(PROJECT, "discount", kinds="prompt,session")
    assert {h.kind for h in only} == {"prompt", "session"}
    assert store.search("/elsewhere", "discount") == []


def test_since_leaves_out_older_hits(store: Store) -> None:
    ids = seed(store)
    store.conn.execute(
        "UPDATE observations SET created_at = '2020-01-01T00:00:00.000Z' WHERE id = ?",
        [ids["read"]],
    )
    found = store.search(PROJECT, "discount", kinds=["observation"], since="2024-01-01")
    assert [h.id for h in found] == [ids["edit"]]


def test_prompts_follow_their_events(store: Store) -> None:
    seed(store)
    store.conn.execute(
        "UPDATE event_log SET data = json_object('prompt', 'rename the widget') "
        "WHERE id = 'prompt-1'"
    )
    assert store.search(PROJECT, "discount", kinds=["prompt"]) == []
    assert [h.title for h in store.search(PROJECT, "widget")] == ["rename the widget"]
    store.conn.execute("DELETE FROM event_log WHERE id = 'prompt-1'")
    assert store.search(PROJECT, "widget") == []
    assert store.conn.execute("SELECT count(*) FROM prompts").fetchone()[0] == 0


def test_a_file_from_before_the_index_was_rebuilt_keeps_its_rows_searchable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before="m007_rebuild_search_index")
    old.execute("INSERT INTO sessions (id, project, project_dir) VALUES ('s', 'p', 'p')")
    old.execute(
        "INSERT INTO observations (session_id, tool_name, title, summary) "
        "VALUES ('s', 'Edit', 'Fixed the flaky websocket', 'retry on close')"
    )
    old.execute(
        "INSERT INTO event_log (project, session_id, event_type, data) "
        "VALUES ('p', 's', 'UserPromptSubmit', json_object('prompt', 'websocket keeps dropping'))"
    )
    old.conn.commit()
    old.close()
    with Store(path) as store:
        assert {h.kind for h in store.search("p", "websocket")} == {"observation", "prompt"}
        assert Database(store.conn)["observations"].detect_fts() == "observations_fts"


def test_saved_notes_are_found_and_forgotten_rows_are_not(store: Store) -> None:
    from datasette_claude_mem.storage.models import MemoryEntrySave

    ids = seed(store)
    note = store.save_entry(
        MemoryEntrySave(
            namespace="decisions", key="discount-policy", value="Round once", project=PROJECT
        )
    ).row
    newer = store.save_entry(
        MemoryEntrySave(
            namespace="decisions", key="discount-policy", value="Round at the end", project=PROJECT
        )
    ).row
    found = store.search(PROJECT, "discount", kinds="note")
    assert [(h.id, h.title, h.type) for h in found] == [
        (newer.id, "decisions/discount-policy", "note")
    ]  # the superseded version is not
    assert note.id not in {h.id for h in store.search(PROJECT, "round")}
    store.forget(ids["edit"], "wrong", "tester")
    store.forget(ids["learning"], "outdated", "tester")
    store.forget(newer.id, "changed our mind", "tester")
    left = {h.id for h in store.search(PROJECT, "discount")}
    assert left.isdisjoint({ids["edit"], ids["learning"], newer.id})
    assert ids["read"] in left
    assert Database(store.conn)["memory_entries"].detect_fts() == "memory_entries_fts"
