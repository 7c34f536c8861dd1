"""The plugin's side of a running Datasette: one typed state per server, made at startup.

Every write goes through Datasette's single write thread for the memory database and, inside
it, through the store, so HTTP writes, hook events and the worker share one path. Reads go
through the store too, on Datasette's read connections.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from datasette.utils import StartupError

from datasette_claude_mem.api.guard import LOOPBACK_HOSTS
from datasette_claude_mem.names import PLUGIN
from datasette_claude_mem.redaction.redactor import Redactor
from datasette_claude_mem.settings import Config, SettingsError, WorkerSettings
from datasette_claude_mem.storage.batching import WriteQueue
from datasette_claude_mem.storage.queries import QUERIES
from datasette_claude_mem.storage.store import Store, apply_pragmas, fts_query, migrate

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database as DatasetteDatabase

T = TypeVar("T")


@dataclass
class PluginState:
    """What the plugin works out once per server: its settings and what is made from them."""

    config: Config
    redactor: Redactor
    # Host names the server answers to: loopback, plus any the settings add.
    allowed_hosts: tuple[str, ...]
    write_queue: WriteQueue | None = None
    # The OpenAPI document, generated on first request (it takes tens of milliseconds).
    openapi: bytes | None = None
    # Permission answers per (action, actor), with the time each stops being good.
    permissions: dict[tuple[str, bytes], tuple[bool, float]] = field(default_factory=dict)
    # The MCP endpoint's session manager for each event loop that served it (mcp/endpoint.py).
    mcp_managers: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def from_datasette(cls, datasette: Datasette) -> PluginState:
        config = Config.load(datasette.plugin_config(PLUGIN))
        return cls(
            config=config,
            redactor=Redactor(config.redact_patterns),
            allowed_hosts=tuple(h.lower() for h in (*LOOPBACK_HOSTS, *config.allowed_hosts)),
        )


def state(datasette: Datasette) -> PluginState:
    """The server's plugin state, made on first use (hooks may run before startup's)."""
    made = getattr(datasette, "_claude_mem_state", None)
    if made is None:
        try:
            made = PluginState.from_datasette(datasette)
        except SettingsError as error:
            raise StartupError(f"{PLUGIN}: {error}") from error
        datasette._claude_mem_state = made
    return made


def memory_database_name(datasette: Datasette) -> str:
    return state(datasette).config.database


def memory_database(datasette: Datasette) -> DatasetteDatabase | None:
    return datasette.databases.get(memory_database_name(datasette))


def allowed_hosts(datasette: Datasette) -> tuple[str, ...]:
    return state(datasette).allowed_hosts


def prepare_memory_connection(conn: sqlite3.Connection, config: Config) -> None:
    """Datasette's connections to the memory get the store's pragmas and its FTS helper."""
    apply_pragmas(conn, synchronous=config.synchronous, busy_timeout_ms=config.busy_timeout_ms)
    conn.create_function("claude_mem_fts_query", 1, lambda q: fts_query(q or "") or '""')


def open_store(datasette: Datasette, conn: sqlite3.Connection) -> Store:
    """The store on one of Datasette's connections (prepared by prepare_memory_connection)."""
    made = state(datasette).redactor
    return Store(conn, migrate_schema=False, redact_text=made.text, redact_value=made.value)


def spool_path(datasette: Datasette) -> Path | None:
    """The command hook's spool belongs to the memory in the same directory."""
    config = state(datasette).config
    if config.spool is not None:
        return config.spool
    db = memory_database(datasette)
    if db is not None and db.path and Path(db.path).resolve().parent == config.base_dir.resolve():
        return config.spool_path
    return None


async def write(datasette: Datasette, fn: Callable[[Store], T]) -> T:
    """Run fn with a store on the memory's write connection, in the write thread, together
    with any other writes waiting for it (see storage/batching.py)."""
    db = memory_database(datasette)
    if db is None:
        raise StartupError(f"no memory database named {memory_database_name(datasette)!r}")
    kept = state(datasette)
    if kept.write_queue is None or kept.write_queue.db is not db:
        kept.write_queue = WriteQueue(db, lambda conn: open_store(datasette, conn))
    return await kept.write_queue.submit(fn)


