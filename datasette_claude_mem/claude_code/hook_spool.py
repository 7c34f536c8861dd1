"""A hook event the server could not store within about a second (another program holds the
write lock): kept in the server's own spool, on the disk before Claude Code hears that it was
taken, and taken in by spool.py once the lock frees.

Claude Code gives a hook a few seconds, and an http hook's event is lost on any error: so
neither waiting out a 20-second lock nor answering 503 would do. The line has the command
hook's shape, so spool.py reads both: the event's id, so that the write still waiting for
the lock and the spool's pass store the event once between them; the event redacted by the
server's own rules, so that no secret waits on the disk in clear.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from datasette_claude_mem.claude_code.hook_script import COMMON_FIELDS, append_line
from datasette_claude_mem.redaction.scrub import Scrubber
from datasette_claude_mem.storage.database import to_json

SUFFIX = ".spool.jsonl"


def server_spool_path(db_path: str | Path) -> Path:
    """The server's spool, beside the memory file it belongs to."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + SUFFIX)


def spool_line(payload: dict[str, Any], event_id: str, redactor: Scrubber) -> bytes:
    """The spool's line for an event: its id, when, and the event redacted."""
    from datasette_claude_mem.claude_code.events import storable

    counts: dict[str, int] = {}
    redacted = {
        key: value if key in COMMON_FIELDS else redactor.value(value, counts)
        for key, value in storable(payload).items()
    }
    entry: dict[str, Any] = {"id": event_id, "spooled_at": time.time(), "payload": redacted}
    if counts:
        entry["redactions"] = counts  # the count made at intake would find only markers
    return to_json(entry).encode("utf-8") + b"\n"


def keep(path: Path, payload: dict[str, Any], event_id: str, redactor: Scrubber) -> None:
    """Append the event to the server's spool and wait until it is on the disk (fsync)."""
    append_line(str(path), spool_line(payload, event_id, redactor), durable=True)
