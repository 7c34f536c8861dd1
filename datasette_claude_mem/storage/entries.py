"""What an agent saves on purpose and what it forgets: the store's memory entries (a version
per save of a namespace and key, the history kept) and the soft delete of learnings,
observations and entries with who, when and why.

A mixin of the Store, so that these writes take the same transactions and redaction as
every other; kept apart so that the store's own file stays about its own tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from datasette_claude_mem.storage.errors import NotFound, StoreError
from datasette_claude_mem.storage.models import (
    Forgotten,
    MemoryEntry,
    MemoryEntrySave,
    new_id,
    utc_now,
)


class SavedEntry(NamedTuple):
    """An entry after a save, and whether this save made it (as the store's Saved)."""

    row: MemoryEntry
    created: bool


def _changes(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT changes()").fetchone()[0]


class EntryStore:
    """Needs the Store's write(), _one(), _all(), redact_text and _session_project()."""

    write: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _one: Callable[[str, Sequence[Any] | dict[str, Any]], dict | None]
    _all: Callable[[str, Sequence[Any] | dict[str, Any]], list[dict]]
    redact_text: Callable[[str], str]
    _session_project: Callable[[str], str]

    def save_entry(self, data: MemoryEntrySave) -> SavedEntry:
        """Save a versioned entry: a new version supersedes the key's current one; saving
        the value the key already holds changes nothing."""
        value = self.redact_text(data.value)
        now = utc_now()
        with self.write() as conn:
            if data.session_id is not None:
                self._session_project(data.session_id)
            current = self._one(
                "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? "
                "ORDER BY version DESC LIMIT 1",
                [data.namespace, data.key],
            )
            if (
                current is not None
                and current["value"] == value
                and current["forgotten_at"] is None
                and current["kind"] == str(data.kind)
                and current["category"] == data.category
                and current["confidence"] == data.confidence
            ):
                return SavedEntry(MemoryEntry.model_validate(current), False)
            row_id = new_id()
            conn.execute(
                "UPDATE memory_entries SET superseded_at = ? "
                "WHERE namespace = ? AND key = ? AND superseded_at IS NULL",
                [now, data.namespace, data.key],
            )
            conn.execute(
                "INSERT INTO memory_entries (id, project, namespace, key, version, kind, "
                "category, confidence, value, session_id, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    row_id,
                    data.project,
                    data.namespace,
                    data.key,
                    (current["version"] if current else 0) + 1,
                    str(data.kind),
                    data.category,
                    data.confidence,
                    value,
                    data.session_id,
                    data.created_by,
                    now,
                ],
            )
        entry = self.get_entry(row_id)
        assert entry is not None
        return SavedEntry(entry, True)

    def get_entry(self, entry_id: str) -> MemoryEntry | None:
        row = self._one("SELECT * FROM memory_entries WHERE id = ?", [entry_id])
        return MemoryEntry.model_validate(row) if row else None

    def entry_history(self, namespace: str, key: str) -> list[MemoryEntry]:
        """Every version of a key, newest first, forgotten ones included."""
        rows = self._all(
            "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? ORDER BY version DESC",
            [namespace, key],
        )
        return [MemoryEntry.model_validate(r) for r in rows]

    def forget(self, row_id: str, reason: str, by: str) -> Forgotten:
        """Retire a learning, an observation or an entry (every version of its key), saying
        who, when and why: it leaves the context and search at once, and stays on record."""
        if not reason.strip():
            raise StoreError("a reason is required to forget something")
        now = utc_now()
        marks = "forgotten_at = :now, forgotten_by = :by, forgotten_reason = :reason"
        params = {"id": row_id, "now": now, "by": by, "reason": self.redact_text(reason)}
        with self.write() as conn:
            conn.execute(
                f"UPDATE learnings SET is_active = 0, updated_at = :now, {marks} WHERE id = :id",
                params,
            )
            kind = "learning" if _changes(conn) else None
            if kind is None:
                conn.execute(f"UPDATE observations SET {marks} WHERE id = :id", params)
                kind = "observation" if _changes(conn) else None
            if kind is None:
                conn.execute(
                    f"UPDATE memory_entries SET {marks} WHERE forgotten_at IS NULL AND "
                    "(namespace, key) = (SELECT namespace, key FROM memory_entries WHERE id = :id)",
                    params,
                )
                found = _changes(conn) or self._one(
                    "SELECT 1 FROM memory_entries WHERE id = ?", [row_id]
                )
                kind = "entry" if found else None
            if kind is None:
                raise NotFound(f"nothing to forget with id {row_id!r}")
        return Forgotten(
            kind=kind,
            id=row_id,
            forgotten_at=now,
            forgotten_by=by,
            forgotten_reason=params["reason"],
        )
