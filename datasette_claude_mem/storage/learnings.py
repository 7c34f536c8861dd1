"""Learnings: what was learned about a project, with a confidence.

A mixin of the Store: its writes take the store's transactions and redaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.database import (
    Saved,
    rows_changed,
    to_json,
)
from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import (
    Learning,
    LearningCreate,
    LearningUpdate,
    new_id,
    utc_now,
)

if TYPE_CHECKING:
    pass


class LearningStore:
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
                "source_session_id, is_active, created_at, updated_at, functions) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                [
                    row_id,
                    data.project,
                    str(data.category),
                    content,
                    data.confidence,
                    data.source_session_id,
                    now,
                    now,
                    to_json([self.redact_text(name) for name in data.functions]),
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
        if "functions" in changes:
            changes["functions"] = to_json([self.redact_text(n) for n in changes["functions"]])
        changes["updated_at"] = utc_now()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self.write() as conn:
            conn.execute(
                f"UPDATE learnings SET {assignments} WHERE id = ?",
                [*changes.values(), learning_id],
            )
            if rows_changed(conn) == 0:
                raise NotFound(f"learning {learning_id!r} does not exist")
        learning = self.get_learning(learning_id)
        assert learning is not None
        return learning

    def soft_delete_learning(self, learning_id: str) -> Learning:
        """Retire a learning: it leaves the context and search but stays for the record."""
        return self.update_learning(learning_id, LearningUpdate(is_active=False))
