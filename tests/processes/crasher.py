"""Commit a few observations, then die (SIGKILL from the parent) inside a big transaction.

A tiny page cache makes SQLite spill the open transaction's pages into the WAL before any
commit, so recovery has to ignore frames that were written but never committed.

usage: crasher.py DB SESSION_ID COMMITTED UNCOMMITTED
prints "committed WALSIZE", then "ready WALSIZE" with the transaction still open, then waits.
"""

from __future__ import annotations

import os
import sys
import time

from common import observation_fields

from datasette_claude_mem.storage.models import ObservationCreate
from datasette_claude_mem.storage.store import Store


def wal_size(db: str) -> int:
    try:
        return os.path.getsize(db + "-wal")
    except OSError:
        return 0


def main() -> int:
    db, session_id, committed, uncommitted = sys.argv[1:5]
    store = Store(db)
    store.conn.execute("PRAGMA cache_size=8")
    for i in range(int(committed)):
        store.create_observation(
            ObservationCreate(session_id=session_id, **observation_fields("committed", i))
        )
    print("committed", wal_size(db), flush=True)
    store.conn.execute("BEGIN IMMEDIATE")
    for i in range(int(uncommitted)):
        store.create_observation(
            ObservationCreate(session_id=session_id, **observation_fields("uncommitted", i))
        )
    print("ready", wal_size(db), flush=True)
    time.sleep(120)
    return 3


if __name__ == "__main__":
    sys.exit(main())
