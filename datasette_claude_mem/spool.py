"""Take in the events the command hook spooled while the server was down: in order, once.

The spool is renamed before it is read, so hooks that spool meanwhile start a new file; each
line carries an id that becomes its event's id, so a crash halfway and a second pass store
nothing twice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .hooks import handle_hook
from .store import Store

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
        count += _ingest_file(store, working, hook_options)
        working.unlink()


def _ingest_file(store: Store, path: Path, hook_options: dict[str, Any]) -> int:
    count = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
                payload = entry["payload"]
                if not isinstance(payload, dict):
                    raise ValueError("payload is not an object")
            except (ValueError, KeyError, TypeError) as error:
                print(f"claude-mem: skipped spool line {number}: {error}", file=sys.stderr)
                continue
            handle_hook(
                store, payload, event_id=entry.get("id"), with_context=False, **hook_options
            )
            count += 1
    return count
