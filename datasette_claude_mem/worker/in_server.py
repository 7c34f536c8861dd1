"""The worker inside a running Datasette: the one worker loop, with the heavy work sent to a
worker process.

`start` is the plugin's one call at startup. The loop (worker/loop.py `run_batch`) runs as
a Datasette background task: it looks for work through a read connection, claims and
finishes items through the plugin's write path (short transactions in Datasette's write
thread), and hands compression and source parsing to a supervised `WorkerProcess`, so no
hook ever waits behind them. Both tasks show at /-/tasks; `status` feeds the dashboard.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from datasette_claude_mem.settings import WorkerSettings
from datasette_claude_mem.storage.models import QueueItem
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import Failure, Grant, Work, Worker, run_batch
from datasette_claude_mem.worker.process import Job, WorkerProcess, WorkerProcessDied

if TYPE_CHECKING:
    from datasette.app import Datasette

TASK_NAME = "claude-mem-worker"
PROCESS_TASK_NAME = "claude-mem-worker-process"
T = TypeVar("T")
Run = Callable[[Callable[[Store], T]], Awaitable[T]]

_KEPT = "_claude_mem_worker"  # the running InServerWorker, kept on its Datasette


class InServerWorker:
    """The worker loop's backend in the server, and the loop itself."""

    def __init__(
        self,
        datasette: Datasette,
        settings: WorkerSettings,
        read: Run,
        write: Run,
        idle: Callable[[], Awaitable[int]] | None = None,
    ):
        self.datasette = datasette
        self.idle = idle
        self.interval = float(settings.interval)
        self.reader = read
        self.writer = write
        self.worker = Worker(
            worker_id=f"server:{os.getpid()}",
            batch_size=int(settings.batch_size),
            lease_seconds=float(settings.lease_seconds),
        )
        self.process = WorkerProcess(on_start=self._watch)
        self.task: Any = None  # Datasette's handle of the background task running `run`

    def _watch(self, proc: asyncio.subprocess.Process) -> None:
        self.datasette.add_background_task(
            lambda ds: self.process.watch(proc), name=PROCESS_TASK_NAME
        )

    async def read(self, fn: Callable[[Store], T]) -> T:
        return await self.reader(fn)

    async def write(self, fn: Callable[[Store], T]) -> T:
        return await self.writer(fn)

    async def work(
        self,
        worker: Worker,
        item: QueueItem,
        root: str | None,
        grant: Grant | None = None,
        mapped: frozenset[str] = frozenset(),
    ) -> Work:
        """The heavy part in the worker process (its default compressor asks no budget)."""
        try:
            return await self.process.run(Job(item, root, worker.index_code, mapped))
        except WorkerProcessDied as error:
            # The item fails this attempt; an item that kills the process every time
            # ends as a dead letter instead of killing it forever.
            return Work(Failure(str(error)), pid=None)

    async def run(self, datasette: Datasette) -> None:
        """Work until cancelled; a failure pauses the loop, never ends it."""
        try:
            await self.process.start()
            while True:
                try:
                    report = await run_batch(self.worker, self)
                except Exception as error:  # noqa: BLE001 - a transient failure must not end it
                    print(f"claude-mem worker: {type(error).__name__}: {error}", file=sys.stderr)
                    await asyncio.sleep(max(self.interval, 1.0) * 5)
                    continue
                if not report.outcomes and not await self._idle():
                    await asyncio.sleep(self.interval)
        finally:
            await self.process.stop()

    async def _idle(self) -> int:
        """The work the plugin gives an idle loop (embeddings, documents, upkeep); never
        fatal, and a failure waits longer before the next turn."""
        if self.idle is None:
            return 0
        try:
            return await self.idle()
        except Exception as error:  # noqa: BLE001 - the queue's work must go on
            print(f"claude-mem worker (idle): {type(error).__name__}: {error}", file=sys.stderr)
            await asyncio.sleep(max(self.interval, 1.0) * 5)
            return 0


def start(
    datasette: Datasette,
    settings: WorkerSettings,
    *,
    read: Run,
    write: Run,
    idle: Callable[[], Awaitable[int]] | None = None,
) -> None:
    """Start the in-server worker as a background task, unless it is switched off; `idle`
    is what it does when the queue is empty."""
    if not settings.enabled:
        return
    running = InServerWorker(datasette, settings, read, write, idle)
    datasette.__dict__[_KEPT] = running
    running.task = datasette.add_background_task(running.run, name=TASK_NAME)


async def stop(datasette: Datasette, grace: float = 10.0) -> str | None:
    """Stop the in-server worker (its loop, then its process); the id its leases are held
    under, for the caller to give them back, or None when no worker ran here."""
    running = datasette.__dict__.get(_KEPT)
    if running is None or running.task is None:
        return None
    running.task.cancel()
    task = running.task.task
    if task is not None and not task.done():
        await asyncio.wait([task], timeout=grace)
    return running.worker.worker_id


def status(datasette: Datasette) -> dict[str, Any] | None:
    """The worker process's state for the dashboard, or None when no worker runs here."""
    running = datasette.__dict__.get(_KEPT)
    return running.process.status() if running is not None else None
