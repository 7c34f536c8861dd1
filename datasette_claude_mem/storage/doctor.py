"""Checks a memory file against the schema its migrations make, and puts back what was lost.

Hands on the schema lose things silently: `sqlite-utils transform` rebuilds a table without
its triggers (so new rows never reach search) and without its ON CONFLICT REPLACE clauses
(so multi-row CLI inserts fail). The reference is a fresh in-memory database migrated by the
same migrations, so whatever a later migration adds is checked without changes here.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from dataclasses import dataclass

from sqlite_utils import Database

from datasette_claude_mem.storage.database import WRITE_RETRY_SECONDS, begin_immediate, migrate
from datasette_claude_mem.storage.migrations import migrations

_TABLE_CONSTRAINT = re.compile(r"^(constraint|primary|unique|check|foreign)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """One way the file differs from the schema, said so that a person can act on it."""

    where: str
    what: str
    repairable: bool = True
    table: str | None = None  # set when the table must be rebuilt to repair it

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" + ("" if self.repairable else " (not repairable)")


@dataclass(frozen=True)
class _Object:
    type: str
    name: str
    table: str
    sql: str


@functools.cache
def reference() -> tuple[dict[str, _Object], dict[str, str]]:
    """What the migrations make: every schema object by name, and each FTS index's rank."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrations.apply(Database(conn, execute_plugins=False))
        objects = _objects(conn)
        ranks = {name: _rank(conn, name) or "" for name in _fts_names(objects)}
    finally:
        conn.close()
    return objects, ranks


def _objects(conn: sqlite3.Connection) -> dict[str, _Object]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite_%' AND name != '_sqlite_migrations'"
    )
    found = {row[1]: _Object(*row) for row in rows}
    # An FTS index's own storage tables are its business, not the schema's.
    shadows = {f"{name}_{part}" for name in _fts_names(found) for part in _SHADOWS}
    return {name: obj for name, obj in found.items() if name not in shadows}


_SHADOWS = ("data", "idx", "docsize", "config", "content")


def _fts_names(objects: dict[str, _Object]) -> list[str]:
    return [o.name for o in objects.values() if re.search(r"USING\s+fts5", o.sql, re.I)]


def _content(fts: _Object) -> str:
    """The table a search index reads its text from."""
    found = re.search(r'content="([^"]+)"', fts.sql)
    assert found is not None, fts.sql
    return found.group(1)


def _rank(conn: sqlite3.Connection, fts: str) -> str | None:
    try:
        row = conn.execute(f"SELECT v FROM [{fts}_config] WHERE k = 'rank'").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def _normal(sql: str) -> str:
    """SQL compared as text: case, spacing and identifier quotes do not count."""
    pieces = re.split(r"('(?:[^']|'')*')", sql)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:  # a string literal, kept as written
            out.append(piece)
            continue
        piece = re.sub(r'["\[\]`]', "", piece.lower())
        out.append(re.sub(r"\s+", " ", piece))
    return re.sub(r"\s*([(),;])\s*", r"\1", "".join(out)).strip()


def _parts(create_table: str) -> list[str]:
    """The column definitions and table constraints of a CREATE TABLE, split at top-level
    commas (never inside parentheses or quotes)."""
    body = create_table[create_table.index("(") + 1 : create_table.rindex(")")]
    parts, depth, current, quote = [], 0, [], ""
    for char in body:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
            continue
        if char in "'\"`":
            quote = char
        elif char == "[":
            quote = "]"
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _columns(create_table: str) -> tuple[dict[str, str], set[str]]:
    """Column name -> its definition (normalised), and the table constraints (normalised)."""
    columns, constraints = {}, set()
    for part in _parts(create_table):
        if _TABLE_CONSTRAINT.match(part):
            constraints.add(_normal(part))
            continue
        match = re.match(r'\s*("[^"]+"|\[[^\]]+\]|`[^`]+`|\S+)\s*(.*)', part, re.S)
        assert match is not None
        columns[match.group(1).strip('"[]`')] = _normal(match.group(2))
    return columns, constraints


def _checks(definition: str) -> list[str]:
    found = []
    for match in re.finditer(r"check\(", definition):
        depth, i = 0, match.end() - 1
        for i in range(match.end() - 1, len(definition)):
            depth += {"(": 1, ")": -1}.get(definition[i], 0)
            if depth == 0:
                break
        found.append(definition[match.start() : i + 1])
    return found


