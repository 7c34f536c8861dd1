"""The plugin's side of a running Datasette: one typed state per server, made at startup.

Every write goes through Datasette's single write thread for the memory database and, inside
it, through the store, so HTTP writes, hook events and the worker share one path. Reads go
through the store too, on Datasette's read connections.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from datasette.utils import StartupError

from datasette_claude_mem.api.guard import LOOPBACK_HOSTS
from datasette_claude_mem.names import PLUGIN
from datasette_claude_mem.redaction.redactor import Redactor
from datasette_claude_mem.settings import Config, SettingsError
from datasette_claude_mem.storage.batching import WriteQueue
from datasette_claude_mem.storage.database import apply_pragmas, migrate, unwritable
from datasette_claude_mem.storage.errors import DiskError, ReadOnly, write_fault
from datasette_claude_mem.storage.queries import QUERIES
from datasette_claude_mem.storage.search import fts_query
from datasette_claude_mem.storage.store import Store

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
    # Sign-in links already used (api/login.py), with the time each would have expired.
    used_sign_in_links: dict[str, int] = field(default_factory=dict)
    # Semantic search (storage/vectors.py), when the embeddings extra is installed.
    semantic: Any = None
    semantic_checked: bool = False
    # The in-server worker's upkeep (worker/upkeep.py): retention, vacuum, daily backup.
    upkeep: Any = None
    # Why the memory file cannot be written, when startup found it so; writes answer 503.
    read_only: str | None = None
    # Which of plugin.IDLE_JOBS the in-server worker's next idle turn starts with.
    idle_turn: int = 0

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
    kept = state(datasette)
    made = kept.redactor
    store = Store(conn, migrate_schema=False, redact_text=made.text, redact_value=made.value)
    store.write_timeout = kept.config.write_timeout_seconds
    return store


def semantic_search(datasette: Datasette) -> Any:
    """The semantic side of search when the embeddings extra is installed and not switched
    off (CLAUDE_MEM_EMBEDDINGS=0), else None."""
    kept = state(datasette)
    if not kept.semantic_checked:
        from datasette_claude_mem.storage.search import missing_extra

        kept.semantic_checked = True
        if kept.config.embeddings and missing_extra() is None:
            from datasette_claude_mem.storage.vectors import SemanticSearch

            kept.semantic = SemanticSearch()
    return kept.semantic


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
    queue = kept.write_queue
    return await _guarded_write(datasette, db, lambda: queue.submit(fn))


async def _guarded_write(
    datasette: Datasette, db: DatasetteDatabase, run: Callable[[], Awaitable[T]]
) -> T:
    """Every write to the memory: refused at once when the file was found read-only, and
    the disk's faults (read-only, full, I/O error, the lock held past the deadline) said
    as such, naming the file; everything else goes on as it was raised."""
    read_only = state(datasette).read_only
    if read_only:
        raise ReadOnly(db.path, cause=read_only)
    try:
        return await run()
    except Exception as error:
        fault = write_fault(error, db.path)
        if fault is None or fault is error:
            raise
        raise fault from error


async def read(datasette: Datasette, fn: Callable[[Store], T]) -> T:
    """Run fn with a store on one of the memory's read connections."""
    db = memory_database(datasette)
    if db is None:
        raise StartupError(f"no memory database named {memory_database_name(datasette)!r}")
    return await db.execute_fn(lambda conn: fn(open_store(datasette, conn)))


async def startup(datasette: Datasette) -> None:
    """Migrate the memory database and publish the stored queries over it."""
    db = memory_database(datasette)
    if db is None:
        return
    name = memory_database_name(datasette)
    kept = state(datasette)
    if kept.read_only:
        await _serve_read_only(datasette, db, kept.read_only)
        return
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
    await _publish_queries(datasette, name)
    # The command hook's spool (when it is this memory's) and the server's own (hook events
    # kept while another program held the write lock): what a crash left is taken in now,
    # what comes later within seconds.
    from datasette_claude_mem.claude_code.hook_spool import server_spool_path
    from datasette_claude_mem.claude_code.spool import ingest_spool

    config = state(datasette).config
    spools = [p for p in (spool_path(datasette), db.path and server_spool_path(db.path)) if p]
    for spooled in spools:
        await write(datasette, lambda store, p=spooled: ingest_spool(store, p, config=config))
        datasette.add_background_task(
            lambda ds, p=spooled: take_in_spool(ds, p), name=f"claude-mem-spool {spooled.name}"
        )
    from datasette_claude_mem.worker import in_server

    in_server.start(
        datasette,
        state(datasette).config.worker,
        read=functools.partial(read, datasette),
        write=functools.partial(write, datasette),
        idle=functools.partial(idle_work, datasette),
    )


