"""Writes that arrive together go to Datasette's write thread together.

Each hand-off to the write thread costs about as much as the write itself (queueing, waking
the thread, tracing, waking the event loop again), and each transaction ends in a commit.
So writes that arrive while the thread is busy wait here, and the next hand-off takes all of
them at once: one hand-off and one transaction for the batch, each write in its own
savepoint, so that one failing write is rolled back alone and reported to its own caller.
A write that arrives when nothing is in flight goes straight to the write thread.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.store import Store

if TYPE_CHECKING:
    from datasette.database import Database as DatasetteDatabase

# A batch's transaction holds the write lock: this many writes at most, so that a queue
# that built up under load cannot keep other writers out for long.
MAX_BATCH = 64

Write = Callable[[Store], Any]
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception it raised)


def run_batch(store: Store, writes: list[Write]) -> list[Outcome]:
    """Run writes in one transaction, each in a savepoint; never raises for one write."""
    if len(writes) == 1:
        try:
            return [(True, writes[0](store))]
        except Exception as error:  # noqa: BLE001 - delivered to the write's own caller
            return [(False, error)]
    outcomes: list[Outcome] = []
    try:
        with store.write():
            for write in writes:
                try:
                    with store.write():
                        outcomes.append((True, write(store)))
                except Exception as error:  # noqa: BLE001 - delivered to its own caller
                    outcomes.append((False, error))
    except Exception as error:  # noqa: BLE001 - the commit failed: nothing was written
        return [(False, error)] * len(writes)
    store.run_deferred_checkpoint()
    return outcomes


class WriteQueue:
    """The writes waiting for one database's write thread, and the task that hands them over."""

    def __init__(self, db: DatasetteDatabase, open_store: Callable[[sqlite3.Connection], Store]):
        self.db = db
        self.open_store = open_store
        self._waiting: list[tuple[Write, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self._direct = False  # a lone write is in the write thread, outside any batch

    async def submit(self, write: Write) -> Any:
        """Run write(store) in the write thread; its result, or the exception it raised."""
        if self._task is None and not self._direct:
            # Nothing in flight: hand this write over at once, with no task in between.
            self._direct = True
            try:
                [(ok, value)] = await self.db.execute_write_fn(
                    functools.partial(self._run, writes=[write]), transaction=False
                )
            finally:
                # Also when this caller was cancelled: the writes that queued up meanwhile
                # must still be handed over.
                self._direct = False
                if self._waiting and self._task is None:
                    self._task = asyncio.ensure_future(self._drain())
            if ok:
                return value
            raise value
        # A write or a batch is in flight: wait for the next batch, which the drain task or
        # the lone write's caller starts when it is done.
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((write, future))
        return await future

    def _run(self, conn: sqlite3.Connection, writes: list[Write]) -> list[Outcome]:
        return run_batch(self.open_store(conn), writes)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                writes = [write for write, _ in batch]
                try:
                    outcomes = await self.db.execute_write_fn(
                        functools.partial(self._run, writes=writes), transaction=False
                    )
                except Exception as error:  # noqa: BLE001 - e.g. the database was closed
                    outcomes = [(False, error)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller went away; the write stands
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._task = None
