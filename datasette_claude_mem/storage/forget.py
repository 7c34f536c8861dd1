"""Forgetting for good: a session, an observation, a learning, a note, a whole project or
everything before a date, deleted with every row that came only from it, and gone from the
file's bytes, not only from its tables.

Every connection to the memory has secure_delete on (storage/database.py), so freed pages
are zeroed; the search indexes touched are optimised, so the terms of deleted rows leave the
index segments too; and the WAL, which still holds the old pages, is checkpointed and
truncated once the transaction has committed. A tombstone records what kind of thing went,
how many rows, who asked, when and why, and never what the rows held.

A mixin of the Store, so that the deletes take the store's one write transaction.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from datasette_claude_mem.storage.database import json_strings, rows_changed, to_json
from datasette_claude_mem.storage.errors import NotFound, StoreError
from datasette_claude_mem.storage.models import (
    Input,
    JsonObject,
    Record,
    Timestamp,
    format_ts,
    new_id,
)

# One row of one of these, by its id.
ROW_KINDS = ("session", "observation", "learning", "note")
# What a forget of a project or of everything before a date takes, when asked for some only.
SCOPE_KINDS = ("session", "observation", "learning", "note", "event", "document")
TOMBSTONE_KINDS = (*ROW_KINDS, "project", "before")

# The search index of each table, optimised after its rows were deleted.
FTS_OF = {
    "observations": "observations_fts",
    "learnings": "learnings_fts",
    "sessions": "sessions_fts",
    "prompts": "prompts_fts",
    "memory_entries": "memory_entries_fts",
    "doc_chunks": "doc_chunks_fts",
}


# The tables that name their project, as a project page counts them.
PROJECT_TABLES = (
    "sessions",
    "observations",
    "pending_queue",
    "event_log",
    "prompts",
    "function_map",
    "call_graph",
    "learnings",
    "memory_entries",
    "documents",
    "doc_chunks",
)


class ForgetRequest(Input):
    """What to forget: one row by kind and id, or a project's rows, or everything before a
    date (of one project when given), optionally of some kinds only."""

    kind: Literal["session", "observation", "learning", "note", "project", "before"] | None = Field(
        None, description="Set from the other fields when left out"
    )
    id: str | None = Field(None, min_length=1, description="The row, for a row kind")
    project: str | None = Field(None, min_length=1, description="Only this project's rows")
    before: Timestamp | None = Field(None, description="Only rows created before this time")
    kinds: list[Literal[SCOPE_KINDS]] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description=f"Only these kinds ({', '.join(SCOPE_KINDS)})"
    )
    reason: str | None = Field(None, description="Why, kept in the tombstone")

    @field_validator("kinds", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _one_target(self) -> ForgetRequest:
        if self.kind is None:
            self.kind = "before" if self.before is not None else "project" if self.project else None
        if self.kind is None:
            raise ValueError("say what to forget: a project, a date (before), or a row's id")
        if self.kind in ROW_KINDS:
            if not self.id or self.project or self.before or self.kinds:
                raise ValueError(f"a {self.kind} is forgotten by its id alone")
        elif self.id is not None:
            raise ValueError("an id names one row: give a row kind, not a project or date")
        elif self.kind == "project" and (not self.project or self.before):
            raise ValueError("forgetting a project needs its key, and no date (use before)")
        elif self.kind == "before" and self.before is None:
            raise ValueError("before: the date everything older than is forgotten")
        return self


class ForgetOne(Input):
    """The body of a DELETE that forgets one row: optional, and only why."""

    reason: str | None = Field(None, description="Why, kept in the tombstone")


class LearningDelete(ForgetOne):
    """DELETE /learnings/{id}: retired (kept on record) unless hard, then deleted for good."""

    hard: bool = Field(False, description="Delete it for good rather than retire it")


class Tombstone(Record):
    """A forget as the record keeps it: never what was forgotten."""

    id: str
    kind: str = Field(description=", ".join(TOMBSTONE_KINDS))
    count: int = Field(description="Rows deleted in all")
    counts: JsonObject = Field(description="Rows deleted per table")
    forgotten_by: str
    reason: str | None = None
    before: str | None = None
    created_at: Timestamp


class Scope:
    """Which rows of a table a forget of a project or a date takes: SQL and its parameters."""

    def __init__(self, project: str | None, before: str | None) -> None:
        self.project, self.before = project, before

    def where(self, time_column: str | None, project_column: str = "project") -> str:
        parts = []
        if self.project is not None:
            parts.append(f"{project_column} = :project")
        if self.before is not None and time_column is not None:
            parts.append(f"{time_column} < :before")
        return " AND ".join(parts) or "1"

    @property
    def params(self) -> dict[str, Any]:
        return {"project": self.project, "before": self.before}


class ForgetStore:
    """Needs the Store's write(), _one(), _all(), checkpoint() and redact_text."""

    write: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _one: Callable[[str, Sequence[Any] | dict[str, Any]], dict | None]
    _all: Callable[[str, Sequence[Any] | dict[str, Any]], list[dict]]
    checkpoint: Callable[[], None]
    redact_text: Callable[[str], str]

    def erase(self, request: ForgetRequest, by: str) -> Tombstone:
        """Delete what the request names and everything that came only from it, leave a
        tombstone, and take the content out of the file: the one way anything is forgotten
        for good, from the pages, the API and the command line alike."""
        counts: dict[str, int] = {}
        before = None if request.before is None else format_ts(request.before)
        with self.write() as conn:
            if request.kind == "session":
                self._session_or_404(request.id)
                _erase_sessions(conn, counts, "SELECT :id", {"id": request.id})
            elif request.kind == "observation":
                self._erase_observation(conn, counts, request.id)
            elif request.kind == "learning":
                _erase_rows(conn, counts, "learnings", "learning", "id = :id", {"id": request.id})
            elif request.kind == "note":
                self._erase_note(conn, counts, request.id)
            else:
                _erase_scope(conn, counts, Scope(request.project, before), request.kinds)
            if request.kind in ROW_KINDS and not any(counts.values()):
                raise NotFound(f"no {request.kind} with id {request.id!r}")
            for table, fts in FTS_OF.items():
                if counts.get(table):
                    conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")
            kept = {table: n for table, n in counts.items() if n}
            tombstone_id = new_id()
            conn.execute(
                "INSERT INTO tombstones (id, kind, count, counts, forgotten_by, reason, before) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    tombstone_id,
                    request.kind,
                    sum(kept.values()),
                    to_json(kept),
                    by,
                    None if request.reason is None else self.redact_text(request.reason),
                    before,
                ],
            )
        self.checkpoint()
        # Vectors kept in memory by semantic search, if this process loaded any (importing
        # the module here would need numpy, which only the embeddings extra brings).
        vectors = sys.modules.get("datasette_claude_mem.storage.vectors")
        if vectors is not None and kept.get("embeddings"):
            vectors.drop_indexes(self.conn)
        row = self._one("SELECT * FROM tombstones WHERE id = ?", [tombstone_id])
        return Tombstone.model_validate(row)

    def tombstones(self, limit: int = 50) -> list[Tombstone]:
        """The newest forgets first."""
        rows = self._all(
            "SELECT * FROM tombstones ORDER BY created_at DESC, id DESC LIMIT ?", [limit]
        )
        return [Tombstone.model_validate(r) for r in rows]

    def project_holdings(self, project: str, limit: int = 200) -> dict[str, Any] | None:
        """What a project holds, which forgetting it would delete: rows per table, its
        latest sessions and its learnings and notes; None for a project never seen."""
        counts = {
            table: self._one(f"SELECT count(*) AS n FROM {table} WHERE project = ?", [project])["n"]
            for table in PROJECT_TABLES
        }
        if not any(counts.values()):
            return None
        sessions = self._all(
            "SELECT id, status, started_at, ended_at, observation_count, "
            "substr(summary, 1, 200) AS summary FROM sessions WHERE project = ? "
            "ORDER BY started_at DESC, id DESC LIMIT ?",
            [project, limit],
        )
        learnings = self._all(
            "SELECT id, category, is_active, substr(content, 1, 200) AS content FROM learnings "
            "WHERE project = ? ORDER BY updated_at DESC, id DESC LIMIT ?",
            [project, limit],
        )
        notes = self._all(
            "SELECT id, namespace, key, version, substr(value, 1, 200) AS value "
            "FROM memory_entries WHERE project = ? AND superseded_at IS NULL "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            [project, limit],
        )
        return {"counts": counts, "sessions": sessions, "learnings": learnings, "notes": notes}

    def _session_or_404(self, session_id: str | None) -> None:
        if self._one("SELECT 1 FROM sessions WHERE id = ?", [session_id]) is None:
            raise NotFound(f"no session with id {session_id!r}")

    def _erase_observation(
        self, conn: sqlite3.Connection, counts: dict[str, int], observation_id: str | None
    ) -> None:
        """An observation, the tool use it was made from with its payload, and the function
        map and call graph rows of files no other tool use of its session touched."""
        found = self._one(
            "SELECT o.session_id, o.queue_item_id, o.files_touched, s.project, s.project_dir "
            "FROM observations o JOIN sessions s ON s.id = o.session_id WHERE o.id = ?",
            [observation_id],
        )
        if found is None:
            return
        params = {"id": observation_id, "item": found["queue_item_id"]}
        others = self._all(
            "SELECT files_touched FROM observations WHERE session_id = :session AND id != :id "
            "UNION ALL SELECT files_touched FROM pending_queue WHERE session_id = :session "
            "AND id IS NOT :item",
            {**params, "session": found["session_id"]},
        )
        root = found["project_dir"]
        still_seen = {f for row in others for f in _files(row["files_touched"], root)}
        only_here = sorted(set(_files(found["files_touched"], root)) - still_seen)
        _erase_rows(conn, counts, "observations", "observation", "id = :id", params)
        if found["queue_item_id"] is not None:
            _erase_queue(conn, counts, "id = :item", params)
        for path in only_here:
            where = "session_id = :session AND {column} = :file"
            file_params = {"session": found["session_id"], "file": path}
            _delete(conn, counts, "function_map", where.format(column="file_path"), file_params)
            _erase_edges(conn, counts, where.format(column="caller_file"), file_params)

    def _erase_note(
        self, conn: sqlite3.Connection, counts: dict[str, int], entry_id: str | None
    ) -> None:
        """A note is forgotten with every version of its key, as the soft forget does."""
        _erase_rows(
            conn,
            counts,
            "memory_entries",
            "note",
            "(namespace, key) = (SELECT namespace, key FROM memory_entries WHERE id = :id)",
            {"id": entry_id},
        )


