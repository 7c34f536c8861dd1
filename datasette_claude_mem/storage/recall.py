"""The reads behind the MCP tools, over the store: what matches, what happened around a
row, the rows themselves, and what the memory knows about one file or function.

Search is the project's one search (storage/search.py) over five kinds, each ranked by its
own full-text index; this module only adds what a hit line shows (size, label, file).
Every read keeps to one project (global learnings and entries aside) and leaves out what
was forgotten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from datasette_claude_mem.storage.models import FunctionMapEntry
from datasette_claude_mem.storage.staleness import STALE_KINDS
from datasette_claude_mem.storage.store import Store

KINDS = ("observation", "learning", "note", "session", "prompt")
# The most rows `about` reads of a project's changed functions or learnings.
FETCH = 200


@dataclass
class Hit:
    kind: str
    id: str
    at: str
    title: str
    label: str = ""
    file: str = ""
    size: int = 0  # characters `get` would answer with
    rank: float = 0.0
    session_id: str | None = None
    stale: bool = False  # about code that changed since (storage/staleness.py)


@dataclass
class Record:
    """One row as `get` shows it: a heading and its fields, in order."""

    kind: str
    id: str
    project: str | None
    fields: dict[str, Any] = field(default_factory=dict)


def search(
    store: Store,
    project: str,
    query: str,
    *,
    kinds: list[str] | None = None,
    since: str | None = None,
    limit: int = 10,
    types: list[str] | None = None,
) -> list[Hit]:
    """Best first, every kind ranked by its full-text index in the project's one search.
    With `types`, only observations of those types."""
    wanted = tuple(kinds or KINDS)
    found = store.search(project, query, limit=limit, kinds=wanted, since=since, types=types)
    return _hits(store, found)


# What a hit needs beyond the search row: its size to `get` (in characters) and its label.
_EXTRA_SQL = {
    "observation": "SELECT id, tool_name, type, files_touched, length(title) + "
    "length(summary) + coalesce(length(detail), 0) AS size FROM observations",
    "learning": "SELECT id, category AS label, length(content) AS size FROM learnings",
    "note": "SELECT id, namespace, key, length(value) AS size FROM memory_entries",
    "session": "SELECT id, 'summary' AS label, summary AS text, length(summary) AS size "
    "FROM sessions",
    "prompt": "SELECT id, 'prompt' AS label, prompt AS text, length(prompt) AS size FROM prompts",
}


def _extras(store: Store, kind: str, ids: list[str]) -> dict[str, dict]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = store._all(f"{_EXTRA_SQL[kind]} WHERE id IN ({marks})", ids)
    return {row["id"]: row for row in rows}


def _hits(store: Store, found: list) -> list[Hit]:
    """Search rows as the tools list them, each looked up by id (ten rows, not a scan)."""
    extra: dict[str, dict] = {}
    for kind in KINDS:
        extra |= _extras(store, kind, [h.id for h in found if h.kind == kind])
    hits = []
    for h in found:
        row = extra.get(h.id, {})
        title, label, file = h.title, row.get("label") or "", h.file or ""
        if h.kind == "observation":
            files = json.loads(row.get("files_touched") or "[]")
            file = files[0] if files else ""
            label = _label(row)
        elif h.kind in ("learning", "note"):
            title = h.snippet  # what it says, around the words asked for
            if h.kind == "note":
                label = _entry_label(row.get("namespace", ""), row.get("key", ""))
        else:
            title = row.get("text") or title
        hits.append(
            Hit(h.kind, h.id, h.created_at.isoformat(), title, label, file,
                row.get("size") or 0, h.rank, h.session_id, h.stale)
        )  # fmt: skip
    return hits


def _label(row: dict) -> str:
    """An observation's type and tool, as in bugfix/Edit; its tool alone when untyped."""
    tool = row.get("tool_name") or ""
    return f"{row['type']}/{tool}" if row.get("type") else tool


def _entry_label(namespace: str, key: str) -> str:
    """A key the agent chose is worth its tokens; a generated one (an id) is not."""
    return f"{namespace}#{key}" if len(key) < 30 else namespace


# Rows by id


_RECORD_SQL = {
    "observation": "SELECT id, project, session_id, created_at, type, tool_name, title, summary, "
    "detail, files_touched, functions_changed, forgotten_at, forgotten_by, forgotten_reason "
    "FROM observations WHERE id = ?",
    "learning": "SELECT id, project, source_session_id AS session_id, created_at, category, "
    "confidence, content, functions, is_active, forgotten_at, forgotten_by, "
    "forgotten_reason FROM learnings WHERE id = ?",
    "note": "SELECT id, project, session_id, created_at, namespace, key, version, kind, "
    "category, confidence, value, superseded_at, created_by, forgotten_at, forgotten_by, "
    "forgotten_reason FROM memory_entries WHERE id = ?",
    "session": "SELECT id, project, id AS session_id, started_at AS created_at, ended_at, "
    "status, project_dir, observation_count, summary FROM sessions WHERE id = ?",
    "prompt": "SELECT id, project, session_id, created_at, json_extract(data, '$.prompt') "
    "AS prompt FROM event_log WHERE id = ? AND event_type = 'UserPromptSubmit'",
}


