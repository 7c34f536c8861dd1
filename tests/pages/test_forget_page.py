"""Forgetting from the pages: the project page, the forget buttons and the form they post."""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import assert_error, fill, query_rows

from datasette_claude_mem.pages.links import Links
from datasette_claude_mem.storage.store import Store

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest_asyncio.fixture
async def mem(make_ds, memory_path: Path, tmp_path: Path, serve_config: dict[str, Any]):
    """Two filled projects; root may write, the actor viewer may only read."""
    with Store(memory_path) as store:
        fill(store, tmp_path, "alpha")
        fill(store, tmp_path, "beta")
    config = copy.deepcopy(serve_config)
    config["databases"]["claude-mem"]["allow"]["id"].append("viewer")
    return await make_ds(memory_path, config=config, plugin={"worker": False})


def cookie(ds: Datasette, actor: str = "root") -> dict[str, str]:
    return {"ds_actor": ds.client.actor_cookie({"id": actor})}


async def project_of(ds: Datasette, name: str) -> str:
    rows = await query_rows(ds, "SELECT DISTINCT project FROM sessions")
    return next(r["project"] for r in rows if r["project"].endswith(name))


async def post_form(ds: Datasette, fields: dict[str, str], actor: str = "root", **headers):
    return await ds.client.post(
        "/-/claude-mem/forget/form",
        data=fields,
        cookies=cookie(ds, actor),
        headers={**SAME_ORIGIN, **headers},
    )


def forms(markup: str) -> list[dict[str, str]]:
    """Each forget form of a page: its hidden fields and its confirmation question."""
    found = []
    for form in re.findall(r'<form class="cm-forget[^"]*".*?</form>', markup, flags=re.S):
        fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))
        question = re.search(r"onsubmit='return confirm\((.*?)\)'", form)
        found.append({**{k: html.unescape(v) for k, v in fields.items()},
                      "question": question.group(1) if question else ""})  # fmt: skip
    return found


@pytest.mark.asyncio
async def test_the_project_page_shows_what_it_holds_and_asks_before_forgetting(mem: Datasette):
    project = await project_of(mem, "alpha")
    url = Links(mem, "claude-mem").project(project)
    response = await mem.client.get(url, cookies=cookie(mem))
    assert response.status_code == 200, response.text
    markup = response.text
    assert "What it holds" in markup and "tokenizer gotcha alpha" in markup
    assert "tokenizer gotcha beta" not in markup
    found = forms(markup)
    kinds = [f.get("kind") for f in found]
    assert kinds.count("project") == 1 and "before" in kinds and "session" in kinds
    assert "learning" in kinds and "note" in kinds
    assert all(f["question"] for f in found), "every forget asks first"


@pytest.mark.asyncio
async def test_the_project_page_offers_its_memory_as_a_download(mem: Datasette):
    project = await project_of(mem, "alpha")
    page = await mem.client.get(Links(mem, "claude-mem").project(project), cookies=cookie(mem))
    link = re.search(r'<a href="([^"]+)" download>', page.text)
    assert link, "the project page links to a download"
    response = await mem.client.get(html.unescape(link.group(1)), cookies=cookie(mem))
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert len(lines) > 3
    assert "tokenizer gotcha alpha" in response.text
    assert "tokenizer gotcha beta" not in response.text


@pytest.mark.asyncio
async def test_forgetting_a_session_from_its_page_goes_back_with_a_message(mem: Datasette):
    sid = (await query_rows(mem, "SELECT id FROM sessions LIMIT 1"))[0]["id"]
    markup = (await mem.client.get(f"/-/claude-mem/sessions/{sid}", cookies=cookie(mem))).text
    [button] = [f for f in forms(markup) if f.get("kind") == "session"]
    assert button["id"] == sid and "cannot be undone" in button["question"]
    assert any(f.get("kind") == "observation" for f in forms(markup))

    response = await post_form(mem, {k: v for k, v in button.items() if k != "question"})

    assert response.status_code == 302, response.text
    assert response.headers["location"] == button["next"]
    assert await query_rows(mem, "SELECT * FROM sessions WHERE id = ?", [sid]) == []
    [tomb] = await query_rows(mem, "SELECT kind, forgotten_by FROM tombstones")
    assert tomb == {"kind": "session", "forgotten_by": "root"}
    cookies = {**cookie(mem), "ds_messages": response.cookies["ds_messages"]}
    dashboard = await mem.client.get("/-/claude-mem", cookies=cookies)
    assert "Forgot" in dashboard.text
    assert 'id="forgotten"' in dashboard.text and "by root" in dashboard.text


