"""The search page at /-/claude-mem/find, and the dashboard's search box that leads to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_asyncio
from datasette.app import Datasette

from datasette_claude_mem.pages.search import pieces
from datasette_claude_mem.storage.models import (
    LearningCreate,
    ObservationCreate,
    SessionStart,
    SessionUpdate,
)
from datasette_claude_mem.storage.search import HTML_MARKS
from datasette_claude_mem.storage.store import Store

PROJECT = "/src/shop"


def root(ds: Datasette) -> dict[str, str]:
    return {"ds_actor": ds.client.actor_cookie({"id": "root"})}


@pytest_asyncio.fixture
async def seeded(ds: Datasette, memory_path: Path) -> dict[str, str]:
    with Store(memory_path) as store:
        store.create_session(SessionStart(id="s1", project_dir=PROJECT, project=PROJECT))
        store.update_session("s1", SessionUpdate(summary="Chased the discount bug"))
        made = {"session": "s1"}
        made["edit"] = store.create_observation(
            ObservationCreate(
                session_id="s1",
                tool_name="Edit",
                title="Fixed <script>alert(1)</script> discount",
                summary="the <b>discount</b> was rounded twice",
                files_touched=["src/cart.py"],
            )
        ).row.id
        made["learning"] = store.create_learning(
            LearningCreate(category="gotcha", content="Discount before tax", project=PROJECT)
        ).row.id
        store.log_event(
            "UserPromptSubmit",
            {"prompt": "why is the discount wrong"},
            session_id="s1",
            project=PROJECT,
            event_id="p1",
        )
    return made


async def page(ds: Datasette, query: str):
    return await ds.client.get(f"/-/claude-mem/find?{query}", cookies=root(ds))


@pytest.mark.asyncio
async def test_the_dashboard_has_a_search_box_that_leads_to_the_page(
    ds: Datasette, seeded: dict
) -> None:
    dashboard = await ds.client.get("/-/claude-mem", cookies=root(ds))
    form = re.search(r'<form[^>]*cm-search-box[^>]*action="([^"]+)"', dashboard.text)
    assert form and form.group(1) == "/-/claude-mem/find"
    assert 'name="q"' in dashboard.text
    answer = await page(ds, "q=discount")
    assert answer.status_code == 200
    assert 'value="discount"' in answer.text


@pytest.mark.asyncio
async def test_hits_link_to_their_rows_and_the_mode_is_shown(ds: Datasette, seeded: dict) -> None:
    answer = await page(ds, f"q=discount&project={PROJECT}")
    text = answer.text
    assert "4 hits" in text
    assert re.search(r'cm-search-mode">keyword<', text)
    asked = (await page(ds, "q=discount&mode=hybrid")).text
    assert re.search(r'cm-notice" role="status">hybrid search .*these are keyword hits', asked)
    links = re.findall(r'<li class="cm-hit cm-hit-(\w+)">.*?<a href="([^"]+)">', text, re.S)
    assert dict(links) == {
        "observation": f"/claude-mem/observations/{seeded['edit']}",
        "learning": f"/claude-mem/learnings/{seeded['learning']}",
        "session": "/-/claude-mem/sessions/s1",
        "prompt": "/claude-mem/prompts/p1",
    }
    for _, href in links:
        assert (await ds.client.get(href, cookies=root(ds))).status_code == 200, href
    assert links[0][0] == "observation"  # the change ranks first


@pytest.mark.asyncio
async def test_the_query_is_marked_and_everything_escaped(ds: Datasette, seeded: dict) -> None:
    text = (await page(ds, "q=discount&kinds=observation")).text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    snippet = re.search(r'<div class="cm-snippet">(.*?)</div>', text, re.S).group(1)
    assert "<mark>discount</mark>" in snippet
    text = (await page(ds, "q=rounded")).text
    snippet = re.search(r'<div class="cm-snippet">(.*?)</div>', text, re.S).group(1)
    assert snippet == "the &lt;b&gt;discount&lt;/b&gt; was <mark>rounded</mark> twice"
    assert HTML_MARKS[0] not in text and HTML_MARKS[1] not in text


@pytest.mark.asyncio
async def test_kinds_narrow_the_page(ds: Datasette, seeded: dict) -> None:
    text = (await page(ds, "q=discount&kinds=prompt&kinds=session")).text
    kinds = set(re.findall(r'<li class="cm-hit cm-hit-(\w+)">', text))
    assert kinds == {"prompt", "session"}
    assert re.search(r'value="prompt" checked', text)
    assert not re.search(r'value="learning" checked', text)
    assert "kinds=prompt%2Csession" in text  # the JSON link asks for the same


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("q=x&mode=fuzzy", "mode: &#39;fuzzy&#39; is not one of"),
        ("q=x&kinds=email", "kinds: unknown kind"),
        ("q=x&limit=lots", "limit must be a whole number"),
    ],
)
async def test_bad_input_is_said_and_answered_400(
    ds: Datasette, seeded: dict, query: str, message: str
) -> None:
    answer = await page(ds, query)
    assert answer.status_code == 400
    assert message in answer.text


@pytest.mark.asyncio
async def test_nothing_found_is_said(ds: Datasette, seeded: dict) -> None:
    text = (await page(ds, "q=zebra")).text
    assert "0 hits" in text and "Nothing matches" in text


@pytest.mark.asyncio
async def test_the_page_needs_a_reader(ds: Datasette, seeded: dict) -> None:
    assert (await ds.client.get("/-/claude-mem/find?q=discount")).status_code == 403


def test_snippet_pieces_keep_text_and_marks_apart() -> None:
    start, end = HTML_MARKS
    assert pieces(f"a {start}b{end} c{start}d{end}") == [
        ("a ", False),
        ("b", True),
        (" c", False),
        ("d", True),
    ]
    assert pieces("no marks [here]") == [("no marks [here]", False)]