def _files(value: str | None, root: str | None) -> list[str]:
    """A tool use's files as the function map names them: relative to the project."""
    found = []
    for path in json_strings(value):
        candidate = PurePosixPath(path)
        if candidate.is_absolute() and root:
            with suppress(ValueError):
                candidate = candidate.relative_to(PurePosixPath(root))
        found.append(candidate.as_posix())
    return found


def _delete(
    conn: sqlite3.Connection, counts: dict[str, int], table: str, where: str, params: dict
) -> int:
    conn.execute(f"DELETE FROM {table} WHERE {where}", params)
    deleted = rows_changed(conn)
    counts[table] = counts.get(table, 0) + deleted
    return deleted


def _drop_vectors(
    conn: sqlite3.Connection, counts: dict[str, int], kind: str, ids_sql: str, params: dict
) -> None:
    """Vectors have no foreign key to their row: they go first, by the rows' ids."""
    _delete(conn, counts, "embeddings", f"kind = '{kind}' AND item_id IN ({ids_sql})", params)


def _erase_rows(
    conn: sqlite3.Connection,
    counts: dict[str, int],
    table: str,
    kind: str,
    where: str,
    params: dict,
) -> None:
    """Rows of a searchable table with their vectors."""
    _drop_vectors(conn, counts, kind, f"SELECT id FROM {table} WHERE {where}", params)
    _delete(conn, counts, table, where, params)


