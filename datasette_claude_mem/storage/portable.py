"""Export a memory as JSON lines and import such a file: memory moved between machines.

A file is a header line (format, version, what was exported), one line per row
(``{"type": "row", "table": ..., "row": {...}}``) and an end line with the rows per table, so
a file cut short is refused rather than half imported. Columns are read from the database,
never listed here, so columns added by later migrations travel without a change to this
module. Import is one BEGIN IMMEDIATE transaction: a bad line changes nothing. Rows are
matched by their ids and unique keys (content hashes among them): importing a file twice
adds nothing the second time.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from datasette_claude_mem.storage.database import to_json
from datasette_claude_mem.storage.errors import StoreError
from datasette_claude_mem.storage.models import utc_now

if TYPE_CHECKING:
    from datasette_claude_mem.storage.store import Store

FORMAT = "claude-mem-export"
VERSION = 1

# The tables that hold memory, parents before children (sessions first: every other row
# names one). The queue's raw tool outputs are large and transient: only on request.
MEMORY_TABLES = (
    "sessions",
    "observations",
    "function_map",
    "call_graph",
    "learnings",
    "memory_entries",
    "event_log",
)
QUEUE_TABLES = ("pending_queue", "pending_payloads")

_IN_PROJECT_SESSIONS = "IN (SELECT id FROM sessions WHERE project = :project)"
_QUEUE_IN_PROJECT = f"project = :project OR session_id {_IN_PROJECT_SESSIONS}"
# One project's rows: its own, and those of its sessions.
PROJECT_FILTERS = {
    "sessions": "project = :project",
    "observations": f"project = :project OR session_id {_IN_PROJECT_SESSIONS}",
    "function_map": f"project = :project OR session_id {_IN_PROJECT_SESSIONS}",
    "call_graph": f"project = :project OR session_id {_IN_PROJECT_SESSIONS}",
    "learnings": f"project = :project OR source_session_id {_IN_PROJECT_SESSIONS}",
    "memory_entries": f"project = :project OR session_id {_IN_PROJECT_SESSIONS}",
    "event_log": f"project = :project OR session_id {_IN_PROJECT_SESSIONS}",
    "pending_queue": _QUEUE_IN_PROJECT,
    "pending_payloads": f"item_id IN (SELECT id FROM pending_queue WHERE {_QUEUE_IN_PROJECT})",
}


class ImportRefused(StoreError):
    """A file that is not an export this version can read; the message says where and why."""


def tables_for(with_queue: bool) -> tuple[str, ...]:
    # The queue goes before the rows that point at its items (observations.queue_item_id).
    if not with_queue:
        return MEMORY_TABLES
    return (MEMORY_TABLES[0], *QUEUE_TABLES, *MEMORY_TABLES[1:])


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_xinfo([{table}])") if row[6] == 0]


def _encode(value: Any) -> Any:
    """BLOBs (embeddings) as base64, in the shape Datasette's JSON uses for them."""
    if isinstance(value, bytes):
        return {"$base64": True, "encoded": base64.b64encode(value).decode("ascii")}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("$base64") is True and isinstance(value.get("encoded"), str):
            return base64.b64decode(value["encoded"], validate=True)
        raise ValueError("an object value must be a base64 BLOB")
    if isinstance(value, list):
        raise ValueError("a list value is not a column value")
    return value


def project_exists(conn: sqlite3.Connection, project: str) -> bool:
    """Whether any memory table with a project column holds a row of this project."""
    tables = [t for t in MEMORY_TABLES if "project" in _columns(conn, t)]
    sql = " UNION ALL ".join(f"SELECT 1 FROM [{t}] WHERE project = :project" for t in tables)
    return conn.execute(f"{sql} LIMIT 1", {"project": project}).fetchone() is not None


def _line(record: dict[str, Any]) -> bytes:
    return to_json(record).encode("utf-8") + b"\n"


