"""Stale memories: observations and learnings about code that changed after them."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasette_claude_mem.storage.models import (
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    ObservationCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

BEFORE = "2001-01-01T00:00:00.000Z"
AFTER = "2100-01-01T00:00:00.000Z"
FILE = "shop/pricing.py"


def fn(name: str, body: str) -> FunctionInput:
    return FunctionInput(qualified_name=name, kind="function", body_hash=body)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    (path / ".git").mkdir(parents=True)
    return path


def start(store: Store, root: Path, session_id: str) -> str:
    return store.create_session(SessionStart(id=session_id, project_dir=str(root))).row.project


def record(store: Store, session_id: str, functions: list, baseline: list | None = None) -> None:
    store.upsert_functions(
        FunctionMapUpsert(
            session_id=session_id, file_path=FILE, functions=functions, baseline=baseline
        )
    )


def observe(store: Store, root: Path, session_id: str, *, functions=(), at=BEFORE) -> str:
    made = store.create_observation(
        ObservationCreate(
            session_id=session_id,
            tool_name="Edit" if functions else "Read",
            title=f"{session_id} {functions}",
            summary="s",
            files_touched=[str(root / FILE)],
            functions_changed=list(functions),
        ),
        created_at=at,
    )
    return made.row.id


@pytest.fixture
def first(store: Store, root: Path) -> str:
    """Session s1 read the file (unit_price and line_total at version 1)."""
    start(store, root, "s1")
    seen = [fn("unit_price", "u1"), fn("line_total", "l1")]
    record(store, "s1", seen, baseline=seen)
    return "s1"


def test_a_later_change_of_the_function_makes_an_observation_stale(
    store: Store, root: Path, first: str
) -> None:
    unit = observe(store, root, first, functions=["unit_price"])
    line = observe(store, root, first, functions=["line_total"])
    start(store, root, "s2")
    record(store, "s2", [fn("unit_price", "u2"), fn("line_total", "l1")])
    assert store.stale_ids("observation", [unit, line]) == {unit}


def test_an_observation_made_after_the_change_is_current(
    store: Store, root: Path, first: str
) -> None:
    start(store, root, "s2")
    record(store, "s2", [fn("unit_price", "u2"), fn("line_total", "l1")])
    later = observe(store, root, "s2", functions=["unit_price"], at=AFTER)
    assert store.stale_ids("observation", [later]) == set()


def test_an_observation_naming_no_function_is_tied_to_its_files(
    store: Store, root: Path, first: str
) -> None:
    read = observe(store, root, first)
    elsewhere = store.create_observation(
        ObservationCreate(
            session_id=first, tool_name="Read", title="other", summary="s",
            files_touched=[str(root / "shop" / "other.py")],
        ),
        created_at=BEFORE,
    ).row.id  # fmt: skip
    assert store.stale_ids("observation", [read, elsewhere]) == set()
    start(store, root, "s2")
    record(store, "s2", [fn("unit_price", "u1"), fn("line_total", "l2")])
    assert store.stale_ids("observation", [read, elsewhere]) == {read}


def test_a_deleted_function_makes_what_was_said_about_it_stale(
    store: Store, root: Path, first: str
) -> None:
    line = observe(store, root, first, functions=["line_total"])
    start(store, root, "s2")
    record(store, "s2", [fn("unit_price", "u1")])
    rows = store.db.query("SELECT qualified_name, change_type FROM function_map WHERE "
                          "session_id = 's2'")  # fmt: skip
    assert {r["qualified_name"]: r["change_type"] for r in rows}["line_total"] == "deleted"
    assert store.stale_ids("observation", [line]) == {line}


def test_a_change_made_between_sessions_is_noticed(store: Store, root: Path, first: str) -> None:
    """Session two only reads the file, but it differs from what session one saw (a pull,
    an edit outside Claude Code): nothing is listed changed, yet the old fact is stale."""
    unit = observe(store, root, first, functions=["unit_price"])
    start(store, root, "s2")
    now = [fn("unit_price", "u9"), fn("line_total", "l1")]
    record(store, "s2", now, baseline=now)
    project = store.get_session("s2").project
    assert store.changed_functions(project, "s2") == []
    assert store.stale_ids("observation", [unit]) == {unit}


def test_rereading_the_same_code_does_not_make_anything_stale(
    store: Store, root: Path, first: str
) -> None:
    unit = observe(store, root, first, functions=["unit_price"])
    record(store, "s1", [fn("unit_price", "u1"), fn("line_total", "l1")])
    start(store, root, "s2")
    record(store, "s2", [fn("unit_price", "u1"), fn("line_total", "l1")])
    assert store.stale_ids("observation", [unit]) == set()


def learning(store: Store, project: str, functions: list[str], at: str = BEFORE) -> str:
    content = f"about {functions} as of {at}"
    made = store.create_learning(
        LearningCreate(category="gotcha", content=content, project=project, functions=functions)
    ).row
    store.conn.execute("UPDATE learnings SET updated_at = ? WHERE id = ?", [at, made.id])
    return made.id


def test_a_learning_is_stale_once_a_function_it_names_changes(
    store: Store, root: Path, first: str
) -> None:
    project = store.get_session(first).project
    by_file = learning(store, project, [f"{FILE}::unit_price"])
    by_name = learning(store, project, ["unit_price"])
    other_file = learning(store, project, ["shop/other.py::unit_price"])
    other = learning(store, project, ["line_total"])
    unnamed = learning(store, project, [])
    edited_since = learning(store, project, ["unit_price"], at=AFTER)
    ids = [by_file, by_name, other_file, other, unnamed, edited_since]
    assert store.stale_ids("learning", ids) == set()
    start(store, root, "s2")
    record(store, "s2", [fn("unit_price", "u2"), fn("line_total", "l1")])
    assert store.stale_ids("learning", ids) == {by_file, by_name}


def test_unknown_kinds_and_ids_are_never_stale(store: Store, first: str) -> None:
    assert store.stale_ids("observation", ["nope"]) == set()
    assert store.stale_ids("session", [first]) == set()
    assert store.stale_ids("learning", []) == set()
