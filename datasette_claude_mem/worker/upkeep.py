"""The worker's upkeep while its queue is idle: retention, free space handed back to the file
system, and the daily backup, each in small steps.

The in-server worker (plugin.idle_work) and `datasette claude-mem worker` call `step` when a
batch found nothing to do; it does one piece of what is due and says how much, so the loop
comes straight back for the next piece, after looking at the queue again, or sleeps when
nothing is due. A retention pass runs at start and then hourly; a vacuum pass follows each
one, then a measure of what holds the file (for the dashboard, which does not read a big
file whole itself); the backup runs once a day, in a thread, on a connection of its own.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from datasette_claude_mem.storage.backup import daily_backup
from datasette_claude_mem.storage.database import MIGRATE_VACUUM_BYTES
from datasette_claude_mem.storage.retention import Policy, Space, purge_step, space, vacuum_step
from datasette_claude_mem.worker.loop import LocalBackend

if TYPE_CHECKING:
    from datasette_claude_mem.settings import Config
    from datasette_claude_mem.storage.store import Store

T = TypeVar("T")
# Seconds between retention passes once one has found nothing more to remove.
PURGE_EVERY = 3600.0


class UpkeepBackend(Protocol):
    """Where upkeep reads, and writes: in a write transaction, or on the write connection
    outside one (incremental_vacuum is a transaction of its own)."""

    async def read(self, fn: Callable[[Store], T]) -> T: ...

    async def write(self, fn: Callable[[Store], T]) -> T: ...

    async def outside(self, fn: Callable[[Store], T]) -> T: ...


class LocalUpkeep(LocalBackend):
    """A store this process owns (the standalone worker): the worker loop's own backend,
    whose writes already run outside any transaction the store has not begun."""

    async def outside(self, fn: Callable[[Store], T]) -> T:
        return await self.write(fn)


class Upkeep:
    """What is due, remembered between calls; one per worker loop."""

    def __init__(
        self,
        config: Config,
        db_path: Path | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.policy = Policy.from_config(config)
        self.pages = config.vacuum_step_pages
        # The VACUUM an older file needs holds the write lock while it copies the file: the
        # worker asks for it only up to this size, and leaves a bigger file to `purge`.
        self.vacuum_up_to: int | None = MIGRATE_VACUUM_BYTES
        self.backup_dir = config.backup_dir
        self.backup_keep = config.backup_keep
        self.busy_timeout_ms = config.busy_timeout_ms
        self.db_path = db_path
        self.clock = clock
        self.today = today
        self.next_purge = 0.0
        self.vacuuming = False
        self.measure_wanted = False
        # What held the file after the last retention pass, for the dashboard.
        self.space: Space | None = None
        self.backed_up_on: date | None = None
        self.next_backup_try = 0.0

    async def step(self, backend: UpkeepBackend) -> int:
        """Do one small piece of the upkeep that is due; 0 when none is."""
        now = self.clock()
        if now >= self.next_purge:
            purged = await backend.write(functools.partial(purge_step, policy=self.policy))
            self.vacuuming = True  # forgetting frees pages too, not only retention
            if purged.total:
                return purged.total
            self.next_purge = now + PURGE_EVERY
            self.measure_wanted = True
        if self.vacuuming:
            freed = await backend.outside(
                functools.partial(vacuum_step, pages=self.pages, vacuum_up_to=self.vacuum_up_to)
            )
            if freed:
                return freed
            self.vacuuming = False
        if self.measure_wanted:
            self.measure_wanted = False
            self.space = await backend.read(
                lambda store: space(store.conn, self.policy, detail=True)
            )
            return 1
        day = self.today()
        due = self.backup_dir is not None and self.db_path is not None
        if due and self.backed_up_on != day and now >= self.next_backup_try:
            try:
                await asyncio.to_thread(
                    daily_backup,
                    self.db_path,
                    self.backup_dir,
                    self.backup_keep,
                    today=day,
                    busy_timeout_ms=self.busy_timeout_ms,
                )
            except Exception:
                self.next_backup_try = now + PURGE_EVERY  # failed: again in an hour
                raise
            self.backed_up_on = day
            return 1
        return 0

    def step_on(self, store: Store) -> int:
        """`step` on a store this process owns; a failure is reported and waits for the next
        turn, as in the server, and never ends the worker."""
        try:
            return asyncio.run(self.step(LocalUpkeep(store)))
        except Exception as error:  # noqa: BLE001 - the queue's work must go on
            print(f"claude-mem upkeep: {type(error).__name__}: {error}", file=sys.stderr)
            return 0
