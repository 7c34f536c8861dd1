"""The queue worker: raw tool outputs in, observations out.

A batch is claimed under a lease, each item is compressed outside any transaction, and each
result is written back in one transaction with the item's completion, so an item becomes one
observation or, after its last failed attempt, a dead letter. Python files the item touched
are re-read from disk to refresh the function map and the call graph.

There is one loop, `run_batch`, for every place a worker runs: it is given a `Backend` that
says how to read, how to write and where the heavy work (compression and source parsing)
is done. `Worker.run_once` runs it on a store this process owns, compressing in-process (the
`worker` command); the server runs it with Datasette's write thread and a worker process of
its own (worker/in_server.py), so its threads only claim and finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from datasette_claude_mem.storage.errors import LeaseLost, NotFound
from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    ObservationCreate,
    QueueItem,
    SessionUpdate,
    format_ts,
)
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.code_index import (
    SourceError,
    extract_calls,
    extract_functions,
    python_module_resolver,
)
from datasette_claude_mem.worker.compress import Compressed, compress
from datasette_claude_mem.worker.file_states import Baseline, baseline_for, item_path
from datasette_claude_mem.worker.session_summary import (
    compress_summary,
    is_summary,
    session_facts,
    with_facts,
)

MAX_SOURCE_BYTES = 2 * 1024 * 1024
T = TypeVar("T")


class Compressor(Protocol):
    """Turns one item into a result and returns it; it never writes to the memory.

    What a compression needs written (a budget reservation before it runs, a record of what
    it cost after) it asks the loop for: a compressor with a `reservation(item)` method gets
    the loop's answer (a `Grant`, or None when the budget has no room) as `grant`, and the
    `log` of its result (or of the `Failure` it raises) is written with the item's result.
    """

    name: str

    def __call__(self, item: QueueItem) -> Compressed: ...


@dataclass
class LogRecord:
    """An event a compression asks the loop to log beside the item's result."""

    event_type: str
    data: dict[str, Any]
    duration_ms: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None


@dataclass
class Reservation:
    """Tokens a compression asks for, out of a daily budget, before it runs. Spending is
    counted from `spent_event` rows since UTC midnight, plus reservations not yet settled."""

    event_type: str
    spent_event: str
    estimate: int
    budget: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grant:
    """A reservation the loop wrote: settle it by naming its id in the spent event."""

    reservation_id: str
    estimate: int


def _midnight_utc() -> str:
    now = datetime.now(UTC)
    return format_ts(now.replace(hour=0, minute=0, second=0, microsecond=0))


def budget_spent(store: Store, spent_event: str, reserved_event: str) -> int:
    """Tokens spent since UTC midnight, counting reservations not yet settled in full."""
    return store.tokens_spent(spent_event, reserved_event, _midnight_utc())


def reserve(store: Store, item: QueueItem, ask: Reservation) -> Grant | None:
    """Write the reservation if the budget has room for it, in one write transaction, so
    two workers on one file cannot both take the last of it."""
    with store.write():
        if budget_spent(store, ask.spent_event, ask.event_type) + ask.estimate > ask.budget:
            return None
        entry = store.log_event(
            ask.event_type,
            {**ask.data, "queue_item_id": item.id, "estimate": ask.estimate},
            session_id=item.session_id,
            project=item.project,
        )
    return Grant(entry.id, ask.estimate) if entry is not None else None


def write_log(store: Store, item: QueueItem, records: list[LogRecord]) -> None:
    for record in records:
        store.log_event(
            record.event_type,
            record.data,
            session_id=item.session_id,
            project=item.project,
            duration_ms=record.duration_ms,
            tokens_in=record.tokens_in,
            tokens_out=record.tokens_out,
        )


class DefaultCompressor:
    """Deterministic and offline: no model, no network."""

    name = "default"

    def __call__(self, item: QueueItem) -> Compressed:
        if is_summary(item):
            return compress_summary(item)
        return compress(
            item.tool_name,
            item.tool_input or {},
            item.raw_output or "",
            failure=item.failure,
            prompt=item.prompt,
        )


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Outcome:
    item_id: str
    ok: bool
    observation_id: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    index_error: str | None = None


class Failure(Exception):
    """A compression that failed where it ran, its message already formatted, with what it
    asks the loop to log."""

    def __init__(self, message: str, log: list[LogRecord] | None = None) -> None:
        super().__init__(message)
        self.log = list(log or [])


