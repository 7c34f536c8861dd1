"""Online backups of the memory file, checked before they count, and restores from them.

A backup is SQLite's backup API run in one step inside a read transaction on the memory:
the copy is one consistent snapshot however hard a server writes meanwhile, and the row
counts taken in that same transaction are what the copy must hold. The copy is written
beside its destination and renamed into place only once it has passed integrity_check and
the count comparison, so a failed backup never leaves a file that looks like a good one.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlite_utils import Database

from datasette_claude_mem.storage.database import connect
from datasette_claude_mem.storage.errors import StoreError
from datasette_claude_mem.storage.migrations import migrations
from datasette_claude_mem.storage.models import utc_now


class BackupError(StoreError):
    """A backup or restore that could not be made or did not check out; nothing replaced."""


@dataclass
class BackupReport:
    path: Path
    rows: dict[str, int]
    size: int

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _tables(conn: sqlite3.Connection) -> list[str]:
    """Every ordinary table, the full-text indexes' own tables included."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0] for t in _tables(conn)}


def check(path: Path, expected: dict[str, int] | None = None) -> dict[str, int]:
    """The row counts of a memory file that passes integrity_check (and matches `expected`).

    Only read: checking never changes the file it checks. (A read-only connection would
    leave a WAL file's -shm and -wal behind; an ordinary one tidies them when it closes.)
    """
    if not path.exists():
        raise BackupError(f"there is no file at {path}")
    try:
        conn = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as error:
        raise BackupError(f"{path} cannot be opened: {error}") from error
    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"{path} failed integrity_check: {'; '.join(problems[:5])}")
        tables = _tables(conn)
        if "_sqlite_migrations" not in tables or "sessions" not in tables:
            raise BackupError(f"{path} is not a claude-mem memory database")
        counts = _counts(conn)
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path} is not a readable SQLite database: {error}") from error
    finally:
        conn.close()
    if expected is not None and counts != expected:
        differ = sorted(t for t in set(counts) | set(expected) if counts.get(t) != expected.get(t))
        raise BackupError(f"the copy's row counts differ from the memory's in {', '.join(differ)}")
    return counts


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def _copy(source: sqlite3.Connection, target: Path) -> dict[str, int]:
    """Copy the source's current snapshot to target; the counts of that same snapshot."""
    target.unlink(missing_ok=True)
    dest = sqlite3.connect(str(target))
    try:
        source.execute("BEGIN")
        try:
            counts = _counts(source)
            source.backup(dest, pages=-1)
        finally:
            source.execute("COMMIT")
        # One self-contained file: no -wal beside it to forget when it is copied elsewhere.
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()
    return counts


def backup(db_path: Path, target: Path, *, force: bool = False, busy_timeout_ms: int = 5000):
    """Write a checked, consistent copy of the memory at db_path to target."""
    db_path, target = Path(db_path), Path(target)
    if not db_path.exists():
        raise BackupError(f"there is no memory at {db_path}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; pass --force to replace it")
    if target.exists() and target.resolve() == db_path.resolve():
        raise BackupError("the backup cannot replace the memory it copies")
    partial = _partial(target)
    source = connect(db_path, busy_timeout_ms=busy_timeout_ms)
    try:
        counts = _copy(source, partial)
        check(partial, counts)
        os.replace(partial, target)
    except sqlite3.Error as error:
        raise BackupError(f"the backup of {db_path} failed: {error}") from error
    finally:
        source.close()
        for leftover in (partial, *(partial.with_name(partial.name + s) for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
    return BackupReport(target, counts, target.stat().st_size)


def _daily_name(db_path: Path) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(db_path.stem)}-\d{{4}}-\d{{2}}-\d{{2}}\.db")


def daily_backups(db_path: Path, backup_dir: Path) -> list[Path]:
    """The daily backups of a memory in backup_dir, oldest first (their names sort by day)."""
    if not backup_dir.is_dir():
        return []
    named = _daily_name(Path(db_path))
    return sorted(p for p in backup_dir.iterdir() if named.fullmatch(p.name))


def daily_backup(
    db_path: Path,
    backup_dir: Path,
    keep: int,
    *,
    today: date | None = None,
    busy_timeout_ms: int = 5000,
) -> BackupReport | None:
    """Today's checked backup into backup_dir, unless it is there already; then the older
    daily backups beyond the newest `keep` are removed (no other file there is touched).
    Returns the backup made, or None when today's existed."""
    db_path, backup_dir = Path(db_path), Path(backup_dir)
    day = (today or datetime.now(UTC).date()).isoformat()
    target = backup_dir / f"{db_path.stem}-{day}.db"
    made = None
    if not target.exists():
        backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = backup(db_path, target, busy_timeout_ms=busy_timeout_ms)
    for old in daily_backups(db_path, backup_dir)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return made


def restore(
    backup_path: Path, db_path: Path, *, keep_current: bool = True, busy_timeout_ms: int = 5000
) -> tuple[BackupReport, Path | None]:
    """Replace the memory at db_path with a checked backup; the memory as it was is kept
    beside it first (returned), so a restore of the wrong file can itself be undone.

    The copy goes through SQLite's backup API into the memory file, so connections that
    still have it open see the restored memory, never a half-written file.
    """
    backup_path, db_path = Path(backup_path), Path(db_path)
    if not backup_path.exists():
        raise BackupError(f"there is no backup at {backup_path}")
    counts = check(backup_path)
    source = sqlite3.connect(f"file:{backup_path}?mode=ro", uri=True)
    try:
        known = {m.name for m in migrations.pending(Database(memory=True))}
        names = {m.name for m in migrations.applied(Database(source))}
        newer = sorted(names - known)
        if newer:
            raise BackupError(
                f"{backup_path} was made by a newer version (migrations {', '.join(newer)}); "
                "upgrade datasette-claude-mem before restoring it"
            )
        kept = None
        if db_path.exists() and keep_current:
            stamp = utc_now().replace(":", "").replace("-", "").split(".")[0]
            kept = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
            backup(db_path, kept, busy_timeout_ms=busy_timeout_ms)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        dest = connect(db_path, busy_timeout_ms=busy_timeout_ms)
        try:
            source.backup(dest, pages=-1)
            dest.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as error:
            raise BackupError(f"the restore into {db_path} failed: {error}") from error
        finally:
            dest.close()
    finally:
        source.close()
    check(db_path, counts)
    return BackupReport(db_path, counts, db_path.stat().st_size), kept
