"""What several test modules need alike: the memory's tables, the context's section titles,
rows read straight from a memory file, and stopping a server process."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

MEMORY_TABLES = frozenset(
    {
        "sessions",
        "observations",
        "function_map",
        "call_graph",
        "learnings",
        "pending_queue",
        "pending_payloads",
        "event_log",
    }
)

# The context's Markdown headings, and the section each one stands for.
CONTEXT_SECTIONS = {
    "Recent sessions": "session_index",
    "Recently changed functions": "function_map",
    "Learnings": "learnings",
    "Recent observations": "observations",
    "Callers of changed functions": "call_graph",
}


def db_rows(db_path: Path, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
    """Rows straight from a memory file, on a connection of the test's own."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate, and kill what does not end within 15 seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)