def export_lines(
    conn: sqlite3.Connection, *, project: str | None = None, with_queue: bool = False
) -> Iterator[bytes]:
    """The export as JSON lines, read from one snapshot even while a server writes.

    The caller owns the connection; the read transaction this opens is ended when the
    iterator is exhausted or closed.
    """
    tables = tables_for(with_queue)
    if project is not None and not project_exists(conn, project):
        raise StoreError(f"no project {project!r} in this memory")
    conn.execute("BEGIN")
    try:
        schema = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
        yield _line(
            {
                "type": "header",
                "format": FORMAT,
                "version": VERSION,
                "exported_at": utc_now(),
                "project": project,
                "tables": list(tables),
                "schema": schema[-1] if schema else None,
            }
        )
        counts: dict[str, int] = {}
        for table in tables:
            columns = _columns(conn, table)
            sql = f"SELECT {', '.join(f'[{c}]' for c in columns)} FROM [{table}]"
            params: dict[str, Any] = {}
            if project is not None:
                sql += f" WHERE {PROJECT_FILTERS[table]}"
                params["project"] = project
            counts[table] = 0
            for values in conn.execute(sql + " ORDER BY rowid", params):
                row = {c: _encode(v) for c, v in zip(columns, values, strict=True)}
                counts[table] += 1
                yield _line({"type": "row", "table": table, "row": row})
        yield _line({"type": "end", "rows": counts})
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def write_file(path: Path, lines: Iterable[bytes]) -> int:
    """Write the lines to path through a file beside it, renamed into place when complete:
    a failed export never leaves a file that looks whole. Returns the bytes written."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    written = 0
    try:
        with partial.open("wb") as handle:
            for line in lines:
                written += handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return written


@dataclass
class ImportReport:
    """Rows added per table, and rows already there (by id or unique key) left as they were."""

    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total_added(self) -> int:
        return sum(self.added.values())

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())


def _parse(number: int, raw: bytes | str) -> dict[str, Any]:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ImportRefused(f"line {number}: not JSON ({error})") from error
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise ImportRefused(f"line {number}: not a record (an object with a type)")
    return record


def _check_header(record: dict[str, Any]) -> tuple[str, ...]:
    if record.get("type") != "header" or record.get("format") != FORMAT:
        raise ImportRefused(f"not a {FORMAT} file: the first line is not its header")
    if record.get("version") != VERSION:
        raise ImportRefused(
            f"format version {record.get('version')!r} is not one this version "
            f"reads ({VERSION}); export it again with a matching version"
        )
    tables = record.get("tables")
    known = set(MEMORY_TABLES) | set(QUEUE_TABLES)
    if not isinstance(tables, list) or not tables or not set(tables) <= known:
        raise ImportRefused(f"the header's tables must be some of {sorted(known)}")
    return tuple(tables)


class _Importer:
    """What one import knows about the target: its columns, keys and foreign keys."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        self.columns: dict[str, list[str]] = {}
        self.keys: dict[str, list[str]] = {}
        self.references: dict[str, list[tuple[str, str, str, bool]]] = {}
        # Rows this import created, with the values the file gave them: triggers (counts,
        # projects taken from sessions) may change them as later rows arrive.
        self.created: list[tuple[str, dict[str, Any]]] = []

    def table(self, table: str) -> list[str]:
        if table not in self.columns:
            info = list(self.conn.execute(f"PRAGMA table_xinfo([{table}])"))
            self.columns[table] = [r[1] for r in info if r[6] == 0]
            keys = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5] > 0]
            self.keys[table] = keys
            notnull = {r[1]: bool(r[3]) for r in info}
            self.references[table] = [
                (fk[3], fk[2], fk[4] or "id", notnull.get(fk[3], False))
                for fk in self.conn.execute(f"PRAGMA foreign_key_list([{table}])")
            ]
        return self.columns[table]

    def redact(self, value: Any) -> Any:
        """Text through the store's redaction; JSON text through its value redaction."""
        if not isinstance(value, str) or not value:
            return value
        if value[0] in "{[":
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict | list):
                cleaned = self.store.redact_value(parsed)
                return value if cleaned == parsed else to_json(cleaned)
        return self.store.redact_text(value)

    def _exists(self, table: str, column: str, value: Any) -> bool:
        sql = f"SELECT 1 FROM [{table}] WHERE [{column}] = ? LIMIT 1"
        return self.conn.execute(sql, [value]).fetchone() is not None

    def put(self, number: int, table: str, row: Any) -> bool:
        columns = self.table(table)
        if not isinstance(row, dict) or not row:
            raise ImportRefused(f"line {number}: a {table} row must be a non-empty object")
        unknown = sorted(set(row) - set(columns))
        if unknown:
            raise ImportRefused(
                f"line {number}: {table} has no column {', '.join(unknown)} here; "
                "migrate this memory to the exporting version first"
            )
        try:
            values = {c: self.redact(_decode(v)) for c, v in row.items()}
        except ValueError as error:
            raise ImportRefused(f"line {number}: {error}") from error
        for column, parent, parent_column, required in self.references[table]:
            value = values.get(column)
            if value is None or self._exists(parent, parent_column, value):
                continue
            if required:
                raise ImportRefused(
                    f"line {number}: the {table} row names {column} {value!r}, "
                    f"which is neither in the file before it nor in this memory"
                )
            values[column] = None  # what SQLite does when that row is gone: ON DELETE SET NULL
        names = list(values)
        sql = (
            f"INSERT INTO [{table}] ({', '.join(f'[{n}]' for n in names)}) "
            f"VALUES ({', '.join('?' * len(names))}) ON CONFLICT DO NOTHING"
        )
        try:
            cursor = self.conn.execute(sql, [values[n] for n in names])
        except (sqlite3.IntegrityError, OverflowError) as error:
            raise ImportRefused(f"line {number}: the {table} row was refused: {error}") from error
        if cursor.rowcount > 0:
            self.created.append((table, values))
            return True
        return False

    def settle(self) -> None:
        """Put back the file's values where insert triggers changed a created row."""
        for table, values in self.created:
            keys = self.keys[table]
            if not keys or any(k not in values for k in keys):
                continue
            where = " AND ".join(f"[{k}] = ?" for k in keys)
            names = [n for n in values if n not in keys]
            cursor = self.conn.execute(
                f"SELECT {', '.join(f'[{n}]' for n in names)} FROM [{table}] WHERE {where}",
                [values[k] for k in keys],
            )
            stored = cursor.fetchone()
            if stored is None:
                continue
            changed = [
                n
                for n, now in zip(names, stored, strict=True)
                if values[n] is not None and now != values[n]
            ]
            if changed:
                self.conn.execute(
                    f"UPDATE [{table}] SET {', '.join(f'[{n}] = ?' for n in changed)} "
                    f"WHERE {where}",
                    [*(values[n] for n in changed), *(values[k] for k in keys)],
                )


