"""Every read and write of the memory: the one path to the database, whoever calls it.

The store works on a file path (it opens and migrates its own connection) or on a connection
someone else owns, such as Datasette's write thread for the database. Writes start with
BEGIN IMMEDIATE, or nest as a savepoint inside a transaction the caller already holds, so a
write either happens whole or not at all. The statements are written as SQL rather than
through ``Table.insert()``: sqlite-utils reads the table's columns on every insert, which
alone costs twice a whole raw insert.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson
from pydantic import TypeAdapter
from sqlite_utils import Database

from datasette_claude_mem.claude_code.project import project_key
from datasette_claude_mem.storage.entries import EntryStore
from datasette_claude_mem.storage.errors import LeaseLost, NotFound, is_busy
from datasette_claude_mem.storage.migrations import migrations
from datasette_claude_mem.storage.models import (
    CallGraphEdge,
    ChangeType,
    EdgesAdd,
    EventLogEntry,
    FunctionMapEntry,
    FunctionMapUpsert,
    Learning,
    LearningCreate,
    LearningUpdate,
    Observation,
    ObservationCreate,
    QueueItem,
    QueueItemCreate,
    QueueStats,
    SearchHit,
    Session,
    SessionStart,
    SessionStatus,
    SessionUpdate,
    encode_embedding,
    format_ts,
    new_id,
    utc_now,
)
from datasette_claude_mem.storage.queries import QUERY_SQL

if TYPE_CHECKING:
    from datasette_claude_mem.settings import Config

T = TypeVar("T")

# Rows written by other processes while we wait for the write lock: keep trying this long
# before a write is reported as failed. SQLite's own busy handler sleeps up to busy_timeout
# for each attempt.
WRITE_RETRY_SECONDS = 120.0


class Saved(NamedTuple):
    """A row after an idempotent write, and whether this write created it."""

    row: Any
    created: bool


def apply_pragmas(
    conn: sqlite3.Connection, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
) -> None:
    """The settings every connection to a memory database gets, the store's and Datasette's."""
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA recursive_triggers=ON")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous.upper() == 'FULL' else 'NORMAL'}")


def connect(
    path: str | Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    apply_pragmas(conn, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    return conn


def begin_immediate(conn: sqlite3.Connection, deadline: float) -> None:
    """Take the write lock, trying again until the deadline if another writer holds it.

    SQLite's busy handler already waits up to busy_timeout per attempt, but it lets some
    waiters starve under many writers; this bounded loop turns that into a slow success.
    """
    delay = 0.001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if not is_busy(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)


class ForeignDatabase(sqlite3.DatabaseError):
    """A database another application made (claude-mem's, say): never migrated or written."""


def foreign_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables of a database that is not a memory, or [] for a memory or an empty file.

    A memory records its migrations in _sqlite_migrations; a file with tables and none of
    those rows belongs to someone else.
    """
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    if not tables:
        return []
    if "_sqlite_migrations" in tables:
        ours = conn.execute(
            "SELECT 1 FROM _sqlite_migrations WHERE migration_set = ? LIMIT 1", [migrations.name]
        ).fetchone()
        if ours:
            return []
    return tables


def migrate(db: Database) -> list[str]:
    """Apply pending migrations; returns the names applied. Safe to run from many processes.

    A database of another application is refused whole (ForeignDatabase), before anything
    is written to it.
    """
    foreign = foreign_tables(db.conn)
    if foreign:
        shown = ", ".join(foreign[:8]) + (", ..." if len(foreign) > 8 else "")
        raise ForeignDatabase(f"it holds another application's tables ({shown})")
    if not migrations.pending(db):
        return []
    begin_immediate(db.conn, time.monotonic() + WRITE_RETRY_SECONDS)
    try:
        # Another process may have migrated while this one waited for the lock.
        names = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    # WAL cannot be switched on inside a transaction (the step that asks for it is a no-op
    # there), and a file that failed to migrate should be left as it was: so it comes last.
    db.execute("PRAGMA journal_mode=WAL")
    return names


def to_json(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text readable.

    orjson writes a 100 KB tool output ten times faster than the standard library; what it
    refuses (integers over 64 bits, lone surrogates, keys that are not strings) the standard
    library writes as it always has.
    """
    try:
        return orjson.dumps(value).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _hash(*parts: Any) -> str:
    return hashlib.sha256(to_json(parts).encode("utf-8")).hexdigest()


def fts_query(text: str) -> str:
    """Each word of a person's query as a quoted FTS5 term, so punctuation cannot break it."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


_OBSERVATIONS = TypeAdapter(list[Observation])


_COLUMNS_WITHOUT_EMBEDDING = ", ".join(n for n in Observation.model_fields if n != "embedding")


def _observation_columns(with_embeddings: bool) -> str:
    return "*" if with_embeddings else _COLUMNS_WITHOUT_EMBEDDING


def _changes(conn: sqlite3.Connection) -> int:
    """Rows the last statement inserted, updated or deleted."""
    return conn.execute("SELECT changes()").fetchone()[0]


class Store(EntryStore):
    def __init__(
        self,
        target: str | Path | sqlite3.Connection | Database,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        migrate_schema: bool = True,
        redact_text: Callable[[str], str] | None = None,
        redact_value: Callable[[Any], Any] | None = None,
    ) -> None:
        self._owns_connection = isinstance(target, str | Path)
        if isinstance(target, Database):
            self.db = target
        elif isinstance(target, sqlite3.Connection):
            # Setting recursive_triggers expires every prepared statement on the connection,
            # so it is set only when it is off (the FTS triggers need it on).
            self.db = Database(target, execute_plugins=False, recursive_triggers=False)
            if not target.execute("PRAGMA recursive_triggers").fetchone()[0]:
                target.execute("PRAGMA recursive_triggers=ON")
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
            self.db = Database(conn, execute_plugins=False)
        if migrate_schema:
            try:
                migrate(self.db)
            except BaseException:
                if self._owns_connection:  # a file refused is left as it was found
                    self.db.conn.close()
                raise
        if redact_text is None or redact_value is None:
            from datasette_claude_mem.redaction import redactor as redact

            redact_text = redact_text or redact.redact
            redact_value = redact_value or redact.redact_value
        self.redact_text = redact_text
        self.redact_value = redact_value
        self._depth = 0  # savepoints open inside a caller's transaction
        self._checkpoint_wanted = False

    @classmethod
    def open(cls, config: Config, path: str | Path | None = None, **kwargs: Any) -> Store:
        """The store on a memory file (the configured one by default), its connection made
        with the configured pragmas: every command opens the memory this way."""
        return cls(
            path or config.db_path,
            synchronous=config.synchronous,
            busy_timeout_ms=config.busy_timeout_ms,
            **kwargs,
        )

    def _redact_opt(self, text: str | None) -> str | None:
        return None if text is None else self.redact_text(text)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        if self._owns_connection:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Plumbing

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, or a savepoint inside the caller's."""
        conn = self.conn
        if conn.in_transaction:
            # Named by depth, not uniquely: each distinct statement text takes a place in
            # the connection's statement cache, and unique names would push out the
            # prepared INSERTs that every write reuses.
            self._depth += 1
            name = f"store_{self._depth}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            finally:
                self._depth -= 1
            conn.execute(f"RELEASE SAVEPOINT {name}")
            return
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        begin_immediate(conn, deadline)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        while True:
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as error:
                if not is_busy(error) or time.monotonic() > deadline:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                time.sleep(0.005)

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict | None:
        cursor = self.conn.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file, so it does not grow without bound.

        A reader holding a snapshot would make this wait out the whole busy timeout; without
        the wait it simply does what it can now, and the next checkpoint does the rest.
        """
        if self.conn.in_transaction:
            # Inside a transaction it cannot run: it runs when that transaction's owner
            # calls run_deferred_checkpoint.
            self._checkpoint_wanted = True
            return
        self._checkpoint_wanted = False
        timeout = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        self.conn.execute("PRAGMA busy_timeout=0")
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout)}")

    def run_deferred_checkpoint(self) -> None:
        """The checkpoint a write asked for while it ran inside someone else's transaction."""
        if self._checkpoint_wanted:
            self.checkpoint()

    def _session_project(self, session_id: str) -> str:
        row = self.conn.execute("SELECT project FROM sessions WHERE id = ?", [session_id])
        found = row.fetchone()
        if found is None:
            raise NotFound(f"session {session_id!r} does not exist")
        return found[0]

    # Sessions

    def create_session(self, data: SessionStart, *, started_at: str | None = None) -> Saved:
        """Start a session; starting one that exists (a resumed session) returns it as it is.

        ``started_at`` keeps the start of a session brought in from elsewhere."""
        session_id = data.id or new_id()
        with self.write() as conn:
            # Every hook event of a session passes here: most find it already started.
            existing = self.get_session(session_id) if data.id else None
            if existing is not None:
                return Saved(existing, False)
            project = data.project or project_key(data.project_dir)
            conn.execute(
                "INSERT INTO sessions (id, project, project_dir, started_at, status, summary) "
                "VALUES (?, ?, ?, ?, 'active', ?)",
                [
                    session_id,
                    project,
                    data.project_dir,
                    started_at or utc_now(),
                    self._redact_opt(data.summary),
                ],
            )
        return Saved(self.get_session(session_id), True)

    def get_session(self, session_id: str) -> Session | None:
        row = self._one("SELECT * FROM sessions WHERE id = ?", [session_id])
        return Session.model_validate(row) if row else None

    def update_session(self, session_id: str, data: SessionUpdate) -> Session:
        changes = data.model_dump(exclude_unset=True)
        if "ended_at" in changes and changes["ended_at"] is not None:
            changes["ended_at"] = format_ts(changes["ended_at"])
        if "status" in changes and changes["status"] is None:
            del changes["status"]
        if "summary" in changes:
            changes["summary"] = self._redact_opt(changes["summary"])
        with self.write() as conn:
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                conn.execute(
                    f"UPDATE sessions SET {assignments} WHERE id = ?",
                    [*(str(v) if v is not None else None for v in changes.values()), session_id],
                )
            session = self.get_session(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} does not exist")
        return session

    def list_sessions(
        self,
        project: str | None = None,
        status: SessionStatus | str | None = None,
        limit: int = 50,
        *,
        since: str | None = None,
    ) -> list[Session]:
        """Sessions newest first; only those started after ``since`` when given."""
        where, params = [], []
        if since is not None:
            where.append("started_at > ?")
            params.append(since)
        if project is not None:
            where.append("project = ?")
            params.append(project)
        if status is not None:
            where.append("status = ?")
            params.append(str(status))
        sql = "SELECT * FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        return [Session.model_validate(r) for r in self._all(sql, [*params, limit])]

    def close_session(
        self,
        session_id: str,
        summary: str | None = None,
        status: SessionStatus = SessionStatus.CLOSED,
        checkpoint: bool = True,
    ) -> Session:
        """End a session and checkpoint the WAL: a closed session is a quiet moment."""
        with self.write() as conn:
            conn.execute(
                "UPDATE sessions SET status = ?, ended_at = coalesce(ended_at, ?), "
                "summary = coalesce(?, summary) WHERE id = ?",
                [str(status), utc_now(), self._redact_opt(summary), session_id],
            )
            if _changes(conn) == 0:
                raise NotFound(f"session {session_id!r} does not exist")
        if checkpoint:
            self.checkpoint()
        session = self.get_session(session_id)
        assert session is not None
        return session

    def set_compact_summary(self, session_id: str, text: str) -> None:
        """Keep the summary Claude Code wrote when it compacted the conversation (redacted)."""
        with self.write() as conn:
            conn.execute(
                "UPDATE sessions SET compact_summary = ? WHERE id = ?",
                [self.redact_text(text), session_id],
            )

    def mark_context(self, session_id: str, at: str) -> str | None:
        """Record that the session got the memory context as of ``at``; returns the time it
        got it before (None if never), so a resumed session is told only what is new."""
        with self.write() as conn:
            row = conn.execute("SELECT context_at FROM sessions WHERE id = ?", [session_id])
            found = row.fetchone()
            conn.execute("UPDATE sessions SET context_at = ? WHERE id = ?", [at, session_id])
        return found[0] if found else None

    # Observations

    def create_observation(
        self, data: ObservationCreate, *, created_at: str | None = None
    ) -> Saved:
        """Store an observation once: the same content posted again returns the first row.

        ``created_at`` keeps the time of an observation brought in from elsewhere."""
        title = self.redact_text(data.title)
        summary = self.redact_text(data.summary)
        detail = self.redact_text(data.detail) if data.detail is not None else None
        content_hash = _hash(
            data.session_id,
            data.queue_item_id,
            data.tool_name,
            title,
            summary,
            detail,
            data.files_touched,
            data.functions_changed,
        )
        with self.write():
            # The project comes from the session in the same statement; no row back means
            # the session is missing or the observation is already there.
            inserted = self._all(
                "INSERT INTO observations (id, project, session_id, queue_item_id, tool_name, "
                "title, summary, detail, files_touched, functions_changed, tokens_raw, "
                "tokens_compressed, content_hash, embedding, embedding_model, "
                "embedding_version, created_at, agent_id, agent_type) "
                "SELECT ?, project, id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                "FROM sessions WHERE id = ? "
                "ON CONFLICT(content_hash) DO NOTHING RETURNING *",
                [
                    new_id(),
                    data.queue_item_id,
                    data.tool_name,
                    title,
                    summary,
                    detail,
                    to_json(data.files_touched),
                    to_json(data.functions_changed),
                    data.tokens_raw,
                    data.tokens_compressed,
                    content_hash,
                    encode_embedding(data.embedding),
                    data.embedding_model,
                    data.embedding_version,
                    created_at or utc_now(),
                    data.agent_id,
                    data.agent_type,
                    data.session_id,
                ],
            )
            row = inserted[0] if inserted else None
            if row is None:
                row = self._one("SELECT * FROM observations WHERE content_hash = ?", [content_hash])
            if row is None:
                raise NotFound(f"session {data.session_id!r} does not exist")
        return Saved(Observation.model_validate(row), bool(inserted))

    def get_observation(self, observation_id: str) -> Observation | None:
        row = self._one("SELECT * FROM observations WHERE id = ?", [observation_id])
        return Observation.model_validate(row) if row else None

    def list_observations(
        self, session_id: str, limit: int = 100, *, with_embeddings: bool = False
    ) -> list[Observation]:
        """A session's observations, oldest first.

        Embeddings are left out unless asked for: unpacking hundreds of floats per row is
        most of the cost of a listing, and listings rarely need them.
        """
        rows = self._all(
            f"SELECT {_observation_columns(with_embeddings)} FROM observations "
            "WHERE session_id = ? ORDER BY created_at, rowid LIMIT ?",
            [session_id, limit],
        )
        return _OBSERVATIONS.validate_python(rows)

    def recent_observations(
        self,
        project: str,
        limit: int = 20,
        *,
        with_embeddings: bool = False,
        since: str | None = None,
        other_than_session: str | None = None,
    ) -> list[Observation]:
        """A project's latest observations, newest first (embeddings as in list_observations);
        only those made after ``since`` and outside ``other_than_session`` when given."""
        sql = (
            f"SELECT {_observation_columns(with_embeddings)} FROM observations "
            "WHERE project = ? AND forgotten_at IS NULL"
        )
        params: list[Any] = [project]
        if since is not None:
            sql += " AND created_at > ?"
            params.append(since)
        if other_than_session is not None:
            sql += " AND session_id != ?"
            params.append(other_than_session)
        rows = self._all(f"{sql} ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit])
        return _OBSERVATIONS.validate_python(rows)

    def delete_observation(self, observation_id: str) -> None:
        """Forget an observation; its session's count and the search index follow."""
        with self.write() as conn:
            conn.execute("DELETE FROM observations WHERE id = ?", [observation_id])
            if _changes(conn) == 0:
                raise NotFound(f"observation {observation_id!r} does not exist")

    # Function map

    def upsert_functions(self, data: FunctionMapUpsert) -> list[FunctionMapEntry]:
        """Record a file's functions as this session sees them, with what changed.

        A function is compared with how the file stood before this session: new when it was
        not there (or had been deleted), modified when its body hash differs, unchanged
        otherwise; a function that was there and is missing now is recorded as deleted.
        """
        now = utc_now()
        with self.write() as conn:
            project = self._session_project(data.session_id)
            before = {
                row["qualified_name"]: row
                for row in self._latest_function_rows(project, data.file_path, data.session_id)
            }
            seen = set()
            for fn in data.functions:
                seen.add(fn.qualified_name)
                prior = before.get(fn.qualified_name)
                if prior is None or prior["change_type"] == ChangeType.DELETED:
                    change = ChangeType.NEW
                elif prior["body_hash"] != fn.body_hash:
                    change = ChangeType.MODIFIED
                else:
                    change = ChangeType.UNCHANGED
                self._put_function(conn, project, data, fn.model_dump(), change, now)
            for name, prior in before.items():
                if name in seen or prior["change_type"] == ChangeType.DELETED:
                    continue
                gone = {
                    "qualified_name": name,
                    "kind": prior["kind"],
                    "signature": prior["signature"],
                    "docstring": prior["docstring"],
                    "body_hash": prior["body_hash"],
                    "decorators": json.loads(prior["decorators"]),
                }
                self._put_function(conn, project, data, gone, ChangeType.DELETED, now)
            # A function deleted earlier in this session and absent again stays deleted; one
            # this session saw that is now gone from a file it created is simply dropped.
            rows = self._all(
                "SELECT * FROM function_map WHERE project = ? AND file_path = ? "
                "AND session_id = ? ORDER BY qualified_name",
                [project, data.file_path, data.session_id],
            )
            stale = [
                r["id"]
                for r in rows
                if r["qualified_name"] not in seen and r["qualified_name"] not in before
            ]
            for row_id in stale:
                conn.execute("DELETE FROM function_map WHERE id = ?", [row_id])
        return [FunctionMapEntry.model_validate(r) for r in rows if r["id"] not in stale]

    def _latest_function_rows(
        self, project: str, file_path: str, exclude_session: str | None = None
    ) -> list[dict]:
        params: list[Any] = [project, file_path]
        other = ""
        if exclude_session is not None:
            other = "AND session_id != ?"
            params.append(exclude_session)
        return self._all(
            f"""SELECT * FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY qualified_name ORDER BY updated_at DESC, id DESC) AS _n
                FROM function_map WHERE project = ? AND file_path = ? {other}
            ) WHERE _n = 1 ORDER BY qualified_name""",
            params,
        )

    def _put_function(
        self,
        conn: sqlite3.Connection,
        project: str,
        data: FunctionMapUpsert,
        fn: dict[str, Any],
        change: ChangeType,
        now: str,
    ) -> None:
        conn.execute(
            "INSERT INTO function_map (id, project, session_id, file_path, qualified_name, "
            "kind, signature, docstring, body_hash, decorators, change_type, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(project, file_path, qualified_name, session_id) DO UPDATE SET "
            "kind = excluded.kind, signature = excluded.signature, "
            "docstring = excluded.docstring, body_hash = excluded.body_hash, "
            "decorators = excluded.decorators, change_type = excluded.change_type, "
            "updated_at = excluded.updated_at",
            [
                new_id(),
                project,
                data.session_id,
                data.file_path,
                fn["qualified_name"],
                str(fn["kind"]),
                self.redact_text(fn["signature"]),
                self._redact_opt(fn["docstring"]),
                fn["body_hash"],
                to_json(fn["decorators"]),
                str(change),
                now,
            ],
        )

    def latest_functions(self, project: str, file_path: str) -> list[FunctionMapEntry]:
        """The functions a file has now, as last recorded by any session."""
        rows = self._latest_function_rows(project, file_path)
        return [
            FunctionMapEntry.model_validate(r)
            for r in rows
            if r["change_type"] != ChangeType.DELETED
        ]

    def changed_functions(
        self,
        project: str,
        session_id: str | None = None,
        limit: int = 200,
        *,
        since: str | None = None,
    ) -> list[FunctionMapEntry]:
        """Functions new, modified or deleted (in one session, or in any; after ``since``
        when given), newest first."""
        sql = "SELECT * FROM function_map WHERE project = ? AND change_type != 'unchanged'"
        params: list[Any] = [project]
        if session_id is not None:
            sql += " AND session_id = ?"
            params.append(session_id)
        if since is not None:
            sql += " AND updated_at > ?"
            params.append(since)
        sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
        return [FunctionMapEntry.model_validate(r) for r in self._all(sql, [*params, limit])]

    # Call graph

    def add_edges(self, data: EdgesAdd) -> list[CallGraphEdge]:
        """Add call edges; an edge seen again is confirmed rather than duplicated."""
        now = utc_now()
        with self.write() as conn:
            project = self._session_project(data.session_id)
            if data.replace_file is not None:
                keep = {
                    (e.caller_function, e.callee_file, e.callee_function)
                    for e in data.edges
                    if e.caller_file == data.replace_file
                }
                for row in self._all(
                    "SELECT id, caller_function, callee_file, callee_function FROM call_graph "
                    "WHERE project = ? AND caller_file = ? AND source = 'ast'",
                    [project, data.replace_file],
                ):
                    key = (row["caller_function"], row["callee_file"], row["callee_function"])
                    if key not in keep:
                        conn.execute("DELETE FROM call_graph WHERE id = ?", [row["id"]])
            ids = []
            for edge in data.edges:
                row_id = new_id()
                conn.execute(
                    "INSERT INTO call_graph (id, project, caller_file, caller_function, "
                    "callee_file, callee_function, resolution, confidence, times_confirmed, "
                    "source, session_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) "
                    "ON CONFLICT(project, caller_file, caller_function, callee_file, "
                    "callee_function) DO UPDATE SET times_confirmed = times_confirmed + 1, "
                    "resolution = excluded.resolution, confidence = excluded.confidence, "
                    "session_id = excluded.session_id",
                    [
                        row_id,
                        project,
                        edge.caller_file,
                        edge.caller_function,
                        edge.callee_file,
                        edge.callee_function,
                        str(edge.resolution),
                        edge.confidence,
                        edge.source,
                        data.session_id,
                        now,
                    ],
                )
                found = conn.execute(
                    "SELECT id FROM call_graph WHERE project = ? AND caller_file = ? "
                    "AND caller_function = ? AND callee_file = ? AND callee_function = ?",
                    [
                        project,
                        edge.caller_file,
                        edge.caller_function,
                        edge.callee_file,
                        edge.callee_function,
                    ],
                ).fetchone()
                ids.append(found[0])
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = {
            r["id"]: r for r in self._all(f"SELECT * FROM call_graph WHERE id IN ({marks})", ids)
        }
        return [CallGraphEdge.model_validate(rows[i]) for i in ids]

    def callers(self, project: str, function: str, file: str | None = None) -> list[CallGraphEdge]:
        """Edges into a function: who calls it."""
        return self._edges(project, "callers", function, file)

    def callees(self, project: str, function: str, file: str | None = None) -> list[CallGraphEdge]:
        """Edges out of a function: what it calls."""
        return self._edges(project, "callees", function, file)

    def _edges(
        self, project: str, query: str, function: str, file: str | None
    ) -> list[CallGraphEdge]:
        """By the SQL of the callers and callees stored queries, so both answer alike."""
        rows = self._all(
            QUERY_SQL[query], {"project": project, "function": function, "file": file or ""}
        )
        return [CallGraphEdge.model_validate(r) for r in rows]

    # Learnings

    def create_learning(self, data: LearningCreate) -> Saved:
        """Record a learning; the same active learning again returns the first one."""
        content = self.redact_text(data.content)
        now = utc_now()
        with self.write() as conn:
            if data.source_session_id is not None:
                self._session_project(data.source_session_id)
            existing = self._one(
                "SELECT * FROM learnings WHERE project IS ? AND category = ? AND content = ? "
                "AND is_active = 1",
                [data.project, str(data.category), content],
            )
            if existing:
                return Saved(Learning.model_validate(existing), False)
            row_id = new_id()
            conn.execute(
                "INSERT INTO learnings (id, project, category, content, confidence, "
                "source_session_id, is_active, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                [
                    row_id,
                    data.project,
                    str(data.category),
                    content,
                    data.confidence,
                    data.source_session_id,
                    now,
                    now,
                ],
            )
        learning = self.get_learning(row_id)
        return Saved(learning, True)

    def get_learning(self, learning_id: str) -> Learning | None:
        row = self._one("SELECT * FROM learnings WHERE id = ?", [learning_id])
        return Learning.model_validate(row) if row else None

    def active_learnings(
        self,
        project: str | None = None,
        category: str | None = None,
        min_confidence: float = 0.0,
        limit: int = 100,
        *,
        since: str | None = None,
    ) -> list[Learning]:
        """Active learnings of a project and the global ones, most confident first (only
        those added or changed after ``since`` when given)."""
        sql = "SELECT * FROM learnings WHERE is_active = 1 AND confidence >= ?"
        params: list[Any] = [min_confidence]
        if since is not None:
            sql += " AND updated_at > ?"
            params.append(since)
        if project is None:
            sql += " AND project IS NULL"
        else:
            sql += " AND (project = ? OR project IS NULL)"
            params.append(project)
        if category:
            sql += " AND category = ?"
            params.append(str(category))
        sql += " ORDER BY confidence DESC, updated_at DESC, id DESC LIMIT ?"
        return [Learning.model_validate(r) for r in self._all(sql, [*params, limit])]

    def update_learning(self, learning_id: str, data: LearningUpdate) -> Learning:
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        if "content" in changes:
            changes["content"] = self.redact_text(changes["content"])
        if "category" in changes:
            changes["category"] = str(changes["category"])
        if "is_active" in changes:
            changes["is_active"] = int(changes["is_active"])
        changes["updated_at"] = utc_now()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self.write() as conn:
            conn.execute(
                f"UPDATE learnings SET {assignments} WHERE id = ?",
                [*changes.values(), learning_id],
            )
            if _changes(conn) == 0:
                raise NotFound(f"learning {learning_id!r} does not exist")
        learning = self.get_learning(learning_id)
        assert learning is not None
        return learning

    def soft_delete_learning(self, learning_id: str) -> Learning:
        """Retire a learning: it leaves the context and search but stays for the record."""
        return self.update_learning(learning_id, LearningUpdate(is_active=False))

    # Queue

    def enqueue(self, data: QueueItemCreate) -> Saved:
        """Queue a raw tool use; the same (session, tool_use_id) again adds nothing."""
        raw_output = self.redact_text(data.raw_output)
        tool_input = self.redact_value(data.tool_input)
        tool_use_id = data.tool_use_id or new_id()
        now = utc_now()
        with self.write() as conn:
            project = self._session_project(data.session_id)
            row_id = new_id()
            inserted = self._all(
                "INSERT INTO pending_queue (id, project, session_id, tool_use_id, tool_name, "
                "files_touched, status, attempts, max_attempts, available_at, raw_bytes, "
                "truncated, created_at, updated_at, agent_id, agent_type, prompt_id, "
                "duration_ms, mcp_server, failure) "
                "VALUES (?, ?, ?, ?, ?, ?, 'raw', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(session_id, tool_use_id) DO NOTHING RETURNING *",
                [
                    row_id,
                    project,
                    data.session_id,
                    tool_use_id,
                    data.tool_name,
                    to_json(data.files_touched),
                    data.max_attempts,
                    now,
                    utf8_length(data.raw_output),
                    int(data.truncated),
                    now,
                    now,
                    data.agent_id,
                    data.agent_type,
                    data.prompt_id,
                    data.duration_ms,
                    data.mcp_server,
                    str(data.failure) if data.failure else None,
                ],
            )
            if inserted:
                conn.execute(
                    "INSERT INTO pending_payloads (item_id, tool_input, raw_output) "
                    "VALUES (?, ?, ?)",
                    [row_id, to_json(tool_input), raw_output],
                )
                row = inserted[0]
            else:
                row = self._one(
                    "SELECT * FROM pending_queue WHERE session_id = ? AND tool_use_id = ?",
                    [data.session_id, tool_use_id],
                )
        return Saved(QueueItem.model_validate(row), bool(inserted))

    def get_queue_item(self, item_id: str, include_payload: bool = True) -> QueueItem | None:
        row = self._one("SELECT * FROM pending_queue WHERE id = ?", [item_id])
        if row is None:
            return None
        if include_payload:
            row.update(self._payloads([item_id]).get(item_id, {}))
        return QueueItem.model_validate(row)

    def _payloads(self, ids: list[str]) -> dict[str, dict]:
        marks = ", ".join("?" for _ in ids)
        rows = self._all(
            f"SELECT item_id, tool_input, raw_output FROM pending_payloads "
            f"WHERE item_id IN ({marks})",
            ids,
        )
        return {r.pop("item_id"): r for r in rows}

    def dequeue_batch(
        self,
        n: int = 5,
        *,
        worker: str = "worker",
        lease_seconds: float = 300.0,
        project: str | None = None,
        include_payload: bool = True,
    ) -> list[QueueItem]:
        """Claim up to n waiting items for this worker, oldest first, under a lease.

        Items whose lease expired (their worker died) go back to waiting first, or to the
        dead letter when they have used every attempt. Each claim counts as an attempt.
        """
        now = utc_now()
        expires = format_ts(datetime.now(UTC) + timedelta(seconds=lease_seconds))
        with self.write() as conn:
            conn.execute(
                "UPDATE pending_queue SET "
                "status = CASE WHEN attempts >= max_attempts THEN 'error' ELSE 'raw' END, "
                "last_error = 'lease of ' || coalesce(lease_owner, '?') || ' expired', "
                "lease_owner = NULL, lease_expires_at = NULL, available_at = ?1, "
                "updated_at = ?1 "
                "WHERE status = 'processing' AND lease_expires_at < ?1",
                [now],
            )
            project_filter = "AND project = :project" if project is not None else ""
            rows = self._all(
                "UPDATE pending_queue SET status = 'processing', attempts = attempts + 1, "
                "lease_owner = :worker, lease_expires_at = :expires, updated_at = :now "
                "WHERE id IN (SELECT id FROM pending_queue "
                f"WHERE status = 'raw' AND available_at <= :now {project_filter} "
                "ORDER BY available_at, rowid LIMIT :n) AND status = 'raw' "
                "RETURNING rowid AS _seq, *",
                {"now": now, "worker": worker, "expires": expires, "project": project, "n": n},
            )
        rows.sort(key=lambda r: (r["available_at"], r.pop("_seq")))
        if include_payload and rows:
            payloads = self._payloads([r["id"] for r in rows])
            for row in rows:
                row.update(payloads.get(row["id"], {}))
        return [QueueItem.model_validate(r) for r in rows]

    def _held(self, item_id: str, worker: str) -> dict:
        row = self._one("SELECT * FROM pending_queue WHERE id = ?", [item_id])
        if row is None:
            raise NotFound(f"queue item {item_id!r} does not exist")
        if row["status"] != "processing" or row["lease_owner"] != worker:
            raise LeaseLost(
                f"queue item {item_id!r} is not held by {worker!r} (status {row['status']})"
            )
        return row

    def complete(
        self, item_id: str, worker: str, observation: ObservationCreate | None = None
    ) -> tuple[QueueItem, Observation | None]:
        """Mark an item done, with the observation made from it, in one transaction."""
        now = utc_now()
        made = None
        with self.write() as conn:
            held = self._held(item_id, worker)
            if observation is not None:
                update: dict[str, Any] = {"queue_item_id": item_id}
                if observation.agent_id is None and held.get("agent_id"):
                    # A subagent's tool use makes a subagent's observation, whoever compressed it.
                    update |= {"agent_id": held["agent_id"], "agent_type": held["agent_type"]}
                made = self.create_observation(observation.model_copy(update=update)).row
            conn.execute(
                "UPDATE pending_queue SET status = 'done', lease_owner = NULL, "
                "lease_expires_at = NULL, completed_at = ?1, updated_at = ?1, last_error = NULL "
                "WHERE id = ?2",
                [now, item_id],
            )
        item = self.get_queue_item(item_id, include_payload=False)
        assert item is not None
        return item, made

    def fail(self, item_id: str, worker: str, error: str) -> QueueItem:
        """Record a failed attempt: retried after a backoff, or a dead letter when none are left."""
        with self.write() as conn:
            row = self._held(item_id, worker)
            backoff = min(2 ** row["attempts"], 600)
            retry_at = format_ts(datetime.now(UTC) + timedelta(seconds=backoff))
            conn.execute(
                "UPDATE pending_queue SET status = 'error', last_error = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, available_at = ?, updated_at = ? WHERE id = ?",
                [self.redact_text(error)[:4000], retry_at, utc_now(), item_id],
            )
        item = self.get_queue_item(item_id, include_payload=False)
        assert item is not None
        return item

    def has_claimable_work(self) -> bool:
        """Whether a claim would find anything: items waiting, leases run out, or failures
        whose backoff has passed. A read, so that an idle worker takes no write lock."""
        found = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pending_queue "
            "WHERE status = 'raw' AND available_at <= :now) "
            "OR EXISTS (SELECT 1 FROM pending_queue "
            "WHERE status = 'processing' AND lease_expires_at < :now) "
            "OR EXISTS (SELECT 1 FROM pending_queue "
            "WHERE status = 'error' AND available_at <= :now AND attempts < max_attempts)",
            {"now": utc_now()},
        ).fetchone()
        return bool(found[0])

    def retry_failed(self, project: str | None = None, dead_letters: bool = False) -> int:
        """Send failed items whose backoff has passed back to the queue; returns how many.

        An item with no attempts left is a dead letter and stays put, unless dead_letters
        asks to give each one more attempt (after its cause was fixed, say).
        """
        now = utc_now()
        sql = "UPDATE pending_queue SET status = 'raw', updated_at = ?1"
        if dead_letters:
            sql += (
                ", available_at = ?1, max_attempts = max(max_attempts, attempts + 1) "
                "WHERE status = 'error'"
            )
        else:
            sql += " WHERE status = 'error' AND attempts < max_attempts AND available_at <= ?1"
        params: list[Any] = [now]
        if project is not None:
            sql += " AND project = ?2"
            params.append(project)
        with self.write() as conn:
            conn.execute(sql, params)
            return _changes(conn)

    def queue_stats(self, project: str | None = None) -> QueueStats:
        """The queue's health, by the same SQL as the queue_stats stored query."""
        row = self._one(QUERY_SQL["queue_stats"], {"project": project or ""})
        assert row is not None
        return QueueStats(
            project=project,
            raw=row["waiting"],
            processing=row["in_progress"],
            done=row["done"],
            failed=row["failed"],
            dead_letters=row["dead_letters"],
            retries=row["retries"],
            oldest_waiting_age_seconds=row["oldest_waiting_age_seconds"],
        )

    # Event log

    def log_event(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        project: str | None = None,
        duration_ms: int | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        event_id: str | None = None,
        created_at: str | None = None,
    ) -> EventLogEntry:
        """One event row; an event id already stored answers the stored row."""
        row_id = event_id or new_id()
        payload = to_json(self.redact_value(data or {}))
        with self.write():
            inserted = self._all(
                "INSERT INTO event_log (id, project, session_id, event_type, data, "
                "duration_ms, tokens_in, tokens_out, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING RETURNING *",
                [
                    row_id,
                    project,
                    session_id,
                    event_type,
                    payload,
                    duration_ms,
                    tokens_in,
                    tokens_out,
                    created_at or utc_now(),
                ],
            )
        row = (
            inserted[0] if inserted else self._one("SELECT * FROM event_log WHERE id = ?", [row_id])
        )
        return EventLogEntry.model_validate(row)

    def has_event(self, event_id: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM event_log WHERE id = ?", [event_id]).fetchone()
            is not None
        )

    def projects(self) -> list[str]:
        """Every project key that has a session."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT project FROM sessions")]

    def first_prompt(self, session_id: str) -> str | None:
        """What the person first asked in a session: a fair one-line account of it."""
        row = self.conn.execute(
            "SELECT json_extract(data, '$.prompt') FROM event_log WHERE session_id = ? "
            "AND +event_type = 'UserPromptSubmit' ORDER BY created_at, id LIMIT 1",
            [session_id],
        ).fetchone()
        return row[0] if row else None

    def query_events(
        self,
        event_type: str | None = None,
        session_id: str | None = None,
        project: str | None = None,
        limit: int = 100,
    ) -> list[EventLogEntry]:
        """Events newest first, filtered by type, session and project."""
        where, params = [], []
        for column, value in (
            ("event_type", event_type),
            ("session_id", session_id),
            ("project", project),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM event_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        return [EventLogEntry.model_validate(r) for r in self._all(sql, [*params, limit])]

    # Search

    def search(self, project: str, query: str, limit: int = 20) -> list[SearchHit]:
        """Full-text search of a project's observations and its (and global) learnings."""
        match = fts_query(query)
        if not match:
            return []
        rows = self._all(
            """SELECT * FROM (
                SELECT 'observation' AS kind, o.id, o.project, o.session_id, o.title,
                    snippet(observations_fts, -1, '[', ']', '…', 12) AS snippet,
                    bm25(observations_fts) AS rank, o.created_at
                FROM observations_fts JOIN observations o ON o.rowid = observations_fts.rowid
                WHERE observations_fts MATCH :q AND o.project = :project
                    AND o.forgotten_at IS NULL
                UNION ALL
                SELECT 'learning', l.id, l.project, l.source_session_id, l.category,
                    snippet(learnings_fts, -1, '[', ']', '…', 12), bm25(learnings_fts),
                    l.created_at
                FROM learnings_fts JOIN learnings l ON l.rowid = learnings_fts.rowid
                WHERE learnings_fts MATCH :q AND l.is_active = 1
                    AND (l.project = :project OR l.project IS NULL)
            ) ORDER BY rank, created_at DESC LIMIT :limit""",
            {"q": match, "project": project, "limit": limit},
        )
        return [SearchHit.model_validate(r) for r in rows]
