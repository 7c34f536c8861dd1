"""POST /-/claude-mem/functions (a file's function map) and /edges (the call graph)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import api_call, assert_error, query_rows


def fn(name: str, body_hash: str = "h1", kind: str = "function", **fields) -> dict:
    return {
        "qualified_name": name,
        "kind": kind,
        "signature": f"def {name}()",
        "body_hash": body_hash,
        **fields,
    }


def edge(caller: str, callee: str, **fields) -> dict:
    return {
        "caller_file": "app.py",
        "caller_function": caller,
        "callee_file": "lib.py",
        "callee_function": callee,
        "resolution": "direct",
        **fields,
    }


async def new_session(ds: Datasette, token: str, tmp_path: Path, session: str) -> str:
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True, exist_ok=True)
    response = await api_call(
        ds, "POST", "/sessions", {"id": session, "project_dir": str(project_dir)}, token=token
    )
    assert response.status_code in (200, 201)
    return session


@pytest.mark.asyncio
async def test_functions_new_then_unchanged_modified_deleted(
    ds: Datasette, token: str, session_id: str, tmp_path: Path
):
    body = {
        "session_id": session_id,
        "file_path": "app.py",
        "functions": [
            fn("main", decorators=["cli"], docstring="Entry"),
            fn("App.run", kind="method"),
        ],
    }
    first = await api_call(ds, "POST", "/functions", body, token=token)
    assert first.status_code == 200, first.text
    rows = first.json()["rows"]
    assert {r["qualified_name"]: r["change_type"] for r in rows} == {
        "main": "new",
        "App.run": "new",
    }
    main = next(r for r in rows if r["qualified_name"] == "main")
    assert main["decorators"] == ["cli"] and main["docstring"] == "Entry"
    stored = await query_rows(
        ds, "SELECT qualified_name, kind, decorators FROM function_map ORDER BY qualified_name"
    )
    assert stored == [
        {"qualified_name": "App.run", "kind": "method", "decorators": "[]"},
        {"qualified_name": "main", "kind": "function", "decorators": '["cli"]'},
    ]

    # A later session: one function changed, one gone, one added.
    later = await new_session(ds, token, tmp_path, "sess-2")
    body = {
        "session_id": later,
        "file_path": "app.py",
        "functions": [fn("main", body_hash="h2"), fn("helper", kind="async_function")],
    }
    second = await api_call(ds, "POST", "/functions", body, token=token)
    assert second.status_code == 200, second.text
    assert {r["qualified_name"]: r["change_type"] for r in second.json()["rows"]} == {
        "main": "modified",
        "helper": "new",
        "App.run": "deleted",
    }

    # The same file again in a third session: nothing changed.
    third = await new_session(ds, token, tmp_path, "sess-3")
    again = await api_call(ds, "POST", "/functions", {**body, "session_id": third}, token=token)
    assert {r["qualified_name"]: r["change_type"] for r in again.json()["rows"]} == {
        "main": "unchanged",
        "helper": "unchanged",
    }


@pytest.mark.asyncio
async def test_functions_of_an_empty_file(ds: Datasette, token: str, session_id: str):
    body = {"session_id": session_id, "file_path": "empty.py", "functions": []}
    response = await api_call(ds, "POST", "/functions", body, token=token)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == []


@pytest.mark.asyncio
async def test_functions_for_unknown_session_is_404(ds: Datasette, token: str):
    body = {"session_id": "ghost", "file_path": "a.py", "functions": [fn("f")]}
    assert_error(await api_call(ds, "POST", "/functions", body, token=token), 404, "ghost")
    assert await query_rows(ds, "SELECT count(*) AS n FROM function_map") == [{"n": 0}]


INVALID_FUNCTIONS = [
    ({"file_path": ""}, ["file_path"]),
    ({"functions": None}, ["functions"]),
    ({"functions": [fn("f", kind="lambda")]}, ["functions.0.kind"]),
    ({"functions": [fn("f", body_hash="")]}, ["functions.0.body_hash"]),
    ({"functions": [{"qualified_name": "f"}]}, ["functions.0.kind", "functions.0.body_hash"]),
    ({"functions": [fn("f", colour="red")]}, ["functions.0.colour"]),
    (
        {"functions": [fn("ok"), fn("", decorators="x")]},
        ["functions.1.qualified_name", "functions.1.decorators"],
    ),
]


@pytest.mark.asyncio
async def test_invalid_functions_names_each_field(ds: Datasette, token: str, session_id: str):
    for change, fields in INVALID_FUNCTIONS:
        body = {"session_id": session_id, "file_path": "a.py", "functions": [fn("f")], **change}
        response = await api_call(ds, "POST", "/functions", body, token=token)
        assert_error(response, 400, *fields, case=change)
    assert await query_rows(ds, "SELECT count(*) AS n FROM function_map") == [{"n": 0}]


@pytest.mark.asyncio
async def test_edges_are_added_then_confirmed(ds: Datasette, token: str, session_id: str):
    body = {
        "session_id": session_id,
        "edges": [edge("main", "load", confidence=0.9), edge("main", "save")],
    }
    first = await api_call(ds, "POST", "/edges", body, token=token)
    assert first.status_code == 200, first.text
    rows = first.json()["rows"]
    assert [(r["caller_function"], r["callee_function"]) for r in rows] == [
        ("main", "load"),
        ("main", "save"),
    ]
    assert rows[0]["confidence"] == 0.9 and rows[0]["times_confirmed"] == 0
    assert rows[1]["source"] == "ast"
    assert await query_rows(ds, "SELECT count(*) AS n FROM call_graph") == [{"n": 2}]

    again = await api_call(ds, "POST", "/edges", body, token=token)
    assert again.status_code == 200
    assert [r["times_confirmed"] for r in again.json()["rows"]] == [1, 1]
    assert [r["id"] for r in again.json()["rows"]] == [r["id"] for r in rows]
    assert await query_rows(ds, "SELECT count(*) AS n FROM call_graph") == [{"n": 2}]


@pytest.mark.asyncio
async def test_edges_replace_file_drops_stale_edges(ds: Datasette, token: str, session_id: str):
    body = {"session_id": session_id, "edges": [edge("main", "load"), edge("main", "save")]}
    await api_call(ds, "POST", "/edges", body, token=token)
    fresh = {"session_id": session_id, "edges": [edge("main", "load")], "replace_file": "app.py"}
    response = await api_call(ds, "POST", "/edges", fresh, token=token)
    assert response.status_code == 200, response.text
    stored = await query_rows(ds, "SELECT callee_function FROM call_graph")
    assert stored == [{"callee_function": "load"}]


@pytest.mark.asyncio
async def test_no_edges(ds: Datasette, token: str, session_id: str):
    response = await api_call(
        ds, "POST", "/edges", {"session_id": session_id, "edges": []}, token=token
    )
    assert response.status_code == 200
    assert response.json()["rows"] == []


@pytest.mark.asyncio
async def test_edges_for_unknown_session_is_404(ds: Datasette, token: str):
    body = {"session_id": "ghost", "edges": [edge("a", "b")]}
    assert_error(await api_call(ds, "POST", "/edges", body, token=token), 404, "ghost")


INVALID_EDGES = [
    ([edge("a", "b", resolution="guess")], ["edges.0.resolution"]),
    ([edge("a", "b", confidence=1.5)], ["edges.0.confidence"]),
    ([edge("a", "b", confidence=-0.1)], ["edges.0.confidence"]),
    ([edge("a", "b", source="llm")], ["edges.0.source"]),
    ([edge("", "b")], ["edges.0.caller_function"]),
    (
        [edge("a", "b"), {"caller_file": "x"}],
        ["edges.1.caller_function", "edges.1.callee_function", "edges.1.resolution"],
    ),
    ("a->b", ["edges"]),
]


@pytest.mark.asyncio
async def test_invalid_edges_name_each_field(ds: Datasette, token: str, session_id: str):
    for edges, fields in INVALID_EDGES:
        body = {"session_id": session_id, "edges": edges}
        response = await api_call(ds, "POST", "/edges", body, token=token)
        assert_error(response, 400, *fields, case=edges)
    assert await query_rows(ds, "SELECT count(*) AS n FROM call_graph") == [{"n": 0}]


@pytest.mark.asyncio
async def test_functions_and_edges_405(ds: Datasette, token: str):
    for path in ("/functions", "/edges"):
        response = await api_call(ds, "GET", path, token=token)
        assert_error(response, 405)
        assert response.headers["allow"] == "POST"


@pytest.mark.asyncio
async def test_stored_decorators_are_json(ds: Datasette, token: str, session_id: str):
    body = {
        "session_id": session_id,
        "file_path": "a.py",
        "functions": [fn("f", decorators=["a", "b(1)"])],
    }
    await api_call(ds, "POST", "/functions", body, token=token)
    (row,) = await query_rows(ds, "SELECT decorators FROM function_map")
    assert json.loads(row["decorators"]) == ["a", "b(1)"]