_DEFAULT = re.compile(r"default\s*(.*?)(?:\s*check\(|$)")


def _column_problems(table: str, column: str, want: str, have: str) -> list[Problem]:
    where = f"{table}.{column}"
    problems: list[Problem] = []
    if "on conflict replace" in want and "on conflict replace" not in have:
        problems.append(
            Problem(where, "lost NOT NULL ON CONFLICT REPLACE: inserts that leave it out fail")
        )
    if "not null" in want and "not null" not in have:
        problems.append(Problem(where, "lost NOT NULL"))
    for check in _checks(want):
        if check not in have:
            problems.append(Problem(where, f"lost {check.upper()}"))
    wanted_default = _DEFAULT.search(want)
    had_default = _DEFAULT.search(have)
    if wanted_default and (not had_default or had_default.group(1) != wanted_default.group(1)):
        found = had_default.group(1) if had_default else "none"
        problems.append(Problem(where, f"default is {found}, not {wanted_default.group(1)}"))
    if "references" in want and "references" not in have:
        problems.append(Problem(where, "lost its foreign key"))
    if not problems and want.split(" ")[0] != have.split(" ")[0]:
        problems.append(
            Problem(where, f"type is {have.split(' ')[0]!r}, not {want.split(' ')[0]!r}")
        )
    if not problems and want != have:
        problems.append(Problem(where, f"defined as {have!r}, not {want!r}"))
    return [Problem(p.where, p.what, table=table) for p in problems]


def _table_problems(name: str, want: _Object, have: _Object) -> list[Problem]:
    if "virtual table" in _normal(want.sql):
        if not _same_declaration(want, have):
            return [Problem(name, "the search index is declared otherwise: clients miss it")]
        return []
    want_cols, want_constraints = _columns(want.sql)
    have_cols, have_constraints = _columns(have.sql)
    problems = []
    for column, definition in want_cols.items():
        if column not in have_cols:
            problems.append(
                Problem(f"{name}.{column}", "column is missing (renamed?)", False, name)
            )
            continue
        problems += _column_problems(name, column, definition, have_cols[column])
    for constraint in sorted(want_constraints - have_constraints):
        problems.append(Problem(name, f"lost table constraint {constraint.upper()}", table=name))
    return problems


def check(conn: sqlite3.Connection, *, full: bool = True) -> list[Problem]:
    """Every difference between the file and the schema; empty when it is as it should be.

    `full` adds SQLite's integrity_check and each search index's own integrity check, which
    read the whole file; without it the search indexes' row counts are compared instead.
    """
    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    pending = [m.name for m in migrations.pending(db)]
    if pending:
        return [Problem("schema", f"migrations not applied: {', '.join(pending)}")]
    wanted, ranks = reference()
    present = _objects(conn)
    problems: list[Problem] = []
    for name, want in wanted.items():
        have = present.get(name)
        label = f"{want.type} {name}" + (f" on {want.table}" if want.type != "table" else "")
        if have is None:
            problems.append(Problem(label, "is missing"))
        elif want.type == "table":
            problems += _table_problems(name, want, have)
        elif _normal(want.sql) != _normal(have.sql):
            problems.append(Problem(label, "differs from what the migrations make"))
    for fts, rank in ranks.items():
        if fts in present and _rank(conn, fts) != rank:
            problems.append(Problem(fts, f"rank is not {rank}: titles no longer weigh most"))
    problems += _index_problems(conn, wanted, present, full)
    if full:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if result != ["ok"]:
            problems.append(Problem("integrity_check", "; ".join(result[:5]), repairable=False))
    return problems


def _index_problems(
    conn: sqlite3.Connection,
    wanted: dict[str, _Object],
    present: dict[str, _Object],
    full: bool,
) -> list[Problem]:
    problems = []
    for fts in _fts_names(wanted):
        if fts not in present:
            continue
        content = re.search(r'content="([^"]+)"', wanted[fts].sql)
        assert content is not None
        if full:
            try:
                conn.execute(f"INSERT INTO [{fts}]([{fts}], rank) VALUES ('integrity-check', 1)")
            except sqlite3.DatabaseError as error:
                problems.append(Problem(fts, f"disagrees with {content.group(1)}: {error}"))
            continue
        rows = conn.execute(f"SELECT count(*) FROM [{content.group(1)}]").fetchone()[0]
        indexed = conn.execute(f"SELECT count(*) FROM [{fts}_docsize]").fetchone()[0]
        if rows != indexed:
            problems.append(Problem(fts, f"indexes {indexed} rows of {content.group(1)}'s {rows}"))
    return problems


