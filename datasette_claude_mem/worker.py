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

from .code_index import SourceError, extract_calls, extract_functions, python_module_resolver
from .compress import Compressed, compress
from .models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    ObservationCreate,
    QueueItem,
)
from .store import LeaseLost, Store

MAX_SOURCE_BYTES = 2 * 1024 * 1024


class Compressor(Protocol):
    name: str

    def __call__(self, item: QueueItem) -> Compressed: ...


class DefaultCompressor:
    """Deterministic and offline: no model, no network."""

    name = "default"

    def __call__(self, item: QueueItem) -> Compressed:
        return compress(item.tool_name, item.tool_input or {}, item.raw_output or "")


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


def refresh_code_index(store: Store, item: QueueItem, project_dir: str) -> list[str]:
    """Re-read the Python files an item touched; returns the files indexed."""
    root = Path(project_dir)
    resolver = python_module_resolver(root)
    indexed = []
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
        store.upsert_functions(
            FunctionMapUpsert(
                session_id=item.session_id,
                file_path=relative,
                functions=[
                    FunctionInput(
                        qualified_name=f.qualified_name,
                        kind=f.kind,
                        signature=f.signature,
                        docstring=f.docstring,
                        body_hash=f.body_hash,
                        decorators=list(f.decorators),
                    )
                    for f in functions
                ],
            )
        )
        store.add_edges(
            EdgesAdd(
                session_id=item.session_id,
                replace_file=relative,
                edges=[
                    EdgeInput(
                        caller_file=relative,
                        caller_function=c.caller_function,
                        callee_file=c.callee_file,
                        callee_function=c.callee_function,
                        resolution=c.resolution,
                    )
                    for c in calls
                ],
            )
        )
        indexed.append(relative)
    return indexed


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

    def finish(self, store: Store, item: QueueItem, result: Compressed | Exception) -> Outcome:
        """Write one item's result: its observation and completion, or its failure."""
        if isinstance(result, Exception):
            message = f"{type(result).__name__}: {result}"
            # A lost lease means the item went back to the queue: a later attempt records it.
            with contextlib.suppress(LeaseLost):
                store.fail(item.id, self.worker_id, message)
            return Outcome(item.id, False, error=message)
        try:
            with store.write():
                _, observation = store.complete(
                    item.id,
                    self.worker_id,
                    ObservationCreate(
                        session_id=item.session_id,
                        tool_name=item.tool_name,
                        title=result.title or item.tool_name,
                        summary=result.summary,
                        detail=result.detail,
                        files_touched=result.files_touched or item.files_touched,
                        functions_changed=result.functions_changed,
                        tokens_raw=result.tokens_raw,
                        tokens_compressed=result.tokens_compressed,
                    ),
                )
                if self.index_code:
                    session = store.get_session(item.session_id)
                    if session is not None:
                        root = session.project
                        if not Path(root).is_dir():
                            root = session.project_dir
                        refresh_code_index(store, item, root)
        except LeaseLost as error:
            return Outcome(item.id, False, error=str(error))
        return Outcome(
            item.id,
            True,
            observation_id=observation.id if observation else None,
            tokens_in=result.tokens_raw,
            tokens_out=result.tokens_compressed,
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
            },
            duration_ms=round(report.duration_ms),
            tokens_in=sum(o.tokens_in for o in report.outcomes),
            tokens_out=sum(o.tokens_out for o in report.outcomes),
        )

    def run_once(self, store: Store) -> BatchReport:
        """Claim, compress and finish one batch on a store this process owns."""
        started = time.perf_counter()
        report = BatchReport(self.worker_id)
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
