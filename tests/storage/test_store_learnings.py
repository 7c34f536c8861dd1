"""Learnings: durable lessons about a project (or every project), retired rather than lost."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import LearningCreate, LearningUpdate, Session
from datasette_claude_mem.storage.store import Store


def learn(store: Store, content: str, category: str = "gotcha", **kw):
    return store.create_learning(LearningCreate(category=category, content=content, **kw))


def contents(learnings) -> list[str]:
    return [item.content for item in learnings]


def test_create_and_list(store: Store, session: Session) -> None:
    saved = learn(
        store,
        "Run migrations before tests",
        "convention",
        confidence=0.8,
        project=session.project,
        source_session_id=session.id,
    )
    assert saved.created
    got = store.get_learning(saved.row.id)
    assert got == saved.row
    assert (got.category, got.content, got.confidence) == (
        "convention",
        "Run migrations before tests",
        0.8,
    )
    assert got.project == session.project
    assert got.source_session_id == session.id
    assert got.is_active is True
    assert got.created_at == got.updated_at
    assert contents(store.active_learnings(session.project)) == ["Run migrations before tests"]


def test_default_confidence_is_one_half(store: Store) -> None:
    assert learn(store, "c").row.confidence == 0.5


def test_list_most_confident_first_with_limit(store: Store) -> None:
    for content, confidence in (("low", 0.2), ("high", 0.9), ("mid", 0.5)):
        learn(store, content, confidence=confidence, project="p")
    assert contents(store.active_learnings("p")) == ["high", "mid", "low"]
    assert contents(store.active_learnings("p", limit=2)) == ["high", "mid"]


def test_filter_by_category(store: Store) -> None:
    learn(store, "layers", "architecture", project="p")
    learn(store, "snake_case", "convention", project="p")
    learn(store, "tz trap", "gotcha", project="p")
    assert contents(store.active_learnings("p", category="convention")) == ["snake_case"]
    assert contents(store.active_learnings("p", category="dependency")) == []


def test_min_confidence_is_inclusive(store: Store) -> None:
    for content, confidence in (("a", 0.3), ("b", 0.6), ("c", 0.7)):
        learn(store, content, confidence=confidence, project="p")
    assert contents(store.active_learnings("p", min_confidence=0.6)) == ["c", "b"]
    assert contents(store.active_learnings("p", min_confidence=0.71)) == []


def test_update_changes_fields_and_updated_at(store: Store) -> None:
    made = learn(store, "old text", project="p").row
    time.sleep(0.002)  # timestamps have millisecond resolution
    updated = store.update_learning(
        made.id, LearningUpdate(content="new text", confidence=0.95, category="pattern")
    )
    assert (updated.content, updated.confidence, updated.category) == ("new text", 0.95, "pattern")
    assert updated.created_at == made.created_at
    assert updated.updated_at > made.updated_at
    assert store.get_learning(made.id) == updated
    assert contents(store.active_learnings("p", category="pattern")) == ["new text"]


def test_update_with_only_some_fields_keeps_the_rest(store: Store) -> None:
    made = learn(store, "text", "dependency", confidence=0.4, project="p").row
    updated = store.update_learning(made.id, LearningUpdate(confidence=0.6))
    assert (updated.content, updated.category, updated.confidence) == ("text", "dependency", 0.6)


def test_update_unknown_learning_raises(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_learning("nope", LearningUpdate(confidence=0.1))


def test_soft_delete_hides_but_keeps(store: Store) -> None:
    keep = learn(store, "keep", project="p").row
    gone = learn(store, "retire me", project="p").row
    retired = store.soft_delete_learning(gone.id)
    assert retired.is_active is False
    assert contents(store.active_learnings("p")) == ["keep"]
    assert store.get_learning(gone.id).content == "retire me"  # kept for the record
    assert store.conn.execute("SELECT count(*) FROM learnings").fetchone()[0] == 2
    assert store.get_learning(keep.id).is_active is True
    # A retired learning can be brought back.
    assert store.update_learning(gone.id, LearningUpdate(is_active=True)).is_active is True
    assert set(contents(store.active_learnings("p"))) == {"keep", "retire me"}


def test_soft_delete_unknown_learning_raises(store: Store) -> None:
    with pytest.raises(NotFound):
        store.soft_delete_learning("nope")


def test_global_learnings_reach_every_project_and_project_ones_stay_home(store: Store) -> None:
    learn(store, "everywhere")
    learn(store, "only in A", project="A")
    learn(store, "only in B", project="B")
    assert set(contents(store.active_learnings("A"))) == {"everywhere", "only in A"}
    assert set(contents(store.active_learnings("B"))) == {"everywhere", "only in B"}
    assert contents(store.active_learnings(None)) == ["everywhere"]
    assert contents(store.active_learnings("C")) == ["everywhere"]


def test_creating_the_same_learning_again_returns_the_first(store: Store) -> None:
    first = learn(store, "same", project="p", confidence=0.7)
    again = learn(store, "same", project="p", confidence=0.9)
    assert first.created and not again.created
    assert again.row.id == first.row.id
    assert again.row.confidence == 0.7
    # The same words in another project, another category, or globally are other learnings.
    assert learn(store, "same", project="q").created
    assert learn(store, "same", "pattern", project="p").created
    assert learn(store, "same").created
    assert not learn(store, "same").created
    assert store.conn.execute("SELECT count(*) FROM learnings").fetchone()[0] == 4


def test_a_retired_learning_can_be_learned_afresh(store: Store) -> None:
    first = learn(store, "lesson", project="p").row
    store.soft_delete_learning(first.id)
    again = learn(store, "lesson", project="p")
    assert again.created
    assert again.row.id != first.id
    assert contents(store.active_learnings("p")) == ["lesson"]


def test_unknown_source_session_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        learn(store, "x", source_session_id="nope")
    assert store.conn.execute("SELECT count(*) FROM learnings").fetchone()[0] == 0


def test_bad_learnings_are_refused() -> None:
    for bad in (
        {"category": "trivia"},
        {"content": ""},
        {"confidence": 1.01},
        {"confidence": -0.5},
        {"projcet": "typo"},
    ):
        with pytest.raises(ValidationError):
            LearningCreate(**{"category": "gotcha", "content": "c", **bad})
    with pytest.raises(ValidationError):
        LearningUpdate(confidence=2)