@dataclass
class BatchReport:
    worker: str
    outcomes: list[Outcome] = field(default_factory=list)
    duration_ms: float = 0.0
    # CPU time the heavy work took, and the process it ran in.
    work_cpu_ms: float = 0.0
    process: int | None = None

    @property
    def done(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.ok)


def _project_file(project_root: Path, path: str) -> tuple[Path, str] | None:
    """The file on disk and its path relative to the project, if it is a Python file in it."""
    if not path.endswith(".py"):
        return None
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = project_root / candidate
    try:
        resolved = candidate.resolve()
        relative = resolved.relative_to(project_root.resolve())
    except (OSError, ValueError):
        return None
    if not resolved.is_file() or resolved.stat().st_size > MAX_SOURCE_BYTES:
        return None
    return resolved, relative.as_posix()


@dataclass
class SourceIndex:
    """One Python file of the project as it is on disk: its functions and its calls, and
    the functions of its state before the session changed it."""

    file_path: str
    functions: list
    calls: list
    baseline: Baseline | None = None


def mapped_sources(store: Store, item: QueueItem, root: str | None) -> frozenset[str]:
    """The item's Python files the function map already holds: read before the heavy work,
    so it asks git for a stand-in first state only where one can matter."""
    if not root or not item.files_touched:
        return frozenset()
    found = (_project_file(Path(root), path) for path in item.files_touched)
    relatives = [f[1] for f in found if f is not None]
    return frozenset(store.mapped_files(item.session_id, relatives))


def read_sources(
    item: QueueItem, project_dir: str | None, mapped: frozenset[str] = frozenset()
) -> list[SourceIndex]:
    """Read and parse the Python files an item touched; no database work, so no lock held.
    ``mapped``: the files the function map already holds (see `mapped_sources`)."""
    if not project_dir or not item.files_touched:
        return []
    root = Path(project_dir)
    resolver = python_module_resolver(root)
    own = item_path(item.tool_input)
    own_file = _project_file(root, own) if own else None
    parsed = []
    for path in item.files_touched:
        found = _project_file(root, path)
        if found is None:
            continue
        on_disk, relative = found
        try:
            source = on_disk.read_text(encoding="utf-8")
            functions = extract_functions(source)
            calls = extract_calls(source, relative, resolver)
        except (OSError, UnicodeDecodeError, SourceError):
            continue
        baseline = baseline_for(
            item.tool_name,
            item.tool_input,
            item.raw_output,
            root=root,
            relative=relative,
            is_item_file=own_file is not None and own_file[0] == on_disk,
            current=functions,
            mapped=relative in mapped,
        )
        parsed.append(SourceIndex(relative, functions, calls, baseline))
    return parsed


def _function_inputs(functions: list) -> list[FunctionInput]:
    return [
        FunctionInput(
            qualified_name=f.qualified_name,
            kind=f.kind,
            signature=f.signature,
            docstring=f.docstring,
            body_hash=f.body_hash,
            decorators=list(f.decorators),
        )
        for f in functions
    ]


def write_sources(store: Store, item: QueueItem, sources: list[SourceIndex]) -> list[str]:
    """Record parsed files in the function map and the call graph; returns the files."""
    for parsed in sources:
        store.upsert_functions(
            FunctionMapUpsert(
                session_id=item.session_id,
                file_path=parsed.file_path,
                functions=_function_inputs(parsed.functions),
                baseline=(_function_inputs(parsed.baseline.functions) if parsed.baseline else None),
                baseline_fallback=parsed.baseline.fallback if parsed.baseline else False,
            )
        )
        store.add_edges(
            EdgesAdd(
                session_id=item.session_id,
                replace_file=parsed.file_path,
                edges=[
                    EdgeInput(
                        caller_file=parsed.file_path,
                        caller_function=c.caller_function,
                        callee_file=c.callee_file,
                        callee_function=c.callee_function,
                        resolution=c.resolution,
                    )
                    for c in parsed.calls
                ],
            )
        )
    return [parsed.file_path for parsed in sources]


def project_root(store: Store, item: QueueItem) -> str | None:
    """The directory an item's relative paths hang from: the repository, else the cwd.

    A project key is a directory only when it is an absolute path to one: a name set by
    CLAUDE_MEM_PROJECT must not be read as a folder under the worker's own cwd.
    """
    if _is_dir(item.project):
        return item.project
    session = store.get_session(item.session_id)
    if session is None:
        return None
    return session.project if _is_dir(session.project) else session.project_dir


def _is_dir(path: str) -> bool:
    candidate = Path(path)
    return candidate.is_absolute() and candidate.is_dir()


