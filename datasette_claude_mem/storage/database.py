"""Connections to a memory file and the one write transaction: pragmas, BEGIN IMMEDIATE with a
bounded retry (or a savepoint inside the caller's transaction), migration, checkpoints, and the
JSON and hashing every family of the store shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar

import orjson
from sqlite_utils import Database

from datasette_claude_mem.storage.errors import is_busy
from datasette_claude_mem.storage.migrations import INCREMENTAL_VACUUM, migrations

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
    """The settings every connection to a memory database gets, the store's and Datasette's.

    secure_delete zeroes what a delete frees, so forgotten content leaves the file's bytes
    (storage/forget.py), not only its tables."""
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute("PRAGMA secure_delete=ON")
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
    """Take the write lock, trying again until the deadline if another writer holds it."""
    execute_until(conn, "BEGIN IMMEDIATE", deadline)


def execute_until(conn: sqlite3.Connection, sql: str, deadline: float) -> None:
    """Run a statement that needs a lock, trying again until the deadline while it is busy.

    SQLite's busy handler already waits up to busy_timeout per attempt, but it lets some
    waiters starve under many writers, and a switch of journal mode does not wait for it at
    all; this bounded loop turns both into a slow success.
    """
    delay = 0.001
    while True:
        try:
            conn.execute(sql).fetchall()
            return
        except sqlite3.OperationalError as error:
            if not is_busy(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)


def unwritable(path: str | Path) -> str | None:
    """Why a memory file cannot be written (it, or the directory its journal goes in, is
    read-only), or None. Reads of such a file are still served."""
    path = Path(path)
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its directory is read-only"
    return None


def close_cleanly(path: str | Path, busy_timeout_ms: int = 2000) -> None:
    """After a server stops: one last read-write connection folds the WAL into the file
    (TRUNCATE) and closes, and, being the last, takes the -wal and -shm files with it (the
    server's read connections are read-only, and the last of those to close cannot). When
    another program still has the file open, both stay, as they must."""
    if not Path(path).exists() or unwritable(path):
        return
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


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
        finish_auto_vacuum(db, up_to_bytes=MIGRATE_VACUUM_BYTES)
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
    # Several processes migrating one new file at once each ask for it, and the switch
    # answers "locked" at once while another connection reads.
    execute_until(db.conn, "PRAGMA journal_mode=WAL", time.monotonic() + WRITE_RETRY_SECONDS)
    finish_auto_vacuum(db, up_to_bytes=MIGRATE_VACUUM_BYTES)
    return names


# A file up to this size gets m014's VACUUM as it is migrated (a second or so); a bigger one
# only from `datasette claude-mem purge`, after its retention pass, so the copy the VACUUM
# makes, through the WAL, holds only what is kept and never needs twice the disk of a full
# file, and no server's writes wait behind it. The worker's upkeep keeps to this bound too.
MIGRATE_VACUUM_BYTES = 256 * 1000 * 1000
PAGE_PRAGMAS = ("page_count", "page_size")


def finish_auto_vacuum(db: Database, *, up_to_bytes: int | None = None) -> bool:
    """The one VACUUM m014 asks for, run once its step is recorded and outside any
    transaction, on a file up to `up_to_bytes` (None: any); True when it ran."""
    conn = db.conn
    if conn.in_transaction:
        return False
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL_VACUUM:
        return False
    if "m014_enable_retention" not in {m.name for m in migrations.applied(db)}:
        return False
    if up_to_bytes is not None:
        pages, page_size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in PAGE_PRAGMAS)
        if pages * page_size > up_to_bytes:
            return False
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    execute_until(conn, "VACUUM", time.monotonic() + WRITE_RETRY_SECONDS)
    # The VACUUM wrote the whole file through the WAL: fold it back and empty it.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return True


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


def json_strings(text: Any) -> list[str]:
    """The strings of a JSON array column (files_touched, functions...); a value that is not
    one, or not JSON at all (a hand edit in Datasette), holds none."""
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def hash_of(*parts: Any) -> str:
    return hashlib.sha256(to_json(parts).encode("utf-8")).hexdigest()


def rows_changed(conn: sqlite3.Connection) -> int:
    """Rows the last statement inserted, updated or deleted."""
    return conn.execute("SELECT changes()").fetchone()[0]


class StoreBase:
    def __init__(
        self,
        target: str | Path | sqlite3.Connection | Database,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        migrate_schema: bool = True,
        redact_text: Callable[..., str] | None = None,
        redact_value: Callable[..., Any] | None = None,
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

            # Bound methods take an optional counts dict too (see Scrubber.text/value).
            redact_text = redact_text or redact.DEFAULT.text
            redact_value = redact_value or redact.DEFAULT.value
        self.redact_text = redact_text
        self.redact_value = redact_value
        # How long a write waits for another program's write lock before it fails.
        self.write_timeout = WRITE_RETRY_SECONDS
        self._depth = 0  # savepoints open inside a caller's transaction
        self._checkpoint_wanted = False

    @classmethod
    def open(cls, config: Config, path: str | Path | None = None, **kwargs: Any) -> Self:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        deadline = time.monotonic() + self.write_timeout
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

    def checkpoint(self, wait_ms: int = 0) -> None:
        """Fold the WAL back into the database file, so it does not grow without bound.

        A reader holding a snapshot would make this wait out the whole busy timeout; without
        the wait (``wait_ms`` 0) it simply does what it can now, and the next checkpoint does
        the rest.
        """
        if self.conn.in_transaction:
            # Inside a transaction it cannot run: it runs when that transaction's owner
            # calls run_deferred_checkpoint.
            self._checkpoint_wanted = True
            return
        self._checkpoint_wanted = False
        timeout = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        self.conn.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout)}")

    def run_deferred_checkpoint(self) -> None:
        """The checkpoint a write asked for while it ran inside someone else's transaction."""
        if self._checkpoint_wanted:
            self.checkpoint()
