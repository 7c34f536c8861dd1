"""The plugin's side of a running Datasette: which database is the memory, and how to write it.

Every write goes through Datasette's single write thread for the memory database and, inside
it, through the store, so HTTP writes, hook events and the worker share one path.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from datasette.utils import StartupError

from datasette_claude_mem.api.guard import LOOPBACK_HOSTS
from datasette_claude_mem.names import DATABASE_NAME, PLUGIN
from datasette_claude_mem.redaction.redactor import Redactor
from datasette_claude_mem.settings import ENV_SYNCHRONOUS, Config
from datasette_claude_mem.storage.batching import WriteQueue
from datasette_claude_mem.storage.queries import QUERIES
from datasette_claude_mem.storage.search import fts_query
from datasette_claude_mem.storage.store import Store, apply_pragmas, migrate

if TYPE_CHECKING:
    from datasette.app import Datasette
    from datasette.database import Database as DatasetteDatabase

ENV_ALLOWED_HOSTS = "CLAUDE_MEM_ALLOWED_HOSTS"
ENV_EXCLUDED = "CLAUDE_MEM_EXCLUDE_PROJECTS"
ENV_WORKER = "CLAUDE_MEM_WORKER"
ENV_EMBEDDINGS = "CLAUDE_MEM_EMBEDDINGS"
T = TypeVar("T")


def plugin_config(datasette: Datasette) -> dict[str, Any]:
    return datasette.plugin_config(PLUGIN) or {}


def memory_database_name(datasette: Datasette) -> str:
    kept = state(datasette)
    if "database_name" not in kept:  # plugin_config() walks the whole configuration
        kept["database_name"] = plugin_config(datasette).get("database") or DATABASE_NAME
    return kept["database_name"]


def memory_database(datasette: Datasette) -> DatasetteDatabase | None:
    return datasette.databases.get(memory_database_name(datasette))


def allowed_hosts(datasette: Datasette) -> list[str]:
    """Host names the server answers to: loopback, plus any the configuration adds.
    Worked out once per server: every request is checked against it."""
    kept = state(datasette)
    if "allowed_hosts" not in kept:
        configured = list(plugin_config(datasette).get("allowed_hosts") or [])
        extra = os.environ.get(ENV_ALLOWED_HOSTS, "")
        configured += [h.strip() for h in extra.split(",") if h.strip()]
        kept["allowed_hosts"] = [h.lower() for h in [*LOOPBACK_HOSTS, *configured]]
    return kept["allowed_hosts"]


def synchronous(datasette: Datasette) -> str:
    return str(
        plugin_config(datasette).get("synchronous") or os.environ.get(ENV_SYNCHRONOUS, "NORMAL")
    )


def prepare_memory_connection(conn: sqlite3.Connection, synchronous: str = "NORMAL") -> None:
    """Datasette's connections to the memory get the store's pragmas and its FTS helper."""
    apply_pragmas(conn, synchronous=synchronous)
    conn.create_function("claude_mem_fts_query", 1, lambda q: fts_query(q or "") or '""')


def state(datasette: Datasette) -> dict[str, Any]:
    """What the plugin works out once per server and keeps beside it."""
    return datasette.__dict__.setdefault("_claude_mem_state", {})


def redactor(datasette: Datasette) -> Redactor:
    """The redactor with the configured extra patterns."""
    kept = state(datasette)
    if "redactor" not in kept:
        kept["redactor"] = Redactor(plugin_config(datasette).get("redact_patterns") or ())
    return kept["redactor"]


def hook_options(datasette: Datasette) -> dict[str, Any]:
    """The settings every hook event is handled with; read once, not on every event."""
    kept = state(datasette)
    if "hook_options" not in kept:
        excluded = list(plugin_config(datasette).get("excluded_projects") or [])
        excluded += [p for p in os.environ.get(ENV_EXCLUDED, "").split(",") if p.strip()]
        kept["hook_options"] = {"config": Config(), "excluded_projects": excluded}
    return kept["hook_options"]


def open_store(datasette: Datasette, conn: sqlite3.Connection) -> Store:
    """The store on one of Datasette's connections, made once per connection: making one
    asks SQLite for a setting, and every write and read through the plugin needs one."""
    stores: dict[int, Store] = state(datasette).setdefault("stores", {})
    store = stores.get(id(conn))
    if store is None or store.conn is not conn:
        if len(stores) > 64:  # connections come and go with Datasette's thread pool
            stores.clear()
        made = redactor(datasette)
        store = Store(conn, migrate_schema=False, redact_text=made.text, redact_value=made.value)
        stores[id(conn)] = store
    return store


def semantic_search(datasette: Datasette) -> Any:
    """The semantic side of search when the embeddings extra is installed and not switched
    off (plugin option embeddings: false, or CLAUDE_MEM_EMBEDDINGS=0), else None."""
    kept = state(datasette)
    if "semantic" not in kept:
        from datasette_claude_mem.storage.search import missing_extra

        kept["semantic"] = None
        configured = plugin_config(datasette).get("embeddings", True)
        switched_off = os.environ.get(ENV_EMBEDDINGS, "1").lower() in ("0", "false", "off")
        if configured is not False and not switched_off and missing_extra() is None:
            from datasette_claude_mem.storage.vectors import SemanticSearch

            kept["semantic"] = SemanticSearch()
    return kept["semantic"]


def spool_path(datasette: Datasette) -> Path | None:
    """The command hook's spool belongs to the memory in the same directory."""
    configured = plugin_config(datasette).get("spool")
    if configured:
        return Path(configured)
    db = memory_database(datasette)
    config = Config()
    if db is not None and db.path and Path(db.path).resolve().parent == config.base_dir.resolve():
        return config.spool_path
    return None


