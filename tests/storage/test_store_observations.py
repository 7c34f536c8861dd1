"""Observations: what the worker makes of each tool use, and how sessions count them."""

from __future__ import annotations

import json
import struct

import pytest
from pydantic import ValidationError

from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import ObservationCreate, Session, SessionStart
from datasette_claude_mem.storage.store import Store


def obs(session: Session, title: str = "Edited parser", **kw) -> ObservationCreate:
    fields = {"tool_name": "Edit", "summary": f"summary of {title}"}
    fields.update(kw)
    return ObservationCreate(session_id=session.id, title=title, **fields)


def count(store: Store, session: Session) -> int:
    return store.get_session(session.id).observation_count


def test_create_keeps_every_field(store: Store, session: Session) -> None:
    saved = store.create_observation(
        obs(
            session,
            detail="changed the tokenizer",
            files_touched=["src/parse.py", "tests/test_parse.py"],
            functions_changed=["parse", "Tokenizer.next"],
            tokens_raw=12000,
            tokens_compressed=300,
        )
    )
    assert saved.created
    got = store.get_observation(saved.row.id)
    assert got == saved.row
    assert got.session_id == session.id
    assert got.project == session.project
    assert (got.tool_name, got.title, got.summary, got.detail) == (
        "Edit",
        "Edited parser",
        "summary of Edited parser",
        "changed the tokenizer",
    )
    assert got.files_touched == ["src/parse.py", "tests/test_parse.py"]
    assert got.functions_changed == ["parse", "Tokenizer.next"]
    assert (got.tokens_raw, got.tokens_compressed) == (12000, 300)
    assert got.created_at.tzinfo is not None
    # Lists are JSON text in the file, readable by any SQLite client.
    raw = store.conn.execute(
        "SELECT files_touched, json_extract(functions_changed, '$[1]') FROM observations"
    ).fetchone()
    assert json.loads(raw[0]) == ["src/parse.py", "tests/test_parse.py"]
    assert raw[1] == "Tokenizer.next"


def test_list_by_session_oldest_first_with_limit(store: Store, session: Session) -> None:
    other = store.create_session(SessionStart(project_dir=session.project_dir)).row
    made = [store.create_observation(obs(session, f"step {i}")).row for i in range(5)]
    store.create_observation(obs(other, "elsewhere"))
    assert [o.id for o in store.list_observations(session.id)] == [o.id for o in made]
    assert [o.title for o in store.list_observations(session.id, limit=2)] == [
        "step 0",
        "step 1",
    ]
    assert [o.title for o in store.list_observations(other.id)] == ["elsewhere"]
    assert store.list_observations("no-such-session") == []


def test_recent_observations_of_a_project_newest_first(store: Store, session: Session) -> None:
    other = store.create_session(SessionStart(project_dir=session.project_dir)).row
    for i in range(3):
        store.create_observation(obs(session, f"a{i}"))
        store.create_observation(obs(other, f"b{i}"))
    recent = store.recent_observations(session.project, limit=4)
    assert [o.title for o in recent] == ["b2", "a2", "b1", "a1"]
    assert store.recent_observations("another project") == []


def test_same_content_twice_is_stored_once(store: Store, session: Session) -> None:
    """A retried hook or worker must not double an observation."""
    first = store.create_observation(obs(session, files_touched=["a.py"]))
    again = store.create_observation(obs(session, files_touched=["a.py"]))
    assert first.created and not again.created
    assert again.row.id == first.row.id
    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1
    assert count(store, session) == 1


def test_content_differing_in_any_field_is_a_new_observation(
    store: Store, session: Session
) -> None:
    base = {"title": "t", "summary": "s", "detail": None, "files_touched": ["a.py"]}
    variants = [
        {},
        {"title": "t2"},
        {"summary": "s2"},
        {"detail": "d"},
        {"files_touched": ["b.py"]},
        {"functions_changed": ["f"]},
        {"tool_name": "Write"},
    ]
    for change in variants:
        fields = {"tool_name": "Edit", **base, **change}
        title = fields.pop("title")
        assert store.create_observation(obs(session, title, **fields)).created, change
    assert count(store, session) == len(variants)


def test_same_content_in_another_session_is_its_own_observation(
    store: Store, session: Session
) -> None:
    other = store.create_session(SessionStart(project_dir=session.project_dir)).row
    assert store.create_observation(obs(session)).created
    assert store.create_observation(obs(other)).created
    assert (count(store, session), count(store, other)) == (1, 1)