def repair(conn: sqlite3.Connection) -> list[str]:
    """Put back what the migrations make and a transform or an edit removed; rebuild every
    search index. Returns what was done. Columns the schema lacks are kept; a table missing
    one of its columns is left for a person to fix (it may have been renamed)."""
    done: list[str] = []
    applied = migrate(Database(conn, execute_plugins=False, recursive_triggers=False))
    if applied:
        done.append(f"applied migrations {', '.join(applied)}")
    problems = check(conn, full=False)
    blocked = {p.table for p in problems if p.table and not p.repairable}
    broken = {p.table for p in problems if p.table} - blocked
    wanted, ranks = reference()
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys=OFF")
    begin_immediate(conn, time.monotonic() + WRITE_RETRY_SECONDS)
    try:
        for table in sorted(broken):
            _rebuild_table(conn, wanted[table])
            done.append(f"rebuilt table {table} as the migrations define it")
        present = _objects(conn)
        for name, want in wanted.items():
            have = present.get(name)
            if have is not None and not _replace(want, have):
                continue
            if have is not None:
                conn.execute(f"DROP {'TABLE' if want.type == 'table' else want.type} [{name}]")
            conn.execute(want.sql)
            done.append(f"{'re' if have else ''}created {want.type} {name}")
        for fts, rank in ranks.items():
            if _content(wanted[fts]) in blocked:
                continue  # the index cannot be filled from a table that lacks its columns
            if _rank(conn, fts) != rank:
                conn.execute(f"INSERT INTO [{fts}]([{fts}], rank) VALUES ('rank', ?)", [rank])
            conn.execute(f"INSERT INTO [{fts}]([{fts}]) VALUES ('rebuild')")
        done.append(f"rebuilt the search indexes {', '.join(ranks)}")
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise sqlite3.IntegrityError(
                f"{len(violations)} rows would break foreign keys, e.g. {violations[0]}"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    for table in sorted(blocked):
        done.append(f"left table {table} as it is: it lacks a column the schema has")
    return done


def _same_declaration(want: _Object, have: _Object) -> bool:
    return _normal(want.sql).split(" using ", 1)[-1] == _normal(have.sql).split(" using ", 1)[-1]


def _replace(want: _Object, have: _Object) -> bool:
    """Whether an object that is there must be made again: a trigger, index or view that
    differs, or a search index declared otherwise (tables are rebuilt, never replaced)."""
    if want.type != "table":
        return _normal(want.sql) != _normal(have.sql)
    return "virtual table" in _normal(want.sql) and not _same_declaration(want, have)


def _rebuild_table(conn: sqlite3.Connection, want: _Object) -> None:
    """The table as its migration wrote it, with the same rows, rowids and any extra columns.
    Dropping it drops its triggers and indexes: the caller puts every missing one back."""
    name = want.name
    temporary = f"_claude_mem_doctor_{name}"
    have = {r[1]: r[2] for r in conn.execute(f"PRAGMA table_xinfo([{name}])")}
    wanted = list(_columns(want.sql)[0])
    conn.execute(want.sql.replace(name, temporary, 1))
    extra = [column for column in have if column not in wanted]
    for column in extra:
        conn.execute(f"ALTER TABLE [{temporary}] ADD COLUMN [{column}] {have[column]}")
    columns = ", ".join(f"[{c}]" for c in [*wanted, *extra])
    conn.execute(
        f"INSERT INTO [{temporary}] (rowid, {columns}) SELECT rowid, {columns} FROM [{name}]"
    )
    conn.execute(f"DROP TABLE [{name}]")
    conn.execute(f"ALTER TABLE [{temporary}] RENAME TO [{name}]")


def startup_warning(conn: sqlite3.Connection, path: str | None) -> str | None:
    """One line for the server's log when the file has drifted from its schema, or None.
    The quick check only: it must not hold up a server starting on a large memory."""
    try:
        problems = check(conn, full=False)
    except sqlite3.Error as error:
        return f"claude-mem: could not check the memory's schema: {error}"
    if not problems:
        return None
    shown = "; ".join(str(p) for p in problems[:3])
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return (
        f"claude-mem: WARNING the memory's schema has {len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''} ({shown}{more}); search may miss rows. "
        f"Run: datasette claude-mem doctor --repair {path or ''}".rstrip()
    )
