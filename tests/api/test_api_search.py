"""GET /-/claude-mem/search: the memory's search as JSON, described in the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import api_call, assert_error
from openapi_spec_validator import validate

from datasette_claude_mem.storage.models import (
    LearningCreate,
    ObservationCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

A, B = "/src/shop", "/src/blog"


@pytest_asyncio.fixture
async def seeded(ds: Datasette, memory_path: Path) -> dict[str, str]:
    with Store(memory_path) as store:
        for session_id, project in (("sa", A), ("sb", B)):
            store.create_session(SessionStart(id=session_id, project_dir=project, project=project))
        made = {}
        for key, session_id, tool, title in (
            ("a_read", "sa", "Read", "Read the discount table"),
            ("a_edit", "sa", "Edit", "Fixed discount rounding"),
            ("b_edit", "sb", "Edit", "Discount banner in blog"),
        ):
            made[key] = store.create_observation(
                ObservationCreate(
                    session_id=session_id, tool_name=tool, title=title, summary="about money"
                )
            ).row.id
        made["global"] = store.create_learning(
            LearningCreate(category="gotcha", content="A discount applies before tax")
        ).row.id
        store.log_event(
            "UserPromptSubmit", {"prompt": "fix the discount"}, session_id="sa", project=A
        )
    return made


async def search(ds: Datasette, token: str, **params: str):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return await api_call(ds, "GET", f"/search?{query}", token=token)


@pytest.mark.asyncio
async def test_search_answers_hits_best_first(ds: Datasette, token: str, seeded: dict) -> None:
    response = await search(ds, token, q="discount", project=A)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert (body["mode"], body["notice"]) == ("keyword", None)
    ids = [hit["id"] for hit in body["hits"]]
    assert set(ids) >= {seeded["a_edit"], seeded["a_read"], seeded["global"]}
    assert seeded["b_edit"] not in ids
    assert ids.index(seeded["a_edit"]) < ids.index(seeded["a_read"])  # a change outranks a read
    edit = body["hits"][ids.index(seeded["a_edit"])]
    assert edit["kind"] == "observation" and edit["type"] == "Edit"
    assert "[discount]" in edit["snippet"].lower()
    assert edit["created_at"].endswith("Z")
    scores = [hit["score"] for hit in body["hits"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.asyncio
async def test_kinds_and_limit_narrow_the_answer(ds: Datasette, token: str, seeded: dict) -> None:
    only = (await search(ds, token, q="discount", kinds="prompt,learning")).json()
    assert {hit["kind"] for hit in only["hits"]} == {"prompt", "learning"}
    assert only["kinds"] == ["prompt", "learning"]
    one = (await search(ds, token, q="discount", limit="1")).json()
    assert len(one["hits"]) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("switched_off", [True, False])
async def test_semantic_mode_without_a_backend_says_so(
    ds: Datasette,
    make_ds,
    memory_path: Path,
    token: str,
    seeded: dict,
    switched_off: bool,
    monkeypatch,
) -> None:
    """Switched off, or not installed, or with nothing embedded yet: keyword hits, and why."""
    if switched_off:
        # Settings are read once, when a server starts: a server started with it off.
        monkeypatch.setenv("CLAUDE_MEM_EMBEDDINGS", "0")
        ds = await make_ds(memory_path)
    body = (await search(ds, token, q="discount", mode="hybrid")).json()
    assert body["mode"] == "keyword" and body["requested_mode"] == "hybrid"
    assert "these are keyword hits" in body["notice"]
    if switched_off:
        assert "switched off" in body["notice"] or "embeddings]" in body["notice"]
    assert body["hits"], "a missing backend must not answer with nothing"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("", ["q:"]),
        ("q=%20%20", ["q:"]),
        ("q=x&mode=fuzzy", ["mode:", "keyword"]),
        ("q=x&kinds=observation,email", ["kinds:", "'email'"]),
        ("q=x&limit=many", ["limit:"]),
        ("q=x&limit=0", ["limit:"]),
        ("q=x&limit=100000", ["limit:"]),
        ("q=x&since=yesterday", ["since:"]),
    ],
)
async def test_bad_parameters_are_refused_clearly(
    ds: Datasette, token: str, seeded: dict, query: str, mentions: list[str]
) -> None:
    response = await api_call(ds, "GET", f"/search?{query}", token=token)
    assert_error(response, 400, *mentions, case=query)


@pytest.mark.asyncio
async def test_since_is_read_as_a_date(ds: Datasette, token: str, seeded: dict) -> None:
    future = (await search(ds, token, q="discount", since="2999-01-01")).json()
    assert future["hits"] == []
    past = (await search(ds, token, q="discount", since="2000-01-01T00:00:00Z")).json()
    assert past["hits"]


@pytest.mark.asyncio
async def test_search_keeps_the_types_asked_for(ds: Datasette, token: str, memory_path) -> None:
    with Store(memory_path) as store:
        store.create_session(SessionStart(id="st", project_dir=A, project=A))
        fix, read = (
            store.create_observation(
                ObservationCreate(
                    session_id="st", tool_name=tool, title=title, summary="", type=kind
                )
            ).row.id
            for tool, kind, title in (
                ("Edit", "bugfix", "Fix the refund sign"),
                ("Read", "discovery", "Read the refund code"),
            )
        )
    body = (await search(ds, token, q="refund", types="bugfix,failure")).json()
    assert [(hit["id"], hit["type"]) for hit in body["hits"]] == [(fix, "bugfix")]
    assert body["types"] == ["bugfix", "failure"]
    assert read in [hit["id"] for hit in (await search(ds, token, q="refund")).json()["hits"]]
    response = await search(ds, token, q="refund", types="fix")
    assert_error(response, 400, "types", "'fix'")


@pytest.mark.asyncio
async def test_search_needs_a_reader(ds: Datasette, seeded: dict) -> None:
    response = await ds.client.get("/-/claude-mem/search?q=discount")
    assert response.status_code in (401, 403)
    assert response.json()["ok"] is False


@pytest.mark.asyncio
async def test_search_is_in_the_openapi_document(ds: Datasette) -> None:
    document = (await ds.client.get("/-/claude-mem/openapi.json")).json()
    validate(document)
    operation = document["paths"]["/-/claude-mem/search"]["get"]
    parameters = {p["name"]: p["required"] for p in operation["parameters"]}
    assert parameters == {
        "q": True,
        "project": False,
        "mode": False,
        "types": False,
        "kinds": False,
        "since": False,
        "limit": False,
    }
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[1]
    assert "hits" in document["components"]["schemas"][name]["properties"]
