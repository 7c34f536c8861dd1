"""The function map: what each session saw of a file's functions, and what changed."""

from __future__ import annotations

from datasette_claude_mem.storage.models import (
    ChangeType,
    FunctionInput,
    FunctionMapUpsert,
    Session,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

FILE = "src/app.py"


def fn(name: str, body: str = "v1", **kw) -> FunctionInput:
    return FunctionInput(
        qualified_name=name,
        kind=kw.pop("kind", "function"),
        signature=kw.pop("signature", f"def {name}()"),
        body_hash=f"{name}-{body}",
        **kw,
    )


def upsert(store: Store, session: Session, *functions: FunctionInput, path: str = FILE):
    data = FunctionMapUpsert(session_id=session.id, file_path=path, functions=list(functions))
    return {e.qualified_name: e.change_type for e in store.upsert_functions(data)}


def next_session(store: Store, session: Session) -> Session:
    return store.create_session(SessionStart(project_dir=session.project_dir)).row


def test_first_sight_of_a_file_is_all_new(store: Store, session: Session) -> None:
    changes = upsert(
        store,
        session,
        fn("main"),
        fn("App", kind="class", docstring="The app."),
        fn("App.run", kind="method", decorators=["staticmethod"]),
    )
    assert changes == {"main": "new", "App": "new", "App.run": "new"}
    latest = {e.qualified_name: e for e in store.latest_functions(session.project, FILE)}
    assert set(latest) == {"main", "App", "App.run"}
    assert latest["App"].kind == "class"
    assert latest["App"].docstring == "The app."
    assert latest["App.run"].decorators == ["staticmethod"]
    assert latest["main"].signature == "def main()"
    assert latest["main"].session_id == session.id
    assert latest["main"].project == session.project


def test_next_session_sees_modified_unchanged_deleted_and_new(
    store: Store, session: Session
) -> None:
    upsert(store, session, fn("keep"), fn("edit"), fn("drop"))
    later = next_session(store, session)
    changes = upsert(store, later, fn("keep"), fn("edit", "v2"), fn("added"))
    assert changes == {
        "keep": ChangeType.UNCHANGED,
        "edit": ChangeType.MODIFIED,
        "drop": ChangeType.DELETED,
        "added": ChangeType.NEW,
    }
    latest = {e.qualified_name: e for e in store.latest_functions(session.project, FILE)}
    assert set(latest) == {"keep", "edit", "added"}  # the deleted one is gone from the file
    assert latest["edit"].body_hash == "edit-v2"
    assert latest["edit"].session_id == later.id


def test_changed_functions_excludes_unchanged(store: Store, session: Session) -> None:
    upsert(store, session, fn("keep"), fn("edit"), fn("drop"))
    later = next_session(store, session)
    upsert(store, later, fn("keep"), fn("edit", "v2"))
    changed = store.changed_functions(session.project, later.id)
    assert {(e.qualified_name, e.change_type) for e in changed} == {
        ("edit", ChangeType.MODIFIED),
        ("drop", ChangeType.DELETED),
    }
    # Over every session of the project, the first session's news count as changes too.
    everywhere = {
        (e.qualified_name, e.session_id) for e in store.changed_functions(session.project)
    }
    assert ("keep", session.id) in everywhere
    assert ("keep", later.id) not in everywhere


def test_re_adding_a_deleted_function_is_new(store: Store, session: Session) -> None:
    upsert(store, session, fn("a"), fn("b"))
    second = next_session(store, session)
    assert upsert(store, second, fn("a"))["b"] == ChangeType.DELETED
    third = next_session(store, session)
    changes = upsert(store, third, fn("a"), fn("b"))
    assert changes == {"a": ChangeType.UNCHANGED, "b": ChangeType.NEW}
    # Still deleted is not deleted again.
    fourth = next_session(store, session)
    upsert(store, fourth, fn("a"), fn("b"))
    fifth = next_session(store, session)
    upsert(store, fifth, fn("a"))
    sixth = next_session(store, session)
    assert upsert(store, sixth, fn("a")) == {"a": ChangeType.UNCHANGED}


def test_upserting_again_in_one_session_compares_with_before_the_session(
    store: Store, session: Session
) -> None:
    """Several edits of one file in a session leave one row per function, not one per edit."""
    upsert(store, session, fn("f"), fn("g"))
    later = next_session(store, session)
    assert upsert(store, later, fn("f", "v2"), fn("g"))["f"] == ChangeType.MODIFIED
    assert upsert(store, later, fn("f"), fn("g")) == {
        "f": ChangeType.UNCHANGED,
        "g": ChangeType.UNCHANGED,
    }
    rows = store.conn.execute(
        "SELECT count(*) FROM function_map WHERE session_id = ?", [later.id]
    ).fetchone()[0]
    assert rows == 2


def test_a_function_added_and_removed_within_one_session_leaves_no_trace(
    store: Store, session: Session
) -> None:
    upsert(store, session, fn("f"), fn("scratch"))
    assert upsert(store, session, fn("f")) == {"f": ChangeType.NEW}
    assert [e.qualified_name for e in store.latest_functions(session.project, FILE)] == ["f"]


def test_files_and_projects_are_kept_apart(store: Store, session: Session) -> None:
    upsert(store, session, fn("f"))
    upsert(store, session, fn("f"), fn("g"), path="src/other.py")
    assert [e.qualified_name for e in store.latest_functions(session.project, FILE)] == ["f"]
    elsewhere = store.create_session(SessionStart(project_dir="/x", project="other")).row
    assert upsert(store, elsewhere, fn("f", "v9")) == {"f": ChangeType.NEW}
    assert store.latest_functions(session.project, FILE)[0].body_hash == "f-v1"
    assert store.latest_functions("other", FILE)[0].body_hash == "f-v9"
    assert store.latest_functions("nobody", FILE) == []


def test_function_map_survives_reopen(store: Store, session: Session, config) -> None:
    upsert(store, session, fn("f"), fn("g"))
    before = store.latest_functions(session.project, FILE)
    store.close()
    with Store(config.db_path) as reopened:
        assert reopened.latest_functions(session.project, FILE) == before


def test_mapped_files_are_those_any_session_of_the_project_recorded(
    store: Store, session: Session, tmp_path
) -> None:
    upsert(store, session, fn("a"))
    later = next_session(store, session)
    assert store.mapped_files(later.id, [FILE, "src/other.py"]) == {FILE}
    elsewhere = store.create_session(SessionStart(project_dir=str(tmp_path / "elsewhere"))).row
    assert store.mapped_files(elsewhere.id, [FILE]) == set()
    assert store.mapped_files(later.id, []) == set()