class Worker:
    def __init__(
        self,
        compressor: Compressor | None = None,
        *,
        worker_id: str | None = None,
        batch_size: int = 5,
        lease_seconds: float = 300.0,
        index_code: bool = True,
    ) -> None:
        self.compressor = compressor or DefaultCompressor()
        self.worker_id = worker_id or default_worker_id()
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.index_code = index_code

    def claim(self, store: Store) -> list[QueueItem]:
        store.retry_failed()
        return store.claim(self.batch_size, worker=self.worker_id, lease_seconds=self.lease_seconds)

    @property
    def budgeted(self) -> bool:
        return callable(getattr(self.compressor, "reservation", None))

    def compress(self, item: QueueItem, grant: Grant | None = None) -> Compressed | Exception:
        """Compression runs outside any transaction; a failure is returned, not raised."""
        try:
            if self.budgeted:
                return self.compressor(item, grant=grant)  # type: ignore[call-arg]
            return self.compressor(item)
        except Exception as error:  # noqa: BLE001 - any failure is the item's failure
            return error

    def finish(
        self,
        store: Store,
        item: QueueItem,
        result: Compressed | Exception,
        sources: list[SourceIndex] | None = None,
        index_error: str | None = None,
    ) -> Outcome:
        """Write one item's result: its observation and completion, or its failure.

        The code index is read from disk before the write transaction (unless `sources`
        brings it) and written inside it, in a savepoint of its own: a failure there is
        reported but neither undoes the observation nor stops the worker.
        """
        observation: ObservationCreate | None = None
        summary = is_summary(item)
        if not isinstance(result, Exception) and not summary:
            try:
                observation = ObservationCreate(
                    session_id=item.session_id,
                    tool_name=item.tool_name,
                    title=result.title or item.tool_name,
                    summary=result.summary,
                    detail=result.detail,
                    files_touched=result.files_touched or item.files_touched,
                    functions_changed=result.functions_changed,
                    type=result.type,
                    tokens_raw=result.tokens_raw,
                    tokens_compressed=result.tokens_compressed,
                )
            except Exception as error:  # noqa: BLE001 - a malformed result fails its item
                result = error
        if isinstance(result, Exception):
            message = str(result) if isinstance(result, Failure) else None
            message = message or f"{type(result).__name__}: {result}"
            # A lost lease means the item went back to the queue: a later attempt records it.
            with store.write():
                write_log(store, item, getattr(result, "log", []))
                with contextlib.suppress(LeaseLost, NotFound):
                    store.fail(item.id, self.worker_id, message)
            return Outcome(item.id, False, error=message)
        if self.index_code and sources is None and index_error is None:
            try:
                root = project_root(store, item)
                sources = read_sources(item, root, mapped_sources(store, item, root))
            except Exception as error:  # noqa: BLE001 - the index is a by-product
                index_error = f"{type(error).__name__}: {error}"
        try:
            with store.write():
                write_log(store, item, getattr(result, "log", []))
                if summary and not store.newer_item_done(item):
                    # A session's summary, rebuilt: it replaces the one before, unless a
                    # later Stop's summary was written first (this item was retried).
                    store.update_session(item.session_id, SessionUpdate(summary=result.summary))
                # The code first: a change then never postdates the observation that made
                # it, so the observation is not stale by its own change.
                if self.index_code and sources:
                    try:
                        with store.write():
                            write_sources(store, item, sources)
                    except Exception as error:  # noqa: BLE001 - the index is a by-product
                        index_error = f"{type(error).__name__}: {error}"
                _, made = store.complete(item.id, self.worker_id, observation)
        except (LeaseLost, NotFound) as error:
            return Outcome(item.id, False, error=str(error))
        return Outcome(
            item.id,
            True,
            observation_id=made.id if made else None,
            tokens_in=result.tokens_raw,
            tokens_out=result.tokens_compressed,
            index_error=index_error,
        )

    def log(self, store: Store, report: BatchReport) -> None:
        store.log_event(
            "worker_batch",
            {
                "worker": self.worker_id,
                "compressor": self.compressor.name,
                "items": len(report.outcomes),
                "done": report.done,
                "failed": report.failed,
                "errors": [o.error for o in report.outcomes if o.error][:10],
                "index_errors": [o.index_error for o in report.outcomes if o.index_error][:10],
                "process": report.process,
                "work_cpu_ms": round(report.work_cpu_ms, 1),
            },
            duration_ms=round(report.duration_ms),
            tokens_in=sum(o.tokens_in for o in report.outcomes),
            tokens_out=sum(o.tokens_out for o in report.outcomes),
        )

    def run_once(self, store: Store) -> BatchReport:
        """Claim, compress and finish one batch on a store this process owns."""
        return asyncio.run(run_batch(self, LocalBackend(store)))

    def run(
        self,
        store: Store,
        *,
        interval: float = 1.0,
        should_stop: Callable[[], bool] = lambda: False,
        max_batches: int | None = None,
        idle: Callable[[], int] | None = None,
    ) -> int:
        """Work until told to stop (or the batch limit); returns the items handled. `idle`
        is what an empty batch leads to (the upkeep); it sleeps when that did nothing."""
        handled = batches = 0
        while not should_stop():
            report = self.run_once(store)
            handled += len(report.outcomes)
            batches += 1
            if max_batches is not None and batches >= max_batches:
                break
            if not report.outcomes and not (idle is not None and idle()):
                time.sleep(interval)
        return handled