def record(store: Store, row_id: str) -> Record | None:
    """The row with this id, whichever kind it is."""
    for kind, sql in _RECORD_SQL.items():
        row = store._one(sql, [row_id])
        if row is not None:
            fields = {k: v for k, v in row.items() if v is not None and k not in ("id", "project")}
            for name in ("files_touched", "functions_changed", "functions"):
                if name in fields:
                    fields[name] = ", ".join(json.loads(fields[name])) or None
            if kind in STALE_KINDS and store.stale_ids(kind, [row_id]):
                fields = {"stale": "the code it is about changed since", **fields}
            return Record(kind, row_id, row["project"], {k: v for k, v in fields.items() if v})
    return None


# Timeline


_ITEMS = """SELECT 'observation' AS kind, id, created_at,
        coalesce(type || '/', '') || tool_name AS label, title,
        files_touched AS files
    FROM observations WHERE {scope} AND forgotten_at IS NULL
    UNION ALL
    SELECT 'prompt', id, created_at, 'prompt', json_extract(data, '$.prompt'), '[]'
    FROM event_log WHERE {scope} AND event_type = 'UserPromptSubmit'"""


def timeline(
    store: Store, anchor: Record | None, session_id: str | None, before: int, after: int
) -> list[Hit]:
    """Rows of the anchor's session (or, for a row without one, its project) just before
    and after it, oldest first; the anchor itself is among them when it is listed there."""
    at = str((anchor.fields.get("created_at") if anchor else None) or "")
    session = session_id or (anchor.fields.get("session_id") if anchor else None)
    if session:
        scope, value = "session_id = :value", session
    else:
        assert anchor is not None
        scope, value = "project = :value", anchor.project
    items = _ITEMS.format(scope=scope)
    params = {"value": value, "at": at, "id": anchor.id if anchor else "", "before": before}
    earlier = store._all(
        f"SELECT * FROM ({items}) WHERE created_at < :at OR (created_at = :at AND id < :id) "
        "ORDER BY created_at DESC, id DESC LIMIT :before",
        params,
    )
    later = store._all(
        f"SELECT * FROM ({items}) WHERE created_at > :at OR (created_at = :at AND id >= :id) "
        "ORDER BY created_at, id LIMIT :after",
        {**params, "after": after + (1 if anchor else 0)},
    )
    rows = [*reversed(earlier), *later]
    return store.mark_stale([
        Hit(r["kind"], r["id"], r["created_at"], str(r["title"]), r["label"],
            (json.loads(r["files"]) or [""])[0], 0, 0.0, session)
        for r in rows
    ])  # fmt: skip


# About one file or function


@dataclass
class About:
    functions: list[Any] = field(default_factory=list)  # FunctionMapEntry, latest first
    callers: list[Any] = field(default_factory=list)  # CallGraphEdge
    callees: list[Any] = field(default_factory=list)
    observations: list[Hit] = field(default_factory=list)
    learnings: list[Hit] = field(default_factory=list)


def about(store: Store, project: str, path: str | None, function: str | None) -> About:
    found = About()
    if path:
        current = {f.qualified_name: f for f in store.latest_functions(project, path)}
        changed = [f for f in store.changed_functions(project, limit=FETCH) if f.file_path == path]
        seen = {f.id for f in changed}
        found.functions = changed + [f for f in current.values() if f.id not in seen]
        where = "EXISTS (SELECT 1 FROM json_each(files_touched) WHERE value = :name)"
    if function:
        rows = store._all(
            "SELECT * FROM function_map WHERE project = :project AND (qualified_name = :name "
            "OR qualified_name LIKE '%.' || :name) AND (:file = '' OR file_path = :file) "
            "AND change_type != 'unchanged' ORDER BY updated_at DESC, id DESC LIMIT 20",
            {"project": project, "name": function, "file": path or ""},
        )
        found.functions = [FunctionMapEntry.model_validate(r) for r in rows]
        found.callers = store.callers(project, function, path)
        found.callees = store.callees(project, function, path)
        where = (
            "(EXISTS (SELECT 1 FROM json_each(functions_changed) WHERE value = :name "
            "OR value LIKE '%.' || :name) OR instr(title || ' ' || summary, :name) > 0)"
        )
    name = function or path or ""
    rows = store._all(
        "SELECT id, created_at, tool_name, title, files_touched, session_id, "
        "length(title) + length(summary) + coalesce(length(detail), 0) AS size "
        f"FROM observations WHERE project = :project AND forgotten_at IS NULL AND {where} "
        "ORDER BY created_at DESC LIMIT 10",
        {"project": project, "name": name},
    )
    found.observations = [
        Hit("observation", r["id"], r["created_at"], r["title"], r["tool_name"],
            (json.loads(r["files_touched"]) or [""])[0], r["size"], 0.0, r["session_id"])
        for r in rows
    ]  # fmt: skip
    needle = function or (path.rsplit("/", 1)[-1] if path else "")
    found.learnings = [
        Hit("learning", item.id, item.created_at.isoformat(), item.content, item.category,
            size=len(item.content))
        for item in store.active_learnings(project, limit=FETCH)
        if needle and (needle in item.content or any(needle in f for f in item.functions))
    ][:10]  # fmt: skip
    store.mark_stale(found.observations)
    store.mark_stale(found.learnings)
    found.observations.sort(key=lambda h: h.stale)
    found.learnings.sort(key=lambda h: h.stale)
    return found
