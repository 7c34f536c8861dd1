"""Open a fresh memory file at the same moment as other processes, and migrate it.

usage: migrator.py DB GO_FILE
prints the JSON list of migration names this process applied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import wait_for
from sqlite_utils import Database

from datasette_claude_mem.storage.database import connect, migrate


def main() -> int:
    db, go = sys.argv[1:3]
    wait_for(Path(go))
    database = Database(connect(db), execute_plugins=False)
    print(json.dumps(migrate(database)))
    database.conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
