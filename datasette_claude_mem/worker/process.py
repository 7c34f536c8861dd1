"""The worker process: compression and source parsing, away from the server's process.

A compressor holds the GIL for as long as it runs; in a thread of the server it made every
hook wait behind it. The server therefore starts one child process (`python -m
datasette_claude_mem.worker.process`), sends it one item at a time over its stdin and
reads the result from its stdout, as length-prefixed pickles: the child is our own code,
started by us, so nothing untrusted is unpickled. The child opens no database: the server
claims and finishes items itself, in short transactions.

`WorkerProcess` supervises the child: it is started with the server's worker, stopped with
it, and started again (after a pause that grows with each death) when it dies. The child
leaves when its stdin closes, so it never outlives a server killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from datasette_claude_mem.storage.models import QueueItem
from datasette_claude_mem.worker.loop import Failure, Work, Worker, do_work

FRAME = struct.Struct(">Q")
MODULE = "datasette_claude_mem.worker.process"
STOP_SECONDS = 3.0  # within the 5 s Datasette gives its tasks at shutdown
MAX_BACKOFF_SECONDS = 30.0


class WorkerProcessDied(RuntimeError):
    """The worker process ended while it held an item, or could not be reached."""


@dataclass
class Job:
    item: QueueItem
    root: str | None
    index_code: bool
    mapped: frozenset[str] = frozenset()


# The child


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def handle(job: Job, worker: Worker) -> Work:
    """One job in the child: a failure is sent back as a message, never as an exception
    object, which might not survive pickling."""
    worker.index_code = job.index_code
    work = do_work(worker, job.item, job.root, mapped=job.mapped)
    if isinstance(work.result, Exception) and not isinstance(work.result, Failure):
        work.result = Failure(f"{type(work.result).__name__}: {work.result}")
    return work


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer jobs until the server closes our stdin."""
    worker = Worker()
    while (frame := _read_frame(requests)) is not None:
        reply = pickle.dumps(handle(pickle.loads(frame), worker), pickle.HIGHEST_PROTOCOL)
        replies.write(FRAME.pack(len(reply)) + reply)
        replies.flush()


def main() -> None:
    # Ctrl-C reaches the whole process group: the server stops its child in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # stdout is the channel to the server: anything else printed goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)


# The server's side


class WorkerProcess:
    """One supervised child process that does the heavy work of items, one at a time."""

    def __init__(self, on_start: Callable[[asyncio.subprocess.Process], None] | None = None):
        self.on_start = on_start
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at: float | None = None
        self.starts = 0
        self.deaths = 0
        self.last_exit: int | None = None
        self.items = 0
        self.busy_since: float | None = None
        self.stopping = False
        self._lock = asyncio.Lock()
        self._restart: asyncio.Task | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def status(self) -> dict[str, Any]:
        """What the dashboard shows of the process."""
        return {
            "state": "stopped" if self.stopping else ("running" if self.alive else "starting"),
            "pid": self.proc.pid if self.alive and self.proc else None,
            "started_at": self.started_at,
            "restarts": max(self.starts - 1, 0),
            "deaths": self.deaths,
            "last_exit": self.last_exit,
            "items": self.items,
            "busy_for": time.time() - self.busy_since if self.busy_since else None,
        }

    async def start(self) -> None:
        async with self._lock:
            await self._spawn()

    async def _spawn(self) -> None:
        if self.alive or self.stopping:
            return
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.starts += 1
        self.started_at = time.time()
        if self.on_start is not None:
            self.on_start(self.proc)

    async def watch(self, proc: asyncio.subprocess.Process) -> None:
        """Wait for the child to end; an end nobody asked for starts another and is raised,
        so the server's task list shows which process died and how."""
        code = await proc.wait()
        if self.stopping or proc is not self.proc:
            return
        self.deaths += 1
        self.last_exit = code
        pause = min(2.0 ** (self.deaths - 1) * 0.5, MAX_BACKOFF_SECONDS)
        self._restart = asyncio.get_running_loop().create_task(self._start_after(pause))
        raise WorkerProcessDied(f"worker process {proc.pid} exited with {code}; starting another")

    async def _start_after(self, pause: float) -> None:
        await asyncio.sleep(pause)
        async with self._lock:
            await self._spawn()

    async def run(self, job: Job) -> Work:
        """Send one job and wait for its result. A child found dead is replaced and the job
        sent once more (it may have died idle); dying again on it is raised."""
        data = pickle.dumps(job, pickle.HIGHEST_PROTOCOL)
        async with self._lock:
            for attempt in (1, 2):
                await self._spawn()
                proc = self.proc
                if proc is None or proc.stdin is None or proc.stdout is None or not self.alive:
                    raise WorkerProcessDied("the worker process is not running")
                self.busy_since = time.time()
                try:
                    proc.stdin.write(FRAME.pack(len(data)) + data)
                    await proc.stdin.drain()
                    (size,) = FRAME.unpack(await proc.stdout.readexactly(FRAME.size))
                    reply = await proc.stdout.readexactly(size)
                except (BrokenPipeError, ConnectionResetError, asyncio.IncompleteReadError):
                    await proc.wait()
                    if attempt == 2:
                        raise WorkerProcessDied(
                            f"the worker process {proc.pid} died (exit {proc.returncode}) "
                            f"while it held this item"
                        ) from None
                    continue
                finally:
                    self.busy_since = None
                self.items += 1
                return pickle.loads(reply)
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        """Close the child's stdin and wait for it to leave; kill it if it will not."""
        self.stopping = True
        if self._restart is not None:
            self._restart.cancel()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()


if __name__ == "__main__":
    main()
