"""Stale memories on the pages: the row pages of observations and learnings, and search."""

from __future__ import annotations

from pathlib import Path

import pytest
from claude_code.test_context_staleness import seed
from datasette.app import Datasette

from datasette_claude_mem.storage.store import Store

STALE_BADGE = '<span class="cm-badge cm-badge-deleted">stale</span>'


async def page(ds: Datasette, path: str) -> str:
    cookies = {"ds_actor": ds.client.actor_cookie({"id": "root"})}
    response = await ds.client.get(path, cookies=cookies)
    assert response.status_code == 200, response.text[:2000]
    return response.text


@pytest.mark.asyncio
async def test_row_pages_and_search_mark_what_is_stale(
    make_ds, memory_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    store = Store(memory_path)
    try:
        made = seed(store, root)
    finally:
        store.close()
    ds = await make_ds(memory_path, plugin={"worker": False})
    stale = await page(ds, f"/claude-mem/learnings/{made['learn_apply_discount']}")
    assert STALE_BADGE in stale and "a function it names changed" in stale
    assert "<code>apply_discount</code>" in stale
    current = await page(ds, f"/claude-mem/learnings/{made['learn_line_total']}")
    assert STALE_BADGE not in current
    observed = await page(ds, f"/claude-mem/observations/{made['obs_apply_discount']}")
    assert STALE_BADGE in observed
    current = await page(ds, f"/claude-mem/observations/{made['obs_line_total']}")
    assert STALE_BADGE not in current
    found = await page(ds, "/-/claude-mem/find?q=rounding")
    hits = [hit.split("</li>")[0] for hit in found.split('<li class="cm-hit')[1:]]
    # The two observations and the two learnings: the current ones first.
    assert [STALE_BADGE in hit for hit in hits] == [False, False, True, True]
    assert all("line_total" in hit for hit in hits[:2])
    assert all("apply_discount" in hit for hit in hits[2:])
