"""The reads behind the MCP tools, over the store: what matches, what happened around a
row, the rows themselves, and what the memory knows about one file or function.

Search goes through ``search()`` alone, which calls the store's full-text search; when the
project's single search function lands, the line marked below is the one to change.
Every read keeps to one project (global learnings and entries aside) and leaves out what
was forgotten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from datasette_claude_mem.storage.models import FunctionMapEntry
from datasette_claude_mem.storage.search import fts_query
from datasette_claude_mem.storage.staleness import STALE_KINDS
from datasette_claude_mem.storage.store import Store

KINDS = ("observation", "learning", "note", "session", "prompt")
# Rows a source is asked for before kinds and dates are applied to them.
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


def mark_stale(store: Store, hits: list[Hit]) -> list[Hit]:
    """Flag the observations and learnings among hits whose code changed since."""
    for kind in STALE_KINDS:
        stale = store.stale_ids(kind, [h.id for h in hits if h.kind == kind])
        for hit in hits:
            hit.stale = hit.stale or (hit.kind == kind and hit.id in stale)
    return hits


@dataclass
class Record:
    """One row as `get` shows it: a heading and its fields, in order."""

    kind: str
    id: str
    project: str | None
    fields: dict[str, Any] = field(default_factory=dict)


def _words(query: str) -> list[str]:
    return [w.lower() for w in re.findall(r"\w+", query)]


def _contains_all(column: str, words: list[str]) -> tuple[str, list[str]]:
    """SQL that every word appears in the column (case-insensitive), and its parameters."""
    return " AND ".join(f"instr(lower({column}), ?) > 0" for _ in words) or "1", words


def search(
    store: Store,
    project: str,
    query: str,
    *,
    kinds: list[str] | None = None,
    since: str | None = None,
    limit: int = 10,
) -> list[Hit]:
    """Best first: full-text matches by rank, then plain-text matches newest first."""
    wanted = set(kinds or KINDS)
    hits: list[Hit] = []
    if wanted & {"observation", "learning"}:
        # Ranking and snippets cost per row asked for: ask for more only when some of them
        # may be filtered out below.
        narrowed = since or not {"observation", "learning"} <= wanted
        fetch = FETCH if narrowed else limit
        found = store.search(project, query, limit=fetch, kinds=("observation", "learning"))
        hits += _with_sizes(store, [h for h in found if h.kind in wanted])
    if "note" in wanted:
        hits += _entries(store, project, query)
    words = _words(query)
    if "session" in wanted and words:
        hits += _sessions(store, project, words)
    if "prompt" in wanted and words:
        hits += _prompts(store, project, words)
    if since:
        hits = [h for h in hits if h.at >= since]
    hits.sort(key=lambda h: h.at, reverse=True)
    hits.sort(key=lambda h: h.rank)  # stable: equal ranks stay newest first
    mark_stale(store, hits)
    hits.sort(key=lambda h: h.stale)  # what changed since goes below what is current
    return hits[:limit]


def _with_sizes(store: Store, found: list) -> list[Hit]:
    obs_ids = [h.id for h in found if h.kind == "observation"]
    extra: dict[str, dict] = {}
    if obs_ids:
        marks = ", ".join("?" for _ in obs_ids)
        for row in store._all(
            "SELECT id, tool_name, files_touched, length(title) + length(summary) + "
            f"coalesce(length(detail), 0) AS size FROM observations WHERE id IN ({marks})",
            obs_ids,
        ):
            extra[row["id"]] = row
    hits = []
    for h in found:
        at = h.created_at.isoformat()
        if h.kind == "observation":
            row = extra.get(h.id, {})
            files = json.loads(row.get("files_touched") or "[]")
            hits.append(
                Hit("observation", h.id, at, h.title, row.get("tool_name", ""),
                    files[0] if files else "", row.get("size", 0), h.rank, h.session_id,
                    h.stale)
            )  # fmt: skip
        else:
            hits.append(
                Hit("learning", h.id, at, h.snippet, h.title, "", len(h.snippet), h.rank,
                    h.session_id, h.stale)
            )  # fmt: skip
    return hits


def _entries(store: Store, project: str, query: str) -> list[Hit]:
    match = fts_query(query)
    if not match:
        return []
    rows = store._all(
        "SELECT e.id, e.created_at, e.namespace, e.key, e.kind, length(e.value) AS size, "
        "e.session_id, bm25(memory_entries_fts) AS rank, "
        "snippet(memory_entries_fts, 1, '[', ']', '…', 12) AS snippet "
        "FROM memory_entries_fts JOIN memory_entries e ON e.rowid = memory_entries_fts.rowid "
        "WHERE memory_entries_fts MATCH :q AND e.superseded_at IS NULL "
        "AND e.forgotten_at IS NULL AND (e.project = :project OR e.project IS NULL) "
        "ORDER BY rank LIMIT :limit",
        {"q": match, "project": project, "limit": FETCH},
    )
    return [
        Hit("note", r["id"], r["created_at"], r["snippet"], _entry_label(r["namespace"], r["key"]),
            "", r["size"], r["rank"], r["session_id"])
        for r in rows
    ]  # fmt: skip


def _entry_label(namespace: str, key: str) -> str:
    """A key the agent chose is worth its tokens; a generated one (an id) is not."""
    return f"{namespace}#{key}" if len(key) < 30 else namespace


def _sessions(store: Store, project: str, words: list[str]) -> list[Hit]:
    where, params = _contains_all("summary", words)
    rows = store._all(
        "SELECT id, started_at, summary FROM sessions WHERE project = ? AND summary IS NOT NULL "
        f"AND {where} ORDER BY started_at DESC LIMIT ?",
        [project, *params, FETCH],
    )
    return [
        Hit("session", r["id"], r["started_at"], r["summary"], "summary", "", len(r["summary"]),
            0.0, r["id"])
        for r in rows
    ]  # fmt: skip


def _prompts(store: Store, project: str, words: list[str]) -> list[Hit]:
    where, params = _contains_all("json_extract(data, '$.prompt')", words)
    rows = store._all(
        "SELECT id, created_at, session_id, json_extract(data, '$.prompt') AS prompt "
        "FROM event_log WHERE event_type = 'UserPromptSubmit' AND project = ? "
        f"AND {where} ORDER BY created_at DESC LIMIT ?",
        [project, *params, FETCH],
    )
    return [
        Hit("prompt", r["id"], r["created_at"], str(r["prompt"]), "prompt", "",
            len(str(r["prompt"])), 0.0, r["session_id"])
        for r in rows
    ]  # fmt: skip


# Rows by id


_RECORD_SQL = {
    "observation": "SELECT id, project, session_id, created_at, tool_name, title, summary, "
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


_ITEMS = """SELECT 'observation' AS kind, id, created_at, tool_name AS label, title,
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
    return mark_stale(store, [
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
    mark_stale(store, found.observations)
    mark_stale(store, found.learnings)
    found.observations.sort(key=lambda h: h.stale)
    found.learnings.sort(key=lambda h: h.stale)
    return found
