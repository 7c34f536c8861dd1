"""Take in the events the command hook spooled while the server was down: in order, once.

The spool is renamed before it is read, so hooks that spool meanwhile start a new file, and
locked before it is read, so a hook still writing to it finishes first (hooks write under a
shared lock and write again to the new file if theirs was renamed away); each
line carries an id that becomes its event's id, so a crash halfway and a second pass store
nothing twice. A line that cannot be stored (not JSON, or an event the store refuses) is
skipped with a message on stderr: one bad line must never keep the server from starting.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

from datasette_claude_mem.claude_code.events import handle_hook
from datasette_claude_mem.storage.errors import write_fault
from datasette_claude_mem.storage.store import Store

INGESTING_SUFFIX = ".ingesting"


def ingest_spool(store: Store, spool_path: Path, **hook_options: Any) -> int:
    """Store every spooled event; returns how many lines were taken in."""
    spool_path = Path(spool_path)
    working = spool_path.with_name(spool_path.name + INGESTING_SUFFIX)
    count = 0
    while True:
        # A file left by an interrupted pass goes first, then what was spooled since.
        if not working.exists():
            if not spool_path.exists():
                return count
            os.replace(spool_path, working)
        taken, finished = _ingest_file(store, working, hook_options)
        count += taken
        if not finished:
            return count  # the rest waits, in the working file, for the next pass
        working.unlink()


def _counts(value: Any) -> dict[str, int]:
    """What the hook script took before it spooled the event: kind -> count, nothing else."""
    if not isinstance(value, dict):
        return {}
    return {
        str(kind)[:64]: n
        for kind, n in value.items()
        if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**31
    }


def _ingest_file(store: Store, path: Path, hook_options: dict[str, Any]) -> tuple[int, bool]:
    """How many lines were taken in, and whether the file was read to its end."""
    count = 0
    # Bytes, not text: the hook script spools its stdin as it came, and a line that is not
    # UTF-8 must be skipped like any other bad line, not end the pass.
    with path.open("rb") as lines:
        fcntl.flock(lines.fileno(), fcntl.LOCK_EX)
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                entry = json.loads(line)
                payload = entry["payload"]
                if not isinstance(payload, dict):
                    raise ValueError("payload is not an object")
            except (ValueError, KeyError, TypeError) as error:  # UnicodeDecodeError too
                print(f"claude-mem: skipped spool line {number}: {error}", file=sys.stderr)
                continue
            try:
                handle_hook(
                    store,
                    payload,
                    event_id=entry.get("id"),
                    with_context=False,
                    redacted_before=_counts(entry.get("redactions")),
                    **hook_options,
                )
            except Exception as error:  # noqa: BLE001 - one bad event must not stop the start
                # Its transaction was rolled back. A busy, full or read-only database is no
                # fault of the line: stop here and keep the file (ids make the next pass
                # store nothing twice).
                if write_fault(error, None) is not None:
                    print(f"claude-mem: spool left for later: {error}", file=sys.stderr)
                    return count, False
                print(f"claude-mem: skipped spool line {number}: {error}", file=sys.stderr)
                continue
            count += 1
    return count, True
