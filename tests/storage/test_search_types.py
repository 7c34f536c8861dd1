"""Search by observation type: the store, the stored query, MCP's reads and the page."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from datasette.app import Datasette
from helpers import bearer

from datasette_claude_mem.storage import recall
from datasette_claude_mem.storage.models import LearningCreate, ObservationCreate, SessionStart
from datasette_claude_mem.storage.search import SearchError, search
from datasette_claude_mem.storage.store import Store

P = "/src/shop"


def seed(store: Store) -> dict[str, str]:
    """A fix, a failing test run and a read of one function, a learning, an untyped row."""
    store.create_session(SessionStart(id="s1", project_dir=P, project=P))
    made = {}
    for key, tool, kind, title in (
        ("fix", "Edit", "bugfix", "Edit shop/pricing.py: apply_discount takes the rate off"),
        ("run", "Bash", "test", "Run: pytest -q (apply_discount test failed)"),
        ("read", "Read", "discovery", "Read shop/pricing.py: apply_discount"),
        ("old", "Edit", None, "Edit shop/pricing.py: apply_discount docstring"),
    ):
        made[key] = store.create_observation(
            ObservationCreate(session_id="s1", tool_name=tool, title=title, summary="", type=kind)
        ).row.id
    made["learning"] = store.create_learning(
        LearningCreate(category="gotcha", content="apply_discount runs before tax", project=P)
    ).row.id
    return made


@pytest.fixture
def typed(store: Store) -> dict[str, str]:
    return seed(store)


def test_types_keep_only_observations_of_those_types(store: Store, typed: dict) -> None:
    found = search(store.conn, "apply_discount", project=P, types="bugfix,test")
    assert {hit.id for hit in found.hits} == {typed["fix"], typed["run"]}
    assert found.types == ["bugfix", "test"]
    assert {hit.type for hit in found.hits} == {"bugfix", "test"}


def test_without_types_every_kind_is_found_and_hits_say_their_type(
    store: Store, typed: dict
) -> None:
    hits = {hit.id: hit for hit in search(store.conn, "apply_discount", project=P).hits}
    assert set(hits) == set(typed.values())
    assert hits[typed["read"]].type == "discovery"
    # A row made before types existed shows its tool.
    assert hits[typed["old"]].type == "Edit"
    assert hits[typed["learning"]].type == "gotcha"


def test_types_with_kinds_that_have_none_find_nothing(store: Store, typed: dict) -> None:
    found = search(store.conn, "apply_discount", project=P, kinds="learning", types=["bugfix"])
    assert found.hits == []


def test_an_unknown_type_is_refused_and_named(store: Store, typed: dict) -> None:
    with pytest.raises(SearchError, match="'chore'"):
        search(store.conn, "apply_discount", types="bugfix,chore")


def test_mcp_reads_filter_by_type_and_label_hits_with_it(store: Store, typed: dict) -> None:
    hits = recall.search(store, P, "apply_discount", types=["failure", "bugfix"])
    assert [(hit.id, hit.label) for hit in hits] == [(typed["fix"], "bugfix/Edit")]
    everything = {hit.id: hit.label for hit in recall.search(store, P, "apply_discount")}
    assert everything[typed["run"]] == "test/Bash"
    assert everything[typed["old"]] == "Edit"


@pytest.mark.asyncio
async def test_the_stored_query_takes_types(ds: Datasette, token: str, memory_path) -> None:
    with Store(memory_path) as store:
        typed_rows = seed(store)
    params = {"q": "apply_discount", "types": "test"}
    response = await ds.client.get(
        f"/claude-mem/search_memory.json?{urlencode(params)}", headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert [row["id"] for row in response.json()["rows"]] == [typed_rows["run"]]


@pytest.mark.asyncio
async def test_the_search_page_filters_by_type(ds: Datasette, token: str, memory_path) -> None:
    with Store(memory_path) as store:
        typed_rows = seed(store)
    query = urlencode([("q", "apply_discount"), ("types", "bugfix")])
    response = await ds.client.get(f"/-/claude-mem/find?{query}", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert typed_rows["fix"] in response.text
    assert typed_rows["read"] not in response.text
    assert 'value="bugfix" checked' in response.text
