"""Write N observations to one session through the store; exit non-zero on any surprise.

usage: writer.py DB SESSION_ID TAG N GO_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import observation_fields, wait_for

from datasette_claude_mem.storage.models import ObservationCreate
from datasette_claude_mem.storage.store import Store


def main() -> int:
    db, session_id, tag, n, go = sys.argv[1:6]
    store = Store(db)
    wait_for(Path(go))
    for i in range(int(n)):
        saved = store.create_observation(
            ObservationCreate(session_id=session_id, **observation_fields(tag, i))
        )
        if not saved.created:
            print(f"{tag} {i} was not created", file=sys.stderr)
            return 1
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
