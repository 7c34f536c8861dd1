"""Stale memories: an observation or learning about code that has changed since.

An observation is tied to the functions it changed, in the files it touched (or, naming no
function, to those files as a whole); a learning to the functions it names, which may carry
their file (``shop/pricing.py::apply_discount``). It is stale once the function map saw one
of them change after it was made (an observation) or last edited (a learning): a later body
hash, here or between sessions, or the function deleted (``function_map.changed_at``).
Readers mark stale items and rank them below the current ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from datasette_claude_mem.storage.database import json_strings

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


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


class Changes:
    """Changes to a project's functions after some moment, indexed by function name and by
    file name, so each memory is checked against the few that could concern it."""

    def __init__(self, rows: Iterable[tuple[str, str, str]]) -> None:
        self.by_leaf: dict[str, list[tuple[str, str, str]]] = {}
        self.by_file: dict[str, list[tuple[str, str, str]]] = {}
        for row in rows:
            self.by_leaf.setdefault(_leaf(row[1]), []).append(row)
            self.by_file.setdefault(_base(row[0]), []).append(row)

    def touch(self, at: str, files: list[str], names: list[str]) -> bool:
        """Whether any change after ``at`` touches what a memory is about."""
        if not names:
            return any(
                changed > at and _same_file(path, f)
                for f in files
                for path, _function, changed in self.by_file.get(_base(f), ())
            )
        for named_file, named in (_split(name) for name in names):
            for path, function, changed in self.by_leaf.get(_leaf(named), ()):
                if changed <= at or not _same_function(function, named):
                    continue
                if named_file is not None and not _same_file(path, named_file):
                    continue
                if named_file is None and files and not any(_same_file(path, f) for f in files):
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
        items = [i for i in items if json_strings(i[3]) or json_strings(i[4])]
        if not items:
            continue
        where, params = "changed_at > ?", [min(i[2] for i in items)]
        if project is not None:
            where = "project = ? AND " + where
            params.insert(0, project)
        changes = Changes(
            conn.execute(
                f"SELECT file_path, qualified_name, changed_at FROM function_map WHERE {where}",
                params,
            ).fetchall()
        )
        for item_id, _project, at, files, names in items:
            if changes.touch(at, json_strings(files), json_strings(names)):
                stale.add(item_id)
    return stale


def mark_stale(conn: sqlite3.Connection, hits: list[Any]) -> list[Any]:
    """Flag the observations and learnings among hits (anything with kind, id and stale)
    whose code changed since; their order is the caller's to keep or change."""
    for kind in STALE_KINDS:
        stale = stale_ids(conn, kind, [h.id for h in hits if h.kind == kind])
        for hit in hits:
            if hit.kind == kind and hit.id in stale:
                hit.stale = True
    return hits


class StalenessStore:
    """The Store's side of it: ``stale_ids`` on the store's connection."""

    conn: sqlite3.Connection

    def stale_ids(self, kind: str, ids: Iterable[str]) -> set[str]:
        return stale_ids(self.conn, kind, ids)

    def mark_stale(self, hits: list[Any]) -> list[Any]:
        return mark_stale(self.conn, hits)
