"""The durable queue of raw tool uses: enqueue, claim under a lease, complete or fail, retry, stats.

A mixin of the Store: its writes take the store's transactions and redaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.database import (
    Saved,
    rows_changed,
    to_json,
    utf8_length,
)
from datasette_claude_mem.storage.errors import LeaseLost, NotFound
from datasette_claude_mem.storage.models import (
    Observation,
    ObservationCreate,
    QueueItem,
    QueueItemCreate,
    QueueStats,
    format_ts,
    new_id,
    utc_now,
)
from datasette_claude_mem.storage.queries import QUERY_SQL

if TYPE_CHECKING:
    pass


class QueueStore:
    def enqueue(self, data: QueueItemCreate, *, redacted: bool = False) -> Saved:
        """Queue a raw tool use; the same (session, tool_use_id) again adds nothing.

        ``redacted``: the caller has already redacted it with this store's redactor (the hook
        path does, value by value, to count what it took)."""
        raw_output = data.raw_output if redacted else self.redact_text(data.raw_output)
        tool_input = data.tool_input if redacted else self.redact_value(data.tool_input)
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
                    data.raw_bytes if data.raw_bytes is not None else utf8_length(data.raw_output),
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

    def claim(
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
                row["prompt"] = self.turn_prompt(row["session_id"], row["created_at"])
        return [QueueItem.model_validate(r) for r in rows]

    def release_leases(self, worker: str) -> int:
        """Give back every item this worker holds (it is stopping): they wait again at once,
        and the claim that never finished does not count as an attempt. Returns how many."""
        now = utc_now()
        with self.write() as conn:
            conn.execute(
                "UPDATE pending_queue SET status = 'raw', attempts = max(attempts - 1, 0), "
                "lease_owner = NULL, lease_expires_at = NULL, available_at = ?1, "
                "updated_at = ?1 WHERE status = 'processing' AND lease_owner = ?2",
                [now, worker],
            )
            return rows_changed(conn)

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

    def newer_item_done(self, item: QueueItem) -> bool:
        """Whether a later item of the same session and tool is already done: a retried
        summary item then has nothing newer to say than what that one wrote."""
        return bool(
            self._one(
                "SELECT 1 FROM pending_queue AS later, pending_queue AS this "
                "WHERE this.id = ? AND later.session_id = this.session_id "
                "AND later.tool_name = this.tool_name AND later.status = 'done' "
                "AND (later.created_at, later.id) > (this.created_at, this.id) LIMIT 1",
                [item.id],
            )
        )

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
            return rows_changed(conn)

    def queue_stats(self, project: str | None = None) -> QueueStats:
        """The queue's health, by the same SQL as the queue_stats stored query."""
        row = self._one(QUERY_SQL["queue_stats"], {"project": project or ""})
        assert row is not None
        return QueueStats(
            project=project,
            waiting=row["waiting"],
            processing=row["in_progress"],
            done=row["done"],
            failed=row["failed"],
            dead_letters=row["dead_letters"],
            retries=row["retries"],
            oldest_waiting_age_seconds=row["oldest_waiting_age_seconds"],
        )