async def write(datasette: Datasette, fn: Callable[[Store], T]) -> T:
    """Run fn with a store on the memory's write connection, in the write thread, together
    with any other writes waiting for it (see writes.py)."""
    db = memory_database(datasette)
    if db is None:
        raise StartupError(f"no memory database named {memory_database_name(datasette)!r}")
    queues = state(datasette).setdefault("write_queues", {})
    queue = queues.get(db.name)
    if queue is None or queue.db is not db:
        queue = queues[db.name] = WriteQueue(db, lambda conn: open_store(datasette, conn))
    return await queue.submit(fn)


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
    await _warn_about_schema(db)
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

        options = hook_options(datasette)
        await write(datasette, lambda store: ingest_spool(store, spooled, **options))
    settings = worker_settings(datasette)
    if settings is not None:
        datasette.add_background_task(lambda ds: run_worker(ds, settings), name="claude-mem-worker")


async def _warn_about_schema(db: DatasetteDatabase) -> None:
    """A file whose triggers or defaults were lost still serves, but says so in one line."""
    from datasette_claude_mem.storage.doctor import startup_warning

    warning = await db.execute_fn(lambda conn: startup_warning(conn, db.path))
    if warning:
        print(warning, file=sys.stderr)


def worker_settings(datasette: Datasette) -> dict[str, Any] | None:
    """The in-server worker's settings, or None when it is switched off."""
    configured = plugin_config(datasette).get("worker", True)
    if configured is False or os.environ.get(ENV_WORKER, "1").lower() in ("0", "false", "off"):
        return None
    settings = {"interval": 1.0, "batch_size": 5, "lease_seconds": 300.0}
    if isinstance(configured, dict):
        settings.update(configured)
    return settings


async def run_worker(datasette: Datasette, settings: dict[str, Any]) -> None:
    """The in-server worker: claim and finish in the write thread; compress and parse source
    files in another thread, so hooks never wait behind them. A failure pauses it, never
    ends it."""
    from datasette_claude_mem.worker.loop import Worker

    worker = Worker(
        worker_id=f"server:{os.getpid()}",
        batch_size=int(settings["batch_size"]),
        lease_seconds=float(settings["lease_seconds"]),
    )
    interval = float(settings["interval"])
    while True:
        try:
            handled = await _work_one_batch(datasette, worker)
        except Exception as error:  # noqa: BLE001 - a transient failure must not end the task
            print(f"claude-mem worker: {type(error).__name__}: {error}", file=sys.stderr)
            await asyncio.sleep(max(interval, 1.0) * 5)
            continue
        if not handled:
            handled = await _embed_one_batch(datasette)
        if not handled:
            handled = await _refresh_documents(datasette)
        if not handled:
            await asyncio.sleep(interval)


async def _embed_one_batch(datasette: Datasette) -> int:
    """Vectors for a batch of rows that have none, when the queue is idle: the model runs in
    another thread, the rows are written through the write thread."""
    semantic = semantic_search(datasette)
    if semantic is None:
        return 0
    from datasette_claude_mem.worker.embed import BATCH_SIZE, embed_rows, store_rows, waiting

    db = memory_database(datasette)
    assert db is not None
    embedder = await asyncio.to_thread(lambda: semantic.embedder)
    batch = await db.execute_fn(lambda conn: waiting(conn, embedder, BATCH_SIZE))
    if not batch:
        return 0
    rows = await asyncio.to_thread(embed_rows, embedder, batch)
    return await write(datasette, lambda store: store_rows(store, rows))


async def _refresh_documents(datasette: Datasette) -> int:
    """Index again the documents of projects whose sessions wrote markdown since."""
    from datasette_claude_mem.worker.docs import index_docs, stale_projects

    db = memory_database(datasette)
    assert db is not None
    projects = await db.execute_fn(stale_projects)
    for project in projects:
        await write(datasette, lambda store, p=project: index_docs(store, Path(p), p))
    return len(projects)


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