def _erase_queue(conn: sqlite3.Connection, counts: dict[str, int], where: str, params: dict):
    """Tool uses with their payloads (counted apart: the payload is what holds the output)."""
    _delete(
        conn,
        counts,
        "pending_payloads",
        f"item_id IN (SELECT id FROM pending_queue WHERE {where})",
        params,
    )
    _delete(conn, counts, "pending_queue", where, params)


def _erase_edges(conn: sqlite3.Connection, counts: dict[str, int], where: str, params: dict):
    """Call graph rows: one another session confirmed passes to the newest session whose
    function map still has the caller's file; the rest, seen only here, go."""
    conn.execute(
        f"""UPDATE call_graph SET times_confirmed = times_confirmed - 1, session_id = (
            SELECT fm.session_id FROM function_map fm
            WHERE fm.project = call_graph.project AND fm.file_path = call_graph.caller_file
            ORDER BY fm.updated_at DESC LIMIT 1)
        WHERE {where} AND times_confirmed > 0 AND EXISTS (
            SELECT 1 FROM function_map fm
            WHERE fm.project = call_graph.project AND fm.file_path = call_graph.caller_file
                AND NOT ({where.replace("session_id", "fm.session_id")}))""",
        params,
    )
    _delete(conn, counts, "call_graph", where, params)


