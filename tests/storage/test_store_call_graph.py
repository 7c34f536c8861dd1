"""The call graph: who calls what, confirmed each time a parse sees an edge again."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.migrations import last_name
from datasette_claude_mem.storage.models import EdgeInput, EdgesAdd, Session, SessionStart
from datasette_claude_mem.storage.queries import QUERY_SQL
from datasette_claude_mem.storage.store import Store


def edge(caller: str, callee: str, caller_file: str = "a.py", callee_file: str = "b.py", **kw):
    return EdgeInput(
        caller_file=caller_file,
        caller_function=caller,
        callee_file=callee_file,
        callee_function=callee,
        resolution=kw.pop("resolution", "direct"),
        **kw,
    )


def add(store: Store, session: Session, *edges: EdgeInput, replace_file: str | None = None):
    return store.add_edges(
        EdgesAdd(session_id=session.id, edges=list(edges), replace_file=replace_file)
    )


def pairs(edges) -> set[tuple[str, str]]:
    return {(e.caller_function, e.callee_function) for e in edges}


def test_callers_and_callees(store: Store, session: Session) -> None:
    made = add(
        store,
        session,
        edge("main", "parse"),
        edge("main", "render", resolution="import", confidence=0.8),
        edge("cli", "parse", caller_file="cli.py"),
    )
    assert [e.callee_function for e in made] == ["parse", "render", "parse"]
    assert pairs(store.callers(session.project, "parse")) == {("main", "parse"), ("cli", "parse")}
    assert pairs(store.callees(session.project, "main")) == {
        ("main", "parse"),
        ("main", "render"),
    }
    render = store.callees(session.project, "main")
    assert render[0].callee_function == "parse"  # most confident first
    assert render[1].resolution == "import"
    assert render[1].confidence == 0.8
    assert pairs(store.callers(session.project, "parse", file="b.py")) == {
        ("main", "parse"),
        ("cli", "parse"),
    }
    assert store.callers(session.project, "parse", file="elsewhere.py") == []
    assert store.callees(session.project, "cli", file="cli.py")[0].session_id == session.id
    assert store.callers(session.project, "nobody") == []


def test_a_bare_name_finds_methods_of_that_name_and_nothing_like_it(
    store: Store, session: Session
) -> None:
    """The store answers as the callers and callees stored queries do: `get_token` also
    finds `Client.get_token`, but underscores are not wildcards (`getXtoken` stays out)."""
    add(
        store,
        session,
        edge("main", "get_token"),
        edge("main", "Client.get_token"),
        edge("main", "Client.getXtoken"),
        edge("main", "forget_token"),
    )
    assert pairs(store.callers(session.project, "get_token")) == {
        ("main", "get_token"),
        ("main", "Client.get_token"),
    }
    assert pairs(store.callers(session.project, "Client.get_token")) == {
        ("main", "Client.get_token")
    }


@pytest.mark.parametrize("query", ["callers", "callees"])
@pytest.mark.parametrize("project", ["", "some/project"])
def test_a_lookup_by_name_reads_the_name_index_not_every_edge(
    store: Store, query: str, project: str
) -> None:
    """The session-start context looks up callers of ten functions: over a large call graph
    a scan of every edge for each one took tens of milliseconds."""
    plan = store.conn.execute(
        f"EXPLAIN QUERY PLAN {QUERY_SQL[query]}",
        {"project": project, "function": "Client.get_token", "file": ""},
    ).fetchall()
    side = "callee" if query == "callers" else "caller"
    assert any(f"USING INDEX idx_cg_{side}_name" in row[3] for row in plan), plan


@pytest.mark.parametrize(
    ("name", "last"),
    [("parse", "parse"), ("Parser.parse", "parse"), ("a.b.c", "c"), ("pkg.mod.a.a", "a"),
     ("b.b.b", "b"), ("", ""), ("ünï.cödé", "cödé")],
)  # fmt: skip
def test_last_name_is_the_part_after_the_last_dot(store: Store, name: str, last: str) -> None:
    assert store.conn.execute(f"SELECT {last_name(':n')}", {"n": name}).fetchone()[0] == last


def test_an_edge_seen_again_is_confirmed_not_duplicated(store: Store, session: Session) -> None:
    first = add(store, session, edge("main", "parse"))[0]
    assert first.times_confirmed == 0
    later = store.create_session(SessionStart(project_dir=session.project_dir)).row
    again = add(store, later, edge("main", "parse", confidence=0.9))[0]
    third = add(store, later, edge("main", "parse", confidence=0.9))[0]
    assert again.id == first.id == third.id
    assert third.times_confirmed == 2
    assert third.confidence == 0.9
    assert third.session_id == later.id
    assert len(store.callers(session.project, "parse")) == 1


def test_replace_file_drops_that_files_stale_edges_only(store: Store, session: Session) -> None:
    """A fresh parse of a file says what it calls now; other files' edges stay."""
    add(
        store,
        session,
        edge("main", "old"),
        edge("main", "kept"),
        edge("helper", "x", caller_file="other.py"),
    )
    add(store, session, edge("main", "kept"), edge("main", "new"), replace_file="a.py")
    assert pairs(store.callees(session.project, "main")) == {("main", "kept"), ("main", "new")}
    assert store.callees(session.project, "main", file="a.py")[0].callee_function in {
        "kept",
        "new",
    }
    kept = [e for e in store.callees(session.project, "main") if e.callee_function == "kept"]
    assert kept[0].times_confirmed == 1
    assert pairs(store.callees(session.project, "helper")) == {("helper", "x")}


def test_replace_file_with_no_edges_clears_the_file(store: Store, session: Session) -> None:
    add(store, session, edge("main", "parse"))
    assert add(store, session, replace_file="a.py") == []
    assert store.callees(session.project, "main") == []


def test_replace_file_keeps_edges_learned_from_observations(store: Store, session: Session) -> None:
    add(store, session, edge("main", "dynamic", source="observation"), edge("main", "parse"))
    add(store, session, replace_file="a.py")
    assert pairs(store.callees(session.project, "main")) == {("main", "dynamic")}


def test_edges_of_other_projects_are_invisible(store: Store, session: Session) -> None:
    other = store.create_session(SessionStart(project_dir="/o", project="other")).row
    add(store, session, edge("main", "parse"))
    add(store, other, edge("main", "parse"), edge("main", "other_only"))
    assert pairs(store.callees(session.project, "main")) == {("main", "parse")}
    assert len(store.callees("other", "main")) == 2
    assert store.callees(session.project, "main")[0].times_confirmed == 0


def test_unknown_session_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        store.add_edges(EdgesAdd(session_id="nope", edges=[edge("a", "b")]))
    assert store.conn.execute("SELECT count(*) FROM call_graph").fetchone()[0] == 0


def test_bad_edges_are_refused() -> None:
    with pytest.raises(ValidationError):
        edge("a", "b", resolution="guess")
    with pytest.raises(ValidationError):
        edge("a", "b", confidence=1.5)
    with pytest.raises(ValidationError):
        edge("a", "b", source="llm")
