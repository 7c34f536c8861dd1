"""Hold a memory file's write lock, as another program would (sqlite-utils, a long script),
until told to let go.

usage: lock_holder.py DB RELEASE_FILE
prints "holding" once the lock is taken; commits one row of its own and exits when
RELEASE_FILE appears.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from common import wait_for


def main() -> int:
    db, release = sys.argv[1:3]
    conn = sqlite3.connect(db, isolation_level=None, timeout=60)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO event_log (id, event_type, data, created_at) "
        "VALUES ('lock-holder', 'external', '{}', '2026-01-01T00:00:00Z')"
    )
    print("holding", flush=True)
    wait_for(Path(release), timeout=600)
    conn.execute("COMMIT")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