def test_observation_count_follows_creates_and_deletes(store: Store, session: Session) -> None:
    made = [store.create_observation(obs(session, f"t{i}")).row for i in range(4)]
    assert count(store, session) == 4
    store.delete_observation(made[0].id)
    store.delete_observation(made[2].id)
    assert count(store, session) == 2
    assert store.get_observation(made[0].id) is None
    assert [o.id for o in store.list_observations(session.id)] == [made[1].id, made[3].id]
    # Rows added or removed by hand (sqlite-utils, Datasette) are counted too.
    store.conn.execute(
        "INSERT INTO observations (session_id, tool_name, title, summary) "
        "VALUES (?, 'Edit', 'by hand', 's')",
        [session.id],
    )
    assert count(store, session) == 3
    store.conn.execute("DELETE FROM observations WHERE title = 'by hand'")
    assert count(store, session) == 2


def test_deleting_an_unknown_observation_raises_and_changes_nothing(
    store: Store, session: Session
) -> None:
    store.create_observation(obs(session))
    with pytest.raises(NotFound):
        store.delete_observation("nope")
    assert count(store, session) == 1


def test_observation_for_unknown_session_is_refused_and_not_stored(store: Store) -> None:
    with pytest.raises(NotFound):
        store.create_observation(
            ObservationCreate(session_id="nope", tool_name="Edit", title="t", summary="s")
        )
    assert store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 0


def test_embedding_round_trips_as_little_endian_float32(store: Store, session: Session) -> None:
    vector = [0.5, -1.25, 3.0, 0.1, 1e-3]
    saved = store.create_observation(
        obs(session, embedding=vector, embedding_model="all-MiniLM-L6-v2", embedding_version="2")
    ).row
    blob, model, version = store.conn.execute(
        "SELECT embedding, embedding_model, embedding_version FROM observations WHERE id = ?",
        [saved.id],
    ).fetchone()
    # The layout llm and sqlite-vec read: 4 bytes per value, little-endian.
    assert blob == struct.pack("<5f", *vector)
    assert len(blob) == 4 * len(vector)
    assert (model, version) == ("all-MiniLM-L6-v2", "2")
    got = store.get_observation(saved.id)
    as_float32 = list(struct.unpack("<5f", struct.pack("<5f", *vector)))
    assert got.embedding == as_float32
    assert got.embedding[:3] == [0.5, -1.25, 3.0]
    assert got.embedding[3] == pytest.approx(0.1, rel=1e-6)
    assert (got.embedding_model, got.embedding_version) == ("all-MiniLM-L6-v2", "2")


def test_observation_without_embedding_stores_null(store: Store, session: Session) -> None:
    saved = store.create_observation(obs(session)).row
    assert store.conn.execute(
        "SELECT embedding, embedding_model, embedding_version FROM observations WHERE id = ?",
        [saved.id],
    ).fetchone() == (None, None, None)
    got = store.get_observation(saved.id)
    assert (got.embedding, got.embedding_model, got.embedding_version) == (None, None, None)


def test_an_embedding_needs_its_model() -> None:
    with pytest.raises(ValidationError):
        ObservationCreate(
            session_id="s", tool_name="Edit", title="t", summary="s", embedding=[1.0, 2.0]
        )


def test_create_refuses_bad_input() -> None:
    for bad in (
        {"title": ""},
        {"tokens_raw": -1},
        {"unknown_field": 1},
        {"files_touched": "a.py"},
    ):
        with pytest.raises(ValidationError):
            ObservationCreate(
                **{"session_id": "s", "tool_name": "Edit", "title": "t", "summary": "s", **bad}
            )


def test_observations_survive_reopen(store: Store, session: Session, config) -> None:
    saved = store.create_observation(
        obs(session, files_touched=["x.py"], embedding=[1.0, 2.0], embedding_model="m")
    ).row
    store.close()
    with Store(config.db_path) as reopened:
        assert reopened.get_observation(saved.id) == saved
        assert reopened.get_session(session.id).observation_count == 1


def test_rows_added_together_by_hand_list_in_the_order_they_were_added(
    store: Store, session: Session
) -> None:
    """One INSERT of many rows shares one millisecond; the ids' random bits must not reorder."""
    values = ", ".join(f"(?, 'Edit', 'step {i:02d}', 's')" for i in range(20))
    store.conn.execute(
        f"INSERT INTO observations (session_id, tool_name, title, summary) VALUES {values}",
        [session.id] * 20,
    )
    expected = [f"step {i:02d}" for i in range(20)]
    assert [o.title for o in store.list_observations(session.id)] == expected
    assert [o.title for o in store.recent_observations(session.project)] == expected[::-1]
