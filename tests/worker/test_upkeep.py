"""The worker's upkeep: retention in steps, the space handed back, the daily backup kept N
deep; on a store of its own (the standalone worker) and through a server's write path."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import finished_long_ago

from datasette_claude_mem import plugin
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.backup import check, daily_backups
from datasette_claude_mem.storage.models import Session, SessionStart
from datasette_claude_mem.storage.retention import file_size
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import Worker
from datasette_claude_mem.worker.upkeep import PURGE_EVERY, Upkeep


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def payloads(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pending_payloads").fetchone()[0]


def run_until_idle(upkeep: Upkeep, store: Store, most: int = 1000) -> int:
    steps = 0
    while upkeep.step_on(store):
        steps += 1
        assert steps < most, "the upkeep never went idle"
    return steps


async def drain_idle_work(ds: Datasette, most: int = 1000) -> int:
    """The server's idle work, turn after turn, until it says there is none left."""
    turns = 0
    while await plugin.idle_work(ds):
        turns += 1
        assert turns < most
    return turns


def test_upkeep_purges_and_gives_the_space_back_in_steps_then_rests(
    store: Store, session: Session, config: Config
) -> None:
    finished_long_ago(store, session.id, 300, 20_000)
    store.checkpoint()
    before = file_size(config.db_path)
    upkeep = Upkeep(dataclasses.replace(config, vacuum_step_pages=64), config.db_path)

    steps = run_until_idle(upkeep, store)

    assert payloads(store.conn) == 0
    # 300 rows at 50 a step, then about 1,500 free pages at 64 a step.
    assert steps > 10
    assert store.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert file_size(config.db_path) < before / 5
    assert upkeep.step_on(store) == 0


def test_upkeep_looks_again_only_after_an_hour(
    store: Store, session: Session, config: Config
) -> None:
    clock = Clock()
    upkeep = Upkeep(config, config.db_path, clock=clock)
    run_until_idle(upkeep, store)
    finished_long_ago(store, session.id, 3, 1000)

    clock.now += PURGE_EVERY - 1
    assert upkeep.step_on(store) == 0 and payloads(store.conn) == 3
    clock.now += 1
    assert upkeep.step_on(store) == 3 and payloads(store.conn) == 0


def test_the_daily_backup_is_made_once_a_day_and_the_newest_n_kept(
    store: Store, session: Session, config: Config, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "notes.txt").write_text("not a backup")
    day = [date(2026, 3, 1)]
    settings = dataclasses.replace(config, backup_dir=backups, backup_keep=2)
    upkeep = Upkeep(settings, config.db_path, today=lambda: day[0])

    run_until_idle(upkeep, store)
    first = daily_backups(config.db_path, backups)
    assert [p.name for p in first] == ["claude-mem-2026-03-01.db"]
    assert check(first[0])["sessions"] == 1

    store.log_event("Stop", {}, session_id=session.id)
    assert upkeep.step_on(store) == 0  # the same day: no second backup
    for _ in range(3):
        day[0] += timedelta(days=1)
        run_until_idle(upkeep, store)

    kept = [p.name for p in daily_backups(config.db_path, backups)]
    assert kept == ["claude-mem-2026-03-03.db", "claude-mem-2026-03-04.db"]
    assert (backups / "notes.txt").read_text() == "not a backup"
    assert check(backups / kept[-1])["event_log"] == 1


def test_a_restarted_worker_does_not_back_up_twice_in_a_day(
    store: Store, config: Config, tmp_path: Path
) -> None:
    settings = dataclasses.replace(config, backup_dir=tmp_path / "b", backup_keep=3)
    run_until_idle(Upkeep(settings, config.db_path), store)
    made = daily_backups(config.db_path, tmp_path / "b")
    stamp = made[0].stat().st_mtime_ns

    run_until_idle(Upkeep(settings, config.db_path), store)

    assert daily_backups(config.db_path, tmp_path / "b") == made
    assert made[0].stat().st_mtime_ns == stamp


