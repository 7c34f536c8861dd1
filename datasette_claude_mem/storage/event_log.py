"""The event log: everything else that happened, with timings; prompts are read from it.

A mixin of the Store: its writes take the store's transactions and redaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.database import (
    to_json,
)
from datasette_claude_mem.storage.models import (
    EventLogEntry,
    new_id,
    utc_now,
)

if TYPE_CHECKING:
    pass


class EventLogStore:
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
        redacted: bool = False,
    ) -> EventLogEntry:
        """One event row; an event id already stored answers the stored row.

        ``redacted``: ``data`` has already been through this store's redactor."""
        row_id = event_id or new_id()
        payload = to_json((data or {}) if redacted else self.redact_value(data or {}))
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

    def turn_prompt(self, session_id: str, at: str) -> str | None:
        """The prompt a moment of a session served: the last one sent at or before it."""
        row = self.conn.execute(
            "SELECT prompt FROM prompts WHERE session_id = ? AND created_at <= ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            [session_id, at],
        ).fetchone()
        return row[0] if row else None

    def tokens_spent(self, spent_event: str, reserved_event: str, since: str) -> int:
        """Tokens logged since a moment: the tokens in and out of every `spent_event`, plus
        the estimate of every `reserved_event` that no `spent_event` has settled yet (its
        data's `reservation` names the reservation's id)."""
        row = self.conn.execute(
            """SELECT
                (SELECT coalesce(sum(coalesce(tokens_in, 0) + coalesce(tokens_out, 0)), 0)
                 FROM event_log WHERE event_type = :spent AND created_at >= :since)
              + (SELECT coalesce(sum(json_extract(r.data, '$.estimate')), 0)
                 FROM event_log r
                 WHERE r.event_type = :reserved AND r.created_at >= :since
                 AND NOT EXISTS (
                     SELECT 1 FROM event_log s
                     WHERE s.event_type = :spent AND s.created_at >= :since
                     AND json_extract(s.data, '$.reservation') = r.id))""",
            {"spent": spent_event, "reserved": reserved_event, "since": since},
        ).fetchone()
        return int(row[0] or 0)

    def query_events(
        self,
        event_type: str | None = None,
        session_id: str | None = None,
        project: str | None = None,
        limit: int = 100,
        *,
        oldest_first: bool = False,
    ) -> list[EventLogEntry]:
        """Events newest first (or oldest first), filtered by type, session and project."""
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
        order = "" if oldest_first else " DESC"
        sql += f" ORDER BY created_at{order}, id{order} LIMIT ?"
        return [EventLogEntry.model_validate(r) for r in self._all(sql, [*params, limit])]
