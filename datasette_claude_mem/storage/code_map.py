"""The function map and the call graph: what a session saw of the code and what changed.

A mixin of the Store: its writes take the store's transactions and redaction.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from datasette_claude_mem.storage.database import (
    to_json,
)
from datasette_claude_mem.storage.models import (
    CallGraphEdge,
    ChangeType,
    EdgesAdd,
    FunctionMapEntry,
    FunctionMapUpsert,
    new_id,
    utc_now,
)
from datasette_claude_mem.storage.queries import QUERY_SQL

if TYPE_CHECKING:
    pass


def _row_info(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the fields of a function, to record it again (as deleted)."""
    return {
        "qualified_name": row["qualified_name"],
        "kind": row["kind"],
        "signature": row["signature"],
        "docstring": row["docstring"],
        "body_hash": row["body_hash"],
        "decorators": json.loads(row["decorators"]),
    }


def _base_of(
    mine: dict[str, dict], data: FunctionMapUpsert, others: dict[str, dict]
) -> dict[str, dict[str, Any]]:
    """The file's first state in this session, by function name; a body_hash of None marks
    a function the session added. Fixed by the session's first call for the file."""
    if mine:
        return {name: {**_row_info(r), "body_hash": r["base_hash"]} for name, r in mine.items()}
    if data.baseline is not None and not (data.baseline_fallback and others):
        return {fn.qualified_name: fn.model_dump() for fn in data.baseline}
    return {
        name: _row_info(r) for name, r in others.items() if r["change_type"] != ChangeType.DELETED
    }


def _changed_at(
    prior: dict | None, other: dict | None, body_hash: str, change: ChangeType, now: str
) -> str | None:
    """When this function's body was last seen to change: kept from this session's row while
    the body stays, now when it moves; on first sight, now when it differs from its base or
    from what another session last recorded (an edit made between sessions)."""
    if prior is not None:
        if prior["change_type"] == ChangeType.DELETED or prior["body_hash"] != body_hash:
            return now
        return prior["changed_at"]
    if change != ChangeType.UNCHANGED:
        return now
    if other is not None and (
        other["change_type"] == ChangeType.DELETED or other["body_hash"] != body_hash
    ):
        return now
    return None


