"""What the HTML pages show, read as plain rows: the overview of the whole memory, one
session's rows, and the rows related to a row.

The pages run these on Datasette's read connections (through a store made on one) and build
charts, links and timelines from what comes back; nothing here knows about HTML. The rows
are read with the store's own row helpers, and the queue's counts with the same SQL as the
`queue_stats` stored query, so a page never disagrees with the API or the query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.kinds import SUMMARY_ITEM_TOOL
from datasette_claude_mem.storage.queries import QUERY_SQL

if TYPE_CHECKING:
    from datasette_claude_mem.storage.store import Store

# A queue item that is a tool use: not a summary item a Stop left.
_TOOL_USE = f"tool_name != '{SUMMARY_ITEM_TOOL}'"
# The day (UTC) each kind of activity is counted on, from `since` (an ISO date) on.
_PER_DAY = {
    "tool_uses": "SELECT substr(created_at, 1, 10), count(*) FROM pending_queue "
    f"WHERE created_at >= ? AND {_TOOL_USE} GROUP BY 1",
    "observations": "SELECT substr(created_at, 1, 10), count(*) FROM observations "
    "WHERE created_at >= ? GROUP BY 1",
    "sessions": "SELECT substr(started_at, 1, 10), count(*) FROM sessions "
    "WHERE started_at >= ? GROUP BY 1",
    "prompts": "SELECT substr(created_at, 1, 10), count(*) FROM event_log "
    "WHERE event_type = 'UserPromptSubmit' AND created_at >= ? GROUP BY 1",
}
ACTIVITY_KINDS = tuple(_PER_DAY)

_SESSION_BRIEF = "SELECT id, status, started_at FROM sessions WHERE id = ?"


def _counts(store: Store, sql: str, params: Sequence[Any] = ()) -> dict[Any, int]:
    """A two-column GROUP BY as {key: count}."""
    return dict(store.conn.execute(sql, params).fetchall())


def projects(store: Store) -> list[dict[str, Any]]:
    """Every project the memory knows, most recently active first, with its counts."""
    sessions = {
        r["project"]: r
        for r in store._all(
            "SELECT project, count(*) AS sessions, max(started_at) AS last_started "
            "FROM sessions GROUP BY project"
        )
    }
    observations = _counts(store, "SELECT project, count(*) FROM observations GROUP BY project")
    learnings = _counts(
        store,
        "SELECT project, count(*) FROM learnings WHERE is_active = 1 AND project IS NOT NULL "
        "GROUP BY project",
    )
    found = [
        {
            "project": name,
            "sessions": sessions.get(name, {}).get("sessions", 0),
            "observations": observations.get(name, 0),
            "learnings": learnings.get(name, 0),
            "last_started": sessions.get(name, {}).get("last_started"),
        }
        for name in set(sessions) | set(observations) | set(learnings)
    ]
    found.sort(key=lambda p: (p["last_started"] or "", p["project"]), reverse=True)
    return found


def activity(store: Store, since: str) -> dict[str, dict[str, int]]:
    """Tool uses, observations, sessions and prompts per UTC day ('YYYY-MM-DD') since a day;
    days with nothing are absent."""
    return {kind: _counts(store, sql, [since]) for kind, sql in _PER_DAY.items()}


def queue_state(store: Store) -> dict[str, Any]:
    """The queue's counts by state (the queue_stats query's row, its oldest waiting item's
    age as `oldest_waiting_seconds`) and the last worker batch logged, its data decoded."""
    row = store._one(QUERY_SQL["queue_stats"], {"project": ""})
    assert row is not None  # an aggregate always has its one row
    row["oldest_waiting_seconds"] = row.pop("oldest_waiting_age_seconds")
    batch = store._one(
        "SELECT * FROM event_log WHERE event_type = 'worker_batch' "
        "ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    if batch is not None:
        try:
            batch["data"] = json.loads(batch["data"] or "{}")
        except ValueError:
            batch["data"] = {}
    row["last_batch"] = batch
    return row


def table_counts(store: Store, tables: Sequence[str]) -> dict[str, int]:
    """Rows in each of these tables (names the code gives, never a person's input)."""
    return {
        name: store.conn.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0] for name in tables
    }


def recent_sessions(store: Store, limit: int = 12) -> list[dict[str, Any]]:
    """The latest sessions, newest first, each with its first prompt."""
    sessions = store._all(
        "SELECT * FROM sessions ORDER BY started_at DESC, id DESC LIMIT ?", [limit]
    )
    for session in sessions:
        session["first_prompt"] = store.first_prompt(session["id"])
    return sessions


def top_learnings(store: Store, limit: int = 15) -> list[dict[str, Any]]:
    """Active learnings, the most confident (then the latest) first."""
    return store._all(
        "SELECT * FROM learnings WHERE is_active = 1 "
        "ORDER BY confidence DESC, updated_at DESC, id DESC LIMIT ?",
        [limit],
    )


