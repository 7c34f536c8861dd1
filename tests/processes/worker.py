"""A queue worker in its own process: claims items under a lease and completes them.

usage: worker.py DB NAME MODE LEASE_SECONDS BATCH [GO_FILE]
  die:   claim one batch, print its ids as JSON, then hang (the parent kills it)
  work:  claim and complete (one observation per item) until nothing is waiting or held
  claim: claim (never complete) until nothing is waiting; print every id claimed
prints one JSON line with what it did.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import wait_for

from datasette_claude_mem.storage.errors import LeaseLost
from datasette_claude_mem.storage.models import ObservationCreate
from datasette_claude_mem.storage.store import Store


def observation_for(item) -> ObservationCreate:
    return ObservationCreate(
        session_id=item.session_id,
        tool_name=item.tool_name,
        title=f"observation of {item.tool_use_id}",
        summary=f"compressed {item.raw_output}",
        files_touched=item.files_touched,
    )


def main() -> int:
    db, name, mode, lease, batch = sys.argv[1:6]
    store = Store(db)
    if len(sys.argv) > 6:
        wait_for(Path(sys.argv[6]))
    lease_s, n = float(lease), int(batch)
    if mode == "die":
        items = store.claim(n, worker=name, lease_seconds=lease_s)
        print(json.dumps({"claimed": [i.id for i in items]}), flush=True)
        time.sleep(120)
        return 3
    claimed: list[str] = []
    completed: list[str] = []
    lease_lost = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = store.claim(n, worker=name, lease_seconds=lease_s)
        claimed.extend(i.id for i in items)
        if mode == "work":
            for item in items:
                try:
                    store.complete(item.id, name, observation=observation_for(item))
                    completed.append(item.id)
                except LeaseLost:
                    lease_lost += 1
        if not items:
            stats = store.queue_stats()
            if stats.waiting == 0 and (mode == "claim" or stats.processing == 0):
                break
            time.sleep(0.01)
    else:
        print("worker gave up: the queue never drained", file=sys.stderr)
        return 2
    print(json.dumps({"claimed": claimed, "completed": completed, "lease_lost": lease_lost}))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
