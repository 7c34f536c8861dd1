"""Sessions: started, updated, closed, and what the context was last given.

A mixin of the Store: its writes take the store's transactions and redaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasette_claude_mem.storage.database import (
    Saved,
    rows_changed,
)
from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import (
    Session,
    SessionStart,
    SessionStatus,
    SessionUpdate,
    format_ts,
    new_id,
    utc_now,
)
from datasette_claude_mem.storage.project import project_key

if TYPE_CHECKING:
    pass


class SessionStore:
    def _session_project(self, session_id: str) -> str:
        row = self.conn.execute("SELECT project FROM sessions WHERE id = ?", [session_id])
        found = row.fetchone()
        if found is None:
            raise NotFound(f"session {session_id!r} does not exist")
        return found[0]

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
            if rows_changed(conn) == 0:
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
