"""Stale memories through the real API: a learning naming a function, then that function
changed by a later session, is marked stale in search and ranked after current ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import api_call

from datasette_claude_mem import plugin

OLD = "2001-01-01T00:00:00.000Z"


def fn(name: str, body_hash: str) -> dict:
    return {"qualified_name": name, "kind": "function", "body_hash": body_hash}


async def start(ds: Datasette, token: str, root: Path, session: str) -> str:
    response = await api_call(
        ds, "POST", "/sessions", {"id": session, "project_dir": str(root)}, token=token
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["row"]["project"]


async def record(ds: Datasette, token: str, session: str, functions: list, baseline=None):
    body = {"session_id": session, "file_path": "shop/pricing.py", "functions": functions}
    if baseline is not None:
        body["baseline"] = baseline
    response = await api_call(ds, "POST", "/functions", body, token=token)
    assert response.status_code == 200, response.text
    return {r["qualified_name"]: r["change_type"] for r in response.json()["rows"]}


@pytest.mark.asyncio
async def test_a_learning_about_a_changed_function_is_stale_in_search(
    ds: Datasette, token: str, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    project = await start(ds, token, root, "s1")
    seen = [fn("apply_discount", "d1"), fn("line_total", "l1")]
    # What a session only read is unchanged, not new, once the API is told the baseline.
    assert await record(ds, token, "s1", seen, baseline=seen) == {
        "apply_discount": "unchanged",
        "line_total": "unchanged",
    }
    made = {}
    for name in ("apply_discount", "line_total"):
        response = await api_call(
            ds, "POST", "/learnings",
            {"category": "gotcha", "content": f"discount rule: {name} rounds down",
             "project": project, "functions": [f"shop/pricing.py::{name}"]},
            token=token,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        assert response.json()["row"]["functions"] == [f"shop/pricing.py::{name}"]
        made[name] = response.json()["row"]["id"]
    # Recorded long ago, so the change below is surely later than both.
    await plugin.memory_database(ds).execute_write("UPDATE learnings SET updated_at = ?", [OLD])

    async def hits() -> list[tuple[str, bool]]:
        response = await api_call(
            ds, "GET", f"/search?q=discount&kinds=learning&project={project}", token=token
        )
        assert response.status_code == 200, response.text
        return [(hit["id"], hit["stale"]) for hit in response.json()["hits"]]

    assert sorted(await hits()) == sorted((i, False) for i in made.values())
    await start(ds, token, root, "s2")
    changed = await record(ds, token, "s2", [fn("apply_discount", "d2"), fn("line_total", "l1")])
    assert changed == {"apply_discount": "modified", "line_total": "unchanged"}
    assert await hits() == [(made["line_total"], False), (made["apply_discount"], True)]


@pytest.mark.asyncio
async def test_a_learning_naming_functions_is_checked_like_any_input(
    ds: Datasette, token: str
) -> None:
    body = {"category": "gotcha", "content": "c", "project": "/repo", "functions": [""]}
    response = await api_call(ds, "POST", "/learnings", body, token=token)
    assert response.status_code == 400
    rows = await api_call(ds, "GET", "/search?q=c&kinds=learning&project=/repo", token=token)
    assert rows.json()["hits"] == []