async def shutdown(datasette: Datasette) -> None:
    """Datasette's clean stop (SIGTERM, Ctrl-C): the worker stops and gives its leases back,
    so its items wait again at once rather than until the lease runs out, and the WAL is
    folded into the file (TRUNCATE). Datasette then closes its connections; `serve` closes
    the memory last (storage/database.close_cleanly), which removes the -wal and -shm."""
    db = memory_database(datasette)
    if db is None or state(datasette).read_only:
        return
    from datasette_claude_mem.worker import in_server

    worker_id = await in_server.stop(datasette)
    try:
        if worker_id is not None:
            await write(datasette, lambda store: store.release_leases(worker_id))
        await write(datasette, lambda store: store.checkpoint(wait_ms=2000))
    except Exception as error:  # noqa: BLE001 - a stop must go on; a crash recovers as well
        print(f"{PLUGIN}: at shutdown: {type(error).__name__}: {error}", file=sys.stderr)


def find_read_only(datasette: Datasette) -> None:
    """Before Datasette's first connection: a memory file that cannot be written is opened
    immutable, since a WAL file whose journal cannot be made is otherwise not even read."""
    db = memory_database(datasette)
    if db is None or not db.path:
        return
    reason = unwritable(db.path)
    if reason:
        state(datasette).read_only = reason
        db.is_mutable = False


async def keep_hook_event(
    datasette: Datasette, payload: dict[str, Any], event_id: str, pending: asyncio.Future
) -> dict[str, Any]:
    """A hook event whose write has waited past hook_wait_seconds: kept in the server's spool
    (on the disk when this returns), and the answer Claude Code gets. The write goes on
    waiting; whichever of it and the spool's pass comes first stores the event (its id
    makes the other store nothing).

    When the spool cannot take it either, the disk's fault is raised: a 503, on which the
    command hook spools the event itself."""
    from datasette_claude_mem.claude_code.events import session_start_output
    from datasette_claude_mem.claude_code.hook_spool import keep, server_spool_path

    db = memory_database(datasette)
    assert db is not None and db.path
    kept = state(datasette)
    pending.add_done_callback(_report_late_failure)
    path = server_spool_path(db.path)
    try:
        await asyncio.to_thread(keep, path, payload, event_id, kept.redactor)
    except OSError as error:
        raise (write_fault(error, str(path)) or DiskError(str(path), str(error))) from error
    if payload.get("hook_event_name") != "SessionStart":
        return {}
    # The context is read, not written: reads go on while another program writes.
    return await read(
        datasette, lambda store: session_start_output(store, payload, config=kept.config)
    )


def _report_late_failure(pending: asyncio.Future) -> None:
    """A hook's write that failed after its event was spooled: the spool still has it."""
    if pending.cancelled():
        return
    error = pending.exception()
    if error is not None and write_fault(error, None) is None:
        print(f"{PLUGIN}: a spooled hook event's write failed: {error}", file=sys.stderr)


async def _serve_read_only(datasette: Datasette, db: DatasetteDatabase, reason: str) -> None:
    """A memory that cannot be written is still read, with one line saying so; writes answer
    503 until it is writable and the server started again. Nothing that writes runs."""
    from datasette_claude_mem.storage.migrations import migrations

    name = memory_database_name(datasette)
    pending = await db.execute_fn(
        lambda conn: [m.name for m in migrations.pending(_sqlite_utils(conn))]
    )
    if pending:
        raise StartupError(
            f"{db.path} cannot be migrated: {reason}. Make it writable, or serve a copy."
        )
    print(
        f"{PLUGIN}: {db.path}: {reason}; serving reads only, writes answer 503",
        file=sys.stderr,
    )
    await _publish_queries(datasette, name)


