"""Observations: the compressed accounts of tool use, with their embeddings.

A mixin of the Store: its writes take the store's transactions and redaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from datasette_claude_mem.storage.database import (
    Saved,
    hash_of,
    rows_changed,
    to_json,
)
from datasette_claude_mem.storage.errors import NotFound
from datasette_claude_mem.storage.models import (
    Observation,
    ObservationCreate,
    encode_embedding,
    new_id,
    utc_now,
)

if TYPE_CHECKING:
    pass


_OBSERVATIONS = TypeAdapter(list[Observation])


_COLUMNS_WITHOUT_EMBEDDING = ", ".join(n for n in Observation.model_fields if n != "embedding")


def _observation_columns(with_embeddings: bool) -> str:
    return "*" if with_embeddings else _COLUMNS_WITHOUT_EMBEDDING


class ObservationStore:
    def create_observation(
        self, data: ObservationCreate, *, created_at: str | None = None
    ) -> Saved:
        """Store an observation once: the same content posted again returns the first row.

        ``created_at`` keeps the time of an observation brought in from elsewhere."""
        title = self.redact_text(data.title)
        summary = self.redact_text(data.summary)
        detail = self.redact_text(data.detail) if data.detail is not None else None
        content_hash = hash_of(
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
                "embedding_version, created_at, agent_id, agent_type, type) "
                "SELECT ?, project, id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
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
                    data.type,
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

    def latest_observations(self, session_id: str, limit: int = 100) -> list[Observation]:
        """A session's newest ``limit`` observations that are not forgotten, oldest first:
        what a summary of the session may say, its latest part when it is long."""
        rows = self._all(
            f"SELECT {_observation_columns(False)} FROM observations "
            "WHERE session_id = ? AND forgotten_at IS NULL "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [session_id, limit],
        )
        return _OBSERVATIONS.validate_python(rows[::-1])

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
            if rows_changed(conn) == 0:
                raise NotFound(f"observation {observation_id!r} does not exist")