def test_the_standalone_worker_runs_the_upkeep_when_its_queue_is_empty(
    store: Store, session: Session, config: Config
) -> None:
    finished_long_ago(store, session.id, 5, 1000)
    upkeep = Upkeep(config, config.db_path)

    Worker().run(store, interval=0, max_batches=3, idle=lambda: upkeep.step_on(store))

    assert payloads(store.conn) == 0


@pytest.mark.asyncio
async def test_the_servers_idle_work_purges_and_vacuums_through_its_write_thread(
    ds: Datasette, session_id: str, memory_path: Path
) -> None:
    await plugin.write(ds, lambda store: finished_long_ago(store, session_id, 100, 20_000))

    turns = await drain_idle_work(ds)

    conn = sqlite3.connect(memory_path)
    try:
        assert payloads(conn) == 0
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pending_queue").fetchone()[0] == 100
    finally:
        conn.close()
    assert turns > 2


def test_a_failed_backup_is_tried_again_an_hour_later_and_never_stops_the_worker(
    store: Store, config: Config, tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the backups should go")
    clock = Clock()
    settings = dataclasses.replace(config, backup_dir=blocker, backup_keep=2)
    upkeep = Upkeep(settings, config.db_path, clock=clock)

    run_until_idle(upkeep, store)
    assert "claude-mem upkeep:" in capsys.readouterr().err
    assert upkeep.step_on(store) == 0, "not again at once"

    blocker.unlink()
    clock.now += PURGE_EVERY
    run_until_idle(upkeep, store)
    assert len(daily_backups(config.db_path, blocker)) == 1


@pytest.mark.asyncio
async def test_the_server_leaves_the_vacuum_of_a_big_old_file_to_purge(
    make_ds, memory_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file made before m014 and over the bound: the server's idle work removes what
    retention removes but never runs the VACUUM, which would hold every write back while it
    copied the file; `datasette claude-mem purge` does."""
    from sqlite_utils import Database

    from datasette_claude_mem.storage import database
    from datasette_claude_mem.storage.migrations import migrations
    from datasette_claude_mem.worker import upkeep

    db = Database(sqlite3.connect(memory_path, isolation_level=None))
    migrations.apply(db, stop_before="m014_enable_retention")
    db.conn.close()
    monkeypatch.setattr(database, "MIGRATE_VACUUM_BYTES", 0)
    monkeypatch.setattr(upkeep, "MIGRATE_VACUUM_BYTES", 0)
    ds = await make_ds(memory_path)
    started = SessionStart(project_dir="/src/old")
    session = await plugin.write(ds, lambda store: store.create_session(started).row)
    await plugin.write(ds, lambda store: finished_long_ago(store, session.id, 20, 20_000))

    await drain_idle_work(ds)

    conn = sqlite3.connect(memory_path)
    try:
        assert payloads(conn) == 0
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    finally:
        conn.close()
    page = await ds.client.get(
        "/-/claude-mem", cookies={"ds_actor": ds.client.actor_cookie({"id": "root"})}
    )
    assert "datasette claude-mem purge" in page.text


@pytest.mark.asyncio
async def test_the_upkeep_gets_its_turn_while_other_idle_work_never_runs_out_or_fails(
    ds: Datasette, session_id: str, memory_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await plugin.write(ds, lambda store: finished_long_ago(store, session_id, 5, 1000))
    embedded: list[int] = []

    async def always_more(datasette: Datasette) -> int:
        embedded.append(1)
        return 1

    async def always_failing(datasette: Datasette) -> int:
        raise RuntimeError("the documents cannot be read")

    monkeypatch.setattr(plugin, "_embed_one_batch", always_more)
    monkeypatch.setattr(plugin, "_refresh_documents", always_failing)

    for _ in range(6):
        assert await plugin.idle_work(ds)

    conn = sqlite3.connect(memory_path)
    try:
        assert payloads(conn) == 0
    finally:
        conn.close()
    assert len(embedded) >= 3

    # Once nothing does any work and something failed, the worker hears of it (and waits).
    monkeypatch.setattr(plugin, "_embed_one_batch", always_failing)
    with pytest.raises(RuntimeError, match="cannot be read"):
        for _ in range(1000):
            await plugin.idle_work(ds)