async def _publish_queries(datasette: Datasette, name: str) -> None:
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


def _sqlite_utils(conn: sqlite3.Connection) -> Any:
    from sqlite_utils import Database

    return Database(conn, execute_plugins=False)


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
                lambda store: ingest_spool(store, path, config=config),
            )
        except Exception as error:  # noqa: BLE001 - try again at the next turn
            print(f"claude-mem spool: {type(error).__name__}: {error}", file=sys.stderr)


async def _warn_about_schema(db: DatasetteDatabase) -> None:
    """A file whose triggers or defaults were lost still serves, but says so in one line."""
    from datasette_claude_mem.storage.doctor import startup_warning

    warning = await db.execute_fn(lambda conn: startup_warning(conn, db.path))
    if warning:
        print(warning, file=sys.stderr)


async def _embed_one_batch(datasette: Datasette) -> int:
    """Vectors for a batch of rows that have none, when the queue is idle: the model runs in
    another thread, the rows are written through the write thread."""
    semantic = semantic_search(datasette)
    if semantic is None:
        return 0
    from datasette_claude_mem.storage.embeddings import BATCH_SIZE, embed_rows, store_rows, waiting

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
    from datasette_claude_mem.storage.documents import index_docs, stale_projects

    db = memory_database(datasette)
    assert db is not None
    projects = await db.execute_fn(stale_projects)
    for project in projects:
        await write(datasette, lambda store, p=project: index_docs(store, Path(p), p))
    return len(projects)


class _ServerUpkeep:
    """Upkeep's reads and writes in the server: reads on a read connection; writes through
    the write path, or straight on the write connection outside any transaction, both in
    Datasette's write thread."""

    def __init__(self, datasette: Datasette, db: DatasetteDatabase) -> None:
        self.datasette, self.db = datasette, db

    async def read(self, fn: Callable[[Store], T]) -> T:
        return await read(self.datasette, fn)

    async def write(self, fn: Callable[[Store], T]) -> T:
        return await write(self.datasette, fn)

    async def outside(self, fn: Callable[[Store], T]) -> T:
        return await _guarded_write(
            self.datasette,
            self.db,
            lambda: self.db.execute_write_fn(
                lambda conn: fn(open_store(self.datasette, conn)), transaction=False
            ),
        )


async def _upkeep(datasette: Datasette) -> int:
    """Retention, free pages handed back and the daily backup, a small step at a time."""
    from datasette_claude_mem.worker.upkeep import Upkeep

    db = memory_database(datasette)
    assert db is not None
    kept = state(datasette)
    if kept.upkeep is None:
        kept.upkeep = Upkeep(kept.config, Path(db.path) if db.path else None)
    return await kept.upkeep.step(_ServerUpkeep(datasette, db))


# What the in-server worker does when its queue is empty, in the order of a turn.
IDLE_JOBS = ("embeddings", "documents", "upkeep")


async def idle_work(datasette: Datasette) -> int:
    """What the in-server worker does when its queue is empty: embed rows that have no
    vector yet, index again the documents sessions wrote, and the upkeep (retention, vacuum,
    the daily backup). Each turn starts with the next of them, so none waits behind another
    that always has work, or always fails: a failure is reported and the turn goes on to
    the rest, and is raised (so the worker waits longer) only when none of them did any
    work. Returns how much it did."""
    jobs: dict[str, Callable[[Datasette], Awaitable[int]]] = {
        "embeddings": _embed_one_batch,
        "documents": _refresh_documents,
        "upkeep": _upkeep,
    }
    kept = state(datasette)
    first = kept.idle_turn % len(IDLE_JOBS)
    kept.idle_turn += 1
    failed: Exception | None = None
    for name in IDLE_JOBS[first:] + IDLE_JOBS[:first]:
        try:
            done = await jobs[name](datasette)
        except Exception as error:  # noqa: BLE001 - the other jobs still get their turn
            print(f"claude-mem worker ({name}): {type(error).__name__}: {error}", file=sys.stderr)
            failed = failed or error
            continue
        if done:
            return done
    if failed is not None:
        raise failed
    return 0