@pytest.mark.asyncio
async def test_forgetting_a_project_before_a_date_from_the_form(mem: Datasette):
    project = await project_of(mem, "beta")
    response = await post_form(mem, {"kind": "before", "project": project, "before": "2999-01-01",
                                     "kinds": "learning", "reason": "stale"})  # fmt: skip
    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/-/claude-mem"  # no page named: the dashboard
    assert await query_rows(mem, "SELECT * FROM learnings WHERE project = ?", [project]) == []
    assert len(await query_rows(mem, "SELECT * FROM learnings")) == 1
    [tomb] = await query_rows(mem, "SELECT reason, before FROM tombstones")
    assert tomb == {"reason": "stale", "before": "2999-01-01T00:00:00.000Z"}


@pytest.mark.asyncio
async def test_the_observation_row_page_has_a_forget_button(mem: Datasette):
    obs = (await query_rows(mem, "SELECT id FROM observations LIMIT 1"))[0]["id"]
    markup = (await mem.client.get(f"/claude-mem/observations/{obs}", cookies=cookie(mem))).text
    [button] = [f for f in forms(markup) if f.get("kind") == "observation"]
    response = await post_form(mem, {k: v for k, v in button.items() if k != "question"})
    assert response.status_code == 302
    assert await query_rows(mem, "SELECT * FROM observations WHERE id = ?", [obs]) == []


@pytest.mark.asyncio
async def test_a_reader_sees_no_button_and_cannot_post(mem: Datasette):
    project = await project_of(mem, "alpha")
    url = Links(mem, "claude-mem").project(project)
    markup = (await mem.client.get(url, cookies=cookie(mem, "viewer"))).text
    assert "What it holds" in markup and forms(markup) == []
    response = await post_form(mem, {"kind": "project", "project": project}, actor="viewer")
    assert_error(response, 403, "claude-mem-write")
    assert await query_rows(mem, "SELECT * FROM tombstones") == []


@pytest.mark.asyncio
async def test_a_post_from_another_site_or_without_an_origin_changes_nothing(mem: Datasette):
    project = await project_of(mem, "alpha")
    fields = {"kind": "project", "project": project}
    cross = await mem.client.post("/-/claude-mem/forget/form", data=fields, cookies=cookie(mem),
                                  headers={"Origin": "http://evil.example"})  # fmt: skip
    assert cross.status_code == 403 and cross.json()["ok"] is False
    bare = await mem.client.post("/-/claude-mem/forget/form", data=fields, cookies=cookie(mem))
    assert bare.status_code == 403 and bare.json()["ok"] is False
    assert len(await query_rows(mem, "SELECT * FROM sessions WHERE project = ?", [project])) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fields, status",
    [
        ({"kind": "session"}, 400),
        ({"kind": "session", "id": "no-such"}, 404),
        ({}, 400),
        ({"kind": "before", "before": "2999-01-01", "kinds_shown": "1"}, 400),
    ],
)
async def test_a_bad_form_answers_json_and_changes_nothing(mem: Datasette, fields, status):
    assert_error(await post_form(mem, fields), status)
    assert await query_rows(mem, "SELECT * FROM tombstones") == []


@pytest.mark.asyncio
async def test_the_form_never_sends_anyone_to_another_site(mem: Datasette):
    project = await project_of(mem, "alpha")
    for back in ("https://evil.example/", "//evil.example/-/claude-mem", "/-/claude-mem//x"):
        response = await post_form(
            mem, {"kind": "before", "before": "1990-01-01", "project": project, "next": back}
        )
        assert response.headers["location"] == "/-/claude-mem", back


@pytest.mark.asyncio
async def test_an_unknown_project_is_404_and_the_form_takes_only_post(mem: Datasette):
    response = await mem.client.get("/-/claude-mem/projects/nowhere", cookies=cookie(mem))
    assert response.status_code == 404
    response = await mem.client.get("/-/claude-mem/forget/form", cookies=cookie(mem))
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