def active_learning_count(store: Store) -> int:
    return store.conn.execute("SELECT count(*) FROM learnings WHERE is_active = 1").fetchone()[0]


def session_rows(store: Store, session_id: str, limit: int) -> dict[str, Any] | None:
    """One session and what happened in it, oldest first, at most `limit` rows of each kind:
    its events (tool uses are the queue's rows, not their PostToolUse events), tool uses,
    observations, functions and learnings, with the full counts. None if no such session."""
    session = store._one("SELECT * FROM sessions WHERE id = ?", [session_id])
    if session is None:
        return None
    totals = store._one(
        f"""SELECT
            (SELECT count(*) FROM event_log WHERE session_id = :s
                AND +event_type = 'UserPromptSubmit') AS prompts,
            (SELECT count(*) FROM event_log WHERE session_id = :s
                AND event_type != 'PostToolUse') AS events,
            (SELECT count(*) FROM pending_queue WHERE session_id = :s
                AND {_TOOL_USE}) AS tool_uses,
            (SELECT count(*) FROM observations WHERE session_id = :s) AS observations""",
        {"s": session_id},
    )
    return {
        "session": session,
        "events": store._all(
            "SELECT * FROM event_log WHERE session_id = ? AND event_type != 'PostToolUse' "
            "ORDER BY created_at, id LIMIT ?",
            [session_id, limit],
        ),
        "tool_uses": store._all(
            "SELECT id, tool_name, tool_use_id, files_touched, status, attempts, max_attempts, "
            "last_error, raw_bytes, created_at, agent_id, agent_type, failure "
            f"FROM pending_queue WHERE session_id = ? AND {_TOOL_USE} "
            "ORDER BY created_at, id LIMIT ?",
            [session_id, limit],
        ),
        "observations": store._all(
            "SELECT id, tool_name, type, title, summary, files_touched, functions_changed, "
            "tokens_raw, tokens_compressed, created_at, agent_id, agent_type "
            "FROM observations WHERE session_id = ? "
            "ORDER BY created_at, id LIMIT ?",
            [session_id, limit],
        ),
        "functions": store._all(
            "SELECT id, file_path, qualified_name, kind, signature, change_type, updated_at "
            "FROM function_map WHERE session_id = ? ORDER BY file_path, qualified_name",
            [session_id],
        ),
        "learnings": store._all(
            "SELECT * FROM learnings WHERE source_session_id = ? ORDER BY created_at, id",
            [session_id],
        ),
        "totals": totals,
    }


def _observation_relations(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    related: dict[str, Any] = {"session": store._one(_SESSION_BRIEF, [row["session_id"]])}
    if row["queue_item_id"]:
        related["queue_item"] = store._one(
            "SELECT id, status, tool_name FROM pending_queue WHERE id = ?", [row["queue_item_id"]]
        )
    return related


def _queue_relations(
    store: Store, row: dict[str, Any], payload_chars: int | None
) -> dict[str, Any]:
    related: dict[str, Any] = {
        "session": store._one(_SESSION_BRIEF, [row["session_id"]]),
        "observations": store._all(
            "SELECT id, title FROM observations WHERE queue_item_id = ? ORDER BY id", [row["id"]]
        ),
    }
    if payload_chars is not None:
        related["payload"] = store._one(
            "SELECT tool_input, substr(raw_output, 1, ?) AS raw_output, "
            "length(CAST(raw_output AS BLOB)) AS raw_output_bytes "
            "FROM pending_payloads WHERE item_id = ?",
            [payload_chars, row["id"]],
        )
    return related


def _learning_relations(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    if not row["source_session_id"]:
        return {}
    return {"session": store._one(_SESSION_BRIEF, [row["source_session_id"]])}


RELATED_TABLES = ("observations", "learnings", "pending_queue", "sessions")


def row_with_relations(
    store: Store, table: str, pk: str, payload_chars: int | None = None
) -> dict[str, Any] | None:
    """A row of one of RELATED_TABLES as `row`, beside the rows it links to: its session,
    its queue item or observations, and (for a queue item, when `payload_chars` is given)
    its payload with the first `payload_chars` characters of the output and the output's
    full size in bytes. None if there is no such row."""
    if table not in RELATED_TABLES:
        return None
    row = store._one(f"SELECT * FROM [{table}] WHERE id = ?", [pk])
    if row is None:
        return None
    if table == "observations":
        related = _observation_relations(store, row)
    elif table == "pending_queue":
        related = _queue_relations(store, row, payload_chars)
    elif table == "learnings":
        related = _learning_relations(store, row)
    else:
        related = {}
    return {**related, "row": row}
