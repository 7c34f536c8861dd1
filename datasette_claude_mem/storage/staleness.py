"""Stale memories: an observation or learning about code that has changed since.

An observation is tied to the functions it changed, in the files it touched (or, naming no
function, to those files as a whole); a learning to the functions it names, which may carry
their file (``shop/pricing.py::apply_discount``). It is stale once the function map saw one
of them change after it was made (an observation) or last edited (a learning): a later body
hash, here or between sessions, or the function deleted (``function_map.changed_at``).
Readers mark stale items and rank them below the current ones.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

STALE_KINDS = ("observation", "learning")
_SQL = {
    "observation": "SELECT id, project, created_at AS at, files_touched AS files, "
    "functions_changed AS names FROM observations WHERE id IN ({marks})",
    "learning": "SELECT id, project, updated_at AS at, '[]' AS files, functions AS names "
    "FROM learnings WHERE id IN ({marks})",
}
_CHUNK = 500  # ids per IN list, well under SQLite's bound parameter limit


def _split(name: str) -> tuple[str | None, str]:
    """``file::function`` (or ``file.py:function``) into its file and its function."""
    if "::" in name:
        file, _sep, function = name.rpartition("::")
        return file or None, function
    file, sep, function = name.rpartition(":")
    if sep and file.endswith(".py"):
        return file, function
    return None, name


def _same_file(recorded: str, named: str) -> bool:
    """A function map path (relative to the project) against a path a memory names, which
    may be absolute or from a worktree of the project."""
    named = named.replace("\\", "/")
    return named == recorded or named.endswith("/" + recorded)


def _same_function(recorded: str, named: str) -> bool:
    return recorded == named or recorded.endswith("." + named)


def _json_list(text: Any) -> list[str]:
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def is_stale(files: list[str], names: list[str], changes: Iterable[tuple[str, str]]) -> bool:
    """Whether any (file, function) change touches what a memory is about."""
    wanted = [_split(name) for name in names]
    for file_path, function in changes:
        if not wanted:
            if any(_same_file(file_path, f) for f in files):
                return True
            continue
        for named_file, named in wanted:
            if not _same_function(function, named):
                continue
            in_file = named_file or None
            if in_file is not None and not _same_file(file_path, in_file):
                continue
            if in_file is None and files and not any(_same_file(file_path, f) for f in files):
                continue
            return True
    return False


def stale_ids(conn: sqlite3.Connection, kind: str, ids: Iterable[str]) -> set[str]:
    """The ids, of one kind (observation or learning), whose code changed since."""
    wanted = list(dict.fromkeys(ids))
    if kind not in _SQL or not wanted:
        return set()
    rows: list[tuple] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        sql = _SQL[kind].format(marks=", ".join("?" for _ in chunk))
        rows.extend(conn.execute(sql, chunk).fetchall())
    by_project: dict[str | None, list[tuple]] = {}
    for row in rows:
        by_project.setdefault(row[1], []).append(row)
    stale = set()
    for project, items in by_project.items():
        items = [i for i in items if _json_list(i[3]) or _json_list(i[4])]
        if not items:
            continue
        since = min(i[2] for i in items)
        where, params = "changed_at > ?", [since]
        if project is not None:
            where = "project = ? AND " + where
            params.insert(0, project)
        changes = conn.execute(
            f"SELECT file_path, qualified_name, changed_at FROM function_map WHERE {where}",
            params,
        ).fetchall()
        for item_id, _project, at, files, names in items:
            later = [(c[0], c[1]) for c in changes if c[2] > at]
            if later and is_stale(_json_list(files), _json_list(names), later):
                stale.add(item_id)
    return stale


class StalenessStore:
    """The Store's side of it: ``stale_ids`` on the store's connection."""

    conn: sqlite3.Connection

    def stale_ids(self, kind: str, ids: Iterable[str]) -> set[str]:
        return stale_ids(self.conn, kind, ids)
