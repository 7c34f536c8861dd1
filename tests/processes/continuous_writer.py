"""Write observations to one session, one transaction each, until STOP_FILE appears.

usage: continuous_writer.py DB SESSION_ID TAG STOP_FILE
Prints how many it wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import observation_fields

from datasette_claude_mem.storage.models import ObservationCreate
from datasette_claude_mem.storage.store import Store


def main() -> int:
    db, session_id, tag, stop = sys.argv[1:5]
    store = Store(db)
    written = 0
    while not Path(stop).exists():
        store.create_observation(
            ObservationCreate(session_id=session_id, **observation_fields(tag, written))
        )
        written += 1
    store.close()
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