async def startup(datasette: Datasette) -> None:
    """Migrate the memory database and publish the stored queries over it."""
    db = memory_database(datasette)
    if db is None:
        return
    name = memory_database_name(datasette)
    if not db.is_mutable:
        raise StartupError(
            f"The memory database {name!r} is opened immutable; it must be writable "
            "so that its schema can be migrated and memory written."
        )

    def run_migrations(conn: sqlite3.Connection) -> list[str]:
        from sqlite_utils import Database

        return migrate(Database(conn, execute_plugins=False))

    try:
        await db.execute_write_fn(run_migrations, transaction=False)
    except sqlite3.DatabaseError as error:
        raise StartupError(
            f"{db.path or name} is not a claude-mem memory database and could not be "
            f"migrated to one: {error}. Point the plugin at another file, or set the "
            f"plugin's 'database' option to the memory database's name."
        ) from error
    for query in QUERIES:
        await datasette.add_query(
            name,
            query.name,
            query.sql,
            title=query.title,
            description=query.description,
            parameters=list(query.parameters),
            is_trusted=True,
            source=PLUGIN,
        )
    spooled = spool_path(datasette)
    if spooled is not None:
        from datasette_claude_mem.claude_code.spool import ingest_spool

        config = state(datasette).config
        await write(
            datasette,
            lambda store: ingest_spool(
                store, spooled, config=config, excluded_projects=config.excluded_projects
            ),
        )
        datasette.add_background_task(
            lambda ds: take_in_spool(ds, spooled), name="claude-mem-spool"
        )
    settings = state(datasette).config.worker
    if settings.enabled:
        datasette.add_background_task(lambda ds: run_worker(ds, settings), name="claude-mem-worker")


async def take_in_spool(datasette: Datasette, path: Path, interval: float = 2.0) -> None:
    """Events spooled while the server runs (a hook that found it starting, or too busy)
    are taken in within seconds, not at the next start."""
    from datasette_claude_mem.claude_code.spool import INGESTING_SUFFIX, ingest_spool

    config = state(datasette).config
    working = path.with_name(path.name + INGESTING_SUFFIX)
    while True:
        await asyncio.sleep(interval)
        if not (path.exists() or working.exists()):
            continue
        try:
            await write(
                datasette,
                lambda store: ingest_spool(
                    store, path, config=config, excluded_projects=config.excluded_projects
                ),
            )
        except Exception as error:  # noqa: BLE001 - try again at the next turn
            print(f"claude-mem spool: {type(error).__name__}: {error}", file=sys.stderr)


async def run_worker(datasette: Datasette, settings: WorkerSettings) -> None:
    """The in-server worker: claim and finish in the write thread; compress and parse source
    files in another thread, so hooks never wait behind them. A failure pauses it, never
    ends it."""
    from datasette_claude_mem.worker.loop import Worker

    worker = Worker(
        worker_id=f"server:{os.getpid()}",
        batch_size=settings.batch_size,
        lease_seconds=settings.lease_seconds,
    )
    interval = settings.interval
    while True:
        try:
            handled = await _work_one_batch(datasette, worker)
        except Exception as error:  # noqa: BLE001 - a transient failure must not end the task
            print(f"claude-mem worker: {type(error).__name__}: {error}", file=sys.stderr)
            await asyncio.sleep(max(interval, 1.0) * 5)
            continue
        if not handled:
            await asyncio.sleep(interval)


async def _work_one_batch(datasette: Datasette, worker: Any) -> int:
    from datasette_claude_mem.worker.loop import BatchReport, project_root, read_sources

    db = memory_database(datasette)
    assert db is not None
    # Looked at through a read connection first: an idle worker polling the write thread
    # would make hook events wait behind empty write transactions.
    if not await db.execute_fn(lambda conn: open_store(datasette, conn).has_claimable_work()):
        return 0
    items = await write(datasette, worker.claim)
    if not items:
        return 0
    started = time.perf_counter()
    report = BatchReport(worker.worker_id)
    for item in items:
        root = await db.execute_fn(
            lambda conn, item=item: project_root(open_store(datasette, conn), item)
        )
        result = await asyncio.to_thread(worker.compress, item)
        sources = await asyncio.to_thread(read_sources, item, root) if worker.index_code else []
        finish = functools.partial(worker.finish, item=item, result=result, sources=sources)
        report.outcomes.append(await write(datasette, finish))
    report.duration_ms = (time.perf_counter() - started) * 1000
    await write(datasette, functools.partial(worker.log, report=report))
    return len(items)
