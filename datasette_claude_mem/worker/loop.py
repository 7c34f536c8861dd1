"""The queue worker: raw tool outputs in, observations out.

A batch is claimed under a lease, each item is compressed outside any transaction, and each
result is written back in one transaction with the item's completion, so an item becomes one
observation or, after its last failed attempt, a dead letter. Python files the item touched
are re-read from disk to refresh the function map and the call graph.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    ObservationCreate,
    QueueItem,
)
from datasette_claude_mem.storage.store import LeaseLost, NotFound, Store
from datasette_claude_mem.worker.code_index import (
    SourceError,
    extract_calls,
    extract_functions,
    python_module_resolver,
)
from datasette_claude_mem.worker.compress import Compressed, compress

MAX_SOURCE_BYTES = 2 * 1024 * 1024


class Compressor(Protocol):
    name: str

    def __call__(self, item: QueueItem) -> Compressed: ...


class DefaultCompressor:
    """Deterministic and offline: no model, no network."""

    name = "default"

    def __call__(self, item: QueueItem) -> Compressed:
        return compress(
            item.tool_name, item.tool_input or {}, item.raw_output or "", failure=item.failure
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


@dataclass
class BatchReport:
    worker: str
    outcomes: list[Outcome] = field(default_factory=list)
    duration_ms: float = 0.0

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
    """One Python file of the project as it is on disk: its functions and its calls."""

    file_path: str
    functions: list
    calls: list


def read_sources(item: QueueItem, project_dir: str | None) -> list[SourceIndex]:
    """Read and parse the Python files an item touched; no database work, so no lock held."""
    if not project_dir or not item.files_touched:
        return []
    root = Path(project_dir)
    resolver = python_module_resolver(root)
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
        parsed.append(SourceIndex(relative, functions, calls))
    return parsed


def write_sources(store: Store, item: QueueItem, sources: list[SourceIndex]) -> list[str]:
    """Record parsed files in the function map and the call graph; returns the files."""
    for parsed in sources:
        store.upsert_functions(
            FunctionMapUpsert(
                session_id=item.session_id,
                file_path=parsed.file_path,
                functions=[
                    FunctionInput(
                        qualified_name=f.qualified_name,
                        kind=f.kind,
                        signature=f.signature,
                        docstring=f.docstring,
                        body_hash=f.body_hash,
                        decorators=list(f.decorators),
                    )
                    for f in parsed.functions
                ],
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
        return store.dequeue_batch(
            self.batch_size, worker=self.worker_id, lease_seconds=self.lease_seconds
        )

    def compress(self, item: QueueItem) -> Compressed | Exception:
        """Compression runs outside any transaction; a failure is returned, not raised."""
        try:
            return self.compressor(item)
        except Exception as error:  # noqa: BLE001 - any failure is the item's failure
            return error

    def finish(
        self,
        store: Store,
        item: QueueItem,
        result: Compressed | Exception,
        sources: list[SourceIndex] | None = None,
    ) -> Outcome:
        """Write one item's result: its observation and completion, or its failure.

        The code index is read from disk before the write transaction (unless `sources`
        brings it) and written inside it, in a savepoint of its own: a failure there is
        reported but neither undoes the observation nor stops the worker.
        """
        if not isinstance(result, Exception):
            try:
                observation = ObservationCreate(
                    session_id=item.session_id,
                    tool_name=item.tool_name,
                    title=result.title or item.tool_name,
                    summary=result.summary,
                    detail=result.detail,
                    files_touched=result.files_touched or item.files_touched,
                    functions_changed=result.functions_changed,
                    tokens_raw=result.tokens_raw,
                    tokens_compressed=result.tokens_compressed,
                )
            except Exception as error:  # noqa: BLE001 - a malformed result fails its item
                result = error
        if isinstance(result, Exception):
            message = f"{type(result).__name__}: {result}"
            # A lost lease means the item went back to the queue: a later attempt records it.
            with contextlib.suppress(LeaseLost, NotFound):
                store.fail(item.id, self.worker_id, message)
            return Outcome(item.id, False, error=message)
        index_error = None
        if self.index_code and sources is None:
            try:
                sources = read_sources(item, project_root(store, item))
            except Exception as error:  # noqa: BLE001 - the index is a by-product
                index_error = f"{type(error).__name__}: {error}"
        try:
            with store.write():
                _, made = store.complete(item.id, self.worker_id, observation)
                if self.index_code and sources:
                    try:
                        with store.write():
                            write_sources(store, item, sources)
                    except Exception as error:  # noqa: BLE001 - the index is a by-product
                        index_error = f"{type(error).__name__}: {error}"
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
            },
            duration_ms=round(report.duration_ms),
            tokens_in=sum(o.tokens_in for o in report.outcomes),
            tokens_out=sum(o.tokens_out for o in report.outcomes),
        )

    def run_once(self, store: Store) -> BatchReport:
        """Claim, compress and finish one batch on a store this process owns."""
        started = time.perf_counter()
        report = BatchReport(self.worker_id)
        if not store.has_claimable_work():
            return report
        for item in self.claim(store):
            report.outcomes.append(self.finish(store, item, self.compress(item)))
        report.duration_ms = (time.perf_counter() - started) * 1000
        if report.outcomes:
            self.log(store, report)
        return report

    def run(
        self,
        store: Store,
        *,
        interval: float = 1.0,
        should_stop: Callable[[], bool] = lambda: False,
        max_batches: int | None = None,
    ) -> int:
        """Work until told to stop (or the batch limit); returns the items handled."""
        handled = batches = 0
        while not should_stop():
            report = self.run_once(store)
            handled += len(report.outcomes)
            batches += 1
            if max_batches is not None and batches >= max_batches:
                break
            if not report.outcomes:
                time.sleep(interval)
        return handled