def import_lines(store: Store, lines: Iterable[bytes | str]) -> ImportReport:
    """Add an export's rows to the memory, in one transaction: all of it, or nothing."""
    report = ImportReport()
    importer = _Importer(store)
    with store.write():
        tables: tuple[str, ...] = ()
        ended: dict[str, Any] | None = None
        seen: dict[str, int] = {}
        number = 0
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            if ended is not None:
                raise ImportRefused(f"line {number}: a line after the end line")
            record = _parse(number, raw)
            if not tables:
                tables = _check_header(record)
                for table in tables:
                    importer.table(table)
                    report.added[table] = report.skipped[table] = seen[table] = 0
                continue
            kind = record["type"]
            if kind == "end":
                ended = record
                continue
            table = record.get("table")
            if kind != "row" or table not in tables:
                raise ImportRefused(
                    f"line {number}: expected a row of {', '.join(tables)} or the end line, "
                    f"got type {kind!r} table {table!r}"
                )
            seen[table] += 1
            if importer.put(number, table, record.get("row")):
                report.added[table] += 1
            else:
                report.skipped[table] += 1
        if number == 0:
            raise ImportRefused("the file is empty")
        if ended is None:
            raise ImportRefused("the file has no end line: it was cut short, import nothing")
        if ended.get("rows") != seen:
            raise ImportRefused(
                f"the end line counts {ended.get('rows')!r} rows, the file holds {seen!r}"
            )
        importer.settle()
    return report
