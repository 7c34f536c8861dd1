"""Living beside claude-mem, which keeps its database at ~/.claude-mem/claude-mem.db.

That path was this memory's default too. The default directory is now
~/.datasette-claude-mem; a memory of ours still at the old path is moved there once (only
when no other process has it open), and claude-mem's own database there is never touched:
the commands say what they found and how to import it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from datasette_claude_mem.claude_code.claude_mem_import import inspect
from datasette_claude_mem.names import CLAUDE_MEM_DIR_NAME, DB_FILENAME
from datasette_claude_mem.settings import ENV_DIR, Config
from datasette_claude_mem.storage.store import foreign_tables

# Files of ours that may sit in the old directory beside the database.
COMPANIONS = ("secret", "datasette.yaml")
SPOOLS = ("spool.jsonl", "spool.jsonl.ingesting")


class MemoryInUse(Exception):
    """The memory at the old default path is open in another process: it cannot move yet."""


def legacy_dir() -> Path:
    return Path.home() / CLAUDE_MEM_DIR_NAME


def is_our_memory(path: Path) -> bool:
    """A file this project migrated (not claude-mem's, not an empty file)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        has_tables = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = '_sqlite_migrations'"
        ).fetchone()
        return bool(has_tables) and not foreign_tables(conn)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def claude_mem_note(found_path: Path, memory_path: Path) -> str | None:
    """One message about claude-mem's database at found_path, or None if it is not one."""
    found = inspect(found_path)
    if found is None:
        return None
    return (
        f"Found claude-mem's database at {found.path} ({found.sessions} sessions, "
        f"{found.observations} observations); it is left untouched. This memory is kept in "
        f"{memory_path}. To bring claude-mem's memory in: "
        f"datasette claude-mem import-claude-mem {found.path}"
    )


def _exclusive_checkpoint(db: Path) -> None:
    """Fold the WAL into the file and leave WAL mode, which SQLite allows only when no other
    connection has the database open; so it also proves nobody does."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    except sqlite3.OperationalError as error:
        raise MemoryInUse(str(error)) from error
    finally:
        conn.close()
    if str(mode).lower() != "delete":
        raise MemoryInUse("another process has it open")


def _append(source: Path, target: Path) -> None:
    with source.open("rb") as read, target.open("ab") as write:
        shutil.copyfileobj(read, write)
    source.unlink()


def move_legacy_memory(config: Config | None = None) -> Path | None:
    """Move this project's memory from ~/.claude-mem to the default directory, once.

    Only with no CLAUDE_MEM_DIR (a named directory is never second-guessed), only a memory of
    ours, only when the new place has none yet. Returns the old directory if it moved.
    """
    config = config or Config.load()
    if os.environ.get(ENV_DIR):
        return None
    old_dir = legacy_dir()
    old_db = old_dir / DB_FILENAME
    if old_dir.resolve() == config.base_dir.resolve() or config.db_path.exists():
        return None
    if not old_db.is_file() or not is_our_memory(old_db):
        return None
    _exclusive_checkpoint(old_db)
    config.ensure_dirs()
    shutil.move(old_db, config.db_path)
    for name in ("-wal", "-shm"):
        Path(str(old_db) + name).unlink(missing_ok=True)
    conn = sqlite3.connect(config.db_path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    for name in COMPANIONS:
        if (old_dir / name).exists() and not (config.base_dir / name).exists():
            shutil.move(old_dir / name, config.base_dir / name)
    for name in SPOOLS:
        if (old_dir / name).exists():
            _append(old_dir / name, config.base_dir / name)
    return old_dir