class CodeMapStore:
    def upsert_functions(self, data: FunctionMapUpsert) -> list[FunctionMapEntry]:
        """Record a file's functions as this session sees them, with what the session changed.

        Each function is compared with the file's first state in this session (its base):
        the ``baseline`` the first call brings (what the session saw before changing the
        file), else the file as other sessions last recorded it, else a ``baseline_fallback``
        baseline (git HEAD, say), else nothing (all new). A
        function absent from the base is new, one whose body hash differs modified, one
        missing now deleted, and the rest unchanged, so merely reading a file changes
        nothing. ``changed_at`` records when a body was last seen to change, here or
        between sessions, which is what makes older memories about it stale.
        """
        now = utc_now()
        with self.write() as conn:
            project = self._session_project(data.session_id)
            mine = {
                r["qualified_name"]: r
                for r in self._all(
                    "SELECT * FROM function_map WHERE project = ? AND file_path = ? "
                    "AND session_id = ?",
                    [project, data.file_path, data.session_id],
                )
            }
            others = {
                r["qualified_name"]: r
                for r in self._latest_function_rows(project, data.file_path, data.session_id)
            }
            base_info = _base_of(mine, data, others)
            seen = set()
            for fn in data.functions:
                name = fn.qualified_name
                seen.add(name)
                base_hash = base_info[name]["body_hash"] if name in base_info else None
                if base_hash is None:
                    change = ChangeType.NEW
                elif base_hash != fn.body_hash:
                    change = ChangeType.MODIFIED
                else:
                    change = ChangeType.UNCHANGED
                moved = _changed_at(mine.get(name), others.get(name), fn.body_hash, change, now)
                row = {**fn.model_dump(), "base_hash": base_hash}
                self._put_function(conn, project, data, row, change, now, moved)
            for name, info in base_info.items():
                prior = mine.get(name)
                if name in seen or info["body_hash"] is None:
                    continue
                if prior is not None and prior["change_type"] == ChangeType.DELETED:
                    continue
                gone = {**info, "base_hash": info["body_hash"]}
                if prior is not None:
                    gone["body_hash"] = prior["body_hash"]
                self._put_function(conn, project, data, gone, ChangeType.DELETED, now, now)
            # A function this session added and then removed again is simply dropped.
            dropped = [
                r["id"] for name, r in mine.items() if name not in seen and r["base_hash"] is None
            ]
            for row_id in dropped:
                conn.execute("DELETE FROM function_map WHERE id = ?", [row_id])
            rows = self._all(
                "SELECT * FROM function_map WHERE project = ? AND file_path = ? "
                "AND session_id = ? ORDER BY qualified_name",
                [project, data.file_path, data.session_id],
            )
        return [FunctionMapEntry.model_validate(r) for r in rows]

    def mapped_files(self, session_id: str, file_paths: list[str]) -> set[str]:
        """Those of the files the function map already holds for the session's project:
        for them upsert_functions never uses a stand-in baseline, so none need be made."""
        if not file_paths:
            return set()
        project = self._session_project(session_id)
        rows = self._all(
            "SELECT DISTINCT file_path FROM function_map WHERE project = ? "
            "AND file_path IN (SELECT value FROM json_each(?))",
            [project, json.dumps(file_paths)],
        )
        return {r["file_path"] for r in rows}

    def _latest_function_rows(
        self, project: str, file_path: str, exclude_session: str | None = None
    ) -> list[dict]:
        params: list[Any] = [project, file_path]
        other = ""
        if exclude_session is not None:
            other = "AND session_id != ?"
            params.append(exclude_session)
        return self._all(
            f"""SELECT * FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY qualified_name ORDER BY updated_at DESC, id DESC) AS _n
                FROM function_map WHERE project = ? AND file_path = ? {other}
            ) WHERE _n = 1 ORDER BY qualified_name""",
            params,
        )

    def _put_function(
        self,
        conn: sqlite3.Connection,
        project: str,
        data: FunctionMapUpsert,
        fn: dict[str, Any],
        change: ChangeType,
        now: str,
        changed_at: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO function_map (id, project, session_id, file_path, qualified_name, "
            "kind, signature, docstring, body_hash, decorators, change_type, updated_at, "
            "base_hash, changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(project, file_path, qualified_name, session_id) DO UPDATE SET "
            "kind = excluded.kind, signature = excluded.signature, "
            "docstring = excluded.docstring, body_hash = excluded.body_hash, "
            "decorators = excluded.decorators, change_type = excluded.change_type, "
            "updated_at = excluded.updated_at, base_hash = excluded.base_hash, "
            "changed_at = excluded.changed_at",
            [
                new_id(),
                project,
                data.session_id,
                data.file_path,
                fn["qualified_name"],
                str(fn["kind"]),
                self.redact_text(fn["signature"]),
                self._redact_opt(fn["docstring"]),
                fn["body_hash"],
                to_json(fn["decorators"]),
                str(change),
                now,
                fn["base_hash"],
                changed_at,
            ],
        )

    def latest_functions(self, project: str, file_path: str) -> list[FunctionMapEntry]:
        """The functions a file has now, as last recorded by any session."""
        rows = self._latest_function_rows(project, file_path)
        return [
            FunctionMapEntry.model_validate(r)
            for r in rows
            if r["change_type"] != ChangeType.DELETED
        ]

    def changed_functions(
        self,
        project: str,
        session_id: str | None = None,
        limit: int = 200,
        *,
        since: str | None = None,
    ) -> list[FunctionMapEntry]:
        """Functions new, modified or deleted (in one session, or in any; after ``since``
        when given), newest first."""
        sql = "SELECT * FROM function_map WHERE project = ? AND change_type != 'unchanged'"
        params: list[Any] = [project]
        if session_id is not None:
            sql += " AND session_id = ?"
            params.append(session_id)
        if since is not None:
            sql += " AND updated_at > ?"
            params.append(since)
        sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
        return [FunctionMapEntry.model_validate(r) for r in self._all(sql, [*params, limit])]

    def add_edges(self, data: EdgesAdd) -> list[CallGraphEdge]:
        """Add call edges; an edge seen again is confirmed rather than duplicated."""
        now = utc_now()
        with self.write() as conn:
            project = self._session_project(data.session_id)
            if data.replace_file is not None:
                keep = {
                    (e.caller_function, e.callee_file, e.callee_function)
                    for e in data.edges
                    if e.caller_file == data.replace_file
                }
                for row in self._all(
                    "SELECT id, caller_function, callee_file, callee_function FROM call_graph "
                    "WHERE project = ? AND caller_file = ? AND source = 'ast'",
                    [project, data.replace_file],
                ):
                    key = (row["caller_function"], row["callee_file"], row["callee_function"])
                    if key not in keep:
                        conn.execute("DELETE FROM call_graph WHERE id = ?", [row["id"]])
            ids = []
            for edge in data.edges:
                row_id = new_id()
                conn.execute(
                    "INSERT INTO call_graph (id, project, caller_file, caller_function, "
                    "callee_file, callee_function, resolution, confidence, times_confirmed, "
                    "source, session_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) "
                    "ON CONFLICT(project, caller_file, caller_function, callee_file, "
                    "callee_function) DO UPDATE SET times_confirmed = times_confirmed + 1, "
                    "resolution = excluded.resolution, confidence = excluded.confidence, "
                    "session_id = excluded.session_id",
                    [
                        row_id,
                        project,
                        edge.caller_file,
                        edge.caller_function,
                        edge.callee_file,
                        edge.callee_function,
                        str(edge.resolution),
                        edge.confidence,
                        edge.source,
                        data.session_id,
                        now,
                    ],
                )
                found = conn.execute(
                    "SELECT id FROM call_graph WHERE project = ? AND caller_file = ? "
                    "AND caller_function = ? AND callee_file = ? AND callee_function = ?",
                    [
                        project,
                        edge.caller_file,
                        edge.caller_function,
                        edge.callee_file,
                        edge.callee_function,
                    ],
                ).fetchone()
                ids.append(found[0])
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = {
            r["id"]: r for r in self._all(f"SELECT * FROM call_graph WHERE id IN ({marks})", ids)
        }
        return [CallGraphEdge.model_validate(rows[i]) for i in ids]

    def callers(self, project: str, function: str, file: str | None = None) -> list[CallGraphEdge]:
        """Edges into a function: who calls it."""
        return self._edges(project, "callers", function, file)

    def callees(self, project: str, function: str, file: str | None = None) -> list[CallGraphEdge]:
        """Edges out of a function: what it calls."""
        return self._edges(project, "callees", function, file)

    def _edges(
        self, project: str, query: str, function: str, file: str | None
    ) -> list[CallGraphEdge]:
        """By the SQL of the callers and callees stored queries, so both answer alike."""
        rows = self._all(
            QUERY_SQL[query], {"project": project, "function": function, "file": file or ""}
        )
        return [CallGraphEdge.model_validate(r) for r in rows]
