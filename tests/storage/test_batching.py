"""Writes that reach the server together share one hand-off and one transaction (writes.py):
each must still land, fail or be rolled back on its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import api_call, query_rows

from datasette_claude_mem import plugin as server
from datasette_claude_mem.storage.batching import MAX_BATCH, run_batch
from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import ObservationCreate, SessionStart
from datasette_claude_mem.storage.store import Store


def note(session_id: str, i: int) -> ObservationCreate:
    return ObservationCreate(session_id=session_id, tool_name="Edit", title=f"t{i}", summary="s")


@pytest.mark.asyncio
async def test_concurrent_requests_all_land_each_with_its_own_answer(
    ds: Datasette, token: str, session_id: str
) -> None:
    bodies = [
        {"session_id": session_id, "tool_name": "Edit", "title": f"edit {i}", "summary": "s"}
        for i in range(MAX_BATCH + 20)
    ]
    responses = await asyncio.gather(
        *(api_call(ds, "POST", "/observations", b, token=token) for b in bodies)
    )
    assert [r.status_code for r in responses] == [201] * len(bodies)
    assert [r.json()["row"]["title"] for r in responses] == [b["title"] for b in bodies]
    rows = await query_rows(ds, "SELECT title FROM observations ORDER BY title")
    assert sorted(r["title"] for r in rows) == sorted(b["title"] for b in bodies)


@pytest.mark.asyncio
async def test_a_failing_write_is_rolled_back_alone_and_told_to_its_caller(
    ds: Datasette, token: str, session_id: str
) -> None:
    def half_then_fail(store: Store) -> None:
        store.create_observation(note(session_id, 999))
        raise NotFound("nothing here")

    results = await asyncio.gather(
        server.write(ds, lambda s: s.create_observation(note(session_id, 1)).row.title),
        server.write(ds, half_then_fail),
        server.write(ds, lambda s: s.create_observation(note(session_id, 2)).row.title),
        return_exceptions=True,
    )
    assert results[0] == "t1" and results[2] == "t2"
    assert isinstance(results[1], NotFound)
    titles = {r["title"] for r in await query_rows(ds, "SELECT title FROM observations")}
    assert titles == {"t1", "t2"}


@pytest.mark.asyncio
async def test_a_caller_that_goes_away_does_not_undo_its_write_or_others(
    ds: Datasette, session_id: str
) -> None:
    first = asyncio.ensure_future(
        server.write(ds, lambda s: s.create_observation(note(session_id, 1)))
    )
    second = asyncio.ensure_future(
        server.write(ds, lambda s: s.create_observation(note(session_id, 2)))
    )
    await asyncio.sleep(0)
    first.cancel()
    # Bounded: a cancelled lone write that forgot to hand over the queue would hang here.
    assert (await asyncio.wait_for(second, 10)).row.title == "t2"
    for _ in range(100):
        if len(await query_rows(ds, "SELECT id FROM observations")) == 2:
            break
        await asyncio.sleep(0.01)
    titles = {r["title"] for r in await query_rows(ds, "SELECT title FROM observations")}
    assert titles == {"t1", "t2"}


def test_a_batch_runs_the_checkpoint_a_write_asked_for_once_it_has_committed(
    store: Store, tmp_path: Path
) -> None:
    session = store.create_session(SessionStart(project_dir=str(tmp_path))).row
    wal = Path(str(store.db.conn.execute("PRAGMA database_list").fetchone()[2]) + "-wal")

    def close(s: Store) -> str:
        return s.close_session(session.id).status

    outcomes = run_batch(store, [lambda s: s.create_observation(note(session.id, 1)), close])
    assert [ok for ok, _ in outcomes] == [True, True]
    assert outcomes[1][1] == "closed"
    assert not store.conn.in_transaction
    assert wal.stat().st_size == 0  # the close's checkpoint ran once the batch committed
    assert store.get_session(session.id).status == "closed"
