"""claude-mem's database, recognised and read: never written, and brought into this memory.

claude-mem (the Claude Code plugin) keeps sessions in sdk_sessions, what its agent observed
in observations, an end-of-session account in session_summaries and the person's prompts in
user_prompts. Its project is a folder's name; here a project is a repository's key, so a
name is mapped to the key of a folder of that name that still exists (found among the
observations' file paths or this memory's own projects), and kept as it is otherwise.

Importing twice adds nothing: sessions keep Claude Code's session id, prompts get ids made
from their place in claude-mem, and observations are stored once by content.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasette_claude_mem.storage.database import foreign_tables
from datasette_claude_mem.storage.kinds import ObservationType
from datasette_claude_mem.storage.models import (
    ObservationCreate,
    SessionStart,
    SessionStatus,
    SessionUpdate,
    format_ts,
)
from datasette_claude_mem.storage.project import project_key
from datasette_claude_mem.storage.store import Store

SOURCE = "claude-mem"
REQUIRED_TABLES = {"sdk_sessions", "observations"}
# Prompt ids are made in this namespace from their place in claude-mem, so that a second
# import (or an import of a copy of the file) finds them already there.
ID_NAMESPACE = uuid.UUID("5b0f3c8e-9a51-4d2b-8f6e-3c1d7a2e9b40")
SUMMARY_PARTS = (
    ("request", "Request"),
    ("completed", "Completed"),
    ("learned", "Learned"),
    ("investigated", "Investigated"),
    ("next_steps", "Next steps"),
    ("notes", "Notes"),
)
TEXT_MAX = 4000


class NotClaudeMem(Exception):
    """The file is not a claude-mem database (or cannot be read as one)."""


@dataclass
class Found:
    """What a claude-mem database holds, counted."""

    path: Path
    sessions: int
    observations: int


@dataclass
class ImportReport:
    sessions: int = 0
    prompts: int = 0
    observations: int = 0
    summaries: int = 0
    skipped: int = 0
    projects: dict[str, str] = field(default_factory=dict)

    def as_text(self) -> str:
        return (
            f"{self.sessions} sessions, {self.prompts} prompts, {self.observations} "
            f"observations and {self.summaries} session summaries added"
            + (f"; {self.skipped} rows skipped (no session)" if self.skipped else "")
        )


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, whatever is asked of it.

    Without a WAL file beside the database, the file alone holds everything: it is opened
    immutable, since a read-only connection to a WAL database would otherwise create the
    -wal and -shm files beside it.
    """
    if not path.is_file():
        raise NotClaudeMem(f"{path} does not exist")
    wal = Path(f"{path}-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, timeout=5)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    conn.row_factory = sqlite3.Row
    return conn


def inspect(path: Path) -> Found | None:
    """claude-mem's database at path, counted; None if the file is anything else."""
    try:
        conn = open_read_only(path)
    except (NotClaudeMem, sqlite3.Error):
        return None
    try:
        tables = set(foreign_tables(conn))
        if not tables >= REQUIRED_TABLES:
            return None
        sessions = conn.execute("SELECT count(*) FROM sdk_sessions").fetchone()[0]
        observations = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        return Found(path, sessions, observations)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _when(epoch_ms: Any, text: Any) -> str | None:
    """claude-mem's time of a row: its epoch milliseconds, or its ISO text."""
    if isinstance(epoch_ms, int | float) and not isinstance(epoch_ms, bool) and epoch_ms > 0:
        return format_ts(datetime.fromtimestamp(epoch_ms / 1000, UTC))
    if isinstance(text, str) and text:
        try:
            return format_ts(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _json_list(value: Any) -> list[str]:
    if not value:
        return []
    try:
        items = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return [str(value)]
    return [str(i) for i in items if i] if isinstance(items, list) else []


def _clip(text: str, limit: int = TEXT_MAX) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class ProjectMapper:
    """claude-mem's project names to this memory's project keys, worked out once each."""

    def __init__(self, conn: sqlite3.Connection, store: Store, observation_columns: set[str]):
        self.conn = conn
        self.ours = store.projects()
        self.path_columns = [
            c for c in ("files_read", "files_modified") if c in observation_columns
        ]
        self.found: dict[str, tuple[str, str]] = {}

    def __call__(self, name: str) -> tuple[str, str]:
        """(project key, project directory) for a claude-mem project name."""
        if name not in self.found:
            folder = self._folder(name)
            self.found[name] = (project_key(folder), str(folder)) if folder else (name, name)
        return self.found[name]

    def _folder(self, name: str) -> Path | None:
        as_path = Path(name).expanduser()
        if as_path.is_absolute() and as_path.is_dir():
            return as_path
        for key in self.ours:  # a repository this memory already knows by that name
            if Path(key).name == name and Path(key).is_dir():
                return Path(key)
        if not self.path_columns:
            return None
        rows = self.conn.execute(
            f"SELECT {', '.join(self.path_columns)} FROM observations WHERE project = ? "
            "ORDER BY id DESC LIMIT 200",
            [name],
        )
        for row in rows:
            for column in row:
                for path in _json_list(column):
                    for parent in Path(path).parents:
                        if parent.name == name and parent.is_dir():
                            return parent
        return None


def _summary_text(row: sqlite3.Row) -> str:
    keys = row.keys()
    parts = [f"{label}: {row[k].strip()}" for k, label in SUMMARY_PARTS if k in keys and row[k]]
    return _clip("\n".join(parts))


def _observation(row: sqlite3.Row, session_id: str) -> ObservationCreate:
    keys = set(row.keys())

    def get(name: str) -> str:
        value = row[name] if name in keys else None
        return value.strip() if isinstance(value, str) else ""

    text = get("text")
    title = get("title") or get("subtitle") or (text.splitlines()[0] if text else "") or "note"
    summary = get("subtitle") or get("narrative") or text
    facts = "\n".join(f"- {fact}" for fact in _json_list(row["facts"] if "facts" in keys else None))
    detail = "\n\n".join(part for part in (get("narrative"), facts, text) if part) or None
    files = _json_list(row["files_read"] if "files_read" in keys else None)
    files += _json_list(row["files_modified"] if "files_modified" in keys else None)
    return ObservationCreate(
        session_id=session_id,
        tool_name=f"{SOURCE}:{get('type') or 'observation'}",
        title=_clip(title, 200),
        summary=_clip(summary, 1000),
        detail=_clip(detail) if detail else None,
        files_touched=list(dict.fromkeys(files)),
        agent_id=get("agent_id") or None,
        agent_type=get("agent_type") or None,
        # claude-mem's types are among ours (bugfix, feature, refactor, change, discovery...).
        type=get("type") if get("type") in _TYPES else None,
    )


_TYPES = frozenset(ObservationType)


def import_claude_mem(store: Store, source: Path) -> ImportReport:
    """Bring a claude-mem database's memory into the store, in one transaction."""
    if inspect(source) is None:
        raise NotClaudeMem(f"{source} is not a claude-mem database")
    conn = open_read_only(source)
    try:
        tables = set(foreign_tables(conn))
        observation_columns = _columns(conn, "observations")
        projects = ProjectMapper(conn, store, observation_columns)
        report = ImportReport()
        with store.write():
            by_memory_id = _import_sessions(conn, store, tables, projects, report)
            if "user_prompts" in tables:
                _import_prompts(conn, store, by_memory_id, report)
            for row in conn.execute("SELECT * FROM observations ORDER BY id"):
                target = by_memory_id.get(row["memory_session_id"])
                if target is None:
                    report.skipped += 1
                    continue
                saved = store.create_observation(
                    _observation(row, target[0]),
                    created_at=_when(row["created_at_epoch"], row["created_at"]),
                )
                report.observations += saved.created
        report.projects = {name: key for name, (key, _) in projects.found.items()}
        return report
    finally:
        conn.close()


def _latest_summaries(conn: sqlite3.Connection, tables: set[str]) -> dict[str, sqlite3.Row]:
    if "session_summaries" not in tables:
        return {}
    latest: dict[str, sqlite3.Row] = {}
    for row in conn.execute("SELECT * FROM session_summaries ORDER BY created_at_epoch, id"):
        latest[row["memory_session_id"]] = row  # the last one of a session wins
    return latest


def _import_sessions(
    conn: sqlite3.Connection,
    store: Store,
    tables: set[str],
    projects: ProjectMapper,
    report: ImportReport,
) -> dict[Any, tuple[str, str]]:
    """Each claude-mem session as a session here; returns memory_session_id -> (id, project)."""
    summaries = _latest_summaries(conn, tables)
    by_memory_id: dict[Any, tuple[str, str]] = {}
    for row in conn.execute("SELECT * FROM sdk_sessions ORDER BY id"):
        session_id = str(row["content_session_id"])
        key, folder = projects(str(row["project"]))
        summary_row = summaries.get(row["memory_session_id"])
        summary = _summary_text(summary_row) if summary_row is not None else ""
        existing = store.get_session(session_id)
        if existing is None:
            store.create_session(
                SessionStart(
                    id=session_id, project_dir=folder, project=key, summary=summary or None
                ),
                started_at=_when(row["started_at_epoch"], row["started_at"]),
            )
            ended = _when(row["completed_at_epoch"], row["completed_at"])
            status = SessionStatus.ERROR if row["status"] == "failed" else SessionStatus.CLOSED
            store.update_session(
                session_id,
                SessionUpdate(
                    status=status, ended_at=datetime.fromisoformat(ended) if ended else None
                ),
            )
            report.sessions += 1
            report.summaries += bool(summary)
        elif summary and not existing.summary:
            store.update_session(session_id, SessionUpdate(summary=summary))
            report.summaries += 1
        target = (session_id, existing.project if existing else key)
        if row["memory_session_id"] is not None:
            by_memory_id[row["memory_session_id"]] = target
        by_memory_id.setdefault(("content", session_id), target)
    return by_memory_id


def _import_prompts(
    conn: sqlite3.Connection,
    store: Store,
    by_memory_id: dict[Any, tuple[str, str]],
    report: ImportReport,
) -> None:
    for row in conn.execute("SELECT * FROM user_prompts ORDER BY id"):
        session_id = str(row["content_session_id"])
        target = by_memory_id.get(("content", session_id))
        if target is None:
            report.skipped += 1
            continue
        place = (
            f"{SOURCE}:user_prompts:{session_id}:{row['prompt_number']}:{row['created_at_epoch']}"
        )
        event_id = str(uuid.uuid5(ID_NAMESPACE, place))
        if store.has_event(event_id):
            continue
        store.log_event(
            "UserPromptSubmit",
            {"prompt": row["prompt_text"], "imported_from": SOURCE},
            session_id=session_id,
            project=target[1],
            event_id=event_id,
            created_at=_when(row["created_at_epoch"], row["created_at"]),
        )
        report.prompts += 1