def _erase_sessions(
    conn: sqlite3.Connection, counts: dict[str, int], sessions_sql: str, params: dict
) -> None:
    """Sessions and everything recorded in them: tool uses and payloads, observations,
    events and prompts, the function map and call graph rows. Learnings and notes a session
    made are memory on their own (their link to it is cleared): they are forgotten alone."""
    in_sessions = f"session_id IN ({sessions_sql})"
    _erase_rows(conn, counts, "observations", "observation", in_sessions, params)
    _erase_queue(conn, counts, in_sessions, params)
    _erase_rows(conn, counts, "prompts", "prompt", in_sessions, params)
    _delete(conn, counts, "event_log", in_sessions, params)
    _delete(conn, counts, "function_map", in_sessions, params)
    _erase_edges(conn, counts, in_sessions, params)
    _erase_rows(conn, counts, "sessions", "session", f"id IN ({sessions_sql})", params)


def _erase_scope(
    conn: sqlite3.Connection, counts: dict[str, int], scope: Scope, kinds: Iterable[str] | None
) -> None:
    """A project's rows, or rows created before a date, of the kinds asked for (all kinds
    when none are named), each table by its own project and time columns."""
    chosen = set(kinds or SCOPE_KINDS)
    params = scope.params
    if "session" in chosen:
        sessions = f"SELECT id FROM sessions WHERE {scope.where('started_at')}"
        _erase_sessions(conn, counts, sessions, params)
    if "observation" in chosen:
        _erase_rows(conn, counts, "observations", "observation", scope.where("created_at"), params)
        _erase_queue(conn, counts, scope.where("created_at"), params)
    if "event" in chosen:
        _erase_rows(conn, counts, "prompts", "prompt", scope.where("created_at"), params)
        _delete(conn, counts, "event_log", scope.where("created_at"), params)
    if "learning" in chosen:
        _erase_rows(conn, counts, "learnings", "learning", scope.where("created_at"), params)
    if "note" in chosen:
        _erase_rows(conn, counts, "memory_entries", "note", scope.where("created_at"), params)
    if "document" in chosen:
        _erase_rows(
            conn,
            counts,
            "doc_chunks",
            "doc",
            f"document_id IN (SELECT id FROM documents WHERE {scope.where('indexed_at')})",
            params,
        )
        _delete(conn, counts, "documents", scope.where("indexed_at"), params)
        _delete(conn, counts, "index_runs", scope.where("started_at"), params)
    if scope.project is not None and scope.before is None and chosen == set(SCOPE_KINDS):
        # Rows a project left with no session to hang on (the sessions went above).
        _delete(conn, counts, "function_map", "project = :project", params)
        _delete(conn, counts, "call_graph", "project = :project", params)


__all__ = [
    "ForgetOne",
    "ForgetRequest",
    "ForgetStore",
    "LearningDelete",
    "Scope",
    "StoreError",
    "Tombstone",
]