@dataclass
class Work:
    """What the heavy part of one item gave: its compression (or failure), the parsed
    sources, and the CPU time it took in the process that did it."""

    result: Compressed | Exception
    sources: list[SourceIndex] = field(default_factory=list)
    index_error: str | None = None
    cpu_ms: float = 0.0
    pid: int | None = field(default_factory=os.getpid)  # None: it never ran


def do_work(
    worker: Worker,
    item: QueueItem,
    root: str | None,
    grant: Grant | None = None,
    mapped: frozenset[str] = frozenset(),
) -> Work:
    """Compress one item and read the sources it touched, wherever this is called."""
    started = time.process_time()
    result = worker.compress(item, grant)
    sources: list[SourceIndex] = []
    index_error = None
    if worker.index_code and not isinstance(result, Exception):
        try:
            sources = read_sources(item, root, mapped)
        except Exception as error:  # noqa: BLE001 - the index is a by-product
            index_error = f"{type(error).__name__}: {error}"
    return Work(result, sources, index_error, (time.process_time() - started) * 1000)


class Backend(Protocol):
    """Where one worker loop reads, writes, and does the heavy work of an item."""

    async def read(self, fn: Callable[[Store], T]) -> T: ...

    async def write(self, fn: Callable[[Store], T]) -> T: ...

    async def work(
        self,
        worker: Worker,
        item: QueueItem,
        root: str | None,
        grant: Grant | None,
        mapped: frozenset[str] = frozenset(),
    ) -> Work: ...


class LocalBackend:
    """A store this process owns, and the heavy work done right here."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, fn: Callable[[Store], T]) -> T:
        return fn(self.store)

    async def write(self, fn: Callable[[Store], T]) -> T:
        return fn(self.store)

    async def work(
        self,
        worker: Worker,
        item: QueueItem,
        root: str | None,
        grant: Grant | None,
        mapped: frozenset[str] = frozenset(),
    ) -> Work:
        return do_work(worker, item, root, grant, mapped)


async def run_batch(worker: Worker, backend: Backend) -> BatchReport:
    """The worker loop's one step: claim a batch, do each item's heavy work through the
    backend, finish each item in a transaction of its own, log the batch."""
    started = time.perf_counter()
    report = BatchReport(worker.worker_id)
    if not await backend.read(lambda store: store.has_claimable_work()):
        return report
    for item in await backend.write(worker.claim):
        if is_summary(item):
            # Read now, after the items queued before it were finished.
            facts = await backend.read(functools.partial(session_facts, item=item))
            item = with_facts(item, facts)
        root, mapped = None, frozenset[str]()
        if worker.index_code:
            root = await backend.read(functools.partial(project_root, item=item))
            mapped = await backend.read(functools.partial(mapped_sources, item=item, root=root))
        grant = None
        if worker.budgeted:
            ask = worker.compressor.reservation(item)  # type: ignore[attr-defined]
            grant = await backend.write(functools.partial(reserve, item=item, ask=ask))
        work = await backend.work(worker, item, root, grant, mapped=mapped)
        finish = functools.partial(
            worker.finish,
            item=item,
            result=work.result,
            sources=work.sources if worker.index_code else None,
            index_error=work.index_error,
        )
        report.outcomes.append(await backend.write(finish))
        report.work_cpu_ms += work.cpu_ms
        report.process = work.pid or report.process
    report.duration_ms = (time.perf_counter() - started) * 1000
    if report.outcomes:
        await backend.write(functools.partial(worker.log, report=report))
    return report
