"""Full-text search over observations and learnings, and the FTS index staying true."""

from __future__ import annotations

import sqlite3

import pytest

from datasette_claude_mem.storage.models import (
    LearningCreate,
    LearningUpdate,
    ObservationCreate,
    Session,
)
from datasette_claude_mem.storage.store import Store


def observe(store: Store, session: Session, title: str, summary: str = "", detail=None):
    return store.create_observation(
        ObservationCreate(
            session_id=session.id,
            tool_name="Edit",
            title=title,
            summary=summary or f"about {title}",
            detail=detail,
        )
    ).row


def hits(store: Store, project: str, query: str) -> list[tuple[str, str]]:
    return [(h.kind, h.title) for h in store.search(project, query)]


def fts_ok(conn: sqlite3.Connection) -> None:
    """Both FTS indexes agree with their tables (rank 1 also compares with the content)."""
    for fts in ("observations_fts", "learnings_fts"):
        conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
        conn.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")


def test_search_finds_observations_by_title_summary_and_detail(
    store: Store, session: Session
) -> None:
    observe(store, session, "Fixed tokenizer bug")
    observe(store, session, "Refactored cache", summary="moved eviction into LRU class")
    observe(store, session, "Ran tests", detail="the flaky websocket test passed")
    observe(store, session, "Unrelated")
    assert hits(store, session.project, "tokenizer") == [("observation", "Fixed tokenizer bug")]
    assert hits(store, session.project, "eviction") == [("observation", "Refactored cache")]
    assert hits(store, session.project, "websocket") == [("observation", "Ran tests")]
    assert hits(store, session.project, "nothing-matches-this") == []


def test_search_hit_carries_its_ids_and_a_marked_snippet(store: Store, session: Session) -> None:
    made = observe(store, session, "Tuned the sqlite pragmas")
    (hit,) = store.search(session.project, "pragmas")
    assert (hit.id, hit.session_id, hit.project) == (made.id, session.id, session.project)
    assert "[pragmas]" in hit.snippet
    assert hit.created_at == made.created_at


def test_search_stems_words(store: Store, session: Session) -> None:
    observe(store, session, "Migrating the schema")
    assert hits(store, session.project, "migrations") == [("observation", "Migrating the schema")]


def test_search_every_word_must_match(store: Store, session: Session) -> None:
    observe(store, session, "parser error handling")
    observe(store, session, "parser speedup")
    assert hits(store, session.project, "parser error") == [
        ("observation", "parser error handling")
    ]


def test_search_finds_active_learnings_of_the_project_and_global_ones(
    store: Store, session: Session
) -> None:
    store.create_learning(
        LearningCreate(
            category="gotcha", content="timezone bug in reports", project=session.project
        )
    )
    store.create_learning(LearningCreate(category="convention", content="timezone always UTC"))
    store.create_learning(
        LearningCreate(category="gotcha", content="timezone elsewhere", project="other")
    )
    retired = store.create_learning(
        LearningCreate(category="gotcha", content="timezone retired", project=session.project)
    ).row
    store.soft_delete_learning(retired.id)
    found = store.search(session.project, "timezone")
    assert {(h.kind, h.snippet.replace("[", "").replace("]", "")) for h in found} == {
        ("learning", "timezone bug in reports"),
        ("learning", "timezone always UTC"),
    }
    assert {h.title for h in found} == {"gotcha", "convention"}  # the category names the hit


@pytest.mark.parametrize(
    "query",
    [
        'tokenizer"',
        '"tokenizer',
        "tokenizer*",
        "tokenizer AND",
        "OR tokenizer",
        "NOT tokenizer",
        "tokenizer)",
        "(tokenizer",
        "tokenizer: col",
        "^tokenizer",
        "tokenizer NEAR(",
        "tokenizer-fix",
        "tokenizer.py",
        "'tokenizer'",
        "tokenizer;DROP TABLE observations",
        "  tokenizer  ",
    ],
)
def test_punctuation_in_a_query_never_breaks_search(
    store: Store, session: Session, query: str
) -> None:
    """People paste code and error text into search: it must not raise FTS syntax errors."""
    words = "and or not near col py fix drop table observations"  # FTS5 keywords are words too
    observe(store, session, "tokenizer fix", detail=f"tokenizer {words}")
    found = store.search(session.project, query)
    assert [h.title for h in found] == ["tokenizer fix"]
    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1


@pytest.mark.parametrize("query", ["", "   ", '"', "()*:^-", "'\"'"])
def test_a_query_with_no_words_finds_nothing(store: Store, session: Session, query: str) -> None:
    observe(store, session, "anything")
    assert store.search(session.project, query) == []


def test_search_matches_non_ascii_words(store: Store, session: Session) -> None:
    observe(store, session, "Größe der Datei geändert")
    assert hits(store, session.project, "größe") == [("observation", "Größe der Datei geändert")]


def test_index_follows_updates_and_deletes(store: Store, session: Session) -> None:
    made = observe(store, session, "original wording", summary="a note")
    store.conn.execute("UPDATE observations SET title = 'revised phrasing' WHERE id = ?", [made.id])
    assert hits(store, session.project, "original") == []
    assert hits(store, session.project, "revised") == [("observation", "revised phrasing")]
    learning = store.create_learning(
        LearningCreate(category="gotcha", content="before edit", project=session.project)
    ).row
    store.update_learning(learning.id, LearningUpdate(content="after change"))
    assert hits(store, session.project, "before") == []
    assert hits(store, session.project, "change") == [("learning", "gotcha")]
    store.delete_observation(made.id)
    assert hits(store, session.project, "revised") == []
    fts_ok(store.conn)


def test_insert_or_replace_keeps_the_index_and_count_right(store: Store, session: Session) -> None:
    """INSERT OR REPLACE deletes the old row; only recursive_triggers makes FTS hear of it."""
    made = observe(store, session, "first version")
    store.conn.execute(
        "INSERT OR REPLACE INTO observations (id, session_id, tool_name, title, summary) "
        "VALUES (?, ?, 'Edit', 'second version', 'replaced')",
        [made.id, session.id],
    )
    assert hits(store, session.project, "first") == []
    assert hits(store, session.project, "second") == [("observation", "second version")]
    assert store.get_session(session.id).observation_count == 1
    fts_ok(store.conn)


def test_the_index_survives_close_and_reopen(store: Store, session: Session, config) -> None:
    observe(store, session, "persisted findings")
    store.create_learning(LearningCreate(category="pattern", content="persisted lesson"))
    store.close()
    with Store(config.db_path) as reopened:
        assert sorted(hits(reopened, session.project, "persisted")) == [
            ("learning", "pattern"),
            ("observation", "persisted findings"),
        ]
        fts_ok(reopened.conn)


def test_search_respects_the_limit(store: Store, session: Session) -> None:
    for i in range(5):
        observe(store, session, f"widget change {i}")
    assert len(store.search(session.project, "widget", limit=3)) == 3


def test_vacuum_keeps_the_index_pointing_at_the_right_rows(store: Store, session: Session) -> None:
    """The FTS tables key on rowid; retention clean-up VACUUMs after deleting rows."""
    made = [observe(store, session, f"entry{i} marker{i}") for i in range(10)]
    for i in (0, 2, 3, 7):
        store.delete_observation(made[i].id)
    store.conn.execute("VACUUM")
    assert hits(store, session.project, "marker9") == [("observation", "entry9 marker9")]
    assert hits(store, session.project, "marker2") == []
    fts_ok(store.conn)
